//! DKIM keys of a domain: one Ed25519 (RFC 8463) and one RSA-2048 (RFC 8301) selector,
//! made when the domain is created. Receivers that do not know Ed25519 check the RSA
//! signature; the others may prefer the shorter one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::dkim::generate::DkimKeyPair;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::EncodePublicKey;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::model::DkimPublic;

/// RSA key size. 2048 bits: RFC 8301 §3.2 recommends it, and a TXT record of a longer key
/// no longer fits in one 255-byte string, which some DNS hosting panels mangle.
const RSA_BITS: usize = 2048;

/// A DKIM private key as stored: never shown by any API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DkimPrivate {
    pub selector: String,
    /// `ed25519` or `rsa`.
    pub algorithm: String,
    /// PKCS#8 DER (Ed25519) or PKCS#1 DER (RSA), base64.
    pub private_der: String,
}

pub(crate) struct GeneratedKey {
    pub public: DkimPublic,
    /// The stored [`DkimPrivate`], JSON.
    pub private_record: Vec<u8>,
}

/// Makes the two keys of a new domain. Selectors carry the month they were made in
/// (`h202611e`, `h202611r`) so that a later rotation can add new ones beside them.
pub(crate) async fn generate(domain: &str, now: u64) -> Result<Vec<GeneratedKey>, Error> {
    let month = year_month(now);
    let failed = |e: mail_auth::Error| Error::Corrupt { key: format!("dkim key for {domain}"), problem: e.to_string() };
    let (ed25519, rsa) =
        tokio::task::spawn_blocking(|| (DkimKeyPair::generate_ed25519(), DkimKeyPair::generate_rsa(RSA_BITS)))
            .await
            .expect("key generation task");
    let ed25519 = ed25519.map_err(failed)?;
    let rsa = rsa.map_err(failed)?;
    // Publish the RSA key as a SubjectPublicKeyInfo, the form every verifier reads.
    let rsa_public = rsa::RsaPublicKey::from_pkcs1_der(rsa.public_key())
        .and_then(|key| key.to_public_key_der().map_err(|e| rsa::pkcs1::Error::Pkcs8(e.into())))
        .map_err(|e| Error::Corrupt { key: format!("dkim key for {domain}"), problem: e.to_string() })?;
    let keys = [
        (format!("h{month}e"), "ed25519", ed25519.public_key().to_vec(), ed25519.private_key().to_vec()),
        (format!("h{month}r"), "rsa", rsa_public.as_bytes().to_vec(), rsa.private_key().to_vec()),
    ];
    Ok(keys
        .into_iter()
        .map(|(selector, algorithm, public, private)| {
            let record = DkimPrivate {
                selector: selector.clone(),
                algorithm: algorithm.to_string(),
                private_der: STANDARD.encode(private),
            };
            GeneratedKey {
                public: DkimPublic { selector, algorithm: algorithm.to_string(), public_key: STANDARD.encode(public) },
                private_record: serde_json::to_vec(&record).expect("serialises"),
            }
        })
        .collect())
}

/// `YYYYMM` of a Unix time (UTC).
fn year_month(unix_s: u64) -> String {
    let date = mail_parser::DateTime::from_timestamp(unix_s as i64);
    format!("{:04}{:02}", date.year, date.month)
}

#[cfg(test)]
pub(crate) fn year_month_for_tests(unix_s: u64) -> String {
    year_month(unix_s)
}

//! DKIM signing (RFC 6376) of what leaves this server: submitted mail, TLS reports.
//!
//! mail-auth builds the signature field (canonicalization, header list, body hash); the
//! private-key operation is ring's. mail-auth's RustCrypto RSA took about 1.1 ms of CPU per
//! signature, two thirds of the server's whole CPU per submitted message in
//! `bench-outbound`; ring's is several times faster, and ring is already here for rustls.
//! Parsed keys are kept ([`KEYS_MAX`]) so that a key's DER is checked once, not per message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use hameau_directory::{Directory, DkimPrivate};
use mail_auth::common::crypto::{Algorithm, CryptoError, Ed25519Key, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};

/// The fields a signature covers. Each is listed twice: the second matches nothing in a
/// message that has the field once, so that adding one later breaks the signature
/// ("oversigning", RFC 6376 §8.15).
const SIGNED_FIELDS: [&str; 26] = [
    "From",
    "From",
    "Reply-To",
    "Reply-To",
    "Subject",
    "Subject",
    "Date",
    "Date",
    "To",
    "To",
    "Cc",
    "Cc",
    "Message-ID",
    "Message-ID",
    "In-Reply-To",
    "In-Reply-To",
    "References",
    "References",
    "MIME-Version",
    "MIME-Version",
    "Content-Type",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe",
];

/// The DKIM signatures of `domain`'s keys over `message` (none when it has no keys here),
/// as header fields to put first.
pub(crate) async fn dkim_fields(directory: &Directory, domain: &str, message: &[u8]) -> Result<Vec<u8>, String> {
    let keys = directory.dkim_private_keys(domain).await.map_err(|e| format!("reading the DKIM keys: {e}"))?;
    let mut fields = String::new();
    for key in keys {
        let field = sign_with(&key, domain, message).map_err(|e| format!("selector {}: {e}", key.selector))?;
        fields.push_str(&field);
    }
    Ok(fields.into_bytes())
}

/// One signature with one stored key: the `DKIM-Signature` field, CRLF-terminated.
fn sign_with(key: &DkimPrivate, domain: &str, message: &[u8]) -> Result<String, String> {
    let signature = match key.algorithm.as_str() {
        "ed25519" => {
            use base64::Engine as _;
            let der = base64::engine::general_purpose::STANDARD.decode(&key.private_der).map_err(|e| e.to_string())?;
            configure(DkimSigner::from_key(Ed25519Key::from_pkcs8_der(&der).map_err(|e| e.to_string())?), domain, key)
                .sign(message)
        }
        "rsa" => configure(DkimSigner::from_key(RingRsa(rsa_key(&key.private_der)?)), domain, key).sign(message),
        other => return Err(format!("unknown DKIM algorithm {other:?}")),
    };
    signature.map(|signature| signature.to_header()).map_err(|e| e.to_string())
}

/// Relaxed/relaxed over [`SIGNED_FIELDS`], for `domain` with `key`'s selector.
fn configure<T: SigningKey>(
    signer: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    domain: &str,
    key: &DkimPrivate,
) -> DkimSigner<T, mail_auth::dkim::Done> {
    signer
        .domain(domain)
        .selector(&key.selector)
        .headers(SIGNED_FIELDS)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// Parsed RSA keys kept: a server signs for a few domains each with one RSA key; past this
/// many (keys rotated many times over) the memo starts again.
const KEYS_MAX: usize = 1024;

/// The RSA key of a stored base64 PKCS#1 DER, parsed once.
fn rsa_key(private_der: &str) -> Result<Arc<ring::rsa::KeyPair>, String> {
    static KEYS: OnceLock<Mutex<HashMap<String, Arc<ring::rsa::KeyPair>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(Default::default);
    if let Some(key) = keys.lock().expect("DKIM key memo").get(private_der) {
        return Ok(key.clone());
    }
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD.decode(private_der).map_err(|e| e.to_string())?;
    let key = Arc::new(ring::rsa::KeyPair::from_der(&der).map_err(|e| format!("RSA key: {e}"))?);
    let mut keys = keys.lock().expect("DKIM key memo");
    if keys.len() >= KEYS_MAX {
        keys.clear();
    }
    keys.insert(private_der.to_string(), key.clone());
    Ok(key)
}

/// An RSA-SHA256 DKIM key whose signatures ring makes.
struct RingRsa(Arc<ring::rsa::KeyPair>);

impl SigningKey for RingRsa {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        let mut data = Vec::with_capacity(256);
        input.write(&mut data);
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), &data, &mut signature)
            .map_err(|e| mail_auth::Error::Crypto(CryptoError::Library(format!("RSA signing: {e}"))))?;
        Ok(signature)
    }

    fn algorithm(&self) -> Algorithm {
        Algorithm::RsaSha256
    }
}

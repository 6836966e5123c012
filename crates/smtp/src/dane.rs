//! DANE for SMTP (RFC 7672, with the TLSA rules of RFC 7671 and RFC 6698): which TLSA
//! records a receiving MX host publishes, from a DNSSEC-validated answer ([`tlsa`]), and a
//! rustls client configuration that accepts the host's certificate chain only if it matches
//! one of them ([`client_config`]).
//!
//! Only the two usages RFC 7672 §3.1 keeps for SMTP are used: DANE-EE(3), the server's own
//! certificate or key, and DANE-TA(2), a certificate of the chain the server presents. The
//! PKIX usages (0 and 1) are unusable for SMTP (RFC 7672 §3.1.3) and ignored, as are
//! unknown selectors and matching types (RFC 6698 §4.1).

use std::fmt;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::dnssec::Proof;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256, Sha512};

/// One TLSA record (RFC 6698 §2.1), as numbers: [`Tlsa::is_usable`] says whether DANE for
/// SMTP can use it.
#[derive(Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 2 is DANE-TA, 3 is DANE-EE.
    pub usage: u8,
    /// 0 matches the whole certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 is the data itself, 1 its SHA-256, 2 its SHA-512.
    pub matching: u8,
    /// The certificate association data.
    pub data: Vec<u8>,
}

/// What the TLSA lookup of one MX host says about DANE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsaLookup {
    /// DNSSEC-secure TLSA RRset at `_25._tcp.<host>` with at least one usable record
    /// (usage 2 or 3, selector 0/1, matching 0/1/2): DANE applies, with these records only.
    Secure(Vec<Tlsa>),
    /// A secure TLSA RRset none of whose records is usable (PKIX usages, unknown types):
    /// RFC 7672 §2.2, TLS is still required, without authentication (Postfix's "encrypt").
    Unusable,
    /// No TLSA, or the answer is insecure (unsigned zone): DANE does not apply
    /// (opportunistic TLS, or MTA-STS).
    None,
    /// The answer is bogus (its DNSSEC signatures do not validate) or the lookup failed
    /// (timeout, SERVFAIL). For a host whose MX answer was secure, RFC 7672 §2.2 says the
    /// host must not be used (delivery deferred); the text says why.
    Failed(String),
}

/// The error of a certificate that no TLSA record accepts: its text says what failed (it
/// ends up in bounces and TLS-RPT reports, result type `validation-failure`). The verifier
/// returns it as `rustls::Error::Other(OtherError(Arc<Mismatch>))`, whose text is
/// "other error: DANE: ..."; a caller can tell a DANE refusal from other TLS errors by
/// downcasting the `OtherError`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch(pub String);

/// The TLSA records of `host`'s port `port` (`_25._tcp.<host>`, RFC 7672 §2.2), through a
/// validating resolver ([`crate::dns::Options::validating_resolver`]).
///
/// It does not know whether the MX answer that named `host` was secure: a caller gets
/// [`TlsaLookup::Failed`] for a bogus or failed lookup and decides (RFC 7672 §2.2: defer
/// when the MX answer was secure; with an insecure MX answer DANE does not apply at all and
/// the lookup should not even be made).
pub async fn tlsa(resolver: &TokioResolver, host: &str, port: u16) -> TlsaLookup {
    let host = host.trim_end_matches('.');
    let name = format!("_{port}._tcp.{host}.");
    let lookup = match resolver.tlsa_lookup(name.as_str()).await {
        Ok(lookup) => lookup,
        // RFC 7672 §2.2: no TLSA record (a denial of existence, secure or insecure): DANE
        // does not apply.
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return TlsaLookup::None,
        Err(NetError::Dns(DnsError::Nsec { proof, .. })) if !proof.is_bogus() => return TlsaLookup::None,
        Err(NetError::Dns(DnsError::DnssecBogus)) => {
            return TlsaLookup::Failed(format!("the TLSA records of {name} do not validate (DNSSEC bogus)"));
        }
        Err(e) => return TlsaLookup::Failed(format!("looking up the TLSA records of {name}: {e}")),
    };
    let answers: Vec<&Record> =
        lookup.answers().iter().filter(|record| record.record_type() != RecordType::RRSIG).collect();
    if answers.iter().any(|record| record.proof.is_bogus()) {
        return TlsaLookup::Failed(format!("the TLSA records of {name} do not validate (DNSSEC bogus)"));
    }
    // RFC 7672 §2.2: an insecure TLSA RRset is as if there were none.
    if !all_secure(lookup.answers()) {
        return TlsaLookup::None;
    }
    let usable: Vec<Tlsa> = answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TLSA(tlsa) => Some(Tlsa {
                usage: tlsa.cert_usage.into(),
                selector: tlsa.selector.into(),
                matching: tlsa.matching.into(),
                data: tlsa.cert_data.clone(),
            }),
            _ => None,
        })
        .filter(Tlsa::is_usable)
        .collect();
    // RFC 7672 §2.2: a secure TLSA RRset with no usable record: TLS, unauthenticated.
    if usable.is_empty() { TlsaLookup::Unusable } else { TlsaLookup::Secure(usable) }
}

/// Whether every record of an answer was validated secure, and there is one: for the MX
/// RRset (RFC 7672 §2.2.1: DANE applies only to MX hosts from a secure MX answer) and the
/// host's address records. RRSIG records are left out: the validator marks only the one
/// signature it used. A record followed through a CNAME counts like the others (RFC 7672
/// §2.2.2: every link of the chain must be secure).
pub fn all_secure(records: &[Record]) -> bool {
    let mut answers = records.iter().filter(|record| record.record_type() != RecordType::RRSIG).peekable();
    answers.peek().is_some() && answers.all(|record| record.proof == Proof::Secure)
}

/// A rustls client configuration whose certificate verifier accepts the server's chain iff
/// it matches one of the usable `records` (RFC 7672 §3.1); unusable records are ignored.
///
/// - DANE-EE(3): the leaf's full certificate (selector 0) or SubjectPublicKeyInfo (1)
///   matches, exactly (matching 0), by SHA-256 (1) or SHA-512 (2). Neither the name nor the
///   validity dates are checked (RFC 7672 §3.1.1).
/// - DANE-TA(2): a certificate the server presents after its leaf matches, the leaf chains
///   to it (signatures and validity dates checked by webpki, with that certificate as the
///   trust anchor) and the leaf names one of `names` (RFC 7672 §3.1.2): the MX host name,
///   and the TLSA base domain when it was reached through a CNAME (RFC 7672 §3.2.3).
///
/// The handshake signature is verified as usual. The server name rustls is given for SNI
/// does not matter to the verifier.
pub fn client_config(records: Vec<Tlsa>, names: Vec<String>) -> Arc<rustls::ClientConfig> {
    let verifier = DaneVerifier::new(records, names);
    let provider = verifier.provider.clone();
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

impl Tlsa {
    /// DANE-TA(2) (RFC 7672 §3.1.2).
    pub const DANE_TA: u8 = 2;
    /// DANE-EE(3) (RFC 7672 §3.1.1).
    pub const DANE_EE: u8 = 3;

    /// Whether DANE for SMTP can use this record: usage 2 or 3 (RFC 7672 §3.1.3), selector
    /// 0 or 1, matching 0, 1 or 2 (RFC 6698 §2.1), and data of the digest's length (a
    /// record that can never match is unusable, RFC 7671 §4).
    pub fn is_usable(&self) -> bool {
        let usage = matches!(self.usage, Tlsa::DANE_TA | Tlsa::DANE_EE);
        let data = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        usage && self.selector <= 1 && data
    }

    /// Whether `certificate` matches this record. A certificate that does not parse
    /// matches nothing.
    fn matches(&self, certificate: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => certificate.as_ref().to_vec(),
            1 => match ParsedCertificate::try_from(certificate) {
                Ok(parsed) => parsed.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => Sha256::digest(&selected).as_slice() == self.data,
            2 => Sha512::digest(&selected).as_slice() == self.data,
            _ => false,
        }
    }
}

/// The record's parameters, as in zone files (`3 1 1`), and its data in hex; for logs.
impl fmt::Debug for Tlsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} ", self.usage, self.selector, self.matching)?;
        self.data.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

/// The verifier of [`client_config`].
#[derive(Debug)]
struct DaneVerifier {
    /// Usable records only.
    records: Vec<Tlsa>,
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    fn new(records: Vec<Tlsa>, names: Vec<String>) -> DaneVerifier {
        let records = records.into_iter().filter(Tlsa::is_usable).collect();
        DaneVerifier { records, names, provider: Arc::new(rustls::crypto::ring::default_provider()) }
    }

    /// Why the chain is refused, or nothing if a record accepts it.
    fn check(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), String> {
        // RFC 7672 §3.1.1: DANE-EE matches the leaf alone, with no other check.
        if self.records.iter().any(|record| record.usage == Tlsa::DANE_EE && record.matches(leaf)) {
            return Ok(());
        }
        // RFC 7672 §3.1.2: DANE-TA matches a certificate of the chain, which must then be
        // a valid chain for the host's name.
        let mut why_not = None;
        for record in self.records.iter().filter(|record| record.usage == Tlsa::DANE_TA) {
            for anchor in intermediates.iter().filter(|certificate| record.matches(certificate)) {
                match self.chain_to(anchor, leaf, intermediates, now) {
                    Ok(()) => return Ok(()),
                    Err(why) => why_not
                        .get_or_insert(format!("the certificate matches TLSA record {}, but {why}", params(record))),
                };
            }
        }
        if self.records.is_empty() {
            return Err("no usable TLSA record (DANE-TA or DANE-EE)".to_string());
        }
        Err(why_not.unwrap_or_else(|| {
            let all: Vec<String> = self.records.iter().map(params).collect();
            format!("no TLSA record matches the certificate ({})", all.join(", "))
        }))
    }

    /// Whether `leaf` chains to `anchor` and names one of the host's names (RFC 7672
    /// §3.1.2, §3.2.3).
    fn chain_to(
        &self,
        anchor: &CertificateDer<'_>,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), String> {
        let mut roots = RootCertStore::empty();
        roots.add(anchor.clone().into_owned()).map_err(|e| format!("it is not a usable trust anchor: {e}"))?;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| format!("it is not a usable trust anchor: {e}"))?;
        let mut last_error = format!("the host has no name to check ({})", self.names.join(", "));
        for name in &self.names {
            let Ok(server_name) = ServerName::try_from(name.trim_end_matches('.')) else {
                continue;
            };
            match webpki.verify_server_cert(leaf, intermediates, &server_name, &[], now) {
                Ok(_) => return Ok(()),
                Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }))
                | Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)) => {
                    last_error = format!("the certificate names none of {}", self.names.join(", "));
                }
                Err(e) => return Err(format!("the chain to it does not verify: {e}")),
            }
        }
        Err(last_error)
    }
}

/// `3 1 1`.
fn params(record: &Tlsa) -> String {
    format!("{} {} {}", record.usage, record.selector, record.matching)
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            // Not `InvalidCertificate`, whose text would show `Other(OtherError(..))`.
            Err(why) => Err(rustls::Error::Other(OtherError(Arc::new(Mismatch(format!("DANE: {why}")))))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests;

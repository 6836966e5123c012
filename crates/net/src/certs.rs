//! The server certificates of every TLS listener, chosen per connection by the name the
//! client asks for (SNI, RFC 6066 §3) and replaceable while the server runs.
//!
//! One [`Certificates`] table serves HTTPS, IMAP, the MX and submission: a certificate
//! installed for a name (a renewed ACME certificate, a file re-read on `SIGHUP`) is used
//! by the next handshake, and connections in flight keep the one they negotiated, so
//! nothing is dropped. A client that sends no name, or a name no certificate covers, gets
//! the fallback certificate (the host name's).
//!
//! ACME's TLS-ALPN-01 challenge (RFC 8737) is answered here too: a handshake that offers
//! only the `acme-tls/1` protocol gets the challenge certificate of its name, and nothing
//! else ever does.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of ACME's TLS-ALPN-01 challenge (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Names to certificates, swapped whole or per name while handshakes read it.
#[derive(Debug)]
pub struct Certificates {
    table: RwLock<Table>,
}

#[derive(Debug, Clone)]
struct Table {
    /// By lower-case name; a wildcard certificate is under `*.example.fr`.
    names: HashMap<String, Arc<CertifiedKey>>,
    /// For clients without SNI and names nothing covers, unless [`Table::default_name`]
    /// has a certificate of its own.
    fallback: Arc<CertifiedKey>,
    /// The server's host name, lower case: once a certificate is installed for it (ACME),
    /// clients without SNI or asking for an unknown name get that one. Many SMTP clients
    /// (Postfix by default) send no SNI.
    default_name: Option<String>,
    /// TLS-ALPN-01 challenge certificates, by lower-case name; only `acme-tls/1` sees them.
    challenges: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// A table with only the fallback certificate.
    pub fn new(fallback: Arc<CertifiedKey>) -> Arc<Certificates> {
        let table = Table { names: HashMap::new(), fallback, default_name: None, challenges: HashMap::new() };
        Arc::new(Certificates { table: RwLock::new(table) })
    }

    /// Uses `key` for each of `names` from the next handshake on (replacing what they had).
    pub fn install(&self, names: &[String], key: Arc<CertifiedKey>) {
        let mut table = self.write();
        for name in names {
            table.names.insert(name.to_ascii_lowercase(), key.clone());
        }
    }

    /// Forgets the certificates of `names`: their clients get the fallback.
    pub fn remove(&self, names: &[String]) {
        let mut table = self.write();
        for name in names {
            table.names.remove(&name.to_ascii_lowercase());
        }
    }

    /// Clients without SNI (or asking for a name nothing covers) get `name`'s certificate
    /// when one is installed for it, the fallback otherwise.
    pub fn set_default_name(&self, name: &str) {
        self.write().default_name = Some(name.trim_end_matches('.').to_ascii_lowercase());
    }

    /// Replaces the fallback certificate.
    pub fn set_fallback(&self, key: Arc<CertifiedKey>) {
        self.write().fallback = key;
    }

    /// Replaces every named certificate and the fallback at once (a configuration
    /// re-read): names no longer listed fall back. Challenges in progress are kept.
    pub fn replace(&self, names: Vec<(String, Arc<CertifiedKey>)>, fallback: Arc<CertifiedKey>) {
        let mut table = self.write();
        table.names = names.into_iter().map(|(name, key)| (name.to_ascii_lowercase(), key)).collect();
        table.fallback = fallback;
    }

    /// Answers TLS-ALPN-01 handshakes for `name` with `key` until [`Self::clear_challenge`].
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.write().challenges.insert(name.to_ascii_lowercase(), key);
    }

    pub fn clear_challenge(&self, name: &str) {
        self.write().challenges.remove(&name.to_ascii_lowercase());
    }

    /// The certificate a client asking for `server_name` gets (the fallback when none
    /// covers it).
    pub fn for_name(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let table = self.read();
        server_name
            .and_then(|name| table.lookup(name))
            .or_else(|| table.default_name.as_ref().and_then(|name| table.names.get(name).cloned()))
            .unwrap_or_else(|| table.fallback.clone())
    }

    /// The names that have a certificate of their own.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().names.keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // A panic while the lock was held cannot leave the table half-changed: every
        // writer replaces whole entries. So a poisoned lock is still a usable table.
        self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Table {
    /// The exact name, then a wildcard one label up (`*.example.fr` covers
    /// `mail.example.fr`, not `a.mail.example.fr`: RFC 6125 §6.4.3).
    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(key) = self.names.get(&name) {
            return Some(key.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.names.get(&format!("*.{parent}")).cloned()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut offered| offered.any(|protocol| protocol == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: the validation server offers only acme-tls/1 and must get the
            // challenge certificate, or no handshake at all.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.read().challenges.get(&name).cloned();
        }
        Some(self.for_name(hello.server_name()))
    }
}

/// ACME's HTTP-01 challenge answers (RFC 8555 §8.3): token to key authorization, set by
/// the ACME client while a challenge runs and served in clear on port 80 at
/// `/.well-known/acme-challenge/{token}`. Shared like [`Certificates`].
#[derive(Debug, Default)]
pub struct Http01Tokens {
    tokens: RwLock<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn new() -> Arc<Http01Tokens> {
        Arc::new(Http01Tokens::default())
    }

    /// Answers `token` with `key_authorization` until [`Self::remove`].
    pub fn insert(&self, token: &str, key_authorization: &str) {
        let mut tokens = self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.tokens.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(token);
    }

    /// Whether no challenge runs.
    pub fn is_empty(&self) -> bool {
        self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty()
    }

    /// The key authorization of `token`, while its challenge runs.
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(token).cloned()
    }
}

/// Why a certificate and key could not be used.
#[derive(Debug)]
pub enum CertError {
    /// The certificate chain: unreadable, or no certificate in it.
    Chain(String),
    /// The private key: unreadable, unsupported, or not the certificate's.
    Key(String),
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CertError::Chain(why) => write!(f, "certificate: {why}"),
            CertError::Key(why) => write!(f, "private key: {why}"),
        }
    }
}

impl std::error::Error for CertError {}

/// A certificate chain and its private key, both PEM, checked to belong together.
pub fn certified_key(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Chain(format!("unreadable PEM: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Chain("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(format!("unreadable PEM: {e}")))?;
    let provider = provider();
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| CertError::Key(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// The one crypto provider of the program: ring.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A server configuration that takes its certificates from `certificates` and offers
/// `alpn` (add [`ACME_TLS_ALPN`] on the listener that answers TLS-ALPN-01: HTTPS on 443).
pub fn server_config(certificates: Arc<Certificates>, alpn: Vec<Vec<u8>>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = alpn;
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).expect("self-signed");
        certified_key(made.cert.pem().as_bytes(), made.signing_key.serialize_pem().as_bytes()).expect("usable")
    }

    fn same(a: &Arc<CertifiedKey>, b: &Arc<CertifiedKey>) -> bool {
        Arc::ptr_eq(a, b)
    }

    #[test]
    fn names_choose_their_certificate_and_others_fall_back() {
        let fallback = key_for(&["mail.example.fr"]);
        let certificates = Certificates::new(fallback.clone());
        let autoconfig = key_for(&["autoconfig.commune.fr"]);
        let wildcard = key_for(&["*.ville.fr"]);
        certificates.install(&["AutoConfig.Commune.fr".into()], autoconfig.clone());
        certificates.install(&["*.ville.fr".into()], wildcard.clone());
        assert!(same(&certificates.for_name(Some("autoconfig.commune.fr.")), &autoconfig));
        assert!(same(&certificates.for_name(Some("mta-sts.ville.fr")), &wildcard));
        assert!(same(&certificates.for_name(Some("a.mta-sts.ville.fr")), &fallback));
        assert!(same(&certificates.for_name(Some("ville.fr")), &fallback));
        assert!(same(&certificates.for_name(None), &fallback));
        let renewed = key_for(&["autoconfig.commune.fr"]);
        certificates.install(&["autoconfig.commune.fr".into()], renewed.clone());
        assert!(same(&certificates.for_name(Some("autoconfig.commune.fr")), &renewed));
        // Once the host name has a certificate of its own, clients without SNI get it.
        certificates.set_default_name("Mail.Example.fr.");
        assert!(same(&certificates.for_name(None), &fallback));
        let host = key_for(&["mail.example.fr"]);
        certificates.install(&["mail.example.fr".into()], host.clone());
        assert!(same(&certificates.for_name(None), &host));
        assert!(same(&certificates.for_name(Some("unknown.example.fr")), &host));
        assert!(same(&certificates.for_name(Some("mta-sts.ville.fr")), &wildcard));
        certificates.remove(&["mail.example.fr".into()]);
        assert!(same(&certificates.for_name(None), &fallback));
        certificates.replace(Vec::new(), renewed.clone());
        assert!(same(&certificates.for_name(Some("mta-sts.ville.fr")), &renewed));
        assert_eq!(certificates.names(), Vec::<String>::new());
    }

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let a = rcgen::generate_simple_self_signed(vec!["a.fr".to_string()]).expect("a");
        let b = rcgen::generate_simple_self_signed(vec!["b.fr".to_string()]).expect("b");
        let err = certified_key(a.cert.pem().as_bytes(), b.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::Key(_)), "{err}");
        let err = certified_key(b"", a.signing_key.serialize_pem().as_bytes()).unwrap_err();
        assert!(matches!(err, CertError::Chain(_)), "{err}");
        let err = certified_key(a.cert.pem().as_bytes(), b"not a key").unwrap_err();
        assert!(matches!(err, CertError::Key(_)), "{err}");
    }

    /// A client that trusts exactly `expected` and offers `alpn`: does the handshake
    /// with a server on `certificates` succeed?
    async fn handshake(certificates: &Arc<Certificates>, name: &str, alpn: &[u8], expected: &[u8]) -> bool {
        let server = server_config(certificates.clone(), vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(expected.to_vec())).expect("root");
        let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn.to_vec()];
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let (server, client) = tokio::join!(acceptor.accept(a), connector.connect(name, b));
        server.is_ok() && client.is_ok()
    }

    #[tokio::test]
    async fn only_acme_tls_handshakes_see_the_challenge_certificate() {
        let fallback = rcgen::generate_simple_self_signed(vec!["mail.example.fr".to_string()]).expect("fallback");
        let challenge = rcgen::generate_simple_self_signed(vec!["mail.example.fr".to_string()]).expect("challenge");
        let certificates = Certificates::new(
            certified_key(fallback.cert.pem().as_bytes(), fallback.signing_key.serialize_pem().as_bytes())
                .expect("fallback key"),
        );
        let (fallback_der, challenge_der) = (fallback.cert.der().to_vec(), challenge.cert.der().to_vec());
        // No challenge set: an acme-tls/1 handshake fails, an ordinary one gets the fallback.
        assert!(!handshake(&certificates, "mail.example.fr", ACME_TLS_ALPN, &fallback_der).await);
        assert!(handshake(&certificates, "mail.example.fr", b"http/1.1", &fallback_der).await);
        let key = certified_key(challenge.cert.pem().as_bytes(), challenge.signing_key.serialize_pem().as_bytes())
            .expect("challenge key");
        certificates.set_challenge("Mail.Example.fr", key);
        assert!(handshake(&certificates, "mail.example.fr", ACME_TLS_ALPN, &challenge_der).await);
        assert!(!handshake(&certificates, "mail.example.fr", b"http/1.1", &challenge_der).await);
        assert!(handshake(&certificates, "mail.example.fr", b"http/1.1", &fallback_der).await);
        certificates.clear_challenge("mail.example.fr");
        assert!(!handshake(&certificates, "mail.example.fr", ACME_TLS_ALPN, &challenge_der).await);
    }
}

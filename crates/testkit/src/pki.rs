//! A test certificate authority (rcgen, ECDSA P-256): server certificates for the tests'
//! TLS servers (Postfix's STARTTLS, an MTA-STS policy host) that a client trusts through
//! one PEM file (Hameau's `[outbound] ca_file`), as a public CA's would be through the
//! system's roots. Nothing outside the test trusts it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::TlsFiles;

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl TestCa {
    /// A new CA with a new key.
    pub fn new() -> TestCa {
        let key = KeyPair::generate().expect("a P-256 key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, "Hameau test CA");
        let pem = params.self_signed(&key).expect("the CA certificate").pem();
        TestCa { issuer: Issuer::new(params, key), pem }
    }

    /// The CA's certificate, PEM: what a client trusts.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// Writes the CA's certificate to `dir/ca.pem` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }

    /// A new key and a certificate for `names` signed by this CA, written into `dir` as
    /// `cert.pem` and `key.pem` (for Postfix, `TlsFiles`).
    pub fn issue(&self, dir: &Path, names: &[&str]) -> TlsFiles {
        let (cert, key) = self.issue_certificate(names);
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    /// A rustls server configuration presenting a new certificate for `names` signed by
    /// this CA.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.issue_certificate(names);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        server_config(vec![cert.der().clone()], key)
    }

    /// A rustls client configuration trusting this CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config(self.pem.as_bytes())
    }

    fn issue_certificate(&self, names: &[&str]) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("a P-256 key");
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let cert = CertificateParams::new(names).expect("names").signed_by(&key, &self.issuer).expect("signed");
        (cert, key)
    }
}

/// A rustls client configuration trusting only the certificates of `pem`.
pub fn client_config(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.expect("a PEM certificate")).expect("a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A rustls server configuration presenting `chain` (leaf first) with `key`.
pub fn server_config(
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

impl TlsFiles {
    /// The data of a DANE-EE TLSA record `3 1 1` for this certificate (RFC 6698 §2.1: the
    /// SHA-256 of its SubjectPublicKeyInfo), in hex as a zone file writes it.
    pub fn tlsa_3_1_1(&self) -> String {
        use rcgen::PublicKeyData;
        use sha2::Digest;
        let key = KeyPair::from_pem(&std::fs::read_to_string(&self.key).unwrap()).expect("a PEM private key");
        let digest = sha2::Sha256::digest(key.subject_public_key_info());
        hex::encode(digest)
    }
}

//! TLS towards receivers: what each MX host requires (RFC 7435 opportunistic TLS, MTA-STS
//! RFC 8461, DANE RFC 7672), the client configurations that check it, and the names of
//! failures as TLS-RPT (RFC 8460 §4.3.2) spells them.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::TlsConnector;

use crate::mta_sts::{self, MtaSts};

/// What secured the connection that carried a message: `/metrics` counts deliveries by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsUsed {
    /// Clear text: the receiver offered no STARTTLS, or its handshake failed and no policy
    /// required TLS.
    None,
    /// STARTTLS without a policy: encrypted, the certificate not checked (RFC 7435).
    Starttls,
    /// STARTTLS with the certificate checked as the domain's MTA-STS `enforce` policy asks.
    MtaSts,
    /// STARTTLS with the certificate matched against the MX host's DNSSEC-signed TLSA records.
    Dane,
}

impl TlsUsed {
    /// The `tls` label of `hameau_outbound_transactions_total`.
    pub fn label(self) -> &'static str {
        match self {
            TlsUsed::None => "none",
            TlsUsed::Starttls => "starttls",
            TlsUsed::MtaSts => "mta-sts",
            TlsUsed::Dane => "dane",
        }
    }
}

/// The TLS settings every delivery shares: built once by the worker.
#[derive(Clone)]
pub struct TlsContext {
    /// STARTTLS accepting any certificate: opportunistic TLS.
    pub(crate) any: TlsConnector,
    /// STARTTLS checking the certificate against the WebPKI roots and the MX host's name:
    /// MTA-STS `enforce`. `None` without roots (then MTA-STS is off too).
    pub(crate) webpki: Option<TlsConnector>,
    /// The same check, run after an opportunistic handshake to report what an MTA-STS
    /// `testing` policy would have refused.
    pub(crate) webpki_verifier: Option<Arc<WebPkiServerVerifier>>,
    /// MTA-STS discovery and its policy cache; `None` when `[outbound] mta_sts` is off.
    pub(crate) mta_sts: Option<MtaSts>,
    /// A DNSSEC-validating resolver for DANE's lookups (the MX answer's security, TLSA);
    /// `None` when `[outbound] dane` is off.
    pub(crate) dane: Option<hickory_resolver::TokioResolver>,
}

impl TlsContext {
    /// `roots`: the WebPKI trust anchors (the system's, and `[outbound] ca_file` in tests),
    /// which verify MTA-STS policy hosts and MX hosts under an `enforce` policy; `store`
    /// keeps the MTA-STS policies across restarts.
    pub fn new(
        roots: Arc<rustls::RootCertStore>,
        mta_sts: Option<mta_sts::Options>,
        dane: Option<hickory_resolver::TokioResolver>,
        store: Option<hameau_store::Store>,
    ) -> Result<TlsContext, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let webpki_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| format!("the TLS trust anchors: {e}"))?;
        let webpki = client_config(&provider, webpki_verifier.clone());
        let any = client_config(&provider, Arc::new(AnyCertificate(provider.clone())));
        Ok(TlsContext {
            any: TlsConnector::from(any),
            webpki: Some(TlsConnector::from(webpki.clone())),
            webpki_verifier: Some(webpki_verifier),
            mta_sts: mta_sts.map(|options| MtaSts::with_store(options, webpki, store)),
            dane,
        })
    }

    /// Opportunistic TLS only: no MTA-STS, no DANE, no trust anchors (tests of the SMTP
    /// client itself).
    pub fn opportunistic() -> TlsContext {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let any = client_config(&provider, Arc::new(AnyCertificate(provider.clone())));
        TlsContext { any: TlsConnector::from(any), webpki: None, webpki_verifier: None, mta_sts: None, dane: None }
    }

    /// Checks a certificate chain as MTA-STS would (WebPKI, valid for `host`): the
    /// TLS-RPT result type and why, when it fails.
    pub(crate) fn check_webpki(&self, chain: &[CertificateDer<'static>], host: &str) -> Result<(), Failure> {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(Failure::new("validation-failure", "the server presented no certificate"));
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Failure::new("certificate-host-mismatch", format!("{host:?} is not a host name")))?;
        let Some(verifier) = &self.webpki_verifier else {
            return Err(Failure::new("certificate-not-trusted", "no WebPKI trust anchors are configured"));
        };
        verifier
            .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| Failure::from_tls(&e))
    }
}

/// A client configuration with `verifier`.
fn client_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(config)
}

/// Why a TLS session failed, in TLS-RPT's words (RFC 8460 §4.3.2.1) and ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// `starttls-not-supported`, `certificate-host-mismatch`, `certificate-expired`,
    /// `certificate-not-trusted`, `validation-failure`, `tlsa-invalid`, `dnssec-invalid`,
    /// `sts-policy-fetch-error`, `sts-policy-invalid`.
    pub result_type: &'static str,
    pub why: String,
}

impl Failure {
    pub fn new(result_type: &'static str, why: impl Into<String>) -> Failure {
        Failure { result_type, why: why.into() }
    }

    /// A handshake's or a verifier's error, classified.
    pub(crate) fn from_tls(error: &rustls::Error) -> Failure {
        use rustls::CertificateError;
        let result_type = match error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => "certificate-host-mismatch",
            rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
                "certificate-expired"
            }
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature | CertificateError::NotValidYet,
            ) => "certificate-not-trusted",
            _ => "validation-failure",
        };
        // A verifier's own error (DANE's mismatch) reads better without rustls' prefix.
        let why = match error {
            rustls::Error::Other(other) => other.0.to_string(),
            _ => error.to_string(),
        };
        Failure::new(result_type, why)
    }

    /// A handshake's I/O error: rustls' own error inside when there is one.
    pub(crate) fn from_io(error: &std::io::Error) -> Failure {
        match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls) => Failure::from_tls(tls),
            None => Failure::new("validation-failure", error.to_string()),
        }
    }
}

/// Accepts every certificate: opportunistic TLS (RFC 7435) has nothing to check it
/// against, and refusing would only send the message in clear instead.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

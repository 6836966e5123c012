//! One certificate order (RFC 8555 §7.4): the order, one challenge per name answered
//! through the shared table (TLS-ALPN-01) or token map (HTTP-01), the CSR with a fresh
//! key, and the chain.

use std::sync::Arc;

use hameau_net::{Certificates, Http01Tokens};
use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, Problem, RetryPolicy,
};

use crate::{Challenge, Options};

/// A certificate as issued: the chain and its key (PEM), and when it expires.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Issued {
    pub(crate) chain_pem: String,
    pub(crate) key_pem: String,
    /// The leaf's notAfter, in seconds since the Unix epoch.
    pub(crate) not_after_s: u64,
}

/// Why an order failed: the name whose challenge failed (if one did), what was being done
/// and the ACME server's problem document.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) name: Option<String>,
    pub(crate) why: String,
}

impl Failure {
    fn new(name: Option<&str>, doing: &str, error: impl std::fmt::Display) -> Failure {
        Failure { name: name.map(str::to_string), why: format!("{doing}: {error}") }
    }
}

/// Where the challenges are answered; cleared when dropped, whatever happened.
pub(crate) struct Responders {
    pub(crate) certificates: Arc<Certificates>,
    pub(crate) tokens: Arc<Http01Tokens>,
}

struct Answering<'a> {
    responders: &'a Responders,
    alpn_names: Vec<String>,
    tokens: Vec<String>,
}

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        for name in &self.alpn_names {
            self.responders.certificates.clear_challenge(name);
        }
        for token in &self.tokens {
            self.responders.tokens.remove(token);
        }
    }
}

/// Orders a certificate for `names` from `account`, answering `challenge`.
pub(crate) async fn issue(
    account: &Account,
    names: &[String],
    challenge: Challenge,
    responders: &Responders,
    options: &Options,
) -> Result<Issued, Failure> {
    let identifiers: Vec<Identifier> = names.iter().map(|name| Identifier::Dns(name.clone())).collect();
    let mut order =
        account.new_order(&NewOrder::new(&identifiers)).await.map_err(|e| Failure::new(None, "new order", e))?;
    let mut answering = Answering { responders, alpn_names: Vec::new(), tokens: Vec::new() };
    let challenge_type = match challenge {
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
        Challenge::Http01 => ChallengeType::Http01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| Failure::new(None, "fetching an authorization", e))?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            // Validated earlier (servers may reuse a recent authorization).
            AuthorizationStatus::Valid => continue,
            status => {
                let why = format!("the authorization is {status:?}");
                return Err(Failure::new(Some(&name), "authorization", why));
            }
        }
        let Some(mut handle) = authorization.challenge(challenge_type.clone()) else {
            return Err(Failure::new(
                Some(&name),
                "authorization",
                format!("no {} challenge offered", challenge.name()),
            ));
        };
        let key_authorization = handle.key_authorization();
        match challenge {
            Challenge::TlsAlpn01 => {
                let key = alpn_certificate(&name, key_authorization.digest().as_ref())
                    .map_err(|e| Failure::new(Some(&name), "making the tls-alpn-01 certificate", e))?;
                responders.certificates.set_challenge(&name, key);
                answering.alpn_names.push(name.clone());
            }
            Challenge::Http01 => {
                responders.tokens.insert(&handle.token, key_authorization.as_str());
                answering.tokens.push(handle.token.clone());
            }
        }
        handle.set_ready().await.map_err(|e| Failure::new(Some(&name), "challenge", e))?;
    }
    let timeout = RetryPolicy::new().timeout(options.order_timeout());
    match order.poll_ready(&timeout).await {
        Ok(OrderStatus::Ready) => {}
        Ok(status) => {
            let otherwise = Failure::new(None, "validation", format!("the order is {status:?}"));
            return Err(failed_challenge(&mut order, otherwise).await);
        }
        Err(instant_acme::Error::Api(problem)) => {
            let otherwise = Failure::new(None, "validation", describe(&problem));
            return Err(failed_challenge(&mut order, otherwise).await);
        }
        Err(e) => return Err(Failure::new(None, "validation", e)),
    }
    drop(answering);
    let key = rcgen::KeyPair::generate().map_err(|e| Failure::new(None, "making the key", e))?;
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| Failure::new(None, "making the CSR", e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| Failure::new(None, "making the CSR", e))?;
    order.finalize_csr(csr.der()).await.map_err(|e| Failure::new(None, "finalize", e))?;
    let chain_pem = order.poll_certificate(&timeout).await.map_err(|e| Failure::new(None, "certificate", e))?;
    let not_after_s = not_after_s(&chain_pem).map_err(|e| Failure::new(None, "reading the certificate", e))?;
    let issued = Issued { chain_pem, key_pem: key.serialize_pem(), not_after_s };
    // A chain that rustls cannot serve is a failure now, not at the next handshake.
    hameau_net::certs::certified_key(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes())
        .map_err(|e| Failure::new(None, "the issued certificate", e))?;
    Ok(issued)
}

/// The name and problem document of the challenge that failed an invalid order;
/// `otherwise` when the server says of none.
async fn failed_challenge(order: &mut instant_acme::Order, otherwise: Failure) -> Failure {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let Ok(mut authorization) = authorization else { continue };
        let Ok(state) = authorization.refresh().await else { continue };
        let name = state.identifier().to_string();
        if let Some(problem) = state.challenges.iter().find_map(|challenge| challenge.error.as_ref()) {
            return Failure::new(Some(&name), "challenge failed", describe(problem));
        }
        if state.status == AuthorizationStatus::Invalid {
            return Failure::new(Some(&name), "challenge failed", "the authorization is invalid");
        }
    }
    otherwise
}

/// A problem document on one line: type, detail, status and subproblems.
pub(crate) fn describe(problem: &Problem) -> String {
    let mut text = format!(
        "{} ({}",
        problem.detail.as_deref().unwrap_or("no detail"),
        problem.r#type.as_deref().unwrap_or("no type")
    );
    if let Some(status) = problem.status {
        text.push_str(&format!(", status {status}"));
    }
    text.push(')');
    for subproblem in &problem.subproblems {
        text.push_str(&format!("; {subproblem}"));
    }
    text
}

/// The TLS-ALPN-01 certificate of `name` (RFC 8737 §3): self-signed, for `name` alone,
/// with the critical acmeIdentifier extension holding the key authorization's SHA-256.
pub(crate) fn alpn_certificate(
    name: &str,
    digest: &[u8],
) -> Result<Arc<rustls::sign::CertifiedKey>, Box<dyn std::error::Error + Send + Sync>> {
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    // Not `certs::certified_key`: its check that the key is the certificate's parses the
    // certificate with webpki, which refuses the critical extension it does not know.
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let signing = hameau_net::certs::provider().key_provider.load_private_key(key_der)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![certificate.der().clone()], signing)))
}

/// The notAfter of the first certificate of `chain_pem`, in seconds since the Unix epoch.
pub(crate) fn not_after_s(chain_pem: &str) -> Result<u64, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or("no certificate in the chain")?
        .map_err(|e| format!("unreadable PEM: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf).map_err(|e| format!("unreadable certificate: {e}"))?;
    u64::try_from(parsed.validity().not_after.timestamp()).map_err(|_| "notAfter is before 1970".to_string())
}

//! instant-acme's HTTP client: one HTTP/1.1 request per connection over our hyper and
//! rustls (ring), trusting the roots the binary gives it (the system's and `acme.ca_file`'s), each request within
//! `acme.request_timeout_s` and its answer within `acme.response_bytes_max`.
//!
//! One connection per request is plenty: a certificate takes about a dozen requests, a
//! few times a quarter.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Options;

const USER_AGENT_VALUE: &str = concat!("hameau/", env!("CARGO_PKG_VERSION"));

/// The HTTP client instant-acme talks to the ACME server through.
#[derive(Clone)]
pub(crate) struct Client {
    tls: TlsConnector,
    timeout: Duration,
    response_bytes_max: usize,
}

impl Client {
    /// A client trusting `roots` (the binary's: the system's and `acme.ca_file`'s).
    pub(crate) fn new(options: &Options, roots: Arc<rustls::RootCertStore>) -> Client {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(hameau_net::certs::provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client {
            tls: TlsConnector::from(Arc::new(config)),
            timeout: options.request_timeout(),
            response_bytes_max: options.response_bytes_max,
        }
    }

    async fn send(self, request: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, instant_acme::Error> {
        let (mut parts, body) = request.into_parts();
        let uri = parts.uri.clone();
        if uri.scheme_str() != Some("https") {
            return Err(other(format!("{uri}: the ACME server must be reached over https")));
        }
        let host = uri.host().ok_or_else(|| other(format!("{uri}: no host")))?.to_string();
        let port = uri.port_u16().unwrap_or(443);
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
            .map_err(|e| other(format!("{host}: {e}")))?;
        let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
            .await
            .map_err(|e| other(format!("connecting to {host} port {port}: {e}")))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| other(format!("TLS with {host}: {e}")))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| other(format!("HTTP with {host}: {e}")))?;
        // HTTP/1.1 asks for the path only (RFC 9112 §3.2.1), the host in its header.
        let path = uri.path_and_query().map(|path| path.as_str()).unwrap_or("/");
        parts.uri = path.parse::<Uri>().map_err(|e| other(format!("{uri}: {e}")))?;
        let authority = uri.authority().map(|authority| authority.as_str()).unwrap_or(&host).to_string();
        parts.headers.insert(HOST, authority.parse().map_err(|_| other(format!("{uri}: bad host")))?);
        parts.headers.insert(USER_AGENT, hyper::header::HeaderValue::from_static(USER_AGENT_VALUE));
        parts.headers.insert(CONNECTION, hyper::header::HeaderValue::from_static("close"));
        let request = Request::from_parts(parts, body);
        let bytes_max = self.response_bytes_max;
        let exchange = async move {
            let response = sender.send_request(request).await.map_err(|e| other(format!("HTTP with {host}: {e}")))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, bytes_max)
                .collect()
                .await
                .map_err(|e| other(format!("reading the answer of {host} (at most {bytes_max} bytes): {e}")))?
                .to_bytes();
            Ok(BytesResponse { parts, body: Box::new(body) })
        };
        // The connection is driven here, not spawned: when the timeout drops this future,
        // the socket goes with it.
        let mut connection = std::pin::pin!(connection);
        let mut exchange = std::pin::pin!(exchange);
        tokio::select! {
            result = &mut exchange => result,
            ended = &mut connection => match ended {
                Err(e) => Err(other(format!("HTTP: {e}"))),
                Ok(()) => exchange.await,
            },
        }
    }
}

impl HttpClient for Client {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.clone();
        let timeout = self.timeout;
        let uri = request.uri().clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.send(request)).await {
                Ok(result) => result,
                Err(_) => {
                    Err(other(format!("{uri}: no answer within acme.request_timeout_s ({} s)", timeout.as_secs())))
                }
            }
        })
    }
}

fn other(why: String) -> instant_acme::Error {
    instant_acme::Error::Other(why.into())
}

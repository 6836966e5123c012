//! The HTTPS driver: accepts connections through the accept loop shared with SMTP and IMAP
//! (`hameau_net`: a budget of connections in all and a count per client address), runs TLS
//! (`hameau_net::Connection`) and HTTP/1.1 on each with timeouts, and on shutdown stops accepting and lets requests in
//! flight finish.
//!
//! Slow clients cannot hold a connection: the TLS handshake and each request's headers
//! have `header_timeout`, a request's body `body_timeout` in all, and a write that makes no
//! progress for `write_timeout` (a client that does not read its answers) ends the
//! connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hameau_net::Connection;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt;

use crate::Options;

/// Serves `router` on `listener` until `shutdown` turns true, then waits for the
/// connections in flight to finish their current request. The caller bounds that wait.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    options: Options,
    metrics: crate::HttpMetrics,
    shutdown: watch::Receiver<bool>,
) {
    serve(listener, Some(tls), router, options, metrics, shutdown).await;
}

/// The one accept loop of HTTPS (`tls`) and of plain HTTP on port 80 (`None`): a budget
/// of connections in all and per client address, then [`serve_http`] on each.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: Router,
    options: Options,
    metrics: crate::HttpMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let options = Arc::new(options);
    let gate = hameau_net::Gate::new(options.connections_max, options.connections_per_ip_max);
    let connection_shutdown = shutdown.clone();
    let service = if tls.is_some() { "https" } else { "http" };
    hameau_net::accept_loop(listener, gate, shutdown, service, move |accepted: hameau_net::Accepted| {
        let (tls, router, options, metrics) = (tls.clone(), router.clone(), options.clone(), metrics.clone());
        let shutdown = connection_shutdown.clone();
        async move {
            let peer = accepted.peer;
            if accepted.over_limit {
                // HTTP has no word before TLS: closing is the refusal.
                tracing::debug!(%peer, service, "connection refused: too many from this address");
                return;
            }
            metrics.connections.inc();
            match tls {
                Some(tls) => serve_connection(accepted.tcp, peer, tls, router, &options, &metrics, shutdown).await,
                None => serve_http(Connection::plain(accepted.tcp), peer, router, &options, &metrics, shutdown).await,
            }
            tracing::trace!(%peer, service, "connection closed");
        }
    })
    .await;
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    options: &Options,
    metrics: &crate::HttpMetrics,
    shutdown: watch::Receiver<bool>,
) {
    let tls = match Connection::accept_tls(tcp, &tls, options.header_timeout()).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(error = %e, "tls handshake failed");
            return;
        }
    };
    if tls.alpn_protocol() == Some(hameau_net::certs::ACME_TLS_ALPN) {
        // RFC 8737 §3: an ACME server validating TLS-ALPN-01 needs only the handshake
        // (the challenge certificate); nothing is served over acme-tls/1.
        tracing::debug!(%peer, "acme-tls/1 handshake answered, connection closed");
        return;
    }
    serve_http(tls, peer, router, options, metrics, shutdown).await;
}

/// Serves HTTP/1.1 on an established connection (TLS, or plain on port 80) until the
/// client closes it, a timeout ends it, or `shutdown` lets its request in flight finish.
async fn serve_http(
    mut connection: Connection,
    peer: std::net::SocketAddr,
    router: Router,
    options: &Options,
    metrics: &crate::HttpMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    connection.set_write_stall_timeout(options.write_timeout());
    let requests = metrics.requests.clone();
    let body_timeout = options.body_timeout();
    // Each request carries the client's address (for the authentication limiter).
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        requests.inc();
        request.extensions_mut().insert(crate::PeerAddr(peer));
        let request = request.map(|body| axum::body::Body::new(BodyDeadline::new(body, body_timeout)));
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout())
        .max_buf_size(options.header_bytes_max)
        .serve_connection(TokioIo::new(connection), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        res = connection.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "https connection ended with an error");
            }
        }
        _ = hameau_net::stopped(&mut shutdown) => {
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A request body that fails once `timeout` has passed since the headers: a client
/// trickling its body byte by byte does not hold the connection past it. The handler
/// reading it then answers with an error (axum's extractors: 400) and the connection ends.
struct BodyDeadline {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl BodyDeadline {
    fn new(inner: Incoming, timeout: Duration) -> BodyDeadline {
        BodyDeadline { inner, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

/// The error of a body that took too long.
#[derive(Debug)]
struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body took longer than http.body_timeout_s")
    }
}

impl std::error::Error for BodyTimedOut {}

impl Body for BodyDeadline {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

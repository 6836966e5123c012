//! The HTTPS driver: accepts connections up to a limit, runs TLS and HTTP/1.1 on each with
//! timeouts, and on shutdown stops accepting and lets requests in flight finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The listener's limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most connections at once; past it, accepting waits.
    pub connections_max: usize,
    /// Time for the TLS handshake, then for each request's headers.
    pub header_timeout: Duration,
    pub metrics: crate::HttpMetrics,
}

/// Serves `router` on `listener` until `shutdown` turns true, then waits for the
/// connections in flight to finish their current request. The caller bounds that wait.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    options: Options,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let permits = Arc::new(Semaphore::new(options.connections_max));
    // Each connection task holds a sender; when all are dropped, every connection is done.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut accept_errors = 0u32;
    loop {
        let permit = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            permit = permits.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (tcp, peer) = tokio::select! {
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => { accept_errors = 0; accepted }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    accept_errors = (accept_errors + 1).min(6);
                    tracing::warn!(error = %e, "https accept failed");
                    tokio::time::sleep(Duration::from_millis(10 << accept_errors)).await;
                    continue;
                }
            },
        };
        options.metrics.connections.inc();
        let acceptor = acceptor.clone();
        let router = router.clone();
        let header_timeout = options.header_timeout;
        let requests = options.metrics.requests.clone();
        let shutdown = shutdown.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            serve_connection(tcp, peer, acceptor, router, requests, header_timeout, shutdown).await;
            tracing::trace!(%peer, "https connection closed");
            drop(permit);
            drop(done);
        });
    }
    drop(done_tx);
    let _ = done_rx.recv().await;
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    requests: hameau_telemetry::Counter,
    header_timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "tls handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("tls handshake timed out");
            return;
        }
    };
    // Each request carries the client's address (for the authentication limiter).
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        requests.inc();
        request.extensions_mut().insert(crate::PeerAddr(peer));
        router.clone().oneshot(request.map(axum::body::Body::new))
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(tls), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        res = connection.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, "https connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            // Finish the request in flight, then close.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Resolves once shutdown is asked for (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

//! The plain HTTP listener (port 80, RFC 9112 without TLS): ACME's HTTP-01 challenge
//! answers (RFC 8555 §8.3) and, for every other path, a redirect to the same host over
//! HTTPS. Nothing else is served in clear: no credential and no mail data ever crosses
//! port 80.
//!
//! It runs on the HTTPS driver without TLS (`server::serve`: header, body and write
//! timeouts, graceful shutdown) and has its own connection budget of the same sizes
//! (`[http] connections_max`, `connections_per_ip_max`), so port 80 cannot starve 443.
//! [`router`] returns the routes, for others to extend.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hameau_net::Http01Tokens;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Options;

/// Where HTTP-01 challenges are fetched (RFC 8555 §8.3).
pub const ACME_CHALLENGE_PATH: &str = "/.well-known/acme-challenge/{token}";

/// Longest `Host` header accepted for the redirect: a DNS name is at most 253 characters,
/// plus `:` and a port.
const HOST_CHARS_MAX: usize = 260;

/// The routes of port 80: the HTTP-01 answers from `tokens`, and a redirect to HTTPS for
/// everything else.
pub fn router(tokens: Arc<Http01Tokens>) -> Router {
    Router::new().route(ACME_CHALLENGE_PATH, get(acme_challenge)).fallback(to_https).with_state(tokens)
}

/// Serves `router` in clear on `listener` until `shutdown` turns true, then waits for the
/// connections in flight to finish their current request.
pub async fn run_plain(
    listener: TcpListener,
    router: Router,
    options: Options,
    metrics: crate::HttpMetrics,
    shutdown: watch::Receiver<bool>,
) {
    crate::server::serve(listener, None, router, options, metrics, shutdown).await;
}

/// The key authorization of a challenge in progress; 404 for any other token.
async fn acme_challenge(State(tokens): State<Arc<Http01Tokens>>, Path(token): Path<String>) -> Response {
    match tokens.get(&token) {
        Some(key_authorization) => {
            tracing::debug!(token, "http-01 challenge answered");
            ([(header::CONTENT_TYPE, "application/octet-stream")], key_authorization).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such challenge\n").into_response(),
    }
}

/// A permanent redirect to the same host and path over HTTPS; 400 without a usable `Host`.
async fn to_https(headers: HeaderMap, uri: Uri) -> Response {
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
    // The port of port 80 does not carry over: HTTPS is on its default port.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let valid = !name.is_empty()
        && host.len() <= HOST_CHARS_MAX
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid {
        return (StatusCode::BAD_REQUEST, "a Host header naming this server is required\n").into_response();
    }
    let path = uri.path_and_query().map(|path| path.as_str()).unwrap_or("/");
    let location = format!("https://{name}{path}");
    (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response()
}

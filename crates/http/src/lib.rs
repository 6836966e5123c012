//! Hameau's one HTTPS listener (HTTP/1.1 over rustls, RFC 9112).
//!
//! Today it serves `/healthz`; the admin API, JMAP (RFC 8620), autoconfig and the MTA-STS
//! policy (RFC 8461) join it on the same listener. [`router`] holds the routes;
//! [`server::run`] owns the socket, TLS, timeouts, the connection limit and shutdown.

pub mod server;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hameau_store::Store;

pub use server::{Options, run};

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
}

/// Every route of the listener.
pub fn router(state: AppState) -> Router {
    Router::new().route("/healthz", get(healthz)).with_state(state)
}

/// 200 when the store answers a read, 503 when it does not (a load balancer or systemd
/// watchdog then knows this node cannot serve).
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.get(b"\x00health").await {
        Ok(_) => (StatusCode::OK, "ok\n"),
        Err(e) => {
            tracing::warn!(error = %e, "health check: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
        }
    }
}

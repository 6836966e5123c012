//! Hameau's one HTTPS listener (HTTP/1.1 over rustls, RFC 9112): the admin API
//! (`/api/v1/`, described at `/api/v1/openapi.json`), `/healthz`, and `/metrics` in the
//! Prometheus text format behind its own token, and what mail clients read to set
//! themselves up ([`autoconfig`]: Thunderbird's autoconfig, Outlook's Autodiscover, Apple
//! profiles) with the MTA-STS policy (RFC 8461). JMAP (RFC 8620) will join them.
//! [`router`] holds the routes; [`server::run`] owns the socket, TLS, timeouts, the
//! connection limit and shutdown. [`plain`] is port 80: ACME's HTTP-01 answers and a
//! redirect to HTTPS.

pub mod api;
pub mod autoconfig;
pub mod jmap;
mod options;
pub mod plain;
pub mod reference;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hameau_directory::dns::DnsOptions;
use hameau_directory::{AuthLimiter, Directory};
use hameau_store::Store;
use hameau_telemetry::Registry;
use subtle::ConstantTimeEq;

pub use autoconfig::ClientSettings;
pub use options::Options;

#[cfg(test)]
mod tests;
pub use plain::run_plain;
pub use server::run;

/// The time, as the binary reads it (only the binary reads the clock).
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_s(&self) -> u64;
}

/// The address of the client of a request, set by the driver.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The HTTPS listener's counters (`protocol="https"`).
pub type HttpMetrics = hameau_telemetry::ServiceMetrics;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub directory: Directory,
    pub limiter: Arc<AuthLimiter>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    pub metrics: HttpMetrics,
    /// The `[http]` section: the body limit and the metrics token are the routes'.
    pub options: Arc<Options>,
    /// How the DNS records a domain needs are written (its MX host).
    pub dns: DnsOptions,
    /// The outbound queue, for its administration. A retry, a release or a brake lifted
    /// wakes the delivery worker through the store, on whichever node it runs.
    pub queue: hameau_queue::Queue,
    /// The host name and ports autoconfiguration gives mail clients.
    pub client: ClientSettings,
    /// The operator's backup jobs (`/api/v1/backups`), kept for polling.
    pub backups: Arc<api::backups::Jobs>,
    /// The operator's moves of tenants between clusters (`/api/v1/tenants/{id}/move`),
    /// kept for polling.
    pub moves: Arc<api::clusters::Moves>,
    /// The server's import jobs (`/api/v1/imports`); absent in the local CLI's
    /// in-process router, where no server runs to hold them.
    pub imports: Option<Arc<hameau_migrate::Jobs>>,
    /// The server's one mail model: a released message is delivered through it (and wakes
    /// the IMAP sessions of its accounts).
    pub mail: hameau_mailbox::Mail,
    /// The messages the filter held (`/api/v1/quarantine`).
    pub quarantine: hameau_filter::Quarantine,
    /// Each tenant's filter settings (`/api/v1/tenants/{id}/filter`): the same handle as
    /// the MX's, so that a change applies to the next message.
    pub filter_settings: hameau_filter::Settings,
    /// The `[jmap]` limits: what one JMAP request may cost.
    pub jmap: Arc<hameau_jmap::mail::Services>,
    /// The JMAP requests under way, per account (`maxConcurrentRequests`).
    pub jmap_in_flight: Arc<jmap::InFlight>,
}

/// Every route of the listener.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api::api().split_for_parts();
    let openapi_json = serde_json::to_string(&openapi).expect("the OpenAPI document serialises");
    let request_bytes_max = state.options.request_bytes_max;
    api.route(
        "/api/v1/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json) }),
    )
    .route("/healthz", get(healthz))
    .route("/metrics", get(metrics))
    .merge(autoconfig::routes(state.options.autodiscover_request_bytes_max))
    .merge(jmap::routes(state.jmap.limits.request_bytes_max))
    .fallback(|| async { api::Problem::new(StatusCode::NOT_FOUND, "no such resource") })
    .method_not_allowed_fallback(|| async {
        api::Problem::new(StatusCode::METHOD_NOT_ALLOWED, "this method is not allowed on this resource")
    })
    .layer(DefaultBodyLimit::max(request_bytes_max))
    .with_state(state)
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

/// The counters, for Prometheus, behind `Authorization: Bearer <metrics token>`.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = state.options.metrics_token() else {
        return api::Problem::new(StatusCode::NOT_FOUND, "metrics are disabled (http.metrics_token is not set)")
            .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let matches = presented.len() == expected.len() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
    if !matches {
        state.metrics.auth_failures.inc();
        return api::Problem::new(StatusCode::UNAUTHORIZED, "the metrics token is required").into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.registry.render()).into_response()
}

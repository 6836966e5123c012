//! JMAP on the HTTPS listener (issue 15; docs/jmap.md): the session resource at
//! `/.well-known/jmap`, the API endpoint `/jmap/api`, upload and download (`blob`), the
//! EventSource push channel (`eventsource`), and the task that pushes to
//! PushSubscriptions (`push`), over `hameau-jmap`.
//!
//! - Authentication is HTTP Basic over TLS with the account's address and its password or
//!   an application password (`Directory::login`, counted by the shared `AuthLimiter` per
//!   client address and per account, as IMAP and submission: past a few failures
//!   attempts are slowed, then refused with 429 and `Retry-After`), or a bearer token: an
//!   API key of the account's (`hameau api-key create --user ADDRESS`, or the admin API),
//!   with its expiry and revocation, counted per client address as the admin API's keys.
//! - The request body is bounded by `jmap.request_bytes_max`: past it, the RFC's `limit`
//!   error naming `maxSizeRequest`, never a body read whole; an upload by
//!   `jmap.upload_bytes_max` (`maxSizeUpload`), read as it streams in.
//! - An account's requests, uploads and event streams are counted apart ([`InFlight`]).

mod blob;
mod eventsource;
pub mod push;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use hameau_directory::Error as DirectoryError;
use hameau_jmap::api::User;
use hameau_jmap::{Request, RequestError};

use crate::api::Problem;
use crate::{AppState, PeerAddr};

/// What each account has under way, counted apart: API requests
/// (`maxConcurrentRequests`, `jmap.concurrent_requests_max`), uploads
/// (`maxConcurrentUpload`, the same number) and EventSource streams
/// (`jmap.event_sources_per_account_max`); the server's stop, which ends the streams; and
/// the accounts already opened, whose mailboxes a request need not ensure again.
/// One entry per account with something under way: bounded by the listener's connections.
#[derive(Debug, Default)]
pub struct InFlight {
    requests: Counts,
    uploads: Counts,
    event_sources: Counts,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Accounts whose mailboxes are known to exist (`Mail::ensure_account` ran since the
    /// start): the next request skips it. At most [`OPENED_ACCOUNTS_MAX`], emptied when
    /// full (an account's mailboxes, once made, are never all gone: a role mailbox cannot
    /// be destroyed).
    opened: Mutex<std::collections::HashSet<u64>>,
}

/// Accounts [`InFlight::opened`] remembers: 100,000, 8 bytes each, more than a server's.
const OPENED_ACCOUNTS_MAX: usize = 100_000;

#[derive(Debug, Default)]
struct Counts(Mutex<HashMap<u64, u64>>);

/// What is counted in [`InFlight`].
#[derive(Clone, Copy, Debug)]
enum Kind {
    Request,
    Upload,
    EventSource,
}

/// One request, upload or stream counted in [`InFlight`] until dropped.
struct Slot {
    in_flight: Arc<InFlight>,
    kind: Kind,
    account: u64,
}

impl InFlight {
    fn counts(&self, kind: Kind) -> &Counts {
        match kind {
            Kind::Request => &self.requests,
            Kind::Upload => &self.uploads,
            Kind::EventSource => &self.event_sources,
        }
    }

    /// Counts one of `kind` for `account`, or `None` when it has `max` under way already.
    fn enter(self: &Arc<Self>, kind: Kind, account: u64, max: u64) -> Option<Slot> {
        let mut running = self.counts(kind).0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = running.entry(account).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Slot { in_flight: self.clone(), kind, account })
    }

    /// Whether `account` was opened since the start.
    fn opened(&self, account: u64) -> bool {
        self.opened.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(&account)
    }

    /// Remembers that `account`'s mailboxes exist.
    fn mark_opened(&self, account: u64) {
        let mut opened = self.opened.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if opened.len() >= OPENED_ACCOUNTS_MAX {
            opened.clear();
        }
        opened.insert(account);
    }

    /// Ends the event streams: the server is stopping.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let counts = self.in_flight.counts(self.kind);
        let mut running = counts.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = running.get_mut(&self.account) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.account);
            }
        }
    }
}

/// The routes, with the request body bounded by `request_bytes_max` (`jmap.request_bytes_max`);
/// an upload reads its body itself, within `jmap.upload_bytes_max`.
pub fn routes(request_bytes_max: u64) -> Router<AppState> {
    // One byte more than the limit is read, so that a body over it is told apart.
    let read_max = usize::try_from(request_bytes_max).unwrap_or(usize::MAX).saturating_add(1);
    Router::new()
        .route("/.well-known/jmap", get(session))
        .route("/jmap/session", get(session))
        .route("/jmap/api", post(api))
        .layer(DefaultBodyLimit::max(read_max))
        .route("/jmap/upload/{account_id}", post(blob::upload))
        .route("/jmap/download/{account_id}/{blob_id}/{name}", get(blob::download))
        .route("/jmap/eventsource", get(eventsource::event_source))
}

/// The account a request authenticated as: by HTTP Basic (the address and a password or
/// application password), or by a bearer token (a user-scoped API key of the account).
struct Authenticated(User);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let account = if let Some(token) = crate::api::bearer_token(parts) {
            let checked = crate::api::check_bearer(parts, state, &token, |now| {
                state.directory.authenticate_account_key(&token, now)
            })
            .await;
            match checked {
                Ok(account) => account,
                Err(problem) if problem.status == StatusCode::UNAUTHORIZED.as_u16() => {
                    return Err(unauthorized(
                        "the token is not valid (unknown, revoked, expired, or not an account's API key)",
                    ));
                }
                Err(problem) => return Err(problem.into_response()),
            }
        } else {
            let Some((address, password)) = basic_credentials(parts) else {
                return Err(unauthorized(
                    "the account's address and password (HTTP Basic), or an API key of the account (Bearer), are required",
                ));
            };
            basic_login(parts, state, &address, &password).await?
        };
        // As an IMAP login: the tenant's quota, and the account's mailboxes made on its
        // first use.
        let tenant_bytes_max = match state.directory.resolve_recipient(&account.address).await {
            Ok(recipient) => recipient.and_then(|recipient| recipient.tenant_quota_bytes),
            Err(e) => return Err(unavailable("reading the tenant's quota", &e)),
        };
        if !state.jmap_in_flight.opened(account.id) {
            if let Err(e) = state.jmap.mail.ensure_account(account.id, state.clock.now_s()).await {
                return Err(unavailable("creating the account's mailboxes", &e));
            }
            state.jmap_in_flight.mark_opened(account.id);
        }
        let quota = hameau_mailbox::Quota {
            account_bytes_max: account.quota_bytes,
            tenant: Some(account.tenant.clone()),
            tenant_bytes_max,
        };
        Ok(Authenticated(User {
            account: account.id,
            address: account.address,
            quota,
            display_name: account.display_name,
            may_send_as: account.may_send_as,
        }))
    }
}

/// An HTTP Basic login, counted by the shared `AuthLimiter` as every password login.
async fn basic_login(
    parts: &Parts,
    state: &AppState,
    address: &str,
    password: &str,
) -> Result<hameau_directory::Account, Response> {
    let peer = parts.extensions.get::<PeerAddr>().map(|peer| peer.0.ip());
    let peer = peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match state.directory.login(peer, address, password, state.clock.now_s()).await {
        Ok(account) => Ok(account),
        Err(DirectoryError::Refused { retry_after_s }) => {
            state.metrics.auth_refused.inc();
            let mut response = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins: try again in {retry_after_s} s"),
            )
            .into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            Err(response)
        }
        Err(DirectoryError::Unauthenticated) => {
            state.metrics.auth_failures.inc();
            Err(unauthorized("wrong address or password"))
        }
        Err(e) => {
            tracing::error!(error = %e, "jmap: authentication failed");
            Err(Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the server cannot check passwords now").into_response())
        }
    }
}

/// 503 for a failure of the server's own at login, logged with `what` it was doing.
fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "jmap: {what}");
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the server cannot open the account now").into_response()
}

/// 401 with both challenges: Basic (a password) and Bearer (an API key of the account).
fn unauthorized(detail: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, detail).into_response();
    let headers = response.headers_mut();
    headers.remove(header::WWW_AUTHENTICATE);
    headers
        .append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Hameau JMAP\", charset=\"UTF-8\""));
    headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"Hameau JMAP\""));
    response
}

/// `Authorization: Basic base64(address:password)` (RFC 7617), the password as given.
fn basic_credentials(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (address, password) = decoded.split_once(':')?;
    Some((address.to_string(), password.to_string()))
}

/// The base of the session's URLs: `https://` and the host the client reached (its `Host`
/// header when it is a plain host and port), else the server's host name.
fn base_url(parts_host: Option<&HeaderValue>, state: &AppState) -> String {
    let host = parts_host
        .and_then(|value| value.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 260
                && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or(&state.client.host);
    format!("https://{host}")
}

async fn session(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    headers: axum::http::HeaderMap,
) -> Response {
    let base = base_url(headers.get(header::HOST), &state);
    let session = hameau_jmap::api::session(&user, &base, &state.jmap.limits);
    let mut response = axum::Json(session).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store"));
    response
}

async fn api(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return request_error(&RequestError::Limit {
                limit: "maxSizeRequest",
                detail: format!("the request is over {} bytes", state.jmap.limits.request_bytes_max),
            });
        }
        Err(rejection) => {
            return Problem::new(
                rejection.status(),
                format!("the request body could not be read: {}", rejection.body_text()),
            )
            .into_response();
        }
    };
    let max = state.jmap.limits.concurrent_requests_max;
    let Some(_running) = state.jmap_in_flight.enter(Kind::Request, user.account, max) else {
        return request_error(&RequestError::Limit {
            limit: "maxConcurrentRequests",
            detail: format!(
                "this account has {} requests under way already",
                state.jmap.limits.concurrent_requests_max
            ),
        });
    };
    let request = match Request::parse(&body, &state.jmap.limits, &hameau_jmap::api::CAPABILITIES) {
        Ok(request) => request,
        Err(error) => return request_error(&error),
    };
    let session_state = hameau_jmap::api::session_state(&user, &state.jmap.limits);
    let response = hameau_jmap::api::run(request, &user, &state.jmap, state.clock.now_s(), &session_state).await;
    axum::Json(response).into_response()
}

/// A request-level error: its problem details document, status 400 (RFC 8620 §3.6.1).
fn request_error(error: &RequestError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, axum::Json(error.to_json())).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{InFlight, Kind};

    #[test]
    fn an_account_runs_at_most_its_concurrent_requests() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.enter(Kind::Request, 1, 2).expect("one");
        let second = in_flight.enter(Kind::Request, 1, 2).expect("two");
        assert!(in_flight.enter(Kind::Request, 1, 2).is_none(), "a third waits for one to end");
        assert!(in_flight.enter(Kind::Request, 2, 2).is_some(), "another account is not held back");
        let stream = in_flight.enter(Kind::EventSource, 1, 1).expect("streams are counted apart");
        assert!(in_flight.enter(Kind::EventSource, 1, 1).is_none());
        drop(first);
        let third = in_flight.enter(Kind::Request, 1, 2).expect("room again");
        drop((second, third, stream));
        assert!(in_flight.requests.0.lock().unwrap().is_empty(), "no entry left for idle accounts");
        assert!(in_flight.event_sources.0.lock().unwrap().is_empty());
    }
}

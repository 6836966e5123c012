//! The admin API under `/api/v1/`: JSON over HTTPS, bearer API keys, errors as
//! `application/problem+json` (RFC 9457), described by an OpenAPI 3.1 document generated
//! from these handlers (utoipa), so that the document cannot drift from the routes.
//!
//! Handlers only translate: the directory checks every rule and every scope.

pub mod backups;
pub mod clusters;
mod filter;
pub mod forget;
mod handlers;
mod imports;
pub mod jobs;
mod quarantine;
mod queue;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hameau_directory::{AuthLimiter, Principal, Verdict};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::{AppState, PeerAddr};

pub use handlers::routes;

/// An error as RFC 9457 describes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person to read.
    pub detail: String,
    #[serde(skip)]
    retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Problem {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            retry_after_s: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after_s;
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"hameau\""));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<hameau_directory::Error> for Problem {
    fn from(error: hameau_directory::Error) -> Problem {
        use hameau_directory::Error as E;
        let status = match &error {
            E::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::NotFound { .. } => StatusCode::NOT_FOUND,
            E::Exists { .. } | E::Conflict(_) => StatusCode::CONFLICT,
            E::Forbidden(_) => StatusCode::FORBIDDEN,
            E::Unauthenticated => StatusCode::UNAUTHORIZED,
            E::Busy => StatusCode::SERVICE_UNAVAILABLE,
            E::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            E::Refused { .. } => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %error, "admin API request failed");
            return Problem::new(status, "internal error: see the server's log");
        }
        let retry_after_s = match &error {
            E::Refused { retry_after_s } => Some(*retry_after_s),
            _ => None,
        };
        Problem { retry_after_s, ..Problem::new(status, error.to_string()) }
    }
}

/// A JSON body whose rejections are problems: malformed JSON is 400 with the line and
/// column, a body of the wrong shape (unknown field, wrong type) 422, too large 413,
/// without `Content-Type: application/json` 415.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        // Parsed as a value first: every request body is an object, and serde would
        // otherwise take a struct from an array of its fields.
        let value = match Json::<serde_json::Value>::from_request(request, state).await {
            Ok(Json(value)) => value,
            Err(rejection) => return Err(json_problem(rejection)),
        };
        if !value.is_object() {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "the request body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(ApiJson)
            .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("the request body does not fit: {e}")))
    }
}

fn json_problem(rejection: JsonRejection) -> Problem {
    let status = match &rejection {
        JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
        _ => rejection.status(),
    };
    Problem::new(status, rejection.body_text())
}

/// Query parameters, rejected as 400 problems.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|query| ApiQuery(query.0))
            .map_err(|rejection: QueryRejection| Problem::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}

/// Path parameters, rejected as 400 problems.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|path| ApiPath(path.0))
            .map_err(|rejection: PathRejection| Problem::new(StatusCode::BAD_REQUEST, rejection.body_text()))
    }
}

/// The authenticated caller: `Authorization: Bearer hmk_…`. Failures are counted per
/// client address: past a few, attempts are slowed down, then refused with 429. Each
/// failure remembers the key id it came with, and a success takes back only the failures
/// of its own key: a caller's valid key never clears what its other attempts added.
/// There is no count per key: a 256-bit secret cannot be guessed, and a lockout per key
/// would let anyone who saw a key's id lock its owner out.
pub struct Caller(pub Principal);

/// Marks a request made in-process by the local CLI (`hameau tenant …` on the data
/// directory), which acts as the operator: whoever can open the data directory is. Only
/// code in this process can attach it; no network request carries it.
#[derive(Clone, Copy, Debug)]
pub struct LocalOperator;

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if parts.extensions.get::<LocalOperator>().is_some() && parts.extensions.get::<PeerAddr>().is_none() {
            return Ok(Caller(Principal::Operator));
        }
        let Some(token) = bearer_token(parts) else {
            return Err(Problem::new(StatusCode::UNAUTHORIZED, "an API key is required: Authorization: Bearer hmk_…"));
        };
        let principal =
            check_bearer(parts, state, &token, |now| state.directory.authenticate_api_key(&token, now)).await?;
        Ok(Caller(principal))
    }
}

/// A bearer token (an API key) checked by `authenticate` at the server's time, failures
/// counted by the shared limiter per client address, each under the token's key id (see
/// [`Caller`]): 401 for a token that is not valid, 429 with `Retry-After` past the limit.
pub(crate) async fn check_bearer<T, F, Fut>(
    parts: &Parts,
    state: &AppState,
    token: &str,
    authenticate: F,
) -> Result<T, Problem>
where
    F: FnOnce(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, hameau_directory::Error>>,
{
    let peer = parts.extensions.get::<PeerAddr>().map(|peer| peer.0.ip());
    let limit_key = peer.map(AuthLimiter::ip_key).unwrap_or_default();
    let pair = key_pair_name(token);
    let now = state.clock.now_s();
    match state.limiter.check(&limit_key, now) {
        Verdict::Refuse { retry_after_s } => {
            state.metrics.auth_refused.inc();
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentications from this address: try again in {retry_after_s} s"),
            );
            problem.retry_after_s = Some(retry_after_s);
            return Err(problem);
        }
        Verdict::Allow { delay } if !delay.is_zero() => tokio::time::sleep(delay).await,
        Verdict::Allow { .. } => {}
    }
    match authenticate(now).await {
        Ok(authenticated) => {
            state.limiter.succeeded_with(&limit_key, &pair);
            Ok(authenticated)
        }
        Err(hameau_directory::Error::Unauthenticated) => {
            state.limiter.failed_with(&limit_key, &pair, now);
            state.metrics.auth_failures.inc();
            Err(Problem::new(StatusCode::UNAUTHORIZED, "the API key is not valid (unknown, revoked or expired)"))
        }
        Err(e) => Err(e.into()),
    }
}

/// The name a presented token's failures are remembered under: its key id, or one name for
/// every malformed token.
fn key_pair_name(token: &str) -> String {
    let id = token.strip_prefix("hmk_").and_then(|rest| rest.split_once('_')).map(|(id, _)| id);
    match id.filter(|id| id.len() <= 16 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
        Some(id) => format!("api-key:{id}"),
        None => "api-key:malformed".to_string(),
    }
}

pub(crate) fn bearer_token(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Hameau admin API", description = "Tenants, domains, accounts, aliases, application passwords, API keys, the outbound queue, the filter's quarantine and each tenant's filter settings, backups, and imports from the old provider (jobs of the server: they do not survive a restart; an import is resumable, so starting it again copies only what is missing)."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("hmk_<id>_<secret>").build(),
            ),
        );
    }
}

/// The API's routes and their OpenAPI document.
pub fn api() -> OpenApiRouter<AppState> {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let router = routes(OpenApiRouter::with_openapi(doc));
    // Imports from the old provider, run by the server (`api::imports`).
    let router = imports::routes(router);
    // The filter's quarantine and each tenant's filter settings.
    filter::routes(quarantine::routes(router))
}

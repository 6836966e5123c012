//! The quarantine's routes (docs/quarantine.md): list, show, download, release and delete
//! the messages the filter held. The operator acts on every one; a tenant admin on its own
//! tenant's only, and another tenant's message reads exactly as an absent one; a user has
//! no access. The scope checks are `hameau_filter::Quarantine`'s.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hameau_directory::Page;
use hameau_filter::Held;
use hameau_filter::quarantine::{Delivery, ListQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiPath, ApiQuery, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(list_quarantine))
        .routes(routes!(get_held, delete_held))
        .routes(routes!(get_held_raw))
        .routes(routes!(release_held))
}

/// Paging of the quarantine, newest first.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuarantineQuery {
    /// Only this tenant's messages (the operator; a tenant admin sees its own only, and
    /// another tenant's list is empty). Empty means every tenant.
    tenant: Option<String>,
    /// Only the messages held for this address (as given by the sender, any case). A page
    /// may then hold fewer items than `limit`, even none, and still have a `next`.
    recipient: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Messages per page (1 to the server's `page_items_max`; 100 by default).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// A message held by the filter, as the listing shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldMessage {
    pub id: String,
    pub tenant: String,
    /// The envelope sender; empty for a delivery status notification.
    pub sender: String,
    /// The message's From, as it reads (name and address).
    pub from: String,
    pub subject: String,
    /// The recipients it was held for, as the sender gave them.
    pub recipients: Vec<String>,
    /// When it came, seconds since the Unix epoch.
    pub received_at: u64,
    /// When it is deleted unless released, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The filter's verdict, as its `X-Hameau-Filter` header field: action, score, symbols.
    pub verdict: String,
    /// Why it was held, in words.
    pub reason: String,
    /// A release of it is under way.
    pub releasing: bool,
}

/// A held message with its header and the start of its text.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeldMessageDetail {
    #[serde(flatten)]
    pub message: HeldMessage,
    /// The header as it came (and as Hameau added to it), at most 64 KiB.
    pub headers: String,
    /// The start of the text, on one line.
    pub preview: String,
}

/// What a release did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResult {
    /// The recipients whose Inbox received the message.
    pub delivered: Vec<String>,
    /// The recipients skipped: the account was deleted since the message was held.
    pub skipped: Vec<String>,
}

impl HeldMessage {
    fn new(id: String, held: Held) -> HeldMessage {
        let mut recipients: Vec<String> = Vec::with_capacity(held.recipients.len());
        for recipient in held.recipients {
            if !recipients.contains(&recipient.address) {
                recipients.push(recipient.address);
            }
        }
        HeldMessage {
            id,
            tenant: held.tenant,
            sender: held.mail_from,
            from: held.from,
            subject: held.subject,
            recipients,
            received_at: held.received_at,
            expires_at: held.expires_at,
            size: held.size,
            verdict: held.verdict,
            reason: held.reason,
            releasing: held.releasing_since.is_some(),
        }
    }
}

/// A quarantine failure as a problem.
pub(crate) fn filter_problem(error: hameau_filter::Error) -> Problem {
    use hameau_filter::Error as E;
    match error {
        E::NotFound(typed) => hameau_directory::Error::NotFound { what: "held message", name: typed }.into(),
        E::Releasing(typed) => {
            Problem::new(StatusCode::CONFLICT, format!("held message {typed:?} is being released: try again later"))
        }
        E::Invalid(problem) => Problem::new(StatusCode::BAD_REQUEST, problem.to_string()),
        E::Directory(error) => error.into(),
        E::Mail(hameau_mailbox::Error::OverQuota { .. }) => Problem::new(
            StatusCode::CONFLICT,
            "a recipient's mailbox is full: make room, then release the message again",
        ),
        E::Busy => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "too many concurrent changes: try again"),
        error => {
            tracing::error!(error = %error, "admin API: a quarantine request failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: see the server's log")
        }
    }
}

#[utoipa::path(get, path = "/api/v1/quarantine", tag = "quarantine", operation_id = "list_quarantine", params(QuarantineQuery),
    responses((status = 200, body = Page<HeldMessage>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_quarantine(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<QuarantineQuery>,
) -> ApiResult<Json<Page<HeldMessage>>> {
    let limit = state.directory.page_limit(query.limit)?;
    if let Some(after) = query.after.as_deref().filter(|after| after.parse::<u64>().is_err()) {
        return Err(Problem::new(StatusCode::BAD_REQUEST, format!("after: {after:?} is not a cursor of this list")));
    }
    let listed = ListQuery {
        tenant: query.tenant.as_deref(),
        recipient: query.recipient.as_deref(),
        before: query.after.as_deref(),
        limit,
    };
    let listed = state.quarantine.list(&caller, listed).await.map_err(filter_problem)?;
    let items = listed.items.into_iter().map(|(id, held)| HeldMessage::new(id, held)).collect();
    Ok(Json(Page { items, next: listed.next }))
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}", tag = "quarantine", operation_id = "get_held", params(("id" = String, Path, description = "The held message's id")),
    responses((status = 200, body = HeldMessageDetail), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_held(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<HeldMessageDetail>> {
    let shown = state.quarantine.show(&caller, &id).await.map_err(filter_problem)?;
    Ok(Json(HeldMessageDetail {
        message: HeldMessage::new(shown.id, shown.held),
        headers: shown.headers,
        preview: shown.preview,
    }))
}

/// The held message as it came, to open in a mail program (an `.eml` file): with care, it
/// was held for a reason.
#[utoipa::path(get, path = "/api/v1/quarantine/{id}/raw", tag = "quarantine", operation_id = "get_held_raw", params(("id" = String, Path, description = "The held message's id")),
    responses((status = 200, body = String, content_type = "message/rfc822"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_held_raw(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let (_, raw) = state.quarantine.raw(&caller, &id).await.map_err(filter_problem)?;
    let mut response = raw.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("message/rfc822"));
    // The id is digits only (else the message would not have been found).
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"quarantine-{id}.eml\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Delivers the held message to its recipients' Inboxes, as it came (its headers and the
/// filter's verdict kept), then removes it from the quarantine. A recipient whose account
/// was deleted since is skipped and listed.
#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", tag = "quarantine", operation_id = "release_held", params(("id" = String, Path, description = "The held message's id")),
    responses((status = 200, body = ReleaseResult), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn release_held(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReleaseResult>> {
    let delivery = Delivery { mail: &state.mail, directory: &state.directory };
    let released =
        state.quarantine.release(&caller, &id, delivery, state.clock.now_s()).await.map_err(filter_problem)?;
    tracing::info!(id, delivered = ?released.delivered, skipped = ?released.skipped, "admin API: held message released");
    Ok(Json(ReleaseResult { delivered: released.delivered, skipped: released.skipped }))
}

/// Deletes the held message undelivered; the sender is not told.
#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", tag = "quarantine", operation_id = "delete_held", params(("id" = String, Path, description = "The held message's id")),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_held(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.quarantine.delete(&caller, &id, state.clock.now_s()).await.map_err(filter_problem)?;
    tracing::info!(id, "admin API: held message deleted");
    Ok(StatusCode::NO_CONTENT)
}

//! The outbound queue's routes: list, show, retry, hold, release and delete queued
//! messages. The operator acts on every message; a tenant admin on its own tenant's only,
//! and another tenant's message reads exactly as an absent one; a user has no access.
//! The queue shows envelopes and recipients' states, never a message's content.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hameau_directory::{Page, Principal};
use hameau_queue::{Message, QueueId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

/// Longest hold reason, bytes: a sentence, as the API shows it.
const REASON_BYTES_MAX: usize = 200;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(list_queue))
        .routes(routes!(get_queued, delete_queued))
        .routes(routes!(retry_queued))
        .routes(routes!(hold_queued))
        .routes(routes!(release_queued))
        .routes(routes!(list_brakes))
        .routes(routes!(lift_brake))
}

/// A sending brake: an account (or a whole tenant) that went over its sending limits; its
/// queued mail is held and new mail refused until the operator lifts it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendingBrake {
    pub tenant: String,
    /// The account braked; absent when the whole tenant is.
    pub account: Option<String>,
    /// Which limit, in words.
    pub reason: String,
    /// Since when, seconds since the Unix epoch.
    pub since: u64,
}

/// Which brake to lift.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftBrake {
    pub tenant: String,
    /// The braked account's address; absent to lift the tenant's own brake.
    pub account: Option<String>,
}

/// Brakes of one tenant (a tenant admin: its own).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BrakesQuery {
    /// Only this tenant's brakes (the operator; a tenant admin sees its own only).
    tenant: Option<String>,
}

/// The sending brakes on: accounts (or tenants) whose mail is held for sending too much.
#[utoipa::path(get, path = "/api/v1/brakes", tag = "queue", operation_id = "list_brakes", params(BrakesQuery),
    responses((status = 200, body = Vec<SendingBrake>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_brakes(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<BrakesQuery>,
) -> ApiResult<Json<Vec<SendingBrake>>> {
    let Some(tenant) = listed_tenant(&caller, query.tenant.as_deref())? else { return Ok(Json(Vec::new())) };
    let brakes = state.queue.brakes(tenant).await.map_err(|e| queue_problem(e, ""))?;
    let shown = brakes
        .into_iter()
        .map(|brake| SendingBrake {
            tenant: brake.tenant,
            account: brake.address,
            reason: brake.reason,
            since: brake.since,
        })
        .collect();
    Ok(Json(shown))
}

/// Lifts a sending brake (the operator only): the mail it held is due at once, and the
/// account may send again.
#[utoipa::path(post, path = "/api/v1/brakes/lift", tag = "queue", operation_id = "lift_brake", request_body = LiftBrake,
    responses((status = 204), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn lift_brake(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(request): ApiJson<LiftBrake>,
) -> ApiResult<StatusCode> {
    if caller.administered_tenant()?.is_some() {
        return Err(Problem::new(StatusCode::FORBIDDEN, "only the operator lifts a sending brake"));
    }
    let brakes = state.queue.brakes(Some(&request.tenant)).await.map_err(|e| queue_problem(e, ""))?;
    let wanted = request.account.as_deref().map(str::to_ascii_lowercase);
    let Some(brake) = brakes.iter().find(|brake| brake.address.as_deref().map(str::to_ascii_lowercase) == wanted)
    else {
        return Err(Problem::new(StatusCode::NOT_FOUND, "no such sending brake"));
    };
    let released =
        state.queue.lift_brake(&brake.tenant, brake.account, state.clock.now_s()).await.map_err(|e| match e {
            hameau_queue::Error::NoBrake => Problem::new(StatusCode::NOT_FOUND, "no such sending brake"),
            e => queue_problem(e, ""),
        })?;
    tracing::info!(tenant = %brake.tenant, account = ?brake.address, released, "admin API: sending brake lifted");
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of the queue, in id order (the order messages were queued).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Only this tenant's messages (the operator; a tenant admin sees its own only, and
    /// another tenant's list is empty). Empty means every tenant.
    tenant: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Items per page (1 to the server's `page_items_max`; 100 by default).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// A queued message: its envelope and each recipient's state, never its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedMessage {
    pub id: QueueId,
    /// The sender's tenant; absent for the server's own messages.
    pub tenant: Option<String>,
    /// The envelope sender; empty for a delivery status notification.
    pub sender: String,
    /// When it was queued, seconds since the Unix epoch.
    pub queued_at: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The id it was accepted under (the logs and its `Received` field name it).
    pub envelope_id: String,
    /// Why and since when it is held; absent when it is not.
    pub held: Option<QueueHold>,
    /// When it is next tried (or, while a delivery is under way, when another attempt may
    /// take it over); absent while held.
    pub next_attempt_at: Option<u64>,
    pub recipients: Vec<QueuedRecipient>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueHold {
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub since: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedRecipient {
    pub address: String,
    pub state: RecipientState,
    /// When it was delivered or failed for good; absent while pending.
    pub final_at: Option<u64>,
    /// Attempts that ended in a temporary failure.
    pub attempts: u32,
    /// The receiver's last reply (or the local error), on one line.
    pub last_reply: Option<String>,
    /// When it is next tried; absent once final.
    pub next_attempt_at: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    Pending,
    Delivered,
    Failed,
}

/// Why a message is held.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// Shown with the message, e.g. "suspected compromised account".
    pub reason: String,
}

impl QueuedMessage {
    fn new(id: QueueId, message: Message) -> QueuedMessage {
        use hameau_queue::State;
        let recipients = message
            .recipients
            .into_iter()
            .map(|recipient| {
                let (state, final_at) = match recipient.state {
                    State::Pending => (RecipientState::Pending, None),
                    State::Delivered { at } => (RecipientState::Delivered, Some(at)),
                    State::Failed { at } => (RecipientState::Failed, Some(at)),
                };
                QueuedRecipient {
                    address: recipient.address,
                    next_attempt_at: final_at.is_none().then_some(recipient.next_at),
                    state,
                    final_at,
                    attempts: recipient.attempts,
                    last_reply: recipient.last_reply,
                }
            })
            .collect();
        QueuedMessage {
            id,
            tenant: message.tenant,
            sender: message.mail_from,
            queued_at: message.queued_at,
            size: message.size,
            envelope_id: message.envelope_id,
            held: message.held.map(|hold| QueueHold { reason: hold.reason, since: hold.since }),
            next_attempt_at: message.due_at,
            recipients,
        }
    }
}

/// A queue failure as a problem; `typed` is the id as the caller typed it.
fn queue_problem(error: hameau_queue::Error, typed: &str) -> Problem {
    match error {
        hameau_queue::Error::NotFound(_) => not_found(typed),
        hameau_queue::Error::Busy => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the queue was too busy with concurrent changes of this message: try again",
        ),
        error => {
            tracing::error!(error = %error, "admin API: a queue request failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: see the server's log")
        }
    }
}

/// Whose records a list shows: `Some(None)` every tenant's (the operator without
/// `tenant=`), `Some(Some(t))` one tenant's, `None` nothing (a tenant admin asking for
/// another tenant: its list is empty, as an absent tenant's is). An empty `tenant=` is none.
fn listed_tenant<'a>(caller: &'a Principal, asked: Option<&'a str>) -> Result<Option<Option<&'a str>>, Problem> {
    let asked = asked.filter(|asked| !asked.is_empty());
    Ok(match (caller.administered_tenant()?, asked) {
        (Some(own), Some(asked)) if asked != own => None,
        (Some(own), _) => Some(Some(own)),
        (None, asked) => Some(asked),
    })
}

/// Absent and out of scope read the same: the id as typed, both ways.
fn not_found(typed: &str) -> Problem {
    hameau_directory::Error::NotFound { what: "queued message", name: typed.to_string() }.into()
}

/// The message `typed`, if the caller administers its tenant. A user is refused before
/// anything is read.
async fn visible(state: &AppState, caller: &Principal, typed: &str) -> ApiResult<(QueueId, Message)> {
    caller.administered_tenant()?;
    let id: QueueId = typed.parse().map_err(|_| not_found(typed))?;
    let message = state.queue.get(id).await.map_err(|e| queue_problem(e, typed))?.ok_or_else(|| not_found(typed))?;
    if !caller.administers(message.tenant.as_deref())? {
        return Err(not_found(typed));
    }
    Ok((id, message))
}

#[utoipa::path(get, path = "/api/v1/queue", tag = "queue", operation_id = "list_queue", params(QueueQuery),
    responses((status = 200, body = Page<QueuedMessage>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_queue(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<QueueQuery>,
) -> ApiResult<Json<Page<QueuedMessage>>> {
    let limit = state.directory.page_limit(query.limit)?;
    // The cursor is the last id of the previous page.
    let after = match query.after.as_deref() {
        None => None,
        Some(after) => Some(after.parse::<QueueId>().map_err(|_| {
            Problem::new(StatusCode::BAD_REQUEST, format!("after: {after:?} is not a cursor of this list"))
        })?),
    };
    let Some(tenant) = listed_tenant(&caller, query.tenant.as_deref())? else {
        return Ok(Json(Page { items: Vec::new(), next: None }));
    };
    let mut listed = state.queue.list(tenant, after, limit.saturating_add(1)).await.map_err(|e| {
        tracing::error!(error = %e, "admin API: listing the queue failed");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: see the server's log")
    })?;
    let more = listed.len() > limit;
    listed.truncate(limit);
    let next = if more { listed.last().map(|(id, _)| id.to_string()) } else { None };
    let items = listed.into_iter().map(|(id, message)| QueuedMessage::new(id, message)).collect();
    Ok(Json(Page { items, next }))
}

#[utoipa::path(get, path = "/api/v1/queue/{id}", tag = "queue", operation_id = "get_queued", params(("id" = u64, Path, description = "The queue id")),
    responses((status = 200, body = QueuedMessage), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_queued(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<Json<QueuedMessage>> {
    let (id, message) = visible(&state, &caller, &typed).await?;
    Ok(Json(QueuedMessage::new(id, message)))
}

/// Makes the message due at once, every pending recipient with it. A held message is
/// released first (409).
#[utoipa::path(post, path = "/api/v1/queue/{id}/retry", tag = "queue", operation_id = "retry_queued", params(("id" = u64, Path, description = "The queue id")),
    responses((status = 200, body = QueuedMessage), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn retry_queued(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<Json<QueuedMessage>> {
    let (id, message) = visible(&state, &caller, &typed).await?;
    if message.held.is_some() {
        let detail = format!("queued message {typed:?} is held: release it to deliver it");
        return Err(Problem::new(StatusCode::CONFLICT, detail));
    }
    let message = state.queue.retry_now(id, state.clock.now_s()).await.map_err(|e| queue_problem(e, &typed))?;
    Ok(Json(QueuedMessage::new(id, message)))
}

/// Holds the message: it is not tried until released (an attempt under way finishes).
/// Holding a held message keeps its first reason.
#[utoipa::path(post, path = "/api/v1/queue/{id}/hold", tag = "queue", operation_id = "hold_queued", params(("id" = u64, Path, description = "The queue id")), request_body = HoldRequest,
    responses((status = 200, body = QueuedMessage), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn hold_queued(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
    ApiJson(request): ApiJson<HoldRequest>,
) -> ApiResult<Json<QueuedMessage>> {
    let (id, _) = visible(&state, &caller, &typed).await?;
    hameau_directory::model::check_text("reason", &request.reason, REASON_BYTES_MAX)?;
    if request.reason.trim().is_empty() {
        let problem = "must not be empty".to_string();
        return Err(hameau_directory::Error::Invalid { field: "reason", problem }.into());
    }
    let message =
        state.queue.hold(id, &request.reason, state.clock.now_s()).await.map_err(|e| queue_problem(e, &typed))?;
    Ok(Json(QueuedMessage::new(id, message)))
}

/// Releases the message: due at once.
#[utoipa::path(post, path = "/api/v1/queue/{id}/release", tag = "queue", operation_id = "release_queued", params(("id" = u64, Path, description = "The queue id")),
    responses((status = 200, body = QueuedMessage), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn release_queued(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<Json<QueuedMessage>> {
    let (id, _) = visible(&state, &caller, &typed).await?;
    let message = state.queue.release(id, state.clock.now_s()).await.map_err(|e| queue_problem(e, &typed))?;
    Ok(Json(QueuedMessage::new(id, message)))
}

/// Removes the message from the queue undelivered; the sender is not told.
#[utoipa::path(delete, path = "/api/v1/queue/{id}", tag = "queue", operation_id = "delete_queued", params(("id" = u64, Path, description = "The queue id")),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_queued(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let (id, _) = visible(&state, &caller, &typed).await?;
    state.queue.delete(id).await.map_err(|e| queue_problem(e, &typed))?;
    Ok(StatusCode::NO_CONTENT)
}

//! Imports from the old provider as jobs of the server (`/api/v1/imports`): start one
//! account's IMAP pull, follow its progress, read its report, cancel it. The work and the
//! job table are `hameau_migrate`'s (`Jobs`); here are the request's checks and who sees
//! what: the operator every job, a tenant admin its own tenant's (another tenant's job or
//! account reads exactly as an absent one, 404), a user nothing (403).
//!
//! The source's password comes in the body (over TLS), goes to the job's task and nowhere
//! else: it is never stored, logged, echoed in an error nor returned. Jobs live in memory:
//! a restart forgets them, and since the import is resumable a new job copies only what
//! is missing.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hameau_directory::{Page, Principal};
use hameau_migrate::{ImapSource, JobView, Removal, SourceUrl, StartError, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

#[cfg(test)]
mod tests;

/// Longest login on the source, bytes: an address, with room for providers' odd logins.
const USER_BYTES_MAX: usize = 1_000;
/// Longest password on the source, bytes: far above any provider's.
const PASSWORD_BYTES_MAX: usize = 1_000;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router.routes(routes!(list_imports, start_import)).routes(routes!(get_import, delete_import))
}

// Read field by field by `read_request`; the derived `Deserialize` only tells the document
// that no other field is accepted. No `Debug`: it holds the password.
/// An import to start: one Hameau account, filled from one mailbox of the old provider.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartImport {
    /// The Hameau account that receives the mail, e.g. `alice@commune.fr`.
    pub account: String,
    /// The old server: `imaps://host[:port]` (TLS) or `imap://host[:port]` (STARTTLS).
    pub from: String,
    /// The login on the old server.
    pub user: String,
    /// The password on the old server: held in memory for the job's life only, never
    /// stored, logged nor shown.
    pub password: String,
    /// PEM certificates to trust for the old server besides the system's (a private CA).
    pub ca_pem: Option<String>,
}

/// One import job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportJob {
    pub id: String,
    pub tenant: String,
    pub account: String,
    /// The old server, `imaps://host:port` or `imap://host:port`.
    pub source: String,
    /// The login on the old server.
    pub user: String,
    pub state: ImportState,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// Absent while queued.
    pub progress: Option<ImportProgress>,
    /// Once ended: whether everything on the source is in Hameau.
    pub complete: Option<bool>,
    /// Once ended: the verification report (per folder: on the source, copied, already
    /// there, skipped and why, and the comparison of contents; docs/migration.md).
    #[schema(value_type = Option<Object>)]
    pub report: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// Waiting for a slot (`migrate.jobs_concurrent_max` run at once).
    Queued,
    Running,
    /// Asked to stop: it stops between two commits.
    Cancelling,
    /// Ended by itself; `complete` says whether nothing is missing.
    Finished,
    /// Ended by a cancellation or the server's shutdown; a new job resumes it.
    Cancelled,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportPhase {
    Connecting,
    Copying,
    Verifying,
    Done,
}

/// The counters of a job that has started.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportProgress {
    pub phase: ImportPhase,
    /// The source folder being copied or verified.
    pub folder: String,
    /// Messages on the source (every folder's count, read first).
    pub messages_total: u64,
    /// Messages copied, found already there or skipped.
    pub messages_done: u64,
    /// Bytes to copy, as known so far (each folder's when it is reached).
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub elapsed_s: f64,
    pub bytes_per_second: f64,
    pub messages_per_second: f64,
    /// Seconds left at the current rate of messages; absent before the first.
    pub eta_s: Option<f64>,
}

impl ImportJob {
    fn new(view: JobView) -> ImportJob {
        use hameau_migrate::{JobState, Phase};
        let state = match view.state {
            JobState::Queued => ImportState::Queued,
            JobState::Running => ImportState::Running,
            JobState::Cancelling => ImportState::Cancelling,
            JobState::Finished => ImportState::Finished,
            JobState::Cancelled => ImportState::Cancelled,
        };
        let progress = view.progress.map(|snapshot| ImportProgress {
            phase: match snapshot.phase {
                Phase::Connecting => ImportPhase::Connecting,
                Phase::Copying => ImportPhase::Copying,
                Phase::Verifying => ImportPhase::Verifying,
                Phase::Done => ImportPhase::Done,
            },
            folder: snapshot.folder,
            messages_total: snapshot.messages_total,
            messages_done: snapshot.messages_done,
            bytes_total: snapshot.bytes_total,
            bytes_done: snapshot.bytes_done,
            messages_per_second: rate(snapshot.messages_done, snapshot.elapsed_s),
            elapsed_s: finite(snapshot.elapsed_s),
            bytes_per_second: finite(snapshot.bytes_per_second),
            eta_s: snapshot.eta_s.map(finite),
        });
        let complete = view.report.as_ref().map(|report| report.complete);
        let report = view.report.and_then(|report| serde_json::to_value(report).ok());
        ImportJob {
            id: view.id,
            tenant: view.tenant,
            account: view.account,
            source: view.source,
            user: view.user,
            state,
            created_at: view.created_at,
            finished_at: view.finished_at,
            progress,
            complete,
            report,
        }
    }
}

fn rate(count: u64, elapsed_s: f64) -> f64 {
    if elapsed_s > 0.0 { finite(count as f64 / elapsed_s) } else { 0.0 }
}

/// JSON has no infinity nor NaN.
fn finite(value: f64) -> f64 {
    if value.is_finite() { value } else { 0.0 }
}

/// The server's job table: absent where no server runs (the local CLI's in-process router).
fn jobs(state: &AppState) -> ApiResult<&hameau_migrate::Jobs> {
    state.imports.as_deref().ok_or_else(|| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "imports run in the server: call its API (hameau serve)")
    })
}

/// Absent and out of scope read the same.
fn not_found(id: &str) -> Problem {
    hameau_directory::Error::NotFound { what: "import job", name: id.to_string() }.into()
}

/// The job `id` if the caller administers its tenant (a user: 403 before anything).
fn visible(state: &AppState, caller: &Principal, id: &str) -> ApiResult<JobView> {
    caller.administered_tenant()?;
    let view = jobs(state)?.get(id).ok_or_else(|| not_found(id))?;
    if !caller.administers(Some(&view.tenant))? {
        return Err(not_found(id));
    }
    Ok(view)
}

fn invalid(field: &'static str, problem: impl Into<String>) -> Problem {
    hameau_directory::Error::Invalid { field, problem: problem.into() }.into()
}

/// Reads the request field by field, so that no error quotes a value (serde's would quote
/// a password given as a number).
fn read_request(mut body: Map<String, Value>) -> ApiResult<StartImport> {
    let known = ["account", "from", "user", "password", "ca_pem"];
    if let Some(unknown) = body.keys().find(|key| !known.contains(&key.as_str())) {
        let known = known.join(", ");
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the request body does not fit: unknown field {unknown:?} (known: {known})"),
        ));
    }
    let mut text = |field: &'static str, required: bool| -> ApiResult<Option<String>> {
        match body.remove(field) {
            Some(Value::String(text)) => Ok(Some(text)),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(invalid(field, "is required")),
            Some(_) => Err(invalid(field, "must be a string")),
        }
    };
    let request = StartImport {
        account: text("account", true)?.unwrap_or_default(),
        from: text("from", true)?.unwrap_or_default(),
        user: text("user", true)?.unwrap_or_default(),
        password: text("password", true)?.unwrap_or_default(),
        ca_pem: text("ca_pem", false)?,
    };
    // IMAP LOGIN sends them as strings: no control character may end the string early.
    for (field, value, bytes_max) in
        [("user", &request.user, USER_BYTES_MAX), ("password", &request.password, PASSWORD_BYTES_MAX)]
    {
        if value.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        if value.len() > bytes_max {
            return Err(invalid(field, format!("longer than {bytes_max} bytes")));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(field, "must not hold control characters"));
        }
    }
    Ok(request)
}

/// The import jobs the caller may see (the operator: all; a tenant admin: its tenant's),
/// oldest first; at most `migrate.jobs_kept_max`, so on one page.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports", operation_id = "list_imports",
    responses((status = 200, body = Page<ImportJob>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn list_imports(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<Page<ImportJob>>> {
    let own = caller.administered_tenant()?.map(str::to_string);
    let views = jobs(&state)?.list(|tenant| own.as_deref().is_none_or(|own| own == tenant));
    Ok(Json(Page { items: views.into_iter().map(ImportJob::new).collect(), next: None }))
}

/// Starts the import of one old mailbox into one account: every folder with its
/// hierarchy, flags, keywords and dates, then a verification against the source. It runs
/// in the server (queued while `migrate.jobs_concurrent_max` run; a commune may have at
/// most `migrate.jobs_per_tenant_max` queued or running, past which `429`), within
/// `[migrate]`'s throttles and limits. Jobs do not survive a restart: the import is resumable, and the
/// same request later copies only what is missing.
#[utoipa::path(post, path = "/api/v1/imports", tag = "imports", operation_id = "start_import", request_body = StartImport,
    responses((status = 202, body = ImportJob), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn start_import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<ImportJob>)> {
    caller.administered_tenant()?;
    let jobs = jobs(&state)?;
    let request = read_request(body)?;
    // Not quoted: a URL with a password in it (`imaps://user:secret@host`) is refused.
    let url = SourceUrl::parse(&request.from, false).map_err(|_| {
        invalid("from", "must be imaps://host[:port] (TLS) or imap://host[:port] (STARTTLS), nothing else")
    })?;
    let tls = jobs.client_tls(request.ca_pem.as_deref()).map_err(|e| invalid("ca_pem", e.to_string()))?;
    let account = state.directory.get_account(&caller, &request.account).await?;
    let tenant = state.directory.get_tenant(&caller, &account.tenant).await?;
    let target = Target {
        account: account.id,
        address: account.address.clone(),
        quota: hameau_mailbox::Quota {
            account_bytes_max: account.quota_bytes,
            tenant: Some(account.tenant.clone()),
            tenant_bytes_max: tenant.quota_bytes,
        },
    };
    let source = ImapSource { url, user: request.user, password: request.password, tls };
    let view = jobs.start(&account.tenant, target, source).map_err(|e| {
        // A full table (the server's or the commune's) empties as jobs finish: retry later.
        let (status, retry_after_s) = match e {
            StartError::Full(_) => (StatusCode::SERVICE_UNAVAILABLE, Some(60)),
            StartError::TenantFull(_) => (StatusCode::TOO_MANY_REQUESTS, Some(60)),
            _ => (StatusCode::SERVICE_UNAVAILABLE, None),
        };
        let mut problem = Problem::new(status, e.to_string());
        problem.retry_after_s = retry_after_s;
        problem
    })?;
    tracing::info!(job = %view.id, account = %view.account, source = %view.source, "admin API: import started");
    Ok((StatusCode::ACCEPTED, Json(ImportJob::new(view))))
}

/// A job: its state, its progress while it runs (messages, bytes, rates, time left, phase)
/// and its report once ended.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports", operation_id = "get_import", params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = ImportJob), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn get_import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ImportJob>> {
    Ok(Json(ImportJob::new(visible(&state, &caller, &id)?)))
}

/// Cancels a job that has not ended (202: it stops between two commits, and what was
/// copied stays; a new job resumes), or forgets one that has, report and all (204).
#[utoipa::path(delete, path = "/api/v1/imports/{id}", tag = "imports", operation_id = "delete_import", params(("id" = String, Path, description = "The job's id")),
    responses((status = 202, body = ImportJob), (status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    visible(&state, &caller, &id)?;
    match jobs(&state)?.cancel_or_forget(&id) {
        Some(Removal::Cancelling(view)) => {
            tracing::info!(job = %view.id, account = %view.account, "admin API: import cancelled");
            Ok((StatusCode::ACCEPTED, Json(ImportJob::new(*view))).into_response())
        }
        Some(Removal::Forgotten) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(not_found(&id)),
    }
}

//! The operator's backup jobs (`/api/v1/backups`): a running server makes an online
//! backup of its store, since only the process that holds the store can take its snapshot
//! (docs/backup.md says why this and not a second RocksDB reader). A job runs in the
//! background; the caller polls it. The jobs are kept in memory, the last
//! [`JOBS_KEPT_MAX`](super::jobs::JOBS_KEPT_MAX): a restart forgets them, the backups stay in their set.
//!
//! Backups hold every tenant's mail, so only the operator starts or reads them. As for
//! the queue, a user is refused (403) before anything is read; a tenant admin may not start
//! one (403), its list is empty and every job reads as an absent one (404, byte for byte):
//! no job is of its tenant.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hameau_backup::{BackupOptions, Encryption, Progress};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::{JobState, JobTable, operator_only};
use super::{ApiJson, ApiPath, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router.routes(routes!(list_backups, start_backup)).routes(routes!(get_backup))
}

/// The backup jobs started through the API, shared by the handlers ([`AppState::backups`]).
#[derive(Default)]
pub struct Jobs {
    table: JobTable<BackupJob, Arc<Progress>>,
    /// The `[backup]` section: the limits every job runs with.
    limits: hameau_backup::Limits,
    /// Why no backup can run here, if so (mail spread over several clusters).
    refusal: Option<String>,
}

impl Jobs {
    pub fn new(limits: hameau_backup::Limits) -> Jobs {
        Jobs { table: JobTable::default(), limits, refusal: None }
    }

    /// Jobs that refuse every backup, saying `reason` (409).
    pub fn refusing(mut self, reason: String) -> Jobs {
        self.refusal = Some(reason);
        self
    }
}

/// What to back up into.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBackup {
    /// The backup set on the server's machine: an absolute path the server may write (made
    /// if missing).
    pub to: String,
    /// A full backup even when the set holds one (else incremental on its last).
    #[serde(default)]
    pub full: bool,
    /// Encrypt to this age X25519 recipient (`age1…`).
    pub recipient: Option<String>,
    /// Encrypt under this passphrase (age's scrypt).
    pub passphrase: Option<String>,
}

/// A backup job.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupJob {
    pub id: u64,
    pub state: JobState,
    /// The backup set.
    pub to: String,
    /// While running: how far it is.
    pub progress: Option<BackupProgress>,
    /// Once done: what was written.
    pub report: Option<BackupReport>,
    /// Once failed: why.
    pub error: Option<String>,
}

/// How far a running backup is.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupProgress {
    /// Keys read from the snapshot.
    pub keys: u64,
    /// Messages listed from the snapshot (written, or already in the chain).
    pub blobs: u64,
}

/// A written backup, as `hameau backup` prints it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupReport {
    /// The backup's directory name in the set (`000001-full`, …).
    pub name: String,
    pub path: String,
    /// `full` or `incremental`.
    pub kind: String,
    /// The store's version the snapshot showed.
    pub store_version: u64,
    /// The backup an incremental one is based on.
    pub base: Option<String>,
    pub counts: BackupCounts,
    /// Bytes written, every file counted.
    pub bytes: u64,
    /// Why a full backup was made where an incremental one was asked for, if so.
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BackupCounts {
    /// Records written (every key for a full backup, the changes for an incremental one).
    pub records: u64,
    /// Keys the store held.
    pub keys: u64,
    /// Message files written in this backup.
    pub blobs_written: u64,
    /// Messages the store held.
    pub blobs: u64,
    /// Keys gone since the base.
    pub deleted_keys: u64,
    /// Lines of the index.
    pub index_lines: u64,
}

/// The jobs the server remembers, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupJobList {
    pub items: Vec<BackupJob>,
}

impl From<hameau_backup::Report> for BackupReport {
    fn from(report: hameau_backup::Report) -> BackupReport {
        let counts = report.counts;
        BackupReport {
            name: report.name,
            path: report.path.display().to_string(),
            kind: report.kind.as_str().to_string(),
            store_version: report.store_version,
            base: report.base,
            counts: BackupCounts {
                records: counts.records,
                keys: counts.keys,
                blobs_written: counts.blobs_written,
                blobs: counts.blobs,
                deleted_keys: counts.deleted_keys,
                index_lines: counts.index_lines,
            },
            bytes: report.bytes,
            note: report.note,
        }
    }
}

/// Starts a backup of the whole store into a backup set on the server's machine; poll the
/// job it answers. One backup runs at a time (409 while one does).
#[utoipa::path(post, path = "/api/v1/backups", tag = "backups", operation_id = "start_backup", request_body = StartBackup,
    responses((status = 202, body = BackupJob), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn start_backup(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(request): ApiJson<StartBackup>,
) -> ApiResult<(StatusCode, Json<BackupJob>)> {
    operator_only(&caller, "starts a backup")?;
    if let Some(reason) = &state.backups.refusal {
        return Err(Problem::new(StatusCode::CONFLICT, reason.clone()));
    }
    let to = PathBuf::from(&request.to);
    if !to.is_absolute() {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "to must be an absolute path"));
    }
    let encryption = match (request.recipient, request.passphrase) {
        (Some(_), Some(_)) => {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "give recipient or passphrase, not both"));
        }
        (Some(recipient), None) => Some(Encryption::Recipient(recipient)),
        (None, Some(passphrase)) => Some(Encryption::Passphrase(passphrase)),
        (None, None) => None,
    };
    let jobs = state.backups.clone();
    let progress = Arc::new(Progress::default());
    let job = jobs
        .table
        .start(progress.clone(), |id| BackupJob {
            id,
            state: JobState::Running,
            to: request.to.clone(),
            progress: None,
            report: None,
            error: None,
        })
        .ok_or_else(|| Problem::new(StatusCode::CONFLICT, "a backup is running already"))?;
    let options =
        BackupOptions { full: request.full, encryption, limits: jobs.limits.clone(), progress: Some(progress) };
    let (store, now_s, id) = (state.store.clone(), state.clock.now_s(), job.id);
    let mut finished = job.clone();
    tokio::spawn(async move {
        match hameau_backup::backup(&store, &to, &options, now_s).await {
            Ok(report) => {
                tracing::info!(backup = %report.name, records = report.counts.records, blobs = report.counts.blobs_written, "backup written");
                finished.state = JobState::Done;
                finished.report = Some(report.into());
            }
            Err(e) => {
                tracing::error!(error = %e, to = %to.display(), "backup failed");
                finished.state = JobState::Failed;
                finished.error = Some(e.to_string());
            }
        }
        jobs.table.finish(id, finished);
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// One backup job: its progress while it runs, then its report or its error.
#[utoipa::path(get, path = "/api/v1/backups/{id}", tag = "backups", operation_id = "get_backup", params(("id" = u64, Path, description = "The job id")),
    responses((status = 200, body = BackupJob), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_backup(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<Json<BackupJob>> {
    let (mut job, progress) = state.backups.table.get_for(&caller, &typed, "backup")?;
    if let Some(progress) = progress {
        job.progress = Some(BackupProgress {
            keys: progress.keys.load(Ordering::Relaxed),
            blobs: progress.blobs.load(Ordering::Relaxed),
        });
    }
    Ok(Json(job))
}

/// The backup jobs this server remembers (since it started, the last 16), oldest first;
/// none for a tenant admin.
#[utoipa::path(get, path = "/api/v1/backups", tag = "backups", operation_id = "list_backups",
    responses((status = 200, body = BackupJobList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_backups(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<BackupJobList>> {
    Ok(Json(BackupJobList { items: state.backups.table.list_for(&caller)? }))
}

//! Tenants over several database clusters (`[store.clusters]`, docs/storage.md), for the
//! operator's scripts: where each tenant's mail is (`/api/v1/clusters`), and moving a
//! tenant to another cluster while every node serves it (`/api/v1/tenants/{id}/move`, a
//! job polled at `/api/v1/moves/{id}`). `hameau cluster list|move` calls the same
//! functions ([`placements`], [`move_tenant`]).
//!
//! Only the operator sees or moves where mail is: the map names every tenant. A user is
//! refused (403) before anything is read, as a tenant admin is for the map; a tenant admin
//! may not move its own tenant (403), reads another tenant as an absent one (404, as every
//! route does), lists no move job and reads each as an absent one (404, as for backups).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hameau_directory::{Directory, Principal};
use hameau_mailbox::{AccountTenants, AccountsOf, Beside, Mail, MoveReport, TenantOf};
use hameau_store::placement::{Clusters, MAIN};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::{JobState, JobTable, operator_only};
use super::{ApiJson, ApiPath, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

/// The longest a move keeps the copy it left behind (`grace_s`): an hour.
pub const GRACE_S_MAX: u64 = 3600;

/// Tenants listed per page of the directory while the map is made.
const TENANTS_PAGE: usize = 500;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(get_clusters))
        .routes(routes!(start_move))
        .routes(routes!(list_moves))
        .routes(routes!(get_move))
}

/// The clusters and where each tenant's mail is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterMap {
    /// The clusters' names, `main` (the control store) included.
    pub clusters: Vec<String>,
    /// Every tenant, by id.
    pub tenants: BTreeMap<String, TenantPlace>,
}

/// Where a tenant's mail is.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPlace {
    pub cluster: String,
    /// The cluster it is being moved to, while a move pauses its mail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
}

/// Where every tenant's mail is: the placement map, and `main` for a tenant it does not
/// name.
pub async fn placements(clusters: &Clusters, directory: &Directory) -> Result<ClusterMap, hameau_directory::Error> {
    let placed = clusters.placed().await.map_err(hameau_directory::Error::Store)?;
    let mut tenants = BTreeMap::new();
    let mut after: Option<String> = None;
    loop {
        let page = directory.list_tenants(&Principal::Operator, after.as_deref(), Some(TENANTS_PAGE)).await?;
        for tenant in page.items {
            let place = match placed.get(&tenant.id) {
                Some(place) => TenantPlace { cluster: place.cluster.clone(), moving_to: place.moving_to.clone() },
                None => TenantPlace { cluster: MAIN.to_string(), moving_to: None },
            };
            tenants.insert(tenant.id, place);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(ClusterMap { clusters: clusters.names().map(str::to_string).collect(), tenants })
}

/// Moves `tenant`'s mail to the cluster `to` (`Mail::move_tenant`), with the migration's
/// records of its accounts, which live beside their mail. The caller has checked that the
/// tenant exists.
pub async fn move_tenant(
    mail: &Mail,
    tenant: &str,
    to: &str,
    grace: Duration,
) -> Result<MoveReport, hameau_mailbox::Error> {
    let beside = Beside {
        prefix_of: &hameau_migrate::destination::account_records_prefix,
        account_of: &hameau_migrate::destination::record_account,
    };
    mail.move_tenant(tenant, to, grace, &beside).await
}

/// The directory tells the tenant of an account, for the mail model's placement
/// (`Mail::with_placement`).
#[derive(Debug)]
pub struct DirectoryTenants(pub Directory);

impl AccountTenants for DirectoryTenants {
    fn tenant_of(&self, account: u64) -> TenantOf<'_> {
        Box::pin(async move { self.0.account_tenant(account).await.map_err(directory_error) })
    }

    fn accounts_of<'a>(&'a self, tenant: &'a str) -> AccountsOf<'a> {
        Box::pin(async move { self.0.tenant_account_ids(tenant).await.map_err(directory_error) })
    }
}

/// A directory error as the mail model's: a store error as it is, anything else as the
/// store's failing (temporary).
fn directory_error(e: hameau_directory::Error) -> hameau_mailbox::Error {
    match e {
        hameau_directory::Error::Store(e) => hameau_mailbox::Error::Store(e),
        e => hameau_mailbox::Error::Store(hameau_store::Error::Backend(format!("the directory: {e}"))),
    }
}

/// The moves started through the API ([`AppState::moves`]).
pub type Moves = JobTable<MoveJob, ()>;

/// Where to move a tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartMove {
    /// A cluster of `[store.clusters]`, or `main` (the control store).
    pub cluster: String,
    /// How long the copy left behind stays, for every node to hear of the move before it
    /// is removed: 0 to 3,600 s, 10 by default.
    #[serde(default = "default_grace_s")]
    #[schema(default = 10, maximum = 3600)]
    pub grace_s: u64,
}

fn default_grace_s() -> u64 {
    10
}

/// A tenant's move.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MoveJob {
    pub id: u64,
    pub state: JobState,
    pub tenant: String,
    pub from: String,
    pub to: String,
    /// Once done: what was copied and checked (counts and digests), the copy's time and
    /// the pause's (`copy_ms`, `pause_ms`), the records removed from the cluster left, as
    /// `hameau cluster move` prints it.
    #[schema(value_type = Option<Object>)]
    pub report: Option<serde_json::Value>,
    /// Once failed: why. The tenant is then where it was.
    pub error: Option<String>,
}

/// The moves this server remembers.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoveJobList {
    pub items: Vec<MoveJob>,
}

/// The clusters, or 409 without `[store.clusters]`.
fn configured(mail: &Mail) -> ApiResult<&Clusters> {
    mail.clusters().ok_or_else(|| {
        Problem::new(
            StatusCode::CONFLICT,
            "no cluster is configured ([store.clusters]): every tenant's mail is in main",
        )
    })
}

/// The clusters and where each tenant's mail is (every tenant is listed).
#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", operation_id = "get_clusters",
    responses((status = 200, body = ClusterMap), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn get_clusters(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<ClusterMap>> {
    operator_only(&caller, "sees where the tenants' mail is")?;
    let clusters = configured(&state.mail)?;
    Ok(Json(placements(clusters, &state.directory).await?))
}

/// Moves a tenant's mail to another cluster while every node serves it: a first copy while
/// its mail is served, then a pause of its mail (at most `store.move_wait_ms` for each
/// delivery or session that waits) while what changed is written, checked by counts and
/// hashes. Poll the job it answers. One move runs at a time on a server (409 while one
/// does).
#[utoipa::path(post, path = "/api/v1/tenants/{id}/move", tag = "clusters", operation_id = "start_move", request_body = StartMove,
    params(("id" = String, Path, description = "The tenant's id")),
    responses((status = 202, body = MoveJob), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn start_move(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(request): ApiJson<StartMove>,
) -> ApiResult<(StatusCode, Json<MoveJob>)> {
    // A tenant out of the caller's scope reads as an absent one (404), as everywhere.
    state.directory.get_tenant(&caller, &tenant).await?;
    operator_only(&caller, "moves a tenant's mail")?;
    let clusters = configured(&state.mail)?;
    if request.grace_s > GRACE_S_MAX {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, format!("grace_s is at most {GRACE_S_MAX}")));
    }
    if !clusters.names().any(|name| name == request.cluster) {
        let names: Vec<&str> = clusters.names().collect();
        let detail = format!("no cluster named {:?}: the clusters are {}", request.cluster, names.join(", "));
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, detail));
    }
    let place = clusters.place(&tenant).await.map_err(hameau_directory::Error::Store)?;
    if let Some(moving_to) = place.moving_to {
        let detail = format!("tenant {tenant} is being moved from {} to {moving_to} already", place.cluster);
        return Err(Problem::new(StatusCode::CONFLICT, detail));
    }
    if place.cluster == request.cluster {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!("tenant {tenant} is in cluster {} already", place.cluster),
        ));
    }
    let moves = state.moves.clone();
    let job = moves
        .start((), |id| MoveJob {
            id,
            state: JobState::Running,
            tenant: tenant.clone(),
            from: place.cluster.clone(),
            to: request.cluster.clone(),
            report: None,
            error: None,
        })
        .ok_or_else(|| Problem::new(StatusCode::CONFLICT, "a move is running already on this server"))?;
    let mut finished = job.clone();
    let mail = state.mail.clone();
    tokio::spawn(async move {
        let grace = Duration::from_secs(request.grace_s);
        match move_tenant(&mail, &finished.tenant, &finished.to, grace).await {
            Ok(report) => {
                tracing::info!(tenant = %report.tenant, from = %report.from, to = %report.to, copy_ms = report.copy_ms, pause_ms = report.pause_ms, "tenant moved");
                finished.state = JobState::Done;
                finished.report = serde_json::to_value(&report).ok();
            }
            Err(e) => {
                tracing::error!(error = %e, tenant = %finished.tenant, to = %finished.to, "tenant move failed");
                finished.state = JobState::Failed;
                finished.error = Some(e.to_string());
            }
        }
        moves.finish(finished.id, finished);
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// One move: running, then its report or its error.
#[utoipa::path(get, path = "/api/v1/moves/{id}", tag = "clusters", operation_id = "get_move", params(("id" = u64, Path, description = "The job id")),
    responses((status = 200, body = MoveJob), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_move(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(typed): ApiPath<String>,
) -> ApiResult<Json<MoveJob>> {
    let (job, _) = state.moves.get_for(&caller, &typed, "move")?;
    Ok(Json(job))
}

/// The moves this server remembers (since it started, the last 16), oldest first; none
/// for a tenant admin.
#[utoipa::path(get, path = "/api/v1/moves", tag = "clusters", operation_id = "list_moves",
    responses((status = 200, body = MoveJobList), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_moves(State(state): State<AppState>, Caller(caller): Caller) -> ApiResult<Json<MoveJobList>> {
    Ok(Json(MoveJobList { items: state.moves.list_for(&caller)? }))
}

//! A tenant's own filter settings (`/api/v1/tenants/{id}/filter`): its thresholds and how
//! its agents are warned, over the `[filter]` defaults. Its admin or the operator reads and
//! sets them; another tenant's read as an absent tenant's; a user has no access. The rules
//! and scope checks are `hameau_filter::Settings`'s (through the directory).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hameau_filter::{TenantSettings, Thresholds, WarningStyle};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::quarantine::filter_problem;
use super::{ApiJson, ApiPath, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router.routes(routes!(get_filter_settings, set_filter_settings, reset_filter_settings))
}

/// A tenant's filter settings: its own, and what applies (its own over the defaults).
#[derive(Debug, Serialize, ToSchema)]
pub struct FilterSettings {
    /// What the tenant set; a part absent is the server's default.
    pub own: TenantSettings,
    /// What applies to the tenant's mail.
    pub effective: EffectiveSettings,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveSettings {
    pub thresholds: Thresholds,
    pub warning: WarningStyle,
}

fn view(state: &AppState, own: TenantSettings) -> FilterSettings {
    let (thresholds, warning) = state.filter_settings.defaults();
    let effective = EffectiveSettings {
        thresholds: own.thresholds.unwrap_or(thresholds),
        warning: own.warning.clone().unwrap_or(warning),
    };
    FilterSettings { own, effective }
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}/filter", tag = "filter", operation_id = "get_filter_settings", params(("id" = String, Path, description = "The tenant id")),
    responses((status = 200, body = FilterSettings), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_filter_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<Json<FilterSettings>> {
    let own = state.filter_settings.get(&caller, &state.directory, &tenant).await.map_err(filter_problem)?;
    Ok(Json(view(&state, own)))
}

/// Sets the tenant's own settings, each part whole (a part absent: the default). The
/// thresholds must rise (warn < junk < quarantine < reject, each 0.5 to 1000) and the
/// subject tag be one line of at most 40 characters: else 400, naming the key.
#[utoipa::path(put, path = "/api/v1/tenants/{id}/filter", tag = "filter", operation_id = "set_filter_settings", params(("id" = String, Path, description = "The tenant id")), request_body = TenantSettings,
    responses((status = 200, body = FilterSettings), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn set_filter_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(settings): ApiJson<TenantSettings>,
) -> ApiResult<Json<FilterSettings>> {
    let own = state.filter_settings.set(&caller, &state.directory, &tenant, settings).await.map_err(filter_problem)?;
    tracing::info!(tenant, "admin API: filter settings set");
    Ok(Json(view(&state, own)))
}

/// Removes the tenant's own settings: the server's defaults apply again.
#[utoipa::path(delete, path = "/api/v1/tenants/{id}/filter", tag = "filter", operation_id = "reset_filter_settings", params(("id" = String, Path, description = "The tenant id")),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn reset_filter_settings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(tenant): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.filter_settings.reset(&caller, &state.directory, &tenant).await.map_err(filter_problem)?;
    tracing::info!(tenant, "admin API: filter settings reset");
    Ok(StatusCode::NO_CONTENT)
}

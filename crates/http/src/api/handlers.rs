//! One handler per route; each documents itself for the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hameau_directory::dns::{DnsZone, zone};
use hameau_directory::{
    Account, AccountUpdate, Alias, AliasUpdate, ApiKey, AppPassword, Domain, NewAccount, NewAlias, NewApiKey,
    NewAppPassword, NewDomain, NewTenant, Page, Tenant, TenantUpdate,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiJson, ApiPath, ApiQuery, Caller, Problem};
use crate::AppState;

type ApiResult<T> = Result<T, Problem>;

/// Every route of the admin API.
pub fn routes(router: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    router
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(list_domains, create_domain))
        .routes(routes!(get_domain, delete_domain))
        .routes(routes!(get_domain_dns))
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(get_account, update_account, delete_account))
        .routes(routes!(list_app_passwords, create_app_password))
        .routes(routes!(delete_app_password))
        .routes(routes!(list_aliases, create_alias))
        .routes(routes!(get_alias, update_alias, delete_alias))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key, revoke_api_key))
        .merge(super::queue::routes(OpenApiRouter::new()))
        .merge(super::backups::routes(OpenApiRouter::new()))
        .merge(super::clusters::routes(OpenApiRouter::new()))
}

/// Paging of lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's objects (the operator must give it for accounts and aliases).
    tenant: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    /// Items per page (1 to the server's `page_items_max`; 100 by default).
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// Paging without a tenant filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    after: Option<String>,
    #[param(minimum = 1)]
    limit: Option<usize>,
}

/// A new API key and its token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    key: ApiKey,
    /// Send as `Authorization: Bearer <token>`. It cannot be shown again.
    token: String,
}

/// A new application password and its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedAppPassword {
    app_password: AppPassword,
    /// The password to type in the mail client. It cannot be shown again.
    password: String,
}

// Tenants.

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", operation_id = "list_tenants", params(PageQuery),
    responses((status = 200, body = Page<Tenant>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_tenants(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    Ok(Json(state.directory.list_tenants(&caller, query.after.as_deref(), query.limit).await?))
}

#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", operation_id = "create_tenant", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn create_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let tenant = state.directory.create_tenant(&caller, new, state.clock.now_s()).await?;
    // What the filter kept of a deleted tenant of the same id, if its deletion died before
    // forgetting it: the new commune starts clean (hameau_filter::forget).
    forget_filter(&state, &tenant.id).await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{id}", tag = "tenants", operation_id = "get_tenant", params(("id" = String, Path)),
    responses((status = 200, body = Tenant), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(state.directory.get_tenant(&caller, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{id}", tag = "tenants", operation_id = "update_tenant", params(("id" = String, Path)), request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn update_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(update): ApiJson<TenantUpdate>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(state.directory.update_tenant(&caller, &id, update).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{id}", tag = "tenants", operation_id = "delete_tenant", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_tenant(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.directory.delete_tenant(&caller, &id).await?;
    forget_filter(&state, &id).await?;
    // Its usage counter: a new commune given this id starts from zero.
    state.mail.forget_tenant(&id).await.map_err(|e| mail_problem(e, "forgetting a tenant's usage"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes what the filter keeps of tenant `id` (its held mail, settings, classifier and
/// correspondents): a tenant id may be given again to another commune.
async fn forget_filter(state: &AppState, id: &str) -> ApiResult<()> {
    let forgotten = hameau_filter::forget_tenant(&state.store, &state.quarantine, &state.filter_settings, id)
        .await
        .map_err(crate::api::quarantine::filter_problem)?;
    if forgotten != hameau_filter::Forgotten::default() {
        tracing::info!(tenant = id, held = forgotten.held, records = forgotten.records, "the filter forgot the tenant");
    }
    Ok(())
}

// Domains.

#[utoipa::path(get, path = "/api/v1/domains", tag = "domains", operation_id = "list_domains", params(ListQuery),
    responses((status = 200, body = Page<Domain>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_domains(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Domain>>> {
    let page =
        state.directory.list_domains(&caller, query.tenant.as_deref(), query.after.as_deref(), query.limit).await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/domains", tag = "domains", operation_id = "create_domain", request_body = NewDomain,
    responses((status = 201, body = Domain), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn create_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewDomain>,
) -> ApiResult<(StatusCode, Json<Domain>)> {
    let domain = state.directory.create_domain(&caller, new, state.clock.now_s()).await?;
    Ok((StatusCode::CREATED, Json(domain)))
}

#[utoipa::path(get, path = "/api/v1/domains/{name}", tag = "domains", operation_id = "get_domain", params(("name" = String, Path)),
    responses((status = 200, body = Domain), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Domain>> {
    Ok(Json(state.directory.get_domain(&caller, &name).await?))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", tag = "domains", operation_id = "delete_domain", params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_domain(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.directory.delete_domain(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/domains/{name}/dns", tag = "domains", operation_id = "get_domain_dns", params(("name" = String, Path)),
    responses((status = 200, body = DnsZone), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_domain_dns(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<DnsZone>> {
    let domain = state.directory.get_domain(&caller, &name).await?;
    Ok(Json(zone(&domain, &state.dns)))
}

// Accounts.

#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", operation_id = "list_accounts", params(ListQuery),
    responses((status = 200, body = Page<Account>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_accounts(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Account>>> {
    let page =
        state.directory.list_accounts(&caller, query.tenant.as_deref(), query.after.as_deref(), query.limit).await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", operation_id = "create_account", request_body = NewAccount,
    responses((status = 201, body = Account), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn create_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<Account>)> {
    let account = state.directory.create_account(&caller, new, state.clock.now_s()).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[utoipa::path(get, path = "/api/v1/accounts/{address}", tag = "accounts", operation_id = "get_account", params(("address" = String, Path)),
    responses((status = 200, body = Account), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<Json<Account>> {
    Ok(Json(state.directory.get_account(&caller, &address).await?))
}

#[utoipa::path(patch, path = "/api/v1/accounts/{address}", tag = "accounts", operation_id = "update_account", params(("address" = String, Path)), request_body = AccountUpdate,
    responses((status = 200, body = Account), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn update_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
    ApiJson(update): ApiJson<AccountUpdate>,
) -> ApiResult<Json<Account>> {
    Ok(Json(state.directory.update_account(&caller, &address, update).await?))
}

/// Deleting an account.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteAccountQuery {
    /// Delete the account's mail with it. Without it, an account that holds mail is not
    /// deleted (409): its mail may be a public record to keep (save it first, `hameau
    /// export`).
    #[serde(default)]
    delete_mail: bool,
}

#[utoipa::path(delete, path = "/api/v1/accounts/{address}", tag = "accounts", operation_id = "delete_account", params(("address" = String, Path), DeleteAccountQuery),
    responses((status = 204), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 500, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteAccountQuery>,
) -> ApiResult<StatusCode> {
    let account = state.directory.account_to_delete(&caller, &address).await?;
    if !query.delete_mail {
        let used =
            state.mail.quota_used(account.id).await.map_err(|e| mail_problem(e, "reading an account's usage"))?;
        if used > 0 {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "account {} holds {used} bytes of mail: save it first if it must be kept (hameau export), then \
                     delete the account with its mail (delete_mail=true; hameau account delete --delete-mail)",
                    account.address
                ),
            ));
        }
    }
    // What a message that came in meanwhile left is deleted too: the account is going.
    let account = state.directory.delete_account(&caller, &address).await?;
    match super::forget::forget_account(&state.directory, &state.mail, account.id, &account.tenant).await {
        Ok(deleted) => {
            tracing::info!(
                account = account.id,
                address = %account.address,
                tenant = %account.tenant,
                emails = deleted.emails,
                bytes = deleted.bytes,
                records = deleted.records,
                "account deleted with its mail"
            );
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::error!(
                account = account.id,
                address = %account.address,
                tenant = %account.tenant,
                error = %e,
                "account deleted, but not all of its mail yet: the rest is deleted in the background"
            );
            Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the account is deleted, but not all of its mail could be yet: the server deletes the rest within \
                 minutes (see its log)",
            ))
        }
    }
}

/// A failure of the mail model as a problem: a busy store is worth a retry, the rest is
/// the server's (logged).
fn mail_problem(error: hameau_mailbox::Error, doing: &str) -> Problem {
    match error {
        hameau_mailbox::Error::Busy => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "too many concurrent changes: try again")
        }
        // As the directory's errors map it (`From<hameau_directory::Error> for Problem`).
        hameau_mailbox::Error::Store(error) if error.is_unavailable() => {
            tracing::warn!(error = %error, "admin API: {doing}: the store does not answer");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the store does not answer: try again")
        }
        error => {
            tracing::error!(error = %error, "admin API: {doing} failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error: see the server's log")
        }
    }
}

#[utoipa::path(get, path = "/api/v1/accounts/{address}/app-passwords", tag = "accounts", operation_id = "list_app_passwords", params(("address" = String, Path)),
    responses((status = 200, body = Vec<AppPassword>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_app_passwords(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<Json<Vec<AppPassword>>> {
    Ok(Json(state.directory.list_app_passwords(&caller, &address).await?))
}

#[utoipa::path(post, path = "/api/v1/accounts/{address}/app-passwords", tag = "accounts", operation_id = "create_app_password", params(("address" = String, Path)), request_body = NewAppPassword,
    responses((status = 201, body = CreatedAppPassword), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn create_app_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
    ApiJson(new): ApiJson<NewAppPassword>,
) -> ApiResult<(StatusCode, Json<CreatedAppPassword>)> {
    let (app_password, password) =
        state.directory.create_app_password(&caller, &address, new, state.clock.now_s()).await?;
    Ok((StatusCode::CREATED, Json(CreatedAppPassword { app_password, password })))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{address}/app-passwords/{id}", tag = "accounts", operation_id = "delete_app_password",
    params(("address" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn delete_app_password(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((address, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    state.directory.delete_app_password(&caller, &address, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// Aliases.

#[utoipa::path(get, path = "/api/v1/aliases", tag = "aliases", operation_id = "list_aliases", params(ListQuery),
    responses((status = 200, body = Page<Alias>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_aliases(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<Alias>>> {
    let page =
        state.directory.list_aliases(&caller, query.tenant.as_deref(), query.after.as_deref(), query.limit).await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/api/v1/aliases", tag = "aliases", operation_id = "create_alias", request_body = NewAlias,
    responses((status = 201, body = Alias), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn create_alias(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewAlias>,
) -> ApiResult<(StatusCode, Json<Alias>)> {
    let alias = state.directory.create_alias(&caller, new, state.clock.now_s()).await?;
    Ok((StatusCode::CREATED, Json(alias)))
}

#[utoipa::path(get, path = "/api/v1/aliases/{address}", tag = "aliases", operation_id = "get_alias", params(("address" = String, Path)),
    responses((status = 200, body = Alias), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_alias(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<Json<Alias>> {
    Ok(Json(state.directory.get_alias(&caller, &address).await?))
}

#[utoipa::path(patch, path = "/api/v1/aliases/{address}", tag = "aliases", operation_id = "update_alias", params(("address" = String, Path)), request_body = AliasUpdate,
    responses((status = 200, body = Alias), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn update_alias(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
    ApiJson(update): ApiJson<AliasUpdate>,
) -> ApiResult<Json<Alias>> {
    Ok(Json(state.directory.update_alias(&caller, &address, update).await?))
}

#[utoipa::path(delete, path = "/api/v1/aliases/{address}", tag = "aliases", operation_id = "delete_alias", params(("address" = String, Path)),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn delete_alias(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(address): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.directory.delete_alias(&caller, &address).await?;
    Ok(StatusCode::NO_CONTENT)
}

// API keys.

#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys", params(PageQuery),
    responses((status = 200, body = Page<ApiKey>), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn list_api_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ApiKey>>> {
    Ok(Json(state.directory.list_api_keys(&caller, query.after.as_deref(), query.limit).await?))
}

#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", operation_id = "create_api_key", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn create_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(new): ApiJson<NewApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let (key, token) = state.directory.create_api_key(&caller, new, state.clock.now_s()).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, token })))
}

#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "api-keys", operation_id = "get_api_key", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json")))]
async fn get_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(state.directory.get_api_key(&caller, &id).await?))
}

/// Revokes the key; it stays listed, marked revoked.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn revoke_api_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(state.directory.revoke_api_key(&caller, &id).await?))
}

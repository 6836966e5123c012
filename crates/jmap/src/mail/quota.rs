//! `Quota/get`, `/changes`, `/query` and `/queryChanges` (RFC 9425): what the user's mail
//! may take, in octets. `q0` is the account's own limit (scope `account`); `q1` its
//! commune's, all its accounts together (scope `domain`, the RFC's word for a group of
//! accounts), when the tenant has one. Without a limit, a quota is not listed. Limits are
//! the directory's (`hameau account update --quota-bytes`, `tenant update`): not settable
//! here.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::changes::{self, ChangesArguments};
use super::{Context, arguments, id, parse_id, server_fail};
use crate::MethodError;

/// The capability of quotas (RFC 9425 §3).
pub const QUOTA_CAPABILITY: &str = "urn:ietf:params:jmap:quota";
const LETTER: char = 'q';

const PROPERTIES: [&str; 9] =
    ["id", "resourceType", "used", "hardLimit", "scope", "name", "types", "warnLimit", "description"];

/// The user's quotas, `q0` then `q1`.
async fn quotas(ctx: &Context<'_>) -> Result<Vec<Map<String, Value>>, MethodError> {
    let quota = &ctx.user.quota;
    let mut list = Vec::new();
    if let Some(limit) = quota.account_bytes_max {
        let used = ctx.mail().quota_used(ctx.account()).await.map_err(server_fail)?;
        list.push(super::object(json!({
            "id": id(LETTER, 0), "resourceType": "octets", "used": used, "hardLimit": limit,
            "scope": "account", "name": ctx.user.address, "types": ["Email"],
            // Warned at 90 %, as IMAP clients and the admin API show it.
            "warnLimit": limit / 10 * 9,
            "description": "Espace de ce compte / this account's space",
        })));
    }
    if let (Some(tenant), Some(limit)) = (&quota.tenant, quota.tenant_bytes_max) {
        let used = ctx.mail().tenant_used(tenant).await.map_err(server_fail)?;
        list.push(super::object(json!({
            "id": id(LETTER, 1), "resourceType": "octets", "used": used, "hardLimit": limit,
            "scope": "domain", "name": tenant, "types": ["Email"],
            "warnLimit": limit / 10 * 9,
            "description": "Espace de la commune, tous comptes ensemble / the commune's space, all accounts together",
        })));
    }
    Ok(list)
}

/// `Quota/get`.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (ids, properties, state) = super::open_get(ctx, arguments_, &PROPERTIES).await?;
    let (list, not_found) = super::pick(ctx, quotas(ctx).await?, ids, &properties);
    Ok(super::get_response(ctx, state, list, not_found))
}

/// `Quota/changes`: a quota's `used` moves with every email stored or destroyed, so an
/// email change in the log is a change of both quotas.
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let listed: Vec<u64> = quotas(ctx)
        .await?
        .iter()
        .filter_map(|quota| quota.get("id").and_then(Value::as_str).and_then(|wire| parse_id(LETTER, wire)))
        .collect();
    let select = move |change: &hameau_mailbox::Change, out: &mut Vec<(u64, hameau_mailbox::ChangeKind)>| {
        let sized = change.email_changes().any(|(_, kind)| kind != hameau_mailbox::ChangeKind::Updated);
        if sized {
            out.extend(listed.iter().map(|quota| (*quota, hameau_mailbox::ChangeKind::Updated)));
        }
    };
    let folded = changes::read(ctx, &arguments, &select).await?;
    let mut response = changes::response(ctx, &arguments, &folded, |number| id(LETTER, number));
    let updated_only = folded.objects.iter().all(|(_, fold)| *fold == changes::Fold::Updated);
    response.insert("updatedProperties".into(), if updated_only { json!(["used"]) } else { Value::Null });
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryArguments {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
    #[serde(default)]
    calculate_total: bool,
    #[serde(flatten)]
    window: super::Window,
}

/// `Quota/query`: filter on `name`, `scope`, `resourceType`, `type`; in id order.
pub async fn query(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: QueryArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    if arguments.sort.is_some_and(|sort| !sort.is_empty()) {
        return Err(MethodError::new("unsupportedSort", "quotas are listed in id order"));
    }
    let nodes = crate::filter::flatten(arguments.filter, ctx.limits().filter_nodes_max)?;
    let state = ctx.state().await?;
    let mut ids = Vec::new();
    for quota in quotas(ctx).await? {
        let holds = crate::filter::matches(&nodes, |condition| {
            condition.iter().try_fold(true, |holds, (name, value)| {
                let wanted =
                    value.as_str().ok_or_else(|| MethodError::invalid_arguments(format!("{name:?} is a string")))?;
                let own = match name.as_str() {
                    "name" | "scope" | "resourceType" => quota.get(name).and_then(Value::as_str) == Some(wanted),
                    "type" => wanted == "Email",
                    _ => {
                        return Err(MethodError::new(
                            "unsupportedFilter",
                            format!("quotas are not filtered by {name:?}"),
                        ));
                    }
                };
                Ok(holds && own)
            })
        })?;
        if holds {
            ids.push(quota.get("id").and_then(Value::as_str).unwrap_or_default().to_string());
        }
    }
    let window = super::window(&ids, &arguments.window, ctx.limits())?;
    let total = arguments.calculate_total.then_some(ids.len());
    Ok(super::query_response(ctx, state, window, total))
}

#[cfg(test)]
mod tests {
    use hameau_mailbox::{Quota, Role};
    use serde_json::json;

    use crate::mail::tests::{Fixture, MESSAGE};

    const USING: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:quota"];

    #[tokio::test]
    async fn quotas_show_the_account_and_the_commune() {
        let mut fixture = Fixture::new().await;
        fixture.user.quota = Quota {
            account_bytes_max: Some(1_000_000),
            tenant: Some("mairie".into()),
            tenant_bytes_max: Some(9_000_000),
        };
        let state = fixture.call_using(&USING, json!([["Quota/get", {"accountId": "a7", "ids": []}, "s"]])).await[0][1]
            ["state"]
            .clone();
        fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let got = fixture.call_using(&USING, json!([["Quota/get", {"accountId": "a7"}, "g"]])).await;
        let list = got[0][1]["list"].as_array().unwrap().clone();
        assert_eq!(list.len(), 2, "{got:?}");
        assert_eq!((list[0]["scope"].as_str(), list[0]["hardLimit"].as_u64()), (Some("account"), Some(1_000_000)));
        assert!(list[0]["used"].as_u64().unwrap() > 0);
        assert_eq!(list[1]["scope"], "domain");
        let changes =
            fixture.call_using(&USING, json!([["Quota/changes", {"accountId": "a7", "sinceState": state}, "c"]])).await;
        assert_eq!(changes[0][1]["updated"], json!(["q0", "q1"]), "{changes:?}");
        assert_eq!(changes[0][1]["updatedProperties"], json!(["used"]));
        let query = fixture
            .call_using(&USING, json!([["Quota/query", {"accountId": "a7", "filter": {"scope": "domain"}}, "q"]]))
            .await;
        assert_eq!(query[0][1]["ids"], json!(["q1"]));
        // Without a limit, nothing is listed.
        fixture.user.quota = Quota::default();
        let got = fixture.call_using(&USING, json!([["Quota/get", {"accountId": "a7"}, "g"]])).await;
        assert_eq!(got[0][1]["list"], json!([]));
    }
}

//! Push (RFC 8620 §7): the `StateChange` object both push channels carry, and
//! PushSubscription (§7.2) — `PushSubscription/get` and `/set` over records the mail model
//! keeps per account, and the [`PushRegistry`] the HTTP layer's pushing task reads.
//!
//! - **State.** Every data type of an account shares one state, its modseq (see
//!   [`mod@super`]), so a change names the four types at that modseq (`Email`, `Mailbox`,
//!   `Thread`, `EmailDelivery`), or those a client asked for.
//! - **Verification** (§7.2.2). Creating a subscription queues a `PushVerification` for
//!   its URL with a random code; only once the client has set `verificationCode` to it does
//!   the server push `StateChange`s there.
//! - **Encryption** (RFC 8291, the `keys` property): a subscription with `keys` has every
//!   push, its verification too, encrypted to them ([`super::webpush`]); keys that are not a
//!   P-256 public key and a 16-byte secret are refused (`invalidProperties` naming `keys`).
//! - **Expiry.** `expires` is capped to `push_expires_max_s` from now (the response says
//!   the value granted); an expired subscription is not pushed to, and a `/get` still
//!   shows it until the client destroys or renews it.
//! - The URL is checked here for its form (`https`, or `http` on loopback when
//!   `push_loopback_allowed`); where it resolves is the pushing task's check, at each push.

use std::collections::HashMap;
use std::sync::Mutex;

use hameau_mailbox::{AccountId, Mail};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::webpush::PushKeys;
use super::{Context, arguments, server_fail};
use crate::{Limits, MethodError, SetError};

/// The data types a state change names (RFC 8621 §1.5: `EmailDelivery` for new mail).
pub const TYPES: [&str; 4] = ["Email", "Mailbox", "Thread", "EmailDelivery"];

/// A `StateChange` (§7.1) for `account` at `state`, naming `types` (all of [`TYPES`] when
/// `None`); `None` when no type asked for is one of ours.
pub fn state_change(account: AccountId, state: u64, types: Option<&[String]>) -> Option<Value> {
    let mut changed = Map::new();
    for name in TYPES {
        if types.is_none_or(|types| types.iter().any(|asked| asked == name || asked == "*")) {
            changed.insert(name.to_string(), Value::from(state.to_string()));
        }
    }
    if changed.is_empty() {
        return None;
    }
    Some(json!({"@type": "StateChange", "changed": {crate::api::account_id(account): changed}}))
}

/// A PushSubscription as stored (the account's record in the mail model) and kept in the
/// [`PushRegistry`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub device_client_id: String,
    pub url: String,
    /// Seconds since the Unix epoch.
    pub expires: u64,
    pub types: Option<Vec<String>>,
    /// The code sent in the `PushVerification`.
    pub verification_code: String,
    /// Whether the client has set `verificationCode` to it.
    pub verified: bool,
    /// The client's keys (RFC 8291): pushes are encrypted to them.
    #[serde(default)]
    pub keys: Option<PushKeys>,
}

/// A `PushVerification` to send (§7.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub account: AccountId,
    pub url: String,
    pub body: Value,
    /// The subscription's keys: the verification is encrypted too (RFC 8620 §7.2.2).
    pub keys: Option<PushKeys>,
}

/// The subscriptions of every account, in memory: loaded at start ([`PushRegistry::load`]),
/// kept in step by `PushSubscription/set`; the pushing task reads it.
#[derive(Debug, Default)]
pub struct PushRegistry {
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    subscriptions: HashMap<AccountId, Vec<Subscription>>,
    to_verify: Vec<Verification>,
}

impl PushRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads every account's subscriptions from the mail model (at most `max`); how many.
    pub async fn load(&self, mail: &Mail, max: u64) -> Result<usize, hameau_mailbox::Error> {
        let records = mail.all_push_subscriptions(usize::try_from(max).unwrap_or(usize::MAX)).await?;
        let mut by_account: HashMap<AccountId, Vec<Subscription>> = HashMap::new();
        let mut count = 0;
        for (account, id, record) in records {
            match serde_json::from_slice::<Subscription>(&record) {
                Ok(subscription) => {
                    by_account.entry(account).or_default().push(subscription);
                    count += 1;
                }
                Err(e) => tracing::warn!(account, id, error = %e, "jmap push: a subscription record does not read"),
            }
        }
        self.lock().subscriptions = by_account;
        self.changed.notify_one();
        Ok(count)
    }

    /// The accounts that have subscriptions.
    pub fn accounts(&self) -> Vec<AccountId> {
        self.lock().subscriptions.keys().copied().collect()
    }

    /// Subscriptions of all accounts.
    pub fn len(&self) -> usize {
        self.lock().subscriptions.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The verified subscriptions of `account` that have not expired at `now`.
    pub fn targets(&self, account: AccountId, now: u64) -> Vec<Subscription> {
        let inner = self.lock();
        let Some(subscriptions) = inner.subscriptions.get(&account) else { return Vec::new() };
        subscriptions
            .iter()
            .filter(|subscription| subscription.verified && subscription.expires > now)
            .cloned()
            .collect()
    }

    /// The verifications to send, taken.
    pub fn take_verifications(&self) -> Vec<Verification> {
        std::mem::take(&mut self.lock().to_verify)
    }

    /// Waits until the subscriptions change or a verification is queued.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn replace(&self, account: AccountId, subscriptions: Vec<Subscription>, verifications: Vec<Verification>) {
        let mut inner = self.lock();
        if subscriptions.is_empty() {
            inner.subscriptions.remove(&account);
        } else {
            inner.subscriptions.insert(account, subscriptions);
        }
        inner.to_verify.extend(verifications);
        drop(inner);
        self.changed.notify_one();
    }
}

/// The properties `/get` returns; `url` and `keys` never are (§7.2.1).
const PROPERTIES: [&str; 5] = ["id", "deviceClientId", "verificationCode", "expires", "types"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetArguments {
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    properties: Option<Vec<String>>,
}

/// `PushSubscription/get` (§7.2.1): no account, no state; the user's subscriptions.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: GetArguments = arguments(arguments_)?;
    let ids = super::ids_to_get(arguments.ids, ctx.limits())?;
    if let Some(asked) = &arguments.properties
        && asked.iter().any(|property| property == "url" || property == "keys")
    {
        return Err(MethodError::new("forbidden", "a subscription's url and keys are never returned"));
    }
    let properties = super::properties(arguments.properties, &PROPERTIES, &PROPERTIES)?;
    let subscriptions = read(ctx).await?;
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match ids {
        None => list.extend(subscriptions.iter().map(|subscription| to_json(subscription, &properties))),
        Some(ids) => {
            for id in ids {
                match subscriptions.iter().find(|subscription| subscription.id == id) {
                    Some(subscription) => list.push(to_json(subscription, &properties)),
                    None => not_found.push(Value::from(id)),
                }
            }
        }
    }
    let mut response = Map::new();
    response.insert("list".into(), Value::from(list));
    response.insert("notFound".into(), Value::from(not_found));
    Ok(response)
}

fn to_json(subscription: &Subscription, properties: &[String]) -> Value {
    let object = json!({
        "id": subscription.id,
        "deviceClientId": subscription.device_client_id,
        // Shown once the client proved it received it; `null` before (§7.2).
        "verificationCode": if subscription.verified { Value::from(subscription.verification_code.clone()) } else { Value::Null },
        "expires": utc_date(subscription.expires),
        "types": subscription.types,
    });
    match object {
        Value::Object(map) => super::only(map, properties),
        other => other,
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetArguments {
    #[serde(default)]
    create: Option<Map<String, Value>>,
    #[serde(default)]
    update: Option<Map<String, Value>>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
}

/// `PushSubscription/set` (§7.2.2): no account, no `ifInState`, no states in the answer.
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let objects = arguments.create.as_ref().map_or(0, Map::len)
        + arguments.update.as_ref().map_or(0, Map::len)
        + arguments.destroy.as_ref().map_or(0, Vec::len);
    super::check_set_size(objects, ctx.limits())?;
    let mut subscriptions = read(ctx).await?;
    let mut response = super::SetResponse::default();
    let mut verifications = Vec::new();
    let mut changed = Vec::new();
    for (creation, object) in arguments.create.unwrap_or_default() {
        let registered = ctx.services.push.len() as u64;
        match create(ctx, &subscriptions, registered, &object) {
            Ok((subscription, granted_expires)) => {
                verifications.push(Verification {
                    account: ctx.account(),
                    url: subscription.url.clone(),
                    body: json!({
                        "@type": "PushVerification",
                        "pushSubscriptionId": subscription.id,
                        "verificationCode": subscription.verification_code,
                    }),
                    keys: subscription.keys.clone(),
                });
                let mut created = Map::new();
                created.insert("id".into(), Value::from(subscription.id.clone()));
                if let Some(expires) = granted_expires {
                    created.insert("expires".into(), Value::from(utc_date(expires)));
                }
                ctx.created_ids.insert(creation.clone(), subscription.id.clone());
                response.created.insert(creation, Value::Object(created));
                changed.push(subscription.id.clone());
                subscriptions.push(subscription);
            }
            Err(error) => {
                response.not_created.insert(creation, error.to_json());
            }
        }
    }
    for (id, patch) in arguments.update.unwrap_or_default() {
        let id_resolved = ctx.resolve_id(&id).unwrap_or(&id).to_string();
        let Some(subscription) = subscriptions.iter_mut().find(|subscription| subscription.id == id_resolved) else {
            response.not_updated.insert(id, SetError::new("notFound", "no such subscription").to_json());
            continue;
        };
        match update(subscription, &patch, ctx.limits(), ctx.now) {
            Ok(granted) => {
                response.updated.insert(id, granted.map_or(Value::Null, Value::Object));
                changed.push(id_resolved);
            }
            Err(error) => {
                response.not_updated.insert(id, error.to_json());
            }
        }
    }
    for id in arguments.destroy.unwrap_or_default() {
        let id_resolved = ctx.resolve_id(&id).unwrap_or(&id).to_string();
        match subscriptions.iter().position(|subscription| subscription.id == id_resolved) {
            Some(at) => {
                subscriptions.remove(at);
                ctx.mail().delete_push_subscription(ctx.account(), &id_resolved).await.map_err(server_fail)?;
                response.destroyed.push(id);
            }
            None => {
                response.not_destroyed.insert(id, SetError::new("notFound", "no such subscription").to_json());
            }
        }
    }
    for subscription in subscriptions.iter().filter(|subscription| changed.contains(&subscription.id)) {
        let record = serde_json::to_vec(subscription).map_err(|_| MethodError::server_fail())?;
        ctx.mail().put_push_subscription(ctx.account(), &subscription.id, &record).await.map_err(server_fail)?;
    }
    ctx.services.push.replace(ctx.account(), subscriptions, verifications);
    let mut arguments = response.into_arguments(ctx, String::new(), String::new());
    arguments.remove("accountId");
    arguments.remove("oldState");
    arguments.remove("newState");
    Ok(arguments)
}

/// The user's subscriptions, from the mail model.
async fn read(ctx: &Context<'_>) -> Result<Vec<Subscription>, MethodError> {
    let records = ctx.mail().push_subscriptions(ctx.account()).await.map_err(server_fail)?;
    Ok(records.into_iter().filter_map(|(_, record)| serde_json::from_slice(&record).ok()).collect())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Creation {
    device_client_id: String,
    url: String,
    #[serde(default)]
    keys: Option<Value>,
    #[serde(default)]
    verification_code: Option<Value>,
    #[serde(default)]
    expires: Option<String>,
    #[serde(default)]
    types: Option<Vec<String>>,
    #[serde(default)]
    id: Option<Value>,
}

/// A new subscription from its creation object, and its `expires` when the server
/// changed the client's.
fn create(
    ctx: &Context<'_>,
    existing: &[Subscription],
    registered: u64,
    object: &Value,
) -> Result<(Subscription, Option<u64>), SetError> {
    let limits = ctx.limits();
    let creation: Creation = serde_json::from_value(object.clone())
        .map_err(|e| SetError::invalid_properties(format!("not a PushSubscription: {e}"), Vec::new()))?;
    if creation.id.is_some() {
        return Err(SetError::invalid_properties("the server sets id", vec!["id".into()]));
    }
    let keys = match creation.keys {
        None | Some(Value::Null) => None,
        Some(keys) => {
            Some(PushKeys::check(&keys).map_err(|why| SetError::invalid_properties(why, vec!["keys".into()]))?)
        }
    };
    if creation.verification_code.as_ref().is_some_and(|code| !code.is_null()) {
        return Err(SetError::invalid_properties(
            "verificationCode is set after the verification arrives",
            vec!["verificationCode".into()],
        ));
    }
    if creation.device_client_id.is_empty() || creation.device_client_id.len() > 255 {
        return Err(SetError::invalid_properties("deviceClientId: 1 to 255 bytes", vec!["deviceClientId".into()]));
    }
    check_url(&creation.url, limits).map_err(|why| SetError::invalid_properties(why, vec!["url".into()]))?;
    let types = check_types(creation.types)?;
    if existing.len() as u64 >= limits.push_subscriptions_per_account_max {
        return Err(SetError::new(
            "forbidden",
            format!("an account may have {} push subscriptions", limits.push_subscriptions_per_account_max),
        ));
    }
    if registered >= limits.push_subscriptions_max {
        return Err(SetError::new("forbidden", "the server holds as many push subscriptions as it may"));
    }
    let (expires, changed) = grant_expires(creation.expires.as_deref(), limits, ctx.now)?;
    let subscription = Subscription {
        id: format!("p{:016x}", rand::random::<u64>()),
        device_client_id: creation.device_client_id,
        url: creation.url,
        expires,
        types,
        verification_code: format!("{:032x}", rand::random::<u128>()),
        verified: false,
        keys,
    };
    Ok((subscription, changed.then_some(expires)))
}

/// Applies an update (`verificationCode`, `expires`, `types`; the rest is immutable); the
/// properties the server set otherwise than asked.
fn update(
    subscription: &mut Subscription,
    patch: &Value,
    limits: &Limits,
    now: u64,
) -> Result<Option<Map<String, Value>>, SetError> {
    let Value::Object(patch) = patch else { return Err(SetError::invalid_patch("an update is an object")) };
    let mut granted = Map::new();
    let mut next = subscription.clone();
    for (property, value) in patch {
        match property.as_str() {
            "verificationCode" => match value.as_str() {
                Some(code) if code == subscription.verification_code => next.verified = true,
                _ => {
                    return Err(SetError::invalid_properties(
                        "verificationCode is not the one sent to the URL",
                        vec![property.clone()],
                    ));
                }
            },
            "expires" => {
                let asked = match value {
                    Value::Null => None,
                    Value::String(date) => Some(date.as_str()),
                    _ => return Err(SetError::invalid_properties("expires: a UTCDate", vec![property.clone()])),
                };
                let (expires, changed) = grant_expires(asked, limits, now)?;
                next.expires = expires;
                if changed {
                    granted.insert("expires".into(), Value::from(utc_date(expires)));
                }
            }
            "types" => {
                let types = serde_json::from_value::<Option<Vec<String>>>(value.clone())
                    .map_err(|_| SetError::invalid_properties("types: a list of type names", vec![property.clone()]))?;
                next.types = check_types(types)?;
            }
            _ => {
                return Err(SetError::invalid_properties(
                    format!("{property} cannot be changed"),
                    vec![property.clone()],
                ));
            }
        }
    }
    *subscription = next;
    Ok((!granted.is_empty()).then_some(granted))
}

/// The expiry granted for `asked` (a UTCDate, or none): at most `push_expires_max_s`
/// from now; and whether it differs from what was asked.
fn grant_expires(asked: Option<&str>, limits: &Limits, now: u64) -> Result<(u64, bool), SetError> {
    let cap = now.saturating_add(limits.push_expires_max_s);
    let Some(asked) = asked else { return Ok((cap, true)) };
    let Some(asked) = parse_utc_date(asked) else {
        return Err(SetError::invalid_properties(
            "expires: a UTCDate such as 2026-12-01T10:00:00Z",
            vec!["expires".into()],
        ));
    };
    if asked <= now {
        return Err(SetError::invalid_properties("expires is in the past", vec!["expires".into()]));
    }
    Ok(if asked > cap { (cap, true) } else { (asked, false) })
}

fn check_types(types: Option<Vec<String>>) -> Result<Option<Vec<String>>, SetError> {
    if let Some(types) = &types
        && let Some(unknown) = types.iter().find(|name| !TYPES.contains(&name.as_str()))
    {
        return Err(SetError::invalid_properties(format!("no data type {unknown:?} here"), vec!["types".into()]));
    }
    Ok(types)
}

/// Checks a push URL's form: `https://host…` with no user part, within
/// `push_url_bytes_max`; `http` only to a loopback host when `push_loopback_allowed`.
pub fn check_url(url: &str, limits: &Limits) -> Result<(), String> {
    if url.len() as u64 > limits.push_url_bytes_max {
        return Err(format!("the URL is over {} bytes", limits.push_url_bytes_max));
    }
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("the URL has spaces or control characters".into());
    }
    let (scheme, rest) = url.split_once("://").ok_or("the URL has no scheme")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err("the URL needs a host, without user or password".into());
    }
    let host = host_of(authority);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if limits.push_loopback_allowed && is_loopback_name(host) => Ok(()),
        _ => Err("a push URL must be https".into()),
    }
}

/// The host of an authority (`host`, `host:port`, `[v6]:port`).
pub fn host_of(authority: &str) -> &str {
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// UTCDates (RFC 8620 §1.4) written and read as the calendar crate does for every JMAP date.
pub use hameau_calendar::{parse_rfc3339_utc as parse_utc_date, rfc3339 as utc_date};

#[cfg(test)]
#[path = "push_tests.rs"]
mod tests;

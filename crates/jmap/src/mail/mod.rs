//! The mail methods (RFC 8621) over the mail model: what one request runs against
//! ([`Context`]), the ids the objects have on the wire, the state strings, and each data
//! type's methods in its own module.
//!
//! - **Ids.** Every object's id is a letter and its number in the mail model, decimal
//!   without leading zeros (`m3` a mailbox, `e17` an email, `t17` a thread): one spelling
//!   per object, so that a client comparing ids compares objects. An id of another shape
//!   is no object of this account (`notFound`), never an error of the call.
//! - **State.** One state for every data type of an account: its modseq, the counter of
//!   the change log IMAP's CONDSTORE reads too (docs/mail-model.md). A `/changes` reads the
//!   log after it and keeps what concerns its type ([`changes`]); the state moves when any
//!   type changes, which RFC 8620 §5.1 allows ("the state string MAY change when there is
//!   no change to the type").
//! - **Accounts.** A user reaches only its own account: an `accountId` of another is
//!   `accountNotFound`, whether or not that account exists, so that ids cannot be probed.

pub(crate) mod blob;
pub(crate) mod changes;
pub(crate) mod email;
pub(crate) mod email_create;
pub(crate) mod email_query;
pub(crate) mod email_set;
pub(crate) mod identity;
pub(crate) mod mailbox;
pub(crate) mod push;
pub(crate) mod quota;
pub(crate) mod snippet;
pub mod submission;
pub(crate) mod thread;
pub(crate) mod vacation;
pub(crate) mod webpush;

pub use blob::{Blob, part_contents, read as read_blob, resolve as resolve_blob, upload_response};
pub use push::{PushRegistry, Subscription, Verification, check_url, host_of, state_change};
pub use webpush::PushKeys;

use std::collections::HashMap;
use std::sync::Arc;

use hameau_mailbox::query::{SummaryCache, TextCache};
use hameau_mailbox::{AccountId, Mail};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api::User;
use crate::{Limits, MethodError, SetError};

/// The capability of mail (RFC 8621 §1.3.1).
pub const MAIL_CAPABILITY: &str = "urn:ietf:params:jmap:mail";

/// What the mail methods share across requests: the one mail model and the caches that IMAP
/// shares too, so that a summary read for one protocol serves the other.
#[derive(Clone)]
pub struct Services {
    pub mail: Mail,
    pub summaries: Arc<SummaryCache>,
    pub texts: Arc<TextCache>,
    pub limits: Limits,
    /// Who sends what `EmailSubmission/set` creates; `None` where sending is not wired
    /// (a creation is then `forbiddenToSend`, saying so).
    pub submitter: Option<Arc<dyn submission::Submitter>>,
    /// The push subscriptions of every account (RFC 8620 §7.2), shared with the pushing
    /// task of the HTTP layer.
    pub push: Arc<PushRegistry>,
    /// The mailbox snapshots `Email/query` runs over (bounded by
    /// `jmap.query_cache_entries_max`).
    pub queries: Arc<email_query::QueryCache>,
}

/// One request's context: the user's account, the services, and the ids the request
/// created so far (RFC 8620 §3.3 `createdIds`: a later call names a created object by
/// `#` and its creation id).
pub struct Context<'a> {
    pub services: &'a Services,
    pub user: &'a User,
    /// Seconds since the Unix epoch, read once per request.
    pub now: u64,
    pub created_ids: HashMap<String, String>,
    /// Responses a method adds after its own, under the same call id (RFC 8621 §7.5's
    /// implicit `Email/set` after `EmailSubmission/set`).
    pub implicit: Vec<(String, Map<String, Value>)>,
    /// Bytes of messages and blobs this request has parsed so far, out of
    /// `jmap.parsed_bytes_max` ([`Context::charge_parse`]).
    pub parsed_bytes: std::sync::atomic::AtomicU64,
}

impl Context<'_> {
    /// The account in the mail model.
    pub fn account(&self) -> AccountId {
        self.user.account
    }

    pub fn mail(&self) -> &Mail {
        &self.services.mail
    }

    pub fn limits(&self) -> &Limits {
        &self.services.limits
    }

    /// Checks a call's `accountId`: the user's own, else `accountNotFound`.
    pub fn check_account(&self, account_id: &str) -> Result<(), MethodError> {
        if account_id == crate::api::account_id(self.user.account) {
            Ok(())
        } else {
            Err(MethodError::new("accountNotFound", format!("no account {account_id:?} is open to this user")))
        }
    }

    /// The account's state for every data type: its modseq.
    pub async fn state(&self) -> Result<String, MethodError> {
        Ok(self.mail().modseq(self.account()).await.map_err(server_fail)?.to_string())
    }

    /// Counts `bytes` about to be parsed by this request; `Err` with the reason when that
    /// would take it past `jmap.parsed_bytes_max` (nothing is counted then). A method says
    /// it as `requestTooLarge`, a creation as `tooLarge`.
    pub fn charge_parse(&self, bytes: u64) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let max = self.limits().parsed_bytes_max;
        let before = self.parsed_bytes.load(Ordering::Relaxed);
        let after = before.saturating_add(bytes);
        if after > max {
            return Err(format!(
                "this request would parse {after} bytes of messages, over this server's {max}: ask for fewer at a time"
            ));
        }
        self.parsed_bytes.store(after, Ordering::Relaxed);
        Ok(())
    }

    /// An id given by the client: `#creationId` is the id created earlier in the request
    /// under that creation id (RFC 8620 §5.3); `None` when no creation had it.
    pub fn resolve_id<'s>(&'s self, id: &'s str) -> Option<&'s str> {
        match id.strip_prefix('#') {
            Some(creation) => self.created_ids.get(creation).map(String::as_str),
            None => Some(id),
        }
    }
}

/// A call's arguments read into `T`: a missing, mistyped or unknown argument is
/// `invalidArguments` naming it (serde's message names the field).
pub fn arguments<T: DeserializeOwned>(arguments: Map<String, Value>) -> Result<T, MethodError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|e| MethodError::invalid_arguments(e.to_string()))
}

/// A failure of the mail model in a method: logged with its details, said to the client
/// as `serverFail` without them.
pub fn server_fail(error: hameau_mailbox::Error) -> MethodError {
    tracing::error!(error = %error, "jmap: a method failed");
    MethodError::server_fail()
}

/// The wire id of object `number` of the kind `letter` ([`mod@self`], "Ids").
pub fn id(letter: char, number: u64) -> String {
    format!("{letter}{number}")
}

/// The number of a wire id of the kind `letter`; `None` for any other shape (a leading
/// zero, a sign, another letter, past `u64`).
pub fn parse_id(letter: char, id: &str) -> Option<u64> {
    let digits = id.strip_prefix(letter)?;
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// The letters of the ids ([`mod@self`], "Ids").
pub mod letter {
    pub const MAILBOX: char = 'm';
    pub const EMAIL: char = 'e';
    pub const THREAD: char = 't';
}

/// The ids a `/get` asks for, checked against `maxObjectsInGet` (`requestTooLarge`
/// past it); `None` for "all" (the caller bounds what it returns).
pub fn ids_to_get(ids: Option<Vec<String>>, limits: &Limits) -> Result<Option<Vec<String>>, MethodError> {
    if let Some(ids) = &ids
        && ids.len() as u64 > limits.objects_in_get_max
    {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("{} ids asked, over maxObjectsInGet ({})", ids.len(), limits.objects_in_get_max),
        ));
    }
    Ok(ids)
}

/// The properties a `/get` returns: those asked (each one `known`, else
/// `invalidArguments`), or `default`; `id` always.
pub fn properties(asked: Option<Vec<String>>, known: &[&str], default: &[&str]) -> Result<Vec<String>, MethodError> {
    let mut properties = match asked {
        Some(asked) => {
            if let Some(unknown) = asked.iter().find(|property| !known.contains(&property.as_str())) {
                return Err(MethodError::invalid_arguments(format!("no property {unknown:?}")));
            }
            asked
        }
        None => default.iter().map(|property| property.to_string()).collect(),
    };
    if !properties.iter().any(|property| property == "id") {
        properties.insert(0, "id".into());
    }
    properties.dedup();
    Ok(properties)
}

/// The map of a JSON object literal (an empty map for anything else, which a literal
/// written as an object never is).
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Keeps the `properties` of `object`.
pub fn only(mut object: Map<String, Value>, properties: &[String]) -> Value {
    object.retain(|key, _| properties.iter().any(|property| property == key));
    Value::Object(object)
}

/// The `list` and `notFound` of a `/get` over `all`, the account's objects of one type
/// each with its wire `id`: with `ids` null, every one (at most `objects_in_get_max`);
/// else those asked for, in the asked order, creation ids (`#c1`) resolved.
pub fn pick(
    ctx: &Context<'_>,
    all: Vec<Map<String, Value>>,
    ids: Option<Vec<String>>,
    properties: &[String],
) -> (Vec<Value>, Vec<String>) {
    let Some(ids) = ids else {
        let most = ctx.limits().objects_in_get_max as usize;
        return (all.into_iter().take(most).map(|object| only(object, properties)).collect(), Vec::new());
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for wire in ids {
        let wanted = ctx.resolve_id(&wire);
        match all.iter().find(|object| wanted.is_some() && object.get("id").and_then(Value::as_str) == wanted) {
            Some(object) => list.push(only(object.clone(), properties)),
            None => not_found.push(wire),
        }
    }
    (list, not_found)
}

/// The paging arguments of a `/query` (RFC 8620 §5.5).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    #[serde(default)]
    pub position: i64,
    #[serde(default)]
    pub anchor: Option<String>,
    #[serde(default)]
    pub anchor_offset: i64,
    #[serde(default)]
    pub limit: Option<u64>,
}

/// The part of `ids` (all results, sorted) a `/query` returns: from `anchor` moved by
/// `anchorOffset` when given (`anchorNotFound` if it is not among them), else from
/// `position` (negative counts from the end), at most `limit` capped to
/// `query_results_max`. Returns the start position, the ids, and the limit applied when
/// the server capped the client's.
pub fn window(
    ids: &[String],
    window: &Window,
    limits: &Limits,
) -> Result<(usize, Vec<String>, Option<u64>), MethodError> {
    let total = ids.len() as i64;
    let start = match &window.anchor {
        Some(anchor) => {
            let at = ids
                .iter()
                .position(|id| id == anchor)
                .ok_or_else(|| MethodError::new("anchorNotFound", format!("{anchor:?} is not among the results")))?;
            (at as i64).saturating_add(window.anchor_offset).max(0)
        }
        None if window.position < 0 => total.saturating_add(window.position).max(0),
        None => window.position,
    }
    .min(total) as usize;
    let asked = window.limit.unwrap_or(u64::MAX);
    let applied = asked.min(limits.query_results_max);
    let end = start.saturating_add(usize::try_from(applied).unwrap_or(usize::MAX)).min(ids.len());
    // Said when the server lowered the client's limit, or cut an unlimited query short.
    let capped = (applied < asked && (window.limit.is_some() || end < ids.len())).then_some(applied);
    Ok((start, ids[start..end].to_vec(), capped))
}

/// A `/set`'s `ifInState`: `stateMismatch` when the account is in another.
pub async fn check_state(ctx: &Context<'_>, if_in_state: Option<&str>) -> Result<String, MethodError> {
    let state = ctx.state().await?;
    match if_in_state {
        Some(expected) if expected != state => {
            Err(MethodError::new("stateMismatch", format!("the account is in state {state}, not {expected}")))
        }
        _ => Ok(state),
    }
}

/// How many creations, updates and destructions a `/set` holds, checked against
/// `maxObjectsInSet` (`requestTooLarge`).
pub fn check_set_size(objects: usize, limits: &Limits) -> Result<(), MethodError> {
    if objects as u64 > limits.objects_in_set_max {
        return Err(MethodError::new(
            "requestTooLarge",
            format!("{objects} objects in one /set, over maxObjectsInSet ({})", limits.objects_in_set_max),
        ));
    }
    Ok(())
}

/// The response of a `/set` being built: each object's outcome in its map.
#[derive(Debug, Default)]
pub struct SetResponse {
    pub created: Map<String, Value>,
    pub updated: Map<String, Value>,
    pub destroyed: Vec<String>,
    pub not_created: Map<String, Value>,
    pub not_updated: Map<String, Value>,
    pub not_destroyed: Map<String, Value>,
}

impl SetResponse {
    /// Records how the creation `creation` went: a created object's `id` is then what
    /// `#creation` stands for in the rest of the request.
    pub fn create_outcome(
        &mut self,
        created_ids: &mut HashMap<String, String>,
        creation: String,
        outcome: Result<Value, SetError>,
    ) {
        match outcome {
            Ok(created) => {
                if let Some(id) = created.get("id").and_then(Value::as_str) {
                    created_ids.insert(creation.clone(), id.to_string());
                }
                self.created.insert(creation, created);
            }
            Err(error) => {
                self.not_created.insert(creation, error.to_json());
            }
        }
    }

    /// Records how the update of `wire` went.
    pub fn update_outcome(&mut self, wire: String, outcome: Result<(), SetError>) {
        match outcome {
            Ok(()) => {
                self.updated.insert(wire, Value::Null);
            }
            Err(error) => {
                self.not_updated.insert(wire, error.to_json());
            }
        }
    }

    /// Records how the destruction of `wire` went.
    pub fn destroy_outcome(&mut self, wire: String, outcome: Result<(), SetError>) {
        match outcome {
            Ok(()) => self.destroyed.push(wire),
            Err(error) => {
                self.not_destroyed.insert(wire, error.to_json());
            }
        }
    }

    /// The arguments of the response, the states before and after.
    pub fn into_arguments(self, ctx: &Context<'_>, old_state: String, new_state: String) -> Map<String, Value> {
        let or_null = |map: Map<String, Value>| if map.is_empty() { Value::Null } else { Value::Object(map) };
        let mut response = Map::new();
        response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
        response.insert("oldState".into(), Value::from(old_state));
        response.insert("newState".into(), Value::from(new_state));
        response.insert("created".into(), or_null(self.created));
        response.insert("updated".into(), or_null(self.updated));
        response.insert(
            "destroyed".into(),
            if self.destroyed.is_empty() { Value::Null } else { Value::from(self.destroyed) },
        );
        response.insert("notCreated".into(), or_null(self.not_created));
        response.insert("notUpdated".into(), or_null(self.not_updated));
        response.insert("notDestroyed".into(), or_null(self.not_destroyed));
        response
    }
}

/// The mail capability's account properties (RFC 8621 §1.3.1).
pub fn account_capability() -> Value {
    serde_json::json!({
        // An email may be in any number of mailboxes.
        "maxMailboxesPerEmail": null,
        "maxMailboxDepth": null,
        // A segment of a name in the tree (crates/mailbox, tree.rs).
        "maxSizeMailboxName": 255,
        "maxSizeAttachmentsPerEmail": 50_000_000,
        "emailQuerySortOptions": email_query::SORT_OPTIONS,
        "mayCreateTopLevelMailbox": true,
    })
}

#[cfg(test)]
pub(crate) mod tests;

/// A blob's id (RFC 8620 §6): what a download names and an import or an attachment
/// refers to. Scoped to the account: an id is only ever looked up in the user's own
/// account, so a guessed id of another account's blob finds nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobId {
    /// An email's raw message (`b17`), or one of its MIME parts (`b17.3`: the part's index
    /// in the parsed message's list of parts, as `mail-parser` numbers them).
    Email { email: u64, part: Option<u32> },
    /// An upload of this account not yet used, by its SHA-256 (`u` and 64 hex digits).
    Upload { hash: String },
    /// A part of a blob that is itself a part or an upload (`b17.3.1`: part 1 of the
    /// message attached as part 3 of email 17; `u<sha256>.2`): the parts of what
    /// `Email/parse` reads. `of` is the containing blob's wire id.
    Part { of: String, part: u32 },
}

/// Most part indexes in one blob id ([`BlobId::Part`]): an attached message inside an
/// attached message inside an email is 2; each level is a parse of the level above when
/// the blob is read, so the chain a client may write is short.
pub const BLOB_PARTS_MAX: usize = 4;

impl BlobId {
    pub fn to_wire(&self) -> String {
        match self {
            BlobId::Email { email, part: None } => format!("b{email}"),
            BlobId::Email { email, part: Some(part) } => format!("b{email}.{part}"),
            BlobId::Upload { hash } => format!("u{hash}"),
            BlobId::Part { of, part } => format!("{of}.{part}"),
        }
    }

    /// The blob of a wire id; `None` for any other shape.
    pub fn parse(wire: &str) -> Option<BlobId> {
        let (base, parts) = Self::chain(wire)?;
        match (base, parts.as_slice()) {
            (base, []) => Some(base),
            (BlobId::Email { email, .. }, [part]) => Some(BlobId::Email { email, part: Some(*part) }),
            (_, [.., part]) => {
                let of = &wire[..wire.rfind('.')?];
                Some(BlobId::Part { of: of.to_string(), part: *part })
            }
        }
    }

    /// A wire id as the whole blob it starts from (an email's raw message or an upload)
    /// and the part indexes that lead from it to the blob; `None` for any other shape.
    pub fn chain(wire: &str) -> Option<(BlobId, Vec<u32>)> {
        let mut segments = wire.split('.');
        let base = segments.next()?;
        let base = if let Some(hash) = base.strip_prefix('u') {
            let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            hex.then(|| BlobId::Upload { hash: hash.to_string() })?
        } else {
            BlobId::Email { email: parse_id('b', base)?, part: None }
        };
        let mut parts = Vec::new();
        for segment in segments {
            if parts.len() == BLOB_PARTS_MAX {
                return None;
            }
            parts.push(u32::try_from(parse_id('x', &format!("x{segment}"))?).ok()?);
        }
        Some((base, parts))
    }
}

/// The bytes of a blob of the user's account (a `#creation` id resolved): an email's raw
/// message, one of its parts decoded, or an upload ([`blob::read`]); `None` when the
/// account has no such blob (an id of another account's finds nothing: it is looked up in
/// this one only).
/// A part is parsed out of the blob it starts from: those parses are counted against the
/// request's `jmap.parsed_bytes_max` (`tooLarge` past it).
pub async fn blob_bytes(ctx: &Context<'_>, wire: &str) -> Result<Option<Vec<u8>>, SetError> {
    let Some(wire) = ctx.resolve_id(wire) else { return Ok(None) };
    let charge = |bytes: u64| ctx.charge_parse(bytes).map_err(|reason| SetError::new("tooLarge", reason));
    blob::read(ctx.services, ctx.account(), wire, ctx.now, charge).await
}

/// The arguments of a `/get` (RFC 8620 §5.1), for the types that take no others.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetArguments {
    pub account_id: String,
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub properties: Option<Vec<String>>,
}

/// The arguments of a `/set` (RFC 8620 §5.3), for the types that take no others.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetArguments {
    pub account_id: String,
    #[serde(default)]
    pub if_in_state: Option<String>,
    #[serde(default)]
    pub create: Option<Map<String, Value>>,
    #[serde(default)]
    pub update: Option<Map<String, Value>>,
    #[serde(default)]
    pub destroy: Option<Vec<String>>,
}

/// A sort comparator of a `/query` (RFC 8620 §5.5). Unknown fields are ignored: jmapc 0.4
/// writes its paging arguments into each comparator.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparator {
    pub property: String,
    #[serde(default = "ascending")]
    pub is_ascending: bool,
    #[serde(default)]
    pub collation: Option<String>,
}

fn ascending() -> bool {
    true
}

/// The start of a `/get` whose properties are all of `known` by default: the arguments
/// read, the account checked, the ids asked (at most `objects_in_get_max`), the
/// properties, and the state, read before the data so that a change in between is seen
/// again at the next `/changes`.
pub async fn open_get(
    ctx: &Context<'_>,
    arguments_: Map<String, Value>,
    known: &[&str],
) -> Result<(Option<Vec<String>>, Vec<String>, String), MethodError> {
    let arguments: GetArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let ids = ids_to_get(arguments.ids, ctx.limits())?;
    let properties = properties(arguments.properties, known, known)?;
    let state = ctx.state().await?;
    Ok((ids, properties, state))
}

/// The response of a `/get`: the account, the state read before the data, the objects
/// and the ids not found.
pub fn get_response(ctx: &Context<'_>, state: String, list: Vec<Value>, not_found: Vec<String>) -> Map<String, Value> {
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("state".into(), Value::from(state));
    response.insert("list".into(), Value::from(list));
    response.insert("notFound".into(), Value::from(not_found));
    response
}

/// The response of a `/query` whose results are not kept (`canCalculateChanges` false):
/// the page from `position`, the total if asked, the limit if the server lowered it.
pub fn query_response(
    ctx: &Context<'_>,
    state: String,
    (position, page, limit): (usize, Vec<String>, Option<u64>),
    total: Option<usize>,
) -> Map<String, Value> {
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("queryState".into(), Value::from(state));
    response.insert("canCalculateChanges".into(), Value::from(false));
    response.insert("position".into(), Value::from(position));
    response.insert("ids".into(), Value::from(page));
    if let Some(total) = total {
        response.insert("total".into(), Value::from(total));
    }
    if let Some(limit) = limit {
        response.insert("limit".into(), Value::from(limit));
    }
    response
}

/// A `/set`'s `create`, `update` and `destroy` as given.
pub type SetChanges = (Option<Map<String, Value>>, Option<Map<String, Value>>, Option<Vec<String>>);

/// A `/set` opened: its creations, updates, destructions, and the state before.
pub type OpenedSet = (Map<String, Value>, Map<String, Value>, Vec<String>, String);

/// What every `/set` checks before it changes anything: the account, `maxObjectsInSet`,
/// `ifInState`. The creations, updates and destructions, and the state before.
pub async fn open_set(
    ctx: &Context<'_>,
    account_id: &str,
    if_in_state: Option<&str>,
    (create, update, destroy): SetChanges,
) -> Result<OpenedSet, MethodError> {
    ctx.check_account(account_id)?;
    let (create, update, destroy) =
        (create.unwrap_or_default(), update.unwrap_or_default(), destroy.unwrap_or_default());
    check_set_size(create.len() + update.len() + destroy.len(), ctx.limits())?;
    let old_state = check_state(ctx, if_in_state).await?;
    Ok((create, update, destroy, old_state))
}

//! `Email/get` and `Email/changes` (RFC 8621 §4.2, §4.3).
//!
//! An email's properties come from three places, each read only when a property asks:
//! - its record and index entry (`id`, `blobId`, `threadId`, `mailboxIds`, `keywords`,
//!   `size`, `receivedAt`): one batched read for every id of the call;
//! - its summary, parsed once at delivery and shared with IMAP through the summary cache
//!   (`messageId`, `inReplyTo`, `references`, `sender`, `from`, `to`, `cc`, `bcc`,
//!   `replyTo`, `subject`, `sentAt`, `hasAttachment`, `preview`);
//! - the raw message parsed again by mail-parser (`bodyStructure`, `textBody`, `htmlBody`,
//!   `attachments`, `bodyValues`, `headers`, `header:*`), behind the same panic boundary
//!   as delivery, off the async workers when the message is large.
//!
//! A list view (ids, flags, from, subject, preview) thus never reads a message. `\Deleted`
//! is an IMAP flag, not a JMAP keyword: it is not shown.

pub(crate) mod body;
pub(crate) mod header;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use hameau_mailbox::{ChangeKind, Email, EmailAddress};
use mail_parser::MessageParser;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use self::body::{PartProperties, ValuesWanted};
use self::header::HeaderProperty;
use super::changes::{self, ChangesArguments};
use super::{BlobId, Context, arguments, letter, parse_id, server_fail};
use crate::MethodError;

/// Every property of an Email (RFC 8621 §4.1), `header:` ones aside.
pub const PROPERTIES: [&str; 26] = [
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyStructure",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
    "headers",
];

/// The properties `Email/get` leaves out when the client names none (RFC 8621 §4.2):
/// every other one of [`PROPERTIES`] is returned.
const NOT_BY_DEFAULT: [&str; 2] = ["bodyStructure", "headers"];

/// The properties read from the stored summary.
const SUMMARY_PROPERTIES: [&str; 13] = [
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
];

/// The properties read from the raw message, parsed.
const PARSED_PROPERTIES: [&str; 6] = ["bodyStructure", "bodyValues", "textBody", "htmlBody", "attachments", "headers"];

/// A message above this is parsed on a blocking thread: about a millisecond of parsing.
const PARSE_INLINE_BYTES_MAX: usize = 128 * 1024;

/// The wire id of an email.
pub fn email_id(id: u64) -> String {
    super::id(letter::EMAIL, id)
}

/// The email of a wire id (a `#creation` reference resolved); `None` for no email's.
pub fn parse_email_id(ctx: &Context<'_>, wire: &str) -> Option<u64> {
    parse_id(letter::EMAIL, ctx.resolve_id(wire)?)
}

/// A UTC date as JMAP writes it (RFC 8620 §1.4 `UTCDate`: `2026-11-30T09:00:00Z`).
pub fn utc_date(seconds: u64) -> String {
    mail_parser::DateTime::from_timestamp(i64::try_from(seconds).unwrap_or(i64::MAX)).to_rfc3339()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetArguments {
    account_id: String,
    #[serde(default)]
    ids: Option<Vec<String>>,
    #[serde(default)]
    properties: Option<Vec<String>>,
    #[serde(default)]
    body_properties: Option<Vec<String>>,
    #[serde(default)]
    fetch_text_body_values: bool,
    #[serde(default, rename = "fetchHTMLBodyValues")]
    fetch_html_body_values: bool,
    #[serde(default)]
    fetch_all_body_values: bool,
    #[serde(default)]
    max_body_value_bytes: u64,
}

/// What one `Email/get` asks of each email.
#[derive(Clone, Debug)]
struct Wants {
    properties: Vec<String>,
    headers: Vec<(String, HeaderProperty)>,
    summary: bool,
    parsed: bool,
    parts: PartProperties,
    values: ValuesWanted,
    depth_max: usize,
}

impl Wants {
    fn has(&self, property: &str) -> bool {
        self.properties.iter().any(|asked| asked == property)
    }
}

/// `Email/get` (RFC 8621 §4.2).
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: GetArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let default: Vec<&str> = PROPERTIES.into_iter().filter(|name| !NOT_BY_DEFAULT.contains(name)).collect();
    let wants = wants(&arguments, &default, ctx.limits().body_depth_max)?;
    let ids = super::ids_to_get(arguments.ids, ctx.limits())?;
    // Read before the data: a change between is seen again at the next /changes.
    let state = ctx.state().await?;
    let wire_ids: Vec<String> = match ids {
        Some(ids) => ids,
        None => every_email(ctx).await?.into_iter().map(email_id).collect(),
    };
    let mut numbers = Vec::with_capacity(wire_ids.len());
    let mut not_found = Vec::new();
    let mut asked: Vec<(String, u64)> = Vec::with_capacity(wire_ids.len());
    let mut seen = HashSet::new();
    for wire in wire_ids {
        match parse_email_id(ctx, &wire) {
            Some(number) if seen.insert(number) => {
                numbers.push(number);
                asked.push((wire, number));
            }
            Some(_) => {}
            None => not_found.push(Value::from(wire)),
        }
    }
    let emails = ctx.mail().emails(ctx.account(), &numbers).await.map_err(server_fail)?;
    if wants.parsed {
        let bytes = emails.iter().flatten().map(|email| email.size).sum();
        ctx.charge_parse(bytes).map_err(|reason| MethodError::new("requestTooLarge", reason))?;
    }
    let summaries = if wants.summary {
        ctx.services.summaries.get_many(ctx.mail(), ctx.account(), &numbers).await.map_err(server_fail)?
    } else {
        vec![None; numbers.len()]
    };
    let mut list = Vec::with_capacity(numbers.len());
    // Body values of the whole answer: a call for 500 large messages is cut, not held.
    let mut budget = ctx.limits().body_values_bytes_max;
    for (((wire, _), email), summary) in asked.into_iter().zip(emails).zip(summaries) {
        let Some(email) = email else {
            not_found.push(Value::from(wire));
            continue;
        };
        let mut object = record_properties(&email, &wants);
        if let Some(cached) = &summary {
            summary_properties(&cached.summary, &wants, &mut object);
        }
        if wants.parsed {
            match parsed_properties(ctx, &email, &wants, budget).await? {
                Some((parsed, used)) => {
                    object.extend(parsed);
                    budget -= used;
                }
                None => {
                    not_found.push(Value::from(wire));
                    continue;
                }
            }
        }
        list.push(Value::Object(object));
    }
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("state".into(), Value::from(state));
    response.insert("list".into(), Value::from(list));
    response.insert("notFound".into(), Value::from(not_found));
    Ok(response)
}

/// The properties and body properties asked, checked (`invalidArguments` for an unknown
/// one or a `header:` form the RFC does not allow).
fn wants(arguments: &GetArguments, default: &[&str], depth_max: u64) -> Result<Wants, MethodError> {
    let mut headers = Vec::new();
    let mut plain = Vec::new();
    for property in arguments.properties.iter().flatten() {
        match HeaderProperty::parse(property) {
            Some(header) => headers.push((property.clone(), header?)),
            None => plain.push(property.clone()),
        }
    }
    let properties = super::properties(arguments.properties.as_ref().map(|_| plain), &PROPERTIES, default)?;
    let mut part_headers = Vec::new();
    let mut part_names = Vec::new();
    match &arguments.body_properties {
        None => part_names.extend(body::DEFAULT_PROPERTIES.iter().map(|name| name.to_string())),
        Some(asked) => {
            for property in asked {
                match HeaderProperty::parse(property) {
                    Some(header) => part_headers.push((property.clone(), header?)),
                    None if body::PROPERTIES.contains(&property.as_str()) => part_names.push(property.clone()),
                    None => {
                        return Err(MethodError::invalid_arguments(format!(
                            "a body part has no property {property:?}"
                        )));
                    }
                }
            }
        }
    }
    let has = |property: &str| properties.iter().any(|asked| asked == property);
    let summary = SUMMARY_PROPERTIES.iter().any(|property| has(property));
    let parsed = !headers.is_empty() || PARSED_PROPERTIES.iter().any(|property| has(property));
    let values = ValuesWanted {
        text: arguments.fetch_text_body_values,
        html: arguments.fetch_html_body_values,
        all: arguments.fetch_all_body_values,
        max_bytes: arguments.max_body_value_bytes,
    };
    Ok(Wants {
        properties,
        headers,
        summary,
        parsed,
        parts: PartProperties { names: part_names, headers: part_headers },
        values,
        depth_max: usize::try_from(depth_max).unwrap_or(usize::MAX),
    })
}

/// Every email of the account (for `ids: null`), at most `maxObjectsInGet`
/// (`requestTooLarge` past it: the client pages with `Email/query`).
async fn every_email(ctx: &Context<'_>) -> Result<Vec<u64>, MethodError> {
    let mailboxes = ctx.mail().mailboxes(ctx.account()).await.map_err(server_fail)?;
    let mut all = std::collections::BTreeSet::new();
    for mailbox in mailboxes {
        let entries = match ctx.mail().uids(ctx.account(), mailbox.id).await {
            Ok(entries) => entries,
            Err(hameau_mailbox::Error::NoMailbox(_)) => continue,
            Err(e) => return Err(server_fail(e)),
        };
        all.extend(entries.iter().map(|entry| entry.email));
        if all.len() as u64 > ctx.limits().objects_in_get_max {
            return Err(MethodError::new(
                "requestTooLarge",
                format!(
                    "the account holds more than maxObjectsInGet ({}) emails: ask for ids",
                    ctx.limits().objects_in_get_max
                ),
            ));
        }
    }
    Ok(all.into_iter().collect())
}

/// The properties of the email's record.
fn record_properties(email: &Email, wants: &Wants) -> Map<String, Value> {
    let mut object = Map::new();
    for property in &wants.properties {
        let value = match property.as_str() {
            "id" => Value::from(email_id(email.id)),
            "blobId" => Value::from(BlobId::Email { email: email.id, part: None }.to_wire()),
            "threadId" => Value::from(super::id(letter::THREAD, email.thread)),
            "mailboxIds" => Value::Object(
                email
                    .mailboxes
                    .iter()
                    .map(|mailbox| (super::mailbox::mailbox_id(*mailbox), Value::Bool(true)))
                    .collect(),
            ),
            "keywords" => Value::Object(keywords(&email.keywords)),
            "size" => Value::from(email.size),
            "receivedAt" => Value::from(utc_date(email.received_at)),
            _ => continue,
        };
        object.insert(property.clone(), value);
    }
    object
}

/// Keywords as JMAP writes them (`{"$seen": true}`), without `\Deleted`.
pub fn keywords(keywords: &[hameau_mailbox::Keyword]) -> Map<String, Value> {
    keywords.iter().filter_map(|keyword| keyword.jmap()).map(|word| (word.to_string(), Value::Bool(true))).collect()
}

/// `EmailAddress` objects of the summary's addresses; `null` for none (the header
/// field's absence and an empty one look alike in the summary).
fn addresses(list: &[EmailAddress]) -> Value {
    if list.is_empty() {
        return Value::Null;
    }
    Value::from(
        list.iter()
            .map(|address| json!({"name": address.name, "email": address.address.as_deref().unwrap_or_default()}))
            .collect::<Vec<_>>(),
    )
}

fn ids_or_null(ids: &[String]) -> Value {
    if ids.is_empty() { Value::Null } else { json!(ids) }
}

/// The properties of the stored summary.
fn summary_properties(summary: &hameau_mailbox::Summary, wants: &Wants, object: &mut Map<String, Value>) {
    for property in &wants.properties {
        let value = match property.as_str() {
            "messageId" => ids_or_null(&summary.message_id),
            "inReplyTo" => ids_or_null(&summary.in_reply_to),
            "references" => ids_or_null(&summary.references),
            "sender" => addresses(&summary.sender),
            "from" => addresses(&summary.from),
            "to" => addresses(&summary.to),
            "cc" => addresses(&summary.cc),
            "bcc" => addresses(&summary.bcc),
            "replyTo" => addresses(&summary.reply_to),
            "subject" => json!(summary.subject),
            "sentAt" => sent_at(summary),
            "hasAttachment" => Value::Bool(summary.has_attachment),
            "preview" => Value::from(summary.preview.clone()),
            _ => continue,
        };
        object.insert(property.clone(), value);
    }
}

/// `sentAt`: the Date header with its own offset (RFC 8621 §4.1.3 `header:Date:asDate`),
/// read from the text the summary kept.
fn sent_at(summary: &hameau_mailbox::Summary) -> Value {
    let Some(date) = &summary.date else { return Value::Null };
    let mut raw = date.clone().into_bytes();
    raw.push(b'\n');
    header::parse(&raw, header::Form::Date)
}

/// The properties of the parsed message and the bytes of body values given (at most
/// `budget`); `None` when the email is gone meanwhile.
async fn parsed_properties(
    ctx: &Context<'_>,
    email: &Email,
    wants: &Wants,
    budget: u64,
) -> Result<Option<(Map<String, Value>, u64)>, MethodError> {
    let raw = match ctx.mail().raw(ctx.account(), email.id).await {
        Ok(raw) => raw,
        Err(hameau_mailbox::Error::NoEmail(_)) => return Ok(None),
        Err(e) => return Err(server_fail(e)),
    };
    let blob = BlobId::Email { email: email.id, part: None }.to_wire();
    let wants = wants.clone();
    match off_workers(raw, move |raw| render(raw, &blob, &wants, budget)).await {
        Some(object) => Ok(Some(object)),
        None => {
            tracing::warn!(email = email.id, "jmap: a stored message could not be parsed again");
            Err(MethodError::server_fail())
        }
    }
}

/// `work` (a parse) on `raw`: inline for a message up to `PARSE_INLINE_BYTES_MAX`, on a
/// blocking thread for a larger one, so that the other tasks of this worker keep running.
async fn off_workers<T: Send + 'static>(
    raw: Vec<u8>,
    work: impl FnOnce(&[u8]) -> Option<T> + Send + 'static,
) -> Option<T> {
    if raw.len() <= PARSE_INLINE_BYTES_MAX {
        return work(&raw);
    }
    tokio::task::spawn_blocking(move || work(&raw)).await.unwrap_or(None)
}

/// The parsed properties of one raw message, mail-parser behind the panic boundary;
/// `None` when it panicked (the message was read at delivery, so it should not).
fn render(raw: &[u8], blob: &str, wants: &Wants, budget: u64) -> Option<(Map<String, Value>, u64)> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| render_unguarded(raw, blob, wants, budget))).ok()
}

/// The parsed properties, and the bytes of body values given (out of `budget`).
fn render_unguarded(raw: &[u8], blob: &str, wants: &Wants, budget: u64) -> (Map<String, Value>, u64) {
    let mut object = Map::new();
    let mut used = 0;
    let Some(message) = MessageParser::default().parse(raw) else {
        // Unreadable as MIME (stored as is at delivery): one opaque part.
        for property in &wants.properties {
            match property.as_str() {
                "bodyStructure" => object.insert(property.clone(), Value::Null),
                "bodyValues" => object.insert(property.clone(), json!({})),
                "textBody" | "htmlBody" | "attachments" | "headers" => object.insert(property.clone(), json!([])),
                _ => None,
            };
        }
        for (property, _) in &wants.headers {
            object.insert(property.clone(), Value::Null);
        }
        return (object, 0);
    };
    let lists = body::lists(&message);
    let part_list = |indexes: &[usize]| -> Value {
        Value::from(
            indexes
                .iter()
                .map(|index| Value::Object(body::part_json(raw, blob, &message, *index, &wants.parts)))
                .collect::<Vec<_>>(),
        )
    };
    if wants.has("bodyStructure") {
        object.insert("bodyStructure".into(), body::structure(raw, blob, &message, &wants.parts, wants.depth_max));
    }
    if wants.has("textBody") {
        object.insert("textBody".into(), part_list(&lists.text));
    }
    if wants.has("htmlBody") {
        object.insert("htmlBody".into(), part_list(&lists.html));
    }
    if wants.has("attachments") {
        object.insert("attachments".into(), part_list(&lists.attachments));
    }
    if wants.has("bodyValues") {
        let (values, given) = body::values(&message, &lists, wants.values, budget);
        used = given;
        object.insert("bodyValues".into(), Value::Object(values));
    }
    if wants.has("headers") || !wants.headers.is_empty() {
        let fields = message.parts.first().map(|root| body::fields(raw, root)).unwrap_or_default();
        if wants.has("headers") {
            object.insert("headers".into(), body::headers_json(&fields));
        }
        body::header_properties(&wants.headers, &fields, &mut object);
    }
    (object, used)
}

/// The properties `Email/parse` leaves out when the client names none (RFC 8621 §4.9):
/// those of a stored email, besides [`NOT_BY_DEFAULT`].
const NOT_PARSED_BY_DEFAULT: [&str; 7] = ["id", "blobId", "threadId", "mailboxIds", "keywords", "size", "receivedAt"];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ParseArguments {
    account_id: String,
    blob_ids: Vec<String>,
    #[serde(default)]
    properties: Option<Vec<String>>,
    #[serde(default)]
    body_properties: Option<Vec<String>>,
    #[serde(default)]
    fetch_text_body_values: bool,
    #[serde(default, rename = "fetchHTMLBodyValues")]
    fetch_html_body_values: bool,
    #[serde(default)]
    fetch_all_body_values: bool,
    #[serde(default)]
    max_body_value_bytes: u64,
}

/// `Email/parse` (RFC 8621 §4.9): blobs read as emails without storing them, such as a
/// message attached to an email (`b17.3`) or an uploaded `.eml`. An email's own
/// properties (`id`, `mailboxIds`, `keywords`, `receivedAt`, `threadId`) are null; its
/// parts' blob ids extend the parsed blob's (`b17.3.1`), so they can be downloaded.
/// At most `maxObjectsInGet` blobs a call; their body values share one budget as in
/// `Email/get`.
pub async fn parse(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ParseArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let blob_ids = super::ids_to_get(Some(arguments.blob_ids), ctx.limits())?.unwrap_or_default();
    let asked_id = arguments.properties.as_ref().is_some_and(|asked| asked.iter().any(|property| property == "id"));
    let get = GetArguments {
        account_id: arguments.account_id,
        ids: None,
        properties: arguments.properties,
        body_properties: arguments.body_properties,
        fetch_text_body_values: arguments.fetch_text_body_values,
        fetch_html_body_values: arguments.fetch_html_body_values,
        fetch_all_body_values: arguments.fetch_all_body_values,
        max_body_value_bytes: arguments.max_body_value_bytes,
    };
    let default: Vec<&str> = PROPERTIES
        .into_iter()
        .filter(|name| !NOT_BY_DEFAULT.contains(name) && !NOT_PARSED_BY_DEFAULT.contains(name))
        .collect();
    let mut wants = wants(&get, &default, ctx.limits().body_depth_max)?;
    if !asked_id {
        wants.properties.retain(|property| property != "id");
    }
    let message_limits = ctx.mail().limits().message.clone();
    let mut parsed = Map::new();
    let mut not_parsable = Vec::new();
    let mut not_found = Vec::new();
    let mut budget = ctx.limits().body_values_bytes_max;
    for wire in blob_ids {
        let raw = match super::blob_bytes(ctx, &wire).await {
            Ok(Some(raw)) => raw,
            Ok(None) => {
                not_found.push(wire);
                continue;
            }
            Err(error) if error.kind == "tooLarge" => {
                return Err(MethodError::new("requestTooLarge", error.description));
            }
            Err(_) => return Err(MethodError::server_fail()),
        };
        let blob = ctx.resolve_id(&wire).unwrap_or(&wire).to_string();
        let size = raw.len();
        // A blob named many times is parsed, and counted, each time.
        ctx.charge_parse(size as u64).map_err(|reason| MethodError::new("requestTooLarge", reason))?;
        let outcome = {
            let (blob, wants, limits) = (blob.clone(), wants.clone(), message_limits.clone());
            off_workers(raw, move |raw| parse_one(raw, &blob, &wants, budget, &limits)).await
        };
        let Some((mut object, used)) = outcome else {
            not_parsable.push(wire);
            continue;
        };
        budget -= used;
        for property in &wants.properties {
            let value = match property.as_str() {
                "id" | "threadId" | "mailboxIds" | "keywords" | "receivedAt" => Value::Null,
                "blobId" => Value::from(blob.clone()),
                "size" => Value::from(size),
                _ => continue,
            };
            object.insert(property.clone(), value);
        }
        parsed.insert(wire, Value::Object(object));
    }
    let or_null = |list: Vec<String>| if list.is_empty() { Value::Null } else { Value::from(list) };
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("parsed".into(), if parsed.is_empty() { Value::Null } else { Value::Object(parsed) });
    response.insert("notParsable".into(), or_null(not_parsable));
    response.insert("notFound".into(), or_null(not_found));
    Ok(response)
}

/// One blob read as an email for `Email/parse`: the summary as delivery makes it (the
/// same parse boundary) and the parsed properties; `None` when it is not an email (empty,
/// or the parser fails on it).
fn parse_one(
    raw: &[u8],
    blob: &str,
    wants: &Wants,
    budget: u64,
    limits: &hameau_mailbox::MessageLimits,
) -> Option<(Map<String, Value>, u64)> {
    if raw.is_empty() {
        return None;
    }
    let summary = hameau_mailbox::parse_message(raw, limits).ok()?.summary;
    let (mut object, used) = render(raw, blob, wants, budget)?;
    summary_properties(&summary, wants, &mut object);
    Some((object, used))
}

/// `Email/changes` (RFC 8621 §4.3): the emails of each change of the log.
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let select = |change: &hameau_mailbox::Change, out: &mut Vec<(u64, ChangeKind)>| {
        out.extend(change.email_changes());
    };
    let folded = changes::read(ctx, &arguments, &select).await?;
    Ok(changes::response(ctx, &arguments, &folded, email_id))
}

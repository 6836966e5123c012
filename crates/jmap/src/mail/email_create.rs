//! Creating an email from its properties (`Email/set` create, RFC 8621 §4.6): the message
//! is written (`mail-builder`) from the header properties, the text and HTML bodies given
//! as `bodyValues`, and attachments that are blobs of the account, then stored through the
//! one ingest path, as a draft is by a web client before `EmailSubmission`.
//!
//! Taken: `mailboxIds` (required), `keywords`, `receivedAt`, `from`, `sender`, `to`, `cc`,
//! `bcc`, `replyTo`, `subject`, `sentAt`, `messageId`, `inReplyTo`, `references`,
//! `textBody` and `htmlBody` (one part each, its `partId` naming a `bodyValues` entry),
//! `bodyValues`, `attachments` (each `blobId`, `type`, `name`, `disposition`). A
//! `bodyStructure` or `header:` property is refused with `invalidProperties` saying so.

use hameau_mailbox::Ingest;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use serde_json::{Map, Value};

use super::email_set::{read_keywords, read_mailboxes, set_fail};
use super::{BlobId, Context, id, letter};
use crate::SetError;

/// Addresses in one field of a created email: 1,000, the queue's recipients bound.
const ADDRESSES_MAX: usize = 1_000;
/// Attachments of one created email: 100, far above a town hall's mail.
const ATTACHMENTS_MAX: usize = 100;

const TAKEN: [&str; 19] = [
    "mailboxIds",
    "keywords",
    "receivedAt",
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "messageId",
    "inReplyTo",
    "references",
    "textBody",
    "htmlBody",
    "bodyValues",
    "attachments",
    "preview",
];

fn bad(property: &str, why: impl Into<String>) -> SetError {
    SetError::invalid_properties(why, vec![property.to_string()])
}

/// Creates one email: its id, blob id, thread id and size, as the response's `created`.
pub async fn create(ctx: &Context<'_>, object: &Map<String, Value>) -> Result<Value, SetError> {
    if let Some(other) = object.keys().find(|key| !TAKEN.contains(&key.as_str())) {
        return Err(bad(
            other,
            format!("{other:?} cannot be given when creating an email here (bodyStructure and header: are not taken)"),
        ));
    }
    let mailboxes = read_mailboxes(ctx, object.get("mailboxIds"))?;
    let keywords = match object.get("keywords") {
        Some(keywords) => read_keywords(Some(keywords))?,
        None => Vec::new(),
    };
    let received_at = match object.get("receivedAt") {
        None | Some(Value::Null) => ctx.now,
        Some(Value::String(date)) => {
            hameau_calendar::parse_rfc3339_utc(date).ok_or_else(|| bad("receivedAt", "a UTCDate"))?
        }
        Some(_) => return Err(bad("receivedAt", "a UTCDate")),
    };
    let raw = write(ctx, object).await?;
    if raw.len() as u64 > ctx.limits().upload_bytes_max {
        return Err(SetError::new("tooLarge", format!("the message is over {} bytes", ctx.limits().upload_bytes_max)));
    }
    let size = raw.len();
    let ingest = Ingest { raw: raw.into(), mailboxes, keywords, received_at, quota: ctx.user.quota.clone() };
    let stored = ctx.mail().ingest(ctx.account(), ingest).await.map_err(set_fail)?;
    let mut created = Map::new();
    created.insert("id".into(), Value::from(id(letter::EMAIL, stored.email)));
    created.insert("blobId".into(), Value::from(BlobId::Email { email: stored.email, part: None }.to_wire()));
    created.insert("threadId".into(), Value::from(id(letter::THREAD, stored.thread)));
    created.insert("size".into(), Value::from(size));
    Ok(Value::Object(created))
}

/// The message the properties describe.
async fn write(ctx: &Context<'_>, object: &Map<String, Value>) -> Result<Vec<u8>, SetError> {
    let mut builder = MessageBuilder::new();
    for (property, field) in [("from", 0), ("sender", 1), ("to", 2), ("cc", 3), ("bcc", 4), ("replyTo", 5)] {
        let Some(addresses) = addresses(object, property)? else { continue };
        builder = match field {
            0 => builder.from(addresses),
            1 => builder.sender(addresses),
            2 => builder.to(addresses),
            3 => builder.cc(addresses),
            4 => builder.bcc(addresses),
            _ => builder.reply_to(addresses),
        };
    }
    if let Some(subject) = text(object, "subject")? {
        builder = builder.subject(subject);
    }
    let sent_at = match object.get("sentAt") {
        None | Some(Value::Null) => ctx.now as i64,
        Some(Value::String(date)) => {
            hameau_calendar::parse_rfc3339_utc(date).ok_or_else(|| bad("sentAt", "a Date"))? as i64
        }
        Some(_) => return Err(bad("sentAt", "a Date")),
    };
    builder = builder.date(sent_at);
    if !object.contains_key("messageId") {
        // Of the user's domain, not of whatever host name the builder would find.
        let domain = ctx.user.address.rsplit_once('@').map_or("localhost", |(_, domain)| domain);
        let unique = std::collections::hash_map::RandomState::new();
        let random = std::hash::BuildHasher::hash_one(&unique, (ctx.now, ctx.user.account));
        builder = builder.message_id(format!("{:x}.{random:016x}@{domain}", ctx.now));
    }
    for (property, field) in [("messageId", 0), ("inReplyTo", 1), ("references", 2)] {
        let Some(ids) = message_ids(object, property)? else { continue };
        builder = match field {
            0 => builder.message_id(ids),
            1 => builder.in_reply_to(ids),
            _ => builder.references(ids),
        };
    }
    let values = match object.get("bodyValues") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(values)) => values.clone(),
        Some(_) => return Err(bad("bodyValues", "an object of part id to EmailBodyValue")),
    };
    for (property, html) in [("textBody", false), ("htmlBody", true)] {
        let Some(content) = body(object, property, &values)? else { continue };
        builder = if html { builder.html_body(content) } else { builder.text_body(content) };
    }
    let attachments = match object.get("attachments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= ATTACHMENTS_MAX => list.clone(),
        Some(_) => return Err(bad("attachments", format!("a list of at most {ATTACHMENTS_MAX} EmailBodyParts"))),
    };
    for part in attachments {
        let blob = part.get("blobId").and_then(Value::as_str).ok_or_else(|| bad("attachments", "each has a blobId"))?;
        let content_type = part.get("type").and_then(Value::as_str).unwrap_or("application/octet-stream").to_string();
        let name = part.get("name").and_then(Value::as_str).unwrap_or("piece-jointe").to_string();
        let bytes = super::blob_bytes(ctx, blob)
            .await?
            .ok_or_else(|| SetError::new("blobNotFound", format!("no blob {blob:?} in this account")))?;
        if part.get("disposition").and_then(Value::as_str) == Some("inline") {
            let cid = part.get("cid").and_then(Value::as_str).unwrap_or(&name).to_string();
            builder = builder.inline(content_type, cid, bytes);
        } else {
            builder = builder.attachment(content_type, name, bytes);
        }
    }
    builder.write_to_vec().map_err(|e| SetError::new("invalidEmail", format!("the message cannot be written: {e}")))
}

/// An `EmailAddress[]` property, as the builder takes it; `None` when absent or null.
fn addresses(object: &Map<String, Value>, property: &str) -> Result<Option<Address<'static>>, SetError> {
    let list = match object.get(property) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) if list.len() <= ADDRESSES_MAX => list,
        Some(_) => return Err(bad(property, format!("a list of at most {ADDRESSES_MAX} EmailAddress objects"))),
    };
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let email = entry.get("email").and_then(Value::as_str).filter(|email| {
            email.contains('@') && !email.chars().any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
        });
        let Some(email) = email else { return Err(bad(property, "each address has a valid email")) };
        let name = entry.get("name").and_then(Value::as_str).filter(|name| !name.is_empty()).map(str::to_string);
        out.push(Address::new_address(name, email.to_string()));
    }
    Ok(Some(if out.len() == 1 { out.remove(0) } else { Address::new_list(out) }))
}

fn text(object: &Map<String, Value>, property: &str) -> Result<Option<String>, SetError> {
    match object.get(property) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if !text.chars().any(|c| c == '\r' || c == '\n') => Ok(Some(text.clone())),
        Some(_) => Err(bad(property, "a string on one line")),
    }
}

fn message_ids(object: &Map<String, Value>, property: &str) -> Result<Option<Vec<String>>, SetError> {
    match object.get(property) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(ids)) if ids.len() <= ADDRESSES_MAX => ids
            .iter()
            .map(|id| match id.as_str() {
                Some(id)
                    if !id.is_empty()
                        && id.contains('@')
                        && !id.chars().any(|c| c.is_whitespace() || c == '<' || c == '>') =>
                {
                    Ok(id.to_string())
                }
                _ => Err(bad(property, "message ids (local@domain, without angle brackets)")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(bad(property, "a list of message ids")),
    }
}

/// The content of `textBody` or `htmlBody`: one part whose `partId` names a `bodyValues`
/// entry.
fn body(object: &Map<String, Value>, property: &str, values: &Map<String, Value>) -> Result<Option<String>, SetError> {
    let parts = match object.get(property) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err(bad(property, "a list of one EmailBodyPart")),
    };
    match parts.as_slice() {
        [] => Ok(None),
        [part] => {
            let part_id =
                part.get("partId").and_then(Value::as_str).ok_or_else(|| bad(property, "the part has a partId"))?;
            let value = values
                .get(part_id)
                .and_then(|value| value.get("value"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("bodyValues", format!("no body value {part_id:?}")))?;
            Ok(Some(value.to_string()))
        }
        _ => Err(bad(property, "one part only")),
    }
}

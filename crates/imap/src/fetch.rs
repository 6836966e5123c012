//! FETCH: every item from the mailbox index (flags, UID, size, dates, modseq), the stored
//! summary (ENVELOPE, BODYSTRUCTURE, part offsets) and the raw message (sections, BINARY).
//! Nothing is parsed again here.

use std::borrow::Cow;

use base64::Engine;
use hameau_imap_session::{
    Code, DateTime, FetchAttribute, ListWriter, Section, SectionText, SequenceSet, Session, Status,
};
use hameau_mailbox::{EmailAddress, Keyword, KeywordOp, Part, Summary};

/// Attached messages and multiparts followed by BODYSTRUCTURE: a summary nests no deeper
/// (hameau-message), and no recursion follows a depth a message controls.
const BODYSTRUCTURE_DEPTH_MAX: usize = 32;

use crate::state::{Conn, No, Outcome, done};
use crate::transport::Connection;
use crate::view::{self, flags_of};

/// What a FETCH asks (the session bounded `attributes` by `imap.fetch_items_max`).
pub struct Request<'r> {
    pub uid: bool,
    pub set: &'r SequenceSet,
    pub attributes: &'r [FetchAttribute],
    pub changed_since: Option<u64>,
    pub vanished: bool,
}

/// FETCH (RFC 9051 §6.4.5). The answer is streamed: whenever more than
/// `imap.output_bytes_max` of it waits (checked after each item), it is written to
/// `connection`, so memory holds one message and that buffer whatever the mailbox's size.
pub async fn fetch(
    conn: &mut Conn<'_>,
    session: &mut Session,
    connection: &mut Connection,
    request: Request<'_>,
) -> Outcome {
    let Request { uid, set, attributes, changed_since, vanished } = request;
    let output_max = conn.ctx.options.session.limits.output_bytes_max;
    let mut broken: Option<std::io::Error> = None;
    let mail = conn.ctx.mail.clone();
    let enabled = session.enabled();
    let utf8 = session.utf8_names();
    let (user, selected) = conn.state.selected_mut()?;
    let account = user.account;
    if !uid && !set.is_saved() && !set.fits(selected.entries.len() as u32) {
        return Err(No::new(None, "Invalid message sequence number"));
    }
    let mut indexes = selected.resolve(set, uid);
    if vanished && uid && enabled.qresync {
        let since = changed_since.unwrap_or(0);
        let delta = mail.mailbox_changes_since(account, selected.id, since).await?;
        let largest = selected.uid_next_hint().max(delta.expunged.iter().copied().max().unwrap_or(0));
        let asked = if set.is_saved() { Vec::new() } else { set.normalized(largest) };
        let mut gone: Vec<u32> =
            delta.expunged.iter().copied().filter(|uid| !set.is_saved() && view::in_ranges(&asked, *uid)).collect();
        gone.sort_unstable();
        gone.dedup();
        if let Some(gone) = SequenceSet::from_sorted(gone) {
            session.untagged().vanished(true, &gone);
        }
    }
    if let Some(since) = changed_since {
        indexes.retain(|index| selected.entries[*index].modseq > since);
    }
    // A body fetched without PEEK is now seen (RFC 9051 §6.4.5), unless read-only.
    let sets_seen = !selected.read_only
        && attributes.iter().any(|a| {
            matches!(
                a,
                FetchAttribute::BodySection { peek: false, .. }
                    | FetchAttribute::Binary { peek: false, .. }
                    | FetchAttribute::Rfc822
                    | FetchAttribute::Rfc822Text
            )
        });
    let mut newly_seen = Vec::new();
    if sets_seen {
        let unseen: Vec<u32> = indexes
            .iter()
            .map(|index| &selected.entries[*index])
            .filter(|entry| !entry.has(&Keyword::Seen))
            .map(|entry| entry.uid)
            .collect();
        if !unseen.is_empty() {
            let outcome =
                mail.store_keywords(account, selected.id, &unseen, KeywordOp::Add, &[Keyword::Seen], None).await?;
            for entry in outcome.updated {
                if let Some(seq) = selected.seq_of(entry.uid) {
                    newly_seen.push(entry.uid);
                    selected.entries[seq as usize - 1] = entry;
                }
            }
        }
    }
    let needs_summary = attributes.iter().any(|a| {
        matches!(
            a,
            FetchAttribute::Envelope
                | FetchAttribute::BodyStructure
                | FetchAttribute::Body
                | FetchAttribute::BodySection { .. }
                | FetchAttribute::Binary { .. }
                | FetchAttribute::BinarySize { .. }
                | FetchAttribute::Rfc822Header
                | FetchAttribute::Rfc822Text
        )
    });
    let needs_raw = attributes.iter().any(|a| {
        matches!(
            a,
            FetchAttribute::BodySection { .. }
                | FetchAttribute::Binary { .. }
                | FetchAttribute::BinarySize { .. }
                | FetchAttribute::Rfc822
                | FetchAttribute::Rfc822Header
                | FetchAttribute::Rfc822Text
        )
    });
    let condstore = enabled.condstore || changed_since.is_some();
    let mut expunged_meanwhile = false;
    'messages: for index in indexes {
        if session.buffered_output() > output_max
            && let Err(error) = connection.flush(session).await
        {
            broken = Some(error);
            break 'messages;
        }
        let entry = &selected.entries[index];
        let (summary, raw) = if needs_summary || needs_raw {
            let summary = if needs_summary {
                match conn.ctx.summaries.get(&mail, account, entry.email).await {
                    Ok(summary) => Some(summary),
                    Err(hameau_mailbox::Error::NoEmail(_)) => {
                        expunged_meanwhile = true;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let raw = if needs_raw {
                match mail.raw(account, entry.email).await {
                    Ok(raw) => Some(raw),
                    Err(hameau_mailbox::Error::NoEmail(_)) => {
                        expunged_meanwhile = true;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            (summary, raw)
        } else {
            (None, None)
        };
        let empty = Summary::default();
        let summary: &Summary = summary.as_ref().map_or(&empty, |cached| &cached.summary);
        let raw = raw.unwrap_or_default();
        let mut out = session.untagged();
        let mut line = out.fetch(index as u32 + 1);
        // UID first, as clients expect it (UID FETCH always reports it).
        let uid_first = uid || attributes.first() == Some(&FetchAttribute::Uid);
        if uid_first {
            line.uid(entry.uid);
        }
        let mut flags_written = false;
        for attribute in attributes {
            if line.buffered() > output_max {
                let bytes = line.take_buffered();
                if let Err(error) = connection.write_partial(&bytes).await {
                    broken = Some(error);
                    break 'messages;
                }
            }
            match attribute {
                FetchAttribute::Uid => {
                    if !uid_first {
                        line.uid(entry.uid);
                    }
                }
                FetchAttribute::Flags => {
                    line.flags(&flags_of(&entry.keywords), selected.is_recent(entry.uid, enabled));
                    flags_written = true;
                }
                FetchAttribute::ModSeq => {
                    line.modseq(entry.modseq);
                }
                FetchAttribute::InternalDate => {
                    let date = DateTime::from_unix(entry.received_at as i64, 0)
                        .or_else(|| DateTime::from_unix(0, 0))
                        .expect("the epoch is a date");
                    line.internal_date(&date);
                }
                FetchAttribute::Rfc822Size => {
                    line.rfc822_size(u64::from(entry.size));
                }
                FetchAttribute::Envelope => {
                    let mut list = line.envelope();
                    envelope(&mut list, summary, utf8);
                }
                FetchAttribute::BodyStructure => {
                    let mut list = line.body_structure();
                    structure(&mut list, summary, 0, true, utf8, 0);
                }
                FetchAttribute::Body => {
                    let mut list = line.body();
                    structure(&mut list, summary, 0, false, utf8, 0);
                }
                FetchAttribute::Rfc822 => {
                    line.rfc822(Some(&raw));
                }
                FetchAttribute::Rfc822Header => {
                    let end = summary.parts.first().map_or(raw.len(), |root| root.offset_body as usize).min(raw.len());
                    line.rfc822_header(Some(&raw[..end]));
                }
                FetchAttribute::Rfc822Text => {
                    let start = summary.parts.first().map_or(0, |root| root.offset_body as usize).min(raw.len());
                    line.rfc822_text(Some(&raw[start..]));
                }
                FetchAttribute::BodySection { section, partial, .. } => {
                    let data = section_bytes(summary, &raw, section);
                    let (origin, data) = apply_partial(data, *partial);
                    line.body_section(section, origin, data.as_deref());
                }
                FetchAttribute::Binary { part, partial, .. } => {
                    let decoded = binary(summary, &raw, part);
                    let decoded = match decoded {
                        Ok(decoded) => decoded,
                        Err(unknown) => {
                            drop(line);
                            return Err(No::new(
                                Some(Code::UnknownCte),
                                format!("Cannot decode the transfer encoding {unknown:?}"),
                            ));
                        }
                    };
                    let (origin, data) = apply_partial(decoded.map(Cow::Owned), *partial);
                    line.binary(part, origin, data.as_deref());
                }
                FetchAttribute::BinarySize { part } => {
                    let size = binary(summary, &raw, part).ok().flatten().map_or(0, |data| data.len() as u64);
                    line.binary_size(part, size);
                }
            }
        }
        if !flags_written && newly_seen.contains(&entry.uid) {
            line.flags(&flags_of(&entry.keywords), selected.is_recent(entry.uid, enabled));
        }
        if condstore && !attributes.contains(&FetchAttribute::ModSeq) {
            line.modseq(entry.modseq);
        }
    }
    if let Some(error) = broken {
        // The client stopped reading (write timeout) or left: the driver closes.
        conn.broken = Some(error);
        return Err(No::new(None, "FETCH aborted: the connection failed"));
    }
    // A UID FETCH of a message expunged meanwhile by another session just leaves it out
    // (RFC 9051: UIDs that do not exist are no error); a FETCH by sequence number says so
    // (RFC 2180 §4.1.2), and the EXPUNGE follows with the next command that allows it.
    if expunged_meanwhile && !uid {
        return Err(No::new(Some(Code::ExpungeIssued), "Some messages were expunged meanwhile"));
    }
    conn.refresh(session, uid).await;
    let _ = Status::Ok;
    done("FETCH completed")
}

/// `<origin.length>`: the slice, and the origin to echo.
fn apply_partial(
    data: Option<Cow<'_, [u8]>>,
    partial: Option<hameau_imap_session::Partial>,
) -> (Option<u32>, Option<Cow<'_, [u8]>>) {
    let Some(partial) = partial else { return (None, data) };
    let data = data.map(|data| {
        let start = (partial.origin as usize).min(data.len());
        let end = start.saturating_add(partial.length as usize).min(data.len());
        match data {
            Cow::Borrowed(bytes) => Cow::Borrowed(&bytes[start..end]),
            Cow::Owned(bytes) => Cow::Owned(bytes[start..end].to_vec()),
        }
    });
    (Some(partial.origin), data)
}

/// A header text for ENVELOPE: as is in UTF-8 mode, else non-ASCII text as an RFC 2047
/// encoded word (the summary holds decoded text).
fn text(value: &str, utf8: bool) -> Cow<'_, str> {
    if utf8 || value.is_ascii() {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(value)))
    }
}

fn envelope(list: &mut ListWriter<'_>, summary: &Summary, utf8: bool) {
    list.nstring(summary.date.as_deref().map(str::as_bytes));
    list.nstring(summary.subject.as_deref().map(|s| text(s, utf8)).as_deref().map(str::as_bytes));
    let from = &summary.from;
    let sender = if summary.sender.is_empty() { from } else { &summary.sender };
    let reply_to = if summary.reply_to.is_empty() { from } else { &summary.reply_to };
    for addresses in [from, sender, reply_to, &summary.to, &summary.cc, &summary.bcc] {
        address_list(list, addresses, utf8);
    }
    let ids = |ids: &[String]| -> Option<String> {
        (!ids.is_empty()).then(|| ids.iter().map(|id| format!("<{id}>")).collect::<Vec<_>>().join(" "))
    };
    list.nstring(ids(&summary.in_reply_to).as_deref().map(str::as_bytes));
    list.nstring(ids(&summary.message_id).as_deref().map(str::as_bytes));
}

fn address_list(list: &mut ListWriter<'_>, addresses: &[EmailAddress], utf8: bool) {
    if addresses.is_empty() {
        list.nil();
        return;
    }
    let mut outer = list.list();
    for address in addresses {
        let mut one = outer.list();
        one.nstring(address.name.as_deref().map(|name| text(name, utf8)).as_deref().map(str::as_bytes));
        one.nil();
        let (mailbox, host) = match address.address.as_deref().and_then(|a| a.rsplit_once('@')) {
            Some((mailbox, host)) => (Some(mailbox.to_string()), Some(host.to_string())),
            None => (address.address.clone(), None),
        };
        one.nstring(mailbox.as_deref().map(str::as_bytes));
        one.nstring(host.as_deref().map(str::as_bytes));
    }
}

/// Writes the body structure of `summary.parts[index]` into `list` (RFC 9051 §7.5.2):
/// `extended` for BODYSTRUCTURE, basic for BODY.
fn structure(list: &mut ListWriter<'_>, summary: &Summary, index: usize, extended: bool, utf8: bool, depth: usize) {
    let Some(part) = summary.parts.get(index) else {
        // An unreadable message: one empty text part.
        for item in ["TEXT", "PLAIN"] {
            list.string(item.as_bytes());
        }
        list.nil().nil().nil();
        list.string(b"7BIT");
        list.number(0).number(0);
        return;
    };
    let (kind, subtype) = part.content_type.split_once('/').unwrap_or(("text", "plain"));
    if kind == "multipart" && !part.children.is_empty() && depth < BODYSTRUCTURE_DEPTH_MAX {
        for child in &part.children {
            let mut nested = list.list();
            structure(&mut nested, summary, *child as usize, extended, utf8, depth + 1);
        }
        list.string(subtype.to_ascii_uppercase().as_bytes());
        if extended {
            params(list, &part.params, false);
            disposition(list, part);
            language_location(list, part);
        }
        return;
    }
    // Nesting is bounded (the mail model keeps 8 levels of attached messages; 32 here
    // whatever a stored summary holds): the recursion follows the summary's depth.
    let nested = if part.content_type == "message/rfc822" && depth < BODYSTRUCTURE_DEPTH_MAX {
        part.message.as_deref()
    } else {
        None
    };
    let (kind, subtype) = if part.content_type == "message/rfc822" && nested.is_none() {
        ("application", "octet-stream")
    } else {
        (kind, subtype)
    };
    list.string(kind.to_ascii_uppercase().as_bytes());
    list.string(subtype.to_ascii_uppercase().as_bytes());
    params(list, &part.params, kind == "text");
    list.nstring(
        part.content_id.as_deref().map(|id| format!("<{}>", id.trim_matches(['<', '>']))).as_deref().map(str::as_bytes),
    );
    list.nstring(part.description.as_deref().map(|d| text(d, utf8)).as_deref().map(str::as_bytes));
    list.string(part.transfer_encoding.as_deref().unwrap_or("7bit").to_ascii_uppercase().as_bytes());
    list.number(u64::from(part.offset_end.saturating_sub(part.offset_body)));
    if let Some(nested) = nested {
        {
            let mut env = list.list();
            envelope(&mut env, nested, utf8);
        }
        {
            let mut body = list.list();
            structure(&mut body, nested, 0, extended, utf8, depth + 1);
        }
        list.number(u64::from(part.lines));
    } else if kind == "text" {
        list.number(u64::from(part.lines));
    }
    if extended {
        list.nil(); // MD5
        disposition(list, part);
        language_location(list, part);
    }
}

fn params(list: &mut ListWriter<'_>, params: &[(String, String)], text_default: bool) {
    if params.is_empty() {
        if text_default {
            let mut l = list.list();
            l.string(b"CHARSET").string(b"US-ASCII");
        } else {
            list.nil();
        }
        return;
    }
    let mut l = list.list();
    for (name, value) in params {
        l.string(name.to_ascii_uppercase().as_bytes()).string(value.as_bytes());
    }
}

fn disposition(list: &mut ListWriter<'_>, part: &Part) {
    match &part.disposition {
        None => {
            list.nil();
        }
        Some(kind) => {
            let mut l = list.list();
            l.string(kind.to_ascii_uppercase().as_bytes());
            params(&mut l, &part.disposition_params, false);
        }
    }
}

fn language_location(list: &mut ListWriter<'_>, part: &Part) {
    match part.language.as_slice() {
        [] => {
            list.nil();
        }
        [one] => {
            list.string(one.as_bytes());
        }
        many => {
            let mut l = list.list();
            for language in many {
                l.string(language.as_bytes());
            }
        }
    }
    list.nstring(part.location.as_deref().map(str::as_bytes));
}

/// Where part numbers lead (RFC 9051 §6.4.5): the summary holding the part (an attached
/// message has its own) and the part's index in it.
fn locate<'s>(summary: &'s Summary, path: &[u32]) -> Option<(&'s Summary, usize)> {
    let mut current = (summary, 0usize);
    for (depth, number) in path.iter().enumerate() {
        let (s, index) = current;
        let part = s.parts.get(index)?;
        let n = *number as usize;
        if !part.children.is_empty() && part.content_type.starts_with("multipart/") {
            current = (s, *part.children.get(n.checked_sub(1)?)? as usize);
        } else if let (Some(nested), true) = (part.message.as_deref(), depth > 0 || index != 0) {
            let root = nested.parts.first()?;
            if !root.children.is_empty() && root.content_type.starts_with("multipart/") {
                current = (nested, *root.children.get(n.checked_sub(1)?)? as usize);
            } else if n == 1 {
                current = (nested, 0);
            } else {
                return None;
            }
        } else if n == 1 {
            // A part that is not multipart is its own part 1.
        } else {
            return None;
        }
    }
    Some(current)
}

/// The bytes of a body section; `None` (NIL) when the part does not exist.
fn section_bytes<'r>(summary: &Summary, raw: &'r [u8], section: &Section) -> Option<Cow<'r, [u8]>> {
    let slice = |start: u32, end: u32| -> &'r [u8] {
        let end = (end as usize).min(raw.len());
        &raw[(start as usize).min(end)..end]
    };
    if section.part.is_empty() && summary.parts.is_empty() {
        // Unparsed message: only the whole of it makes sense.
        return match section.text {
            None => Some(Cow::Borrowed(raw)),
            Some(SectionText::Text) => Some(Cow::Borrowed(raw)),
            _ => Some(Cow::Borrowed(&[])),
        };
    }
    let (s, index) = locate(summary, &section.part)?;
    let part = s.parts.get(index)?;
    // HEADER/TEXT of a part that is an attached message are those of that message.
    let message_root = if section.part.is_empty() {
        Some(part)
    } else if let Some(nested) = part.message.as_deref() {
        nested.parts.first()
    } else {
        None
    };
    Some(Cow::Borrowed(match &section.text {
        None if section.part.is_empty() => raw,
        None => slice(part.offset_body, part.offset_end),
        Some(SectionText::Mime) => slice(part.offset_header, part.offset_body),
        Some(SectionText::Header) => {
            let root = message_root?;
            slice(root.offset_header, root.offset_body)
        }
        Some(SectionText::Text) => {
            let root = message_root?;
            slice(root.offset_body, part.offset_end.max(root.offset_end))
        }
        Some(SectionText::HeaderFields(names)) | Some(SectionText::HeaderFieldsNot(names)) => {
            let root = message_root?;
            let keep = matches!(section.text, Some(SectionText::HeaderFields(_)));
            return Some(Cow::Owned(header_fields(slice(root.offset_header, root.offset_body), names, keep)));
        }
    }))
}

/// The header fields named in `names` (or all others, when not `keep`), then the blank line.
fn header_fields(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut taking = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            let name = line.split(|b| *b == b':').next().unwrap_or_default().trim_ascii();
            let named = names.iter().any(|wanted| wanted.as_bytes().eq_ignore_ascii_case(name));
            taking = named == keep;
        }
        if taking {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A part's content decoded from its transfer encoding (RFC 3516): `Ok(None)` when the
/// part does not exist, `Err(encoding)` for an encoding we cannot decode.
fn binary(summary: &Summary, raw: &[u8], path: &[u32]) -> Result<Option<Vec<u8>>, String> {
    let located = if path.is_empty() { Some((summary, 0)) } else { locate(summary, path) };
    let Some((s, index)) = located else { return Ok(None) };
    let Some(part) = s.parts.get(index) else { return Ok(Some(raw.to_vec())) };
    let end = (part.offset_end as usize).min(raw.len());
    let body = &raw[(part.offset_body as usize).min(end)..end];
    match part.transfer_encoding.as_deref().unwrap_or("7bit") {
        "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
        "base64" => Ok(Some(mail_parser::decoders::base64::base64_decode(body).unwrap_or_default())),
        "quoted-printable" => {
            Ok(Some(mail_parser::decoders::quoted_printable::quoted_printable_decode(body).unwrap_or_default()))
        }
        other => Err(other.to_string()),
    }
}

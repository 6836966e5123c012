//! SEARCH (with ESEARCH and SEARCHRES), SORT and THREAD over the selected mailbox.
//!
//! Flags, UIDs, sizes, arrival dates and modseqs come from the mailbox index; header
//! criteria from the stored summary; BODY and TEXT from the body text stored at delivery
//! (decoded, lowercased, whitespace folded: `Mail::body_text`), never by parsing. Strings
//! match as case-insensitive substrings (RFC 9051 §6.4.4); a run of spaces in a BODY
//! string matches any run of whitespace.

use std::collections::HashMap;

use hameau_imap_session::thread::{self, base_subject};
use hameau_imap_session::{
    Code, Esearch, SearchKey, SearchReturn, SequenceSet, Session, SortCriterion, SortKey, ThreadAlgorithm,
};
use hameau_mailbox::{AccountId, Keyword, Mail, UidEntry};

use crate::commands::{Conn, No, Outcome, done};
use crate::view::{self, Selected};

/// What evaluating a key needs beyond the index.
#[derive(Clone, Copy, Default)]
struct Needs {
    summary: bool,
    raw: bool,
    /// The body's searchable text, stored at delivery.
    text: bool,
}

fn needs(key: &SearchKey, needs: &mut Needs) {
    match key {
        SearchKey::And(keys) => keys.iter().for_each(|k| self::needs(k, needs)),
        SearchKey::Not(key) => self::needs(key, needs),
        SearchKey::Or(a, b) => {
            self::needs(a, needs);
            self::needs(b, needs);
        }
        SearchKey::Bcc(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => needs.summary = true,
        SearchKey::Header(..) => {
            needs.summary = true;
            needs.raw = true;
        }
        SearchKey::Body(_) => needs.text = true,
        SearchKey::Text(_) => {
            needs.summary = true;
            needs.raw = true;
            needs.text = true;
        }
        _ => {}
    }
}

/// One message as the evaluation sees it.
struct Candidate<'a> {
    seq: u32,
    entry: &'a UidEntry,
    summary: Option<std::sync::Arc<crate::cache::Cached>>,
    raw: Option<Vec<u8>>,
    /// The body's searchable text, when BODY or TEXT asks.
    body_text: Option<std::sync::Arc<str>>,
    /// The header's fields, split at the first HEADER key and kept for the others: once
    /// per message per search.
    fields: Option<Vec<Field>>,
    /// The header as text, lowercased, at the first TEXT key.
    header_lowercase: Option<String>,
}

struct Scope<'a> {
    selected: &'a Selected,
    /// The sets of the search's keys as sorted ranges (`*` resolved), by the key's
    /// address: computed once per search, then each message is a binary search.
    ranges: HashMap<usize, Vec<(u32, u32)>>,
}

impl Scope<'_> {
    fn in_set(&self, set: &SequenceSet, number: u32) -> bool {
        self.ranges.get(&address(set)).is_some_and(|ranges| view::in_ranges(ranges, number))
    }
}

/// A set's address: the key of its ranges (the criteria do not move during a search).
fn address(set: &SequenceSet) -> usize {
    set as *const SequenceSet as usize
}

/// The ranges of every UID and sequence set in `criteria`, walked without recursion.
fn set_ranges(criteria: &SearchKey, largest_uid: u32, count: u32) -> HashMap<usize, Vec<(u32, u32)>> {
    let mut ranges = HashMap::new();
    let mut stack = vec![criteria];
    while let Some(key) = stack.pop() {
        match key {
            SearchKey::And(keys) => stack.extend(keys.iter()),
            SearchKey::Not(key) => stack.push(key),
            SearchKey::Or(a, b) => stack.extend([&**a, &**b]),
            SearchKey::Uid(set) if !set.is_saved() => {
                ranges.insert(address(set), set.normalized(largest_uid));
            }
            SearchKey::SequenceSet(set) if !set.is_saved() => {
                ranges.insert(address(set), set.normalized(count));
            }
            _ => {}
        }
    }
    ranges
}

/// The key with its strings lowercased once, for the lowercased fields of the cache.
fn lowercased(key: &SearchKey) -> SearchKey {
    match key {
        SearchKey::And(keys) => SearchKey::And(keys.iter().map(lowercased).collect()),
        SearchKey::Not(key) => SearchKey::Not(Box::new(lowercased(key))),
        SearchKey::Or(a, b) => SearchKey::Or(Box::new(lowercased(a)), Box::new(lowercased(b))),
        SearchKey::From(s) => SearchKey::From(s.to_lowercase()),
        SearchKey::To(s) => SearchKey::To(s.to_lowercase()),
        SearchKey::Cc(s) => SearchKey::Cc(s.to_lowercase()),
        SearchKey::Bcc(s) => SearchKey::Bcc(s.to_lowercase()),
        SearchKey::Subject(s) => SearchKey::Subject(s.to_lowercase()),
        SearchKey::Header(name, value) => SearchKey::Header(name.to_lowercase(), value.to_lowercase()),
        SearchKey::Text(s) => SearchKey::Text(s.to_lowercase()),
        other => other.clone(),
    }
}

fn day_of(seconds: i64) -> i64 {
    seconds.div_euclid(86_400)
}

/// Whether the stored body text holds `needle` (normalised as it was).
fn body_contains(candidate: &Candidate<'_>, needle: &str) -> bool {
    let needle = hameau_mailbox::search_text(needle);
    needle.is_empty() || candidate.body_text.as_deref().is_some_and(|text| text.contains(&needle))
}

fn header_text<'c>(candidate: &'c Candidate<'_>) -> &'c [u8] {
    let raw = candidate.raw.as_deref().unwrap_or_default();
    let end = candidate
        .summary
        .as_ref()
        .and_then(|s| s.summary.parts.first())
        .map_or(raw.len(), |root| root.offset_body as usize)
        .min(raw.len());
    &raw[..end]
}

/// One header field: its name lowercased, its value as written, and the value decoded
/// (RFC 2047 encoded words) and lowercased when a key first asks for it.
struct Field {
    name: String,
    value: String,
    decoded: std::cell::OnceCell<String>,
}

/// The header's fields, unfolded.
fn parse_fields(header: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut current: Option<String> = None;
    let mut finish = |field: Option<String>| {
        if let Some((name, value)) = field.as_deref().and_then(|field| field.split_once(':')) {
            let (name, value) = (name.trim().to_lowercase(), value.to_string());
            fields.push(Field { name, value, decoded: std::cell::OnceCell::new() });
        }
    };
    for line in header.split_inclusive(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if let Some(field) = &mut current {
                field.push_str(line.trim_end_matches(['\r', '\n']));
            }
            continue;
        }
        finish(current.take());
        current = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    finish(current);
    fields
}

/// HEADER name value (RFC 9051 §6.4.4): a field of that name contains the value; the
/// key's strings are lowercased already. The header is split once per message and each
/// field decoded at most once, whatever the number of HEADER keys.
fn header_matches(candidate: &mut Candidate<'_>, name: &str, value: &str) -> bool {
    if candidate.fields.is_none() {
        candidate.fields = Some(parse_fields(header_text(candidate)));
    }
    let fields = candidate.fields.as_deref().unwrap_or_default();
    fields
        .iter()
        .filter(|field| field.name == name)
        .any(|field| field.decoded.get_or_init(|| decode_header_value(&field.value).to_lowercase()).contains(value))
}

/// TEXT's header half: the header's text contains the (lowercased) string.
fn header_text_contains(candidate: &mut Candidate<'_>, needle: &str) -> bool {
    if candidate.header_lowercase.is_none() {
        candidate.header_lowercase = Some(String::from_utf8_lossy(header_text(candidate)).to_lowercase());
    }
    needle.is_empty() || candidate.header_lowercase.as_deref().is_some_and(|text| text.contains(needle))
}

/// A header value with its encoded words (RFC 2047) decoded, for matching.
fn decode_header_value(value: &str) -> String {
    // Parsed as a Subject: mail-parser decodes the encoded words of the fields it knows as
    // text, and keeps other fields' values raw.
    // A panic of the parser on a stored header (it has a few) leaves the value raw.
    let field = format!("Subject: {value}\r\n\r\n");
    std::panic::catch_unwind(|| {
        mail_parser::MessageParser::default()
            .parse_headers(field.as_bytes())
            .and_then(|message| message.subject().map(str::to_string))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| value.trim().to_string())
}

fn eval(key: &SearchKey, candidate: &mut Candidate<'_>, scope: &Scope<'_>) -> bool {
    let entry = candidate.entry;
    let summary_day = |c: &Candidate<'_>| {
        c.summary
            .as_ref()
            .and_then(|s| s.summary.sent_at)
            .map(day_of)
            .unwrap_or_else(|| day_of(entry.received_at as i64))
    };
    match key {
        SearchKey::And(keys) => keys.iter().all(|k| eval(k, candidate, scope)),
        SearchKey::Not(key) => !eval(key, candidate, scope),
        SearchKey::Or(a, b) => eval(a, candidate, scope) || eval(b, candidate, scope),
        SearchKey::All => true,
        SearchKey::Recent => scope.selected.recent.binary_search(&entry.uid).is_ok(),
        SearchKey::New => scope.selected.recent.binary_search(&entry.uid).is_ok() && !entry.has(&Keyword::Seen),
        SearchKey::Old => scope.selected.recent.binary_search(&entry.uid).is_err(),
        SearchKey::Answered => entry.has(&Keyword::Answered),
        SearchKey::Deleted => entry.has(&Keyword::Deleted),
        SearchKey::Draft => entry.has(&Keyword::Draft),
        SearchKey::Flagged => entry.has(&Keyword::Flagged),
        SearchKey::Seen => entry.has(&Keyword::Seen),
        SearchKey::Unanswered => !entry.has(&Keyword::Answered),
        SearchKey::Undeleted => !entry.has(&Keyword::Deleted),
        SearchKey::Undraft => !entry.has(&Keyword::Draft),
        SearchKey::Unflagged => !entry.has(&Keyword::Flagged),
        SearchKey::Unseen => !entry.has(&Keyword::Seen),
        SearchKey::Keyword(k) => Keyword::parse_imap(k).is_some_and(|k| entry.has(&k)),
        SearchKey::Unkeyword(k) => !Keyword::parse_imap(k).is_some_and(|k| entry.has(&k)),
        SearchKey::Larger(n) => u64::from(entry.size) > *n,
        SearchKey::Smaller(n) => u64::from(entry.size) < *n,
        SearchKey::Before(date) => day_of(entry.received_at as i64) < date.days_since_epoch(),
        SearchKey::On(date) => day_of(entry.received_at as i64) == date.days_since_epoch(),
        SearchKey::Since(date) => day_of(entry.received_at as i64) >= date.days_since_epoch(),
        SearchKey::SentBefore(date) => summary_day(candidate) < date.days_since_epoch(),
        SearchKey::SentOn(date) => summary_day(candidate) == date.days_since_epoch(),
        SearchKey::SentSince(date) => summary_day(candidate) >= date.days_since_epoch(),
        SearchKey::Uid(set) | SearchKey::SequenceSet(set) if set.is_saved() => {
            scope.selected.saved.binary_search(&entry.uid).is_ok()
        }
        SearchKey::Uid(set) => scope.in_set(set, entry.uid),
        SearchKey::SequenceSet(set) => scope.in_set(set, candidate.seq),
        SearchKey::ModSeq { modseq, .. } => entry.modseq >= *modseq,
        // The key's strings were lowercased once (`lowercased`), the cache's fields too.
        SearchKey::From(s) => candidate.summary.as_ref().is_some_and(|m| m.from.contains(s.as_str())),
        SearchKey::To(s) => candidate.summary.as_ref().is_some_and(|m| m.to.contains(s.as_str())),
        SearchKey::Cc(s) => candidate.summary.as_ref().is_some_and(|m| m.cc.contains(s.as_str())),
        SearchKey::Bcc(s) => candidate.summary.as_ref().is_some_and(|m| m.bcc.contains(s.as_str())),
        SearchKey::Subject(s) => candidate.summary.as_ref().is_some_and(|m| m.subject.contains(s.as_str())),
        SearchKey::Header(name, value) => header_matches(candidate, name, value),
        SearchKey::Body(s) => body_contains(candidate, s),
        SearchKey::Text(s) => header_text_contains(candidate, s) || body_contains(candidate, s),
    }
}

/// The indexes (in `selected.entries`) of the messages matching `criteria`, ascending.
async fn matching(
    mail: &Mail,
    ctx: &crate::Context,
    account: AccountId,
    selected: &Selected,
    criteria: &SearchKey,
) -> Result<Vec<usize>, No> {
    let criteria = &lowercased(criteria);
    let mut need = Needs::default();
    needs(criteria, &mut need);
    let largest_uid = selected.entries.last().map_or(0, |e| e.uid);
    let scope = Scope { selected, ranges: set_ranges(criteria, largest_uid, selected.entries.len() as u32) };
    let mut found = Vec::new();
    // In chunks: the summaries and texts of one chunk are held at a time (not the
    // mailbox's), and the other connections of this worker run between chunks.
    for (chunk_index, chunk) in selected.entries.chunks(MESSAGES_PER_YIELD).enumerate() {
        if chunk_index > 0 {
            tokio::task::yield_now().await;
        }
        let base = chunk_index * MESSAGES_PER_YIELD;
        let emails: Vec<hameau_mailbox::EmailId> = chunk.iter().map(|entry| entry.email).collect();
        let summaries = if need.summary { Some(ctx.summaries.get_many(mail, account, &emails).await?) } else { None };
        let texts = if need.text { Some(ctx.texts.get_many(mail, account, &emails).await?) } else { None };
        for (offset, entry) in chunk.iter().enumerate() {
            let summary = match &summaries {
                Some(summaries) => match &summaries[offset] {
                    Some(summary) => Some(summary.clone()),
                    None => continue,
                },
                None => None,
            };
            let raw = if need.raw {
                match mail.raw(account, entry.email).await {
                    Ok(raw) => Some(raw),
                    Err(hameau_mailbox::Error::NoEmail(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            let body_text = match &texts {
                Some(texts) => match &texts[offset] {
                    Some(text) => Some(text.clone()),
                    None => continue,
                },
                None => None,
            };
            let index = base + offset;
            let mut candidate = Candidate {
                seq: index as u32 + 1,
                entry,
                summary,
                raw,
                body_text,
                fields: None,
                header_lowercase: None,
            };
            if eval(criteria, &mut candidate, &scope) {
                found.push(index);
            }
        }
    }
    Ok(found)
}

/// Messages evaluated between two yields to the other connections of the worker, and
/// whose summaries are held at once: 256 keep a search of 100,000 messages responsive.
const MESSAGES_PER_YIELD: usize = 256;

fn has_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::ModSeq { .. } => true,
        SearchKey::And(keys) => keys.iter().any(has_modseq),
        SearchKey::Not(key) => has_modseq(key),
        SearchKey::Or(a, b) => has_modseq(a) || has_modseq(b),
        _ => false,
    }
}

pub async fn search(
    conn: &mut Conn<'_>,
    session: &mut Session,
    tag: &str,
    uid: bool,
    returns: Option<SearchReturn>,
    criteria: &SearchKey,
) -> Outcome {
    let account = conn.user.as_ref().expect("authenticated").account;
    let mail = conn.ctx.mail.clone();
    let selected = conn.selected.as_mut().expect("selected state");
    let found = matching(&mail, conn.ctx, account, selected, criteria).await?;
    let numbers: Vec<u32> =
        found.iter().map(|index| if uid { selected.entries[*index].uid } else { *index as u32 + 1 }).collect();
    let modseq =
        has_modseq(criteria).then(|| found.iter().map(|index| selected.entries[*index].modseq).max().unwrap_or(0));
    match returns {
        None => session.untagged().search(numbers.iter().copied(), modseq.filter(|m| *m > 0)),
        Some(returns) => {
            if returns.save {
                selected.saved = found.iter().map(|index| selected.entries[*index].uid).collect();
            }
            let asked = returns.min || returns.max || returns.all || returns.count;
            // RFC 5182 §2.4: `RETURN (SAVE)` alone answers nothing but the tagged OK.
            if asked || !returns.save {
                let all = if returns.all || !asked { SequenceSet::from_sorted(numbers.iter().copied()) } else { None };
                session.untagged().esearch(&Esearch {
                    tag: Some(tag),
                    uid,
                    min: if returns.min { numbers.first().copied() } else { None },
                    max: if returns.max { numbers.last().copied() } else { None },
                    all: all.as_ref(),
                    count: returns.count.then_some(numbers.len() as u32),
                    modseq: modseq.filter(|m| *m > 0),
                });
            }
        }
    }
    conn.refresh(session, uid).await;
    done("SEARCH completed")
}

fn first_address(addresses: &[hameau_mailbox::EmailAddress]) -> String {
    addresses.first().and_then(|a| a.address.clone()).unwrap_or_default().to_lowercase()
}

/// What SORT compares, computed once per message (not once per comparison).
#[derive(Default)]
struct SortKeys {
    date: i64,
    subject: String,
    from: String,
    to: String,
    cc: String,
}

pub async fn sort(
    conn: &mut Conn<'_>,
    session: &mut Session,
    uid: bool,
    criteria: &[SortCriterion],
    search: &SearchKey,
) -> Outcome {
    let account = conn.user.as_ref().expect("authenticated").account;
    let mail = conn.ctx.mail.clone();
    let selected = conn.selected.as_ref().expect("selected state");
    let found = matching(&mail, conn.ctx, account, selected, search).await?;
    let needs_summary = criteria
        .iter()
        .any(|c| matches!(c.key, SortKey::Cc | SortKey::Date | SortKey::From | SortKey::Subject | SortKey::To));
    let mut keyed: Vec<(usize, SortKeys)> = Vec::with_capacity(found.len());
    for (chunk_index, chunk) in found.chunks(MESSAGES_PER_YIELD).enumerate() {
        if chunk_index > 0 {
            tokio::task::yield_now().await;
        }
        if !needs_summary {
            keyed.extend(chunk.iter().map(|index| (*index, SortKeys::default())));
            continue;
        }
        let emails: Vec<hameau_mailbox::EmailId> = chunk.iter().map(|index| selected.entries[*index].email).collect();
        let summaries = conn.ctx.summaries.get_many(&mail, account, &emails).await?;
        for (index, cached) in chunk.iter().zip(summaries) {
            let entry = &selected.entries[*index];
            let keys = match cached {
                Some(cached) => {
                    let summary = &cached.summary;
                    SortKeys {
                        date: summary.sent_at.unwrap_or(entry.received_at as i64),
                        subject: base_subject(summary.subject.as_deref().unwrap_or("")).0,
                        from: first_address(&summary.from),
                        to: first_address(&summary.to),
                        cc: first_address(&summary.cc),
                    }
                }
                None => SortKeys { date: entry.received_at as i64, ..SortKeys::default() },
            };
            keyed.push((*index, keys));
        }
    }
    keyed.sort_by(|(a, ka), (b, kb)| {
        for criterion in criteria {
            let (ea, eb) = (&selected.entries[*a], &selected.entries[*b]);
            let ordering = match criterion.key {
                SortKey::Arrival => ea.received_at.cmp(&eb.received_at),
                SortKey::Size => ea.size.cmp(&eb.size),
                SortKey::Date => ka.date.cmp(&kb.date),
                SortKey::Subject => ka.subject.cmp(&kb.subject),
                SortKey::From => ka.from.cmp(&kb.from),
                SortKey::To => ka.to.cmp(&kb.to),
                SortKey::Cc => ka.cc.cmp(&kb.cc),
            };
            let ordering = if criterion.reverse { ordering.reverse() } else { ordering };
            if ordering != std::cmp::Ordering::Equal {
                return ordering;
            }
        }
        a.cmp(b)
    });
    let numbers = keyed.iter().map(|(index, _)| if uid { selected.entries[*index].uid } else { *index as u32 + 1 });
    session.untagged().sort(numbers, None);
    conn.refresh(session, uid).await;
    done("SORT completed")
}

/// THREAD (RFC 5256): REFERENCES or ORDEREDSUBJECT over the matching messages, from
/// their stored summaries. The threading itself runs on tokio's blocking pool, bounded
/// by `imap.thread_references_max` and `imap.thread_work_max`: a large mailbox does not
/// hold up the other connections of the worker.
pub async fn thread(
    conn: &mut Conn<'_>,
    session: &mut Session,
    uid: bool,
    algorithm: ThreadAlgorithm,
    search: &SearchKey,
) -> Outcome {
    let account = conn.user.as_ref().expect("authenticated").account;
    let mail = conn.ctx.mail.clone();
    let limits = &conn.ctx.options.session.limits;
    let options = thread::Options { references_max: limits.thread_references_max, work_max: limits.thread_work_max };
    let selected = conn.selected.as_ref().expect("selected state");
    let found = matching(&mail, conn.ctx, account, selected, search).await?;
    let mut messages = Vec::with_capacity(found.len());
    for (chunk_index, chunk) in found.chunks(MESSAGES_PER_YIELD).enumerate() {
        if chunk_index > 0 {
            tokio::task::yield_now().await;
        }
        let emails: Vec<hameau_mailbox::EmailId> = chunk.iter().map(|index| selected.entries[*index].email).collect();
        let summaries = conn.ctx.summaries.get_many(&mail, account, &emails).await?;
        for (index, cached) in chunk.iter().zip(summaries) {
            // Expunged meanwhile: left out.
            let Some(cached) = cached else { continue };
            let entry = &selected.entries[*index];
            let summary = &cached.summary;
            let references = if summary.references.is_empty() { &summary.in_reply_to } else { &summary.references };
            // Only the references the builder will consider are copied.
            let skip = references.len().saturating_sub(options.references_max);
            messages.push(thread::Message {
                number: if uid { entry.uid } else { *index as u32 + 1 },
                message_id: summary.message_id.first().cloned(),
                references: references[skip..].to_vec(),
                date: summary.sent_at.unwrap_or(entry.received_at as i64),
                subject: summary.subject.clone().unwrap_or_default(),
            });
        }
    }
    let built = tokio::task::spawn_blocking(move || match algorithm {
        ThreadAlgorithm::References => thread::references(&messages, options),
        ThreadAlgorithm::OrderedSubject => Ok(thread::ordered_subject(&messages)),
    })
    .await;
    let threads = match built {
        Ok(Ok(threads)) => threads,
        Ok(Err(thread::Error::TooMuchWork)) | Ok(Err(_)) => {
            return Err(No::new(
                Some(Code::Limit),
                "Threading this mailbox needs too much work; search fewer messages",
            ));
        }
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    };
    session.untagged().thread(&threads);
    conn.refresh(session, uid).await;
    done("THREAD completed")
}

#[cfg(test)]
mod tests;

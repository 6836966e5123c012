//! SEARCH (with ESEARCH and SEARCHRES), SORT and THREAD over the selected mailbox.
//!
//! Flags, UIDs, sizes, arrival dates and modseqs come from the mailbox index; header
//! criteria from the stored summary; BODY and TEXT from the body text stored at delivery
//! (decoded, lowercased, whitespace folded: `Mail::body_text`), never by parsing. Strings
//! match as case-insensitive substrings (RFC 9051 §6.4.4); a run of spaces in a BODY
//! string matches any run of whitespace.

use hameau_imap_session::{
    Esearch, SearchKey, SearchReturn, SequenceSet, Session, SortCriterion, SortKey, ThreadAlgorithm,
};
use hameau_mailbox::{AccountId, Mail, UidEntry};

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
}

struct Scope<'a> {
    selected: &'a Selected,
    largest_uid: u32,
    count: u32,
}

fn contains(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
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

fn header_matches(candidate: &Candidate<'_>, name: &str, value: &str) -> bool {
    let header = header_text(candidate);
    let mut current: Option<String> = None;
    let mut found = false;
    let mut check = |field: &Option<String>| {
        if let Some(field) = field
            && let Some((field_name, field_value)) = field.split_once(':')
            && field_name.trim().eq_ignore_ascii_case(name)
        {
            let decoded = decode_header_value(field_value);
            if contains(&decoded, value) {
                found = true;
            }
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
        check(&current);
        current = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    check(&current);
    found
}

/// A header value with its encoded words (RFC 2047) decoded, for matching.
fn decode_header_value(value: &str) -> String {
    let field = format!("X: {value}\r\n\r\n");
    mail_parser::MessageParser::default()
        .parse_headers(field.as_bytes())
        .and_then(|message| message.header("X").and_then(|h| h.as_text()).map(str::to_string))
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
        SearchKey::New => scope.selected.recent.binary_search(&entry.uid).is_ok() && !view::has(entry, "\\Seen"),
        SearchKey::Old => scope.selected.recent.binary_search(&entry.uid).is_err(),
        SearchKey::Answered => view::has(entry, "\\Answered"),
        SearchKey::Deleted => view::has(entry, "\\Deleted"),
        SearchKey::Draft => view::has(entry, "\\Draft"),
        SearchKey::Flagged => view::has(entry, "\\Flagged"),
        SearchKey::Seen => view::has(entry, "\\Seen"),
        SearchKey::Unanswered => !view::has(entry, "\\Answered"),
        SearchKey::Undeleted => !view::has(entry, "\\Deleted"),
        SearchKey::Undraft => !view::has(entry, "\\Draft"),
        SearchKey::Unflagged => !view::has(entry, "\\Flagged"),
        SearchKey::Unseen => !view::has(entry, "\\Seen"),
        SearchKey::Keyword(k) => view::has(entry, &k.to_lowercase()),
        SearchKey::Unkeyword(k) => !view::has(entry, &k.to_lowercase()),
        SearchKey::Larger(n) => u64::from(entry.size) > *n,
        SearchKey::Smaller(n) => u64::from(entry.size) < *n,
        SearchKey::Before(date) => day_of(entry.received_at as i64) < date.days_since_epoch(),
        SearchKey::On(date) => day_of(entry.received_at as i64) == date.days_since_epoch(),
        SearchKey::Since(date) => day_of(entry.received_at as i64) >= date.days_since_epoch(),
        SearchKey::SentBefore(date) => summary_day(candidate) < date.days_since_epoch(),
        SearchKey::SentOn(date) => summary_day(candidate) == date.days_since_epoch(),
        SearchKey::SentSince(date) => summary_day(candidate) >= date.days_since_epoch(),
        SearchKey::Uid(set) => {
            if set.is_saved() {
                scope.selected.saved.contains(&entry.uid)
            } else {
                set.contains(entry.uid, scope.largest_uid)
            }
        }
        SearchKey::SequenceSet(set) => {
            if set.is_saved() {
                scope.selected.saved.contains(&entry.uid)
            } else {
                set.contains(candidate.seq, scope.count)
            }
        }
        SearchKey::ModSeq { modseq, .. } => entry.modseq >= *modseq,
        // The key's strings were lowercased once (`lowercased`), the cache's fields too.
        SearchKey::From(s) => candidate.summary.as_ref().is_some_and(|m| m.from.contains(s.as_str())),
        SearchKey::To(s) => candidate.summary.as_ref().is_some_and(|m| m.to.contains(s.as_str())),
        SearchKey::Cc(s) => candidate.summary.as_ref().is_some_and(|m| m.cc.contains(s.as_str())),
        SearchKey::Bcc(s) => candidate.summary.as_ref().is_some_and(|m| m.bcc.contains(s.as_str())),
        SearchKey::Subject(s) => candidate.summary.as_ref().is_some_and(|m| m.subject.contains(s.as_str())),
        SearchKey::Header(name, value) => header_matches(candidate, name, value),
        SearchKey::Body(s) => body_contains(candidate, s),
        SearchKey::Text(s) => {
            contains(&String::from_utf8_lossy(header_text(candidate)), s) || body_contains(candidate, s)
        }
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
    let scope = Scope {
        selected,
        largest_uid: selected.entries.last().map_or(0, |e| e.uid),
        count: selected.entries.len() as u32,
    };
    let emails: Vec<hameau_mailbox::EmailId> = selected.entries.iter().map(|entry| entry.email).collect();
    let summaries = if need.summary { Some(ctx.summaries.get_many(mail, account, &emails).await?) } else { None };
    let texts = if need.text { Some(ctx.texts.get_many(mail, account, &emails).await?) } else { None };
    let mut found = Vec::new();
    for (index, entry) in selected.entries.iter().enumerate() {
        // Reading raw messages does not yield: let the other connections of this thread run.
        if need.raw && index % 256 == 255 {
            tokio::task::yield_now().await;
        }
        let summary = match &summaries {
            Some(summaries) => match &summaries[index] {
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
            Some(texts) => match &texts[index] {
                Some(text) => Some(text.clone()),
                None => continue,
            },
            None => None,
        };
        let mut candidate = Candidate { seq: index as u32 + 1, entry, summary, raw, body_text };
        if eval(criteria, &mut candidate, &scope) {
            found.push(index);
        }
    }
    Ok(found)
}

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
    let summaries = if needs_summary {
        let emails: Vec<hameau_mailbox::EmailId> = found.iter().map(|index| selected.entries[*index].email).collect();
        conn.ctx.summaries.get_many(&mail, account, &emails).await?
    } else {
        vec![None; found.len()]
    };
    let mut keyed: Vec<_> = found.into_iter().zip(summaries).collect();
    keyed.sort_by(|(a, sa), (b, sb)| {
        for criterion in criteria {
            let (ea, eb) = (&selected.entries[*a], &selected.entries[*b]);
            let ordering = match criterion.key {
                SortKey::Arrival => ea.received_at.cmp(&eb.received_at),
                SortKey::Size => ea.size.cmp(&eb.size),
                SortKey::Date => {
                    let date = |e: &UidEntry, s: &Option<std::sync::Arc<crate::cache::Cached>>| {
                        s.as_ref().and_then(|s| s.summary.sent_at).unwrap_or(e.received_at as i64)
                    };
                    date(ea, sa).cmp(&date(eb, sb))
                }
                SortKey::Subject => {
                    let subject = |s: &Option<std::sync::Arc<crate::cache::Cached>>| {
                        crate::thread::base_subject(s.as_ref().and_then(|s| s.summary.subject.as_deref()).unwrap_or(""))
                            .0
                    };
                    subject(sa).cmp(&subject(sb))
                }
                SortKey::From => {
                    let from = |s: &Option<std::sync::Arc<crate::cache::Cached>>| {
                        s.as_ref().map(|s| first_address(&s.summary.from)).unwrap_or_default()
                    };
                    from(sa).cmp(&from(sb))
                }
                SortKey::To => {
                    let to = |s: &Option<std::sync::Arc<crate::cache::Cached>>| {
                        s.as_ref().map(|s| first_address(&s.summary.to)).unwrap_or_default()
                    };
                    to(sa).cmp(&to(sb))
                }
                SortKey::Cc => {
                    let cc = |s: &Option<std::sync::Arc<crate::cache::Cached>>| {
                        s.as_ref().map(|s| first_address(&s.summary.cc)).unwrap_or_default()
                    };
                    cc(sa).cmp(&cc(sb))
                }
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
/// their stored summaries.
pub async fn thread(
    conn: &mut Conn<'_>,
    session: &mut Session,
    uid: bool,
    algorithm: ThreadAlgorithm,
    search: &SearchKey,
) -> Outcome {
    let account = conn.user.as_ref().expect("authenticated").account;
    let mail = conn.ctx.mail.clone();
    let selected = conn.selected.as_ref().expect("selected state");
    let found = matching(&mail, conn.ctx, account, selected, search).await?;
    let emails: Vec<hameau_mailbox::EmailId> = found.iter().map(|index| selected.entries[*index].email).collect();
    let summaries = conn.ctx.summaries.get_many(&mail, account, &emails).await?;
    let mut messages = Vec::with_capacity(found.len());
    for (index, cached) in found.into_iter().zip(summaries) {
        // Expunged meanwhile: left out.
        let Some(cached) = cached else { continue };
        let entry = &selected.entries[index];
        let summary = &cached.summary;
        let references =
            if summary.references.is_empty() { summary.in_reply_to.clone() } else { summary.references.clone() };
        messages.push(crate::thread::Message {
            number: if uid { entry.uid } else { index as u32 + 1 },
            message_id: summary.message_id.first().cloned(),
            references,
            date: summary.sent_at.unwrap_or(entry.received_at as i64),
            subject: summary.subject.clone().unwrap_or_default(),
        });
    }
    let threads = match algorithm {
        ThreadAlgorithm::References => crate::thread::references(&messages),
        ThreadAlgorithm::OrderedSubject => crate::thread::ordered_subject(&messages),
    };
    session.untagged().thread(&threads);
    conn.refresh(session, uid).await;
    done("THREAD completed")
}

//! SEARCH (with ESEARCH and SEARCHRES), SORT and THREAD over the selected mailbox.
//!
//! SEARCH keys become the mail model's [`Filter`] (`filter_of`), evaluated by
//! [`Reader::matching`]: flags, UIDs, sizes, arrival dates and modseqs from the mailbox
//! index, header criteria from the stored summary and header, BODY and TEXT from the body
//! text stored at delivery, never by parsing; strings match as case-insensitive substrings
//! (RFC 9051 §6.4.4), a run of spaces in a BODY string any run of whitespace. The mail
//! model's text index narrows TEXT, BODY, SUBJECT, FROM, TO, CC and BCC to candidates
//! that the same evaluation confirms (`hameau_mailbox::query::index`): results are the
//! RFC's substrings, read from a few messages rather than all. This module resolves only
//! what the session knows: sequence numbers, `$` and `\Recent` as UIDs.

use hameau_imap_session::thread::{self, base_subject};
use hameau_imap_session::{
    Code, Date, Esearch, SearchKey, SearchReturn, SequenceSet, Session, SortCriterion, SortKey, ThreadAlgorithm,
};
use hameau_mailbox::query::{Condition, Filter, MESSAGES_PER_CHUNK, Node, Pacer, Reader, ranges_of};
use hameau_mailbox::{AccountId, Keyword};

use crate::state::{Conn, No, Outcome, done};
use crate::view::Selected;

/// SEARCH keys as the mail model's filter over the selected mailbox: what only the session
/// knows (sequence numbers, `$`, `\Recent`) resolved to UIDs, days to seconds. Walked with
/// a stack, not recursion (the session bounded the depth at `imap.nesting_depth_max`).
/// Also says whether a MODSEQ key is among them (RFC 7162 §3.1.5: SEARCH then reports the
/// highest modseq).
fn filter_of(criteria: &SearchKey, selected: &Selected) -> Result<(Filter, bool), No> {
    const DAY_S: i64 = 86_400;
    let largest_uid = selected.entries.last().map_or(0, |entry| entry.uid);
    let count = selected.entries.len() as u32;
    let recent = || Condition::Uids(ranges_of(&selected.recent));
    let day = |date: &Date| date.days_since_epoch().saturating_mul(DAY_S);
    let mut nodes: Vec<Node> = Vec::new();
    let mut has_modseq = false;
    let mut stack = vec![criteria];
    while let Some(key) = stack.pop() {
        let mut push = |condition: Condition| nodes.push(Node::Condition(condition));
        match key {
            SearchKey::And(keys) => {
                nodes.push(Node::And(keys.len()));
                stack.extend(keys.iter().rev());
            }
            SearchKey::Or(a, b) => {
                nodes.push(Node::Or(2));
                stack.extend([&**b, &**a]);
            }
            SearchKey::Not(key) => {
                nodes.push(Node::Not);
                stack.push(key);
            }
            SearchKey::All => push(Condition::All),
            SearchKey::Recent => push(recent()),
            SearchKey::New => {
                nodes.extend([Node::And(2), Node::Condition(recent()), Node::Not]);
                nodes.push(Node::Condition(Condition::Keyword(Keyword::Seen)));
            }
            SearchKey::Old => nodes.extend([Node::Not, Node::Condition(recent())]),
            SearchKey::Answered => push(Condition::Keyword(Keyword::Answered)),
            SearchKey::Deleted => push(Condition::Keyword(Keyword::Deleted)),
            SearchKey::Draft => push(Condition::Keyword(Keyword::Draft)),
            SearchKey::Flagged => push(Condition::Keyword(Keyword::Flagged)),
            SearchKey::Seen => push(Condition::Keyword(Keyword::Seen)),
            SearchKey::Unanswered => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(Keyword::Answered))]),
            SearchKey::Undeleted => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(Keyword::Deleted))]),
            SearchKey::Undraft => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(Keyword::Draft))]),
            SearchKey::Unflagged => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(Keyword::Flagged))]),
            SearchKey::Unseen => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(Keyword::Seen))]),
            // An atom is always a keyword; were it not, no message would have it.
            SearchKey::Keyword(word) => match Keyword::parse_imap(word) {
                Some(keyword) => push(Condition::Keyword(keyword)),
                None => nodes.extend([Node::Not, Node::Condition(Condition::All)]),
            },
            SearchKey::Unkeyword(word) => match Keyword::parse_imap(word) {
                Some(keyword) => nodes.extend([Node::Not, Node::Condition(Condition::Keyword(keyword))]),
                None => push(Condition::All),
            },
            // Sizes are below 4 GiB: LARGER u64::MAX matches nothing either way.
            SearchKey::Larger(size) => push(Condition::MinSize(size.saturating_add(1))),
            SearchKey::Smaller(size) => push(Condition::MaxSize(*size)),
            // Dates are days of UTC (RFC 9051 leaves the zone to the server).
            SearchKey::Before(date) => push(Condition::ReceivedBefore(day(date))),
            SearchKey::On(date) => nodes.extend([
                Node::And(2),
                Node::Condition(Condition::ReceivedSince(day(date))),
                Node::Condition(Condition::ReceivedBefore(day(date).saturating_add(DAY_S))),
            ]),
            SearchKey::Since(date) => push(Condition::ReceivedSince(day(date))),
            SearchKey::SentBefore(date) => push(Condition::SentBefore(day(date))),
            SearchKey::SentOn(date) => nodes.extend([
                Node::And(2),
                Node::Condition(Condition::SentSince(day(date))),
                Node::Condition(Condition::SentBefore(day(date).saturating_add(DAY_S))),
            ]),
            SearchKey::SentSince(date) => push(Condition::SentSince(day(date))),
            SearchKey::Uid(set) | SearchKey::SequenceSet(set) if set.is_saved() => {
                push(Condition::Uids(ranges_of(&selected.saved)))
            }
            SearchKey::Uid(set) => push(Condition::Uids(set.normalized(largest_uid))),
            // Sequence numbers are positions in the view, which is in UID order: a range of
            // them is the range of their UIDs.
            SearchKey::SequenceSet(set) => push(Condition::Uids(
                set.normalized(count)
                    .into_iter()
                    .filter_map(|(low, high)| {
                        let (low, high) = (low.max(1), high.min(count));
                        let uid = |seq: u32| selected.entries[seq as usize - 1].uid;
                        (low <= high).then(|| (uid(low), uid(high)))
                    })
                    .collect(),
            )),
            SearchKey::ModSeq { modseq, .. } => {
                has_modseq = true;
                push(Condition::ModSeqAtLeast(*modseq))
            }
            SearchKey::From(s) => push(Condition::From(s.clone())),
            SearchKey::To(s) => push(Condition::To(s.clone())),
            SearchKey::Cc(s) => push(Condition::Cc(s.clone())),
            SearchKey::Bcc(s) => push(Condition::Bcc(s.clone())),
            SearchKey::Subject(s) => push(Condition::Subject(s.clone())),
            SearchKey::Header(name, value) => push(Condition::Header { name: name.clone(), value: value.clone() }),
            SearchKey::Body(s) => push(Condition::Body(s.clone())),
            SearchKey::Text(s) => push(Condition::Text(s.clone())),
        }
    }
    let filter = Filter::new(nodes).map_err(|e| {
        tracing::error!(error = %e, "imap: a search key made no filter");
        No::new(Some(Code::ServerBug), "Internal error, try again later")
    })?;
    Ok((filter, has_modseq))
}

/// The indexes (in `selected.entries`) of the messages matching `criteria`, ascending,
/// and whether a MODSEQ key is among them.
async fn matching(
    ctx: &crate::Context,
    account: AccountId,
    selected: &Selected,
    criteria: &SearchKey,
) -> Result<(Vec<usize>, bool), No> {
    let (filter, has_modseq) = filter_of(criteria, selected)?;
    let reader = Reader { mail: &ctx.mail, summaries: &ctx.summaries, texts: &ctx.texts };
    Ok((reader.matching(account, &selected.entries, &filter).await?, has_modseq))
}

pub async fn search(
    conn: &mut Conn<'_>,
    session: &mut Session,
    tag: &str,
    uid: bool,
    returns: Option<SearchReturn>,
    criteria: &SearchKey,
) -> Outcome {
    let (user, selected) = conn.state.selected_mut()?;
    let account = user.account;
    let (found, has_modseq) = matching(conn.ctx, account, selected, criteria).await?;
    let numbers: Vec<u32> =
        found.iter().map(|index| if uid { selected.entries[*index].uid } else { *index as u32 + 1 }).collect();
    let modseq = has_modseq.then(|| found.iter().map(|index| selected.entries[*index].modseq).max().unwrap_or(0));
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
    let mail = conn.ctx.mail.clone();
    let (user, selected) = conn.state.selected()?;
    let account = user.account;
    let (found, _) = matching(conn.ctx, account, selected, search).await?;
    let needs_summary = criteria
        .iter()
        .any(|c| matches!(c.key, SortKey::Cc | SortKey::Date | SortKey::From | SortKey::Subject | SortKey::To));
    let mut keyed: Vec<(usize, SortKeys)> = Vec::with_capacity(found.len());
    let mut pacer = Pacer::default();
    for chunk in found.chunks(MESSAGES_PER_CHUNK) {
        pacer.pace().await;
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
    let mail = conn.ctx.mail.clone();
    let limits = &conn.ctx.options.session.limits;
    let options = thread::Options { references_max: limits.thread_references_max, work_max: limits.thread_work_max };
    let (user, selected) = conn.state.selected()?;
    let account = user.account;
    let (found, _) = matching(conn.ctx, account, selected, search).await?;
    let mut messages = Vec::with_capacity(found.len());
    let mut pacer = Pacer::default();
    for chunk in found.chunks(MESSAGES_PER_CHUNK) {
        pacer.pace().await;
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

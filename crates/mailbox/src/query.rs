//! Queries over the messages of a mailbox, in no protocol's syntax: IMAP SEARCH (RFC 9051
//! §6.4.4) maps its keys onto a [`Filter`], and JMAP `Email/query` (RFC 8621 §4.4.1) will
//! map its `FilterCondition`s and `FilterOperator`s onto the same one.
//!
//! A [`Filter`] is a tree of [`Condition`]s under `And`, `Or` and `Not`, written flat in
//! prefix order ([`Node`]): an operator is followed by its operands. Flat, it is built,
//! checked, evaluated and dropped without recursion, whatever its depth (an IMAP client
//! controls the nesting of SEARCH keys, a JMAP client that of its filter operators).
//!
//! Conditions read what each message's mailbox index entry holds (keywords, UID, modseq,
//! size, arrival), its stored summary (addresses, subject, date, the header's end) through
//! [`SummaryCache`], its raw header (header fields, decoded), and the body text stored at
//! delivery through [`TextCache`]; never a parse of the message. Strings match as
//! case-insensitive substrings (RFC 9051 §6.4.4); in the body a run of spaces matches any
//! run of whitespace ([`crate::search_text`]).
//!
//! [`Reader::matching`] evaluates a filter over a list of index entries in chunks of
//! [`MESSAGES_PER_CHUNK`], yielding to the other tasks of its worker between chunks once
//! it has worked [`WORK_PER_YIELD`] ([`Pacer`]).

mod cache;
mod headers;
pub mod index;

use std::sync::Arc;

pub use cache::{Cached, SummaryCache, TextCache};

use crate::{AccountId, EmailId, Error, Keyword, Mail, UidEntry};

/// One test on a message. Dates are seconds since the Unix epoch; sizes are bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Every message (IMAP `ALL`, an empty JMAP filter).
    All,
    /// The message has the keyword (IMAP `SEEN`, `KEYWORD`; JMAP `hasKeyword`).
    Keyword(Keyword),
    /// The message's UID in the mailbox queried is in one of these inclusive ranges, in
    /// any order (IMAP UID and sequence sets, `$`, and `\Recent`, all resolved by the
    /// session to UIDs).
    Uids(Vec<(u32, u32)>),
    /// The entry's modseq is at least this (IMAP `MODSEQ`, RFC 7162 §3.1.5).
    ModSeqAtLeast(u64),
    /// The size is at least this (JMAP `minSize`; IMAP `LARGER n` is `n + 1`).
    MinSize(u64),
    /// The size is below this (JMAP `maxSize`, IMAP `SMALLER`).
    MaxSize(u64),
    /// The message arrived before this (JMAP `before`; IMAP `BEFORE` is a day's start).
    ReceivedBefore(i64),
    /// The message arrived at or after this (JMAP `after`, IMAP `SINCE`).
    ReceivedSince(i64),
    /// Its `Date:` (its arrival, without one) is before this (IMAP `SENTBEFORE`).
    SentBefore(i64),
    /// Its `Date:` (its arrival, without one) is at or after this (IMAP `SENTSINCE`).
    SentSince(i64),
    /// A name or address of `From:` contains the string.
    From(String),
    To(String),
    Cc(String),
    Bcc(String),
    Subject(String),
    /// A header field of this name has a value (decoded) containing `value`; an empty
    /// `value` asks only that the field be there (JMAP `header` with one element).
    Header {
        name: String,
        value: String,
    },
    /// The body's text contains the string (IMAP `BODY`, JMAP `body`).
    Body(String),
    /// The header's text or the body's contains the string (IMAP `TEXT`; JMAP's `text` is
    /// an `Or` of the address fields, `Subject` and `Body`).
    Text(String),
}

/// One node of a [`Filter`] in prefix order: an operator is followed by its operands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Condition(Condition),
    /// All of the next `n` operands (true for none).
    And(usize),
    /// One of the next `n` operands (false for none).
    Or(usize),
    /// Not the next operand (JMAP's `NOT` of several is `Not` of an `Or`).
    Not,
}

/// Why nodes do not make a filter.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    #[error("an operator lacks operands, or nodes follow the filter's end")]
    Malformed,
}

/// A checked filter, its strings prepared once (lowercased, whitespace folded), ready to
/// be evaluated on many messages.
#[derive(Clone, Debug)]
pub struct Filter {
    ops: Vec<Op>,
    /// For each op, the index just past its subtree: where evaluation goes on when the
    /// op's value is known before all its operands are looked at.
    ends: Vec<usize>,
    needs: Needs,
    /// The address, subject and body conditions ignore accents ([`Filter::folding_accents`]).
    accents_folded: bool,
}

#[derive(Clone, Debug)]
enum Op {
    And,
    Or,
    Not,
    /// A condition with its strings prepared ([`prepare`]), and for `Text` the string
    /// folded as the body's text is.
    Test(Condition, Option<String>),
}

/// What evaluating a filter reads beyond the mailbox index.
#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    summary: bool,
    raw: bool,
    text: bool,
    /// No test of the header (`Header`, `Text`) is under a `Not`: the filter's value can
    /// only go up when a header test goes from false to true, so when it is the same with
    /// every header test false and with every one true, the header need not be read.
    header_monotone: bool,
}

impl Filter {
    /// The filter of `nodes` (prefix order); [`FilterError::Malformed`] when an operator
    /// lacks operands or nodes are left over. Linear, no recursion.
    pub fn new(nodes: Vec<Node>) -> Result<Filter, FilterError> {
        Filter::build(nodes, false)
    }

    /// [`Filter::new`], its `From`, `To`, `Cc`, `Bcc`, `Subject` and `Body` conditions
    /// ignoring accents as well as case ([`crate::fold_accents`]: `etat` finds `État`), as
    /// JMAP's `text` may (RFC 8621 §4.4.1 leaves matching to the server). `Text` and
    /// `Header` (IMAP's) stay exact. The text index serves both: its terms are folded.
    pub fn folding_accents(nodes: Vec<Node>) -> Result<Filter, FilterError> {
        Filter::build(nodes, true)
    }

    fn build(nodes: Vec<Node>, accents_folded: bool) -> Result<Filter, FilterError> {
        let count = nodes.len();
        // Read backwards, each node's operands are the subtrees just read: a stack of
        // their ends gives each operator its own.
        let mut ends = vec![0; count];
        let mut subtrees: Vec<usize> = Vec::new();
        for (index, node) in nodes.iter().enumerate().rev() {
            let operands = match node {
                Node::Condition(_) => 0,
                Node::And(n) | Node::Or(n) => *n,
                Node::Not => 1,
            };
            if operands > subtrees.len() {
                return Err(FilterError::Malformed);
            }
            // The operand read last (deepest on the stack) is the operator's last one.
            let first = subtrees.len() - operands;
            ends[index] = if operands == 0 { index + 1 } else { subtrees[first] };
            subtrees.truncate(first);
            subtrees.push(ends[index]);
        }
        if subtrees.len() != 1 {
            return Err(FilterError::Malformed);
        }
        let mut needs = Needs::default();
        let ops: Vec<Op> = nodes
            .into_iter()
            .map(|node| match node {
                Node::And(_) => Op::And,
                Node::Or(_) => Op::Or,
                Node::Not => Op::Not,
                Node::Condition(condition) => prepare(condition, accents_folded, &mut needs),
            })
            .collect();
        needs.header_monotone = header_monotone(&ops, &ends);
        Ok(Filter { ops, ends, needs, accents_folded })
    }

    /// The filter of one condition.
    pub fn condition(condition: Condition) -> Filter {
        Filter::new(vec![Node::Condition(condition)]).expect("one condition is a filter")
    }

    /// Whether a message matches, its conditions looked at left to right and no further
    /// than needed (an `And` stops at its first false operand, an `Or` at its first true).
    /// Iterative: the stack holds the open operators, at most the filter's depth.
    fn matches(&self, message: &mut Message<'_>) -> bool {
        let mut open: Vec<usize> = Vec::new();
        let mut at = 0;
        loop {
            // Down to the next test, opening operators on the way.
            let mut value = match &self.ops[at] {
                Op::Test(condition, folded) => {
                    at += 1;
                    test(condition, folded.as_deref(), at - 1, self.accents_folded, message)
                }
                Op::And | Op::Or if self.ends[at] == at + 1 => {
                    at += 1;
                    matches!(self.ops[at - 1], Op::And)
                }
                Op::And | Op::Or | Op::Not => {
                    open.push(at);
                    at += 1;
                    continue;
                }
            };
            // Up through the operators this value completes or decides.
            loop {
                let Some(&operator) = open.last() else { return value };
                let end = self.ends[operator];
                let decided = match self.ops[operator] {
                    Op::Not => {
                        value = !value;
                        true
                    }
                    Op::And => !value || at == end,
                    Op::Or => value || at == end,
                    Op::Test(..) => unreachable!("only operators are opened"),
                };
                if !decided {
                    break;
                }
                open.pop();
                at = end;
            }
        }
    }
}

/// Whether no header test is under a `Not`: one pass, the open `Not`s' ends on a stack.
fn header_monotone(ops: &[Op], ends: &[usize]) -> bool {
    let mut nots: Vec<usize> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        while nots.last().is_some_and(|end| *end <= index) {
            nots.pop();
        }
        match op {
            Op::Not => nots.push(ends[index]),
            Op::Test(Condition::Header { .. } | Condition::Text(_), _) if !nots.is_empty() => return false,
            _ => {}
        }
    }
    true
}

/// A condition ready to be evaluated on many messages: strings lowercased (the cache's
/// fields are too), the body's needle folded as the stored text ([`crate::search_text`]),
/// accents taken off too when `accents` ([`Filter::folding_accents`]), ranges sorted and
/// merged; `needs` learns what it reads.
fn prepare(condition: Condition, accents: bool, needs: &mut Needs) -> Op {
    let mut folded = None;
    let fold = |s: String| if accents { crate::fold_accents(&s).into_owned() } else { s };
    let condition = match condition {
        Condition::Uids(ranges) => Condition::Uids(merged(ranges)),
        Condition::From(s) => Condition::From(fold(s.to_lowercase())),
        Condition::To(s) => Condition::To(fold(s.to_lowercase())),
        Condition::Cc(s) => Condition::Cc(fold(s.to_lowercase())),
        Condition::Bcc(s) => Condition::Bcc(fold(s.to_lowercase())),
        Condition::Subject(s) => Condition::Subject(fold(s.to_lowercase())),
        Condition::Header { name, value } => {
            Condition::Header { name: name.to_lowercase(), value: value.to_lowercase() }
        }
        Condition::Body(s) => Condition::Body(fold(crate::search_text(&s))),
        Condition::Text(s) => {
            let lowercase = s.to_lowercase();
            folded = Some(crate::search_text(&lowercase));
            Condition::Text(lowercase)
        }
        other => other,
    };
    match &condition {
        Condition::SentBefore(_)
        | Condition::SentSince(_)
        | Condition::From(_)
        | Condition::To(_)
        | Condition::Cc(_)
        | Condition::Bcc(_)
        | Condition::Subject(_) => needs.summary = true,
        // The header's end is in the summary, read with the header when it is needed.
        Condition::Header { .. } => needs.raw = true,
        Condition::Body(_) => needs.text = true,
        Condition::Text(_) => {
            needs.raw = true;
            needs.text = true;
        }
        _ => {}
    }
    Op::Test(condition, folded)
}

/// Whether a message meets a prepared condition.
/// `at` is the test's index in the filter (see `Message::ruled_out`); `accents`: the
/// address, subject and body conditions ignore accents.
fn test(condition: &Condition, folded: Option<&str>, at: usize, accents: bool, message: &mut Message<'_>) -> bool {
    let entry = message.entry;
    let sent = |message: &Message<'_>| {
        message.summary.as_ref().and_then(|cached| cached.summary.sent_at).unwrap_or(entry.received_at as i64)
    };
    let summary = |field: fn(&Cached) -> &String, s: &str| {
        message
            .summary
            .as_ref()
            .is_some_and(|c| if accents { crate::fold_accents(field(c)).contains(s) } else { field(c).contains(s) })
    };
    match condition {
        Condition::All => true,
        Condition::Keyword(keyword) => entry.has(keyword),
        Condition::Uids(ranges) => in_ranges(ranges, entry.uid),
        Condition::ModSeqAtLeast(modseq) => entry.modseq >= *modseq,
        Condition::MinSize(size) => u64::from(entry.size) >= *size,
        Condition::MaxSize(size) => u64::from(entry.size) < *size,
        Condition::ReceivedBefore(time) => (entry.received_at as i64) < *time,
        Condition::ReceivedSince(time) => (entry.received_at as i64) >= *time,
        Condition::SentBefore(time) => sent(message) < *time,
        Condition::SentSince(time) => sent(message) >= *time,
        Condition::From(s) => summary(|c| &c.from, s),
        Condition::To(s) => summary(|c| &c.to, s),
        Condition::Cc(s) => summary(|c| &c.cc, s),
        Condition::Bcc(s) => summary(|c| &c.bcc, s),
        Condition::Subject(s) => summary(|c| &c.subject, s),
        Condition::Header { name, value } => message.header_matches(name, value),
        Condition::Body(folded) if accents => message.body_contains_folding_accents(folded),
        Condition::Body(folded) => message.body_contains(folded),
        // The body first: its text is cached, the header is read from the message.
        Condition::Text(lowercase) => {
            message.body_contains(folded.unwrap_or_default())
                || (!message.ruled_out.contains(&at) && message.header_contains(lowercase))
        }
    }
}

/// Ranges sorted and merged where they overlap or touch, for [`in_ranges`].
fn merged(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.retain(|(low, high)| low <= high);
    ranges.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (low, high) in ranges {
        match out.last_mut() {
            Some(last) if low <= last.1.saturating_add(1) => last.1 = last.1.max(high),
            _ => out.push((low, high)),
        }
    }
    out
}

/// Whether `number` is in `ranges` (sorted, disjoint), by binary search: a set of thousands
/// of ranges is not walked once per message.
pub fn in_ranges(ranges: &[(u32, u32)], number: u32) -> bool {
    let after = ranges.partition_point(|(low, _)| *low <= number);
    after > 0 && number <= ranges[after - 1].1
}

/// The inclusive ranges of sorted `numbers` (UIDs), for [`Condition::Uids`].
pub fn ranges_of(numbers: &[u32]) -> Vec<(u32, u32)> {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for number in numbers {
        match ranges.last_mut() {
            Some(last) if last.1.checked_add(1) == Some(*number) => last.1 = *number,
            _ => ranges.push((*number, *number)),
        }
    }
    ranges
}

/// One message as the evaluation sees it; what a condition derives from its header is
/// made at the first condition that asks, then kept for the others.
struct Message<'a> {
    entry: &'a UidEntry,
    summary: Option<Arc<Cached>>,
    /// The raw header (the message up to its root part's body), when read.
    raw: Option<Arc<[u8]>>,
    body_text: Option<Arc<str>>,
    /// The body's text without accents, made at the first test that asks.
    body_folded: Option<String>,
    header: headers::Header,
    /// What header tests answer while the raw message is not read (see
    /// `Needs::header_monotone`); `None` once it is.
    header_assumed: Option<bool>,
    /// The `Text` tests (by index in the filter) whose string the text index says is not
    /// in this message's header: false without reading it.
    ruled_out: Vec<usize>,
}

impl Message<'_> {
    /// The header: the raw message up to the body of its root part.
    fn header_bytes(&self) -> &[u8] {
        let raw = self.raw.as_deref().unwrap_or_default();
        let end = match &self.summary {
            Some(cached) => header_end(&cached.summary, raw.len() as u64) as usize,
            None => raw.len(),
        };
        &raw[..end]
    }

    fn header_matches(&mut self, name: &str, value: &str) -> bool {
        if let Some(assumed) = self.header_assumed {
            return assumed;
        }
        if !self.header.has_fields() {
            let fields = headers::parse_fields(self.header_bytes());
            self.header.set_fields(fields);
        }
        self.header.field_contains(name, value)
    }

    fn header_contains(&mut self, needle: &str) -> bool {
        if let Some(assumed) = self.header_assumed {
            return assumed;
        }
        if !self.header.has_lowercase() {
            let lowercase = String::from_utf8_lossy(self.header_bytes()).to_lowercase();
            self.header.set_lowercase(lowercase);
        }
        self.header.contains(needle)
    }

    fn body_contains(&self, folded: &str) -> bool {
        folded.is_empty() || self.body_text.as_deref().is_some_and(|text| text.contains(folded))
    }

    /// [`Message::body_contains`], accents ignored (`folded` has none).
    fn body_contains_folding_accents(&mut self, folded: &str) -> bool {
        if folded.is_empty() {
            return true;
        }
        let Some(text) = self.body_text.as_deref() else { return false };
        self.body_folded.get_or_insert_with(|| crate::fold_accents(text).into_owned()).contains(folded)
    }
}

/// Where the header of a message of `raw_len` bytes ends: at the body of its root part.
/// The text index reads the same bytes as the conditions do.
fn header_end(summary: &crate::Summary, raw_len: u64) -> u64 {
    summary.parts.first().map_or(raw_len, |root| u64::from(root.offset_body)).min(raw_len)
}

/// Messages evaluated in one chunk, whose summaries and texts are held at once: a query
/// of 100,000 messages holds 256 at a time, and may yield between two chunks ([`Pacer`]).
pub const MESSAGES_PER_CHUNK: usize = 256;

/// The longest a loop over many messages works before yielding to the other tasks of its
/// worker. A yield is not free: the task is queued again and a parked worker is woken (a
/// write to its event descriptor and, in a VM, an interrupt between cores), about as long
/// as evaluating 100 messages. Yielding after each chunk of 256 took a fifth of a scan's
/// time; after this long, a few percent, and the other tasks still wait less than a
/// millisecond.
pub const WORK_PER_YIELD: std::time::Duration = std::time::Duration::from_micros(500);

/// Paces a long loop: [`Pacer::pace`] after each chunk yields once [`WORK_PER_YIELD`] went
/// by since the last yield (or since the pacer was made).
#[derive(Debug)]
pub struct Pacer {
    since: std::time::Instant,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer { since: std::time::Instant::now() }
    }
}

impl Pacer {
    /// Yields to the other tasks when this loop has worked [`WORK_PER_YIELD`].
    pub async fn pace(&mut self) {
        if self.since.elapsed() >= WORK_PER_YIELD {
            tokio::task::yield_now().await;
            self.since = std::time::Instant::now();
        }
    }
}

/// What a query reads: the mail model and the caches every session shares.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    pub mail: &'a Mail,
    pub summaries: &'a SummaryCache,
    pub texts: &'a TextCache,
}

/// Which of the matching messages a query needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// Every one (a SEARCH, a count, a query that collapses threads).
    All,
    /// The first `count` in the entries' order, or from their end (`from_end`): a page of
    /// the newest, where the rest is neither shown nor counted. The scan stops there, so
    /// that a list view of a 100,000-message mailbox confirms a page's worth of candidates.
    First { count: usize, from_end: bool },
}

impl Reader<'_> {
    /// The indexes in `entries` (one mailbox's index, or part of it) of the messages that
    /// match `filter`, ascending. A message expunged meanwhile does not match, unless the
    /// text index answered for it without reading it (as if the query came just before).
    pub async fn matching(
        &self,
        account: AccountId,
        entries: &[UidEntry],
        filter: &Filter,
    ) -> Result<Vec<usize>, Error> {
        self.matching_wanted(account, entries, filter, Wanted::All).await
    }

    /// [`Reader::matching`], of the `wanted` matches only (still ascending).
    pub async fn matching_wanted(
        &self,
        account: AccountId,
        entries: &[UidEntry],
        filter: &Filter,
        wanted: Wanted,
    ) -> Result<Vec<usize>, Error> {
        let need = filter.needs;
        // The text index narrows the entries to confirm, when it can (see `index`).
        let candidates = index::candidates(self.mail, account, filter).await?;
        let (count, from_end) = match wanted {
            Wanted::All => (usize::MAX, false),
            Wanted::First { count, from_end } => (count, from_end),
        };
        let order: Box<dyn Iterator<Item = usize> + Send> =
            if from_end { Box::new((0..entries.len()).rev()) } else { Box::new(0..entries.len()) };
        let mut admitted =
            order.filter(|index| candidates.as_ref().is_none_or(|candidates| candidates.admits(&entries[*index])));
        let mut found = Vec::new();
        // In chunks: the summaries and texts of one chunk are held at a time (not the
        // mailbox's), and the other tasks of this worker run between chunks once this one
        // has worked `WORK_PER_YIELD`. For the first few matches, a chunk is about what is
        // still missing.
        let mut pacer = Pacer::default();
        while found.len() < count {
            let size = count.saturating_sub(found.len()).clamp(16, MESSAGES_PER_CHUNK);
            let indexes: Vec<usize> = admitted.by_ref().take(size).collect();
            if indexes.is_empty() {
                break;
            }
            pacer.pace().await;
            // Those the index lists as matches are taken as they are; the others are read.
            let certain: Vec<bool> = indexes
                .iter()
                .map(|index| candidates.as_ref().is_some_and(|candidates| candidates.certain(&entries[*index])))
                .collect();
            let chunk: Vec<&UidEntry> = indexes
                .iter()
                .zip(&certain)
                .filter(|(_, certain)| !**certain)
                .map(|(index, _)| &entries[*index])
                .collect();
            let emails: Vec<EmailId> = chunk.iter().map(|entry| entry.email).collect();
            let summaries =
                if need.summary { Some(self.summaries.get_many(self.mail, account, &emails).await?) } else { None };
            let texts = if need.text { Some(self.texts.get_many(self.mail, account, &emails).await?) } else { None };
            let mut read = chunk.iter().copied().enumerate();
            for (index, certain) in indexes.iter().zip(certain) {
                if certain {
                    found.push(*index);
                    continue;
                }
                let Some((offset, entry)) = read.next() else { break };
                let summary = match &summaries {
                    Some(summaries) => match &summaries[offset] {
                        Some(summary) => Some(summary.clone()),
                        None => continue,
                    },
                    None => None,
                };
                let body_text = match &texts {
                    Some(texts) => match &texts[offset] {
                        Some(text) => Some(text.clone()),
                        None => continue,
                    },
                    None => None,
                };
                let mut message = Message {
                    entry,
                    summary,
                    raw: None,
                    body_text,
                    body_folded: None,
                    header: headers::Header::default(),
                    header_assumed: None,
                    ruled_out: candidates.as_ref().map(|c| c.ruled_out(entry)).unwrap_or_default(),
                };
                // Decided without the header when it would be the same whatever the header
                // says (a TEXT found in the body): the raw message is read only otherwise.
                if need.raw && need.header_monotone {
                    message.header_assumed = Some(false);
                    if filter.matches(&mut message) {
                        found.push(*index);
                        continue;
                    }
                    message.header_assumed = Some(true);
                    if !filter.matches(&mut message) {
                        continue;
                    }
                    message.header_assumed = None;
                }
                if need.raw {
                    if message.summary.is_none() {
                        match self.summaries.get(self.mail, account, entry.email).await {
                            Ok(summary) => message.summary = Some(summary),
                            Err(Error::NoEmail(_)) => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    let end = message.summary.as_ref().map_or(u64::MAX, |c| header_end(&c.summary, u64::MAX));
                    match self.texts.header(self.mail, account, entry.email, end).await? {
                        Some(header) => message.raw = Some(header),
                        None => continue,
                    }
                }
                if filter.matches(&mut message) {
                    found.push(*index);
                }
            }
        }
        found.truncate(count);
        if from_end {
            found.reverse();
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;

//! `Email/query` and `Email/queryChanges` (RFC 8621 §4.4, §4.5).
//!
//! One query model: a client's `FilterCondition`s and `FilterOperator`s are mapped onto the
//! mail model's [`query::Filter`], the one IMAP SEARCH maps onto, and evaluated by
//! [`query::Reader::matching`] with the summary and text caches IMAP shares. Conditions the
//! mail model's filter does not know (`inMailbox`, `inMailboxOtherThan`, `hasAttachment`,
//! the thread keyword conditions) are worked out here for the messages queried, and
//! handed to the filter as the set of positions where they hold
//! ([`query::Condition::Uids`] over a snapshot numbered by position).
//!
//! **The snapshot.** A query runs over a snapshot of one mailbox's index (when the filter
//! says `inMailbox` at its top), or of every mailbox's, each email once: the entries
//! sorted by arrival (`receivedAt`, then id), numbered by position. Snapshots are kept
//! ([`QueryCache`], bounded by `jmap.query_cache_entries_max`) and brought up to date from
//! the mailbox's changes (`Mail::mailbox_changes_since`: the change log when few changes
//! followed, one index scan otherwise), so that the query a client sends most, a mailbox
//! by date, newest first, 50 at a time, reads neither the index nor a message: the order
//! is the snapshot's, and only the page's ids are written.
//!
//! **Sorting.** `receivedAt`, `size`, `from`, `to`, `subject` (its base: without `Re:`,
//! `Fwd:`… prefixes), `sentAt`, `hasKeyword`, `allInThreadHaveKeyword`,
//! `someInThreadHaveKeyword`, each ascending or not; ties by id, in the direction of the
//! first comparator. No collation is offered (`collationAlgorithms` is empty).
//!
//! `Email/queryChanges` reports every email changed since the state as removed, and
//! re-adds those in the results at their index (RFC 8620 §5.6 allows it: results are not
//! kept per state).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use hameau_mailbox::query::{self, Condition, MESSAGES_PER_CHUNK, Node as QueryNode, Pacer, Reader};
use hameau_mailbox::{AccountId, Keyword, MailboxId, UidEntry};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::changes::{self, Fold};
use super::email::email_id;
use super::mailbox::parse_mailbox_id;
use super::{Context, Window, arguments, letter, parse_id, server_fail};
use crate::MethodError;
use crate::filter::{self, Node};

/// The snapshots of mailbox indexes that queries run over, by account and mailbox (`None`:
/// every mailbox of the account), bounded in entries all together; when full it is emptied
/// and fills again with what is queried.
pub struct QueryCache {
    /// The snapshots, and the number of entries they hold together.
    inner: Mutex<(Snapshots, usize)>,
    /// One refresh at a time per account (accounts spread over these stripes): the queries
    /// that find a snapshot out of date wait for the first to bring it up to date, rather
    /// than each read the mailbox index (20 clients after a delivery).
    refreshing: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of [`QueryCache::refreshing`]: accounts refreshing at once without waiting on
/// each other, as long as they fall in different stripes.
const REFRESH_STRIPES: usize = 64;

impl Default for QueryCache {
    fn default() -> Self {
        QueryCache {
            inner: Mutex::default(),
            refreshing: (0..REFRESH_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

type Snapshots = HashMap<(AccountId, Option<MailboxId>), Arc<Snapshot>>;

impl std::fmt::Debug for QueryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryCache").finish_non_exhaustive()
    }
}

/// A mailbox's index (or an account's), as of `modseq`.
#[derive(Debug)]
pub struct Snapshot {
    /// The account's modseq the snapshot is up to date with.
    modseq: u64,
    /// The entries sorted by (`received_at`, `email`), each `uid` its position plus one.
    entries: Arc<Vec<UidEntry>>,
    /// The entries' own UIDs in the mailbox, by position (empty for every mailbox's).
    uids: Arc<Vec<u32>>,
}

impl QueryCache {
    fn get(&self, account: AccountId, mailbox: Option<MailboxId>) -> Option<Arc<Snapshot>> {
        self.inner.lock().expect("query cache lock").0.get(&(account, mailbox)).cloned()
    }

    fn remove(&self, account: AccountId, mailbox: Option<MailboxId>) {
        let mut guard = self.inner.lock().expect("query cache lock");
        let (map, total) = &mut *guard;
        if let Some(old) = map.remove(&(account, mailbox)) {
            *total -= old.entries.len();
        }
    }

    fn put(&self, account: AccountId, mailbox: Option<MailboxId>, snapshot: Arc<Snapshot>, entries_max: u64) {
        let size = snapshot.entries.len();
        if size as u64 > entries_max {
            return;
        }
        let mut guard = self.inner.lock().expect("query cache lock");
        let (map, total) = &mut *guard;
        if let Some(old) = map.remove(&(account, mailbox)) {
            *total -= old.entries.len();
        }
        if (*total + size) as u64 > entries_max {
            map.clear();
            *total = 0;
        }
        *total += size;
        map.insert((account, mailbox), snapshot);
    }
}

/// Entries sorted by arrival, numbered by position; their own UIDs alongside.
fn numbered(mut entries: Vec<UidEntry>, modseq: u64) -> Snapshot {
    // Stable and adaptive: an index already in arrival order (delivered mail) sorts in
    // one pass.
    entries.sort_by_key(|entry| (entry.received_at, entry.email));
    let uids = entries.iter().map(|entry| entry.uid).collect();
    for (position, entry) in entries.iter_mut().enumerate() {
        entry.uid = u32::try_from(position + 1).unwrap_or(u32::MAX);
    }
    Snapshot { modseq, entries: Arc::new(entries), uids: Arc::new(uids) }
}

/// `entries` (a snapshot's, numbered by position; `uids` their own UIDs) with a mailbox's
/// changes applied: expunged entries out, changed ones replaced where they are (found by
/// their arrival, which a change never moves), new ones added, then numbered again. Linear
/// but for the few changes; no entry is copied.
fn apply(mut entries: Vec<UidEntry>, uids: &[u32], delta: hameau_mailbox::MailboxDelta) -> Snapshot {
    for (entry, uid) in entries.iter_mut().zip(uids) {
        entry.uid = *uid;
    }
    if !delta.expunged.is_empty() {
        let gone: HashSet<u32> = delta.expunged.iter().copied().collect();
        entries.retain(|entry| !gone.contains(&entry.uid));
    }
    let sorted = entries.len();
    for changed in delta.changed {
        let key = (changed.received_at, changed.email);
        match entries[..sorted].binary_search_by_key(&key, |entry| (entry.received_at, entry.email)) {
            Ok(at) if entries[at].uid == changed.uid => entries[at] = changed,
            _ => entries.push(changed),
        }
    }
    numbered(entries, delta.highest_modseq)
}

/// The snapshot of `mailbox`, up to date with the account's `modseq` or later.
async fn mailbox_snapshot(ctx: &Context<'_>, mailbox: MailboxId, modseq: u64) -> Result<Arc<Snapshot>, MethodError> {
    let cache = &ctx.services.queries;
    let account = ctx.account();
    let entries_max = ctx.limits().query_cache_entries_max;
    if let Some(cached) = cache.get(account, Some(mailbox))
        && cached.modseq >= modseq
    {
        return Ok(cached);
    }
    let _refreshing = cache.refreshing[(account % REFRESH_STRIPES as u64) as usize].lock().await;
    if let Some(cached) = cache.get(account, Some(mailbox)) {
        // Brought up to date by another query while this one waited.
        if cached.modseq >= modseq {
            return Ok(cached);
        }
        let delta = match ctx.mail().mailbox_changes_since(account, mailbox, cached.modseq).await {
            Ok(delta) => delta,
            Err(hameau_mailbox::Error::NoMailbox(_)) => {
                return Ok(Arc::new(Snapshot { modseq, entries: Arc::default(), uids: Arc::default() }));
            }
            Err(e) => return Err(server_fail(e)),
        };
        let snapshot = if delta.changed.is_empty() && delta.expunged.is_empty() {
            Snapshot { modseq: delta.highest_modseq, entries: cached.entries.clone(), uids: cached.uids.clone() }
        } else {
            // Out of the cache, so that the entries are changed in place when no other
            // query holds them (copied otherwise).
            cache.remove(account, Some(mailbox));
            let Snapshot { entries, uids, .. } = Arc::try_unwrap(cached).unwrap_or_else(|shared| Snapshot {
                modseq: shared.modseq,
                entries: shared.entries.clone(),
                uids: shared.uids.clone(),
            });
            let entries = Arc::try_unwrap(entries).unwrap_or_else(|shared| (*shared).clone());
            apply(entries, &uids, delta)
        };
        let snapshot = Arc::new(snapshot);
        cache.put(account, Some(mailbox), snapshot.clone(), entries_max);
        return Ok(snapshot);
    }
    let entries = match ctx.mail().uids(account, mailbox).await {
        Ok(entries) => entries,
        Err(hameau_mailbox::Error::NoMailbox(_)) => Vec::new(),
        Err(e) => return Err(server_fail(e)),
    };
    let snapshot = Arc::new(numbered(entries, modseq));
    cache.put(account, Some(mailbox), snapshot.clone(), entries_max);
    Ok(snapshot)
}

/// The snapshot of every mailbox of the account, each email once.
async fn account_snapshot(ctx: &Context<'_>, modseq: u64) -> Result<Arc<Snapshot>, MethodError> {
    let cache = &ctx.services.queries;
    let account = ctx.account();
    if let Some(cached) = cache.get(account, None)
        && cached.modseq >= modseq
    {
        return Ok(cached);
    }
    let mailboxes = ctx.mail().mailboxes(account).await.map_err(server_fail)?;
    let mut all: Vec<UidEntry> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::new();
    for mailbox in mailboxes {
        let snapshot = mailbox_snapshot(ctx, mailbox.id, modseq).await?;
        all.extend(snapshot.entries.iter().filter(|entry| seen.insert(entry.email)).cloned());
    }
    let mut snapshot = numbered(all, modseq);
    snapshot.uids = Arc::default();
    let snapshot = Arc::new(snapshot);
    cache.put(account, None, snapshot.clone(), ctx.limits().query_cache_entries_max);
    Ok(snapshot)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryArguments {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    #[serde(default)]
    collapse_threads: bool,
    #[serde(default)]
    calculate_total: bool,
    #[serde(flatten)]
    window: Window,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Comparator {
    property: String,
    #[serde(default = "ascending")]
    is_ascending: bool,
    #[serde(default)]
    collation: Option<String>,
    #[serde(default)]
    keyword: Option<String>,
    /// jmapc 0.4 (the client of the acceptance tests) writes the query's paging arguments
    /// into each comparator too: accepted and ignored, as the query's own are what count.
    #[serde(default, rename = "anchor")]
    _anchor: Option<Value>,
    #[serde(default, rename = "anchorOffset")]
    _anchor_offset: Option<Value>,
    #[serde(default, rename = "limit")]
    _limit: Option<Value>,
    #[serde(default, rename = "calculateTotal")]
    _calculate_total: Option<Value>,
    #[serde(default, rename = "position")]
    _position: Option<Value>,
}

fn ascending() -> bool {
    true
}

/// What a comparator sorts by.
#[derive(Clone, Debug, PartialEq)]
enum SortBy {
    ReceivedAt,
    Size,
    From,
    To,
    Subject,
    SentAt,
    HasKeyword(Keyword),
    AllInThread(Keyword),
    SomeInThread(Keyword),
}

/// The sort properties offered (RFC 8621 §4.4.2), as the session object lists them.
pub const SORT_OPTIONS: [&str; 9] = [
    "receivedAt",
    "size",
    "from",
    "to",
    "subject",
    "sentAt",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

fn sort_by(comparators: Vec<Comparator>) -> Result<Vec<(SortBy, bool)>, MethodError> {
    let mut out = Vec::with_capacity(comparators.len());
    for comparator in comparators {
        if comparator.collation.is_some() {
            return Err(MethodError::new("unsupportedSort", "no collation is offered (collationAlgorithms is empty)"));
        }
        let keyword = || -> Result<Keyword, MethodError> {
            let word = comparator.keyword.as_deref().ok_or_else(|| {
                MethodError::invalid_arguments(format!("sorting by {} needs a keyword", comparator.property))
            })?;
            Keyword::parse_jmap(word).ok_or_else(|| MethodError::invalid_arguments(format!("{word:?} is no keyword")))
        };
        let by = match comparator.property.as_str() {
            "receivedAt" => SortBy::ReceivedAt,
            "size" => SortBy::Size,
            "from" => SortBy::From,
            "to" => SortBy::To,
            "subject" => SortBy::Subject,
            "sentAt" => SortBy::SentAt,
            "hasKeyword" => SortBy::HasKeyword(keyword()?),
            "allInThreadHaveKeyword" => SortBy::AllInThread(keyword()?),
            "someInThreadHaveKeyword" => SortBy::SomeInThread(keyword()?),
            other => {
                return Err(MethodError::new("unsupportedSort", format!("emails do not sort by {other:?}")));
            }
        };
        out.push((by, comparator.is_ascending));
    }
    Ok(out)
}

/// A condition of the client's filter, read.
#[derive(Clone, Debug)]
enum Test {
    /// One the mail model's filter evaluates.
    Model(Condition),
    /// JMAP `text`: any address field, the subject or the body.
    Text(String),
    InMailbox(Option<MailboxId>),
    InMailboxOtherThan(Vec<MailboxId>),
    HasAttachment(bool),
    Thread(ThreadTest, Keyword),
    /// A `notKeyword`.
    NotKeyword(Keyword),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThreadTest {
    All,
    Some,
    None,
}

/// The client's filter in prefix order: JMAP's operators and its conditions, one per
/// property (a `FilterCondition` of several properties is an `AND` of them).
#[derive(Clone, Debug)]
enum Step {
    And(usize),
    Or(usize),
    /// None of the next `n`.
    Not(usize),
    Test(Test),
}

/// The properties of a `FilterCondition` (RFC 8621 §4.4.1).
pub(crate) const CONDITIONS: [&str; 20] = [
    "inMailbox",
    "inMailboxOtherThan",
    "before",
    "after",
    "minSize",
    "maxSize",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
    "noneInThreadHaveKeyword",
    "hasKeyword",
    "notKeyword",
    "hasAttachment",
    "text",
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "body",
    "header",
];

/// The client's filter read into [`Step`]s (`unsupportedFilter` for a condition this
/// server does not know, `invalidArguments` for a value of the wrong type).
fn steps(ctx: &Context<'_>, nodes: Vec<Node>) -> Result<Vec<Step>, MethodError> {
    let mut steps = Vec::with_capacity(nodes.len());
    for node in nodes {
        match node {
            Node::And(n) => steps.push(Step::And(n)),
            Node::Or(n) => steps.push(Step::Or(n)),
            Node::Not(n) => steps.push(Step::Not(n)),
            Node::Condition(condition) => {
                if let Some(unknown) = condition.keys().find(|key| !CONDITIONS.contains(&key.as_str())) {
                    return Err(MethodError::new(
                        "unsupportedFilter",
                        format!("emails are not filtered by {unknown:?}"),
                    ));
                }
                if condition.len() != 1 {
                    steps.push(Step::And(condition.len()));
                }
                for (property, value) in &condition {
                    steps.push(Step::Test(test(ctx, property, value)?));
                }
            }
        }
    }
    Ok(steps)
}

/// One property of a `FilterCondition` (RFC 8621 §4.4.1).
fn test(ctx: &Context<'_>, property: &str, value: &Value) -> Result<Test, MethodError> {
    let wrong = || MethodError::invalid_arguments(format!("the filter's {property:?} has the wrong type"));
    let string = || value.as_str().map(str::to_string).ok_or_else(wrong);
    let number = || value.as_u64().ok_or_else(wrong);
    let keyword = || -> Result<Keyword, MethodError> {
        let word = value.as_str().ok_or_else(wrong)?;
        Keyword::parse_jmap(word).ok_or_else(|| MethodError::invalid_arguments(format!("{word:?} is no keyword")))
    };
    let date = || -> Result<i64, MethodError> {
        let text = value.as_str().ok_or_else(wrong)?;
        utc_date(text).ok_or_else(|| MethodError::invalid_arguments(format!("{text:?} is no UTCDate")))
    };
    Ok(match property {
        "inMailbox" => Test::InMailbox(parse_mailbox_id(ctx, value.as_str().ok_or_else(wrong)?)),
        "inMailboxOtherThan" => {
            let ids = value.as_array().ok_or_else(wrong)?;
            let mut mailboxes = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(mailbox) = parse_mailbox_id(ctx, id.as_str().ok_or_else(wrong)?) {
                    mailboxes.push(mailbox);
                }
            }
            Test::InMailboxOtherThan(mailboxes)
        }
        "before" => Test::Model(Condition::ReceivedBefore(date()?)),
        "after" => Test::Model(Condition::ReceivedSince(date()?)),
        "minSize" => Test::Model(Condition::MinSize(number()?)),
        "maxSize" => Test::Model(Condition::MaxSize(number()?)),
        "allInThreadHaveKeyword" => Test::Thread(ThreadTest::All, keyword()?),
        "someInThreadHaveKeyword" => Test::Thread(ThreadTest::Some, keyword()?),
        "noneInThreadHaveKeyword" => Test::Thread(ThreadTest::None, keyword()?),
        "hasKeyword" => Test::Model(Condition::Keyword(keyword()?)),
        "notKeyword" => Test::NotKeyword(keyword()?),
        "hasAttachment" => Test::HasAttachment(value.as_bool().ok_or_else(wrong)?),
        "text" => Test::Text(string()?),
        "from" => Test::Model(Condition::From(string()?)),
        "to" => Test::Model(Condition::To(string()?)),
        "cc" => Test::Model(Condition::Cc(string()?)),
        "bcc" => Test::Model(Condition::Bcc(string()?)),
        "subject" => Test::Model(Condition::Subject(string()?)),
        "body" => Test::Model(Condition::Body(string()?)),
        "header" => {
            let pair = value.as_array().ok_or_else(wrong)?;
            let name = pair.first().and_then(Value::as_str).ok_or_else(wrong)?;
            let field = match pair.get(1) {
                None => String::new(),
                Some(value) => value.as_str().ok_or_else(wrong)?.to_string(),
            };
            if pair.len() > 2 || name.is_empty() {
                return Err(wrong());
            }
            Test::Model(Condition::Header { name: name.to_string(), value: field })
        }
        _ => return Err(MethodError::new("unsupportedFilter", format!("emails are not filtered by {property:?}"))),
    })
}

/// A UTCDate (`2026-11-30T09:00:00Z`, RFC 8620 §1.4) as seconds since the epoch.
fn utc_date(text: &str) -> Option<i64> {
    hameau_calendar::parse_rfc3339_utc(text).and_then(|seconds| i64::try_from(seconds).ok())
}

/// Where each step's subtree ends (prefix order: an operator's operands follow it).
fn subtree_end(steps: &[Step], start: usize) -> usize {
    let mut open = 1usize;
    let mut at = start;
    while open > 0 && at < steps.len() {
        open -= 1;
        open += match &steps[at] {
            Step::And(n) | Step::Or(n) | Step::Not(n) => *n,
            Step::Test(_) => 0,
        };
        at += 1;
    }
    at
}

/// The mailbox a query can be limited to: one `inMailbox` that every result must meet
/// (the filter's root, or a direct operand of a root `AND`).
fn scope(steps: &[Step]) -> Option<Option<MailboxId>> {
    match steps.first()? {
        Step::Test(Test::InMailbox(mailbox)) => Some(*mailbox),
        Step::And(n) => {
            let mut at = 1;
            for _ in 0..*n {
                if let Some(Step::Test(Test::InMailbox(mailbox))) = steps.get(at) {
                    return Some(*mailbox);
                }
                at = subtree_end(steps, at);
            }
            None
        }
        _ => None,
    }
}

/// A query's results in order. A mailbox's whole list in arrival order (the list view,
/// the most frequent query by far) is its snapshot, read where a page falls: 50 ids of a
/// 100,000-message mailbox are looked up, not 100,000 copied.
enum Ordered {
    /// Every entry of the snapshot, by arrival or (`descending`) its reverse.
    Arrival { snapshot: Arc<Snapshot>, descending: bool },
    /// Email ids, in order.
    Ids(Vec<u64>),
}

impl Ordered {
    fn len(&self) -> usize {
        match self {
            Ordered::Arrival { snapshot, .. } => snapshot.entries.len(),
            Ordered::Ids(ids) => ids.len(),
        }
    }

    /// The ids from `start` to `end` (within `len`).
    fn slice(&self, start: usize, end: usize) -> Vec<u64> {
        match self {
            Ordered::Arrival { snapshot, descending: false } => {
                snapshot.entries[start..end].iter().map(|entry| entry.email).collect()
            }
            Ordered::Arrival { snapshot, descending: true } => {
                let count = snapshot.entries.len();
                snapshot.entries[count - end..count - start].iter().rev().map(|entry| entry.email).collect()
            }
            Ordered::Ids(ids) => ids[start..end].to_vec(),
        }
    }

    /// Every id, in order.
    fn iter(&self) -> Box<dyn Iterator<Item = u64> + '_> {
        match self {
            Ordered::Arrival { snapshot, descending: false } => Box::new(snapshot.entries.iter().map(|e| e.email)),
            Ordered::Arrival { snapshot, descending: true } => Box::new(snapshot.entries.iter().rev().map(|e| e.email)),
            Ordered::Ids(ids) => Box::new(ids.iter().copied()),
        }
    }
}

/// The results of a filter and sort, in order, with the account's modseq they are as new
/// as (at least), and the threads read on the way.
///
/// `first`: only that many results from the start are needed (a page, neither counted nor
/// anchored). Sorted by arrival, the scan then stops once it has them.
async fn results(
    ctx: &Context<'_>,
    filter: Option<Value>,
    sort: Option<Vec<Comparator>>,
    first: Option<usize>,
) -> Result<(u64, Ordered, Threads), MethodError> {
    let nodes = filter::flatten(filter, ctx.limits().filter_nodes_max)?;
    let steps = steps(ctx, nodes)?;
    let sort = sort_by(sort.unwrap_or_default())?;
    let modseq = ctx.mail().modseq(ctx.account()).await.map_err(server_fail)?;
    let scope = scope(&steps);
    let snapshot = match scope {
        Some(Some(mailbox)) => mailbox_snapshot(ctx, mailbox, modseq).await?,
        // A mailbox that does not exist holds nothing.
        Some(None) => Arc::new(Snapshot { modseq, entries: Arc::default(), uids: Arc::default() }),
        None => account_snapshot(ctx, modseq).await?,
    };
    let mut threads = Threads::default();
    let by_arrival = sort.is_empty() || (sort.len() == 1 && sort[0].0 == SortBy::ReceivedAt);
    let descending = sort.first().is_some_and(|(_, ascending)| !ascending);
    if by_arrival && trivial(&steps, scope.flatten()) {
        return Ok((modseq, Ordered::Arrival { snapshot, descending }, threads));
    }
    let wanted = match first {
        Some(count) if by_arrival => query::Wanted::First { count, from_end: descending },
        _ => query::Wanted::All,
    };
    let matching = matching(ctx, &snapshot, &steps, scope.flatten(), wanted, &mut threads).await?;
    let ordered = order(ctx, &snapshot, matching, &sort, &mut threads).await?;
    Ok((modseq, Ordered::Ids(ordered), threads))
}

/// Whether `steps` hold for every entry of the snapshot of `scope`.
fn trivial(steps: &[Step], scope: Option<MailboxId>) -> bool {
    match steps {
        [] | [Step::And(0)] => true,
        [Step::Test(Test::InMailbox(mailbox))] => *mailbox == scope && scope.is_some(),
        _ => false,
    }
}

/// `Email/query` (RFC 8621 §4.4).
pub async fn query(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: QueryArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let anchor = match &arguments.window.anchor {
        Some(anchor) => Some(parse_id(letter::EMAIL, anchor).ok_or_else(|| anchor_not_found(anchor))?),
        None => None,
    };
    // A page from a position, not counted: the results past it are not needed.
    let results_max = ctx.limits().query_results_max;
    let first = match arguments.window.limit {
        Some(limit)
            if !arguments.collapse_threads
                && !arguments.calculate_total
                && anchor.is_none()
                && arguments.window.position >= 0 =>
        {
            usize::try_from((arguments.window.position as u64).saturating_add(limit.min(results_max))).ok()
        }
        _ => None,
    };
    let (modseq, ordered, mut threads) = results(ctx, arguments.filter, arguments.sort, first).await?;
    let ids = if arguments.collapse_threads {
        // Enough of the results for the page, unless the whole is needed.
        let whole = arguments.calculate_total || anchor.is_some() || arguments.window.position < 0;
        let wanted = if whole {
            usize::MAX
        } else {
            let limit = arguments.window.limit.unwrap_or(u64::MAX).min(results_max);
            usize::try_from((arguments.window.position as u64).saturating_add(limit)).unwrap_or(usize::MAX)
        };
        Ordered::Ids(collapse(ctx, &ordered, wanted, &mut threads).await?)
    } else {
        ordered
    };
    let (position, page, limit) = page(&ids, &arguments.window, anchor, results_max)?;
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("queryState".into(), Value::from(modseq.to_string()));
    // Email/queryChanges answers for every query but those that collapse threads.
    response.insert("canCalculateChanges".into(), Value::from(!arguments.collapse_threads));
    response.insert("position".into(), Value::from(position));
    response.insert("ids".into(), Value::from(page.into_iter().map(email_id).collect::<Vec<_>>()));
    if arguments.calculate_total {
        response.insert("total".into(), Value::from(ids.len()));
    }
    if let Some(limit) = limit {
        response.insert("limit".into(), Value::from(limit));
    }
    Ok(response)
}

fn anchor_not_found(anchor: &str) -> MethodError {
    MethodError::new("anchorNotFound", format!("{anchor:?} is not among the results"))
}

/// The part of the sorted `ids` a query returns (RFC 8620 §5.5), as `super::window` does
/// for ids already written: the start, the page, and the limit applied when capped.
fn page(
    ids: &Ordered,
    window: &Window,
    anchor: Option<u64>,
    results_max: u64,
) -> Result<(usize, Vec<u64>, Option<u64>), MethodError> {
    let total = ids.len() as i64;
    let start = match anchor {
        Some(anchor) => {
            let at = ids.iter().position(|id| id == anchor).ok_or_else(|| anchor_not_found(&email_id(anchor)))?;
            (at as i64).saturating_add(window.anchor_offset).max(0)
        }
        None if window.position < 0 => total.saturating_add(window.position).max(0),
        None => window.position,
    }
    .min(total) as usize;
    let asked = window.limit.unwrap_or(u64::MAX);
    let applied = asked.min(results_max);
    let end = start.saturating_add(usize::try_from(applied).unwrap_or(usize::MAX)).min(ids.len());
    let capped = (applied < asked && (window.limit.is_some() || end < ids.len())).then_some(applied);
    Ok((start, ids.slice(start, end), capped))
}

/// The positions in `snapshot` of the emails that match `steps` (the `wanted` ones),
/// ascending.
async fn matching(
    ctx: &Context<'_>,
    snapshot: &Snapshot,
    steps: &[Step],
    scope: Option<MailboxId>,
    wanted: query::Wanted,
    threads: &mut Threads,
) -> Result<Vec<usize>, MethodError> {
    if trivial(steps, scope) {
        return Ok((0..snapshot.entries.len()).collect());
    }
    let mut nodes: Vec<QueryNode> = Vec::with_capacity(steps.len());
    for step in steps {
        match step {
            Step::And(n) => nodes.push(QueryNode::And(*n)),
            Step::Or(n) => nodes.push(QueryNode::Or(*n)),
            Step::Not(n) => {
                nodes.push(QueryNode::Not);
                nodes.push(QueryNode::Or(*n));
            }
            Step::Test(test) => lower(ctx, snapshot, test, scope, threads, &mut nodes).await?,
        }
    }
    let filter =
        if ctx.limits().fold_accents { query::Filter::folding_accents(nodes) } else { query::Filter::new(nodes) };
    let filter = filter.map_err(|_| MethodError::invalid_arguments("the filter is malformed"))?;
    let reader = Reader { mail: ctx.mail(), summaries: &ctx.services.summaries, texts: &ctx.services.texts };
    reader.matching_wanted(ctx.account(), &snapshot.entries, &filter, wanted).await.map_err(server_fail)
}

/// One test as nodes of the mail model's filter.
async fn lower(
    ctx: &Context<'_>,
    snapshot: &Snapshot,
    test: &Test,
    scope: Option<MailboxId>,
    threads: &mut Threads,
    nodes: &mut Vec<QueryNode>,
) -> Result<(), MethodError> {
    let positions = |holds: &dyn Fn(usize, &UidEntry) -> bool| -> Condition {
        let uids: Vec<u32> =
            snapshot.entries.iter().enumerate().filter(|(at, entry)| holds(*at, entry)).map(|(_, e)| e.uid).collect();
        Condition::Uids(query::ranges_of(&uids))
    };
    let condition = match test {
        Test::Model(condition) => condition.clone(),
        Test::NotKeyword(keyword) => {
            nodes.push(QueryNode::Not);
            Condition::Keyword(keyword.clone())
        }
        Test::Text(text) => {
            // RFC 8621 §4.4.1: "looks for the text in emails"; here the address fields, the
            // subject and the body, as the mail model's condition docs say.
            nodes.push(QueryNode::Or(6));
            for condition in [Condition::From, Condition::To, Condition::Cc, Condition::Bcc, Condition::Subject] {
                nodes.push(QueryNode::Condition(condition(text.clone())));
            }
            Condition::Body(text.clone())
        }
        Test::InMailbox(mailbox) => match mailbox {
            Some(mailbox) if Some(*mailbox) == scope => Condition::All,
            Some(mailbox) => {
                let inside = emails_in(ctx, &[*mailbox], snapshot.modseq).await?;
                positions(&|_, entry| inside.contains(&entry.email))
            }
            None => Condition::Uids(Vec::new()),
        },
        Test::InMailboxOtherThan(excluded) => {
            let mailboxes = ctx.mail().mailboxes(ctx.account()).await.map_err(server_fail)?;
            let others: Vec<MailboxId> =
                mailboxes.iter().map(|mailbox| mailbox.id).filter(|id| !excluded.contains(id)).collect();
            let inside = emails_in(ctx, &others, snapshot.modseq).await?;
            positions(&|_, entry| inside.contains(&entry.email))
        }
        Test::HasAttachment(wanted) => {
            let mut holds = vec![false; snapshot.entries.len()];
            let mut pacer = Pacer::default();
            for (chunk_index, chunk) in snapshot.entries.chunks(MESSAGES_PER_CHUNK).enumerate() {
                let emails: Vec<u64> = chunk.iter().map(|entry| entry.email).collect();
                let summaries =
                    ctx.services.summaries.get_many(ctx.mail(), ctx.account(), &emails).await.map_err(server_fail)?;
                for (offset, summary) in summaries.iter().enumerate() {
                    holds[chunk_index * MESSAGES_PER_CHUNK + offset] =
                        summary.as_ref().is_some_and(|cached| cached.summary.has_attachment == *wanted);
                }
                pacer.pace().await;
            }
            positions(&|at, _| holds[at])
        }
        Test::Thread(kind, keyword) => {
            threads.load(ctx, snapshot).await?;
            let marks = threads.keyword(ctx, keyword).await?;
            positions(&|at, _| {
                let (all, some) =
                    threads.of(at).and_then(|thread| marks.get(&thread).copied()).unwrap_or((false, false));
                match kind {
                    ThreadTest::All => all,
                    ThreadTest::Some => some,
                    ThreadTest::None => !some,
                }
            })
        }
    };
    nodes.push(QueryNode::Condition(condition));
    Ok(())
}

/// The emails in any of `mailboxes`.
async fn emails_in(ctx: &Context<'_>, mailboxes: &[MailboxId], modseq: u64) -> Result<HashSet<u64>, MethodError> {
    let mut inside = HashSet::new();
    for mailbox in mailboxes {
        let snapshot = mailbox_snapshot(ctx, *mailbox, modseq).await?;
        inside.extend(snapshot.entries.iter().map(|entry| entry.email));
    }
    Ok(inside)
}

/// The threads of a snapshot's emails and their keywords, read once per query when a
/// thread condition, comparator or `collapseThreads` asks.
#[derive(Default)]
struct Threads {
    /// The thread of each position, once loaded.
    by_position: Option<Vec<Option<u64>>>,
    /// The keywords of every email of those threads.
    keywords: HashMap<u64, Vec<Keyword>>,
    /// The emails of each thread.
    members: HashMap<u64, Vec<u64>>,
}

impl Threads {
    async fn load(&mut self, ctx: &Context<'_>, snapshot: &Snapshot) -> Result<(), MethodError> {
        if self.by_position.is_some() {
            return Ok(());
        }
        let mut by_position = Vec::with_capacity(snapshot.entries.len());
        let mut pacer = Pacer::default();
        for chunk in snapshot.entries.chunks(MESSAGES_PER_CHUNK) {
            let emails: Vec<u64> = chunk.iter().map(|entry| entry.email).collect();
            let records = ctx.mail().emails(ctx.account(), &emails).await.map_err(server_fail)?;
            for record in records {
                by_position.push(record.as_ref().map(|email| email.thread));
                if let Some(email) = record {
                    self.keywords.insert(email.id, email.keywords);
                }
            }
            pacer.pace().await;
        }
        self.by_position = Some(by_position);
        Ok(())
    }

    fn of(&self, position: usize) -> Option<u64> {
        self.by_position.as_ref().and_then(|threads| threads.get(position).copied().flatten())
    }

    /// For each thread: whether all its emails have `keyword`, and whether some do. Reads
    /// the emails of the threads that are not in the snapshot.
    async fn keyword(
        &mut self,
        ctx: &Context<'_>,
        keyword: &Keyword,
    ) -> Result<HashMap<u64, (bool, bool)>, MethodError> {
        let threads: HashSet<u64> = self.by_position.iter().flatten().flatten().copied().collect();
        let limit = usize::try_from(ctx.limits().query_results_max).unwrap_or(usize::MAX);
        let mut marks = HashMap::with_capacity(threads.len());
        for thread in threads {
            if !self.members.contains_key(&thread) {
                let members = ctx.mail().thread_emails(ctx.account(), thread, limit).await.map_err(server_fail)?;
                let missing: Vec<u64> = members.iter().copied().filter(|id| !self.keywords.contains_key(id)).collect();
                if !missing.is_empty() {
                    for email in
                        ctx.mail().emails(ctx.account(), &missing).await.map_err(server_fail)?.into_iter().flatten()
                    {
                        self.keywords.insert(email.id, email.keywords);
                    }
                }
                self.members.insert(thread, members);
            }
            let members = &self.members[&thread];
            let has = |id: &u64| self.keywords.get(id).is_some_and(|keywords| keywords.contains(keyword));
            marks.insert(thread, (members.iter().all(has), members.iter().any(has)));
        }
        Ok(marks)
    }
}

/// A sort key of one email for one comparator.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Number(i64),
    Text(String),
}

/// The matching positions in the order the comparators give; as email ids.
async fn order(
    ctx: &Context<'_>,
    snapshot: &Snapshot,
    mut matching: Vec<usize>,
    sort: &[(SortBy, bool)],
    threads: &mut Threads,
) -> Result<Vec<u64>, MethodError> {
    let entries = &snapshot.entries;
    let descending_ties = sort.first().is_some_and(|(_, ascending)| !ascending);
    // The snapshot's own order is receivedAt then id: sorted already.
    let by_arrival = sort.is_empty() || (sort.len() == 1 && sort[0].0 == SortBy::ReceivedAt);
    if by_arrival {
        if descending_ties {
            matching.reverse();
        }
        return Ok(matching.into_iter().map(|at| entries[at].email).collect());
    }
    let mut keys: Vec<Vec<Key>> = Vec::with_capacity(sort.len());
    for (by, _) in sort {
        keys.push(sort_keys(ctx, snapshot, &matching, by, threads).await?);
    }
    let mut order: Vec<usize> = (0..matching.len()).collect();
    order.sort_by(|a, b| {
        for ((_, ascending), column) in sort.iter().zip(&keys) {
            let ordering = column[*a].cmp(&column[*b]);
            let ordering = if *ascending { ordering } else { ordering.reverse() };
            if ordering.is_ne() {
                return ordering;
            }
        }
        let ids = entries[matching[*a]].email.cmp(&entries[matching[*b]].email);
        if descending_ties { ids.reverse() } else { ids }
    });
    Ok(order.into_iter().map(|index| entries[matching[index]].email).collect())
}

/// One comparator's key for each matching position.
async fn sort_keys(
    ctx: &Context<'_>,
    snapshot: &Snapshot,
    matching: &[usize],
    by: &SortBy,
    threads: &mut Threads,
) -> Result<Vec<Key>, MethodError> {
    let entries = &snapshot.entries;
    let flag = |value: bool| Key::Number(i64::from(value));
    Ok(match by {
        SortBy::ReceivedAt => matching.iter().map(|at| Key::Number(entries[*at].received_at as i64)).collect(),
        SortBy::Size => matching.iter().map(|at| Key::Number(i64::from(entries[*at].size))).collect(),
        SortBy::HasKeyword(keyword) => matching.iter().map(|at| flag(entries[*at].has(keyword))).collect(),
        SortBy::AllInThread(keyword) | SortBy::SomeInThread(keyword) => {
            threads.load(ctx, snapshot).await?;
            let marks = threads.keyword(ctx, keyword).await?;
            let all = matches!(by, SortBy::AllInThread(_));
            matching
                .iter()
                .map(|at| {
                    let (every, some) = threads.of(*at).and_then(|t| marks.get(&t).copied()).unwrap_or((false, false));
                    flag(if all { every } else { some })
                })
                .collect()
        }
        SortBy::From | SortBy::To | SortBy::Subject | SortBy::SentAt => {
            let mut keys = Vec::with_capacity(matching.len());
            let mut pacer = Pacer::default();
            for chunk in matching.chunks(MESSAGES_PER_CHUNK) {
                let emails: Vec<u64> = chunk.iter().map(|at| entries[*at].email).collect();
                let summaries =
                    ctx.services.summaries.get_many(ctx.mail(), ctx.account(), &emails).await.map_err(server_fail)?;
                for (at, summary) in chunk.iter().zip(summaries) {
                    let summary = summary.as_ref().map(|cached| &cached.summary);
                    let first_name = |list: Option<&Vec<hameau_mailbox::EmailAddress>>| -> String {
                        list.and_then(|list| list.first())
                            .and_then(|address| address.name.clone().or_else(|| address.address.clone()))
                            .unwrap_or_default()
                            .to_lowercase()
                    };
                    keys.push(match by {
                        SortBy::From => Key::Text(first_name(summary.map(|s| &s.from))),
                        SortBy::To => Key::Text(first_name(summary.map(|s| &s.to))),
                        SortBy::Subject => {
                            Key::Text(base_subject(summary.and_then(|s| s.subject.as_deref()).unwrap_or_default()))
                        }
                        _ => Key::Number(summary.and_then(|s| s.sent_at).unwrap_or(entries[*at].received_at as i64)),
                    });
                }
                pacer.pace().await;
            }
            keys
        }
    })
}

/// A subject without its reply and forward prefixes (`Re:`, `Fwd:`, `Fw:`, `Tr:`, `AW:`,
/// `[list]` tags before them), lower case: what RFC 5256 §2.1 calls the base subject,
/// simplified.
pub fn base_subject(subject: &str) -> String {
    let mut rest = subject.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        let stripped = ["re:", "fwd:", "fw:", "tr:", "aw:", "wg:"]
            .iter()
            .find(|prefix| lower.starts_with(*prefix))
            .map(|prefix| &rest[prefix.len()..]);
        let stripped = stripped
            .or_else(|| (lower.starts_with('[')).then(|| lower.find(']')).flatten().map(|end| &rest[end + 1..]));
        match stripped {
            Some(next) if next.len() < rest.len() => rest = next.trim_start(),
            _ => break,
        }
    }
    rest.trim().to_lowercase()
}

/// The ordered ids with one email per thread, the first of each; stops once `wanted` are
/// found.
async fn collapse(
    ctx: &Context<'_>,
    ordered: &Ordered,
    wanted: usize,
    threads: &mut Threads,
) -> Result<Vec<u64>, MethodError> {
    let _ = threads;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut out = Vec::new();
    let mut pacer = Pacer::default();
    let mut start = 0;
    while start < ordered.len() {
        if out.len() >= wanted {
            break;
        }
        let end = (start + MESSAGES_PER_CHUNK).min(ordered.len());
        let chunk = ordered.slice(start, end);
        start = end;
        let records = ctx.mail().emails(ctx.account(), &chunk).await.map_err(server_fail)?;
        for (id, record) in chunk.iter().zip(records) {
            let thread = record.map_or(*id, |email| email.thread);
            if seen.insert(thread) {
                out.push(*id);
            }
        }
        pacer.pace().await;
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryChangesArguments {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    since_query_state: String,
    #[serde(default)]
    max_changes: Option<u64>,
    #[serde(default)]
    up_to_id: Option<String>,
    #[serde(default)]
    calculate_total: bool,
    #[serde(default)]
    collapse_threads: bool,
}

/// `Email/queryChanges` (RFC 8621 §4.5, RFC 8620 §5.6). Results are not kept per state,
/// so the answer is the one the RFC allows for filters and sorts on mutable properties:
/// every email changed since the state is `removed`, and those of them in the results now
/// are `added` at their index; the client removes, then inserts. `upToId` is not used
/// (the RFC lets a server ignore it). A query that collapses threads is
/// `cannotCalculateChanges` (one email's change moves its thread's other emails), as is a
/// state this server does not know; more changes than `maxChanges` are `tooManyChanges`.
pub async fn query_changes(
    ctx: &mut Context<'_>,
    arguments_: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let arguments: QueryChangesArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let _ = &arguments.up_to_id;
    if arguments.collapse_threads {
        return Err(MethodError::new("cannotCalculateChanges", "threads collapsed: query again"));
    }
    // The results first: changes read after them can only be more, which the client
    // removes and re-inserts for nothing, never fewer.
    let (modseq, ordered, _) = results(ctx, arguments.filter, arguments.sort, None).await?;
    let changes_arguments = changes::ChangesArguments {
        account_id: arguments.account_id.clone(),
        since_state: arguments.since_query_state.clone(),
        max_changes: arguments.max_changes,
    };
    let select = |change: &hameau_mailbox::Change, out: &mut Vec<(u64, hameau_mailbox::ChangeKind)>| {
        out.extend(change.email_changes());
    };
    let folded = changes::read(ctx, &changes_arguments, &select).await?;
    if folded.has_more {
        return Err(MethodError::new("tooManyChanges", "more emails changed than maxChanges: query again"));
    }
    let positions: HashMap<u64, usize> = ordered.iter().enumerate().map(|(index, id)| (id, index)).collect();
    let mut removed = Vec::new();
    let mut added = Vec::new();
    for (email, fold) in &folded.objects {
        if matches!(fold, Fold::Updated | Fold::Destroyed) {
            removed.push(Value::from(email_id(*email)));
        }
        if let Some(index) = positions.get(email) {
            added.push((*index, *email));
        }
    }
    added.sort_unstable();
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("oldQueryState".into(), Value::from(arguments.since_query_state));
    response.insert("newQueryState".into(), Value::from(modseq.to_string()));
    response.insert("removed".into(), Value::from(removed));
    response.insert(
        "added".into(),
        Value::from(
            added.into_iter().map(|(index, id)| json!({"id": email_id(id), "index": index})).collect::<Vec<_>>(),
        ),
    );
    if arguments.calculate_total {
        response.insert("total".into(), Value::from(ordered.len()));
    }
    Ok(response)
}

#[cfg(test)]
#[path = "email_query_tests.rs"]
mod tests;

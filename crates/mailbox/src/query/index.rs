//! The text index: which emails of an account may contain a string, so that a text query
//! (IMAP SEARCH TEXT/BODY/SUBJECT…, JMAP `Email/query` with `text`, `body`, `subject`,
//! `from`…) confirms a few candidates instead of reading every message.
//!
//! IMAP asks for substrings (RFC 9051 §6.4.4), which an index of words cannot answer. This
//! one indexes character trigrams: every three consecutive characters of the texts the
//! conditions match against, exactly as they are matched (the header lowercased, the
//! decoded addresses and subject as the summary cache lowercases them, the body text as
//! folded at delivery). A string of three characters or more is in a text only if all its
//! trigrams are, so the emails having all of a needle's trigrams are a superset of those
//! that match; [`super::Reader::matching`] then confirms each candidate with the same
//! evaluation as without the index, and results are exactly the same. A needle under
//! three characters, or a condition the index does not cover (`Header`, dates, `Not`…),
//! gives no candidate set, and what it constrains is scanned as before.
//!
//! Two spaces keep the header's trigrams apart from the body's (`BODY mairie` is not
//! answered by every address at a `mairie-…` domain). A trigram is hashed to 32 bits: a
//! collision only adds candidates.
//!
//! Short needles: the body text's characters and pairs of characters are indexed too, as
//! they are (neither folded nor hashed), so that a needle of one or two characters, which
//! trigrams cannot narrow and which is in nearly every message, is answered by its own
//! posting list: a filter of one `Body` or `Text` test of such a needle (IMAP's exact
//! semantics) takes the emails listed as matches without reading their texts
//! ([`Candidates::certain`]), and confirms only the others (a `Text` may still be in the
//! header). A scan of 100,000 messages for `ou` confirmed each of them.
//!
//! Storage, per account, in the store: one record per (space, term, chunk of 4,096 email
//! ids), the chunk's emails as a delta-varint list or a bitmap ([`postings`]), and a
//! state record with the cursor: the modseq up to which every email created is indexed.
//! A query treats an entry whose modseq is above the cursor as not indexed and confirms it
//! anyway: entries only take higher modseqs, and an email's creation is logged under the
//! commit's modseq, so an entry at or below the cursor belongs to an indexed email.
//!
//! Writing: delivery only pokes the indexer ([`Indexer::poke`], a bounded queue of
//! accounts; a poke lost to a full queue delays the indexing, not a result). One task
//! waits for a quiet moment (no delivery for [`crate::Limits::text_index_delay_ms`], or
//! [`crate::Limits::text_index_lag_max_s`] since the first), working at most
//! [`crate::Limits::text_index_work_percent`] of the time, then follows each
//! account's change log from the cursor, indexes the emails created, and moves the cursor
//! in the commit that writes their last postings. Each posting chunk is read and rewritten
//! with its version expected, so a concurrent writer makes the round start again rather
//! than lose a posting. An account never indexed (mail delivered before the index
//! existed, or after a restore without it) is built from its email records first: the
//! state says "building" with the modseq read before the scan, queries scan as before
//! until it is done, then the change log is followed from that modseq.
//!
//! Removal: an expunged email's postings stay; it is no longer among a mailbox's entries,
//! so it is never a result. When the emails destroyed since the index was built pass half
//! of those indexed (and [`DESTROYED_REBUILD_MIN`]), the index is cleared and built again,
//! which bounds the dead weight.
//!
//! An email whose header is over `text_index_header_bytes_max` or whose texts have more
//! than `text_index_terms_per_email_max` distinct trigrams is listed as unindexed: it is a
//! candidate of every query.

mod postings;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hameau_store::{Batch, Scan};
use tokio::sync::mpsc;

use self::postings::{CHUNK_EMAILS, Postings, chunk_of};
use super::{Condition, Filter, Op, cache::Cached};
use crate::{AccountId, EmailId, Error, Mail, corrupt, keys};

/// The space of the header's trigrams (the raw header lowercased, and the decoded
/// addresses and subject).
const SPACE_HEADER: u8 = b'h';
/// The space of the body text's trigrams.
const SPACE_BODY: u8 = b'b';
/// The emails every query confirms (header or texts over the limits): term 0 of this space.
const SPACE_UNINDEXED: u8 = b'*';
/// The space of the body text's characters: the term is the code point, exact.
const SPACE_BODY_ONE: u8 = b'1';
/// The space of the body text's pairs of characters of the Basic Multilingual Plane: the
/// term is the two code points (16 bits each), exact. A pair with a character beyond is
/// not indexed, and a needle with one is confirmed as before.
const SPACE_BODY_TWO: u8 = b'2';

/// Postings (an email's term) one round holds in memory before writing them: at most about
/// 100 bytes each (a distinct key each), so a round of large hostile messages stays near
/// 50 MiB, while a round of 500 ordinary messages (a few hundred thousand) is written once.
/// Tests write early every few messages.
const ROUND_POSTINGS_MAX: usize = if cfg!(test) { 2_000 } else { 2_000_000 };

/// Destroyed emails below this never make the index be built again: a small account's
/// dead postings cost less than a rebuild.
pub(crate) const DESTROYED_REBUILD_MIN: u64 = 10_000;

/// The version of the terms the index is written with: 0, the characters as they are; 1,
/// accents folded ([`trigrams`]); 2, with the body's characters and pairs
/// ([`short_terms`]). An index of another version is not used, and is built again.
const TERMS_VERSION: u32 = 2;

/// Where the index of an account stands, in its state record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct State {
    /// [`TERMS_VERSION`] of the postings (0 when the record was written before it).
    #[serde(default)]
    terms: u32,
    /// Every email created at or below this modseq is indexed (when not building).
    cursor: u64,
    /// Set while the index is built from the email records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    building: Option<Building>,
    /// Emails indexed, and destroyed since the build: when to build again.
    indexed: u64,
    destroyed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Building {
    /// The account's modseq read before the scan: the cursor once the scan is done.
    modseq: u64,
    /// The next email id to index.
    next: EmailId,
    /// Old postings are still being deleted (a rebuild).
    #[serde(default)]
    clearing: bool,
}

/// What [`Mail::index_text`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexProgress {
    /// Emails indexed by this call.
    pub indexed: u64,
    /// The cursor now: emails created at or below this modseq are indexed.
    pub cursor: u64,
}

/// The queue of accounts to index, shared by every clone of a [`Mail`]; the task that
/// empties it holds the receiving end.
#[derive(Debug)]
pub(crate) struct Indexer {
    queue: mpsc::Sender<AccountId>,
    pending: Arc<Mutex<HashSet<AccountId>>>,
    /// When the last poke came, in milliseconds since `epoch`: the task waits for a quiet
    /// moment.
    last_poke_ms: Arc<AtomicU64>,
    epoch: tokio::time::Instant,
}

impl Indexer {
    /// Asks for the account to be indexed soon. Never waits: when the queue is full the
    /// poke is dropped, and the account is indexed at its next delivery or query.
    pub(crate) fn poke(&self, account: AccountId) {
        self.last_poke_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let mut pending = self.pending.lock().expect("index queue lock");
        if pending.insert(account) && self.queue.try_send(account).is_err() {
            pending.remove(&account);
        }
    }
}

impl Mail {
    /// Keeps the text index of every account up to date from now on, with a task of its
    /// own (it must be called inside a tokio runtime), when [`crate::Limits::text_index`]
    /// is on; otherwise the mail model as it was. Queries use the index either way once
    /// it is built; only the indexing needs the task.
    pub fn with_text_index(mut self) -> Mail {
        if !self.limits.text_index {
            return self;
        }
        let (queue, receiver) = mpsc::channel(self.limits.text_index_queue_max);
        let pending = Arc::new(Mutex::new(HashSet::new()));
        // The task's own clone pokes nobody: when every other clone is gone, the queue
        // closes and the task ends.
        let (last_poke_ms, epoch) = (Arc::new(AtomicU64::new(0)), tokio::time::Instant::now());
        tokio::spawn(run(self.clone(), receiver, pending.clone(), (last_poke_ms.clone(), epoch)));
        self.indexer = Some(Arc::new(Indexer { queue, pending, last_poke_ms, epoch }));
        self
    }

    /// Tells the indexer that the account changed (after a commit that created emails).
    pub(crate) fn poke_indexer(&self, account: AccountId) {
        if let Some(indexer) = &self.indexer {
            indexer.poke(account);
        }
    }

    /// Indexes the account's emails not yet indexed, now, until caught up with its change
    /// log (the indexer's task does the same in the background): for benchmarks and tests,
    /// and for an operator who wants an account's index before its first query.
    pub async fn index_text(&self, account: AccountId) -> Result<IndexProgress, Error> {
        self.catch_up(account, 100).await
    }

    /// Indexes the account until caught up, working at most `work_percent` of the time:
    /// after each round it waits for the rest.
    async fn catch_up(&self, account: AccountId, work_percent: u64) -> Result<IndexProgress, Error> {
        let mut progress = IndexProgress::default();
        loop {
            let started = tokio::time::Instant::now();
            let round = self.index_round(account).await?;
            if work_percent < 100 && matches!(round, Round::Indexed(_)) {
                let idle = started.elapsed().mul_f64((100 - work_percent) as f64 / work_percent.max(1) as f64);
                tokio::time::sleep(idle).await;
            }
            match round {
                Round::Indexed(n) => progress.indexed += n,
                Round::Done(cursor) => {
                    progress.cursor = cursor;
                    return Ok(progress);
                }
            }
        }
    }

    /// One step of the account's indexing, committed.
    async fn index_round(&self, account: AccountId) -> Result<Round, Error> {
        let state_key = keys::text_index_state(account);
        let (state, version) = match self.at(account).await?.get(&state_key).await? {
            Some(entry) => (crate::decode::<State>(&entry.key, &entry.value)?, Some(entry.version)),
            None => (State::default(), None),
        };
        let mut guard = Batch::new();
        match version {
            Some(version) => guard.expect_version(&state_key, version),
            None => guard.expect_absent(&state_key),
        };
        let batch_max = self.limits.text_index_batch_emails_max;
        match state.building.clone() {
            None if version.is_none()
                || state.terms != TERMS_VERSION
                || state.destroyed > (state.indexed / 2).max(DESTROYED_REBUILD_MIN) =>
            {
                // Built first, or built again (dead weight, or terms of an older version):
                // from the email records, from the start.
                let modseq = self.modseq(account).await?;
                let building = Building { modseq, next: 0, clearing: version.is_some() };
                let next = State { terms: TERMS_VERSION, building: Some(building), ..State::default() };
                self.commit_state(account, guard, &state_key, &next).await?;
                Ok(Round::Indexed(0))
            }
            Some(building) if building.clearing => {
                self.clear_postings(account).await?;
                let next = State { building: Some(Building { clearing: false, ..building }), ..state };
                self.commit_state(account, guard, &state_key, &next).await?;
                Ok(Round::Indexed(0))
            }
            Some(building) => {
                let mut scan = Scan::prefix(&keys::emails(account)).limit(batch_max);
                if building.next > 0 {
                    scan = scan.after(&keys::email(account, building.next - 1));
                }
                let records = self.at(account).await?.scan(&scan).await?;
                let emails: Vec<EmailId> =
                    records.iter().map(|entry| keys::tail_u64(&entry.key)).collect::<Result<_, _>>()?;
                let mut next = state.clone();
                next.indexed += emails.len() as u64;
                match emails.last() {
                    Some(last) => next.building = Some(Building { next: last + 1, ..building }),
                    None => {
                        next.building = None;
                        next.cursor = building.modseq;
                    }
                }
                let n = emails.len() as u64;
                self.write_postings(account, &emails, guard, &state_key, &next).await?;
                Ok(if n == 0 { Round::Done(next.cursor) } else { Round::Indexed(n) })
            }
            None => {
                let changes = self.changes_since(account, state.cursor, batch_max).await?;
                let Some(last) = changes.last() else { return Ok(Round::Done(state.cursor)) };
                let mut next = state.clone();
                next.cursor = last.modseq;
                let mut created = Vec::new();
                for change in &changes {
                    for (email, kind) in change.email_changes() {
                        match kind {
                            crate::ChangeKind::Created => created.push(email),
                            crate::ChangeKind::Destroyed => next.destroyed += 1,
                            crate::ChangeKind::Updated => {}
                        }
                    }
                }
                next.indexed += created.len() as u64;
                let n = created.len() as u64;
                self.write_postings(account, &created, guard, &state_key, &next).await?;
                Ok(Round::Indexed(n.max(1)))
            }
        }
    }

    async fn commit_state(
        &self,
        account: AccountId,
        mut batch: Batch,
        state_key: &[u8],
        state: &State,
    ) -> Result<(), Error> {
        batch.set(state_key, &crate::encode(state));
        match self.at(account).await?.commit(batch).await {
            // Another writer moved the state: the next round reads it again.
            Ok(_) | Err(hameau_store::Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes every posting of the account, a commit at a time.
    async fn clear_postings(&self, account: AccountId) -> Result<(), Error> {
        let prefix = keys::text_index_terms(account);
        let page = self.store.limits().batch_ops_max.saturating_sub(2).max(1);
        loop {
            let entries = self.at(account).await?.scan(&Scan::prefix(&prefix).limit(page)).await?;
            if entries.is_empty() {
                return Ok(());
            }
            let mut batch = Batch::new();
            for entry in &entries {
                batch.delete(&entry.key);
            }
            self.at(account).await?.commit(batch).await?;
        }
    }

    /// Adds the postings of `emails` (those gone meanwhile are skipped), then commits the
    /// new `state` with the last of them.
    ///
    /// Postings are held in memory up to [`ROUND_POSTINGS_MAX`], then written without the
    /// state (written early, they only add candidates until the state moves).
    async fn write_postings(
        &self,
        account: AccountId,
        emails: &[EmailId],
        guard: Batch,
        state_key: &[u8],
        state: &State,
    ) -> Result<(), Error> {
        let mut postings: HashMap<(u8, u32, u64), Vec<u16>> = HashMap::new();
        let mut held = 0;
        for email in emails {
            let (chunk, offset) = chunk_of(*email);
            match self.email_terms(account, *email).await? {
                Terms::Gone => {}
                Terms::Unindexed => postings.entry((SPACE_UNINDEXED, 0, chunk)).or_default().push(offset),
                Terms::Indexed(terms) => {
                    held += terms.len();
                    for (space, term) in terms {
                        postings.entry((space, term, chunk)).or_default().push(offset);
                    }
                }
            }
            if held > ROUND_POSTINGS_MAX {
                if !self.flush_postings(account, std::mem::take(&mut postings), None).await? {
                    return Ok(());
                }
                held = 0;
            }
        }
        self.flush_postings(account, postings, Some((guard, state_key, state))).await?;
        Ok(())
    }

    /// Writes `postings`, merged into the stored chunks, and with the last commit `state`
    /// if given (under its guard). False if a concurrent writer made a commit fail.
    async fn flush_postings(
        &self,
        account: AccountId,
        postings: HashMap<(u8, u32, u64), Vec<u16>>,
        state: Option<(Batch, &[u8], &State)>,
    ) -> Result<bool, Error> {
        let (guard, state) = match state {
            Some((guard, key, state)) => (Some(guard), Some((key, state))),
            None => (None, None),
        };
        let mut keyed: Vec<((u8, u32, u64), Vec<u16>)> = postings.into_iter().collect();
        keyed.sort_unstable_by_key(|(key, _)| *key);
        // Each chunk is an expectation and a write; the guard and the state take a few.
        let per_commit = (self.store.limits().batch_ops_max.saturating_sub(4) / 2).max(1);
        let mut groups = keyed.chunks(per_commit).peekable();
        let mut guard = guard;
        loop {
            let group = groups.next().unwrap_or_default();
            let last = groups.peek().is_none();
            let mut batch = if last { guard.take().unwrap_or_default() } else { Batch::new() };
            let keys: Vec<Vec<u8>> = group
                .iter()
                .map(|((space, term, chunk), _)| keys::text_index_term(account, *space, *term, *chunk))
                .collect();
            let old = self.at(account).await?.get_many(&keys).await?;
            for ((key, old), (_, offsets)) in keys.iter().zip(old).zip(group) {
                let mut offsets = offsets.clone();
                offsets.sort_unstable();
                offsets.dedup();
                let value = match &old {
                    Some(entry) => {
                        batch.expect_version(key, entry.version);
                        postings::merge(Some(&entry.value), &offsets)
                    }
                    None => {
                        batch.expect_absent(key);
                        postings::merge(None, &offsets)
                    }
                };
                batch.set(key, &value.map_err(|problem| corrupt(key, problem))?);
            }
            if let (true, Some((state_key, state))) = (last, state) {
                batch.set(state_key, &crate::encode(state));
            }
            if !batch.is_empty() {
                match self.at(account).await?.commit(batch).await {
                    Ok(_) => {}
                    // A concurrent writer: the round starts again from the state (postings
                    // already written stay; adding them again changes nothing).
                    Err(hameau_store::Error::Conflict { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                }
            }
            if last {
                return Ok(true);
            }
        }
    }

    /// The distinct terms of an email's texts, as the conditions match them.
    async fn email_terms(&self, account: AccountId, email: EmailId) -> Result<Terms, Error> {
        let summary = match self.summary(account, email).await {
            Ok(summary) => summary,
            Err(Error::NoEmail(_)) => return Ok(Terms::Gone),
            Err(e) => return Err(e),
        };
        let header_end = super::header_end(&summary, u64::MAX);
        if header_end > self.limits.text_index_header_bytes_max as u64 {
            return Ok(Terms::Unindexed);
        }
        let Some(header) = self.raw_prefix(account, email, header_end as usize).await? else {
            return Ok(Terms::Gone);
        };
        let body = self.body_text(account, email).await?;
        let max = self.limits.text_index_terms_per_email_max;
        let cached = Cached::new(summary);
        let mut terms = Vec::new();
        let header_text = String::from_utf8_lossy(&header).to_lowercase();
        for text in [&header_text, &cached.from, &cached.to, &cached.cc, &cached.bcc, &cached.subject] {
            trigrams(text, SPACE_HEADER, &mut terms);
        }
        terms.sort_unstable();
        terms.dedup();
        if terms.len() > max {
            return Ok(Terms::Unindexed);
        }
        trigrams(&body, SPACE_BODY, &mut terms);
        short_terms(&body, &mut terms);
        terms.sort_unstable();
        terms.dedup();
        if terms.len() > max {
            return Ok(Terms::Unindexed);
        }
        Ok(Terms::Indexed(terms))
    }

    /// The first `bytes` of the raw message (all of it if shorter); `None` if it is gone.
    pub(crate) async fn raw_prefix(
        &self,
        account: AccountId,
        email: EmailId,
        bytes: usize,
    ) -> Result<Option<Vec<u8>>, Error> {
        let record = match self.email(account, email).await {
            Ok(record) => record,
            Err(Error::NoEmail(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let hash = hameau_store::BlobHash::from_hex(&record.blob).ok_or_else(|| corrupt(b"email", "blob hash"))?;
        let Some(mut reader) = self.at(account).await?.open_blob(&hash).await? else { return Ok(None) };
        let mut out = Vec::new();
        while out.len() < bytes {
            match reader.next_chunk().await? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None => break,
            }
        }
        out.truncate(bytes);
        Ok(Some(out))
    }
}

/// What one indexing step did.
enum Round {
    /// Some work committed (a count of emails, possibly 0): there may be more.
    Indexed(u64),
    /// Caught up: the cursor.
    Done(u64),
}

/// An email's terms, or why it has none.
enum Terms {
    Gone,
    Unindexed,
    Indexed(Vec<(u8, u32)>),
}

/// The indexer's task: waits for pokes, gathers those of `text_index_delay_ms`, and
/// catches each account up. Ends when the queue closes or the store does.
async fn run(
    mail: Mail,
    mut queue: mpsc::Receiver<AccountId>,
    pending: Arc<Mutex<HashSet<AccountId>>>,
    (last_poke_ms, epoch): (Arc<AtomicU64>, tokio::time::Instant),
) {
    let delay = std::time::Duration::from_millis(mail.limits.text_index_delay_ms);
    let lag_max = std::time::Duration::from_secs(mail.limits.text_index_lag_max_s);
    while let Some(first) = queue.recv().await {
        // A quiet moment: no delivery for `delay`, or `lag_max` since the first.
        let woken = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(delay).await;
            let since_poke =
                epoch.elapsed().saturating_sub(std::time::Duration::from_millis(last_poke_ms.load(Ordering::Relaxed)));
            if since_poke >= delay || woken.elapsed() >= lag_max {
                break;
            }
        }
        let mut accounts = vec![first];
        while let Ok(account) = queue.try_recv() {
            accounts.push(account);
        }
        for account in accounts {
            // Taken off before the work: a delivery during it pokes again.
            pending.lock().expect("index queue lock").remove(&account);
            match mail.catch_up(account, mail.limits.text_index_work_percent).await {
                Ok(_) => {}
                Err(Error::Store(hameau_store::Error::Closed)) => return,
                Err(e) => {
                    tracing::warn!(account, error = %e, "text index: indexing failed, tried again at the next poke")
                }
            }
        }
    }
}

/// Pushes the hashed trigrams of `text` (its characters three by three, accents folded)
/// in `space`. Folding is one character for one ([`crate::fold_char`]), so a string in a
/// text has its folded trigrams in the folded text: the candidates of an exact needle
/// (IMAP) stay a superset, and a needle without accents finds the text with them (JMAP's
/// `jmap.fold_accents`).
fn trigrams(text: &str, space: u8, out: &mut Vec<(u8, u32)>) {
    let mut chars = text.chars().map(crate::fold_char);
    let (Some(mut a), Some(mut b)) = (chars.next(), chars.next()) else { return };
    for c in chars {
        out.push((space, term(a, b, c)));
        (a, b) = (b, c);
    }
}

/// Pushes the exact terms of a body text: each character, and each pair of consecutive
/// characters of the Basic Multilingual Plane, as they are. A needle of one or two
/// characters is in the text exactly when its term is ([`short_term`]).
fn short_terms(text: &str, out: &mut Vec<(u8, u32)>) {
    let mut previous = None;
    for c in text.chars() {
        out.push((SPACE_BODY_ONE, u32::from(c)));
        if let Some(term) = previous.and_then(|previous| pair_term(previous, c)) {
            out.push((SPACE_BODY_TWO, term));
        }
        previous = Some(c);
    }
}

/// The exact term of a pair of characters, both of the Basic Multilingual Plane.
fn pair_term(a: char, b: char) -> Option<u32> {
    let (a, b) = (u32::from(a), u32::from(b));
    (a <= 0xFFFF && b <= 0xFFFF).then_some(a << 16 | b)
}

/// The exact term of a needle of one character, or of two of the Basic Multilingual Plane.
fn short_term(needle: &str) -> Option<(u8, u32)> {
    let mut chars = needle.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(a), None, _) => Some((SPACE_BODY_ONE, u32::from(a))),
        (Some(a), Some(b), None) => pair_term(a, b).map(|term| (SPACE_BODY_TWO, term)),
        _ => None,
    }
}

/// A trigram's term: its three code points (21 bits each) mixed into 32 bits.
fn term(a: char, b: char, c: char) -> u32 {
    let packed = u64::from(a) | u64::from(b) << 21 | u64::from(c) << 42;
    (packed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The distinct terms of a needle, at most `max` of them, spread over the needle (any
/// subset of its terms still gives a superset of the matches).
fn needle_terms(needle: &str, space: u8, max: usize) -> Vec<(u8, u32)> {
    let mut terms = Vec::new();
    trigrams(needle, space, &mut terms);
    let mut seen = HashSet::new();
    terms.retain(|term| seen.insert(*term));
    if terms.len() > max {
        let step = terms.len() as f64 / max as f64;
        terms = (0..max).map(|index| terms[(index as f64 * step) as usize]).collect();
    }
    terms
}

/// What the index says of a query: emails that may match, and up to where it knows.
#[derive(Debug)]
pub(crate) struct Candidates {
    /// `None`: every entry (a `Text` of a short needle may be in any header).
    emails: Option<Postings>,
    /// Emails known to match the whole filter (a short needle's exact postings).
    certain: Postings,
    cursor: u64,
    /// The emails the index does not cover (candidates of every query).
    unindexed: Postings,
    /// For each `Text` test narrowed (by index in the filter), the emails whose header
    /// may hold its string.
    headers: Vec<(usize, Postings)>,
}

impl Candidates {
    /// Whether the entry must be confirmed: a candidate, or created after the cursor.
    pub(crate) fn admits(&self, entry: &crate::UidEntry) -> bool {
        entry.modseq > self.cursor || self.emails.as_ref().is_none_or(|emails| emails.contains(entry.email))
    }

    /// Whether the entry matches without a look at its message: the index covers it and
    /// lists it under the filter's exact term. An email's texts never change, so this
    /// holds for as long as the entry exists.
    pub(crate) fn certain(&self, entry: &crate::UidEntry) -> bool {
        entry.modseq <= self.cursor && self.certain.contains(entry.email)
    }

    /// The `Text` tests whose string cannot be in the entry's header (the index covers
    /// the entry and its header lacks one of the string's trigrams).
    pub(crate) fn ruled_out(&self, entry: &crate::UidEntry) -> Vec<usize> {
        if entry.modseq > self.cursor || self.unindexed.contains(entry.email) {
            return Vec::new();
        }
        self.headers.iter().filter(|(_, emails)| !emails.contains(entry.email)).map(|(at, _)| *at).collect()
    }
}

/// The terms each test of a filter looks up, or `None` for a test the index cannot
/// narrow. A `Text` looks up its header terms or its body terms (`Either`).
enum Lookup {
    All,
    Terms(Vec<(u8, u32)>),
    Either(Vec<(u8, u32)>, Vec<(u8, u32)>),
}

/// The candidates of `filter` in the account, or `None` when the index cannot narrow it
/// (no indexed condition constrains every match, or the index is not built). Reads the
/// state and, per term looked up (at most `text_index_lookups_max`), one prefix scan.
pub(crate) async fn candidates(mail: &Mail, account: AccountId, filter: &Filter) -> Result<Option<Candidates>, Error> {
    if !mail.limits.text_index {
        return Ok(None);
    }
    let mut budget = mail.limits.text_index_lookups_max;
    let lookups: Vec<Option<Lookup>> = filter
        .ops
        .iter()
        .map(|op| match op {
            Op::Test(condition, folded) => Some(lookup(condition, folded.as_deref(), &mut budget)),
            _ => None,
        })
        .collect();
    // A filter of one body or text test of a short needle, matched exactly (not ignoring
    // accents): answered by its own exact term. A `Text` may also be in the header, which
    // these terms do not cover: every entry stays a candidate.
    let short = match filter.ops.as_slice() {
        [Op::Test(Condition::Body(needle), _)] if !filter.accents_folded => short_term(needle).map(|t| (t, true)),
        [Op::Test(Condition::Text(_), Some(needle))] => short_term(needle).map(|t| (t, false)),
        _ => None,
    };
    if short.is_none() && !lookups.iter().flatten().any(|lookup| !matches!(lookup, Lookup::All)) {
        return Ok(None);
    }
    let state = match mail.store.get(&keys::text_index_state(account)).await? {
        Some(entry) => crate::decode::<State>(&entry.key, &entry.value)?,
        None => State { building: Some(Building { modseq: 0, next: 0, clearing: false }), ..State::default() },
    };
    if state.building.is_some() || state.terms != TERMS_VERSION {
        // Not usable yet (or written with other terms): the query scans, and the indexer
        // is asked to build it.
        mail.poke_indexer(account);
        return Ok(None);
    }
    if let Some((term, body_only)) = short {
        let certain = read_postings(mail, account, term).await?;
        let unindexed = read_postings(mail, account, (SPACE_UNINDEXED, 0)).await?;
        let emails = body_only.then(|| {
            let mut emails = certain.clone();
            emails.union(&unindexed);
            emails
        });
        return Ok(Some(Candidates { emails, certain, cursor: state.cursor, unindexed, headers: Vec::new() }));
    }
    let mut lists: HashMap<(u8, u32), Postings> = HashMap::new();
    let mut wanted = vec![(SPACE_UNINDEXED, 0)];
    for lookup in lookups.iter().flatten() {
        match lookup {
            Lookup::All => {}
            Lookup::Terms(terms) => wanted.extend(terms),
            Lookup::Either(header, body) => wanted.extend(header.iter().chain(body)),
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    for key in wanted {
        let list = read_postings(mail, account, key).await?;
        lists.insert(key, list);
    }
    let mut headers = Vec::new();
    let Some(mut emails) = combine(filter, &lookups, &lists, &mut headers) else { return Ok(None) };
    let unindexed = lists.remove(&(SPACE_UNINDEXED, 0)).unwrap_or_default();
    emails.union(&unindexed);
    Ok(Some(Candidates {
        emails: Some(emails),
        certain: Postings::default(),
        cursor: state.cursor,
        unindexed,
        headers,
    }))
}

/// The lookup of one prepared condition, its terms taken from `budget`.
fn lookup(condition: &Condition, folded: Option<&str>, budget: &mut usize) -> Lookup {
    let mut take = |needle: &str, space: u8| -> Option<Vec<(u8, u32)>> {
        let terms = needle_terms(needle, space, *budget);
        if terms.is_empty() {
            return None;
        }
        *budget -= terms.len();
        Some(terms)
    };
    let terms = match condition {
        Condition::From(s) | Condition::To(s) | Condition::Cc(s) | Condition::Bcc(s) | Condition::Subject(s) => {
            take(s, SPACE_HEADER)
        }
        Condition::Body(folded) => take(folded, SPACE_BODY),
        Condition::Text(lowercase) => {
            let header = take(lowercase, SPACE_HEADER);
            let body = take(folded.unwrap_or_default(), SPACE_BODY);
            return match (header, body) {
                (Some(header), Some(body)) => Lookup::Either(header, body),
                _ => Lookup::All,
            };
        }
        _ => None,
    };
    terms.map_or(Lookup::All, Lookup::Terms)
}

/// One term's posting list: its chunks, one prefix scan.
async fn read_postings(mail: &Mail, account: AccountId, (space, term): (u8, u32)) -> Result<Postings, Error> {
    let prefix = &keys::text_index_term(account, space, term, 0)[..keys::text_index_terms(account).len() + 5];
    let mut list = Postings::default();
    for entry in mail.store.scan(&Scan::prefix(prefix)).await? {
        let chunk = keys::tail_u64(&entry.key)?;
        if chunk > u64::MAX / CHUNK_EMAILS {
            return Err(corrupt(&entry.key, "posting chunk number"));
        }
        list.add_chunk(chunk, &entry.value).map_err(|problem| corrupt(&entry.key, problem))?;
    }
    Ok(list)
}

/// The candidates of the whole filter from those of its tests: an `And` narrows to the
/// intersection of its operands that narrow, an `Or` to the union when all of them do, a
/// `Not` never. Bottom-up over the flat filter with a stack: no recursion.
/// The header candidates of each `Text` test go to `headers`.
fn combine(
    filter: &Filter,
    lookups: &[Option<Lookup>],
    lists: &HashMap<(u8, u32), Postings>,
    headers: &mut Vec<(usize, Postings)>,
) -> Option<Postings> {
    let intersection = |terms: &[(u8, u32)]| {
        let mut out = lists[&terms[0]].clone();
        for term in &terms[1..] {
            out.intersect(&lists[term]);
        }
        out
    };
    let mut stack: Vec<Option<Postings>> = Vec::new();
    for (index, op) in filter.ops.iter().enumerate().rev() {
        let mut operands = 0;
        let mut child = index + 1;
        while child < filter.ends[index] {
            operands += 1;
            child = filter.ends[child];
        }
        // The operands are the top of the stack, the first operand on top.
        let first = stack.len() - operands;
        let children: Vec<Option<Postings>> = stack.drain(first..).rev().collect();
        let value = match op {
            Op::Test(..) => match &lookups[index] {
                Some(Lookup::Terms(terms)) => Some(intersection(terms)),
                Some(Lookup::Either(header, body)) => {
                    let header = intersection(header);
                    let mut out = intersection(body);
                    out.union(&header);
                    headers.push((index, header));
                    Some(out)
                }
                Some(Lookup::All) | None => None,
            },
            Op::Not => None,
            Op::And => children.into_iter().flatten().reduce(|mut a, b| {
                a.intersect(&b);
                a
            }),
            Op::Or => {
                if children.iter().any(Option::is_none) || children.is_empty() {
                    None
                } else {
                    children.into_iter().flatten().reduce(|mut a, b| {
                        a.union(&b);
                        a
                    })
                }
            }
        };
        stack.push(value);
    }
    stack.pop().flatten()
}

#[cfg(test)]
mod tests;

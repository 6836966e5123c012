//! The classifier's state in the store (issue 14, scope 9): one classifier per tenant,
//! trained by its agents' judgements (into Junk: spam; out of Junk: ham), and one shared
//! classifier the operator seeds with `hameau filter learn`.
//!
//! Keys (prefix `fb/`, "filter, bayes"), for the shared classifier under `fb/s/` and a
//! tenant's under `fb/t/TENANT/` (tenant ids never hold `/`):
//!
//! - `…w/HASH` (8 bytes, big-endian): one counter per token, `spam × 2^32 + ham`, so that
//!   a learning adds one counter per token and a score reads one key per token;
//! - `…n`: the messages learnt, packed the same way;
//! - `…k`: how many token keys the classifier holds, bounded by
//!   [`Limits::bayes_tokens_per_tenant_max`] inside the commit that adds them. It may
//!   count more than are held, never fewer: two learnings that add the same new token at
//!   once both count it (expecting each new token absent would make concurrent learnings
//!   conflict on every common word); the bound errs on the safe side;
//! - `…m/SHA256` (the message's content hash): `s` or `h`, the class a message was learnt
//!   as, so that learning it again the same way is a no-op and the other way first takes
//!   back the first learning. Keyed by content, not by account and email: a message stored
//!   once for five agents of a commune and moved into Junk by each is one spam to the
//!   tenant, and the last judgement of it wins.
//!
//! A score sums the tenant's counts and the shared ones, token by token and in the
//! totals: the shared corpus gives every tenant a classifier from the first day, and a
//! tenant's own judgements move it towards what that commune calls spam (a tenant that
//! learnt more than the shared corpus outweighs it). The sum is the simplest combination
//! that needs no weight to tune; a tenant's learning never changes another tenant's score.
//!
//! A score reads its tokens' keys (two per token with a tenant) in one `Store::get_many`
//! (a scan between sparse hashes would read other tokens): RocksDB looks them up together,
//! a lookup in memory for a warm classifier; the tests measure a 1,000-token score (see
//! `learning/tests.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_store::{Batch, BlobHash, Expect, Store};

use crate::Limits;
use crate::bayes::{self, Counts, Totals};

/// Every key of the classifiers starts with it.
pub const PREFIX: &[u8] = b"fb/";

/// One ham in a packed counter; one spam is `1 << 32`.
const HAM_UNIT: i64 = 1;
const SPAM_UNIT: i64 = 1 << 32;
/// The operations of a learning besides its tokens: the record's expectation and write,
/// the totals, the token count.
const LEARNING_OPS: usize = 4;
/// Attempts of a learning whose commit lost a race (another learning of the same
/// classifier added tokens or recorded the same message meanwhile).
const RETRIES_MAX: usize = 4;

/// Why the classifier could not learn or score.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    /// Not a tenant id (empty, or with a `/`).
    #[error("{0:?} is not a tenant id")]
    InvalidTenant(String),
    /// Other learnings of the same message kept winning the race.
    #[error("the classifier is busy: try again")]
    Busy,
}

/// What a learning did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learnt {
    /// The message was new to the classifier.
    New,
    /// It was learnt the other way before: that learning was taken back first.
    Retrained,
    /// It was learnt the same way already: nothing changed.
    AlreadyKnown,
}

/// A learning's outcome and its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learning {
    pub learnt: Learnt,
    /// Tokens whose counts changed.
    pub tokens: usize,
    /// New tokens not kept: the classifier is full ([`Limits::bayes_tokens_per_tenant_max`]),
    /// or the message had more than one commit holds (`store.batch_ops_max`).
    pub tokens_dropped: usize,
}

/// Whose a classifier's record is, for a one-tenant restore (as
/// `hameau_mailbox::record_owner`): a tenant's classifier follows the tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordOwner {
    Tenant(String),
    /// The shared classifier: the installation's.
    Installation,
}

/// Whose the record at `key` is; `None` for keys that are not the classifiers'.
pub fn record_owner(key: &[u8]) -> Option<RecordOwner> {
    let rest = key.strip_prefix(PREFIX)?;
    if rest.starts_with(b"s/") {
        return Some(RecordOwner::Installation);
    }
    let tail = rest.strip_prefix(b"t/")?;
    let end = tail.iter().position(|byte| *byte == b'/')?;
    let tenant = std::str::from_utf8(&tail[..end]).ok()?;
    Some(RecordOwner::Tenant(tenant.to_string()))
}

/// The classifiers over a store. Cheap to clone; clones share the counts read lately.
#[derive(Clone, Debug)]
pub struct Classifier {
    store: Store,
    limits: Limits,
    cache: Arc<Counters>,
}

/// Counters a score read lately (tokens and totals, as stored: `spam × 2^32 + ham`, 0 for
/// a key not there), for [`Limits::bayes_cache_s`], at most
/// [`Limits::bayes_cache_entries`]; emptied when full or that old, as a whole (cheap, and
/// rare). A learning removes what it changed, so that this process sees it at once; a
/// score that read a key just before that learning's commit may put the old count back,
/// which then lasts at most `bayes_cache_s` (a few messages judged one learning late).
#[derive(Debug)]
struct Counters {
    held: Mutex<(HashMap<Vec<u8>, i64>, Instant)>,
    entries_max: usize,
    ttl: Duration,
}

impl Counters {
    fn new(entries_max: usize, ttl: Duration) -> Counters {
        Counters { held: Mutex::new((HashMap::new(), Instant::now())), entries_max, ttl }
    }

    /// The values of `keys` held and still fresh (`None`: to be read).
    fn get(&self, keys: &[Vec<u8>]) -> Vec<Option<i64>> {
        let mut held = self.held.lock().expect("counters lock");
        if held.1.elapsed() >= self.ttl {
            *held = (HashMap::new(), Instant::now());
        }
        keys.iter().map(|key| held.0.get(key).copied()).collect()
    }

    fn put(&self, read: impl IntoIterator<Item = (Vec<u8>, i64)>) {
        if self.entries_max == 0 {
            return;
        }
        let mut held = self.held.lock().expect("counters lock");
        for (key, value) in read {
            if held.0.len() >= self.entries_max {
                held.0.clear();
            }
            held.0.insert(key, value);
        }
    }

    fn forget(&self, keys: &[Vec<u8>]) {
        let mut held = self.held.lock().expect("counters lock");
        for key in keys {
            held.0.remove(key);
        }
    }
}

impl Classifier {
    pub fn new(store: Store, limits: Limits) -> Classifier {
        let cache = Arc::new(Counters::new(limits.bayes_cache_entries, Duration::from_secs(limits.bayes_cache_s)));
        Classifier { store, limits, cache }
    }

    /// The counters at `keys` (0 for a key not there): those read lately from memory, the
    /// others in one read of the store.
    async fn counters(&self, keys: &[Vec<u8>]) -> Result<Vec<i64>, Error> {
        let mut values = self.cache.get(keys);
        let missing: Vec<Vec<u8>> =
            keys.iter().zip(&values).filter(|(_, value)| value.is_none()).map(|(key, _)| key.clone()).collect();
        if missing.is_empty() {
            return Ok(values.into_iter().flatten().collect());
        }
        let entries = self.store.get_many(&missing).await?;
        let read: Vec<(Vec<u8>, i64)> = missing
            .into_iter()
            .zip(&entries)
            .map(|(key, entry)| counter_in(&key, entry.as_ref()).map(|value| (key, value)))
            .collect::<Result<_, _>>()?;
        let mut fresh = read.iter().map(|(_, value)| *value);
        for value in values.iter_mut().filter(|value| value.is_none()) {
            *value = fresh.next();
        }
        self.cache.put(read);
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Learns `raw` as spam or ham, in `tenant`'s classifier or (`None`) the shared one.
    pub async fn train(&self, tenant: Option<&str>, raw: &[u8], spam: bool) -> Result<Learning, Error> {
        self.train_hashed(tenant, raw, BlobHash::of(raw), spam).await
    }

    /// [`Classifier::train`] for a caller that has the message's hash (a stored blob's):
    /// `hash` must be `BlobHash::of(raw)`.
    pub async fn train_hashed(
        &self,
        tenant: Option<&str>,
        raw: &[u8],
        hash: BlobHash,
        spam: bool,
    ) -> Result<Learning, Error> {
        self.train_tokens(tenant, bayes::tokens(raw, &self.limits), hash, spam).await
    }

    /// [`Classifier::train_hashed`] of a message already tokenized: `tokens` must be
    /// `bayes::tokens(raw, limits)` and `hash` `BlobHash::of(raw)` (`hameau filter seed`
    /// keeps the tokens of a corpus between its passes, not the messages).
    pub async fn train_tokens(
        &self,
        tenant: Option<&str>,
        mut tokens: Vec<u64>,
        hash: BlobHash,
        spam: bool,
    ) -> Result<Learning, Error> {
        let keys = Keys::of(tenant)?;
        let room = self.store.limits().batch_ops_max.saturating_sub(LEARNING_OPS);
        let truncated = tokens.len().saturating_sub(room);
        tokens.truncate(room);
        for _ in 0..RETRIES_MAX {
            match self.train_once(&keys, &tokens, hash, spam).await {
                Ok(mut learning) => {
                    learning.tokens_dropped += truncated;
                    return Ok(learning);
                }
                Err(Error::Store(hameau_store::Error::Conflict { .. } | hameau_store::Error::CounterBound { .. })) => {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Busy)
    }

    /// One attempt: read the record, which tokens exist and how many, then one commit.
    async fn train_once(&self, keys: &Keys, tokens: &[u64], hash: BlobHash, spam: bool) -> Result<Learning, Error> {
        let record_key = keys.record(&hash);
        let record = self.store.get(&record_key).await?;
        let previous = record.as_ref().and_then(|entry| match entry.value.as_slice() {
            b"s" => Some(true),
            b"h" => Some(false),
            _ => None,
        });
        if previous == Some(spam) {
            return Ok(Learning { learnt: Learnt::AlreadyKnown, tokens: 0, tokens_dropped: 0 });
        }
        let unit = if spam { SPAM_UNIT } else { HAM_UNIT };
        let taken_back = match previous {
            Some(true) => SPAM_UNIT,
            Some(false) => HAM_UNIT,
            None => 0,
        };
        let held = self.store.counter(&keys.token_count()).await?;
        let max = i64::try_from(self.limits.bayes_tokens_per_tenant_max).unwrap_or(i64::MAX);
        let mut room = usize::try_from(max.saturating_sub(held)).unwrap_or(0);
        let mut batch = Batch::new();
        batch.expect(&record_key, record.as_ref().map_or(Expect::Absent, |entry| Expect::Version(entry.version)));
        batch.set(&record_key, if spam { b"s" } else { b"h" });
        batch.add(&keys.totals(), unit - taken_back);
        let (mut n_changed, mut n_new, mut n_dropped) = (0, 0, 0);
        for token in tokens {
            let key = keys.token(*token);
            if self.store.get(&key).await?.is_some() {
                // A token the first learning did not keep (the classifier was full) is
                // taken back from nothing: clamped when read (`unpack`).
                batch.add(&key, unit - taken_back);
                n_changed += 1;
            } else if room > 0 {
                batch.add(&key, unit);
                room -= 1;
                n_new += 1;
                n_changed += 1;
            } else {
                n_dropped += 1;
            }
        }
        if n_new > 0 {
            batch.add_at_most(&keys.token_count(), n_new as i64, max);
        }
        let mut changed: Vec<Vec<u8>> = tokens.iter().map(|token| keys.token(*token)).collect();
        changed.push(keys.totals());
        let committed = self.store.commit(batch).await;
        // What this process reads next is what it just wrote (or, failed, what is there).
        self.cache.forget(&changed);
        committed?;
        if n_dropped > 0 {
            tracing::warn!(
                classifier = %keys.name(),
                tokens_dropped = n_dropped,
                limit = self.limits.bayes_tokens_per_tenant_max,
                "the classifier is full (filter.bayes_tokens_per_tenant_max): new tokens are not learnt"
            );
        }
        let learnt = if previous.is_some() { Learnt::Retrained } else { Learnt::New };
        Ok(Learning { learnt, tokens: n_changed, tokens_dropped: n_dropped })
    }

    /// The probability that `raw` is spam for `tenant` (its counts and the shared ones
    /// summed; `None`: the shared ones alone), or `None` until
    /// [`Limits::bayes_min_messages`] of each class were learnt.
    pub async fn score(&self, tenant: Option<&str>, raw: &[u8]) -> Result<Option<f64>, Error> {
        self.score_tokens(tenant, || bayes::tokens(raw, &self.limits)).await
    }

    /// [`Classifier::score`] of the message whose tokens `tokens` gives: called only when
    /// the classifier has learnt enough to score (an untrained one costs no tokenizing).
    pub async fn score_tokens(
        &self,
        tenant: Option<&str>,
        tokens: impl FnOnce() -> Vec<u64>,
    ) -> Result<Option<f64>, Error> {
        let shared = Keys::of(None)?;
        let mut own = tenant.map(|tenant| Keys::of(Some(tenant))).transpose()?;
        let mut totals_keys = vec![shared.totals()];
        totals_keys.extend(own.as_ref().map(Keys::totals));
        let read = self.counters(&totals_keys).await?;
        let [mut totals, mine] = [0, 1].map(|at| {
            let (spam, ham) = unpack(read.get(at).copied().unwrap_or_default());
            Totals { spam: u64::from(spam), ham: u64::from(ham) }
        });
        if own.is_some() {
            totals = Totals { spam: totals.spam + mine.spam, ham: totals.ham + mine.ham };
            // A tenant that never learnt holds no token: its counts are not read (one store
            // read per token saved on every message of the commune).
            if mine == Totals::default() {
                own = None;
            }
        }
        if totals.spam < self.limits.bayes_min_messages || totals.ham < self.limits.bayes_min_messages {
            return Ok(None);
        }
        let tokens = tokens();
        // Every count in one read: the shared ones, then the tenant's.
        let mut keys: Vec<Vec<u8>> = tokens.iter().map(|token| shared.token(*token)).collect();
        if let Some(own) = &own {
            keys.extend(tokens.iter().map(|token| own.token(*token)));
        }
        let read: Vec<Counts> = self
            .counters(&keys)
            .await?
            .into_iter()
            .map(|value| {
                let (spam, ham) = unpack(value);
                Counts { spam, ham }
            })
            .collect();
        let (shared_counts, own_counts) = read.split_at(tokens.len());
        let counts: Vec<Counts> = match own_counts.is_empty() {
            true => shared_counts.to_vec(),
            false => shared_counts
                .iter()
                .zip(own_counts)
                .map(|(shared, mine)| Counts {
                    spam: shared.spam.saturating_add(mine.spam),
                    ham: shared.ham.saturating_add(mine.ham),
                })
                .collect(),
        };
        Ok(bayes::spam_probability(&counts, totals, &self.limits))
    }

    /// The classifier's symbol for `raw` in `tenant` (`BAYES_SPAM` or `BAYES_HAM`, see
    /// [`bayes::symbol`]); `None` while it has not learnt enough, or when it cannot tell.
    pub async fn symbol(&self, tenant: Option<&str>, raw: &[u8]) -> Result<Option<crate::Symbol>, Error> {
        Ok(self.score(tenant, raw).await?.and_then(bayes::symbol))
    }

    /// The messages `tenant`'s classifier (`None`: the shared one) learnt, of each class.
    pub async fn totals(&self, tenant: Option<&str>) -> Result<Totals, Error> {
        self.totals_of(&Keys::of(tenant)?).await
    }

    /// How many token keys `tenant`'s classifier (`None`: the shared one) holds, counted
    /// as the bound counts them (concurrent learnings may count a new token twice).
    pub async fn token_count(&self, tenant: Option<&str>) -> Result<u64, Error> {
        let held = self.store.counter(&Keys::of(tenant)?.token_count()).await?;
        Ok(u64::try_from(held).unwrap_or(0))
    }

    async fn totals_of(&self, keys: &Keys) -> Result<Totals, Error> {
        let (spam, ham) = unpack(self.store.counter(&keys.totals()).await?);
        Ok(Totals { spam: u64::from(spam), ham: u64::from(ham) })
    }
}

/// The counter a record holds (none: 0, never seen).
fn counter_in(key: &[u8], entry: Option<&hameau_store::Entry>) -> Result<i64, Error> {
    let Some(entry) = entry else { return Ok(0) };
    let value = <[u8; 8]>::try_from(entry.value.as_slice())
        .map_err(|_| hameau_store::Error::NotACounter { key: key.to_vec() })?;
    Ok(i64::from_be_bytes(value))
}

/// The keys of one classifier.
struct Keys {
    prefix: Vec<u8>,
}

impl Keys {
    fn of(tenant: Option<&str>) -> Result<Keys, Error> {
        let prefix = match tenant {
            None => [PREFIX, b"s/"].concat(),
            Some(tenant) if tenant.is_empty() || tenant.contains('/') => {
                return Err(Error::InvalidTenant(tenant.to_string()));
            }
            Some(tenant) => [PREFIX, b"t/", tenant.as_bytes(), b"/"].concat(),
        };
        Ok(Keys { prefix })
    }

    /// For the log: `shared` or `tenant TENANT`.
    fn name(&self) -> String {
        match record_owner(&self.prefix) {
            Some(RecordOwner::Tenant(tenant)) => format!("tenant {tenant}"),
            _ => "shared".into(),
        }
    }

    fn token(&self, token: u64) -> Vec<u8> {
        [self.prefix.as_slice(), b"w/", &token.to_be_bytes()].concat()
    }

    fn totals(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"n"].concat()
    }

    fn token_count(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"k"].concat()
    }

    fn record(&self, hash: &BlobHash) -> Vec<u8> {
        [self.prefix.as_slice(), b"m/", hash.to_hex().as_bytes()].concat()
    }
}

/// `spam × 2^32 + ham` back into its two counts. The ham part is read as a signed 32-bit
/// number, so that a count taken below zero (a token the first learning did not keep)
/// does not borrow from the spam part; each part is clamped at zero.
fn unpack(value: i64) -> (u32, u32) {
    let ham = value as i32;
    let spam = (value - i64::from(ham)) >> 32;
    (u32::try_from(spam).unwrap_or(0), u32::try_from(ham).unwrap_or(0))
}

#[cfg(test)]
mod tests;

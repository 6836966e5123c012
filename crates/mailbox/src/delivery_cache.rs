//! What every delivery reads of its accounts besides the message: their mailboxes (to file
//! it by role, [`crate::Mail::deliver`]) and their vacation responses
//! ([`crate::Mail::vacation_reply`]), kept in memory between changes of them.
//!
//! Every commit that writes a mailbox record or a vacation response adds to the counter
//! [`keys::DELIVERY_SETTINGS_CHANGES`] of the store it commits to (the account's cluster).
//! The cache watches that counter in each store ([`hameau_store::Store::watch`]), and the
//! placement map's changes when tenants are spread over clusters, and reads again what was
//! read under older values. A change made through this process is seen by the next
//! delivery; one made by another node on the same database, within the store's
//! notification delay (under a second, docs/nodes.md). Meanwhile a message may be filed
//! by the mailboxes of a moment before (never into a deleted one: the commit expects the
//! mailbox present) and a vacation response sent or held once more. A read that began
//! before a change is not kept. Only the delivery path reads through it; IMAP and JMAP
//! read the store.
//!
//! On PostgreSQL this spares each delivery two round trips to the database (the scan of
//! the account's mailboxes and the read of its vacation response): the database's CPU per
//! message fell from about 0.42 to 0.25 ms in the MX benchmark (docs/postgresql.md).

use std::collections::HashMap;
use std::sync::Mutex;

use hameau_store::placement::Placed;
use hameau_store::{CounterValue, Entry, Scan};
use tokio::sync::watch;

use crate::{AccountId, keys};

/// Which read of an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Read {
    /// Its mailbox records (a prefix scan).
    Mailboxes,
    /// Its vacation response's record (none or one).
    Vacation,
}

pub(crate) struct DeliveryCache {
    /// Most reads kept (`mail.delivery_cache_entries_max`); 0 disables the cache.
    entries_max: usize,
    /// Each cluster's change counter, once watched (`None`: it could not be, no caching).
    watches: Mutex<HashMap<String, Option<watch::Receiver<CounterValue>>>>,
    reads: Mutex<HashMap<(AccountId, Read), Kept>>,
}

impl std::fmt::Debug for DeliveryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.reads.lock().map_or(0, |reads| reads.len());
        f.debug_struct("DeliveryCache").field("entries_max", &self.entries_max).field("kept", &kept).finish()
    }
}

/// A read, with where and under what it was made.
struct Kept {
    cluster: String,
    generation: Generation,
    entries: Vec<Entry>,
}

/// The values of the watched counters a read was made under: the cluster's change counter,
/// and the placement map's (0 without clusters).
type Generation = (i64, i64);

impl DeliveryCache {
    pub(crate) fn new(entries_max: usize) -> DeliveryCache {
        DeliveryCache { entries_max, watches: Mutex::default(), reads: Mutex::default() }
    }

    /// The entries of `read` for `account` in `at`, from memory when neither the cluster's
    /// settings nor the placement (`placement`, its change counter if any) changed since.
    pub(crate) async fn entries(
        &self,
        at: &Placed,
        placement: Option<&watch::Receiver<CounterValue>>,
        account: AccountId,
        read: Read,
    ) -> Result<Vec<Entry>, hameau_store::Error> {
        if self.entries_max == 0 {
            return read_store(at, account, read).await;
        }
        let Some(changes) = self.watch(at).await else { return read_store(at, account, read).await };
        let now = || (changes.borrow().value, placement.map_or(0, |placement| placement.borrow().value));
        let generation = now();
        {
            let reads = self.reads.lock().expect("delivery cache lock poisoned");
            if let Some(kept) = reads.get(&(account, read))
                && kept.generation == generation
                && kept.cluster == at.cluster()
            {
                return Ok(kept.entries.clone());
            }
        }
        let entries = read_store(at, account, read).await?;
        // Kept only if nothing changed while it was read.
        if now() == generation {
            let mut reads = self.reads.lock().expect("delivery cache lock poisoned");
            if reads.len() >= self.entries_max {
                reads.clear();
            }
            let kept = Kept { cluster: at.cluster().to_string(), generation, entries: entries.clone() };
            reads.insert((account, read), kept);
        }
        Ok(entries)
    }

    /// The receiver of `at`'s change counter, watched at its first use.
    async fn watch(&self, at: &Placed) -> Option<watch::Receiver<CounterValue>> {
        if let Some(watched) = self.watches.lock().expect("delivery cache lock poisoned").get(at.cluster()) {
            return watched.clone();
        }
        let watched = match at.watch(keys::DELIVERY_SETTINGS_CHANGES).await {
            Ok(receiver) => Some(receiver),
            Err(e) => {
                tracing::warn!(cluster = at.cluster(), error = %e, "mail: cannot watch the accounts' settings; deliveries read them each time");
                None
            }
        };
        let mut watches = self.watches.lock().expect("delivery cache lock poisoned");
        watches.entry(at.cluster().to_string()).or_insert(watched).clone()
    }
}

async fn read_store(at: &Placed, account: AccountId, read: Read) -> Result<Vec<Entry>, hameau_store::Error> {
    match read {
        Read::Mailboxes => at.scan(&Scan::prefix(&keys::mailboxes(account))).await,
        Read::Vacation => Ok(at.get(&keys::vacation(account)).await?.into_iter().collect()),
    }
}

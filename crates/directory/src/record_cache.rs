//! The records mail routing reads for every message (domains, addresses, accounts,
//! tenants), kept in memory between changes of the directory.
//!
//! Every commit of the directory adds to the counter [`keys::CHANGES`]; the cache watches
//! it through the store ([`hameau_store::Store::watch`]) and forgets everything when it
//! moved. A change made through this process is seen by the next read; one made by another
//! node on the same database (PostgreSQL) within the store's notification delay (under a
//! second, docs/nodes.md). A read that began before a change is not kept. Only the routing
//! reads use it ([`crate::Directory::is_local_domain`],
//! [`crate::Directory::resolve_recipient`]), and the checks of long sessions' logins
//! ([`crate::Directory::login_still_valid`]); operations that change records read the store.

use std::collections::HashMap;
use std::sync::Mutex;

use hameau_store::{CounterValue, Entry, Store};
use tokio::sync::{OnceCell, watch};

use crate::keys;

pub(crate) struct RecordCache {
    /// Most records kept; 0 disables the cache.
    entries_max: usize,
    /// The directory's change counter, once watched (`None`: it could not be, no caching).
    changes: OnceCell<Option<watch::Receiver<CounterValue>>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The change counter's value the records were read under.
    generation: i64,
    records: HashMap<Vec<u8>, Option<Entry>>,
}

impl RecordCache {
    pub(crate) fn new(entries_max: usize) -> RecordCache {
        RecordCache { entries_max, changes: OnceCell::new(), state: Mutex::new(State::default()) }
    }

    /// The entry of `key`, from memory when the directory did not change since it was read.
    pub(crate) async fn get(&self, store: &Store, key: &[u8]) -> Result<Option<Entry>, hameau_store::Error> {
        if self.entries_max == 0 {
            return store.get(key).await;
        }
        let changes = self
            .changes
            .get_or_init(|| async {
                match store.watch(keys::CHANGES).await {
                    Ok(receiver) => Some(receiver),
                    Err(e) => {
                        tracing::warn!(error = %e, "directory: cannot watch its changes; routing reads are not cached");
                        None
                    }
                }
            })
            .await;
        let Some(changes) = changes else { return store.get(key).await };
        let generation = changes.borrow().value;
        {
            let mut state = self.state.lock().expect("record cache lock poisoned");
            if state.generation != generation {
                state.records.clear();
                state.generation = generation;
            }
            if let Some(entry) = state.records.get(key) {
                return Ok(entry.clone());
            }
        }
        let entry = store.get(key).await?;
        let mut state = self.state.lock().expect("record cache lock poisoned");
        // Kept only if the directory did not change while it was read.
        if state.generation == generation && changes.borrow().value == generation {
            if state.records.len() >= self.entries_max {
                state.records.clear();
            }
            state.records.insert(key.to_vec(), entry.clone());
        }
        Ok(entry)
    }
}

//! Change notifications: who watches which counters, told after each commit.
//!
//! [`crate::Store::watch`] gives a `watch` receiver of one counter's value. The registry
//! is the [`crate::Store`] handle's (its clones share it), so every writer of the process
//! feeds it, whichever crate made the commit: [`crate::Store::commit`] sends, after the
//! backend answered `Ok`, the value each counter of the batch ([`crate::Batch::add`],
//! [`crate::Batch::add_at_most`]) has after it to the receivers of that counter. It is
//! independent of the backend: RocksDB and the memory backend feed it the same way, and the
//! PostgreSQL backend adds what `LISTEN/NOTIFY` brings of the other nodes' commits into the
//! same registry ([`Remote`], [`follow_remote`]), so that a receiver hears every node.
//!
//! What a receiver holds is a [`CounterValue`]: the counter's value and the version of the
//! commit that left it so. Commits may finish out of version order; a value is replaced
//! only by one of a greater version, so a receiver never goes back to an older commit.
//! The value itself goes down when a commit adds a negative delta (a queue's size): the
//! notification says "this counter changed, here is its value after commit V". Only
//! counters that only grow (a modseq, an id sequence) give values that only grow.
//!
//! Cost: with nobody watching, a commit reads two atomics and allocates nothing; with
//! watchers, it looks each of its counters up in a map under a read lock, and allocates
//! only for those watched.
//!
//! No notification is lost to a registration racing a commit. A commit looks its counters
//! up before the backend writes (the batch is the backend's after), so a counter watched
//! from a moment later is not among them; every registration therefore bumps a
//! generation, and a commit that sees the generation moved during its write reads the
//! counters registered meanwhile again, from the store, once its writes are visible. A
//! registration that such a commit does not see came after the commit's writes were
//! visible, and its own first read sees them (the two sides are ordered by `SeqCst`
//! fences: either the commit sees the generation, or the registration's read sees the
//! commit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::batch::Op;
use crate::{Batch, Committed, Version};

/// What a backend hears of the commits of other processes on the same data.
#[derive(Debug)]
pub(crate) enum Remote {
    /// The counter `key` has `value` after the commit with that version.
    Changed { key: Vec<u8>, value: CounterValue },
    /// Commits may have been missed (the backend stopped hearing for a while, or heard too
    /// much to pass on): every watched counter is read again.
    Missed,
}

/// Publishes what the backend hears of other processes' commits into the store's registry,
/// until the store or the backend's sender is gone.
pub(crate) async fn follow_remote(store: crate::WeakStore, mut remote: tokio::sync::mpsc::Receiver<Remote>) {
    while let Some(heard) = remote.recv().await {
        let Some(store) = store.upgrade() else { return };
        match heard {
            Remote::Changed { key, value } => store.changes.publish(&key, value),
            Remote::Missed => store.publish_stored(store.changes.made_after(0)).await,
        }
    }
}

/// A counter's value as the commit with `version` left it (version 0 and value 0: a
/// counter never written).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValue {
    pub version: Version,
    pub value: i64,
}

/// The watched counters of one store handle (and its clones).
#[derive(Default)]
pub(crate) struct Changes {
    slots: RwLock<HashMap<Box<[u8]>, Arc<Slot>>>,
    /// `slots.len()`, read by every commit without the lock.
    n_slots: AtomicUsize,
    /// Bumped by each new slot (under the write lock); a slot keeps the one it made.
    generation: AtomicU64,
}

/// One watched counter: its sender, shared by all its receivers.
pub(crate) struct Slot {
    key: Box<[u8]>,
    sender: watch::Sender<CounterValue>,
    generation: u64,
}

/// What a commit noted before the backend wrote: the generation, and the slots of its
/// watched counters with the index of each counter's (last) value in
/// [`Committed::counters`].
pub(crate) struct Watched {
    generation: u64,
    matched: Vec<(usize, Arc<Slot>)>,
}

impl Slot {
    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }

    /// Sends `value` unless the receivers hold a value of a later or the same commit.
    pub(crate) fn publish(&self, value: CounterValue) {
        self.sender.send_if_modified(|current| {
            let newer = value.version > current.version;
            if newer {
                *current = value;
            }
            newer
        });
    }
}

impl Changes {
    /// A receiver of `key`, and the slot if it is new (its value is then still 0 at
    /// version 0: the caller reads the counter and publishes it).
    pub(crate) fn register(&self, key: &[u8]) -> (watch::Receiver<CounterValue>, Option<Arc<Slot>>) {
        let mut slots = self.slots.write().expect("watch registry lock poisoned");
        // Slots nobody listens to any more are dropped here and after the commits to them.
        slots.retain(|_, slot| slot.sender.receiver_count() > 0);
        if let Some(slot) = slots.get(key) {
            let receiver = slot.sender.subscribe();
            self.n_slots.store(slots.len(), Ordering::SeqCst);
            return (receiver, None);
        }
        let generation = self.generation.load(Ordering::SeqCst) + 1;
        let (sender, receiver) = watch::channel(CounterValue::default());
        let slot = Arc::new(Slot { key: key.into(), sender, generation });
        slots.insert(key.into(), slot.clone());
        // The count before the generation: a commit that sees the new generation sees a
        // count above zero, and looks in the map.
        self.n_slots.store(slots.len(), Ordering::SeqCst);
        self.generation.store(generation, Ordering::SeqCst);
        drop(slots);
        // Before the caller's first read of the counter (see the module's documentation).
        fence(Ordering::SeqCst);
        (receiver, Some(slot))
    }

    /// Notes the watched counters of `batch`, before the backend takes it.
    pub(crate) fn before_commit(&self, batch: &Batch) -> Watched {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut matched: Vec<(usize, Arc<Slot>)> = Vec::new();
        if self.n_slots.load(Ordering::SeqCst) == 0 {
            return Watched { generation, matched };
        }
        let slots = self.slots.read().expect("watch registry lock poisoned");
        let counter_keys = batch.ops.iter().filter_map(|op| match op {
            Op::Add { key, .. } => Some(key),
            _ => None,
        });
        for (index, key) in counter_keys.enumerate() {
            let Some(slot) = slots.get(key.as_slice()) else { continue };
            // A counter added to twice: its last value is the commit's.
            match matched.iter_mut().find(|(_, seen)| Arc::ptr_eq(seen, slot)) {
                Some(seen) => seen.0 = index,
                None => matched.push((index, slot.clone())),
            }
        }
        Watched { generation, matched }
    }

    /// Sends the values of a commit that succeeded; returns the slots made during the
    /// commit, whose counters the caller reads again from the store and publishes.
    pub(crate) fn after_commit(&self, watched: Watched, committed: &Committed) -> Vec<Arc<Slot>> {
        let mut unheard = false;
        for (index, slot) in &watched.matched {
            slot.publish(CounterValue { version: committed.version, value: committed.counters[*index] });
            unheard |= slot.sender.receiver_count() == 0;
        }
        if unheard {
            self.drop_unheard(&watched.matched);
        }
        // After the commit's writes are visible (see the module's documentation).
        fence(Ordering::SeqCst);
        if self.generation.load(Ordering::SeqCst) == watched.generation {
            return Vec::new();
        }
        self.made_after(watched.generation)
    }

    /// Sends `value` to the receivers of `key`, if it is watched (a commit of another
    /// process): a value of an older commit than theirs is not sent.
    pub(crate) fn publish(&self, key: &[u8], value: CounterValue) {
        if self.n_slots.load(Ordering::SeqCst) == 0 {
            return;
        }
        let slot = self.slots.read().expect("watch registry lock poisoned").get(key).cloned();
        if let Some(slot) = slot {
            slot.publish(value);
        }
    }

    /// The slots made after `generation` (all of them for 0).
    pub(crate) fn made_after(&self, generation: u64) -> Vec<Arc<Slot>> {
        let slots = self.slots.read().expect("watch registry lock poisoned");
        slots.values().filter(|slot| slot.generation > generation).cloned().collect()
    }

    /// Removes the slots among `matched` that nobody listens to any more.
    fn drop_unheard(&self, matched: &[(usize, Arc<Slot>)]) {
        let mut slots = self.slots.write().expect("watch registry lock poisoned");
        for (_, slot) in matched {
            let unheard = slot.sender.receiver_count() == 0;
            if unheard && slots.get(&slot.key).is_some_and(|current| Arc::ptr_eq(current, slot)) {
                slots.remove(&slot.key);
            }
        }
        self.n_slots.store(slots.len(), Ordering::SeqCst);
    }

    /// How many counters are watched (slots not yet dropped).
    pub(crate) fn n_watched(&self) -> usize {
        self.slots.read().expect("watch registry lock poisoned").len()
    }
}

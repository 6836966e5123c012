//! Tenants over several database clusters (issue 16, item 5): which store holds a tenant's
//! records, and the steps that move a tenant from one to another while every node serves.
//!
//! - The **control store** (`[store]`) holds what is the installation's, and the placement
//!   map: `p/t/<tenant>` → the name of the cluster holding the tenant (`main`, the control
//!   store itself, when there is no record), or `from>to` while it moves. Every change of
//!   the map adds to the counter `p/changes`, which every node watches (across nodes, as
//!   any counter: LISTEN/NOTIFY on PostgreSQL): a node reads the map again at the next
//!   lookup after a change.
//! - A **cluster** (`[store.clusters.NAME]`) is a store of its own. What goes there, and
//!   what stays in the control store, is the callers' to say (docs/storage.md): this
//!   module only routes by tenant.
//! - **The fence.** A [`Placed`] store of a tenant commits only while the key `p/fence/<tenant>`
//!   is absent from that cluster: every commit expects it absent. Moving a tenant writes
//!   the fence in the cluster it leaves before copying, so that a node that has not heard
//!   of the move yet cannot commit there any more ([`Error::Moving`], never a lost write):
//!   correctness does not rest on how fast nodes hear of the map's changes.
//!
//! A move, as the caller drives it: a first copy while the tenant is served
//! ([`crate::relocate::copy`]), then [`Clusters::begin_move`] (lookups of the tenant now
//! wait, up to `move_wait`), [`Clusters::fence`] in the source, what changed since the copy
//! ([`crate::relocate::catch_up`]), [`Clusters::finish_move`] (the map names the
//! destination, whose fence is lifted), and after a grace the source's copy is removed.
//! [`Clusters::abort_move`] undoes the marking and the fence when the catch-up failed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Batch, Committed, CounterValue, Error, Store};

/// The control store's own name as a cluster: where a tenant without a placement record is.
pub const MAIN: &str = "main";

/// The placement records: `p/t/<tenant>`.
pub const PLACES: &[u8] = b"p/t/";

/// Added to by every change of the placement map; every node watches it.
pub const CHANGES: &[u8] = b"p/changes";

/// Places cached per node before the cache is emptied: a lookup reads one record again.
const CACHED_PLACES_MAX: usize = 100_000;

/// The placement record of `tenant`.
pub fn place_key(tenant: &str) -> Vec<u8> {
    [PLACES, tenant.as_bytes()].concat()
}

/// The fence of `tenant` in a cluster: while it is there, no commit of the tenant goes
/// through in that cluster.
pub fn fence_key(tenant: &str) -> Vec<u8> {
    [b"p/fence/".as_slice(), tenant.as_bytes()].concat()
}

/// Whether `name` can name a cluster: 1 to 32 of `a-z`, `0-9`, `_` and `-`.
pub fn valid_cluster_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-')
}

/// Checks the name of a cluster other than the control store: what is wrong with it.
pub fn check_other_cluster_name(name: &str) -> Result<(), String> {
    match name != MAIN && valid_cluster_name(name) {
        true => Ok(()),
        false => Err(format!(
            "{name:?} cannot name a cluster: 1 to 32 of a-z, 0-9, '_' and '-', and not {MAIN:?} (this store)"
        )),
    }
}

/// Where a tenant is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// The cluster holding its records.
    pub cluster: String,
    /// The cluster it is being moved to: its lookups wait meanwhile.
    pub moving_to: Option<String>,
}

impl Place {
    fn encode(&self) -> Vec<u8> {
        match &self.moving_to {
            None => self.cluster.clone().into_bytes(),
            Some(to) => format!("{}>{to}", self.cluster).into_bytes(),
        }
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<Place, Error> {
        let corrupt = || Error::Corrupt(format!("placement record {}: not a cluster name", crate::key::printable(key)));
        let text = std::str::from_utf8(value).map_err(|_| corrupt())?;
        let (cluster, moving_to) = match text.split_once('>') {
            None => (text, None),
            Some((from, to)) => (from, Some(to.to_string())),
        };
        if !valid_cluster_name(cluster) || moving_to.as_deref().is_some_and(|to| !valid_cluster_name(to)) {
            return Err(corrupt());
        }
        Ok(Place { cluster: cluster.to_string(), moving_to })
    }
}

/// A tenant's store: commits through it go through only while the tenant's fence is absent
/// from its cluster. Reads are the store's ([`std::ops::Deref`]).
#[derive(Clone, Debug)]
pub struct Placed {
    store: Store,
    cluster: Arc<str>,
    fence: Option<Vec<u8>>,
}

impl std::ops::Deref for Placed {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

impl Placed {
    /// The one store of an installation without clusters: no fence. (Made at every call of
    /// the mail model: it allocates nothing.)
    pub fn plain(store: Store) -> Placed {
        static MAIN_NAME: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(MAIN));
        Placed { store, cluster: MAIN_NAME.clone(), fence: None }
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// [`Store::commit`], on condition that the tenant's fence is absent: fails with
    /// [`Error::Moving`] once the tenant is being moved away from this cluster.
    pub async fn commit(&self, mut batch: Batch) -> Result<Committed, Error> {
        let Some(fence) = &self.fence else { return self.store.commit(batch).await };
        batch.expect_absent(fence);
        match self.store.commit(batch).await {
            Err(Error::Conflict { key }) if key == *fence => Err(Error::Moving),
            other => other,
        }
    }

    /// [`Store::next_value`] through [`Placed::commit`].
    pub async fn next_value(&self, key: &[u8], delta: i64) -> Result<i64, Error> {
        let mut batch = Batch::new();
        batch.add(key, delta);
        Ok(self.commit(batch).await?.counters[0])
    }
}

/// The control store and the clusters, by name; the placement map, cached. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clusters {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    control: Store,
    /// Every cluster, [`MAIN`] (the control store) included.
    stores: BTreeMap<String, Store>,
    /// `p/changes` as this node last heard it.
    changes: tokio::sync::watch::Receiver<CounterValue>,
    /// The places read since `p/changes` last moved: (its value then, the places).
    cache: Mutex<(CounterValue, HashMap<String, Place>)>,
    /// How long a lookup of a moving tenant waits for the move to end.
    move_wait: Duration,
}

impl Clusters {
    /// The control store and the other clusters (none may be named [`MAIN`]); lookups of a
    /// moving tenant wait up to `move_wait`.
    pub async fn new(control: Store, others: BTreeMap<String, Store>, move_wait: Duration) -> Result<Clusters, Error> {
        for name in others.keys() {
            check_other_cluster_name(name).map_err(Error::InvalidOptions)?;
        }
        let changes = control.watch(CHANGES).await?;
        let mut stores = others;
        stores.insert(MAIN.to_string(), control.clone());
        let cache = Mutex::new((*changes.borrow(), HashMap::new()));
        Ok(Clusters { inner: Arc::new(Inner { control, stores, changes, cache, move_wait }) })
    }

    /// The control store.
    pub fn control(&self) -> &Store {
        &self.inner.control
    }

    /// A receiver of the placement map's changes (of `p/changes`).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<CounterValue> {
        self.inner.changes.clone()
    }

    /// The names of the clusters, [`MAIN`] included.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.stores.keys().map(String::as_str)
    }

    /// The store of the cluster `name`, unfenced.
    pub fn store(&self, name: &str) -> Result<&Store, Error> {
        self.inner.stores.get(name).ok_or_else(|| Error::NoCluster(name.to_string()))
    }

    /// Where `tenant` is, as the map says now (from this node's cache, read again after
    /// each change of the map).
    pub async fn place(&self, tenant: &str) -> Result<Place, Error> {
        let heard = *self.inner.changes.borrow();
        {
            let mut cache = self.inner.cache.lock().expect("placement cache poisoned");
            if cache.0 != heard {
                *cache = (heard, HashMap::new());
            }
            if let Some(place) = cache.1.get(tenant) {
                return Ok(place.clone());
            }
        }
        let (_, place) = self.stored_place(tenant).await?;
        let mut cache = self.inner.cache.lock().expect("placement cache poisoned");
        // Kept only if the map did not change while it was read.
        if cache.0 == heard {
            if cache.1.len() >= CACHED_PLACES_MAX {
                cache.1.clear();
            }
            cache.1.insert(tenant.to_string(), place.clone());
        }
        Ok(place)
    }

    /// Every tenant not in [`MAIN`], and where it is, in one scan of the map (at most one
    /// record per tenant).
    pub async fn placed(&self) -> Result<BTreeMap<String, Place>, Error> {
        let mut placed = BTreeMap::new();
        for entry in self.inner.control.scan(&crate::Scan::prefix(PLACES)).await? {
            let tenant = String::from_utf8_lossy(&entry.key[PLACES.len()..]).into_owned();
            placed.insert(tenant, Place::decode(&entry.key, &entry.value)?);
        }
        Ok(placed)
    }

    /// The placement record of `tenant` as the control store holds it now, and the place
    /// it says (`main` without a record).
    async fn stored_place(&self, tenant: &str) -> Result<(Option<crate::Entry>, Place), Error> {
        let key = place_key(tenant);
        let entry = self.inner.control.get(&key).await?;
        let place = match &entry {
            None => Place { cluster: MAIN.to_string(), moving_to: None },
            Some(entry) => Place::decode(&key, &entry.value)?,
        };
        Ok((entry, place))
    }

    /// The store of `tenant`'s cluster, fenced. While the tenant moves, waits for the move
    /// to end, up to `move_wait`, then fails with [`Error::Moving`].
    pub async fn for_tenant(&self, tenant: &str) -> Result<Placed, Error> {
        let deadline = tokio::time::Instant::now() + self.inner.move_wait;
        let mut changes = self.inner.changes.clone();
        loop {
            changes.borrow_and_update();
            let place = self.place(tenant).await?;
            if place.moving_to.is_none() {
                let store = self.store(&place.cluster)?.clone();
                return Ok(Placed { store, cluster: Arc::from(place.cluster), fence: Some(fence_key(tenant)) });
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(Error::Moving),
            }
        }
    }

    /// Marks `tenant` as moving from where it is to `to`: its lookups wait from now on.
    /// Returns the cluster it leaves. Fails if it is already moving, or already in `to`.
    pub async fn begin_move(&self, tenant: &str, to: &str) -> Result<String, Error> {
        self.store(to)?;
        let key = place_key(tenant);
        let (entry, place) = self.stored_place(tenant).await?;
        if let Some(moving_to) = &place.moving_to {
            return Err(Error::InvalidOptions(format!(
                "tenant {tenant:?} is already being moved from {} to {moving_to}",
                place.cluster
            )));
        }
        if place.cluster == to {
            return Err(Error::InvalidOptions(format!("tenant {tenant:?} is in cluster {to} already")));
        }
        let mut batch = Batch::new();
        match &entry {
            None => batch.expect_absent(&key),
            Some(entry) => batch.expect_version(&key, entry.version),
        };
        let moving = Place { cluster: place.cluster.clone(), moving_to: Some(to.to_string()) };
        batch.set(&key, &moving.encode());
        batch.add(CHANGES, 1);
        self.inner.control.commit(batch).await?;
        Ok(place.cluster)
    }

    /// Writes `tenant`'s fence in `cluster`: no commit of the tenant goes through there any
    /// more. Idempotent.
    pub async fn fence(&self, tenant: &str, cluster: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.set(&fence_key(tenant), b"moved");
        self.store(cluster)?.commit(batch).await.map(drop)
    }

    /// The move of `tenant` to `to` is done: the map names `to`, where the fence (left by
    /// an earlier move away from it) is lifted first.
    pub async fn finish_move(&self, tenant: &str, to: &str) -> Result<(), Error> {
        self.lift_fence(tenant, to).await?;
        let key = place_key(tenant);
        let mut batch = Batch::new();
        if to == MAIN {
            batch.delete(&key);
        } else {
            batch.set(&key, to.as_bytes());
        }
        batch.add(CHANGES, 1);
        self.inner.control.commit(batch).await.map(drop)
    }

    /// The move of `tenant` failed: it stays in `from`, whose fence is lifted.
    pub async fn abort_move(&self, tenant: &str, from: &str) -> Result<(), Error> {
        self.finish_move(tenant, from).await
    }

    async fn lift_fence(&self, tenant: &str, cluster: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&fence_key(tenant));
        self.store(cluster)?.commit(batch).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn two() -> (Clusters, Store, Store) {
        let (control, other) = (Store::memory(Default::default()), Store::memory(Default::default()));
        let others = BTreeMap::from([("b".to_string(), other.clone())]);
        let clusters = Clusters::new(control.clone(), others, Duration::from_millis(300)).await.unwrap();
        (clusters, control, other)
    }

    fn set(key: &[u8]) -> Batch {
        let mut batch = Batch::new();
        batch.set(key, b"v");
        batch
    }

    #[tokio::test]
    async fn a_tenant_without_a_record_is_in_main_and_moves_with_a_fence() {
        let (clusters, control, other) = two().await;
        let placed = clusters.for_tenant("t1").await.unwrap();
        assert_eq!(placed.cluster(), MAIN);
        placed.commit(set(b"k1")).await.unwrap();
        assert!(control.get(b"k1").await.unwrap().is_some());

        assert_eq!(clusters.begin_move("t1", "b").await.unwrap(), MAIN);
        // A second move while the first is under way is refused.
        assert!(matches!(clusters.begin_move("t1", "b").await, Err(Error::InvalidOptions(_))));
        // A lookup waits, then gives up.
        assert!(matches!(clusters.for_tenant("t1").await, Err(Error::Moving)));
        // A node that looked the tenant up before the move cannot commit once fenced.
        clusters.fence("t1", MAIN).await.unwrap();
        assert!(matches!(placed.commit(set(b"k2")).await, Err(Error::Moving)));
        assert!(control.get(b"k2").await.unwrap().is_none());
        // Another tenant of the same cluster is not fenced.
        clusters.for_tenant("t2").await.unwrap().commit(set(b"k3")).await.unwrap();

        clusters.finish_move("t1", "b").await.unwrap();
        let placed = clusters.for_tenant("t1").await.unwrap();
        assert_eq!(placed.cluster(), "b");
        placed.commit(set(b"k4")).await.unwrap();
        assert!(other.get(b"k4").await.unwrap().is_some());
        assert_eq!(control.get(&place_key("t1")).await.unwrap().unwrap().value, b"b");

        // Back to main: the fence left there is lifted.
        clusters.begin_move("t1", MAIN).await.unwrap();
        clusters.fence("t1", "b").await.unwrap();
        clusters.finish_move("t1", MAIN).await.unwrap();
        let placed = clusters.for_tenant("t1").await.unwrap();
        assert_eq!(placed.cluster(), MAIN);
        placed.commit(set(b"k5")).await.unwrap();
        assert!(control.get(&place_key("t1")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_waiting_lookup_goes_through_once_the_move_ends() {
        let (clusters, _, _) = two().await;
        clusters.begin_move("t1", "b").await.unwrap();
        let waiting = tokio::spawn({
            let clusters = clusters.clone();
            async move { clusters.for_tenant("t1").await.map(|placed| placed.cluster().to_string()) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        clusters.finish_move("t1", "b").await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), "b");
    }

    #[tokio::test]
    async fn an_aborted_move_leaves_the_tenant_where_it_was_and_unfenced() {
        let (clusters, control, _) = two().await;
        clusters.begin_move("t1", "b").await.unwrap();
        clusters.fence("t1", MAIN).await.unwrap();
        clusters.abort_move("t1", MAIN).await.unwrap();
        let placed = clusters.for_tenant("t1").await.unwrap();
        assert_eq!(placed.cluster(), MAIN);
        placed.commit(set(b"k")).await.unwrap();
        assert!(control.get(b"k").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn names_unknown_or_reserved_are_refused() {
        let (clusters, _, _) = two().await;
        assert!(matches!(clusters.begin_move("t1", "c").await, Err(Error::NoCluster(_))));
        let main = BTreeMap::from([(MAIN.to_string(), Store::memory(Default::default()))]);
        assert!(Clusters::new(Store::memory(Default::default()), main, Duration::ZERO).await.is_err());
        assert!(!valid_cluster_name("B"));
        assert!(Place::decode(b"p/t/x", b"a>").is_err());
    }
}

//! The in-memory backend, for tests: the store's records in maps.
//!
//! It keeps the RocksDB backend's three families of records ([`crate::records`]), in the
//! same encodings, in `BTreeMap`s, and checks and applies each batch with the same code
//! (`records::apply_batch`), one commit at a time under a lock. Crates above the store test
//! on it without building RocksDB (feature `memory`), and it is the model a PostgreSQL
//! backend will be compared with besides the conformance suite. It is not a production
//! backend: nothing is durable, the records live as long as their [`MemoryStore`].
//!
//! A snapshot is the records as they are, shared: the next write copies them once (copy on
//! write), so a snapshot costs nothing until the store changes under it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use crate::blob::{BlobMeta, Discard, Upload, run_detached};
use crate::records::{
    Family, META_BLOB, META_UPLOAD, Source, Writes, apply_batch, blob_key, chunk_key, decode_blob_record, decode_entry,
    load_records, location_chunks, upload_key, upload_records,
};
use crate::snapshot::SnapshotBackend;
use crate::{
    Backend, Batch, BlobHash, Committed, Direction, Entry, Error, Limits, Load, Scan, Snapshot, Store, Version,
};

/// The records of an in-memory store, kept across the [`Store`]s opened on them: a test
/// closes its store and opens it again ([`MemoryStore::open`]) to see what a restart keeps.
/// Cheap to clone; every clone holds the same records. Nothing is durable: the records go
/// with the last clone and the last store.
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<RwLock<State>>,
    limits: Limits,
}

struct State {
    records: Arc<Records>,
    /// The generation of the store open on the records, if one is.
    open: Option<u64>,
    /// How many stores were opened on the records: the last one's generation.
    n_opens: u64,
}

/// The three families of records, and the last version given out.
#[derive(Clone, Default)]
struct Records {
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    blob: BTreeMap<Vec<u8>, Vec<u8>>,
    meta: BTreeMap<Vec<u8>, Vec<u8>>,
    last_version: Version,
}

/// One store opened on the records: it answers while it is the open one (its generation).
struct MemoryBackend {
    state: Arc<RwLock<State>>,
    generation: u64,
    discarder: Arc<MemoryDiscarder>,
}

/// Removes the uploads of staged blobs dropped without a commit, while their store is open;
/// after, the next open removes them, as with RocksDB.
struct MemoryDiscarder {
    state: Weak<RwLock<State>>,
    generation: u64,
}

/// The records as a snapshot was taken.
struct MemorySnapshot {
    records: Arc<Records>,
}

impl Store {
    /// A new, empty in-memory store held to `limits`, for tests (see [`MemoryStore`], which
    /// also opens the same records again).
    ///
    /// # Panics
    ///
    /// If `limits` fail [`Limits::check`]: a test's mistake.
    pub fn memory(limits: Limits) -> Store {
        MemoryStore::new(limits).open()
    }
}

impl MemoryStore {
    /// Empty records, for stores held to `limits`.
    ///
    /// # Panics
    ///
    /// If `limits` fail [`Limits::check`]: a test's mistake (a server's limits come from
    /// `config`, which checks them).
    pub fn new(limits: Limits) -> MemoryStore {
        if let Err(problem) = limits.check() {
            panic!("invalid store limits: {problem}");
        }
        let state = State { records: Arc::default(), open: None, n_opens: 0 };
        MemoryStore { state: Arc::new(RwLock::new(state)), limits }
    }

    /// Opens a store on the records, as [`Store::open`] opens a directory: uploads staged
    /// and never committed are removed. A store still open on the records is closed first,
    /// as if its process had died: every later call on it fails with [`Error::Closed`], and
    /// the uploads it staged are removed as orphans. (To share one store, clone it.)
    pub fn open(&self) -> Store {
        let generation = {
            let mut state = self.state.write().expect("store lock poisoned");
            remove_orphan_uploads(&mut state.records);
            state.n_opens += 1;
            state.open = Some(state.n_opens);
            state.n_opens
        };
        let discarder = Arc::new(MemoryDiscarder { state: Arc::downgrade(&self.state), generation });
        let backend = MemoryBackend { state: self.state.clone(), generation, discarder };
        Store::new(Arc::new(backend), self.limits.clone())
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// The state for reading, if this store is still the one open.
    fn read(&self) -> Result<RwLockReadGuard<'_, State>, Error> {
        let state = self.state.read().expect("store lock poisoned");
        if state.open != Some(self.generation) {
            return Err(Error::Closed);
        }
        Ok(state)
    }

    /// The state for writing, if this store is still the one open.
    fn write(&self) -> Result<RwLockWriteGuard<'_, State>, Error> {
        let state = self.state.write().expect("store lock poisoned");
        if state.open != Some(self.generation) {
            return Err(Error::Closed);
        }
        Ok(state)
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    /// The open's generation: the records' later opens have later ones.
    fn session(&self) -> u64 {
        self.generation
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.read()?.records.get(key)
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>, Error> {
        let state = self.read()?;
        keys.iter().map(|key| state.records.get(key)).collect()
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.read()?.records.scan(scan)
    }

    /// Checks the batch against the records as they are and applies it, under the lock: one
    /// commit at a time, so that an expectation or a bound holds until the batch is written.
    /// The uploads of a batch that fails are dropped under the lock too: their removal runs
    /// detached, once the lock is free.
    async fn commit(&self, batch: Batch) -> Result<Committed, Error> {
        let mut uploads = Vec::new();
        let committed = {
            let mut state = self.write()?;
            let version = state.records.last_version + 1;
            let (committed, writes) = apply_batch(&*state.records, batch, version, &mut uploads)?;
            let records = Arc::make_mut(&mut state.records);
            records.accept(writes);
            records.last_version = version;
            committed
        };
        uploads.into_iter().for_each(Upload::claimed);
        Ok(committed)
    }

    async fn put_upload_chunk(&self, upload: &[u8; 16], idx: u32, data: &[u8]) -> Result<(), Error> {
        let mut state = self.write()?;
        let records = Arc::make_mut(&mut state.records);
        records.blob.insert(chunk_key(upload, idx), data.to_vec());
        if idx == 0 {
            records.meta.insert(upload_key(upload), Vec::new());
        }
        Ok(())
    }

    async fn discard_upload(&self, upload: &[u8; 16], n_chunks: u32) -> Result<(), Error> {
        remove_upload(Arc::make_mut(&mut self.write()?.records), upload, n_chunks);
        Ok(())
    }

    fn discarder(&self) -> Arc<dyn Discard> {
        self.discarder.clone()
    }

    async fn count_uploads(&self) -> Result<u64, Error> {
        Ok(self.read()?.records.upload_keys().count() as u64)
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        self.read()?.records.blob_meta(hash)
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.read()?.records.blob_chunk(location, idx))
    }

    async fn snapshot(&self) -> Result<Snapshot, Error> {
        let records = self.read()?.records.clone();
        Ok(Snapshot { version: records.last_version, backend: Arc::new(MemorySnapshot { records }) })
    }

    async fn load(&self, load: Load, chunk_bytes: usize) -> Result<(), Error> {
        let mut state = self.write()?;
        let records = Arc::make_mut(&mut state.records);
        let version = load_records(&load, chunk_bytes, records.last_version, |family, key, value| {
            records.family_mut(family).insert(key.to_vec(), value.to_vec());
        });
        records.last_version = version;
        Ok(())
    }

    /// Closing twice, or after another store was opened on the records, is harmless.
    async fn close(&self) -> Result<(), Error> {
        let mut state = self.state.write().expect("store lock poisoned");
        if state.open == Some(self.generation) {
            state.open = None;
        }
        Ok(())
    }
}

impl Discard for MemoryDiscarder {
    fn discard_later(&self, upload: [u8; 16], n_chunks: u32) {
        let Some(state) = self.state.upgrade() else { return };
        let generation = self.generation;
        run_detached(move || {
            let mut state = state.write().expect("store lock poisoned");
            if state.open == Some(generation) {
                remove_upload(Arc::make_mut(&mut state.records), &upload, n_chunks);
            }
        });
    }
}

#[async_trait::async_trait]
impl SnapshotBackend for MemorySnapshot {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.records.get(key)
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.records.scan(scan)
    }

    async fn blobs(&self, after: Option<BlobHash>, limit: usize) -> Result<Vec<(BlobHash, BlobMeta)>, Error> {
        self.records.blobs(after, limit)
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        self.records.blob_meta(hash)
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.records.blob_chunk(location, idx))
    }
}

impl Source for Records {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let map = match family {
            Family::Kv => &self.kv,
            Family::Blob => &self.blob,
            Family::Meta => &self.meta,
        };
        Ok(map.get(key).cloned())
    }
}

impl Records {
    fn family_mut(&mut self, family: Family) -> &mut BTreeMap<Vec<u8>, Vec<u8>> {
        match family {
            Family::Kv => &mut self.kv,
            Family::Blob => &mut self.blob,
            Family::Meta => &mut self.meta,
        }
    }

    /// Writes the writes of a batch that succeeded.
    fn accept(&mut self, writes: Writes) {
        for (family, key, value) in writes.into_ordered() {
            let map = self.family_mut(family);
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.kv.get(key).map(|stored| decode_entry(key, stored)).transpose()
    }

    /// From the start of the range on (or back from its end) while the keys are in it: a
    /// range that ends before it starts gives nothing (`BTreeMap::range` would panic).
    fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        let entries: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = match scan.direction {
            Direction::Forward => Box::new(self.kv.range::<[u8], _>((as_slice(&scan.from), Bound::Unbounded))),
            Direction::Reverse => Box::new(self.kv.range::<[u8], _>((Bound::Unbounded, as_slice(&scan.to))).rev()),
        };
        entries
            .take_while(|(key, _)| scan.contains(key))
            .take(scan.limit)
            .map(|(key, stored)| decode_entry(key, stored))
            .collect()
    }

    fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        self.meta.get(&blob_key(hash)).map(|stored| BlobMeta::decode(stored)).transpose()
    }

    fn blob_chunk(&self, location: &[u8], idx: u32) -> Option<Vec<u8>> {
        self.blob.get(&chunk_key(location, idx)).cloned()
    }

    /// The blob records in hash order, strictly after `after`, at most `limit`.
    fn blobs(&self, after: Option<BlobHash>, limit: usize) -> Result<Vec<(BlobHash, BlobMeta)>, Error> {
        let from = match &after {
            Some(hash) => Bound::Excluded(blob_key(hash)),
            None => Bound::Included(vec![META_BLOB]),
        };
        let records = self.meta.range((from, Bound::Excluded(vec![META_BLOB + 1])));
        records.take(limit).map(|(key, stored)| decode_blob_record(key, stored)).collect()
    }

    /// The registrations of the uploads staged and not yet committed or discarded.
    fn upload_keys(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.meta.range(vec![META_UPLOAD]..vec![META_UPLOAD + 1]).map(|(key, _)| key)
    }
}

fn as_slice(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

fn remove_upload(records: &mut Records, upload: &[u8; 16], n_chunks: u32) {
    for (family, key) in upload_records(upload, n_chunks) {
        records.family_mut(family).remove(&key);
    }
}

/// Uploads registered but never committed belong to blobs staged by a store that was not
/// closed, or dropped after it was: nothing can point to them, so they go. Their number of
/// chunks is not recorded: every chunk at their location goes.
fn remove_orphan_uploads(records: &mut Arc<Records>) {
    let orphans: Vec<Vec<u8>> = records.upload_keys().cloned().collect();
    if orphans.is_empty() {
        return;
    }
    tracing::info!(n_uploads = orphans.len(), "removing blob uploads never committed");
    let records = Arc::make_mut(records);
    for key in orphans {
        let chunks: Vec<Vec<u8>> = records.blob.range(location_chunks(&key[1..])).map(|(key, _)| key.clone()).collect();
        for chunk in chunks {
            records.blob.remove(&chunk);
        }
        records.meta.remove(&key);
    }
}

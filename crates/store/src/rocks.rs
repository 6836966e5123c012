//! The RocksDB backend: the embedded default.
//!
//! Three column families, one for each family of records ([`crate::records`]): `default`
//! holds the key-value space (each value prefixed with the 8-byte version of the commit that
//! wrote it), `blob` holds blob chunks (keyed by location and chunk number, in RocksDB's
//! blob files so large values are not rewritten by compaction), `meta` holds the last
//! version, blob records and the registry of uploads.
//!
//! All commits go through one committer thread that takes every batch waiting, checks and
//! applies them in order (`records::apply_batch`) against the database plus the writes of
//! the batches before them in the same group, and writes the group as one RocksDB write
//! batch with the write-ahead log synced. Concurrent writers thus share one sync (group
//! commit), and conditions are checked without locks because one thread decides.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, ReadOptions, WriteBatch,
    WriteOptions,
};
use tokio::sync::{mpsc, oneshot};

use crate::blob::{BlobMeta, Discard, Upload, run_detached};
use crate::records::{
    Family, META_BLOB, META_UPLOAD, Source, Writes, apply_batch, blob_key, chunk_key, decode_blob_record, decode_entry,
    load_records, location_chunks, read_version, upload_key, upload_records,
};
use crate::snapshot::SnapshotBackend;
use crate::{Backend, Batch, BlobHash, Committed, Direction, Entry, Error, Load, Options, Scan, Snapshot, Version};

const CF_BLOB: &str = "blob";
const CF_META: &str = "meta";
const META_VERSION: &[u8] = b"v";

/// Lone commits in a row after which a writer commits inline (see `lone_streak`).
const LONE_STREAK_FOR_INLINE: u32 = 16;

pub(crate) struct RocksBackend {
    db: RwLock<Option<Arc<DB>>>,
    committer: Mutex<Option<Committer>>,
    /// The last version given out. Whoever holds it writes: the committer thread for a
    /// group, or a lone writer inline (see [`RocksBackend::commit`]).
    last_version: Arc<Mutex<Version>>,
    /// Commits under way (queued, writing, or waiting for their answer).
    in_flight: std::sync::atomic::AtomicUsize,
    /// Commits in a row that began with no other under way. Only a writer that has been
    /// alone for a while commits inline: under concurrent load the lone moments are
    /// brief, and moving a tokio worker off its thread for each of them (block_in_place)
    /// cost the MX 20 % of its throughput.
    lone_streak: std::sync::atomic::AtomicU32,
    discarder: Arc<RocksDiscarder>,
    path: String,
    /// This open's session: random, so that no later run of the process takes it again.
    session: u64,
}

/// Removes the uploads of staged blobs dropped without a commit. It holds the database
/// weakly: a staged blob outliving the store removes nothing (the next open does).
struct RocksDiscarder {
    db: Weak<DB>,
}

impl Discard for RocksDiscarder {
    /// Not synced: if the removal is lost in a crash, the upload is still registered and
    /// the next open removes it (`remove_orphan_uploads`).
    fn discard_later(&self, upload: [u8; 16], n_chunks: u32) {
        let Some(db) = self.db.upgrade() else { return };
        // A drop must not wait for the disk.
        run_detached(move || {
            if let Err(e) = db.write(discard_batch(&db, &upload, n_chunks)) {
                tracing::warn!(error = %e, "removing a staged blob upload failed; the next open removes it");
            }
        });
    }
}

/// The writes that remove an upload: its chunks and its registration.
fn discard_batch(db: &DB, upload: &[u8; 16], n_chunks: u32) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (family, key) in upload_records(upload, n_chunks) {
        batch.delete_cf(family_cf(db, family), key);
    }
    batch
}

struct Committer {
    requests: mpsc::Sender<Request>,
    thread: JoinHandle<()>,
}

struct Request {
    batch: Batch,
    reply: oneshot::Sender<Result<Committed, Error>>,
}

impl RocksBackend {
    pub fn open(path: &Path, options: &Options) -> Result<RocksBackend, Error> {
        let path_text = path.display().to_string();
        std::fs::create_dir_all(path).map_err(|e| Error::Backend(format!("creating {path_text}: {e}")))?;
        let db = open_db(path, options).map_err(|e| {
            let message = e.to_string();
            if message.contains("lock") || message.contains("LOCK") {
                Error::Locked(path_text.clone())
            } else {
                Error::Backend(format!("opening {path_text}: {message}"))
            }
        })?;
        let db = Arc::new(db);
        remove_orphan_uploads(&db)?;
        let last_version = match db.get_cf(cf(&db, CF_META), META_VERSION).map_err(backend)? {
            None => 0,
            Some(bytes) => read_version(&bytes)?,
        };
        let (requests, receiver) = mpsc::channel(options.limits.commit_queue_max);
        let group_max = options.limits.commit_group_max;
        let committer_db = db.clone();
        let last_version = Arc::new(Mutex::new(last_version));
        let committer_version = last_version.clone();
        let thread = std::thread::Builder::new()
            .name("store-commit".into())
            .spawn(move || run_committer(&committer_db, receiver, group_max, &committer_version))
            .map_err(|e| Error::Backend(format!("starting the committer thread: {e}")))?;
        let discarder = Arc::new(RocksDiscarder { db: Arc::downgrade(&db) });
        Ok(RocksBackend {
            discarder,
            db: RwLock::new(Some(db)),
            committer: Mutex::new(Some(Committer { requests, thread })),
            last_version,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            lone_streak: std::sync::atomic::AtomicU32::new(0),
            path: path_text,
            session: rand::random(),
        })
    }

    fn db(&self) -> Result<Arc<DB>, Error> {
        self.db.read().expect("store lock poisoned").clone().ok_or(Error::Closed)
    }
}

/// A store dropped without [`Backend::close`] still stops its committer and closes the
/// database before the drop returns: a detached thread still inside RocksDB when the
/// process exits would race RocksDB's own static destructors (seen as an abort,
/// "pthread lock: Invalid argument", at the exit of a test process).
impl Drop for RocksBackend {
    fn drop(&mut self) {
        let committer = self.committer.get_mut().map(Option::take).unwrap_or(None);
        if let Some(Committer { requests, thread }) = committer {
            drop(requests);
            let _ = thread.join();
        }
    }
}

fn open_db(path: &Path, options: &Options) -> Result<DB, rocksdb::Error> {
    let mut db_options = rocksdb::Options::default();
    db_options.create_if_missing(true);
    db_options.create_missing_column_families(true);
    // Two cores: one background job each for flushes and compactions.
    db_options.increase_parallelism(2);
    db_options.set_max_background_jobs(2);
    db_options.set_compression_type(DBCompressionType::Lz4);
    let cache = Cache::new_lru_cache(options.cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    db_options.set_block_based_table_factory(&table);

    let mut blob_options = db_options.clone();
    // Values of 4 KiB and more live in blob files, which compaction does not rewrite.
    blob_options.set_enable_blob_files(true);
    blob_options.set_min_blob_size(4096);
    blob_options.set_blob_compression_type(DBCompressionType::Lz4);
    blob_options.set_enable_blob_gc(true);

    let families = vec![
        ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, db_options.clone()),
        ColumnFamilyDescriptor::new(CF_BLOB, blob_options),
        ColumnFamilyDescriptor::new(CF_META, db_options.clone()),
    ];
    DB::open_cf_descriptors(&db_options, path, families)
}

/// Uploads registered but never committed belong to blobs staged before a crash or a
/// discard that failed: nothing can point to them, so they go.
fn remove_orphan_uploads(db: &DB) -> Result<(), Error> {
    let meta = cf(db, CF_META);
    let mut orphans = Vec::new();
    let mut iter = db.raw_iterator_cf(meta);
    iter.seek([META_UPLOAD]);
    while let Some((key, _)) = iter.item() {
        if key.first() != Some(&META_UPLOAD) {
            break;
        }
        orphans.push(key.to_vec());
        iter.next();
    }
    iter.status().map_err(backend)?;
    drop(iter);
    if orphans.is_empty() {
        return Ok(());
    }
    tracing::info!(n_uploads = orphans.len(), "removing blob uploads never committed");
    let mut batch = WriteBatch::default();
    for key in &orphans {
        let chunks = location_chunks(&key[1..]);
        batch.delete_range_cf(cf(db, CF_BLOB), chunks.start, chunks.end);
        batch.delete_cf(meta, key);
    }
    db.write_opt(batch, &synced()).map_err(backend)
}

#[async_trait::async_trait]
impl Backend for RocksBackend {
    fn session(&self) -> u64 {
        self.session
    }

    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        let db = self.db()?;
        let Some(stored) = db.get_pinned(key).map_err(backend)? else { return Ok(None) };
        decode_entry(key, &stored).map(Some)
    }

    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>, Error> {
        let db = self.db()?;
        let default = db.cf_handle(rocksdb::DEFAULT_COLUMN_FAMILY_NAME).expect("the default column family exists");
        keys.iter()
            .zip(db.batched_multi_get_cf(&default, keys, false))
            .map(|(key, stored)| match stored.map_err(backend)? {
                Some(stored) => decode_entry(key, &stored).map(Some),
                None => Ok(None),
            })
            .collect()
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        let db = self.db()?;
        scan_db(&db, scan, None)
    }

    /// A lone writer (no other commit under way, for the last `LONE_STREAK_FOR_INLINE`
    /// commits) commits inline on its own thread, as raw RocksDB would: handing the batch
    /// to the committer thread and back costs two thread wake-ups, about 15 % of a synced
    /// commit here. As soon as writers overlap, they queue for the committer, which groups
    /// them under one sync.
    async fn commit(&self, batch: Batch) -> Result<Committed, Error> {
        use std::sync::atomic::Ordering;
        let requests = {
            let committer = self.committer.lock().expect("store lock poisoned");
            committer.as_ref().ok_or(Error::Closed)?.requests.clone()
        };
        let in_flight = InFlight::enter(&self.in_flight);
        let lone_streak = if in_flight.alone {
            self.lone_streak.fetch_add(1, Ordering::Relaxed).saturating_add(1)
        } else {
            self.lone_streak.store(0, Ordering::Relaxed);
            0
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread
            && lone_streak >= LONE_STREAK_FOR_INLINE
            && self.in_flight.load(Ordering::Acquire) == 1
            && let Ok(mut last_version) = self.last_version.try_lock()
        {
            let db = self.db()?;
            // block_in_place hands this worker's other tasks to another thread meanwhile.
            return tokio::task::block_in_place(|| {
                commit_batches(&db, vec![batch], &mut last_version).pop().expect("one result")
            });
        }
        let (reply, response) = oneshot::channel();
        requests.send(Request { batch, reply }).await.map_err(|_| Error::Closed)?;
        response.await.map_err(|_| Error::Closed)?
    }

    async fn put_upload_chunk(&self, upload: &[u8; 16], idx: u32, data: &[u8]) -> Result<(), Error> {
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&db, CF_BLOB), chunk_key(upload, idx), data);
        if idx == 0 {
            batch.put_cf(cf(&db, CF_META), upload_key(upload), []);
        }
        tokio::task::spawn_blocking(move || db.write_opt(batch, &synced()).map_err(backend))
            .await
            .map_err(|e| Error::Backend(e.to_string()))?
    }

    async fn discard_upload(&self, upload: &[u8; 16], n_chunks: u32) -> Result<(), Error> {
        let db = self.db()?;
        let batch = discard_batch(&db, upload, n_chunks);
        tokio::task::spawn_blocking(move || db.write_opt(batch, &synced()).map_err(backend))
            .await
            .map_err(|e| Error::Backend(e.to_string()))?
    }

    fn discarder(&self) -> Arc<dyn Discard> {
        self.discarder.clone()
    }

    async fn count_uploads(&self) -> Result<u64, Error> {
        let db = self.db()?;
        let mut iter = db.raw_iterator_cf(cf(&db, CF_META));
        iter.seek([META_UPLOAD]);
        let mut n_uploads = 0;
        while let Some((key, _)) = iter.item() {
            if key.first() != Some(&META_UPLOAD) {
                break;
            }
            n_uploads += 1;
            iter.next();
        }
        iter.status().map_err(backend)?;
        Ok(n_uploads)
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        let db = self.db()?;
        let stored = db.get_pinned_cf(cf(&db, CF_META), blob_key(hash)).map_err(backend)?;
        stored.map(|bytes| BlobMeta::decode(&bytes)).transpose()
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        let db = self.db()?;
        db.get_cf(cf(&db, CF_BLOB), chunk_key(location, idx)).map_err(backend)
    }

    /// A RocksDB snapshot lives in a thread of its own that answers the reads made through
    /// it: the snapshot borrows the database, and the thread's stack is where both live
    /// together without unsafe code. The version is read through the snapshot itself, from
    /// the record each group commit writes in the same atomic write as its keys.
    async fn snapshot(&self) -> Result<Snapshot, Error> {
        let db = self.db()?;
        let (requests, receiver) = mpsc::channel(SNAPSHOT_QUEUE_MAX);
        let (ready, version) = oneshot::channel();
        std::thread::Builder::new()
            .name("store-snapshot".into())
            .spawn(move || run_snapshot(&db, receiver, ready))
            .map_err(|e| Error::Backend(format!("starting the snapshot thread: {e}")))?;
        let version = version.await.map_err(|_| Error::Closed)??;
        Ok(Snapshot { backend: Arc::new(RocksSnapshot { requests }), version })
    }

    /// One synced write, under the version lock so no commit takes a version meanwhile.
    async fn load(&self, load: Load, chunk_bytes: usize) -> Result<(), Error> {
        let db = self.db()?;
        let last_version = self.last_version.clone();
        tokio::task::spawn_blocking(move || {
            let mut last_version = last_version.lock().expect("store lock poisoned");
            let mut batch = WriteBatch::default();
            let version = load_records(&load, chunk_bytes, *last_version, |family, key, value| {
                batch.put_cf(family_cf(&db, family), key, value);
            });
            batch.put_cf(cf(&db, CF_META), META_VERSION, version.to_be_bytes());
            db.write_opt(batch, &synced()).map_err(backend)?;
            *last_version = version;
            Ok(())
        })
        .await
        .map_err(|e| Error::Backend(e.to_string()))?
    }

    async fn close(&self) -> Result<(), Error> {
        let committer = self.committer.lock().expect("store lock poisoned").take();
        let Some(Committer { requests, thread }) = committer else { return Ok(()) };
        // Dropping the last sender ends the committer once the queued batches are written.
        drop(requests);
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| Error::Backend(e.to_string()))?
            .map_err(|_| Error::Backend("the committer thread panicked".into()))?;
        let db = self.db.write().expect("store lock poisoned").take();
        let Some(mut db) = db else { return Ok(()) };
        // Reads in flight hold the database briefly; wait for them so the lock file is
        // released when close returns (a restart in the same process can then reopen).
        for _ in 0..500 {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    db.flush_wal(true).map_err(backend)?;
                    drop(db);
                    tracing::debug!(path = %self.path, "store closed");
                    return Ok(());
                }
                Err(shared) => db = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(path = %self.path, "store closed with reads still in flight");
        Ok(())
    }
}

/// Counts a commit as under way until dropped (also when its task is cancelled).
struct InFlight<'a> {
    counter: &'a std::sync::atomic::AtomicUsize,
    /// No other commit was under way when this one began.
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a std::sync::atomic::AtomicUsize) -> InFlight<'a> {
        let before = counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight { counter, alone: before == 0 }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

fn scan_db(db: &DB, scan: &Scan, snapshot: Option<&rocksdb::Snapshot<'_>>) -> Result<Vec<Entry>, Error> {
    let mut read_options = ReadOptions::default();
    if let Some(snapshot) = snapshot {
        read_options.set_snapshot(snapshot);
    }
    match &scan.from {
        Bound::Included(from) | Bound::Excluded(from) => read_options.set_iterate_lower_bound(from.clone()),
        Bound::Unbounded => {}
    }
    // The upper bound is exclusive: the smallest key after an included `to` is `to` + 0x00.
    let upper = match &scan.to {
        Bound::Included(to) => Some([to.as_slice(), &[0]].concat()),
        Bound::Excluded(to) => Some(to.clone()),
        Bound::Unbounded => None,
    };
    if let Some(upper) = &upper {
        read_options.set_iterate_upper_bound(upper.clone());
    }
    let mut iter = db.raw_iterator_opt(read_options);
    match (scan.direction, &upper) {
        (Direction::Forward, _) => match &scan.from {
            Bound::Included(from) | Bound::Excluded(from) => iter.seek(from),
            Bound::Unbounded => iter.seek_to_first(),
        },
        (Direction::Reverse, Some(upper)) => iter.seek_for_prev(upper),
        (Direction::Reverse, None) => iter.seek_to_last(),
    }
    let mut entries = Vec::new();
    while entries.len() < scan.limit {
        let Some((key, value)) = iter.item() else { break };
        if scan.contains(key) {
            entries.push(decode_entry(key, value)?);
        }
        match scan.direction {
            Direction::Forward => iter.next(),
            Direction::Reverse => iter.prev(),
        }
    }
    iter.status().map_err(backend)?;
    Ok(entries)
}

fn run_committer(db: &DB, mut requests: mpsc::Receiver<Request>, group_max: usize, last_version: &Mutex<Version>) {
    let mut group = Vec::with_capacity(group_max.min(1024));
    while let Some(first) = requests.blocking_recv() {
        group.push(first);
        while group.len() < group_max {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let batches = group.iter_mut().map(|request| std::mem::take(&mut request.batch)).collect();
        let results = {
            let mut last_version = last_version.lock().expect("store lock poisoned");
            commit_batches(db, batches, &mut last_version)
        };
        for (request, result) in group.drain(..).zip(results) {
            // A writer that went away (its task cancelled) no longer needs the answer.
            let _ = request.reply.send(result);
        }
    }
}

/// Checks and applies each batch of a group in order, and writes the group with one sync.
fn commit_batches(db: &DB, batches: Vec<Batch>, last_version: &mut Version) -> Vec<Result<Committed, Error>> {
    let mut state = GroupState { db, overlay: HashMap::new(), write_batch: WriteBatch::default() };
    let mut results = Vec::with_capacity(batches.len());
    // The uploads the group's batches take: claimed once the group is written, removed
    // (dropped) if it is not.
    let mut uploads = Vec::new();
    let mut version = *last_version;
    for batch in batches {
        let result = apply_batch(&state, batch, version + 1, &mut uploads).map(|(committed, writes)| {
            state.accept(writes);
            committed
        });
        if result.is_ok() {
            version += 1;
        }
        results.push(result);
    }
    let write = if version > *last_version {
        state.write_batch.put_cf(cf(db, CF_META), META_VERSION, version.to_be_bytes());
        db.write_opt(state.write_batch, &synced()).map_err(backend)
    } else {
        Ok(())
    };
    match write {
        Ok(()) => {
            *last_version = version;
            uploads.into_iter().for_each(Upload::claimed);
        }
        Err(e) => {
            tracing::error!(error = %e, "store commit failed");
            for result in results.iter_mut().filter(|result| result.is_ok()) {
                *result = Err(Error::Backend(e.to_string()));
            }
        }
    }
    results
}

/// The database as the next batch of a group sees it: the writes of the batches before it
/// in the group over the database.
struct GroupState<'a> {
    db: &'a DB,
    overlay: HashMap<(Family, Vec<u8>), Option<Vec<u8>>>,
    write_batch: WriteBatch,
}

impl Source for GroupState<'_> {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        if let Some(value) = self.overlay.get(&(family, key.to_vec())) {
            return Ok(value.clone());
        }
        self.db.get_cf(family_cf(self.db, family), key).map_err(backend)
    }
}

impl GroupState<'_> {
    /// Adds the writes of a batch that succeeded to the group's write batch.
    fn accept(&mut self, writes: Writes) {
        for (family, key, value) in writes.into_ordered() {
            let column = family_cf(self.db, family);
            match &value {
                Some(value) => self.write_batch.put_cf(column, &key, value),
                None => self.write_batch.delete_cf(column, &key),
            }
            // Blob chunks are never read back within a group; keep them out of memory twice.
            if family != Family::Blob {
                self.overlay.insert((family, key), value);
            }
        }
    }
}

fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name).expect("column families are created at open")
}

/// The column family that holds a family of records.
fn family_cf(db: &DB, family: Family) -> &ColumnFamily {
    match family {
        Family::Kv => cf(db, rocksdb::DEFAULT_COLUMN_FAMILY_NAME),
        Family::Blob => cf(db, CF_BLOB),
        Family::Meta => cf(db, CF_META),
    }
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

fn backend(error: rocksdb::Error) -> Error {
    Error::Backend(error.into_string())
}

/// Requests waiting for a snapshot's thread. Its readers ask one thing at a time; 64 leaves
/// room for a few concurrent ones before they wait.
const SNAPSHOT_QUEUE_MAX: usize = 64;

type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// A read asked of a snapshot's thread.
enum SnapshotRequest {
    Get(Vec<u8>, Reply<Option<Entry>>),
    Scan(Scan, Reply<Vec<Entry>>),
    Blobs(Option<BlobHash>, usize, Reply<Vec<(BlobHash, BlobMeta)>>),
    BlobMeta(BlobHash, Reply<Option<BlobMeta>>),
    BlobChunk(Vec<u8>, u32, Reply<Option<Vec<u8>>>),
}

/// The handle of a snapshot's thread; dropping it (the last [`Snapshot`] clone) ends the
/// thread, which releases the RocksDB snapshot.
struct RocksSnapshot {
    requests: mpsc::Sender<SnapshotRequest>,
}

impl RocksSnapshot {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> SnapshotRequest) -> Result<T, Error> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(make(reply)).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[async_trait::async_trait]
impl SnapshotBackend for RocksSnapshot {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.ask(|reply| SnapshotRequest::Get(key.to_vec(), reply)).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.ask(|reply| SnapshotRequest::Scan(scan.clone(), reply)).await
    }

    async fn blobs(&self, after: Option<BlobHash>, limit: usize) -> Result<Vec<(BlobHash, BlobMeta)>, Error> {
        self.ask(|reply| SnapshotRequest::Blobs(after, limit, reply)).await
    }

    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error> {
        self.ask(|reply| SnapshotRequest::BlobMeta(*hash, reply)).await
    }

    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error> {
        self.ask(|reply| SnapshotRequest::BlobChunk(location.to_vec(), idx, reply)).await
    }
}

/// The body of a snapshot's thread: takes the snapshot, says its version, then answers
/// reads until every handle is dropped.
fn run_snapshot(db: &DB, mut requests: mpsc::Receiver<SnapshotRequest>, ready: Reply<Version>) {
    let snapshot = db.snapshot();
    let version = match snapshot.get_cf(cf(db, CF_META), META_VERSION) {
        Ok(None) => Ok(0),
        Ok(Some(bytes)) => read_version(&bytes),
        Err(e) => Err(backend(e)),
    };
    let failed = version.is_err();
    if ready.send(version).is_err() || failed {
        return;
    }
    while let Some(request) = requests.blocking_recv() {
        // A reader that went away (its task cancelled) no longer needs the answer.
        match request {
            SnapshotRequest::Get(key, reply) => {
                let found = snapshot.get(&key).map_err(backend);
                let _ =
                    reply.send(found.and_then(|stored| stored.map(|stored| decode_entry(&key, &stored)).transpose()));
            }
            SnapshotRequest::Scan(scan, reply) => {
                let _ = reply.send(scan_db(db, &scan, Some(&snapshot)));
            }
            SnapshotRequest::Blobs(after, limit, reply) => {
                let _ = reply.send(snapshot_blobs(db, &snapshot, after, limit));
            }
            SnapshotRequest::BlobMeta(hash, reply) => {
                let stored = snapshot.get_cf(cf(db, CF_META), blob_key(&hash)).map_err(backend);
                let _ = reply.send(stored.and_then(|stored| stored.map(|bytes| BlobMeta::decode(&bytes)).transpose()));
            }
            SnapshotRequest::BlobChunk(location, idx, reply) => {
                let _ = reply.send(snapshot.get_cf(cf(db, CF_BLOB), chunk_key(&location, idx)).map_err(backend));
            }
        }
    }
}

/// The blob records of the snapshot in hash order, strictly after `after`.
fn snapshot_blobs(
    db: &DB,
    snapshot: &rocksdb::Snapshot<'_>,
    after: Option<BlobHash>,
    limit: usize,
) -> Result<Vec<(BlobHash, BlobMeta)>, Error> {
    let mut read_options = ReadOptions::default();
    read_options.set_snapshot(snapshot);
    read_options.set_iterate_upper_bound(vec![META_BLOB + 1]);
    let mut iter = db.raw_iterator_cf_opt(cf(db, CF_META), read_options);
    match &after {
        Some(hash) => iter.seek(blob_key(hash)),
        None => iter.seek([META_BLOB]),
    }
    let mut blobs = Vec::new();
    while blobs.len() < limit {
        let Some((key, value)) = iter.item() else { break };
        let (hash, meta) = decode_blob_record(key, value)?;
        if Some(hash) != after {
            blobs.push((hash, meta));
        }
        iter.next();
    }
    iter.status().map_err(backend)?;
    Ok(blobs)
}

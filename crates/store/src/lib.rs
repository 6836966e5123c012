//! Hameau's storage: the one interface every other crate stores through.
//!
//! A [`Store`] offers four things, whatever backend runs behind it:
//!
//! - an ordered key-value space with prefix and range scans ([`Store::get`], [`Store::scan`]);
//! - atomic write batches with conditions ([`Batch`], [`Store::commit`]): a batch commits only
//!   if every key it expects still has the version it read, so two writers never both win;
//! - monotonic counters ([`Batch::add`], [`Store::next_value`]), evaluated inside the commit,
//!   that never hand out the same value twice, even across crashes; a counter may be
//!   bounded ([`Batch::add_at_most`]): the commit fails rather than take it past its bound,
//!   so a limit such as a quota holds however many writers race;
//! - a content-addressed, reference-counted blob store ([`Store::stage_blob`],
//!   [`Batch::blob_acquire`], [`Batch::blob_release`], [`Store::read_blob`]). A staged
//!   blob that no commit takes is removed when dropped ([`StagedBlob`]).
//!
//! - a consistent read view of everything ([`Store::snapshot`]) and a bulk write of records
//!   as they were ([`Store::load`]), for backup and restore;
//! - change notifications ([`Store::watch`]): a receiver of a counter's value after each
//!   commit that adds to it, whoever made the commit (see `changes.rs`).
//!
//! A commit returns only after its data is durable (synced to disk). Nothing above this
//! crate knows which backend runs:
//!
//! - the embedded RocksDB backend, the server's (feature `rocksdb`, on by default);
//! - an in-memory backend (feature `memory`; `Store::memory`, `MemoryStore`) for the tests
//!   of crates above the store, without RocksDB: it checks and applies batches with the
//!   same code as RocksDB's, durable only as long as the process;
//! - PostgreSQL (feature `postgresql`): several nodes on one database (see `postgres.rs`).
//!
//! Every backend passes the same [`conformance`] suite.

// Built with no backend at all (neither feature), the crate still gives its types, and
// what only backends call is dead code.
#![cfg_attr(not(any(test, feature = "rocksdb", feature = "memory")), allow(dead_code))]

mod batch;
mod blob;
mod changes;
pub mod conformance;
pub mod copy;
mod error;
mod key;
#[cfg(any(test, feature = "memory"))]
mod memory;
pub mod placement;
#[cfg(feature = "postgresql")]
mod postgres;
mod records;
pub mod relocate;
#[cfg(feature = "rocksdb")]
mod rocks;
mod snapshot;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use hameau_limits::{Problem, range};

pub use batch::{Batch, CounterRef, Expect, Patch, PatchTarget};
pub use blob::{BlobHash, BlobReader, StagedBlob};
pub use changes::CounterValue;
pub use error::Error;
pub use key::{Direction, Scan};
#[cfg(any(test, feature = "memory"))]
pub use memory::MemoryStore;
pub use snapshot::{BlobInfo, Load, LoadBlob, Snapshot};

/// A version is the number of the commit that last wrote a key. Versions only grow, so a
/// key deleted and written again never shows an old version (no ABA).
pub type Version = u64;

/// One key with its value and the version of the commit that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub version: Version,
    pub value: Vec<u8>,
}

/// What a successful commit returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The version every key written by this batch now has.
    pub version: Version,
    /// The value of each counter after this batch's [`Batch::add`], in the order they were added.
    pub counters: Vec<i64>,
}

/// The section of the configuration file that every store key is read from.
const SECTION: &str = "store";

/// A database URL (`store.url`). Shown without its password, if it holds one.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    /// `scheme://user:***@host...`: whatever is between the user's ':' and the '@'.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = &self.0;
        let start = text.find("://").map_or(0, |at| at + 3);
        let masked = match (text[start..].find('@'), text[start..].find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                format!("{}***{}", &text[..start + colon + 1], &text[start + at..])
            }
            _ => text.clone(),
        };
        write!(f, "{masked:?}")
    }
}

/// Which backend runs (`store.backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackendKind {
    /// The embedded default: RocksDB in [`Options::path`]. A build without the feature
    /// `rocksdb` (tests on the memory backend) refuses it in [`Store::open`].
    #[default]
    Rocksdb,
    /// PostgreSQL at [`Options::url`], for several nodes on one database. A build without
    /// the feature `postgresql` refuses it in [`Options::check`].
    Postgresql,
}

/// Store options: the `[store]` section. Its limits are keys of the same section, declared
/// by [`Limits`]; `config` reads them into [`Options::limits`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Which backend runs.
    pub backend: BackendKind,
    /// RocksDB's block cache. 256 MiB keeps the hot mailbox indexes of a few hundred
    /// accounts in memory on a small VM.
    pub cache_bytes: usize,
    /// PostgreSQL: the database's URL (`postgresql://user@host:port/database?sslmode=...`).
    /// Keep the password out of it: PostgreSQL's `PGPASSWORD` or password file
    /// (`PGPASSFILE`, `~/.pgpass`) are read. Several hosts (`postgresql://u@db1,db2/hameau`):
    /// every node follows the primary after a failover (`postgres/hosts.rs`).
    pub url: DatabaseUrl,
    /// PostgreSQL: the schema Hameau's tables are in, created if missing. "hameau" keeps them
    /// apart from anything else in the database.
    pub schema: String,
    /// PostgreSQL: connections of one node for reads (2 to 1,000), and at most as many more
    /// for the rest (snapshots, uploads of large messages, the listener); besides, one for
    /// the committer and one holding the node's session. 16 reads at once serve a few
    /// hundred sessions.
    pub pool_connections: u32,
    /// PostgreSQL: how long a tenant's reads and writes wait for its move to another
    /// cluster to end (0 to 60,000 ms) before a temporary error (SMTP 451, IMAP
    /// `NO [UNAVAILABLE]`, HTTP 503). 5 s covers the move of a small commune's mail.
    pub move_wait_ms: u64,
    /// PostgreSQL: other database clusters holding tenants' mail, by name
    /// (`[store.clusters.NAME]`); this store is the control store, cluster `main`
    /// ([`placement`], docs/storage.md). None by default.
    pub clusters: std::collections::BTreeMap<String, ClusterOptions>,
    /// The limits, keys of the same `[store]` table.
    #[serde(skip)]
    pub limits: Limits,
    /// Where RocksDB keeps its files. Not a key: `config` sets `server.data_dir`/store.
    #[serde(skip)]
    pub path: PathBuf,
}

/// A database cluster holding tenants' mail: `[store.clusters.NAME]`. The limits are the
/// control store's.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterOptions {
    /// The cluster's database, as `store.url`.
    pub url: DatabaseUrl,
    /// The schema of Hameau's tables in it, as `store.schema`.
    pub schema: String,
    /// Connections of one node for reads, as `store.pool_connections`.
    pub pool_connections: u32,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        let main = Options::default();
        ClusterOptions { url: main.url, schema: main.schema, pool_connections: main.pool_connections }
    }
}

/// Every limit of the store, named: keys of `[store]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest key. 1 KiB is far above any key Hameau builds (ids and names), and small
    /// enough that a bug building keys from user input is caught early.
    pub key_bytes_max: usize,
    /// Largest value of a key. 1 MiB: values are records (summaries, indexes); message
    /// bodies go to the blob store.
    pub value_bytes_max: usize,
    /// Most operations in one batch. 10,000 lets a client move or flag thousands of
    /// messages in one command while keeping one commit's memory bounded.
    pub batch_ops_max: usize,
    /// Blobs are written and read in chunks of this size, so a large message is never held
    /// whole in memory more than once. 512 KiB: a typical message (under 100 KiB) is one
    /// chunk, written in the same commit as the records that point to it. A chunk is
    /// stored as one value: at most `value_bytes_max`.
    pub blob_chunk_bytes: usize,
    /// Largest blob. 256 MiB is well above any message size limit a mail server accepts.
    pub blob_bytes_max: u64,
    /// Most batches synced by one group commit. 1,024 bounds the memory and latency of
    /// one group; in practice groups are as large as the number of concurrent writers.
    /// A group is taken from the queue: at most `commit_queue_max`.
    pub commit_group_max: usize,
    /// Most batches waiting for the committer. Writers past this wait (back-pressure).
    /// 4,096: four groups.
    pub commit_queue_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: 1024,
            value_bytes_max: 1024 * 1024,
            batch_ops_max: 10_000,
            blob_chunk_bytes: 512 * 1024,
            blob_bytes_max: 256 * 1024 * 1024,
            commit_group_max: 1024,
            commit_queue_max: 4096,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::rocksdb("")
    }
}

impl Options {
    /// Options for a RocksDB store in `path` with default limits.
    pub fn rocksdb(path: impl Into<PathBuf>) -> Self {
        Options {
            backend: BackendKind::Rocksdb,
            cache_bytes: 256 * 1024 * 1024,
            url: DatabaseUrl::default(),
            schema: "hameau".into(),
            pool_connections: 16,
            move_wait_ms: 5000,
            clusters: Default::default(),
            limits: Limits::default(),
            path: path.into(),
        }
    }

    /// Options for a PostgreSQL store at `url` with default limits.
    pub fn postgresql(url: &str) -> Self {
        Options { backend: BackendKind::Postgresql, url: DatabaseUrl(url.into()), ..Options::default() }
    }

    /// The options of the cluster `name` of [`Options::clusters`]: a PostgreSQL store with
    /// this store's limits.
    pub fn cluster(&self, name: &str) -> Option<Options> {
        let cluster = self.clusters.get(name)?;
        Some(Options {
            backend: BackendKind::Postgresql,
            url: cluster.url.clone(),
            schema: cluster.schema.clone(),
            pool_connections: cluster.pool_connections,
            clusters: Default::default(),
            ..self.clone()
        })
    }

    /// Checks every key of `[store]`, the limits' included.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "move_wait_ms", self.move_wait_ms, 0, 60_000)?;
        if !self.clusters.is_empty() && self.backend != BackendKind::Postgresql {
            let problem = "tenants over several clusters need store.backend = \"postgresql\": with RocksDB, one machine holds everything";
            return Err(Problem::new(SECTION, "clusters", problem));
        }
        for name in self.clusters.keys() {
            placement::check_other_cluster_name(name).map_err(|problem| Problem::new(SECTION, "clusters", problem))?;
            // A cluster is checked as a store of its own; its problem names its own key:
            // store.clusters.NAME.url.
            let options = self.cluster(name).expect("a named cluster");
            options.check().map_err(|problem| Problem {
                key: format!("{SECTION}.clusters.{name}.{}", problem.key.rsplit('.').next().unwrap_or_default()),
                problem: problem.problem,
            })?;
        }
        range(SECTION, "cache_bytes", self.cache_bytes as u64, 1 << 20, 1 << 40)?;
        range(SECTION, "pool_connections", u64::from(self.pool_connections), 2, 1000)?;
        let schema_ok = self.schema.len() <= 63
            && self.schema.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
            && !self.schema.starts_with(|c: char| c.is_ascii_digit());
        if !schema_ok {
            let problem =
                format!("{:?} is not a schema name (lower-case letters, digits and '_', at most 63)", self.schema);
            return Err(Problem::new(SECTION, "schema", problem));
        }
        if self.backend == BackendKind::Postgresql {
            self.check_postgresql()?;
        }
        self.limits.check()
    }

    #[cfg(feature = "postgresql")]
    fn check_postgresql(&self) -> Result<(), Problem> {
        if self.url.0.is_empty() {
            return Err(Problem::new(SECTION, "url", "is needed with store.backend = \"postgresql\""));
        }
        match postgres::connect_options(self) {
            Ok(_) => Ok(()),
            Err(e) => Err(Problem::new(SECTION, "url", e.to_string())),
        }
    }

    #[cfg(not(feature = "postgresql"))]
    fn check_postgresql(&self) -> Result<(), Problem> {
        let problem = "\"postgresql\" is not in this build of Hameau (feature \"postgresql\" of hameau-store)";
        Err(Problem::new(SECTION, "backend", problem))
    }
}

/// What a storage backend implements. Callers never see it: they hold a [`Store`].
///
/// Every method is atomic with respect to [`Backend::commit`], and a commit is durable when
/// it returns `Ok`. Blob chunks are addressed by a location (the blob's hash for blobs
/// written in one commit, an upload id for blobs staged in several chunks).
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error>;
    /// The entries of `keys`, in their order. Not one consistent view: each key as
    /// [`Backend::get`] would read it at some moment of the call.
    async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>, Error>;
    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error>;
    async fn commit(&self, batch: Batch) -> Result<Committed, Error>;
    /// Writes one chunk of a staged upload, durably. Chunk 0 also registers the upload, so
    /// that an upload never committed is removed when the store next opens.
    async fn put_upload_chunk(&self, upload: &[u8; 16], idx: u32, data: &[u8]) -> Result<(), Error>;
    /// Removes a staged upload that will not be committed.
    async fn discard_upload(&self, upload: &[u8; 16], n_chunks: u32) -> Result<(), Error>;
    /// What removes the upload of a [`StagedBlob`] dropped without a commit.
    fn discarder(&self) -> Arc<dyn blob::Discard>;
    /// How many uploads are staged and not yet committed or discarded.
    async fn count_uploads(&self) -> Result<u64, Error>;
    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<blob::BlobMeta>, Error>;
    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error>;
    /// A consistent read view as of now (see [`Snapshot`]).
    async fn snapshot(&self) -> Result<Snapshot, Error>;
    /// Writes `load` as it is, durably, blob chunks of `chunk_bytes`.
    async fn load(&self, load: Load, chunk_bytes: usize) -> Result<(), Error>;
    async fn close(&self) -> Result<(), Error>;
    /// Whether other processes may use the same data while this one runs (PostgreSQL:
    /// several nodes); RocksDB's directory and the memory backend are one process's.
    fn shared(&self) -> bool {
        false
    }

    /// This open store's session: a number no other store open on the same data has
    /// (see [`Store::session`]).
    fn session(&self) -> u64;

    /// Of `sessions`, those that ended. A backend only one process uses has one live
    /// session, its own: every other one was a previous run's.
    async fn ended_sessions(&self, sessions: &[u64]) -> Result<Vec<u64>, Error> {
        let own = self.session();
        Ok(sessions.iter().copied().filter(|session| *session != own).collect())
    }

    /// What the backend hears of other processes' commits (PostgreSQL's `LISTEN`), taken
    /// once by the [`Store`] that opens it; `None` for a backend no other process writes.
    fn take_remote_changes(&self) -> Option<tokio::sync::mpsc::Receiver<changes::Remote>> {
        None
    }
}

/// Keys a backend reads in one call of [`Store::get_many`]: 1,024, so that one call does
/// not pin an unbounded set of values at once (a message's tokens are a few hundred).
pub const GET_MANY_GROUP: usize = 1024;

/// A handle on the store. Cheap to clone; every clone talks to the same backend and
/// shares one registry of watched counters ([`Store::watch`]).
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    limits: Limits,
    changes: Arc<changes::Changes>,
}

/// A [`Store`] held weakly (see [`Store::downgrade`]).
struct WeakStore {
    backend: std::sync::Weak<dyn Backend>,
    limits: Limits,
    changes: std::sync::Weak<changes::Changes>,
}

impl WeakStore {
    fn upgrade(&self) -> Option<Store> {
        let (backend, changes) = (self.backend.upgrade()?, self.changes.upgrade()?);
        Some(Store { backend, limits: self.limits.clone(), changes })
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store the options name. Uploads staged but never
    /// committed before a crash are removed here.
    pub async fn open(options: &Options) -> Result<Store, Error> {
        options.check().map_err(|problem| Error::InvalidOptions(problem.to_string()))?;
        let backend = match options.backend {
            BackendKind::Rocksdb => open_rocksdb(options).await?,
            BackendKind::Postgresql => open_postgresql(options).await?,
        };
        Ok(Store::new(backend, options.limits.clone()))
    }

    fn new(backend: Arc<dyn Backend>, limits: Limits) -> Store {
        let remote = backend.take_remote_changes();
        let store = Store { backend, limits, changes: Arc::default() };
        if let Some(remote) = remote {
            tokio::spawn(changes::follow_remote(store.downgrade(), remote));
        }
        store
    }

    /// A handle that does not keep the store open: the task that follows other processes'
    /// commits holds one, so that it ends with the last [`Store`].
    fn downgrade(&self) -> WeakStore {
        WeakStore {
            backend: Arc::downgrade(&self.backend),
            limits: self.limits.clone(),
            changes: Arc::downgrade(&self.changes),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether other processes may use the same data while this one runs: several nodes on
    /// PostgreSQL. On a store that is not shared, whatever a previous run left under way
    /// (a lease, say) was that run's, which is over.
    pub fn is_shared(&self) -> bool {
        self.backend.shared()
    }

    /// This open store's session: a number that no other store open on the same data has
    /// while this one is open, and that a later open does not take again while records may
    /// still name it. What a process leaves under way in the data (a queue lease) names its
    /// session, so that another process can tell, with [`Store::ended_sessions`], whether
    /// the process that left it is gone.
    pub fn session(&self) -> u64 {
        self.backend.session()
    }

    /// Of `sessions`, those that ended: their store was closed, or the process that had it
    /// open died (on PostgreSQL, its connection to the database ended). On RocksDB and in
    /// memory, every session but this store's own.
    pub async fn ended_sessions(&self, sessions: &[u64]) -> Result<Vec<u64>, Error> {
        self.backend.ended_sessions(sessions).await
    }

    /// The value and version of `key`, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.backend.get(key).await
    }

    /// The entries of `keys` (`None` for a missing one), in the order of `keys`: one call
    /// for many point reads, as the classifier reads a message's tokens. RocksDB looks them
    /// up together (its batched MultiGet: one pass over the memtables and each file's
    /// filters instead of one per key); a database server answers them in one round trip.
    ///
    /// The keys are the caller's, already in memory: the backend reads them in groups of
    /// [`GET_MANY_GROUP`]. Each key is read as [`Store::get`] would read it at some moment of
    /// the call, not all at one instant (a [`Snapshot`] gives that).
    pub async fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Entry>>, Error> {
        let mut entries = Vec::with_capacity(keys.len());
        for group in keys.chunks(GET_MANY_GROUP) {
            entries.extend(self.backend.get_many(group).await?);
        }
        Ok(entries)
    }

    /// The entries in the scan's range, in its direction, at most its limit.
    /// The entries come from one consistent snapshot.
    pub async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.backend.scan(scan).await
    }

    /// Commits `batch` atomically and durably, or not at all. Fails with
    /// [`Error::Conflict`] when one of its expectations does not hold.
    ///
    /// Once it succeeded, the receivers of [`Store::watch`] of each counter it added to are
    /// sent the counter's value after it. A commit whose caller stops waiting for it (its
    /// task cancelled) may be written without telling them: they learn the counter's value
    /// with the next commit that adds to it.
    pub async fn commit(&self, batch: Batch) -> Result<Committed, Error> {
        batch.check(&self.limits)?;
        let watched = self.changes.before_commit(&batch);
        let committed = self.backend.commit(batch).await?;
        let made_meanwhile = self.changes.after_commit(watched, &committed);
        self.publish_stored(made_meanwhile).await;
        Ok(committed)
    }

    /// A receiver of the counter `key`'s value, as the last commit that added to it left
    /// it: it starts at the value stored now (0 at version 0 if the counter was never
    /// written), marked seen, and is sent the value after each commit that adds to the
    /// counter ([`Batch::add`], [`Batch::add_at_most`]), through this handle or any of its
    /// clones. Wait with `changed()`, then read what changed: every commit that a read made
    /// after this call returns does not see is notified.
    ///
    /// Semantics, for the receivers:
    ///
    /// - a value is replaced only by one of a later commit (a greater version): commits that
    ///   finish out of order never move a receiver back to an older commit;
    /// - the value itself goes down when a commit adds a negative delta: only a counter that
    ///   only grows (a modseq, an id sequence) gives values that only grow;
    /// - values may be skipped: a receiver sees the last one when it looks;
    /// - a counter deleted by [`Batch::delete`] or rewritten by [`Batch::set`] is not
    ///   notified: counters are only added to.
    ///
    /// The registry is this process's: commits of other processes on the same data reach
    /// it only through a backend that hears them (PostgreSQL's `LISTEN/NOTIFY`, later).
    /// Every receiver of one key shares one sender; it is dropped once its receivers are.
    /// Fails if `key` is over `key_bytes_max`, or not a counter.
    pub async fn watch(&self, key: &[u8]) -> Result<tokio::sync::watch::Receiver<CounterValue>, Error> {
        let key_max = self.limits.key_bytes_max;
        if key.len() > key_max {
            let got = key.len() as u64;
            return Err(Error::Limit { what: "key length", limit_name: "key_bytes_max", max: key_max as u64, got });
        }
        let (mut receiver, made) = self.changes.register(key);
        if let Some(slot) = made {
            slot.publish(self.counter_value(key).await?);
            receiver.borrow_and_update();
        }
        Ok(receiver)
    }

    /// Reads each slot's counter from the store and publishes it (a slot made while a
    /// commit was under way, or every slot after a load).
    async fn publish_stored(&self, slots: Vec<Arc<changes::Slot>>) {
        for slot in slots {
            match self.counter_value(slot.key()).await {
                Ok(value) => slot.publish(value),
                Err(e) => tracing::warn!(error = %e, "store: a watched counter could not be read"),
            }
        }
    }

    /// The counter `key` with the version of the commit that last wrote it.
    async fn counter_value(&self, key: &[u8]) -> Result<CounterValue, Error> {
        match self.get(key).await? {
            None => Ok(CounterValue::default()),
            Some(entry) => {
                Ok(CounterValue { version: entry.version, value: batch::decode_counter(&entry.key, &entry.value)? })
            }
        }
    }

    /// Adds `delta` to the counter `key` in a commit of its own and returns the new value.
    /// A value returned once is never returned again, even after a crash.
    pub async fn next_value(&self, key: &[u8], delta: i64) -> Result<i64, Error> {
        let mut batch = Batch::new();
        batch.add(key, delta);
        let committed = self.commit(batch).await?;
        Ok(committed.counters[0])
    }

    /// Reads the counter `key` (0 if it does not exist).
    pub async fn counter(&self, key: &[u8]) -> Result<i64, Error> {
        match self.get(key).await? {
            None => Ok(0),
            Some(entry) => batch::decode_counter(&entry.key, &entry.value),
        }
    }

    /// Stages a blob from bytes already in memory. Blobs up to one chunk are kept in the
    /// [`StagedBlob`] and written by the commit that acquires them.
    pub async fn stage_blob_bytes(&self, bytes: impl AsRef<[u8]>) -> Result<StagedBlob, Error> {
        blob::stage_bytes(self, bytes.as_ref(), None).await
    }

    /// [`Store::stage_blob_bytes`] for a caller that hashed the bytes already: `hash` must
    /// be `BlobHash::of(bytes)` (checked in debug builds). Saves hashing a message twice.
    pub async fn stage_blob_bytes_hashed(&self, bytes: impl AsRef<[u8]>, hash: BlobHash) -> Result<StagedBlob, Error> {
        blob::stage_bytes(self, bytes.as_ref(), Some(hash)).await
    }

    /// Stages a blob read from `reader`, one chunk at a time.
    pub async fn stage_blob(
        &self,
        reader: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<StagedBlob, Error> {
        blob::stage_reader(self, reader).await
    }

    /// Drops a staged blob that will not be committed, and waits until its upload is
    /// removed. (Dropping it does the same without waiting.)
    pub async fn discard_blob(&self, staged: StagedBlob) -> Result<(), Error> {
        blob::discard(self, staged).await
    }

    /// How many blob uploads are staged and not yet committed or discarded: zero when no
    /// ingest is under way (tests check that failures leave nothing behind).
    pub async fn staged_uploads(&self) -> Result<u64, Error> {
        self.backend.count_uploads().await
    }

    /// The size of a stored blob, if it exists.
    pub async fn blob_size(&self, hash: &BlobHash) -> Result<Option<u64>, Error> {
        Ok(self.backend.blob_meta(hash).await?.map(|meta| meta.size))
    }

    /// The whole content of a stored blob.
    pub async fn read_blob(&self, hash: &BlobHash) -> Result<Option<Vec<u8>>, Error> {
        let Some(mut reader) = self.open_blob(hash).await? else { return Ok(None) };
        let mut out = Vec::with_capacity(reader.size() as usize);
        while let Some(chunk) = reader.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// A reader that yields a stored blob chunk by chunk.
    pub async fn open_blob(&self, hash: &BlobHash) -> Result<Option<BlobReader>, Error> {
        let Some(meta) = self.backend.blob_meta(hash).await? else { return Ok(None) };
        Ok(Some(BlobReader::new(self.clone(), *hash, meta)))
    }

    /// A consistent read view of the whole store: every commit that returned before this
    /// call is in it, none that began after, and no commit partly (see [`Snapshot`]).
    pub async fn snapshot(&self) -> Result<Snapshot, Error> {
        self.backend.snapshot().await
    }

    /// Writes records as a snapshot showed them (restore): keys with their values and
    /// versions, blobs with their reference counts, and the last version raised to
    /// [`Load::version_at_least`]. Only for a store being restored, before anything else
    /// uses it: it overwrites what is there and checks no expectation. Each key and value
    /// is held to the limits as a commit's would be.
    ///
    /// Watched counters are read again after the load, and their receivers told when the
    /// load wrote them (a loaded record keeps its version: a receiver already holding a
    /// later one keeps it; on the empty store a restore is for, receivers hold version 0).
    pub async fn load(&self, load: Load) -> Result<(), Error> {
        for entry in &load.entries {
            let (key_max, value_max) = (self.limits.key_bytes_max, self.limits.value_bytes_max);
            if entry.key.len() > key_max {
                let got = entry.key.len() as u64;
                return Err(Error::Limit { what: "key length", limit_name: "key_bytes_max", max: key_max as u64, got });
            }
            if entry.value.len() > value_max {
                let got = entry.value.len() as u64;
                let max = value_max as u64;
                return Err(Error::Limit { what: "value length", limit_name: "value_bytes_max", max, got });
            }
        }
        for blob in &load.blobs {
            let got = blob.content.len() as u64;
            if got > self.limits.blob_bytes_max {
                let max = self.limits.blob_bytes_max;
                return Err(Error::Limit { what: "blob size", limit_name: "blob_bytes_max", max, got });
            }
        }
        self.backend.load(load, self.limits.blob_chunk_bytes).await?;
        self.publish_stored(self.changes.made_after(0)).await;
        Ok(())
    }

    /// Stops the committer after the batches already queued and closes the backend.
    /// Every later call fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        self.backend.close().await
    }
}

#[cfg(feature = "rocksdb")]
async fn open_rocksdb(options: &Options) -> Result<Arc<dyn Backend>, Error> {
    let options = options.clone();
    let backend = tokio::task::spawn_blocking(move || rocks::RocksBackend::open(&options.path, &options))
        .await
        .map_err(|e| Error::Backend(format!("opening the store: {e}")))??;
    Ok(Arc::new(backend))
}

#[cfg(feature = "postgresql")]
async fn open_postgresql(options: &Options) -> Result<Arc<dyn Backend>, Error> {
    Ok(Arc::new(postgres::PgBackend::open(options).await?))
}

#[cfg(not(feature = "postgresql"))]
async fn open_postgresql(_options: &Options) -> Result<Arc<dyn Backend>, Error> {
    unreachable!("refused by Options::check")
}

/// A build without RocksDB (the tests of crates above the store, on the memory backend)
/// cannot open a server's store.
#[cfg(not(feature = "rocksdb"))]
async fn open_rocksdb(_options: &Options) -> Result<Arc<dyn Backend>, Error> {
    let problem = "this build of Hameau has no RocksDB backend (feature \"rocksdb\" of hameau-store)";
    Err(Error::InvalidOptions(problem.into()))
}

impl Limits {
    /// Checks each limit's range and the relationships between them (STYLE.md: assert them
    /// at start). The ranges also keep `blob_bytes_max / blob_chunk_bytes` (at most
    /// 2^40 / 2^12 chunks) within the 32 bits of a chunk number.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "key_bytes_max", self.key_bytes_max as u64, 64, 64 * 1024)?;
        range(SECTION, "value_bytes_max", self.value_bytes_max as u64, 4096, 64 << 20)?;
        range(SECTION, "batch_ops_max", self.batch_ops_max as u64, 16, 1_000_000)?;
        range(SECTION, "blob_chunk_bytes", self.blob_chunk_bytes as u64, 4096, 64 << 20)?;
        range(SECTION, "blob_bytes_max", self.blob_bytes_max, 64 * 1024, 1 << 40)?;
        range(SECTION, "commit_group_max", self.commit_group_max as u64, 1, 65_536)?;
        range(SECTION, "commit_queue_max", self.commit_queue_max as u64, 1, 1_000_000)?;
        if self.blob_chunk_bytes > self.value_bytes_max {
            let problem = format!(
                "{} is larger than store.value_bytes_max ({}): a chunk is stored as one value",
                self.blob_chunk_bytes, self.value_bytes_max
            );
            return Err(Problem::new(SECTION, "blob_chunk_bytes", problem));
        }
        if self.blob_chunk_bytes as u64 > self.blob_bytes_max {
            let problem =
                format!("{} is larger than store.blob_bytes_max ({})", self.blob_chunk_bytes, self.blob_bytes_max);
            return Err(Problem::new(SECTION, "blob_chunk_bytes", problem));
        }
        if self.commit_group_max > self.commit_queue_max {
            let problem = format!(
                "{} is larger than store.commit_queue_max ({}): a group is taken from the queue",
                self.commit_group_max, self.commit_queue_max
            );
            return Err(Problem::new(SECTION, "commit_group_max", problem));
        }
        debug_assert!(self.blob_bytes_max / self.blob_chunk_bytes as u64 <= u64::from(u32::MAX));
        Ok(())
    }
}

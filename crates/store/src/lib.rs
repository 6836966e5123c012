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
//! A commit returns only after its data is durable (synced to disk). Nothing above this
//! crate knows which backend runs: the embedded RocksDB backend today, PostgreSQL later.
//! Every backend passes the same [`conformance`] suite.

mod batch;
mod blob;
pub mod conformance;
mod error;
mod key;
mod rocks;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

pub use batch::{Batch, CounterRef, Expect, Patch, PatchTarget};
pub use blob::{BlobHash, BlobReader, StagedBlob};
pub use error::Error;
pub use key::{Direction, Scan};

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

/// Which backend to open.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// The embedded default: RocksDB in a directory.
    RocksDb { path: PathBuf },
}

/// Store options and limits. `config` fills them; the defaults say why they are what they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub backend: BackendKind,
    pub limits: Limits,
    /// RocksDB's block cache. 256 MiB keeps the hot mailbox indexes of a few hundred
    /// accounts in memory on a small VM.
    pub cache_bytes: usize,
}

/// Every limit of the store, named.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// chunk, written in the same commit as the records that point to it.
    pub blob_chunk_bytes: usize,
    /// Largest blob. 256 MiB is well above any message size limit a mail server accepts.
    pub blob_bytes_max: u64,
    /// Most batches synced by one group commit. 1,024 bounds the memory and latency of
    /// one group; in practice groups are as large as the number of concurrent writers.
    pub commit_group_max: usize,
    /// Most batches waiting for the committer. Writers past this wait (back-pressure).
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

impl Options {
    /// Options for a RocksDB store in `path` with default limits.
    pub fn rocksdb(path: impl Into<PathBuf>) -> Self {
        Options {
            backend: BackendKind::RocksDb { path: path.into() },
            limits: Limits::default(),
            cache_bytes: 256 * 1024 * 1024,
        }
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
    async fn close(&self) -> Result<(), Error>;
}

/// A handle on the store. Cheap to clone; every clone talks to the same backend.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    limits: Limits,
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
        options.limits.check()?;
        let backend: Arc<dyn Backend> = match &options.backend {
            BackendKind::RocksDb { path } => {
                let path = path.clone();
                let options = options.clone();
                let backend = tokio::task::spawn_blocking(move || rocks::RocksBackend::open(&path, &options))
                    .await
                    .map_err(|e| Error::Backend(format!("opening the store: {e}")))??;
                Arc::new(backend)
            }
        };
        Ok(Store { backend, limits: options.limits.clone() })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The value and version of `key`, if it exists.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.backend.get(key).await
    }

    /// The entries in the scan's range, in its direction, at most its limit.
    /// The entries come from one consistent snapshot.
    pub async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.backend.scan(scan).await
    }

    /// Commits `batch` atomically and durably, or not at all. Fails with
    /// [`Error::Conflict`] when one of its expectations does not hold.
    pub async fn commit(&self, batch: Batch) -> Result<Committed, Error> {
        batch.check(&self.limits)?;
        self.backend.commit(batch).await
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

    /// Stops the committer after the batches already queued and closes the backend.
    /// Every later call fails with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        self.backend.close().await
    }
}

impl Limits {
    /// Checks the relationships between limits (STYLE.md: assert them at start).
    pub fn check(&self) -> Result<(), Error> {
        let problem = if self.key_bytes_max == 0 {
            Some("key_bytes_max must be at least 1")
        } else if self.blob_chunk_bytes < 4096 {
            Some("blob_chunk_bytes must be at least 4096")
        } else if self.blob_chunk_bytes > self.value_bytes_max.max(64 * 1024 * 1024) {
            Some("blob_chunk_bytes must not exceed 64 MiB")
        } else if (self.blob_bytes_max / self.blob_chunk_bytes as u64) > u32::MAX as u64 {
            Some("blob_bytes_max / blob_chunk_bytes must fit in 32 bits")
        } else if self.batch_ops_max == 0 || self.commit_group_max == 0 || self.commit_queue_max == 0 {
            Some("batch_ops_max, commit_group_max and commit_queue_max must be at least 1")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(Error::InvalidOptions(problem.to_string())),
            None => Ok(()),
        }
    }
}

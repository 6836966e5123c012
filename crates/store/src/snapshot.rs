//! A consistent read view of the whole store ([`Snapshot`]), and the one write path that
//! bypasses commits ([`Load`]): both exist for backup and restore.
//!
//! A snapshot sees exactly the commits that returned before it was taken and none after:
//! every message acknowledged before a backup began is in it, and no commit is half in it.
//! RocksDB implements it with a RocksDB snapshot read by a thread of its own, PostgreSQL
//! with a `REPEATABLE READ, READ ONLY` transaction on a connection of its own.

use std::sync::Arc;

use crate::blob::BlobMeta;
use crate::{BlobHash, Entry, Error, Scan, Version};

/// A consistent read view of the store, as of the moment [`crate::Store::snapshot`] returned.
/// Cheap to clone; the view is released when the last clone is dropped. While it lives, the
/// backend keeps what it shows (RocksDB: older versions survive compaction), so hold it only
/// for the time of a backup.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) backend: Arc<dyn SnapshotBackend>,
    pub(crate) version: Version,
}

/// Blob records listed by one call of [`Snapshot::blobs`] at most, whatever the caller asks:
/// one answer's memory. 10,000 records are under a megabyte.
const BLOBS_PAGE_MAX: usize = 10_000;

/// One stored blob as a snapshot sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub hash: BlobHash,
    /// Size in bytes of the content.
    pub size: u64,
    /// How many references the stored records hold on it ([`crate::Batch::blob_acquire`]).
    pub refcount: u64,
}

/// What a backend implements to serve a [`Snapshot`].
#[async_trait::async_trait]
pub(crate) trait SnapshotBackend: Send + Sync + 'static {
    async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error>;
    async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error>;
    /// Blobs in hash order, strictly after `after` if given, at most `limit`.
    async fn blobs(&self, after: Option<BlobHash>, limit: usize) -> Result<Vec<(BlobHash, BlobMeta)>, Error>;
    async fn blob_meta(&self, hash: &BlobHash) -> Result<Option<BlobMeta>, Error>;
    async fn blob_chunk(&self, location: &[u8], idx: u32) -> Result<Option<Vec<u8>>, Error>;
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("version", &self.version).finish_non_exhaustive()
    }
}

impl Snapshot {
    /// The version of the last commit the snapshot holds: every key it shows has a version
    /// at most this, and a later backup's changes are the keys with a greater one.
    pub fn version(&self) -> Version {
        self.version
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Entry>, Error> {
        self.backend.get(key).await
    }

    /// The entries in the scan's range, as [`crate::Store::scan`], from the snapshot.
    pub async fn scan(&self, scan: &Scan) -> Result<Vec<Entry>, Error> {
        self.backend.scan(scan).await
    }

    /// The stored blobs in hash order, strictly after `after`, at most `limit` and at most
    /// 10,000 (to page on: a page ends the listing only when empty).
    pub async fn blobs(&self, after: Option<&BlobHash>, limit: usize) -> Result<Vec<BlobInfo>, Error> {
        let page = self.backend.blobs(after.copied(), limit.min(BLOBS_PAGE_MAX)).await?;
        Ok(page.into_iter().map(|(hash, meta)| BlobInfo { hash, size: meta.size, refcount: meta.refcount }).collect())
    }

    /// The whole content of a blob, if the snapshot holds it. Blobs are bounded by
    /// `store.blob_bytes_max`.
    pub async fn read_blob(&self, hash: &BlobHash) -> Result<Option<Vec<u8>>, Error> {
        let Some(meta) = self.backend.blob_meta(hash).await? else { return Ok(None) };
        let mut out = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        for idx in 0..meta.n_chunks {
            let chunk = self.backend.blob_chunk(&meta.location, idx).await?;
            let chunk = chunk.ok_or_else(|| Error::Corrupt(format!("chunk {idx} of blob {hash} is missing")))?;
            out.extend_from_slice(&chunk);
        }
        if out.len() as u64 != meta.size {
            return Err(Error::Corrupt(format!("blob {hash} has {} bytes, its record says {}", out.len(), meta.size)));
        }
        Ok(Some(out))
    }
}

/// Records written as they are, with their versions, by [`crate::Store::load`]: a restore
/// puts back what a snapshot showed. Not a commit: no expectation, no counter arithmetic.
#[derive(Debug, Default)]
pub struct Load {
    /// Keys with their values and versions.
    pub entries: Vec<Entry>,
    /// Blobs with their reference counts and content.
    pub blobs: Vec<LoadBlob>,
    /// The store's last version becomes at least this (and at least every entry's), so that
    /// versions keep growing after a restore.
    pub version_at_least: Version,
}

/// One blob of a [`Load`].
#[derive(Debug)]
pub struct LoadBlob {
    pub refcount: u64,
    pub content: Vec<u8>,
}

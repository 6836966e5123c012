//! The content-addressed blob store: blobs are named by the SHA-256 of their content,
//! stored once whatever the number of references, and deleted with their last reference.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::{Error, Store};

/// The SHA-256 of a blob's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash(pub [u8; 32]);

impl BlobHash {
    pub fn of(content: &[u8]) -> BlobHash {
        BlobHash(Sha256::digest(content).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<BlobHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(BlobHash(bytes))
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlobHash({})", self.to_hex())
    }
}

/// A blob ready to be acquired by a batch ([`crate::Batch::blob_acquire`]). A blob of one
/// chunk lives here in memory; a larger one is already written to the store as an upload,
/// which a commit turns into the blob (or drops, if the content was already stored).
///
/// An upload is never left behind: a staged blob dropped without being committed (the
/// batch holding it failed, or was never committed, or the caller gave up) removes its
/// upload from the store in the background. Nothing has to remember to discard it.
#[derive(Debug)]
pub struct StagedBlob {
    pub(crate) hash: BlobHash,
    pub(crate) size: u64,
    pub(crate) data: Staged,
}

#[derive(Debug)]
pub(crate) enum Staged {
    Inline(Vec<u8>),
    Upload(Upload),
}

/// A staged upload in the store; removed when dropped unless a commit took it
/// ([`Upload::claimed`]).
pub(crate) struct Upload {
    pub(crate) id: [u8; 16],
    pub(crate) n_chunks: u32,
    discarder: Option<Arc<dyn Discard>>,
}

/// Removes uploads that will never be committed, without waiting (from a `Drop`).
pub(crate) trait Discard: Send + Sync + 'static {
    fn discard_later(&self, upload: [u8; 16], n_chunks: u32);
}

/// Runs `work` off the caller's task, for a [`Discard`]: on the runtime's blocking threads
/// when there is a runtime (a drop must not wait for the disk, nor for a lock the dropping
/// task may hold: a commit drops the uploads of a batch that fails), else at once.
pub(crate) fn run_detached(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => drop(handle.spawn_blocking(work)),
        Err(_) => work(),
    }
}

impl Upload {
    pub(crate) fn new(id: [u8; 16], n_chunks: u32, discarder: Arc<dyn Discard>) -> Upload {
        Upload { id, n_chunks, discarder: Some(discarder) }
    }

    /// A commit made this upload part of a blob, or removed it itself: nothing to do on drop.
    pub(crate) fn claimed(mut self) {
        self.discarder = None;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(discarder) = self.discarder.take() {
            discarder.discard_later(self.id, self.n_chunks);
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("id", &hex::encode(self.id)).field("n_chunks", &self.n_chunks).finish()
    }
}

impl StagedBlob {
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

/// What the store keeps about a blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BlobMeta {
    pub refcount: u64,
    pub size: u64,
    pub n_chunks: u32,
    /// Where the chunks are: the hash for blobs written in one commit, the upload id else.
    pub location: Vec<u8>,
}

impl BlobMeta {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.location.len());
        out.extend_from_slice(&self.refcount.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.n_chunks.to_be_bytes());
        out.extend_from_slice(&self.location);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<BlobMeta, Error> {
        if bytes.len() < 20 {
            return Err(Error::Corrupt(format!("blob record of {} bytes", bytes.len())));
        }
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        Ok(BlobMeta {
            refcount: u64_at(0),
            size: u64_at(8),
            n_chunks: u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")),
            location: bytes[20..].to_vec(),
        })
    }
}

/// Stages `bytes`; `hash`, when the caller has it already, is `BlobHash::of(bytes)`.
pub(crate) async fn stage_bytes(store: &Store, bytes: &[u8], hash: Option<BlobHash>) -> Result<StagedBlob, Error> {
    let limits = store.limits();
    check_size(bytes.len() as u64, limits.blob_bytes_max)?;
    debug_assert!(hash.is_none_or(|hash| hash == BlobHash::of(bytes)), "a staged blob's hash is its content's");
    let hash = hash.unwrap_or_else(|| BlobHash::of(bytes));
    let size = bytes.len() as u64;
    if bytes.len() <= limits.blob_chunk_bytes {
        return Ok(StagedBlob { hash, size, data: Staged::Inline(bytes.to_vec()) });
    }
    // The guard exists before the first chunk: a failure or a cancelled task at any point
    // removes what was written.
    let mut upload = Upload::new(rand::random(), 0, store.backend.discarder());
    for chunk in bytes.chunks(limits.blob_chunk_bytes) {
        upload.n_chunks += 1;
        store.backend.put_upload_chunk(&upload.id, upload.n_chunks - 1, chunk).await?;
    }
    Ok(StagedBlob { hash, size, data: Staged::Upload(upload) })
}

pub(crate) async fn stage_reader(
    store: &Store,
    reader: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<StagedBlob, Error> {
    let limits = store.limits().clone();
    let first = read_chunk(reader, limits.blob_chunk_bytes).await?;
    if first.len() < limits.blob_chunk_bytes {
        return stage_bytes(store, &first, None).await;
    }
    let mut upload = Upload::new(rand::random(), 0, store.backend.discarder());
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut chunk = first;
    while !chunk.is_empty() {
        size += chunk.len() as u64;
        check_size(size, limits.blob_bytes_max)?;
        hasher.update(&chunk);
        upload.n_chunks += 1;
        store.backend.put_upload_chunk(&upload.id, upload.n_chunks - 1, &chunk).await?;
        chunk = read_chunk(reader, limits.blob_chunk_bytes).await?;
    }
    let hash = BlobHash(hasher.finalize().into());
    Ok(StagedBlob { hash, size, data: Staged::Upload(upload) })
}

pub(crate) async fn discard(store: &Store, staged: StagedBlob) -> Result<(), Error> {
    match staged.data {
        Staged::Inline(_) => Ok(()),
        Staged::Upload(upload) => {
            let (id, n_chunks) = (upload.id, upload.n_chunks);
            upload.claimed();
            store.backend.discard_upload(&id, n_chunks).await
        }
    }
}

/// Reads until `chunk_bytes` bytes or the end of the input.
async fn read_chunk(reader: &mut (dyn AsyncRead + Unpin + Send), chunk_bytes: usize) -> Result<Vec<u8>, Error> {
    let mut chunk = Vec::with_capacity(chunk_bytes);
    let mut limited = reader.take(chunk_bytes as u64);
    limited.read_to_end(&mut chunk).await?;
    Ok(chunk)
}

fn check_size(size: u64, max: u64) -> Result<(), Error> {
    if size > max {
        return Err(Error::Limit { what: "blob size", limit_name: "blob_bytes_max", max, got: size });
    }
    Ok(())
}

/// Yields a stored blob chunk by chunk; only one chunk is in memory at a time.
pub struct BlobReader {
    store: Store,
    hash: BlobHash,
    meta: BlobMeta,
    next_idx: u32,
}

impl BlobReader {
    pub(crate) fn new(store: Store, hash: BlobHash, meta: BlobMeta) -> BlobReader {
        BlobReader { store, hash, meta, next_idx: 0 }
    }

    pub fn size(&self) -> u64 {
        self.meta.size
    }

    /// The next chunk, or `None` at the end.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Error> {
        if self.next_idx >= self.meta.n_chunks {
            return Ok(None);
        }
        let chunk = self.store.backend.blob_chunk(&self.meta.location, self.next_idx).await?;
        let Some(chunk) = chunk else {
            return Err(Error::Corrupt(format!("chunk {} of blob {} is missing", self.next_idx, self.hash)));
        };
        self.next_idx += 1;
        Ok(Some(chunk))
    }
}

//! The content-addressed blob store: blobs are named by the SHA-256 of their content,
//! stored once whatever the number of references, and deleted with their last reference.

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
#[derive(Debug)]
pub struct StagedBlob {
    pub(crate) hash: BlobHash,
    pub(crate) size: u64,
    pub(crate) data: Staged,
}

#[derive(Debug)]
pub(crate) enum Staged {
    Inline(Vec<u8>),
    Upload { id: [u8; 16], n_chunks: u32 },
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

pub(crate) async fn stage_bytes(store: &Store, bytes: Vec<u8>) -> Result<StagedBlob, Error> {
    let limits = store.limits();
    check_size(bytes.len() as u64, limits.blob_bytes_max)?;
    let hash = BlobHash::of(&bytes);
    let size = bytes.len() as u64;
    if bytes.len() <= limits.blob_chunk_bytes {
        return Ok(StagedBlob { hash, size, data: Staged::Inline(bytes) });
    }
    let id: [u8; 16] = rand::random();
    let mut n_chunks = 0u32;
    for chunk in bytes.chunks(limits.blob_chunk_bytes) {
        if let Err(e) = store.backend.put_upload_chunk(&id, n_chunks, chunk).await {
            let _ = store.backend.discard_upload(&id, n_chunks + 1).await;
            return Err(e);
        }
        n_chunks += 1;
    }
    Ok(StagedBlob { hash, size, data: Staged::Upload { id, n_chunks } })
}

pub(crate) async fn stage_reader(
    store: &Store,
    reader: &mut (dyn AsyncRead + Unpin + Send),
) -> Result<StagedBlob, Error> {
    let limits = store.limits().clone();
    let first = read_chunk(reader, limits.blob_chunk_bytes).await?;
    if first.len() < limits.blob_chunk_bytes {
        return stage_bytes(store, first).await;
    }
    let id: [u8; 16] = rand::random();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut n_chunks = 0u32;
    let mut chunk = first;
    let res = loop {
        if chunk.is_empty() {
            break Ok(());
        }
        size += chunk.len() as u64;
        if let Err(e) = check_size(size, limits.blob_bytes_max) {
            break Err(e);
        }
        hasher.update(&chunk);
        if let Err(e) = store.backend.put_upload_chunk(&id, n_chunks, &chunk).await {
            break Err(e);
        }
        n_chunks += 1;
        chunk = match read_chunk(reader, limits.blob_chunk_bytes).await {
            Ok(chunk) => chunk,
            Err(e) => break Err(e),
        };
    };
    if let Err(e) = res {
        let _ = store.backend.discard_upload(&id, n_chunks + 1).await;
        return Err(e);
    }
    let hash = BlobHash(hasher.finalize().into());
    Ok(StagedBlob { hash, size, data: Staged::Upload { id, n_chunks } })
}

pub(crate) async fn discard(store: &Store, staged: StagedBlob) -> Result<(), Error> {
    match staged.data {
        Staged::Inline(_) => Ok(()),
        Staged::Upload { id, n_chunks } => store.backend.discard_upload(&id, n_chunks).await,
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

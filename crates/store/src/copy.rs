//! Copying a whole store into another, of any backend (`hameau migrate-store`: a RocksDB
//! installation moved to PostgreSQL, or back), and the digest that proves the copy whole.
//!
//! The copy reads one [`Snapshot`] of the source and writes it into the destination with
//! [`Store::load`], in loads of bounded size: every key with its value and version, every
//! blob with its reference count, and the last version. The destination must be empty.
//! Then the destination is read back whole: its [`Digest`] (counts, and SHA-256 over every
//! key, value and version, and over every blob's hash and reference count) must equal the
//! source's, and every blob's content must hash to its name.

use sha2::{Digest as _, Sha256};

use crate::{BlobHash, Entry, Error, Load, LoadBlob, Scan, Snapshot, Store, Version};

/// Entries read by one page of the copy and of a digest.
const ENTRIES_PAGE: usize = 512;

/// Blob records listed by one page.
const BLOBS_PAGE: usize = 256;

/// A load is written once it holds this many bytes of values or blob contents, or
/// [`LOAD_ITEMS_MAX`] entries or blobs: the copy's memory stays near this, whatever the
/// store's size.
const LOAD_BYTES_MAX: usize = 32 << 20;
const LOAD_ITEMS_MAX: usize = 2000;

/// What a store holds, summed so that two stores can be compared: equal digests mean the
/// same keys with the same values and versions, and the same blobs with the same reference
/// counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Digest {
    /// The last version of the snapshot read.
    pub version: Version,
    pub keys: u64,
    /// SHA-256 (hex) over every key, value and version in key order, each length-prefixed.
    pub keys_sha256: String,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// SHA-256 (hex) over every blob's hash, size and reference count in hash order.
    pub blobs_sha256: String,
}

/// Folds records into a [`Digest`].
#[derive(Default)]
struct Digester {
    keys: u64,
    keys_hash: Sha256,
    blobs: u64,
    blob_bytes: u64,
    blobs_hash: Sha256,
}

impl Digester {
    fn entry(&mut self, entry: &Entry) {
        self.keys += 1;
        for part in [entry.key.as_slice(), entry.value.as_slice()] {
            self.keys_hash.update((part.len() as u64).to_be_bytes());
            self.keys_hash.update(part);
        }
        self.keys_hash.update(entry.version.to_be_bytes());
    }

    fn blob(&mut self, hash: &BlobHash, size: u64, refcount: u64) {
        self.blobs += 1;
        self.blob_bytes += size;
        self.blobs_hash.update(hash.0);
        self.blobs_hash.update(size.to_be_bytes());
        self.blobs_hash.update(refcount.to_be_bytes());
    }

    fn finish(self, version: Version) -> Digest {
        Digest {
            version,
            keys: self.keys,
            keys_sha256: hex::encode(self.keys_hash.finalize()),
            blobs: self.blobs,
            blob_bytes: self.blob_bytes,
            blobs_sha256: hex::encode(self.blobs_hash.finalize()),
        }
    }
}

/// Where a copy is: what it wrote so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub keys: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// The copy is reading the destination back to check it.
    pub verifying: bool,
}

/// Copies every record of `from` into `to`, which must be empty, then checks the copy:
/// returns the digest both have. `progress` is called after each load and as the check
/// begins. Nothing else may write to either store meanwhile (a server running on the
/// source would make the check fail; on the destination, its writes would be overwritten).
pub async fn copy(from: &Store, to: &Store, mut progress: impl FnMut(Progress)) -> Result<Digest, Error> {
    let target = to.snapshot().await?;
    if !target.scan(&Scan::all().limit(1)).await?.is_empty() || !target.blobs(None, 1).await?.is_empty() {
        return Err(Error::NotEmpty);
    }
    drop(target);
    let source = from.snapshot().await?;
    let mut digester = Digester::default();
    let mut done = Progress::default();
    let mut loads = Loads { to, load: Load::default(), bytes: 0 };
    let mut page = Scan::all().limit(ENTRIES_PAGE);
    loop {
        let entries = source.scan(&page).await?;
        let Some(last) = entries.last() else { break };
        page = Scan::all().limit(ENTRIES_PAGE).after(&last.key);
        for entry in entries {
            digester.entry(&entry);
            done.keys += 1;
            loads.bytes += entry.key.len() + entry.value.len();
            loads.load.entries.push(entry);
            loads.write_if_full(&mut progress, done).await?;
        }
    }
    let mut after = None;
    loop {
        let blobs = source.blobs(after.as_ref(), BLOBS_PAGE).await?;
        let Some(last) = blobs.last() else { break };
        after = Some(last.hash);
        for blob in blobs {
            digester.blob(&blob.hash, blob.size, blob.refcount);
            let content = source
                .read_blob(&blob.hash)
                .await?
                .ok_or_else(|| Error::Corrupt(format!("blob {} is listed but cannot be read", blob.hash)))?;
            done.blobs += 1;
            done.blob_bytes += blob.size;
            loads.bytes += content.len();
            loads.load.blobs.push(LoadBlob { refcount: blob.refcount, content });
            loads.write_if_full(&mut progress, done).await?;
        }
    }
    let mut load = loads.load;
    load.version_at_least = source.version();
    to.load(load).await?;
    let expected = digester.finish(source.version());
    done.verifying = true;
    progress(done);
    let copied = digest(&to.snapshot().await?, true).await?;
    // The destination's last version may be past the source's (a load raises it to at
    // least the source's); the records are what must match.
    let copied = Digest { version: expected.version, ..copied };
    if copied != expected {
        return Err(Error::CopyMismatch(format!("the source holds {expected:?}, the copy {copied:?}")));
    }
    Ok(expected)
}

/// The load a copy is filling, written into the destination once it holds
/// [`LOAD_BYTES_MAX`] bytes or [`LOAD_ITEMS_MAX`] entries and blobs.
struct Loads<'a> {
    to: &'a Store,
    load: Load,
    bytes: usize,
}

impl Loads<'_> {
    async fn write_if_full(&mut self, progress: &mut impl FnMut(Progress), done: Progress) -> Result<(), Error> {
        if self.bytes >= LOAD_BYTES_MAX || self.load.entries.len() + self.load.blobs.len() >= LOAD_ITEMS_MAX {
            self.to.load(std::mem::take(&mut self.load)).await?;
            self.bytes = 0;
            progress(done);
        }
        Ok(())
    }
}

/// The digest of what `snapshot` shows; with `check_contents`, every blob is read and must
/// hash to its name (its content is whole).
pub async fn digest(snapshot: &Snapshot, check_contents: bool) -> Result<Digest, Error> {
    let mut digester = Digester::default();
    let mut page = Scan::all().limit(ENTRIES_PAGE);
    loop {
        let entries = snapshot.scan(&page).await?;
        let Some(last) = entries.last() else { break };
        page = Scan::all().limit(ENTRIES_PAGE).after(&last.key);
        entries.iter().for_each(|entry| digester.entry(entry));
    }
    let mut after = None;
    loop {
        let blobs = snapshot.blobs(after.as_ref(), BLOBS_PAGE).await?;
        let Some(last) = blobs.last() else { break };
        after = Some(last.hash);
        for blob in blobs {
            digester.blob(&blob.hash, blob.size, blob.refcount);
            if check_contents {
                let content = snapshot.read_blob(&blob.hash).await?;
                if content.as_deref().map(BlobHash::of) != Some(blob.hash) {
                    return Err(Error::CopyMismatch(format!(
                        "blob {}: its content does not hash to its name",
                        blob.hash
                    )));
                }
            }
        }
    }
    Ok(digester.finish(snapshot.version()))
}

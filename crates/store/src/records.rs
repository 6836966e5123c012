//! The records every backend keeps, and how a commit or a load changes them.
//!
//! A backend keeps three families of records ([`Family`]): the key-value space (each value
//! prefixed by the 8-byte version of the commit that wrote it), blob chunks (keyed by
//! location and chunk number) and metadata (blob records with their reference counts, and
//! the registry of uploads). [`apply_batch`] is the one implementation of what a batch
//! means (expectations, operations in order, counters and their bounds, patches, blob
//! references, uploads): each backend runs it over its own storage ([`Source`]) and writes
//! the [`Writes`] it returns its own way, RocksDB as one synced write batch per group of
//! commits, the memory backend into its maps.

use std::collections::HashMap;
use std::ops::Range;

use crate::batch::{Op, apply_patches, decode_counter};
use crate::blob::{BlobMeta, Staged, Upload};
use crate::{Batch, BlobHash, Committed, Entry, Error, Expect, Load, StagedBlob, Version};

/// The first byte of a blob record's key in [`Family::Meta`].
pub(crate) const META_BLOB: u8 = b'b';
/// The first byte of an upload's registration in [`Family::Meta`].
pub(crate) const META_UPLOAD: u8 = b'u';
const VERSION_BYTES: usize = 8;

/// The three families of records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// The key-value space: each value prefixed by its version ([`encode_value`]).
    Kv,
    /// Blob chunks, keyed by [`chunk_key`].
    Blob,
    /// Blob records ([`blob_key`]) and upload registrations ([`upload_key`]).
    Meta,
}

/// The records as a batch finds them: what [`apply_batch`] checks and reads.
pub(crate) trait Source {
    fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
}

/// The writes of one batch (`None` deletes), each key once with its last value.
#[derive(Default)]
pub(crate) struct Writes {
    values: HashMap<(Family, Vec<u8>), Option<Vec<u8>>>,
    order: Vec<(Family, Vec<u8>)>,
}

impl Writes {
    /// Each key written, in the order of its first write, with its last value.
    pub(crate) fn into_ordered(self) -> impl Iterator<Item = (Family, Vec<u8>, Option<Vec<u8>>)> {
        let mut values = self.values;
        self.order.into_iter().filter_map(move |lookup| {
            let value = values.remove(&lookup)?;
            let (family, key) = lookup;
            Some((family, key, value))
        })
    }

    fn write(&mut self, family: Family, key: Vec<u8>, value: Option<Vec<u8>>) {
        let lookup = (family, key);
        if self.values.insert(lookup.clone(), value).is_none() {
            self.order.push(lookup);
        }
    }

    /// Reads through the writes so far to `source`.
    fn read(&self, source: &impl Source, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        match self.values.get(&(family, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => source.read(family, key),
        }
    }
}

/// Every record [`apply_batch`] may read of `batch`: the keys it expects, its counters,
/// and the blob records and upload registrations of the blobs it acquires or releases. A
/// backend that reads over a network fetches them all at once before applying it
/// (PostgreSQL); `tests::apply_batch_reads_only_what_batch_reads_lists` holds the two
/// together.
pub(crate) fn batch_reads(batch: &Batch) -> impl Iterator<Item = (Family, Vec<u8>)> + '_ {
    let expects = batch.expects.iter().map(|(key, _)| (Family::Kv, key.clone()));
    let ops = batch.ops.iter().flat_map(|op| {
        let (first, second) = match op {
            Op::Add { key, .. } => (Some((Family::Kv, key.clone())), None),
            Op::BlobAcquire(staged, _) => {
                let upload = match &staged.data {
                    Staged::Upload(upload) => Some((Family::Meta, upload_key(&upload.id))),
                    Staged::Inline(_) => None,
                };
                (Some((Family::Meta, blob_key(&staged.hash))), upload)
            }
            Op::BlobRelease(hash) => (Some((Family::Meta, blob_key(hash))), None),
            Op::Set { .. } | Op::Delete { .. } => (None, None),
        };
        first.into_iter().chain(second)
    });
    expects.chain(ops)
}

/// Checks and applies one batch over `source`, as the commit with `version`: the batch's
/// result and its writes, which the caller writes only if it returns `Ok`. The uploads the
/// batch takes are added to `uploads` only if it succeeds, for the caller to claim once the
/// writes are stored; if it fails, they are dropped, which removes them.
pub(crate) fn apply_batch(
    source: &impl Source,
    batch: Batch,
    version: Version,
    uploads: &mut Vec<Upload>,
) -> Result<(Committed, Writes), Error> {
    let mut writes = Writes::default();
    let mut taken = Vec::new();
    for (key, expect) in &batch.expects {
        let current = writes.read(source, Family::Kv, key)?;
        let current_version = current.as_deref().map(read_version).transpose()?;
        let holds = match expect {
            Expect::Absent => current_version.is_none(),
            Expect::Version(expected) => current_version == Some(*expected),
            Expect::Present => current_version.is_some(),
        };
        if !holds {
            return Err(Error::Conflict { key: key.clone() });
        }
    }
    let mut counters = Vec::new();
    for op in batch.ops {
        match op {
            Op::Set { mut key, mut value, patches } => {
                apply_patches(&mut key, &mut value, &patches, &counters);
                writes.write(Family::Kv, key, Some(encode_value(version, &value)));
            }
            Op::Delete { key } => writes.write(Family::Kv, key, None),
            Op::Add { key, delta, max } => {
                let current = match writes.read(source, Family::Kv, &key)? {
                    None => 0,
                    Some(stored) => decode_counter(&key, &stored[VERSION_BYTES.min(stored.len())..])?,
                };
                let next = current.checked_add(delta).ok_or_else(|| Error::CounterOverflow { key: key.clone() })?;
                if let Some(max) = max
                    && delta > 0
                    && next > max
                {
                    return Err(Error::CounterBound { key, current, delta, max });
                }
                writes.write(Family::Kv, key, Some(encode_value(version, &next.to_be_bytes())));
                counters.push(next);
            }
            Op::BlobAcquire(staged, refs) => acquire_blob(source, &mut writes, staged, refs, &mut taken)?,
            Op::BlobRelease(hash) => {
                let meta_key = blob_key(&hash);
                let Some(stored) = writes.read(source, Family::Meta, &meta_key)? else {
                    return Err(Error::BlobMissing { hash });
                };
                let mut meta = BlobMeta::decode(&stored)?;
                meta.refcount -= 1;
                if meta.refcount == 0 {
                    for idx in 0..meta.n_chunks {
                        writes.write(Family::Blob, chunk_key(&meta.location, idx), None);
                    }
                    writes.write(Family::Meta, meta_key, None);
                } else {
                    writes.write(Family::Meta, meta_key, Some(meta.encode()));
                }
            }
        }
    }
    uploads.append(&mut taken);
    Ok((Committed { version, counters }, writes))
}

/// Takes `refs` references on a staged blob: stores it if it is new, else counts them on
/// the stored one. The uploads the batch removes or turns into the blob go to `taken`.
fn acquire_blob(
    source: &impl Source,
    writes: &mut Writes,
    staged: StagedBlob,
    refs: u64,
    taken: &mut Vec<Upload>,
) -> Result<(), Error> {
    let meta_key = blob_key(&staged.hash);
    let existing = writes.read(source, Family::Meta, &meta_key)?;
    let meta = match (existing, staged.data) {
        (Some(stored), data) => {
            let mut meta = BlobMeta::decode(&stored)?;
            meta.refcount += refs;
            // The content is already stored: the staged upload is not needed (unless it is
            // the very upload the blob lives in).
            if let Staged::Upload(upload) = data {
                if meta.location == upload.id {
                    upload.claimed();
                    writes.write(Family::Meta, meta_key, Some(meta.encode()));
                    return Ok(());
                }
                for (family, key) in upload_records(&upload.id, upload.n_chunks) {
                    writes.write(family, key, None);
                }
                taken.push(upload);
            }
            meta
        }
        (None, Staged::Inline(bytes)) => {
            let n_chunks = u32::from(!bytes.is_empty());
            let location = staged.hash.0.to_vec();
            if n_chunks == 1 {
                writes.write(Family::Blob, chunk_key(&location, 0), Some(bytes));
            }
            BlobMeta { refcount: refs, size: staged.size, n_chunks, location }
        }
        (None, Staged::Upload(upload)) => {
            if writes.read(source, Family::Meta, &upload_key(&upload.id))?.is_none() {
                // Not ours to remove: claim it so that its drop deletes nothing.
                upload.claimed();
                return Err(Error::InvalidBatch(format!(
                    "staged blob {} was already committed or discarded",
                    staged.hash
                )));
            }
            writes.write(Family::Meta, upload_key(&upload.id), None);
            let location = upload.id.to_vec();
            let n_chunks = upload.n_chunks;
            taken.push(upload);
            BlobMeta { refcount: refs, size: staged.size, n_chunks, location }
        }
    };
    writes.write(Family::Meta, meta_key, Some(meta.encode()));
    Ok(())
}

/// Gives each record of `load` to `put`, blob chunks of `chunk_bytes`, and returns the last
/// version after it: at least `last_version`, `load.version_at_least` and every entry's.
pub(crate) fn load_records(
    load: &Load,
    chunk_bytes: usize,
    last_version: Version,
    mut put: impl FnMut(Family, &[u8], &[u8]),
) -> Version {
    let mut version = last_version.max(load.version_at_least);
    for entry in &load.entries {
        version = version.max(entry.version);
        put(Family::Kv, &entry.key, &encode_value(entry.version, &entry.value));
    }
    for blob in &load.blobs {
        let hash = BlobHash::of(&blob.content);
        let mut n_chunks = 0u32;
        for chunk in blob.content.chunks(chunk_bytes.max(1)) {
            put(Family::Blob, &chunk_key(&hash.0, n_chunks), chunk);
            n_chunks += 1;
        }
        let size = blob.content.len() as u64;
        let meta = BlobMeta { refcount: blob.refcount.max(1), size, n_chunks, location: hash.0.to_vec() };
        put(Family::Meta, &blob_key(&hash), &meta.encode());
    }
    version
}

/// The records of an upload: its chunks and its registration.
pub(crate) fn upload_records(upload: &[u8; 16], n_chunks: u32) -> impl Iterator<Item = (Family, Vec<u8>)> {
    let chunks = (0..n_chunks).map(|idx| (Family::Blob, chunk_key(upload, idx)));
    chunks.chain([(Family::Meta, upload_key(upload))])
}

/// The keys of every chunk stored at `location`, whatever their number: for an upload
/// whose number of chunks is not recorded (an orphan found at open).
pub(crate) fn location_chunks(location: &[u8]) -> Range<Vec<u8>> {
    location.to_vec()..[location, &[0xff; 5]].concat()
}

pub(crate) fn encode_value(version: Version, value: &[u8]) -> Vec<u8> {
    let mut stored = Vec::with_capacity(VERSION_BYTES + value.len());
    stored.extend_from_slice(&version.to_be_bytes());
    stored.extend_from_slice(value);
    stored
}

pub(crate) fn read_version(stored: &[u8]) -> Result<Version, Error> {
    let bytes = stored.get(..VERSION_BYTES).ok_or_else(|| Error::Corrupt("value without a version".into()))?;
    Ok(Version::from_be_bytes(bytes.try_into().expect("8 bytes")))
}

pub(crate) fn decode_entry(key: &[u8], stored: &[u8]) -> Result<Entry, Error> {
    let version = read_version(stored)?;
    Ok(Entry { key: key.to_vec(), version, value: stored[VERSION_BYTES..].to_vec() })
}

/// A blob record of [`Family::Meta`]: the blob's hash, from the key, and what is stored of it.
pub(crate) fn decode_blob_record(key: &[u8], stored: &[u8]) -> Result<(BlobHash, BlobMeta), Error> {
    let Some(Ok(hash)) = key.get(1..).map(<[u8; 32]>::try_from) else {
        return Err(Error::Corrupt(format!("blob record key of {} bytes", key.len())));
    };
    Ok((BlobHash(hash), BlobMeta::decode(stored)?))
}

pub(crate) fn blob_key(hash: &BlobHash) -> Vec<u8> {
    [&[META_BLOB][..], &hash.0].concat()
}

pub(crate) fn upload_key(upload: &[u8; 16]) -> Vec<u8> {
    [&[META_UPLOAD][..], upload].concat()
}

pub(crate) fn chunk_key(location: &[u8], idx: u32) -> Vec<u8> {
    [location, &idx.to_be_bytes()].concat()
}

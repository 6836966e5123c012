//! Copying a part of a store into another store that holds other records, checking the
//! copy, and removing a part: a tenant moved from one database cluster to another
//! ([`crate::placement`]). Unlike [`crate::copy`], the destination is live and not empty,
//! so records go in by ordinary commits (they take the destination's versions, which its
//! backups and snapshots rely on) and blobs by reference: a blob the destination holds
//! already gains the references of the records copied.
//!
//! Which records make the part is the caller's to say ([`Selection`]): this crate decodes
//! no key.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::{Batch, BlobHash, Entry, Error, Scan, Snapshot, Store};

/// Entries read by one page.
const ENTRIES_PAGE: usize = 512;

/// A commit of the copy or of a removal holds at most this many bytes of values and blob
/// contents, and at most a quarter of `batch_ops_max` records.
const COMMIT_BYTES_MAX: usize = 8 << 20;

/// The blobs a record holds one reference each to, from its key and value.
pub type BlobRefs = dyn Fn(&[u8], &[u8]) -> Vec<BlobHash> + Send + Sync;

/// A part of a store.
pub struct Selection<'a> {
    /// Every key of the part is under one of these prefixes; they must not overlap.
    pub prefixes: Vec<Vec<u8>>,
    /// Of the keys under the prefixes, those of the part.
    pub keep: &'a (dyn Fn(&[u8]) -> bool + Send + Sync),
    /// The blobs a record of the part holds one reference each to.
    pub blob_refs: &'a BlobRefs,
}

/// What a part holds, summed so that two copies of it can be compared: equal digests mean
/// the same keys with the same values, and the same references to the same blobs.
/// Versions are not in it: a copy takes the destination's.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartDigest {
    pub keys: u64,
    /// SHA-256 (hex) over every key and value in key order, each length-prefixed.
    pub keys_sha256: String,
    /// Distinct blobs referenced, the references, and the bytes of the distinct blobs.
    pub blobs: u64,
    pub blob_refs: u64,
    pub blob_bytes: u64,
    /// SHA-256 (hex) over every blob's hash, size and references from the part.
    pub blobs_sha256: String,
}

/// The part's entries, page by page, from a snapshot or from the store itself.
struct Pager<'s, 'a> {
    selection: &'s Selection<'a>,
    /// The prefix being read, and the scan of its next page (`None` once all are read).
    prefix: usize,
    page: Option<Scan>,
}

impl<'s, 'a> Pager<'s, 'a> {
    fn new(selection: &'s Selection<'a>) -> Pager<'s, 'a> {
        let page = selection.prefixes.first().map(|prefix| Scan::prefix(prefix).limit(ENTRIES_PAGE));
        Pager { selection, prefix: 0, page }
    }

    /// The next page's entries of the part (never empty), or `None` at the end.
    async fn next(&mut self, source: Source<'_>) -> Result<Option<Vec<Entry>>, Error> {
        while let Some(scan) = self.page.take() {
            let entries = match source {
                Source::Snapshot(snapshot) => snapshot.scan(&scan).await?,
                Source::Store(store) => store.scan(&scan).await?,
            };
            let prefix = &self.selection.prefixes[self.prefix];
            self.page = match entries.last() {
                Some(last) => Some(Scan::prefix(prefix).limit(ENTRIES_PAGE).after(&last.key)),
                None => {
                    self.prefix += 1;
                    self.selection.prefixes.get(self.prefix).map(|next| Scan::prefix(next).limit(ENTRIES_PAGE))
                }
            };
            let kept: Vec<Entry> = entries.into_iter().filter(|entry| (self.selection.keep)(&entry.key)).collect();
            if !kept.is_empty() {
                return Ok(Some(kept));
            }
        }
        Ok(None)
    }
}

/// Where a [`Pager`] reads.
#[derive(Clone, Copy)]
enum Source<'s> {
    Snapshot(&'s Snapshot),
    Store(&'s Store),
}

/// The digest of the part of `store` that `snapshot` (of `store`) shows. With
/// `check_contents`, every blob is read and must hash to its name; otherwise only its size
/// is read.
pub async fn digest(
    store: &Store,
    snapshot: &Snapshot,
    selection: &Selection<'_>,
    check_contents: bool,
) -> Result<PartDigest, Error> {
    let (mut keys, mut keys_hash, mut refs) = (0, Sha256::new(), BTreeMap::<BlobHash, u64>::new());
    let mut pager = Pager::new(selection);
    while let Some(entries) = pager.next(Source::Snapshot(snapshot)).await? {
        for entry in &entries {
            keys += 1;
            for part in [entry.key.as_slice(), entry.value.as_slice()] {
                keys_hash.update((part.len() as u64).to_be_bytes());
                keys_hash.update(part);
            }
            for hash in (selection.blob_refs)(&entry.key, &entry.value) {
                *refs.entry(hash).or_default() += 1;
            }
        }
    }
    let mut blobs_hash = Sha256::new();
    let (mut blob_bytes, mut blob_refs) = (0, 0);
    for (hash, n) in &refs {
        let size = if check_contents {
            let content = store.read_blob(hash).await?;
            if content.as_deref().map(BlobHash::of) != Some(*hash) {
                return Err(Error::CopyMismatch(format!(
                    "blob {hash} is missing, or its content does not hash to its name"
                )));
            }
            content.map_or(0, |content| content.len() as u64)
        } else {
            store.blob_size(hash).await?.ok_or_else(|| Error::CopyMismatch(format!("blob {hash} is missing")))?
        };
        blobs_hash.update(hash.0);
        blobs_hash.update(size.to_be_bytes());
        blobs_hash.update(n.to_be_bytes());
        blob_bytes += size;
        blob_refs += n;
    }
    Ok(PartDigest {
        keys,
        keys_sha256: hex::encode(keys_hash.finalize()),
        blobs: refs.len() as u64,
        blob_refs,
        blob_bytes,
        blobs_sha256: hex::encode(blobs_hash.finalize()),
    })
}

/// Copies the part of `from` into `to`, which must hold none of its keys, and checks the
/// copy: returns the digest both have. Nothing may write the part in `from` meanwhile (the
/// caller fenced it); `to` may be serving other records.
pub async fn copy(from: &Store, to: &Store, selection: &Selection<'_>) -> Result<PartDigest, Error> {
    let present = digest(to, &to.snapshot().await?, selection, false).await?;
    if present.keys > 0 {
        return Err(Error::NotEmpty);
    }
    let source = from.snapshot().await?;
    let expected = digest(from, &source, selection, false).await?;
    let mut writer = Writer { from, to, selection, batch: Batch::new(), records: 0, bytes: 0, refs: BTreeMap::new() };
    let mut pager = Pager::new(selection);
    while let Some(entries) = pager.next(Source::Snapshot(&source)).await? {
        writer.page(entries).await?;
    }
    writer.flush().await?;
    let copied = digest(to, &to.snapshot().await?, selection, true).await?;
    if copied != expected {
        return Err(Error::CopyMismatch(format!("the source holds {expected:?}, the copy {copied:?}")));
    }
    Ok(expected)
}

/// Fills and commits the copy's batches.
struct Writer<'s, 'a> {
    from: &'s Store,
    to: &'s Store,
    selection: &'s Selection<'a>,
    batch: Batch,
    records: usize,
    bytes: usize,
    refs: BTreeMap<BlobHash, u64>,
}

impl Writer<'_, '_> {
    fn full(&self) -> bool {
        self.bytes >= COMMIT_BYTES_MAX || self.records + self.refs.len() >= self.to.limits().batch_ops_max / 4
    }

    /// Stages the blobs the batch's records hold, from the source, and commits.
    async fn flush(&mut self) -> Result<(), Error> {
        let mut batch = std::mem::take(&mut self.batch);
        for (hash, n) in std::mem::take(&mut self.refs) {
            let content = self
                .from
                .read_blob(&hash)
                .await?
                .ok_or_else(|| Error::CopyMismatch(format!("blob {hash} is missing from the source")))?;
            let staged = self.to.stage_blob_bytes(&content).await?;
            if staged.hash() != hash {
                return Err(Error::Corrupt(format!("blob {hash} of the source does not hash to its name")));
            }
            batch.blob_acquire_n(staged, n);
        }
        if !batch.is_empty() {
            self.to.commit(batch).await?;
        }
        (self.records, self.bytes) = (0, 0);
        Ok(())
    }
}

impl Writer<'_, '_> {
    async fn page(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        for entry in entries {
            for hash in (self.selection.blob_refs)(&entry.key, &entry.value) {
                *self.refs.entry(hash).or_default() += 1;
                self.bytes += self.from.blob_size(&hash).await?.unwrap_or(0) as usize;
            }
            self.batch.expect_absent(&entry.key).set(&entry.key, &entry.value);
            self.records += 2;
            self.bytes += entry.key.len() + entry.value.len();
            if self.full() {
                self.flush().await?;
            }
        }
        Ok(())
    }
}

/// Removes the part from `store`: its records, and their references to blobs. Returns the
/// records removed. Commits are not fenced: the caller removes a part nobody writes.
pub async fn remove(store: &Store, selection: &Selection<'_>) -> Result<u64, Error> {
    let per_commit = (store.limits().batch_ops_max / 4).max(1);
    let mut removed = 0;
    let mut pager = Pager::new(selection);
    while let Some(kept) = pager.next(Source::Store(store)).await? {
        for chunk in kept.chunks((per_commit / 2).max(1)) {
            let mut batch = Batch::new();
            for entry in chunk {
                batch.expect_version(&entry.key, entry.version).delete(&entry.key);
                for hash in (selection.blob_refs)(&entry.key, &entry.value) {
                    batch.blob_release(&hash);
                }
            }
            store.commit(batch).await?;
            removed += chunk.len() as u64;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Store {
        Store::memory(Default::default())
    }

    /// Values name the blob they hold a reference to, after a '#'.
    fn refs(_key: &[u8], value: &[u8]) -> Vec<BlobHash> {
        let text = std::str::from_utf8(value).unwrap_or_default();
        text.split_once('#').and_then(|(_, hex)| BlobHash::from_hex(hex)).into_iter().collect()
    }

    async fn put(store: &Store, key: &str, value: &str, blob: Option<&[u8]>) -> BlobHash {
        let mut batch = Batch::new();
        let hash = BlobHash::of(blob.unwrap_or_default());
        let value = match blob {
            Some(bytes) => {
                batch.blob_acquire(store.stage_blob_bytes(bytes).await.unwrap());
                format!("{value}#{}", hash.to_hex())
            }
            None => value.to_string(),
        };
        batch.set(key.as_bytes(), value.as_bytes());
        store.commit(batch).await.unwrap();
        hash
    }

    #[tokio::test]
    async fn a_part_is_copied_beside_other_records_then_removed_from_its_source() {
        let (from, to) = (memory(), memory());
        let shared = put(&from, "a/1", "one", Some(b"shared message")).await;
        put(&from, "a/2", "two", Some(b"shared message")).await;
        put(&from, "a/3", "three", None).await;
        put(&from, "x/9", "a/ keeps this out", None).await;
        put(&from, "b/1", "another tenant's", Some(b"shared message")).await;
        // The destination holds the same blob for a record of its own.
        put(&to, "c/1", "resident", Some(b"shared message")).await;
        // `x/` is scanned, but none of its keys is kept.
        let prefixes = vec![b"a/".to_vec(), b"x/".to_vec()];
        let selection = Selection { prefixes, keep: &|key| key.starts_with(b"a/"), blob_refs: &refs };

        let digest = copy(&from, &to, &selection).await.unwrap();
        assert_eq!((digest.keys, digest.blobs, digest.blob_refs), (3, 1, 2));
        assert_eq!(to.get(b"a/2").await.unwrap().unwrap().value, from.get(b"a/2").await.unwrap().unwrap().value);
        assert!(to.get(b"x/9").await.unwrap().is_none());
        // A second copy finds the part there and refuses.
        assert!(matches!(copy(&from, &to, &selection).await, Err(Error::NotEmpty)));

        assert_eq!(remove(&from, &selection).await.unwrap(), 3);
        assert!(from.get(b"a/1").await.unwrap().is_none());
        // The other tenant's reference keeps the blob in the source; the destination's
        // holds its own and the two copied.
        assert_eq!(from.read_blob(&shared).await.unwrap().unwrap(), b"shared message");
        remove(&to, &Selection { prefixes: vec![b"c/".to_vec()], keep: &|_| true, blob_refs: &refs }).await.unwrap();
        assert!(to.read_blob(&shared).await.unwrap().is_some());
        remove(&to, &selection).await.unwrap();
        assert!(to.read_blob(&shared).await.unwrap().is_none());
        assert!(from.read_blob(&shared).await.unwrap().is_some());
    }
}

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

/// Entries read by one page: a few MiB of records at most (values are up to a few KiB).
const ENTRIES_PAGE: usize = 2048;

/// A commit of a copy or of a removal holds at most this many bytes of values, at most a
/// quarter of `batch_ops_max` operations, and references to at most [`COMMIT_BLOBS_MAX`]
/// distinct blobs (each is read whole and staged before the commit: a small one is held
/// in memory until it, a large one is written in chunks).
const COMMIT_BYTES_MAX: usize = 8 << 20;
const COMMIT_BLOBS_MAX: usize = 64;

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
/// the same keys with the same values, hence the same references to the same blobs.
/// Versions are not in it: a copy takes the destination's.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PartDigest {
    pub keys: u64,
    /// SHA-256 (hex) over every key and value in key order, each length-prefixed.
    pub keys_sha256: String,
    /// Distinct blobs referenced, and the references.
    pub blobs: u64,
    pub blob_refs: u64,
    /// SHA-256 (hex) over every blob's hash and references from the part, in hash order.
    pub blobs_sha256: String,
}

/// The part's entries, page by page, from a snapshot or from the store itself, in the
/// order of the selection's prefixes, then of the keys.
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

    /// The next page's entries of the part (never empty) with the index of their prefix,
    /// or `None` at the end.
    async fn next(&mut self, source: Source<'_>) -> Result<Option<(usize, Vec<Entry>)>, Error> {
        while let Some(scan) = self.page.take() {
            let entries = match source {
                Source::Snapshot(snapshot) => snapshot.scan(&scan).await?,
                Source::Store(store) => store.scan(&scan).await?,
            };
            let prefix = self.prefix;
            self.page = match entries.last() {
                Some(last) => Some(Scan::prefix(&self.selection.prefixes[prefix]).limit(ENTRIES_PAGE).after(&last.key)),
                None => {
                    self.prefix += 1;
                    self.selection.prefixes.get(self.prefix).map(|next| Scan::prefix(next).limit(ENTRIES_PAGE))
                }
            };
            let kept: Vec<Entry> = entries.into_iter().filter(|entry| (self.selection.keep)(&entry.key)).collect();
            if !kept.is_empty() {
                return Ok(Some((prefix, kept)));
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

/// The entries of a part one at a time, in the [`Pager`]'s order.
struct Cursor<'s, 'a, 'c> {
    pager: Pager<'s, 'a>,
    source: Source<'c>,
    page: std::collections::VecDeque<(usize, Entry)>,
}

impl<'s, 'a, 'c> Cursor<'s, 'a, 'c> {
    fn new(selection: &'s Selection<'a>, source: Source<'c>) -> Cursor<'s, 'a, 'c> {
        Cursor { pager: Pager::new(selection), source, page: Default::default() }
    }

    /// Reads the next page if the last one is used up.
    async fn fill(&mut self) -> Result<(), Error> {
        if self.page.is_empty()
            && let Some((prefix, entries)) = self.pager.next(self.source).await?
        {
            self.page.extend(entries.into_iter().map(|entry| (prefix, entry)));
        }
        Ok(())
    }

    /// The next entry without taking it: its prefix's index and key.
    async fn peek(&mut self) -> Result<Option<(usize, &[u8])>, Error> {
        self.fill().await?;
        Ok(self.page.front().map(|(prefix, entry)| (*prefix, entry.key.as_slice())))
    }

    fn take(&mut self) -> Option<Entry> {
        self.page.pop_front().map(|(_, entry)| entry)
    }
}

/// Sums a part's entries into a [`PartDigest`], and counts its blob references.
#[derive(Default)]
struct Summer {
    keys: u64,
    keys_hash: Sha256,
    refs: BTreeMap<BlobHash, u64>,
}

impl Summer {
    fn entry(&mut self, selection: &Selection<'_>, entry: &Entry) {
        self.keys += 1;
        for part in [entry.key.as_slice(), entry.value.as_slice()] {
            self.keys_hash.update((part.len() as u64).to_be_bytes());
            self.keys_hash.update(part);
        }
        for hash in (selection.blob_refs)(&entry.key, &entry.value) {
            *self.refs.entry(hash).or_default() += 1;
        }
    }

    fn finish(self) -> (PartDigest, BTreeMap<BlobHash, u64>) {
        let mut blobs_hash = Sha256::new();
        for (hash, n) in &self.refs {
            blobs_hash.update(hash.0);
            blobs_hash.update(n.to_be_bytes());
        }
        let digest = PartDigest {
            keys: self.keys,
            keys_sha256: hex::encode(self.keys_hash.finalize()),
            blobs: self.refs.len() as u64,
            blob_refs: self.refs.values().sum(),
            blobs_sha256: hex::encode(blobs_hash.finalize()),
        };
        (digest, self.refs)
    }
}

/// The digest of the part as `source` shows it, and its blob references.
async fn sum(source: Source<'_>, selection: &Selection<'_>) -> Result<(PartDigest, BTreeMap<BlobHash, u64>), Error> {
    let mut summer = Summer::default();
    let mut pager = Pager::new(selection);
    while let Some((_, entries)) = pager.next(source).await? {
        entries.iter().for_each(|entry| summer.entry(selection, entry));
    }
    Ok(summer.finish())
}

/// What [`copy`] wrote and checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Copied {
    pub digest: PartDigest,
    /// Bytes of the distinct blobs, each read back from the destination and hashed.
    pub blob_bytes: u64,
}

/// Copies the part of `from`, as one snapshot of it shows it, into `to`, which must hold
/// none of its keys, and checks the copy: its digest must be the snapshot's, and every
/// blob it references must be in `to` and hash to its name. `from` may be written
/// meanwhile (what changed since is for [`catch_up`]); `to` may serve other records, but
/// nobody may write the part there.
pub async fn copy(from: &Store, to: &Store, selection: &Selection<'_>) -> Result<Copied, Error> {
    if Pager::new(selection).next(Source::Store(to)).await?.is_some() {
        return Err(Error::NotEmpty);
    }
    let source = from.snapshot().await?;
    let mut writer = Writer::new(&source, to);
    let mut summer = Summer::default();
    let mut pager = Pager::new(selection);
    while let Some((_, entries)) = pager.next(Source::Snapshot(&source)).await? {
        for entry in entries {
            summer.entry(selection, &entry);
            writer.put(selection, &entry, None).await?;
        }
    }
    writer.flush().await?;
    let (expected, _) = summer.finish();
    let (copied, refs) = sum(Source::Snapshot(&to.snapshot().await?), selection).await?;
    if copied != expected {
        return Err(Error::CopyMismatch(format!("the source holds {expected:?}, the copy {copied:?}")));
    }
    let mut blob_bytes = 0;
    for hash in refs.keys() {
        let content = to.read_blob(hash).await?;
        if content.as_deref().map(BlobHash::of) != Some(*hash) {
            return Err(Error::CopyMismatch(format!(
                "blob {hash} is missing from the copy, or does not hash to its name"
            )));
        }
        blob_bytes += content.map_or(0, |content| content.len() as u64);
    }
    Ok(Copied { digest: expected, blob_bytes })
}

/// What [`catch_up`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CaughtUp {
    /// The part's digest, the same in both stores now.
    pub digest: PartDigest,
    /// Records written (new or changed since the copy) and removed.
    pub written: u64,
    pub removed: u64,
}

/// Makes the part in `to` (an earlier [`copy`]) what it is in `from` now: records added or
/// changed since are written, records gone are removed, with their blob references. Each
/// record of one is compared with the other's, byte for byte; each write expects the
/// version read. Nobody may write the part in either store meanwhile (the caller fenced
/// it): this is the move's pause, so it reads the part of both once, and writes only what
/// differs.
pub async fn catch_up(from: &Store, to: &Store, selection: &Selection<'_>) -> Result<CaughtUp, Error> {
    let source = from.snapshot().await?;
    let mut writer = Writer::new(&source, to);
    let mut summer = Summer::default();
    let (mut written, mut removed) = (0, 0);
    let mut theirs = Cursor::new(selection, Source::Snapshot(&source));
    // The destination is read live: a page of it is read as soon as the last is used up,
    // before anything past it is compared, so it never shows what the catch-up wrote.
    let mut ours = Cursor::new(selection, Source::Store(to));
    loop {
        // Both sides' next pages at once: the pause is mostly these reads.
        tokio::try_join!(theirs.fill(), ours.fill())?;
        let order = match (theirs.peek().await?, ours.peek().await?) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(&b),
        };
        match order {
            std::cmp::Ordering::Less => {
                let entry = theirs.take().expect("peeked");
                summer.entry(selection, &entry);
                writer.put(selection, &entry, None).await?;
                written += 1;
            }
            std::cmp::Ordering::Greater => {
                let old = ours.take().expect("peeked");
                writer.drop_entry(selection, &old).await?;
                removed += 1;
            }
            std::cmp::Ordering::Equal => {
                let (entry, old) = (theirs.take().expect("peeked"), ours.take().expect("peeked"));
                summer.entry(selection, &entry);
                if entry.value != old.value {
                    writer.put(selection, &entry, Some(&old)).await?;
                    written += 1;
                }
            }
        }
    }
    writer.flush().await?;
    // Every record of the destination was compared with the source's, byte for byte, and
    // each difference written by a commit that expected the version read: the part in the
    // destination is now the source's, without reading it a third time (this is the pause).
    Ok(CaughtUp { digest: summer.finish().0, written, removed })
}

/// Fills and commits the batches of a copy or a catch-up in the destination.
struct Writer<'s> {
    /// Where blobs are read: the snapshot the records come from.
    source: &'s Snapshot,
    to: &'s Store,
    batch: Batch,
    ops: usize,
    bytes: usize,
    /// The blobs the batch takes references to, staged at the flush.
    acquire: BTreeMap<BlobHash, u64>,
}

impl<'s> Writer<'s> {
    fn new(source: &'s Snapshot, to: &'s Store) -> Writer<'s> {
        Writer { source, to, batch: Batch::new(), ops: 0, bytes: 0, acquire: BTreeMap::new() }
    }

    /// Writes `entry` over `old` (the destination's record at its key, if any), taking its
    /// blob references and releasing the old one's.
    async fn put(&mut self, selection: &Selection<'_>, entry: &Entry, old: Option<&Entry>) -> Result<(), Error> {
        match old {
            None => self.batch.expect_absent(&entry.key),
            Some(old) => {
                for hash in (selection.blob_refs)(&old.key, &old.value) {
                    self.batch.blob_release(&hash);
                    self.ops += 1;
                }
                self.batch.expect_version(&old.key, old.version)
            }
        };
        self.batch.set(&entry.key, &entry.value);
        for hash in (selection.blob_refs)(&entry.key, &entry.value) {
            *self.acquire.entry(hash).or_default() += 1;
        }
        self.ops += 2;
        self.bytes += entry.key.len() + entry.value.len();
        self.flush_if_full().await
    }

    /// Removes the destination's record `old` and its blob references.
    async fn drop_entry(&mut self, selection: &Selection<'_>, old: &Entry) -> Result<(), Error> {
        self.batch.expect_version(&old.key, old.version).delete(&old.key);
        for hash in (selection.blob_refs)(&old.key, &old.value) {
            self.batch.blob_release(&hash);
            self.ops += 1;
        }
        self.ops += 2;
        self.flush_if_full().await
    }

    async fn flush_if_full(&mut self) -> Result<(), Error> {
        if self.bytes >= COMMIT_BYTES_MAX
            || self.acquire.len() >= COMMIT_BLOBS_MAX
            || self.ops + self.acquire.len() >= self.to.limits().batch_ops_max / 4
        {
            self.flush().await?;
        }
        Ok(())
    }

    /// Stages the blobs the batch takes references to, read from the source's snapshot
    /// (each must hash to its name), and commits.
    async fn flush(&mut self) -> Result<(), Error> {
        let mut batch = std::mem::take(&mut self.batch);
        for (hash, n) in std::mem::take(&mut self.acquire) {
            let content = self
                .source
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
        (self.ops, self.bytes) = (0, 0);
        Ok(())
    }
}

/// Removes the part from `store`: its records, and their references to blobs. Returns the
/// records removed. Commits are not fenced: the caller removes a part nobody writes.
pub async fn remove(store: &Store, selection: &Selection<'_>) -> Result<u64, Error> {
    let per_commit = (store.limits().batch_ops_max / 4).max(1);
    let mut removed = 0;
    let mut pager = Pager::new(selection);
    while let Some((_, kept)) = pager.next(Source::Store(store)).await? {
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

    /// The digest of the part as `store` holds it now.
    async fn digest(store: &Store, selection: &Selection<'_>) -> PartDigest {
        sum(Source::Snapshot(&store.snapshot().await.unwrap()), selection).await.unwrap().0
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

        let copied = copy(&from, &to, &selection).await.unwrap();
        assert_eq!((copied.digest.keys, copied.digest.blobs, copied.digest.blob_refs), (3, 1, 2));
        assert_eq!(copied.blob_bytes, 14);
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

    #[tokio::test]
    async fn a_catch_up_writes_what_changed_since_the_copy_and_removes_what_went() {
        let (from, to) = (memory(), memory());
        put(&from, "a/1", "kept", Some(b"first")).await;
        put(&from, "a/2", "changed", Some(b"second")).await;
        put(&from, "a/3", "removed", Some(b"third")).await;
        let selection = Selection { prefixes: vec![b"a/".to_vec()], keep: &|_| true, blob_refs: &refs };
        copy(&from, &to, &selection).await.unwrap();
        // The source lives on after the copy.
        let third = BlobHash::of(b"third");
        put(&from, "a/2", "changed again", Some(b"second, new")).await;
        let mut batch = Batch::new();
        batch.delete(b"a/3").blob_release(&third);
        from.commit(batch).await.unwrap();
        put(&from, "a/4", "new", None).await;

        let caught = catch_up(&from, &to, &selection).await.unwrap();
        assert_eq!((caught.written, caught.removed, caught.digest.keys), (2, 1, 3));
        assert_eq!(caught.digest, digest(&from, &selection).await);
        assert!(to.get(b"a/3").await.unwrap().is_none());
        assert!(to.read_blob(&third).await.unwrap().is_none(), "the removed record's blob is released");
        assert!(to.read_blob(&BlobHash::of(b"second")).await.unwrap().is_none(), "the old value's blob too");
        assert_eq!(to.read_blob(&BlobHash::of(b"second, new")).await.unwrap().unwrap(), b"second, new");
        // Nothing changed since: a second catch-up writes nothing.
        let again = catch_up(&from, &to, &selection).await.unwrap();
        assert_eq!((again.written, again.removed), (0, 0));
    }

    /// More new records than one commit of the catch-up takes, past the last the copy
    /// made: the destination, read live, must not show the catch-up its own writes as
    /// records to remove.
    #[tokio::test]
    async fn a_catch_up_keeps_what_it_wrote_ahead_of_its_reading() {
        let (from, to) = (memory(), memory());
        put(&from, "a/000", "copied", None).await;
        let selection = Selection { prefixes: vec![b"a/".to_vec()], keep: &|_| true, blob_refs: &refs };
        copy(&from, &to, &selection).await.unwrap();
        for n in 1..=3 * COMMIT_BLOBS_MAX {
            put(&from, &format!("a/{n:03}"), "new", Some(format!("message {n}").as_bytes())).await;
        }
        let caught = catch_up(&from, &to, &selection).await.unwrap();
        assert_eq!((caught.written, caught.removed), (3 * COMMIT_BLOBS_MAX as u64, 0));
        assert_eq!(digest(&to, &selection).await, digest(&from, &selection).await);
    }
}

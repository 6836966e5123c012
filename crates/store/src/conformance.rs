//! The conformance suite every backend must pass.
//!
//! Each check is a public async function taking a [`Harness`]; [`crate::conformance_tests!`]
//! turns the whole list into one `#[tokio::test]` per check for a backend's test module.
//! The checks panic (assert) on failure: they are tests.

use std::ops::Bound;

use crate::{Batch, BlobHash, CounterValue, Error, Expect, Patch, PatchTarget, Scan, Store};

/// Opens the backend under test. `open` after [`Store::close`] must reopen the same data.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    async fn open(&self) -> Store;
}

/// Generates one `#[tokio::test]` per conformance check, each with a fresh harness.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@each $harness;
            get_set_delete, get_many, versions_grow, scan_ranges, scan_reverse_and_limits, expect_absent,
            expect_version, expect_present, conflict_writes_nothing, one_writer_wins, counters, counter_patches,
            counter_errors, concurrent_counter, bounded_counters, concurrent_bounded_counter,
            blobs_small, blobs_large, blobs_streamed, blob_errors, blob_references,
            staged_blobs_left_nowhere, limits, reopen_keeps_everything, closed, snapshot_is_consistent,
            snapshot_under_concurrent_commits, load_restores_what_a_snapshot_showed, watched_counters,
            watched_counters_under_concurrent_commits, sessions);
    };
    (@each $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

fn set(key: &[u8], value: &[u8]) -> Batch {
    let mut batch = Batch::new();
    batch.set(key, value);
    batch
}

/// Commits one acquire of `staged`; returns its hash.
async fn acquire(store: &Store, staged: crate::StagedBlob) -> BlobHash {
    let hash = staged.hash();
    let mut batch = Batch::new();
    batch.blob_acquire(staged);
    store.commit(batch).await.expect("acquire");
    hash
}

/// Commits one release of `hash`.
async fn release(store: &Store, hash: &BlobHash) {
    let mut batch = Batch::new();
    batch.blob_release(hash);
    store.commit(batch).await.expect("release");
}

async fn value_of(store: &Store, key: &[u8]) -> Option<Vec<u8>> {
    store.get(key).await.expect("get").map(|entry| entry.value)
}

fn keys(entries: &[crate::Entry]) -> Vec<&[u8]> {
    entries.iter().map(|entry| entry.key.as_slice()).collect()
}

pub async fn get_set_delete(harness: &impl Harness) {
    let store = harness.open().await;
    assert_eq!(store.get(b"a").await.unwrap(), None);
    store.commit(set(b"a", b"one")).await.unwrap();
    assert_eq!(value_of(&store, b"a").await.as_deref(), Some(&b"one"[..]));
    store.commit(set(b"a", b"two")).await.unwrap();
    assert_eq!(value_of(&store, b"a").await.as_deref(), Some(&b"two"[..]));
    // Empty values and binary keys are values like any other.
    store.commit(set(b"\x00\xff", b"")).await.unwrap();
    assert_eq!(value_of(&store, b"\x00\xff").await.as_deref(), Some(&b""[..]));
    let mut batch = Batch::new();
    batch.delete(b"a");
    store.commit(batch).await.unwrap();
    assert_eq!(store.get(b"a").await.unwrap(), None);
    // Deleting a missing key is not an error.
    let mut batch = Batch::new();
    batch.delete(b"never");
    store.commit(batch).await.unwrap();
    // Operations apply in order: the last write of a key wins.
    let mut batch = Batch::new();
    batch.set(b"k", b"1").delete(b"k").set(b"k", b"3");
    store.commit(batch).await.unwrap();
    assert_eq!(value_of(&store, b"k").await.as_deref(), Some(&b"3"[..]));
    store.close().await.unwrap();
}

pub async fn get_many(harness: &impl Harness) {
    let store = harness.open().await;
    assert_eq!(store.get_many(&[]).await.unwrap(), Vec::new());
    store.commit(set(b"a", b"one")).await.unwrap();
    store.commit(set(b"c", b"three")).await.unwrap();
    // In the order asked, missing keys as `None`, a key asked twice answered twice.
    let keys: Vec<Vec<u8>> = [&b"c"[..], b"b", b"a", b"c"].iter().map(|key| key.to_vec()).collect();
    let entries = store.get_many(&keys).await.unwrap();
    let singles =
        [store.get(b"c").await.unwrap(), None, store.get(b"a").await.unwrap(), store.get(b"c").await.unwrap()];
    assert_eq!(entries, singles);
    assert_eq!(entries[0].as_ref().map(|entry| entry.value.as_slice()), Some(&b"three"[..]));
    // More keys than one group of the backend: every one answered, in order.
    let mut batch = Batch::new();
    for index in 0..(crate::GET_MANY_GROUP + 10) as u32 {
        if index % 3 == 0 {
            batch.set(&index.to_be_bytes(), &index.to_le_bytes());
        }
    }
    store.commit(batch).await.unwrap();
    let keys: Vec<Vec<u8>> =
        (0..(crate::GET_MANY_GROUP + 10) as u32).map(|index| index.to_be_bytes().to_vec()).collect();
    let entries = store.get_many(&keys).await.unwrap();
    assert_eq!(entries.len(), keys.len());
    for (index, entry) in entries.iter().enumerate() {
        let expected = (index % 3 == 0).then(|| (index as u32).to_le_bytes().to_vec());
        assert_eq!(entry.as_ref().map(|entry| entry.value.clone()), expected, "key {index}");
    }
    store.close().await.unwrap();
}

pub async fn versions_grow(harness: &impl Harness) {
    let store = harness.open().await;
    let first = store.commit(set(b"a", b"1")).await.unwrap().version;
    assert_eq!(store.get(b"a").await.unwrap().unwrap().version, first);
    let second = store.commit(set(b"b", b"1")).await.unwrap().version;
    assert!(second > first);
    // A key deleted and written again gets a new version, never its old one.
    let mut batch = Batch::new();
    batch.delete(b"a");
    store.commit(batch).await.unwrap();
    let third = store.commit(set(b"a", b"1")).await.unwrap().version;
    assert!(third > second);
    assert_eq!(store.get(b"a").await.unwrap().unwrap().version, third);
    // Every key written by one batch has that batch's version.
    let mut batch = Batch::new();
    batch.set(b"x", b"").set(b"y", b"");
    let version = store.commit(batch).await.unwrap().version;
    assert_eq!(store.get(b"x").await.unwrap().unwrap().version, version);
    assert_eq!(store.get(b"y").await.unwrap().unwrap().version, version);
    store.close().await.unwrap();
}

async fn fill(store: &Store, keys: &[&[u8]]) {
    let mut batch = Batch::new();
    for key in keys {
        batch.set(key, key);
    }
    store.commit(batch).await.unwrap();
}

pub async fn scan_ranges(harness: &impl Harness) {
    let store = harness.open().await;
    fill(&store, &[b"a", b"ab", b"abc", b"abd", b"ac", b"b", b"b\xff", b"b\xff\xff", b"c", b"\xff", b"\xff\xff"]).await;
    let scan = |scan: Scan| {
        let store = store.clone();
        async move { store.scan(&scan).await.unwrap() }
    };
    assert_eq!(keys(&scan(Scan::prefix(b"ab")).await), vec![&b"ab"[..], b"abc", b"abd"]);
    assert_eq!(keys(&scan(Scan::prefix(b"b\xff")).await), vec![&b"b\xff"[..], b"b\xff\xff"]);
    assert_eq!(keys(&scan(Scan::prefix(b"\xff")).await), vec![&b"\xff"[..], b"\xff\xff"]);
    assert_eq!(keys(&scan(Scan::prefix(b"zz")).await), Vec::<&[u8]>::new());
    assert_eq!(keys(&scan(Scan::range(b"ab", b"b")).await), vec![&b"ab"[..], b"abc", b"abd", b"ac"]);
    assert_eq!(scan(Scan::all()).await.len(), 11);
    // Every combination of bounds.
    let both = |from: Bound<&[u8]>, to: Bound<&[u8]>| Scan {
        from: from.map(|key| key.to_vec()),
        to: to.map(|key| key.to_vec()),
        direction: crate::Direction::Forward,
        limit: usize::MAX,
    };
    let got = scan(both(Bound::Excluded(b"ab"), Bound::Included(b"ac"))).await;
    assert_eq!(keys(&got), vec![&b"abc"[..], b"abd", b"ac"]);
    let got = scan(both(Bound::Unbounded, Bound::Excluded(b"abc"))).await;
    assert_eq!(keys(&got), vec![&b"a"[..], b"ab"]);
    let got = scan(both(Bound::Included(b"c"), Bound::Unbounded)).await;
    assert_eq!(keys(&got), vec![&b"c"[..], b"\xff", b"\xff\xff"]);
    // Paging: after the last key seen.
    let page = scan(Scan::prefix(b"a").limit(2)).await;
    assert_eq!(keys(&page), vec![&b"a"[..], b"ab"]);
    let page = scan(Scan::prefix(b"a").after(b"ab").limit(2)).await;
    assert_eq!(keys(&page), vec![&b"abc"[..], b"abd"]);
    // Values and versions come with the keys.
    let entries = scan(Scan::prefix(b"c")).await;
    assert_eq!(entries[0].value, b"c");
    assert!(entries[0].version > 0);
    store.close().await.unwrap();
}

pub async fn scan_reverse_and_limits(harness: &impl Harness) {
    let store = harness.open().await;
    fill(&store, &[b"m1", b"m2", b"m3", b"m4", b"n", b"\xff\xff"]).await;
    let got = store.scan(&Scan::prefix(b"m").reverse()).await.unwrap();
    assert_eq!(keys(&got), vec![&b"m4"[..], b"m3", b"m2", b"m1"]);
    let got = store.scan(&Scan::prefix(b"m").reverse().limit(2)).await.unwrap();
    assert_eq!(keys(&got), vec![&b"m4"[..], b"m3"]);
    let got = store.scan(&Scan::prefix(b"m").reverse().before(b"m3").limit(5)).await.unwrap();
    assert_eq!(keys(&got), vec![&b"m2"[..], b"m1"]);
    let got = store.scan(&Scan::all().reverse().limit(1)).await.unwrap();
    assert_eq!(keys(&got), vec![&b"\xff\xff"[..]]);
    let got = store.scan(&Scan::range(b"m2", b"n").reverse()).await.unwrap();
    assert_eq!(keys(&got), vec![&b"m4"[..], b"m3", b"m2"]);
    let got = store.scan(&Scan::prefix(b"m").limit(0)).await.unwrap();
    assert!(got.is_empty());
    store.close().await.unwrap();
}

pub async fn expect_absent(harness: &impl Harness) {
    let store = harness.open().await;
    let mut batch = Batch::new();
    batch.expect_absent(b"name").set(b"name", b"first");
    store.commit(batch).await.unwrap();
    let mut batch = Batch::new();
    batch.expect_absent(b"name").set(b"name", b"second");
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict { key } if key == b"name"), "{err}");
    assert_eq!(value_of(&store, b"name").await.as_deref(), Some(&b"first"[..]));
    store.close().await.unwrap();
}

pub async fn expect_version(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"k", b"1")).await.unwrap();
    let read = store.get(b"k").await.unwrap().unwrap();
    let mut batch = Batch::new();
    batch.expect_version(b"k", read.version).set(b"k", b"2");
    store.commit(batch).await.unwrap();
    // The version read before is now stale.
    let mut batch = Batch::new();
    batch.expect_version(b"k", read.version).set(b"k", b"3");
    assert!(matches!(store.commit(batch).await, Err(Error::Conflict { .. })));
    // A version never matches a missing key.
    let mut batch = Batch::new();
    batch.expect(b"missing", Expect::Version(read.version)).set(b"missing", b"");
    assert!(matches!(store.commit(batch).await, Err(Error::Conflict { .. })));
    assert_eq!(value_of(&store, b"k").await.as_deref(), Some(&b"2"[..]));
    store.close().await.unwrap();
}

pub async fn expect_present(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"k", b"1")).await.unwrap();
    // Present whatever its version: written again since, it still holds.
    store.commit(set(b"k", b"2")).await.unwrap();
    let mut batch = Batch::new();
    batch.expect_present(b"k").set(b"other", b"written");
    store.commit(batch).await.unwrap();
    assert_eq!(value_of(&store, b"other").await.as_deref(), Some(&b"written"[..]));
    // Gone, it fails the batch, which writes nothing.
    let mut gone = Batch::new();
    gone.delete(b"k");
    store.commit(gone).await.unwrap();
    let mut batch = Batch::new();
    batch.expect_present(b"k").set(b"other", b"again");
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(&err, Error::Conflict { key } if key == b"k"), "{err}");
    assert_eq!(value_of(&store, b"other").await.as_deref(), Some(&b"written"[..]));
    // Made again, it holds again.
    store.commit(set(b"k", b"back")).await.unwrap();
    let mut batch = Batch::new();
    batch.expect_present(b"k").set(b"other", b"after");
    store.commit(batch).await.unwrap();
    assert_eq!(value_of(&store, b"other").await.as_deref(), Some(&b"after"[..]));
    store.close().await.unwrap();
}

pub async fn conflict_writes_nothing(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"guard", b"x")).await.unwrap();
    let counter_before = store.counter(b"counter").await.unwrap();
    let mut batch = Batch::new();
    batch.set(b"a", b"1").add(b"counter", 1);
    batch.expect_absent(b"guard");
    assert!(matches!(store.commit(batch).await, Err(Error::Conflict { .. })));
    assert_eq!(store.get(b"a").await.unwrap(), None);
    assert_eq!(store.counter(b"counter").await.unwrap(), counter_before);
    // A batch failing on its own (a counter error) writes nothing either.
    let mut batch = Batch::new();
    batch.set(b"b", b"1").add(b"guard", 1);
    assert!(matches!(store.commit(batch).await, Err(Error::NotACounter { .. })));
    assert_eq!(store.get(b"b").await.unwrap(), None);
    store.close().await.unwrap();
}

/// Many writers race on one key with the same version read: exactly one wins each round.
pub async fn one_writer_wins(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"race", b"start")).await.unwrap();
    for round in 0..20u32 {
        let read = store.get(b"race").await.unwrap().unwrap();
        let mut tasks = Vec::new();
        for writer in 0..16u32 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut batch = Batch::new();
                batch.expect_version(b"race", read.version).set(b"race", format!("{round}-{writer}").as_bytes());
                store.commit(batch).await.is_ok()
            }));
        }
        let mut n_winners = 0;
        for task in tasks {
            n_winners += usize::from(task.await.unwrap());
        }
        assert_eq!(n_winners, 1, "round {round}");
    }
    store.close().await.unwrap();
}

pub async fn counters(harness: &impl Harness) {
    let store = harness.open().await;
    assert_eq!(store.counter(b"uid").await.unwrap(), 0);
    assert_eq!(store.next_value(b"uid", 1).await.unwrap(), 1);
    assert_eq!(store.next_value(b"uid", 1).await.unwrap(), 2);
    assert_eq!(store.next_value(b"uid", 10).await.unwrap(), 12);
    assert_eq!(store.next_value(b"uid", -2).await.unwrap(), 10);
    // Several counters in one batch, the same one twice: each add sees the one before.
    let mut batch = Batch::new();
    let first = batch.add(b"uid", 1);
    let other = batch.add(b"modseq", 5);
    let second = batch.add(b"uid", 1);
    let committed = store.commit(batch).await.unwrap();
    assert_eq!(committed.counters[first.index()], 11);
    assert_eq!(committed.counters[other.index()], 5);
    assert_eq!(committed.counters[second.index()], 12);
    assert_eq!(store.counter(b"uid").await.unwrap(), 12);
    // Many concurrent next_value calls never get the same value.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..20 {
                seen.push(store.next_value(b"shared", 1).await.unwrap());
            }
            seen
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=640).collect::<Vec<i64>>());
    store.close().await.unwrap();
}

pub async fn counter_patches(harness: &impl Harness) {
    let store = harness.open().await;
    store.next_value(b"mailbox/uidnext", 41).await.unwrap();
    // Take the next UID and write the message under it, in one commit.
    let mut batch = Batch::new();
    let uid = batch.add(b"mailbox/uidnext", 1);
    let mut key = b"mailbox/uid/".to_vec();
    let offset = key.len();
    key.extend_from_slice(&[0; 8]);
    let value = [b"uid=".as_slice(), &[0; 8]].concat();
    let patches = [
        Patch { counter: uid, target: PatchTarget::Key, offset },
        Patch { counter: uid, target: PatchTarget::Value, offset: 4 },
    ];
    batch.set_patched(&key, &value, &patches);
    let committed = store.commit(batch).await.unwrap();
    assert_eq!(committed.counters, vec![42]);
    let entries = store.scan(&Scan::prefix(b"mailbox/uid/")).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(&entries[0].key[offset..], &42i64.to_be_bytes());
    assert_eq!(&entries[0].value[4..], &42i64.to_be_bytes());
    // A patch must name an earlier counter and fit in its target.
    let mut batch = Batch::new();
    batch.set_patched(b"k", &[0; 8], &[Patch { counter: uid, target: PatchTarget::Value, offset: 0 }]);
    assert!(matches!(store.commit(batch).await, Err(Error::InvalidBatch(_))));
    let mut batch = Batch::new();
    let counter = batch.add(b"c", 1);
    batch.set_patched(b"k", &[0; 8], &[Patch { counter, target: PatchTarget::Value, offset: 1 }]);
    assert!(matches!(store.commit(batch).await, Err(Error::InvalidBatch(_))));
    let mut batch = Batch::new();
    let counter = batch.add(b"c", 1);
    batch.set_patched(b"k", &[0; 8], &[Patch { counter, target: PatchTarget::Key, offset: usize::MAX }]);
    assert!(matches!(store.commit(batch).await, Err(Error::InvalidBatch(_))));
    store.close().await.unwrap();
}

pub async fn counter_errors(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"text", b"not a counter")).await.unwrap();
    assert!(matches!(store.next_value(b"text", 1).await, Err(Error::NotACounter { .. })));
    assert!(matches!(store.counter(b"text").await, Err(Error::NotACounter { .. })));
    store.next_value(b"big", i64::MAX).await.unwrap();
    assert!(matches!(store.next_value(b"big", 1).await, Err(Error::CounterOverflow { .. })));
    assert_eq!(store.counter(b"big").await.unwrap(), i64::MAX);
    store.close().await.unwrap();
}

pub async fn bounded_counters(harness: &impl Harness) {
    let store = harness.open().await;
    let mut batch = Batch::new();
    let used = batch.add_at_most(b"used", 60, 100);
    assert_eq!(store.commit(batch).await.unwrap().counters[used.index()], 60);
    // At the bound exactly is allowed; past it, the whole batch fails and writes nothing.
    let mut batch = Batch::new();
    batch.set(b"message", b"1");
    batch.add_at_most(b"used", 40, 100);
    store.commit(batch).await.unwrap();
    let mut batch = Batch::new();
    batch.set(b"message", b"2");
    batch.add_at_most(b"used", 1, 100);
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(&err, Error::CounterBound { key, current: 100, delta: 1, max: 100 } if key == b"used"), "{err}");
    assert_eq!(value_of(&store, b"message").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(store.counter(b"used").await.unwrap(), 100);
    // Giving back is never refused, even above a bound lowered meanwhile.
    let mut batch = Batch::new();
    batch.add_at_most(b"used", -30, 50);
    store.commit(batch).await.unwrap();
    assert_eq!(store.counter(b"used").await.unwrap(), 70);
    // Each add of a batch sees the ones before it: two adds that fit alone but not
    // together fail the batch.
    let mut batch = Batch::new();
    batch.add_at_most(b"used", 20, 100);
    batch.add_at_most(b"used", 20, 100);
    assert!(matches!(store.commit(batch).await, Err(Error::CounterBound { current: 90, .. })));
    assert_eq!(store.counter(b"used").await.unwrap(), 70);
    // A failed bound in one batch of a group leaves the others alone.
    let (first, second) = tokio::join!(
        async {
            let mut batch = Batch::new();
            batch.add_at_most(b"used", 30, 100);
            store.commit(batch).await
        },
        async {
            let mut batch = Batch::new();
            batch.add_at_most(b"other", 1, 0);
            store.commit(batch).await
        }
    );
    assert!(first.is_ok() && matches!(second, Err(Error::CounterBound { .. })));
    assert_eq!(store.counter(b"used").await.unwrap(), 100);
    store.close().await.unwrap();
}

/// 32 writers race to add 10 each to a counter bounded at 105: exactly 10 commit, and the
/// counter ends at 100, never above its bound.
pub async fn concurrent_bounded_counter(harness: &impl Harness) {
    let store = harness.open().await;
    let mut tasks = Vec::new();
    for i in 0..32u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut batch = Batch::new();
            batch.add_at_most(b"quota", 10, 105);
            batch.set(&[b'w', i], b"");
            store.commit(batch).await
        }));
    }
    let mut n_committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => n_committed += 1,
            Err(Error::CounterBound { .. }) => {}
            Err(e) => panic!("commit failed: {e}"),
        }
    }
    assert_eq!(n_committed, 10);
    assert_eq!(store.counter(b"quota").await.unwrap(), 100);
    assert_eq!(store.scan(&Scan::prefix(b"w")).await.unwrap().len(), 10);
    store.close().await.unwrap();
}

/// 64 tasks each increment one counter 1,000 times through conditional batches (read,
/// write with the version read, retry on conflict); the result is exactly 64,000.
pub async fn concurrent_counter(harness: &impl Harness) {
    const N_TASKS: i64 = 64;
    const N_INCREMENTS: i64 = 1_000;
    let store = harness.open().await;
    let mut tasks = Vec::new();
    for _ in 0..N_TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n_conflicts = 0u64;
            for _ in 0..N_INCREMENTS {
                loop {
                    let (current, expect) = match store.get(b"hits").await.unwrap() {
                        None => (0, Expect::Absent),
                        Some(entry) => {
                            let bytes: [u8; 8] = entry.value.try_into().unwrap();
                            (i64::from_be_bytes(bytes), Expect::Version(entry.version))
                        }
                    };
                    let mut batch = Batch::new();
                    batch.expect(b"hits", expect).set(b"hits", &(current + 1).to_be_bytes());
                    match store.commit(batch).await {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => n_conflicts += 1,
                        Err(e) => panic!("commit failed: {e}"),
                    }
                }
            }
            n_conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.counter(b"hits").await.unwrap(), N_TASKS * N_INCREMENTS);
    store.close().await.unwrap();
}

pub async fn blobs_small(harness: &impl Harness) {
    let store = harness.open().await;
    let content = b"From: a@example.org\r\n\r\nhello\r\n".to_vec();
    let staged = store.stage_blob_bytes(content.clone()).await.unwrap();
    let hash = staged.hash();
    assert_eq!(hash, BlobHash::of(&content));
    assert_eq!(staged.size(), content.len() as u64);
    // Staged but not committed: not stored yet.
    assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    let mut batch = Batch::new();
    batch.blob_acquire(staged).set(b"msg/1", &hash.0);
    store.commit(batch).await.unwrap();
    assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
    assert_eq!(store.blob_size(&hash).await.unwrap(), Some(content.len() as u64));
    // The same content again: one more reference, not a second copy.
    acquire(&store, store.stage_blob_bytes(content.clone()).await.unwrap()).await;
    release(&store, &hash).await;
    assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
    release(&store, &hash).await;
    assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    assert_eq!(store.blob_size(&hash).await.unwrap(), None);
    // The empty blob is a blob.
    let empty_hash = acquire(&store, store.stage_blob_bytes(Vec::new()).await.unwrap()).await;
    assert_eq!(store.read_blob(&empty_hash).await.unwrap(), Some(Vec::new()));
    // Acquire and release in one batch: the blob ends where it started.
    let staged = store.stage_blob_bytes(b"brief".to_vec()).await.unwrap();
    let brief = staged.hash();
    let mut batch = Batch::new();
    batch.blob_acquire(staged).blob_release(&brief);
    store.commit(batch).await.unwrap();
    assert_eq!(store.read_blob(&brief).await.unwrap(), None);
    store.close().await.unwrap();
}

fn pattern(n_bytes: usize, seed: u8) -> Vec<u8> {
    (0..n_bytes).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8).collect()
}

pub async fn blobs_large(harness: &impl Harness) {
    let store = harness.open().await;
    let chunk = store.limits().blob_chunk_bytes;
    for n_bytes in [chunk, chunk + 1, 3 * chunk, 3 * chunk + 17] {
        let content = pattern(n_bytes, 7);
        let hash = acquire(&store, store.stage_blob_bytes(content.clone()).await.unwrap()).await;
        assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()), "{n_bytes}");
        // Chunk by chunk, none larger than a chunk.
        let mut reader = store.open_blob(&hash).await.unwrap().unwrap();
        assert_eq!(reader.size(), n_bytes as u64);
        let mut joined = Vec::new();
        while let Some(part) = reader.next_chunk().await.unwrap() {
            assert!(part.len() <= chunk);
            joined.extend(part);
        }
        assert_eq!(joined, content);
        // A duplicate staged upload is dropped when committed.
        let duplicate = store.stage_blob_bytes(content.clone()).await.unwrap();
        let mut batch = Batch::new();
        batch.blob_acquire(duplicate).blob_release(&hash);
        store.commit(batch).await.unwrap();
        assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
        release(&store, &hash).await;
        assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    }
    store.close().await.unwrap();
}

pub async fn blobs_streamed(harness: &impl Harness) {
    let store = harness.open().await;
    let chunk = store.limits().blob_chunk_bytes;
    for n_bytes in [0, 10, chunk - 1, chunk, 2 * chunk + 5] {
        let content = pattern(n_bytes, 3);
        let mut reader = content.as_slice();
        let staged = store.stage_blob(&mut reader).await.unwrap();
        assert_eq!(staged.hash(), BlobHash::of(&content), "{n_bytes}");
        assert_eq!(staged.size(), n_bytes as u64);
        let hash = acquire(&store, staged).await;
        assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
    }
    // A staged blob that is discarded is never stored.
    let content = pattern(2 * chunk, 9);
    let staged = store.stage_blob(&mut content.as_slice()).await.unwrap();
    let hash = staged.hash();
    store.discard_blob(staged).await.unwrap();
    assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    store.close().await.unwrap();
}

pub async fn blob_errors(harness: &impl Harness) {
    let store = harness.open().await;
    let missing = BlobHash::of(b"never stored");
    let mut batch = Batch::new();
    batch.set(b"a", b"1").blob_release(&missing);
    assert!(matches!(store.commit(batch).await, Err(Error::BlobMissing { hash }) if hash == missing));
    assert_eq!(store.get(b"a").await.unwrap(), None);
    let max = store.limits().blob_bytes_max;
    if max <= 64 * 1024 * 1024 {
        let content = vec![0u8; max as usize + 1];
        let err = store.stage_blob(&mut content.as_slice()).await.unwrap_err();
        assert!(matches!(err, Error::Limit { limit_name: "blob_bytes_max", .. }), "{err}");
        let err = store.stage_blob_bytes(content).await.unwrap_err();
        assert!(matches!(err, Error::Limit { limit_name: "blob_bytes_max", .. }), "{err}");
    }
    store.close().await.unwrap();
}

/// One staging acquired with several references: stored once, released one by one.
pub async fn blob_references(harness: &impl Harness) {
    let store = harness.open().await;
    let chunk = store.limits().blob_chunk_bytes;
    for content in [b"one message to five accounts".to_vec(), pattern(2 * chunk + 3, 5)] {
        let staged = store.stage_blob_bytes(&content).await.unwrap();
        let hash = staged.hash();
        let mut batch = Batch::new();
        batch.blob_acquire_n(staged, 5);
        store.commit(batch).await.unwrap();
        // Two more from another staging of the same content.
        let mut batch = Batch::new();
        batch.blob_acquire_n(store.stage_blob_bytes(&content).await.unwrap(), 2);
        store.commit(batch).await.unwrap();
        for _ in 0..6 {
            release(&store, &hash).await;
            assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
        }
        release(&store, &hash).await;
        assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    }
    assert_eq!(store.staged_uploads().await.unwrap(), 0);
    store.close().await.unwrap();
}

/// Whatever happens to a staged blob, no upload stays behind: committed, discarded,
/// dropped, or taken by a batch that fails (a conflict, a bound, a limit).
pub async fn staged_blobs_left_nowhere(harness: &impl Harness) {
    let store = harness.open().await;
    let chunk = store.limits().blob_chunk_bytes;
    let content = pattern(3 * chunk, 4);
    let uploads_gone = || async {
        // Dropped uploads are removed in the background: give it a moment.
        for _ in 0..500 {
            if store.staged_uploads().await.unwrap() == 0 {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        false
    };
    let staged = store.stage_blob_bytes(&content).await.unwrap();
    assert_eq!(store.staged_uploads().await.unwrap(), 1);
    drop(staged);
    assert!(uploads_gone().await, "a dropped staged blob left its upload");
    // A batch that fails its expectation.
    let mut batch = Batch::new();
    batch.expect_version(b"never", 1).blob_acquire(store.stage_blob_bytes(&content).await.unwrap());
    assert!(matches!(store.commit(batch).await, Err(Error::Conflict { .. })));
    assert!(uploads_gone().await, "a conflicting batch left its upload");
    // A batch that fails a bound after taking the blob.
    let mut batch = Batch::new();
    batch.blob_acquire(store.stage_blob_bytes(&content).await.unwrap());
    batch.add_at_most(b"full", 1, 0);
    assert!(matches!(store.commit(batch).await, Err(Error::CounterBound { .. })));
    assert!(uploads_gone().await, "a batch over its bound left its upload");
    // A batch over a limit, refused before it reaches the backend.
    let mut batch = Batch::new();
    batch.blob_acquire(store.stage_blob_bytes(&content).await.unwrap());
    batch.set(b"big", &vec![0u8; store.limits().value_bytes_max + 1]);
    assert!(matches!(store.commit(batch).await, Err(Error::Limit { .. })));
    assert!(uploads_gone().await, "a batch over a limit left its upload");
    // A batch never committed.
    let mut batch = Batch::new();
    batch.blob_acquire(store.stage_blob_bytes(&content).await.unwrap());
    drop(batch);
    assert!(uploads_gone().await, "an abandoned batch left its upload");
    let hash = BlobHash::of(&content);
    assert_eq!(store.read_blob(&hash).await.unwrap(), None);
    // And a committed one is the blob, not an upload.
    acquire(&store, store.stage_blob_bytes(&content).await.unwrap()).await;
    assert_eq!(store.staged_uploads().await.unwrap(), 0);
    assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
    store.close().await.unwrap();
}

pub async fn limits(harness: &impl Harness) {
    let store = harness.open().await;
    let limits = store.limits().clone();
    let long_key = vec![b'k'; limits.key_bytes_max + 1];
    let err = store.commit(set(&long_key, b"")).await.unwrap_err();
    assert!(matches!(err, Error::Limit { limit_name: "key_bytes_max", .. }), "{err}");
    let err = store.get(&long_key).await.map(|_| ());
    assert!(err.is_ok(), "reading a long key is harmless");
    let big_value = vec![0u8; limits.value_bytes_max + 1];
    let err = store.commit(set(b"k", &big_value)).await.unwrap_err();
    assert!(matches!(err, Error::Limit { limit_name: "value_bytes_max", .. }), "{err}");
    let mut batch = Batch::new();
    for i in 0..=limits.batch_ops_max {
        batch.set(format!("k{i}").as_bytes(), b"");
    }
    let err = store.commit(batch).await.unwrap_err();
    assert!(matches!(err, Error::Limit { limit_name: "batch_ops_max", .. }), "{err}");
    // At the limits exactly, all is well.
    let key = vec![b'k'; limits.key_bytes_max];
    store.commit(set(&key, &vec![1u8; limits.value_bytes_max])).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().value.len(), limits.value_bytes_max);
    store.close().await.unwrap();
}

pub async fn reopen_keeps_everything(harness: &impl Harness) {
    let store = harness.open().await;
    let mut batch = Batch::new();
    batch.set(b"kept", b"value").add(b"uid", 7);
    let before = store.commit(batch).await.unwrap().version;
    let chunk = store.limits().blob_chunk_bytes;
    let content = pattern(2 * chunk + 1, 1);
    let hash = acquire(&store, store.stage_blob_bytes(content.clone()).await.unwrap()).await;
    // A blob staged and never committed nor dropped (as after a crash) is an orphan: gone
    // after reopening.
    let orphan = store.stage_blob_bytes(pattern(2 * chunk, 2)).await.unwrap();
    let orphan_hash = orphan.hash();
    std::mem::forget(orphan);
    assert_eq!(store.staged_uploads().await.unwrap(), 1);
    store.close().await.unwrap();

    let store = harness.open().await;
    assert_eq!(value_of(&store, b"kept").await.as_deref(), Some(&b"value"[..]));
    assert_eq!(store.counter(b"uid").await.unwrap(), 7);
    assert_eq!(store.next_value(b"uid", 1).await.unwrap(), 8);
    assert_eq!(store.read_blob(&hash).await.unwrap().as_deref(), Some(content.as_slice()));
    assert_eq!(store.read_blob(&orphan_hash).await.unwrap(), None);
    assert_eq!(store.staged_uploads().await.unwrap(), 0);
    // Versions go on growing after a restart.
    let after = store.commit(set(b"later", b"")).await.unwrap().version;
    assert!(after > before + 1);
    store.close().await.unwrap();
}

pub async fn closed(harness: &impl Harness) {
    let store = harness.open().await;
    store.commit(set(b"a", b"1")).await.unwrap();
    let clone = store.clone();
    store.close().await.unwrap();
    assert!(matches!(clone.get(b"a").await, Err(Error::Closed)));
    assert!(matches!(clone.commit(set(b"b", b"1")).await, Err(Error::Closed)));
    assert!(matches!(clone.scan(&Scan::all()).await, Err(Error::Closed)));
    // Closing twice is harmless.
    store.close().await.unwrap();
}

/// A snapshot shows the store as it was when taken, whatever commits follow: values,
/// deletions, counters, blobs and their reference counts, and the version.
pub async fn snapshot_is_consistent(harness: &impl Harness) {
    let store = harness.open().await;
    fill(&store, &[b"k1", b"k2", b"k3"]).await;
    store.next_value(b"counter", 5).await.unwrap();
    let kept = acquire(&store, store.stage_blob_bytes(b"kept blob").await.unwrap()).await;
    let shared = acquire(&store, store.stage_blob_bytes(b"shared blob").await.unwrap()).await;
    acquire(&store, store.stage_blob_bytes(b"shared blob").await.unwrap()).await;
    let big = vec![7u8; store.limits().blob_chunk_bytes * 2 + 10];
    let big_hash = acquire(&store, store.stage_blob_bytes(&big).await.unwrap()).await;
    let last = store.commit(set(b"k4", b"four")).await.unwrap().version;

    let snapshot = store.snapshot().await.unwrap();
    assert_eq!(snapshot.version(), last, "the snapshot holds every commit that returned");

    // Everything changes after the snapshot.
    store.commit(set(b"k1", b"changed")).await.unwrap();
    let mut batch = Batch::new();
    batch.delete(b"k2");
    store.commit(batch).await.unwrap();
    store.commit(set(b"k9", b"new")).await.unwrap();
    store.next_value(b"counter", 1).await.unwrap();
    release(&store, &kept).await;
    release(&store, &shared).await;
    release(&store, &big_hash).await;
    let added = acquire(&store, store.stage_blob_bytes(b"added later").await.unwrap()).await;

    let entries = snapshot.scan(&Scan::all()).await.unwrap();
    assert_eq!(keys(&entries), vec![&b"counter"[..], b"k1", b"k2", b"k3", b"k4"]);
    assert!(entries.iter().all(|entry| entry.version <= last));
    assert_eq!(snapshot.get(b"k1").await.unwrap().unwrap().value, b"k1".to_vec());
    assert!(snapshot.get(b"k2").await.unwrap().is_some());
    assert!(snapshot.get(b"k9").await.unwrap().is_none());
    assert_eq!(snapshot.get(b"counter").await.unwrap().unwrap().value, 5i64.to_be_bytes().to_vec());
    let reverse = snapshot.scan(&Scan::prefix(b"k").reverse().limit(2)).await.unwrap();
    assert_eq!(keys(&reverse), vec![&b"k4"[..], b"k3"]);

    let mut blobs = Vec::new();
    let mut after = None;
    loop {
        let page = snapshot.blobs(after.as_ref(), 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.hash);
        blobs.extend(page);
    }
    let mut expected = vec![(kept, 9, 1), (shared, 11, 2), (big_hash, big.len() as u64, 1)];
    expected.sort();
    let got: Vec<_> = blobs.iter().map(|blob| (blob.hash, blob.size, blob.refcount)).collect();
    assert_eq!(got, expected, "blobs in hash order with their sizes and reference counts");
    assert_eq!(snapshot.read_blob(&kept).await.unwrap().as_deref(), Some(&b"kept blob"[..]));
    assert_eq!(snapshot.read_blob(&big_hash).await.unwrap(), Some(big));
    assert_eq!(snapshot.read_blob(&added).await.unwrap(), None);
    // The store itself moved on.
    assert_eq!(store.read_blob(&kept).await.unwrap(), None);
    assert!(store.get(b"k2").await.unwrap().is_none());
    drop(snapshot);
    store.close().await.unwrap();
}

/// Commits racing a snapshot are in it whole or not at all: each batch writes two keys
/// with the same value, and the snapshot never shows them apart.
pub async fn snapshot_under_concurrent_commits(harness: &impl Harness) {
    let store = harness.open().await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for idx in 0u32..300 {
                let mut batch = Batch::new();
                batch.set(b"pair/a", &idx.to_be_bytes()).set(b"pair/b", &idx.to_be_bytes());
                batch.add(b"pair/n", 1);
                store.commit(batch).await.unwrap();
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() || seen == 0 {
        let snapshot = store.snapshot().await.unwrap();
        let pair = snapshot.scan(&Scan::prefix(b"pair/")).await.unwrap();
        if let [a, b, n] = pair.as_slice() {
            assert_eq!(a.value, b.value, "one commit, seen whole");
            let idx = u32::from_be_bytes(a.value.clone().try_into().unwrap());
            assert_eq!(i64::from_be_bytes(n.value.clone().try_into().unwrap()), i64::from(idx) + 1);
            assert!(a.version <= snapshot.version(), "no key newer than the snapshot");
            seen += 1;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    store.close().await.unwrap();
}

/// What a snapshot showed, loaded into an empty store, reads back the same: values,
/// versions, counters, blobs with their reference counts; later commits take greater
/// versions, and a released blob goes with its last reference.
pub async fn load_restores_what_a_snapshot_showed(harness: &impl Harness) {
    let store = harness.open().await;
    let big = vec![3u8; store.limits().blob_chunk_bytes + 1];
    let load = crate::Load {
        entries: vec![
            crate::Entry { key: b"a".to_vec(), version: 40, value: b"one".to_vec() },
            crate::Entry { key: b"counter".to_vec(), version: 41, value: 7i64.to_be_bytes().to_vec() },
        ],
        blobs: vec![
            crate::LoadBlob { refcount: 2, content: b"message".to_vec() },
            crate::LoadBlob { refcount: 1, content: big.clone() },
        ],
        version_at_least: 50,
    };
    store.load(load).await.unwrap();
    let a = store.get(b"a").await.unwrap().unwrap();
    assert_eq!((a.version, a.value.as_slice()), (40, &b"one"[..]));
    assert_eq!(store.counter(b"counter").await.unwrap(), 7);
    assert_eq!(store.next_value(b"counter", 1).await.unwrap(), 8, "counters go on from their value");
    let committed = store.commit(set(b"b", b"two")).await.unwrap();
    assert!(committed.version > 50, "versions keep growing: {}", committed.version);
    let message = BlobHash::of(b"message");
    assert_eq!(store.read_blob(&message).await.unwrap().as_deref(), Some(&b"message"[..]));
    assert_eq!(store.read_blob(&BlobHash::of(&big)).await.unwrap(), Some(big));
    let snapshot = store.snapshot().await.unwrap();
    let blobs = snapshot.blobs(None, 10).await.unwrap();
    assert_eq!(blobs.iter().find(|blob| blob.hash == message).map(|blob| blob.refcount), Some(2));
    drop(snapshot);
    release(&store, &message).await;
    assert!(store.read_blob(&message).await.unwrap().is_some(), "one reference left");
    release(&store, &message).await;
    assert_eq!(store.read_blob(&message).await.unwrap(), None);
    store.close().await.unwrap();
    let store = harness.open().await;
    assert!(store.commit(set(b"c", b"three")).await.unwrap().version > committed.version);
    store.close().await.unwrap();
}

/// A watcher of a counter starts at its stored value, sees the value after each commit
/// that adds to it (down too) with that commit's version, and nothing for commits that do
/// not touch it or fail; a load tells it what it wrote; senders nobody listens to go.
pub async fn watched_counters(harness: &impl Harness) {
    let store = harness.open().await;
    let never = store.watch(b"w/never").await.unwrap();
    assert_eq!(*never.borrow(), CounterValue { version: 0, value: 0 }, "a counter never written");
    let mut batch = Batch::new();
    batch.add(b"w/n", 5);
    let first = store.commit(batch).await.unwrap();
    let mut watcher = store.watch(b"w/n").await.unwrap();
    assert_eq!(*watcher.borrow(), CounterValue { version: first.version, value: 5 }, "the stored value");
    assert!(!watcher.has_changed().unwrap(), "the first value is marked seen");

    // A commit adding to it, with other writes: its value after the commit, its version.
    let mut batch = Batch::new();
    batch.set(b"w/other", b"x");
    batch.add(b"w/n", 3);
    let committed = store.commit(batch).await.unwrap();
    assert!(watcher.has_changed().unwrap());
    assert_eq!(*watcher.borrow_and_update(), CounterValue { version: committed.version, value: 8 });
    // Commits not touching it, and a commit that failed: nothing.
    store.commit(set(b"w/n2", b"not a counter of ours")).await.unwrap();
    store.next_value(b"w/m", 1).await.unwrap();
    let mut batch = Batch::new();
    batch.add(b"w/n", 1);
    batch.expect_absent(b"w/other");
    assert!(matches!(store.commit(batch).await, Err(Error::Conflict { .. })));
    let mut batch = Batch::new();
    batch.add_at_most(b"w/n", 100, 10);
    assert!(matches!(store.commit(batch).await, Err(Error::CounterBound { .. })));
    assert!(!watcher.has_changed().unwrap(), "no notification without a commit adding to it");
    assert!(!never.has_changed().unwrap());
    // Added to twice in one batch: the last value. Down: the value goes down.
    let mut batch = Batch::new();
    batch.add(b"w/n", 1);
    batch.add_at_most(b"w/n", 1, 100);
    let committed = store.commit(batch).await.unwrap();
    assert_eq!(*watcher.borrow_and_update(), CounterValue { version: committed.version, value: 10 });
    let committed = store.commit(add(b"w/n", -4)).await.unwrap();
    assert_eq!(*watcher.borrow_and_update(), CounterValue { version: committed.version, value: 6 });
    // A second receiver of the key shares the value; a clone of the store feeds both.
    let mut second = store.watch(b"w/n").await.unwrap();
    assert_eq!(second.borrow().value, 6);
    let value = store.clone().next_value(b"w/n", 1).await.unwrap();
    assert_eq!((watcher.borrow_and_update().value, second.borrow_and_update().value), (value, value));

    // Receivers dropped: their sender goes after the next commit to the counter (or the next
    // watch of any key).
    assert_eq!(store.changes.n_watched(), 2);
    drop((watcher, second));
    store.next_value(b"w/n", 1).await.unwrap();
    assert_eq!(store.changes.n_watched(), 1, "only w/never is watched");
    drop(never);
    let _other = store.watch(b"w/m").await.unwrap();
    assert_eq!(store.changes.n_watched(), 1, "only w/m is watched");
    store.close().await.unwrap();

    // A load tells the watchers of what it wrote.
    let store = harness.open().await;
    let mut loaded = store.watch(b"w/loaded").await.unwrap();
    let entry = crate::Entry { key: b"w/loaded".to_vec(), version: 70, value: 9i64.to_be_bytes().to_vec() };
    store.load(crate::Load { entries: vec![entry], blobs: vec![], version_at_least: 70 }).await.unwrap();
    assert!(loaded.has_changed().unwrap());
    assert_eq!(*loaded.borrow_and_update(), CounterValue { version: 70, value: 9 });
    // Over the key limit, or not a counter: refused.
    let long = vec![b'k'; store.limits().key_bytes_max + 1];
    assert!(matches!(store.watch(&long).await, Err(Error::Limit { .. })));
    store.commit(set(b"w/text", b"three bytes and more")).await.unwrap();
    assert!(matches!(store.watch(b"w/text").await, Err(Error::NotACounter { .. })));
    store.close().await.unwrap();
}

/// Concurrent commits never move a receiver back, and every receiver registered while
/// they run (each a new sender) ends at the counter's last value: no commit racing a
/// registration goes unnotified.
pub async fn watched_counters_under_concurrent_commits(harness: &impl Harness) {
    const N_WRITERS: usize = 4;
    const N_COMMITS: usize = 100;
    const N_KEYS: usize = 24;
    let store = harness.open().await;
    let key = |index: usize| format!("w/c/{index:02}").into_bytes();
    let mut first = store.watch(&key(0)).await.unwrap();
    let observer = tokio::spawn(async move {
        let mut last = *first.borrow_and_update();
        while last.value < (N_WRITERS * N_COMMITS) as i64 {
            first.changed().await.expect("the store is open");
            let value = *first.borrow_and_update();
            assert!(value.version > last.version && value.value > last.value, "{last:?} then {value:?}");
            last = value;
        }
        last
    });
    let mut writers = Vec::new();
    for _ in 0..N_WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut last_version = 0;
            for _ in 0..N_COMMITS {
                let mut batch = Batch::new();
                for index in 0..N_KEYS {
                    batch.add(&key(index), 1);
                }
                last_version = last_version.max(store.commit(batch).await.unwrap().version);
            }
            last_version
        }));
    }
    // Registered one at a time while the writers commit: each key's first receiver.
    let mut receivers = Vec::new();
    for index in 1..N_KEYS {
        receivers.push(store.watch(&key(index)).await.unwrap());
        tokio::task::yield_now().await;
    }
    let mut last_version = 0;
    for writer in writers {
        last_version = last_version.max(writer.await.unwrap());
    }
    let total = (N_WRITERS * N_COMMITS) as i64;
    assert_eq!(observer.await.unwrap(), CounterValue { version: last_version, value: total });
    for (index, receiver) in receivers.iter().enumerate() {
        let value = *receiver.borrow();
        assert_eq!(value, CounterValue { version: last_version, value: total }, "key {}", index + 1);
    }
    // One commit racing one registration, many times: the receiver ends at the commit's
    // value, from its first read or from the commit.
    for index in 0..100 {
        let key = format!("w/race/{index:03}").into_bytes();
        let commit = tokio::spawn({
            let (store, key) = (store.clone(), key.clone());
            async move { store.commit(add(&key, 1)).await.unwrap().version }
        });
        let receiver = store.watch(&key).await.unwrap();
        let version = commit.await.unwrap();
        assert_eq!(*receiver.borrow(), CounterValue { version, value: 1 }, "race {index}");
    }
    store.close().await.unwrap();
}

fn add(key: &[u8], delta: i64) -> Batch {
    let mut batch = Batch::new();
    batch.add(key, delta);
    batch
}

/// A store's session is live while it is open and ended once it closed; a later open has
/// another one.
pub async fn sessions(harness: &impl Harness) {
    let a = harness.open().await;
    let first = a.session();
    assert_eq!(a.ended_sessions(&[first]).await.unwrap(), Vec::<u64>::new(), "its own session is live");
    assert_eq!(a.ended_sessions(&[]).await.unwrap(), Vec::<u64>::new());
    a.close().await.unwrap();
    let b = harness.open().await;
    let second = b.session();
    assert_ne!(first, second, "a later open has a session of its own");
    assert_eq!(b.ended_sessions(&[first, second]).await.unwrap(), vec![first], "the closed store's session ended");
    b.close().await.unwrap();
}

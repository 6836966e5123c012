use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::conformance::Harness;
use crate::{Batch, BlobHash, Error, Limits, MemoryStore, Options, Scan, Store, Version};

/// Small chunks, so that multi-chunk blobs stay small in tests.
fn test_limits() -> Limits {
    Limits { blob_chunk_bytes: 64 * 1024, blob_bytes_max: 4 * 1024 * 1024, ..Limits::default() }
}

/// An in-memory store; `open` after a close sees the same records.
struct Memory(MemoryStore);

impl Memory {
    fn new() -> Memory {
        Memory(MemoryStore::new(test_limits()))
    }
}

#[async_trait::async_trait]
impl Harness for Memory {
    async fn open(&self) -> Store {
        self.0.open()
    }
}

mod memory_conformance {
    use super::Memory;
    crate::conformance_tests!(Memory::new());
}

/// Fills `store` with what a copy must carry: keys, a counter, a blob of one chunk held
/// twice and one of several chunks; returns the blobs' hashes.
async fn fill_for_copy(store: &Store) -> Vec<BlobHash> {
    let mut batch = Batch::new();
    for i in 0..2500u32 {
        batch.set(format!("k/{i:05}").as_bytes(), format!("value {i}").as_bytes());
    }
    store.commit(batch).await.unwrap();
    for _ in 0..3 {
        store.next_value(b"c/uid", 7).await.unwrap();
    }
    let chunk = store.limits().blob_chunk_bytes;
    let mut hashes = Vec::new();
    for (content, refs) in [(b"petit".to_vec(), 2), (vec![9u8; 2 * chunk + 5], 1)] {
        for _ in 0..refs {
            let staged = store.stage_blob_bytes(&content).await.unwrap();
            hashes.push(staged.hash());
            let mut batch = Batch::new();
            batch.blob_acquire(staged);
            store.commit(batch).await.unwrap();
        }
    }
    hashes.dedup();
    hashes
}

/// A whole store copied into an empty one of another backend: the same digest, every key
/// and blob readable there, counters and versions going on from where the source was; a
/// destination that is not empty is refused.
pub(crate) async fn copy_between(from: &impl Harness, to: &impl Harness) {
    let source = from.open().await;
    let hashes = fill_for_copy(&source).await;
    let destination = to.open().await;
    let mut calls = 0;
    let digest = crate::copy::copy(&source, &destination, |_| calls += 1).await.unwrap();
    assert!(calls >= 2, "progress is told after each load and as the check begins: {calls}");
    assert_eq!((digest.keys, digest.blobs), (2501, 2));
    assert_eq!(digest, crate::copy::digest(&source.snapshot().await.unwrap(), true).await.unwrap());
    let copied = crate::copy::digest(&destination.snapshot().await.unwrap(), true).await.unwrap();
    assert_eq!((copied.keys_sha256, copied.blobs_sha256), (digest.keys_sha256.clone(), digest.blobs_sha256.clone()));
    assert_eq!(destination.get(b"k/01499").await.unwrap().unwrap().value, b"value 1499");
    assert_eq!(destination.read_blob(&hashes[0]).await.unwrap().unwrap(), b"petit");
    assert_eq!(destination.next_value(b"c/uid", 1).await.unwrap(), 22);
    let mut batch = Batch::new();
    batch.set(b"after", b"copy");
    let committed = destination.commit(batch).await.unwrap();
    assert!(committed.version > digest.version, "versions go on growing");
    // Both blob references of the small one were carried: two releases, then it is gone.
    for _ in 0..2 {
        let mut batch = Batch::new();
        batch.blob_release(&hashes[0]);
        destination.commit(batch).await.unwrap();
    }
    assert_eq!(destination.read_blob(&hashes[0]).await.unwrap(), None);
    assert!(matches!(crate::copy::copy(&source, &destination, |_| {}).await, Err(Error::NotEmpty)));
    source.close().await.unwrap();
    destination.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_copies_into_memory() {
    copy_between(&Memory::new(), &Memory::new()).await;
}

/// The digest tells two stores apart as soon as one value differs.
#[tokio::test]
async fn a_digest_sees_one_changed_value() {
    let (a, b) = (Memory::new().open().await, Memory::new().open().await);
    fill_for_copy(&a).await;
    crate::copy::copy(&a, &b, |_| {}).await.unwrap();
    let before = crate::copy::digest(&b.snapshot().await.unwrap(), false).await.unwrap();
    let mut batch = Batch::new();
    batch.set(b"k/00007", b"changed");
    b.commit(batch).await.unwrap();
    let after = crate::copy::digest(&b.snapshot().await.unwrap(), false).await.unwrap();
    assert_eq!(before.keys, after.keys);
    assert_ne!(before.keys_sha256, after.keys_sha256);
}

#[tokio::test]
async fn inconsistent_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options::rocksdb(dir.path());
    options.limits.blob_chunk_bytes = 100;
    let err = Store::open(&options).await.unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    // A chunk is one value: it may not be larger than the largest value.
    options.limits = Limits { value_bytes_max: 64 * 1024, blob_chunk_bytes: 128 * 1024, ..Limits::default() };
    let err = Store::open(&options).await.unwrap_err();
    assert!(err.to_string().contains("store.blob_chunk_bytes: 131072 is larger than store.value_bytes_max"), "{err}");
}

#[cfg(not(feature = "rocksdb"))]
#[tokio::test]
async fn a_build_without_rocksdb_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(&Options::rocksdb(dir.path())).await.unwrap_err();
    assert!(matches!(err, Error::InvalidOptions(_)), "{err}");
    assert!(err.to_string().contains("this build of Hameau has no RocksDB backend"), "{err}");
}

/// Opening the records again closes the store still open on them, as a crash would, and
/// removes the uploads it staged.
#[tokio::test]
async fn memory_open_takes_over_like_a_restart() {
    let memory = MemoryStore::new(test_limits());
    let first = memory.open();
    let mut batch = Batch::new();
    batch.set(b"kept", b"1");
    first.commit(batch).await.unwrap();
    let staged = first.stage_blob_bytes(vec![5u8; 3 * test_limits().blob_chunk_bytes]).await.unwrap();
    let second = memory.open();
    assert!(matches!(first.get(b"kept").await, Err(Error::Closed)));
    assert_eq!(second.get(b"kept").await.unwrap().unwrap().value, b"1");
    assert_eq!(second.staged_uploads().await.unwrap(), 0, "the first store's upload is an orphan");
    // The first store's staged blob, dropped now, touches nothing of the second.
    let mut batch = Batch::new();
    batch.blob_acquire(staged);
    assert!(matches!(first.commit(batch).await, Err(Error::Closed)));
    first.close().await.unwrap();
    assert_eq!(second.get(b"kept").await.unwrap().unwrap().value, b"1", "closing the old store is harmless");
    second.close().await.unwrap();
    let store = Store::memory(test_limits());
    assert_eq!(store.get(b"kept").await.unwrap(), None, "each Store::memory is a store of its own");
}

// Model-based property test: random sequences of operations on a backend and on a
// BTreeMap model give the same results.

#[derive(Clone, Debug)]
enum WriteOp {
    Set(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Add(Vec<u8>, i64),
}

#[derive(Clone, Debug)]
enum Condition {
    None,
    Absent(Vec<u8>),
    /// Expect the version the model has for the key (or a wrong one when `stale`).
    Current {
        key: Vec<u8>,
        stale: bool,
    },
}

#[derive(Clone, Debug)]
enum ModelOp {
    Commit(Condition, Vec<WriteOp>),
    Get(Vec<u8>),
    Scan { from: Vec<u8>, to: Vec<u8>, reverse: bool, limit: usize },
    Reopen,
}

fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xfe), Just(0xff)], 0..4)
}

fn write_strategy() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        (key_strategy(), prop::collection::vec(any::<u8>(), 0..10)).prop_map(|(k, v)| WriteOp::Set(k, v)),
        key_strategy().prop_map(WriteOp::Delete),
        (key_strategy(), -3i64..4).prop_map(|(k, d)| WriteOp::Add(k, d)),
    ]
}

fn op_strategy() -> impl Strategy<Value = ModelOp> {
    let condition = prop_oneof![
        2 => Just(Condition::None),
        1 => key_strategy().prop_map(Condition::Absent),
        2 => (key_strategy(), any::<bool>()).prop_map(|(key, stale)| Condition::Current { key, stale }),
    ];
    prop_oneof![
        6 => (condition, prop::collection::vec(write_strategy(), 1..5)).prop_map(|(c, w)| ModelOp::Commit(c, w)),
        2 => key_strategy().prop_map(ModelOp::Get),
        2 => (key_strategy(), key_strategy(), any::<bool>(), 0usize..6)
            .prop_map(|(from, to, reverse, limit)| ModelOp::Scan { from, to, reverse, limit }),
        1 => Just(ModelOp::Reopen),
    ]
}

type Model = BTreeMap<Vec<u8>, (Version, Vec<u8>)>;

/// What the model says a commit does: the new entries, or the error's kind.
fn model_commit(model: &Model, writes: &[WriteOp], version: Version) -> Result<Model, &'static str> {
    let mut next = model.clone();
    for write in writes {
        match write {
            WriteOp::Set(key, value) => {
                next.insert(key.clone(), (version, value.clone()));
            }
            WriteOp::Delete(key) => {
                next.remove(key);
            }
            WriteOp::Add(key, delta) => {
                let current = match next.get(key) {
                    None => 0,
                    Some((_, value)) => {
                        let bytes: [u8; 8] = value.as_slice().try_into().map_err(|_| "not a counter")?;
                        i64::from_be_bytes(bytes)
                    }
                };
                next.insert(key.clone(), (version, (current + delta).to_be_bytes().to_vec()));
            }
        }
    }
    Ok(next)
}

async fn run_model(harness: &impl Harness, ops: Vec<ModelOp>) {
    let mut store = harness.open().await;
    let mut model = Model::new();
    for op in ops {
        match op {
            ModelOp::Commit(condition, writes) => {
                let mut batch = Batch::new();
                let holds = match &condition {
                    Condition::None => true,
                    Condition::Absent(key) => {
                        batch.expect_absent(key);
                        !model.contains_key(key)
                    }
                    Condition::Current { key, stale } => {
                        let version = model.get(key).map(|(version, _)| *version).unwrap_or(1);
                        let version = if *stale { version + 1000 } else { version };
                        batch.expect_version(key, version);
                        !stale && model.contains_key(key)
                    }
                };
                for write in &writes {
                    match write {
                        WriteOp::Set(key, value) => {
                            batch.set(key, value);
                        }
                        WriteOp::Delete(key) => {
                            batch.delete(key);
                        }
                        WriteOp::Add(key, delta) => {
                            batch.add(key, *delta);
                        }
                    }
                }
                match (holds, store.commit(batch).await) {
                    (false, Err(Error::Conflict { .. })) => {}
                    (false, other) => panic!("expected a conflict, got {other:?}"),
                    (true, Ok(committed)) => {
                        model = model_commit(&model, &writes, committed.version).expect("model agrees");
                    }
                    (true, Err(Error::NotACounter { .. })) => {
                        assert_eq!(model_commit(&model, &writes, 0).unwrap_err(), "not a counter");
                    }
                    (true, Err(e)) => panic!("commit failed: {e}"),
                }
            }
            ModelOp::Get(key) => {
                let got = store.get(&key).await.unwrap().map(|entry| (entry.version, entry.value));
                assert_eq!(got.as_ref(), model.get(&key));
            }
            ModelOp::Scan { from, to, reverse, limit } => {
                let mut scan = Scan::range(&from, &to).limit(limit);
                if reverse {
                    scan = scan.reverse();
                }
                let got: Vec<_> =
                    store.scan(&scan).await.unwrap().into_iter().map(|e| (e.key, e.version, e.value)).collect();
                let in_range = model.iter().filter(|(key, _)| scan.contains(key));
                let expected: Vec<_> = if reverse {
                    in_range.rev().take(limit).map(|(k, (ver, val))| (k.clone(), *ver, val.clone())).collect()
                } else {
                    in_range.take(limit).map(|(k, (ver, val))| (k.clone(), *ver, val.clone())).collect()
                };
                assert_eq!(got, expected);
            }
            ModelOp::Reopen => {
                store.close().await.unwrap();
                store = harness.open().await;
            }
        }
    }
    let everything: Model =
        store.scan(&Scan::all()).await.unwrap().into_iter().map(|e| (e.key, (e.version, e.value))).collect();
    assert_eq!(everything, model);
    store.close().await.unwrap();
}

/// Runs [`run_model`] on a runtime of its own: proptest's cases are synchronous.
fn check_model(harness: &impl Harness, ops: Vec<ModelOp>) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(run_model(harness, ops));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[cfg(feature = "rocksdb")]
    #[test]
    fn rocksdb_behaves_like_a_btreemap(ops in prop::collection::vec(op_strategy(), 1..60)) {
        check_model(&rocks::Rocks::new(), ops);
    }

    #[cfg(feature = "postgresql")]
    #[test]
    fn postgresql_behaves_like_a_btreemap(ops in prop::collection::vec(op_strategy(), 1..60)) {
        check_model(&pg::Pg::new(), ops);
    }

    #[test]
    fn memory_behaves_like_a_btreemap(ops in prop::collection::vec(op_strategy(), 1..60)) {
        check_model(&Memory::new(), ops);
    }
}

/// 32 tasks acquire one blob concurrently, then it is released one reference at a time: it
/// goes with the last.
async fn acquire_and_release_concurrently(harness: &impl Harness) {
    let store = harness.open().await;
    let content = b"shared attachment".to_vec();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        let content = content.clone();
        tasks.push(tokio::spawn(async move {
            let staged = store.stage_blob_bytes(content).await.unwrap();
            let mut batch = Batch::new();
            batch.blob_acquire(staged);
            store.commit(batch).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let hash = BlobHash::of(&content);
    for n_left in (0..32).rev() {
        let mut batch = Batch::new();
        batch.blob_release(&hash);
        store.commit(batch).await.unwrap();
        assert_eq!(store.read_blob(&hash).await.unwrap().is_some(), n_left > 0);
    }
    let mut batch = Batch::new();
    batch.blob_release(&hash);
    assert!(matches!(store.commit(batch).await, Err(Error::BlobMissing { .. })));
    store.close().await.unwrap();
}

#[tokio::test]
async fn memory_concurrent_acquire_and_release_keep_counts_right() {
    acquire_and_release_concurrently(&Memory::new()).await;
}

/// The RocksDB backend's harness, its conformance suite, and what only a disk shows: the
/// lock of a directory, and durability across SIGKILL.
#[cfg(feature = "rocksdb")]
mod rocks {
    use std::collections::BTreeMap;
    use std::io::{BufRead, Write};
    use std::time::Duration;

    use super::test_limits;
    use crate::conformance::Harness;
    use crate::{Batch, BlobHash, Error, Options, Patch, PatchTarget, Scan, Store};

    /// A RocksDB store in a temporary directory.
    pub(super) struct Rocks {
        dir: tempfile::TempDir,
    }

    impl Rocks {
        pub(super) fn new() -> Rocks {
            Rocks { dir: tempfile::tempdir().expect("temp dir") }
        }
    }

    fn test_options(path: &std::path::Path) -> Options {
        let mut options = Options::rocksdb(path);
        options.limits = test_limits();
        options.cache_bytes = 8 * 1024 * 1024;
        options
    }

    #[async_trait::async_trait]
    impl Harness for Rocks {
        async fn open(&self) -> Store {
            Store::open(&test_options(self.dir.path())).await.expect("open store")
        }
    }

    mod conformance {
        use super::Rocks;
        crate::conformance_tests!(Rocks::new());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rocksdb_copies_into_memory() {
        super::copy_between(&Rocks::new(), &super::Memory::new()).await;
    }

    #[tokio::test]
    async fn second_open_of_one_directory_is_refused() {
        let rocks = Rocks::new();
        let store = rocks.open().await;
        let err = Store::open(&test_options(rocks.dir.path())).await.unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        assert!(err.to_string().contains("in use by another process"), "{err}");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_acquire_and_release_keep_counts_right() {
        super::acquire_and_release_concurrently(&Rocks::new()).await;
    }

    // Crash test: a child process commits batches and prints each one's id once its commit
    // returned; it is killed with SIGKILL at a random moment, 20 times; after each kill, every
    // printed batch is in the store, whole, and no batch is there in part.

    const CRASH_DIR_VAR: &str = "HAMEAU_STORE_CRASH_DIR";
    const KEYS_PER_BATCH: usize = 4;
    const WRITERS: usize = 8;

    /// Writes batches until killed (as the crash test's child) or, run as a plain test,
    /// writes a few hundred and checks them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn crash_child() {
        match std::env::var_os(CRASH_DIR_VAR) {
            Some(dir) => {
                let store = Store::open(&test_options(std::path::Path::new(&dir))).await.unwrap();
                write_batches(&store, u64::MAX, true).await;
            }
            None => {
                let rocks = Rocks::new();
                let store = rocks.open().await;
                write_batches(&store, 25, false).await;
                let n_found = verify_crash_store(&store, &(1..=200).collect::<Vec<i64>>()).await;
                assert_eq!(n_found, 200);
                store.close().await.unwrap();
            }
        }
    }

    /// `WRITERS` concurrent tasks each commit `per_writer` batches (or forever), printing
    /// each id once committed if `print`.
    async fn write_batches(store: &Store, per_writer: u64, print: bool) {
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..per_writer {
                    let id = commit_one(&store).await;
                    if !print {
                        continue;
                    }
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "committed {id}").unwrap();
                    stdout.flush().unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }

    /// One batch: the next id from a counter, `KEYS_PER_BATCH` keys under it (the id patched
    /// into keys and values), and a blob of random size (often several chunks).
    async fn commit_one(store: &Store) -> i64 {
        let nonce: u64 = rand::random();
        let blob_bytes = (nonce % (200 * 1024)) as usize;
        let content: Vec<u8> = (0..blob_bytes).map(|i| (nonce as usize + i * 7) as u8).collect();
        let staged = store.stage_blob_bytes(content).await.unwrap();
        let hash = staged.hash();
        let mut batch = Batch::new();
        let id = batch.add(b"crash/next", 1);
        for part in 0..KEYS_PER_BATCH {
            let key = [b"crash/b/".as_slice(), &[0; 8], b"/", &[part as u8]].concat();
            let value = [&[0; 8], nonce.to_be_bytes().as_slice(), &[part as u8; 100]].concat();
            let patches = [
                Patch { counter: id, target: PatchTarget::Key, offset: 8 },
                Patch { counter: id, target: PatchTarget::Value, offset: 0 },
            ];
            batch.set_patched(&key, &value, &patches);
        }
        let key = [b"crash/h/".as_slice(), &[0; 8]].concat();
        batch.set_patched(&key, &hash.0, &[Patch { counter: id, target: PatchTarget::Key, offset: 8 }]);
        batch.blob_acquire(staged);
        store.commit(batch).await.unwrap().counters[0]
    }

    /// Checks that every batch in `printed` is whole and that every batch present is whole.
    /// Returns the number of batches present.
    async fn verify_crash_store(store: &Store, printed: &[i64]) -> usize {
        let entries = store.scan(&Scan::prefix(b"crash/b/")).await.unwrap();
        let mut parts: BTreeMap<i64, Vec<(u8, Vec<u8>)>> = BTreeMap::new();
        for entry in entries {
            let id = i64::from_be_bytes(entry.key[8..16].try_into().unwrap());
            parts.entry(id).or_default().push((entry.key[17], entry.value));
        }
        for (id, batch_parts) in &parts {
            assert_eq!(batch_parts.len(), KEYS_PER_BATCH, "batch {id} is only partly there");
            let nonce = &batch_parts[0].1[8..16];
            for (part, value) in batch_parts {
                assert_eq!(i64::from_be_bytes(value[..8].try_into().unwrap()), *id);
                assert_eq!(&value[8..16], nonce, "batch {id} mixes two writes");
                assert_eq!(&value[16..], &[*part; 100]);
            }
            let key = [b"crash/h/".as_slice(), &id.to_be_bytes()].concat();
            let hash_entry = store.get(&key).await.unwrap().unwrap_or_else(|| panic!("batch {id} lost its blob key"));
            let hash = BlobHash(hash_entry.value.try_into().unwrap());
            let blob = store.read_blob(&hash).await.unwrap().unwrap_or_else(|| panic!("batch {id} lost its blob"));
            assert_eq!(BlobHash::of(&blob), hash, "blob of batch {id} is damaged");
        }
        for id in printed {
            assert!(parts.contains_key(id), "batch {id} was acknowledged but is lost");
        }
        let next = store.counter(b"crash/next").await.unwrap();
        assert!(parts.keys().all(|id| *id <= next), "the counter went back");
        parts.len()
    }

    #[test]
    fn sigkill_loses_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut printed: Vec<i64> = Vec::new();
        for round in 0..20 {
            let mut child = std::process::Command::new(&exe)
                .args(["--exact", "tests::rocks::crash_child", "--nocapture", "--test-threads=1"])
                .env(CRASH_DIR_VAR, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (lines_tx, lines_rx) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in std::io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(id) = line.strip_prefix("committed ") {
                        let _ = lines_tx.send(id.parse::<i64>().unwrap());
                    }
                }
            });
            // Let the child commit for a while, then kill it at a random moment.
            let first = lines_rx.recv_timeout(Duration::from_secs(60)).expect("the child commits");
            printed.push(first);
            std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 300));
            child.kill().unwrap();
            child.wait().unwrap();
            reader.join().unwrap();
            printed.extend(lines_rx.try_iter());
            let n_found = runtime.block_on(async {
                let store = Store::open(&test_options(dir.path())).await.unwrap();
                let n_found = verify_crash_store(&store, &printed).await;
                store.close().await.unwrap();
                n_found
            });
            assert!(n_found >= printed.len(), "round {round}");
        }
        assert!(printed.len() > 100, "the children committed too little to test anything");
    }
}

/// The PostgreSQL backend's harness and conformance suite, and what only several stores on
/// one database show (several nodes). The database is `HAMEAU_TEST_PG_URL`'s
/// (`scripts/pg-cluster.sh start DIR` starts one and prints it); each harness has a schema
/// of its own.
#[cfg(feature = "postgresql")]
mod pg {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::test_limits;
    use crate::conformance::Harness;
    use crate::{Batch, Error, Options, Store};

    pub(super) struct Pg {
        options: Options,
    }

    impl Pg {
        pub(super) fn new() -> Pg {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let url = std::env::var("HAMEAU_TEST_PG_URL").expect(
                "HAMEAU_TEST_PG_URL is not set: the PostgreSQL tests need a database \\
                 (`scripts/pg-cluster.sh start DIR` starts one and prints its URL)",
            );
            let mut options = Options::postgresql(&url);
            options.schema = format!("test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
            options.limits = test_limits();
            options.pool_connections = 4;
            Pg { options }
        }

        /// The harness's schema.
        pub(super) fn schema(&self) -> String {
            self.options.schema.clone()
        }

        /// A pool on the test database, for what a test does behind the store's back.
        pub(super) async fn pool(&self) -> sqlx::PgPool {
            sqlx::PgPool::connect(self.options.url.as_str()).await.expect("connect")
        }
    }

    #[async_trait::async_trait]
    impl Harness for Pg {
        async fn open(&self) -> Store {
            Store::open(&self.options).await.expect("open store")
        }
    }

    mod conformance {
        use super::Pg;
        crate::conformance_tests!(Pg::new());
    }

    /// `hameau migrate-store`'s two ways: RocksDB to PostgreSQL, and back.
    #[cfg(feature = "rocksdb")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rocksdb_copies_into_postgresql_and_back() {
        super::copy_between(&super::rocks::Rocks::new(), &Pg::new()).await;
        super::copy_between(&Pg::new(), &super::rocks::Rocks::new()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_acquire_and_release_keep_counts_right() {
        super::acquire_and_release_concurrently(&Pg::new()).await;
    }

    /// Two stores on one database, as two nodes: counters never repeat across them, an
    /// expectation fails whichever node wrote first, and each sees the other's commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_share_counters_and_expectations() {
        let harness = Pg::new();
        let (a, b) = (harness.open().await, harness.open().await);
        assert!(a.is_shared(), "other processes may use a PostgreSQL store");
        assert!(!Store::memory(test_limits()).is_shared());
        let mut tasks = Vec::new();
        for node in [a.clone(), b.clone()] {
            for _ in 0..4 {
                let node = node.clone();
                tasks.push(tokio::spawn(async move {
                    let mut values = Vec::new();
                    for _ in 0..25 {
                        values.push(node.next_value(b"uid", 1).await.unwrap());
                    }
                    values
                }));
            }
        }
        let mut values = Vec::new();
        for task in tasks {
            values.extend(task.await.unwrap());
        }
        values.sort_unstable();
        assert_eq!(values, (1..=200).collect::<Vec<i64>>(), "each value once, none skipped");
        // A read on one node, a write on the other: the first node's expectation fails.
        let mut batch = Batch::new();
        batch.set(b"k", b"a");
        a.commit(batch).await.unwrap();
        let seen = b.get(b"k").await.unwrap().unwrap();
        let mut batch = Batch::new();
        batch.set(b"k", b"from a");
        a.commit(batch).await.unwrap();
        let mut batch = Batch::new();
        batch.expect_version(b"k", seen.version).set(b"k", b"from b");
        assert!(matches!(b.commit(batch).await, Err(Error::Conflict { .. })));
        assert_eq!(b.get(b"k").await.unwrap().unwrap().value, b"from a");
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// A store that opens removes the uploads of stores that ended, never those of a store
    /// still open on another node.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_open_removes_only_the_uploads_of_ended_stores() {
        let harness = Pg::new();
        let a = harness.open().await;
        let chunk = a.limits().blob_chunk_bytes;
        let live = a.stage_blob_bytes(vec![1u8; 2 * chunk]).await.unwrap();
        let ended = harness.open().await;
        std::mem::forget(ended.stage_blob_bytes(vec![2u8; 2 * chunk]).await.unwrap());
        ended.close().await.unwrap();
        assert_eq!(a.staged_uploads().await.unwrap(), 2);
        let b = harness.open().await;
        assert_eq!(b.staged_uploads().await.unwrap(), 1, "the ended store's upload is gone, a's is not");
        let hash = live.hash();
        let mut batch = Batch::new();
        batch.blob_acquire(live);
        a.commit(batch).await.unwrap();
        assert_eq!(b.read_blob(&hash).await.unwrap(), Some(vec![1u8; 2 * chunk]));
        a.close().await.unwrap();
        b.close().await.unwrap();
    }

    /// A session whose connection broke (the database restarted, a failover) is taken
    /// again: the other nodes see it ended for a moment, then live again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_session_is_taken_again_after_its_connection_broke() {
        let harness = Pg::new();
        let (a, b) = (harness.open().await, harness.open().await);
        let session = a.session();
        assert!(b.ended_sessions(&[session]).await.unwrap().is_empty());
        let pool = harness.pool().await;
        let (terminated,): (i64,) = sqlx::query_as(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND objid::int8 = $1",
        )
        .bind(session as i64)
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(terminated, 1, "one connection holds the session");
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(1)
            && b.ended_sessions(&[session]).await.unwrap().is_empty()
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(b.ended_sessions(&[session]).await.unwrap(), vec![session], "seen ended while it is down");
        while !b.ended_sessions(&[session]).await.unwrap().is_empty() {
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "the session was not taken again");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
        pool.close().await;
    }

    /// The statements the committer and the readers prepare run on a generic plan: on tables
    /// still empty (the worst case for a plan made once), each reads and writes through
    /// the primary keys, never by scanning a whole table (the clock's one row aside).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prepared_statements_use_the_primary_keys_even_on_empty_tables() {
        use crate::postgres::{FETCH_SQL, GET_MANY_SQL, WRITE_SQL, connect_options, keyed_connection};
        let harness = Pg::new();
        let store = harness.open().await;
        let mut connection = keyed_connection(&connect_options(&harness.options).unwrap()).await.unwrap();
        let statements = [
            ("get_many", "bytea[]", GET_MANY_SQL, 1),
            ("fetch", "bytea[], bytea[], bytea[]", FETCH_SQL, 3),
            (
                "write",
                "bytea[], bytea[], bigint[], bytea[], bytea[], integer[], bytea[], integer[], bytea[], \
                 bytea[], bytea[], bigint[], bigint[], integer[], bytea[], bytea[], bigint, text, text[]",
                WRITE_SQL,
                19,
            ),
        ];
        for (name, types, sql, n_params) in statements {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE checked_{name} ({types}) AS {sql}")))
                .execute(&mut connection)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let nulls = vec!["NULL"; n_params].join(", ");
            let plan: Vec<(String,)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN EXECUTE checked_{name} ({nulls})")))
                    .fetch_all(&mut connection)
                    .await
                    .unwrap();
            let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
            let scans: Vec<&String> =
                plan.iter().filter(|line| line.contains("Seq Scan") && !line.contains("Seq Scan on clock")).collect();
            assert!(scans.is_empty(), "{name} scans a table:\n{}", plan.join("\n"));
            // Compiled at each execution, it took 290 ms a commit.
            assert!(!plan.iter().any(|line| line.contains("JIT")), "{name} is compiled by JIT:\n{}", plan.join("\n"));
            // An index read whole is no better than the table.
            for (at, line) in plan.iter().enumerate() {
                if line.contains("Index Scan using") || line.contains("Index Scan on") {
                    let cond = plan.get(at + 1).is_some_and(|next| next.contains("Index Cond"));
                    assert!(cond, "{name} reads a whole index:\n{}", plan.join("\n"));
                }
            }
            for table in ["entries", "blobs", "blob_chunks", "uploads"] {
                if sql.contains(&format!("FROM {table} WHERE")) {
                    assert!(
                        plan.iter().any(|line| line.contains(&format!("Index Scan using {table}_pkey"))
                            || line.contains(&format!("Index Scan on {table}_pkey"))),
                        "{name} reads {table} without its primary key:\n{}",
                        plan.join("\n")
                    );
                }
            }
        }
        store.close().await.unwrap();
    }

    /// With several hosts, a host that does not answer is passed over for the next.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_host_that_does_not_answer_is_passed_over() {
        let harness = Pg::new();
        let mut options = harness.options.clone();
        let url = options.url.as_str().to_string();
        let at = url.rfind('@').expect("the test URL has a user") + 1;
        options.url = crate::DatabaseUrl(format!("{}127.0.0.1:9,{}", &url[..at], &url[at..]));
        let store = Store::open(&options).await.expect("open through the second host");
        let mut batch = Batch::new();
        batch.set(b"k", b"v");
        store.commit(batch).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap().unwrap().value, b"v");
        store.close().await.unwrap();
    }

    /// The URL's password is not shown by the options' Debug nor by its errors.
    #[test]
    fn the_password_is_never_shown() {
        let options = Options::postgresql("postgresql://hameau:s3cret@db.example:5432/hameau");
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("postgresql://hameau:***@db.example:5432/hameau"),
            "{shown}"
        );
        let options = Options::postgresql("postgresql://hameau:s3cret@db.example:notaport/hameau");
        let problem = options.check().unwrap_err().to_string();
        assert!(!problem.contains("s3cret") && problem.contains("store.url"), "{problem}");
        let options = Options::postgresql("");
        assert!(options.check().unwrap_err().to_string().contains("store.url: is needed"));
        // Several hosts are followed (the primary among them); a session that may not write
        // is refused.
        let options = Options::postgresql("postgresql://hameau@/hameau?host=db1,db2&target_session_attrs=read-write");
        assert_eq!(options.check().map_err(|p| p.to_string()), Ok(()));
        let options = Options::postgresql("postgresql://hameau:s3cret@db1,db2/hameau?target_session_attrs=standby");
        let problem = options.check().unwrap_err().to_string();
        assert!(problem.contains("target_session_attrs=standby") && !problem.contains("s3cret"), "{problem}");
    }
}

/// A backend that fetches before it applies (PostgreSQL) relies on `records::batch_reads`
/// listing every record `records::apply_batch` reads: a batch of every kind of operation
/// reads nothing else.
#[tokio::test]
async fn apply_batch_reads_only_what_batch_reads_lists() {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use crate::blob::BlobMeta;
    use crate::records::{Family, Source, apply_batch, batch_reads, blob_key, encode_value};

    struct Recording {
        released: Vec<u8>,
        reads: Mutex<Vec<(Family, Vec<u8>)>>,
    }
    impl Source for Recording {
        fn read(&self, family: Family, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
            self.reads.lock().unwrap().push((family, key.to_vec()));
            Ok(match (family, key) {
                (Family::Kv, b"expected") => Some(encode_value(3, b"x")),
                (Family::Meta, key) if key == self.released.as_slice() => {
                    let meta = BlobMeta { refcount: 2, size: 1, n_chunks: 1, location: vec![7; 32] };
                    Some(meta.encode())
                }
                // Every upload is registered.
                (Family::Meta, [b'u', ..]) => Some(Vec::new()),
                _ => None,
            })
        }
    }
    let store = Store::memory(test_limits());
    let released = BlobHash::of(b"released");
    let mut batch = Batch::new();
    batch.expect_absent(b"absent").expect_version(b"expected", 3);
    batch.set(b"set", b"v").delete(b"deleted");
    let counter = batch.add(b"counter", 1);
    batch.add_at_most(b"bounded", 1, 10);
    let patch = crate::Patch { counter, target: crate::PatchTarget::Key, offset: 0 };
    batch.set_patched(&[0u8; 8], b"patched", &[patch]);
    batch.blob_acquire(store.stage_blob_bytes(b"inline").await.unwrap());
    let large = vec![1u8; 3 * test_limits().blob_chunk_bytes];
    batch.blob_acquire(store.stage_blob_bytes(&large).await.unwrap());
    batch.blob_release(&released);
    let listed: HashSet<(Family, Vec<u8>)> = batch_reads(&batch).collect();
    let source = Recording { released: blob_key(&released), reads: Mutex::new(Vec::new()) };
    let mut uploads = Vec::new();
    apply_batch(&source, batch, 4, &mut uploads).expect("the batch applies");
    let reads = source.reads.into_inner().unwrap();
    assert!(reads.len() >= 7, "{reads:?}");
    for read in reads {
        assert!(listed.contains(&read), "apply_batch read {read:?}, which batch_reads does not list");
    }
}

/// Commits of another node reach this node's watchers through `LISTEN/NOTIFY`, and still do
/// after the listening connection was cut (the node listens again and reads what it missed).
#[cfg(feature = "postgresql")]
mod pg_notifications {
    use std::time::Duration;

    use super::pg::Pg;
    use crate::conformance::Harness;
    use crate::{Batch, CounterValue};

    async fn heard(receiver: &mut tokio::sync::watch::Receiver<CounterValue>, value: i64) -> Duration {
        let start = std::time::Instant::now();
        let waited =
            tokio::time::timeout(Duration::from_secs(5), receiver.wait_for(|seen| seen.value == value)).await.is_ok();
        assert!(waited, "the other node's commit was not heard: {:?}", *receiver.borrow());
        start.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_nodes_commits_are_heard() {
        let harness = Pg::new();
        let (a, b) = (harness.open().await, harness.open().await);
        let mut watching = b.watch(b"modseq").await.unwrap();
        assert_eq!(watching.borrow().value, 0);
        let mut batch = Batch::new();
        batch.add(b"modseq", 5);
        batch.add(b"unwatched", 1);
        a.commit(batch).await.unwrap();
        let waited = heard(&mut watching, 5).await;
        assert!(waited < Duration::from_secs(1), "heard after {waited:?}");
        // The listening connections are cut, as by a database restart; meanwhile a commit.
        let schema = harness.schema();
        let cut: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN \"hameau_' || $1 || '\"'",
        )
        .bind(&schema)
        .fetch_all(&harness.pool().await)
        .await
        .unwrap();
        assert!(!cut.is_empty(), "no listening connection found");
        a.next_value(b"modseq", 2).await.unwrap();
        heard(&mut watching, 7).await;
        // And listening goes on after.
        a.next_value(b"modseq", 1).await.unwrap();
        let waited = heard(&mut watching, 8).await;
        assert!(waited < Duration::from_secs(1), "heard after {waited:?}");
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
}

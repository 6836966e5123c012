use std::path::Path;

use hameau_store::{Batch, BlobHash, Entry, Options, Scan, Store};

use crate::format::{self, parse_record, write_record};
use crate::{
    BackupOptions, Decryption, Encryption, Error, Kind, Owner, Owners, RestoreOptions, backup, restore, verify,
};

fn check_record(key: &[u8], value: &[u8], field: &str) {
    let entry = Entry { key: key.to_vec(), version: 42, value: value.to_vec() };
    let mut line = Vec::new();
    write_record(&mut line, &entry).unwrap();
    assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line: {}", String::from_utf8_lossy(&line));
    let text = String::from_utf8(line.clone()).unwrap();
    assert!(text.contains(&format!("\"{field}\"")), "{field} in {text}");
    assert_eq!(parse_record(&line[..line.len() - 1]).unwrap(), entry, "{text}");
}

#[test]
fn records_round_trip_in_their_most_readable_form() {
    check_record(b"u/1/mailbox", br#"{"name":"Inbox","b":[1,2]}"#, "value_json");
    check_record(b"u/1/list", b"[1, 2 ,3]", "value_json");
    check_record(b"text", b"Bonjour \xc3\xa9t\xc3\xa9\nsecond line", "value_text");
    check_record(b"json-with-space", b" {\"a\":1}", "value_text");
    check_record(b"json-with-newline", b"{\"a\":\n1}", "value_text");
    check_record(b"not json", b"{not json}", "value_text");
    check_record(b"counter", &7i64.to_be_bytes(), "value_b64");
    check_record(b"\x00\xffbinary key", b"", "key_b64");
    check_record(b"empty", b"", "value_text");
}

#[test]
fn dates_are_rfc3339_utc() {
    assert_eq!(format::rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(format::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(format::rfc3339(1_796_052_000), "2026-11-30T15:20:00Z");
}

#[test]
fn long_lines_are_refused_not_buffered() {
    let mut input = std::io::Cursor::new(vec![b'a'; 100_000]);
    let mut line = Vec::new();
    assert!(format::read_line(&mut input, &mut line, 65_536).is_err());
    let mut input = std::io::Cursor::new(b"one\ntwo".to_vec());
    assert!(format::read_line(&mut input, &mut line, 10).unwrap());
    assert_eq!(line, b"one");
    assert!(format::read_line(&mut input, &mut line, 10).unwrap());
    assert_eq!(line, b"two");
    assert!(!format::read_line(&mut input, &mut line, 10).unwrap());
}

async fn open(dir: &Path) -> Store {
    Store::open(&Options::rocksdb(dir)).await.unwrap()
}

async fn put(store: &Store, key: &[u8], value: &[u8]) {
    let mut batch = Batch::new();
    batch.set(key, value);
    store.commit(batch).await.unwrap();
}

async fn deliver(store: &Store, key: &[u8], content: &[u8]) -> BlobHash {
    let staged = store.stage_blob_bytes(content).await.unwrap();
    let hash = staged.hash();
    let mut batch = Batch::new();
    batch.set(key, &hash.0).blob_acquire(staged);
    store.commit(batch).await.unwrap();
    hash
}

/// Everything a store holds: keys with versions and values, blobs with their counts.
async fn contents(store: &Store) -> (Vec<Entry>, Vec<(BlobHash, u64, u64)>) {
    let snapshot = store.snapshot().await.unwrap();
    let entries = snapshot.scan(&Scan::all()).await.unwrap();
    let blobs = snapshot.blobs(None, 10_000).await.unwrap();
    (entries, blobs.iter().map(|blob| (blob.hash, blob.size, blob.refcount)).collect())
}

/// Restores `from` into a new store and returns what it holds.
async fn restored(
    from: &Path,
    options: &RestoreOptions,
) -> Result<(Entry, (Vec<Entry>, Vec<(BlobHash, u64, u64)>)), Error> {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    restore(&store, from, options).await?;
    let held = contents(&store).await;
    let mut batch = Batch::new();
    batch.set(b"after-restore", b"x");
    let version = store.commit(batch).await.unwrap().version;
    store.close().await.unwrap();
    Ok((Entry { key: b"after-restore".to_vec(), version, value: b"x".to_vec() }, held))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_backups_restores_the_last_state() {
    let data = tempfile::tempdir().unwrap();
    let set = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    put(&store, b"a", b"{\"v\":1}").await;
    put(&store, b"b", b"deleted later").await;
    store.next_value(b"uidnext", 10).await.unwrap();
    let shared = deliver(&store, b"m1", b"Subject: one\r\n\r\nbody\r\n").await;
    deliver(&store, b"m2", b"Subject: one\r\n\r\nbody\r\n").await;
    let big = vec![b'x'; 2 * 512 * 1024 + 3];
    deliver(&store, b"m3", &big).await;
    let options = BackupOptions::default();
    let full = backup(&store, set.path(), &options, 1_796_052_000).await.unwrap();
    assert_eq!((full.kind, full.counts.records, full.counts.blobs_written), (Kind::Full, 6, 2));

    // Changes: one key changed, one deleted, a counter moved, a blob released, one new.
    put(&store, b"a", b"{\"v\":2}").await;
    let mut batch = Batch::new();
    batch.delete(b"b").delete(b"m2").blob_release(&shared);
    store.commit(batch).await.unwrap();
    store.next_value(b"uidnext", 1).await.unwrap();
    deliver(&store, b"m4", b"Subject: four\r\n\r\nnew\r\n").await;
    let incremental = backup(&store, set.path(), &options, 1_796_055_600).await.unwrap();
    assert_eq!(incremental.kind, Kind::Incremental);
    assert_eq!(incremental.base.as_deref(), Some(full.name.as_str()));
    assert_eq!(incremental.counts.records, 3, "a, uidnext and m4: {incremental:?}");
    assert_eq!(incremental.counts.blobs_written, 1, "only the new message");
    assert_eq!(incremental.counts.keys, 5);
    let blob_files = walk(&incremental.path.join("blobs"));
    assert_eq!(blob_files.len(), 1);
    // Its index: the two keys gone, the shared message's count, the new message.
    assert_eq!((incremental.counts.deleted_keys, incremental.counts.index_lines), (2, 4), "{incremental:?}");
    let index = std::fs::read_to_string(incremental.path.join("index.jsonl")).unwrap();
    assert!(index.contains(&format!("{{\"blob\":\"{shared}\",\"bytes\":22,\"refs\":1,")), "{index}");

    // A third: a deleted key comes back, a message goes with its last reference.
    put(&store, b"b", b"back again").await;
    let big_hash = BlobHash::of(&big);
    let mut batch = Batch::new();
    batch.delete(b"m3").blob_release(&big_hash);
    store.commit(batch).await.unwrap();
    let third = backup(&store, set.path(), &options, 1_796_059_200).await.unwrap();
    assert_eq!((third.counts.records, third.counts.deleted_keys, third.counts.index_lines), (1, 1, 2), "{third:?}");
    let index = std::fs::read_to_string(third.path.join("index.jsonl")).unwrap();
    assert!(index.contains(&format!("{{\"blob\":\"{big_hash}\",\"refs\":0}}")), "{index}");

    let expected = contents(&store).await;
    let last_version = store
        .commit({
            let mut batch = Batch::new();
            batch.set(b"later", b"not in the backup");
            batch
        })
        .await
        .unwrap()
        .version;
    store.close().await.unwrap();

    let (after, held) = restored(set.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(held, expected, "the restored store holds exactly what the last backup saw");
    assert!(after.version > third.store_version && after.version < last_version + 10);
    // The full backup alone restores the earlier state.
    let (_, earlier) = restored(&full.path, &RestoreOptions::default()).await.unwrap();
    assert_eq!(
        earlier.0.iter().find(|entry| entry.key == b"b").map(|entry| entry.value.clone()),
        Some(b"deleted later".to_vec())
    );
    assert_eq!(earlier.1.iter().find(|blob| blob.0 == shared).map(|blob| blob.2), Some(2));

    let report = verify(set.path(), 1 << 30).unwrap();
    assert!(report.is_sound(), "{report:?}");
    assert_eq!(report.backups.len(), 3);
    // The second backup restores its own state: the chain up to it.
    let (_, second) = restored(&incremental.path, &RestoreOptions::default()).await.unwrap();
    assert!(second.0.iter().all(|entry| entry.key != b"b") && second.1.iter().any(|blob| blob.0 == big_hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_a_flipped_byte_and_a_missing_file() {
    let data = tempfile::tempdir().unwrap();
    let set = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    for idx in 0..5u8 {
        deliver(&store, &[b'm', idx], &[b'a' + idx; 100]).await;
    }
    let full = backup(&store, set.path(), &BackupOptions::default(), 0).await.unwrap();
    store.close().await.unwrap();
    let files = walk(&full.path.join("blobs"));
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&files[0], &bytes).unwrap();
    std::fs::remove_file(&files[1]).unwrap();
    let report = verify(set.path(), 1 << 30).unwrap();
    assert_eq!(report.findings.len(), 2, "{report:?}");
    assert!(
        report
            .findings
            .iter()
            .any(|finding| matches!(finding, crate::Finding::Corrupt { path, .. } if *path == files[0]))
    );
    assert!(
        report.findings.iter().any(|finding| matches!(finding, crate::Finding::Missing { path } if *path == files[1]))
    );
    let err = restored(set.path(), &RestoreOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("No such file") || err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_need_their_key() {
    let data = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    let hash = deliver(&store, b"m1", b"Subject: secret\r\n\r\nconfidential\r\n").await;
    put(&store, b"k", b"visible only with the key").await;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let secret = age::secrecy::ExposeSecret::expose_secret(&identity.to_string()).to_string();
    for (encryption, decryption, wrong) in [
        (
            Encryption::Recipient(recipient),
            Decryption::Identity(secret),
            Decryption::Identity(
                age::secrecy::ExposeSecret::expose_secret(&age::x25519::Identity::generate().to_string()).to_string(),
            ),
        ),
        (
            Encryption::Passphrase("correct horse".into()),
            Decryption::Passphrase("correct horse".into()),
            Decryption::Passphrase("wrong".into()),
        ),
    ] {
        let set = tempfile::tempdir().unwrap();
        let options = BackupOptions { encryption: Some(encryption), ..BackupOptions::default() };
        let full = backup(&store, set.path(), &options, 0).await.unwrap();
        put(&store, b"k2", b"incremental").await;
        let incremental = backup(&store, set.path(), &options, 1).await.unwrap();
        assert_eq!(incremental.kind, Kind::Incremental, "{incremental:?}");
        assert_eq!(incremental.counts.blobs_written, 0, "the chain holds the message already");
        // Nothing in clear: not the message, not the record, not the message's hash.
        for file in walk(&full.path) {
            let bytes = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("confidential") && !text.contains("visible only"), "{}", file.display());
            assert!(!file.to_string_lossy().contains(&hash.to_hex()), "{}", file.display());
        }
        assert!(matches!(restored(set.path(), &RestoreOptions::default()).await, Err(Error::KeyNeeded(_))));
        let with_wrong = RestoreOptions { decryption: Some(wrong), ..RestoreOptions::default() };
        assert!(matches!(restored(set.path(), &with_wrong).await, Err(Error::Crypt(_))));
        let with_key = RestoreOptions { decryption: Some(decryption), ..RestoreOptions::default() };
        let (_, (entries, blobs)) = restored(set.path(), &with_key).await.unwrap();
        assert!(entries.iter().any(|entry| entry.key == b"k2"));
        assert_eq!(blobs.iter().map(|blob| blob.0).collect::<Vec<_>>(), vec![hash]);
        assert!(verify(set.path(), 1 << 30).unwrap().is_sound());
    }
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_restore_without_owners_is_refused_clearly() {
    let store_dir = tempfile::tempdir().unwrap();
    let store = open(store_dir.path()).await;
    let options = RestoreOptions { tenant: Some("a".into()), ..RestoreOptions::default() };
    assert!(matches!(restore(&store, store_dir.path(), &options).await, Err(Error::TenantRestore)));
    store.close().await.unwrap();
}

/// A seam over made-up keys: `t/<tenant>` and `acc/<id>` (the tenant in the value) are a
/// tenant's, `m/<id>/…` its account's (the value a blob hash), `q/<tenant>/…` a queued
/// message (the value a blob hash), `seq` and `op-key` the installation's, `qsize` counts
/// `q/`, `closing/…` nobody's; anything else is unknown.
#[derive(Debug)]
struct FakeOwners;

impl Owners for FakeOwners {
    fn owner(&self, key: &[u8], value: &[u8]) -> Owner {
        let text = String::from_utf8_lossy(key);
        let mut parts = text.split('/');
        match (parts.next(), parts.next()) {
            (Some("t"), Some(tenant)) | (Some("q"), Some(tenant)) => Owner::Tenant(tenant.into()),
            (Some("acc"), Some(_)) => Owner::Tenant(String::from_utf8_lossy(value).into()),
            (Some("m"), Some(account)) => Owner::Via(format!("acc/{account}").into_bytes()),
            (Some("seq" | "op-key"), None) => Owner::Installation,
            (Some("qsize"), None) => Owner::CountOf(b"q/".to_vec()),
            (Some("closing"), _) => Owner::Nobody,
            _ => Owner::Unknown,
        }
    }

    fn blob_refs(&self, key: &[u8], value: &[u8]) -> Vec<BlobHash> {
        match (key.starts_with(b"m/") || key.starts_with(b"q/"), <[u8; 32]>::try_from(value)) {
            (true, Ok(hash)) => vec![BlobHash(hash)],
            _ => Vec::new(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_restore_keeps_the_tenant_and_recounts_what_it_holds() {
    let data = tempfile::tempdir().unwrap();
    let set = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    for (key, value) in [
        (&b"t/a"[..], &b"{}"[..]),
        (b"t/b", b"{}"),
        (b"acc/1", b"a"),
        (b"acc/2", b"b"),
        (b"op-key", b"operator"),
        (b"closing/t/b", b""),
    ] {
        put(&store, key, value).await;
    }
    store.next_value(b"seq", 2).await.unwrap();
    store.next_value(b"qsize", 2).await.unwrap();
    // One message shared by a's and b's accounts, one each alone, one queued each.
    let shared = deliver(&store, b"m/1/e/1", b"Subject: both\r\n\r\nx\r\n").await;
    deliver(&store, b"m/2/e/1", b"Subject: both\r\n\r\nx\r\n").await;
    let only_a = deliver(&store, b"m/1/e/2", b"Subject: a\r\n\r\na\r\n").await;
    let only_b = deliver(&store, b"m/2/e/2", b"Subject: b\r\n\r\nb\r\n").await;
    let queued_a = deliver(&store, b"q/a/1", b"Subject: out a\r\n\r\n").await;
    deliver(&store, b"q/b/2", b"Subject: out b\r\n\r\n").await;
    backup(&store, set.path(), &BackupOptions::default(), 1_796_052_000).await.unwrap();
    // An incremental one on top: a's account gets another reference to the shared message.
    deliver(&store, b"m/1/e/3", b"Subject: both\r\n\r\nx\r\n").await;
    backup(&store, set.path(), &BackupOptions::default(), 1_796_055_600).await.unwrap();
    let (before, _) = contents(&store).await;
    store.close().await.unwrap();

    let options = RestoreOptions {
        tenant: Some("a".into()),
        owners: Some(std::sync::Arc::new(FakeOwners)),
        ..RestoreOptions::default()
    };
    let (after, (entries, blobs)) = restored(set.path(), &options).await.unwrap();
    let keys: Vec<&[u8]> = entries.iter().map(|entry| entry.key.as_slice()).collect();
    let expected: Vec<&[u8]> =
        vec![b"acc/1", b"m/1/e/1", b"m/1/e/2", b"m/1/e/3", b"op-key", b"q/a/1", b"qsize", b"seq", b"t/a"];
    assert_eq!(keys, expected);
    let value = |key: &[u8]| entries.iter().find(|entry| entry.key == key).unwrap().value.clone();
    assert_eq!(value(b"qsize"), 1i64.to_be_bytes(), "recounted from the queue kept");
    assert_eq!(value(b"seq"), 2i64.to_be_bytes(), "installation counters as they were");
    // Versions as they were, and the store's version past the backup's.
    for entry in &entries {
        if entry.key != b"qsize" {
            assert!(before.contains(entry), "{entry:?}");
        }
    }
    assert!(before.iter().all(|entry| entry.version < after.version));
    // The shared message with a's two references only; b's alone not at all.
    let mut counts: Vec<(BlobHash, u64)> = blobs.iter().map(|(hash, _, refs)| (*hash, *refs)).collect();
    counts.sort();
    let mut expected = vec![(shared, 2), (only_a, 1), (queued_a, 1)];
    expected.sort();
    assert_eq!(counts, expected);
    assert!(!counts.iter().any(|(hash, _)| *hash == only_b));

    // A tenant the backup does not hold is refused, not restored as an empty installation.
    let nobody = RestoreOptions { tenant: Some("c".into()), ..options.clone() };
    assert!(matches!(restored(set.path(), &nobody).await, Err(Error::Owner(_))));

    // A record no crate claims stops the restore rather than vanish.
    let unknown = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    put(&store, b"mystery", b"?").await;
    backup(&store, unknown.path(), &BackupOptions::default(), 1_796_059_200).await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(restored(unknown.path(), &options).await, Err(Error::Owner(_))));
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { stack.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backup_is_ignored_and_a_missing_base_is_reported() {
    let data = tempfile::tempdir().unwrap();
    let set = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    deliver(&store, b"m1", b"one").await;
    let full = backup(&store, set.path(), &BackupOptions::default(), 0).await.unwrap();
    // A backup cut short (no manifest, still .partial) is not a backup and not a base.
    std::fs::create_dir_all(set.path().join("000002-incremental.partial/blobs")).unwrap();
    deliver(&store, b"m2", b"two").await;
    let next = backup(&store, set.path(), &BackupOptions::default(), 1).await.unwrap();
    assert_eq!((next.name.as_str(), next.base.as_deref()), ("000002-incremental", Some(full.name.as_str())));
    assert!(!set.path().join("000002-incremental.partial").exists(), "replaced by the finished backup");
    assert!(verify(set.path(), 1 << 30).unwrap().is_sound());
    // A chain at its longest starts again with a full backup.
    let short = BackupOptions {
        limits: crate::Limits { chain_backups_max: 2, ..crate::Limits::default() },
        ..BackupOptions::default()
    };
    let renewed = backup(&store, set.path(), &short, 2).await.unwrap();
    assert_eq!(renewed.kind, Kind::Full, "{renewed:?}");
    assert!(renewed.note.as_deref().unwrap_or("").contains("chain_backups_max"), "{renewed:?}");
    // --full starts a new chain on the same set.
    let options = BackupOptions { full: true, ..BackupOptions::default() };
    let again = backup(&store, set.path(), &options, 2).await.unwrap();
    assert_eq!((again.kind, again.counts.blobs_written), (Kind::Full, 2));
    store.close().await.unwrap();

    std::fs::remove_dir_all(&full.path).unwrap();
    let report = verify(set.path(), 1 << 30).unwrap();
    assert_eq!(report.findings.len(), 1, "{report:?}");
    assert!(report.findings[0].to_string().contains("its base 000001-full is missing"), "{}", report.findings[0]);
    assert!(matches!(restored(&next.path, &RestoreOptions::default()).await, Err(Error::Damaged(_))));
    let (_, (_, blobs)) = restored(set.path(), &RestoreOptions::default()).await.unwrap();
    assert_eq!(blobs.len(), 2, "the set's last backup is the new full one");
}

#[test]
fn paths_stay_inside_the_backup() {
    for (path, safe) in [
        ("records.jsonl", true),
        ("blobs/ab/abcdef", true),
        ("000001-full/blobs/ab/abcdef", true),
        ("../outside", false),
        ("blobs/../../outside", false),
        ("/etc/passwd", false),
        ("blobs//x", false),
        ("./x", false),
        ("", false),
    ] {
        assert_eq!(format::is_safe_relative(path), safe, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_naming_a_file_outside_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let set = tempfile::tempdir().unwrap();
    let store = open(data.path()).await;
    put(&store, b"k", b"v").await;
    let full = backup(&store, set.path(), &BackupOptions::default(), 0).await.unwrap();
    store.close().await.unwrap();
    let manifest_path = full.path.join(crate::MANIFEST);
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(&manifest_path, text.replace("\"path\": \"index.jsonl\"", "\"path\": \"../../index.jsonl\""))
        .unwrap();
    let report = verify(set.path(), 1 << 30).unwrap();
    assert!(!report.is_sound(), "{report:?}");
    assert!(
        report.findings.iter().any(|finding| finding.to_string().contains("leaves the backup directory")),
        "{report:?}"
    );
    let err = restored(set.path(), &RestoreOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("leaves the backup directory"), "{err}");
}

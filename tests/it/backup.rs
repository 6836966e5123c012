//! Backup and restore against the real binary (issue 13): an online backup while Postfix's
//! smtp-source delivers to the MX, restored into a new data directory and served over IMAP;
//! an incremental backup after 1,000 more messages; `backup verify` finding a flipped
//! byte; an encrypted backup that restores only with its key, and with new UIDVALIDITYs
//! unless told to keep them; one tenant of two restored alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::imap::{create_account, imap_account, python, quick_dns};
use crate::support::{Api, admin, config_path, init_with_token, run, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

/// Postfix's smtp-source sending to user@a.test, its running count of acknowledged
/// messages (`-c`: the count after each 250 to the end of DATA) read as it prints it.
struct Source {
    child: Child,
    count: Arc<AtomicU64>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Source {
    fn start(port: u16, messages: u64, sessions: u64) -> Source {
        let mut child = Command::new("/usr/sbin/smtp-source")
            .args(["-c", "-s", &sessions.to_string(), "-m", &messages.to_string(), "-l", "2000"])
            .args(["-M", "sender.test", "-f", "source@sender.test", "-t", "user@a.test"])
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-source (Debian package postfix)");
        let mut stdout = child.stdout.take().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let reader = std::thread::spawn({
            let count = count.clone();
            move || {
                let mut digits = String::new();
                let mut byte = [0u8; 1];
                while let Ok(1) = stdout.read(&mut byte) {
                    if byte[0].is_ascii_digit() {
                        digits.push(byte[0] as char);
                    } else if let Ok(n) = digits.parse::<u64>() {
                        count.fetch_max(n, Ordering::SeqCst);
                        digits.clear();
                    } else {
                        digits.clear();
                    }
                }
            }
        });
        Source { child, count, reader: Some(reader) }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn wait_for(&self, n: u64) {
        let start = Instant::now();
        while self.count() < n {
            assert!(start.elapsed() < Duration::from_secs(120), "smtp-source got {} acknowledgements", self.count());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops it (SIGTERM to its own PID) and returns the acknowledged count.
    fn stop(self) -> u64 {
        // SAFETY: kill(2) on the PID of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.finish()
    }

    /// Waits for it to end; the acknowledged count.
    fn finish(mut self) -> u64 {
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.count()
    }
}

/// Every file under `dir`, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The message references a full, plain backup's index counts (it lists every blob).
fn references(backup: &Path) -> u64 {
    let index = std::fs::read_to_string(backup.join("index.jsonl")).unwrap();
    index
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|line| line["refs"].as_u64())
        .sum()
}

/// The message hashes a plain backup's index lists (all for a full backup, new or changed ones for an
/// incremental one).
fn blob_hashes(backup: &Path) -> std::collections::BTreeSet<String> {
    let index = std::fs::read_to_string(backup.join("index.jsonl")).unwrap();
    index
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|line| line["blob"].as_str().map(str::to_string))
        .collect()
}

/// `hameau backup` against the running server, online; its report.
fn backup_online(server: &crate::support::Server, token: &str, set: &Path, extra: &[&str]) -> serde_json::Value {
    let url = format!("https://127.0.0.1:{}", server.https[0].port());
    let cert = server.cert.to_str().unwrap();
    let mut args = vec!["backup", "--to", set.to_str().unwrap(), "--url", &url, "--api-key", token, "--ca-file", cert];
    args.extend(extra);
    let (status, stdout, stderr) = run(&args);
    assert!(status.success(), "backup: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A data directory made from a restore: the original's configuration and certificate
/// beside the restored store (a real installation keeps them in /etc/hameau).
fn restore_into(original: &Path, new: &Path, set: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["restore", "--from", set.to_str().unwrap(), "--data-dir", new.to_str().unwrap()];
    args.extend(extra);
    let (status, _, stderr) = run(&args);
    if status.success() {
        std::fs::copy(original.join("hameau.toml"), new.join("hameau.toml")).unwrap();
        // `hameau restore` writes a RocksDB store in the new data directory: a server on
        // PostgreSQL (the suite's second run) is restored onto RocksDB.
        if crate::support::on_postgresql() {
            set_config(&new.join("hameau.toml"), "backend = \"postgresql\"", "backend = \"rocksdb\"");
        }
        std::fs::create_dir_all(new.join("tls")).unwrap();
        for file in std::fs::read_dir(original.join("tls")).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), new.join("tls").join(file.file_name())).unwrap();
        }
    }
    (status.success(), stderr)
}

/// Logs in over IMAP and returns INBOX's message count, checking the last one reads.
fn imap_inbox_count(server: &crate::support::Server) -> u64 {
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
typ, data = M.login("user@a.test", {PASSWORD:?})
assert typ == "OK", data
typ, data = M.select("INBOX")
assert typ == "OK", data
n = int(data[0])
if n:
    typ, data = M.fetch(str(n), "(RFC822)")
    assert typ == "OK" and b"Received: from" in data[0][1], data
print(n)
M.logout()
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
    );
    python(&script).trim().parse().unwrap()
}

/// INBOX's UIDVALIDITY, as an IMAP client caches it (RFC 9051 §2.3.1.1).
fn imap_inbox_uid_validity(server: &crate::support::Server) -> u64 {
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
typ, data = M.login("user@a.test", {PASSWORD:?})
assert typ == "OK", data
typ, data = M.select("INBOX")
assert typ == "OK", data
print(int(M.response("UIDVALIDITY")[1][0]))
M.logout()
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
    );
    python(&script).trim().parse().unwrap()
}

#[test]
fn online_backup_during_delivery_restores_every_acknowledged_message() {
    let (dir, token) = init_with_token();
    let data = dir.path().join("data");
    let config = config_path(dir.path());
    imap_account(&config);
    set_config(&config, "connections_per_ip_max = 20", "connections_per_ip_max = 10000");
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    let set = tempfile::tempdir().unwrap();
    let smtp_port = server.smtp[0].port();

    // The backup route is the operator's.
    let api = Api::new(&server);
    let body = serde_json::json!({ "to": set.path() });
    assert_eq!(api.call("POST", "/api/v1/backups", None, Some(body.clone())).status, 401);
    assert_eq!(api.call("POST", "/api/v1/backups", Some("hmk_x.y"), Some(body)).status, 401);
    let relative = serde_json::json!({ "to": "relative/dir" });
    assert_eq!(api.call("POST", "/api/v1/backups", Some(&token), Some(relative)).status, 422);

    // The store is the running server's (RocksDB): a backup from another process is sent to
    // the API. On PostgreSQL, another process reads the database itself.
    let beside = tempfile::tempdir().unwrap();
    let to = if crate::support::on_postgresql() { beside.path() } else { set.path() };
    let (status, _, stderr) = run(&["backup", "--to", to.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    if crate::support::on_postgresql() {
        assert!(status.success(), "{stderr}");
    } else {
        assert!(!status.success() && stderr.contains("--url"), "{stderr}");
    }

    // A full backup while smtp-source keeps delivering.
    let source = Source::start(smtp_port, 1_000_000, 4);
    source.wait_for(300);
    let acknowledged_before = source.count();
    let started = Instant::now();
    let full = backup_online(&server, &token, set.path(), &[]);
    let backup_s = started.elapsed().as_secs_f64();
    let acknowledged_after = source.count();
    let acknowledged_total = source.stop();
    eprintln!(
        "full backup in {backup_s:.2} s: {acknowledged_before} acknowledged before it began, {acknowledged_after} when it \
         ended, {acknowledged_total} in all; report {full}"
    );
    assert_eq!(full["kind"], "full");
    assert!(acknowledged_after > acknowledged_before, "delivery went on during the backup");
    // smtp-source sends the same text each time: messages received within the same second
    // may be stored once, with a reference each; the index counts the references.
    let full_path = PathBuf::from(full["path"].as_str().unwrap());
    let full_messages = references(&full_path);
    assert!(
        full_messages >= acknowledged_before,
        "{full_messages} messages in the backup, {acknowledged_before} acknowledged"
    );

    // Restored into a new data directory and served: every message acknowledged before the
    // backup began, readable over IMAP, and the logins (IMAP password, API key) work.
    let new_dir = tempfile::tempdir().unwrap();
    let new_data = new_dir.path().join("data");
    let (restored, stderr) = restore_into(&data, &new_data, set.path(), &[]);
    assert!(restored, "restore: {stderr}");
    let (refused, stderr) = restore_into(&data, &new_data, set.path(), &[]);
    assert!(!refused && stderr.contains("not empty"), "a non-empty directory is refused: {stderr}");
    let restored_server = start_server(&new_data.join("hameau.toml"));
    let in_restored = imap_inbox_count(&restored_server);
    assert!(
        in_restored >= acknowledged_before && in_restored <= acknowledged_after,
        "restored {in_restored}: acknowledged {acknowledged_before} before the backup, {acknowledged_after} after"
    );
    assert_eq!(in_restored, full_messages, "every message of the backup");
    let tenants = Api::new(&restored_server).call("GET", "/api/v1/tenants", Some(&token), None);
    assert_eq!(tenants.status, 200, "the operator's API key works on the restored server");
    drop(restored_server);

    // An incremental backup after 1,000 more messages writes those 1,000 and their records.
    let catch_up = backup_online(&server, &token, set.path(), &[]);
    assert_eq!(catch_up["kind"], "incremental");
    let more = Source::start(smtp_port, 1000, 4).finish();
    assert_eq!(more, 1000);
    let incremental = backup_online(&server, &token, set.path(), &[]);
    eprintln!("incremental after 1,000 messages: {incremental}");
    assert_eq!(incremental["kind"], "incremental");
    assert_eq!(incremental["base"], catch_up["name"]);
    let path = PathBuf::from(incremental["path"].as_str().unwrap());
    let blob_files = files_under(&path.join("blobs"));
    assert_eq!(blob_files.len() as u64, incremental["counts"]["blobs_written"].as_u64().unwrap());
    // Only messages no earlier backup wrote, each once, named by its hash; its index lists
    // them (and nothing gone: nothing was deleted).
    let written: std::collections::BTreeSet<String> =
        blob_files.iter().map(|file| file.file_name().unwrap().to_string_lossy().into_owned()).collect();
    let mut earlier = std::collections::BTreeSet::new();
    for backup in [&full, &catch_up] {
        for file in files_under(&PathBuf::from(backup["path"].as_str().unwrap()).join("blobs")) {
            earlier.insert(file.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(written.is_disjoint(&earlier), "a message written twice");
    assert!(written.is_subset(&blob_hashes(&path)), "the index lists the new messages");
    // smtp-source's identical messages received in the same second share a blob.
    assert!(written.len() > 900 && written.len() <= 1000, "{} distinct new messages of 1,000", written.len());
    assert_eq!(incremental["counts"]["deleted_keys"], 0);
    let jobs = api.call("GET", "/api/v1/backups", Some(&token), None).json();
    let done: Vec<_> = jobs["items"].as_array().unwrap().iter().filter(|job| job["state"] == "done").collect();
    assert_eq!(done.len(), 3, "{jobs}");
    let records = std::fs::read_to_string(path.join("records.jsonl")).unwrap();
    let n_records = records.lines().count() as u64;
    assert_eq!(n_records, incremental["counts"]["records"].as_u64().unwrap());
    let full_records = full["counts"]["records"].as_u64().unwrap();
    let per_message = full_records as f64 / full_messages as f64;
    // The new messages' records and a few shared ones (counters, the mailbox): nothing of
    // the messages before.
    assert!(
        (n_records as f64) < per_message * 1000.0 + 50.0 && n_records >= 1000,
        "{n_records} records for 1,000 messages ({per_message:.2} per message in the full backup)"
    );

    eprintln!(
        "incremental: {} message files, {n_records} records for 1,000 messages ({per_message:.2} records per message \
         in the full backup)",
        blob_files.len()
    );

    // The whole chain (full, then two incremental backups) restores what the server holds.
    let chain_dir = tempfile::tempdir().unwrap();
    let chain_data = chain_dir.path().join("data");
    let (restored, stderr) = restore_into(&data, &chain_data, set.path(), &[]);
    assert!(restored, "{stderr}");
    let chain_server = start_server(&chain_data.join("hameau.toml"));
    assert_eq!(imap_inbox_count(&chain_server), imap_inbox_count(&server));
    drop(chain_server);

    // Verify: sound, then a flipped byte in one message file is found, by name.
    let (status, stdout, _) = run(&["backup", "verify", set.path().to_str().unwrap()]);
    assert!(status.success(), "{stdout}");
    let victim = &blob_files[500];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(victim, &bytes).unwrap();
    let (status, stdout, stderr) = run(&["backup", "verify", set.path().to_str().unwrap()]);
    assert!(!status.success(), "{stdout}");
    assert!(stdout.contains(&format!("corrupt: {}", victim.display())), "{stdout}");
    assert!(stderr.contains("1 problem"), "{stderr}");
    // A damaged chain does not restore, and leaves the new directory as it found it.
    let other = tempfile::tempdir().unwrap();
    let (restored, stderr) = restore_into(&data, &other.path().join("data"), set.path(), &[]);
    assert!(!restored && stderr.contains("corrupt"), "{stderr}");
    assert!(!other.path().join("data/store").exists());
    drop(server);
}

#[test]
fn an_encrypted_backup_restores_only_with_its_key() {
    let (dir, token) = init_with_token();
    let data = dir.path().join("data");
    let config = config_path(dir.path());
    imap_account(&config);
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    assert_eq!(Source::start(server.smtp[0].port(), 20, 2).finish(), 20);
    let cached_uid_validity = imap_inbox_uid_validity(&server);
    let keys = tempfile::tempdir().unwrap();
    let identity = keys.path().join("identity.txt");
    let output = Command::new("age-keygen").args(["-o", identity.to_str().unwrap()]).output().expect("age-keygen");
    assert!(output.status.success());
    let recipient = String::from_utf8_lossy(&output.stderr).trim().trim_start_matches("Public key: ").to_string();
    let set = tempfile::tempdir().unwrap();
    // As the timer runs it: everything from a settings file (/etc/hameau/backup.toml).
    let key_file = keys.path().join("backup.key");
    std::fs::write(&key_file, format!("{token}\n")).unwrap();
    let settings = keys.path().join("backup.toml");
    let text = format!(
        "to = {:?}\nurl = \"https://127.0.0.1:{}\"\napi_key_file = {:?}\nca_file = {:?}\nrecipient = {recipient:?}\n",
        set.path(),
        server.https[0].port(),
        key_file,
        server.cert
    );
    std::fs::write(&settings, text).unwrap();
    let (status, stdout, stderr) = run(&["backup", "--settings", settings.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["counts"]["blobs_written"], 20);
    let path = PathBuf::from(report["path"].as_str().unwrap());
    let manifest = std::fs::read_to_string(path.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"scheme\": \"age\""), "{manifest}");
    // A person decrypts a message with the Debian age tool.
    let blob = files_under(&path.join("blobs")).pop().unwrap();
    let output =
        Command::new("age").args(["-d", "-i", identity.to_str().unwrap(), blob.to_str().unwrap()]).output().unwrap();
    assert!(output.status.success() && String::from_utf8_lossy(&output.stdout).contains("Received: from"));

    let new_dir = tempfile::tempdir().unwrap();
    let (restored, stderr) = restore_into(&data, &new_dir.path().join("a"), set.path(), &[]);
    assert!(!restored && stderr.contains("encrypted"), "no key: {stderr}");
    let wrong = keys.path().join("wrong.txt");
    assert!(Command::new("age-keygen").args(["-o", wrong.to_str().unwrap()]).output().unwrap().status.success());
    let (restored, stderr) =
        restore_into(&data, &new_dir.path().join("b"), set.path(), &["--key", wrong.to_str().unwrap()]);
    assert!(!restored && stderr.contains("encryption"), "wrong key: {stderr}");
    let new_data = new_dir.path().join("c");
    let (restored, stderr) = restore_into(&data, &new_data, set.path(), &["--key", identity.to_str().unwrap()]);
    assert!(restored, "{stderr}");
    let restored_server = start_server(&new_data.join("hameau.toml"));
    assert_eq!(imap_inbox_count(&restored_server), 20);
    // The old server may have given UIDs after the backup: a client's cache is void.
    let restored_uid_validity = imap_inbox_uid_validity(&restored_server);
    assert_ne!(restored_uid_validity, cached_uid_validity);
    drop(restored_server);
    // A host migration of the very last state keeps it.
    let moved_data = new_dir.path().join("d");
    let keep = ["--key", identity.to_str().unwrap(), "--keep-uid-validity"];
    let (restored, stderr) = restore_into(&data, &moved_data, set.path(), &keep);
    assert!(restored, "{stderr}");
    let moved_server = start_server(&moved_data.join("hameau.toml"));
    assert_eq!(imap_inbox_uid_validity(&moved_server), cached_uid_validity);
    drop(server);
}

/// One SMTP transaction through swaks; its output, and whether it ended well.
fn swaks(port: u16, from: &str, to: &str, extra: &[&str]) -> (bool, String) {
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test", "--timeout", "20"])
        .args(["--from", from, "--to", to])
        .args(extra)
        .output()
        .expect("swaks");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `address` logs in over IMAP with [`PASSWORD`].
pub(crate) fn imap_logs_in(server: &crate::support::Server, address: &str) -> bool {
    let script = format!(
        r#"
import imaplib, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
try:
    M.login({address:?}, {PASSWORD:?})
    print("yes")
except imaplib.IMAP4.error:
    print("no")
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
    );
    python(&script).trim() == "yes"
}

/// The operator's view of the queue: each message's tenant.
fn queued_tenants(server: &crate::support::Server, token: &str) -> Vec<String> {
    let response = Api::new(server).call("GET", "/api/v1/queue", Some(token), None);
    assert_eq!(response.status, 200, "{}", response.body);
    let mut tenants: Vec<String> = response.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["tenant"].as_str().unwrap_or("").to_string())
        .collect();
    tenants.sort();
    tenants
}

/// Each message of a plain full backup's index with its reference count.
fn blob_refs(backup: &Path) -> std::collections::BTreeMap<String, u64> {
    let index = std::fs::read_to_string(backup.join("index.jsonl")).unwrap();
    index
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter_map(|line| Some((line["blob"].as_str()?.to_string(), line["refs"].as_u64()?)))
        .collect()
}

#[test]
fn one_tenant_of_two_restores_alone() {
    let (dir, token) = init_with_token();
    let data = dir.path().join("data");
    let config = config_path(dir.path());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["tenant", "create", "b", "--name", "B"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["domain", "create", "b.test", "--tenant", "b"],
        ],
    );
    create_account(&config, "user@a.test", PASSWORD);
    create_account(&config, "user@b.test", PASSWORD);
    admin(
        &config,
        &[
            &["alias", "create", "mairie@a.test", "--target", "user@a.test"],
            &["alias", "create", "mairie@b.test", "--target", "user@b.test"],
        ],
    );
    // No DNS answers (the resolver is a closed port): submitted mail to elsewhere stays
    // deferred in the queue, and local mail is delivered without any lookup.
    let server = start_server(&config);
    let submit = |from: &str, to: &str, subject: &str| {
        let auth = ["--tls", "--auth", "PLAIN", "--auth-user", from, "--auth-password", PASSWORD];
        let header = format!("Subject: {subject}");
        let (ok, text) = swaks(server.submission[0].port(), from, to, &[&auth[..], &["--header", &header]].concat());
        assert!(ok && text.contains("queued"), "{text}");
    };
    // One message to both tenants (one blob, two references), one to each alias alone,
    // and one each to a domain that does not resolve (deferred, queued).
    submit("user@a.test", "user@a.test,user@b.test", "aux deux");
    submit("user@a.test", "mairie@a.test", "pour a");
    submit("user@b.test", "mairie@b.test", "pour b");
    submit("user@a.test", "x@nowhere.test", "ailleurs a");
    submit("user@b.test", "y@nowhere.test", "ailleurs b");
    let start = Instant::now();
    while imap_inbox_count(&server) < 2 {
        assert!(start.elapsed() < Duration::from_secs(30), "local delivery");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(queued_tenants(&server, &token), ["a", "b"]);
    assert_eq!(imap_inbox_count(&server), 2);
    let set = tempfile::tempdir().unwrap();
    let report = backup_online(&server, &token, set.path(), &[]);
    let original = blob_refs(Path::new(report["path"].as_str().unwrap()));
    drop(server);

    let new_dir = tempfile::tempdir().unwrap();
    let new_data = new_dir.path().join("a");
    let (restored, stderr) = restore_into(&data, &new_data, set.path(), &["--tenant", "a"]);
    assert!(restored, "{stderr}");
    let server = start_server(&new_data.join("hameau.toml"));
    // a's account, its mail and its queue; the operator's key still works.
    assert_eq!(queued_tenants(&server, &token), ["a"]);
    assert!(imap_logs_in(&server, "user@a.test"));
    assert_eq!(imap_inbox_count(&server), 2);
    // b is unknown: its account does not log in, its domain is not the MX's.
    assert!(!imap_logs_in(&server, "user@b.test"));
    let (ok, text) = swaks(server.smtp[0].port(), "jean@sender.test", "user@b.test", &[]);
    assert!(!ok && (text.contains("550") || text.contains("554")), "{text}");

    // The store is consistent: a backup of it verifies, every message it lists has a
    // reference, a's messages kept theirs, the one shared with b lost b's, b's alone are gone.
    let second = tempfile::tempdir().unwrap();
    let report = backup_online(&server, &token, second.path(), &[]);
    let restored_refs = blob_refs(Path::new(report["path"].as_str().unwrap()));
    let (status, _, stderr) = run(&["backup", "verify", second.path().to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(restored_refs.values().all(|refs| *refs > 0), "{restored_refs:?}");
    assert!(restored_refs.keys().all(|hash| original.contains_key(hash)));
    // a: the shared message, its alias's, its queued one; b's two alone are not restored.
    assert_eq!((original.len(), restored_refs.len()), (5, 3), "{original:?} {restored_refs:?}");
    let shared: Vec<_> = original.iter().filter(|(_, refs)| **refs == 2).map(|(hash, _)| hash).collect();
    assert_eq!(shared.len(), 1, "{original:?}");
    assert_eq!(restored_refs.get(shared[0]), Some(&1));
    // Mail still arrives for a, through its alias too.
    let (ok, text) = swaks(server.smtp[0].port(), "jean@sender.test", "mairie@a.test", &[]);
    assert!(ok, "{text}");
    assert_eq!(imap_inbox_count(&server), 3);
    drop(dir);
}

//! `hameau migrate-store` (issue 16 item 6): a RocksDB installation with mail, flags,
//! folders and accounts moved to PostgreSQL; the server started on PostgreSQL shows the
//! same mailboxes, message for message and flag for flag.

use crate::imap::{create_account, deliver, imap_account, python, quick_dns};
use crate::support::{config_path, init_on_rocksdb, postgresql_schema, run, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

/// Every folder of `user` over IMAP (imaplib): name → [(uid, flags, SHA-256 of the
/// message)], as JSON text. `\Recent` is left out: it belongs to the session.
fn mailboxes(port: u16, user: &str) -> String {
    let script = format!(
        "import imaplib, json, hashlib, re\n\
         m = imaplib.IMAP4('127.0.0.1', {port}); m.login({user:?}, {PASSWORD:?})\n\
         out = {{}}\n\
         for line in m.list()[1]:\n\
         \x20   name = line.decode().rsplit(' ', 1)[1].strip('\"')\n\
         \x20   m.select(name, readonly=True)\n\
         \x20   typ, data = m.uid('FETCH', '1:*', '(FLAGS BODY.PEEK[])')\n\
         \x20   items = []\n\
         \x20   for part in data:\n\
         \x20       if isinstance(part, tuple):\n\
         \x20           head = part[0].decode()\n\
         \x20           uid = int(re.search(r'UID (\\d+)', head).group(1))\n\
         \x20           flags = sorted(f for f in re.search(r'FLAGS \\(([^)]*)\\)', head).group(1).split() if f != '\\\\Recent')\n\
         \x20           items.append([uid, flags, hashlib.sha256(part[1]).hexdigest()])\n\
         \x20   out[name] = sorted(items)\n\
         print(json.dumps(out, sort_keys=True))\n"
    );
    python(&script)
}

#[test]
fn migrate_store_moves_a_rocksdb_installation_to_postgresql() {
    let (dir, _) = init_on_rocksdb();
    let config = config_path(dir.path());
    imap_account(&config);
    create_account(&config, "second@a.test", PASSWORD);
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    let imap = server.imap[0].port();
    for n in 0..20 {
        deliver(server.smtp[0].port(), &format!("message {n}"), &format!("corps {n}"));
    }
    python(&format!(
        "import imaplib\n\
         m = imaplib.IMAP4('127.0.0.1', {imap}); m.login('user@a.test', {PASSWORD:?}); m.select('INBOX')\n\
         m.store('1:5', '+FLAGS', '(\\\\Flagged)'); m.store('3', '+FLAGS', '(\\\\Seen $Important)')\n\
         m.create('Archives'); m.copy('6:8', 'Archives'); m.store('9', '+FLAGS', '(\\\\Deleted)'); m.expunge()\n\
         m.logout()\n"
    ));
    let before = mailboxes(imap, "user@a.test");
    assert!(
        before.contains("Archives") && before.contains("\\\\Flagged") && before.to_lowercase().contains("$important"),
        "{before}"
    );
    let data_dir = dir.path().join("data");
    let (url, schema) = postgresql_schema();
    let migrate = |extra: &[&str]| {
        let from = format!("rocksdb:{}", data_dir.display());
        let to = format!("postgresql:{url}");
        let mut args = vec!["migrate-store", "--from", &from, "--to", &to, "--to-schema", &schema];
        args.extend_from_slice(extra);
        run(&args)
    };
    // While the server runs, its store is held: the migration says to stop it.
    let (status, _, stderr) = migrate(&[]);
    assert!(!status.success() && stderr.contains("stop hameau first"), "{stderr}");
    drop(server);

    let (status, stdout, stderr) = migrate(&["--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let digest: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(digest["keys"].as_u64().unwrap() > 100 && digest["blobs"].as_u64().unwrap() >= 19, "{digest}");
    assert!(stderr.contains("vérifié") && stderr.contains("checked"), "{stderr}");
    assert!(!stderr.contains(url.split('@').next().unwrap().rsplit(':').next().unwrap()), "no password shown");
    // Again into the same schema: refused, nothing changed.
    let (status, _, stderr) = migrate(&[]);
    assert!(!status.success() && stderr.contains("not empty"), "{stderr}");

    set_config(&config, "backend = \"rocksdb\"", "backend = \"postgresql\"");
    set_config(&config, "url = \"\"", &format!("url = {url:?}"));
    set_config(&config, "schema = \"hameau\"", &format!("schema = {schema:?}"));
    // The RocksDB store is moved away: the server can only be reading PostgreSQL.
    std::fs::rename(data_dir.join("store"), dir.path().join("old-store")).unwrap();
    let server = start_server(&config);
    let after = mailboxes(server.imap[0].port(), "user@a.test");
    assert_eq!(after, before, "every message, flag and folder is there");
    let second = mailboxes(server.imap[0].port(), "second@a.test");
    assert!(second.contains("INBOX"), "the other account logs in: {second}");
    // New mail goes on from where the installation was (UIDs after the last one).
    deliver(server.smtp[0].port(), "après", "après la migration");
    let last = mailboxes(server.imap[0].port(), "user@a.test");
    assert_ne!(last, before);
    assert!(!server.log().join("\n").contains("panicked"));
}

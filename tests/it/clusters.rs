//! Tenants over two database clusters (issue 16 item 5): the control store in the run's
//! PostgreSQL database (`HAMEAU_TEST_PG_URL`), a second cluster started by the test
//! (`scripts/pg-cluster.sh`). A tenant is moved from one to the other while mail for it
//! keeps coming: every message acknowledged is there once, none twice.

use std::collections::HashMap;
use std::process::Stdio;

use crate::imap::{Raw, create_account, imap_account, python, quick_dns};
use crate::nodes::Cluster;
use crate::support::{Api, admin, config_path, hameau, init_on_postgresql, set_config, start_server};

/// `hameau cluster ARGS --config CONFIG`, which must succeed: its stdout as JSON.
fn cluster(config: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = hameau().arg("cluster").args(args).args(["--config", config.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hameau cluster {args:?}: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

/// The Message-IDs in the INBOX of `user` (one per message: a message stored twice is
/// there twice), read over IMAP from the server at `port`.
fn message_ids(port: u16, user: &str) -> Vec<String> {
    let script = format!(
        r#"
import imaplib, re
m = imaplib.IMAP4('127.0.0.1', {port})
m.login('{user}', 'correct horse battery staple')
typ, data = m.select('INBOX')
assert typ == 'OK', data
if data[0] != b'0':
    typ, data = m.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
    assert typ == 'OK', data
    for item in data:
        if isinstance(item, tuple):
            found = re.search(rb'<([^>]+)>', item[1])
            print(found.group(1).decode() if found else 'none')
m.logout()
"#
    );
    python(&script).lines().map(str::to_string).collect()
}

#[test]
fn a_tenant_moved_between_clusters_under_load_loses_and_duplicates_nothing() {
    let dirs = tempfile::tempdir().unwrap();
    let b = Cluster { dir: dirs.path().join("b") };
    let b_url = Cluster::script(&["start", b.dir.to_str().unwrap()]);
    let (dir, token) = init_on_postgresql();
    let config = config_path(dir.path());
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[store.clusters.b]\nurl = {b_url:?}\nschema = \"hameau\"\n"));
    std::fs::write(&config, text).unwrap();
    imap_account(&config);
    admin(&config, &[&["tenant", "create", "c", "--name", "C"], &["domain", "create", "c.test", "--tenant", "c"]]);
    create_account(&config, "user@c.test", "correct horse battery staple");
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let _dns = quick_dns(&config);

    // Tenant c goes to cluster b before the server starts; a stays in main.
    let moved = cluster(&config, &["move", "c", "b", "--grace-s", "0"]);
    assert_eq!((moved["from"].as_str(), moved["to"].as_str()), (Some("main"), Some("b")), "{moved}");
    let server = start_server(&config);
    let (smtp, imap) = (server.smtp[0].port(), server.imap[0].port());
    let load = dir.path().join("load.jsonl");
    // Sends N messages to `to`, one every 20 ms, each tried again after a temporary
    // refusal (as any MTA does) until it is acknowledged; writes [id, tries, code].
    let sender = |to: &str, tag: &str, n: usize| {
        format!(
            r#"
import json, smtplib, time
out = open({load:?}, 'a')
for i in range({n}):
    mid = '{tag}-%d' % i
    tries, code, deadline = 0, 0, time.time() + 60
    while code != 250 and time.time() < deadline:
        tries += 1
        try:
            s = smtplib.SMTP('127.0.0.1', {smtp}, timeout=30)
            s.sendmail('jean@sender.test', ['{to}'], 'From: jean@sender.test\r\nTo: {to}\r\nSubject: grappe\r\nMessage-ID: <%s@sender.test>\r\n\r\nmessage %s\r\n' % (mid, mid))
            code = 250
            s.quit()
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
        except smtplib.SMTPResponseException as e:
            code = e.smtp_code
        except (OSError, smtplib.SMTPException):
            code = 0
        if code != 250:
            time.sleep(0.2)
    out.write(json.dumps([mid, tries, code]) + '\n')
    out.flush()
    time.sleep(0.02)
"#
        )
    };
    python(&sender("user@a.test", "avant-a", 3));
    python(&sender("user@c.test", "avant-c", 3));
    assert_eq!(message_ids(imap, "user@c.test").len(), 3, "tenant c is served from cluster b");
    assert_eq!(message_ids(imap, "user@a.test").len(), 3, "tenant a is served from main");

    // An IMAP session of a sits in IDLE from before the move: it must hear of the mail
    // delivered after it, in cluster b.
    let stream = std::net::TcpStream::connect(server.imap[0]).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut idler = Raw { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream };
    idler.until("* OK");
    idler.command("a LOGIN user@a.test \"correct horse battery staple\"", "a OK");
    assert!(idler.command("b SELECT INBOX", "b OK").contains("* 3 EXISTS"));
    idler.send("c IDLE");
    idler.until("+ idling");

    // Tenant a moves from main to b while mail for it keeps coming.
    let mut load_a = std::process::Command::new("python3")
        .args(["-c", &sender("user@a.test", "pendant", 150)])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let moved = cluster(&config, &["move", "a", "b", "--grace-s", "2"]);
    assert!(load_a.wait().unwrap().success());
    assert_eq!((moved["from"].as_str(), moved["to"].as_str()), (Some("main"), Some("b")), "{moved}");
    let keys = moved["caught_up"]["digest"]["keys"].as_u64().unwrap();
    assert!(keys >= moved["copied"]["digest"]["keys"].as_u64().unwrap(), "{moved}");
    assert_eq!(moved["removed"].as_u64(), Some(keys), "{moved}");
    let sent: Vec<(String, u64, u64)> =
        std::fs::read_to_string(&load).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let refused: Vec<_> = sent.iter().filter(|(_, _, code)| *code != 250).collect();
    assert!(refused.is_empty(), "every message is acknowledged in the end: {refused:?}");

    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids(imap, "user@a.test") {
        *seen.entry(id.trim_end_matches("@sender.test").to_string()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let expected: Vec<&String> =
        sent.iter().filter(|(id, _, _)| !id.starts_with("avant-c")).map(|(id, _, _)| id).collect();
    let lost: Vec<_> = expected.iter().filter(|id| !seen.contains_key(id.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert_eq!(seen.len(), 153);
    assert_eq!(message_ids(imap, "user@c.test").len(), 3, "tenant c did not move");
    idler.until("* 153 EXISTS");
    idler.send("DONE");
    idler.until("c OK");
    let listed = cluster(&config, &["list"]);
    assert_eq!(listed["tenants"]["a"]["cluster"], "b", "{listed}");
    assert_eq!(listed["tenants"]["c"]["cluster"], "b", "{listed}");
    let retried = sent.iter().filter(|(_, tries, _)| *tries > 1).count();
    eprintln!(
        "move under load: copy {} ms, pause {} ms ({} records written under it), {} of {} messages tried again",
        moved["copy_ms"],
        moved["pause_ms"],
        moved["caught_up"]["written"],
        retried,
        sent.len()
    );

    // Tenant c back to main through the admin API, as the operator's scripts do it: a
    // job, polled until done; its three messages are then served from main.
    let api = Api::new(&server);
    let body = serde_json::json!({ "cluster": "main", "grace_s": 1 });
    let started = api.call("POST", "/api/v1/tenants/c/move", Some(&token), Some(body));
    assert_eq!(started.status, 202, "{}", started.body);
    let mut job = started.json();
    let path = format!("/api/v1/moves/{}", job["id"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while job["state"] == "running" && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        job = api.call("GET", &path, Some(&token), None).json();
    }
    assert_eq!((job["state"].as_str(), job["report"]["from"].as_str()), (Some("done"), Some("b")), "{job}");
    let listed = api.call("GET", "/api/v1/clusters", Some(&token), None).json();
    assert_eq!(listed["tenants"]["c"], serde_json::json!({"cluster": "main"}), "{listed}");
    assert_eq!(message_ids(imap, "user@c.test").len(), 3, "tenant c's mail followed it");

    // And back to main, where its fence is lifted: mail arrives there again.
    let back = cluster(&config, &["move", "a", "main", "--grace-s", "1"]);
    assert_eq!((back["from"].as_str(), back["to"].as_str()), (Some("b"), Some("main")), "{back}");
    assert!(back["caught_up"]["digest"]["keys"].as_u64().unwrap() > keys, "{back}");
    python(&sender("user@a.test", "apres", 2));
    assert_eq!(message_ids(imap, "user@a.test").len(), 155);
    assert!(!server.log().join("\n").contains("panicked"));
}

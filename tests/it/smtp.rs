//! The MX against the real binary with a real client (swaks): deliveries land in the
//! mailbox store with their headers; relaying, unknown users and bad input are refused.

use std::process::Command;
use std::time::Duration;

use crate::support::{Server, config_path, init_with_token, run};

fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test", "--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks is needed (Debian package swaks; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// The raw messages in `address`'s INBOX, read from the store of a stopped server.
fn inbox(config: &std::path::Path, address: &str) -> Vec<String> {
    let (status, stdout, stderr) = run(&["account", "show", address, "--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let account = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["id"].as_u64().unwrap();
    let store_path = config.parent().unwrap().join("store");
    crate::support::block_on(async move {
        let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(&store_path)).await.unwrap();
        let mail = hameau_mailbox::Mail::new(store.clone());
        let mut messages = Vec::new();
        if let Some(inbox) = mail.mailbox_by_role(account, hameau_mailbox::Role::Inbox).await.unwrap() {
            for entry in mail.uids(account, inbox.id).await.unwrap() {
                messages.push(String::from_utf8_lossy(&mail.raw(account, entry.email).await.unwrap()).into_owned());
            }
        }
        store.close().await.unwrap();
        messages
    })
}

#[test]
fn swaks_delivers_and_relaying_is_refused() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    for args in [
        vec!["tenant", "create", "a", "--name", "A"],
        vec!["domain", "create", "a.test", "--tenant", "a"],
        vec!["account", "create", "user@a.test"],
        vec!["account", "create", "other@a.test"],
        vec!["alias", "create", "mairie@a.test", "--target", "user@a.test", "--target", "other@a.test"],
    ] {
        let mut all = args.clone();
        all.extend(["--config", c]);
        let (status, _, stderr) = run(&all);
        assert!(status.success(), "{args:?}: {stderr}");
    }
    let mut server = Server::start(&config);
    let port = server.smtp[0].port();

    // Plain, then STARTTLS with pipelining, an attachment and several recipients.
    let (ok, text) = swaks(
        port,
        &["--to", "user@a.test", "--from", "jean@sender.test", "--header", "Subject: plain", "--body", "Bonjour"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("<-  250 2.0.0 Ok: queued"), "{text}");
    let attachment = dir.path().join("compte-rendu.txt");
    std::fs::write(&attachment, "Compte rendu du conseil municipal\n").unwrap();
    let (ok, text) = swaks(
        port,
        &[
            "--tls",
            "--pipeline",
            "--to",
            "mairie@a.test,user@a.test",
            "--from",
            "jean@sender.test",
            "--header",
            "Subject: tls",
            "--attach",
            attachment.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("STARTTLS"), "{text}");

    // Refusals: a foreign recipient (never a relay), an unknown user, source routes and
    // percent hacks.
    for (to, expect) in [
        ("someone@elsewhere.test", "554 5.7.1"),
        ("nobody@a.test", "550 5.1.1"),
        ("user%elsewhere.test@a.test", "550 5.1.1"),
        ("@a.test:someone@elsewhere.test", "554 5.7.1"),
    ] {
        let (ok, text) = swaks(port, &["--to", to, "--from", "jean@sender.test"]);
        assert!(!ok, "{to} accepted: {text}");
        assert!(text.contains(expect), "{to}: {text}");
    }
    assert!(!server.log().join("\n").contains("panicked"));

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).expect("stops").success());
    let user = inbox(&config, "user@a.test");
    assert_eq!(user.len(), 2, "plain, then tls (once, though addressed twice)");
    assert!(user[0].starts_with("Authentication-Results: localhost;"), "{}", user[0]);
    assert!(
        user[0].contains("\r\nReceived: from sender.test ([127.0.0.1])\r\n\tby localhost (Hameau) with ESMTP id "),
        "{}",
        user[0]
    );
    assert!(user[0].contains("Subject: plain\r\n"), "{}", user[0]);
    assert!(user[1].contains("with ESMTPS id "), "{}", user[1]);
    assert!(
        user[1].contains("Compte rendu du conseil municipal") || user[1].contains("Q29tcHRlIHJlbmR1"),
        "{}",
        user[1]
    );
    let other = inbox(&config, "other@a.test");
    assert_eq!(other.len(), 1);
    assert!(other[0].contains("Subject: tls\r\n"));
}

/// A minimal SMTP client: one message per connection; true if the server said 250 to the
/// end of data.
fn send_one(addr: std::net::SocketAddr, to: &str, subject: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) == Some(&b' ') {
                return Some(line);
            }
        }
    };
    let mut step = |command: &str, expect: &str| -> Option<()> {
        if !command.is_empty() {
            writer.write_all(command.as_bytes()).ok()?;
        }
        reply()?.starts_with(expect).then_some(())
    };
    let body = format!(
        "From: load@sender.test\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nx\r\n.\r\n"
    );
    let sent = (|| {
        step("", "220")?;
        step("EHLO sender.test\r\n", "250")?;
        step("MAIL FROM:<load@sender.test>\r\n", "250")?;
        step(&format!("RCPT TO:<{to}>\r\n"), "250")?;
        step("DATA\r\n", "354")?;
        step(&body, "250")
    })();
    let _ = writer.write_all(b"QUIT\r\n");
    sent.is_some()
}

/// SIGKILL under load, 20 times: every message that got a 250 is in the mailbox
/// afterwards, exactly once, and nothing is there twice.
#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    for args in [
        vec!["tenant", "create", "a", "--name", "A"],
        vec!["domain", "create", "a.test", "--tenant", "a"],
        vec!["account", "create", "user@a.test"],
    ] {
        let mut all = args.clone();
        all.extend(["--config", c]);
        assert!(run(&all).0.success(), "{args:?}");
    }
    // A real DNS server that knows the sender's (empty) zone: authentication checks answer
    // at once instead of timing out.
    let knot_dir = tempfile::tempdir().unwrap();
    let knot = crate::support::start_knot(knot_dir.path(), &[("sender.test", String::new())]);
    crate::support::set_config(
        &config,
        "resolvers = [\"127.0.0.1:9\"]",
        &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port),
    );
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..20 {
        let server = Server::start(&config);
        let addr = server.smtp[0];
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4)
            .map(|thread| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut ok = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let subject = format!("r{round}-t{thread}-m{i}");
                        if send_one(addr, "user@a.test", &subject) {
                            ok.push(subject);
                        }
                        i += 1;
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rand_ms()));
        let mut server = server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            acknowledged.extend(sender.join().unwrap());
        }
    }
    let messages = inbox(&config, "user@a.test");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        let subject =
            message.split("\r\nSubject: ").nth(1).and_then(|rest| rest.split("\r\n").next()).unwrap_or("").to_string();
        *counts.entry(subject).or_default() += 1;
    }
    assert!(acknowledged.len() >= 20, "too little load to test anything: {}", acknowledged.len());
    eprintln!("{} messages acknowledged over 20 kills, {} stored", acknowledged.len(), messages.len());
    for subject in &acknowledged {
        assert_eq!(counts.get(subject), Some(&1), "{subject} acknowledged but stored {:?} times", counts.get(subject));
    }
    assert!(counts.values().all(|n| *n == 1), "a message is stored twice");
    drop(knot);
}

fn rand_ms() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.finish() % 500
}

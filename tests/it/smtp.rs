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

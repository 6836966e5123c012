//! Submission (587 with STARTTLS, 465 with TLS) against the real binary with a real client
//! (swaks): refusals over sockets, and an accepted message queued signed.

use std::process::Command;

use crate::imap::create_account;
use crate::support::{admin, config_path, init_with_token, start_server};

const PASSWORD: &str = "correct horse battery staple";

/// swaks to `port` of the server (self-signed certificate: swaks does not verify).
fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "poste-accueil", "--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks is needed (Debian package swaks; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Tenant `a` with domain a.test, the account agent@a.test (may send as mairie@a.test),
/// and other@a.test.
fn setup(config: &std::path::Path) {
    admin(config, &[&["tenant", "create", "a", "--name", "A"], &["domain", "create", "a.test", "--tenant", "a"]]);
    create_account(config, "agent@a.test", PASSWORD);
    create_account(config, "other@a.test", PASSWORD);
    admin(
        config,
        &[
            &["alias", "create", "mairie@a.test", "--target", "other@a.test"],
            &["account", "update", "agent@a.test", "--may-send-as", "mairie@a.test"],
        ],
    );
}

#[test]
fn submission_refuses_what_it_must_and_queues_a_signed_message() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let server = start_server(&config);
    let (port, tls_port) = (server.submission[0].port(), server.submissions[0].port());
    let auth = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD];

    // AUTH before STARTTLS on 587: not offered, and refused when tried.
    let (ok, text) = swaks(port, &[&["--to", "x@elsewhere.test", "--from", "agent@a.test"][..], &auth].concat());
    assert!(!ok, "{text}");
    assert!(text.contains("Host did not advertise authentication"), "{text}");
    // Relaying without AUTH (over TLS, so that only the missing AUTH is refused).
    let (ok, text) = swaks(port, &["--tls", "--to", "x@elsewhere.test", "--from", "agent@a.test"]);
    assert!(!ok && text.contains("530 5.7.0 Authentication required"), "{text}");
    // A wrong password.
    let wrong = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", "wrong password"];
    let (ok, text) = swaks(tls_port, &[&["--tls-on-connect", "--to", "x@elsewhere.test"][..], &wrong].concat());
    assert!(!ok && text.contains("535 5.7.8 Authentication credentials invalid"), "{text}");
    // A MAIL FROM the account does not own.
    let (ok, text) =
        swaks(port, &[&["--tls", "--to", "x@elsewhere.test", "--from", "other@a.test"][..], &auth].concat());
    assert!(!ok && text.contains("550 5.7.1 agent@a.test may not send as <other@a.test>"), "{text}");
    // A From field the account does not own, with a good envelope.
    let (ok, text) = swaks(
        tls_port,
        &[
            &["--tls-on-connect", "--to", "x@elsewhere.test", "--from", "agent@a.test"][..],
            &["--header", "From: Le Maire <maire@a.test>"],
            &auth,
        ]
        .concat(),
    );
    assert!(!ok && text.contains("550 5.7.1 agent@a.test may not send as <maire@a.test> (From field)"), "{text}");

    // Accepted on both ports, as itself and as the shared address.
    let (ok, text) = swaks(
        port,
        &[&["--tls", "--to", "x@elsewhere.test,other@a.test", "--from", "agent@a.test"][..], &auth].concat(),
    );
    assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");
    let (ok, text) = swaks(
        tls_port,
        &[
            &["--tls-on-connect", "--to", "x@elsewhere.test", "--from", "mairie@a.test"][..],
            &["--header", "From: Mairie <mairie@a.test>"],
            &auth,
        ]
        .concat(),
    );
    assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");
    drop(server);

    // Both are in the queue, DKIM-signed twice.
    let store_path = config.parent().unwrap().join("store");
    let queued = crate::support::block_on(async move {
        let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(&store_path)).await.unwrap();
        let queue = hameau_queue::Queue::new(store.clone(), hameau_queue::Limits::default());
        let mut queued = Vec::new();
        for (_, message) in queue.list(None, None, 10).await.unwrap() {
            let raw = String::from_utf8(queue.raw(&message).await.unwrap()).unwrap();
            queued.push((message, raw));
        }
        store.close().await.unwrap();
        queued
    });
    assert_eq!(queued.len(), 2);
    for (message, raw) in &queued {
        assert_eq!(message.tenant.as_deref(), Some("a"));
        assert_eq!(raw.matches("DKIM-Signature:").count(), 2, "{raw}");
        assert!(raw.contains("with ESMTPSA") && !raw.contains("127.0.0.1"), "{raw}");
    }
    assert_eq!(queued[0].0.recipients.len(), 2);
    assert_eq!(queued[1].0.mail_from, "mairie@a.test");
}

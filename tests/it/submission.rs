//! Submission (587 with STARTTLS, 465 with TLS) against the real binary with a real client
//! (swaks): refusals over sockets, and an accepted message queued signed.

use std::process::Command;

use crate::imap::create_account;
use crate::support::{admin, config_path, init_with_token, start_server};

pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// swaks to `port` of the server (self-signed certificate: swaks does not verify).
pub(crate) fn swaks(port: u16, args: &[&str]) -> (bool, String) {
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
pub(crate) fn setup(config: &std::path::Path) {
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
    let options = crate::support::store_options(&config);
    let queued = crate::support::block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
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

/// A knotd serving `remote.test` (its MX is 127.0.0.1; `[outbound] port` then picks the
/// test's receiver) and the `extra` zones, set as the server's resolver; it runs as long
/// as the returned pair lives.
pub(crate) fn remote_mx(config: &std::path::Path, extra: &[(&str, &str)]) -> (crate::support::Knot, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut zones = vec![(
        "remote.test",
        "remote.test. 300 IN MX 10 mx.remote.test.\nmx.remote.test. 300 IN A 127.0.0.1\n".to_string(),
    )];
    zones.extend(extra.iter().map(|(name, records)| (*name, records.to_string())));
    let knot = crate::support::start_knot(dir.path(), &zones);
    let resolver = format!("resolvers = [\"127.0.0.1:{}\"]", knot.port);
    crate::support::set_config(config, "resolvers = [\"127.0.0.1:9\"]", &resolver);
    (knot, dir)
}

/// The public DKIM records of `domain`, as `hameau domain show` gives them: name → TXT.
pub(crate) fn dkim_records(config: &std::path::Path, domain: &str) -> Vec<(String, String)> {
    let (status, stdout, stderr) =
        crate::support::run(&["domain", "show", domain, "--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    shown["dkim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            let name = format!("{}._domainkey.{domain}.", key["selector"].as_str().unwrap());
            let algorithm = if key["algorithm"] == "ed25519" { "ed25519" } else { "rsa" };
            (name, format!("v=DKIM1; k={algorithm}; p={}", key["public_key"].as_str().unwrap()))
        })
        .collect()
}

/// The raw messages of `user`'s INBOX over IMAP (imaplib), waiting up to 30 s for `n`.
pub(crate) fn imap_inbox(port: u16, user: &str, n: usize) -> Vec<String> {
    let script = format!(
        "import imaplib, time, json\n\
         deadline = time.time() + 30\n\
         while True:\n\
         \x20   m = imaplib.IMAP4('127.0.0.1', {port}); m.login({user:?}, {PASSWORD:?}); m.select('INBOX')\n\
         \x20   ids = m.search(None, 'ALL')[1][0].split()\n\
         \x20   if len(ids) >= {n} or time.time() > deadline: break\n\
         \x20   m.logout(); time.sleep(0.2)\n\
         out = [m.fetch(i, '(BODY.PEEK[])')[1][0][1].decode('utf-8', 'replace') for i in ids]\n\
         print(json.dumps(out))\n"
    );
    serde_json::from_str(&crate::imap::python(&script)).unwrap()
}

/// The acceptance path of issue 11 with real parts: swaks submits on 587; the queue
/// delivers the local recipient into its mailbox, the remote one to Postfix's smtp-sink
/// (MX from knotd), where dkimpy verifies both signatures; a null-MX recipient fails at
/// once and the sender finds the bilingual notification in its INBOX over IMAP.
#[test]
fn submitted_mail_is_delivered_locally_and_remotely_and_failures_are_notified() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[("nullmx.test", "nullmx.test. 300 IN MX 0 .\n")]);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    // The remote MX: Postfix's smtp-sink, writing each transaction to a file.
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    crate::support::set_config(&config, "port = 25", &format!("port = {}", sink.port));
    // Read before the server holds the store.
    let records = dkim_records(&config, "a.test");
    let server = start_server(&config);
    let auth = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD];
    let to = "x@remote.test,other@a.test,n@nullmx.test";
    let (ok, text) = swaks(
        server.submission[0].port(),
        &[
            &[
                "--tls",
                "--to",
                to,
                "--from",
                "agent@a.test",
                "--header",
                "Subject: Conseil municipal",
                // A verdict of our filter forged by the sender: only the MX writes it.
                "--header",
                "X-Hameau-Filter: action=deliver; score=-10.00",
            ][..],
            &auth,
        ]
        .concat(),
    );
    assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");

    // The remote recipient: at the sink, signed twice, both signatures valid (dkimpy).
    let start = std::time::Instant::now();
    // smtp-sink writes the file as the message arrives: it is read once it has stopped
    // growing (a read right at its creation once found it without the signatures yet).
    let mut last_size = None;
    let dumped = loop {
        let files: Vec<_> = std::fs::read_dir(sink_dir.path()).unwrap().filter_map(Result::ok).collect();
        if let Some(file) = files.first() {
            let dumped = std::fs::read(file.path()).unwrap();
            if !dumped.is_empty() && last_size == Some(dumped.len()) {
                break dumped;
            }
            last_size = Some(dumped.len());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "nothing reached the remote MX");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let text = String::from_utf8_lossy(&dumped).into_owned();
    let message = &text[text.find("DKIM-Signature:").expect("signed")..];
    assert!(message.contains("Subject: Conseil municipal"), "{text}");
    let mut verdicts = crate::postfix::dkimpy_verdicts(&records, message.as_bytes());
    verdicts.sort();
    let expected = vec![("ed25519-sha256".to_string(), true), ("rsa-sha256".to_string(), true)];
    assert_eq!(verdicts, expected, "dkimpy's verdicts on the two signatures");

    // The local recipient, through the mailbox.
    let imap = server.imap[0].port();
    let local = imap_inbox(imap, "other@a.test", 1);
    assert_eq!(local.len(), 1);
    assert!(local[0].contains("Subject: Conseil municipal") && local[0].contains("DKIM-Signature:"), "{}", local[0]);
    assert!(!local[0].contains("X-Hameau-Filter") && !message.contains("X-Hameau-Filter"), "{}", local[0]);
    // The null-MX recipient: a notification to the sender, French then English.
    let notices = imap_inbox(imap, "agent@a.test", 1);
    let queue_log: Vec<String> = server.log().into_iter().filter(|line| line.contains("queue:")).collect();
    assert_eq!(notices.len(), 1, "{notices:?}\n{}", queue_log.join("\n"));
    let notice = &notices[0];
    assert!(notice.contains("multipart/report") && notice.contains("Action: failed"), "{notice}");
    assert!(notice.contains("Final-Recipient: rfc822; n@nullmx.test") && notice.contains("5.1.10"), "{notice}");
    let (french, english) = (notice.find("Bonjour").unwrap(), notice.find("-- English --").unwrap());
    assert!(french < english, "{notice}");
    assert!(notice.contains("Subject: Conseil municipal"), "the original header is attached: {notice}");
    // In /metrics: the remote and local deliveries, the null-MX failure, the DSN delivered.
    let series = |route: &str, result: &str| {
        let name = format!("hameau_outbound_recipients_total{{route=\"{route}\",result=\"{result}\"}}");
        crate::support::metric(&server, &config, &name)
    };
    assert_eq!(series("remote", "delivered"), 1);
    assert_eq!(series("remote", "failed"), 1);
    assert_eq!(series("local", "delivered"), 2, "the local recipient and the notice");
    drop(sink);
    drop(server);
}

/// Issue 11's crash test: N messages queued, the server SIGKILLed 10 times while the
/// worker delivers them to Postfix's smtp-sink; in
/// the end every message reached the remote, and the number that reached it twice (those
/// accepted by the remote but not yet recorded when the server died) is reported.
#[test]
fn sigkill_while_delivering_loses_nothing_queued() {
    let n: usize = std::env::var("HAMEAU_QUEUE_KILL_N").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    let set = |from: &str, to: &str| crate::support::set_config(&config, from, to);
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    set("port = 25", &format!("port = {}", sink.port));
    // Queued with the server stopped, as submission queues them (acknowledged = committed).
    crate::support::enqueue_numbered(&config, n, "kill");
    // Small rounds: more of them, so that the kills fall between and inside them.
    set("claim_batch_max = 100", "claim_batch_max = 10");
    let mut server = start_server(&config);
    let received = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter_map(|file| {
                let text = String::from_utf8_lossy(&std::fs::read(file.path()).ok()?).into_owned();
                let id = text.split("Message-ID: <kill-").nth(1)?.split('@').next()?.to_string();
                Some(id)
            })
            .collect()
    };
    let mut at_kills = Vec::new();
    for kill in 0..10 {
        // Each kill once a further eleventh of the messages arrived, a little later each
        // time: all ten fall while delivering, at varying points of a round.
        let threshold = (kill + 1) * n / 11;
        let wait = std::time::Instant::now();
        while received(sink_dir.path()).len() < threshold && wait.elapsed() < std::time::Duration::from_secs(30) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        std::thread::sleep(std::time::Duration::from_millis((kill as u64 * 37) % 50));
        at_kills.push(received(sink_dir.path()).len());
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        server = start_server(&config);
    }
    let start = std::time::Instant::now();
    let ids = loop {
        let ids = received(sink_dir.path());
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        if distinct.len() >= n || start.elapsed() > std::time::Duration::from_secs(120) {
            break ids;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for id in &ids {
        *counts.entry(id.clone()).or_default() += 1;
    }
    let twice = counts.values().filter(|count| **count > 1).count();
    eprintln!(
        "{n} messages queued, 10 SIGKILLs while delivering (received at each kill: {at_kills:?}): {} received, \
         {twice} of them more than once",
        counts.len()
    );
    assert!(at_kills.iter().all(|k| *k < n), "the kills fell while delivering: {at_kills:?}");
    assert_eq!(counts.len(), n, "every queued message reached the remote");
    drop(sink);
    drop(server);
}

/// A receiver that refuses the recipient (`550` to RCPT, Postfix's smtp-sink `-f RCPT`):
/// tried once, not again, and the sender finds one failure notice in its INBOX over IMAP,
/// in French then English, quoting the receiver's reply, with the original header.
#[test]
fn a_recipient_refused_by_the_receiver_is_notified_once() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    let set = |from: &str, to: &str| crate::support::set_config(&config, from, to);
    set("plaintext_auth = false", "plaintext_auth = true");
    let sink = hameau_testkit::SmtpSink::start(&["-f", "RCPT"]);
    set("port = 25", &format!("port = {}", sink.port));
    let server = start_server(&config);
    let auth = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD];
    let (ok, text) = swaks(
        server.submissions[0].port(),
        &[
            &["--tls-on-connect", "--to", "nobody@remote.test", "--from", "agent@a.test"][..],
            &["--header", "Subject: Ordre du jour"],
            &auth,
        ]
        .concat(),
    );
    assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");
    let notices = imap_inbox(server.imap[0].port(), "agent@a.test", 1);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert!(
        notice.contains("Action: failed") && notice.contains("Final-Recipient: rfc822; nobody@remote.test"),
        "{notice}"
    );
    assert!(notice.contains("Diagnostic-Code: smtp; 5"), "the receiver's reply is quoted: {notice}");
    assert!(notice.find("Bonjour").unwrap() < notice.find("-- English --").unwrap(), "{notice}");
    assert!(notice.contains("Subject: Ordre du jour"), "{notice}");
    // Failed for good: nothing left in the queue, nothing tried again.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let series = |result: &str| format!("hameau_outbound_recipients_total{{route=\"remote\",result=\"{result}\"}}");
    assert_eq!(crate::support::metric(&server, &config, &series("failed")), 1);
    assert_eq!(crate::support::metric(&server, &config, &series("deferred")), 0);
    drop(sink);
}

/// Password guessing on submission (an input a client controls: the number of AUTH
/// attempts) meets the shared limiter: past `auth.failures_max` from one address, `454
/// 4.7.0` even with the right password, while an agent from another address still sends.
#[test]
fn password_guessing_on_submission_is_limited_and_others_still_send() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let set = |from: &str, to: &str| crate::support::set_config(&config, from, to);
    set("failures_before_delay = 5", "failures_before_delay = 2");
    set("delay_ms = 250", "delay_ms = 10");
    set("delay_ms_max = 4000", "delay_ms_max = 20");
    set("failures_max = 20", "failures_max = 6");
    // One guess per connection (swaks), as a guessing bot would spread them.
    let server = start_server(&config);
    let attempt = |from: &str, user: &str, password: &str| {
        swaks(
            server.submissions[0].port(),
            &["--tls-on-connect", "--local-interface", from, "--to", "x@nowhere.test", "--from", user]
                .into_iter()
                .chain(["--auth", "PLAIN", "--auth-user", user, "--auth-password", password])
                .collect::<Vec<_>>(),
        )
        .1
    };
    let mut refused = 0;
    for _ in 0..10 {
        let text = attempt("127.0.9.1", "other@a.test", "guessed password");
        assert!(text.contains("535 5.7.8") || text.contains("454 4.7.0"), "{text}");
        refused += usize::from(text.contains("454 4.7.0 Too many failed attempts"));
    }
    assert!(refused >= 4, "the limiter refused only {refused} of 10 guesses");
    // The guessing address is refused even with a right password…
    let text = attempt("127.0.9.1", "agent@a.test", PASSWORD);
    assert!(text.contains("454 4.7.0"), "{text}");
    // …while an agent elsewhere sends.
    let text = attempt("127.0.9.2", "agent@a.test", PASSWORD);
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
}

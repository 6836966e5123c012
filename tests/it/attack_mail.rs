//! Attack tests (issue 10) on the mail model and the store: what a message can do to the
//! server on its way in (ingest), over SMTP and IMAP APPEND. See `attack.rs` for the
//! shared set-up.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::attack::{LineClient, Target, USER, USER_PASSWORD};
use crate::support::{admin, set_config, start_server};

/// Honest probes may wait this long on a loaded 2-core machine.
const PROBE: Duration = Duration::from_secs(10);

/// One SMTP transaction from an outside sender: the RCPT replies and the reply to the
/// message (or the first refusal before DATA). Lines of `message` end with CRLF.
fn smtp_send(target: &Target, recipients: &[&str], message: &[u8]) -> (Vec<String>, String) {
    let mut client = LineClient::connect(target.smtp(), Duration::from_secs(120)).unwrap();
    assert!(client.until("220 ").unwrap().starts_with("220 "));
    client.send(b"EHLO attacker.test\r\n").unwrap();
    client.until("250 ").unwrap();
    client.send(b"MAIL FROM:<jean@sender.test>\r\n").unwrap();
    assert!(client.line().unwrap().starts_with("250"));
    let mut rcpt_replies = Vec::new();
    for recipient in recipients {
        client.send(format!("RCPT TO:<{recipient}>\r\n").as_bytes()).unwrap();
        rcpt_replies.push(client.line().unwrap());
    }
    if !rcpt_replies.iter().any(|reply| reply.starts_with("250")) {
        return (rcpt_replies.clone(), rcpt_replies.last().cloned().unwrap_or_default());
    }
    client.send(b"DATA\r\n").unwrap();
    let go = client.line().unwrap();
    assert!(go.starts_with("354"), "{go}");
    let mut data = Vec::with_capacity(message.len() + 1024);
    for line in message.split_inclusive(|b| *b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    client.send(&data).unwrap();
    let reply = client.line().unwrap_or_else(|e| panic!("no reply to the message: {e}"));
    // The connection is kept: the session goes on after the refusal.
    client.send(b"NOOP\r\n").unwrap();
    let noop = client.line().unwrap_or_else(|e| panic!("connection dropped after {reply:?}: {e}"));
    assert!(noop.starts_with("250"), "{noop}");
    (rcpt_replies, reply)
}

fn imap_login(target: &Target, user: &str, password: &str) -> LineClient {
    target.imap_login(user, password)
}

/// APPENDs `message` to INBOX; the tagged answer. The connection must still answer NOOP.
fn append(client: &mut LineClient, tag: &str, message: &[u8]) -> String {
    client.send(format!("{tag} APPEND INBOX {{{}+}}\r\n", message.len()).as_bytes()).unwrap();
    client.send(message).unwrap();
    client.send(b"\r\n").unwrap();
    let answer = client.until(&format!("{tag} ")).unwrap_or_else(|e| panic!("no answer to APPEND: {e}"));
    client.send(format!("{tag}n NOOP\r\n").as_bytes()).unwrap();
    let noop = client.until(&format!("{tag}n ")).unwrap_or_else(|e| panic!("connection dropped after {answer:?}: {e}"));
    assert!(noop.starts_with(&format!("{tag}n OK")), "{noop}");
    answer
}

fn message(subject: &str, body_bytes: usize) -> Vec<u8> {
    let mut message = format!(
        "From: <jean@sender.test>\r\nTo: <{USER}>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\n"
    )
    .into_bytes();
    let line = "Le conseil municipal s'est reuni en seance publique sous la presidence du maire.\r\n";
    while message.len() < body_bytes {
        message.extend_from_slice(line.as_bytes());
    }
    message
}

/// The staged blob uploads the store found left over when it opened: the server is
/// stopped and started again on the same data directory, and its log read.
fn uploads_left_after_restart(target: &mut Target) -> u64 {
    target.server.signal(libc::SIGTERM);
    target.server.wait(Duration::from_secs(60)).expect("the server stops");
    target.server = start_server(&target.config);
    let log = target.server.log();
    log.iter()
        .filter(|line| line.contains("removing blob uploads never committed"))
        .map(|line| {
            let at = line.find("n_uploads").expect("n_uploads");
            line[at..].chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect::<String>()
        })
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// A 1.2 MB `Subject` makes a summary that can never be stored. Before the fix: `451`
/// (the sender retries for days) and each attempt's staged upload left on disk until the
/// next restart. Now: a permanent `554 5.6.0`, nothing left.
#[test]
fn huge_subject_is_refused_for_good_and_leaves_nothing() {
    let mut target = Target::start();
    let subject = "x".repeat(1_200_000);
    let raw = format!("From: <jean@sender.test>\r\nTo: <{USER}>\r\nSubject: {subject}\r\n\r\nBonjour.\r\n");
    for _ in 0..3 {
        let (rcpts, reply) = smtp_send(&target, &[USER], raw.as_bytes());
        assert!(rcpts[0].starts_with("250"), "{rcpts:?}");
        eprintln!("1.2 MB Subject: {reply}");
        assert!(reply.starts_with("554 5.6.0"), "a message that can never be stored: {reply}");
    }
    target.assert_serving(PROBE);
    let left = uploads_left_after_restart(&mut target);
    eprintln!("staged uploads found at restart: {left}");
    assert_eq!(left, 0, "failed deliveries left their staged uploads");
    target.assert_serving(PROBE);
}

/// A 40 MB message to an alias of 50 accounts. Before the fix each account got its own
/// copy, parse and synced upload of it (~2 GB of RAM, thousands of fsyncs). Now the
/// message is read and staged once: the server's peak memory grows by a few copies of
/// the message, not 50.
#[test]
fn big_message_to_a_big_alias_is_stored_once() {
    const N_TARGETS: usize = 50;
    let targets: Vec<String> = (0..N_TARGETS).map(|i| format!("agent{i}@a.test")).collect();
    let target = Target::start_with(|config| {
        let mut commands: Vec<Vec<String>> =
            targets.iter().map(|address| vec!["account".into(), "create".into(), address.clone()]).collect();
        let mut alias = vec!["alias".to_string(), "create".into(), "tous@a.test".into()];
        for address in &targets {
            alias.extend(["--target".into(), address.clone()]);
        }
        commands.push(alias);
        let commands: Vec<Vec<&str>> = commands.iter().map(|c| c.iter().map(String::as_str).collect()).collect();
        let commands: Vec<&[&str]> = commands.iter().map(Vec::as_slice).collect();
        admin(config, &commands);
    });
    target.assert_serving(PROBE);
    let before_kib = target.peak_rss_kib();
    let raw = message("big", 40_000_000);
    let start = Instant::now();
    let (rcpts, reply) = smtp_send(&target, &["tous@a.test"], &raw);
    let peak_kib = target.peak_rss_kib();
    eprintln!(
        "40 MB to {N_TARGETS} accounts: {reply} in {:?}; peak RSS {before_kib} KiB before, {peak_kib} KiB after",
        start.elapsed()
    );
    assert!(rcpts[0].starts_with("250"), "{rcpts:?}");
    assert!(reply.starts_with("250"), "{reply}");
    // The session's copy, the stored copy with our headers, the blob store's chunks and
    // the parser's work on one message: well under 8 copies of 40 MB, whatever the
    // number of accounts.
    assert!(peak_kib < before_kib + 320 * 1024, "peak RSS {before_kib} -> {peak_kib} KiB");
    target.assert_serving(PROBE);
}

/// Messages from mail-parser's own malformed test set, and messages found by the
/// `ingest` fuzz target to make it panic, over SMTP and IMAP APPEND: each gets a reply
/// (stored, or refused for good), the connection stays, the server lives.
#[test]
fn malformed_messages_get_an_answer() {
    let target = Target::start();
    let mut messages = Vec::new();
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ingest");
    let mut names: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|entry| entry.unwrap().path()).collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("mail-parser-malformed") || name.starts_with("panic-") {
            // As an MTA hands it over: CRLF line ends.
            let raw = std::fs::read(&path).unwrap();
            let mut crlf = Vec::with_capacity(raw.len() + 64);
            let mut last = 0u8;
            for byte in raw {
                if byte == b'\n' && last != b'\r' {
                    crlf.push(b'\r');
                }
                crlf.push(byte);
                last = byte;
            }
            messages.push((name, crlf));
        }
    }
    assert!(messages.len() > 20, "{} messages", messages.len());
    let mut imap = imap_login(&target, USER, USER_PASSWORD);
    for (i, (name, raw)) in messages.iter().enumerate() {
        let (_, reply) = smtp_send(&target, &[USER], raw);
        // Stored, or refused for good (by the parse boundary, 554 5.6.0, or earlier checks).
        assert!(reply.starts_with("250") || reply.starts_with('5'), "{name} over SMTP: {reply}");
        let answer = append(&mut imap, &format!("a{i}"), raw);
        assert!(answer.starts_with(&format!("a{i} OK")) || answer.contains("NO ["), "{name} over APPEND: {answer}");
        if !reply.starts_with("250") || !answer.contains(" OK") {
            eprintln!("{name}: SMTP {reply:?}, APPEND {answer:?}");
        }
    }
    assert!(target.alive());
    target.assert_serving(PROBE);
}

/// A tenant quota, on all its accounts together. Before the fix it was stored but never
/// enforced: deliveries went on past it. Now the MX answers `452 4.2.2` once the tenant's
/// accounts together reach it, and IMAP APPEND `NO [OVERQUOTA]`.
#[test]
fn tenant_quota_refuses_delivery() {
    let target = Target::start_with(|config| {
        admin(
            config,
            &[
                &["tenant", "create", "q", "--name", "Q", "--quota-bytes", "100000"],
                &["domain", "create", "q.test", "--tenant", "q"],
                &["account", "create", "deux@q.test"],
            ],
        );
        crate::imap::create_account(config, "un@q.test", USER_PASSWORD);
    });
    let raw = message("quota", 20_000);
    let mut n_stored = 0;
    let mut refusal = None;
    for i in 0..10 {
        let recipient = if i % 2 == 0 { "un@q.test" } else { "deux@q.test" };
        let (rcpts, reply) = smtp_send(&target, &[recipient], &raw);
        if reply.starts_with("250") {
            n_stored += 1;
        } else {
            refusal = Some((rcpts, reply));
            break;
        }
    }
    eprintln!("tenant quota 100,000 bytes: {n_stored} messages of 20 KB stored, then {refusal:?}");
    let (_, reply) = refusal.expect("the tenant's quota was never enforced");
    assert!(reply.starts_with("452 4.2.2"), "{reply}");
    // Messages of ~20.3 KB with our headers: 4 fit in 100,000 bytes, the fifth does not.
    assert_eq!(n_stored, 4);
    // APPEND counts against the same tenant: refused as well.
    let mut client = imap_login(&target, "un@q.test", USER_PASSWORD);
    let answer = append(&mut client, "q1", &raw);
    assert!(answer.starts_with("q1 NO [OVERQUOTA]"), "{answer}");
    target.assert_serving(PROBE);
}

/// 20 APPENDs at once to an account one message short of its quota. Before the fix the
/// quota was read before the commit: several of them got through. Now the commit checks
/// it: exactly one is stored, the others answer `NO [OVERQUOTA]`.
#[test]
fn concurrent_appends_never_overshoot_the_quota() {
    let raw = message("append", 10_000);
    let quota = 4 * raw.len() + raw.len() / 2;
    let target = Target::start_with(|config| {
        admin(config, &[&["account", "update", USER, "--quota-bytes", &quota.to_string()]]);
    });
    let mut client = imap_login(&target, USER, USER_PASSWORD);
    for i in 0..3 {
        let answer = append(&mut client, &format!("p{i}"), &raw);
        assert!(answer.starts_with(&format!("p{i} OK")), "{answer}");
    }
    // Now one message short of the quota. 20 sessions, each logged in, APPEND together.
    let mut clients: Vec<LineClient> = (0..20).map(|_| imap_login(&target, USER, USER_PASSWORD)).collect();
    let barrier = std::sync::Barrier::new(clients.len());
    let answers: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(i, client)| {
                let (barrier, raw) = (&barrier, &raw);
                scope.spawn(move || {
                    barrier.wait();
                    append(client, &format!("c{i}"), raw)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().unwrap()).collect()
    });
    let n_ok = answers.iter().filter(|answer| answer.contains(" OK")).count();
    eprintln!("20 concurrent APPENDs one message short of the quota: {n_ok} stored");
    assert_eq!(n_ok, 1, "{answers:?}");
    assert!(answers.iter().filter(|a| !a.contains(" OK")).all(|a| a.contains("NO [OVERQUOTA]")), "{answers:?}");
    client.send(b"s1 STATUS INBOX (MESSAGES)\r\n").unwrap();
    let status = client.until("* STATUS").unwrap();
    assert!(status.contains("MESSAGES 4"), "{status}");
    target.assert_serving(PROBE);
}

/// Mailboxes per account are capped (`mail.mailboxes_max`): CREATE past it is refused,
/// inside the commit that would create it.
#[test]
fn mailboxes_per_account_are_capped() {
    let target = Target::start_with(|config| set_config(config, "mailboxes_max = 1000", "mailboxes_max = 20"));
    let mut client = imap_login(&target, USER, USER_PASSWORD);
    let mut created = 0;
    let mut refusal = None;
    for i in 0..30 {
        client.send(format!("c{i} CREATE dossier{i}\r\n").as_bytes()).unwrap();
        let answer = client.until(&format!("c{i} ")).unwrap();
        if answer.contains(" OK") {
            created += 1;
        } else {
            refusal = Some(answer);
            break;
        }
    }
    eprintln!("CREATE: {created} created, then {refusal:?}");
    // 6 special-use mailboxes and 14 more.
    assert_eq!(created, 14);
    assert!(refusal.unwrap().contains("NO [LIMIT]"));
    target.assert_serving(PROBE);
}

/// More recipient accounts than one ingest takes (`mail.ingest_batch_max`): the RCPT that
/// would go past it gets `452 4.5.3` (the client sends those in another transaction), and
/// the message is stored for the others, instead of a refusal of the whole message at
/// DATA. An alias counts its targets; an account named twice counts once.
#[test]
fn recipient_accounts_past_one_ingest_wait_for_another_transaction() {
    let target = Target::start_with(|config| {
        set_config(config, "ingest_batch_max = 200", "ingest_batch_max = 3");
        admin(
            config,
            &[
                &["account", "create", "agent1@a.test"],
                &["account", "create", "agent2@a.test"],
                &["alias", "create", "deux@a.test", "--target", "agent1@a.test", "--target", "agent2@a.test"],
            ],
        );
    });
    let recipients = ["deux@a.test", "agent1@a.test", crate::attack::USER, crate::attack::HONEST];
    let (rcpts, reply) = smtp_send(&target, &recipients, &message("batch", 100));
    assert!(rcpts[..3].iter().all(|r| r.starts_with("250")), "{rcpts:?}");
    assert!(rcpts[3].starts_with("452 4.5.3"), "{rcpts:?}");
    assert!(reply.starts_with("250"), "{reply}");
    target.assert_serving(PROBE);
}

/// Keywords per email are capped (`mail.keywords_max`): a client adding keyword after
/// keyword used to grow the email's index entry, read by every flag listing, until the
/// store refused it (an internal error). Now STORE and APPEND past the cap answer
/// `NO [LIMIT]`, and the message keeps the keywords it had.
#[test]
fn keywords_per_email_are_capped() {
    let target = Target::start_with(|config| set_config(config, "keywords_max = 100", "keywords_max = 10"));
    let mut client = imap_login(&target, USER, USER_PASSWORD);
    let answer = append(&mut client, "a1", &message("keywords", 100));
    assert!(answer.starts_with("a1 OK"), "{answer}");
    client.send(b"s0 SELECT INBOX\r\n").unwrap();
    assert!(client.until("s0 ").unwrap().starts_with("s0 OK"));
    for batch in 0..2 {
        let keywords: Vec<String> = (0..5).map(|i| format!("k{batch}{i}")).collect();
        client.send(format!("s{batch} STORE 1 +FLAGS.SILENT ({})\r\n", keywords.join(" ")).as_bytes()).unwrap();
        let answer = client.until(&format!("s{batch} ")).unwrap();
        assert!(answer.starts_with(&format!("s{batch} OK")), "{answer}");
    }
    client.send(b"s9 STORE 1 +FLAGS.SILENT (one-too-many)\r\n").unwrap();
    let answer = client.until("s9 ").unwrap();
    assert!(answer.starts_with("s9 NO [LIMIT]"), "{answer}");
    client.send(b"f1 FETCH 1 (FLAGS)\r\n").unwrap();
    let flags = client.until("* 1 FETCH").unwrap();
    assert!(flags.contains("k14") && !flags.contains("one-too-many"), "{flags}");
    let many: Vec<String> = (0..11).map(|i| format!("x{i}")).collect();
    let raw = message("many", 100);
    client.send(format!("a2 APPEND INBOX ({}) {{{}+}}\r\n", many.join(" "), raw.len()).as_bytes()).unwrap();
    client.send(&raw).unwrap();
    client.send(b"\r\n").unwrap();
    let answer = client.until("a2 ").unwrap();
    assert!(answer.starts_with("a2 NO [LIMIT]"), "{answer}");
    target.assert_serving(PROBE);
}

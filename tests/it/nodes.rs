//! Several `hameau` nodes on one PostgreSQL database (issue 16): each test starts two
//! servers on the same configuration (the same database, listeners on ports of their own),
//! whatever store the rest of the run is on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::imap::{Raw, deliver, imap_account, quick_dns};
use crate::support::{config_path, init_on_postgresql, metric, set_config, start_server};

/// A message delivered by node A's MX reaches an IMAP session sitting in IDLE on node B
/// within a second: A's commit is notified by PostgreSQL to B's store, which wakes the
/// session as its own commits would.
#[test]
fn a_delivery_on_one_node_wakes_idle_on_the_other() {
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    imap_account(&config);
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let _dns = quick_dns(&config);
    let a = start_server(&config);
    let b = start_server(&config);
    assert_ne!(a.smtp, b.smtp, "two nodes, each with its own listeners");
    let smtp_a = a.smtp[0].port();
    deliver(smtp_a, "premier", "un");

    let stream = std::net::TcpStream::connect(b.imap[0]).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut idler = Raw { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream };
    idler.until("* OK");
    idler.command("a LOGIN user@a.test \"correct horse battery staple\"", "a OK");
    let selected = idler.command("b SELECT INBOX", "b OK");
    assert!(selected.contains("* 1 EXISTS"), "node B sees what node A delivered: {selected}");
    idler.send("c IDLE");
    idler.until("+ idling");
    for n in 2..=4 {
        let sender = std::thread::spawn(move || {
            deliver(smtp_a, "suivant", "encore");
            Instant::now()
        });
        let seen = idler.until(&format!("* {n} EXISTS"));
        let arrived = Instant::now();
        let delivered = sender.join().unwrap();
        assert!(seen.contains(&format!("* {n} EXISTS")), "{seen}");
        assert!(arrived <= delivered + Duration::from_secs(1), "heard {:?} after the 250", arrived - delivered);
    }
    idler.send("DONE");
    idler.until("c OK");
    for server in [&a, &b] {
        assert!(!server.log().join("\n").contains("panicked"));
    }
}

/// The Message-ID numbers of the messages the sink at `dir` received (one per delivery:
/// a message delivered twice is there twice).
fn received(dir: &std::path::Path, tag: &str) -> Vec<String> {
    let marker = format!("Message-ID: <{tag}-");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|file| {
            let text = String::from_utf8_lossy(&std::fs::read(file.path()).ok()?).into_owned();
            Some(text.split(&marker).nth(1)?.split('@').next()?.to_string())
        })
        .collect()
}

/// Waits (at most `within`) until the sink at `dir` received `n` distinct messages; the
/// deliveries by Message-ID number.
fn wait_for_distinct(dir: &std::path::Path, tag: &str, n: usize, within: Duration) -> HashMap<String, usize> {
    let start = Instant::now();
    loop {
        let mut counts = HashMap::<String, usize>::new();
        for id in received(dir, tag) {
            *counts.entry(id).or_default() += 1;
        }
        if counts.len() >= n || start.elapsed() > within {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two nodes whose queues deliver to a Postfix smtp-sink (MX from knotd): tenant `a` with
/// agent@a.test, sending brakes out of the way, small claim batches (more rounds, so that
/// both nodes take part and a kill falls inside rounds), leases of ended sessions looked
/// for every second.
fn two_sending_nodes(
    config: &std::path::Path,
) -> (hameau_testkit::SmtpSink, tempfile::TempDir, (crate::support::Knot, tempfile::TempDir)) {
    crate::submission::setup(config);
    let dns = crate::submission::remote_mx(config, &[]);
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    set_config(config, "port = 25", &format!("port = {}", sink.port));
    for brake in ["account_messages_per_hour_max = 200", "account_recipients_per_hour_max = 500"] {
        let (key, _) = brake.split_once(" = ").unwrap();
        set_config(config, brake, &format!("{key} = 100000"));
    }
    for brake in ["tenant_messages_per_hour_max = 1000", "tenant_recipients_per_hour_max = 2000"] {
        let (key, _) = brake.split_once(" = ").unwrap();
        set_config(config, brake, &format!("{key} = 100000"));
    }
    set_config(config, "claim_batch_max = 100", "claim_batch_max = 10");
    set_config(config, "lease_sweep_s = 10", "lease_sweep_s = 1");
    (sink, sink_dir, dns)
}

/// 1,000 messages submitted over SMTP, half to each node (one session each, both at once),
/// are each delivered exactly once: a claim is a conditional commit that one node wins.
#[test]
fn outbound_mail_queued_on_both_nodes_is_delivered_exactly_once() {
    let n = 1000;
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    let (_sink, sink_dir, _dns) = two_sending_nodes(&config);
    let a = start_server(&config);
    let b = start_server(&config);
    let ports = [a.submissions[0].port(), b.submissions[0].port()];
    let script = format!(
        "import smtplib, ssl, threading\n\
         context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE\n\
         def send(port, node):\n\
         \x20   s = smtplib.SMTP_SSL('127.0.0.1', port, context=context, timeout=60)\n\
         \x20   s.login('agent@a.test', {password:?})\n\
         \x20   for i in range({half}):\n\
         \x20       body = 'From: agent@a.test\\r\\nTo: x@remote.test\\r\\nSubject: deux noeuds\\r\\nMessage-ID: <two-%s%d@a.test>\\r\\n\\r\\nmessage %d\\r\\n' % (node, i, i)\n\
         \x20       s.sendmail('agent@a.test', ['x@remote.test'], body)\n\
         \x20   s.quit()\n\
         threads = [threading.Thread(target=send, args=({a}, 'a')), threading.Thread(target=send, args=({b}, 'b'))]\n\
         [t.start() for t in threads]; [t.join() for t in threads]\n\
         print('sent')\n",
        password = crate::submission::PASSWORD,
        half = n / 2,
        a = ports[0],
        b = ports[1],
    );
    assert!(crate::imap::python(&script).contains("sent"));
    wait_for_distinct(sink_dir.path(), "two", n, Duration::from_secs(120));
    // Past the last one, a moment for a second copy that would still be under way.
    std::thread::sleep(Duration::from_secs(2));
    let counts = wait_for_distinct(sink_dir.path(), "two", n, Duration::ZERO);
    let twice: Vec<_> = counts.iter().filter(|(_, count)| **count > 1).collect();
    assert_eq!(counts.len(), n, "every message was delivered");
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let series = "hameau_outbound_recipients_total{route=\"remote\",result=\"delivered\"}";
    let by_node = [metric(&a, &config, series), metric(&b, &config, series)];
    eprintln!("{n} messages, each delivered once; by node A and B: {by_node:?}");
    assert_eq!(by_node[0] + by_node[1], n as u64, "{by_node:?}");
    assert!(by_node.iter().all(|delivered| *delivered > 0), "both nodes delivered: {by_node:?}");
    for server in [&a, &b] {
        assert!(!server.log().join("\n").contains("panicked"));
    }
}

/// 1,000 messages queued, both nodes delivering; node A killed (SIGKILL) mid-delivery:
/// node B takes back A's leases as soon as A's store session ends (not at the leases'
/// end, 15 minutes later) and finishes; every message reaches the sink.
#[test]
fn a_node_killed_mid_delivery_leaves_the_other_to_finish() {
    let n = 1000;
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    let (_sink, sink_dir, _dns) = two_sending_nodes(&config);
    let options = crate::support::store_options(&config);
    crate::support::block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
        let queue = hameau_queue::Queue::new(store.clone(), hameau_queue::Limits::default());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        for i in 0..n {
            let raw = format!(
                "From: agent@a.test\r\nTo: x@remote.test\r\nSubject: noeud tue\r\nMessage-ID: <kill-{i}@a.test>\r\n\r\nmessage {i}\r\n"
            );
            let message = hameau_queue::NewMessage {
                raw: raw.into_bytes().into(),
                mail_from: "agent@a.test".into(),
                recipients: vec!["x@remote.test".into()],
                tenant: Some("a".into()),
                account: Some(1),
                envelope_id: format!("kill.{i}"),
                held: None,
            };
            queue.enqueue(message, now).await.unwrap();
        }
        store.close().await.unwrap();
    });
    let mut a = start_server(&config);
    let b = start_server(&config);
    let start = Instant::now();
    while received(sink_dir.path(), "kill").len() < n / 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_kill = received(sink_dir.path(), "kill").len();
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    let counts = wait_for_distinct(sink_dir.path(), "kill", n, Duration::from_secs(120));
    let finished = killed.elapsed();
    let twice = counts.values().filter(|count| **count > 1).count();
    eprintln!(
        "{n} messages, node A killed after {at_kill} had arrived: {} arrived, {twice} of them twice, the last {:.1} s after the kill",
        counts.len(),
        finished.as_secs_f64()
    );
    assert!(at_kill < n, "A was killed while delivering ({at_kill} of {n} had arrived)");
    assert_eq!(counts.len(), n, "node B finished: every message arrived");
    let log = b.log().join("\n");
    assert!(log.contains("took back the messages"), "B took back A's leases: {log}");
    assert!(!log.contains("panicked"));
}

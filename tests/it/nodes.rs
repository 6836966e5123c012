//! Several `hameau` nodes on one PostgreSQL database (issue 16): each test starts two
//! servers on the same configuration (the same database, listeners on ports of their own),
//! whatever store the rest of the run is on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::imap::{Raw, deliver, imap_account, quick_dns};
use crate::support::{config_path, init_on_postgresql, metric, set_config, start_server};

/// Two nodes on the installation of `config`, with user@a.test (LOGIN allowed without TLS)
/// and a knotd answering the MX's lookups at once.
fn two_mail_nodes(
    config: &std::path::Path,
) -> (hameau_testkit::Server, hameau_testkit::Server, (crate::support::Knot, tempfile::TempDir)) {
    imap_account(config);
    set_config(config, "plaintext_auth = false", "plaintext_auth = true");
    let dns = quick_dns(config);
    (start_server(config), start_server(config), dns)
}

/// A message delivered by node A's MX reaches an IMAP session sitting in IDLE on node B
/// within a second: A's commit is notified by PostgreSQL to B's store, which wakes the
/// session as its own commits would.
#[test]
fn a_delivery_on_one_node_wakes_idle_on_the_other() {
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    let (a, b, _dns) = two_mail_nodes(&config);
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

/// What the two-node queue tests run on: the installation (on PostgreSQL), its
/// configuration, the sink and where it writes, and the DNS server.
struct SendingNodes {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    _sink: hameau_testkit::SmtpSink,
    sink_dir: tempfile::TempDir,
    _dns: (crate::support::Knot, tempfile::TempDir),
}

/// An installation for two nodes whose queues deliver to a Postfix smtp-sink (MX from
/// knotd): tenant `a` with agent@a.test, sending brakes out of the way, small claim batches
/// (more rounds, so that both nodes take part and a kill falls inside rounds), leases of
/// ended sessions looked for every second.
fn two_sending_nodes() -> SendingNodes {
    let (dir, _) = init_on_postgresql();
    let config = config_path(dir.path());
    crate::submission::setup(&config);
    let dns = crate::submission::remote_mx(&config, &[]);
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    set_config(&config, "port = 25", &format!("port = {}", sink.port));
    for brake in [
        "account_messages_per_hour_max = 200",
        "account_recipients_per_hour_max = 500",
        "tenant_messages_per_hour_max = 1000",
        "tenant_recipients_per_hour_max = 2000",
    ] {
        let (key, _) = brake.split_once(" = ").unwrap();
        set_config(&config, brake, &format!("{key} = 100000"));
    }
    set_config(&config, "claim_batch_max = 100", "claim_batch_max = 10");
    set_config(&config, "lease_sweep_s = 10", "lease_sweep_s = 1");
    SendingNodes { _dir: dir, config, _sink: sink, sink_dir, _dns: dns }
}

/// 1,000 messages submitted over SMTP, half to each node (one session each, both at once),
/// are each delivered exactly once: a claim is a conditional commit that one node wins.
#[test]
fn outbound_mail_queued_on_both_nodes_is_delivered_exactly_once() {
    let n = 1000;
    let nodes = two_sending_nodes();
    let (config, sink_dir) = (&nodes.config, &nodes.sink_dir);
    let a = start_server(config);
    let b = start_server(config);
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
    let by_node = [metric(&a, config, series), metric(&b, config, series)];
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
    let nodes = two_sending_nodes();
    let (config, sink_dir) = (&nodes.config, &nodes.sink_dir);
    crate::support::enqueue_numbered(config, n, "kill");
    let mut a = start_server(config);
    let b = start_server(config);
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
    // B took back A's leases, and said so.
    let log = b.log_with("took back the messages", 1, Duration::from_secs(5)).join("\n");
    assert!(!log.contains("panicked"));
}

/// A PostgreSQL cluster of this test's own (`scripts/pg-cluster.sh`), stopped at the end.
pub(crate) struct Cluster {
    pub(crate) dir: std::path::PathBuf,
}

/// `bash scripts/pg-cluster.sh ARGS`.
fn pg_cluster(args: &[&str]) -> std::process::Output {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-cluster.sh");
    std::process::Command::new("bash").arg(script).args(args).output().expect("bash")
}

impl Cluster {
    pub(crate) fn script(args: &[&str]) -> String {
        let output = pg_cluster(args);
        assert!(output.status.success(), "pg-cluster.sh {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Kills it as a crash would.
    fn kill(&self) {
        Cluster::script(&["kill", self.dir.to_str().unwrap()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        pg_cluster(&["kill", self.dir.to_str().unwrap()]);
    }
}

/// Failover: a primary and its synchronous streaming standby; two nodes whose `store.url`
/// names both hosts take mail over SMTP and serve an IMAP session while the primary is
/// killed and the standby promoted. The nodes follow the new primary by themselves; every
/// message acknowledged (`250`) before, during and after is in the mailbox; clients only
/// ever saw temporary errors (`451`/`421`, `NO [UNAVAILABLE]`); no node panicked or died.
#[test]
fn the_nodes_follow_a_promoted_standby_and_lose_nothing_acknowledged() {
    let dirs = tempfile::tempdir().unwrap();
    let primary = Cluster { dir: dirs.path().join("primary") };
    let url = Cluster::script(&["start", primary.dir.to_str().unwrap()]);
    let standby = Cluster { dir: dirs.path().join("standby") };
    let standby_port = Cluster::script(&["standby", primary.dir.to_str().unwrap(), standby.dir.to_str().unwrap()]);
    // postgresql://hameau:PW@127.0.0.1:P1/hameau → both hosts, the primary first.
    let (head, tail) = url.rsplit_once("/hameau").map(|(head, _)| (head.to_string(), "/hameau")).unwrap();
    let both = format!("{head},127.0.0.1:{standby_port}{tail}?target_session_attrs=read-write");
    let (dir, token) = crate::support::init_on_store_url(&both);
    let config = config_path(dir.path());
    let (a, b, _dns) = two_mail_nodes(&config);
    let results = dir.path().join("load.jsonl");
    let imap_results = dir.path().join("imap.jsonl");
    let http_results = dir.path().join("http.jsonl");
    let duration_s = 16;
    let script = format!(
        r#"
import imaplib, json, smtplib, threading, time
until = time.time() + {duration_s}
lock = threading.Lock()
out = open({results:?}, 'w')
def smtp(node, port):
    i = 0
    s = None
    while time.time() < until:
        i += 1
        mid = 'fo-%s%d' % (node, i)
        try:
            if s is None:
                s = smtplib.SMTP('127.0.0.1', port, timeout=60)
                s.ehlo('sender.test')
            body = 'From: jean@sender.test\r\nTo: user@a.test\r\nSubject: bascule\r\nMessage-ID: <%s@sender.test>\r\n\r\nmessage %s\r\n' % (mid, mid)
            s.sendmail('jean@sender.test', ['user@a.test'], body)
            code, text = 250, ''
        except smtplib.SMTPRecipientsRefused as e:
            code, text = list(e.recipients.values())[0]
        except smtplib.SMTPResponseException as e:
            code, text = e.smtp_code, e.smtp_error
        except (OSError, smtplib.SMTPException) as e:
            code, text, s = 0, repr(e), None
        if code not in (0, 250):
            try:
                s.rset()
            except Exception:
                s = None
        if isinstance(text, bytes):
            text = text.decode('utf-8', 'replace')
        with lock:
            out.write(json.dumps([mid, code, text, time.time()]) + '\n')
            out.flush()
        if code != 250:
            time.sleep(0.05)
imap_out = open({imap_results:?}, 'w')
def imap(port):
    m = imaplib.IMAP4('127.0.0.1', port)
    m.login('user@a.test', 'correct horse battery staple')
    while time.time() < until:
        for name, call in [('SELECT', lambda: m.select('INBOX')), ('FETCH', lambda: m.fetch('1:*', '(FLAGS)')),
                           ('STORE', lambda: m.store('1', '+FLAGS', '(\\Seen)')), ('NOOP', lambda: m.noop())]:
            try:
                typ, data = call()
                text = repr(data[-1:])
            except imaplib.IMAP4.error as e:
                typ, text = 'ERROR', repr(e)
            imap_out.write(json.dumps([name, typ, text, time.time()]) + '\n')
            imap_out.flush()
            # A SELECT refused leaves no mailbox selected (imaplib itself would refuse the
            # rest), and an empty one has no message 1.
            if name == 'SELECT' and (typ != 'OK' or data[0] == b'0'):
                break
        time.sleep(0.05)
    m.logout()
import ssl, urllib.request, urllib.error
http_out = open({http_results:?}, 'w')
def http(port):
    context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
    while time.time() < until:
        request = urllib.request.Request('https://127.0.0.1:%d/api/v1/tenants' % port, headers={{'Authorization': 'Bearer {token}'}})
        try:
            status = urllib.request.urlopen(request, context=context, timeout=60).status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = 0
        http_out.write(json.dumps([status, time.time()]) + '\n')
        http_out.flush()
        time.sleep(0.1)
threads = [threading.Thread(target=smtp, args=(n, p)) for n, p in (('a', {a}), ('b', {b}))]
threads.append(threading.Thread(target=imap, args=({imap_b},)))
threads.append(threading.Thread(target=http, args=({https_a},)))
[t.start() for t in threads]
[t.join() for t in threads]
print('done')
"#,
        results = results.to_str().unwrap(),
        imap_results = imap_results.to_str().unwrap(),
        http_results = http_results.to_str().unwrap(),
        https_a = a.https[0].port(),
        a = a.smtp[0].port(),
        b = b.smtp[0].port(),
        imap_b = b.imap[0].port(),
    );
    let load = std::thread::spawn(move || crate::imap::python(&script));
    // The first message in, then a few seconds of load; the primary dies.
    std::thread::sleep(Duration::from_secs(4));
    let started = Instant::now();
    primary.kill();
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    Cluster::script(&["promote", standby.dir.to_str().unwrap()]);
    let promoted_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    eprintln!("primary killed, standby promoted {:.1} s later", started.elapsed().as_secs_f64());
    assert!(load.join().unwrap().contains("done"));

    let rows: Vec<(String, u64, String, f64)> =
        std::fs::read_to_string(&results).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let acked: Vec<&String> = rows.iter().filter(|row| row.1 == 250).map(|row| &row.0).collect();
    let before = rows.iter().filter(|row| row.1 == 250 && row.3 < killed_at).count();
    let after = rows.iter().filter(|row| row.1 == 250 && row.3 > promoted_at).count();
    let refused: Vec<_> = rows.iter().filter(|row| row.1 != 250).collect();
    let mut codes = std::collections::BTreeMap::<u64, usize>::new();
    for row in &refused {
        *codes.entry(row.1).or_default() += 1;
    }
    eprintln!(
        "{} messages tried, {} acknowledged ({before} before the kill, {after} after the promotion); refused by code: {codes:?}",
        rows.len(),
        acked.len()
    );
    assert!(before > 0 && after > 0, "mail was taken before the kill and after the promotion");
    let permanent: Vec<_> = refused.iter().filter(|row| row.1 >= 500 || row.1 == 0).collect();
    assert!(permanent.is_empty(), "only temporary refusals: {permanent:?}");
    let imap_rows: Vec<(String, String, String, f64)> = std::fs::read_to_string(&imap_results)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let imap_bad: Vec<_> =
        imap_rows.iter().filter(|row| row.1 != "OK" && !(row.1 == "NO" && row.2.contains("UNAVAILABLE"))).collect();
    let imap_unavailable = imap_rows.iter().filter(|row| row.1 == "NO").count();
    eprintln!("IMAP: {} commands, {imap_unavailable} answered NO [UNAVAILABLE]", imap_rows.len());
    assert!(imap_bad.is_empty(), "IMAP answers other than OK and NO [UNAVAILABLE]: {imap_bad:?}");

    let http_rows: Vec<(u16, f64)> = std::fs::read_to_string(&http_results)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let http_unavailable = http_rows.iter().filter(|row| row.0 == 503).count();
    let http_bad: Vec<_> = http_rows.iter().filter(|row| row.0 != 200 && row.0 != 503).collect();
    eprintln!("HTTP: {} requests, {http_unavailable} answered 503", http_rows.len());
    assert!(http_bad.is_empty(), "HTTP answers other than 200 and 503: {http_bad:?}");

    // Every acknowledged message is there, read through either node.
    let script = format!(
        "import imaplib, json\n\
         m = imaplib.IMAP4('127.0.0.1', {port}); m.login('user@a.test', 'correct horse battery staple')\n\
         ids = []\n\
         for name in ['INBOX', 'Junk']:\n\
         \x20   if m.select(name, readonly=True)[0] != 'OK': continue\n\
         \x20   typ, data = m.fetch('1:*', '(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')\n\
         \x20   ids += [part[1].decode().split('<')[1].split('@')[0] for part in data if isinstance(part, tuple)]\n\
         print(json.dumps(ids))\n",
        port = a.imap[0].port()
    );
    let stored: std::collections::HashSet<String> =
        serde_json::from_str::<Vec<String>>(&crate::imap::python(&script)).unwrap().into_iter().collect();
    let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(id.as_str())).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    for server in [&a, &b] {
        // Each node followed the new primary, and said so.
        let log = server.log_with("following it", 1, Duration::from_secs(5)).join("\n");
        assert!(!log.contains("panicked"), "a node panicked");
    }
    drop(primary);
}

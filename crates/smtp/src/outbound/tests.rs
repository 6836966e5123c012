//! The outbound client against a real Postfix `smtp-sink` and a scripted fake server, with
//! DNS served by a real knotd on loopback: no test touches the internet.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_queue::Outcome;
use hameau_testkit::{Knot, start_knot};
use hickory_resolver::TokioResolver;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{OutboundOptions, Outgoing, TlsContext, deliver, write_data};
use crate::dns::{Cache, resolver};

// ---------------------------------------------------------------------------------------
// DNS: one zone, `test`, served by knotd.

/// Every name the tests deliver to. MX hosts on 127.0.0.1 run the test's server; 127.0.0.2
/// has none (connection refused); 127.0.0.3 runs a second server in some tests.
const ZONE: &str = "\
a.test. 60 IN MX 10 mx1.test.
mx1.test. 60 IN A 127.0.0.1
null.test. 60 IN MX 0 .
implicit.test. 60 IN A 127.0.0.1
nothing.test. 60 IN TXT \"no mail here\"
backup.test. 60 IN MX 10 down.test.
backup.test. 60 IN MX 20 mx1.test.
down.test. 60 IN A 127.0.0.2
greylist.test. 60 IN MX 10 mx3.test.
greylist.test. 60 IN MX 20 mx1.test.
mx3.test. 60 IN A 127.0.0.3
";

struct Dns {
    resolver: TokioResolver,
    _knot: Knot,
    _dir: tempfile::TempDir,
}

fn dns() -> Dns {
    let dir = tempfile::tempdir().unwrap();
    let knot = start_knot(dir.path(), &[("test", ZONE.to_string())]);
    let server = SocketAddr::from(([127, 0, 0, 1], knot.port));
    let resolver = resolver(&[server], Duration::from_secs(2), Cache::NONE).unwrap();
    Dns { resolver, _knot: knot, _dir: dir }
}

fn options(port: u16) -> OutboundOptions {
    let quick = Duration::from_secs(5);
    OutboundOptions {
        port,
        connect_timeout: quick,
        greeting_timeout: quick,
        command_timeout: quick,
        mail_timeout: quick,
        rcpt_timeout: quick,
        data_init_timeout: quick,
        data_block_timeout: quick,
        data_termination_timeout: quick,
        quit_timeout: quick,
        ..OutboundOptions::new("client.test")
    }
}

/// Opportunistic TLS only: these tests are about the SMTP client itself.
async fn deliver_to_domain(
    resolver: &TokioResolver,
    options: &OutboundOptions,
    domain: &str,
    messages: &[Outgoing<'_>],
) -> Vec<Vec<Outcome>> {
    deliver(resolver, options, &TlsContext::opportunistic(), domain, messages, &|_, _| {}).await.outcomes
}

fn rcpts(addresses: &[&str]) -> Vec<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

const BODY: &[u8] = b"From: <alice@client.test>\r\nSubject: hello\r\n\r\nHello.\r\n";

fn delivered(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Delivered { .. })
}

#[track_caller]
fn failed_with(outcome: &Outcome, prefix: &str) {
    match outcome {
        Outcome::Failed { reply } if reply.starts_with(prefix) => {}
        other => panic!("expected Failed {prefix}…, got {other:?}"),
    }
}

#[track_caller]
fn deferred_with(outcome: &Outcome, needle: &str) {
    match outcome {
        Outcome::Deferred { reply } if reply.contains(needle) => {}
        other => panic!("expected Deferred containing {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Postfix's smtp-sink (hameau_testkit::SmtpSink), started on a free loopback port.

fn start_sink(args: &[&str]) -> hameau_testkit::SmtpSink {
    hameau_testkit::SmtpSink::start(args)
}

#[tokio::test]
async fn smtp_sink_takes_several_messages_over_one_connection() {
    let dns = dns();
    let dump = tempfile::tempdir().unwrap();
    // smtp-sink writes its dump files as nobody.
    std::fs::set_permissions(dump.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let template = format!("{}/%M.", dump.path().display());
    let sink = start_sink(&["-c", "-d", &template]);
    let to = rcpts(&["bob@a.test", "carol@a.test"]);
    let second = b"Subject: two\r\n\r\n.leading dot\r\n".as_slice();
    let messages = [
        Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY },
        Outgoing { mail_from: "", recipients: &to[..1], data: second },
    ];
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &messages).await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().flatten().all(delivered), "{results:?}");
    assert_eq!(results[0].len(), 2);
    assert_eq!(results[1].len(), 1);
    let start = Instant::now();
    let dumps = loop {
        let dumps: Vec<String> = std::fs::read_dir(dump.path())
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
            .collect();
        if dumps.len() == 2 || start.elapsed() > Duration::from_secs(5) {
            break dumps;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(dumps.len(), 2, "{dumps:?}");
    // The dot-stuffed line came back as sent: smtp-sink removed the added dot.
    assert!(dumps.iter().any(|d| d.contains("Subject: two\n\n.leading dot\n")), "{dumps:?}");
    assert!(dumps.iter().any(|d| d.contains("X-Rcpt-Args: <carol@a.test>")), "{dumps:?}");
}

#[tokio::test]
async fn smtp_sink_refusals_map_to_outcomes() {
    let dns = dns();
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];

    // 4xx to RCPT: deferred with the receiver's reply.
    let sink = start_sink(&["-r", "RCPT"]);
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &message).await;
    deferred_with(&results[0][0], "450 4.3.0");

    // 5xx to MAIL: every recipient failed.
    let sink = start_sink(&["-f", "MAIL"]);
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &message).await;
    failed_with(&results[0][0], "500 5.3.0");

    // 5xx after DATA.
    let sink = start_sink(&["-f", "."]);
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &message).await;
    failed_with(&results[0][0], "500 5.3.0");

    // Disconnection without a reply at DATA: deferred.
    let sink = start_sink(&["-q", "DATA"]);
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &message).await;
    // (smtp-sink offers PIPELINING: MAIL, RCPT and DATA went in one write.)
    deferred_with(&results[0][0], "connection closed by the server at MAIL, RCPT and DATA");

    // 421 at RCPT: deferred, the connection is gone.
    let sink = start_sink(&["-Q", "RCPT"]);
    let results = deliver_to_domain(&dns.resolver, &options(sink.port), "a.test", &message).await;
    deferred_with(&results[0][0], "421 4.");
}

// ---------------------------------------------------------------------------------------
// A scripted fake server, for exact reply sequences.

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

#[derive(Clone, Debug)]
enum Act {
    /// A reply; `\r\n` inside it separates the lines of a multi-line reply.
    Reply(String),
    /// Send nothing for a minute, reading nothing.
    Stall,
    /// Close the connection without a word.
    Close,
    /// Write these bytes, then carry on.
    Raw(Vec<u8>),
    /// Reply, then neither read nor write for a minute.
    ReplyThenStall(String),
}

fn reply(text: &str) -> Act {
    Act::Reply(text.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StartTls {
    No,
    /// A real handshake (rcgen's self-signed certificate).
    Real,
    /// `220`, then bytes that are not TLS and the end of the connection.
    Broken,
}

#[derive(Clone)]
struct Fake {
    greeting: Act,
    /// EHLO keywords after the first line.
    extensions: Vec<String>,
    starttls: StartTls,
    /// The first rule whose prefix starts a command (upper-cased) answers it.
    rules: Vec<(String, Act)>,
    /// The answer to the end of the data.
    data_end: Act,
}

impl Fake {
    fn new() -> Fake {
        Fake {
            greeting: reply("220 fake.test ESMTP"),
            extensions: ["8BITMIME", "SIZE 100000", "ENHANCEDSTATUSCODES"].map(String::from).to_vec(),
            starttls: StartTls::No,
            rules: Vec::new(),
            data_end: reply("250 2.0.0 queued as 1"),
        }
    }

    fn on(mut self, prefix: &str, act: Act) -> Fake {
        self.rules.push((prefix.to_string(), act));
        self
    }
}

/// A running fake server: its port and what it saw (`connect`, commands, `tls`, and
/// `data:` followed by the raw data, dot-stuffing included).
struct Running {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn count(&self, entry: &str) -> usize {
        self.log().iter().filter(|e| e.as_str() == entry).count()
    }
}

async fn start_fake(fake: Fake) -> Running {
    start_fake_at(fake, "127.0.0.1:0").await
}

async fn start_fake_at(fake: Fake, address: &str) -> Running {
    let listener = TcpListener::bind(address).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let fake = Arc::new(fake);
    let log_task = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            log_task.lock().unwrap().push("connect".to_string());
            tokio::spawn(serve(Box::new(stream), fake.clone(), log_task.clone()));
        }
    });
    Running { port, log }
}

/// Acts; false when the connection is to end.
async fn act(stream: &mut BufReader<Box<dyn Io>>, act: &Act) -> bool {
    match act {
        Act::Reply(text) => stream.get_mut().write_all(format!("{text}\r\n").as_bytes()).await.is_ok(),
        Act::Stall => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            false
        }
        Act::Close => false,
        Act::Raw(bytes) => stream.get_mut().write_all(bytes).await.is_ok(),
        Act::ReplyThenStall(text) => {
            let _ = stream.get_mut().write_all(format!("{text}\r\n").as_bytes()).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            false
        }
    }
}

async fn serve(stream: Box<dyn Io>, fake: Arc<Fake>, log: Arc<Mutex<Vec<String>>>) {
    let mut stream = BufReader::new(stream);
    if !act(&mut stream, &fake.greeting).await {
        return;
    }
    let mut tls = false;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end().to_string();
        log.lock().unwrap().push(line.clone());
        let upper = line.to_ascii_uppercase();
        if let Some((_, rule)) = fake.rules.iter().find(|(prefix, _)| upper.starts_with(prefix.as_str())) {
            if !act(&mut stream, rule).await {
                return;
            }
            if !upper.starts_with("DATA") || !matches!(rule, Act::Reply(r) if r.starts_with("354")) {
                continue;
            }
        } else if upper.starts_with("EHLO") {
            let mut lines = vec!["fake.test".to_string()];
            lines.extend(fake.extensions.iter().cloned());
            if fake.starttls != StartTls::No && !tls {
                lines.push("STARTTLS".to_string());
            }
            let n_lines = lines.len();
            let text: String = lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n_lines { ' ' } else { '-' }))
                .collect();
            stream.get_mut().write_all(text.as_bytes()).await.unwrap();
            continue;
        } else if upper == "STARTTLS" {
            stream.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await.unwrap();
            if fake.starttls == StartTls::Broken {
                let _ = stream.get_mut().write_all(b"this is not TLS\r\n").await;
                return;
            }
            let acceptor = tokio_rustls::TlsAcceptor::from(server_tls());
            let Ok(tls_stream) = acceptor.accept(stream.into_inner()).await else { return };
            log.lock().unwrap().push("tls".to_string());
            stream = BufReader::new(Box::new(tls_stream));
            tls = true;
            continue;
        } else if upper == "QUIT" {
            let _ = stream.get_mut().write_all(b"221 2.0.0 bye\r\n").await;
            return;
        } else if upper != "DATA" {
            stream.get_mut().write_all(b"250 2.0.0 ok\r\n").await.unwrap();
            continue;
        } else {
            stream.get_mut().write_all(b"354 go on\r\n").await.unwrap();
        }
        // The data, up to the line holding only a dot.
        let mut data = Vec::new();
        loop {
            let mut line = Vec::new();
            if stream.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == b".\r\n" {
                break;
            }
            data.extend_from_slice(&line);
        }
        log.lock().unwrap().push(format!("data:{}", String::from_utf8_lossy(&data)));
        if !act(&mut stream, &fake.data_end).await {
            return;
        }
    }
}

fn server_tls() -> Arc<rustls::ServerConfig> {
    let certified = rcgen::generate_simple_self_signed(vec!["mx1.test".to_string()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

#[tokio::test]
async fn each_recipient_gets_its_own_reply() {
    let dns = dns();
    let fake = Fake::new()
        .on("RCPT TO:<UNKNOWN@", reply("550 5.1.1 no such user"))
        .on("RCPT TO:<FULL@", reply("452 4.2.2 mailbox full"))
        .on("RCPT TO:<OLD@", reply("551 user not local"))
        .on("RCPT TO:<LONG@", reply("550-5.7.1 first line\r\n550-5.7.1 second\tline\r\n550 5.7.1 last"));
    let server = start_fake(fake).await;
    let to = rcpts(&["bob@a.test", "unknown@a.test", "full@a.test", "old@a.test", "long@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    assert_eq!(
        results[0],
        vec![
            Outcome::Delivered { reply: "250 2.0.0 queued as 1".to_string() },
            Outcome::Failed { reply: "550 5.1.1 no such user".to_string() },
            Outcome::Deferred { reply: "452 4.2.2 mailbox full".to_string() },
            // No enhanced code from the server: the class's own.
            Outcome::Failed { reply: "551 5.0.0 user not local".to_string() },
            // A multi-line reply on one line.
            Outcome::Failed { reply: "550 5.7.1 first line second line last".to_string() },
        ]
    );
    let log = server.log();
    assert!(log.contains(&format!("MAIL FROM:<alice@client.test> SIZE={}", BODY.len())), "{log:?}");
    assert!(log.contains(&format!("data:{}", String::from_utf8_lossy(BODY))), "{log:?}");
}

#[tokio::test]
async fn no_accepted_recipient_sends_no_data_and_the_next_message_follows_after_rset() {
    let dns = dns();
    let server = start_fake(Fake::new().on("RCPT TO:<UNKNOWN@", reply("550 5.1.1 no such user"))).await;
    let refused = rcpts(&["unknown@a.test"]);
    let fine = rcpts(&["bob@a.test"]);
    let messages = [
        Outgoing { mail_from: "alice@client.test", recipients: &refused, data: BODY },
        Outgoing { mail_from: "alice@client.test", recipients: &fine, data: BODY },
    ];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &messages).await;
    failed_with(&results[0][0], "550 5.1.1");
    assert!(delivered(&results[1][0]), "{results:?}");
    let log = server.log();
    let commands: Vec<&str> = log.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        commands,
        ["connect", "EHLO client.test", "MAIL FROM", "RCPT TO", "RSET", "MAIL FROM", "RCPT TO", "DATA", "data", "QUIT"]
    );
}

#[tokio::test]
async fn mail_from_refusals_fail_or_defer_all_recipients() {
    let dns = dns();
    let server = start_fake(
        Fake::new()
            .on("MAIL FROM:<SPAMMER@", reply("553 5.7.1 sender refused"))
            .on("MAIL FROM:<BUSY@", reply("451 4.3.0 try later")),
    )
    .await;
    let to = rcpts(&["bob@a.test", "carol@a.test"]);
    let messages = [
        Outgoing { mail_from: "spammer@client.test", recipients: &to, data: BODY },
        Outgoing { mail_from: "busy@client.test", recipients: &to, data: BODY },
    ];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &messages).await;
    for outcome in &results[0] {
        failed_with(outcome, "553 5.7.1");
    }
    for outcome in &results[1] {
        deferred_with(outcome, "451 4.3.0 try later");
    }
    assert!(!server.log().iter().any(|l| l.starts_with("RCPT")));
}

#[tokio::test]
async fn data_replies_decide_for_the_accepted_recipients() {
    let dns = dns();
    let mut fake = Fake::new().on("RCPT TO:<UNKNOWN@", reply("550 5.1.1 no such user"));
    fake.data_end = reply("554 5.7.1 spam");
    let server = start_fake(fake).await;
    let to = rcpts(&["bob@a.test", "unknown@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    failed_with(&results[0][0], "554 5.7.1 spam");
    failed_with(&results[0][1], "550 5.1.1");

    let server = start_fake(
        Fake::new().on("RCPT TO:<UNKNOWN@", reply("550 5.1.1 no such user")).on("DATA", reply("451 4.3.0 not now")),
    )
    .await;
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message[..]).await;
    deferred_with(&results[0][0], "451 4.3.0 not now");
    failed_with(&results[0][1], "550 5.1.1");
    assert!(!server.log().iter().any(|l| l.starts_with("data:")));
}

#[tokio::test]
async fn null_mx_fails_at_once_and_missing_domains_fail() {
    let dns = dns();
    let to = rcpts(&["bob@null.test", "carol@null.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    // Port 9: nothing must be contacted.
    let results = deliver_to_domain(&dns.resolver, &options(9), "null.test", &message).await;
    let expected = Outcome::Failed { reply: "556 5.1.10 domain does not accept mail (null MX)".to_string() };
    assert_eq!(results, vec![vec![expected.clone(), expected]]);

    let results = deliver_to_domain(&dns.resolver, &options(9), "nosuch.test", &message).await;
    failed_with(&results[0][0], "550 5.1.2");
    let results = deliver_to_domain(&dns.resolver, &options(9), "nothing.test", &message).await;
    failed_with(&results[0][0], "550 5.4.4");
}

#[tokio::test]
async fn implicit_mx_is_the_domain_itself() {
    let dns = dns();
    let server = start_fake(Fake::new()).await;
    let to = rcpts(&["bob@implicit.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "implicit.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");
}

#[tokio::test]
async fn the_next_mx_is_tried_on_a_refused_connection_or_a_4xx_greeting() {
    let dns = dns();
    // backup.test: MX 10 down.test (127.0.0.2, nothing listens), MX 20 mx1.test.
    let server = start_fake(Fake::new()).await;
    let to = rcpts(&["bob@backup.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "backup.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");

    // greylist.test: MX 10 mx3.test (127.0.0.3, greets 421), MX 20 mx1.test.
    let mut busy = Fake::new();
    busy.greeting = reply("421 4.3.2 too busy");
    let busy = start_fake_at(busy, &format!("127.0.0.3:{}", server.port)).await;
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "greylist.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    assert_eq!(busy.count("connect"), 1);
    assert_eq!(server.count("connect"), 2);

    // With every MX down, the last reason defers.
    let results = deliver_to_domain(&dns.resolver, &options(9), "backup.test", &message).await;
    deferred_with(&results[0][0], "451 4.4.1 connection to mx1.test[127.0.0.1]:9 failed");
}

/// Found while looking into a failure of the `smtp_reply` fuzz target: past 4 KiB,
/// smtp-proto's reply parser still keeps two bytes of every continuation line `220-x`, so
/// an endless multi-line greeting grew the client's memory with it. What a server sends between two commands is bounded
/// (`outbound.replies_bytes_max`): the delivery is deferred, and so is one whose replies to MAIL
/// are endless.
#[tokio::test]
async fn an_endless_multiline_reply_is_cut_at_the_bound() {
    let dns = dns();
    let bound = OutboundOptions::new("client.test").replies_bytes_max;
    let endless = b"220-x\r\n".repeat(4 * bound / 7);
    let greeting = start_fake(Fake { greeting: Act::Raw(endless), ..Fake::new() }).await;
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(greeting.port), "a.test", &message).await;
    deferred_with(&results[0][0], "without a command between");
    let endless = b"250-x\r\n".repeat(4 * bound / 7);
    let mail = start_fake(Fake::new().on("MAIL", Act::Raw(endless))).await;
    let results = deliver_to_domain(&dns.resolver, &options(mail.port), "a.test", &message).await;
    deferred_with(&results[0][0], "without a command between");
}

#[tokio::test]
async fn dns_failures_defer() {
    // A resolver that gets no answer.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = resolver(&[silent.local_addr().unwrap()], Duration::from_millis(200), Cache::NONE).unwrap();
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&resolver, &options(9), "a.test", &message).await;
    deferred_with(&results[0][0], "451 4.4.3 looking up the MX of a.test");
}

#[tokio::test]
async fn starttls_is_used_when_offered() {
    let dns = dns();
    let mut fake = Fake::new();
    fake.starttls = StartTls::Real;
    let server = start_fake(fake).await;
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    let log = server.log();
    let commands: Vec<&str> = log.iter().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        commands,
        [
            "connect",
            "EHLO client.test",
            "STARTTLS",
            "tls",
            "EHLO client.test",
            "MAIL FROM",
            "RCPT TO",
            "DATA",
            "data",
            "QUIT"
        ]
    );
}

#[tokio::test]
async fn a_failed_tls_handshake_is_retried_in_clear() {
    let dns = dns();
    let mut fake = Fake::new();
    fake.starttls = StartTls::Broken;
    let server = start_fake(fake).await;
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    assert_eq!(server.count("connect"), 2);
    assert_eq!(server.count("STARTTLS"), 1);
}

#[tokio::test]
async fn refused_starttls_goes_on_in_clear() {
    let dns = dns();
    let mut fake = Fake::new().on("STARTTLS", reply("454 4.7.0 TLS not available"));
    fake.starttls = StartTls::Real;
    let server = start_fake(fake).await;
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    assert_eq!(server.count("connect"), 1);
}

#[tokio::test]
async fn extensions_decide_the_mail_parameters() {
    let dns = dns();
    let mut fake = Fake::new();
    fake.extensions = vec!["8BITMIME".to_string(), "SIZE 100".to_string()];
    let server = start_fake(fake).await;
    let ascii = rcpts(&["bob@a.test"]);
    let international = rcpts(&["andré@a.test"]);
    let eight_bit = "Subject: =?utf-8?q?=C3=A9t=C3=A9?=\r\n\r\nçà\r\n".as_bytes();
    let large = vec![b'x'; 101];
    let messages = [
        Outgoing { mail_from: "alice@client.test", recipients: &ascii, data: eight_bit },
        Outgoing { mail_from: "alice@client.test", recipients: &international, data: BODY },
        Outgoing { mail_from: "alice@client.test", recipients: &ascii, data: &large },
    ];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &messages).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    let expected = "550 5.6.7 the receiver does not accept international mail (SMTPUTF8)";
    assert_eq!(results[1], vec![Outcome::Failed { reply: expected.to_string() }]);
    failed_with(&results[2][0], "552 5.3.4");
    let log = server.log();
    let mail = format!("MAIL FROM:<alice@client.test> SIZE={} BODY=8BITMIME", eight_bit.len());
    assert!(log.contains(&mail), "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("MAIL")).count(), 1, "{log:?}");

    let mut fake = Fake::new();
    fake.extensions = vec!["SMTPUTF8".to_string()];
    let server = start_fake(fake).await;
    let messages = [Outgoing { mail_from: "élodie@client.test", recipients: &international, data: BODY }];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &messages).await;
    assert!(delivered(&results[0][0]), "{results:?}");
    assert!(server.log().contains(&"MAIL FROM:<élodie@client.test> SMTPUTF8".to_string()));
}

#[tokio::test]
async fn envelopes_cannot_inject_commands() {
    let dns = dns();
    let server = start_fake(Fake::new()).await;
    let to = rcpts(&["bob@a.test>\r\nRCPT TO:<eve@evil.test", "", "carol@a.test"]);
    let fine = rcpts(&["bob@a.test"]);
    let messages = [
        Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY },
        Outgoing { mail_from: "alice@client.test>\r\nRSET", recipients: &fine, data: BODY },
        Outgoing { mail_from: "alice@client.test", recipients: &[], data: BODY },
    ];
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &messages).await;
    failed_with(&results[0][0], "553 5.1.3");
    failed_with(&results[0][1], "553 5.1.3");
    assert!(delivered(&results[0][2]), "{results:?}");
    failed_with(&results[1][0], "553 5.1.7");
    assert!(results[2].is_empty());
    let log = server.log();
    assert_eq!(log.iter().filter(|l| l.starts_with("RCPT")).count(), 1, "{log:?}");
    assert_eq!(log.iter().filter(|l| l.starts_with("MAIL")).count(), 1, "{log:?}");
}

#[tokio::test]
async fn messages_per_connection_are_bounded() {
    let dns = dns();
    let server = start_fake(Fake::new()).await;
    let to = rcpts(&["bob@a.test"]);
    let message = Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY };
    let options = OutboundOptions { messages_per_connection_max: 2, ..options(server.port) };
    let results = deliver_to_domain(&dns.resolver, &options, "a.test", &[message; 5]).await;
    assert!(results.iter().flatten().all(delivered), "{results:?}");
    assert_eq!(server.count("connect"), 3);
    // After a completed transaction the next MAIL needs no RSET (RFC 5321 §4.1.4).
    assert_eq!(server.count("RSET"), 0);
}

#[tokio::test]
async fn stalls_time_out_and_defer() {
    let dns = dns();
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];
    let quick = |port| OutboundOptions {
        greeting_timeout: Duration::from_millis(300),
        rcpt_timeout: Duration::from_millis(300),
        data_block_timeout: Duration::from_millis(300),
        data_termination_timeout: Duration::from_millis(300),
        ..options(port)
    };

    let mut silent = Fake::new();
    silent.greeting = Act::Stall;
    let server = start_fake(silent).await;
    let results = deliver_to_domain(&dns.resolver, &quick(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "no reply to the greeting in time");

    let server = start_fake(Fake::new().on("RCPT", Act::Stall)).await;
    let results = deliver_to_domain(&dns.resolver, &quick(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "no reply to RCPT TO in time");

    let mut fake = Fake::new();
    fake.data_end = Act::Stall;
    let server = start_fake(fake).await;
    let results = deliver_to_domain(&dns.resolver, &quick(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "no reply to the end of DATA in time");

    // A receiver that stops reading in the middle of the data: 32 MiB overflow the
    // loopback socket buffers.
    let mut fake = Fake::new().on("DATA", Act::ReplyThenStall("354 go on".to_string()));
    fake.extensions.clear();
    let server = start_fake(fake).await;
    let big = vec![b'x'; 32 << 20];
    let huge = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: &big }];
    let started = Instant::now();
    let results = deliver_to_domain(&dns.resolver, &quick(server.port), "a.test", &huge).await;
    deferred_with(&results[0][0], "the receiver stopped reading the message");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn broken_replies_defer() {
    let dns = dns();
    let to = rcpts(&["bob@a.test"]);
    let message = [Outgoing { mail_from: "alice@client.test", recipients: &to, data: BODY }];

    let server = start_fake(Fake::new().on("MAIL", Act::Raw(b"garbage!\r\n".to_vec()))).await;
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "unreadable reply to MAIL FROM (malformed, or over 4 KiB)");

    let server = start_fake(Fake::new().on("RCPT", Act::Close)).await;
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "127.0.0.1]:");
    deferred_with(&results[0][0], "connection closed by the server at RCPT TO");

    // A multi-line reply over smtp-proto's 4 KiB limit.
    let long: String = (0..200).map(|i| format!("250-line {i} of a reply that never ends\r\n")).collect();
    let server = start_fake(Fake::new().on("MAIL", Act::Raw(format!("{long}250 ok\r\n").into_bytes()))).await;
    let results = deliver_to_domain(&dns.resolver, &options(server.port), "a.test", &message).await;
    deferred_with(&results[0][0], "unreadable reply to MAIL FROM (malformed, or over 4 KiB)");
}

#[test]
fn mx_hosts_go_by_preference_and_equal_ones_are_shuffled() {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let mut exchanges =
            vec![(20, "b".to_string()), (10, "a".to_string()), (20, "c".to_string()), (30, "d".to_string())];
        super::order(&mut exchanges);
        let names: Vec<&str> = exchanges.iter().map(|(_, name)| name.as_str()).collect();
        assert!(names == ["a", "b", "c", "d"] || names == ["a", "c", "b", "d"], "{names:?}");
        seen.insert(names.join(""));
    }
    // Both orders of b and c: the odds of missing one are 2^-199.
    assert_eq!(seen.len(), 2);
}

// ---------------------------------------------------------------------------------------
// Dot-stuffing.

#[track_caller]
fn check_data(message: &str, expected: &str) {
    let mut out = Vec::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(write_data(&mut out, message.as_bytes(), Duration::from_secs(1))).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn data_is_dot_stuffed() {
    check_data("a\r\nb\r\n", "a\r\nb\r\n.\r\n");
    check_data("a\r\n.b\r\n", "a\r\n..b\r\n.\r\n");
    check_data(".\r\n", "..\r\n.\r\n");
    check_data("a\r\n.\r\n", "a\r\n..\r\n.\r\n");
    check_data("no final newline", "no final newline\r\n.\r\n");
    check_data("a\n.\r\nMAIL FROM:<>", "a\n..\r\nMAIL FROM:<>\r\n.\r\n");
    check_data("a\r.\r\n", "a\r..\r\n.\r\n");
    check_data("", "\r\n.\r\n");
    check_data("a...b\r\n", "a...b\r\n.\r\n");
}

#[test]
fn large_data_is_written_in_chunks() {
    let line = ".abcdefghij\r\n";
    let message = line.repeat(20_000);
    let expected = format!("{}.\r\n", format!(".{line}").repeat(20_000));
    check_data(&message, &expected);
}

//! Issue 11's bad-input and bad-receiver acceptance items against the real binary: a
//! receiver that answers `451` (retries on a short schedule, one delay notice, then one
//! delivery), that sends garbage, stalls or closes mid-DATA (deferred with a clear reason
//! while another domain's mail moves on and the server keeps serving), a domain whose MX
//! lookup fails (deferred, not bounced), and malformed submissions over sockets.
//!
//! The receivers are [`Receiver`]s, small scripted SMTP servers. `[outbound] port` is one
//! port for every domain, so each receiver listens on its own loopback address (127.0.0.2,
//! 127.0.0.3: all of 127/8 reaches the host on Linux) on one port number, and knotd's
//! records point each domain at its address.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::submission::{PASSWORD, imap_inbox, remote_mx, setup, swaks};
use crate::support::{Api, Server, config_path, init_with_token, metric, start_server};

/// What a [`Receiver`] does on one connection.
#[derive(Clone, Debug)]
enum Behaviour {
    /// A plain SMTP server: accepts every message and records it.
    Accept,
    /// `451 4.3.0 try later` to every RCPT.
    RefuseRcpt,
    /// `451 4.3.0 try later` after the data.
    RefuseData,
    /// These bytes instead of the greeting, then silence.
    GarbageGreeting(Vec<u8>),
    /// A good greeting and EHLO, then these bytes instead of the reply to MAIL, then silence.
    GarbageReply(Vec<u8>),
    /// `354` to DATA, then neither reads nor answers again.
    StallInData,
    /// `354` to DATA, reads a few bytes of the message, then closes the connection.
    CloseInData,
}

/// A message a [`Receiver`] accepted.
#[derive(Clone, Debug)]
struct Accepted {
    /// The MAIL command as sent, without its line end.
    mail: String,
    recipients: Vec<String>,
    data: String,
}

#[derive(Debug, Default)]
struct Seen {
    connections: usize,
    accepted: Vec<Accepted>,
    /// Behaviours for the next connections, in order; then `then`.
    script: VecDeque<Behaviour>,
    then: Option<Behaviour>,
}

/// A scripted SMTP receiver on one address, one thread per connection; stopped when
/// dropped (a stalled connection is then closed too).
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
}

/// Longest a receiver holds a stalled connection, whatever the test does.
const STALL_MAX: Duration = Duration::from_secs(60);

impl Receiver {
    /// Serves `listener`: the connections follow `script`, then all behave as `then`.
    fn start(listener: TcpListener, script: Vec<Behaviour>, then: Behaviour) -> Receiver {
        let addr = listener.local_addr().unwrap();
        let seen = Seen { script: script.into(), then: Some(then), ..Seen::default() };
        let seen = Arc::new(Mutex::new(seen));
        let stop = Arc::new(AtomicBool::new(false));
        listener.set_nonblocking(true).unwrap();
        let (seen_loop, stop_loop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_loop.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let behaviour = {
                    let mut seen = seen_loop.lock().unwrap();
                    seen.connections += 1;
                    seen.script.pop_front().or_else(|| seen.then.clone()).unwrap()
                };
                let (seen, stop) = (seen_loop.clone(), stop_loop.clone());
                std::thread::spawn(move || serve(stream, behaviour, &seen, &stop));
            }
        });
        Receiver { addr, seen, stop }
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    fn accepted(&self) -> Vec<Accepted> {
        self.seen.lock().unwrap().accepted.clone()
    }

    /// Waits until `done` holds of what the receiver saw, at most `timeout`; whether it did.
    fn wait_until(&self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if done(&self.seen.lock().unwrap()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Listeners on one port number, one per address of `ips`.
fn listeners_on_one_port(ips: &[&str]) -> Vec<TcpListener> {
    'again: loop {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)) {
                Ok(listener) => listeners.push(listener),
                Err(_) => continue 'again,
            }
        }
        return listeners;
    }
}

/// One connection of a [`Receiver`].
fn serve(stream: TcpStream, behaviour: Behaviour, seen: &Mutex<Seen>, stop: &AtomicBool) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut say = |bytes: &[u8]| writer.write_all(bytes).is_ok();
    // Holds the connection open, reading nothing, until the receiver stops.
    let idle = || {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < STALL_MAX {
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    if let Behaviour::GarbageGreeting(bytes) = &behaviour {
        say(bytes);
        return idle();
    }
    say(b"220 mx.test ESMTP scripted receiver\r\n");
    let (mut mail, mut recipients) = (String::new(), Vec::new());
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if command.starts_with("EHLO") {
            b"250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        } else if command.starts_with("MAIL") {
            if let Behaviour::GarbageReply(bytes) = &behaviour {
                say(bytes);
                return idle();
            }
            mail = String::from_utf8_lossy(&line).trim_end().to_string();
            recipients.clear();
            b"250 2.1.0 ok\r\n"
        } else if command.starts_with("RCPT") {
            if let Behaviour::RefuseRcpt = behaviour {
                b"451 4.3.0 try later\r\n"
            } else {
                let line = String::from_utf8_lossy(&line);
                let address = line.split(['<', '>']).nth(1).unwrap_or_default();
                recipients.push(address.to_string());
                b"250 2.1.5 ok\r\n"
            }
        } else if command.starts_with("DATA") && recipients.is_empty() {
            // RFC 2920 §3.1: a pipelined DATA after refused recipients is refused too.
            b"554 5.5.1 no valid recipients\r\n"
        } else if command.starts_with("DATA") {
            say(b"354 go on\r\n");
            match behaviour {
                Behaviour::StallInData => return idle(),
                Behaviour::CloseInData => {
                    let _ = reader.read(&mut [0u8; 16]);
                    return;
                }
                _ => {}
            }
            let Some(data) = read_data(&mut reader) else { return };
            if let Behaviour::RefuseData = behaviour {
                b"451 4.3.0 try later\r\n"
            } else {
                let accepted = Accepted { mail: mail.clone(), recipients: std::mem::take(&mut recipients), data };
                seen.lock().unwrap().accepted.push(accepted);
                b"250 2.0.0 accepted\r\n"
            }
        } else if command.starts_with("RSET") {
            recipients.clear();
            b"250 2.0.0 ok\r\n"
        } else if command.starts_with("QUIT") {
            say(b"221 2.0.0 bye\r\n");
            return;
        } else {
            b"502 5.5.2 not here\r\n"
        };
        if !say(reply) {
            return;
        }
    }
}

/// The data of a DATA command up to its final dot, unstuffed; `None` if the connection
/// ended first.
fn read_data(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut data = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        if line == b".\r\n" {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
        data.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
    }
}

/// Sets `key = value` in `section` of the configuration (keys such as
/// `command_timeout_s` are in several sections).
pub(crate) fn set_in_section(config: &Path, section: &str, key: &str, value: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let start = text.find(&format!("\n[{section}]\n")).unwrap_or_else(|| panic!("no [{section}]"));
    let at = start + text[start..].find(&format!("\n{key} = ")).unwrap_or_else(|| panic!("no {section}.{key}")) + 1;
    let end = at + text[at..].find('\n').unwrap();
    let changed = format!("{}{key} = {value}{}", &text[..at], &text[end..]);
    std::fs::write(config, changed).unwrap();
}

/// Timeouts of a few seconds, so that a stalled receiver is given up quickly, and a retry
/// every second; `data_termination_timeout_s` as given.
fn short_outbound(config: &Path, port: u16, data_termination_timeout_s: u64) {
    for (key, value) in [
        ("port", port.to_string()),
        ("connect_timeout_s", "2".into()),
        ("command_timeout_s", "2".into()),
        ("data_init_timeout_s", "2".into()),
        ("data_block_timeout_s", "2".into()),
        ("data_termination_timeout_s", data_termination_timeout_s.to_string()),
    ] {
        set_in_section(config, "outbound", key, &value);
    }
    set_in_section(config, "queue", "retry_schedule_s", "[1]");
    set_in_section(config, "queue", "lifetime_s", "120");
    set_in_section(config, "queue", "delay_notice_s", "100");
}

/// Submits a message from agent@a.test to `to` (comma-separated) on 465; swaks' output.
fn submit(server: &Server, to: &str, subject: &str) -> String {
    let auth = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD];
    let header = format!("Subject: {subject}");
    let args = [&["--tls-on-connect", "--to", to, "--from", "agent@a.test", "--header", &header][..], &auth].concat();
    let (ok, text) = swaks(server.submissions[0].port(), &args);
    assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");
    text
}

/// The log lines of the delivery attempts to `recipient`.
pub(crate) fn attempts_to(server: &Server, recipient: &str) -> Vec<String> {
    let to = format!("\"to\":\"{recipient}\"");
    server.log().into_iter().filter(|line| line.contains("queue: delivery attempt") && line.contains(&to)).collect()
}

/// The count of `hameau_outbound_recipients_total` for remote recipients with `result`.
fn remote(server: &Server, config: &Path, result: &str) -> u64 {
    metric(server, config, &format!("hameau_outbound_recipients_total{{route=\"remote\",result=\"{result}\"}}"))
}

/// Receiver answers `451` to RCPT twice, then accepts: the message is retried on the short
/// schedule, the sender gets one delay notice (over IMAP, French then English), and the
/// message is delivered exactly once.
#[test]
fn a_receiver_answering_451_gets_retries_and_the_sender_one_delay_notice() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let receiver = Receiver::start(listener, vec![Behaviour::RefuseRcpt, Behaviour::RefuseData], Behaviour::Accept);
    short_outbound(&config, receiver.addr.port(), 2);
    // Retries after 1 then 2 s; the delay notice for a recipient still waiting after 1 s.
    set_in_section(&config, "queue", "retry_schedule_s", "[1, 2]");
    set_in_section(&config, "queue", "delay_notice_s", "1");
    let server = start_server(&config);
    let start = Instant::now();
    submit(&server, "x@remote.test", "Compte rendu du conseil");

    assert!(receiver.wait_until(Duration::from_secs(20), |seen| !seen.accepted.is_empty()), "never accepted");
    let took = start.elapsed();
    assert_eq!(receiver.connections(), 3, "refused at RCPT, refused after DATA, accepted");
    // Nothing more comes: delivered once.
    std::thread::sleep(Duration::from_millis(2500));
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0].recipients, ["x@remote.test"]);
    assert!(accepted[0].data.contains("Subject: Compte rendu du conseil"), "{}", accepted[0].data);
    let attempts = attempts_to(&server, "x@remote.test");
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    assert!(attempts[0].contains("Deferred") && attempts[0].contains("451 4.3.0 try later"), "{}", attempts[0]);
    assert!(attempts[2].contains("Delivered"), "{}", attempts[2]);

    // One notice in the sender's INBOX: delayed, not failed, French then English.
    let notices = imap_inbox(server.imap[0].port(), "agent@a.test", 1);
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert!(notice.contains("Action: delayed") && !notice.contains("Action: failed"), "{notice}");
    assert!(notice.contains("Final-Recipient: rfc822; x@remote.test"), "{notice}");
    assert!(notice.contains("451 4.3.0 try later"), "the receiver's reply is quoted: {notice}");
    assert!(notice.find("Bonjour").unwrap() < notice.find("-- English --").unwrap(), "{notice}");
    assert!(notice.contains("Subject: Compte rendu du conseil"), "{notice}");
    assert_eq!((remote(&server, &config, "deferred"), remote(&server, &config, "delivered")), (2, 1));
    assert_eq!(remote(&server, &config, "failed"), 0);
    eprintln!("451 twice then accepted: delivered after {took:?}");
}

/// A bad receiver for bad.test (127.0.0.2) and a good one for good.test (127.0.0.3); one
/// message to both domains, then another to good.test. The good domain's mail is
/// delivered while the bad receiver misbehaves; the bad one's is deferred with a log line
/// holding one of `reasons`, and retried; the server keeps serving. Returns how long the
/// good receiver took to get the first message, and the bad attempts' log lines.
fn bad_receiver(behaviour: Behaviour, data_termination_timeout_s: u64, reasons: &[&str]) -> (Duration, Vec<String>) {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let listeners = listeners_on_one_port(&["127.0.0.2", "127.0.0.3"]);
    let port = listeners[0].local_addr().unwrap().port();
    let _dns = remote_mx(
        &config,
        &[
            ("bad.test", "bad.test. 300 IN MX 10 mx.bad.test.\nmx.bad.test. 300 IN A 127.0.0.2\n"),
            ("good.test", "good.test. 300 IN MX 10 mx.good.test.\nmx.good.test. 300 IN A 127.0.0.3\n"),
        ],
    );
    short_outbound(&config, port, data_termination_timeout_s);
    let mut listeners = listeners.into_iter();
    let bad = Receiver::start(listeners.next().unwrap(), Vec::new(), behaviour);
    let good = Receiver::start(listeners.next().unwrap(), Vec::new(), Behaviour::Accept);
    let server = start_server(&config);

    let start = Instant::now();
    submit(&server, "x@bad.test,y@good.test", "Deux domaines");
    assert!(good.wait_until(Duration::from_secs(10), |seen| !seen.accepted.is_empty()), "good.test got nothing");
    let good_took = start.elapsed();
    // Deferred with a clear reason, then tried again.
    assert!(bad.wait_until(Duration::from_secs(20), |seen| seen.connections >= 2), "bad.test was not retried");
    let wait_log = Instant::now();
    let bad_attempts = loop {
        let attempts = attempts_to(&server, "x@bad.test");
        if !attempts.is_empty() || wait_log.elapsed() > Duration::from_secs(10) {
            break attempts;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!bad_attempts.is_empty(), "no attempt logged");
    for line in &bad_attempts {
        assert!(line.contains("Deferred") && line.contains("451 4.4.2 mx.bad.test[127.0.0.2]"), "{line}");
        assert!(reasons.iter().any(|reason| line.contains(reason)), "none of {reasons:?} in {line}");
    }
    assert_eq!(remote(&server, &config, "failed"), 0, "deferred, never failed");

    // The server keeps serving: /metrics answers, a new message reaches good.test.
    assert!(remote(&server, &config, "delivered") >= 1);
    submit(&server, "z@good.test", "Toujours en service");
    assert!(good.wait_until(Duration::from_secs(3 * data_termination_timeout_s + 10), |seen| seen.accepted.len() >= 2));
    assert_eq!(good.accepted().len(), 2);
    assert!(bad.accepted().is_empty());
    assert!(!server.log().iter().any(|line| line.contains("panicked")));
    let reason = bad_attempts[0].split("\"outcome\":").nth(1).unwrap_or_default().to_string();
    eprintln!("bad.test deferred: {reason}");
    (good_took, bad_attempts)
}

#[test]
fn a_receiver_sending_garbage_for_a_greeting_is_deferred_and_the_queue_moves_on() {
    let noise: Vec<u8> = (0..2000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (took, _) = bad_receiver(Behaviour::GarbageGreeting(noise), 2, &["unreadable reply to the greeting"]);
    eprintln!("garbage greeting: good.test served after {took:?}");
}

#[test]
fn a_receiver_sending_an_endless_line_is_deferred_and_the_queue_moves_on() {
    // 10 KiB without a line end: over the client's 4 KiB bound for a reply.
    let line = [b"220 ".as_slice(), &[b'x'; 10 * 1024]].concat();
    let (took, _) = bad_receiver(Behaviour::GarbageGreeting(line), 2, &["unreadable reply to the greeting"]);
    eprintln!("endless greeting: good.test served after {took:?}");
}

#[test]
fn a_receiver_answering_mail_with_garbage_is_deferred_and_the_queue_moves_on() {
    let garbage = b"\x00\xff\xfe garbage \x1b[2J\r\nnot a reply\r\n".to_vec();
    let (took, _) = bad_receiver(Behaviour::GarbageReply(garbage), 2, &["unreadable reply to MAIL, RCPT and DATA"]);
    eprintln!("garbage reply: good.test served after {took:?}");
}

#[test]
fn a_receiver_stalling_mid_data_is_deferred_and_the_queue_moves_on() {
    // The bad receiver stalls for the 4 s of the timeout after the data; good.test's
    // delivery runs beside it.
    let (took, _) = bad_receiver(Behaviour::StallInData, 4, &["no reply to the end of DATA in time"]);
    assert!(took < Duration::from_secs(3), "good.test waited for the stalled receiver: {took:?}");
    eprintln!("stall in DATA: good.test served after {took:?}");
}

#[test]
fn a_receiver_closing_mid_data_is_deferred_and_the_queue_moves_on() {
    let reasons = ["connection closed by the server at the end of DATA", "connection lost"];
    let (took, _) = bad_receiver(Behaviour::CloseInData, 2, &reasons);
    eprintln!("close in DATA: good.test served after {took:?}");
}

/// A message submitted while another domain's receiver stalls should leave at once, not
/// when the stalled attempt gives up. Today the worker delivers a round's domains side by
/// side but starts the next round only when the slowest domain of this one is done
/// (`smtp::worker::Worker::round` joins every delivery before recording any), so a
/// receiver stalling after the data holds every new message, local ones too, for up to
/// `outbound.data_termination_timeout_s` (10 minutes by default).
#[test]
fn mail_queued_while_a_receiver_stalls_leaves_at_once() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let listeners = listeners_on_one_port(&["127.0.0.2", "127.0.0.3"]);
    let port = listeners[0].local_addr().unwrap().port();
    let _dns = remote_mx(
        &config,
        &[
            ("bad.test", "bad.test. 300 IN MX 10 mx.bad.test.\nmx.bad.test. 300 IN A 127.0.0.2\n"),
            ("good.test", "good.test. 300 IN MX 10 mx.good.test.\nmx.good.test. 300 IN A 127.0.0.3\n"),
        ],
    );
    short_outbound(&config, port, 20);
    let mut listeners = listeners.into_iter();
    let bad = Receiver::start(listeners.next().unwrap(), Vec::new(), Behaviour::StallInData);
    let good = Receiver::start(listeners.next().unwrap(), Vec::new(), Behaviour::Accept);
    let server = start_server(&config);
    submit(&server, "x@bad.test", "Bloque");
    assert!(bad.wait_until(Duration::from_secs(10), |seen| seen.connections >= 1));
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    submit(&server, "y@good.test", "Presse");
    let arrived = good.wait_until(Duration::from_secs(30), |seen| !seen.accepted.is_empty());
    let took = start.elapsed();
    assert!(arrived && took < Duration::from_secs(5), "good.test got its message after {took:?}");
}

/// A domain whose MX lookup fails for now (SERVFAIL: knotd serves a zone it could not
/// load; REFUSED: knotd does not serve the zone) is deferred and retried, never bounced.
#[test]
fn a_domain_whose_mx_lookup_fails_is_deferred_not_bounced() {
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[("broken.test", "this is not a record\n")]);
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), Vec::new(), Behaviour::Accept);
    short_outbound(&config, receiver.addr.port(), 2);
    let server = start_server(&config);
    submit(&server, "x@broken.test,y@unserved.test,z@remote.test", "DNS en panne");

    // The working domain is delivered; the other two are tried again and again.
    assert!(receiver.wait_until(Duration::from_secs(10), |seen| !seen.accepted.is_empty()), "remote.test got nothing");
    let start = Instant::now();
    while attempts_to(&server, "x@broken.test").len() < 2 || attempts_to(&server, "y@unserved.test").len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "not retried: {:#?}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    for recipient in ["x@broken.test", "y@unserved.test"] {
        for line in attempts_to(&server, recipient) {
            assert!(line.contains("Deferred") && line.contains("451 4.4.3 looking up the MX of"), "{line}");
        }
    }
    assert_eq!(remote(&server, &config, "failed"), 0);
    let queued = Api::new(&server).call("GET", "/api/v1/queue", Some(&operator), None).json();
    let items = queued["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queued}");
    let id = items[0]["id"].as_u64().unwrap();
    let shown = Api::new(&server).call("GET", &format!("/api/v1/queue/{id}"), Some(&operator), None).json();
    let states: Vec<(String, String)> = shown["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap().to_string(), r["state"].as_str().unwrap().to_string()))
        .collect();
    assert!(states.contains(&("x@broken.test".into(), "pending".into())), "{shown}");
    assert!(states.contains(&("y@unserved.test".into(), "pending".into())), "{shown}");
}

/// An SMTP client on the submission port with TLS (465), logged in as agent@a.test.
struct Client {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(server: &Server) -> Client {
        let tcp = tokio::net::TcpStream::connect(server.submissions[0]).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = crate::support::tls_connector(&server.cert).connect(name, tcp).await.unwrap();
        let mut client = Client { stream, buffer: Vec::new() };
        assert!(client.reply().await.starts_with("220 "));
        assert!(client.send("EHLO poste-accueil").await.starts_with("250"));
        let plain = base64(format!("\0agent@a.test\0{PASSWORD}").as_bytes());
        assert!(client.send(&format!("AUTH PLAIN {plain}")).await.starts_with("235 "));
        client
    }

    /// Sends one line (CRLF added); the whole reply (its last line).
    async fn send(&mut self, line: &str) -> String {
        self.send_bytes(format!("{line}\r\n").as_bytes()).await
    }

    async fn send_bytes(&mut self, bytes: &[u8]) -> String {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.unwrap();
        self.reply().await
    }

    async fn reply(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line;
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "the server closed the connection");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// One transaction with `message` (its lines CRLF-ended; no dot-stuffing needed):
    /// the reply after the data, or the first refusal.
    async fn transaction(&mut self, mail_from: &str, message: &[u8]) -> String {
        let reply = self.send(mail_from).await;
        if !reply.starts_with("250") {
            return reply;
        }
        let reply = self.send("RCPT TO:<x@elsewhere.test>").await;
        assert!(reply.starts_with("250"), "{reply}");
        assert!(self.send("DATA").await.starts_with("354"));
        let reply = self.send_bytes(&[message, b".\r\n"].concat()).await;
        if !reply.starts_with("250") {
            assert!(self.send("RSET").await.starts_with("250"));
        }
        reply
    }
}

/// A message submitted with SMTPUTF8 for its UTF-8 header (ASCII addresses) must leave
/// with SMTPUTF8 too (RFC 6531 §3.4, RFC 6532 §3): a receiver that did not agree to UTF-8
/// header fields may mangle or refuse them. The outbound client looks at the header's
/// bytes, since the queue does not record the parameter.
#[test]
fn a_message_with_a_utf8_header_leaves_with_smtputf8() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    let receiver = Receiver::start(TcpListener::bind("127.0.0.1:0").unwrap(), Vec::new(), Behaviour::Accept);
    short_outbound(&config, receiver.addr.port(), 2);
    let server = start_server(&config);
    let reply = crate::support::block_on(async {
        let mut client = Client::connect(&server).await;
        let message = "From: agent@a.test\r\nSubject: Réunion à la mairie\r\n\r\nx\r\n";
        let mail = "MAIL FROM:<agent@a.test> SMTPUTF8";
        let reply = client.send(mail).await;
        assert!(reply.starts_with("250"), "{reply}");
        assert!(client.send("RCPT TO:<x@remote.test>").await.starts_with("250"));
        assert!(client.send("DATA").await.starts_with("354"));
        client.send_bytes(&[message.as_bytes(), b".\r\n"].concat()).await
    });
    assert!(reply.starts_with("250"), "{reply}");
    assert!(receiver.wait_until(Duration::from_secs(10), |seen| !seen.accepted.is_empty()), "nothing arrived");
    let accepted = receiver.accepted();
    assert!(accepted[0].data.contains("Subject: Réunion à la mairie"), "{}", accepted[0].data);
    assert!(accepted[0].mail.contains("SMTPUTF8"), "{}", accepted[0].mail);
}

/// Standard base64 with padding (RFC 4648 §4), for AUTH PLAIN.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, byte)| n | u32::from(*byte) << (16 - 8 * i));
        for i in 0..4 {
            let sextet = (n >> (18 - 6 * i)) & 63;
            out.push(if i <= chunk.len() { ALPHABET[sextet as usize] as char } else { '=' });
        }
    }
    out
}

/// Malformed input on submission, over a socket: addresses (501, 553), From fields (none,
/// several authors without Sender, two fields, not an address), 8-bit header fields
/// without SMTPUTF8 (`554 5.6.7`; accepted with it). Every refusal is clear, the session
/// goes on, and a good message goes through afterwards.
#[test]
fn submission_refuses_malformed_addresses_and_headers_and_goes_on() {
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let server = start_server(&config);
    let replies = crate::support::block_on(async {
        let mut client = Client::connect(&server).await;
        let mut replies = Vec::new();
        for command in [
            "MAIL FROM:agent@a.test",
            "MAIL FROM:<agent@>",
            "MAIL FROM:<agent a@a.test>",
            "MAIL FROM:<@a.test>",
            "MAIL FROM:<agent@a..test>",
            "MAIL FROM:<élodie@a.test>",
        ] {
            replies.push((command.to_string(), client.send(command).await));
        }
        assert!(client.send("MAIL FROM:<agent@a.test>").await.starts_with("250"));
        for command in
            ["RCPT TO:x@elsewhere.test", "RCPT TO:<x@>", "RCPT TO:<x@[300.1.1.1]>", "RCPT TO:<élodie@b.test>"]
        {
            replies.push((command.to_string(), client.send(command).await));
        }
        assert!(client.send("RSET").await.starts_with("250"));
        let from = "MAIL FROM:<agent@a.test>";
        for (what, message) in [
            ("no From", "To: x@elsewhere.test\r\nSubject: a\r\n\r\nx\r\n"),
            ("From without address", "From: Agent\r\nSubject: a\r\n\r\nx\r\n"),
            ("two authors, no Sender", "From: agent@a.test, mairie@a.test\r\nSubject: a\r\n\r\nx\r\n"),
            // The second one the account owns, the first one (what mail programs show) not.
            ("two From fields", "From: maire@a.test\r\nFrom: agent@a.test\r\nSubject: a\r\n\r\nx\r\n"),
            ("unparseable From", "From: <@>\r\nSubject: a\r\n\r\nx\r\n"),
            ("8-bit Subject", "From: agent@a.test\r\nSubject: Réunion à la mairie\r\n\r\nx\r\n"),
        ] {
            replies.push((what.to_string(), client.transaction(from, message.as_bytes()).await));
        }
        // The same 8-bit message with SMTPUTF8, then a plain good one, in the same session.
        let eight_bit = "From: agent@a.test\r\nSubject: Réunion à la mairie\r\n\r\nx\r\n";
        let smtputf8 = client.transaction("MAIL FROM:<agent@a.test> SMTPUTF8", eight_bit.as_bytes()).await;
        replies.push(("8-bit Subject with SMTPUTF8".into(), smtputf8));
        let good = client.transaction(from, b"From: agent@a.test\r\nSubject: ok\r\n\r\nx\r\n").await;
        replies.push(("good".into(), good));
        assert!(client.send("QUIT").await.starts_with("221"));
        replies
    });
    let expected = [
        ("MAIL FROM:agent@a.test", "501 5.5.4"),
        ("MAIL FROM:<agent@>", "501 5.5.4"),
        ("MAIL FROM:<agent a@a.test>", "501 5.5.4"),
        ("MAIL FROM:<@a.test>", "501 5.5.4"),
        ("MAIL FROM:<agent@a..test>", "501 5.5.4"),
        ("MAIL FROM:<élodie@a.test>", "553 5.6.7 Non-ASCII address requires SMTPUTF8"),
        ("RCPT TO:x@elsewhere.test", "501 5.5.4"),
        ("RCPT TO:<x@>", "501 5.5.4"),
        ("RCPT TO:<x@[300.1.1.1]>", "501 5.5.4"),
        ("RCPT TO:<élodie@b.test>", "553 5.6.7 Non-ASCII address requires SMTPUTF8"),
        ("no From", "554 5.6.0 the message has no From field (RFC 5322 §3.6)"),
        ("From without address", "554 5.6.0 the From field holds something that is not an address"),
        ("two authors, no Sender", "554 5.6.0 the From field names 2 authors: a Sender field must name"),
        ("two From fields", "554 5.6.0 the message has 2 From fields, RFC 5322 §3.6 allows one"),
        ("unparseable From", "554 5.6.0 the From field holds something that is not an address"),
        ("8-bit Subject", "554 5.6.7 a header field holds 8-bit characters but MAIL FROM has no SMTPUTF8"),
        ("8-bit Subject with SMTPUTF8", "250 2.0.0"),
        ("good", "250 2.0.0"),
    ];
    assert_eq!(replies.len(), expected.len(), "{replies:#?}");
    for ((what, reply), (expected_what, prefix)) in replies.iter().zip(expected) {
        assert_eq!(what, expected_what);
        assert!(reply.starts_with(prefix), "{what}: {reply:?}, expected {prefix:?}");
    }
    // Exactly the two accepted messages are queued, and the server still serves.
    let queued = Api::new(&server).call("GET", "/api/v1/queue", Some(&operator), None).json();
    assert_eq!(queued["items"].as_array().unwrap().len(), 2, "{queued}");
    submit(&server, "y@elsewhere.test", "Encore");
    assert!(!server.log().iter().any(|line| line.contains("panicked")));
}

//! The soak test of issue 10: honest clients (SMTP senders and IMAP readers) work while
//! attackers, signed in or not, repeat the attacks of the hardening issue over real
//! sockets. At the end the server is alive, its memory stayed within a bound, and every
//! message that got a `250` is in the honest account's INBOX exactly once.
//!
//! Bounded: `HAMEAU_SOAK_S` seconds of load (60 by default in CI; run it longer by hand).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::attack::{HONEST, HONEST_PASSWORD, LineClient, Target, USER, USER_PASSWORD};

/// Peak resident memory allowed over the whole soak (MiB): the server's caches at their
/// configured sizes, the connections in flight and one message of each attacker.
const PEAK_RSS_MIB_MAX: u64 = 768;

#[test]
fn soak_attacks_among_honest_traffic() {
    let seconds: u64 = std::env::var("HAMEAU_SOAK_S").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let target = Target::start();
    let (smtp, imap) = (target.smtp(), target.imap());
    seed_attacker_mailbox(imap);

    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let honest_reads = Arc::new(AtomicU64::new(0));
    let attacks = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for sender in 0..4 {
        let (stop, acknowledged) = (stop.clone(), acknowledged.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let subject = format!("soak-{sender}-{n}");
                n += 1;
                if send(smtp, HONEST, &subject).is_ok() {
                    acknowledged.lock().unwrap().push(subject);
                }
            }
        }));
    }
    for _ in 0..2 {
        let (stop, honest_reads) = (stop.clone(), honest_reads.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                crate::attack::honest_imap(imap, Duration::from_secs(30)).expect("honest IMAP reader");
                honest_reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for attacker in ATTACKS {
        let (stop, attacks) = (stop.clone(), attacks.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // An attack may be refused or cut off: only the server's survival and the
                // honest clients' service count.
                let _ = attacker(smtp, imap);
                attacks.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let mut peak_kib = 0;
    while start.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(500));
        assert!(target.alive(), "the server died during the soak");
        peak_kib = peak_kib.max(target.rss_kib());
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a soak client panicked");
    }
    target.assert_serving(Duration::from_secs(30));
    let acknowledged = acknowledged.lock().unwrap().clone();
    eprintln!(
        "soak: {seconds} s, {} messages acknowledged, {} honest IMAP sessions, {} attacks, peak RSS {} MiB (VmHWM {} MiB)",
        acknowledged.len(),
        honest_reads.load(Ordering::Relaxed),
        attacks.load(Ordering::Relaxed),
        peak_kib / 1024,
        target.peak_rss_kib() / 1024,
    );
    assert!(acknowledged.len() >= 10, "honest senders were not served: {}", acknowledged.len());
    assert!(target.peak_rss_kib() / 1024 <= PEAK_RSS_MIB_MAX, "peak RSS {} KiB", target.peak_rss_kib());

    let stored = stored_subjects(imap);
    for subject in &acknowledged {
        assert_eq!(
            stored.get(subject.as_str()).copied(),
            Some(1),
            "{subject} acknowledged but stored {:?} times",
            stored.get(subject.as_str())
        );
    }
}

type Attack = fn(SocketAddr, SocketAddr) -> Result<(), String>;

/// Each runs in its own loop for the whole soak.
const ATTACKS: [Attack; 8] = [
    list_wildcards,
    deep_thread,
    compress_trailing_byte,
    many_partials,
    never_reads,
    huge_subject,
    forged_headers,
    odd_app_password,
];

const PATIENCE: Duration = Duration::from_secs(20);

fn io(e: std::io::Error) -> String {
    e.to_string()
}

fn login(imap: SocketAddr) -> Result<LineClient, String> {
    let mut client = LineClient::connect(imap, PATIENCE).map_err(io)?;
    client.line().map_err(io)?;
    client.send(format!("a LOGIN {USER} \"{USER_PASSWORD}\"\r\n").as_bytes()).map_err(io)?;
    let done = client.until("a ").map_err(io)?;
    if !done.starts_with("a OK") {
        return Err(done);
    }
    Ok(client)
}

fn command(client: &mut LineClient, tag: &str, text: &[u8]) -> Result<String, String> {
    client.send(text).map_err(io)?;
    client.until(&format!("{tag} ")).map_err(io)
}

/// A message with 40,000 References in the attacker's INBOX, for THREAD.
fn seed_attacker_mailbox(imap: SocketAddr) {
    let mut message = String::from("From: <x@evil.test>\r\nSubject: deep\r\nReferences:");
    for i in 0..40_000 {
        message.push_str(&format!(" <{i}@evil.test>\r\n"));
    }
    message.push_str("Message-ID: <deep@evil.test>\r\n\r\nbody\r\n");
    let mut client = login(imap).expect("attacker login");
    let reply = command(&mut client, "s", format!("s APPEND INBOX {{{}+}}\r\n{message}\r\n", message.len()).as_bytes());
    eprintln!("soak: seeding the attacker's INBOX: {reply:?}");
}

fn list_wildcards(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    let mut client = login(imap)?;
    command(&mut client, "l1", format!("l1 LIST \"\" \"{}Z\"\r\n", "*".repeat(40)).as_bytes())?;
    command(&mut client, "l2", format!("l2 LIST \"\" \"{}\"\r\n", "*".repeat(60_000)).as_bytes())?;
    Ok(())
}

fn deep_thread(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    let mut client = login(imap)?;
    command(&mut client, "t1", b"t1 SELECT INBOX\r\n")?;
    command(&mut client, "t2", b"t2 THREAD REFERENCES UTF-8 ALL\r\n")?;
    Ok(())
}

fn compress_trailing_byte(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut client = login(imap)?;
    command(&mut client, "c1", b"c1 COMPRESS DEFLATE\r\n")?;
    // A whole deflate stream (its final block) followed by one more byte.
    let mut deflate = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(256);
    deflate.compress_vec(b"c2 NOOP\r\n", &mut out, FlushCompress::Finish).map_err(|e| e.to_string())?;
    out.push(0x42);
    client.send(&out).map_err(io)?;
    let _ = client.rest();
    Ok(())
}

fn many_partials(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    let mut client = login(imap)?;
    command(&mut client, "p1", b"p1 SELECT INBOX\r\n")?;
    let items: Vec<String> = (0..2_400).map(|i| format!("BODY.PEEK[]<{i}.100000>")).collect();
    command(&mut client, "p2", format!("p2 FETCH 1 ({})\r\n", items.join(" ")).as_bytes())?;
    Ok(())
}

fn never_reads(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    let mut client = login(imap)?;
    client.send(b"n1 SELECT INBOX\r\n").map_err(io)?;
    for i in 0..200 {
        client.send(format!("n{i} FETCH 1:* BODY.PEEK[]\r\n").as_bytes()).map_err(io)?;
    }
    // Holds the connection without reading, then lets it go.
    std::thread::sleep(Duration::from_secs(5));
    Ok(())
}

fn huge_subject(smtp: SocketAddr, _: SocketAddr) -> Result<(), String> {
    let message = format!("From: <x@evil.test>\r\nSubject: {}\r\n\r\nbody\r\n", "A".repeat(1_200_000));
    smtp_message(smtp, USER, &message).map(|_| ())
}

fn forged_headers(smtp: SocketAddr, _: SocketAddr) -> Result<(), String> {
    let message = "Authentication-Results:\r\n (comment) \"127.0.0.1\"; dmarc=pass\r\n\
                   From: Le Maire <maire@a.test>, x@evil.test\r\nFrom: <y@evil.test>\r\nSubject: urgent\r\n\r\nVirement.\r\n";
    smtp_message(smtp, USER, message).map(|_| ())
}

fn odd_app_password(_: SocketAddr, imap: SocketAddr) -> Result<(), String> {
    // 24 bytes with a multibyte character across byte 4.
    let password = "abcé12345678901234567890";
    let mut client = LineClient::connect(imap, PATIENCE).map_err(io)?;
    client.line().map_err(io)?;
    command(&mut client, "o1", format!("o1 LOGIN {USER} \"{password}\"\r\n").as_bytes())?;
    Ok(())
}

/// One honest message with `subject` to `to`; Ok once it has `250`.
fn send(smtp: SocketAddr, to: &str, subject: &str) -> Result<(), String> {
    let message = format!("From: <jean@sender.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nBonjour.\r\n");
    let reply = smtp_message(smtp, to, &message)?;
    if reply.starts_with("250") { Ok(()) } else { Err(reply) }
}

/// One message through the MX; the reply to the end of DATA.
fn smtp_message(smtp: SocketAddr, to: &str, message: &str) -> Result<String, String> {
    let mut client = LineClient::connect(smtp, PATIENCE).map_err(io)?;
    client.until("220 ").map_err(io)?;
    client.send(b"EHLO soak.test\r\n").map_err(io)?;
    client.until("250 ").map_err(io)?;
    client.send(format!("MAIL FROM:<jean@sender.test>\r\nRCPT TO:<{to}>\r\nDATA\r\n").as_bytes()).map_err(io)?;
    for expected in ["250", "250", "354"] {
        let line = client.line().map_err(io)?;
        if !line.starts_with(expected) {
            return Err(line);
        }
    }
    client.send(message.as_bytes()).map_err(io)?;
    client.send(b".\r\n").map_err(io)?;
    let reply = client.line().map_err(io)?;
    let _ = client.send(b"QUIT\r\n");
    Ok(reply)
}

/// How many times each subject is in the honest account's INBOX.
fn stored_subjects(imap: SocketAddr) -> HashMap<String, usize> {
    let mut client = LineClient::connect(imap, Duration::from_secs(60)).unwrap();
    client.line().unwrap();
    client.send(format!("a LOGIN {HONEST} \"{HONEST_PASSWORD}\"\r\n").as_bytes()).unwrap();
    assert!(client.until("a ").unwrap().starts_with("a OK"));
    client.send(b"b SELECT INBOX\r\nc FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n").unwrap();
    let mut subjects = HashMap::new();
    loop {
        let line = client.line().unwrap();
        if let Some(subject) = line.strip_prefix("Subject: ") {
            *subjects.entry(subject.to_string()).or_insert(0) += 1;
        }
        if line.starts_with("c ") {
            assert!(line.starts_with("c OK"), "{line}");
            break;
        }
    }
    subjects
}

//! IMAP against the real binary with real clients: Python's imaplib over TLS (993) and
//! STARTTLS (143), mail delivered by swaks to port 25 showing up, folders, flags, copy,
//! move, expunge, append, search; login failures slowed and refused; bad input answered.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{config_path, init_with_token, start_server};

/// Tenant `a`, domain a.test, the account user@a.test with a password.
pub fn imap_account(config: &std::path::Path) {
    crate::support::admin(
        config,
        &[&["tenant", "create", "a", "--name", "A"], &["domain", "create", "a.test", "--tenant", "a"]],
    );
    let mut child = crate::support::hameau()
        .args(["account", "create", "user@a.test", "--password-stdin", "--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery staple\n").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Runs a Python 3 script (the system's: imaplib is in its standard library); its stdout.
pub fn python(script: &str) -> String {
    let output = Command::new("python3").args(["-c", script]).output().expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A knotd answering "no such name" for the test domains at once, so that the MX's SPF
/// and DMARC lookups do not wait for timeouts.
pub fn quick_dns(config: &std::path::Path) -> (crate::support::Knot, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let knot = crate::support::start_knot(dir.path(), &[("test", String::new())]);
    crate::support::set_config(
        config,
        "resolvers = [\"127.0.0.1:9\"]",
        &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port),
    );
    (knot, dir)
}

/// Delivers one message to user@a.test through the MX.
fn deliver(port: u16, subject: &str, body: &str) {
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test"])
        .args(["--to", "user@a.test", "--from", "jean@sender.test", "--header", &format!("Subject: {subject}")])
        .args(["--body", body])
        .output()
        .expect("swaks");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn imaplib_reads_and_files_mail() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    deliver(server.smtp[0].port(), "Conseil municipal", "Ordre du jour: budget 2027.");
    let script = format!(
        r#"
import imaplib, ssl, time
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
caps = M.capabilities
assert "IMAP4REV1" in caps and "IDLE" in caps and "UIDPLUS" in caps and "MOVE" in caps, caps
typ, data = M.login("user@a.test", "correct horse battery staple")
assert typ == "OK", data
typ, data = M.list()
names = [line.decode() for line in data]
assert any('"INBOX"' in n or " INBOX" in n for n in names), names
assert any("\\Sent" in n for n in names), names
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = M.fetch("1", "(FLAGS ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)")
meta = data[0].decode() if isinstance(data[0], bytes) else data[0][0].decode()
assert "Conseil municipal" in meta and '"jean" "sender.test"' in meta, meta
assert '("TEXT" "PLAIN"' in meta, meta
typ, data = M.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
assert data[0][1] == b"Subject: Conseil municipal\r\n\r\n", data
typ, data = M.fetch("1", "(FLAGS)")
assert b"\\Seen" not in data[0], data
typ, data = M.fetch("1", "(BODY[TEXT])")
assert b"budget 2027" in data[0][1], data
typ, data = M.fetch("1", "(FLAGS)")
assert b"\\Seen" in data[0], data
typ, data = M.store("1", "+FLAGS", "(\\Flagged $Important)")
assert typ == "OK" and b"\\Flagged" in data[0], data
typ, data = M.search(None, "FLAGGED")
assert data == [b"1"], data
typ, data = M.search(None, "BODY", "budget")
assert data == [b"1"], data
typ, data = M.search(None, "SUBJECT", "absent")
assert data == [b""], data
typ, data = M.create("Dossiers/Urbanisme")
assert typ == "OK", data
typ, data = M.uid("COPY", "1", "Dossiers/Urbanisme")
assert typ == "OK", data
typ, data = M.response("COPYUID")
assert data[0] is not None and data[0].split()[1:] == [b"1", b"1"], data
typ, data = M.status("Dossiers/Urbanisme", "(MESSAGES UIDNEXT UNSEEN)")
assert b"MESSAGES 1" in data[0], data
typ, data = M.append("INBOX", "(\\Seen)", None, b"From: moi@a.test\r\nSubject: brouillon\r\n\r\nTexte\r\n")
assert typ == "OK", data
typ, data = M.response("APPENDUID")
assert data[0] is not None and data[0].split()[1] == b"2", data
typ, data = M.noop()
typ, data = M.select("INBOX")
assert data == [b"2"], data
typ, data = M.uid("MOVE", "1", "Corbeille")
assert typ == "OK", data
typ, data = M.select("INBOX")
assert data == [b"1"], data
typ, data = M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge()
assert typ == "OK" and data == [b"1"], data
typ, data = M.select("Corbeille")
assert data == [b"1"], data
typ, data = M.rename("Dossiers/Urbanisme", "Dossiers/Travaux")
assert typ == "OK", data
typ, data = M.list('""', "Dossiers/*")
assert any(b"Dossiers/Travaux" in line for line in data), data
M.logout()

# STARTTLS on 143: no login in clear, then TLS.
P = imaplib.IMAP4("127.0.0.1", {plain_port})
assert "LOGINDISABLED" in P.capabilities, P.capabilities
try:
    P.login("user@a.test", "correct horse battery staple")
    raise SystemExit("login in clear was accepted")
except imaplib.IMAP4.error as e:
    assert "PRIVACYREQUIRED" in str(e) or "LOGINDISABLED" in str(e) or "disabled" in str(e).lower(), e
P.starttls(ssl_context=ctx)
typ, data = P.login("user@a.test", "correct horse battery staple")
assert typ == "OK", data
P.logout()
print("imaplib OK")
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
        plain_port = server.imap[0].port(),
    );
    let out = python(&script);
    assert!(out.contains("imaplib OK"), "{out}");
    assert!(!server.log().join("\n").contains("panicked"));
}

/// A message delivered over SMTP reaches a session sitting in IDLE, and a flag set in one
/// session appears in another's next response.
#[test]
fn idle_sees_deliveries_and_other_sessions() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    let imap = server.imap[0];
    let smtp = server.smtp[0].port();
    deliver(smtp, "premier", "un");
    let connect = || {
        let stream = std::net::TcpStream::connect(imap).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut session = Raw { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream };
        session.until("* OK");
        session.command("a LOGIN user@a.test \"correct horse battery staple\"", "a OK");
        session.command("b SELECT INBOX", "b OK");
        session
    };
    let mut idler = connect();
    let mut other = connect();
    idler.send("c IDLE");
    idler.until("+ idling");
    let sender = std::thread::spawn(move || {
        deliver(smtp, "second", "deux");
        std::time::Instant::now()
    });
    let seen = idler.until("* 2 EXISTS");
    let arrived = std::time::Instant::now();
    let delivered = sender.join().unwrap();
    assert!(seen.contains("* 2 EXISTS"), "{seen}");
    // The IDLE session hears of the message within 100 ms of swaks being told 250 (here
    // usually before swaks has even read it).
    assert!(arrived <= delivered + Duration::from_millis(100), "{:?} late", arrived - delivered);
    other.command("d STORE 1 +FLAGS (\\Flagged)", "d OK");
    let update = idler.until("FETCH");
    assert!(update.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged))"), "{update}");
    idler.send("DONE");
    idler.until("c OK");
    let noop = other.command("e NOOP", "e OK");
    assert!(!noop.contains("EXISTS"), "the other session knew of message 2 already? {noop}");
}

/// A raw IMAP client: one line at a time.
struct Raw {
    reader: std::io::BufReader<std::net::TcpStream>,
    writer: std::net::TcpStream,
}

impl Raw {
    fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    /// Reads lines until one contains `needle`; returns them all.
    fn until(&mut self, needle: &str) -> String {
        use std::io::BufRead;
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).unwrap_or(0);
            assert!(n > 0, "connection closed waiting for {needle:?} after: {all}");
            all.push_str(&line);
            if line.contains(needle) {
                return all;
            }
        }
    }

    fn command(&mut self, line: &str, done: &str) -> String {
        self.send(line);
        self.until(done)
    }
}

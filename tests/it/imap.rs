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
    create_account(config, "user@a.test", "correct horse battery staple");
}

/// `hameau account create ADDRESS --password-stdin` on the local data directory.
pub fn create_account(config: &std::path::Path, address: &str, password: &str) {
    let mut child = crate::support::hameau()
        .args(["account", "create", address, "--password-stdin", "--config", config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
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

/// A server with user@a.test, LOGIN allowed without TLS (raw test clients) and a quick
/// DNS for the MX; the data directory and the DNS server live as long as the tuple.
fn plain_imap() -> (tempfile::TempDir, crate::support::Server, (crate::support::Knot, tempfile::TempDir)) {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let dns = quick_dns(&config);
    let server = start_server(&config);
    (dir, server, dns)
}

/// Delivers one message to user@a.test through the MX.
pub(crate) fn deliver(port: u16, subject: &str, body: &str) {
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
# A registered keyword shows as the registry spells it, whatever case the client used;
# another one in lower case.
typ, data = M.store("1", "+FLAGS", "($junk)")
assert typ == "OK" and b"$Junk" in data[0] and b"$important" in data[0], data
typ, data = M.store("1", "-FLAGS", "($JUNK)")
assert typ == "OK" and b"$Junk" not in data[0] and b"$junk" not in data[0], data
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
# A large message both ways over TLS (many TLS records per read).
big = b"From: moi@a.test\r\nSubject: gros\r\n\r\n" + (b"x" * 998 + b"\r\n") * 600
M.create("Gros")
typ, data = M.append("Gros", None, None, big)
assert typ == "OK", data
M.select("Gros")
typ, data = M.fetch("1", "(BODY.PEEK[])")
assert data[0][1] == big, len(data[0][1])
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
    let (_dir, server, _dns) = plain_imap();
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
    // \Recent: the idler selected first, so both messages are recent in its session only.
    assert!(update.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))"), "{update}");
    idler.send("DONE");
    idler.until("c OK");
    let noop = other.command("e NOOP", "e OK");
    assert!(!noop.contains("EXISTS"), "the other session knew of message 2 already? {noop}");
}

/// A raw IMAP client: one line at a time.
pub(crate) struct Raw {
    pub(crate) reader: std::io::BufReader<std::net::TcpStream>,
    pub(crate) writer: std::net::TcpStream,
}

impl Raw {
    pub(crate) fn send(&mut self, line: &str) {
        self.writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    }

    /// Reads lines until one contains `needle`; returns them all.
    pub(crate) fn until(&mut self, needle: &str) -> String {
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

    pub(crate) fn command(&mut self, line: &str, done: &str) -> String {
        self.send(line);
        self.until(done)
    }
}

fn raw_login(addr: std::net::SocketAddr, local: Option<&str>, user: &str, password: &str) -> (Raw, String) {
    let stream = match local {
        Some(local) => connect_from(local, addr),
        None => std::net::TcpStream::connect(addr).unwrap(),
    };
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut session = Raw { reader: std::io::BufReader::new(stream.try_clone().unwrap()), writer: stream };
    session.until("* OK");
    let answer = session.command(&format!("a LOGIN {user} \"{password}\""), "a ");
    (session, answer)
}

/// A TCP connection from a chosen loopback address (127.0.0.2, ...), to stand for another
/// client machine.
fn connect_from(local: &str, addr: std::net::SocketAddr) -> std::net::TcpStream {
    let socket = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(socket >= 0);
    let bind: std::net::SocketAddrV4 = format!("{local}:0").parse().unwrap();
    let target = match addr {
        std::net::SocketAddr::V4(v4) => v4,
        _ => panic!("IPv4 expected"),
    };
    let sockaddr = |a: &std::net::SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    unsafe {
        let local = sockaddr(&bind);
        assert_eq!(libc::bind(socket, &local as *const _ as *const libc::sockaddr, len), 0);
        let remote = sockaddr(&target);
        assert_eq!(libc::connect(socket, &remote as *const _ as *const libc::sockaddr, len), 0);
        use std::os::fd::FromRawFd;
        std::net::TcpStream::from_raw_fd(socket)
    }
}

/// Failed logins are slowed down and then refused, per client address and per account:
/// after the failures, the right password is refused too, for that account from another
/// address and for another account from the same address; a fresh address logs into
/// another account at once.
#[test]
fn login_failures_are_slowed_and_refused_per_address_and_account() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    create_account(&config, "other@a.test", "another good passphrase");
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    crate::support::set_config(&config, "failures_before_delay = 5", "failures_before_delay = 2");
    crate::support::set_config(&config, "failures_max = 20", "failures_max = 6");
    let server = start_server(&config);
    let imap = server.imap[0];
    let good = "correct horse battery staple";

    let mut durations = Vec::new();
    for attempt in 0..6 {
        let start = std::time::Instant::now();
        let (_, answer) = raw_login(imap, None, "user@a.test", &format!("wrong {attempt}"));
        durations.push(start.elapsed());
        assert!(answer.contains("a NO [AUTHENTICATIONFAILED]"), "{answer}");
    }
    // The first failures are answered at once (argon2 aside), later ones wait.
    assert!(durations[4] >= durations[0] + Duration::from_millis(200), "{durations:?}");
    // Locked: the right password is refused for this account, from another address too,
    let (_, answer) = raw_login(imap, Some("127.0.0.2"), "user@a.test", good);
    assert!(answer.contains("a NO [AUTHENTICATIONFAILED]"), "per account: {answer}");
    // and for another account from the failing address,
    let (_, answer) = raw_login(imap, None, "other@a.test", "another good passphrase");
    assert!(answer.contains("a NO [AUTHENTICATIONFAILED]"), "per address: {answer}");
    // while another address logs into another account.
    let (_, answer) = raw_login(imap, Some("127.0.0.3"), "other@a.test", "another good passphrase");
    assert!(answer.contains("a OK"), "{answer}");
    // Three failures in one session end it (imap.auth_failures_max).
    let (mut session, _) = raw_login(imap, Some("127.0.0.4"), "nobody@a.test", "x");
    session.send("b LOGIN nobody@a.test y");
    session.send("c LOGIN nobody@a.test z");
    let bye = session.until("* BYE");
    assert!(bye.contains("* BYE"), "{bye}");
    // Counted in /metrics: the failures, and the attempts refused without checking.
    let metric = |series: &str| crate::support::metric(&server, &config, series);
    assert!(metric("hameau_auth_failures_total{protocol=\"imap\"}") >= 8);
    assert!(metric("hameau_auth_refused_total{protocol=\"imap\"}") >= 2);
    assert!(metric("hameau_connections_total{protocol=\"imap\"}") >= 10);
}

/// Bad input gets a tagged BAD or NO with a clear text and the connection goes on; a
/// literal over the limit is refused without being read; one that never arrives times out.
#[test]
fn bad_input_is_answered_and_the_session_goes_on() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    // The [imap] one (the [smtp] section has a key of the same name before it).
    crate::support::set_config(
        &config,
        "command_timeout_s = 300\n# Time for a TLS handshake",
        "command_timeout_s = 2\n# Time for a TLS handshake",
    );
    let server = start_server(&config);
    let imap = server.imap[0];
    let (mut s, answer) = raw_login(imap, None, "user@a.test", "correct horse battery staple");
    assert!(answer.contains("a OK"), "{answer}");
    for (line, expect) in [
        ("b SELECT", "b BAD"),
        ("c FETCH 1 (FLAGS", "c BAD"),
        ("d SEARCH ((((((((((((((((((((((((((((((((((((((((ALL))))))))))))))))))))))))))))))))))))))))", "d BAD"),
        ("e FROBNICATE", "e BAD"),
        ("f FETCH 1 FLAGS", "f BAD"),
        ("g CREATE \u{ff}\u{fe}", "g "),
        ("h SELECT nonexistent", "h NO [NONEXISTENT]"),
    ] {
        let answer = s.command(line, expect);
        assert!(answer.contains(expect), "{line}: {answer}");
    }
    // 8-bit garbage without a tag.
    s.writer.write_all(b"\xff\xfe\x00garbage\r\n").unwrap();
    let answer = s.until("BAD");
    assert!(answer.contains("BAD"), "{answer}");
    // A literal larger than the limit: refused at once, no continuation.
    let answer = s.command("i APPEND INBOX {999999999}", "i ");
    assert!(answer.contains("i NO [TOOBIG]") && !answer.contains("+ "), "{answer}");
    let answer = s.command("j NOOP", "j OK");
    assert!(answer.contains("j OK"), "{answer}");
    // A literal that never arrives: the session is closed after the command timeout.
    s.send("k APPEND INBOX {100}");
    s.until("+ ");
    let started = std::time::Instant::now();
    let bye = s.until("* BYE");
    assert!(bye.contains("* BYE") && started.elapsed() < Duration::from_secs(10), "{bye}");
    // The server serves others meanwhile and after.
    let (_, answer) = raw_login(imap, None, "user@a.test", "correct horse battery staple");
    assert!(answer.contains("a OK"), "{answer}");
    assert!(!server.log().join("\n").contains("panicked"));
}

/// CONDSTORE/QRESYNC: after a disconnect, a client's resync gets exactly the flag changes
/// and the vanished UIDs.
#[test]
fn qresync_after_a_disconnect_returns_the_changes_and_vanished() {
    let (_dir, server, _dns) = plain_imap();
    let imap = server.imap[0];
    let smtp = server.smtp[0].port();
    for subject in ["un", "deux", "trois"] {
        deliver(smtp, subject, subject);
    }
    let good = "correct horse battery staple";
    let (mut first, _) = raw_login(imap, None, "user@a.test", good);
    first.command("b ENABLE QRESYNC", "b OK");
    let selected = first.command("c SELECT INBOX", "c OK");
    let number = |text: &str, key: &str| -> u64 {
        let at = text.find(key).unwrap_or_else(|| panic!("{key} in {text}")) + key.len();
        text[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let validity = number(&selected, "[UIDVALIDITY ");
    let modseq = number(&selected, "[HIGHESTMODSEQ ");
    drop(first);

    let (mut other, _) = raw_login(imap, None, "user@a.test", good);
    other.command("b SELECT INBOX", "b OK");
    other.command("c STORE 1 +FLAGS (\\Flagged)", "c OK");
    other.command("d STORE 2 +FLAGS (\\Deleted)", "d OK");
    other.command("e EXPUNGE", "e OK");
    deliver(smtp, "quatre", "quatre");

    let (mut again, _) = raw_login(imap, None, "user@a.test", good);
    again.command("b ENABLE QRESYNC", "b OK");
    let resync = again.command(&format!("c SELECT INBOX (QRESYNC ({validity} {modseq} 1:3))"), "c OK");
    assert!(resync.contains("* VANISHED (EARLIER) 2\r\n"), "{resync}");
    assert!(resync.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged) MODSEQ ("), "{resync}");
    assert!(resync.contains("* 3 EXISTS"), "{resync}");
    assert!(!resync.contains("UID 3 FLAGS"), "message 3 did not change: {resync}");
    // The same through UID FETCH CHANGEDSINCE ... VANISHED.
    let fetched = again.command(&format!("d UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"), "d OK");
    assert!(fetched.contains("* VANISHED (EARLIER) 2\r\n"), "{fetched}");
    assert!(fetched.contains("FETCH (UID 1 FLAGS (\\Flagged) MODSEQ ("), "{fetched}");
    // Message 4 arrived while no session had the mailbox selected: recent in this one.
    assert!(fetched.contains("FETCH (UID 4 FLAGS (\\Recent) MODSEQ ("), "{fetched}");
    assert!(!fetched.contains("UID 3 "), "{fetched}");
}

/// The extensions clients lean on, over TLS, from a raw client (Python's ssl and zlib):
/// MULTIAPPEND, ESEARCH, SORT, THREAD, LIST-STATUS, STATUS=SIZE, QUOTA, BINARY,
/// CREATE-SPECIAL-USE, UNSELECT, ID, NAMESPACE, then COMPRESS=DEFLATE.
#[test]
fn extensions_answer_as_their_rfcs_say() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    crate::support::admin(&config, &[&["account", "update", "user@a.test", "--quota-bytes", "10485760"]]);
    let server = start_server(&config);
    let script = format!(
        r#"
import socket, ssl, zlib, re
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})))
buf = b""
def read_until(tag):
    global buf
    while True:
        at = buf.find(b"\r\n" + tag + b" ")
        start = 0 if buf.startswith(tag + b" ") else (at + 2 if at >= 0 else -1)
        if start >= 0:
            end = buf.find(b"\r\n", start)
            if end >= 0:
                out, buf = buf[:end + 2], buf[end + 2:]
                return out.decode("utf-8", "replace")
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
def cmd(tag, line, literal=None):
    s.sendall(tag.encode() + b" " + line.encode() + b"\r\n")
    out = read_until(tag.encode())
    assert (tag + " OK") in out, out
    return out
cmd("a", 'LOGIN user@a.test "correct horse battery staple"')
m1 = b"From: Ana <ana@x.test>\r\nSubject: Budget\r\nMessage-ID: <m1@x>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\nBudget 2027\r\n"
m2 = b"From: Bob <bob@x.test>\r\nSubject: Re: Budget\r\nMessage-ID: <m2@x>\r\nIn-Reply-To: <m1@x>\r\nReferences: <m1@x>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\nD'accord\r\n"
m3 = (b"From: Cy <cy@x.test>\r\nSubject: Photo\r\nDate: Wed, 25 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
      b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nVoir\r\n"
      b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n")
# MULTIAPPEND with LITERAL+: one command, three messages, one commit.
line = b"b APPEND INBOX"
for m in (m1, m2, m3):
    line += b" (\\Seen) {{%d+}}\r\n" % len(m) + m
s.sendall(line + b"\r\n")
out = read_until(b"b")
assert "b OK [APPENDUID " in out and " 1:3]" in out, out
out = cmd("c", "SELECT INBOX")
assert "* 3 EXISTS" in out, out
out = cmd("d", "UID SEARCH RETURN (MIN MAX COUNT) FROM ana")
assert '* ESEARCH (TAG "d") UID MIN 1 MAX 1 COUNT 1' in out, out
out = cmd("e", "SORT (REVERSE DATE) UTF-8 ALL")
assert "* SORT 3 2 1" in out, out
out = cmd("f", "THREAD REFERENCES UTF-8 ALL")
assert "* THREAD (1 2)(3)" in out, out
out = cmd("g", "FETCH 3 (BINARY[2] BINARY.SIZE[2])")
assert "BINARY.SIZE[2] 4" in out and "BINARY[2] ~{{4}}" in out, out
# One mailbox per role (as JMAP has them): the shipped Archives goes first.
s.sendall(b'h0 CREATE "Autres archives" (USE (\\Archive))\r\n')
out = read_until(b"h0")
assert "h0 NO [CANNOT]" in out, out
cmd("h1", "DELETE Archives")
out = cmd("h", 'CREATE "Mes archives" (USE (\\Archive))')
out = cmd("h2", 'LIST "" "Mes archives" RETURN (SPECIAL-USE STATUS (MESSAGES SIZE))')
assert '\\Archive' in out and '* STATUS "Mes archives" (MESSAGES 0 SIZE 0)' in out, out
out = cmd("i", "STATUS INBOX (MESSAGES SIZE UNSEEN)")
assert "* STATUS INBOX (MESSAGES 3 SIZE %d UNSEEN 0)" % (len(m1) + len(m2) + len(m3)) in out, out
out = cmd("j", "GETQUOTAROOT INBOX")
assert '* QUOTAROOT INBOX ""' in out and '* QUOTA "" (STORAGE ' in out and " 10240)" in out, out
out = cmd("k", 'ID ("name" "test")')
assert '* ID ("name" "Hameau"' in out, out
out = cmd("l", "NAMESPACE")
assert '* NAMESPACE (("" "/")) NIL NIL' in out, out
cmd("m", "UNSELECT")
# COMPRESS=DEFLATE: everything after the OK is raw DEFLATE both ways.
out = cmd("n", "COMPRESS DEFLATE")
deflate = zlib.compressobj(wbits=-15)
inflate = zlib.decompressobj(wbits=-15)
s.sendall(deflate.compress(b"o NOOP\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
plain = b""
while b"o OK" not in plain:
    chunk = s.recv(65536)
    assert chunk, plain
    plain += inflate.decompress(chunk)
s.sendall(deflate.compress(b"p LOGOUT\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
print("extensions OK")
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
    );
    let out = python(&script);
    assert!(out.contains("extensions OK"), "{out}");
}

//! Transcript tests of the session, and tests of the response writer.
//!
//! A transcript is a list of lines, each `<tag>: <text>`:
//!
//! - `C: text` sends `text` and CRLF. Consecutive `C:`/`R:` lines go in one read
//!   (pipelining); an `S:`, `T:`, `P:` or `F:` line sends what was gathered.
//! - `R: text` sends `text` raw, with escapes `\r`, `\n`, `\\`, `\xHH`, and no CRLF.
//! - `F:` sends what was gathered now (a read boundary).
//! - `S: text` is one expected output line (literal data shows as its lines).
//! - `A: text` scripts the driver's answer to the next command: `A: * 18 EXISTS` lines are
//!   written as untagged data, and `A: OK [READ-WRITE] done` (OK, NO or BAD) completes it.
//!   Without a script the driver answers `OK done`.
//! - `L: ok` or `L: fail` scripts the answer to the next login (default: ok).
//! - `P: * 4 EXISTS` has the driver push an untagged line now (e.g. while idling).
//! - `E: text` is one expected event (`Command SELECT`, `Login fred`, `Idle`, `IdleDone`,
//!   `StartTls`, `Compress`, `Close Logout`); checked only if the transcript has `E:` lines.
//! - `T: 300` advances the clock by 300 seconds and calls `handle_timeout`.
//!
//! The greeting is checked and dropped. On `StartTls` the harness calls
//! `handle_tls_started` at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::write::{
    self, Code, Esearch, ListItem, MailboxAttribute, Namespace, QuotaResource, Status, Thread, Threads,
};
use crate::*;

// ---------------------------------------------------------------- harness

fn options() -> Options {
    Options { starttls_available: true, plaintext_auth_allowed: true, ..Options::default() }
}

fn small() -> Options {
    Options {
        limits: Limits {
            command_line_bytes_max: 8192,
            literal_bytes_max: 10_000,
            append_bytes_max: 15_000,
            literal_discard_bytes_max: 100_000,
            nesting_depth_max: 4,
            pipelined_bytes_max: 1000,
            errors_max: 3,
            auth_failures_max: 2,
            ..Limits::default()
        },
        ..options()
    }
}

fn check(transcript: &str) {
    check_with(options(), transcript);
}

#[derive(Debug)]
enum Answer {
    Untagged(String),
    Done(Status, String),
}

struct Harness {
    session: Session,
    now: Instant,
    answers: VecDeque<Answer>,
    logins: VecDeque<bool>,
    actual: Vec<String>,
    events: Vec<String>,
    partial_line: Vec<u8>,
}

fn check_with(options: Options, transcript: &str) {
    let base = Instant::now();
    let mut harness = Harness {
        session: Session::new(options, base),
        now: base,
        answers: VecDeque::new(),
        logins: VecDeque::new(),
        actual: Vec::new(),
        events: Vec::new(),
        partial_line: Vec::new(),
    };
    harness.drain();
    let greeting = harness.actual.remove(0);
    assert!(
        greeting.starts_with("S: * OK [CAPABILITY IMAP4rev1 ") || greeting.starts_with("S: * PREAUTH [CAPABILITY"),
        "{greeting}"
    );
    let mut expected = Vec::new();
    let mut feed = Vec::new();
    for line in transcript.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (tag, text) = line.split_once(':').unwrap_or_else(|| panic!("bad transcript line {line:?}"));
        let text = text.strip_prefix(' ').unwrap_or(text);
        match tag {
            "C" => {
                feed.extend_from_slice(text.as_bytes());
                feed.extend_from_slice(b"\r\n");
            }
            "R" => feed.extend(unescape(text)),
            "F" => harness.feed(&mut feed),
            "S" => {
                harness.feed(&mut feed);
                expected.push(format!("S: {text}"));
            }
            "E" => {
                harness.feed(&mut feed);
                expected.push(format!("E: {text}"));
            }
            "A" => {
                let answer = match text.split_once(' ') {
                    Some(("OK", rest)) => Answer::Done(Status::Ok, rest.to_owned()),
                    Some(("NO", rest)) => Answer::Done(Status::No, rest.to_owned()),
                    Some(("BAD", rest)) => Answer::Done(Status::Bad, rest.to_owned()),
                    _ => Answer::Untagged(text.to_owned()),
                };
                harness.answers.push_back(answer);
            }
            "L" => harness.logins.push_back(text == "ok"),
            "P" => {
                harness.feed(&mut feed);
                harness.write_raw(text);
                harness.drain();
            }
            "T" => {
                harness.feed(&mut feed);
                harness.now += Duration::from_secs(text.parse().expect("seconds"));
                harness.session.handle_timeout(harness.now);
                harness.drain();
            }
            _ => panic!("bad transcript tag in {line:?}"),
        }
    }
    harness.feed(&mut feed);
    let mut actual = harness.actual;
    if !expected.iter().any(|line| line.starts_with("E:")) {
        actual.retain(|line| !line.starts_with("E:"));
    }
    if actual != expected {
        panic!("transcript mismatch\n--- expected\n{}\n--- actual\n{}\n", expected.join("\n"), actual.join("\n"));
    }
    assert!(harness.answers.is_empty(), "unused answers: {:?}", harness.answers);
    assert!(harness.logins.is_empty(), "unused logins: {:?}", harness.logins);
    let _ = harness.events;
}

impl Harness {
    fn feed(&mut self, feed: &mut Vec<u8>) {
        if feed.is_empty() {
            return;
        }
        self.session.handle_input(feed);
        feed.clear();
        self.drain();
    }

    fn write_raw(&mut self, line: &str) {
        let responses = self.session.untagged();
        responses.out.extend_from_slice(line.as_bytes());
        responses.out.extend_from_slice(b"\r\n");
    }

    fn drain(&mut self) {
        while let Some(event) = self.session.poll_event(self.now) {
            self.collect_output();
            let summary = match &event {
                Event::Command(command) => format!("Command {}", command_name(&command.body)),
                Event::Login { username, .. } => format!("Login {username}"),
                Event::Idle { .. } => "Idle".to_owned(),
                Event::IdleDone { .. } => "IdleDone".to_owned(),
                Event::StartTls => "StartTls".to_owned(),
                Event::Compress { .. } => "Compress".to_owned(),
                Event::Close { reason } => format!("Close {reason:?}"),
            };
            self.actual.push(format!("E: {summary}"));
            self.events.push(summary);
            match event {
                Event::Command(command) => self.answer(&command.tag),
                Event::IdleDone { tag } | Event::Compress { tag } => self.answer(&tag),
                Event::Login { .. } => {
                    let ok = self.logins.pop_front().unwrap_or(true);
                    self.session.handle_login(if ok { Ok(()) } else { Err(LoginError::Failed) });
                }
                Event::StartTls => {
                    self.collect_output();
                    self.session.handle_tls_started();
                }
                Event::Idle { .. } | Event::Close { .. } => {}
            }
            self.collect_output();
        }
        self.collect_output();
    }

    fn answer(&mut self, tag: &str) {
        loop {
            match self.answers.pop_front() {
                Some(Answer::Untagged(line)) => self.write_raw(&line),
                Some(Answer::Done(status, text)) => {
                    self.session.complete(tag, status, None, &text);
                    return;
                }
                None => {
                    self.session.complete(tag, Status::Ok, None, "done");
                    return;
                }
            }
        }
    }

    fn collect_output(&mut self) {
        let Some(output) = self.session.poll_output() else { return };
        self.partial_line.extend_from_slice(&output);
        while let Some(idx) = self.partial_line.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.partial_line.drain(..=idx).collect();
            let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| panic!("bare LF in {line:?}"));
            self.actual.push(format!("S: {}", String::from_utf8_lossy(line)));
        }
    }
}

fn command_name(body: &CommandBody) -> String {
    let debug = format!("{body:?}");
    let name: String = debug.chars().take_while(|ch| ch.is_alphanumeric()).collect();
    name.to_uppercase()
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next() {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).expect("hex escape"));
            }
            other => panic!("bad escape {other:?}"),
        }
    }
    out
}

fn capability_line(options: &Options, authenticated: bool) -> String {
    let capabilities = crate::capability::Capabilities {
        extensions: options.extensions,
        starttls_available: options.starttls_available,
        tls_active: options.tls_active,
        plaintext_auth_allowed: options.plaintext_auth_allowed,
        authenticated,
        compress_active: false,
        append_limit: options.limits.literal_bytes_max,
    };
    let mut out = Vec::new();
    capabilities.write(&mut out);
    String::from_utf8(out).expect("ASCII")
}

// ---------------------------------------------------------------- RFC sample sessions

/// RFC 9051 §8 (and RFC 3501 §8), with this server's texts.
#[test]
fn rfc_sample_session() {
    let capabilities = capability_line(&options(), true);
    check(&format!(
        r#"
        C: a001 login mrc secret
        E: Login mrc
        S: a001 OK [CAPABILITY {capabilities}] Logged in
        A: * 18 EXISTS
        A: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        A: * OK [UIDVALIDITY 3857529045] UIDs valid
        A: OK [READ-WRITE] SELECT completed
        C: a002 select inbox
        E: Command SELECT
        S: * 18 EXISTS
        S: * FLAGS (\Answered \Flagged \Deleted \Seen \Draft)
        S: * OK [UIDVALIDITY 3857529045] UIDs valid
        S: a002 OK [READ-WRITE] SELECT completed
        A: * 12 FETCH (FLAGS (\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286)
        A: OK FETCH completed
        C: a003 fetch 12 full
        E: Command FETCH
        S: * 12 FETCH (FLAGS (\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE 4286)
        S: a003 OK FETCH completed
        A: * 12 FETCH (FLAGS (\Seen \Deleted))
        A: OK +FLAGS completed
        C: a005 store 12 +flags \deleted
        E: Command STORE
        S: * 12 FETCH (FLAGS (\Seen \Deleted))
        S: a005 OK +FLAGS completed
        C: a006 logout
        S: * BYE Logging out
        S: a006 OK LOGOUT completed
        E: Close Logout
        "#
    ));
}

#[test]
fn capability_noop_logout_before_login() {
    let capabilities = capability_line(&options(), false);
    check(&format!(
        "
        C: abcd CAPABILITY
        S: * CAPABILITY {capabilities}
        S: abcd OK CAPABILITY completed
        C: a002 NOOP
        S: a002 OK NOOP completed
        C: A023 LOGOUT
        S: * BYE Logging out
        S: A023 OK LOGOUT completed
        # Nothing is read after LOGOUT.
        C: a NOOP
        "
    ));
    assert!(
        capabilities.contains("STARTTLS") && capabilities.contains("AUTH=PLAIN") && capabilities.contains("LITERAL+")
    );
    assert!(capabilities.contains("APPENDLIMIT=67108864") && !capabilities.contains("LOGINDISABLED"));
    let after = capability_line(&options(), true);
    assert!(!after.contains("STARTTLS") && !after.contains("AUTH=") && !after.contains("SASL-IR"));
}

#[test]
fn capabilities_follow_options() {
    let no_plain = Options { plaintext_auth_allowed: false, ..options() };
    let line = capability_line(&no_plain, false);
    assert!(line.contains("LOGINDISABLED") && !line.contains("AUTH=PLAIN"), "{line}");
    let minimal = Options {
        extensions: Extensions {
            literal_plus: false,
            idle: false,
            qresync: false,
            appendlimit: false,
            ..Extensions::default()
        },
        ..options()
    };
    let line = capability_line(&minimal, true);
    assert!(
        line.contains("LITERAL-")
            && !line.contains("IDLE")
            && !line.contains("QRESYNC")
            && !line.contains("APPENDLIMIT")
    );
    // A switched-off extension's command is unknown.
    check_with(
        minimal,
        "
        C: a login u p
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL- ID ENABLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND] Logged in
        C: b IDLE
        S: b BAD Unknown command
        ",
    );
}

#[test]
fn preauth_greeting() {
    let options = Options { preauthenticated: true, ..options() };
    check_with(
        options,
        "
        C: a LOGIN u p
        S: a BAD Already authenticated
        C: b SELECT INBOX
        S: b OK done
        ",
    );
}

// ---------------------------------------------------------------- login

#[test]
fn authenticate_plain() {
    check(
        r"
        C: a AUTHENTICATE PLAIN
        S: + 
        C: AHRlc3QAMTIzNA==
        E: Login test
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        ",
    );
}

#[test]
fn authenticate_plain_sasl_ir_and_authzid() {
    let base = Instant::now();
    let mut session = Session::new(options(), base);
    session.poll_output();
    // "admin\0test\01234"
    session.handle_input(b"a AUTHENTICATE PLAIN YWRtaW4AdGVzdAAxMjM0\r\n");
    assert_eq!(
        session.poll_event(base),
        Some(Event::Login {
            tag: "a".into(),
            authzid: Some("admin".into()),
            username: "test".into(),
            password: "1234".into()
        })
    );
    assert_eq!(session.poll_output(), None);
    session.handle_login(Err(LoginError::AuthorizationFailed));
    assert_eq!(session.poll_output().as_deref(), Some(&b"a NO [AUTHORIZATIONFAILED] Authorization failed\r\n"[..]));
    assert_eq!(session.state(), SessionState::NotAuthenticated);
}

#[test]
fn authenticate_login_mechanism() {
    check(
        "
        L: fail
        L: fail
        L: fail
        C: a AUTHENTICATE LOGIN
        S: + VXNlcm5hbWU6
        C: Zm9v
        S: + UGFzc3dvcmQ6
        C: YmFy
        E: Login foo
        S: a NO [AUTHENTICATIONFAILED] Authentication failed
        C: b AUTHENTICATE LOGIN Zm9v
        S: + UGFzc3dvcmQ6
        C: YmFy
        E: Login foo
        S: b NO [AUTHENTICATIONFAILED] Authentication failed
        C: c AUTHENTICATE LOGIN Zm9v
        S: + UGFzc3dvcmQ6
        C: YmFy
        E: Login foo
        S: c NO [AUTHENTICATIONFAILED] Authentication failed
        S: * BYE Too many authentication failures
        E: Close TooManyAuthFailures
        ",
    );
}

#[test]
fn authenticate_errors() {
    check(
        r"
        C: a AUTHENTICATE PLAIN
        S: + 
        C: *
        S: a BAD Authentication cancelled
        C: b AUTHENTICATE PLAIN
        S: + 
        C: !!!notbase64
        S: b BAD Invalid base64 in the SASL response
        C: c AUTHENTICATE PLAIN dGVzdA==
        S: c BAD Malformed PLAIN response
        C: d AUTHENTICATE CRAM-MD5
        S: d NO Unsupported authentication mechanism
        C: e AUTHENTICATE PLAIN =
        S: e BAD Malformed PLAIN response
        ",
    );
}

#[test]
fn login_needs_tls_unless_allowed() {
    let options = Options { plaintext_auth_allowed: false, ..options() };
    check_with(
        options,
        "
        C: a LOGIN fred secret
        S: a NO [PRIVACYREQUIRED] Login requires TLS
        C: b AUTHENTICATE PLAIN AHRlc3QAMTIzNA==
        S: b NO [PRIVACYREQUIRED] Login requires TLS
        C: c STARTTLS
        S: c OK Begin TLS negotiation now
        E: StartTls
        C: d LOGIN fred secret
        E: Login fred
        S: d OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        ",
    );
}

#[test]
fn starttls_drops_pipelined_bytes() {
    // CVE-2011-0411: the LOGIN pipelined after STARTTLS in clear text is never run.
    check(
        "
        C: a STARTTLS
        C: b LOGIN fred secret
        S: a OK Begin TLS negotiation now
        E: StartTls
        C: c STARTTLS
        S: c BAD TLS is active already
        ",
    );
    let options = Options { starttls_available: false, ..options() };
    check_with(
        options,
        "
        C: a STARTTLS
        S: a BAD STARTTLS is not available
        ",
    );
}

// ---------------------------------------------------------------- states

#[test]
fn wrong_state_commands() {
    check(
        "
        C: a SELECT INBOX
        S: a BAD Not authenticated
        C: b FETCH 1 FLAGS
        S: b BAD Not authenticated
        C: c LOGIN u p
        S: c OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        C: d FETCH 1 FLAGS
        S: d BAD No mailbox selected
        C: e NOOP
        S: e OK done
        C: f ID NIL
        S: f OK done
        ",
    );
}

#[test]
fn select_close_and_reselect() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    session.handle_input(b"a EXAMINE INBOX\r\n");
    assert!(matches!(session.poll_event(base), Some(Event::Command(_))));
    session.complete("a", Status::Ok, Some(Code::ReadOnly), "EXAMINE completed");
    assert_eq!(session.state(), SessionState::Selected { read_only: true });
    assert_eq!(session.poll_output().as_deref(), Some(&b"a OK [READ-ONLY] EXAMINE completed\r\n"[..]));
    // A failed SELECT leaves no mailbox selected (RFC 9051 §6.3.2).
    session.handle_input(b"b SELECT nosuch\r\n");
    assert!(matches!(session.poll_event(base), Some(Event::Command(_))));
    assert_eq!(session.state(), SessionState::Authenticated);
    session.complete("b", Status::No, Some(Code::NonExistent), "No such mailbox");
    assert_eq!(session.state(), SessionState::Authenticated);
    session.handle_input(b"c SELECT INBOX\r\n");
    assert!(session.poll_event(base).is_some());
    session.complete("c", Status::Ok, Some(Code::ReadWrite), "SELECT completed");
    assert_eq!(session.state(), SessionState::Selected { read_only: false });
    session.handle_input(b"d CLOSE\r\n");
    assert!(session.poll_event(base).is_some());
    session.complete("d", Status::Ok, None, "CLOSE completed");
    assert_eq!(session.state(), SessionState::Authenticated);
    session.selected(false);
    assert_eq!(session.state(), SessionState::Selected { read_only: false });
    session.unselected();
    assert_eq!(session.state(), SessionState::Authenticated);
}

#[test]
fn enable_and_closed_code() {
    check(
        "
        C: a LOGIN u p
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        C: b ENABLE QRESYNC X-UNKNOWN
        S: * ENABLED QRESYNC
        S: b OK ENABLE completed
        C: c ENABLE QRESYNC CONDSTORE
        S: * ENABLED
        S: c OK ENABLE completed
        C: d SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))
        S: d OK done
        C: e SELECT Other
        S: * OK [CLOSED] Previous mailbox is now closed
        S: e OK done
        C: f ENABLE UTF8=ACCEPT
        S: f BAD ENABLE is valid only before SELECT
        C: g UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)
        S: g OK done
        ",
    );
    check(
        "
        C: a LOGIN u p
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        C: b SELECT INBOX (QRESYNC (1 1))
        S: b BAD QRESYNC is not enabled
        C: c SELECT INBOX
        S: c OK done
        C: d UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)
        S: d BAD VANISHED needs QRESYNC enabled
        C: e SELECT INBOX
        S: e OK done
        ",
    );
}

#[test]
fn enable_tracks_modes() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    assert!(!session.utf8_names());
    session.handle_input(b"a ENABLE IMAP4rev2\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output().as_deref(), Some(&b"* ENABLED IMAP4rev2\r\na OK ENABLE completed\r\n"[..]));
    assert!(session.enabled().imap4rev2 && session.utf8_names());
    // UTF-8 names now pass as they are, and are written as they are.
    session.handle_input("b CREATE \"Entwürfe & co\"\r\n".as_bytes());
    let Some(Event::Command(command)) = session.poll_event(base) else { panic!("no command") };
    assert_eq!(command.body, CommandBody::Create { mailbox: MailboxName::new("Entwürfe & co"), special_use: vec![] });
    session.untagged().list(&ListItem {
        attributes: &[],
        delimiter: Some('/'),
        mailbox: "Entwürfe & co",
        child_info_subscribed: false,
        old_name: None,
    });
    session.complete("b", Status::Ok, None, "CREATE completed");
    assert_eq!(
        String::from_utf8(session.poll_output().expect("output")).expect("utf8"),
        "* LIST () \"/\" \"Entwürfe & co\"\r\nb OK CREATE completed\r\n"
    );
    // CONDSTORE is enabled by an enabling command.
    session.handle_input(b"c STATUS INBOX (HIGHESTMODSEQ)\r\n");
    assert!(session.poll_event(base).is_some());
    assert!(session.enabled().condstore);
}

// ---------------------------------------------------------------- IDLE, COMPRESS

#[test]
fn idle() {
    let capabilities = capability_line(&options(), true);
    check(&format!(
        "
        C: a LOGIN u p
        E: Login u
        S: a OK [CAPABILITY {capabilities}] Logged in
        C: A002 IDLE
        S: + idling
        E: Idle
        P: * 4 EXISTS
        S: * 4 EXISTS
        A: OK IDLE terminated
        C: DONE
        E: IdleDone
        S: A002 OK IDLE terminated
        C: A003 IDLE
        S: + idling
        E: Idle
        C: NOOP
        S: * BAD Expected DONE
        E: IdleDone
        S: A003 OK done
        C: A004 NOOP
        E: Command NOOP
        S: A004 OK done
        "
    ));
}

#[test]
fn compress() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    session.handle_input(b"a COMPRESS DEFLATE\r\n\x78\x9c");
    assert_eq!(session.poll_event(base), Some(Event::Compress { tag: "a".into() }));
    assert!(!session.wants_input());
    session.complete("a", Status::Ok, None, "DEFLATE active");
    assert!(session.compress_active());
    assert_eq!(session.take_buffered_input(), b"\x78\x9c".to_vec());
    assert_eq!(session.poll_output().as_deref(), Some(&b"a OK DEFLATE active\r\n"[..]));
    session.handle_input(b"b COMPRESS DEFLATE\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output().as_deref(), Some(&b"b NO [COMPRESSIONACTIVE] DEFLATE is active already\r\n"[..]));
}

// ---------------------------------------------------------------- literals and limits

#[test]
fn synchronising_literals() {
    check(
        r"
        C: a LOGIN {4}
        S: + Ready for literal data
        C: fred {6}
        S: + Ready for literal data
        R: secret\r\n
        E: Login fred
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=67108864] Logged in
        R: b APPEND INBOX {5+}\r\nhello (\\Seen) {3+}\r\nabc\r\n
        E: Command APPEND
        S: b OK done
        ",
    );
}

#[test]
fn append_data_reaches_driver() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    session.handle_input(b"A003 APPEND saved-messages (\\Seen) {12}\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output().as_deref(), Some(&b"+ Ready for literal data\r\n"[..]));
    session.handle_input(b"Hello");
    assert_eq!(session.poll_event(base), None);
    session.handle_input(b" World!\r\n");
    let Some(Event::Command(Command { body: CommandBody::Append { messages, .. }, .. })) = session.poll_event(base)
    else {
        panic!("no APPEND");
    };
    assert_eq!(messages[0].data, b"Hello World!");
    let uids = SequenceSet::single(4).expect("set");
    session.complete(
        "A003",
        Status::Ok,
        Some(Code::AppendUid { uid_validity: 38505, uids: &uids }),
        "APPEND completed",
    );
    assert_eq!(session.poll_output().as_deref(), Some(&b"A003 OK [APPENDUID 38505 4] APPEND completed\r\n"[..]));
}

#[test]
fn append_too_big_synchronising() {
    // RFC 7889: NO [TOOBIG] without `+`; the client does not send the literal.
    check_with(
        small(),
        "
        C: a LOGIN u p
        S: a OK [CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=10000] Logged in
        C: b APPEND INBOX {10001}
        S: b NO [TOOBIG] Message too big
        C: c NOOP
        S: c OK done
        ",
    );
}

#[test]
fn append_too_big_non_synchronising_is_discarded() {
    let base = Instant::now();
    let mut session = logged_in(small(), base);
    session.handle_input(b"b APPEND INBOX {20000+}\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output(), None);
    for _ in 0..20 {
        session.handle_input(&[b'x'; 1000]);
        assert_eq!(session.poll_event(base), None);
        assert!(session.buffered_bytes() < 2000, "discarded bytes are not buffered");
    }
    session.handle_input(b"\r\nc NOOP\r\n");
    assert_eq!(session.poll_event(base).map(|event| matches!(event, Event::Command(_))), Some(true));
    assert_eq!(session.poll_output().as_deref(), Some(&b"b NO [TOOBIG] Message too big\r\n"[..]));
    // MULTIAPPEND: the messages together are bounded too.
    let mut session = logged_in(small(), base);
    session.handle_input(b"b APPEND INBOX {9000+}\r\n");
    session.handle_input(&[b'x'; 9000]);
    session.handle_input(b" {9000+}\r\n");
    session.handle_input(&[b'y'; 9000]);
    session.handle_input(b"\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output().as_deref(), Some(&b"b NO [TOOBIG] Message too big\r\n"[..]));
}

#[test]
fn absurd_non_synchronising_literal_closes() {
    check_with(
        small(),
        "
        C: a LOGIN u {100001+}
        S: * BYE Literal too large
        E: Close LiteralTooBig
        ",
    );
}

#[test]
fn literals_before_login_use_the_command_limit() {
    // No 10 KB message buffered before login: APPEND's literal counts as a command literal.
    check_with(
        small(),
        "
        C: a APPEND INBOX {9000}
        S: a BAD [TOOBIG] Literal too big for this command
        C: b LOGIN {8200}
        S: b BAD [TOOBIG] Literal too big for this command
        ",
    );
}

#[test]
fn literal_minus() {
    let options = Options { extensions: Extensions { literal_plus: false, ..Extensions::default() }, ..small() };
    check_with(
        options,
        r"
        R: a LOGIN {4+}\r\nfred {4097+}\r\n
        F:
        R: \x00\x00\x00\x00\x00\x00\x00\x00
        F:
        ",
    );
    let base = Instant::now();
    let mut session = Session::new(
        Options { extensions: Extensions { literal_plus: false, ..Extensions::default() }, ..small() },
        base,
    );
    session.poll_output();
    session.handle_input(b"a LOGIN {4+}\r\nfred {4097+}\r\n");
    session.handle_input(&[0; 4097]);
    session.handle_input(b"\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(
        session.poll_output().as_deref(),
        Some(&b"a BAD [TOOBIG] Non-synchronizing literals are limited to 4096 octets\r\n"[..])
    );
}

#[test]
fn over_long_command_line() {
    let long = "x".repeat(9000);
    check_with(
        small(),
        &format!(
            "
            C: a LOGIN {long} y
            S: a BAD [TOOBIG] Command line too long
            C: b NOOP
            S: b OK NOOP completed
            R: c LOGIN {long} {{5+}}\\r\\nhello more\\r\\n
            S: c BAD [TOOBIG] Command line too long
            C: d LOGIN {long} {{5}}
            S: d BAD [TOOBIG] Command line too long
            S: * BYE Too many invalid commands
            "
        ),
    );
    // Without a tag in reach, the answer is untagged.
    let base = Instant::now();
    let mut session = Session::new(small(), base);
    session.poll_output();
    session.handle_input(&[b'z'; 9000]);
    assert_eq!(session.poll_event(base), None);
    assert!(session.buffered_bytes() < 9000);
    session.handle_input(b"\r\n");
    assert_eq!(session.poll_event(base), None);
    assert_eq!(session.poll_output().as_deref(), Some(&b"* BAD [TOOBIG] Command line too long\r\n"[..]));
}

#[test]
fn bad_input_and_error_limit() {
    check_with(
        small(),
        r"
        C: a FROB
        S: a BAD Unknown command
        R: \xff\xfe garbage\r\n
        S: * BAD Expected a tag
        C:
        C: b SEARCH ((((SEEN))))
        S: b BAD Search keys nested too deeply
        S: * BYE Too many invalid commands
        E: Close TooManyErrors
        ",
    );
}

#[test]
fn nesting_limit_and_unbalanced_parens() {
    let capabilities = capability_line(&small(), true);
    check_with(
        small(),
        &format!(
            "
            C: a LOGIN u p
            S: a OK [CAPABILITY {capabilities}] Logged in
            C: b SELECT INBOX
            S: b OK done
            C: c SEARCH ((((SEEN))))
            S: c BAD Search keys nested too deeply
            C: d SEARCH (SEEN
            S: d BAD Expected a space
            "
        ),
    );
}

#[test]
fn bare_lf_and_empty_lines() {
    check(
        r"
        R: \r\n\r\na NOOP\n
        S: a OK NOOP completed
        ",
    );
}

#[test]
fn pipelined_commands_run_in_order() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    session.handle_input(b"a NOOP\r\nb NOOP\r\nc CAPABILITY\r\n");
    let Some(Event::Command(first)) = session.poll_event(base) else { panic!("no command") };
    assert_eq!(first.tag, "a");
    // Nothing more until the driver completes.
    assert_eq!(session.poll_event(base), None);
    assert!(!session.wants_input());
    session.complete("a", Status::Ok, None, "NOOP completed");
    let Some(Event::Command(second)) = session.poll_event(base) else { panic!("no command") };
    assert_eq!(second.tag, "b");
    session.complete("b", Status::Ok, None, "NOOP completed");
    assert_eq!(session.poll_event(base), None);
    let output = String::from_utf8(session.poll_output().expect("output")).expect("ascii");
    assert!(output.starts_with("a OK NOOP completed\r\nb OK NOOP completed\r\n* CAPABILITY "), "{output}");
    assert!(output.ends_with("c OK CAPABILITY completed\r\n"));
    // Backpressure: the session stops asking for input past the limit.
    let mut session = logged_in(small(), base);
    session.handle_input(b"a NOOP\r\n");
    assert!(session.poll_event(base).is_some());
    session.handle_input(&[b'x'; 1000]);
    assert!(!session.wants_input());
}

#[test]
fn timeouts() {
    let base = Instant::now();
    // Before login: 60 s from the greeting, whatever is sent.
    let mut session = Session::new(options(), base);
    assert_eq!(session.poll_timeout(), Some(base + Duration::from_secs(60)));
    session.handle_input(b"a NOOP\r\n");
    assert_eq!(session.poll_event(base + Duration::from_secs(30)), None);
    session.handle_timeout(base + Duration::from_secs(60));
    assert_eq!(session.poll_event(base + Duration::from_secs(60)), Some(Event::Close { reason: CloseReason::Timeout }));
    let output = session.poll_output().expect("output");
    assert!(output.ends_with(b"* BYE Autologout; idle for too long\r\n"));
    assert_eq!(session.poll_timeout(), None);
    // After login: 30 minutes, none while the driver works, 5 minutes inside a command.
    let mut session = logged_in(options(), base);
    assert_eq!(session.poll_timeout(), Some(base + Duration::from_secs(30 * 60)));
    session.handle_input(b"a NOOP\r\n");
    assert!(session.poll_event(base).is_some());
    assert_eq!(session.poll_timeout(), None);
    session.complete("a", Status::Ok, None, "done");
    let later = base + Duration::from_secs(100);
    session.handle_input(b"b APPEND INBOX {10}\r\n");
    assert_eq!(session.poll_event(later), None);
    assert_eq!(session.poll_timeout(), Some(later + Duration::from_secs(5 * 60)));
    session.handle_timeout(later + Duration::from_secs(5 * 60));
    assert!(session.is_closed());
    // IDLE keeps the 30-minute timeout.
    let mut session = logged_in(options(), base);
    session.handle_input(b"i IDLE\r\n");
    assert_eq!(session.poll_event(base), Some(Event::Idle { tag: "i".into() }));
    assert!(session.is_idling());
    assert_eq!(session.poll_timeout(), Some(base + Duration::from_secs(30 * 60)));
}

#[test]
fn bye_from_driver() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    session.bye("Server shutting down");
    assert_eq!(session.poll_event(base), Some(Event::Close { reason: CloseReason::Driver }));
    assert_eq!(session.poll_output().as_deref(), Some(&b"* BYE Server shutting down\r\n"[..]));
    assert!(session.is_closed() && !session.wants_input());
}

#[test]
fn limits_check() {
    assert_eq!(Limits::default().check(), Ok(()));
    assert_eq!(small().limits.check_consistent(), Ok(()));
    let check = |limits: Limits| limits.check_consistent().unwrap_err().to_string();
    assert_eq!(check(Limits { errors_max: 0, ..Limits::default() }), "imap.errors_max: must be greater than zero");
    assert_eq!(
        check(Limits { command_line_bytes_max: 1000, ..Limits::default() }),
        "imap.command_line_bytes_max: 1000 is below the 8192 octets RFC 7162 §4 asks for"
    );
    assert_eq!(
        check(Limits { idle_timeout_s: 60, ..Limits::default() }),
        "imap.idle_timeout_s: 60 is below the 30 minutes RFC 9051 §5.4 requires"
    );
    assert_eq!(
        check(Limits { append_bytes_max: 1024 * 1024, ..Limits::default() }),
        "imap.literal_bytes_max: 67108864 is larger than imap.append_bytes_max (1048576)"
    );
    let huge = Limits {
        literal_bytes_max: 8 << 30,
        append_bytes_max: 8 << 30,
        literal_discard_bytes_max: 8 << 30,
        ..Limits::default()
    };
    assert_eq!(check(huge), "imap.literal_bytes_max: 8589934592 does not fit in 32 bits, as literal lengths do");
    // What an operator may set is narrower than what a session needs.
    assert_eq!(
        small().limits.check().unwrap_err().to_string(),
        "imap.literal_bytes_max: 10000 is out of range: it must be between 65536 and 1073741824"
    );
}

#[test]
fn idle_session_is_small() {
    let base = Instant::now();
    let mut session = logged_in(options(), base);
    let message = vec![b'x'; 1 << 20];
    session.handle_input(format!("a APPEND INBOX {{{}+}}\r\n", message.len()).as_bytes());
    session.handle_input(&message);
    session.handle_input(b"\r\n");
    assert!(session.poll_event(base).is_some());
    session.complete("a", Status::Ok, None, "done");
    session.poll_output();
    assert_eq!(session.buffered_bytes(), 0);
    assert!(session.buffer_capacity() <= 2048, "idle buffers hold {} bytes", session.buffer_capacity());
    // A typical command keeps at most small buffers.
    session.handle_input(b"b STATUS INBOX (MESSAGES UIDNEXT)\r\n");
    assert!(session.poll_event(base).is_some());
    session.complete("b", Status::Ok, None, "done");
    session.poll_output();
    assert!(session.buffer_capacity() <= 2048, "idle buffers hold {} bytes", session.buffer_capacity());
    assert!(std::mem::size_of::<Session>() <= 1024, "Session is {} bytes", std::mem::size_of::<Session>());
}

fn logged_in(options: Options, now: Instant) -> Session {
    let mut session = Session::new(options, now);
    session.handle_input(b"L LOGIN user pass\r\n");
    assert!(matches!(session.poll_event(now), Some(Event::Login { .. })));
    session.handle_login(Ok(()));
    session.poll_output();
    session
}

// ---------------------------------------------------------------- writer

fn writer_output(utf8: bool, write: impl FnOnce(&mut Responses<'_>)) -> String {
    let mut out = Vec::new();
    let capabilities = crate::capability::Capabilities {
        extensions: Extensions::default(),
        starttls_available: false,
        tls_active: true,
        plaintext_auth_allowed: false,
        authenticated: true,
        compress_active: false,
        append_limit: 100,
    };
    let mut responses = Responses { out: &mut out, utf8, capabilities };
    write(&mut responses);
    String::from_utf8(out).expect("utf8")
}

#[test]
fn writer_untagged_lines() {
    let uids = SequenceSet::from_sorted([41, 43, 44, 45, 99]).expect("set");
    let cases: Vec<(String, &str)> = vec![
        (writer_output(false, |w| w.exists(23)), "* 23 EXISTS\r\n"),
        (writer_output(false, |w| w.recent(5)), "* 5 RECENT\r\n"),
        (writer_output(false, |w| w.expunge(3)), "* 3 EXPUNGE\r\n"),
        (writer_output(false, |w| w.vanished(true, &uids)), "* VANISHED (EARLIER) 41,43:45,99\r\n"),
        (
            writer_output(false, |w| w.flags(&[Flag::Answered, Flag::Flagged, Flag::Deleted, Flag::Seen, Flag::Draft])),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        ),
        (
            writer_output(false, |w| {
                w.status(
                    Status::Ok,
                    Some(Code::PermanentFlags { flags: &[Flag::Deleted, Flag::Seen], keywords_allowed: true }),
                    "Limited",
                )
            }),
            "* OK [PERMANENTFLAGS (\\Deleted \\Seen \\*)] Limited\r\n",
        ),
        (
            writer_output(false, |w| w.status(Status::Ok, Some(Code::UidValidity(3857529045)), "UIDs valid")),
            "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        ),
        (
            writer_output(false, |w| w.status(Status::Ok, Some(Code::HighestModSeq(715194045007)), "Highest")),
            "* OK [HIGHESTMODSEQ 715194045007] Highest\r\n",
        ),
        (
            writer_output(false, |w| w.status(Status::No, Some(Code::Alert), "bad\r\nthing")),
            "* NO [ALERT] bad  thing\r\n",
        ),
        (writer_output(false, |w| w.status(Status::Ok, None, "")), "* OK Done\r\n"),
        (
            writer_output(false, |w| {
                w.list(&ListItem {
                    attributes: &[MailboxAttribute::NoSelect],
                    delimiter: Some('/'),
                    mailbox: "~/Mail/foo",
                    child_info_subscribed: false,
                    old_name: None,
                })
            }),
            "* LIST (\\Noselect) \"/\" ~/Mail/foo\r\n",
        ),
        (
            writer_output(false, |w| {
                w.list(&ListItem {
                    attributes: &[MailboxAttribute::SpecialUse(SpecialUse::Sent), MailboxAttribute::HasNoChildren],
                    delimiter: None,
                    mailbox: "台北",
                    child_info_subscribed: true,
                    old_name: Some("Old"),
                })
            }),
            "* LIST (\\Sent \\HasNoChildren) NIL &U,BTFw- (\"CHILDINFO\" (\"SUBSCRIBED\") \"OLDNAME\" (Old))\r\n",
        ),
        (
            writer_output(false, |w| {
                w.lsub(&ListItem {
                    attributes: &[],
                    delimiter: Some('\\'),
                    mailbox: "a b",
                    child_info_subscribed: false,
                    old_name: None,
                })
            }),
            "* LSUB () \"\\\\\" \"a b\"\r\n",
        ),
        (
            writer_output(false, |w| {
                w.mailbox_status("blurdybloop", &[(StatusItem::Messages, 231), (StatusItem::UidNext, 44292)])
            }),
            "* STATUS blurdybloop (MESSAGES 231 UIDNEXT 44292)\r\n",
        ),
        (writer_output(false, |w| w.search([2, 84, 882], None)), "* SEARCH 2 84 882\r\n"),
        (writer_output(false, |w| w.search([], None)), "* SEARCH\r\n"),
        (writer_output(false, |w| w.search([2, 5], Some(917162500))), "* SEARCH 2 5 (MODSEQ 917162500)\r\n"),
        (writer_output(false, |w| w.sort([2, 81, 83], None)), "* SORT 2 81 83\r\n"),
        (
            writer_output(false, |w| {
                w.esearch(&Esearch { tag: Some("A282"), min: Some(2), count: Some(3), ..Esearch::default() })
            }),
            "* ESEARCH (TAG \"A282\") MIN 2 COUNT 3\r\n",
        ),
        (
            writer_output(false, |w| {
                w.esearch(&Esearch { tag: Some("A283"), uid: true, all: Some(&uids), ..Esearch::default() })
            }),
            "* ESEARCH (TAG \"A283\") UID ALL 41,43:45,99\r\n",
        ),
        (
            writer_output(false, |w| {
                w.namespace(
                    &[Namespace { prefix: "", delimiter: Some('/') }],
                    &[],
                    &[Namespace { prefix: "Public Folders/", delimiter: Some('/') }],
                )
            }),
            "* NAMESPACE ((\"\" \"/\")) NIL ((\"Public Folders/\" \"/\"))\r\n",
        ),
        (
            writer_output(false, |w| w.id(Some(&[("name", Some("Hameau")), ("vendor", None)]))),
            "* ID (\"name\" \"Hameau\" \"vendor\" NIL)\r\n",
        ),
        (writer_output(false, |w| w.id(None)), "* ID NIL\r\n"),
        (
            writer_output(false, |w| w.quota("", &[QuotaResource { name: "STORAGE", usage: 10, limit: 512 }])),
            "* QUOTA \"\" (STORAGE 10 512)\r\n",
        ),
        (writer_output(false, |w| w.quota_root("INBOX", &["", "user"])), "* QUOTAROOT INBOX \"\" user\r\n"),
        (
            writer_output(false, |w| w.capability()),
            "* CAPABILITY IMAP4rev1 IMAP4rev2 LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS CHILDREN UNSELECT ESEARCH SEARCHRES SORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES CONDSTORE QRESYNC QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE STATUS=SIZE BINARY COMPRESS=DEFLATE UTF8=ACCEPT MULTIAPPEND APPENDLIMIT=100\r\n",
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, expected);
    }
}

#[test]
fn writer_codes() {
    let source = SequenceSet::from_sorted([304, 319, 320]).expect("set");
    let destination = SequenceSet::from_sorted([3956, 3957, 3958]).expect("set");
    let code = |code: Code<'_>| writer_output(false, |w| w.status(Status::Ok, Some(code), "t"));
    assert_eq!(
        code(Code::CopyUid { uid_validity: 38505, source: &source, destination: &destination }),
        "* OK [COPYUID 38505 304,319:320 3956:3958] t\r\n"
    );
    assert_eq!(code(Code::Modified(&source)), "* OK [MODIFIED 304,319:320] t\r\n");
    assert_eq!(code(Code::BadCharset(&["UTF-8"])), "* OK [BADCHARSET (UTF-8)] t\r\n");
    assert_eq!(code(Code::NoModSeq), "* OK [NOMODSEQ] t\r\n");
    assert_eq!(code(Code::Closed), "* OK [CLOSED] t\r\n");
    assert_eq!(code(Code::UidNext(4392)), "* OK [UIDNEXT 4392] t\r\n");
    assert_eq!(code(Code::PermanentFlags { flags: &[], keywords_allowed: false }), "* OK [PERMANENTFLAGS ()] t\r\n");
}

/// Adds a thread node to `threads`; returns its index.
fn thread_node(threads: &mut Threads, message: Option<u32>, children: &[u32]) -> u32 {
    threads.push(Thread { message, children: children.to_vec() }) as u32
}

#[test]
fn writer_thread() {
    // RFC 5256 §4: (2)(3 6 (4 23)(44 7 96))
    let mut threads = Threads::default();
    let t = &mut threads;
    let two = thread_node(t, Some(2), &[]);
    let twenty_three = thread_node(t, Some(23), &[]);
    let four = thread_node(t, Some(4), &[twenty_three]);
    let ninety_six = thread_node(t, Some(96), &[]);
    let seven = thread_node(t, Some(7), &[ninety_six]);
    let forty_four = thread_node(t, Some(44), &[seven]);
    let six = thread_node(t, Some(6), &[four, forty_four]);
    let three = thread_node(t, Some(3), &[six]);
    let (three_b, five) = (thread_node(t, Some(3), &[]), thread_node(t, Some(5), &[]));
    let dummy = thread_node(t, None, &[three_b, five]);
    threads.roots = vec![two, three, dummy];
    assert_eq!(writer_output(false, |w| w.thread(&threads)), "* THREAD (2)(3 6 (4 23)(44 7 96))((3)(5))\r\n");
    assert_eq!(writer_output(false, |w| w.thread(&Threads::default())), "* THREAD\r\n");
}

#[test]
fn writer_thread_deep_without_recursion() {
    // 200,000 nested branches: (1 (2 (3 ...)(x))(x)) — written and dropped without recursion.
    let mut threads = Threads::default();
    let mut below: Option<u32> = None;
    for number in (1..=200_000u32).rev() {
        let leaf = thread_node(&mut threads, Some(0), &[]);
        let children: Vec<u32> = below.into_iter().chain([leaf]).collect();
        below = Some(thread_node(&mut threads, Some(number), &children));
    }
    threads.roots = vec![below.expect("a root")];
    let out = writer_output(false, |w| w.thread(&threads));
    assert!(out.starts_with("* THREAD (1 (2 (3 "));
    assert!(out.contains(" (199999 (200000 0)(0))(0))(0))"));
    assert!(out.ends_with("(0))(0))\r\n"), "{}", &out[out.len() - 40..]);
    assert_eq!(out.matches('(').count(), out.matches(')').count());
}

#[test]
fn writer_fetch() {
    let section = Section { part: vec![], text: Some(SectionText::HeaderFields(vec!["Date".into(), "From".into()])) };
    let out = writer_output(false, |w| {
        let mut fetch = w.fetch(12);
        fetch.uid(4827313).flags(&[Flag::Seen, Flag::Extension("Forwarded".into())], true).modseq(624140003);
        fetch.internal_date(&DateTime::from_unix(837_596_665, -420).expect("date")).rfc822_size(44827);
        {
            let mut envelope = fetch.envelope();
            envelope.string(b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)").string(b"IMAP4rev2 WG mtg summary and minutes");
            {
                let mut from = envelope.list();
                from.list().string(b"Terry Gray").nil().string(b"gray").string(b"cac.washington.edu");
            }
            envelope.nil().nstring(None).string(b"line\r\nbreak");
        }
        fetch.body_section(&section, None, Some(b"Date: x\r\n\r\n"));
        fetch.body_section(&Section::default(), Some(100), None);
        fetch.binary(&[1, 2], None, Some(b"a\0b"));
        fetch.binary_size(&[1], 2048);
        fetch.rfc822_header(Some(b"\"q\""));
    });
    assert_eq!(
        out,
        "* 12 FETCH (UID 4827313 FLAGS (\\Seen \\Forwarded \\Recent) MODSEQ (624140003) \
         INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44827 \
         ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev2 WG mtg summary and minutes\" \
         ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) NIL NIL {11}\r\nline\r\nbreak) \
         BODY[HEADER.FIELDS (Date From)] {11}\r\nDate: x\r\n\r\n BODY[]<100> NIL BINARY[1.2] ~{3}\r\na\0b \
         BINARY.SIZE[1] 2048 RFC822.HEADER {3}\r\n\"q\")\r\n"
    );
    // 8-bit strings are literals in IMAP4rev1 mode and quoted in UTF-8 mode.
    let ascii = writer_output(false, |w| {
        w.fetch(1).envelope().string("Grüße".as_bytes());
    });
    assert_eq!(ascii, "* 1 FETCH (ENVELOPE ({7}\r\nGrüße))\r\n");
    let utf8 = writer_output(true, |w| {
        w.fetch(1).envelope().string("Grüße".as_bytes());
    });
    assert_eq!(utf8, "* 1 FETCH (ENVELOPE (\"Grüße\"))\r\n");
}

#[test]
fn writer_output_reparses() {
    // Strings the writer produces parse back to the same bytes (as LOGIN arguments).
    for value in ["plain", "", "NIL", "with space", "quote\"back\\slash", "Grüße", "line\r\nbreak", "]x"] {
        let mut out = b"t LOGIN ".to_vec();
        write::write_astring(&mut out, value.as_bytes(), false);
        out.push(b' ');
        write::write_string(&mut out, value.as_bytes(), true);
        let (text, literals) = crate::fuzzing::split_literals(&out);
        let parsed =
            crate::parse::parse_command(&text, literals, crate::parse::ParseOptions { utf8: true, depth_max: 8 })
                .expect("reparses");
        assert_eq!(parsed.body, CommandBody::Login { username: value.into(), password: value.into() }, "{value:?}");
    }
    // Mailbox names round-trip through the writer's encoding and the parser's decoding.
    for name in ["INBOX", "Entwürfe", "a&b", "台北/日本語", "with space"] {
        for utf8 in [false, true] {
            let mut out = b"t DELETE ".to_vec();
            write::write_mailbox(&mut out, name, utf8);
            let (text, literals) = crate::fuzzing::split_literals(&out);
            let parsed =
                crate::parse::parse_command(&text, literals, crate::parse::ParseOptions { utf8, depth_max: 8 })
                    .expect("reparses");
            assert_eq!(parsed.body, CommandBody::Delete { mailbox: MailboxName::new(name) }, "{name:?}");
        }
    }
}

#[test]
fn fuzz_session_smoke() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"\x11\x20a LOGIN u p\r\nb SELECT INBOX\r\n",
        b"\x00\x7fa LOGIN u p\r\nb SELECT INBOX\r\nc FETCH 1:* (FLAGS BODY.PEEK[HEADER] ENVELOPE)\r\nd IDLE\r\nDONE\r\n\xff\xff\xff\x10",
        b"\x01\x40a AUTHENTICATE PLAIN\r\nAHUAcA==\r\nb APPEND INBOX {3}\r\nabc\r\nc COMPRESS DEFLATE\r\n",
        b"\x03\x7fa LOGIN {100000+}\r\n",
        b"\x20\x30a LIST \"\" *\r\nb SEARCH RETURN (ALL) 1:*\r\nc LOGOUT\r\n",
    ];
    for input in inputs {
        crate::fuzzing::fuzz_session(input);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    #[test]
    fn session_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
        crate::fuzzing::fuzz_session(&bytes);
    }
}

#[test]
fn fuzz_seeds_of_list_match_and_thread() {
    // The corpora seeded from the attack tests (issue 10) pass their fuzz checks.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (target, run) in [("list_match", fuzzing::fuzz_list_match as fn(&[u8])), ("thread", fuzzing::fuzz_thread)] {
        let mut n_seeds = 0;
        for entry in std::fs::read_dir(corpus.join(target)).expect("corpus") {
            run(&std::fs::read(entry.expect("seed").path()).expect("seed"));
            n_seeds += 1;
        }
        assert!(n_seeds >= 4, "{target}: {n_seeds} seeds");
    }
}

#[test]
fn limits_refuse_with_no_limit() {
    let limits = Limits { fetch_items_max: 2, search_keys_max: 3, list_pattern_bytes_max: 1024, ..Limits::default() };
    let options = Options { limits, preauthenticated: true, ..Options::default() };
    let mut session = Session::new(options, Instant::now());
    let _ = session.poll_output();
    let mut run = |input: &str| -> String {
        session.handle_input(input.as_bytes());
        let event = session.poll_event(Instant::now());
        assert!(event.is_none() || matches!(event, Some(Event::Command(_))), "{event:?}");
        String::from_utf8(session.poll_output().unwrap_or_default()).expect("UTF-8")
    };
    assert_eq!(run("a SELECT INBOX\r\n"), "");
    session.complete("a", Status::Ok, None, "SELECT completed");
    let _ = session.poll_output();
    let mut run = |input: &str| -> String {
        session.handle_input(input.as_bytes());
        match session.poll_event(Instant::now()) {
            Some(Event::Command(command)) => {
                session.complete(&command.tag, Status::Ok, None, "done");
            }
            None => {}
            other => panic!("{other:?}"),
        }
        String::from_utf8(session.poll_output().unwrap_or_default()).expect("UTF-8")
    };
    assert_eq!(run("b FETCH 1 (UID FLAGS)\r\n"), "b OK done\r\n");
    assert_eq!(run("c FETCH 1 (UID FLAGS RFC822.SIZE)\r\n"), "c NO [LIMIT] Too many FETCH items (at most 2)\r\n");
    assert_eq!(run("d FETCH 1 ALL\r\n"), "d NO [LIMIT] Too many FETCH items (at most 2)\r\n");
    assert_eq!(run("e SEARCH OR SEEN DRAFT\r\n"), "e OK done\r\n");
    assert_eq!(run("f SEARCH SEEN DRAFT FLAGGED ANSWERED\r\n"), "f NO [LIMIT] Too many search keys (at most 3)\r\n");
    let long = format!("g LIST \"\" \"{}\"\r\n", "*".repeat(1025));
    assert_eq!(run(&long), "g NO [LIMIT] LIST patterns too long (at most 1024 bytes)\r\n");
    assert_eq!(run("h LIST \"\" \"*\"\r\n"), "h OK done\r\n");
}

//! Transcript tests of the session, and table tests of its parsers.
//!
//! A transcript is a list of lines, each `<tag>: <text>`:
//!
//! - `C: text` sends `text` and CRLF. Consecutive `C:`/`R:` lines go in one read
//!   (pipelining); an `S:`, `E:`, `T:` or `F:` line sends what was gathered.
//! - `R: text` sends `text` raw, with escapes `\r`, `\n`, `\t`, `\\`, `\xHH`, and no CRLF.
//! - `F:` sends what was gathered now (a read boundary).
//! - `S: text` is one expected reply line.
//! - `E: text` is one expected event. Events are compared only if the transcript has `E:` lines.
//! - `D: accept` or `D: reject 550 5.1.1 No such user` queues the answer to the next event
//!   that needs a decision; without one the harness accepts. Put it before the command.
//! - `T: 300` advances the clock by 300 seconds and calls `handle_timeout`.
//! - `@ehlo` is `C: EHLO client.example` followed by the EHLO reply for these options.
//!
//! On `StartTls` the harness calls `handle_tls_started` at once.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::address::{self, ArgError};
use crate::data::{self, DataDecoder};
use crate::{Body, CloseReason, Credentials, Decision, Event, Limits, MailParams, Mechanism, Options, Reply, Session};

// ---------------------------------------------------------------- harness

fn options() -> Options {
    Options { starttls_available: true, ..Options::default() }
}

fn small_limits() -> Limits {
    Limits {
        line_bytes_max: 512,
        message_bytes_max: 1024,
        bdat_chunk_bytes_max: 1024,
        recipients_max: 2,
        commands_max: 100,
        errors_max: 5,
        ..Limits::default()
    }
}

fn small() -> Options {
    Options { limits: small_limits(), ..options() }
}

fn check(transcript: &str) {
    check_with(options(), transcript);
}

fn check_with(options: Options, transcript: &str) {
    let ehlo_lines = ehlo_reply(&options);
    let base = Instant::now();
    let mut harness = Harness {
        session: Session::new(options, "mx.example.org", base),
        now: base,
        decisions: VecDeque::new(),
        actual: Vec::new(),
    };
    harness.drain();
    let mut expected = Vec::new();
    let mut feed = Vec::new();
    let mut explicit_events = false;
    for line in transcript.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "@ehlo" {
            feed.extend_from_slice(b"EHLO client.example\r\n");
            harness.feed(&mut feed);
            expected.push("E: EHLO client.example".to_owned());
            expected.extend(ehlo_lines.iter().map(|line| format!("S: {line}")));
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
            "S" | "E" => {
                harness.feed(&mut feed);
                explicit_events |= tag == "E";
                expected.push(format!("{tag}: {text}"));
            }
            "D" => harness.decisions.push_back(parse_decision(text)),
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
    if !explicit_events {
        actual.retain(|line| !line.starts_with("E:"));
        expected.retain(|line| !line.starts_with("E:"));
    }
    if actual != expected {
        panic!("transcript mismatch\n--- expected\n{}\n--- actual\n{}\n", expected.join("\n"), actual.join("\n"));
    }
    assert!(harness.decisions.is_empty(), "unused decisions: {:?}", harness.decisions);
}

struct Harness {
    session: Session,
    now: Instant,
    decisions: VecDeque<Decision>,
    actual: Vec<String>,
}

impl Harness {
    fn feed(&mut self, feed: &mut Vec<u8>) {
        if !feed.is_empty() {
            self.session.handle_input(feed);
            feed.clear();
        }
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let event = self.session.poll_event(self.now);
            self.take_output();
            let Some(event) = event else {
                if self.session.is_ready() {
                    continue;
                }
                return;
            };
            self.actual.push(format!("E: {}", describe(&event)));
            if event.needs_decision() {
                let decision = self.decisions.pop_front().unwrap_or(Decision::Accept);
                self.session.handle_decision(decision);
            } else if event == Event::StartTls {
                self.session.handle_tls_started();
            }
        }
    }

    fn take_output(&mut self) {
        let Some(output) = self.session.poll_output() else {
            return;
        };
        let output = String::from_utf8(output).expect("replies are UTF-8");
        assert!(output.ends_with("\r\n"), "output must end with CRLF: {output:?}");
        for line in output[..output.len() - 2].split("\r\n") {
            assert!(!line.contains(['\r', '\n']), "bare CR or LF in reply {line:?}");
            self.actual.push(format!("S: {line}"));
        }
    }
}

fn ehlo_reply(options: &Options) -> Vec<String> {
    let mut lines = vec![
        "250-mx.example.org".to_owned(),
        "250-PIPELINING".to_owned(),
        format!("250-SIZE {}", options.limits.message_bytes_max),
        "250-8BITMIME".to_owned(),
        "250-SMTPUTF8".to_owned(),
        "250-ENHANCEDSTATUSCODES".to_owned(),
        "250-CHUNKING".to_owned(),
    ];
    if options.starttls_available && !options.tls_active {
        lines.push("250-STARTTLS".to_owned());
    }
    if !options.auth_mechanisms.is_empty() && options.tls_active {
        let names: Vec<&str> = options.auth_mechanisms.iter().map(|mechanism| mechanism.name()).collect();
        lines.push(format!("250-AUTH {}", names.join(" ")));
    }
    let last = lines.last_mut().unwrap();
    last.replace_range(3..4, " ");
    lines
}

fn describe(event: &Event) -> String {
    match event {
        Event::Helo { ehlo, host } => format!("{} {host}", if *ehlo { "EHLO" } else { "HELO" }),
        Event::MailFrom { address, params } => format!("MAIL <{address}>{}", describe_params(params)),
        Event::RcptTo { address } => format!("RCPT <{address}>"),
        Event::Message { data, mail_from, recipients, params } => {
            let recipients: Vec<String> = recipients.iter().map(|rcpt| format!("<{rcpt}>")).collect();
            format!(
                "MESSAGE <{mail_from}>{} {} \"{}\"",
                describe_params(params),
                recipients.join(","),
                data.escape_ascii()
            )
        }
        Event::Auth(credentials) => format!(
            "AUTH {} {} {} {}",
            credentials.mechanism.name(),
            credentials.authzid.as_deref().unwrap_or("-"),
            credentials.username,
            credentials.password
        ),
        Event::StartTls => "STARTTLS".to_owned(),
        Event::Quit => "QUIT".to_owned(),
        Event::Close { reason } => format!("CLOSE {reason:?}"),
    }
}

fn describe_params(params: &MailParams) -> String {
    let mut out = String::new();
    if let Some(size) = params.size {
        write!(out, " SIZE={size}").unwrap();
    }
    match params.body {
        Some(Body::SevenBit) => out.push_str(" BODY=7BIT"),
        Some(Body::EightBitMime) => out.push_str(" BODY=8BITMIME"),
        None => {}
    }
    if params.smtputf8 {
        out.push_str(" SMTPUTF8");
    }
    out
}

fn parse_decision(text: &str) -> Decision {
    if text == "accept" {
        return Decision::Accept;
    }
    let rest = text.strip_prefix("reject ").expect("D: accept | reject <code> <enhanced> <text>");
    let mut parts = rest.splitn(3, ' ');
    let code = parts.next().unwrap().parse().unwrap();
    let enhanced = parts.next().unwrap();
    let text = parts.next().unwrap();
    Decision::Reject(Reply::new(code, enhanced, text))
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(byte) = bytes.next() {
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        match bytes.next().expect("escape at end of line") {
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
            }
            other => panic!("bad escape \\{}", other as char),
        }
    }
    out
}

// ---------------------------------------------------------------- greeting and EHLO

#[test]
fn ehlo_advertises_extensions() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: EHLO client.example
        E: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 STARTTLS
        ",
    );
}

#[test]
fn ehlo_without_tls_does_not_offer_starttls() {
    let transcript = "
        S: 220 mx.example.org ESMTP Hameau
        C: ehlo client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250 CHUNKING
        C: STARTTLS
        S: 454 4.7.0 TLS not available
    ";
    check_with(Options::default(), transcript);
    let implicit_tls = Options { tls_active: true, ..options() };
    check_with(implicit_tls, &transcript.replace("454 4.7.0 TLS not available", "503 5.5.1 TLS already active"));
}

#[test]
fn helo() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: HELO client.example
        E: HELO client.example
        S: 250 mx.example.org
        C: MAIL FROM:<a@example.com> SIZE=10
        S: 555 5.5.4 Unsupported parameter
        C: MAIL FROM:<a@example.com>
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        ",
    );
}

#[test]
fn helo_syntax() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: EHLO
        S: 501 5.5.4 Syntax: EHLO hostname
        C: HELO
        S: 501 5.5.4 Syntax: HELO hostname
        C: EHLO two words
        S: 501 5.5.4 Syntax: EHLO hostname
        C: EHLO [192.0.2.1]
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 STARTTLS
        ",
    );
}

#[test]
fn driver_rejects_helo_and_mail() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        D: reject 550 5.7.1 Bad HELO
        C: HELO bad.example
        S: 550 5.7.1 Bad HELO
        C: MAIL FROM:<a@example.com>
        S: 503 5.5.1 Send EHLO or HELO first
        @ehlo
        D: reject 550 5.7.23 SPF fail
        C: MAIL FROM:<a@example.com>
        S: 550 5.7.23 SPF fail
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        ",
    );
}

// ---------------------------------------------------------------- transactions

#[test]
fn data_transaction() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        C: EHLO client.example
        E: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 STARTTLS
        C: MAIL FROM:<alice@example.com> SIZE=100 BODY=8BITMIME
        E: MAIL <alice@example.com> SIZE=100 BODY=8BITMIME
        S: 250 2.1.0 Ok
        C: RCPT TO:<bob@example.org>
        E: RCPT <bob@example.org>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: Subject: hi
        C:
        C: ..leading dot
        C: .
        E: MESSAGE <alice@example.com> SIZE=100 BODY=8BITMIME <bob@example.org> "Subject: hi\r\n\r\n.leading dot\r\n"
        S: 250 2.0.0 Ok: queued
        C: QUIT
        S: 221 2.0.0 Bye
        E: QUIT
        "#,
    );
}

#[test]
fn empty_message_and_null_sender() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<>
        E: MAIL <>
        S: 250 2.1.0 Ok
        C: RCPT TO:<Postmaster>
        E: RCPT <postmaster>
        S: 250 2.1.5 Ok
        C: DATA
        S: 354 End data with <CR><LF>.<CR><LF>
        C: .
        E: MESSAGE <> <postmaster> ""
        S: 250 2.0.0 Ok: queued
        "#,
    );
}

#[test]
fn pipelining_in_one_read() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        D: accept
        D: accept
        D: reject 550 5.1.1 No such user
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        C: RCPT TO:<nobody@example.org>
        C: RCPT TO:<c@example.org>
        C: DATA
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        E: RCPT <nobody@example.org>
        S: 550 5.1.1 No such user
        E: RCPT <c@example.org>
        S: 250 2.1.5 Ok
        S: 354 End data with <CR><LF>.<CR><LF>
        C: body
        C: .
        C: MAIL FROM:<a@example.com>
        C: QUIT
        E: MESSAGE <a@example.com> <b@example.org>,<c@example.org> "body\r\n"
        S: 250 2.0.0 Ok: queued
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        S: 221 2.0.0 Bye
        E: QUIT
        "#,
    );
}

#[test]
fn data_end_split_across_reads() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        C: DATA
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        S: 354 End data with <CR><LF>.<CR><LF>
        R: line one\r
        F:
        R: \n.
        F:
        R: .two\r\n
        F:
        R: \r
        F:
        R: \n.\r
        F:
        R: \n
        E: MESSAGE <a@example.com> <b@example.org> "line one\r\n.two\r\n\r\n"
        S: 250 2.0.0 Ok: queued
        "#,
    );
}

#[test]
fn message_rejected_by_driver() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        C: DATA
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        S: 354 End data with <CR><LF>.<CR><LF>
        D: reject 550 5.7.1 DMARC policy reject
        C: From: x@example.net
        C: .
        S: 550 5.7.1 DMARC policy reject
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        D: accept
        D: accept
        D: reject 451 4.3.0 Try again later
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        C: DATA
        C: x
        C: .
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        S: 354 End data with <CR><LF>.<CR><LF>
        S: 451 4.3.0 Try again later
        ",
    );
}

#[test]
fn driver_421_closes() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        D: reject 421 4.3.2 Shutting down
        C: MAIL FROM:<a@example.com>
        C: NOOP
        E: MAIL <a@example.com>
        S: 421 4.3.2 Shutting down
        E: CLOSE Driver
        C: NOOP
        ",
    );
}

#[test]
fn sequence_errors() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: MAIL FROM:<a@example.com>
        S: 503 5.5.1 Send EHLO or HELO first
        @ehlo
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        C: DATA
        S: 503 5.5.1 Need MAIL before DATA
        C: MAIL FROM:<a@example.com>
        S: 250 2.1.0 Ok
        C: MAIL FROM:<a@example.com>
        S: 503 5.5.1 Sender already specified
        C: DATA
        S: 554 5.5.1 No valid recipients
        C: RSET
        S: 250 2.0.0 Ok
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        ",
    );
}

#[test]
fn ehlo_resets_transaction() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        S: 250 2.1.0 Ok
        @ehlo
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        ",
    );
}

#[test]
fn syntax_errors() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:a@example.com
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL TO:<a@example.com>
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL FROM:<a@example.com>SIZE=1
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL FROM:<a@example.com> SIZE=abc
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL FROM:<a@example.com> SIZE=1 SIZE=2
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL FROM:<a@example.com> SMTPUTF8=yes
        S: 501 5.5.4 Syntax: MAIL FROM:<address> [parameters]
        C: MAIL FROM:<a@example.com> FOO=1
        S: 555 5.5.4 Unsupported parameter
        C: MAIL FROM:<a@example.com> BODY=BINARYMIME
        S: 555 5.5.4 Unsupported parameter
        C: MAIL FROM: <a@example.com>
        S: 250 2.1.0 Ok
        C: RCPT TO:<>
        S: 501 5.5.4 Syntax: RCPT TO:<address>
        C: RCPT TO:<b@example.org> NOTIFY=NEVER
        S: 555 5.5.4 Unsupported parameter
        C: RCPT TO:b@example.org
        S: 501 5.5.4 Syntax: RCPT TO:<address>
        C: DATA now
        S: 501 5.5.4 Syntax: DATA
        C: RSET now
        S: 501 5.5.4 Syntax: RSET
        C: QUIT now
        S: 501 5.5.4 Syntax: QUIT
        C: STARTTLS now
        S: 501 5.5.4 Syntax: STARTTLS
        C: VRFY
        S: 501 5.5.4 Syntax: VRFY address
        ",
    );
}

#[test]
fn simple_commands() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: NOOP
        S: 250 2.0.0 Ok
        C: NOOP anything
        S: 250 2.0.0 Ok
        C: HELP
        S: 214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS
        C: VRFY postmaster
        S: 252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery
        C: EXPN staff
        S: 502 5.5.1 EXPN not available
        C: RSET
        S: 250 2.0.0 Ok
        C: FOO bar
        S: 500 5.5.2 Command not recognized
        C:
        S: 500 5.5.2 Command not recognized
        C: QUIT
        S: 221 2.0.0 Bye
        C: NOOP
        ",
    );
}

#[test]
fn quit_ignores_what_follows() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        C: QUIT
        C: NOOP
        C: NOOP
        S: 221 2.0.0 Bye
        E: QUIT
        C: NOOP
        ",
    );
}

// ---------------------------------------------------------------- addresses

#[test]
fn source_route_is_dropped() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<@relay.example,@other.example:a@example.com>
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        C: RCPT TO:<@mx.example.org:victim@elsewhere.example>
        E: RCPT <victim@elsewhere.example>
        S: 250 2.1.5 Ok
        C: RCPT TO:<victim%elsewhere.example@example.org>
        E: RCPT <victim%elsewhere.example@example.org>
        S: 250 2.1.5 Ok
        ",
    );
}

#[test]
fn smtputf8_addresses() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<jérôme@exemple.fr>
        S: 553 5.6.7 Non-ASCII address requires SMTPUTF8
        C: MAIL FROM:<a@example.com>
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        C: RCPT TO:<élodie@mairie.fr>
        S: 553 5.6.7 Non-ASCII address requires SMTPUTF8
        C: RSET
        S: 250 2.0.0 Ok
        C: MAIL FROM:<jérôme@exemple.fr> SMTPUTF8 BODY=8BITMIME
        E: MAIL <jérôme@exemple.fr> BODY=8BITMIME SMTPUTF8
        S: 250 2.1.0 Ok
        C: RCPT TO:<élodie@mairie.fr>
        E: RCPT <élodie@mairie.fr>
        S: 250 2.1.5 Ok
        ",
    );
}

#[test]
fn address_parser() {
    let ok = [
        ("<a@example.com>", "a@example.com", ""),
        ("<>", "", ""),
        ("<> SIZE=1", "", " SIZE=1"),
        ("<a.b+tag@sub.example.com> X", "a.b+tag@sub.example.com", " X"),
        ("<\"john doe\"@example.com>", "\"john doe\"@example.com", ""),
        ("<\"a\\\"b>\"@example.com>", "\"a\\\"b>\"@example.com", ""),
        ("<a@[192.0.2.1]>", "a@[192.0.2.1]", ""),
        ("<a@[IPv6:2001:db8::1]>", "a@[IPv6:2001:db8::1]", ""),
        ("<@x.example:a@example.com>", "a@example.com", ""),
        ("<@x.example,@y.example:a@example.com>", "a@example.com", ""),
        ("<jérôme@exemple.fr>", "jérôme@exemple.fr", ""),
        ("<user%other@example.com>", "user%other@example.com", ""),
    ];
    for (input, address, rest) in ok {
        assert_eq!(address::parse_path(input), Ok((address.to_owned(), rest)), "{input}");
    }
    let bad = [
        "a@example.com",
        "<a@example.com",
        "<a>",
        "<@example.com>",
        "<.a@example.com>",
        "<a.@example.com>",
        "<a..b@example.com>",
        "<a b@example.com>",
        "<a@>",
        "<a@-example.com>",
        "<a@example..com>",
        "<a@example.com.>",
        "<a@[300.0.0.1]>",
        "<a@[tag:content]>",
        "<a@[IPv6:zz]>",
        "<\"unterminated@example.com>",
        "<@x.example a@example.com>",
        "<x.example:a@example.com>",
        "<a@exa_mple.com>",
    ];
    for input in bad {
        assert_eq!(address::parse_path(input), Err(ArgError::Syntax), "{input}");
    }
}

#[test]
fn mail_params_parser() {
    let params = address::parse_mail_params(" size=42  body=7bit smtputf8").unwrap();
    assert_eq!(params, MailParams { size: Some(42), body: Some(Body::SevenBit), smtputf8: true });
    assert_eq!(address::parse_mail_params(""), Ok(MailParams::default()));
    let huge = address::parse_mail_params(" SIZE=99999999999999999999").unwrap();
    assert_eq!(huge.size, Some(u64::MAX));
    for (input, err) in [
        (" SIZE=", ArgError::Syntax),
        (" SIZE=123456789012345678901", ArgError::Syntax),
        (" BODY=8BITMIME BODY=7BIT", ArgError::Syntax),
        (" SMTPUTF8 SMTPUTF8", ArgError::Syntax),
        (" -X=1", ArgError::Syntax),
        (" X=a=b", ArgError::Syntax),
        (" BODY=BINARYMIME", ArgError::UnknownParam),
        (" AUTH=<>", ArgError::UnknownParam),
    ] {
        assert_eq!(address::parse_mail_params(input), Err(err), "{input}");
    }
}

// ---------------------------------------------------------------- STARTTLS

#[test]
fn starttls_drops_pipelined_commands() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        C: STARTTLS
        C: RSET
        R: RCPT TO:<injected@example.org>\r\n
        S: 220 2.0.0 Ready to start TLS
        E: STARTTLS
        C: RCPT TO:<b@example.org>
        S: 503 5.5.1 Need MAIL before RCPT
        C: MAIL FROM:<a@example.com>
        S: 503 5.5.1 Send EHLO or HELO first
        C: EHLO client.example
        E: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250 CHUNKING
        C: STARTTLS
        S: 503 5.5.1 TLS already active
        ",
    );
}

#[test]
fn starttls_drops_bytes_fed_before_handshake() {
    let now = Instant::now();
    let mut session = Session::new(options(), "mx.example.org", now);
    session.handle_input(b"EHLO c\r\n");
    assert!(matches!(session.poll_event(now), Some(Event::Helo { .. })));
    session.handle_decision(Decision::Accept);
    session.handle_input(b"STARTTLS\r\n");
    assert_eq!(session.poll_event(now), Some(Event::StartTls));
    assert!(!session.wants_input());
    session.handle_input(b"MAIL FROM:<x@example.com>\r\n");
    assert_eq!(session.poll_event(now), None);
    session.handle_tls_started();
    assert!(session.tls_active());
    assert_eq!(session.poll_event(now), None);
    let output = String::from_utf8(session.poll_output().unwrap()).unwrap();
    assert!(output.ends_with("250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"), "{output}");
    assert_eq!(session.poll_output(), None);
}

// ---------------------------------------------------------------- AUTH

/// Submission's options: PLAIN and LOGIN, over implicit TLS.
fn auth_options() -> Options {
    Options { tls_active: true, auth_mechanisms: vec![Mechanism::Plain, Mechanism::Login], ..options() }
}

#[test]
fn auth_is_offered_only_when_mechanisms_are_given_and_tls_is_active() {
    check_with(
        auth_options(),
        "
        S: 220 mx.example.org ESMTP Hameau
        C: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 AUTH PLAIN LOGIN
        ",
    );
    // Before STARTTLS: STARTTLS offered, AUTH neither offered nor accepted (RFC 4954 §6).
    let in_clear = Options { tls_active: false, ..auth_options() };
    check_with(
        in_clear,
        "
        S: 220 mx.example.org ESMTP Hameau
        C: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 STARTTLS
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 538 5.7.11 Encryption required for requested authentication mechanism
        C: STARTTLS
        S: 220 2.0.0 Ready to start TLS
        C: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 AUTH PLAIN LOGIN
        ",
    );
    // The MX offers none: not in EHLO, and refused.
    check_with(
        Options { tls_active: true, ..options() },
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Authentication not enabled
        ",
    );
}

#[test]
fn auth_plain() {
    check_with(
        auth_options(),
        "
        S: 220 mx.example.org ESMTP Hameau
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Send EHLO first
        @ehlo
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        E: AUTH PLAIN - alice secret
        S: 235 2.7.0 Authentication successful
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Already authenticated
        C: EHLO client.example
        E: EHLO client.example
        S: 250-mx.example.org
        S: 250-PIPELINING
        S: 250-SIZE 41943040
        S: 250-8BITMIME
        S: 250-SMTPUTF8
        S: 250-ENHANCEDSTATUSCODES
        S: 250-CHUNKING
        S: 250 AUTH PLAIN LOGIN
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 Already authenticated
        ",
    );
    // Without an initial response, with an authorization identity, then refused.
    check_with(
        auth_options(),
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: auth plain
        S: 334 
        D: reject 535 5.7.8 Authentication credentials invalid
        C: Ym9zcwBhbGljZQBzZWNyZXQ=
        E: AUTH PLAIN boss alice secret
        S: 535 5.7.8 Authentication credentials invalid
        C: MAIL FROM:<a@example.com>
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 503 5.5.1 AUTH not allowed during a mail transaction
        ",
    );
}

#[test]
fn auth_login() {
    check_with(
        auth_options(),
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: YWxpY2U=
        S: 334 UGFzc3dvcmQ6
        C: c2VjcmV0
        E: AUTH LOGIN - alice secret
        S: 235 2.7.0 Authentication successful
        ",
    );
    // The initial response is the user name.
    check_with(
        auth_options(),
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: AUTH LOGIN YWxpY2U=
        S: 334 UGFzc3dvcmQ6
        C: c2VjcmV0
        E: AUTH LOGIN - alice secret
        S: 235 2.7.0 Authentication successful
        ",
    );
}

#[test]
fn auth_errors() {
    check_with(
        Options { limits: Limits { errors_max: 20, ..Limits::default() }, ..auth_options() },
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: AUTH
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: AUTH PLAIN a b
        S: 501 5.5.4 Syntax: AUTH mechanism [initial-response]
        C: AUTH CRAM-MD5
        S: 504 5.5.4 Unrecognized authentication type
        C: AUTH PLAIN
        S: 334 
        C: *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH LOGIN
        S: 334 VXNlcm5hbWU6
        C: YWxpY2U=
        S: 334 UGFzc3dvcmQ6
        C: *
        S: 501 5.0.0 Authentication cancelled
        C: AUTH PLAIN not-base64!
        S: 501 5.5.2 Invalid base64 in the SASL response
        # No password; an empty response; no NUL at all.
        C: AUTH PLAIN AGFsaWNlAA==
        S: 501 5.5.2 Malformed PLAIN response
        C: AUTH PLAIN =
        S: 501 5.5.2 Malformed PLAIN response
        C: AUTH PLAIN YWxpY2UAc2VjcmV0
        S: 501 5.5.2 Malformed PLAIN response
        C: AUTH LOGIN /w==
        S: 501 5.5.2 Credentials must be UTF-8
        # A response line that is not one ends the exchange with its own error.
        C: AUTH PLAIN
        S: 334 
        R: AGFsaWNlAHNlY3JldA==\n
        S: 500 5.5.2 Line must end with CRLF
        C: NOOP
        S: 250 2.0.0 Ok
        "#,
    );
}

#[test]
fn failed_authentications_count_as_errors() {
    let options = Options { limits: Limits { errors_max: 2, ..Limits::default() }, ..auth_options() };
    check_with(
        options,
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        D: reject 535 5.7.8 Authentication credentials invalid
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 535 5.7.8 Authentication credentials invalid
        D: reject 535 5.7.8 Authentication credentials invalid
        C: AUTH PLAIN AGFsaWNlAHNlY3JldA==
        S: 535 5.7.8 Authentication credentials invalid
        S: 421 4.7.0 Too many errors, closing connection
        ",
    );
}

#[test]
fn credentials_hide_the_password_from_debug() {
    let credentials =
        Credentials { mechanism: Mechanism::Plain, authzid: None, username: "alice".into(), password: "secret".into() };
    let debug = format!("{:?}", Event::Auth(credentials));
    assert!(debug.contains("alice") && !debug.contains("secret"), "{debug}");
}

// ---------------------------------------------------------------- smuggling and bare CR/LF

/// Each SMTP smuggling variant of 2023 is followed by what would be a second transaction;
/// it must stay inside the first message, which is refused whole. The harness would accept
/// any message, so no `MESSAGE` event at all proves nothing was delivered.
#[test]
fn smuggling_variants_never_start_a_second_message() {
    for smuggled_end in [r"\n.\n", r"\r.\r", r"\n.\r\n", r"\r\n.\r", r"\r\n.\n", r"\r.\r\n"] {
        let transcript = format!(
            r#"
            S: 220 mx.example.org ESMTP Hameau
            @ehlo
            C: MAIL FROM:<a@example.com>
            C: RCPT TO:<b@example.org>
            C: DATA
            E: MAIL <a@example.com>
            S: 250 2.1.0 Ok
            E: RCPT <b@example.org>
            S: 250 2.1.5 Ok
            S: 354 End data with <CR><LF>.<CR><LF>
            R: Subject: first\r\n\r\nbody{smuggled_end}
            C: MAIL FROM:<admin@example.org>
            C: RCPT TO:<victim@example.org>
            C: DATA
            C: Subject: smuggled
            C:
            C: .
            S: 550 5.6.0 Message contains bare CR or LF, lines must end with CRLF
            C: NOOP
            S: 250 2.0.0 Ok
            "#
        );
        check(&transcript);
    }
}

#[test]
fn bare_lf_and_bare_cr_in_data_are_refused() {
    for body in [r"a\nb\r\n", r"a\rb\r\n", r"\n", r"\r", r"a\r\r\n"] {
        let transcript = format!(
            r#"
            S: 220 mx.example.org ESMTP Hameau
            @ehlo
            C: MAIL FROM:<a@example.com>
            C: RCPT TO:<b@example.org>
            C: DATA
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 354 End data with <CR><LF>.<CR><LF>
            R: {body}\r\n
            C: .
            S: 550 5.6.0 Message contains bare CR or LF, lines must end with CRLF
            C: RCPT TO:<b@example.org>
            S: 503 5.5.1 Need MAIL before RCPT
            "#
        );
        check(&transcript);
    }
}

#[test]
fn data_decoder() {
    // (input, consumed, done, data, bare)
    type Case = (&'static [u8], usize, bool, &'static [u8], bool);
    let cases: [Case; 10] = [
        (b".\r\n", 3, true, b"", false),
        (b"a\r\n.\r\nNOOP\r\n", 6, true, b"a\r\n", false),
        (b"..\r\n.\r\n", 7, true, b".\r\n", false),
        (b"a\n.\nb", 5, false, b"a\n.\nb", true),
        (b"a\r.\r", 4, false, b"a\r.", true),
        (b"a\n.\r\n", 5, false, b"a\n.\r\n", true),
        (b"a\r\n.\rb", 6, false, b"a\r\n\rb", true),
        (b"\r\n.\r\n", 5, true, b"\r\n", false),
        (b".a\r\n", 4, false, b"a\r\n", false),
        (b"a\r\r\n.\r\n", 7, true, b"a\r\r\n", true),
    ];
    for (input, consumed, done, data, bare) in cases {
        let mut decoder = DataDecoder::new(1000);
        assert_eq!(decoder.decode(input), (consumed, done), "{}", input.escape_ascii());
        let decoded = decoder.finish();
        assert_eq!(decoded.data, data, "{}", input.escape_ascii());
        assert_eq!(decoded.bare_cr_or_lf, bare, "{}", input.escape_ascii());
    }
    // Byte by byte gives the same as all at once.
    let input = b"x\r\n..y\r\nz\r\n.\r\n";
    let mut decoder = DataDecoder::new(1000);
    for (idx, byte) in input.iter().enumerate() {
        let (consumed, done) = decoder.decode(std::slice::from_ref(byte));
        assert_eq!(consumed, 1);
        assert_eq!(done, idx == input.len() - 1);
    }
    assert_eq!(decoder.finish().data, b"x\r\n.y\r\nz\r\n");
}

#[test]
fn data_decoder_drops_bytes_over_the_limit() {
    let mut decoder = DataDecoder::new(10);
    assert_eq!(decoder.decode(b"0123456789"), (10, false));
    assert_eq!(decoder.decode(&[b'x'; 100_000]), (100_000, false));
    assert_eq!(decoder.decode(b"\r\n.\r\n"), (5, true));
    let decoded = decoder.finish();
    assert!(decoded.too_big);
    assert!(decoded.data.is_empty() && decoded.data.capacity() == 0);
}

#[test]
fn bare_cr_or_lf_scan() {
    for (data, bare) in [
        (&b""[..], false),
        (b"a\r\nb\r\n", false),
        (b"\n", true),
        (b"\r", true),
        (b"a\r", true),
        (b"a\nb", true),
        (b"\r\r\n", true),
        (b"\r\n\n", true),
    ] {
        assert_eq!(data::has_bare_cr_or_lf(data), bare, "{}", data.escape_ascii());
    }
}

// ---------------------------------------------------------------- BDAT

#[test]
fn bdat_transaction() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 12\r\nSubject: x\r\n
        R: BDAT 8\r\n\r\nbody\r\n
        R: bdat 0 last\r\n
        C: NOOP
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        S: 250 2.0.0 12 octets received
        S: 250 2.0.0 8 octets received
        E: MESSAGE <a@example.com> <b@example.org> "Subject: x\r\n\r\nbody\r\n"
        S: 250 2.0.0 Ok: queued
        S: 250 2.0.0 Ok
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 5 LAST\r\n.\r\n\r\n
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        E: MESSAGE <a@example.com> <b@example.org> ".\r\n\r\n"
        S: 250 2.0.0 Ok: queued
        "#,
    );
}

#[test]
fn bdat_chunk_split_across_reads() {
    check(
        r#"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 12 LAST\r\nab
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        R: cd\r\nQUIT\r
        F:
        R: \nNOOP\r\n
        E: MESSAGE <a@example.com> <b@example.org> "abcd\r\nQUIT\r\n"
        S: 250 2.0.0 Ok: queued
        S: 250 2.0.0 Ok
        "#,
    );
}

#[test]
fn bdat_out_of_sequence_skips_the_chunk() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        R: BDAT 31\\r\\nRCPT TO:<x@example.org>\\r\\nQUIT\\r\\n
        S: 503 5.5.1 Need MAIL and RCPT before BDAT
        @ehlo
        C: MAIL FROM:<a@example.com>
        R: BDAT 6 LAST\\r\\nQUIT\\r\\n
        S: 250 2.1.0 Ok
        S: 503 5.5.1 Need MAIL and RCPT before BDAT
        C: RCPT TO:<b@example.org>
        R: BDAT 3\\r\\nabc
        C: DATA
        C: RCPT TO:<c@example.org>
        S: 250 2.1.5 Ok
        S: 250 2.0.0 3 octets received
        S: 503 5.5.1 DATA not allowed after BDAT
        S: 503 5.5.1 RCPT not allowed after BDAT
        ",
    );
}

#[test]
fn bdat_crlf_across_chunks_and_bare_lf() {
    check(
        r"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 2\r\na\r
        R: BDAT 2 LAST\r\n\nb
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        S: 250 2.0.0 2 octets received
        S: 250 2.0.0 Ok: queued
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 2\r\na\r
        R: BDAT 2 LAST\r\nb\n
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        S: 250 2.0.0 2 octets received
        S: 550 5.6.0 Message contains bare CR or LF, lines must end with CRLF
        ",
    );
}

#[test]
fn bdat_over_message_size() {
    let chunk = "x".repeat(1000);
    check_with(
        small(),
        &format!(
            r"
            S: 220 mx.example.org ESMTP Hameau
            @ehlo
            C: MAIL FROM:<a@example.com>
            C: RCPT TO:<b@example.org>
            R: BDAT 1000\r\n{chunk}
            R: BDAT 1000\r\n{chunk}
            R: BDAT 1000 LAST\r\n{chunk}
            C: NOOP
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 250 2.0.0 1000 octets received
            S: 552 5.3.4 Message size exceeds fixed maximum message size
            S: 503 5.5.1 Need MAIL and RCPT before BDAT
            S: 250 2.0.0 Ok
            "
        ),
    );
}

#[test]
fn bdat_chunk_too_big_closes() {
    check_with(
        small(),
        r"
        S: 220 mx.example.org ESMTP Hameau
        R: BDAT 1025\r\n
        S: 421 4.3.4 BDAT chunk too big, closing connection
        E: CLOSE BdatChunkTooBig
        ",
    );
}

#[test]
fn bdat_malformed_closes() {
    for command in ["BDAT", "BDAT x", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x", "BDAT  1"] {
        check(&format!(
            "
            S: 220 mx.example.org ESMTP Hameau
            C: {command}
            C: NOOP
            S: 421 4.5.4 Syntax: BDAT chunk-size [LAST], closing connection
            E: CLOSE BdatMalformed
            "
        ));
    }
}

// ---------------------------------------------------------------- limits

#[test]
fn default_limits_check() {
    assert_eq!(Limits::default().check(), Ok(()));
    assert_eq!(small_limits().check_consistent(), Ok(()));
    let cases = [
        (Limits { errors_max: 0, ..Limits::default() }, "smtp.errors_max: must be greater than zero"),
        (Limits { data_timeout_s: 0, ..Limits::default() }, "smtp.data_timeout_s: must be greater than zero"),
        (
            Limits { line_bytes_max: 511, ..Limits::default() },
            "smtp.line_bytes_max: 511 is below the 512 octets RFC 5321 §4.5.3.1.4 requires",
        ),
        (
            Limits { reply_bytes_max: 511, ..Limits::default() },
            "smtp.reply_bytes_max: 511 is below the 512 octets of one reply line",
        ),
        (
            Limits { message_bytes_max: 600, bdat_chunk_bytes_max: 600, ..Limits::default() },
            "smtp.line_bytes_max: 4096 is larger than smtp.message_bytes_max (600)",
        ),
        (
            Limits { bdat_chunk_bytes_max: 50 << 20, ..Limits::default() },
            "smtp.bdat_chunk_bytes_max: 52428800 is larger than smtp.message_bytes_max (41943040)",
        ),
    ];
    for (limits, expect) in cases {
        assert_eq!(limits.check_consistent().unwrap_err().to_string(), expect);
    }
    // What an operator may set is narrower than what a session needs.
    let problem = small_limits().check().unwrap_err();
    assert_eq!(
        problem.to_string(),
        "smtp.message_bytes_max: 1024 is out of range: it must be between 65536 and 1073741824"
    );
}

#[test]
fn over_long_line() {
    let long = "x".repeat(600);
    let exact = format!("NOOP {}", "y".repeat(512 - 7));
    check_with(
        small(),
        &format!(
            "
            S: 220 mx.example.org ESMTP Hameau
            C: NOOP {long}
            C: NOOP
            S: 500 5.5.6 Line too long
            S: 250 2.0.0 Ok
            C: {exact}
            S: 250 2.0.0 Ok
            C: {exact}y
            S: 500 5.5.6 Line too long
            R: MAIL {long}
            F:
            R: {long}
            F:
            R: {long}\\r\\nNOOP\\r\\n
            S: 500 5.5.6 Line too long
            S: 250 2.0.0 Ok
            "
        ),
    );
}

#[test]
fn over_long_line_is_not_buffered() {
    let now = Instant::now();
    let mut session = Session::new(small(), "mx.example.org", now);
    for _ in 0..1000 {
        session.handle_input(&[b'x'; 1000]);
        assert_eq!(session.poll_event(now), None);
        assert!(session.wants_input());
    }
    session.handle_input(b"\r\nNOOP\r\n");
    assert_eq!(session.poll_event(now), None);
    let output = session.poll_output().unwrap();
    assert!(output.ends_with(b"500 5.5.6 Line too long\r\n250 2.0.0 Ok\r\n"));
}

#[test]
fn oversized_message() {
    let line = "z".repeat(98);
    let body = format!("{line}\\r\\n").repeat(11);
    check_with(
        small(),
        &format!(
            r#"
            S: 220 mx.example.org ESMTP Hameau
            @ehlo
            C: MAIL FROM:<a@example.com> SIZE=1025
            S: 552 5.3.4 Message size exceeds fixed maximum message size
            C: MAIL FROM:<a@example.com> SIZE=1024
            C: RCPT TO:<b@example.org>
            C: DATA
            E: MAIL <a@example.com> SIZE=1024
            S: 250 2.1.0 Ok
            E: RCPT <b@example.org>
            S: 250 2.1.5 Ok
            S: 354 End data with <CR><LF>.<CR><LF>
            R: {body}
            C: .
            S: 552 5.3.4 Message size exceeds fixed maximum message size
            C: MAIL FROM:<a@example.com>
            E: MAIL <a@example.com>
            S: 250 2.1.0 Ok
            "#
        ),
    );
}

#[test]
fn message_of_exactly_the_limit_is_accepted() {
    let line = "z".repeat(98);
    let body = format!("{line}\\r\\n").repeat(10);
    let mut last = "w".repeat(22);
    last.push_str("\\r\\n");
    check_with(
        small(),
        &format!(
            r#"
            S: 220 mx.example.org ESMTP Hameau
            @ehlo
            C: MAIL FROM:<a@example.com>
            C: RCPT TO:<b@example.org>
            C: DATA
            S: 250 2.1.0 Ok
            S: 250 2.1.5 Ok
            S: 354 End data with <CR><LF>.<CR><LF>
            R: {body}{last}
            C: .
            S: 250 2.0.0 Ok: queued
            "#
        ),
    );
}

#[test]
fn too_many_recipients() {
    check_with(
        small(),
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b1@example.org>
        C: RCPT TO:<b2@example.org>
        C: RCPT TO:<b3@example.org>
        C: RCPT TO:<b4@example.org>
        C: RCPT TO:<b5@example.org>
        C: RCPT TO:<b6@example.org>
        C: RCPT TO:<b7@example.org>
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        S: 250 2.1.5 Ok
        S: 452 4.5.3 Too many recipients
        S: 452 4.5.3 Too many recipients
        S: 452 4.5.3 Too many recipients
        S: 452 4.5.3 Too many recipients
        S: 452 4.5.3 Too many recipients
        ",
    );
}

#[test]
fn too_many_errors() {
    check_with(
        small(),
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        D: accept
        D: reject 550 5.1.1 No such user
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<nobody@example.org>
        C: FOO
        C: BAR
        C: DATA
        C: BAZ
        C: NOOP
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <nobody@example.org>
        S: 550 5.1.1 No such user
        S: 500 5.5.2 Command not recognized
        S: 500 5.5.2 Command not recognized
        S: 554 5.5.1 No valid recipients
        S: 500 5.5.2 Command not recognized
        S: 421 4.7.0 Too many errors, closing connection
        E: CLOSE TooManyErrors
        ",
    );
}

/// A client that pipelines and does not read holds at most `reply_bytes_max` of replies
/// (and one more reply): commands wait in the input until the driver takes the output.
#[test]
fn pipelined_replies_wait_for_the_driver() {
    let limits = Limits { reply_bytes_max: 512, ..Limits::default() };
    let now = Instant::now();
    let mut session = Session::new(Options { limits, ..options() }, "mx.example.org", now);
    let greeting = session.poll_output().unwrap();
    session.handle_input(&b"HELP\r\n".repeat(100));
    let mut n_replies = 0;
    loop {
        assert_eq!(session.poll_event(now), None);
        let output = session.poll_output().unwrap_or_default();
        assert!(output.len() < 512 + 128, "{} bytes queued", output.len());
        n_replies += output.split(|&byte| byte == b'\n').filter(|line| line.starts_with(b"214 ")).count();
        if !session.is_ready() {
            break;
        }
        assert!(!session.wants_input(), "no read while replies wait");
    }
    assert_eq!(n_replies, 100);
    assert!(session.wants_input());
    assert!(greeting.starts_with(b"220 "));
}

#[test]
fn too_many_commands() {
    let options = Options { limits: Limits { commands_max: 3, ..Limits::default() }, ..options() };
    check_with(
        options,
        "
        S: 220 mx.example.org ESMTP Hameau
        C: NOOP
        C: NOOP
        C: NOOP
        C: NOOP
        C: NOOP
        S: 250 2.0.0 Ok
        S: 250 2.0.0 Ok
        S: 250 2.0.0 Ok
        S: 421 4.7.0 Too many commands, closing connection
        E: CLOSE TooManyCommands
        ",
    );
}

// ---------------------------------------------------------------- timeouts

#[test]
fn command_timeout() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        T: 200
        C: NOOP
        S: 250 2.0.0 Ok
        T: 299
        C: NOOP
        S: 250 2.0.0 Ok
        T: 300
        S: 421 4.4.2 Timeout, closing connection
        E: CLOSE CommandTimeout
        T: 1000
        C: NOOP
        ",
    );
}

#[test]
fn data_timeout() {
    check(
        "
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        C: DATA
        E: MAIL <a@example.com>
        S: 250 2.1.0 Ok
        E: RCPT <b@example.org>
        S: 250 2.1.5 Ok
        S: 354 End data with <CR><LF>.<CR><LF>
        T: 179
        R: part of a line
        T: 179
        T: 1
        S: 421 4.4.2 Timeout, closing connection
        E: CLOSE DataTimeout
        ",
    );
}

#[test]
fn bdat_timeout() {
    check(
        r"
        S: 220 mx.example.org ESMTP Hameau
        @ehlo
        C: MAIL FROM:<a@example.com>
        C: RCPT TO:<b@example.org>
        R: BDAT 100\r\nabc
        S: 250 2.1.0 Ok
        S: 250 2.1.5 Ok
        T: 180
        S: 421 4.4.2 Timeout, closing connection
        ",
    );
}

#[test]
fn session_timeout() {
    let mut transcript = String::from("S: 220 mx.example.org ESMTP Hameau\n");
    for _ in 0..7 {
        transcript.push_str("T: 250\nC: NOOP\nS: 250 2.0.0 Ok\n");
    }
    transcript.push_str("T: 50\nS: 421 4.4.2 Timeout, closing connection\nE: CLOSE SessionTimeout\n");
    check(&transcript);
}

#[test]
fn no_command_timeout_while_the_driver_decides() {
    let start = Instant::now();
    let mut session = Session::new(options(), "mx.example.org", start);
    assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(300)));
    session.handle_input(b"EHLO c\r\n");
    let later = start + Duration::from_secs(10);
    assert!(session.poll_event(later).unwrap().needs_decision());
    assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(1800)));
    session.handle_timeout(later + Duration::from_secs(600));
    assert!(!session.is_closed());
    session.handle_decision(Decision::Accept);
    let decided = later + Duration::from_secs(700);
    assert_eq!(session.poll_event(decided), None);
    assert_eq!(session.poll_timeout(), Some(decided + Duration::from_secs(300)));
    session.handle_timeout(start + Duration::from_secs(1800));
    assert_eq!(session.poll_event(decided), Some(Event::Close { reason: CloseReason::SessionTimeout }));
    assert_eq!(session.poll_timeout(), None);
    // A decision that arrives after a close is ignored.
    session.handle_decision(Decision::Accept);
}

// ---------------------------------------------------------------- bad input

#[test]
fn command_line_endings() {
    check(
        r"
        S: 220 mx.example.org ESMTP Hameau
        R: NOOP\n
        S: 500 5.5.2 Line must end with CRLF
        R: NOOP\rNOOP\r\n
        S: 500 5.5.2 Command not recognized
        R: NOOP a\rb\r\n
        S: 501 5.5.4 Invalid character in command
        R: NO\rOP\r\n
        S: 500 5.5.2 Command not recognized
        R: NOOP\r\n
        S: 250 2.0.0 Ok
        ",
    );
}

#[test]
fn binary_garbage() {
    check(
        r"
        S: 220 mx.example.org ESMTP Hameau
        R: \xff\xfe\x00\x01\r\n
        S: 500 5.5.2 Command not recognized
        R: HELO \xff\xfe\r\n
        S: 501 5.5.4 Invalid UTF-8 in command
        R: MAIL FROM:<\x00@example.com>\r\n
        S: 501 5.5.4 Invalid character in command
        R: NOOP\x00\r\n
        S: 500 5.5.2 Command not recognized
        ",
    );
}

/// xorshift64*: a small reproducible generator, so the test needs no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_bytes_never_panic() {
    const PIECES: [&[u8]; 16] = [
        b"EHLO x\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"RCPT TO:<d@e.f>\r\n",
        b"DATA\r\n",
        b"BDAT 5\r\n",
        b"BDAT 3 LAST\r\n",
        b"\r\n.\r\n",
        b"STARTTLS\r\n",
        b"RSET\r\n",
        b"\n.\n",
        b"Subject: x\r\n\r\nbody\r\n.\r\n",
        b"\n",
        b".",
        b" SMTPUTF8",
        b"\xc3\xa9",
        b"QUIT\r\n",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        // The input is read by `fuzz_session`: a setup byte, then feeds each preceded by
        // its length minus one, and `0xFF, n` to advance the clock.
        let mut input = vec![(rng.next() % 8) as u8];
        let n_feeds = rng.next() % 200;
        for _ in 0..n_feeds {
            let roll = rng.next();
            let mut feed = Vec::new();
            match roll % 64 {
                0 => {
                    input.extend_from_slice(&[0xFF, (roll >> 8) as u8 % 40]);
                    continue;
                }
                1..=4 => feed.extend((0..(roll >> 8) % 64 + 1).map(|_| rng.next() as u8)),
                _ => {
                    while feed.len() < 40 {
                        feed.extend_from_slice(PIECES[(rng.next() % 16) as usize]);
                        if rng.next().is_multiple_of(3) {
                            break;
                        }
                    }
                    feed.truncate(64);
                }
            }
            input.push((feed.len() - 1) as u8);
            input.extend_from_slice(&feed);
        }
        crate::fuzzing::fuzz_session(&input);
    }
}

/// A plausible session (EHLO, transactions by DATA or BDAT with random bodies, QUIT), cut
/// into random reads: reaches the deep states that random commands rarely reach.
#[test]
fn random_sessions_never_panic() {
    const BODY_PIECES: [&[u8]; 8] = [
        b"line\r\n",
        b"..dot\r\n",
        b"\n.\n",
        b"\r.\r",
        b"\r\n.\r",
        b"MAIL FROM:<x@y.z>\r\n",
        b"\xc3\xa9\x00\xff",
        b"\r\n",
    ];
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    for _ in 0..5000 {
        let mut script = b"EHLO client.example\r\n".to_vec();
        for _ in 0..rng.next() % 4 {
            script.extend_from_slice(b"MAIL FROM:<a@example.com> SIZE=100\r\n");
            for _ in 0..rng.next() % 4 + 1 {
                script.extend_from_slice(b"RCPT TO:<b@example.org>\r\n");
            }
            let mut body = Vec::new();
            for _ in 0..rng.next() % 8 {
                body.extend_from_slice(BODY_PIECES[(rng.next() % 8) as usize]);
            }
            if rng.next().is_multiple_of(2) {
                script.extend_from_slice(b"DATA\r\n");
                script.extend_from_slice(&body);
                script.extend_from_slice(b"\r\n.\r\n");
            } else {
                let half = body.len() / 2;
                script.extend_from_slice(format!("BDAT {half}\r\n").as_bytes());
                script.extend_from_slice(&body[..half]);
                script.extend_from_slice(format!("BDAT {} LAST\r\n", body.len() - half).as_bytes());
                script.extend_from_slice(&body[half..]);
            }
        }
        script.extend_from_slice(b"QUIT\r\n");
        let mut input = vec![(rng.next() % 8) as u8];
        let mut rest = &script[..];
        while !rest.is_empty() {
            let len = ((rng.next() % 64) as usize + 1).min(rest.len());
            input.push((len - 1) as u8);
            input.extend_from_slice(&rest[..len]);
            rest = &rest[len..];
        }
        crate::fuzzing::fuzz_session(&input);
    }
}

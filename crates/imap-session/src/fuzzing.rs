//! Entry points for cargo-fuzz targets: a whole session driven from raw bytes, and the
//! parser alone.

use std::time::{Duration, Instant};

use crate::parse::{self, ParseOptions};
use crate::{
    Code, CommandBody, Event, Extensions, FetchAttribute, Flag, Limits, ListItem, LoginError, MailboxAttribute,
    Options, SequenceSet, Session, Status,
};

/// Drives one session from `bytes` and checks that it never panics, that the output is
/// well framed (every line is untagged, a continuation or tagged, literals are whole), and
/// that memory stays bounded.
///
/// The first byte picks the options (small limits, TLS, plaintext login, LITERAL+,
/// preauth). Then, repeatedly, one byte gives the length of the next feed (1–128 bytes);
/// `0xFF` instead advances the clock by the next byte times 10 s and checks timeouts. The
/// fake driver answers each event with an outcome taken from the last fed bytes, writing
/// some untagged data (FETCH with literals, LIST, ESEARCH) first.
pub fn fuzz_session(bytes: &[u8]) {
    let Some((&setup, mut rest)) = bytes.split_first() else {
        return;
    };
    let limits = if setup & 1 == 1 {
        Limits {
            command_line_bytes_max: 8192,
            literal_bytes_max: 16384,
            append_bytes_max: 32768,
            literal_discard_bytes_max: 65536,
            nesting_depth_max: 8,
            pipelined_bytes_max: 1024,
            errors_max: 8,
            auth_failures_max: 2,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let options = Options {
        limits,
        extensions: Extensions { literal_plus: setup & 2 == 0, ..Extensions::default() },
        starttls_available: setup & 4 == 4,
        tls_active: setup & 8 == 8,
        plaintext_auth_allowed: setup & 16 == 16,
        preauthenticated: setup & 32 == 32,
        greeting: "fuzz".to_owned(),
    };
    let mut now = Instant::now();
    let mut session = Session::new(options, now);
    let mut output = Vec::new();
    let mut choice = 0u8;
    while let Some((&len_byte, tail)) = rest.split_first() {
        if len_byte == 0xFF {
            let Some((&tens, tail)) = tail.split_first() else {
                break;
            };
            now += Duration::from_secs(u64::from(tens) * 10);
            session.handle_timeout(now);
            rest = tail;
        } else {
            let len = (usize::from(len_byte) % 128 + 1).min(tail.len());
            session.handle_input(&tail[..len]);
            choice = tail[..len].iter().fold(choice, |acc, &byte| acc.rotate_left(1) ^ byte);
            rest = &tail[len..];
        }
        drive(&mut session, now, choice, &mut output);
        assert!(session.buffered_bytes() <= 200_000, "session buffers grew to {}", session.buffered_bytes());
        if session.is_closed() {
            break;
        }
    }
    check_output(&output);
}

/// Parses `bytes` as one command (literals split out as the framer would) in both modes;
/// it must not panic.
pub fn fuzz_parse(bytes: &[u8]) {
    let (text, literals) = split_literals(bytes);
    for utf8 in [false, true] {
        let _ = parse::parse_command(&text, literals.clone(), ParseOptions { utf8, depth_max: 32 });
    }
}

/// Splits wire bytes into command text and literals, as the session's framer does.
pub(crate) fn split_literals(wire: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut text = Vec::new();
    let mut literals = Vec::new();
    let mut rest = wire;
    let mut ends_with_literal = false;
    while !rest.is_empty() {
        let line_len = rest.iter().position(|&byte| byte == b'\n').map_or(rest.len(), |idx| idx + 1);
        let line = &rest[..line_len];
        text.extend_from_slice(line);
        rest = &rest[line_len..];
        ends_with_literal = false;
        let Some(length) = marker_length(line) else { continue };
        let take = length.min(rest.len());
        literals.push(rest[..take].to_vec());
        rest = &rest[take..];
        ends_with_literal = true;
    }
    if !ends_with_literal {
        let end = text.strip_suffix(b"\r\n").map_or(text.len(), |stripped| stripped.len());
        text.truncate(end);
    }
    (text, literals)
}

fn marker_length(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let open = line.iter().rposition(|&byte| byte == b'{')?;
    let digits = &line[open + 1..];
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn drive(session: &mut Session, now: Instant, choice: u8, output: &mut Vec<u8>) {
    let mut round = 0u8;
    while let Some(event) = session.poll_event(now) {
        round = round.wrapping_add(1);
        let pick = choice.wrapping_add(round);
        match event {
            Event::Command(command) => {
                answer(session, &command.body, pick);
                let (status, code) = match pick % 5 {
                    0 => (Status::No, Some(Code::TryCreate)),
                    1 => (Status::Bad, None),
                    2 => (Status::Ok, Some(Code::ReadOnly)),
                    _ => (Status::Ok, None),
                };
                session.complete(&command.tag, status, code, "done");
            }
            Event::Login { .. } => {
                session.handle_login(if pick.is_multiple_of(3) { Err(LoginError::Failed) } else { Ok(()) })
            }
            Event::Idle { .. } => session.untagged().exists(u32::from(pick)),
            Event::IdleDone { tag } => session.complete(&tag, Status::Ok, None, "IDLE terminated"),
            Event::StartTls => session.handle_tls_started(),
            Event::Compress { tag } => {
                let status = if pick.is_multiple_of(2) { Status::Ok } else { Status::No };
                session.complete(&tag, status, None, "compress");
                if status == Status::Ok {
                    let pending = session.take_buffered_input();
                    session.handle_input(&pending);
                }
            }
            Event::Close { .. } => {}
        }
        output.extend(session.poll_output().unwrap_or_default());
        if pick == 0xAB {
            session.bye("Server shutting down");
        }
    }
    output.extend(session.poll_output().unwrap_or_default());
}

/// Untagged data for some commands, exercising the writer.
fn answer(session: &mut Session, body: &CommandBody, pick: u8) {
    let mut out = session.untagged();
    match body {
        CommandBody::Fetch { attributes, .. } => {
            let mut fetch = out.fetch(1);
            for attribute in attributes {
                match attribute {
                    FetchAttribute::Uid => {
                        fetch.uid(7);
                    }
                    FetchAttribute::Flags => {
                        fetch.flags(&[Flag::Seen, Flag::Keyword("$Junk".to_owned())], pick.is_multiple_of(2));
                    }
                    FetchAttribute::BodySection { section, partial, .. } => {
                        fetch.body_section(
                            section,
                            partial.map(|partial| partial.origin),
                            Some(b"Subject: x\r\n\r\n\0"),
                        );
                    }
                    FetchAttribute::Envelope => {
                        let mut envelope = fetch.envelope();
                        envelope.string(b"date").nstring(None).string("ünïcode \"q\"".as_bytes());
                        envelope.list().list().nil().nil().string(b"user").string(b"example.org");
                    }
                    _ => {
                        fetch.rfc822_size(12);
                    }
                }
            }
        }
        CommandBody::List(_) | CommandBody::Lsub { .. } => {
            out.list(&ListItem {
                attributes: &[MailboxAttribute::HasNoChildren],
                delimiter: Some('/'),
                mailbox: "Boîte & co",
                child_info_subscribed: pick.is_multiple_of(2),
                old_name: None,
            });
        }
        CommandBody::Search { .. } => {
            let all = SequenceSet::from_sorted([1, 2, 3, 9]);
            out.esearch(&crate::Esearch {
                tag: Some("a"),
                uid: true,
                all: all.as_ref(),
                count: Some(4),
                ..Default::default()
            });
        }
        _ => out.status(Status::Ok, Some(Code::UidNext(u32::from(pick) + 1)), "next"),
    }
}

/// Every output line is `* `, `+ ` or `tag OK|NO|BAD `; literals are skipped whole.
fn check_output(output: &[u8]) {
    let mut rest = output;
    let mut line_start = true;
    while !rest.is_empty() {
        let line_len = rest.iter().position(|&byte| byte == b'\n').expect("output ends with a line end") + 1;
        let line = &rest[..line_len];
        assert!(line.ends_with(b"\r\n"), "bare LF in output {line:?}");
        if line_start {
            let ok = line.starts_with(b"* ") || line.starts_with(b"+ ") || is_tagged_status(line);
            assert!(ok, "bad response line {:?}", String::from_utf8_lossy(line));
        }
        rest = &rest[line_len..];
        line_start = true;
        if let Some(length) = marker_length(line) {
            assert!(rest.len() >= length, "literal cut short");
            rest = &rest[length..];
            line_start = false;
        }
    }
}

fn is_tagged_status(line: &[u8]) -> bool {
    let Some(space) = line.iter().position(|&byte| byte == b' ') else {
        return false;
    };
    let rest = &line[space + 1..];
    parse::is_tag(&line[..space]) && [&b"OK "[..], b"NO ", b"BAD "].iter().any(|status| rest.starts_with(status))
}

impl Session {
    /// Bytes held in the session's buffers (input, command, literals), for the fuzzer's
    /// memory bound.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buffered_bytes_inner()
    }
}

/// LIST patterns: `bytes` is a pattern, a NUL, then a mailbox name (no NUL: the whole
/// input is a pattern against `INBOX/a`). Checks that matching never panics, takes time
/// linear in the name, and agrees with the RFC's backtracking definition on small inputs.
pub fn fuzz_list_match(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let (pattern, name) = text.split_once('\0').unwrap_or((&text, "INBOX/a"));
    let matched = crate::list_match::matches(pattern, name, '/');
    // `INBOX` is folded to upper case in both (RFC 9051 §5.1); the reference knows nothing
    // of it, so it checks the other inputs.
    let mentions_inbox = |text: &str| text.to_ascii_lowercase().contains("inbox");
    if pattern.chars().count() <= 12 && name.chars().count() <= 12 && !mentions_inbox(pattern) && !mentions_inbox(name)
    {
        let expect = reference_match(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>());
        assert_eq!(matched, expect, "{pattern:?} against {name:?}");
    }
}

/// RFC 9051 §6.3.9 by backtracking, for small inputs only.
fn reference_match(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|skip| reference_match(rest, &name[skip..])),
        Some(('%', rest)) => {
            let stop = name.iter().position(|c| *c == '/').unwrap_or(name.len());
            (0..=stop).any(|skip| reference_match(rest, &name[skip..]))
        }
        Some((c, rest)) => name.first() == Some(c) && reference_match(rest, &name[1..]),
    }
}

/// THREAD: messages decoded from `bytes`, threaded by REFERENCES and ORDEREDSUBJECT with
/// small bounds. Checks that it never panics, that every message is in the answer exactly
/// once (or the work budget ran out), and that the answer's parentheses balance.
///
/// Each message takes bytes as: id (0xF0 and above: no Message-ID), date, subject
/// (three choices), a count of references, then that many reference bytes. Ids are small
/// numbers, so references meet and loops appear.
pub fn fuzz_thread(bytes: &[u8]) {
    let mut messages = Vec::new();
    let mut rest = bytes;
    while let [id, date, subject, n_refs, tail @ ..] = rest {
        let n = (*n_refs as usize % 64).min(tail.len());
        let (references, after) = tail.split_at(n);
        messages.push(crate::thread::Message {
            number: messages.len() as u32 + 1,
            message_id: (*id < 0xF0).then(|| format!("{}", id % 48)),
            references: references.iter().map(|r| format!("{}", r % 48)).collect(),
            date: i64::from(*date % 8),
            subject: ["Budget", "Re: Budget", "Fwd: [conseil] budget (fwd)", ""][*subject as usize % 4].to_string(),
        });
        rest = after;
    }
    let options = crate::thread::Options { references_max: 16, work_max: 100_000 };
    let mut outputs = Vec::new();
    if let Ok(threads) = crate::thread::references(&messages, options) {
        outputs.push(threads);
    }
    outputs.push(crate::thread::ordered_subject(&messages));
    for threads in outputs {
        let mut numbers: Vec<u32> = threads.nodes.iter().filter_map(|node| node.message).collect();
        numbers.sort_unstable();
        assert!(numbers.iter().copied().eq(1..=messages.len() as u32), "each message once: {numbers:?}");
        let mut out = Vec::new();
        crate::write::write_threads(&mut out, &threads);
        let opened = out.iter().filter(|b| **b == b'(').count();
        assert_eq!(opened, out.iter().filter(|b| **b == b')').count());
        assert_eq!(opened, threads.roots.len() + branches(&threads));
    }
}

/// The parenthesised sub-threads below branches (nodes with several children, or a dummy's).
fn branches(threads: &crate::Threads) -> usize {
    threads
        .nodes
        .iter()
        .filter(|node| node.children.len() > 1 || (node.message.is_none() && !node.children.is_empty()))
        .map(|node| node.children.len())
        .sum()
}

//! An entry point for a cargo-fuzz target that drives a whole session from raw bytes.

use std::time::{Duration, Instant};

use crate::{Decision, Event, Limits, Options, Reply, Session};

/// Drives one session from `bytes` and checks that it never panics, that every reply is
/// well formed, and that memory stays bounded.
///
/// The first byte picks the options (small limits, STARTTLS available). Then, repeatedly,
/// one byte gives the length of the next feed (1–64 bytes); a length byte of `0xFF`
/// instead advances the clock by the next byte times 10 s and checks timeouts. Decisions
/// alternate between accepting and rejecting.
pub fn fuzz_session(bytes: &[u8]) {
    let Some((&setup, mut rest)) = bytes.split_first() else {
        return;
    };
    let limits = if setup & 1 == 1 {
        Limits {
            line_bytes_max: 512,
            message_bytes_max: 2048,
            bdat_chunk_bytes_max: 1024,
            recipients_max: 3,
            commands_max: 64,
            errors_max: 8,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let options = Options { limits, starttls_available: setup & 2 == 2, tls_active: setup & 4 == 4 };
    let mut now = Instant::now();
    let mut session = Session::new(options, "mx.example.org", now);
    let mut accept = true;
    let mut output = Vec::new();
    while let Some((&len_byte, tail)) = rest.split_first() {
        if len_byte == 0xFF {
            let Some((&seconds, tail)) = tail.split_first() else {
                break;
            };
            now += Duration::from_secs(u64::from(seconds) * 10);
            session.handle_timeout(now);
            rest = tail;
        } else {
            let len = (usize::from(len_byte) % 64 + 1).min(tail.len());
            session.handle_input(&tail[..len]);
            rest = &tail[len..];
        }
        drive(&mut session, now, &mut accept, &mut output);
        if session.is_closed() {
            break;
        }
    }
    check_replies(&output);
}

fn drive(session: &mut Session, now: Instant, accept: &mut bool, output: &mut Vec<u8>) {
    while let Some(event) = session.poll_event(now) {
        if event.needs_decision() {
            let decision =
                if *accept { Decision::Accept } else { Decision::Reject(Reply::new(550, "5.7.1", "Refused")) };
            *accept = !*accept;
            session.handle_decision(decision);
        } else if event == Event::StartTls {
            session.handle_tls_started();
        }
        output.extend(session.poll_output().unwrap_or_default());
    }
    output.extend(session.poll_output().unwrap_or_default());
}

/// Every reply line is `ddd`, then a space or a dash, then printable text, then CRLF.
fn check_replies(output: &[u8]) {
    assert!(output.is_empty() || output.ends_with(b"\r\n"), "output must end with CRLF");
    for line in output.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
        let line = line.strip_suffix(b"\r").expect("reply lines end with CRLF");
        assert!(line.len() >= 4, "short reply line {line:?}");
        assert!(line[..3].iter().all(u8::is_ascii_digit), "bad reply code {line:?}");
        assert!(matches!(line[0], b'2'..=b'5'), "bad reply class {line:?}");
        assert!(line[3] == b' ' || line[3] == b'-', "bad reply separator {line:?}");
        assert!(!line.iter().any(|&byte| byte == b'\r' || byte == 0), "control byte in {line:?}");
    }
}

//! An entry point for a cargo-fuzz target that drives a whole session from raw bytes.

use std::time::{Duration, Instant};

use crate::{Decision, Event, Limits, Mechanism, Options, Reply, Session};

/// Drives one session from `bytes` and checks that it never panics, that every reply is
/// well formed, and that memory stays bounded.
///
/// The first byte picks the options (small limits, STARTTLS available, TLS active, AUTH
/// offered). Then, repeatedly,
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
            reply_bytes_max: 512,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let reply_bytes_max = limits.reply_bytes_max;
    let auth_mechanisms = if setup & 8 == 8 { vec![Mechanism::Plain, Mechanism::Login] } else { Vec::new() };
    let options = Options { limits, starttls_available: setup & 2 == 2, tls_active: setup & 4 == 4, auth_mechanisms };
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
        drive(&mut session, now, &mut accept, &mut output, reply_bytes_max);
        if session.is_closed() {
            break;
        }
    }
    check_replies(&output);
}

fn drive(session: &mut Session, now: Instant, accept: &mut bool, output: &mut Vec<u8>, reply_bytes_max: usize) {
    loop {
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
        let queued = session.poll_output().unwrap_or_default();
        // Replies queued between two writes stay within the limit and one more reply.
        assert!(queued.len() < reply_bytes_max + 512, "{} bytes of replies queued", queued.len());
        output.extend(queued);
        if !session.is_ready() {
            break;
        }
    }
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

/// The authserv-id the `auth_results` target claims as ours.
pub const FUZZ_AUTHSERV_ID: &str = "mx.example.org";

/// Strips our `Authentication-Results` from a message given as `bytes`
/// ([`crate::header::strip_results`]) and checks that no field of the result claims our
/// authserv-id, that stripping again changes nothing, that only whole fields went away,
/// and that the body is untouched.
pub fn fuzz_auth_results(bytes: &[u8]) {
    use crate::header::{Fields, is_results_of, strip_results_into};
    let mut stripped = Vec::new();
    let n_removed = strip_results_into(bytes, FUZZ_AUTHSERV_ID, &mut stripped);
    let mut fields_in = Fields::new(bytes);
    let n_fields_in = fields_in.by_ref().count();
    let mut fields_out = Fields::new(&stripped);
    let mut n_fields_out = 0;
    for field in fields_out.by_ref() {
        assert!(!is_results_of(&field, FUZZ_AUTHSERV_ID), "a field claiming our id survived: {field:?}");
        n_fields_out += 1;
    }
    assert_eq!(n_fields_out + n_removed, n_fields_in, "only whole fields are removed");
    let body_in = &bytes[fields_in.body_start().expect("fields exhausted")..];
    let body_out = &stripped[fields_out.body_start().expect("fields exhausted")..];
    assert_eq!(body_in, body_out, "the body is untouched");
    let mut again = Vec::new();
    assert_eq!(strip_results_into(&stripped, FUZZ_AUTHSERV_ID, &mut again), 0);
    assert_eq!(again, stripped);
}

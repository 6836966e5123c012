use mail_parser::{MessageParser, MimeHeaders};

use super::{Kind, Report, build, diagnostic, enhanced_status, original_header};
use crate::{Recipient, State};

const NOW: u64 = 1_795_000_000;

fn recipient(address: &str, reply: &str) -> Recipient {
    Recipient {
        address: address.into(),
        state: State::Failed { at: NOW },
        attempts: 1,
        last_reply: Some(reply.into()),
        next_at: NOW,
        delay_notified: false,
    }
}

const ORIGINAL: &[u8] =
    b"From: agent@mairie.fr\r\nTo: x@ailleurs.fr\r\nSubject: Conseil municipal\r\n\r\nSecret body\r\n";

fn report<'a>(kind: Kind, recipients: &'a [Recipient]) -> Report<'a> {
    Report {
        hostname: "mx.mairie.fr",
        to: "agent@mairie.fr",
        kind,
        recipients,
        original: ORIGINAL,
        queued_at: NOW - 60,
        now: NOW,
        id: "42.1795000000",
    }
}

#[test]
fn a_failure_notice_is_a_bilingual_multipart_report() {
    let recipients = [recipient("x@ailleurs.fr", "550 5.1.1 <x@ailleurs.fr>: no such user\r\nInjected: yes")];
    let raw = build(&report(Kind::Failed, &recipients));
    let message = MessageParser::default().parse(&raw).expect("parses");
    let content_type = message.content_type().unwrap();
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("report"));
    assert_eq!(content_type.attribute("report-type"), Some("delivery-status"));
    assert_eq!(message.from().unwrap().first().unwrap().address(), Some("MAILER-DAEMON@mx.mairie.fr"));
    assert_eq!(message.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
    assert!(message.subject().unwrap().contains("non distribué"));
    let human = message.body_text(0).unwrap();
    let (french, english) = human.split_once("-- English --").expect("French, then English");
    assert!(french.contains("n'a pas pu distribuer") && french.contains("<x@ailleurs.fr>"), "{french}");
    assert!(english.contains("could not deliver"), "{english}");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Content-Type: message/delivery-status"), "{text}");
    assert!(text.contains("Reporting-MTA: dns; mx.mairie.fr"));
    assert!(text.contains("Final-Recipient: rfc822; x@ailleurs.fr\r\nAction: failed\r\nStatus: 5.1.1\r\n"), "{text}");
    // The receiver's reply is quoted on one line: it cannot add a field.
    assert!(
        text.contains("Diagnostic-Code: smtp; 550 5.1.1 <x@ailleurs.fr>: no such user Injected: yes\r\n"),
        "{text}"
    );
    assert!(!text.contains("\r\nInjected: yes"));
    // The original header is attached, not its body.
    assert!(text.contains("Content-Type: text/rfc822-headers"));
    assert!(text.contains("Subject: Conseil municipal"));
    assert!(!text.contains("Secret body"));
}

#[test]
fn a_delay_notice_says_until_when() {
    let recipients = [recipient("x@ailleurs.fr", "451 4.3.0 try again later")];
    let raw = build(&report(Kind::Delayed { retry_until: NOW + 86_400 }, &recipients));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("Action: delayed\r\nStatus: 4.3.0\r\n"), "{text}");
    assert!(text.contains("Will-Retry-Until: "));
    let message = MessageParser::default().parse(&raw).unwrap();
    assert!(message.body_text(0).unwrap().contains("continue d'essayer"));
}

#[test]
fn pieces() {
    assert_eq!(enhanced_status("550 5.1.1 no"), Some("5.1.1".into()));
    assert_eq!(enhanced_status("550 no such user"), None);
    assert_eq!(enhanced_status("550 9.1.1 x"), None);
    assert_eq!(enhanced_status("451 4.7.1234 x"), None);
    assert_eq!(enhanced_status(""), None);
    assert_eq!(diagnostic("a\r\nb\tc\u{1}é"), "a b c");
    assert_eq!(diagnostic(&"x".repeat(10_000)).len(), 512);
    assert_eq!(original_header(b"A: 1\r\n\r\nbody"), "A: 1\r\n");
    assert_eq!(original_header(b"A: 1\r\nB: 2"), "A: 1\r\nB: 2");
    let huge = [b"A: 1\r\n".repeat(20_000), b"\r\nbody".to_vec()].concat();
    let cut = original_header(&huge);
    assert!(cut.len() <= super::ORIGINAL_HEADER_BYTES_MAX && cut.ends_with("\r\n"));
}

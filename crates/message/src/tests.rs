use crate::{Error, Limits, parse};

#[test]
fn attached_message_is_described_in_place() {
    let raw = b"From: a@b.test\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\nSubject: fwd\r\n\
                Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
                --b1\r\nContent-Type: text/plain; charset=utf-8; format=flowed\r\nContent-Language: fr\r\n\r\n\
                Voir ci-joint.\r\nMerci\r\n\
                --b1\r\nContent-Type: message/rfc822\r\nContent-Description: le message\r\n\r\n\
                From: c@d.test\r\nSubject: original\r\n\r\nTexte original\r\n\
                --b1--\r\n";
    let summary = parse(raw, &Limits::default()).expect("parsed").summary;
    assert_eq!(summary.date.as_deref(), Some("Tue, 24 Nov 2026 10:00:00 +0100"));
    let text = &summary.parts[1];
    assert_eq!(text.params, vec![("charset".into(), "utf-8".into()), ("format".into(), "flowed".into())]);
    assert_eq!(text.language, vec!["fr".to_string()]);
    assert_eq!(text.lines, 2);
    let attached = &summary.parts[2];
    assert_eq!(attached.content_type, "message/rfc822");
    assert_eq!(attached.description.as_deref(), Some("le message"));
    let nested = attached.message.as_ref().expect("described");
    assert_eq!(nested.subject.as_deref(), Some("original"));
    let nested_body = &nested.parts[0];
    assert_eq!(&raw[nested_body.offset_body as usize..nested_body.offset_end as usize], b"Texte original");
}

fn limits() -> Limits {
    Limits::default()
}

#[test]
fn summary_over_its_limit_is_refused() {
    let subject = "x".repeat(1_200_000);
    let raw = format!("From: a@b.test\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let err = parse(raw.as_bytes(), &limits()).unwrap_err();
    assert!(matches!(err, Error::SummaryTooLarge { max: 1048576, .. }), "{err}");
    let ok = parse(b"From: a@b.test\r\nSubject: short\r\n\r\nhello\r\n", &limits()).unwrap();
    assert_eq!(ok.summary.subject.as_deref(), Some("short"));
    assert_eq!(ok.text, "hello");
    assert!(ok.summary_json.len() < 1024);
}

#[test]
fn text_is_cut_at_its_limit_on_a_char_boundary() {
    let raw = format!("From: a@b.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n", "é".repeat(100));
    let small = Limits { text_bytes_max: 11, ..limits() };
    assert_eq!(parse(raw.as_bytes(), &small).unwrap().text, "ééééé");
}

#[test]
fn thread_lookups_keep_the_root_and_the_parent() {
    let references: Vec<String> = (0..40_000).map(|i| format!("<r{i}@x.test>")).collect();
    let raw =
        format!("From: a@b.test\r\nReferences: {}\r\nIn-Reply-To: <parent@x.test>\r\n\r\nhi\r\n", references.join(" "));
    let parsed = parse(raw.as_bytes(), &limits()).unwrap();
    assert_eq!(parsed.summary.references.len(), 40_000);
    let lookups = parsed.thread_lookups;
    assert_eq!(lookups.len(), 32);
    assert_eq!(lookups[0], "r0@x.test");
    assert_eq!(lookups[15], "r15@x.test");
    assert_eq!(lookups[16], "r39985@x.test");
    assert_eq!(lookups[31], "parent@x.test");
    let few = parse(b"From: a@b.test\r\nReferences: <a@x> <b@x>\r\nIn-Reply-To: <b@x>\r\n\r\n", &limits()).unwrap();
    assert_eq!(few.thread_lookups, vec!["a@x".to_string(), "b@x".into(), "b@x".into()]);
}

#[test]
fn offsets_always_lie_within_the_message() {
    // Truncated in the middle of a part, and without any body at all.
    for raw in [
        &b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nab"[..],
        b"Subject: x",
        b"",
        b"\r\n\r\n",
    ] {
        crate::fuzzing::fuzz_ingest(raw);
    }
}

/// Found by the `ingest` fuzz target (from a message of mail-parser's test set): makes
/// mail-parser 0.11.9 panic ("Invalid part ID, could not find multipart", a
/// `debug_assert!`, so in builds with debug assertions). The boundary answers, never panics.
#[test]
fn a_panic_inside_the_parser_is_a_refusal() {
    let raw = include_bytes!("../../../fuzz/corpus/ingest/panic-invalid-part-id.eml");
    match parse(raw, &limits()) {
        Err(Error::Unreadable(why)) => assert!(why.contains("part ID"), "{why}"),
        // Without debug assertions mail-parser reads it; with them, it must not get here.
        Ok(_) => {
            let debug_assertions = cfg!(debug_assertions);
            assert!(!debug_assertions, "mail-parser no longer panics here: keep the seed, update this test");
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn accents_fold_one_character_for_one() {
    use crate::{fold_accents, fold_char};
    assert_eq!(fold_accents("État, préfecture, garçon, Noël, à l'œil"), "Etat, prefecture, garcon, Noel, a l'œil");
    assert_eq!(fold_accents("déjà"), "deja");
    // Already plain: not copied.
    assert!(matches!(fold_accents("mairie"), std::borrow::Cow::Borrowed(_)));
    // Decomposed input: the base letter stays, the combining mark folds to itself (a mark
    // has no decomposition), so both spellings keep their length in characters.
    for text in ["e\u{301}te\u{301}", "ÉTÉ", "ß", "東京", "🙂"] {
        assert_eq!(fold_accents(text).chars().count(), text.chars().count(), "{text}");
    }
    assert_eq!(fold_char('ñ'), 'n');
    assert_eq!(fold_char('Å'), 'A');
}

use super::*;

#[test]
fn imap_spellings_parse_in_any_case() {
    assert_eq!(Keyword::parse_imap("\\seen"), Some(Keyword::Seen));
    assert_eq!(Keyword::parse_imap("\\DELETED"), Some(Keyword::Deleted));
    assert_eq!(Keyword::parse_imap("$Junk"), Some(Keyword::Junk));
    assert_eq!(Keyword::parse_imap("$NOTJUNK"), Some(Keyword::NotJunk));
    assert_eq!(Keyword::parse_imap("$MDNSent"), Some(Keyword::MdnSent));
    assert_eq!(Keyword::parse_imap("Urgent"), Some(Keyword::Custom("urgent".into())));
    // A session's flag, an unknown extension flag, and words that are not atoms.
    for refused in ["\\Recent", "\\Important", "", "a b", "a(b", "\\", "é"] {
        assert_eq!(Keyword::parse_imap(refused), None, "{refused:?}");
    }
    let long = "k".repeat(JMAP_KEYWORD_BYTES_MAX + 1);
    assert_eq!(Keyword::parse_imap(&long), Some(Keyword::Custom(long.clone())));
    assert_eq!(Keyword::parse_jmap(&long), None);
}

#[test]
fn jmap_spellings_map_the_system_flags() {
    assert_eq!(Keyword::parse_jmap("$Seen"), Some(Keyword::Seen));
    assert_eq!(Keyword::parse_jmap("$answered"), Some(Keyword::Answered));
    assert_eq!(Keyword::parse_jmap("$flagged"), Some(Keyword::Flagged));
    assert_eq!(Keyword::parse_jmap("$draft"), Some(Keyword::Draft));
    assert_eq!(Keyword::parse_jmap("$junk"), Some(Keyword::Junk));
    assert_eq!(Keyword::parse_jmap("\\Seen"), None);
    // JMAP has no `\Deleted`: `$deleted` is a keyword like any other.
    assert_eq!(Keyword::parse_jmap("$deleted"), Some(Keyword::Custom("$deleted".into())));
    assert_eq!(Keyword::Seen.jmap(), Some("$seen"));
    assert_eq!(Keyword::Deleted.jmap(), None);
    assert_eq!(Keyword::Junk.jmap(), Some("$junk"));
    assert_eq!(Keyword::Custom("$label1".into()).jmap(), Some("$label1"));
    for keyword in [Keyword::Seen, Keyword::Answered, Keyword::Flagged, Keyword::Draft, Keyword::Forwarded] {
        assert_eq!(keyword.jmap().and_then(Keyword::parse_jmap), Some(keyword));
    }
}

#[test]
fn spellings_and_order_follow_the_records() {
    assert_eq!(Keyword::Seen.imap(), "\\Seen");
    assert_eq!(Keyword::Junk.imap(), "$Junk");
    assert_eq!(Keyword::Junk.stored(), "$junk");
    assert_eq!(Keyword::Custom("$label1".into()).imap(), "$label1");
    assert_eq!(Keyword::Junk.registered(), Some("$Junk"));
    assert_eq!(Keyword::Custom("x".into()).registered(), None);
    assert!(Keyword::Deleted.is_system_flag() && !Keyword::Junk.is_system_flag());
    // A custom keyword spelled as a known one is the known one.
    assert_eq!(Keyword::Custom("$junk".into()), Keyword::Junk);
    let mut sorted = vec![Keyword::Seen, Keyword::Custom("urgent".into()), Keyword::Forwarded, Keyword::Answered];
    sorted.sort();
    assert_eq!(sorted, ["$forwarded", "\\Answered", "\\Seen", "urgent"]);
}

/// Records written before keywords had a type hold plain strings, an old extension flag
/// among them: they read back as they were and are written the same way again.
#[test]
fn old_records_read_back_unchanged() {
    let old = r#"["$forwarded","\\Seen","\\Foo","$label1","$junk"]"#;
    let keywords: Vec<Keyword> = serde_json::from_str(old).unwrap();
    assert_eq!(
        keywords,
        [
            Keyword::Forwarded,
            Keyword::Seen,
            Keyword::Custom("\\Foo".into()),
            Keyword::Custom("$label1".into()),
            Keyword::Junk
        ]
    );
    assert_eq!(serde_json::to_string(&keywords).unwrap(), old);
    assert_eq!(keywords[2].jmap(), None);
}

/// A mailbox index entry written before keywords had a type: the same bytes then and now.
#[test]
fn old_index_entries_read_back_unchanged() {
    let old: Vec<u8> = [&7u64.to_be_bytes()[..], &9u64.to_be_bytes(), &100u32.to_be_bytes(), &5u64.to_be_bytes()]
        .concat()
        .into_iter()
        .chain(b"$forwarded \\Foo \\Seen urgent".iter().copied())
        .collect();
    let entry = crate::keys::decode_uid_entry(&crate::keys::uid(1, 1, 3), &old).unwrap();
    assert_eq!(entry.keywords, ["$forwarded", "\\Foo", "\\Seen", "urgent"]);
    assert!(entry.has(&Keyword::Seen) && entry.has(&Keyword::Forwarded));
    assert_eq!(crate::keys::uid_value(7, 9, 100, 5, &entry.keywords), old);
}

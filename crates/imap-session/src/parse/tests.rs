//! Table tests of the command parser, seeded from the examples of RFC 9051 §6 and the
//! extensions' RFCs.

use std::num::NonZeroU32;

use proptest::prelude::*;

use super::*;
use crate::fuzzing::split_literals;

fn parse(wire: &str) -> Result<Command, Rejected> {
    parse_mode(wire, false)
}

fn parse_mode(wire: &str, utf8: bool) -> Result<Command, Rejected> {
    let (text, literals) = split_literals(wire.as_bytes());
    parse_command(&text, literals, ParseOptions { utf8, depth_max: 8 })
}

#[track_caller]
fn check(wire: &str, expected: CommandBody) {
    match parse(wire) {
        Ok(command) => assert_eq!(command.body, expected, "{wire:?}"),
        Err(rejected) => panic!("{wire:?} rejected: {rejected:?}"),
    }
}

/// Parses, and returns the body for pattern checks.
#[track_caller]
fn body(wire: &str) -> CommandBody {
    parse(wire).unwrap_or_else(|rejected| panic!("{wire:?} rejected: {rejected:?}")).body
}

#[track_caller]
fn check_bad(wire: &str, message: &str) {
    match parse(wire) {
        Ok(command) => panic!("{wire:?} parsed as {command:?}"),
        Err(rejected) => assert_eq!(rejected.error.message, message, "{wire:?}"),
    }
}

fn mailbox(name: &str) -> MailboxName {
    MailboxName::new(name)
}

fn set(text: &str) -> SequenceSet {
    let (text, literals) = split_literals(format!("t UID EXPUNGE {text}").as_bytes());
    match parse_command(&text, literals, ParseOptions { utf8: false, depth_max: 8 }).expect("set").body {
        CommandBody::Expunge { uids: Some(set) } => set,
        other => panic!("{other:?}"),
    }
}

fn date(year: u16, month: u8, day: u8) -> Date {
    Date::new(year, month, day).expect("valid date")
}

// ---------------------------------------------------------------- RFC 9051 §6.1, §6.2

#[test]
fn any_state_and_login_commands() {
    check("a441 CAPABILITY", CommandBody::Capability);
    check("a002 NOOP", CommandBody::Noop);
    check("A023 LOGOUT", CommandBody::Logout);
    check("a001 STARTTLS", CommandBody::StartTls);
    check("a001 LOGIN SMITH SESAME", CommandBody::Login { username: "SMITH".into(), password: "SESAME".into() });
    check(
        "a001 login \"fred \\\"x\\\"\" {6}\r\npa ss\"",
        CommandBody::Login { username: "fred \"x\"".into(), password: "pa ss\"".into() },
    );
    check("a001 login fred {3+}\r\nabc", CommandBody::Login { username: "fred".into(), password: "abc".into() });
    check(
        "A001 AUTHENTICATE PLAIN AHRlc3QAMTIzNA==",
        CommandBody::Authenticate { mechanism: "PLAIN".into(), initial_response: Some(b"\0test\x001234".to_vec()) },
    );
    check(
        "A001 AUTHENTICATE plain =",
        CommandBody::Authenticate { mechanism: "PLAIN".into(), initial_response: Some(Vec::new()) },
    );
    check("A001 AUTHENTICATE GSSAPI", CommandBody::Authenticate { mechanism: "GSSAPI".into(), initial_response: None });
    check(
        "t ENABLE CONDSTORE qresync",
        CommandBody::Enable { capabilities: vec!["CONDSTORE".into(), "QRESYNC".into()] },
    );
    check(
        "a023 ID (\"name\" \"sodr\" \"version\" \"19.34\" \"vendor\" NIL)",
        CommandBody::Id {
            params: Some(vec![
                ("name".into(), Some("sodr".into())),
                ("version".into(), Some("19.34".into())),
                ("vendor".into(), None),
            ]),
        },
    );
    check("a023 ID NIL", CommandBody::Id { params: None });
    check("t COMPRESS DEFLATE", CommandBody::Compress);
    check_bad("t COMPRESS LZ4", "Unknown compression algorithm");
    check_bad("A001 AUTHENTICATE PLAIN %%%", "Unexpected characters at the end of the command");
    check_bad("A001 AUTHENTICATE PLAIN AHRlc3Q", "Invalid base64 in the initial response");
    check_bad("t ENABLE", "ENABLE needs at least one capability");
}

// ---------------------------------------------------------------- RFC 9051 §6.3

#[test]
fn mailbox_commands() {
    check(
        "A142 SELECT INBOX",
        CommandBody::Select { mailbox: mailbox("INBOX"), read_only: false, params: SelectParams::default() },
    );
    check(
        "A142 select inBoX",
        CommandBody::Select { mailbox: mailbox("INBOX"), read_only: false, params: SelectParams::default() },
    );
    check(
        "A932 EXAMINE blurdybloop",
        CommandBody::Select { mailbox: mailbox("blurdybloop"), read_only: true, params: SelectParams::default() },
    );
    check(
        "a SELECT INBOX (CONDSTORE)",
        CommandBody::Select {
            mailbox: mailbox("INBOX"),
            read_only: false,
            params: SelectParams { condstore: true, qresync: None },
        },
    );
    // RFC 7162 §3.2.5.1.
    check(
        "A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        CommandBody::Select {
            mailbox: mailbox("INBOX"),
            read_only: false,
            params: SelectParams {
                condstore: false,
                qresync: Some(QresyncParams {
                    uid_validity: 67890007,
                    modseq: 20050715194045000,
                    known_uids: Some(set("41,43:211,214:541")),
                    seq_match: None,
                }),
            },
        },
    );
    check(
        "B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976:29979)))",
        CommandBody::Select {
            mailbox: mailbox("INBOX"),
            read_only: false,
            params: SelectParams {
                condstore: false,
                qresync: Some(QresyncParams {
                    uid_validity: 67890007,
                    modseq: 90060115194045000,
                    known_uids: Some(set("1:29997")),
                    seq_match: Some((
                        set("5000,7500,9000,9990:9999"),
                        set("15000,22500,27000,29970,29973,29976:29979"),
                    )),
                }),
            },
        },
    );
    check("A003 CREATE owatagusiam/", CommandBody::Create { mailbox: mailbox("owatagusiam/"), special_use: vec![] });
    check(
        "t1 CREATE \"Important Messages\" (USE (\\Important))",
        CommandBody::Create { mailbox: mailbox("Important Messages"), special_use: vec![SpecialUse::Important] },
    );
    let rejected = parse("t1 CREATE x (USE (\\Foo))").expect_err("unknown use");
    assert!(rejected.error.no && rejected.error.code == Some(Code::UseAttr));
    check("A683 DELETE blurdybloop", CommandBody::Delete { mailbox: mailbox("blurdybloop") });
    check(
        "A683 RENAME blurdybloop sarasoop",
        CommandBody::Rename { from: mailbox("blurdybloop"), to: mailbox("sarasoop") },
    );
    check("A002 SUBSCRIBE #news.comp.mail.mime", CommandBody::Subscribe { mailbox: mailbox("#news.comp.mail.mime") });
    check(
        "A002 UNSUBSCRIBE #news.comp.mail.mime",
        CommandBody::Unsubscribe { mailbox: mailbox("#news.comp.mail.mime") },
    );
    check(
        "A002 LSUB \"#news.\" \"comp.mail.*\"",
        CommandBody::Lsub { reference: "#news.".into(), pattern: "comp.mail.*".into() },
    );
    check("A001 NAMESPACE", CommandBody::Namespace);
    check(
        "A042 STATUS blurdybloop (UIDNEXT MESSAGES size HIGHESTMODSEQ)",
        CommandBody::Status {
            mailbox: mailbox("blurdybloop"),
            items: vec![StatusItem::UidNext, StatusItem::Messages, StatusItem::Size, StatusItem::HighestModSeq],
        },
    );
    check_bad("A042 STATUS blurdybloop (FOO)", "Unknown STATUS item");
    check_bad("A042 STATUS blurdybloop", "Expected a space");
}

#[test]
fn list_commands() {
    let list = |reference: &str, patterns: &[&str]| ListCommand {
        reference: reference.into(),
        patterns: patterns.iter().map(|pattern| (*pattern).to_owned()).collect(),
        ..ListCommand::default()
    };
    check("A101 LIST \"\" \"\"", CommandBody::List(list("", &[""])));
    check("A102 LIST #news.comp.mail.misc \"\"", CommandBody::List(list("#news.comp.mail.misc", &[""])));
    check("A103 LIST /usr/staff/jones \"\"", CommandBody::List(list("/usr/staff/jones", &[""])));
    check("A202 LIST ~/Mail/ %", CommandBody::List(list("~/Mail/", &["%"])));
    check("A202 LIST \"\" *", CommandBody::List(list("", &["*"])));
    // RFC 5258 §5.
    let CommandBody::List(extended) = body(
        "A04 LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"Other/*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))",
    ) else {
        panic!("not a LIST")
    };
    assert!(extended.extended && extended.selection.subscribed && extended.selection.recursive_match);
    assert_eq!(extended.patterns, vec!["%".to_owned(), "Other/*".to_owned()]);
    assert!(extended.returns.children);
    assert_eq!(extended.returns.status, Some(vec![StatusItem::Messages, StatusItem::Unseen]));
    let CommandBody::List(special) = body("t1 LIST (SPECIAL-USE) \"\" \"*\"") else { panic!("not a LIST") };
    assert!(special.selection.special_use);
    let CommandBody::List(returns) = body("t1 LIST \"\" \"%\" RETURN (SPECIAL-USE SUBSCRIBED)") else {
        panic!("not a LIST")
    };
    assert!(returns.returns.special_use && returns.returns.subscribed && returns.extended);
    let CommandBody::List(empty) = body("t1 LIST () \"\" %") else { panic!("not a LIST") };
    assert!(empty.extended && empty.selection == ListSelection::default());
    check_bad("A04 LIST (RECURSIVEMATCH) \"\" %", "RECURSIVEMATCH needs another selection option");
    check_bad("A04 LIST (BOGUS) \"\" %", "Unknown LIST selection option");
}

#[test]
fn append_commands() {
    let message = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n";
    let wire = format!(
        "A003 APPEND saved-messages (\\Seen) \"07-Feb-1994 21:52:25 -0800\" {{{}}}\r\n{}",
        message.len(),
        String::from_utf8_lossy(message)
    );
    let CommandBody::Append { mailbox: target, messages } = body(&wire) else { panic!("not APPEND") };
    assert_eq!(target, mailbox("saved-messages"));
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].flags, vec![Flag::Seen]);
    assert_eq!(messages[0].data, message.to_vec());
    let date = messages[0].date.expect("date");
    assert_eq!(date.to_string(), "07-Feb-1994 21:52:25 -0800");
    assert_eq!(date.to_unix(), 760_686_745);
    // RFC 3502 §6: MULTIAPPEND, with a literal8 (RFC 3516) and a space-padded day.
    let CommandBody::Append { messages, .. } =
        body("A003 APPEND saved {3}\r\nabc (\\Seen $Work) \" 7-Feb-1994 01:02:03 +0100\" ~{2}\r\n\0x {1+}\r\nz")
    else {
        panic!("not APPEND")
    };
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[1].flags, vec![Flag::Seen, Flag::Keyword("$Work".into())]);
    assert!(messages[1].binary && messages[1].data == b"\0x");
    assert_eq!(messages[1].date.expect("date").date.day, 7);
    check_bad("A003 APPEND saved \"abc\"", "Expected digits");
    check_bad("A003 APPEND saved abc", "Expected a literal with the message");
    check_bad("A003 APPEND saved", "APPEND needs a message");
    check_bad("A003 APPEND saved (\\Recent) {1}\r\nx", "Invalid flag");
    check_bad("A003 APPEND saved \"31-Feb-1994 21:52:25 -0800\" {1}\r\nx", "Invalid date");
    check_bad("A003 LOGIN ~{1}\r\nx y", "Expected a space");
}

// ---------------------------------------------------------------- RFC 9051 §6.4

#[test]
fn selected_state_commands() {
    check("FXXZ CHECK", CommandBody::Check);
    check("A341 CLOSE", CommandBody::Close);
    check("A342 UNSELECT", CommandBody::Unselect);
    check("A202 EXPUNGE", CommandBody::Expunge { uids: None });
    check("A003 UID EXPUNGE 3000:3002", CommandBody::Expunge { uids: Some(set("3000:3002")) });
    check("A003 COPY 2:4 MEETING", CommandBody::Copy { uid: false, set: set("2:4"), mailbox: mailbox("MEETING") });
    check("a UID MOVE 42:69 foo", CommandBody::Move { uid: true, set: set("42:69"), mailbox: mailbox("foo") });
    check("a IDLE", CommandBody::Idle);
    check("G GETQUOTA \"\"", CommandBody::GetQuota { root: String::new() });
    check("G GETQUOTAROOT INBOX", CommandBody::GetQuotaRoot { mailbox: mailbox("INBOX") });
    check(
        "S SETQUOTA \"\" (STORAGE 512 message 100)",
        CommandBody::SetQuota { root: String::new(), limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 100)] },
    );
    check_bad("A003 UID FROB 1", "Unknown UID command");
    check_bad("A003 FROB", "Unknown command");
}

#[test]
fn store_commands() {
    check(
        "A003 STORE 2:4 +FLAGS (\\Deleted)",
        CommandBody::Store {
            uid: false,
            set: set("2:4"),
            action: StoreAction::Add,
            silent: false,
            flags: vec![Flag::Deleted],
            unchanged_since: None,
        },
    );
    check(
        "A004 UID STORE 1 -FLAGS.SILENT \\Seen $Junk",
        CommandBody::Store {
            uid: true,
            set: set("1"),
            action: StoreAction::Remove,
            silent: true,
            flags: vec![Flag::Seen, Flag::Keyword("$Junk".into())],
            unchanged_since: None,
        },
    );
    // RFC 7162 §3.1.3.
    check(
        "a103 UID STORE 6,4,8 (UNCHANGEDSINCE 12121230045) +FLAGS.SILENT (\\Deleted)",
        CommandBody::Store {
            uid: true,
            set: set("6,4,8"),
            action: StoreAction::Add,
            silent: true,
            flags: vec![Flag::Deleted],
            unchanged_since: Some(12121230045),
        },
    );
    check(
        "a STORE 1 FLAGS ()",
        CommandBody::Store {
            uid: false,
            set: set("1"),
            action: StoreAction::Replace,
            silent: false,
            flags: vec![],
            unchanged_since: None,
        },
    );
    check_bad("a STORE 1 +FLAGZ (\\Seen)", "Expected FLAGS, +FLAGS or -FLAGS");
    check_bad("a STORE 1 +FLAGS (\\Recent)", "Invalid flag");
    check_bad("a STORE 0 +FLAGS (\\Seen)", "Invalid sequence set");
}

#[test]
fn fetch_commands() {
    use FetchAttribute as F;
    let fetch = |wire: &str| match body(wire) {
        CommandBody::Fetch { attributes, changed_since, vanished, .. } => (attributes, changed_since, vanished),
        other => panic!("not FETCH: {other:?}"),
    };
    assert_eq!(
        fetch("A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])").0,
        vec![
            F::Flags,
            F::BodySection {
                peek: false,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec!["DATE".into(), "FROM".into()]))
                },
                partial: None
            },
        ]
    );
    assert_eq!(fetch("a FETCH 1 full").0, vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope, F::Body]);
    assert_eq!(fetch("a FETCH 1 FAST").0, vec![F::Flags, F::InternalDate, F::Rfc822Size]);
    assert_eq!(fetch("a FETCH 1 ALL").0, vec![F::Flags, F::InternalDate, F::Rfc822Size, F::Envelope]);
    assert_eq!(fetch("a UID FETCH 1:* FLAGS").0, vec![F::Flags, F::Uid]);
    assert_eq!(
        fetch("a FETCH 1 body.peek[1.2.mime]<0.2048>").0,
        vec![F::BodySection {
            peek: true,
            section: Section { part: vec![1, 2], text: Some(SectionText::Mime) },
            partial: Some(Partial { origin: 0, length: 2048 }),
        }]
    );
    assert_eq!(
        fetch("a FETCH 1 (BODY[] BODY[3] BODY[1.TEXT] BODY[HEADER.FIELDS.NOT (X-Y)] BODYSTRUCTURE)").0,
        vec![
            F::BodySection { peek: false, section: Section::default(), partial: None },
            F::BodySection { peek: false, section: Section { part: vec![3], text: None }, partial: None },
            F::BodySection {
                peek: false,
                section: Section { part: vec![1], text: Some(SectionText::Text) },
                partial: None
            },
            F::BodySection {
                peek: false,
                section: Section { part: vec![], text: Some(SectionText::HeaderFieldsNot(vec!["X-Y".into()])) },
                partial: None
            },
            F::BodyStructure,
        ]
    );
    assert_eq!(
        fetch("a FETCH 1 (BINARY.PEEK[1]<0.10> BINARY.SIZE[2] BINARY[])").0,
        vec![
            F::Binary { peek: true, part: vec![1], partial: Some(Partial { origin: 0, length: 10 }) },
            F::BinarySize { part: vec![2] },
            F::Binary { peek: false, part: vec![], partial: None },
        ]
    );
    assert_eq!(
        fetch("a FETCH 1 (RFC822 RFC822.HEADER RFC822.TEXT RFC822.SIZE INTERNALDATE ENVELOPE MODSEQ UID)").0,
        vec![F::Rfc822, F::Rfc822Header, F::Rfc822Text, F::Rfc822Size, F::InternalDate, F::Envelope, F::ModSeq, F::Uid,]
    );
    // RFC 7162 §3.1.4.2 and §3.2.6.
    let (_, changed_since, vanished) = fetch("s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)");
    assert_eq!((changed_since, vanished), (Some(12345), true));
    check_bad("s100 FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)", "VANISHED needs UID FETCH and CHANGEDSINCE");
    check_bad("a FETCH 1 (FLAGS", "Expected a space");
    check_bad("a FETCH 1 BODY[MIME]", "Unknown body section");
    check_bad("a FETCH 1 BODY[1.FOO]", "Unknown body section");
    check_bad("a FETCH 1 FOO", "Unknown FETCH attribute");
    check_bad("a FETCH 1 BODY[]<0.0>", "Expected a number greater than zero");
}

#[test]
fn search_commands() {
    use SearchKey as K;
    let search = |wire: &str| match body(wire) {
        CommandBody::Search { charset, returns, criteria, .. } => (charset, returns, criteria),
        other => panic!("not SEARCH: {other:?}"),
    };
    assert_eq!(
        search("A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM \"Smith\"").2,
        K::And(vec![K::Flagged, K::Since(date(1994, 2, 1)), K::Not(Box::new(K::From("Smith".into())))])
    );
    assert_eq!(search("A283 SEARCH TEXT \"string not in mailbox\"").2, K::Text("string not in mailbox".into()));
    let (charset, _, criteria) = search("A284 SEARCH CHARSET UTF-8 TEXT {12}\r\nмонета");
    assert_eq!((charset.as_deref(), criteria), (Some("UTF-8"), K::Text("монета".into())));
    assert_eq!(
        search("a SEARCH OR (SEEN ANSWERED) NOT (DELETED DRAFT) 1:3,*").2,
        K::And(vec![
            K::Or(
                Box::new(K::And(vec![K::Seen, K::Answered])),
                Box::new(K::Not(Box::new(K::And(vec![K::Deleted, K::Draft]))))
            ),
            K::SequenceSet(set("1:3,*")),
        ])
    );
    assert_eq!(
        search("a SEARCH HEADER X-Mailer \"\" LARGER 100 SMALLER 2000 UID 5:* KEYWORD $Work UNKEYWORD NonJunk").2,
        K::And(vec![
            K::Header("X-Mailer".into(), String::new()),
            K::Larger(100),
            K::Smaller(2000),
            K::Uid(set("5:*")),
            K::Keyword("$Work".into()),
            K::Unkeyword("NonJunk".into()),
        ])
    );
    assert_eq!(
        search("a SEARCH ALL ANSWERED BCC x BEFORE \"2-Mar-2020\" BODY b CC c DELETED DRAFT NEW OLD ON 3-Apr-2021 RECENT SEEN SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SUBJECT s TO t UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNSEEN").2,
        K::And(vec![
            K::All, K::Answered, K::Bcc("x".into()), K::Before(date(2020, 3, 2)), K::Body("b".into()), K::Cc("c".into()),
            K::Deleted, K::Draft, K::New, K::Old, K::On(date(2021, 4, 3)), K::Recent, K::Seen,
            K::SentBefore(date(2000, 1, 1)), K::SentOn(date(2000, 1, 1)), K::SentSince(date(2000, 1, 1)),
            K::Subject("s".into()), K::To("t".into()), K::Unanswered, K::Undeleted, K::Undraft, K::Unflagged, K::Unseen,
        ])
    );
    // RFC 4731 §4, RFC 5182 §2.
    let (_, returns, _) = search("A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994");
    assert_eq!(returns, Some(SearchReturn { min: true, count: true, ..SearchReturn::default() }));
    let (_, returns, _) = search("A283 SEARCH RETURN () FLAGGED");
    assert_eq!(returns, Some(SearchReturn { all: true, ..SearchReturn::default() }));
    let (_, returns, criteria) = search("A1 UID SEARCH RETURN (SAVE) UID $");
    assert!(returns.expect("returns").save);
    assert_eq!(criteria, K::Uid(SequenceSet::saved()));
    // RFC 7162 §3.1.5.
    assert_eq!(
        search("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338").2,
        K::ModSeq { entry: Some(("/flags/\\draft".into(), "all".into())), modseq: 620162338 }
    );
    assert_eq!(search("a SEARCH MODSEQ 0").2, K::ModSeq { entry: None, modseq: 0 });
    let rejected = parse("A284 SEARCH CHARSET ISO-8859-1 TEXT x").expect_err("charset");
    assert!(rejected.error.no && rejected.error.code == Some(Code::BadCharset(CHARSETS)));
    check_bad("a SEARCH FROB", "Unknown search key");
    check_bad("a SEARCH (SEEN", "Expected a space");
    check_bad("a SEARCH SEEN)", "Unexpected characters at the end of the command");
    check_bad("a SEARCH BEFORE 30-Feb-2020", "Invalid date");
    check_bad("a SEARCH TEXT \"\\xff\"", "Invalid escape in a quoted string");
    check_bad("a SEARCH", "Expected a space");
    let deep = format!("a SEARCH {}SEEN{}", "(".repeat(9), ")".repeat(9));
    check_bad(&deep, "Search keys nested too deeply");
    let nots = format!("a SEARCH {}SEEN", "NOT ".repeat(20));
    check_bad(&nots, "Search keys nested too deeply");
}

#[test]
fn sort_and_thread_commands() {
    // RFC 5256 §3.
    check(
        "A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994",
        CommandBody::Sort {
            uid: false,
            criteria: vec![SortCriterion { reverse: false, key: SortKey::Subject }],
            charset: "UTF-8".into(),
            search: SearchKey::Since(date(1994, 2, 1)),
        },
    );
    check(
        "A285 UID SORT (REVERSE DATE ARRIVAL) US-ASCII ALL",
        CommandBody::Sort {
            uid: true,
            criteria: vec![
                SortCriterion { reverse: true, key: SortKey::Date },
                SortCriterion { reverse: false, key: SortKey::Arrival },
            ],
            charset: "US-ASCII".into(),
            search: SearchKey::All,
        },
    );
    check(
        "A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
        CommandBody::Thread {
            uid: false,
            algorithm: ThreadAlgorithm::OrderedSubject,
            charset: "UTF-8".into(),
            search: SearchKey::Since(date(2000, 3, 5)),
        },
    );
    check(
        "A284 UID THREAD REFERENCES US-ASCII TEXT \"gewp\"",
        CommandBody::Thread {
            uid: true,
            algorithm: ThreadAlgorithm::References,
            charset: "US-ASCII".into(),
            search: SearchKey::Text("gewp".into()),
        },
    );
    check_bad("A283 THREAD FOO UTF-8 ALL", "Unknown threading algorithm");
    check_bad("A283 SORT (FOO) UTF-8 ALL", "Unknown sort criterion");
    check_bad("A283 SORT SUBJECT UTF-8 ALL", "Expected ( before sort criteria");
}

// ---------------------------------------------------------------- names and tokens

#[test]
fn mailbox_name_encoding() {
    // RFC 3501 §5.1.3.
    check(
        "a SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        CommandBody::Select {
            mailbox: mailbox("~peter/mail/台北/日本語"),
            read_only: false,
            params: SelectParams::default(),
        },
    );
    check("a DELETE &-&-", CommandBody::Delete { mailbox: mailbox("&&") });
    check_bad("a DELETE &Jjo", "Invalid mailbox name: expected modified UTF-7 (RFC 3501 §5.1.3)");
    check_bad("a DELETE &AGE-", "Invalid mailbox name: expected modified UTF-7 (RFC 3501 §5.1.3)");
    check_bad("a DELETE \"bo\u{ee}te\"", "Invalid mailbox name: expected modified UTF-7 (RFC 3501 §5.1.3)");
    // UTF-8 mode: names are taken as they are.
    let command = parse_mode("a DELETE \"bo\u{ee}te &\"", true).expect("utf8");
    assert_eq!(command.body, CommandBody::Delete { mailbox: mailbox("bo\u{ee}te &") });
    for name in ["台北", "a&b", "Entwürfe", "😀 x", "\u{7f}x"] {
        let mut encoded = Vec::new();
        crate::mutf7::encode(name, &mut encoded);
        assert!(encoded.iter().all(|byte| (0x20..0x7F).contains(byte)), "{name}");
        if name.chars().all(|ch| !ch.is_control()) {
            assert_eq!(crate::mutf7::decode(&encoded).as_deref(), Some(name), "{name}");
        }
    }
}

#[test]
fn bad_syntax() {
    let rejected = parse("").expect_err("empty");
    assert_eq!(rejected.tag, None);
    let rejected = parse("+tag NOOP").expect_err("bad tag");
    assert_eq!(rejected.tag, None);
    check_bad("a", "Expected a space");
    check_bad("a NOOP extra", "Unexpected characters at the end of the command");
    check_bad("a \u{e9}t\u{e9}", "Expected a command name");
    check_bad("a LOGIN \"unterminated", "Unterminated quoted string");
    check_bad("a LOGIN (x) y", "Expected a string");
    check_bad("a LOGIN {5}x y", "A literal's announcement must end the line");
    check_bad("a LOGIN \"a\u{0}\" b", "Control character in a quoted string");
    check_bad("a LOGIN \"\\x\" b", "Invalid escape in a quoted string");
    let rejected = parse_command(b"a LOGIN {1}\r\n b", vec![vec![0xFF]], ParseOptions { utf8: false, depth_max: 8 });
    assert_eq!(rejected.expect_err("not UTF-8").error.message, "Strings must be UTF-8");
    check_bad("a FETCH 99999999999 FLAGS", "Invalid sequence set");
    check_bad("a STORE 1 (UNCHANGEDSINCE 9223372036854775808) FLAGS ()", "Invalid mod-sequence value");
    check_bad("a SELECT x (QRESYNC (0 1))", "Expected a number greater than zero");
    check_bad("a ID (\"a\" \"b\"", "Expected a space");
}

#[test]
fn sequence_sets() {
    let numbers = |text: &str, largest: u32| set(text).iter(largest).collect::<Vec<u32>>();
    assert_eq!(numbers("1:3,7", 10), vec![1, 2, 3, 7]);
    assert_eq!(numbers("4:2", 10), vec![2, 3, 4]);
    assert_eq!(numbers("8:*", 10), vec![8, 9, 10]);
    assert_eq!(numbers("*", 10), vec![10]);
    assert_eq!(numbers("*", 0), Vec::<u32>::new());
    // RFC 9051 §6.4.8: `559:*` holds the last UID even below 559.
    assert_eq!(numbers("559:*", 500), vec![500]);
    assert_eq!(numbers("20:30", 10), Vec::<u32>::new());
    assert_eq!(set("1:3,2:5,9").normalized(8), vec![(1, 5)]);
    assert_eq!(set("7,1:3,4").normalized(10), vec![(1, 4), (7, 7)]);
    assert!(set("1:5").contains(3, 10) && !set("1:5").contains(6, 10));
    assert!(set("1:5,*").fits(5) && !set("1:6").fits(5));
    assert_eq!(set("1:3,*,7").to_string(), "1:3,*,7");
    assert_eq!(SequenceSet::from_sorted([1, 2, 3, 5, 7, 8]).expect("set").to_string(), "1:3,5,7:8");
    assert_eq!(SequenceSet::from_sorted([]), None);
    assert_eq!(SequenceSet::from_sorted([0]), None);
    assert_eq!(SequenceSet::single(4).expect("set").to_string(), "4");
    assert_eq!(SequenceSet::saved().to_string(), "$");
    assert_eq!(
        set("3").ranges(),
        &[SeqRange {
            start: SeqNumber::Value(NonZeroU32::new(3).expect("3")),
            end: SeqNumber::Value(NonZeroU32::new(3).expect("3"))
        }]
    );
    // Iterating a huge range allocates nothing and can stop early.
    assert_eq!(set("1:4294967295").iter(u32::MAX).take(3).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn dates() {
    for days in [-719_162, -1, 0, 1, 11_016, 19_000, 2_932_896] {
        let date = Date::from_days_since_epoch(days).expect("in range");
        assert_eq!(date.days_since_epoch(), days);
    }
    assert_eq!(Date::from_days_since_epoch(0), Some(date(1970, 1, 1)));
    assert_eq!(date(2000, 2, 29).to_string(), "29-Feb-2000");
    assert_eq!(Date::new(1900, 2, 29), None);
    let time = DateTime::from_unix(837_596_665, -7 * 60).expect("time");
    assert_eq!(time.to_string(), "17-Jul-1996 02:44:25 -0700");
    assert_eq!(time.to_unix(), 837_596_665);
    assert_eq!(DateTime::from_unix(0, 24 * 60), None);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parser_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        crate::fuzzing::fuzz_parse(&bytes);
    }

    #[test]
    fn parser_never_panics_on_tokens(tokens in proptest::collection::vec(prop_oneof![
        Just("a "), Just("UID "), Just("FETCH "), Just("SEARCH "), Just("STORE "), Just("APPEND "), Just("LIST "),
        Just("SELECT "), Just("("), Just(")"), Just(" "), Just("1:*"), Just("$"), Just("\""), Just("\\"),
        Just("{3}\r\nabc"), Just("~{1+}\r\n\0"), Just("BODY.PEEK[1.HEADER.FIELDS (A)]<0.5>"), Just("NOT "),
        Just("OR "), Just("INBOX"), Just("&Jjo-"), Just("RETURN (ALL)"), Just("MODSEQ 5"), Just("\r\n"),
    ], 0..24)) {
        crate::fuzzing::fuzz_parse(tokens.concat().as_bytes());
    }

    #[test]
    fn mutf7_round_trips(name in "\\PC{0,24}") {
        let mut encoded = Vec::new();
        crate::mutf7::encode(&name, &mut encoded);
        prop_assert_eq!(crate::mutf7::decode(&encoded), Some(name));
    }

    #[test]
    fn sequence_sets_round_trip(ranges in proptest::collection::vec((0u32..50, 0u32..50), 1..8)) {
        let text = ranges
            .iter()
            .map(|(start, end)| {
                let bound = |n: u32| if n == 0 { "*".to_owned() } else { n.to_string() };
                format!("{}:{}", bound(*start), bound(*end))
            })
            .collect::<Vec<_>>()
            .join(",");
        let parsed = set(&text);
        prop_assert_eq!(set(&parsed.to_string()), parsed.clone());
        let numbers: Vec<u32> = {
            let mut numbers: Vec<u32> = parsed.iter(40).collect();
            numbers.sort_unstable();
            numbers.dedup();
            numbers
        };
        let compact = SequenceSet::from_sorted(numbers.iter().copied());
        let normalized: Vec<u32> = parsed.normalized(40).into_iter().flat_map(|(low, high)| low..=high).collect();
        prop_assert_eq!(&normalized, &numbers);
        if let Some(compact) = compact {
            prop_assert_eq!(compact.iter(40).collect::<Vec<_>>(), numbers);
        }
    }
}

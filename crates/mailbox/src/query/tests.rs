use super::*;

fn entry(uid: u32, keywords: &[Keyword], size: u32, received_at: u64) -> UidEntry {
    UidEntry { uid, email: u64::from(uid), modseq: u64::from(uid) * 10, keywords: keywords.to_vec(), size, received_at }
}

fn matches(filter: &Filter, entry: &UidEntry) -> bool {
    let mut message = Message {
        entry,
        summary: None,
        raw: None,
        body_text: None,
        body_folded: None,
        header: headers::Header::default(),
        header_assumed: None,
        ruled_out: Vec::new(),
    };
    filter.matches(&mut message)
}

fn cond(condition: Condition) -> Node {
    Node::Condition(condition)
}

#[test]
fn operators_combine_conditions() {
    let seen = entry(1, &[Keyword::Seen], 100, 86_400);
    let flagged = entry(2, &[Keyword::Flagged], 5_000, 2 * 86_400);
    // NOT SEEN OR LARGER 1000 UID 1 (an IMAP key list is an And).
    let filter = Filter::new(vec![
        Node::And(2),
        Node::Not,
        cond(Condition::Keyword(Keyword::Seen)),
        Node::Or(2),
        cond(Condition::MinSize(1_001)),
        cond(Condition::Uids(vec![(1, 1)])),
    ])
    .unwrap();
    assert!(!matches(&filter, &seen));
    assert!(matches(&filter, &flagged));
    let empty_and = Filter::new(vec![Node::And(0)]).unwrap();
    let empty_or = Filter::new(vec![Node::Or(0)]).unwrap();
    assert!(matches(&empty_and, &seen) && !matches(&empty_or, &seen));
    let dates = Filter::new(vec![
        Node::And(3),
        cond(Condition::ReceivedSince(2 * 86_400)),
        cond(Condition::ReceivedBefore(3 * 86_400)),
        cond(Condition::MaxSize(5_001)),
    ])
    .unwrap();
    assert!(!matches(&dates, &seen) && matches(&dates, &flagged));
    assert!(matches(&Filter::condition(Condition::ModSeqAtLeast(20)), &flagged));
    assert!(!matches(&Filter::condition(Condition::ModSeqAtLeast(20)), &seen));
}

#[test]
fn malformed_filters_are_refused() {
    for nodes in [
        vec![],
        vec![Node::Not],
        vec![Node::And(2), cond(Condition::All)],
        vec![cond(Condition::All), cond(Condition::All)],
        vec![Node::Or(1), cond(Condition::All), Node::Not],
    ] {
        assert_eq!(Filter::new(nodes.clone()).unwrap_err(), FilterError::Malformed, "{nodes:?}");
    }
}

/// A client controls the depth: a million nested operators are built, evaluated and
/// dropped without recursion (a recursive walk would overflow the stack).
#[test]
fn depth_does_not_recurse() {
    let depth = 1_000_000;
    let mut nodes: Vec<Node> = (0..depth).map(|i| if i % 2 == 0 { Node::Not } else { Node::And(1) }).collect();
    nodes.push(cond(Condition::Keyword(Keyword::Seen)));
    let filter = Filter::new(nodes).unwrap();
    // An even number of NOTs.
    assert!(matches(&filter, &entry(1, &[Keyword::Seen], 1, 0)));
    assert!(!matches(&filter, &entry(2, &[], 1, 0)));
}

#[test]
fn ranges_are_merged_and_searched() {
    assert_eq!(merged(vec![(10, 20), (1, 3), (4, 5), (15, 30), (9, 2)]), vec![(1, 5), (10, 30)]);
    assert_eq!(ranges_of(&[1, 2, 3, 7, 9, 10]), vec![(1, 3), (7, 7), (9, 10)]);
    let ranges = vec![(1, 3), (7, 7), (10, 20)];
    let inside: Vec<u32> = (0..25).filter(|n| in_ranges(&ranges, *n)).collect();
    assert_eq!(inside, [1, 2, 3, 7, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert!(!in_ranges(&[], 1));
}

#[test]
fn header_fields_are_split_once_and_decoded_on_demand() {
    let header = b"Subject: =?utf-8?q?R=C3=A9union_du_conseil?=\r\nX-Tag: un\r\n deux\r\nx-tag: trois\r\n\r\n";
    let mut parsed = headers::Header::default();
    parsed.set_fields(headers::parse_fields(header));
    assert!(parsed.field_contains("subject", "réunion du"));
    assert!(parsed.field_contains("x-tag", "un deux") || parsed.field_contains("x-tag", "un  deux"));
    assert!(parsed.field_contains("x-tag", "trois"));
    assert!(!parsed.field_contains("x-tag", "quatre"));
    assert!(parsed.field_contains("x-tag", ""));
    assert!(!parsed.field_contains("cc", ""));
    let fields = headers::parse_fields(header);
    let names: Vec<&str> = fields.iter().map(|field| field.name.as_str()).collect();
    assert_eq!(names, ["subject", "x-tag", "x-tag"]);
    assert!(fields.iter().all(|field| field.decoded.get().is_none()));
}

/// A mail model with `limits` on a new store (kept while the directory lives), account 1
/// opened: the directory, the model and account 1's inbox.
pub(crate) async fn open_mail(limits: crate::Limits) -> (tempfile::TempDir, Mail, crate::MailboxId) {
    let dir = tempfile::tempdir().unwrap();
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::with_limits(store, limits);
    let inbox = mail.ensure_account(1, 0).await.unwrap()[0].id;
    (dir, mail, inbox)
}

/// The evaluation over the store: summaries, texts and raw headers read through the caches.
#[tokio::test]
async fn matching_reads_summaries_texts_and_headers() {
    let (_dir, mail, inbox) = open_mail(crate::Limits::default()).await;
    for (subject, body) in [("Conseil municipal", "Ordre du jour"), ("Cantine", "Menus de la semaine")] {
        let raw = format!(
            "From: Jeanne Martin <jeanne@mairie-a.fr>\r\nTo: paul@mairie-b.fr\r\nSubject: {subject}\r\n\
             X-Service: =?utf-8?q?=C3=89coles?=\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n{body}\r\n"
        );
        let ingest = crate::Ingest {
            raw: raw.into_bytes().into(),
            mailboxes: vec![inbox],
            keywords: vec![],
            received_at: 1_000,
            quota: crate::Quota::default(),
        };
        mail.ingest(1, ingest).await.unwrap();
    }
    let entries = mail.uids(1, inbox).await.unwrap();
    let (summaries, texts) = (SummaryCache::new(100, 1 << 20), TextCache::new(1 << 20));
    let reader = Reader { mail: &mail, summaries: &summaries, texts: &texts };
    let find = |condition: Condition| {
        let filter = Filter::condition(condition);
        let entries = entries.clone();
        async move { reader.matching(1, &entries, &filter).await.unwrap() }
    };
    assert_eq!(find(Condition::Subject("CONSEIL".into())).await, [0]);
    assert_eq!(find(Condition::From("jeanne martin".into())).await, [0, 1]);
    assert_eq!(find(Condition::To("mairie-a".into())).await, Vec::<usize>::new());
    assert_eq!(find(Condition::Body("menus   DE".into())).await, [1]);
    assert_eq!(find(Condition::Text("ordre du".into())).await, [0]);
    assert_eq!(find(Condition::Text("x-service".into())).await, [0, 1]);
    assert_eq!(find(Condition::Header { name: "X-Service".into(), value: "écoles".into() }).await, [0, 1]);
    assert_eq!(find(Condition::Header { name: "X-Other".into(), value: String::new() }).await, Vec::<usize>::new());
    // 2026-11-24 09:00 UTC.
    let sent = 1_795_510_800;
    assert_eq!(find(Condition::SentSince(sent)).await, [0, 1]);
    assert_eq!(find(Condition::SentBefore(sent)).await, Vec::<usize>::new());
    assert_eq!(find(Condition::SentBefore(sent + 1)).await, [0, 1]);
    assert_eq!(find(Condition::SentSince(sent + 1)).await, Vec::<usize>::new());
}

#[test]
fn header_tests_under_a_not_are_not_monotone() {
    let text = || cond(Condition::Text("a".into()));
    let header = || cond(Condition::Header { name: "x".into(), value: String::new() });
    let monotone = |nodes: Vec<Node>| Filter::new(nodes).unwrap().needs.header_monotone;
    assert!(monotone(vec![text()]));
    assert!(monotone(vec![Node::And(2), Node::Not, cond(Condition::All), header()]));
    assert!(monotone(vec![Node::Or(2), Node::Not, cond(Condition::Body("b".into())), text()]));
    assert!(!monotone(vec![Node::Not, text()]));
    assert!(!monotone(vec![
        Node::And(2),
        cond(Condition::All),
        Node::Not,
        Node::Or(2),
        cond(Condition::All),
        header()
    ]));
}

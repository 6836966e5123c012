use super::*;
use crate::query::tests::open_mail;
use crate::query::{Node, Reader, SummaryCache, TextCache, Wanted};
use crate::{Ingest, Limits, Quota};

/// A small deterministic generator (xorshift): the same "random" mail on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "conseil",
    "municipal",
    "réunion",
    "école",
    "cantine",
    "Élection",
    "maire",
    "adjoint",
    "délibération",
    "budget",
    "façade",
    "garçon",
    "où",
    "à",
    "été",
    "voirie",
    "travaux",
    "Mairie",
    "permis",
    "urbanisme",
    "naïf",
    "cœur",
    "ÉTÉ",
    "x",
    "ab",
    "zz",
    "Straße",
    "ΣΊΣΥΦΟΣ",
    "kilomètre",
    "déjà",
];
const PEOPLE: &[&str] = &["Jeanne Martin", "Paul Durand", "Zoé Lefèvre", "Éric Bénard", "Ana"];

/// A message of random words: subject (sometimes an encoded word), addresses, a body
/// with runs of whitespace, sometimes HTML, sometimes two parts.
fn message(rng: &mut Rng, n: usize) -> String {
    let words = |rng: &mut Rng, count: usize, sep: &[&str]| {
        (0..count).map(|_| format!("{}{}", rng.pick(WORDS), rng.pick(sep))).collect::<String>()
    };
    let subject = match rng.below(3) {
        0 => "=?utf-8?q?R=C3=A9union_du_conseil?=".to_string(),
        _ => {
            let count = 1 + rng.below(4);
            words(rng, count, &[" "])
        }
    };
    let from = rng.pick(PEOPLE);
    let to = rng.pick(PEOPLE);
    let count = 5 + rng.below(40);
    let body = words(rng, count, &[" ", "  ", "\r\n", "\t", ", "]);
    let head = format!(
        "From: {from} <{}@mairie-{n}.fr>\r\nTo: {to} <agent@commune.fr>\r\nSubject: {subject}\r\n\
         Message-ID: <{n}@test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n",
        from.split(' ').next().unwrap_or("x").to_lowercase()
    );
    match rng.below(3) {
        0 => format!("{head}Content-Type: text/html; charset=utf-8\r\n\r\n<p>{body}</p>\r\n"),
        1 => format!(
            "{head}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n--b\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n--b--\r\n",
            words(rng, 3, &[" "])
        ),
        _ => format!("{head}\r\n{body}\r\n"),
    }
}

async fn deliver(mail: &Mail, inbox: crate::MailboxId, raw: String) {
    let ingest = Ingest {
        raw: raw.into_bytes().into(),
        mailboxes: vec![inbox],
        keywords: vec![],
        received_at: 1_000,
        quota: Quota::default(),
    };
    mail.ingest(1, ingest).await.unwrap();
}

fn cond(condition: Condition) -> Node {
    Node::Condition(condition)
}

/// Needles: substrings of the generated words cut anywhere (accents, case changed),
/// short ones, runs of spaces, addresses, nothing that exists.
fn needles(rng: &mut Rng) -> Vec<String> {
    let mut out: Vec<String> =
        ["", "a", "ab", "é", "zz", "  ", "mairie", "MAIRIE-1", "réunion du", "conseil  municipal", "absent!"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    out.extend(
        [
            "agent@commune",
            "zoé",
            "ÉRIC B",
            "σίσυφος",
            "strasse",
            "straße",
            "Ét",
            "été,",
            "\tà",
            "x ",
            "reunion",
            "ecole",
            "eric b",
            "deja",
        ]
        .map(String::from),
    );
    for _ in 0..40 {
        let word: Vec<char> = format!("{} {}", rng.pick(WORDS), rng.pick(WORDS)).chars().collect();
        let start = rng.below(word.len());
        let end = (start + 1 + rng.below(8)).min(word.len());
        let needle: String = word[start..end].iter().collect();
        out.push(if rng.below(2) == 0 { needle.to_uppercase() } else { needle });
    }
    out
}

/// Filters over one needle: each text condition, and some combinations.
fn filters(needle: &str, other: &str) -> Vec<Vec<Node>> {
    let s = || needle.to_string();
    let mut out: Vec<Vec<Node>> =
        [Condition::Text(s()), Condition::Body(s()), Condition::Subject(s()), Condition::From(s()), Condition::To(s())]
            .into_iter()
            .map(|condition| vec![cond(condition)])
            .collect();
    out.push(vec![Node::And(2), cond(Condition::Text(s())), cond(Condition::Body(other.to_string()))]);
    out.push(vec![Node::Or(2), cond(Condition::Subject(s())), cond(Condition::Body(other.to_string()))]);
    out.push(vec![Node::Not, cond(Condition::Text(s()))]);
    // JMAP's `text`: an Or of the address fields, the subject and the body.
    out.push(vec![
        Node::Or(6),
        cond(Condition::From(s())),
        cond(Condition::To(s())),
        cond(Condition::Cc(s())),
        cond(Condition::Bcc(s())),
        cond(Condition::Subject(s())),
        cond(Condition::Body(s())),
    ]);
    out.push(vec![Node::And(2), cond(Condition::Uids(vec![(1, 200)])), cond(Condition::Text(s()))]);
    out.push(vec![Node::Or(2), cond(Condition::Text(s())), cond(Condition::Keyword(crate::Keyword::Seen))]);
    // Header tests, and a header test under a Not: the header is read when it decides.
    let header = || cond(Condition::Header { name: "subject".into(), value: other.to_string() });
    out.push(vec![Node::Or(2), cond(Condition::Body(s())), header()]);
    out.push(vec![Node::And(2), cond(Condition::Text(s())), header()]);
    out.push(vec![Node::And(2), cond(Condition::Body(s())), Node::Not, header()]);
    out.push(vec![Node::Or(2), Node::Not, cond(Condition::Text(other.to_string())), cond(Condition::Text(s()))]);
    out
}

/// Results with the index are exactly those without it, on generated mail: indexed by the
/// build from the email records, by the change log, not yet indexed, and expunged.
#[tokio::test]
async fn results_are_the_same_with_and_without_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::new(store.clone());
    let scan_only = Mail::with_limits(store, Limits { text_index: false, ..Limits::default() });
    let inbox = mail.ensure_account(1, 0).await.unwrap()[0].id;
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut n = 0;
    // Delivered before the index existed: the first indexing builds it from the records.
    for _ in 0..150 {
        n += 1;
        deliver(&mail, inbox, message(&mut rng, n)).await;
    }
    assert!(candidates(&mail, 1, &Filter::condition(Condition::Text("conseil".into()))).await.unwrap().is_none());
    let built = mail.index_text(1).await.unwrap();
    assert_eq!(built.indexed, 150);
    // Then by the change log.
    for _ in 0..60 {
        n += 1;
        deliver(&mail, inbox, message(&mut rng, n)).await;
    }
    assert_eq!(mail.index_text(1).await.unwrap().indexed, 60);
    // Some expunged (their postings stay), some flagged (entry modseqs move past the cursor).
    let uids: Vec<u32> = mail.uids(1, inbox).await.unwrap().iter().map(|entry| entry.uid).collect();
    let gone: Vec<u32> = uids.iter().copied().filter(|uid| uid % 7 == 0).collect();
    mail.expunge(1, inbox, &gone).await.unwrap();
    let flagged: Vec<u32> = uids.iter().copied().filter(|uid| uid % 11 == 0).collect();
    mail.store_keywords(1, inbox, &flagged, crate::KeywordOp::Add, &[crate::Keyword::Seen], None).await.unwrap();
    // And some not indexed yet.
    for _ in 0..30 {
        n += 1;
        deliver(&mail, inbox, message(&mut rng, n)).await;
    }
    let entries = mail.uids(1, inbox).await.unwrap();
    let (summaries, texts) = (SummaryCache::new(10_000, 64 << 20), TextCache::new(64 << 20));
    let indexed = Reader { mail: &mail, summaries: &summaries, texts: &texts };
    let scanned = Reader { mail: &scan_only, summaries: &summaries, texts: &texts };
    let (mut narrowed, mut total, mut nonempty, mut folded_differs, mut answered) = (0, 0, 0, 0, 0);
    let needles = needles(&mut rng);
    for (index, needle) in needles.iter().enumerate() {
        let other = &needles[(index * 7 + 3) % needles.len()];
        for nodes in filters(needle, other) {
            let filter = Filter::new(nodes.clone()).unwrap();
            // The reference reads every message and every header.
            let mut reference = filter.clone();
            reference.needs.header_monotone = false;
            let expected = scanned.matching(1, &entries, &reference).await.unwrap();
            assert_eq!(scanned.matching(1, &entries, &filter).await.unwrap(), expected, "{nodes:?}");
            let got = indexed.matching(1, &entries, &filter).await.unwrap();
            assert_eq!(got, expected, "{nodes:?}");
            // Accents ignored: the index (its terms folded) gives the same as a scan.
            let folding = Filter::folding_accents(nodes.clone()).unwrap();
            let mut folding_reference = folding.clone();
            folding_reference.needs.header_monotone = false;
            let folded_expected = scanned.matching(1, &entries, &folding_reference).await.unwrap();
            assert_eq!(indexed.matching(1, &entries, &folding).await.unwrap(), folded_expected, "{nodes:?}");
            folded_differs += usize::from(folded_expected != expected);
            // A page of the first or the last matches is the same part of all of them.
            let count = (index % 5) * 3;
            let first = indexed.matching_wanted(1, &entries, &filter, Wanted::First { count, from_end: false });
            assert_eq!(first.await.unwrap(), expected[..count.min(expected.len())], "{nodes:?}");
            let last = indexed.matching_wanted(1, &entries, &filter, Wanted::First { count, from_end: true });
            assert_eq!(last.await.unwrap(), expected[expected.len().saturating_sub(count)..], "{nodes:?}");
            total += 1;
            nonempty += usize::from(!expected.is_empty());
            if let Some(set) = candidates(&mail, 1, &filter).await.unwrap() {
                let admitted = entries.iter().filter(|entry| set.admits(entry)).count();
                narrowed += usize::from(admitted < entries.len());
                answered += usize::from(entries.iter().any(|entry| set.certain(entry)));
            }
        }
    }
    // The index narrowed many queries (not a Not, nor a needle under three characters),
    // and the results were not trivially empty.
    assert!(narrowed * 3 > total, "{narrowed} of {total} narrowed");
    assert!(nonempty * 4 > total, "{nonempty} of {total} found something");
    // Needles of one or two characters were answered by their exact terms.
    assert!(answered >= 10, "{answered} of {total} answered by exact terms");
    // Ignoring accents changed some results (the words have accents, some needles not).
    assert!(folded_differs > 0, "accents made no difference in {total} filters");
}

/// An entry above the cursor is confirmed whatever the postings say; one at or below is
/// confirmed only when a candidate.
#[tokio::test]
async fn only_unindexed_entries_and_candidates_are_confirmed() {
    let (_dir, mail, inbox) = open_mail(Limits::default()).await;
    for (n, body) in ["le conseil municipal", "la cantine scolaire", "les travaux de voirie"].iter().enumerate() {
        deliver(&mail, inbox, format!("Subject: n{n}\r\n\r\n{body}\r\n")).await;
    }
    mail.index_text(1).await.unwrap();
    deliver(&mail, inbox, "Subject: late\r\n\r\nrien\r\n".to_string()).await;
    let entries = mail.uids(1, inbox).await.unwrap();
    let filter = Filter::condition(Condition::Body("cantine".into()));
    let narrowed = candidates(&mail, 1, &filter).await.unwrap().expect("narrowed");
    let admitted: Vec<u32> = entries.iter().filter(|e| narrowed.admits(e)).map(|e| e.uid).collect();
    assert_eq!(admitted, [2, 4]);
    assert!(!entries.iter().any(|e| narrowed.certain(e)), "trigrams only narrow");
    // A needle of two characters is answered by its exact term: the entries listed match
    // as they are, the one above the cursor is confirmed.
    let short = candidates(&mail, 1, &Filter::condition(Condition::Body("ca".into()))).await.unwrap().expect("short");
    let certain: Vec<u32> = entries.iter().filter(|e| short.certain(e)).map(|e| e.uid).collect();
    let admitted: Vec<u32> = entries.iter().filter(|e| short.admits(e)).map(|e| e.uid).collect();
    assert_eq!((certain, admitted), (vec![2], vec![2, 4]));
    // As a TEXT, the needle may be in any header: every entry is confirmed but those.
    let text = candidates(&mail, 1, &Filter::condition(Condition::Text("ca".into()))).await.unwrap().expect("text");
    assert_eq!(entries.iter().filter(|e| text.admits(e)).count(), 4);
    assert_eq!(entries.iter().filter(|e| text.certain(e)).map(|e| e.uid).collect::<Vec<_>>(), [2]);
    // Ignoring accents, a short needle is not exact: scanned.
    let folding = Filter::folding_accents(vec![cond(Condition::Body("ca".into()))]).unwrap();
    assert!(candidates(&mail, 1, &folding).await.unwrap().is_none());
    // A Not, a header condition, or a short needle among other tests are not narrowed.
    for filter in [
        Filter::new(vec![Node::And(2), cond(Condition::Body("ca".into())), cond(Condition::Body("le".into()))])
            .unwrap(),
        Filter::new(vec![Node::Not, cond(Condition::Body("cantine".into()))]).unwrap(),
        Filter::condition(Condition::Header { name: "subject".into(), value: "late".into() }),
    ] {
        assert!(candidates(&mail, 1, &filter).await.unwrap().is_none(), "{filter:?}");
    }
}

/// An email over a limit is not indexed but is a candidate of every query; the index is
/// cleared and built again once many emails are destroyed.
#[tokio::test]
async fn oversized_emails_are_always_candidates_and_deaths_rebuild() {
    let (_dir, mail, inbox) = open_mail(Limits { text_index_header_bytes_max: 1024, ..Limits::default() }).await;
    deliver(&mail, inbox, format!("Subject: big\r\nX-Pad: {}\r\n\r\nrien\r\n", "p".repeat(2000))).await;
    deliver(&mail, inbox, "Subject: small\r\n\r\nrien\r\n".to_string()).await;
    mail.index_text(1).await.unwrap();
    let entries = mail.uids(1, inbox).await.unwrap();
    let filter = Filter::condition(Condition::Text("absent".into()));
    let narrowed = candidates(&mail, 1, &filter).await.unwrap().expect("narrowed");
    let admitted: Vec<u32> = entries.iter().filter(|e| narrowed.admits(e)).map(|e| e.uid).collect();
    assert_eq!(admitted, [1]);

    // Destroyed past the threshold: the next round clears and builds again.
    let key = keys::text_index_state(1);
    let entry = mail.store.get(&key).await.unwrap().unwrap();
    let mut state: State = crate::decode(&key, &entry.value).unwrap();
    state.destroyed = DESTROYED_REBUILD_MIN + 1;
    let mut batch = Batch::new();
    batch.set(&key, &crate::encode(&state));
    mail.store.commit(batch).await.unwrap();
    mail.expunge(1, inbox, &[1]).await.unwrap();
    let progress = mail.index_text(1).await.unwrap();
    assert_eq!(progress.indexed, 1);
    let entry = mail.store.get(&key).await.unwrap().unwrap();
    let state: State = crate::decode(&key, &entry.value).unwrap();
    assert_eq!((state.indexed, state.destroyed, state.building), (1, 0, None));
    let unindexed = read_postings(&mail, 1, (SPACE_UNINDEXED, 0)).await.unwrap();
    assert_eq!(unindexed.len(), 0);
}

/// An index written with the terms of an older version (accents not folded) is not used,
/// and the next round builds it again with the current terms; then a needle without
/// accents finds a text with them.
#[tokio::test]
async fn an_index_of_older_terms_is_built_again() {
    let (_dir, mail, inbox) = open_mail(Limits::default()).await;
    deliver(
        &mail,
        inbox,
        "Subject: arrêté

le représentant de l'État
"
        .to_string(),
    )
    .await;
    deliver(
        &mail,
        inbox,
        "Subject: cantine

le menu
"
        .to_string(),
    )
    .await;
    mail.index_text(1).await.unwrap();
    let folded = Filter::folding_accents(vec![cond(Condition::Body("l'etat".into()))]).unwrap();
    let narrowed = candidates(&mail, 1, &folded).await.unwrap().expect("narrowed");
    let entries = mail.uids(1, inbox).await.unwrap();
    assert_eq!(entries.iter().filter(|e| narrowed.admits(e)).map(|e| e.uid).collect::<Vec<_>>(), [1]);
    // As a state record written before term versions: no `terms`.
    let key = keys::text_index_state(1);
    let entry = mail.store.get(&key).await.unwrap().unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    state.as_object_mut().unwrap().remove("terms");
    let mut batch = Batch::new();
    batch.set(&key, &serde_json::to_vec(&state).unwrap());
    mail.store.commit(batch).await.unwrap();
    assert!(candidates(&mail, 1, &folded).await.unwrap().is_none(), "older terms are not used");
    let progress = mail.index_text(1).await.unwrap();
    assert_eq!(progress.indexed, 2);
    let entry = mail.store.get(&key).await.unwrap().unwrap();
    let state: State = crate::decode(&key, &entry.value).unwrap();
    assert_eq!((state.terms, state.indexed, state.building), (TERMS_VERSION, 2, None));
    assert!(candidates(&mail, 1, &folded).await.unwrap().is_some());
}

/// The background indexer catches up after deliveries, by itself.
#[tokio::test]
async fn the_indexer_task_catches_up() {
    let (_dir, mail, inbox) = open_mail(Limits { text_index_delay_ms: 10, ..Limits::default() }).await;
    let mail = mail.with_text_index();
    deliver(&mail, inbox, "Subject: un\r\n\r\nle conseil\r\n".to_string()).await;
    let filter = Filter::condition(Condition::Body("conseil".into()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(narrowed) = candidates(&mail, 1, &filter).await.unwrap() {
            let entries = mail.uids(1, inbox).await.unwrap();
            if entries.iter().all(|entry| entry.modseq <= narrowed.cursor) {
                assert!(narrowed.admits(&entries[0]));
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "the indexer did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn chunks_round_trip_in_both_forms() {
    for offsets in [vec![], vec![0u16], vec![1, 2, 3, 4000, 4095], (0..4096).step_by(3).collect::<Vec<u16>>()] {
        let value = postings::merge(None, &offsets).unwrap();
        let mut decoded = Postings::default();
        decoded.add_chunk(5, &value).unwrap();
        assert_eq!(decoded.len(), offsets.len());
        assert!(offsets.iter().all(|offset| decoded.contains(5 * CHUNK_EMAILS + u64::from(*offset))));
        // Merged with more, both kept.
        let more = postings::merge(Some(&value), &[7]).unwrap();
        let mut merged = Postings::default();
        merged.add_chunk(5, &more).unwrap();
        assert!(merged.contains(5 * CHUNK_EMAILS + 7) && merged.len() >= offsets.len());
    }
    // The dense form is the bitmap, 513 bytes; a sparse one a few.
    assert_eq!(postings::merge(None, &(0..4096).collect::<Vec<u16>>()).unwrap().len(), 513);
    assert_eq!(postings::merge(None, &[1, 200]).unwrap(), [0, 1, 199, 1]);
    for bad in [&[][..], &[9], &[0, 0x80], &[0, 0xff, 0xff, 0xff], &[1, 0]] {
        assert!(Postings::default().add_chunk(0, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sets_intersect_and_unite() {
    let set = |emails: &[u64]| {
        let mut out = Postings::default();
        emails.iter().for_each(|email| out.insert(*email));
        out
    };
    let mut a = set(&[1, 5000, 9000, 20_000]);
    a.intersect(&set(&[5000, 20_000, 3]));
    assert_eq!(a, set(&[5000, 20_000]));
    a.union(&set(&[3]));
    assert_eq!(a, set(&[3, 5000, 20_000]));
    let mut empty = set(&[1]);
    empty.intersect(&set(&[2]));
    assert_eq!(empty, Postings::default());
}

#[test]
fn needles_take_at_most_their_budget() {
    assert!(needle_terms("ab", SPACE_BODY, 10).is_empty());
    assert_eq!(needle_terms("abc", SPACE_BODY, 10).len(), 1);
    assert_eq!(needle_terms("aaaaaa", SPACE_BODY, 10).len(), 1);
    let long: String = (0..10_000).map(|n| char::from(b'a' + (n % 26) as u8)).collect();
    // 26 distinct trigrams in a cycle of the alphabet, under the budget.
    assert_eq!(needle_terms(&long, SPACE_BODY, 64).len(), 26);
    let varied: String = (0..10_000u32).filter_map(|n| char::from_u32(0x4e00 + n)).collect();
    assert_eq!(needle_terms(&varied, SPACE_BODY, 64).len(), 64);
    assert!(needle_terms(&varied, SPACE_BODY, 0).is_empty());
}

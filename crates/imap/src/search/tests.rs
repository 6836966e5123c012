use super::*;
use hameau_mailbox::UidEntry;

/// What only the session knows becomes UIDs: sequence numbers (positions in the view),
/// `$`, `\Recent`; the rest is the mail model's.
#[tokio::test]
async fn session_keys_become_uids() {
    let dir = tempfile::tempdir().unwrap();
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
    let mail = hameau_mailbox::Mail::new(store);
    let (summaries, texts) = (hameau_mailbox::query::SummaryCache::new(0, 0), hameau_mailbox::query::TextCache::new(0));
    let entry = |uid: u32, keywords: Vec<Keyword>| UidEntry {
        uid,
        email: u64::from(uid),
        modseq: u64::from(uid),
        keywords,
        size: 10 * uid,
        received_at: 86_400 * u64::from(uid),
    };
    let selected = Selected {
        id: 1,
        read_only: false,
        entries: vec![
            entry(3, vec![Keyword::Seen]),
            entry(5, vec![]),
            entry(9, vec![]),
            entry(10, vec![Keyword::Seen]),
        ],
        highest_modseq: 10,
        saved: vec![5, 10],
        recent: vec![9, 10],
        pending_expunges: false,
    };
    let reader = Reader { mail: &mail, summaries: &summaries, texts: &texts };
    let set = |a, b| SequenceSet::from_sorted(a..=b).unwrap();
    let cases: Vec<(SearchKey, Vec<usize>)> = vec![
        (SearchKey::SequenceSet(set(2, 3)), vec![1, 2]),
        (SearchKey::SequenceSet(set(3, 7)), vec![2, 3]),
        (SearchKey::Uid(set(4, 9)), vec![1, 2]),
        (SearchKey::SequenceSet(SequenceSet::saved()), vec![1, 3]),
        (SearchKey::Recent, vec![2, 3]),
        (SearchKey::New, vec![2]),
        (SearchKey::Old, vec![0, 1]),
        (SearchKey::Unseen, vec![1, 2]),
        (SearchKey::Larger(50), vec![2, 3]),
        (SearchKey::Smaller(50), vec![0]),
        (SearchKey::Smaller(51), vec![0, 1]),
        (SearchKey::Or(Box::new(SearchKey::Uid(set(3, 3))), Box::new(SearchKey::Keyword("$Junk".into()))), vec![0]),
        (SearchKey::Not(Box::new(SearchKey::And(vec![SearchKey::Seen, SearchKey::Recent]))), vec![0, 1, 2]),
    ];
    for (key, expected) in cases {
        let (filter, has_modseq) = filter_of(&key, &selected).unwrap_or_else(|_| panic!("{key:?}"));
        assert!(!has_modseq);
        assert_eq!(reader.matching(1, &selected.entries, &filter).await.unwrap(), expected, "{key:?}");
    }
    let modseq = SearchKey::ModSeq { entry: None, modseq: 9 };
    let (filter, has_modseq) = filter_of(&modseq, &selected).unwrap_or_else(|_| panic!("modseq"));
    assert!(has_modseq);
    assert_eq!(reader.matching(1, &selected.entries, &filter).await.unwrap(), [2, 3]);
}

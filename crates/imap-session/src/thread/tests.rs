use super::*;

fn message(number: u32, id: &str, references: &[&str], date: i64, subject: &str) -> Message {
    Message {
        number,
        message_id: Some(id.into()),
        references: references.iter().map(|r| r.to_string()).collect(),
        date,
        subject: subject.into(),
    }
}

const OPTIONS: Options = Options { references_max: 32, work_max: 1_000_000 };

/// The wire form (RFC 5256 §4), as the session's writer makes it.
fn render(threads: &Threads) -> String {
    let mut out = Vec::new();
    crate::write::write_threads(&mut out, threads);
    String::from_utf8(out).expect("ASCII")
}

#[test]
fn references_build_the_tree() {
    let messages = [
        message(1, "a", &[], 10, "Budget"),
        message(2, "b", &["a"], 20, "Re: Budget"),
        message(3, "c", &["a", "b"], 30, "Re: Budget"),
        message(4, "d", &["a"], 25, "Re: Budget"),
        message(5, "e", &[], 5, "Fête du village"),
        // Its parent is missing: an empty container, pruned.
        message(6, "f", &["zzz"], 40, "Re: Travaux"),
    ];
    assert_eq!(render(&references(&messages, OPTIONS).unwrap()), "(5)(1 (2 3)(4))(6)");
}

#[test]
fn references_rfc_cases() {
    // Two replies to a missing message: a dummy root holds them.
    let messages = [message(1, "b", &["a"], 10, "x"), message(2, "c", &["a"], 20, "y")];
    assert_eq!(render(&references(&messages, OPTIONS).unwrap()), "((1)(2))");
    // Same base subject, no references: gathered under the first (non-reply) one.
    let messages = [message(1, "a", &[], 10, "Budget"), message(2, "b", &[], 20, "Re: Budget")];
    assert_eq!(render(&references(&messages, OPTIONS).unwrap()), "(1 2)");
    // Loops in References are not followed.
    let messages = [message(1, "a", &["b"], 10, "p"), message(2, "b", &["a"], 20, "q")];
    let out = render(&references(&messages, OPTIONS).unwrap());
    assert!(out == "(1 2)" || out == "(2 1)", "{out}");
    // A message referencing itself; a duplicate Message-ID.
    let messages = [message(1, "a", &["a"], 10, "s"), message(2, "a", &[], 5, "t")];
    assert_eq!(render(&references(&messages, OPTIONS).unwrap()), "(2)(1)");
}

#[test]
fn forty_thousand_references_without_recursion() {
    let ids: Vec<String> = (0..40_000).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut messages = vec![message(1, "deep", &refs, 10, "deep")];
    // Replies to references far up the chain, and a chain of replies 5,000 deep.
    for i in 0..5_000u32 {
        let parent = if i == 0 { "deep".to_string() } else { format!("m{}", i - 1) };
        messages.push(message(i + 2, &format!("m{i}"), &[&ids[i as usize], &parent], 20 + i64::from(i), "Re: deep"));
    }
    let options = Options { references_max: 40_000, work_max: 100_000_000 };
    let start = std::time::Instant::now();
    let threads = references(&messages, options).unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "{:?}", start.elapsed());
    let out = render(&threads);
    assert!(out.starts_with("(1 2 3 4 "), "{}", &out[..40]);
    drop(threads);
    // With the default cap, only the last references count: the same answer.
    let threads = references(&messages, OPTIONS).unwrap();
    assert_eq!(render(&threads), out);
}

#[test]
fn work_is_bounded() {
    // Each message re-parents a long chain's top under a new reference: every link walks
    // the chain. Past the budget: an error, not minutes of work.
    let mut messages = Vec::new();
    for i in 0..3_000u32 {
        let parent = if i == 0 { String::new() } else { format!("m{}", i - 1) };
        let refs: Vec<&str> = if i == 0 { vec![] } else { vec![&parent] };
        messages.push(message(i + 1, &format!("m{i}"), &refs, i64::from(i), "chain"));
    }
    for i in 0..3_000u32 {
        messages.push(message(10_000 + i, &format!("x{i}"), &["m2999", "top", "m0"], 0, "x"));
    }
    let options = Options { references_max: 32, work_max: 10_000 };
    assert_eq!(references(&messages, options), Err(Error::TooMuchWork));
}

#[test]
fn ordered_subject_groups_by_base_subject() {
    let messages = [
        message(1, "a", &[], 10, "Budget"),
        message(2, "b", &[], 20, "RE: [conseil] Budget"),
        message(3, "c", &[], 5, "Fwd: Travaux"),
    ];
    assert_eq!(render(&ordered_subject(&messages)), "(3)(1 2)");
    assert_eq!(base_subject("Re: Fwd: [liste] Budget  2027 (fwd)"), ("budget 2027".to_string(), true));
}

#[test]
fn base_subject_is_linear() {
    let subject = "Re: ".repeat(200_000) + &"[x]".repeat(100_000) + "fin" + &" (fwd)".repeat(100_000);
    let start = std::time::Instant::now();
    assert_eq!(base_subject(&subject), ("fin".to_string(), true));
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
}

/// Every message appears exactly once in the answer.
fn each_once(messages: &[Message], threads: &Threads) {
    let mut seen: Vec<u32> = threads.nodes.iter().filter_map(|node| node.message).collect();
    seen.sort_unstable();
    let mut expect: Vec<u32> = messages.iter().map(|m| m.number).collect();
    expect.sort_unstable();
    assert_eq!(seen, expect);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, ..Default::default() })]

    #[test]
    fn every_message_once(
        spec in proptest::collection::vec((0u8..12, proptest::collection::vec(0u8..12, 0..5), 0i64..5, 0u8..3), 0..30),
    ) {
        let messages: Vec<Message> = spec
            .iter()
            .enumerate()
            .map(|(i, (id, refs, date, subject))| Message {
                number: i as u32 + 1,
                message_id: (*id < 10).then(|| format!("{id}")),
                references: refs.iter().map(|r| format!("{r}")).collect(),
                date: *date,
                subject: ["a", "Re: a", "b"][*subject as usize].to_string(),
            })
            .collect();
        let threads = references(&messages, OPTIONS).unwrap();
        each_once(&messages, &threads);
        let out = render(&threads);
        proptest::prop_assert_eq!(out.matches('(').count(), out.matches(')').count());
        each_once(&messages, &ordered_subject(&messages));
    }
}

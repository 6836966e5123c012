use super::*;

fn check(pattern: &str, name: &str, expect: bool) {
    assert_eq!(matches(pattern, name, '/'), expect, "{pattern:?} against {name:?}");
}

#[test]
fn wildcards() {
    check("*", "INBOX", true);
    check("*", "a/b/c", true);
    check("%", "a/b", false);
    check("%", "a", true);
    check("a/%", "a/b", true);
    check("a/%", "a/b/c", false);
    check("a/*", "a/b/c", true);
    check("a*", "a", true);
    check("a%c", "abc", true);
    check("a%c", "a/c", false);
    check("*x%y", "x/xy", true);
    check("*x%y", "x/x/y", false);
    check("%/%", "a/b", true);
    check("", "", true);
    check("", "a", false);
    check("a", "", false);
    check("*%*%", "a/b", true);
    check("%*", "a/b", true);
    check("*%", "a/b", true);
    check("%%", "a/b", false);
    check("Sent", "sent", false);
}

#[test]
fn inbox_is_case_insensitive() {
    check("inbox", "INBOX", true);
    check("InBox/%", "INBOX/Sub", true);
    check("INBOX", "inbox", true);
    check("inboxes", "INBOXES", false);
    check("INBOX/sub", "INBOX/Sub", false);
}

#[test]
fn hostile_patterns_are_fast() {
    let long = "m".repeat(1000);
    let start = std::time::Instant::now();
    check(&format!("{}Z", "*".repeat(40)), &long, false);
    check(&format!("{}Z", "*%".repeat(500)), &long, false);
    check(&"*m".repeat(500), &long, true);
    check(&"%m".repeat(512), &long, true);
    check(&"%m".repeat(1001), &long, false);
    check(&"*".repeat(60_000), &long, true);
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
}

/// The RFC's definition, by backtracking: only for small inputs.
fn reference(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|skip| reference(rest, &name[skip..])),
        Some(('%', rest)) => {
            let stop = name.iter().position(|c| *c == '/').unwrap_or(name.len());
            (0..=stop).any(|skip| reference(rest, &name[skip..]))
        }
        Some((c, rest)) => name.first() == Some(c) && reference(rest, &name[1..]),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

    #[test]
    fn agrees_with_the_reference(pattern in "[ab/*%]{0,10}", name in "[ab/]{0,10}") {
        let expect = reference(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>());
        proptest::prop_assert_eq!(matches(&pattern, &name, '/'), expect, "{:?} against {:?}", pattern, name);
    }

    #[test]
    fn agrees_with_the_reference_past_64_positions(
        pattern in "[ab*%]{60,70}",
        name in "[ab/]{0,12}",
    ) {
        let expect = reference(&pattern.chars().collect::<Vec<_>>(), &name.chars().collect::<Vec<_>>());
        proptest::prop_assert_eq!(matches(&pattern, &name, '/'), expect);
    }
}

#[test]
fn literal_length() {
    let check = |segment: &str, expect: Option<usize>| assert_eq!(super::literal_length(segment.as_bytes()), expect);
    check("* 1 FETCH (BODY[] {42}", Some(42));
    check("* 1 FETCH (BINARY[] ~{7}", Some(7));
    check("a1 APPEND x {12+}", Some(12));
    check("* OK done {}", None);
    check("* OK [ALERT] {x}", None);
    check("* 1 FETCH (FLAGS ())", None);
}

use super::*;

const OURS: &str = "mx.example.org";

/// Strips our results from `headers` (followed by a body) and checks what is left.
fn check(headers: &str, expect: &str) {
    let raw = format!("{headers}\r\nBody: not a header\r\nAuthentication-Results: mx.example.org; body\r\n");
    let stripped = strip_results(raw.as_bytes(), OURS);
    let expected = format!("{expect}\r\nBody: not a header\r\nAuthentication-Results: mx.example.org; body\r\n");
    assert_eq!(String::from_utf8_lossy(&stripped), expected, "input {headers:?}");
}

const KEPT: &str = "From: a@b.example\r\n";

#[test]
fn our_results_are_removed_however_written() {
    for forged in [
        "Authentication-Results: mx.example.org; dkim=pass\r\n",
        "authentication-results: MX.Example.ORG; dkim=pass\r\n",
        "Authentication-Results:mx.example.org;dkim=pass\r\n",
        "Authentication-Results: mx.example.org 1; dkim=pass\r\n",
        "Authentication-Results: mx.example.org\r\n",
        "Authentication-Results: mx.example.org.; dkim=pass\r\n",
        "Authentication-Results:\r\n\tmx.example.org; dkim=pass\r\n",
        "Authentication-Results:\r\n \r\n mx.example.org;\r\n dkim=pass\r\n",
        "Authentication-Results: (trusted) mx.example.org; dkim=pass\r\n",
        "Authentication-Results: (a (nested \\) comment) here)mx.example.org; dkim=pass\r\n",
        "Authentication-Results: mx.example.org(comment); dkim=pass\r\n",
        "Authentication-Results: \"mx.example.org\"; dkim=pass\r\n",
        "Authentication-Results: \"mx.exa\\mple.org\"; dkim=pass\r\n",
        "Authentication-Results: (c\r\n d) \"mx.example.org\"; dkim=pass\r\n",
        "Authentication-Results: mx.example.org/extra; dkim=pass\r\n",
        "Authentication-Results : mx.example.org; dkim=pass\r\n",
        "Authentication-Results:\tmx.example.org\r\n\t; dkim=pass\r\n\t(more)\r\n",
    ] {
        check(&format!("{KEPT}{forged}{KEPT}"), &format!("{KEPT}{KEPT}"));
        check(forged, "");
        check(&format!("{forged}{forged}{KEPT}"), KEPT);
    }
}

#[test]
fn other_results_and_fields_are_kept() {
    for kept in [
        "Authentication-Results: mx.other.org; dkim=pass\r\n",
        "Authentication-Results: mx.example.org.evil; dkim=pass\r\n",
        "Authentication-Results: xmx.example.org; dkim=pass\r\n",
        "Authentication-Results: \"mx.example.org \"; dkim=pass\r\n",
        "Authentication-Results: (mx.example.org) other.org; dkim=pass\r\n",
        "Authentication-Results: (unterminated mx.example.org; dkim=pass\r\n",
        "Authentication-Results: \"unterminated mx.example.org; dkim=pass\r\n",
        "Authentication-Results: ; mx.example.org\r\n",
        "ARC-Authentication-Results: i=1; mx.example.org; dkim=pass\r\n",
        "X-Authentication-Results: mx.example.org; dkim=pass\r\n",
        "Subject: Authentication-Results: mx.example.org\r\n",
        "Subject: folded\r\n Authentication-Results: mx.example.org\r\n",
        "no colon at all\r\n",
    ] {
        check(&format!("{KEPT}{kept}"), &format!("{KEPT}{kept}"));
    }
}

#[test]
fn fields_and_body_start() {
    let raw = b"A: 1\r\n folded\r\nB :2\r\n\r\nC: body\r\n";
    let mut fields = Fields::new(raw);
    let names: Vec<(&[u8], &[u8])> = fields.by_ref().map(|field| (field.name, field.value)).collect();
    assert_eq!(names, [(&b"A"[..], &b" 1\r\n folded\r\n"[..]), (&b"B"[..], &b"2\r\n"[..])]);
    assert_eq!(fields.body_start(), Some(23));
    // No empty line: everything is header; no header at all: the body starts at once.
    let mut fields = Fields::new(b"A: 1");
    assert_eq!(fields.by_ref().count(), 1);
    assert_eq!(fields.body_start(), Some(4));
    let mut fields = Fields::new(b"\r\nA: 1\r\n");
    assert_eq!(fields.by_ref().count(), 0);
    assert_eq!(fields.body_start(), Some(2));
}

#[test]
fn authserv_ids() {
    for (value, expect) in [
        (&b" mx; x"[..], Some(&b"mx"[..])),
        (b" (c)\r\n \"a b\"; x", Some(b"a b")),
        (b" \"a\\\"b\"", Some(b"a\"b")),
        (b"", None),
        (b" ;", None),
        (b" (((", None),
        (b" \"\\", None),
    ] {
        assert_eq!(authserv_id(value).as_deref(), expect, "{:?}", String::from_utf8_lossy(value));
    }
}

#[test]
fn deep_comments_cost_no_stack() {
    let value = format!(" {}{}mx.example.org; x", "(".repeat(1_000_000), ")".repeat(1_000_000));
    assert_eq!(authserv_id(value.as_bytes()).as_deref(), Some(&b"mx.example.org"[..]));
}

#[test]
fn fuzz_property_holds_on_the_attack_seeds() {
    for seed in [
        &b"Authentication-Results:\r\n\tmx.example.org; dkim=pass\r\nFrom: <a@b.test>\r\n\r\nBody\r\n"[..],
        b"Authentication-Results: (a (nested) comment)\r\n \"mx.exa\\mple.org\" 1; dmarc=pass\r\n\r\n",
        b" folded first line\r\nAuthentication-Results: mx.example.org\r\n",
        b"\r\nAuthentication-Results: mx.example.org\r\n",
        b"Authentication-Results: mx.example.org",
        b"",
    ] {
        crate::fuzzing::fuzz_auth_results(seed);
    }
}

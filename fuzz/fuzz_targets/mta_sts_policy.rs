//! MTA-STS (RFC 8461) as the outbound client reads it from the network: the policy body
//! (`Policy::parse`), the `_mta-sts` TXT record (`parse_txt`), and the match of MX names
//! against a parsed policy's patterns. None panics, and what parses keeps the promises
//! delivery relies on (max_age in range, mx patterns lowercase and matching themselves).
//!
//! crates/smtp depends on the store (RocksDB), so its pure `mta_sts/policy.rs`, which uses
//! nothing but `std`, is included here by path.
#![no_main]

#[path = "../../crates/smtp/src/mta_sts/policy.rs"]
mod policy;

use policy::{MAX_AGE_S_MAX, Mode, Policy, is_sts_record, parse_txt};

/// Names of every shape `matches` sees: cases, trailing dots, empty labels, wildcards.
const NAMES: [&str; 8] =
    ["mx.example.com", "MX.Example.COM.", "a.b.example.net", "b.example.net", "", ".", "*.example.net", "example.net."];

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(policy) = Policy::parse(bytes) {
        assert!(policy.max_age_s <= MAX_AGE_S_MAX);
        assert!(policy.mode == Mode::None || !policy.mx.is_empty());
        for pattern in &policy.mx {
            assert_eq!(*pattern, pattern.to_ascii_lowercase());
            let name = match pattern.strip_prefix("*.") {
                Some(parent) => format!("x.{parent}"),
                None => pattern.clone(),
            };
            assert!(policy.matches(&name), "{pattern} does not match {name}");
            assert!(policy.matches(&name.to_ascii_uppercase()));
        }
        for name in NAMES.iter().copied().chain(text.lines().take(16)) {
            let _ = policy.matches(name);
        }
    }
    let _ = is_sts_record(&text);
    if let Ok(id) = parse_txt(&text) {
        assert!((1..=32).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_alphanumeric()), "id {id:?}");
    }
});

use super::{SendingLimiter, SendingLimits};

const HOUR: u64 = 3600 * 500_000;

fn limiter() -> SendingLimiter {
    SendingLimiter::new(SendingLimits {
        account_messages_per_hour_max: 3,
        account_recipients_per_hour_max: 4,
        tenant_messages_per_hour_max: 5,
        tenant_recipients_per_hour_max: 100,
    })
}

fn to(addresses: &[&str]) -> Vec<String> {
    addresses.iter().map(|a| a.to_string()).collect()
}

#[test]
fn an_account_goes_over_its_messages_then_the_next_hour_starts_again() {
    let l = limiter();
    for _ in 0..3 {
        l.count("t", 1, &to(&["a@x.fr"]), HOUR).unwrap();
    }
    let tripped = l.count("t", 1, &to(&["a@x.fr"]), HOUR + 10).unwrap_err();
    assert!(!tripped.tenant_wide);
    assert_eq!(tripped.reason, "sending limit: more than 3 messages in an hour from this account");
    l.count("t", 1, &to(&["a@x.fr"]), HOUR + 3600).unwrap();
}

#[test]
fn counting_again_after_a_trip_starts_a_new_window() {
    // Braked senders are refused before the count; counting again means the operator
    // lifted the brake.
    let l = limiter();
    for _ in 0..3 {
        l.count("t", 1, &to(&["a@x.fr"]), HOUR).unwrap();
    }
    l.count("t", 1, &to(&["a@x.fr"]), HOUR).unwrap_err();
    l.count("t", 1, &to(&["a@x.fr"]), HOUR).unwrap();
}

#[test]
fn recipients_are_counted_once_each() {
    let l = limiter();
    l.count("t", 1, &to(&["a@x.fr", "b@x.fr"]), HOUR).unwrap();
    l.count("t", 1, &to(&["a@x.fr", "b@x.fr", "c@x.fr"]), HOUR).unwrap();
    let tripped = l.count("t", 1, &to(&["d@x.fr", "e@x.fr"]), HOUR).unwrap_err();
    assert_eq!(tripped.reason, "sending limit: more than 4 recipients in an hour from this account");
    // Refused messages count nothing: another account of the tenant still sends.
    l.count("t", 2, &to(&["d@x.fr"]), HOUR).unwrap();
}

#[test]
fn a_tenant_goes_over_with_several_accounts() {
    let l = limiter();
    for account in 0..5 {
        l.count("t", account, &to(&["a@x.fr"]), HOUR).unwrap();
    }
    let tripped = l.count("t", 9, &to(&["a@x.fr"]), HOUR).unwrap_err();
    assert!(tripped.tenant_wide);
    assert_eq!(tripped.reason, "sending limit: more than 5 messages in an hour from tenant t");
    l.count("other", 9, &to(&["a@x.fr"]), HOUR).unwrap();
}

use serde_json::json;

use super::{PushRegistry, check_url, parse_utc_date, state_change, utc_date};
use crate::Limits;
use crate::mail::tests::{ACCOUNT, Fixture, NOW};

#[test]
fn utc_dates_round_trip() {
    for (unix, date) in
        [(0, "1970-01-01T00:00:00Z"), (951_782_400, "2000-02-29T00:00:00Z"), (1_790_000_000, "2026-09-21T14:13:20Z")]
    {
        assert_eq!(utc_date(unix), date);
        assert_eq!(parse_utc_date(date), Some(unix));
    }
    assert_eq!(parse_utc_date("2026-09-21T14:13:20.250Z"), Some(1_790_000_000));
    for wrong in [
        "",
        "2026-09-21",
        "2026-09-21T14:13:20+01:00",
        "2026-13-01T00:00:00Z",
        "2026-09-21T24:00:00Z",
        "2026-09-21T14:13:20.Zx",
    ] {
        assert_eq!(parse_utc_date(wrong), None, "{wrong}");
    }
}

#[test]
fn push_urls_are_https_unless_loopback_is_allowed() {
    let limits = Limits::default();
    assert!(check_url("https://push.example/abc?x=1", &limits).is_ok());
    for wrong in [
        "http://push.example/",
        "http://127.0.0.1:8080/",
        "https://user@push.example/",
        "https:///x",
        "push.example",
        "https://a b/",
    ] {
        assert!(check_url(wrong, &limits).is_err(), "{wrong}");
    }
    assert!(check_url(&format!("https://push.example/{}", "a".repeat(3000)), &limits).is_err());
    let tests = Limits { push_loopback_allowed: true, ..Limits::default() };
    assert!(check_url("http://127.0.0.1:8080/push", &tests).is_ok());
    assert!(check_url("http://[::1]:8080/push", &tests).is_ok());
    assert!(check_url("http://push.example/", &tests).is_err(), "plain http only to loopback");
}

#[test]
fn a_state_change_names_the_types_asked() {
    let all = state_change(7, 42, None).unwrap();
    assert_eq!(
        all,
        json!({"@type": "StateChange", "changed": {"a7": {"Email": "42", "Mailbox": "42", "Thread": "42", "EmailDelivery": "42"}}})
    );
    let some = state_change(7, 42, Some(&["Mailbox".to_string()])).unwrap();
    assert_eq!(some["changed"]["a7"], json!({"Mailbox": "42"}));
    assert_eq!(state_change(7, 42, Some(&["CalendarEvent".to_string()])), None);
}

fn core(fixture: &Fixture, calls: serde_json::Value) -> impl std::future::Future<Output = Vec<serde_json::Value>> + '_ {
    fixture.call(calls)
}

#[tokio::test]
async fn a_subscription_is_verified_before_it_is_pushed_to() {
    let limits = Limits { push_loopback_allowed: true, push_subscriptions_per_account_max: 2, ..Limits::default() };
    let fixture = Fixture::with_limits(limits).await;
    let create = json!({"create": {
        "k1": {"deviceClientId": "tel", "url": "http://127.0.0.1:9/push", "types": ["Email"]},
        "k2": {"deviceClientId": "tel", "url": "https://push.example/", "keys": {"p256dh": "x", "auth": "y"}},
        "k3": {"deviceClientId": "tel", "url": "https://push.example/", "expires": "2099-01-01T00:00:00Z"},
        "k4": {"deviceClientId": "tel", "url": "ftp://push.example/"},
    }});
    let set = core(&fixture, json!([["PushSubscription/set", create, "c"]])).await;
    let set = &set[0][1];
    let id = set["created"]["k1"]["id"].as_str().unwrap().to_string();
    assert_eq!(set["created"]["k1"]["expires"], utc_date(NOW + 604_800), "the server's cap is said");
    assert_eq!(set["notCreated"]["k2"]["properties"], json!(["keys"]), "{set}");
    assert_eq!(set["created"]["k3"]["expires"], utc_date(NOW + 604_800));
    assert_eq!(set["notCreated"]["k4"]["properties"], json!(["url"]));
    assert!(set.get("oldState").is_none() && set.get("accountId").is_none());
    // The verification is queued; nothing is pushed before the client sends the code back.
    let registry: &PushRegistry = &fixture.services.push;
    let verifications = registry.take_verifications();
    assert_eq!(verifications.len(), 2);
    let verification = verifications.iter().find(|verification| verification.body["pushSubscriptionId"] == id).unwrap();
    assert_eq!(verification.url, "http://127.0.0.1:9/push");
    assert_eq!(verification.body["@type"], "PushVerification");
    assert!(registry.targets(ACCOUNT, NOW).is_empty());
    // A third is over the account's limit.
    let third = json!({"create": {"k5": {"deviceClientId": "pc", "url": "https://push.example/"}}});
    let refused = core(&fixture, json!([["PushSubscription/set", third, "c"]])).await;
    assert_eq!(refused[0][1]["notCreated"]["k5"]["type"], "forbidden");
    // A wrong code is refused; the right one verifies.
    let wrong = json!({"update": {id.clone(): {"verificationCode": "nope"}}});
    let wrong = core(&fixture, json!([["PushSubscription/set", wrong, "c"]])).await;
    assert_eq!(wrong[0][1]["notUpdated"][&id]["type"], "invalidProperties");
    let code = verification.body["verificationCode"].clone();
    let right = json!({"update": {id.clone(): {"verificationCode": code}}});
    let right = core(&fixture, json!([["PushSubscription/set", right, "c"]])).await;
    assert!(right[0][1]["updated"].as_object().unwrap().contains_key(&id), "{}", right[0][1]);
    let targets = registry.targets(ACCOUNT, NOW);
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].types, Some(vec!["Email".to_string()]));
    assert!(registry.targets(ACCOUNT, NOW + 604_800).is_empty(), "expired");
    // /get shows the code once verified, never the URL; asking for it is forbidden.
    let got = core(&fixture, json!([["PushSubscription/get", {"ids": [id.clone(), "p0"]}, "c"]])).await;
    assert_eq!(got[0][1]["list"][0]["verificationCode"], code);
    assert!(got[0][1]["list"][0].get("url").is_none());
    assert_eq!(got[0][1]["notFound"], json!(["p0"]));
    let url = core(&fixture, json!([["PushSubscription/get", {"properties": ["url"]}, "c"]])).await;
    assert_eq!(url[0][1]["type"], "forbidden");
    // Immutable properties stay.
    let immutable = json!({"update": {id.clone(): {"url": "https://elsewhere.example/"}}});
    let immutable = core(&fixture, json!([["PushSubscription/set", immutable, "c"]])).await;
    assert_eq!(immutable[0][1]["notUpdated"][&id]["properties"], json!(["url"]));
    // A new registry loads what the store holds (a restart).
    let restarted = PushRegistry::default();
    assert_eq!(restarted.load(&fixture.services.mail, 100).await.unwrap(), 2);
    assert_eq!(restarted.targets(ACCOUNT, NOW).len(), 1);
    // Destroyed: gone from both.
    let destroy = core(&fixture, json!([["PushSubscription/set", {"destroy": [id.clone()]}, "c"]])).await;
    assert_eq!(destroy[0][1]["destroyed"], json!([id]));
    assert!(registry.targets(ACCOUNT, NOW).is_empty());
    assert_eq!(fixture.services.mail.push_subscriptions(ACCOUNT).await.unwrap().len(), 1);
}

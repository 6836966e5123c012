//! Attack tests of JMAP (issue 15): see `attack.rs` for the shared set-up. Guessed bearer
//! tokens, and a request that would parse one large message over and over.

use std::time::Duration;

use serde_json::{Value, json};

use crate::attack::{Target, USER};
use crate::attack_admin::{api_key, small_limiter};
use crate::support::{Api, set_config};

const PROBE: Duration = Duration::from_secs(10);

const USING: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];

/// Made-up bearer tokens from one address: 401, then 429 for that address (the account's
/// real key included, from there); the account's key from another address is served, and
/// so are the honest IMAP and SMTP clients.
#[test]
fn guessed_bearer_tokens_lock_out_the_guessing_address_only() {
    let mut token = String::new();
    let target = Target::start_with(|config| {
        small_limiter(config);
        token = api_key(config, &["--user", USER]);
    });
    let attacker = Api { source: "127.0.7.1".parse().unwrap(), ..Api::new(&target.server) };
    let mut statuses = Vec::new();
    for i in 0..20 {
        let guess = format!("hmk_{i:012}_{}", "0".repeat(64));
        let status = attacker.call("GET", "/.well-known/jmap", Some(&guess), None).status;
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    assert_eq!(statuses.first(), Some(&401), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "never refused: {statuses:?}");
    assert_eq!(attacker.call("GET", "/.well-known/jmap", Some(&token), None).status, 429);
    let honest = Api { source: "127.0.7.2".parse().unwrap(), ..attacker.clone() };
    let session = honest.call("GET", "/.well-known/jmap", Some(&token), None);
    assert_eq!(session.status, 200, "{}", session.body);
    target.assert_serving(PROBE);
}

/// One 2 MB upload named 500 times in `Email/parse` (each a parse of its own) is refused
/// at the parse that would pass `jmap.parsed_bytes_max` (8 MB here), the fourth, not after
/// 500 (`requestTooLarge`); three times is served; the server keeps serving everyone.
#[test]
fn parsing_one_large_blob_over_and_over_is_cut_short() {
    let mut token = String::new();
    let target = Target::start_with(|config| {
        set_config(config, "parsed_bytes_max = 256000000", "parsed_bytes_max = 8000000");
        token = api_key(config, &["--user", USER]);
    });
    let api = Api::new(&target.server);
    let session = api.call("GET", "/.well-known/jmap", Some(&token), None);
    assert_eq!(session.status, 200, "{}", session.body);
    let session: Value = serde_json::from_str(&session.body).unwrap();
    let account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"].as_str().unwrap().to_string();
    let message = format!("From: a@b.test\r\nSubject: gros\r\n\r\n{}", "ligne de texte\r\n".repeat(125_000));
    let bearer = format!("Bearer {token}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "message/rfc822")];
    let upload = api.raw("POST", &format!("/jmap/upload/{account}"), &headers, message.as_bytes());
    assert_eq!(upload.status, 201, "{}", upload.body);
    let blob = serde_json::from_str::<Value>(&upload.body).unwrap()["blobId"].as_str().unwrap().to_string();
    let parse = |count: usize| {
        let calls = json!([["Email/parse", {"accountId": account, "blobIds": vec![blob.clone(); count]}, "p"]]);
        let response = api.call("POST", "/jmap/api", Some(&token), Some(json!({"using": USING, "methodCalls": calls})));
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str::<Value>(&response.body).unwrap()["methodResponses"][0].clone()
    };
    let refused = parse(500);
    assert_eq!(
        (refused[0].as_str(), refused[1]["type"].as_str()),
        (Some("error"), Some("requestTooLarge")),
        "{refused}"
    );
    let served = parse(3);
    assert_eq!(served[0], "Email/parse", "{served}");
    assert_eq!(served[1]["parsed"][&blob]["subject"], "gros", "{served}");
    target.assert_serving(PROBE);
}

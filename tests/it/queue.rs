//! Queue administration (issue 11 scope 5) against the real binary: a message submitted
//! with swaks and deferred (its domain does not resolve) is listed, shown, held, released
//! and deleted through the API and the CLI, by the operator and its tenant's admin; the
//! admin of another tenant sees nothing of it.

use std::process::Command;

use serde_json::{Value, json};

use crate::imap::create_account;
use crate::support::{Api, admin, config_path, init_with_token, run, start_server};

const PASSWORD: &str = "correct horse battery staple";

/// An API key of `scope` (`--tenant a`), made locally; its token.
fn key(config: &str, scope: &[&str]) -> String {
    let (status, stdout, stderr) =
        run(&[&["apikey", "create", "--name", "queue", "--config", config][..], scope].concat());
    assert!(status.success(), "{stderr}");
    serde_json::from_str::<Value>(&stdout).unwrap()["token"].as_str().unwrap().to_string()
}

/// Tenants `a` (domain a.test, account agent@a.test) and `b`; the data directory, its
/// configuration and the operator's key.
fn two_tenants() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["tenant", "create", "b", "--name", "B"],
            &["domain", "create", "a.test", "--tenant", "a"],
        ],
    );
    create_account(&config, "agent@a.test", PASSWORD);
    (dir, config, operator)
}

#[test]
fn a_deferred_message_is_administered_by_its_tenant_and_the_operator_only() {
    let (_dir, config, operator) = two_tenants();
    let c = config.to_str().unwrap();
    let (admin_a, admin_b) = (key(c, &["--tenant", "a"]), key(c, &["--tenant", "b"]));
    let server = start_server(&config);
    let api = Api::new(&server);

    // Submitted on 587; nowhere.test does not resolve (the test DNS answers nothing), so
    // the recipient is deferred and the message stays queued.
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &server.submission[0].port().to_string(), "--tls"])
        .args(["--helo", "poste-accueil", "--timeout", "20", "--from", "agent@a.test", "--to", "x@nowhere.test"])
        .args(["--header", "Subject: Conseil municipal"])
        .args(["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD])
        .output()
        .expect("swaks is needed (Debian package swaks; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("250 2.0.0 Ok: queued"), "{text}");

    // The operator and a's admin list it; b's admin does not see it.
    let list = |token: &str, query: &str| {
        let response = api.call("GET", &format!("/api/v1/queue{query}"), Some(token), None);
        assert_eq!(response.status, 200, "{}", response.body);
        response.json()["items"].as_array().unwrap().clone()
    };
    let items = list(&operator, "");
    assert_eq!(items.len(), 1, "{items:?}");
    let id = items[0]["id"].as_u64().unwrap();
    assert_eq!(list(&operator, "?tenant=a").len(), 1);
    // The same message (its schedule may move meanwhile: the worker tries it).
    let ids = |items: Vec<Value>| items.iter().map(|item| item["id"].as_u64()).collect::<Vec<_>>();
    assert_eq!(ids(list(&admin_a, "")), ids(items.clone()));
    assert_eq!(list(&admin_b, ""), Vec::<Value>::new());
    assert_eq!(list(&admin_b, "?tenant=a"), Vec::<Value>::new());
    let shown = api.call("GET", &format!("/api/v1/queue/{id}"), Some(&admin_a), None).json();
    assert_eq!((shown["tenant"].clone(), shown["sender"].clone()), (json!("a"), json!("agent@a.test")));
    assert_eq!(shown["recipients"][0]["address"], json!("x@nowhere.test"));
    assert_eq!(shown["recipients"][0]["state"], json!("pending"));
    assert!(!shown.to_string().contains("Conseil municipal"), "never the content: {shown}");
    // To b's admin, a's message is an absent one, byte for byte, however its id is typed.
    let absent = "9".repeat(id.to_string().len());
    for (other, missing) in [
        (id.to_string(), absent.clone()),
        (format!("0{id}"), format!("0{absent}")),
        (format!("+{id}"), format!("+{absent}")),
    ] {
        let get = |typed: &str| {
            let response = api.call("GET", &format!("/api/v1/queue/{typed}"), Some(&admin_b), None);
            let headers: Vec<_> = response.headers.iter().filter(|(name, _)| name != "date").cloned().collect();
            (response.status, headers, response.body)
        };
        let (status, headers, body) = get(&other);
        assert_eq!(status, 404);
        let body = body.replace(&format!("\\\"{other}\\\""), &format!("\\\"{missing}\\\""));
        assert_eq!((status, headers, body), get(&missing), "{other} vs {missing}");
    }
    let refused = api.call("POST", &format!("/api/v1/queue/{id}/hold"), Some(&admin_b), Some(json!({"reason": "x"})));
    assert_eq!(refused.status, 404);

    // The worker tried it once: deferred, its reply recorded.
    let start = std::time::Instant::now();
    let tried = loop {
        let shown = api.call("GET", &format!("/api/v1/queue/{id}"), Some(&operator), None).json();
        if shown["recipients"][0]["attempts"].as_u64() >= Some(1) {
            break shown;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "never tried: {shown}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(tried["recipients"][0]["state"], json!("pending"));
    assert!(tried["recipients"][0]["last_reply"].as_str().unwrap().starts_with('4'), "{tried}");
    assert!(tried["recipients"][0]["next_attempt_at"].as_u64() > tried["queued_at"].as_u64());

    // Held through the CLI against the server, as a's admin.
    let url = format!("https://127.0.0.1:{}", server.https[0].port());
    let cert = server.cert.to_str().unwrap().to_string();
    let remote = |args: &[&str], key: &str| {
        let mut all = args.to_vec();
        all.extend(["--url", &url, "--api-key", key, "--ca-file", &cert]);
        run(&all)
    };
    let id_text = id.to_string();
    let (status, stdout, stderr) = remote(&["queue", "hold", &id_text, "--reason", "vérification"], &admin_a);
    assert!(status.success(), "{stderr}");
    let held: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(held["held"]["reason"], json!("vérification"));
    assert_eq!(held["next_attempt_at"], Value::Null);
    let (status, stdout, _) = remote(&["queue", "list"], &admin_a);
    assert!(status.success());
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["items"][0]["held"]["reason"], json!("vérification"));
    let (status, _, stderr) = remote(&["queue", "show", &id_text], &admin_b);
    assert!(!status.success());
    assert_eq!(stderr.trim_end(), format!("hameau: error: 404: queued message \"{id}\" does not exist"));
    let (status, _, stderr) = remote(&["queue", "retry", &id_text], &operator);
    assert!(!status.success());
    assert!(stderr.contains("409: queued message") && stderr.contains("is held"), "{stderr}");

    // Released and deleted through the API.
    let released = api.call("POST", &format!("/api/v1/queue/{id}/release"), Some(&operator), None);
    assert_eq!(released.status, 200, "{}", released.body);
    assert_eq!(released.json()["held"], Value::Null);
    let deleted = api.call("DELETE", &format!("/api/v1/queue/{id}"), Some(&admin_a), None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(list(&operator, ""), Vec::<Value>::new());
    assert_eq!(api.call("GET", &format!("/api/v1/queue/{id}"), Some(&operator), None).status, 404);
    assert!(!server.log().join("\n").contains("panicked"));
    drop(server);

    // The CLI on the data directory, once the server is stopped: nothing is left.
    let (status, stdout, stderr) = run(&["queue", "list", "--config", c]);
    assert!(status.success(), "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["items"], json!([]));
    let (status, _, stderr) = run(&["queue", "delete", &id_text, "--config", c]);
    assert!(!status.success());
    assert_eq!(stderr.trim_end(), format!("hameau: error: 404: queued message \"{id}\" does not exist"));
}

/// Issue 11's brake: with the account's limit set low, the first message past it gets
/// `451 4.7.1`; the account's queued mail is held, visible to its tenant's admin through
/// the API and not to another tenant's; only the operator lifts the brake, which
/// releases the mail.
#[test]
fn past_its_sending_limit_an_account_is_braked_until_the_operator_lifts_it() {
    let (_dir, config, operator) = two_tenants();
    let c = config.to_str().unwrap();
    crate::support::set_config(&config, "account_messages_per_hour_max = 200", "account_messages_per_hour_max = 2");
    let (admin_a, admin_b) = (key(c, &["--tenant", "a"]), key(c, &["--tenant", "b"]));
    let server = start_server(&config);
    let api = Api::new(&server);
    let send = || {
        let output = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &server.submission[0].port().to_string(), "--tls"])
            .args(["--helo", "poste-accueil", "--timeout", "20", "--from", "agent@a.test", "--to", "x@nowhere.test"])
            .args(["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD])
            .output()
            .expect("swaks");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    for _ in 0..2 {
        let text = send();
        assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
    }
    let text = send();
    assert!(text.contains("451 4.7.1 sending limit: more than 2 messages in an hour from this account"), "{text}");
    // Refused from now on, at MAIL FROM.
    let text = send();
    assert!(text.contains("451 4.7.1 sending is stopped"), "{text}");

    // Its tenant's admin sees the brake and the held mail; another tenant's admin sees nothing.
    let brakes = |token: &str| api.call("GET", "/api/v1/brakes", Some(token), None).json();
    let shown = brakes(&admin_a);
    assert_eq!(shown[0]["account"], json!("agent@a.test"), "{shown}");
    assert_eq!(brakes(&admin_b), json!([]));
    let held = api.call("GET", "/api/v1/queue", Some(&admin_a), None).json();
    let items = held["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{held}");
    assert!(items.iter().all(|item| item["held"]["reason"].as_str().unwrap().starts_with("sending limit")), "{held}");
    assert_eq!(api.call("GET", "/api/v1/queue", Some(&admin_b), None).json()["items"], json!([]));

    // Only the operator lifts it; the mail is released and the account sends again.
    let lift = json!({"tenant": "a", "account": "agent@a.test"});
    assert_eq!(api.call("POST", "/api/v1/brakes/lift", Some(&admin_a), Some(lift.clone())).status, 403);
    // The operator, with the CLI against the running server.
    let url = format!("https://{}", server.https[0]);
    let cert = server.cert.to_str().unwrap().to_string();
    let cli = |args: &[&str]| run(&[args, &["--url", &url, "--api-key", &operator, "--ca-file", &cert]].concat());
    let (status, stdout, stderr) = cli(&["queue", "brakes", "--tenant", "a"]);
    assert!(status.success() && stdout.contains("agent@a.test"), "{stdout}{stderr}");
    let (status, _, stderr) = cli(&["queue", "lift-brake", "--tenant", "a", "--account", "agent@a.test"]);
    assert!(status.success(), "{stderr}");
    assert_eq!(api.call("POST", "/api/v1/brakes/lift", Some(&operator), Some(lift)).status, 404);
    let released = api.call("GET", "/api/v1/queue", Some(&operator), None).json();
    assert!(released["items"].as_array().unwrap().iter().all(|item| item["held"].is_null()), "{released}");
    assert_eq!(brakes(&operator), json!([]));
    let text = send();
    assert!(text.contains("250 2.0.0 Ok: queued"), "{text}");
}

//! Deleting an account that holds mail, against the real binary: refused without
//! `delete_mail` (its mail may be a public record to keep); with it, the account's mail
//! goes, its bytes go back to the commune's quota (seen by another agent over JMAP
//! `Quota/get`), a message it shared with another agent stays whole for that agent, the
//! MX refuses the address, and an account made again at the address starts empty.

use crate::imap::{create_account, python, quick_dns};
use crate::support::{Api, admin, config_path, init_with_token, run, start_server};

const PASSWORD: &str = "correct horse battery staple";

fn swaks(port: u16, to: &str, subject: &str, body: &str) -> (bool, String) {
    let output = std::process::Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test"])
        .args(["--to", to, "--from", "jean@sender.test", "--header", &format!("Subject: {subject}")])
        .args(["--body", body])
        .output()
        .expect("swaks");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What `user` sees over JMAP: the `used` of its account's quota and of its tenant's, and
/// the subjects in its Inbox.
fn jmap_view(server: &crate::support::Server, user: &str) -> serde_json::Value {
    let script = format!(
        r##"
import base64, json, requests
base = "https://localhost:{port}"
auth = {{"Authorization": "Basic " + base64.b64encode(({user:?} + ":" + {PASSWORD:?}).encode()).decode(),
        "Content-Type": "application/json"}}
session = requests.get(base + "/.well-known/jmap", headers=auth, verify={cert:?}, timeout=20).json()
account = list(session["accounts"])[0]
calls = [["Quota/get", {{"accountId": account, "ids": None}}, "q"],
         ["Email/query", {{"accountId": account}}, "e"],
         ["Email/get", {{"accountId": account, "#ids": {{"resultOf": "e", "name": "Email/query", "path": "/ids"}},
                         "properties": ["subject", "size"], "fetchTextBodyValues": True}}, "g"]]
r = requests.post(base + "/jmap/api", headers=auth, verify={cert:?}, timeout=20, data=json.dumps(
    {{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:quota"], "methodCalls": calls}}))
assert r.status_code == 200, r.text
answers = {{tag: body for _, body, tag in r.json()["methodResponses"]}}
quotas = {{q["scope"]: q["used"] for q in answers["q"]["list"]}}
print(json.dumps({{"quotas": quotas, "subjects": sorted(m["subject"] for m in answers["g"]["list"])}}))
"##,
        port = server.https[0].port(),
        cert = server.cert.to_str().unwrap(),
    );
    serde_json::from_str(python(&script).trim()).unwrap()
}

#[test]
fn an_account_with_mail_is_deleted_only_with_its_mail_which_gives_the_commune_its_space_back() {
    let (dir, token) = init_with_token();
    let config = config_path(dir.path());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A", "--quota-bytes", "100000000"],
            &["domain", "create", "a.test", "--tenant", "a"],
        ],
    );
    create_account(&config, "agent@a.test", PASSWORD);
    create_account(&config, "autre@a.test", PASSWORD);
    // With a quota of its own, the agent sees its usage over JMAP.
    admin(&config, &[&["account", "update", "agent@a.test", "--quota-bytes", "50000000"]]);
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    let smtp = server.smtp[0].port();
    for n in 0..3 {
        assert!(swaks(smtp, "agent@a.test", &format!("Dossier {n}"), &"Pièce du dossier. ".repeat(500)).0);
    }
    assert!(swaks(smtp, "agent@a.test,autre@a.test", "Conseil municipal", "Ordre du jour : budget 2027.").0);

    let agent = jmap_view(&server, "agent@a.test");
    let autre = jmap_view(&server, "autre@a.test");
    let agent_used = agent["quotas"]["account"].as_u64().unwrap();
    let tenant_before = autre["quotas"]["domain"].as_u64().unwrap();
    assert!(agent_used > 27_000, "{agent}");
    assert!(tenant_before > agent_used, "{autre}");
    assert_eq!(autre["subjects"], serde_json::json!(["Conseil municipal"]));

    // Without delete_mail: refused, and the account and its mail are still there.
    let api = Api::new(&server);
    let refused = api.call("DELETE", "/api/v1/accounts/agent@a.test", Some(&token), None);
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.body.contains("holds") && refused.body.contains("delete_mail"), "{refused:?}");
    let url = format!("https://localhost:{}", server.https[0].port());
    let ca = server.cert.to_str().unwrap();
    let (status, _, stderr) =
        run(&["account", "delete", "agent@a.test", "--url", &url, "--api-key", &token, "--ca-file", ca]);
    assert!(!status.success() && stderr.contains("--delete-mail"), "{stderr}");
    assert_eq!(jmap_view(&server, "agent@a.test")["subjects"].as_array().unwrap().len(), 4);
    // An unknown parameter is refused, not taken for "no".
    let typo = api.call("DELETE", "/api/v1/accounts/agent@a.test?delete_mails=true", Some(&token), None);
    assert_eq!(typo.status, 400, "{typo:?}");

    // With it (the CLI against the running server).
    let (status, stdout, stderr) = run(&[
        "account",
        "delete",
        "agent@a.test",
        "--delete-mail",
        "--url",
        &url,
        "--api-key",
        &token,
        "--ca-file",
        ca,
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    let autre = jmap_view(&server, "autre@a.test");
    assert_eq!(autre["quotas"]["domain"].as_u64().unwrap(), tenant_before - agent_used, "{autre}");
    // The message both received is whole for the other agent.
    assert_eq!(autre["subjects"], serde_json::json!(["Conseil municipal"]));
    assert!(!crate::backup::imap_logs_in(&server, "agent@a.test"));
    let (delivered, transcript) = swaks(smtp, "agent@a.test", "Encore", "pour personne");
    assert!(!delivered && transcript.contains("550"), "{transcript}");

    // An account made again at the address is a new one: nothing of the old one shows.
    create_account_api(&api, &token, "agent@a.test");
    assert!(swaks(smtp, "agent@a.test", "Bienvenue", "nouveau compte").0);
    let fresh = jmap_view(&server, "agent@a.test");
    assert_eq!(fresh["subjects"], serde_json::json!(["Bienvenue"]), "{fresh}");

    // An account without mail needs no flag (its mailboxes go with it all the same).
    create_account_api(&api, &token, "vide@a.test");
    let deleted = api.call("DELETE", "/api/v1/accounts/vide@a.test", Some(&token), None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
}

fn create_account_api(api: &Api, token: &str, address: &str) {
    let body = serde_json::json!({ "address": address, "password": PASSWORD });
    let created = api.call("POST", "/api/v1/accounts", Some(token), Some(body));
    assert_eq!(created.status, 201, "{created:?}");
}

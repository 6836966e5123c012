//! `Thread/get` and `Thread/changes` on a real store.

use hameau_mailbox::{Ingest, Quota, Role};
use serde_json::json;

use crate::mail::tests::{ACCOUNT, Fixture, NOW};

fn message(id: &str, reply_to: Option<&str>) -> String {
    let reply = reply_to.map(|parent| format!("In-Reply-To: <{parent}@mairie.test>\r\n")).unwrap_or_default();
    format!("From: a@mairie.test\r\nSubject: {id}\r\nMessage-ID: <{id}@mairie.test>\r\n{reply}\r\ntexte {id}\r\n")
}

/// Delivers into the inbox with an arrival time of its own.
async fn deliver_at(fixture: &Fixture, raw: &str, received_at: u64) -> u64 {
    let inbox = fixture.services.mail.mailbox_by_role(ACCOUNT, Role::Inbox).await.unwrap().unwrap();
    let ingest = Ingest {
        raw: raw.as_bytes().to_vec().into(),
        mailboxes: vec![inbox.id],
        keywords: vec![],
        received_at,
        quota: Quota::default(),
    };
    fixture.services.mail.ingest(ACCOUNT, ingest).await.unwrap().email
}

#[tokio::test]
async fn a_thread_lists_its_emails_oldest_first_and_its_changes_follow() {
    let fixture = Fixture::new().await;
    let state = fixture.one("Thread/get", json!({"accountId": "a7", "ids": []})).await["state"].clone();
    let root = deliver_at(&fixture, &message("racine", None), NOW).await;
    // Arrived later, but dated before its parent: receivedAt orders, not ids.
    let late = deliver_at(&fixture, &message("tard", Some("racine")), NOW - 100).await;
    let other = deliver_at(&fixture, &message("autre", None), NOW).await;
    let got = fixture
        .one("Thread/get", json!({"accountId": "a7", "ids": [format!("t{root}"), format!("t{other}"), "t999", "e1"]}))
        .await;
    assert_eq!(got["list"][0], json!({"id": format!("t{root}"), "emailIds": [format!("e{late}"), format!("e{root}")]}));
    assert_eq!(got["list"][1]["emailIds"], json!([format!("e{other}")]));
    assert_eq!(got["notFound"], json!(["t999", "e1"]));
    let changes = fixture.one("Thread/changes", json!({"accountId": "a7", "sinceState": state})).await;
    assert_eq!(changes["created"], json!([format!("t{root}"), format!("t{other}")]), "{changes}");
    assert_eq!(changes["updated"], json!([]));
    // A keyword is no change of a thread; a destruction is.
    let state = changes["newState"].clone();
    fixture.services.mail.set_keywords(ACCOUNT, late, &[hameau_mailbox::Keyword::Seen]).await.unwrap();
    let changes = fixture.one("Thread/changes", json!({"accountId": "a7", "sinceState": state})).await;
    assert_eq!((changes["created"].clone(), changes["updated"].clone()), (json!([]), json!([])));
    let inbox = fixture.services.mail.mailbox_by_role(ACCOUNT, Role::Inbox).await.unwrap().unwrap().id;
    fixture.services.mail.remove(ACCOUNT, late, inbox).await.unwrap();
    fixture.services.mail.remove(ACCOUNT, other, inbox).await.unwrap();
    let changes = fixture.one("Thread/changes", json!({"accountId": "a7", "sinceState": state})).await;
    assert_eq!(changes["updated"], json!([format!("t{root}")]), "{changes}");
    assert_eq!(changes["destroyed"], json!([format!("t{other}")]));
    assert_eq!(fixture.error("Thread/get", json!({"accountId": "a7"})).await, "requestTooLarge");
    assert_eq!(
        fixture.error("Thread/get", json!({"accountId": "a7", "ids": [], "properties": ["x"]})).await,
        "invalidArguments"
    );
}

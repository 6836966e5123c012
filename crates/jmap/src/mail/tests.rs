//! The mail methods on a real store: a fixture with one account, and a request runner.

use std::sync::Arc;

use hameau_mailbox::query::{SummaryCache, TextCache};
use hameau_mailbox::{Ingest, Mail, Quota};
use hameau_store::{Options, Store};
use serde_json::{Value, json};

use super::Services;
use crate::api::{User, run};
use crate::{Limits, Request};

/// The account of the fixture's user.
pub const ACCOUNT: u64 = 7;
pub const NOW: u64 = 1_790_000_000;

/// A store in a temporary directory, the mail model on it, and the user of account 7
/// with its special-use mailboxes.
pub struct Fixture {
    pub services: Services,
    pub user: User,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Fixture::with_limits(Limits::default()).await
    }

    pub async fn with_limits(limits: Limits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
        let mail = Mail::new(store);
        mail.ensure_account(ACCOUNT, NOW).await.unwrap();
        let services = Services {
            mail,
            summaries: Arc::new(SummaryCache::new(1000, 1 << 20)),
            texts: Arc::new(TextCache::new(1 << 20)),
            limits,
            submitter: None,
            push: Arc::default(),
            queries: Default::default(),
        };
        let user = User {
            account: ACCOUNT,
            address: "agent@mairie.test".into(),
            quota: Quota::default(),
            display_name: "Agent d'accueil".into(),
            may_send_as: vec!["mairie@mairie.test".into()],
        };
        Fixture { services, user, _dir: dir }
    }

    /// Delivers `raw` into the mailbox of that role; its email id.
    pub async fn deliver(&self, raw: &str, role: hameau_mailbox::Role) -> u64 {
        let mailbox = self.services.mail.mailbox_by_role(ACCOUNT, role).await.unwrap().unwrap();
        let ingest = Ingest {
            raw: raw.as_bytes().to_vec().into(),
            mailboxes: vec![mailbox.id],
            keywords: vec![],
            received_at: NOW,
            quota: Quota::default(),
        };
        self.services.mail.ingest(ACCOUNT, ingest).await.unwrap().email
    }

    /// Runs the method calls `calls` (each `[name, arguments, id]`) with the core and mail
    /// capabilities: the `methodResponses`.
    pub async fn call(&self, calls: Value) -> Vec<Value> {
        self.call_using(&["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], calls).await
    }

    /// Runs `calls` using `capabilities`: the `methodResponses`.
    pub async fn call_using(&self, capabilities: &[&str], calls: Value) -> Vec<Value> {
        let body = json!({"using": capabilities, "methodCalls": calls});
        let request =
            Request::parse(&serde_json::to_vec(&body).unwrap(), &self.services.limits, &crate::api::CAPABILITIES)
                .unwrap();
        let response = run(request, &self.user, &self.services, NOW, "s").await.to_json();
        response["methodResponses"].as_array().unwrap().clone()
    }

    /// One call's response arguments; panics with the error if it failed.
    pub async fn one(&self, name: &str, arguments: Value) -> Value {
        let responses = self.call(json!([[name, arguments, "c"]])).await;
        assert_eq!(responses[0][0], name, "{}", responses[0]);
        responses[0][1].clone()
    }

    /// One call's error type.
    pub async fn error(&self, name: &str, arguments: Value) -> String {
        let responses = self.call(json!([[name, arguments, "c"]])).await;
        assert_eq!(responses[0][0], "error", "{}", responses[0]);
        responses[0][1]["type"].as_str().unwrap().to_string()
    }
}

pub const MESSAGE: &str = "From: Maire <maire@mairie.test>\\r\\nTo: agent@mairie.test\\r\\nSubject: Conseil\\r\\nDate: Mon, 30 Nov 2026 10:00:00 +0100\\r\\nMessage-ID: <1@mairie.test>\\r\\n\\r\\nOrdre du jour.\\r\\n";

#[test]
fn blob_ids_have_one_spelling() {
    use super::BlobId;
    let upload = format!("u{}", "ab".repeat(32));
    for wire in ["b17", "b17.3", "b17.3.0", "b1.2.3.4.5", &upload, &format!("{upload}.2")] {
        assert_eq!(BlobId::parse(wire).unwrap().to_wire(), wire);
    }
    assert_eq!(BlobId::parse("b17.3.1"), Some(BlobId::Part { of: "b17.3".into(), part: 1 }));
    assert_eq!(BlobId::chain("b17.3.1"), Some((BlobId::Email { email: 17, part: None }, vec![3, 1])));
    for wrong in
        ["b", "b017", "b1.", "b1.02", "b1..2", "b1.2.3.4.5.6", "u12", &format!("u{}", "AB".repeat(32)), "x1", ".1"]
    {
        assert_eq!(BlobId::parse(wrong), None, "{wrong}");
    }
}

mod mailbox {
    use hameau_mailbox::Role;
    use serde_json::json;

    use super::{Fixture, MESSAGE};

    #[tokio::test]
    async fn mailboxes_are_listed_with_roles_and_counts() {
        let fixture = Fixture::new().await;
        fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let got = fixture.one("Mailbox/get", json!({"accountId": "a7"})).await;
        let list = got["list"].as_array().unwrap();
        assert_eq!(list.len(), 6, "{got}");
        let inbox = list.iter().find(|mailbox| mailbox["role"] == "inbox").unwrap();
        assert_eq!(inbox["name"], "INBOX");
        assert_eq!((inbox["totalEmails"].as_u64(), inbox["unreadEmails"].as_u64()), (Some(1), Some(1)));
        assert_eq!((inbox["totalThreads"].as_u64(), inbox["unreadThreads"].as_u64()), (Some(1), Some(1)));
        assert_eq!(inbox["myRights"]["mayDelete"], false);
        assert!(inbox["parentId"].is_null());
        // Some, with a property list and an unknown id.
        let id = inbox["id"].as_str().unwrap();
        let some = fixture
            .one("Mailbox/get", json!({"accountId": "a7", "ids": [id, "m999", "x"], "properties": ["name"]}))
            .await;
        assert_eq!(some["list"], json!([{"id": id, "name": "INBOX"}]));
        assert_eq!(some["notFound"], json!(["m999", "x"]));
        assert_eq!(fixture.error("Mailbox/get", json!({"accountId": "a8"})).await, "accountNotFound");
        assert_eq!(
            fixture.error("Mailbox/get", json!({"accountId": "a7", "properties": ["nope"]})).await,
            "invalidArguments"
        );
        assert_eq!(fixture.error("Mailbox/get", json!({"accountId": "a7", "bogus": 1})).await, "invalidArguments");
    }

    #[tokio::test]
    async fn mailboxes_are_created_renamed_and_destroyed_with_their_changes() {
        let fixture = Fixture::new().await;
        let state = fixture.one("Mailbox/get", json!({"accountId": "a7", "ids": []})).await["state"].clone();
        let set = fixture
            .one(
                "Mailbox/set",
                json!({"accountId": "a7", "create": {
                    "p": {"name": "Projets"},
                    "c": {"name": "Voirie", "parentId": "#p"},
                    "bad": {"name": "a/b"},
                    "role": {"name": "Autre corbeille", "role": "trash"}
                }}),
            )
            .await;
        let parent = set["created"]["p"]["id"].as_str().unwrap().to_string();
        let child = set["created"]["c"]["id"].as_str().unwrap().to_string();
        assert_eq!(set["notCreated"]["bad"]["type"], "invalidProperties");
        assert_eq!(set["notCreated"]["role"]["type"], "forbidden", "{set}");
        let got = fixture.one("Mailbox/get", json!({"accountId": "a7", "ids": [&child]})).await;
        assert_eq!(
            (got["list"][0]["name"].as_str(), got["list"][0]["parentId"].as_str()),
            (Some("Voirie"), Some(parent.as_str()))
        );
        let changes = fixture.one("Mailbox/changes", json!({"accountId": "a7", "sinceState": state})).await;
        assert_eq!(changes["created"], json!([&parent, &child]));
        assert_eq!(changes["newState"], set["newState"]);
        // The parent cannot go while it has a child; renamed under the root, unsubscribed.
        let state = set["newState"].clone();
        let set = fixture.one("Mailbox/set", json!({"accountId": "a7", "destroy": [&parent]})).await;
        assert_eq!(set["notDestroyed"][&parent]["type"], "mailboxHasChild");
        let set = fixture
            .one(
                "Mailbox/set",
                json!({"accountId": "a7",
                    "update": {&child: {"name": "Routes", "parentId": null, "isSubscribed": false}},
                    "destroy": [&parent]}),
            )
            .await;
        let parent_gone = parent.clone();
        assert!(set["updated"].get(&child).is_some(), "{set}");
        assert_eq!(set["destroyed"], json!([&parent]), "updates come before destructions");
        let changes = fixture.one("Mailbox/changes", json!({"accountId": "a7", "sinceState": state})).await;
        assert_eq!(changes["updated"], json!([&child]));
        assert_eq!(changes["destroyed"], json!([&parent_gone]));
        assert!(changes["updatedProperties"].is_null());
        let set = fixture.one("Mailbox/set", json!({"accountId": "a7", "destroy": [&child]})).await;
        assert_eq!(set["destroyed"], json!([&child]));
        assert_eq!(fixture.error("Mailbox/set", json!({"accountId": "a7", "ifInState": "0"})).await, "stateMismatch");
        assert_eq!(
            fixture.error("Mailbox/changes", json!({"accountId": "a7", "sinceState": "99999"})).await,
            "cannotCalculateChanges"
        );
    }

    #[tokio::test]
    async fn a_delivery_changes_the_counts_and_a_full_mailbox_is_kept() {
        let fixture = Fixture::new().await;
        let state = fixture.one("Mailbox/get", json!({"accountId": "a7", "ids": []})).await["state"].clone();
        fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let changes = fixture.one("Mailbox/changes", json!({"accountId": "a7", "sinceState": state})).await;
        assert_eq!(changes["updated"].as_array().unwrap().len(), 1);
        assert_eq!(
            changes["updatedProperties"],
            json!(["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"])
        );
        let inbox = changes["updated"][0].clone();
        let set = fixture.one("Mailbox/set", json!({"accountId": "a7", "destroy": [&inbox]})).await;
        assert_eq!(set["notDestroyed"][inbox.as_str().unwrap()]["type"], "forbidden");
        let archive = fixture.one("Mailbox/query", json!({"accountId": "a7", "filter": {"role": "archive"}})).await;
        assert_eq!(archive["ids"].as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn mailboxes_are_queried_and_sorted_as_a_tree() {
        let fixture = Fixture::new().await;
        fixture
            .one(
                "Mailbox/set",
                json!({"accountId": "a7", "create": {"z": {"name": "Zeta"}, "a": {"name": "Alpha", "parentId": "#z"}}}),
            )
            .await;
        let query = fixture
            .one("Mailbox/query", json!({"accountId": "a7", "sort": [{"property": "sortOrder"}, {"property": "name"}], "sortAsTree": true, "calculateTotal": true}))
            .await;
        assert_eq!(query["total"], 8);
        let names =
            fixture.one("Mailbox/get", json!({"accountId": "a7", "ids": query["ids"], "properties": ["name"]})).await;
        let names: Vec<&str> = names["list"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
        assert_eq!(names[0], "INBOX");
        let zeta = names.iter().position(|name| *name == "Zeta").unwrap();
        assert_eq!(names[zeta + 1], "Alpha", "a child right after its parent: {names:?}");
        let no_role = fixture
            .one(
                "Mailbox/query",
                json!({"accountId": "a7", "filter": {"operator": "NOT", "conditions": [{"hasAnyRole": true}]}}),
            )
            .await;
        assert_eq!(no_role["ids"].as_array().unwrap().len(), 2);
        let paged = fixture.one("Mailbox/query", json!({"accountId": "a7", "position": -2, "limit": 1})).await;
        assert_eq!((paged["position"].as_u64(), paged["ids"].as_array().unwrap().len()), (Some(6), 1));
        assert_eq!(
            fixture.error("Mailbox/query", json!({"accountId": "a7", "filter": {"color": "red"}})).await,
            "unsupportedFilter"
        );
        assert_eq!(
            fixture.error("Mailbox/query", json!({"accountId": "a7", "sort": [{"property": "size"}]})).await,
            "unsupportedSort"
        );
        assert_eq!(
            fixture.error("Mailbox/query", json!({"accountId": "a7", "anchor": "m999"})).await,
            "anchorNotFound"
        );
    }
}

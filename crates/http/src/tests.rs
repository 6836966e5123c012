//! The routes in process (no sockets): the outbound queue's administration, by role.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hameau_directory::dns::DnsOptions;
use hameau_directory::{
    AccountRole, Directory, KeyScope, NewAccount, NewApiKey, NewDomain, NewTenant, Options as DirectoryOptions,
    Principal,
};
use hameau_queue::{NewMessage, Queue};
use hameau_store::{Options as StoreOptions, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::{AppState, Clock, HttpMetrics, Options};

const NOW: u64 = 1_795_000_000; // 2026-11-18

struct FixedClock;

impl Clock for FixedClock {
    fn now_s(&self) -> u64 {
        NOW
    }
}

/// The handlers' state over `store` and `directory` at [`NOW`], the server being
/// `host`, with default options.
pub(crate) fn state(store: Store, directory: Directory, queue: Queue, host: &str) -> AppState {
    let registry = Arc::new(hameau_telemetry::Registry::new());
    AppState {
        limiter: directory.limiter().clone(),
        directory,
        clock: Arc::new(FixedClock),
        metrics: HttpMetrics::new(&registry, "https"),
        registry,
        options: Arc::new(Options::default()),
        dns: DnsOptions { mx_host: host.into() },
        queue,
        client: crate::ClientSettings::standard(host),
        backups: Arc::default(),
        moves: Arc::default(),
        imports: None,
        mail: hameau_mailbox::Mail::new(store.clone()),
        quarantine: hameau_filter::Quarantine::new(store.clone(), &hameau_filter::Options::default()),
        filter_settings: hameau_filter::Settings::new(store.clone(), &hameau_filter::Options::default()),
        jmap: Arc::new(hameau_jmap::mail::Services {
            mail: hameau_mailbox::Mail::new(store.clone()),
            summaries: Arc::new(hameau_mailbox::query::SummaryCache::new(0, 0)),
            texts: Arc::new(hameau_mailbox::query::TextCache::new(0)),
            limits: hameau_jmap::Limits::default(),
            submitter: None,
            push: Arc::default(),
            queries: Default::default(),
        }),
        jmap_in_flight: std::sync::Arc::default(),
        store,
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    router: Router,
    queue: Queue,
    quarantine: hameau_filter::Quarantine,
    mail: hameau_mailbox::Mail,
    directory: Directory,
    /// The account of user@a.fr.
    user_a_id: u64,
    operator: String,
    admin_a: String,
    admin_b: String,
    user_a: String,
}

/// Tenants `a` and `b`, the account user@a.fr, a key per role, and three queued
/// messages: 1 of tenant `a`, 2 of tenant `b`, 3 of no tenant (a notice of the server's).
async fn fixture() -> Fixture {
    fixture_with(false).await
}

/// [`fixture`], with a second cluster `b` (a store of its own) beside the control store
/// when `clusters`.
async fn fixture_with(clusters: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
    let directory = Directory::new(store.clone(), DirectoryOptions::default());
    let operator = Principal::Operator;
    for tenant in ["a", "b"] {
        let new = NewTenant {
            id: tenant.into(),
            name: tenant.into(),
            siren: None,
            insee: None,
            quota_bytes: None,
            accounts_max: None,
        };
        directory.create_tenant(&operator, new, NOW).await.unwrap();
    }
    directory.create_domain(&operator, NewDomain { name: "a.fr".into(), tenant: "a".into() }, NOW).await.unwrap();
    let account = NewAccount {
        address: "user@a.fr".into(),
        display_name: String::new(),
        password: None,
        quota_bytes: None,
        enabled: true,
        role: AccountRole::User,
    };
    let user_a_id = directory.create_account(&operator, account, NOW).await.unwrap().id;
    let mut tokens = Vec::new();
    for scope in [
        KeyScope::Operator,
        KeyScope::TenantAdmin { tenant: "a".into() },
        KeyScope::TenantAdmin { tenant: "b".into() },
        KeyScope::User { account: "user@a.fr".into() },
    ] {
        let new = NewApiKey { name: "test".into(), scope, expires_at: None };
        tokens.push(directory.create_api_key(&operator, new, NOW).await.unwrap().1);
    }
    let queue = Queue::new(store.clone(), hameau_queue::Limits::default());
    for (tenant, mail_from) in [(Some("a"), "agent@a.fr"), (Some("b"), "agent@b.fr"), (None, "")] {
        let new = NewMessage {
            raw: bytes::Bytes::from_static(b"From: agent@a.fr\r\nSubject: Conseil\r\n\r\nBonjour\r\n"),
            mail_from: mail_from.into(),
            recipients: vec!["x@nowhere.test".into(), "y@nowhere.test".into()],
            tenant: tenant.map(str::to_string),
            account: None,
            envelope_id: format!("env-{}", tenant.unwrap_or("none")),
            held: None,
        };
        queue.enqueue(new, NOW - 60).await.unwrap();
    }
    let mut state = state(store.clone(), directory.clone(), queue.clone(), "mx.example.org");
    if clusters {
        let b = Store::open(&StoreOptions::rocksdb(dir.path().join("b"))).await.unwrap();
        let others = std::collections::BTreeMap::from([("b".to_string(), b)]);
        let clusters = hameau_store::placement::Clusters::new(store, others, Duration::from_secs(2)).await.unwrap();
        let tenants = Arc::new(crate::api::clusters::DirectoryTenants(directory.clone()));
        state.mail = state.mail.clone().with_placement(clusters, tenants);
    }
    let (quarantine, mail) = (state.quarantine.clone(), state.mail.clone());
    let [operator, admin_a, admin_b, user_a] = <[String; 4]>::try_from(tokens).unwrap();
    let router = crate::router(state);
    Fixture { _dir: dir, router, queue, quarantine, mail, directory, user_a_id, operator, admin_a, admin_b, user_a }
}

impl Fixture {
    /// One request as `token`: the status and the body (JSON, or `null` when empty).
    async fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, bytes) = self.call_raw(token, method, path, body).await;
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (status, value)
    }

    async fn call_raw(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, bytes.to_vec())
    }

    /// The operator's job at `path` once it no longer runs (10 s at most), from `job`.
    async fn until_done(&self, mut job: Value, path: &str) -> Value {
        for _ in 0..200 {
            if job["state"] != "running" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            job = self.call(&self.operator, "GET", path, None).await.1;
        }
        job
    }

    /// The ids of the quarantine's listing.
    async fn held_ids(&self, token: &str) -> Vec<String> {
        let (status, page) = self.call(token, "GET", "/api/v1/quarantine", None).await;
        assert_eq!(status, 200, "{page}");
        page["items"].as_array().unwrap().iter().map(|item| item["id"].as_str().unwrap().to_string()).collect()
    }

    /// The ids of a listing.
    async fn ids(&self, token: &str, path: &str) -> Vec<u64> {
        let (status, page) = self.call(token, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        page["items"].as_array().unwrap().iter().map(|item| item["id"].as_u64().unwrap()).collect()
    }
}

#[tokio::test]
async fn each_role_reaches_what_it_administers() {
    let f = fixture().await;
    let hold = json!({"reason": "test"});
    // Columns: user of a, admin of b, admin of a, operator. Message 1 is a's.
    let rows: [(&str, &str, Option<Value>, [u16; 4]); 10] = [
        ("GET", "/api/v1/queue", None, [403, 200, 200, 200]),
        ("GET", "/api/v1/queue/1", None, [403, 404, 200, 200]),
        ("GET", "/api/v1/queue/3", None, [403, 404, 404, 200]),
        ("GET", "/api/v1/queue/99", None, [403, 404, 404, 404]),
        ("GET", "/api/v1/queue/not-a-number", None, [403, 404, 404, 404]),
        ("POST", "/api/v1/queue/1/hold", Some(hold.clone()), [403, 404, 200, 200]),
        ("POST", "/api/v1/queue/1/retry", None, [403, 404, 409, 409]),
        ("POST", "/api/v1/queue/1/release", None, [403, 404, 200, 200]),
        ("POST", "/api/v1/queue/1/retry", None, [403, 404, 200, 200]),
        ("DELETE", "/api/v1/queue/1", None, [403, 404, 204, 404]),
    ];
    let callers = [&f.user_a, &f.admin_b, &f.admin_a, &f.operator];
    let mut failures = Vec::new();
    for (method, path, body, expected) in &rows {
        for (caller, expected) in callers.iter().zip(expected) {
            let (status, answer) = f.call(caller, method, path, body.clone()).await;
            if status != *expected {
                failures.push(format!("{method} {path} as {caller}: {status} (expected {expected}) {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn lists_are_scoped_and_paged() {
    let f = fixture().await;
    assert_eq!(f.ids(&f.operator, "/api/v1/queue").await, vec![1, 2, 3]);
    assert_eq!(f.ids(&f.operator, "/api/v1/queue?tenant=").await, vec![1, 2, 3]);
    assert_eq!(f.ids(&f.operator, "/api/v1/queue?tenant=a").await, vec![1]);
    assert_eq!(f.ids(&f.operator, "/api/v1/queue?tenant=nowhere").await, Vec::<u64>::new());
    assert_eq!(f.ids(&f.admin_a, "/api/v1/queue").await, vec![1]);
    assert_eq!(f.ids(&f.admin_a, "/api/v1/queue?tenant=a").await, vec![1]);
    // Another tenant's queue reads as an absent tenant's: empty.
    assert_eq!(f.ids(&f.admin_a, "/api/v1/queue?tenant=b").await, Vec::<u64>::new());
    assert_eq!(f.ids(&f.admin_a, "/api/v1/queue?tenant=nowhere").await, Vec::<u64>::new());
    assert_eq!(f.ids(&f.admin_b, "/api/v1/queue").await, vec![2]);

    let (_, page) = f.call(&f.operator, "GET", "/api/v1/queue?limit=2", None).await;
    assert_eq!(page["next"], json!("2"));
    assert_eq!(f.ids(&f.operator, "/api/v1/queue?limit=2&after=2").await, vec![3]);
    let (_, page) = f.call(&f.operator, "GET", "/api/v1/queue?limit=2&after=2", None).await;
    assert_eq!(page["next"], Value::Null);
    let (status, problem) = f.call(&f.operator, "GET", "/api/v1/queue?limit=0", None).await;
    assert_eq!((status, problem["detail"].as_str().unwrap()), (422, "limit: must be at least 1"));
    let (status, problem) = f.call(&f.operator, "GET", "/api/v1/queue?after=first", None).await;
    assert_eq!((status, problem["detail"].as_str().unwrap()), (400, "after: \"first\" is not a cursor of this list"));
    let (status, _) = f.call(&f.operator, "GET", "/api/v1/queue?colour=red", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_message_shows_its_envelope_and_recipients_never_its_content() {
    let f = fixture().await;
    let (status, shown) = f.call(&f.admin_a, "GET", "/api/v1/queue/1", None).await;
    assert_eq!(status, 200);
    let recipient = |address: &str| {
        json!({"address": address, "state": "pending", "final_at": null, "attempts": 0, "last_reply": null,
            "next_attempt_at": NOW - 60})
    };
    let expected = json!({
        "id": 1, "tenant": "a", "sender": "agent@a.fr", "queued_at": NOW - 60, "size": 47, "envelope_id": "env-a",
        "held": null, "next_attempt_at": NOW - 60,
        "recipients": [recipient("x@nowhere.test"), recipient("y@nowhere.test")],
    });
    assert_eq!(shown, expected);
    // The list shows the same.
    let (_, page) = f.call(&f.admin_a, "GET", "/api/v1/queue", None).await;
    assert_eq!(page["items"][0], expected);

    // A delivered and a deferred recipient.
    let outcomes = [
        ("x@nowhere.test".to_string(), hameau_queue::Outcome::Delivered { reply: "250 2.0.0 ok".into() }),
        ("y@nowhere.test".to_string(), hameau_queue::Outcome::Deferred { reply: "451 4.4.4 no answer".into() }),
    ];
    f.queue.record(1, &outcomes, NOW).await.unwrap();
    let (_, shown) = f.call(&f.operator, "GET", "/api/v1/queue/1", None).await;
    let retry_at = NOW + f.queue.limits().retry_wait_s(1);
    let expected = json!([
        {"address": "x@nowhere.test", "state": "delivered", "final_at": NOW, "attempts": 0,
            "last_reply": "250 2.0.0 ok", "next_attempt_at": null},
        {"address": "y@nowhere.test", "state": "pending", "final_at": null, "attempts": 1,
            "last_reply": "451 4.4.4 no answer", "next_attempt_at": retry_at},
    ]);
    assert_eq!(shown["recipients"], expected);
    assert_eq!(shown["next_attempt_at"], json!(retry_at));
    let text = shown.to_string();
    assert!(!text.contains("Bonjour") && !text.contains("Conseil") && !text.contains("blob"), "{text}");
}

#[tokio::test]
async fn hold_release_retry_and_delete() {
    let f = fixture().await;
    // What wakes the delivery worker, through the store (on any node).
    let mut due = f.queue.watch_due().await.unwrap();
    let (status, held) = f.call(&f.admin_a, "POST", "/api/v1/queue/1/hold", Some(json!({"reason": "vérifier"}))).await;
    assert_eq!(status, 200);
    assert_eq!(held["held"], json!({"reason": "vérifier", "since": NOW}));
    assert_eq!(held["next_attempt_at"], Value::Null);
    assert_eq!(f.queue.get(1).await.unwrap().unwrap().due_at, None, "out of the schedule");
    // Holding again keeps the first reason.
    let (_, again) = f.call(&f.operator, "POST", "/api/v1/queue/1/hold", Some(json!({"reason": "other"}))).await;
    assert_eq!(again["held"]["reason"], json!("vérifier"));
    let (status, problem) = f.call(&f.operator, "POST", "/api/v1/queue/1/retry", None).await;
    assert_eq!(
        (status, problem["detail"].as_str().unwrap()),
        (409, "queued message \"1\" is held: release it to deliver it")
    );
    for (body, status, detail) in [
        (json!({"reason": ""}), 422, "reason: must not be empty"),
        (json!({"reason": "a\nb"}), 422, "reason: must not hold control characters (such as line breaks)"),
        (json!({"reason": "x".repeat(201)}), 422, "reason: longer than 200 bytes"),
    ] {
        let (got, problem) = f.call(&f.operator, "POST", "/api/v1/queue/1/hold", Some(body)).await;
        assert_eq!((got, problem["detail"].as_str().unwrap()), (status, detail));
    }
    let (status, _) = f.call(&f.operator, "POST", "/api/v1/queue/1/hold", Some(json!({}))).await;
    assert_eq!(status, 422);

    // Release and retry wake the delivery worker.
    let mut woken = async || tokio::time::timeout(Duration::from_millis(50), due.changed()).await.is_ok();
    assert!(!woken().await, "holding does not wake the worker");
    let (status, released) = f.call(&f.admin_a, "POST", "/api/v1/queue/1/release", None).await;
    assert_eq!(status, 200);
    assert_eq!((released["held"].clone(), released["next_attempt_at"].clone()), (Value::Null, json!(NOW)));
    assert!(woken().await, "release wakes the worker");
    // A worker takes the three; the retry makes it due before the lease's end.
    assert_eq!(f.queue.claim_due(NOW, 10, u64::MAX).await.unwrap().len(), 3);
    assert!(!woken().await, "a claim does not wake the worker");
    let (status, _) = f.call(&f.admin_a, "POST", "/api/v1/queue/1/retry", None).await;
    assert_eq!(status, 200);
    assert!(woken().await, "retry wakes the worker");

    let (status, body) = f.call(&f.admin_a, "DELETE", "/api/v1/queue/1", None).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(f.queue.get(1).await.unwrap(), None);
    let (status, _) = f.call(&f.admin_a, "GET", "/api/v1/queue/1", None).await;
    assert_eq!(status, 404);
    assert_eq!(f.ids(&f.operator, "/api/v1/queue").await, vec![2, 3]);
}

/// Another tenant's message and an absent one read the same, byte for byte, on every
/// route (but for the id as typed).
#[tokio::test]
async fn another_tenants_message_reads_exactly_as_an_absent_one() {
    let f = fixture().await;
    for (method, suffix, body) in [
        ("GET", "", None),
        ("POST", "/retry", None),
        ("POST", "/hold", Some(json!({"reason": "x"}))),
        ("POST", "/release", None),
        ("DELETE", "", None),
    ] {
        let (status_other, other) =
            f.call_raw(&f.admin_b, method, &format!("/api/v1/queue/1{suffix}"), body.clone()).await;
        let (status_absent, absent) = f.call_raw(&f.admin_b, method, &format!("/api/v1/queue/9{suffix}"), body).await;
        let other = String::from_utf8(other).unwrap().replace("\\\"1\\\"", "\\\"9\\\"");
        assert_eq!((status_other, other), (status_absent, String::from_utf8(absent).unwrap()), "{method} {suffix}");
        assert_eq!(status_absent, 404);
    }
    // Nothing changed.
    let message = f.queue.get(1).await.unwrap().unwrap();
    assert_eq!((message.held, message.due_at), (None, Some(NOW - 60)));
}

/// Holds a message of tenant `tenant` for `to` (address and account).
async fn hold(f: &Fixture, tenant: &str, to: (&str, u64)) -> String {
    let recipients = [(to.0.to_string(), to.1)];
    let hold = hameau_filter::quarantine::Hold {
        tenant,
        mail_from: "compta@fournisseur.test",
        recipients: &recipients,
        received_at: NOW - 60,
        verdict: "action=quarantine; score=10.00; ATTACHMENT_DANGEROUS(10.00)",
        reason: "facture.exe: an executable",
    };
    let raw = b"From: compta@fournisseur.test\r\nSubject: Facture\r\nX-Hameau-Filter: action=quarantine; score=10.00; ATTACHMENT_DANGEROUS(10.00)\r\n\r\nCi-joint.\r\n";
    f.quarantine.hold(hold, bytes::Bytes::from_static(raw)).await.unwrap()
}

#[tokio::test]
async fn the_quarantine_is_scoped_and_a_release_reaches_the_inbox() {
    let f = fixture().await;
    let a = hold(&f, "a", ("user@a.fr", f.user_a_id)).await;
    let b = hold(&f, "b", ("someone@b.fr", 999)).await;
    let (operator, admin_a, admin_b, user_a) = (&f.operator, &f.admin_a, &f.admin_b, &f.user_a);
    assert_eq!(f.held_ids(operator).await, [b.as_str(), a.as_str()]);
    assert_eq!(f.held_ids(admin_a).await, [a.as_str()]);
    assert_eq!(f.held_ids(admin_b).await, [b.as_str()]);
    let (status, page) = f.call(admin_b, "GET", "/api/v1/quarantine?tenant=a", None).await;
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 0));
    let (status, page) = f.call(operator, "GET", "/api/v1/quarantine?recipient=USER@a.fr", None).await;
    assert_eq!((status, page["items"][0]["id"].as_str()), (200, Some(a.as_str())));
    let (status, _) = f.call(operator, "GET", "/api/v1/quarantine?after=x", None).await;
    assert_eq!(status, 400);

    // Columns: user of a, admin of b, admin of a, operator.
    let rows: [(&str, String, [u16; 4]); 6] = [
        ("GET", "/api/v1/quarantine".into(), [403, 200, 200, 200]),
        ("GET", format!("/api/v1/quarantine/{a}"), [403, 404, 200, 200]),
        ("GET", format!("/api/v1/quarantine/{a}/raw"), [403, 404, 200, 200]),
        ("GET", "/api/v1/quarantine/99".into(), [403, 404, 404, 404]),
        ("POST", format!("/api/v1/quarantine/{a}/release"), [403, 404, 0, 0]),
        ("DELETE", format!("/api/v1/quarantine/{b}"), [403, 0, 404, 0]),
    ];
    for (method, path, expected) in &rows {
        for (caller, expected) in [user_a, admin_b, admin_a, operator].iter().zip(expected).filter(|(_, e)| **e != 0) {
            let (status, answer) = f.call_raw(caller, method, path, None).await;
            assert_eq!(status, *expected, "{method} {path}: {}", String::from_utf8_lossy(&answer));
        }
    }
    // Another tenant's message and an absent one read the same.
    let (_, other) = f.call_raw(admin_b, "GET", &format!("/api/v1/quarantine/{a}"), None).await;
    let (_, absent) = f.call_raw(admin_b, "GET", "/api/v1/quarantine/99", None).await;
    assert_eq!(
        String::from_utf8(other).unwrap().replace(&format!("\\\"{a}\\\""), "\\\"99\\\""),
        String::from_utf8(absent).unwrap()
    );

    let (status, shown) = f.call(admin_a, "GET", &format!("/api/v1/quarantine/{a}"), None).await;
    assert_eq!(status, 200);
    assert_eq!((shown["subject"].as_str(), shown["preview"].as_str()), (Some("Facture"), Some("Ci-joint.")));
    assert_eq!(shown["recipients"], json!(["user@a.fr"]));
    assert!(shown["verdict"].as_str().unwrap().contains("ATTACHMENT_DANGEROUS"));
    assert_eq!(shown["expires_at"], json!(NOW - 60 + 30 * 86_400));
    let (status, raw) = f.call_raw(admin_a, "GET", &format!("/api/v1/quarantine/{a}/raw"), None).await;
    assert_eq!(status, 200);
    assert!(raw.starts_with(b"From: compta@fournisseur.test\r\n"));

    // The operator releases a's message: it is then in user@a.fr's Inbox, once.
    let (status, released) = f.call(operator, "POST", &format!("/api/v1/quarantine/{a}/release"), None).await;
    assert_eq!((status, released), (200, json!({"delivered": ["user@a.fr"], "skipped": []})));
    let (status, _) = f.call(operator, "POST", &format!("/api/v1/quarantine/{a}/release"), None).await;
    assert_eq!(status, 404);
    let inbox = f.mail.mailbox_by_role(f.user_a_id, hameau_mailbox::Role::Inbox).await.unwrap().unwrap();
    let uids = f.mail.uids(f.user_a_id, inbox.id).await.unwrap();
    assert_eq!(uids.len(), 1);
    let stored = f.mail.raw(f.user_a_id, uids[0].email).await.unwrap();
    assert!(String::from_utf8(stored).unwrap().contains("X-Hameau-Filter: action=quarantine"));
    // The operator deletes b's.
    let (status, _) = f.call(operator, "DELETE", &format!("/api/v1/quarantine/{b}"), None).await;
    assert_eq!(status, 204);
    assert!(f.held_ids(operator).await.is_empty());
}

#[tokio::test]
async fn a_tenants_filter_settings_by_role() {
    let f = fixture().await;
    let strict =
        json!({"thresholds": {"warn_score": 2.0, "junk_score": 5.0, "quarantine_score": 10.0, "reject_score": 20.0}});
    // Columns: user of a, admin of b, admin of a, operator.
    let rows: [(&str, &str, Option<Value>, [u16; 4]); 6] = [
        ("GET", "/api/v1/tenants/a/filter", None, [403, 404, 200, 200]),
        ("PUT", "/api/v1/tenants/a/filter", Some(strict.clone()), [403, 404, 200, 200]),
        ("GET", "/api/v1/tenants/zz/filter", None, [403, 404, 404, 404]),
        ("PUT", "/api/v1/tenants/zz/filter", Some(strict.clone()), [403, 404, 404, 404]),
        ("DELETE", "/api/v1/tenants/a/filter", None, [403, 404, 204, 204]),
        ("DELETE", "/api/v1/tenants/b/filter", None, [403, 204, 404, 204]),
    ];
    let callers = [&f.user_a, &f.admin_b, &f.admin_a, &f.operator];
    for (method, path, body, expected) in &rows {
        for (caller, expected) in callers.iter().zip(expected) {
            let (status, answer) = f.call(caller, method, path, body.clone()).await;
            assert_eq!(status, *expected, "{method} {path}: {answer}");
        }
    }
    let (status, set) = f.call(&f.admin_a, "PUT", "/api/v1/tenants/a/filter", Some(strict.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(set["own"], strict);
    assert_eq!(set["effective"]["thresholds"]["junk_score"], json!(5.0));
    assert_eq!(set["effective"]["warning"]["subject_tag"], json!("[SUSPECT]"));
    let (_, got) = f.call(&f.operator, "GET", "/api/v1/tenants/a/filter", None).await;
    assert_eq!(got, set);
    let falling =
        json!({"thresholds": {"warn_score": 6.0, "junk_score": 5.0, "quarantine_score": 10.0, "reject_score": 20.0}});
    let (status, problem) = f.call(&f.admin_a, "PUT", "/api/v1/tenants/a/filter", Some(falling)).await;
    assert_eq!(
        (status, problem["detail"].as_str().unwrap()),
        (400, "thresholds.junk_score: 5 is not above thresholds.warn_score (6)")
    );
    let (status, _) = f.call(&f.admin_a, "PUT", "/api/v1/tenants/a/filter", Some(json!({"colour": 1}))).await;
    assert_eq!(status, 422);
    let (status, _) = f.call(&f.admin_a, "DELETE", "/api/v1/tenants/a/filter", None).await;
    assert_eq!(status, 204);
    let (_, got) = f.call(&f.admin_a, "GET", "/api/v1/tenants/a/filter", None).await;
    assert_eq!(got["own"], json!({}));
    assert_eq!(got["effective"]["thresholds"]["junk_score"], json!(8.0));
}

/// Port 80: a running HTTP-01 challenge is answered, an unknown token is not, and every
/// other path is a redirect to the same host over HTTPS.
#[tokio::test]
async fn plain_http_answers_challenges_and_redirects_the_rest() {
    let tokens = hameau_net::Http01Tokens::new();
    tokens.insert("abc_-1", "abc_-1.thumbprint");
    let router = crate::plain::router(tokens.clone());
    let get = |path: &str, host: &str| {
        let request = axum::http::Request::get(path).header("host", host).body(Body::empty()).unwrap();
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let location = response.headers().get("location").map(|value| value.to_str().unwrap().to_string());
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, location, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let (status, _, body) = get("/.well-known/acme-challenge/abc_-1", "mail.commune.fr").await;
    assert_eq!((status, body.as_str()), (200, "abc_-1.thumbprint"));
    assert_eq!(get("/.well-known/acme-challenge/other", "mail.commune.fr").await.0, 404);
    tokens.remove("abc_-1");
    assert_eq!(get("/.well-known/acme-challenge/abc_-1", "mail.commune.fr").await.0, 404);
    let (status, location, _) = get("/mail/config-v1.1.xml?emailaddress=a%40b.fr", "autoconfig.commune.fr:80").await;
    assert_eq!(status, 301);
    assert_eq!(location.as_deref(), Some("https://autoconfig.commune.fr/mail/config-v1.1.xml?emailaddress=a%40b.fr"));
    assert_eq!(get("/", "bad host\"").await.0, 400);
}

/// Backups hold every tenant's mail: only the operator starts, lists or reads them. A
/// user is refused before anything is read; a tenant admin may not start one, lists none,
/// and a job reads for it exactly as an absent one. Nobody else starts anything.
#[tokio::test]
async fn only_the_operator_starts_or_reads_backups() {
    let f = fixture().await;
    let set = tempfile::tempdir().unwrap();
    let to = set.path().join("set");
    let body = json!({ "to": to });
    // Columns: user of a, admin of b, admin of a.
    let rows: [(&str, &str, Option<Value>, [u16; 3]); 4] = [
        ("POST", "/api/v1/backups", Some(body.clone()), [403, 403, 403]),
        ("GET", "/api/v1/backups", None, [403, 200, 200]),
        ("GET", "/api/v1/backups/1", None, [403, 404, 404]),
        ("GET", "/api/v1/backups/99", None, [403, 404, 404]),
    ];
    for (method, path, body, expected) in &rows {
        for (caller, expected) in [&f.user_a, &f.admin_b, &f.admin_a].iter().zip(expected) {
            let (status, answer) = f.call(caller, method, path, body.clone()).await;
            assert_eq!(status, *expected, "{method} {path} as {caller}: {answer}");
        }
    }
    assert!(!to.exists(), "nothing was written for a refused caller");
    let (status, problem) = f.call(&f.operator, "POST", "/api/v1/backups", Some(json!({"to": "relative"}))).await;
    assert_eq!(status, 422, "{problem}");
    let both = json!({ "to": to, "recipient": "age1x", "passphrase": "p" });
    assert_eq!(f.call(&f.operator, "POST", "/api/v1/backups", Some(both)).await.0, 422);
    assert_eq!(f.call(&f.operator, "GET", "/api/v1/backups/1", None).await.0, 404);
    let (status, job) = f.call(&f.operator, "POST", "/api/v1/backups", Some(body)).await;
    assert_eq!((status, job["id"].as_u64(), job["state"].as_str()), (202, Some(1), Some("running")), "{job}");
    let job = f.until_done(job, "/api/v1/backups/1").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["report"]["kind"], "full");
    assert!(job["report"]["counts"]["keys"].as_u64().unwrap() > 0, "{job}");
    assert!(to.join(job["report"]["name"].as_str().unwrap()).join("manifest.json").exists());
    let (status, list) = f.call(&f.operator, "GET", "/api/v1/backups", None).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (200, Some(1)), "{list}");
    // The job exists now: a tenant admin still reads it as absent, and lists nothing.
    let existing = f.call_raw(&f.admin_a, "GET", "/api/v1/backups/1", None).await;
    let absent = f.call_raw(&f.admin_a, "GET", "/api/v1/backups/9", None).await;
    let existing_text = String::from_utf8(existing.1).unwrap().replace("\\\"1\\\"", "\\\"9\\\"");
    assert_eq!((existing.0, existing_text), (absent.0, String::from_utf8(absent.1).unwrap()));
    let (_, list) = f.call(&f.admin_a, "GET", "/api/v1/backups", None).await;
    assert_eq!(list["items"], json!([]));
}

/// Tenants over two clusters through the API: only the operator sees the map or moves a
/// tenant; bad requests are refused before anything moves; a move is a job that ends with
/// the tenant's mail served from its new cluster, and that a tenant admin cannot see.
#[tokio::test]
async fn the_operator_moves_a_tenant_between_clusters_through_the_api() {
    let f = fixture_with(true).await;
    let inbox = f.mail.ensure_account(f.user_a_id, NOW).await.unwrap()[0].id;
    let (status, map) = f.call(&f.operator, "GET", "/api/v1/clusters", None).await;
    assert_eq!(status, 200, "{map}");
    assert_eq!(map["clusters"], json!(["b", "main"]));
    assert_eq!(map["tenants"], json!({"a": {"cluster": "main"}, "b": {"cluster": "main"}}));
    let move_a = |body: Value| f.call(&f.operator, "POST", "/api/v1/tenants/a/move", Some(body));
    // Another tenant's admin reads tenant a as an absent one.
    for (caller, refused) in [(&f.user_a, 403), (&f.admin_a, 403), (&f.admin_b, 404)] {
        assert_eq!(f.call(caller, "GET", "/api/v1/clusters", None).await.0, 403);
        let (status, problem) = f.call(caller, "POST", "/api/v1/tenants/a/move", Some(json!({"cluster": "b"}))).await;
        assert_eq!(status, refused, "{problem}");
    }
    let (status, problem) = move_a(json!({"cluster": "c"})).await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("b, main"), "{problem}");
    assert_eq!(move_a(json!({"cluster": "b", "grace_s": 3601})).await.0, 422);
    assert_eq!(move_a(json!({"cluster": "b", "extra": 1})).await.0, 422);
    assert_eq!(move_a(json!({"cluster": "main"})).await.0, 409, "already there");
    let (status, _) = f.call(&f.operator, "POST", "/api/v1/tenants/zz/move", Some(json!({"cluster": "b"}))).await;
    assert_eq!(status, 404);
    assert_eq!(f.call(&f.operator, "GET", "/api/v1/moves", None).await.1, json!({"items": []}), "nothing started");

    let (status, job) = move_a(json!({"cluster": "b", "grace_s": 0})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (job["id"].as_u64(), job["state"].as_str(), job["from"].as_str()),
        (Some(1), Some("running"), Some("main"))
    );
    let job = f.until_done(job, "/api/v1/moves/1").await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!((job["report"]["to"].as_str(), job["report"]["accounts"].as_u64()), (Some("b"), Some(1)), "{job}");
    let keys = job["report"]["caught_up"]["digest"]["keys"].as_u64().unwrap();
    assert!(keys > 0 && job["report"]["removed"].as_u64() == Some(keys), "{job}");
    let map = f.call(&f.operator, "GET", "/api/v1/clusters", None).await.1;
    assert_eq!(map["tenants"], json!({"a": {"cluster": "b"}, "b": {"cluster": "main"}}));
    assert_eq!(f.mail.status(f.user_a_id, inbox).await.unwrap().messages, 0, "served from b");
    assert_eq!(move_a(json!({"cluster": "b"})).await.0, 409, "there now");
    // A tenant admin, even of the tenant moved, sees no move.
    assert_eq!(f.call(&f.admin_a, "GET", "/api/v1/moves", None).await.1, json!({"items": []}));
    assert_eq!(f.call(&f.admin_a, "GET", "/api/v1/moves/1", None).await.0, 404);
    assert_eq!(f.call(&f.user_a, "GET", "/api/v1/moves", None).await.0, 403);
    let (status, list) = f.call(&f.operator, "GET", "/api/v1/moves", None).await;
    assert_eq!((status, list["items"].as_array().map(Vec::len)), (200, Some(1)), "{list}");
}

/// Mail for `account` of tenant `a`, `n` messages in its inbox; their bytes.
async fn mail_for(f: &Fixture, account: u64, n: usize) -> u64 {
    let inbox = f.mail.ensure_account(account, NOW).await.unwrap()[0].id;
    let quota = hameau_mailbox::Quota { tenant: Some("a".into()), ..hameau_mailbox::Quota::default() };
    for i in 0..n {
        let raw = format!("From: maire@a.fr\r\nSubject: Conseil {i}\r\n\r\nOrdre du jour {i}.\r\n");
        let ingest = hameau_mailbox::Ingest {
            raw: bytes::Bytes::from(raw),
            mailboxes: vec![inbox],
            keywords: Vec::new(),
            received_at: NOW,
            quota: quota.clone(),
        };
        f.mail.ingest(account, ingest).await.unwrap();
    }
    f.mail.quota_used(account).await.unwrap()
}

/// An account's deletion cut short after the directory's commit (a node killed, a store
/// that stopped answering) leaves its mail marked; the sweep `hameau serve` runs
/// (`forget_deleted_accounts`) deletes it and gives the commune its bytes back, then finds
/// nothing more. Through the API the mark goes at once. The tenant's mail is on a cluster
/// of its own, as after `hameau cluster move`.
#[tokio::test]
async fn a_deletion_of_mail_cut_short_is_finished_by_the_sweep() {
    use crate::api::forget::forget_deleted_accounts;
    let f = fixture_with(true).await;
    let (status, job) =
        f.call(&f.operator, "POST", "/api/v1/tenants/a/move", Some(json!({"cluster": "b", "grace_s": 0}))).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(f.until_done(job, "/api/v1/moves/1").await["state"], "done");
    let bytes = mail_for(&f, f.user_a_id, 3).await;
    assert!(bytes > 0 && f.mail.tenant_used("a").await.unwrap() == bytes);

    // Cut short: the directory deleted the account, its mail is still there, marked.
    f.directory.delete_account(&Principal::Operator, "user@a.fr").await.unwrap();
    assert_eq!(f.directory.accounts_to_forget(None, 10).await.unwrap(), vec![(f.user_a_id, "a".to_string())]);
    assert_eq!(f.mail.tenant_used("a").await.unwrap(), bytes, "not given back yet");
    assert_eq!(forget_deleted_accounts(&f.directory, &f.mail).await.unwrap(), 1);
    assert_eq!(f.mail.quota_used(f.user_a_id).await.unwrap(), 0);
    assert_eq!(f.mail.tenant_used("a").await.unwrap(), 0, "given back");
    assert!(f.directory.accounts_to_forget(None, 10).await.unwrap().is_empty());
    assert_eq!(forget_deleted_accounts(&f.directory, &f.mail).await.unwrap(), 0, "nothing more");

    // Through the API: the mail and the mark go with the account.
    let (status, created) =
        f.call(&f.operator, "POST", "/api/v1/accounts", Some(json!({"address": "agent@a.fr"}))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_u64().unwrap();
    let bytes = mail_for(&f, id, 2).await;
    assert_eq!(f.mail.tenant_used("a").await.unwrap(), bytes);
    let (status, _) = f.call(&f.operator, "DELETE", "/api/v1/accounts/agent@a.fr?delete_mail=true", None).await;
    assert_eq!(status, 204);
    assert_eq!(f.mail.tenant_used("a").await.unwrap(), 0);
    assert!(f.directory.accounts_to_forget(None, 10).await.unwrap().is_empty());
}

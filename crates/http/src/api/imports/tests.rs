//! The import routes in process: who sees which job, what a request must hold, and that
//! the password never comes back. The sources are loopback sockets that refuse or stall;
//! the real pull is tested end to end against Dovecot (tests/it/imports_api.rs).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hameau_directory::{
    AccountRole, Directory, KeyScope, NewAccount, NewApiKey, NewDomain, NewTenant, Options as DirectoryOptions,
    Principal,
};
use hameau_store::{Options as StoreOptions, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

const NOW: u64 = 1_795_000_000;
const SECRET: &str = "s3cr3t-ancien-mot-de-passe";

struct Fixture {
    _dir: tempfile::TempDir,
    router: Router,
    operator: String,
    admin_a: String,
    admin_b: String,
    user_a: String,
    /// Accepts connections and never answers: a job against it runs until cancelled.
    _silent: tokio::net::TcpListener,
    silent_url: String,
    /// Refuses connections: a job against it ends at once, its report saying why.
    refused_url: String,
}

async fn fixture() -> Fixture {
    fixture_with(hameau_migrate::Options { connect_timeout_s: 5, jobs_concurrent_max: 1, ..Default::default() }).await
}

async fn fixture_with(options: hameau_migrate::Options) -> Fixture {
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
        let domain = NewDomain { name: format!("{tenant}.fr"), tenant: tenant.into() };
        directory.create_domain(&operator, domain, NOW).await.unwrap();
        let account = NewAccount {
            address: format!("user@{tenant}.fr"),
            display_name: String::new(),
            password: None,
            quota_bytes: None,
            enabled: true,
            role: AccountRole::User,
        };
        directory.create_account(&operator, account, NOW).await.unwrap();
    }
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
    let queue = hameau_queue::Queue::new(store.clone(), hameau_queue::Limits::default());
    let mut state = crate::tests::state(store.clone(), directory, queue, "mx.example.org");
    let mail = hameau_mailbox::Mail::new(store.clone());
    let importer = hameau_migrate::Importer::new(mail, options, Arc::new(|| NOW));
    let jobs = hameau_migrate::Jobs::new(Arc::new(importer), Arc::new(rustls::RootCertStore::empty()));
    state.imports = Some(Arc::new(jobs));
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("imaps://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("imaps://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let [operator, admin_a, admin_b, user_a] = <[String; 4]>::try_from(tokens).unwrap();
    Fixture {
        _dir: dir,
        router: crate::router(state),
        operator,
        admin_a,
        admin_b,
        user_a,
        _silent: silent,
        silent_url,
        refused_url,
    }
}

impl Fixture {
    async fn call(&self, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
        let mut request =
            axum::http::Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self.router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    async fn json(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(Some(token), method, path, body).await;
        assert!(!text.contains(SECRET), "{method} {path}: the password came back: {text}");
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
    }

    /// Starts an import of `account` from `url` as `token`; the job.
    async fn start(&self, token: &str, account: &str, url: &str) -> (u16, Value) {
        let body = json!({"account": account, "from": url, "user": "ancien", "password": SECRET});
        self.json(token, "POST", "/api/v1/imports", Some(body)).await
    }

    /// Polls the job until it has ended; its last state.
    async fn ended(&self, id: &str) -> Value {
        for _ in 0..200 {
            let (status, job) = self.json(&self.operator, "GET", &format!("/api/v1/imports/{id}"), None).await;
            assert_eq!(status, 200, "{job}");
            if job["state"] == "finished" || job["state"] == "cancelled" {
                return job;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("job {id} did not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_what_it_administers() {
    let f = fixture().await;
    // A user starts nothing; another tenant's admin finds no such account.
    assert_eq!(f.start(&f.user_a, "user@a.fr", &f.refused_url).await.0, 403);
    assert_eq!(f.start(&f.admin_b, "user@a.fr", &f.refused_url).await.0, 404);
    let (status, _) = f.call(None, "POST", "/api/v1/imports", Some(json!({}))).await;
    assert_eq!(status, 401);
    let (status, job) = f.start(&f.admin_a, "user@a.fr", &f.refused_url).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["account"], "user@a.fr");
    assert_eq!(job["tenant"], "a");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "128 random bits: {id}");
    let (status, other) = f.start(&f.operator, "user@b.fr", &f.refused_url).await;
    assert_eq!(status, 202, "{other}");
    let other_id = other["id"].as_str().unwrap().to_string();
    let job = f.ended(&id).await;
    assert_eq!(job["state"], "finished", "{job}");
    assert_eq!(job["complete"], false, "{job}");
    assert!(job["report"]["error"].as_str().unwrap().contains("connection"), "{job}");
    f.ended(&other_id).await;

    // Columns: user of a, admin of b, admin of a, operator.
    let path = format!("/api/v1/imports/{id}");
    let rows: [(&str, &str, [u16; 4]); 3] = [
        ("GET", "/api/v1/imports/0123456789abcdef0123456789abcdef", [403, 404, 404, 404]),
        ("GET", &path, [403, 404, 200, 200]),
        ("DELETE", &path, [403, 404, 204, 404]),
    ];
    let callers = [&f.user_a, &f.admin_b, &f.admin_a, &f.operator];
    let mut failures = Vec::new();
    for (method, path, expected) in rows {
        for (caller, expected) in callers.iter().zip(expected) {
            let (status, answer) = f.json(caller, method, path, None).await;
            if status != expected {
                failures.push(format!("{method} {path} as {caller}: {status} (expected {expected}) {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // The lists: a's admin sees nothing of b's job; the operator sees b's (a's is forgotten).
    let listed = |page: Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(f.json(&f.user_a, "GET", "/api/v1/imports", None).await.0, 403);
    assert!(listed(f.json(&f.admin_a, "GET", "/api/v1/imports", None).await.1).is_empty());
    assert_eq!(listed(f.json(&f.admin_b, "GET", "/api/v1/imports", None).await.1), vec![other_id.clone()]);
    assert_eq!(listed(f.json(&f.operator, "GET", "/api/v1/imports", None).await.1), vec![other_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_does_not_fit_is_refused_without_quoting_the_password() {
    let f = fixture().await;
    let good = json!({"account": "user@a.fr", "from": f.refused_url, "user": "ancien", "password": SECRET});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let without = |key: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(key);
        body
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (with("from", json!("https://imap.example.org")), 422, "from"),
        (with("from", json!(format!("imaps://ancien:{SECRET}@imap.example.org"))), 422, "from"),
        (with("from", json!("imaps://")), 422, "from"),
        (with("password", json!(12345678)), 422, "password: must be a string"),
        (with("password", json!("")), 422, "password: must not be empty"),
        (with("password", json!(format!("{SECRET}\r\nA2 LOGOUT"))), 422, "password: must not hold control"),
        (with("user", json!("x".repeat(1_001))), 422, "user: longer than"),
        (with("ca_pem", json!("not a certificate")), 422, "ca_pem"),
        (with("surprise", json!(SECRET)), 422, "unknown field \"surprise\""),
        (without("password"), 422, "password: is required"),
        (without("account"), 422, "account: is required"),
        (json!([SECRET]), 422, "JSON object"),
        (with("account", json!("nobody@a.fr")), 404, "does not exist"),
        (with("account", json!("user@elsewhere.fr")), 404, "does not exist"),
    ];
    for (body, expected, detail) in cases {
        let (status, text) = f.call(Some(&f.admin_a), "POST", "/api/v1/imports", Some(body.clone())).await;
        assert_eq!(status, expected, "{body}: {text}");
        assert!(!text.contains(SECRET) && !text.contains("12345678"), "{body}: the password came back: {text}");
        let problem: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(problem["status"], expected);
        assert!(problem["detail"].as_str().unwrap().contains(detail), "{body}: {text}");
    }
    // Nothing was started.
    let (_, page) = f.json(&f.operator, "GET", "/api/v1/imports", None).await;
    assert_eq!(page["items"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled_and_a_queued_one_never_starts() {
    let f = fixture().await;
    // One slot (`jobs_concurrent_max = 1`): the second job waits behind the first.
    let (status, running) = f.start(&f.operator, "user@a.fr", &f.silent_url).await;
    assert_eq!(status, 202, "{running}");
    let (status, queued) = f.start(&f.operator, "user@b.fr", &f.silent_url).await;
    assert_eq!(status, 202, "{queued}");
    let (running, queued) = (running["id"].as_str().unwrap(), queued["id"].as_str().unwrap());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, job) = f.json(&f.operator, "GET", &format!("/api/v1/imports/{running}"), None).await;
    assert_eq!(job["state"], "running", "{job}");
    assert_eq!(job["progress"]["phase"], "connecting", "{job}");
    let (_, job) = f.json(&f.operator, "GET", &format!("/api/v1/imports/{queued}"), None).await;
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["progress"], Value::Null, "{job}");
    for id in [queued, running] {
        let (status, job) = f.json(&f.operator, "DELETE", &format!("/api/v1/imports/{id}"), None).await;
        assert_eq!(status, 202, "{job}");
        let job = f.ended(id).await;
        assert_eq!(job["state"], "cancelled", "{job}");
        assert!(job["report"]["error"].as_str().unwrap().contains("cancelled"), "{job}");
        // Ended: a second DELETE forgets it.
        assert_eq!(f.json(&f.operator, "DELETE", &format!("/api/v1/imports/{id}"), None).await.0, 204);
        assert_eq!(f.json(&f.operator, "GET", &format!("/api/v1/imports/{id}"), None).await.0, 404);
    }
}

/// One commune cannot fill the table every commune shares: past
/// `migrate.jobs_per_tenant_max` jobs queued or running, its next one is refused with
/// `429` and a `Retry-After`, while another commune's still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commune_at_its_job_bound_is_refused_and_the_others_are_not() {
    let options = hameau_migrate::Options {
        connect_timeout_s: 5,
        jobs_concurrent_max: 1,
        jobs_per_tenant_max: 2,
        ..Default::default()
    };
    let f = fixture_with(options).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, job) = f.start(&f.admin_a, "user@a.fr", &f.silent_url).await;
        assert_eq!(status, 202, "{job}");
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    let (status, problem) = f.start(&f.admin_a, "user@a.fr", &f.silent_url).await;
    assert_eq!(status, 429, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("migrate.jobs_per_tenant_max"), "{problem}");
    let (status, job) = f.start(&f.admin_b, "user@b.fr", &f.silent_url).await;
    assert_eq!(status, 202, "another commune starts: {job}");
    ids.push(job["id"].as_str().unwrap().to_string());
    // Once one of its jobs has ended, the commune may start another.
    assert_eq!(f.json(&f.operator, "DELETE", &format!("/api/v1/imports/{}", ids[0]), None).await.0, 202);
    f.ended(&ids[0]).await;
    let (status, job) = f.start(&f.admin_a, "user@a.fr", &f.silent_url).await;
    assert_eq!(status, 202, "{job}");
    ids.push(job["id"].as_str().unwrap().to_string());
    for id in &ids[1..] {
        f.json(&f.operator, "DELETE", &format!("/api/v1/imports/{id}"), None).await;
    }
}

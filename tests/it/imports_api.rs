//! The import as a job of the running server (`/api/v1/imports`, issue 13) against a real
//! Dovecot: started over HTTPS with the operator's key, polled to the end, its report
//! checked and the mail read back over IMAP; another tenant's admin finds no such account;
//! a slow job (a low `migrate.bytes_per_second_max`) cancelled and stopped; a running job
//! stopped cleanly by the server's shutdown; the password nowhere in a response nor in the
//! server's log.

use std::time::{Duration, Instant};

use hameau_testkit::{Dovecot, TestCa};
use serde_json::{Value, json};

use crate::imap::create_account;
use crate::migrate_imap::{ALICE, PASSWORD, dump, python_file, same, total};
use crate::support::{Api, admin, config_path, init_with_token, set_config, start_server};

/// The old provider's password: distinctive, to be looked for everywhere.
const OLD_PASSWORD: &str = "Vieux-Secret-7d1f";

/// Every response of the test, to look for the password in.
struct Client {
    api: Api,
    seen: Vec<String>,
}

impl Client {
    fn call(&mut self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let response = self.api.call(method, path, Some(token), body);
        self.seen.push(response.body.clone());
        let value = if response.body.is_empty() { Value::Null } else { response.json() };
        (response.status, value)
    }

    /// Polls the job until `until` holds of it (at most `timeout`); the job.
    fn poll(&mut self, token: &str, id: &str, timeout: Duration, until: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (status, job) = self.call("GET", &format!("/api/v1/imports/{id}"), token, None);
            assert_eq!(status, 200, "{job}");
            if until(&job) {
                return job;
            }
            assert!(started.elapsed() < timeout, "job {id} still {job}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn start_body(account: &str, from: &str, user: &str, ca_pem: &str) -> Value {
    json!({"account": account, "from": from, "user": user, "password": OLD_PASSWORD, "ca_pem": ca_pem})
}

fn ended(job: &Value) -> bool {
    job["state"] == "finished" || job["state"] == "cancelled"
}

/// Issue 13: the admin API's import job, from start to report, cancel and shutdown.
#[test]
fn an_import_job_of_the_server_copies_reports_and_cancels() {
    let ca = TestCa::new();
    let dovecot = Dovecot::start(&[("alice", OLD_PASSWORD), ("bob", OLD_PASSWORD)], &ca);
    let ca_pem = std::fs::read_to_string(&dovecot.ca_file).unwrap();
    let fill = |user: &str, layout: &str| -> u64 {
        let port = dovecot.imap_port.to_string();
        python_file(&["fill", &port, user, OLD_PASSWORD, layout]).trim().parse().unwrap()
    };
    let appended = fill("alice", "alice");
    fill("bob", "gmail");
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["tenant", "create", "b", "--name", "B"],
        ],
    );
    for user in ["alice", "bob"] {
        create_account(&config, &format!("{user}@a.test"), PASSWORD);
    }
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let imaps = format!("imaps://localhost:{}", dovecot.imaps_port);

    let server = start_server(&config);
    let mut client = Client { api: Api::new(&server), seen: Vec::new() };
    let key = json!({"name": "b", "scope": {"role": "tenant_admin", "tenant": "b"}});
    let (status, created) = client.call("POST", "/api/v1/api-keys", &operator, Some(key));
    assert_eq!(status, 201, "{created}");
    let admin_b = created["token"].as_str().unwrap().to_string();

    // Another tenant's admin: the account does not exist for it.
    let body = start_body("alice@a.test", &imaps, "alice", &ca_pem);
    let (status, problem) = client.call("POST", "/api/v1/imports", &admin_b, Some(body.clone()));
    assert_eq!(status, 404, "{problem}");

    let started = Instant::now();
    let (status, job) = client.call("POST", "/api/v1/imports", &operator, Some(body));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = client.poll(&operator, &id, Duration::from_secs(180), ended);
    let elapsed = started.elapsed();
    assert_eq!(job["state"], "finished", "{job}");
    assert_eq!(job["complete"], true, "{job}");
    let report = &job["report"];
    assert_eq!(total(report, "copied"), appended, "{report}");
    assert_eq!(job["progress"]["phase"], "done", "{job}");
    assert_eq!(job["progress"]["messages_done"], job["progress"]["messages_total"], "{job}");
    eprintln!(
        "API job: {appended} messages in {:.1} s with the verification ({} bytes)",
        elapsed.as_secs_f64(),
        job["progress"]["bytes_done"]
    );
    // The other tenant's admin sees neither the job nor it in the list.
    assert_eq!(client.call("GET", &format!("/api/v1/imports/{id}"), &admin_b, None).0, 404);
    let (_, page) = client.call("GET", "/api/v1/imports", &admin_b, None);
    assert_eq!(page["items"], json!([]), "{page}");
    // The mail is there, over IMAP, as on the source.
    let source = dump(dovecot.imap_port, "alice", OLD_PASSWORD);
    let hameau = dump(server.imap[0].port(), "alice@a.test", PASSWORD);
    same(&source, &hameau, ALICE);
    // A finished job is forgotten on DELETE.
    assert_eq!(client.call("DELETE", &format!("/api/v1/imports/{id}"), &operator, None).0, 204);
    assert_eq!(client.call("GET", &format!("/api/v1/imports/{id}"), &operator, None).0, 404);
    let mut logs = server.log();
    drop(server);

    // Slow: 1 KiB/s. A job cancelled while it copies stops, what it copied kept.
    set_config(&config, "bytes_per_second_max = 4194304", "bytes_per_second_max = 1024");
    let mut server = start_server(&config);
    client.api = Api::new(&server);
    let body = start_body("bob@a.test", &imaps, "bob", &ca_pem);
    let (status, job) = client.call("POST", "/api/v1/imports", &operator, Some(body));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let copying = |job: &Value| job["progress"]["phase"] == "copying" && job["progress"]["messages_done"] != 0;
    let job = client.poll(&operator, &id, Duration::from_secs(60), copying);
    assert_eq!(job["state"], "running", "{job}");
    let (status, job) = client.call("DELETE", &format!("/api/v1/imports/{id}"), &operator, None);
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "cancelling", "{job}");
    let cancelled_at = Instant::now();
    let job = client.poll(&operator, &id, Duration::from_secs(10), ended);
    eprintln!("cancelled in {:.2} s", cancelled_at.elapsed().as_secs_f64());
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["complete"], false, "{job}");
    assert!(job["report"]["error"].as_str().unwrap().contains("cancelled"), "{job}");
    let done = job["progress"]["messages_done"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (_, later) = client.call("GET", &format!("/api/v1/imports/{id}"), &operator, None);
    assert_eq!(later["progress"]["messages_done"].as_u64().unwrap(), done, "it stopped: {later}");

    // A job running when the server stops is cancelled cleanly; the server exits at once.
    // (Alice's again: nothing to copy, but 1.3 MB to verify at 1 KiB/s: it cannot end first.)
    let body = start_body("alice@a.test", &imaps, "alice", &ca_pem);
    let (status, job) = client.call("POST", "/api/v1/imports", &operator, Some(body));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = client.poll(&operator, &id, Duration::from_secs(60), |job| job["progress"]["messages_total"] != 0);
    assert_eq!(job["state"], "running", "{job}");
    let stopping = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(20)).expect("the server stops");
    assert!(status.success(), "{status:?}");
    eprintln!("stopped with a running import in {:.2} s", stopping.elapsed().as_secs_f64());
    logs.extend(server.log());
    assert!(logs.iter().any(|line| line.contains("imports stopped for the shutdown")), "{logs:#?}");

    // The password: in no response, in no log line.
    for text in client.seen.iter().chain(&logs) {
        assert!(!text.contains(OLD_PASSWORD), "the password shows: {text}");
    }
}

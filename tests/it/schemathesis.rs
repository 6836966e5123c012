//! `schemathesis` (PyPI) against the served OpenAPI document: no 5xx, no response that
//! violates the schema, no undocumented status or content type.
//!
//! Two things are left out, on purpose: the `positive_data_acceptance` check (a request
//! that fits the schema may still be refused: a domain name or an address has rules no
//! JSON schema states), and the revocation operation (the stateful phase would revoke the
//! very key it tests with; revocation is covered by the authorization matrix), and the
//! start of a backup (it would write backup sets wherever a generated absolute path points;
//! the backup routes are covered by crates/http's tests and tests/it/backup.rs).
//!
//! The limiter neither slows nor refuses here: schemathesis sends hundreds of requests
//! with missing or wrong keys on purpose, and a success no longer takes back the failures
//! of other keys (issue 10), so they would otherwise add up to minutes of delays.

use std::process::Command;

use crate::support::{config_path, enqueue, init_with_token, run, set_config, start_server};

#[test]
fn schemathesis_finds_nothing() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    // Some data to work on, and a key of its own.
    assert!(run(&["tenant", "create", "demo", "--name", "Démo", "--config", c]).0.success());
    assert!(run(&["domain", "create", "demo.test", "--tenant", "demo", "--config", c]).0.success());
    assert!(run(&["account", "create", "agent@demo.test", "--config", c]).0.success());
    let (status, stdout, stderr) = run(&["apikey", "create", "--name", "schemathesis", "--operator", "--config", c]);
    assert!(status.success(), "{stderr}");
    let token = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["token"].as_str().unwrap().to_string();
    // A queued message (held: the delivery worker leaves it be), so that the queue's
    // answers are checked against the schema with one in them.
    enqueue(&config, "demo", &["x@nowhere.test"], Some("schemathesis"));
    set_config(&config, "failures_before_delay = 5", "failures_before_delay = 1000");
    set_config(&config, "failures_max = 20", "failures_max = 100000");
    set_config(&config, "level = \"info\"", "level = \"debug\"");
    let server = start_server(&config);
    let url = format!("https://127.0.0.1:{}/api/v1/openapi.json", server.https[0].port());
    let output = Command::new("schemathesis")
        .args(["run", &url, "--tls-verify", "false", "-c", "all", "--exclude-checks", "positive_data_acceptance"])
        .args([
            "--exclude-operation-id",
            "revoke_api_key",
            "--exclude-operation-id",
            "start_backup",
            "-n",
            "50",
            "--seed",
            "20261125",
            "--no-color",
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .output()
        .expect("schemathesis is needed (pip install schemathesis; scripts/test.sh installs it)");
    let report = String::from_utf8_lossy(&output.stdout);
    // What the server says of connections and of its warnings, for a failure to be
    // understood: one CI run (2026-12-03) lost one request of 3,850 to a "Network Error"
    // ("EOF occurred in violation of protocol"), not reproduced since.
    let said: Vec<String> = (server.log().into_iter())
        .filter(|line| {
            line.contains("\"level\":\"WARN\"")
                || line.contains("\"level\":\"ERROR\"")
                || (line.contains("\"target\":\"hameau_http") && !line.contains("\"level\":\"INFO\""))
        })
        .collect();
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}\nthe server's warnings and its HTTP server's debug lines:\n{}",
        String::from_utf8_lossy(&output.stderr),
        said.join("\n")
    );
    assert!(report.contains(" passed"), "{report}");
    assert!(!server.log().join("\n").contains("panicked"));
}

//! The admin CLI as a subprocess: every command, locally on the data directory and against
//! a running server, and its failures.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::support::{config_path, hameau, init_with_token, run, start_server};

/// Runs `hameau ARGS` with `stdin`; returns success, stdout, stderr.
fn cli(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = hameau()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hameau");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (output.status.success(), text(output.stdout), text(output.stderr))
}

/// Runs a command that must succeed; its JSON output (Null if none).
fn ok(config: &str, args: &[&str]) -> Value {
    ok_stdin(config, args, "")
}

fn ok_stdin(config: &str, args: &[&str], stdin: &str) -> Value {
    let mut all = args.to_vec();
    all.extend(["--config", config]);
    let (success, stdout, stderr) = cli(&all, stdin);
    assert!(success, "{args:?} failed: {stderr}");
    if stdout.trim().is_empty() { Value::Null } else { serde_json::from_str(&stdout).unwrap_or(Value::String(stdout)) }
}

/// Runs a command that must fail; its one error line.
fn fails(config: &str, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--config", config]);
    let (success, stdout, stderr) = cli(&all, "");
    assert!(!success, "{args:?} succeeded: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"));
    stderr.trim_end().to_string()
}

#[test]
fn every_command_on_the_local_data_directory() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();

    let tenant = ok(c, &["tenant", "create", "a", "--name", "Commune A", "--insee", "38185"]);
    assert_eq!(tenant["id"], "a");
    assert_eq!(ok(c, &["tenant", "list"])["items"].as_array().unwrap().len(), 1);
    assert_eq!(ok(c, &["tenant", "show", "a"])["insee"], "38185");
    assert_eq!(ok(c, &["tenant", "update", "a", "--name", "Commune B", "--accounts-max", "10"])["accounts_max"], 10);

    let domain = ok(c, &["domain", "create", "Saint-Étienne.test", "--tenant", "a"]);
    assert_eq!(domain["name"], "xn--saint-tienne-geb.test");
    assert_eq!(domain["display_name"], "saint-étienne.test");
    assert_eq!(ok(c, &["domain", "list", "--tenant", "a"])["items"].as_array().unwrap().len(), 1);
    assert_eq!(ok(c, &["domain", "show", "saint-étienne.test"])["tenant"], "a");
    let zone = ok(c, &["dns", "records", "saint-étienne.test"]);
    let zone = zone.as_str().unwrap();
    assert!(zone.contains("xn--saint-tienne-geb.test. 3600 IN MX 10 localhost."), "{zone}");
    assert!(zone.contains("_dmarc.xn--saint-tienne-geb.test. 3600 IN TXT \"v=DMARC1; p=reject; pct=100;"), "{zone}");
    let json = ok(c, &["dns", "records", "saint-étienne.test", "--json"]);
    assert!(json["records"].as_array().unwrap().len() >= 14);

    let account = ok_stdin(
        c,
        &["account", "create", "agent@saint-étienne.test", "--display-name", "Agent", "--password-stdin"],
        "a long enough password\n",
    );
    assert_eq!(account["address"], "agent@xn--saint-tienne-geb.test");
    ok(c, &["account", "create", "other@saint-étienne.test"]);
    assert_eq!(ok(c, &["account", "list", "--tenant", "a"])["items"].as_array().unwrap().len(), 2);
    assert_eq!(ok(c, &["account", "show", "agent@saint-étienne.test"])["display_name"], "Agent");
    let updated =
        ok(c, &["account", "update", "other@saint-étienne.test", "--enabled", "false", "--quota-bytes", "1000000"]);
    assert_eq!(
        (updated["enabled"].clone(), updated["quota_bytes"].clone()),
        (Value::Bool(false), Value::from(1_000_000))
    );

    let created = ok(c, &["app-password", "create", "agent@saint-étienne.test", "--name", "Thunderbird"]);
    let id = created["app_password"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["password"].as_str().unwrap().len(), 29);
    assert_eq!(ok(c, &["app-password", "list", "agent@saint-étienne.test"]).as_array().unwrap().len(), 1);
    assert_eq!(ok(c, &["app-password", "delete", "agent@saint-étienne.test", &id]), Value::Null);

    let alias = ok(c, &["alias", "create", "mairie@saint-étienne.test", "--target", "agent@saint-étienne.test"]);
    assert_eq!(alias["targets"][0], "agent@xn--saint-tienne-geb.test");
    assert_eq!(ok(c, &["alias", "list", "--tenant", "a"])["items"].as_array().unwrap().len(), 1);
    assert_eq!(ok(c, &["alias", "show", "mairie@saint-étienne.test"])["tenant"], "a");
    let alias = ok(
        c,
        &[
            "alias",
            "update",
            "mairie@saint-étienne.test",
            "--target",
            "agent@saint-étienne.test",
            "--target",
            "other@saint-étienne.test",
        ],
    );
    assert_eq!(alias["targets"].as_array().unwrap().len(), 2);
    let send_as =
        ok(c, &["account", "update", "agent@saint-étienne.test", "--may-send-as", "mairie@saint-étienne.test"]);
    assert_eq!(send_as["may_send_as"][0], "mairie@xn--saint-tienne-geb.test");

    let key = ok(c, &["apikey", "create", "--name", "script of commune A", "--tenant", "a"]);
    let key_id = key["key"]["id"].as_str().unwrap().to_string();
    assert!(key["token"].as_str().unwrap().starts_with(&format!("hmk_{key_id}_")));
    ok(c, &["apikey", "create", "--name", "agent's key", "--user", "agent@saint-étienne.test"]);
    assert_eq!(ok(c, &["apikey", "list"])["items"].as_array().unwrap().len(), 3, "with init's operator key");
    assert_eq!(ok(c, &["apikey", "show", &key_id])["revoked"], false);
    assert_eq!(ok(c, &["apikey", "delete", &key_id])["revoked"], true);

    // The filter: a tenant's own settings, and the quarantine (empty here: the MX holds).
    let set = ok(c, &["tenant", "filter", "set", "a", "--english", "true", "--subject-tag", "[À VÉRIFIER]"]);
    assert_eq!(set["effective"]["warning"]["subject_tag"], "[À VÉRIFIER]");
    assert_eq!(ok(c, &["tenant", "filter", "get", "a"])["own"]["warning"]["english"], true);
    assert_eq!(
        fails(c, &["tenant", "filter", "set", "a", "--warn-score", "9"]),
        "hameau: error: 400: thresholds.junk_score: 8 is not above thresholds.warn_score (9)"
    );
    assert_eq!(ok(c, &["tenant", "filter", "reset", "a"]), Value::Null);
    assert_eq!(ok(c, &["tenant", "filter", "get", "a"])["own"], serde_json::json!({}));
    assert_eq!(ok(c, &["quarantine", "list", "--tenant", "a"])["items"].as_array().unwrap().len(), 0);
    assert_eq!(fails(c, &["quarantine", "release", "7"]), "hameau: error: 404: held message \"7\" does not exist");

    // Deleting goes in order: aliases, accounts, domains, tenants.
    assert_eq!(
        fails(c, &["domain", "delete", "saint-étienne.test"]),
        "hameau: error: 409: domain \"xn--saint-tienne-geb.test\" still has accounts or aliases: delete them first"
    );
    ok(c, &["alias", "delete", "mairie@saint-étienne.test"]);
    ok(c, &["account", "delete", "agent@saint-étienne.test"]);
    ok(c, &["account", "delete", "other@saint-étienne.test"]);
    ok(c, &["domain", "delete", "saint-étienne.test"]);
    // A tenant's filter settings go with it: the next commune given the id starts clean.
    ok(c, &["tenant", "filter", "set", "a", "--english", "true"]);
    ok(c, &["tenant", "delete", "a"]);
    assert_eq!(ok(c, &["tenant", "list"])["items"].as_array().unwrap().len(), 0);
    ok(c, &["tenant", "create", "a", "--name", "Une autre commune"]);
    assert_eq!(ok(c, &["tenant", "filter", "get", "a"])["own"], serde_json::json!({}));
}

#[test]
fn failures_are_one_line_each() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    assert_eq!(
        fails(c, &["tenant", "create", "Bad Id", "--name", "x"]),
        "hameau: error: 422: id: \"Bad Id\" is not a valid tenant id (1 to 63 of a-z, 0-9 and inner '-')"
    );
    assert_eq!(fails(c, &["tenant", "show", "zz"]), "hameau: error: 404: tenant \"zz\" does not exist");
    assert_eq!(
        fails(c, &["domain", "create", "not a domain", "--tenant", "zz"]),
        "hameau: error: 422: name: \"not a domain\" is not a valid domain name: not a valid internationalised name"
    );
    assert_eq!(
        fails(c, &["apikey", "create", "--name", "k"]),
        "hameau: error: give the key's scope: --operator, --tenant ID or --user ADDRESS"
    );
    assert_eq!(
        fails(c, &["account", "list"]),
        "hameau: error: 422: tenant: the operator lists per tenant: give ?tenant=ID"
    );
    ok(c, &["tenant", "create", "a", "--name", "A"]);
    assert_eq!(fails(c, &["tenant", "create", "a", "--name", "A"]), "hameau: error: 409: tenant \"a\" exists already");
    // clap's own errors for a missing argument are clap's, and not a success.
    let (status, _, stderr) = run(&["tenant", "create", "--config", c]);
    assert!(!status.success());
    assert!(stderr.contains("required"), "{stderr}");
}

#[test]
fn commands_against_a_running_server() {
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    let server = start_server(&config);
    let url = format!("https://127.0.0.1:{}", server.https[0].port());
    let cert = server.cert.to_str().unwrap().to_string();
    let remote = |args: &[&str], key: &str| {
        let mut all = args.to_vec();
        all.extend(["--url", &url, "--api-key", key, "--ca-file", &cert]);
        cli(&all, "")
    };
    let (success, stdout, stderr) = remote(&["tenant", "create", "a", "--name", "A"], &operator);
    assert!(success, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["id"], "a");
    let (success, stdout, _) = remote(&["tenant", "list"], &operator);
    assert!(success);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["items"][0]["id"], "a");
    // The same errors as locally, from the server.
    let (success, _, stderr) = remote(&["tenant", "show", "zz"], &operator);
    assert!(!success);
    assert_eq!(stderr.trim_end(), "hameau: error: 404: tenant \"zz\" does not exist");
    let (success, _, stderr) = remote(&["tenant", "list"], "hmk_000000000000_wrong");
    assert!(!success);
    assert_eq!(stderr.trim_end(), "hameau: error: 401: the API key is not valid (unknown, revoked or expired)");
    // Without the server's certificate, TLS refuses the self-signed one.
    let (success, _, stderr) = cli(&["tenant", "list", "--url", &url, "--api-key", &operator], "");
    assert!(!success);
    assert!(stderr.contains("TLS handshake"), "{stderr}");
    // The local data directory is in use by the server meanwhile (RocksDB); on PostgreSQL
    // the command works beside the server, on the same database.
    let (success, stdout, stderr) = cli(&["tenant", "list", "--config", config.to_str().unwrap()], "");
    if crate::support::on_postgresql() {
        assert!(success && stdout.contains("\"id\""), "{stdout}{stderr}");
    } else {
        assert!(!success);
        assert!(stderr.contains("in use by another process"), "{stderr}");
    }
}

//! Bad configuration: `hameau serve` and `hameau config check` both exit non-zero with one
//! line naming the file, the key and the problem, and never panic.

use crate::support::{run, start_server};

/// Writes `text` as a configuration (data_dir in a temp dir unless the text sets it) and
/// checks that both commands fail with exactly `expect` after the file's path.
fn check_rejected(text: &str, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hameau.toml");
    let data = dir.path().join("data");
    let text = if text.contains("data_dir") {
        text.to_string()
    } else {
        format!("[server]\ndata_dir = {:?}\n{text}", data.to_str().unwrap())
    };
    std::fs::write(&path, &text).unwrap();
    for command in [["serve", "--config"], ["config", "check"]] {
        let mut args = command.to_vec();
        if command[0] == "config" {
            args.push("--config");
        }
        args.push(path.to_str().unwrap());
        let (status, stdout, stderr) = run(&args);
        assert!(!status.success(), "{args:?} accepted {text:?}");
        assert_eq!(status.code(), Some(1));
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let expected = format!("hameau: error: {}:{expect}\n", path.display());
        assert_eq!(stderr, expected, "{args:?}");
    }
}

#[test]
fn unknown_key() {
    check_rejected(
        "[store]\ncache_bytez = 1\n",
        "4: store.cache_bytez: unknown key `cache_bytez` (known keys: `backend`, `cache_bytes`, `url`, `schema`, `pool_connections`, `move_wait_ms`, `clusters`, `key_bytes_max`, `value_bytes_max`, `batch_ops_max`, `blob_chunk_bytes`, `blob_bytes_max`, `commit_group_max`, `commit_queue_max`)",
    );
}

#[test]
fn wrong_type() {
    check_rejected(
        "[http]\nconnections_max = \"many\"\n",
        "4: http.connections_max: invalid type: string \"many\", expected a non-negative integer",
    );
}

#[test]
fn limit_out_of_range() {
    check_rejected(
        "[store]\nbatch_ops_max = 2\n",
        "4: store.batch_ops_max: 2 is out of range: it must be between 16 and 1000000",
    );
}

#[test]
fn unwritable_data_dir() {
    // Root writes anywhere; a directory below a regular file is unwritable for anyone.
    let blocker = tempfile::NamedTempFile::new().unwrap();
    let data = blocker.path().join("data");
    check_rejected(
        &format!("[server]\ndata_dir = {:?}\n", data.to_str().unwrap()),
        &format!("2: server.data_dir: {} is not a writable directory: Not a directory (os error 20)", data.display()),
    );
}

#[test]
fn missing_file() {
    let (status, _, stderr) = run(&["config", "check", "--config", "/nonexistent/hameau.toml"]);
    assert!(!status.success());
    assert_eq!(
        stderr,
        "hameau: error: /nonexistent/hameau.toml: cannot read the configuration file: No such file or directory (os error 2)\n"
    );
}

#[test]
fn missing_private_key_names_the_key() {
    let dir = crate::support::init();
    let config = crate::support::config_path(dir.path());
    std::fs::remove_file(dir.path().join("data/tls/key.pem")).unwrap();
    let (status, _, stderr) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!status.success());
    let last = stderr.lines().last().unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let line = 1 + text.lines().position(|line| line.starts_with("private_key =")).unwrap();
    assert!(last.contains(&format!("hameau.toml:{line}: tls.private_key: cannot read")), "{stderr}");
    assert!(last.contains("data/tls/key.pem"), "{stderr}");
}

#[test]
fn without_certificate_serve_makes_a_self_signed_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hameau.toml");
    std::fs::write(&path, "[server]\ndata_dir = \"data\"\n[http]\nlisten = [\"127.0.0.1:0\"]\n").unwrap();
    let server = start_server(&path);
    assert!(server.log().join("\n").contains("made a self-signed one for first use"));
    let (status, _) = crate::support::block_on(crate::support::https_get(
        server.https[0],
        &dir.path().join("data/tls/cert.pem"),
        "/healthz",
    ));
    assert_eq!(status, 200);
}

//! A stolen password is changed: the IMAP sessions opened with it end (`* BYE`), the one
//! waiting in IDLE included, while a session opened with an application password goes on
//! until that application password is revoked; a deleted account's sessions end too.
//! Real clients: Python's imaplib over TLS, against the real binary with
//! `imap.login_check_s = 1`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::imap::imap_account;
use crate::support::{Api, config_path, init_with_token, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn changing_a_password_or_revoking_an_app_password_ends_the_sessions_that_used_it() {
    let (dir, token) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    set_config(&config, "login_check_s = 60", "login_check_s = 1");
    let server = start_server(&config);
    let api = Api::new(&server);
    let created = api.call(
        "POST",
        "/api/v1/accounts/user@a.test/app-passwords",
        Some(&token),
        Some(serde_json::json!({"name": "Thunderbird"})),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let app_password = created.json()["password"].as_str().unwrap().to_string();
    let app_id = created.json()["app_password"]["id"].as_str().unwrap().to_string();

    // Three sessions: the password's in IDLE, the password's between commands, the
    // application password's. Each step waits for a line on stdin.
    let script = format!(
        r#"
import imaplib, socket, ssl, sys, time
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
def session(password):
    M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
    M.login("user@a.test", password)
    M.select("INBOX")
    return M
idle, busy, app = session({PASSWORD:?}), session({PASSWORD:?}), session({app_password:?})
idle.send(b"i1 IDLE\r\n")
assert idle.readline().startswith(b"+"), "no continuation"
print("ready", flush=True)
sys.stdin.readline()
# Within about a second of the change: the IDLE session gets BYE without sending a thing.
idle.sock.settimeout(10)
line = idle.readline()
print("idle:", line.decode().strip(), flush=True)
def noop(M, label):
    try:
        typ, data = M.noop()
        print(label, typ, flush=True)
    except (imaplib.IMAP4.abort, imaplib.IMAP4.error, OSError) as e:
        print(label, "ended", str(e)[:200], flush=True)
time.sleep(1.5)
noop(busy, "busy:")
noop(app, "app:")
sys.stdin.readline()
time.sleep(1.5)
noop(app, "app after revoke:")
"#,
        port = server.imaps[0].port(),
        cert = server.cert.to_str().unwrap(),
    );
    let mut python = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = python.stdin.take().unwrap();
    let mut lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("a line from the client").unwrap();
    assert_eq!(next(), "ready");

    let change = serde_json::json!({"password": "a new password, the old one was phished"});
    let changed = api.call("PATCH", "/api/v1/accounts/user@a.test", Some(&token), Some(change));
    assert_eq!(changed.status, 200, "{changed:?}");
    stdin.write_all(b"go\n").unwrap();
    let idle = next();
    assert!(idle.starts_with("idle: * BYE") && idle.contains("no longer valid"), "{idle}");
    let busy = next();
    assert!(busy.starts_with("busy: ended") && busy.contains("no longer valid"), "{busy}");
    assert_eq!(next(), "app: OK", "the application password's session goes on");

    let revoked =
        api.call("DELETE", &format!("/api/v1/accounts/user@a.test/app-passwords/{app_id}"), Some(&token), None);
    assert!(revoked.status == 204 || revoked.status == 200, "{revoked:?}");
    stdin.write_all(b"go\n").unwrap();
    let app = next();
    assert!(app.starts_with("app after revoke: ended"), "{app}");
    assert!(python.wait().unwrap().success());
    // The server logs why (waits for the line, or panics with the log).
    server.log_with("the login no longer holds", 1, std::time::Duration::from_secs(5));
}

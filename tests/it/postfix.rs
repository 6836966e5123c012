//! Issue 11's acceptance path with a real Postfix as the remote MX: real clients (swaks,
//! msmtp) submit on 587 (STARTTLS) and 465 (TLS), the queue delivers to Postfix (MX from
//! knotd) over STARTTLS, and dkimpy verifies both DKIM signatures of every message as
//! Postfix wrote it to its maildir.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hameau_testkit::{Postfix, TlsFiles};

use crate::submission::{PASSWORD, dkim_records, remote_mx, setup, swaks};
use crate::support::{config_path, init_with_token, start_server};

/// msmtp (Debian package msmtp) sends `message` to `recipient` through the server's `port`,
/// as agent@a.test with AUTH PLAIN: STARTTLS (`starttls`) or TLS from the first byte,
/// trusting only the server's own certificate (`cert`). The password is in a 0600
/// configuration file, as msmtp requires.
pub(crate) fn msmtp(
    dir: &Path,
    port: u16,
    starttls: bool,
    cert: &Path,
    recipient: &str,
    message: &str,
) -> (bool, String) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let config = dir.join(format!("msmtprc-{port}"));
    let text = format!(
        "defaults\nsyslog off\n\naccount hameau\nhost 127.0.0.1\nport {port}\nfrom agent@a.test\n\
         auth plain\nuser agent@a.test\npassword {PASSWORD}\ntls on\ntls_starttls {}\ntls_trust_file {}\n\
         timeout 20\n",
        if starttls { "on" } else { "off" },
        cert.display()
    );
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&config).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let mut child = Command::new("msmtp")
        .args(["-C", config.to_str().unwrap(), "-a", "hameau", recipient])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("msmtp is needed (Debian package msmtp; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// dkimpy's verdict on each DKIM signature of `message` with the domain's public keys
/// (`records`, as `dkim_records` gives them): one `(algorithm, valid)` per signature.
pub(crate) fn dkimpy_verdicts(records: &[(String, String)], message: &[u8]) -> Vec<(String, bool)> {
    let records = serde_json::to_string(records).unwrap();
    let script = format!(
        "import sys, json, dkim\n\
         records = dict(json.loads({records:?}))\n\
         dns = lambda name, timeout=5: records.get(name.decode(), '').encode()\n\
         message = sys.stdin.buffer.read()\n\
         d = dkim.DKIM(message)\n\
         n = sum(1 for line in message.split(b'\\n') if line.lower().startswith(b'dkim-signature:'))\n\
         out = []\n\
         for i in range(n):\n\
         \x20   ok = d.verify(idx=i, dnsfunc=dns)\n\
         \x20   out.append((d.signature_fields.get(b'a', b'').decode(), bool(ok)))\n\
         print(json.dumps(out))\n"
    );
    serde_json::from_slice(&crate::smtp::python(&script, message)).unwrap()
}

/// Issue 11, acceptance: swaks and msmtp each submit on 587 (STARTTLS) and 465 (TLS); all
/// four messages reach a real Postfix (Debian's, a private instance on a loopback port,
/// found through knotd's MX record), each with both DKIM signatures (Ed25519 and RSA)
/// valid for dkimpy as Postfix received them, and Postfix's log shows every connection
/// from Hameau used TLS.
#[test]
fn swaks_and_msmtp_submissions_reach_postfix_over_tls_with_both_signatures_valid() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    let tls_dir = tempfile::tempdir().unwrap();
    let tls = TlsFiles::self_signed(tls_dir.path(), &["mx.remote.test"]);
    let postfix = Postfix::mx(&["remote.test"], Some(&tls));
    crate::support::set_config(&config, "port = 25", &format!("port = {}", postfix.port));
    // Read before the server holds the store.
    let records = dkim_records(&config, "a.test");
    let server = start_server(&config);
    let (port, tls_port) = (server.submission[0].port(), server.submissions[0].port());

    let auth = ["--auth", "PLAIN", "--auth-user", "agent@a.test", "--auth-password", PASSWORD];
    let subjects = ["swaks 587 STARTTLS", "swaks 465 TLS", "msmtp 587 STARTTLS", "msmtp 465 TLS"];
    for (port, tls_flag, subject) in [(port, "--tls", subjects[0]), (tls_port, "--tlsc", subjects[1])] {
        let header = format!("Subject: {subject}");
        let (ok, text) = swaks(
            port,
            &[&[tls_flag, "--to", "x@remote.test", "--from", "agent@a.test", "--header", &header][..], &auth].concat(),
        );
        assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{subject}: {text}");
    }
    let client_dir = tempfile::tempdir().unwrap();
    for (port, starttls, subject) in [(port, true, subjects[2]), (tls_port, false, subjects[3])] {
        let message = format!(
            "From: Agent <agent@a.test>\r\nTo: <x@remote.test>\r\nSubject: {subject}\r\n\r\n\
             Bonjour,\r\nle conseil municipal se réunit jeudi.\r\n"
        );
        let (ok, text) = msmtp(client_dir.path(), port, starttls, &server.cert, "x@remote.test", &message);
        assert!(ok, "{subject}: {text}");
    }

    // All four at Postfix.
    let start = Instant::now();
    let received = loop {
        let received = postfix.received();
        if received.len() >= subjects.len() {
            break received;
        }
        let queue_log: Vec<String> = server.log().into_iter().filter(|line| line.contains("queue")).collect();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} of 4 messages reached Postfix\n{}\n{}",
            received.len(),
            queue_log.join("\n"),
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(received.len(), subjects.len(), "{}", postfix.log());
    for subject in subjects {
        let message = received
            .iter()
            .find(|message| String::from_utf8_lossy(message).contains(&format!("Subject: {subject}")))
            .unwrap_or_else(|| panic!("{subject} did not reach Postfix"));
        let mut verdicts = dkimpy_verdicts(&records, message);
        verdicts.sort();
        let expected = vec![("ed25519-sha256".to_string(), true), ("rsa-sha256".to_string(), true)];
        assert_eq!(verdicts, expected, "{subject}: {}", String::from_utf8_lossy(message));
    }

    // Every session from Hameau that sent mail used STARTTLS (Postfix sums up each session
    // on its disconnect line: `ehlo=2 starttls=1 mail=1 …`).
    let log = postfix.log();
    let sessions: Vec<&str> =
        log.lines().filter(|line| line.contains("disconnect from") && line.contains(" mail=")).collect();
    assert!(!sessions.is_empty(), "{log}");
    assert!(sessions.iter().all(|line| line.contains(" starttls=1")), "a session without STARTTLS:\n{log}");
    let established = log.lines().filter(|line| line.contains("TLS connection established from")).count();
    assert!(established >= sessions.len(), "{} sessions, {established} TLS connections:\n{log}", sessions.len());
    drop(server);
}

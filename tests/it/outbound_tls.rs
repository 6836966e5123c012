//! Issue 11's TLS policies for outbound mail, end to end: the real `hameau` delivers to a
//! real Postfix (Debian's, STARTTLS with a certificate from the test's own CA), finding its
//! MX, TLSA and MTA-STS records in a DNSSEC-signed zone served by knotd (its key the
//! server's trust anchor, `[dns] trust_anchor_file`), and the MTA-STS policies on a small
//! HTTPS server (`HttpsServer`, certificate from the same CA, trusted through `[outbound]
//! ca_file`). Agents submit with swaks on 587 (STARTTLS) and msmtp on 465 (TLS); dkimpy
//! checks both DKIM signatures of what Postfix received.
//!
//! One Postfix on 127.0.0.1 serves every domain, so `[outbound] port` is its port and the
//! TLSA records are at `_PORT._tcp`; its one certificate is for `mx.sts.test`, and each
//! domain's records decide what it means:
//!
//! | domain            | records                                           | expected                    |
//! |-------------------|---------------------------------------------------|-----------------------------|
//! | `sts.test`        | MTA-STS `enforce`, mx `mx.sts.test`               | delivered, `tls="mta-sts"`  |
//! | `mismatch.test`   | MTA-STS `enforce`, mx `mx.mismatch.test`; TLS-RPT | never sent, DSN, report     |
//! | `dane.test`       | TLSA 3 1 1 of Postfix's key                       | delivered, `tls="dane"`     |
//! | `danebad.test`    | TLSA 3 1 1 of another key; TLS-RPT                | never sent, retried, report |
//! | `daneany.test`    | TLSA 1 1 1 only (PKIX-EE: unusable for SMTP)      | TLS required, unverified    |
//! | `malformed.test`  | MTA-STS policy that does not parse                | opportunistic, `starttls`   |
//! | `big.test`        | MTA-STS policy over `mta_sts_policy_bytes_max`    | opportunistic, `starttls`   |
//! | `testing.test`    | MTA-STS `testing`, mx `mx.testing.test`           | `starttls`, failure counted |
//!
//! The malformed and oversized policies would be `enforce` policies naming an MX host the
//! certificate does not match if they were read: delivery shows they were not.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hameau_testkit::{HttpsServer, Knot, Postfix, TestCa, start_knot_signed};

use crate::outbound_faults::{attempts_to, set_in_section};
use crate::submission::{PASSWORD, imap_inbox, setup, swaks};
use crate::support::{Server, config_path, init_with_token, metric, start_server};

const DOMAINS: [&str; 8] = [
    "sts.test",
    "mismatch.test",
    "dane.test",
    "danebad.test",
    "daneany.test",
    "malformed.test",
    "big.test",
    "testing.test",
];
/// `[outbound] mta_sts_policy_bytes_max`: its minimum, so that a small policy is over it.
const POLICY_BYTES_MAX: usize = 1024;

/// Everything one test runs against; stopped when dropped.
struct World {
    server: Server,
    config: PathBuf,
    /// a.test's DKIM public keys, as DNS would publish them (for dkimpy).
    dkim: Vec<(String, String)>,
    postfix: Postfix,
    https: HttpsServer,
    _knot: Knot,
    /// Where the msmtp client's configuration goes.
    clients: tempfile::TempDir,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts the world of the table above, the queue retrying after 1 then every 2 s for
/// `lifetime_s`.
fn world(lifetime_s: u64) -> World {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    crate::imap::create_account(&config, "tlsrpt@a.test", PASSWORD);
    crate::support::set_config(&config, "plaintext_auth = false", "plaintext_auth = true");

    let ca = TestCa::new();
    let pki = tempfile::tempdir().unwrap();
    let tls = ca.issue(pki.path(), &["mx.sts.test"]);
    let other_key = tempfile::tempdir().unwrap();
    let other_tlsa = ca.issue(other_key.path(), &["mx.danebad.test"]).tlsa_3_1_1();
    let postfix = Postfix::mx(&DOMAINS, Some(&tls));

    let mut records = String::new();
    for domain in DOMAINS {
        records.push_str(&format!("{domain}. 3600 IN MX 10 mx.{domain}.\nmx.{domain}. 3600 IN A 127.0.0.1\n"));
    }
    for domain in ["sts.test", "mismatch.test", "malformed.test", "big.test", "testing.test"] {
        records.push_str(&format!(
            "_mta-sts.{domain}. 3600 IN TXT \"v=STSv1; id=1;\"\nmta-sts.{domain}. 3600 IN A 127.0.0.1\n"
        ));
    }
    for domain in ["mismatch.test", "danebad.test"] {
        records.push_str(&format!("_smtp._tls.{domain}. 3600 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@a.test\"\n"));
    }
    let port = postfix.port;
    records.push_str(&format!("_{port}._tcp.mx.dane.test. 3600 IN TLSA 3 1 1 {}\n", tls.tlsa_3_1_1()));
    records.push_str(&format!("_{port}._tcp.mx.danebad.test. 3600 IN TLSA 3 1 1 {other_tlsa}\n"));
    records.push_str(&format!("_{port}._tcp.mx.daneany.test. 3600 IN TLSA 1 1 1 {other_tlsa}\n"));
    let dns = tempfile::tempdir().unwrap();
    let (knot, anchors) = start_knot_signed(dns.path(), &[("test", records)], &["test"]);

    let hosts = [
        "mta-sts.sts.test",
        "mta-sts.mismatch.test",
        "mta-sts.malformed.test",
        "mta-sts.big.test",
        "mta-sts.testing.test",
    ];
    let https = HttpsServer::start(ca.server_config(&hosts));
    let enforce = |mx: &str| format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n");
    https.answer("mta-sts.sts.test", HttpsServer::text(&enforce("mx.sts.test")));
    https.answer("mta-sts.mismatch.test", HttpsServer::text(&enforce("mx.mismatch.test")));
    let malformed = enforce("mx.malformed.test").replace("max_age: 86400", "max_age: forever");
    https.answer("mta-sts.malformed.test", HttpsServer::text(&malformed));
    // Unknown keys are ignored (RFC 8461 §3.2): a valid policy, only too large.
    let big = enforce("mx.big.test") + &"padding: to be larger than the bound\r\n".repeat(40);
    assert!(big.len() > POLICY_BYTES_MAX);
    https.answer("mta-sts.big.test", HttpsServer::text(&big));
    let testing = enforce("mx.testing.test").replace("mode: enforce", "mode: testing");
    https.answer("mta-sts.testing.test", HttpsServer::text(&testing));

    let ca_file = ca.write_pem(pki.path());
    for (key, value) in [
        ("port", port.to_string()),
        ("mta_sts_port", https.port.to_string()),
        ("mta_sts_policy_bytes_max", POLICY_BYTES_MAX.to_string()),
        ("ca_file", format!("{:?}", ca_file.display().to_string())),
        ("tls_rpt_interval_s", "3".into()),
    ] {
        set_in_section(&config, "outbound", key, &value);
    }
    set_in_section(&config, "dns", "resolvers", &format!("[\"127.0.0.1:{}\"]", knot.port));
    set_in_section(&config, "dns", "trust_anchor_file", &format!("{:?}", anchors.display().to_string()));
    set_in_section(&config, "queue", "retry_schedule_s", "[1, 2]");
    set_in_section(&config, "queue", "lifetime_s", &lifetime_s.to_string());
    set_in_section(&config, "queue", "delay_notice_s", &(lifetime_s - 1).to_string());
    // Read before the server holds the store.
    let dkim = crate::submission::dkim_records(&config, "a.test");
    let server = start_server(&config);
    let clients = tempfile::tempdir().unwrap();
    World { server, config, dkim, postfix, https, clients, _knot: knot, _dirs: vec![dir, pki, other_key, dns] }
}

impl World {
    /// agent@a.test submits a message to `to` on 587 with STARTTLS.
    fn submit(&self, to: &str, subject: &str) {
        let header = format!("Subject: {subject}");
        let args = [
            "--tls",
            "--to",
            to,
            "--from",
            "agent@a.test",
            "--header",
            &header,
            "--auth",
            "PLAIN",
            "--auth-user",
            "agent@a.test",
            "--auth-password",
            PASSWORD,
        ];
        let (ok, text) = swaks(self.server.submission[0].port(), &args);
        assert!(ok && text.contains("250 2.0.0 Ok: queued"), "{text}");
    }

    /// agent@a.test submits a message to `to` with msmtp on 465 (TLS from the first byte).
    fn submit_with_msmtp(&self, to: &str, subject: &str) {
        let message = format!("From: Agent <agent@a.test>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\nBonjour.\r\n");
        let port = self.server.submissions[0].port();
        let (ok, text) = crate::postfix::msmtp(self.clients.path(), port, false, &self.server.cert, to, &message);
        assert!(ok, "{text}");
    }

    /// dkimpy verifies both DKIM signatures (Ed25519 and RSA) of `message` as received.
    fn both_signatures_valid(&self, message: &str) {
        let mut verdicts = crate::postfix::dkimpy_verdicts(&self.dkim, message.as_bytes());
        verdicts.sort();
        let expected = vec![("ed25519-sha256".to_string(), true), ("rsa-sha256".to_string(), true)];
        assert_eq!(verdicts, expected, "{message}");
    }

    /// The message Postfix delivered to `recipient`, waiting up to 30 s for it.
    fn received_by_postfix(&self, recipient: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(message) = self.postfix_has(recipient) {
                return message;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "nothing for {recipient} reached Postfix\n{}\n{}",
                self.queue_log(),
                self.postfix.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The message Postfix delivered to `recipient`, if any.
    fn postfix_has(&self, recipient: &str) -> Option<String> {
        let header = format!("Delivered-To: {recipient}\n");
        let received = self.postfix.received().into_iter().map(|m| String::from_utf8_lossy(&m).into_owned());
        received.into_iter().find(|message| message.contains(&header))
    }

    /// Postfix never took mail for `recipient`: not in its maildir, not in its log.
    fn never_received(&self, recipient: &str) {
        let log = self.postfix.log();
        assert!(self.postfix_has(recipient).is_none(), "{recipient} reached Postfix:\n{log}");
        assert!(!log.contains(&format!("to=<{recipient}>")), "{recipient} in Postfix's log:\n{log}");
    }

    /// Every session of Hameau's that carried mail used STARTTLS (Postfix sums up each
    /// session on its disconnect line: `ehlo=2 starttls=1 mail=1 …`).
    fn every_mail_session_used_starttls(&self) {
        let log = self.postfix.log();
        let sessions = log.lines().filter(|line| line.contains("disconnect from") && line.contains(" mail="));
        for session in sessions {
            assert!(session.contains(" starttls=1"), "a mail transaction in clear: {session}\n{log}");
        }
    }

    fn metric(&self, series: &str) -> u64 {
        metric(&self.server, &self.config, series)
    }

    fn tls_used(&self, label: &str) -> u64 {
        self.metric(&format!("hameau_outbound_transactions_total{{tls=\"{label}\"}}"))
    }

    /// `tls_used(label)` once it reaches `n` (within 10 s), or what it is then: the counter
    /// moves when the worker has the receiver's reply, a moment after Postfix stored the
    /// message.
    fn tls_used_reaching(&self, label: &str, n: u64) -> u64 {
        let start = Instant::now();
        loop {
            let value = self.tls_used(label);
            if value >= n || start.elapsed() > Duration::from_secs(10) {
                return value;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tls_failures(&self, result: &str) -> u64 {
        self.metric(&format!("hameau_outbound_tls_failures_total{{result=\"{result}\"}}"))
    }

    /// The server's log lines that contain every one of `needles`.
    fn log_lines(&self, needles: &[&str]) -> Vec<String> {
        self.server.log().into_iter().filter(|line| needles.iter().all(|needle| line.contains(needle))).collect()
    }

    /// The server's log lines about delivery and TLS, for failure messages.
    fn queue_log(&self) -> String {
        let lines = self
            .server
            .log()
            .into_iter()
            .filter(|line| ["queue", "TLS", "MTA-STS", "DANE"].iter().any(|needle| line.contains(needle)));
        lines.collect::<Vec<_>>().join("\n")
    }

    /// The first message of `user`'s INBOX (read over IMAP) that contains all of
    /// `needles`, waiting up to `timeout` for it.
    fn mail_of(&self, user: &str, needles: &[&str], timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            // Returns at once when the INBOX holds a message, else within 30 s.
            let messages = imap_inbox(self.server.imap[0].port(), user, 1);
            if let Some(found) = messages.iter().find(|message| needles.iter().all(|needle| message.contains(needle))) {
                return found.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "no message with {needles:?} for {user}: {messages:#?}\n{}",
                self.queue_log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits up to 30 s until `recipient` has had `n` delivery attempts; their log lines.
    fn attempts(&self, recipient: &str, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let attempts = attempts_to(&self.server, recipient);
            if attempts.len() >= n {
                return attempts;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{} attempts to {recipient}\n{}", attempts.len(), {
                self.queue_log()
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The JSON of a TLS report (RFC 8460 §5.3), read from its message with Python's email,
/// gzip and json modules: the `application/tlsrpt+gzip` part of a
/// `multipart/report; report-type="tlsrpt"`.
fn tls_report_json(message: &str) -> serde_json::Value {
    let script = "import sys, email, gzip, json\n\
                  m = email.message_from_bytes(sys.stdin.buffer.read())\n\
                  assert m.get_content_type() == 'multipart/report', m.get_content_type()\n\
                  assert m.get_param('report-type') == 'tlsrpt', m.get_param('report-type')\n\
                  parts = [p for p in m.walk() if p.get_content_type() == 'application/tlsrpt+gzip']\n\
                  assert len(parts) == 1, len(parts)\n\
                  print(json.dumps(json.loads(gzip.decompress(parts[0].get_payload(decode=True)))))\n";
    serde_json::from_slice(&crate::smtp::python(script, message.as_bytes())).unwrap()
}

/// Issue 11, MTA-STS `enforce` (RFC 8461): to `sts.test`, whose MX presents a certificate
/// for its name from a trusted CA, the message goes over verified TLS; to `mismatch.test`,
/// whose MX presents the same certificate (for another name), it is never sent: each
/// attempt is deferred saying TLS required by MTA-STS failed, retried on the schedule, and
/// at the end of its lifetime the sender gets a failure notice with that reason. Each policy
/// was fetched once (then cached), and `mismatch.test`'s TLS-RPT address gets a report of
/// the failures (RFC 8460).
#[test]
fn mta_sts_enforce_delivers_over_verified_tls_and_never_in_clear_to_a_mismatched_mx() {
    let world = world(8);
    world.submit("x@sts.test", "MTA-STS enforce");
    world.submit_with_msmtp("z@sts.test", "MTA-STS enforce, msmtp on 465");
    world.submit("y@mismatch.test", "MTA-STS mismatch");

    // swaks on 587 and msmtp on 465: both at Postfix over verified TLS, both signatures
    // valid there.
    let message = world.received_by_postfix("x@sts.test");
    assert!(message.contains("Subject: MTA-STS enforce"), "{message}");
    world.both_signatures_valid(&message);
    let message = world.received_by_postfix("z@sts.test");
    assert!(message.contains("Subject: MTA-STS enforce, msmtp on 465"), "{message}");
    world.both_signatures_valid(&message);
    let log = world.postfix.log();
    assert!(log.contains("TLS connection established from"), "{log}");
    assert_eq!(world.tls_used_reaching("mta-sts", 2), 2, "{}", world.queue_log());

    // The mismatch: deferred, retried, never sent; then the failure notice.
    let attempts = world.attempts("y@mismatch.test", 2);
    for attempt in &attempts {
        assert!(attempt.contains("Deferred") && attempt.contains("451 4.7.5"), "{attempt}");
        assert!(attempt.contains("TLS required by MTA-STS"), "{attempt}");
    }
    let warnings =
        world.log_lines(&["TLS required by MTA-STS failed", "mx.mismatch.test", "certificate-host-mismatch"]);
    assert!(!warnings.is_empty(), "{}", world.queue_log());
    let notice = world.mail_of("agent@a.test", &["Action: failed", "y@mismatch.test"], Duration::from_secs(30));
    assert!(notice.contains("Final-Recipient: rfc822; y@mismatch.test"), "{notice}");
    assert!(notice.contains("Diagnostic-Code: smtp; 451 4.7.5"), "{notice}");
    assert!(notice.contains("TLS required by MTA-STS"), "the notice quotes the reason: {notice}");
    assert!(notice.contains("Subject: MTA-STS mismatch"), "the original header is attached: {notice}");
    let attempts = attempts_to(&world.server, "y@mismatch.test");
    assert!(attempts.len() >= 3, "retried until the lifetime ended: {attempts:#?}");
    world.never_received("y@mismatch.test");
    world.every_mail_session_used_starttls();
    // One failed TLS session per attempt; the message has left the queue, so no more.
    assert_eq!(world.tls_failures("certificate-host-mismatch"), attempts.len() as u64, "{}", world.queue_log());
    assert_eq!(world.https.requests("mta-sts.sts.test"), 1);
    assert_eq!(world.https.requests("mta-sts.mismatch.test"), 1, "the policy is cached between attempts");

    // The TLS report, delivered to the local address of `_smtp._tls.mismatch.test`.
    let report = world.mail_of("tlsrpt@a.test", &["TLS-Report-Domain: mismatch.test"], Duration::from_secs(20));
    assert!(report.contains("report-type=\"tlsrpt\""), "{report}");
    let json = tls_report_json(&report);
    let policies = json["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 1, "{json:#}");
    let policy = &policies[0];
    assert_eq!(policy["policy"]["policy-type"], "sts", "{json:#}");
    assert_eq!(policy["policy"]["policy-domain"], "mismatch.test", "{json:#}");
    assert_eq!(policy["policy"]["mx-host"], serde_json::json!(["mx.mismatch.test"]), "{json:#}");
    assert_eq!(policy["summary"]["total-successful-session-count"], 0, "{json:#}");
    assert!(policy["summary"]["total-failure-session-count"].as_u64().unwrap() >= 1, "{json:#}");
    let detail = &policy["failure-details"][0];
    assert_eq!(detail["result-type"], "certificate-host-mismatch", "{json:#}");
    assert_eq!(detail["receiving-mx-hostname"], "mx.mismatch.test", "{json:#}");
    assert_eq!(detail["receiving-ip"], "127.0.0.1", "{json:#}");
}

/// Issue 11, DANE (RFC 7672): `dane.test`'s MX answer and its host's TLSA record are
/// DNSSEC-secure and the record matches Postfix's key: delivered, counted `tls="dane"`
/// (although no MTA-STS policy or trusted name would allow it: DANE-EE checks the key
/// only). `danebad.test`'s TLSA names another key: never sent, deferred and retried, and
/// its TLS-RPT address gets a report of the failures under its `tlsa` policy.
#[test]
fn dane_delivers_when_the_tlsa_record_matches_and_never_when_it_does_not() {
    let world = world(600);
    world.submit("x@dane.test", "DANE");
    world.submit("y@danebad.test", "DANE mismatch");
    world.submit("z@daneany.test", "DANE unusable");

    let message = world.received_by_postfix("x@dane.test");
    assert!(message.contains("Subject: DANE"), "{message}");
    world.both_signatures_valid(&message);
    assert_eq!(world.tls_used_reaching("dane", 1), 1, "{}", world.queue_log());
    // Only unusable records (RFC 7672 §2.2): TLS all the same, the certificate unchecked.
    world.received_by_postfix("z@daneany.test");
    assert_eq!(world.tls_used_reaching("starttls", 1), 1, "{}", world.queue_log());

    let attempts = world.attempts("y@danebad.test", 2);
    for attempt in &attempts {
        assert!(attempt.contains("Deferred") && attempt.contains("451 4.7.5"), "{attempt}");
        assert!(attempt.contains("TLS required by DANE"), "{attempt}");
    }
    assert!(!world.log_lines(&["TLS required by DANE failed", "mx.danebad.test"]).is_empty(), "{}", world.queue_log());
    world.never_received("y@danebad.test");
    world.every_mail_session_used_starttls();
    assert!(world.tls_failures("validation-failure") >= 2, "{}", world.queue_log());
    assert_eq!(world.tls_used("none"), 0);

    let report = world.mail_of("tlsrpt@a.test", &["TLS-Report-Domain: danebad.test"], Duration::from_secs(20));
    let json = tls_report_json(&report);
    let policy = &json["policies"][0];
    assert_eq!(policy["policy"]["policy-type"], "tlsa", "{json:#}");
    assert_eq!(policy["policy"]["policy-domain"], "danebad.test", "{json:#}");
    assert_eq!(policy["policy"]["mx-host"], serde_json::json!(["mx.danebad.test"]), "{json:#}");
    let strings = policy["policy"]["policy-string"].as_array().unwrap();
    assert!(strings.len() == 1 && strings[0].as_str().unwrap().starts_with("3 1 1 "), "{json:#}");
    let detail = &policy["failure-details"][0];
    assert_eq!(detail["result-type"], "validation-failure", "{json:#}");
    assert_eq!(detail["receiving-mx-hostname"], "mx.danebad.test", "{json:#}");
    assert!(detail["failure-reason-code"].as_str().unwrap().contains("no TLSA record matches"), "{json:#}");
}

/// Issue 11, bad input: an MTA-STS policy that does not parse, and one over
/// `mta_sts_policy_bytes_max`, are as no policy (RFC 8461 §5: opportunistic TLS), not as a
/// reason to hold the mail: both messages are delivered over STARTTLS, the log says why the
/// policy was not used, and `/metrics` counts `sts-policy-invalid` for each. A valid
/// `testing` policy that the certificate fails is not enforced either (RFC 8461 §5), but
/// the failure is counted.
#[test]
fn a_malformed_or_oversized_mta_sts_policy_means_opportunistic_tls() {
    let world = world(600);
    world.submit("x@malformed.test", "malformed policy");
    world.submit("x@big.test", "oversized policy");
    world.submit("x@testing.test", "testing policy");

    for recipient in ["x@malformed.test", "x@big.test", "x@testing.test"] {
        world.received_by_postfix(recipient);
    }
    assert_eq!(world.tls_used_reaching("starttls", 3), 3, "{}", world.queue_log());
    assert_eq!(world.tls_failures("certificate-host-mismatch"), 1, "the testing policy's failure");
    assert_eq!(world.tls_used("mta-sts"), 0);
    assert_eq!(world.tls_failures("sts-policy-invalid"), 2, "{}", world.queue_log());
    let malformed = world.log_lines(&["no policy could be had (sts-policy-invalid)", "malformed.test", "max_age"]);
    assert_eq!(malformed.len(), 1, "{}", world.queue_log());
    let big = world.log_lines(&["no policy could be had (sts-policy-invalid)", "big.test", "over 1024 bytes"]);
    assert_eq!(big.len(), 1, "{}", world.queue_log());
    assert_eq!(world.https.requests("mta-sts.malformed.test"), 1);
    assert_eq!(world.https.requests("mta-sts.big.test"), 1);
    assert_eq!(world.https.requests("mta-sts.testing.test"), 1);
    world.every_mail_session_used_starttls();
}

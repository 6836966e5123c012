//! The submission pipeline through its trait, over a real directory and queue on a
//! temporary store (the driver and real clients: tests/it).

use std::net::SocketAddr;
use std::sync::Arc;

use hameau_directory::{
    AccountRole, AccountUpdate, Directory, NewAccount, NewAlias, NewDomain, NewTenant, Options, Principal,
};
use hameau_queue::Queue;
use hameau_smtp_session::{Credentials, Decision, MailParams, Mechanism};
use hameau_store::Store;

use super::{Submission, SubmissionOptions};
use crate::pipeline::{Message, Pipeline};

const NOW: u64 = 1_795_000_000;
const PASSWORD: &str = "un mot de passe solide";

struct Fixture {
    _dir: tempfile::TempDir,
    submission: Submission,
    queue: Queue,
}

/// Tenant `a` (domain a.test with its DKIM keys), accounts agent@ (may send as
/// mairie@a.test) and other@.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
    let directory = Directory::new(store.clone(), Options::default());
    let op = Principal::Operator;
    let tenant =
        NewTenant { id: "a".into(), name: "A".into(), siren: None, insee: None, quota_bytes: None, accounts_max: None };
    directory.create_tenant(&op, tenant, NOW).await.unwrap();
    directory.create_domain(&op, NewDomain { name: "a.test".into(), tenant: "a".into() }, NOW).await.unwrap();
    for address in ["agent@a.test", "other@a.test"] {
        let account = NewAccount {
            address: address.into(),
            display_name: String::new(),
            password: Some(PASSWORD.into()),
            quota_bytes: None,
            enabled: true,
            role: AccountRole::User,
        };
        directory.create_account(&op, account, NOW).await.unwrap();
    }
    let alias = NewAlias { address: "mairie@a.test".into(), targets: vec!["other@a.test".into()] };
    directory.create_alias(&op, alias, NOW).await.unwrap();
    let update = AccountUpdate { may_send_as: Some(vec!["mairie@a.test".into()]), ..Default::default() };
    directory.update_account(&op, "agent@a.test", update).await.unwrap();
    let queue = Queue::new(store, hameau_queue::Limits::default());
    let options = SubmissionOptions {
        hostname: "mx.a.test".into(),
        received_client_ip: false,
        sending_limits: crate::brakes::SendingLimits {
            account_messages_per_hour_max: 2,
            account_recipients_per_hour_max: 100,
            tenant_messages_per_hour_max: 100,
            tenant_recipients_per_hour_max: 100,
        },
    };
    let registry = hameau_telemetry::Registry::default();
    let submission = Submission::new(directory, queue.clone(), options, Arc::new(|| NOW), &registry);
    Fixture { _dir: dir, submission, queue }
}

fn peer() -> SocketAddr {
    "192.0.2.7:40000".parse().unwrap()
}

fn credentials(username: &str, password: &str) -> Credentials {
    Credentials { mechanism: Mechanism::Plain, authzid: None, username: username.into(), password: password.into() }
}

fn refusal(decision: Decision) -> String {
    match decision {
        Decision::Reject(reply) => reply.to_string(),
        Decision::Accept => "accepted".into(),
    }
}

fn message<'a>(data: &'a [u8], mail_from: &'a str, recipients: &'a [String], params: &'a MailParams) -> Message<'a> {
    Message { mail_from, recipients, params, data, tls: true, received_at: NOW, id: "s1.1" }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_without_authentication() {
    let f = fixture().await;
    let s = &f.submission;
    assert_eq!(s.auth_mechanisms(), &[Mechanism::Plain, Mechanism::Login]);
    let mut session = s.session(peer());
    let params = MailParams::default();
    assert_eq!(refusal(s.mail_from(&mut session, "agent@a.test", &params).await), "530 5.7.0 Authentication required");
    assert_eq!(refusal(s.rcpt_to(&mut session, "x@elsewhere.test").await), "530 5.7.0 Authentication required");
    let wrong = s.auth(&mut session, credentials("agent@a.test", "wrong password")).await;
    assert_eq!(refusal(wrong), "535 5.7.8 Authentication credentials invalid");
    let unknown = s.auth(&mut session, credentials("nobody@a.test", PASSWORD)).await;
    assert_eq!(refusal(unknown), "535 5.7.8 Authentication credentials invalid");
    // Acting as someone else (PLAIN's authzid) is refused even with the right password.
    let mut as_other = credentials("agent@a.test", PASSWORD);
    as_other.authzid = Some("other@a.test".into());
    assert_eq!(refusal(s.auth(&mut session, as_other).await), "535 5.7.8 Authentication credentials invalid");
    assert_eq!(refusal(s.mail_from(&mut session, "agent@a.test", &params).await), "530 5.7.0 Authentication required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sends_as_itself_or_as_what_it_may() {
    let f = fixture().await;
    let s = &f.submission;
    let mut session = s.session(peer());
    assert_eq!(refusal(s.auth(&mut session, credentials("agent@a.test", PASSWORD)).await), "accepted");
    let params = MailParams::default();
    for allowed in ["agent@a.test", "AGENT@a.test", "mairie@a.test"] {
        assert_eq!(refusal(s.mail_from(&mut session, allowed, &params).await), "accepted", "{allowed}");
    }
    for refused in ["other@a.test", "agent@elsewhere.test", ""] {
        let text = refusal(s.mail_from(&mut session, refused, &params).await);
        assert_eq!(text, format!("550 5.7.1 agent@a.test may not send as <{refused}>"));
    }
    let recipients = vec!["x@elsewhere.test".to_string(), "other@a.test".to_string()];
    // A From field the account does not own is refused, even with a good envelope.
    let forged = b"From: Le Maire <maire@a.test>\r\nTo: x@elsewhere.test\r\nSubject: urgent\r\n\r\nVirement.\r\n";
    let reply = s.message(&mut session, message(forged, "agent@a.test", &recipients, &params)).await;
    assert_eq!(reply.to_string(), "550 5.7.1 agent@a.test may not send as <maire@a.test> (From field)");
    let no_from = b"To: x@elsewhere.test\r\nSubject: urgent\r\n\r\nVirement.\r\n";
    let reply = s.message(&mut session, message(no_from, "agent@a.test", &recipients, &params)).await;
    assert_eq!(reply.to_string(), "554 5.6.0 the message has no From field (RFC 5322 §3.6)");
    // A Sender field the account does not own, with From fields it owns.
    let sender = b"From: agent@a.test, mairie@a.test\r\nSender: other@a.test\r\n\r\nx\r\n";
    let reply = s.message(&mut session, message(sender, "agent@a.test", &recipients, &params)).await;
    assert_eq!(reply.to_string(), "550 5.7.1 agent@a.test may not send as <other@a.test> (Sender field)");
    let sender = b"From: agent@a.test, mairie@a.test\r\nSender: agent@a.test\r\n\r\nx\r\n";
    let reply = s.message(&mut session, message(sender, "agent@a.test", &recipients, &params)).await;
    assert!(reply.is_success(), "{reply}");
    assert_eq!(f.queue.list(None, None, 10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_signed_twice_and_queued() {
    let f = fixture().await;
    let s = &f.submission;
    let mut session = s.session(peer());
    s.helo(&mut session, "poste-accueil").await;
    assert_eq!(refusal(s.auth(&mut session, credentials("agent@a.test", PASSWORD)).await), "accepted");
    let params = MailParams::default();
    let recipients = vec!["x@elsewhere.test".to_string(), "other@a.test".to_string()];
    let data = b"From: Mairie <mairie@a.test>\r\nTo: x@elsewhere.test\r\nSubject: Conseil\r\n\r\nBonjour.\r\n";
    let mut due = f.queue.watch_due().await.unwrap();
    let reply = s.message(&mut session, message(data, "agent@a.test", &recipients, &params)).await;
    assert!(reply.to_string().starts_with("250 2.0.0 queued as 1"), "{reply}");
    // Queued: the delivery worker's watch wakes at once.
    tokio::time::timeout(std::time::Duration::from_secs(5), due.changed()).await.unwrap().unwrap();
    let queued = f.queue.list(None, None, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    let (_, queued) = &queued[0];
    assert_eq!(queued.mail_from, "agent@a.test");
    assert_eq!(queued.tenant.as_deref(), Some("a"));
    let addresses: Vec<&str> = queued.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["x@elsewhere.test", "other@a.test"]);
    let raw = String::from_utf8(f.queue.raw(queued).await.unwrap()).unwrap();
    // Two signatures first (Ed25519 then RSA), relaxed/relaxed, From oversigned.
    let signatures: Vec<&str> = raw.split("DKIM-Signature:").skip(1).collect();
    assert_eq!(signatures.len(), 2, "{raw}");
    let unfolded: Vec<String> = signatures.iter().map(|s| s.split_whitespace().collect::<String>()).collect();
    assert!(unfolded[0].contains("a=ed25519-sha256") && unfolded[1].contains("a=rsa-sha256"), "{raw}");
    for signature in &unfolded {
        assert!(signature.contains("d=a.test") && signature.contains("c=relaxed/relaxed"), "{signature}");
        // Oversigned: `From` named once more than the message has it.
        let fields = signature.split("h=").nth(1).and_then(|rest| rest.split(';').next()).unwrap();
        assert_eq!(fields.split(':').filter(|name| name.eq_ignore_ascii_case("from")).count(), 2, "{signature}");
    }
    // Then Received (no client address), then the added Date and Message-ID.
    let received = raw.find("Received: from poste-accueil\r\n\tby mx.a.test (Hameau) with ESMTPSA id s1.1").unwrap();
    assert!(!raw.contains("192.0.2.7"), "{raw}");
    assert!(raw.find("DKIM-Signature:").unwrap() < received);
    assert!(raw.contains("Date: ") && raw.contains("Message-ID: <s1.1@mx.a.test>\r\n"), "{raw}");
    assert!(raw.ends_with("Subject: Conseil\r\n\r\nBonjour.\r\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_sending_limit_an_account_is_braked() {
    let f = fixture().await;
    let s = &f.submission;
    let mut session = s.session(peer());
    assert_eq!(refusal(s.auth(&mut session, credentials("agent@a.test", PASSWORD)).await), "accepted");
    let params = MailParams::default();
    let recipients = vec!["x@elsewhere.test".to_string()];
    let data = b"From: agent@a.test\r\nSubject: x\r\n\r\nx\r\n";
    for _ in 0..2 {
        let reply = s.message(&mut session, message(data, "agent@a.test", &recipients, &params)).await;
        assert!(reply.is_success(), "{reply}");
    }
    let reply = s.message(&mut session, message(data, "agent@a.test", &recipients, &params)).await;
    assert!(reply.to_string().starts_with("451 4.7.1 sending limit: more than 2 messages in an hour"), "{reply}");
    // Its queued mail is held; new mail is refused at MAIL FROM.
    let queued = f.queue.list(None, None, 10).await.unwrap();
    assert_eq!(queued.len(), 2);
    assert!(queued.iter().all(|(_, message)| message.held.as_ref().is_some_and(|hold| hold.by_brake)));
    let refused = refusal(s.mail_from(&mut session, "agent@a.test", &params).await);
    assert!(refused.starts_with("451 4.7.1 sending is stopped (sending limit"), "{refused}");
    // Another account of the tenant still sends; the operator lifts the brake.
    let mut other = s.session(peer());
    assert_eq!(refusal(s.auth(&mut other, credentials("other@a.test", PASSWORD)).await), "accepted");
    assert_eq!(refusal(s.mail_from(&mut other, "other@a.test", &params).await), "accepted");
    let account = f.queue.brakes(Some("a")).await.unwrap()[0].account.unwrap();
    assert_eq!(f.queue.lift_brake("a", Some(account), NOW).await.unwrap(), 2);
    assert_eq!(refusal(s.mail_from(&mut session, "agent@a.test", &params).await), "accepted");
}

/// The header checks of `authors`: one case a line, the header (a body follows), whether
/// MAIL FROM had SMTPUTF8, and the authors found or the refusal.
#[test]
fn headers_are_checked_before_signing() {
    fn check(header: &str, smtputf8: bool, expect: &str) {
        let data = format!("{header}\r\n\r\nBonjour.\r\n");
        let got = match super::authors(data.as_bytes(), smtputf8) {
            Ok(authors) => format!("from {:?} sender {:?}", authors.from, authors.sender),
            Err(reply) => reply.to_string(),
        };
        assert_eq!(got, expect, "{header:?}");
    }
    check("From: agent@a.test", false, r#"from ["agent@a.test"] sender None"#);
    check("From: Agent <agent@a.test>\r\nTo: x@b.test", false, r#"from ["agent@a.test"] sender None"#);
    check("From: =?utf-8?q?=C3=89lo=C3=AFse?= <agent@a.test>", false, r#"from ["agent@a.test"] sender None"#);
    check(
        "From: a@a.test, b@a.test\r\nSender: a@a.test",
        false,
        r#"from ["a@a.test", "b@a.test"] sender Some("a@a.test")"#,
    );
    check(
        "From: Mairie: a@a.test, b@a.test;\r\nSender: a@a.test",
        false,
        r#"from ["a@a.test", "b@a.test"] sender Some("a@a.test")"#,
    );
    check("To: x@b.test", false, "554 5.6.0 the message has no From field (RFC 5322 §3.6)");
    check(
        "From: b@a.test\r\nFrom: a@a.test",
        false,
        "554 5.6.0 the message has 2 From fields, RFC 5322 §3.6 allows one",
    );
    check(
        "From: a@a.test\r\nSender: a@a.test\r\nSender: b@a.test",
        false,
        "554 5.6.0 the message has 2 Sender fields, RFC 5322 §3.6 allows one",
    );
    check(
        "From: a@a.test, b@a.test",
        false,
        "554 5.6.0 the From field names 2 authors: a Sender field must name the one who sends (RFC 5322 §3.6.2)",
    );
    check(
        "From: a@a.test\r\nSender: a@a.test, b@a.test",
        false,
        "554 5.6.0 the Sender field must hold one address (RFC 5322 §3.6.2)",
    );
    for no_address in ["From:", "From: undisclosed:;"] {
        check(no_address, false, "554 5.6.0 the From field holds no address (RFC 5322 §3.6.2)");
    }
    for not_an_address in [
        "From: Le Maire",
        "From: agent@a.test, Le Maire",
        "From: <@>",
        "From: agent@",
        "From: Mairie <agent@a..test>",
        "From: <a@b.test\u{7}>",
    ] {
        check(not_an_address, false, "554 5.6.0 the From field holds something that is not an address (RFC 5322 §3.4)");
    }
    let eight_bit = "554 5.6.7 a header field holds 8-bit characters but MAIL FROM has no SMTPUTF8: encode the field (RFC 2047) or send with SMTPUTF8 (RFC 6532)";
    check("From: agent@a.test\r\nSubject: Réunion", false, eight_bit);
    check("From: Élodie <agent@a.test>", false, eight_bit);
    check("From: agent@a.test\r\nSubject: Réunion", true, r#"from ["agent@a.test"] sender None"#);
    check("From: élodie@a.test", true, r#"from ["élodie@a.test"] sender None"#);
}

/// Latin-1 in a header is not UTF-8, SMTPUTF8 or not.
#[test]
fn a_header_in_latin_1_is_refused() {
    let data = b"From: agent@a.test\r\nSubject: R\xe9union\r\n\r\nx\r\n";
    assert_eq!(
        super::authors(data, true).unwrap_err().to_string(),
        "554 5.6.0 the header is not valid UTF-8 (RFC 6532 §3.2)"
    );
    assert!(super::authors(data, false).unwrap_err().to_string().starts_with("554 5.6.7"));
}

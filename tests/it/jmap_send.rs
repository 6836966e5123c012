//! Issue 15, sending over JMAP against the real binary: a draft written over IMAP (APPEND
//! to Drafts), found and sent with JMAP (`Identity/get`, `Email/query`,
//! `EmailSubmission/set` with `onSuccessUpdateEmail` moving it to Sent), delivered through
//! the one queue to a local account readable over IMAP and to a remote MX (Postfix's
//! smtp-sink) DKIM-signed and without its `Bcc`; the refusals of SMTP submission as
//! JMAP's errors (`forbiddenFrom`), and `EmailSubmission/get` and `/changes`.

use crate::imap::python;
use crate::submission::{PASSWORD, imap_inbox, remote_mx, setup};
use crate::support::{config_path, init_with_token, set_config, start_server};

#[test]
fn a_draft_written_over_imap_is_sent_with_jmap_to_local_and_remote_recipients() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    // imap_inbox logs in without TLS.
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    set_config(&config, "port = 25", &format!("port = {}", sink.port));
    let server = start_server(&config);
    let (https, imap) = (server.https[0].port(), server.imap[0].port());
    let script = format!(
        r##"
import imaplib, json, os, ssl, requests
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
from jmapc import Client
from jmapc.methods import IdentityGet, EmailSubmissionGet

draft = (b"From: Agent <agent@a.test>\r\nTo: other@a.test, x@remote.test\r\nBcc: hidden@remote.test\r\n"
         b"Subject: Ordre du jour\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
         b"Bonjour, voici l'ordre du jour.\r\n")
forged = draft.replace(b"From: Agent <agent@a.test>", b"From: Le Maire <maire@a.test>")
imap = imaplib.IMAP4("127.0.0.1", {imap})
imap.starttls(ssl._create_unverified_context())
imap.login("agent@a.test", {PASSWORD:?})
for message in (draft, forged):
    typ, _ = imap.append("Brouillons", "(\\Draft)", None, message)
    assert typ == "OK", typ
imap.logout()

client = Client.create_with_password(host="localhost:{https}", user="agent@a.test", password={PASSWORD:?})
account = client.account_id
identities = client.request(IdentityGet()).data
own = [i for i in identities if i.email == "agent@a.test"]
assert own, identities

api = "https://localhost:{https}/jmap/api"
auth = ("agent@a.test", {PASSWORD:?})
using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"]
def call(*calls):
    r = requests.post(api, json={{"using": using, "methodCalls": list(calls)}}, auth=auth, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]

mailboxes = call(["Mailbox/get", {{"accountId": account}}, "m"])[0][1]["list"]
role = {{m["role"]: m["id"] for m in mailboxes if m["role"]}}
found = call(["Email/query", {{"accountId": account, "filter": {{"inMailbox": role["drafts"]}}, "sort": [{{"property": "receivedAt"}}]}}, "q"])
ids = found[0][1]["ids"]
assert len(ids) == 2, found
responses = call(["EmailSubmission/set", {{
    "accountId": account,
    "create": {{
        "good": {{"identityId": own[0].id, "emailId": ids[0]}},
        "forged": {{"identityId": own[0].id, "emailId": ids[1]}},
    }},
    "onSuccessUpdateEmail": {{"#good": {{("mailboxIds/" + role["drafts"]): None, ("mailboxIds/" + role["sent"]): True, "keywords/$draft": None}}}},
}}, "s"])
created = responses[0][1]["created"]["good"]
assert created["undoStatus"] == "final", responses
assert responses[0][1]["notCreated"]["forged"]["type"] == "forbiddenFrom", responses
assert responses[1][0] == "Email/set" and ids[0] in responses[1][1]["updated"], responses
sent = call(["Email/query", {{"accountId": account, "filter": {{"inMailbox": role["sent"]}}}}, "q"])[0][1]["ids"]
assert sent == [ids[0]], sent
got = client.request(EmailSubmissionGet(ids=[created["id"]])).data
assert got[0].email_id == ids[0], got
changes = call(["EmailSubmission/changes", {{"accountId": account, "sinceState": "0"}}, "c"])[0][1]
assert created["id"] in changes["created"], changes
print("sent ok")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    assert!(out.contains("sent ok"), "{out}");
    // The local recipient reads it over IMAP, signed.
    let local = imap_inbox(imap, "other@a.test", 1);
    assert!(local[0].contains("Subject: Ordre du jour") && local[0].contains("DKIM-Signature:"), "{}", local[0]);
    assert!(!local[0].contains("hidden@remote.test"), "Bcc removed: {}", local[0]);
    // The remote MX gets it once, signed, without the Bcc field, for both remote recipients.
    let start = std::time::Instant::now();
    let dumped = loop {
        let files: Vec<_> = std::fs::read_dir(sink_dir.path()).unwrap().filter_map(Result::ok).collect();
        if let Some(file) = files.first() {
            break std::fs::read(file.path()).unwrap();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "nothing reached the remote MX");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let text = String::from_utf8_lossy(&dumped);
    assert!(text.contains("DKIM-Signature:") && text.contains("Subject: Ordre du jour"), "{text}");
    assert!(!text.contains("Bcc:"), "{text}");
    assert!(text.contains("x@remote.test") && text.contains("hidden@remote.test"), "both in the envelope: {text}");
    assert!(!server.log().join("\n").contains("panicked"));
    drop(sink);
}

/// A vacation response set over JMAP answers a sender once, from the null sender, signed,
/// through the queue to the remote MX; never a list's message nor a second message of the
/// same sender.
#[test]
fn a_vacation_response_set_over_jmap_answers_a_sender_once() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    setup(&config);
    let _dns = remote_mx(&config, &[]);
    let sink_dir = tempfile::tempdir().unwrap();
    let sink = hameau_testkit::SmtpSink::dumping_into(sink_dir.path(), &[]);
    set_config(&config, "port = 25", &format!("port = {}", sink.port));
    let server = start_server(&config);
    let https = server.https[0].port();
    let script = format!(
        r##"
import os, requests
auth = ("agent@a.test", {PASSWORD:?})
session = requests.get("https://localhost:{https}/.well-known/jmap", verify={cert:?}, auth=auth, timeout=30).json()
account = session["primaryAccounts"]["urn:ietf:params:jmap:vacationresponse"]
api = "https://localhost:{https}/jmap/api"
r = requests.post(api, verify={cert:?}, auth=auth, timeout=30, json={{
    "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:vacationresponse"],
    "methodCalls": [
        ["VacationResponse/set", {{"accountId": account, "update": {{"singleton": {{
            "isEnabled": True, "subject": "Absente jusqu'au 4", "textBody": "Je suis en congés."}}}}}}, "s"],
        ["VacationResponse/get", {{"accountId": account}}, "g"],
    ]}})
responses = r.json()["methodResponses"]
assert "singleton" in responses[0][1]["updated"], responses
assert responses[1][1]["list"][0]["isEnabled"] is True, responses
print("vacation set")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    assert!(out.contains("vacation set"), "{out}");
    let mx = server.smtp[0].port();
    let send = |from: &str, extra: &[&str]| {
        let args =
            [&["--to", "agent@a.test", "--from", from, "--header", "Subject: Demande de permis"][..], extra].concat();
        let (ok, text) = crate::submission::swaks(mx, &args);
        assert!(ok, "{text}");
    };
    send("jeanne@remote.test", &[]);
    send("jeanne@remote.test", &[]);
    send("liste@remote.test", &["--header", "List-Id: <conseil.remote.test>"]);
    // One answer reaches the remote MX.
    let start = std::time::Instant::now();
    let answers = loop {
        let files: Vec<_> = std::fs::read_dir(sink_dir.path()).unwrap().filter_map(Result::ok).collect();
        if !files.is_empty() {
            // Room for a wrong second answer to arrive too.
            std::thread::sleep(std::time::Duration::from_secs(2));
            break std::fs::read_dir(sink_dir.path()).unwrap().filter_map(Result::ok).collect::<Vec<_>>();
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "no vacation answer reached the remote MX");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(answers.len(), 1, "one answer, to jeanne only");
    let text = String::from_utf8_lossy(&std::fs::read(answers[0].path()).unwrap()).into_owned();
    assert!(text.contains("Auto-Submitted: auto-replied") && text.contains("Absente jusqu'au 4"), "{text}");
    assert!(text.contains("DKIM-Signature:") && text.contains("jeanne@remote.test"), "{text}");
    drop(sink);
}

//! Issue 15, JMAP's Email reading methods against the real binary: mail delivered over
//! SMTP (swaks to the MX), then read with a real client library (PyPI's `jmapc`):
//! `Mailbox/get`, `/query`, `/set`, `Email/query`, `Email/get`, `Thread/get`,
//! `Email/changes`, `SearchSnippet/get`; and raw HTTP (`requests`) for what jmapc does not
//! show: unknown ids (`notFound`), a filter the server does not know
//! (`unsupportedFilter`), another account's email ids (`notFound`) and account
//! (`accountNotFound`), a result reference from `Email/query` to `Email/get`.

use std::process::Command;

use crate::imap::{create_account, python, quick_dns};
use crate::support::{config_path, init_with_token, start_server};

const PASSWORD: &str = "correct horse battery staple";

/// Delivers one message through the MX.
fn deliver(port: u16, to: &str, headers: &[&str], body: &str) {
    let mut command = Command::new("swaks");
    command.args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test"]).args([
        "--to",
        to,
        "--from",
        "jean@sender.test",
        "--body",
        body,
    ]);
    for header in headers {
        command.args(["--header", header]);
    }
    let output = command.output().expect("swaks");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn jmapc_queries_and_reads_mail_delivered_over_smtp() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    crate::support::admin(
        &config,
        &[&["tenant", "create", "a", "--name", "A"], &["domain", "create", "a.test", "--tenant", "a"]],
    );
    create_account(&config, "agent@a.test", PASSWORD);
    create_account(&config, "autre@a.test", PASSWORD);
    let _dns = quick_dns(&config);
    let server = start_server(&config);
    let smtp = server.smtp[0].port();
    deliver(
        smtp,
        "agent@a.test",
        &["Subject: Conseil municipal", "Message-ID: <conseil@sender.test>"],
        "Ordre du jour: budget 2027.",
    );
    deliver(
        smtp,
        "agent@a.test",
        &["Subject: Re: Conseil municipal", "In-Reply-To: <conseil@sender.test>", "Message-ID: <re@sender.test>"],
        "Je viendrai, avec le budget.",
    );
    deliver(smtp, "agent@a.test", &["Subject: Voirie"], "Les travaux de la rue commencent lundi.");
    // The other account has more mail than the agent: its ids go past the agent's.
    for n in 0..5 {
        deliver(smtp, "autre@a.test", &[&format!("Subject: Autre {n}")], "pour un autre compte");
    }
    let port = server.https[0].port();
    let script = format!(
        r##"
import json, os, requests
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
from jmapc import Client, Comparator, EmailQueryFilterCondition, MailboxQueryFilterCondition, Ref
from jmapc.methods import (EmailChanges, EmailGet, EmailQuery, EmailQueryChanges, MailboxGet, MailboxQuery, MailboxSet,
    SearchSnippetGet, ThreadGet)
from jmapc.models import Mailbox

client = Client.create_with_password(host="localhost:{port}", user="agent@a.test", password={PASSWORD:?})
other = Client.create_with_password(host="localhost:{port}", user="autre@a.test", password={PASSWORD:?})

# Mailboxes, from jmapc.
mailboxes = client.request(MailboxGet(ids=None)).data
inbox = next(m for m in mailboxes if m.role == "inbox")
assert inbox.total_emails == 3 and inbox.unread_emails == 3, inbox
archive = client.request(MailboxQuery(filter=MailboxQueryFilterCondition(role="archive"))).ids
assert len(archive) == 1, archive
made = client.request(MailboxSet(create={{"p": Mailbox(name="Projets")}}))
assert "p" in made.created, made

# The inbox by date, newest first, then the emails of the page.
query = client.request(EmailQuery(filter=EmailQueryFilterCondition(in_mailbox=inbox.id),
    sort=[Comparator(property="receivedAt", is_ascending=False)], limit=10, calculate_total=True))
assert query.total == 3 and len(query.ids) == 3, query
emails = client.request(EmailGet(ids=query.ids, fetch_text_body_values=True)).data
subjects = [e.subject for e in emails]
assert subjects == ["Voirie", "Re: Conseil municipal", "Conseil municipal"], subjects
first = emails[2]
assert first.mail_from[0].email == "jean@sender.test", first.mail_from
assert first.mailbox_ids == {{inbox.id: True}} and first.keywords == {{}}, first
part = first.text_body[0].part_id
assert first.body_values[part].value.startswith("Ordre du jour: budget 2027."), first.body_values
assert first.received_at is not None and first.size > 0 and not first.has_attachment

# One thread for the message and its reply, oldest first.
assert emails[1].thread_id == first.thread_id != emails[0].thread_id
thread = client.request(ThreadGet(ids=[first.thread_id])).data[0]
assert thread.email_ids == [first.id, emails[1].id], thread

# Every email created since the beginning of the log.
changes = client.request(EmailChanges(since_state="0"))
assert sorted(changes.created) == sorted(query.ids), changes

# Snippets for a text search.
found = client.request(EmailQuery(filter=EmailQueryFilterCondition(text="budget"))).ids
assert sorted(found) == sorted([first.id, emails[1].id]), found
snippets = client.request(SearchSnippetGet(ids=found, filter=EmailQueryFilterCondition(text="budget"))).data
assert all("<mark>budget</mark>" in s.preview for s in snippets), snippets
# The query's changes since a state: a new delivery comes in at the top.
inbox_query = dict(filter=EmailQueryFilterCondition(in_mailbox=inbox.id),
    sort=[Comparator(property="receivedAt", is_ascending=False)])
deliver = json.loads({deliver:?})
import smtplib
with smtplib.SMTP("127.0.0.1", deliver["port"], local_hostname="sender.test") as smtp:
    smtp.sendmail("jean@sender.test", ["agent@a.test"], "From: jean@sender.test\r\nSubject: Nouveau\r\n\r\nTexte\r\n")
changed = client.request(EmailQueryChanges(since_query_state=query.query_state, calculate_total=True, **inbox_query))
assert changed.total == 4 and changed.removed == [] and len(changed.added) == 1 and changed.added[0].index == 0, changed
print("jmapc ok")

api = "https://localhost:{port}/jmap/api"
def post(calls, user="agent@a.test"):
    body = {{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": calls}}
    r = requests.post(api, data=json.dumps(body), auth=(user, {PASSWORD:?}),
                      headers={{"Content-Type": "application/json"}}, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]
account = client.account_id

# Unknown ids, and the other account's: notFound; its account: accountNotFound.
other_ids = other.request(EmailQuery(sort=[Comparator(property="receivedAt")])).ids
assert len(other_ids) == 5, other_ids
mine = client.request(EmailQuery()).ids
foreign = [i for i in other_ids if i not in mine]
assert foreign, (other_ids, query.ids)
r = post([["Email/get", {{"accountId": account, "ids": foreign + ["e99999", "zz"], "properties": ["subject"]}}, "g"],
          ["Thread/get", {{"accountId": account, "ids": ["t99999"]}}, "t"],
          ["Email/get", {{"accountId": other.account_id, "ids": foreign}}, "x"]])
assert r[0][1]["list"] == [] and sorted(r[0][1]["notFound"]) == sorted(foreign + ["e99999", "zz"]), r[0]
assert r[1][1]["notFound"] == ["t99999"], r[1]
assert r[2][0] == "error" and r[2][1]["type"] == "accountNotFound", r[2]

# A filter the server does not know; a sort it does not offer.
r = post([["Email/query", {{"accountId": account, "filter": {{"color": "red"}}}}, "q"],
          ["Email/query", {{"accountId": account, "sort": [{{"property": "color"}}]}}, "s"]])
assert r[0][0] == "error" and r[0][1]["type"] == "unsupportedFilter", r[0]
assert r[1][0] == "error" and r[1][1]["type"] == "unsupportedSort", r[1]

# A result reference from Email/query to Email/get, and on to Thread/get.
r = post([
    ["Email/query", {{"accountId": account, "filter": {{"inMailbox": inbox.id, "text": "conseil"}},
        "sort": [{{"property": "receivedAt"}}], "collapseThreads": True}}, "q"],
    ["Email/get", {{"accountId": account, "#ids": {{"resultOf": "q", "name": "Email/query", "path": "/ids"}},
        "properties": ["threadId", "subject", "header:Subject:asText", "bodyStructure"]}}, "g"],
    ["Thread/get", {{"accountId": account, "#ids": {{"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}}}, "t"],
])
assert r[0][1]["ids"] == [first.id], r[0]
got = r[1][1]["list"][0]
assert got["header:Subject:asText"] == "Conseil municipal" and got["bodyStructure"]["type"] == "text/plain", got
assert r[2][1]["list"][0]["emailIds"] == [first.id, emails[1].id], r[2]
print("raw ok")
"##,
        cert = server.cert.to_str().unwrap(),
        deliver = format!("{{\"port\": {smtp}}}"),
    );
    let out = python(&script);
    assert!(out.contains("jmapc ok") && out.contains("raw ok"), "{out}");
    assert!(!server.log().join("\n").contains("panicked"));
}

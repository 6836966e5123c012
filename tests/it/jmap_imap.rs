//! Issue 15, one state for IMAP and JMAP, against the real binary: an IMAP STORE and MOVE
//! appear in JMAP's `Email/changes` and `Mailbox/changes`; a keyword set with JMAP's
//! `Email/set` reaches an IMAP session in IDLE as `FETCH (FLAGS …)` (IMAPClient); and one
//! account can never read or change another's emails, guessed ids included, in the same
//! tenant or another.

use crate::imap::{create_account, python};
use crate::support::{admin, config_path, init_with_token, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn imap_and_jmap_see_each_others_changes_and_accounts_stay_apart() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["tenant", "create", "b", "--name", "B"],
            &["domain", "create", "b.test", "--tenant", "b"],
        ],
    );
    for address in ["agent@a.test", "other@a.test", "agent@b.test"] {
        create_account(&config, address, PASSWORD);
    }
    set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
    let server = start_server(&config);
    let (https, imap, mx) = (server.https[0].port(), server.imap[0].port(), server.smtp[0].port());
    // Email ids are numbered per account: the others get more messages than agent@a.test,
    // so that some of their ids are none of its own.
    let recipients = [
        "agent@a.test",
        "agent@a.test",
        "other@a.test",
        "other@a.test",
        "other@a.test",
        "agent@b.test",
        "agent@b.test",
        "agent@b.test",
    ];
    for to in recipients {
        let (ok, text) =
            crate::submission::swaks(mx, &["--to", to, "--from", "jeanne@remote.test", "--header", "Subject: Permis"]);
        assert!(ok, "{text}");
    }
    let script = format!(
        r##"
import os, threading, time, requests
from imapclient import IMAPClient
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
base = "https://localhost:{https}"
using = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"]

def session(user):
    s = requests.get(base + "/.well-known/jmap", auth=(user, {PASSWORD:?}), timeout=30).json()
    return s["primaryAccounts"]["urn:ietf:params:jmap:mail"]

def call(user, *calls):
    r = requests.post(base + "/jmap/api", json={{"using": using, "methodCalls": list(calls)}}, auth=(user, {PASSWORD:?}), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"]

me, other, far = session("agent@a.test"), session("other@a.test"), session("agent@b.test")
boxes = {{m["role"]: m["id"] for m in call("agent@a.test", ["Mailbox/get", {{"accountId": me}}, "m"])[0][1]["list"] if m["role"]}}
mine = call("agent@a.test", ["Email/query", {{"accountId": me, "filter": {{"inMailbox": boxes["inbox"]}}}}, "q"])[0][1]
assert len(mine["ids"]) == 2, mine
state = call("agent@a.test", ["Email/get", {{"accountId": me, "ids": []}}, "g"])[0][1]["state"]

# IMAP STORE and MOVE, then JMAP's changes.
with IMAPClient("127.0.0.1", port={imap}, ssl=False) as client:
    client.login("agent@a.test", {PASSWORD:?})
    client.select_folder("INBOX")
    uids = client.search("ALL")
    client.add_flags([uids[0]], [b"\\Flagged"])
    client.move([uids[1]], "Archives")
changes = call("agent@a.test", ["Email/changes", {{"accountId": me, "sinceState": state}}, "c"])[0][1]
assert sorted(changes["updated"]) == sorted(mine["ids"]), changes
boxes_changed = call("agent@a.test", ["Mailbox/changes", {{"accountId": me, "sinceState": state}}, "c"])[0][1]
assert boxes["inbox"] in boxes_changed["updated"] and boxes["archive"] in boxes_changed["updated"], boxes_changed
flagged = call("agent@a.test", ["Email/query", {{"accountId": me, "filter": {{"hasKeyword": "$flagged"}}}}, "q"])[0][1]["ids"]
assert len(flagged) == 1, flagged

# JMAP Email/set of a keyword while an IMAP session is in IDLE.
with IMAPClient("127.0.0.1", port={imap}, ssl=False) as client:
    client.login("agent@a.test", {PASSWORD:?})
    client.select_folder("INBOX")
    client.idle()
    time.sleep(0.3)
    target = flagged[0]
    start = time.time()
    done = call("agent@a.test", ["Email/set", {{"accountId": me, "update": {{target: {{"keywords/$seen": True}}}}}}, "s"])[0][1]
    assert target in done["updated"], done
    seen = []
    while time.time() - start < 10 and not seen:
        for response in client.idle_check(timeout=1):
            if response[1] == b"FETCH" and b"\\Seen" in response[2][response[2].index(b"FLAGS") + 1]:
                seen.append(response)
    client.idle_done()
    assert seen, "the IDLE session saw no FETCH FLAGS"
    print("idle saw the keyword in %.0f ms" % ((time.time() - start) * 1000))

# Another account's emails, by their real ids: nothing, in the same tenant or another.
# (Ids are numbered per account: an id that is also one of agent@a.test's own names its
# own email, so only the others are tried.)
own = set(call("agent@a.test", ["Email/query", {{"accountId": me}}, "q"])[0][1]["ids"])
theirs = call("other@a.test", ["Email/query", {{"accountId": other}}, "q"])[0][1]["ids"] + \
         call("agent@b.test", ["Email/query", {{"accountId": far}}, "q"])[0][1]["ids"]
theirs = sorted(set(theirs) - own)
assert theirs, theirs
got = call("agent@a.test", ["Email/get", {{"accountId": me, "ids": theirs}}, "g"])[0][1]
assert got["list"] == [] and sorted(got["notFound"]) == sorted(theirs), got
changed = call("agent@a.test", ["Email/set", {{"accountId": me, "update": {{theirs[0]: {{"keywords/$seen": True}}}}, "destroy": theirs}}, "s"])[0][1]
assert theirs[0] in changed["notUpdated"] and set(changed["notDestroyed"]) == set(theirs), changed
for account in (other, far):
    error = call("agent@a.test", ["Email/get", {{"accountId": account, "ids": theirs}}, "g"])[0]
    assert error[0] == "error" and error[1]["type"] == "accountNotFound", error
still = call("other@a.test", ["Email/get", {{"accountId": other, "ids": theirs[:1], "properties": ["keywords"]}}, "g"])[0][1]
assert still["list"] and still["list"][0]["keywords"] == {{}}, still
print("cross ok")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    assert!(out.contains("cross ok"), "{out}");
    println!("{out}");
    assert!(!server.log().join("\n").contains("panicked"));
}

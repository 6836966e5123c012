//! Issue 15, JMAP's first step against the real binary: the session resource and the API
//! endpoint with a real client library (PyPI's `jmapc`), and raw HTTP (`requests`) for the
//! errors jmapc does not show: HTTP Basic refused, request-level errors (notJSON,
//! notRequest, unknownCapability, limit), method-level errors (unknownMethod,
//! invalidResultReference), and a body over `jmap.request_bytes_max`.

use crate::imap::{create_account, python};
use crate::support::{config_path, init_with_token, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn jmapc_reads_the_session_and_calls_core_echo_and_errors_are_the_rfcs() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    crate::support::admin(
        &config,
        &[&["tenant", "create", "a", "--name", "A"], &["domain", "create", "a.test", "--tenant", "a"]],
    );
    create_account(&config, "agent@a.test", PASSWORD);
    // The smallest request allowed, to send one over it.
    set_config(&config, "request_bytes_max = 10000000", "request_bytes_max = 1024");
    let server = start_server(&config);
    let port = server.https[0].port();
    let script = format!(
        r##"
import json, os, requests
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
from jmapc import Client
from jmapc.methods import CoreEcho

client = Client.create_with_password(host="localhost:{port}", user="agent@a.test", password={PASSWORD:?})
session = client.jmap_session
assert session.username == "agent@a.test", session
assert session.api_url == "https://localhost:{port}/jmap/api", session.api_url
assert session.capabilities.core.max_calls_in_request == 16
echo = client.request(CoreEcho(data={{"hello": "mairie", "n": [1, 2]}}))
assert echo.data == {{"hello": "mairie", "n": [1, 2]}}, echo
print("jmapc ok", client.account_id)

api = "https://localhost:{port}/jmap/api"
auth = ("agent@a.test", {PASSWORD:?})
def post(body, auth=auth):
    return requests.post(api, data=body if isinstance(body, (bytes, str)) else json.dumps(body), auth=auth,
                         headers={{"Content-Type": "application/json"}}, timeout=20)

wrong = post({{"using": [], "methodCalls": []}}, auth=("agent@a.test", "wrong"))
assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Basic"), (wrong.status_code, wrong.headers)
nobody = requests.get("https://localhost:{port}/.well-known/jmap", timeout=20)
assert nobody.status_code == 401, nobody.status_code

def problem(body):
    r = post(body)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/problem+json", (r.status_code, r.text)
    return r.json()
assert problem(b'{{"using": [')["type"] == "urn:ietf:params:jmap:error:notJSON"
assert problem({{"using": []}})["type"] == "urn:ietf:params:jmap:error:notRequest"
assert problem({{"using": ["urn:example:nothing"], "methodCalls": []}})["type"] == "urn:ietf:params:jmap:error:unknownCapability"
many = problem({{"using": [], "methodCalls": [["Core/echo", {{}}, "c%d" % i] for i in range(17)]}})
assert many["type"] == "urn:ietf:params:jmap:error:limit" and many["limit"] == "maxCallsInRequest", many
big = problem({{"using": [], "methodCalls": [["Core/echo", {{"x": "y" * 2000}}, "c"]]}})
assert big["type"] == "urn:ietf:params:jmap:error:limit" and big["limit"] == "maxSizeRequest", big

r = post({{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [
    ["Core/echo", {{"ids": ["m1", "m2"]}}, "c1"],
    ["Core/echo", {{"#first": {{"resultOf": "c1", "name": "Core/echo", "path": "/ids/0"}}}}, "c2"],
    ["Nothing/get", {{"accountId": client.account_id}}, "c3"],
    ["Core/echo", {{"#x": {{"resultOf": "c9", "name": "Core/echo", "path": "/ids"}}}}, "c4"],
]}})
assert r.status_code == 200, r.text
responses = r.json()["methodResponses"]
assert responses[1] == ["Core/echo", {{"first": "m1"}}, "c2"], responses
assert responses[2][0] == "error" and responses[2][1]["type"] == "unknownMethod", responses
assert responses[3][0] == "error" and responses[3][1]["type"] == "invalidResultReference", responses
assert r.json()["sessionState"] == session.state
elsewhere = requests.get("https://localhost:{port}/jmap/download/a999/b1/x", auth=auth, timeout=20)
assert elsewhere.status_code == 404, elsewhere.status_code
print("raw ok")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    assert!(out.contains("jmapc ok") && out.contains("raw ok"), "{out}");
    assert!(!server.log().join("\n").contains("panicked"));
}

/// Bearer tokens: an API key of the account opens its JMAP session and calls (here an
/// upload read back by `Email/parse`, and a part of it downloaded); an operator's key, a
/// revoked key, another commune's account key and a made-up token do not; failures from
/// one address end in 429.
#[test]
fn an_accounts_api_key_is_a_bearer_token_and_nothing_else_is() {
    let (dir, operator) = init_with_token();
    let config = config_path(dir.path());
    crate::support::admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["tenant", "create", "b", "--name", "B"],
            &["domain", "create", "b.test", "--tenant", "b"],
        ],
    );
    create_account(&config, "agent@a.test", PASSWORD);
    create_account(&config, "agent@b.test", PASSWORD);
    // Few failures before the lockout, without waits: the test reaches it quickly.
    set_config(&config, "failures_max = 20", "failures_max = 8");
    set_config(&config, "delay_ms = 250", "delay_ms = 1");
    let server = start_server(&config);
    let port = server.https[0].port();
    let script = format!(
        r##"
import json, os, requests
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
base = "https://localhost:{port}"
def key(scope):
    r = requests.post(base + "/api/v1/api-keys", json={{"name": "webmail", "scope": scope}},
                      headers={{"Authorization": "Bearer {operator}"}}, timeout=20)
    assert r.status_code == 201, r.text
    return r.json()["key"]["id"], r.json()["token"]
key_id, token = key({{"role": "user", "account": "agent@a.test"}})
_, token_b = key({{"role": "user", "account": "agent@b.test"}})
_, tenant_admin = key({{"role": "tenant_admin", "tenant": "a"}})
bearer = lambda t: {{"Authorization": "Bearer " + t}}

session = requests.get(base + "/.well-known/jmap", headers=bearer(token), timeout=20)
assert session.status_code == 200, session.text
assert session.json()["username"] == "agent@a.test"
account = list(session.json()["accounts"])[0]
eml = ("From: Maire <maire@a.test>\r\nTo: agent@a.test\r\nSubject: Conseil du 3\r\nMIME-Version: 1.0\r\n"
       "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nOrdre du jour.\r\n"
       "--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGFtZWF1\r\n--x--\r\n")
up = requests.post(base + "/jmap/upload/" + account, data=eml.encode(), headers=dict(bearer(token), **{{"Content-Type": "message/rfc822"}}), timeout=20)
assert up.status_code == 201, up.text
blob = up.json()["blobId"]
def call(calls, headers):
    return requests.post(base + "/jmap/api", headers=dict(headers, **{{"Content-Type": "application/json"}}), timeout=20,
        data=json.dumps({{"using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"], "methodCalls": calls}}))
r = call([["Email/parse", {{"accountId": account, "blobIds": [blob, "b424242"], "properties": ["subject", "from", "attachments", "size"]}}, "p"]], bearer(token))
assert r.status_code == 200, r.text
parsed = r.json()["methodResponses"][0][1]
assert parsed["notFound"] == ["b424242"], parsed
email = parsed["parsed"][blob]
assert email["subject"] == "Conseil du 3" and email["from"][0]["email"] == "maire@a.test", email
assert email["size"] == len(eml), email
part = email["attachments"][0]["blobId"]
assert part.startswith(blob + "."), part
got = requests.get(base + "/jmap/download/%s/%s/x.bin" % (account, part), headers=bearer(token), timeout=20)
assert got.status_code == 200 and got.content == b"hameau", (got.status_code, got.content)

# Another commune's account key: its own session, never a's account or blob.
r = call([["Email/parse", {{"accountId": account, "blobIds": [blob]}}, "p"]], bearer(token_b))
assert r.json()["methodResponses"][0][1]["type"] == "accountNotFound", r.text
other = requests.get(base + "/.well-known/jmap", headers=bearer(token_b), timeout=20).json()
other_account = list(other["accounts"])[0]
assert other_account != account
r = call([["Email/parse", {{"accountId": other_account, "blobIds": [blob]}}, "p"]], bearer(token_b))
assert r.json()["methodResponses"][0][1]["notFound"] == [blob], r.text

# Keys that are no account's, and a revoked one: 401 with both challenges.
for t in ["{operator}", tenant_admin]:
    r = requests.get(base + "/.well-known/jmap", headers=bearer(t), timeout=20)
    assert r.status_code == 401, (r.status_code, r.text)
    assert "Bearer" in r.headers["WWW-Authenticate"] and "Basic" in r.headers["WWW-Authenticate"], r.headers
r = requests.delete(base + "/api/v1/api-keys/" + key_id, headers=bearer("{operator}"), timeout=20)
assert r.status_code < 300, r.text
r = requests.get(base + "/.well-known/jmap", headers=bearer(token), timeout=20)
assert r.status_code == 401, r.status_code
# Made-up tokens from one address: refused with 429 past auth.failures_max.
statuses = [requests.get(base + "/.well-known/jmap", headers=bearer("hmk_%04x_%s" % (i, "0" * 64)), timeout=20).status_code
            for i in range(12)]
assert statuses[0] == 401 and statuses[-1] == 429, statuses
print("bearer ok")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    assert!(out.contains("bearer ok"), "{out}");
    assert!(!server.log().join("\n").contains("panicked"));
}

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

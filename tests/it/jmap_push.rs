//! Issue 15, JMAP upload, download and push against the real binary: an upload with
//! PyPI's `jmapc` downloaded back byte for byte; another account's blob (another tenant's)
//! 404 whatever account id is used; an upload over `jmap.upload_bytes_max` (declared or
//! streamed) refused with the RFC's `limit` problem, over the account's quota with 413;
//! an EventSource stream (raw TLS socket) receiving a `StateChange` after an SMTP delivery,
//! the delay from the SMTP `250` printed (a figure, not a timed assertion: the house rule);
//! `closeafter=state`; and a PushSubscription to a Python HTTP server on 127.0.0.1
//! (`jmap.push_loopback_allowed`) receiving its `PushVerification`, then, once verified, a
//! `StateChange` after a delivery; and one with RFC 8291 keys, whose pushes PyPI's `http_ece`
//! decrypts.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::imap::{create_account, python, quick_dns};
use crate::support::{config_path, init_with_token, set_config, start_server};

const PASSWORD: &str = "correct horse battery staple";

#[test]
fn upload_download_eventsource_and_push_subscription() {
    let (dir, _) = init_with_token();
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
    create_account(&config, "user@a.test", PASSWORD);
    create_account(&config, "other@b.test", PASSWORD);
    let mut child = crate::support::hameau()
        .args(["account", "create", "full@a.test", "--quota-bytes", "1000", "--password-stdin", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    set_config(&config, "upload_bytes_max = 50000000", "upload_bytes_max = 4096");
    set_config(&config, "push_loopback_allowed = false", "push_loopback_allowed = true");
    set_config(&config, "event_sources_per_account_max = 8", "event_sources_per_account_max = 2");
    let _dns = quick_dns(&config);
    let mut server = start_server(&config);
    let (https, smtp) = (server.https[0].port(), server.smtp[0].port());
    let script = format!(
        r##"
import json, os, socket, ssl, smtplib, threading, time, tempfile, requests
import http.server
os.environ["REQUESTS_CA_BUNDLE"] = {cert:?}
from jmapc import Client

base = "https://localhost:{https}"
user = ("user@a.test", {PASSWORD:?})
other = ("other@b.test", {PASSWORD:?})
full = ("full@a.test", {PASSWORD:?})
def account_of(auth):
    return requests.get(base + "/jmap/session", auth=auth, timeout=20).json()["primaryAccounts"]["urn:ietf:params:jmap:core"]

# Upload with jmapc, download back identical bytes.
client = Client.create_with_password(host="localhost:{https}", user=user[0], password=user[1])
content = bytes(range(256)) * 10
with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
    f.write(content); f.flush()
    blob = client.upload_blob(f.name)
assert blob.size == len(content) and blob.type == "application/pdf", blob
url = client.jmap_session.download_url.format(accountId=client.account_id, blobId=blob.id, name="compte rendu é.pdf", type="application/pdf")
r = requests.get(url, auth=user, timeout=20)
assert r.status_code == 200 and r.content == content, (r.status_code, len(r.content))
assert r.headers["Content-Type"] == "application/pdf", r.headers
assert r.headers["Content-Disposition"] == "attachment; filename*=UTF-8''compte%20rendu%20%C3%A9.pdf", r.headers
assert "immutable" in r.headers["Cache-Control"] and "private" in r.headers["Cache-Control"], r.headers
print("upload and download ok")

# Another tenant's blob: 404 with its id under either account id.
theirs = requests.post(base + "/jmap/upload/" + account_of(other), data=b"secret of b", auth=other, timeout=20)
assert theirs.status_code == 201, theirs.text
their_blob = theirs.json()["blobId"]
for account in (client.account_id, account_of(other)):
    r = requests.get(base + "/jmap/download/%s/%s/x" % (account, their_blob), auth=user, timeout=20)
    assert r.status_code == 404, (account, r.status_code)
r = requests.post(base + "/jmap/upload/" + account_of(other), data=b"x", auth=user, timeout=20)
assert r.status_code == 404, r.status_code
for wrong in ("b999", "u" + "0" * 64, "nonsense"):
    r = requests.get(base + "/jmap/download/%s/%s/x" % (client.account_id, wrong), auth=user, timeout=20)
    assert r.status_code == 404, (wrong, r.status_code)
print("another account's blobs ok")

# Over maxSizeUpload: declared, and streamed without a length.
upload = base + "/jmap/upload/" + client.account_id
r = requests.post(upload, data=b"x" * 5000, auth=user, timeout=20)
assert r.status_code == 400 and r.json()["type"] == "urn:ietf:params:jmap:error:limit" and r.json()["limit"] == "maxSizeUpload", r.text
def chunks():
    for _ in range(10):
        yield b"y" * 1000
r = requests.post(upload, data=chunks(), auth=user, timeout=20)
assert r.status_code == 400 and r.json()["limit"] == "maxSizeUpload", r.text
# Over the account's quota (1000 bytes).
r = requests.post(base + "/jmap/upload/" + account_of(full), data=b"z" * 2000, auth=full, timeout=20)
assert r.status_code == 413 and "overQuota" in r.json()["detail"], (r.status_code, r.text)
print("limits ok")

def deliver(subject):
    message = "From: jean@sender.test\r\nTo: user@a.test\r\nSubject: %s\r\n\r\nBonjour.\r\n" % subject
    with smtplib.SMTP("127.0.0.1", {smtp}, local_hostname="sender.test") as mx:
        refused = mx.sendmail("jean@sender.test", ["user@a.test"], message.encode())
        assert refused == {{}}, refused
    return time.monotonic()

# EventSource over a raw TLS socket, to time the event's arrival.
import base64
context = ssl.create_default_context(cafile={cert:?})
def open_stream(query):
    raw = socket.create_connection(("127.0.0.1", {https}), timeout=30)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    token = base64.b64encode(("%s:%s" % user).encode()).decode()
    tls.sendall(("GET /jmap/eventsource?%s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\nAccept: text/event-stream\r\n\r\n" % (query, token)).encode())
    return tls
def read_until(tls, marker, seen=b""):
    while marker not in seen:
        chunk = tls.recv(4096)
        if not chunk:
            break
        seen += chunk
    return seen
stream = open_stream("types=*&closeafter=no&ping=0")
head = read_until(stream, b": hameau")
assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
arrived = {{}}
def listen():
    data = read_until(stream, b"event: state")
    arrived["at"] = time.monotonic()
    arrived["data"] = data
listener = threading.Thread(target=listen); listener.start()
delivered = deliver("push")
listener.join(30)
assert "at" in arrived, "no state event within 30 s"
event = arrived["data"].split(b"event: state\ndata: ", 1)[1].split(b"\n", 1)[0]
change = json.loads(event)
assert change["@type"] == "StateChange" and set(change["changed"][client.account_id]) == {{"Email", "Mailbox", "Thread", "EmailDelivery"}}, change
print("eventsource delay after the SMTP 250: %.1f ms" % ((arrived["at"] - delivered) * 1000))
stream.close()

# closeafter=state: the response ends after the first state event.
r = requests.get(base + "/jmap/eventsource?types=Email&closeafter=state&ping=30", auth=user, stream=True, timeout=30)
assert r.status_code == 200 and r.headers["Content-Type"] == "text/event-stream"
threading.Timer(0.5, deliver, args=("close",)).start()
body = r.raw.read()
assert b"event: state" in body and b'"Email"' in body and b"Mailbox" not in body, body
print("closeafter ok")

# A PushSubscription to a local HTTP server: verification, then a state change.
posts, encrypted = [], []
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers["Content-Length"])
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "aes128gcm":
            encrypted.append((time.monotonic(), raw))
        else:
            posts.append((time.monotonic(), json.loads(raw)))
        self.send_response(201); self.end_headers()
    def log_message(self, *args):
        pass
push_server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=push_server.serve_forever, daemon=True).start()
push_url = "http://127.0.0.1:%d/push" % push_server.server_port
api = base + "/jmap/api"
def call(method, arguments):
    r = requests.post(api, json={{"using": ["urn:ietf:params:jmap:core"], "methodCalls": [[method, arguments, "c"]]}}, auth=user, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()["methodResponses"][0]
created = call("PushSubscription/set", {{"create": {{"k": {{"deviceClientId": "tel", "url": push_url}}}}}})
assert created[0] == "PushSubscription/set", created
subscription = created[1]["created"]["k"]["id"]
refused = call("PushSubscription/set", {{"create": {{"k": {{"deviceClientId": "tel", "url": "https://push.example/", "keys": {{"p256dh": "a", "auth": "b"}}}}}}}})
assert refused[1]["notCreated"]["k"]["properties"] == ["keys"], refused
def wait_for(kind, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for at, body in posts:
            if body.get("@type") == kind:
                return at, body
        time.sleep(0.01)
    raise AssertionError("no %s in %s" % (kind, posts))
_, verification = wait_for("PushVerification")
assert verification["pushSubscriptionId"] == subscription, verification
deliver("before verification")
time.sleep(0.5)
assert not [body for _, body in posts if body.get("@type") == "StateChange"], "nothing is pushed before verification"
verified = call("PushSubscription/set", {{"update": {{subscription: {{"verificationCode": verification["verificationCode"]}}}}}})
assert subscription in verified[1]["updated"], verified
delivered = deliver("after verification")
at, change = wait_for("StateChange")
assert client.account_id in change["changed"], change
print("push subscription delay after the SMTP 250: %.1f ms" % ((at - delivered) * 1000))
got = call("PushSubscription/get", {{}})
assert got[1]["list"][0]["verificationCode"] == verification["verificationCode"] and "url" not in got[1]["list"][0], got
print("push subscription ok")

# An encrypted subscription (RFC 8291): what arrives opens with its private key, by an
# independent implementation (PyPI's http_ece), and is never in clear.
import base64, http_ece
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
ua = ec.generate_private_key(ec.SECP256R1())
ua_public = ua.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
auth_secret = os.urandom(16)
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
created = call("PushSubscription/set", {{"create": {{"e": {{"deviceClientId": "web", "url": push_url,
    "keys": {{"p256dh": b64(ua_public), "auth": b64(auth_secret)}}}}}}}})
encrypted_id = created[1]["created"]["e"]["id"]
def opened(kind, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for at, raw in list(encrypted):
            assert b"pushSubscriptionId" not in raw and b"StateChange" not in raw, raw
            body = json.loads(http_ece.decrypt(raw, private_key=ua, auth_secret=auth_secret, version="aes128gcm"))
            if body.get("@type") == kind:
                return at, body
        time.sleep(0.01)
    raise AssertionError("no encrypted %s in %d posts" % (kind, len(encrypted)))
_, verification = opened("PushVerification")
assert verification["pushSubscriptionId"] == encrypted_id, verification
verified = call("PushSubscription/set", {{"update": {{encrypted_id: {{"verificationCode": verification["verificationCode"]}}}}}})
assert encrypted_id in verified[1]["updated"], verified
deliver("encrypted")
_, change = opened("StateChange")
assert client.account_id in change["changed"], change
print("encrypted push ok")

# event_sources_per_account_max (2 here): a third stream is refused while two are open.
first, second = open_stream("types=*&closeafter=no&ping=0"), open_stream("types=*&closeafter=no&ping=0")
for stream in (first, second):
    assert read_until(stream, b": hameau").startswith(b"HTTP/1.1 200")
r = requests.get(base + "/jmap/eventsource?types=*&closeafter=no&ping=0", auth=user, timeout=20)
assert r.status_code == 429 and r.json()["type"] == "urn:ietf:params:jmap:error:limit", (r.status_code, r.text)
first.close(); second.close()
print("stream limit ok")
"##,
        cert = server.cert.to_str().unwrap(),
    );
    let out = python(&script);
    println!("{out}");
    for step in [
        "upload and download ok",
        "another account's blobs ok",
        "limits ok",
        "closeafter ok",
        "push subscription ok",
        "encrypted push ok",
        "stream limit ok",
    ] {
        assert!(out.contains(step), "{step}: {out}");
    }
    assert!(!server.log().join("\n").contains("panicked"));
    // An open event stream does not hold the server up at shutdown: it ends (another
    // account: the closed streams above may hold user@a.test's slots until a write fails).
    let ended = crate::support::block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(server.https[0]).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = crate::support::tls_connector(&server.cert).connect(name, tcp).await.unwrap();
        let token =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("other@b.test:{PASSWORD}"));
        let request = format!(
            "GET /jmap/eventsource?types=*&closeafter=no&ping=0 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {token}\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(": hameau") {
            let n = tls.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the stream opens");
            seen.extend_from_slice(&buffer[..n]);
        }
        server.signal(libc::SIGTERM);
        tokio::time::timeout(Duration::from_secs(30), async {
            while tls.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
        })
        .await
        .is_ok()
    });
    assert!(ended, "the stream ends at shutdown");
    assert!(server.wait(Duration::from_secs(30)).is_some_and(|status| status.success()));
}

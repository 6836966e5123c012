//! Issue 13: mbsync (Debian isync 1.4) stalled during a bulk APPEND. It speaks
//! COMPRESS=DEFLATE, pipelines LITERAL+ APPENDs, and sends large messages as synchronising
//! literals, waiting for `+`. Mail compresses well, so one read of compressed input
//! inflates to more than the driver takes at once (`imap.inflate_bytes_max`): the bytes
//! zlib held after using up its input were never asked for, and the server waited on the
//! socket for a command it had received, while the client waited for its `+`.
//!
//! This test drives that pattern over a real socket (TLS, COMPRESS, 300 pipelined LITERAL+
//! APPENDs written with sync flushes, then a synchronising literal). It did not stall the
//! server before the fix on this machine (TLS hands the driver at most 16 KiB at a time,
//! and whether zlib is left holding bytes depends on where reads cut the stream): the test
//! that fails without the fix is `inflate_gives_what_zlib_holds_after_the_input_is_used`
//! in `crates/imap/src/server/tests.rs`, on the sans-IO inflater.

use crate::imap::{imap_account, python};
use crate::support::{config_path, init_with_token, start_server};

#[test]
fn compressed_pipelined_appends_then_a_synchronising_literal_get_their_continuation() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    let server = start_server(&config);
    let script = format!(
        r#"
import socket, ssl, zlib
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", {port})))
s.settimeout(30)
buf = b""
def read_until(marker):
    global buf
    while marker not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
s.sendall(b'a LOGIN user@a.test "correct horse battery staple"\r\n')
read_until(b"a OK")
s.sendall(b"b COMPRESS DEFLATE\r\n")
read_until(b"b OK")
deflate = zlib.compressobj(wbits=-15)
inflate = zlib.decompressobj(wbits=-15)
plain = b""
def read_plain(marker):
    global plain
    while marker not in plain:
        chunk = s.recv(65536)
        assert chunk, plain
        plain += inflate.decompress(chunk)
# Pipelined LITERAL+ APPENDs of mail-like text (some of it runs that compress very well,
# as base64 of images does), each written with a sync flush as mbsync writes, then a
# synchronising one.
import random
rng = random.Random(13)
run = b"IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIi\r\n"
for n in range(300):
    size = rng.randrange(2000, 62000)
    body = b"Subject: message %d\r\n\r\n" % n
    while len(body) < size:
        if rng.randrange(3) == 0:
            body += run
        else:
            body += bytes(rng.randrange(65, 91) for _ in range(76)) + b"\r\n"
    command = b"c%d APPEND INBOX (\\Seen) {{%d+}}\r\n" % (n, len(body)) + body + b"\r\n"
    s.sendall(deflate.compress(command) + deflate.flush(zlib.Z_SYNC_FLUSH))
big = b"Subject: grand\r\n\r\n" + run * 3000
s.sendall(deflate.compress(b"d APPEND INBOX {{%d}}\r\n" % len(big)) + deflate.flush(zlib.Z_SYNC_FLUSH))
read_plain(b"c299 OK")
read_plain(b"+ ")
s.sendall(deflate.compress(big + b"\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
read_plain(b"d OK")
s.sendall(deflate.compress(b"e LOGOUT\r\n") + deflate.flush(zlib.Z_SYNC_FLUSH))
print("appends OK")
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port(),
    );
    let out = python(&script);
    assert!(out.contains("appends OK"), "{out}");
}

#!/usr/bin/env python3
"""Writes the attack seeds of issue 10 into the corpora of the two session targets.

Each seed is the target's framing (see `fuzzing::fuzz_session` in imap-session and
smtp-session): a setup byte, then feeds of 1 to N bytes, each after a length byte.
Run from the repository root: python3 fuzz/seeds/session_seeds.py
"""
import os

def framed(setup, data, chunk):
    out = bytearray([setup])
    for i in range(0, len(data), chunk):
        piece = data[i:i + chunk]
        out.append(len(piece) - 1)
        out += piece
    return bytes(out)

IMAP = {
    "list-stars-then-z": b'a LIST "" "' + b"*" * 40 + b'Z"\r\n',
    "list-many-stars": b'a LIST "" "' + b"*" * 3000 + b'"\r\n',
    "lsub-percent": b'a LSUB "" "%/%/%/%/%/%/%/%*%"\r\n',
    "thread-references": b"a SELECT INBOX\r\nb THREAD REFERENCES UTF-8 ALL\r\nc UID THREAD ORDEREDSUBJECT UTF-8 ALL\r\n",
    "fetch-many-partials": b"a SELECT INBOX\r\nb FETCH 1 (" + b" ".join(b"BODY.PEEK[]<%d.100000>" % i for i in range(200)) + b")\r\n",
    "fetch-all-bodies": b"a SELECT INBOX\r\n" + b"".join(b"n%d FETCH 1:* BODY.PEEK[]\r\n" % i for i in range(50)),
    "search-many-headers": b"a SELECT INBOX\r\nb SEARCH " + b" ".join(b'HEADER X-%d "y"' % i for i in range(200)) + b"\r\n",
    "compress-then-junk": b"a COMPRESS DEFLATE\r\n\x03\x00\x42",
    "deep-parens": b"a SEARCH " + b"(" * 60 + b"ALL" + b")" * 60 + b"\r\n",
    "login-multibyte": 'a LOGIN user@a.test "abcé12345678901234567890"\r\n'.encode(),
    "append-deep-references": b"a APPEND INBOX {200+}\r\nReferences:" + b" <x@y>" * 30 + b"\r\n\r\nbody" + b"\r\n",
}

SMTP = {
    "multi-from": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@a.test>\r\nDATA\r\nFrom: Le Maire <maire@a.test>, x@evil.test\r\nFrom: <y@evil.test>\r\n\r\nhi\r\n.\r\n",
    "forged-ar-folded": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@a.test>\r\nDATA\r\nAuthentication-Results:\r\n (comment) \"mx.a.test\"; dmarc=pass\r\n\r\nhi\r\n.\r\n",
    "pipelined-help": b"EHLO x\r\n" + b"HELP\r\n" * 400,
    "postmaster": b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\nSubject: x\r\n\r\n.\r\n",
    "huge-subject": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@a.test>\r\nDATA\r\nSubject: " + b"A" * 6000 + b"\r\n\r\n.\r\n",
    "many-dkim": b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<u@a.test>\r\nDATA\r\n" + b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; s=s; h=subject; bh=x; b=y\r\n" * 40 + b"\r\n.\r\n",
}

def write(target, seeds, setups, chunk):
    directory = os.path.join("fuzz", "corpus", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        for setup in setups:
            with open(os.path.join(directory, f"attack-{name}-{setup:02x}"), "wb") as f:
                f.write(framed(setup, data, chunk))

# imap: 0x30 = preauthenticated with plaintext login (commands reach the driver at once);
# 0x11 = small limits, plaintext login.
write("imap_session", IMAP, [0x30, 0x31, 0x10], 128)
write("smtp_session", SMTP, [0x00, 0x01], 64)

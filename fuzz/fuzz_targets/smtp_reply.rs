//! The replies of a remote SMTP server as the outbound client reads them (crates/smtp
//! `outbound`): smtp-proto's `ResponseReceiver` fed in pieces, as mail-send's `read` does,
//! and its `EhloResponse::parse` on whole buffers, as mail-send's `read_ehlo` does. Neither
//! panics, and a reply is never longer than three times the bytes it was read from (each
//! byte that is not UTF-8 becomes U+FFFD, three bytes), so that the client's bound on what
//! a server sends between two commands (`outbound.replies_bytes_max`, docs/smtp.md) bounds
//! the replies too.
//!
//! This target used to check the parser's own bound (4 KiB, `MAX_RESPONSE_LENGTH`, with
//! twice that as slack). It failed (December 2026) on a reply of bytes that are not UTF-8,
//! 8,225 bytes once made a string; looking into it showed that the bound does not hold
//! either: past it, every continuation line `250-x` still adds two bytes, and 100,000 of
//! them (700 KB) were held whole until the last line
//! (`outbound::tests::an_endless_multiline_reply_is_cut_at_the_bound`).
#![no_main]

use smtp_proto::EhloResponse;
use smtp_proto::response::parser::{MAX_RESPONSE_LENGTH, ResponseReceiver};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((&piece, input)) = bytes.split_first() else { return };
    // Pieces of 1 to 256 bytes, as reads from a socket come.
    let piece = usize::from(piece) + 1;
    let mut receiver = ResponseReceiver::default();
    // Bytes the parser took since the last reply.
    let mut taken = 0;
    'input: for chunk in input.chunks(piece) {
        let mut iter = chunk.iter();
        loop {
            let before = iter.len();
            let parsed = receiver.parse(&mut iter);
            taken += before - iter.len();
            match parsed {
                Ok(reply) => {
                    let len = reply.message.len();
                    assert!(len <= 3 * taken, "a reply of {len} bytes from {taken}");
                    receiver.reset();
                    taken = 0;
                }
                Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                Err(_) => break 'input,
            }
        }
    }
    if input.len() < MAX_RESPONSE_LENGTH {
        let _ = EhloResponse::parse(&mut input.iter());
    }
});

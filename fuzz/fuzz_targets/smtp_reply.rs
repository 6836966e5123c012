//! The replies of a remote SMTP server as the outbound client reads them (crates/smtp
//! `outbound`): smtp-proto's `ResponseReceiver` fed in pieces, as mail-send's `read` does,
//! and its `EhloResponse::parse` on whole buffers, as mail-send's `read_ehlo` does. Neither
//! panics, and a reply stays within the parser's bound (docs/smtp.md relies on it).
#![no_main]

use smtp_proto::EhloResponse;
use smtp_proto::response::parser::{MAX_RESPONSE_LENGTH, ResponseReceiver};

/// Loose on purpose: the parser may overshoot its limit by a few bytes per line before it
/// refuses; what must never happen is a reply growing with the input.
const REPLY_BYTES_MAX: usize = 2 * MAX_RESPONSE_LENGTH;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((&piece, input)) = bytes.split_first() else { return };
    // Pieces of 1 to 256 bytes, as reads from a socket come.
    let piece = usize::from(piece) + 1;
    let mut receiver = ResponseReceiver::default();
    'input: for chunk in input.chunks(piece) {
        let mut iter = chunk.iter();
        loop {
            match receiver.parse(&mut iter) {
                Ok(reply) => {
                    assert!(reply.message.len() <= REPLY_BYTES_MAX, "reply of {} bytes", reply.message.len());
                    receiver.reset();
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

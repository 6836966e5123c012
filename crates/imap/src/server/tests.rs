use super::*;
use crate::transport::READ_BYTES;

#[tokio::test]
async fn a_panic_in_a_command_is_caught() {
    let fine = CatchUnwind(Box::pin(async { 7 })).await;
    assert_eq!(fine.ok(), Some(7));
    let panicked = CatchUnwind(Box::pin(async {
        tokio::task::yield_now().await;
        let index = std::hint::black_box(3usize);
        [1, 2][index]
    }))
    .await;
    let panic = panicked.expect_err("the panic is caught");
    assert!(panic_text(&panic).contains("index out of bounds"), "{}", panic_text(&panic));
}

/// One stored (uncompressed) DEFLATE block (RFC 1951 §3.2.4).
fn stored(data: &[u8], last: bool) -> Vec<u8> {
    let len = data.len() as u16;
    let mut block = vec![u8::from(last)];
    block.extend_from_slice(&len.to_le_bytes());
    block.extend_from_slice(&(!len).to_le_bytes());
    block.extend_from_slice(data);
    block
}

#[test]
fn inflate_is_bounded_and_ends() {
    let mut deflate = Deflate::new();
    // 100 KiB of plain text in stored blocks: inflated 16 KiB at a time.
    for _ in 0..4 {
        deflate.pending.extend(stored(&[b'a'; 25_600], false));
    }
    let mut total = 0;
    loop {
        let out = deflate.inflate(16 * 1024).expect("valid");
        assert!(out.len() <= 16 * 1024);
        if out.is_empty() {
            break;
        }
        total += out.len();
    }
    assert_eq!(total, 102_400);
    // The end of the stream, then one more byte: an error, not a loop.
    deflate.pending.extend(stored(b"a1 NOOP\r\n", true));
    deflate.pending.push(b'X');
    assert_eq!(deflate.inflate(16 * 1024).expect("the last block"), b"a1 NOOP\r\n");
    assert_eq!(deflate.inflate(16 * 1024).expect_err("trailing data").kind(), io::ErrorKind::InvalidData);
    // Garbage that is not DEFLATE.
    let mut garbage = Deflate::new();
    garbage.pending.extend([0xFF; 64]);
    assert!(garbage.inflate(1024).is_err());
}

#[test]
fn deflate_round_trip() {
    let mut ours = Deflate::new();
    let compressed = ours.deflate(b"* OK hello\r\n").expect("deflate");
    let mut theirs = Deflate::new();
    theirs.pending = compressed;
    assert_eq!(theirs.inflate(1024).expect("inflate"), b"* OK hello\r\n");
}

/// Issue 13 (mbsync stalled in a bulk APPEND under COMPRESS=DEFLATE): input read in
/// socket-sized pieces and inflated at most `LIMIT` at a time must all come out before the
/// socket is read again; bytes zlib has consumed but not yet given out were left inside it
/// when the output filled up, and the driver waited for a command it had received.
#[test]
fn inflate_gives_what_zlib_holds_after_the_input_is_used() {
    const LIMIT: usize = 64 * 1024;
    // APPENDs of mail-like text (some of it compressing very well, as base64 runs do),
    // each written with a sync flush, as a client's writes are.
    let mut client = Deflate::new();
    let mut plain = Vec::new();
    let mut wire = Vec::new();
    let mut seed = 13u64;
    for n_command in 0..400 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let size = 2_000 + (seed >> 33) as usize % 60_000;
        let mut body = format!("Subject: message {n_command}\r\n\r\n").into_bytes();
        while body.len() < size {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let line: Vec<u8> = if seed.is_multiple_of(3) {
                b"IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIi\r\n".to_vec()
            } else {
                (0..76).map(|i| b'A' + ((seed >> (i % 60)) as u8 % 26)).chain(*b"\r\n").collect()
            };
            body.extend_from_slice(&line);
        }
        let mut command = format!("a{n_command} APPEND INBOX {{{}+}}\r\n", body.len()).into_bytes();
        command.extend_from_slice(&body);
        command.extend_from_slice(b"\r\n");
        wire.extend(client.deflate(&command).expect("deflate"));
        plain.extend(command);
    }
    let mut server = Deflate::new();
    let mut inflated = Vec::new();
    for piece in wire.chunks(READ_BYTES) {
        server.pending.extend_from_slice(piece);
        loop {
            let out = server.inflate(LIMIT).expect("valid");
            assert!(out.len() <= LIMIT);
            if out.is_empty() {
                break;
            }
            inflated.extend_from_slice(&out);
        }
    }
    assert_eq!(inflated.len(), plain.len(), "every byte the client sent comes out before reading again");
    assert!(inflated == plain);
}

use super::*;

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

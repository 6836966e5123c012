use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use super::WriteTimeout;

#[tokio::test]
async fn a_write_that_makes_no_progress_fails_after_the_timeout() {
    // The peer never reads: 16 bytes fit, the rest waits.
    let (_client, server) = tokio::io::duplex(16);
    let mut stream = WriteTimeout::new(server, Duration::from_millis(50));
    let start = Instant::now();
    let res = stream.write_all(&[0u8; 1024]).await;
    assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn writes_that_progress_never_time_out() {
    let (mut client, server) = tokio::io::duplex(16);
    let mut stream = WriteTimeout::new(server, Duration::from_millis(200));
    let reader = tokio::spawn(async move {
        let mut all = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            match tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
                Ok(0) | Err(_) => return all.len(),
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    });
    // 256 bytes at 8 bytes per 20 ms: 640 ms in all, longer than the timeout.
    stream.write_all(&[1u8; 256]).await.unwrap();
    drop(stream);
    assert_eq!(reader.await.unwrap(), 256);
}

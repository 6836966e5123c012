use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn limits_per_address_and_drains_on_shutdown() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let gate = Gate::new(10, 2);
    let server = tokio::spawn(accept_loop(listener, gate, shutdown, "test", |accepted: Accepted| async move {
        let mut tcp = accepted.tcp;
        let word: &[u8] = if accepted.over_limit { b"full\n" } else { b"hello\n" };
        let _ = tcp.write_all(word).await;
        let mut buf = [0u8; 1];
        let _ = tcp.read(&mut buf).await;
    }));
    let mut clients = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 6];
        let n = client.read(&mut buf).await.unwrap();
        answers.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        clients.push(client);
    }
    assert_eq!(answers, ["hello\n", "hello\n", "full\n"]);
    stop.send(true).unwrap();
    // The loop waits for the live connections; closing them ends it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!server.is_finished());
    drop(clients);
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[test]
fn addresses_are_keyed_by_host() {
    for (ip, key) in [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"),
        ("2001:db8:1:3::1", "2001:db8:1:3::"),
        ("::1", "::"),
        // An IPv4-compatible address (deprecated) is an IPv6 one.
        ("::192.0.2.7", "::"),
    ] {
        assert_eq!(address_key(ip.parse().unwrap()), key.parse::<IpAddr>().unwrap(), "{ip}");
    }
}

#[test]
fn one_count_per_v64_and_per_unmapped_address() {
    let gate = Gate::new(100, 2);
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    let first = gate.enter(ip("2001:db8::1"));
    let second = gate.enter(ip("2001:db8::2"));
    let third = gate.enter(ip("2001:db8::ffff:3"));
    assert_eq!((first.over_limit(), second.over_limit(), third.over_limit()), (false, false, true));
    assert!(!gate.enter(ip("2001:db8:0:1::1")).over_limit(), "another /64 has its own count");
    let v4 = gate.enter(ip("192.0.2.1"));
    let mapped = gate.enter(ip("::ffff:192.0.2.1"));
    assert!(!v4.over_limit() && !mapped.over_limit());
    assert!(gate.enter(ip("192.0.2.1")).over_limit(), "the mapped address counted as the IPv4 one");
    drop((first, second, third));
    assert!(!gate.enter(ip("2001:db8::9")).over_limit(), "slots are given back when dropped");
    drop((v4, mapped));
    assert!(gate.per_address.lock().unwrap().is_empty(), "no entry outlives its connections");
}

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

mod connection {
    use std::time::{Duration, Instant};

    use hameau_testkit::tls_pair;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::Connection;

    /// A connected pair: the server's end and the client's.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// A connected pair over implicit TLS: the server's [`Connection`] and the client's end.
    async fn tls_connected() -> (Connection, tokio_rustls::client::TlsStream<TcpStream>) {
        let (tls, connector) = tls_pair();
        let (server, client) = pair().await;
        let name = ServerName::try_from("localhost").unwrap();
        let (server, client) =
            tokio::join!(Connection::accept_tls(server, &tls, Duration::from_secs(5)), connector.connect(name, client));
        (server.unwrap(), client.unwrap())
    }

    /// The server reads `ping` and answers `pong`.
    async fn ping_pong(server: &mut Connection) {
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all_within(b"pong", Duration::from_secs(5)).await.unwrap();
    }

    async fn client_ping<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(client: &mut S) {
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }

    #[tokio::test]
    async fn plain() {
        let (server, mut client) = pair().await;
        let mut server = Connection::plain(server);
        assert!(!server.is_tls());
        assert_eq!(server.tls_info(), None);
        tokio::join!(ping_pong(&mut server), client_ping(&mut client));
        drop(client);
        assert_eq!(server.read(&mut [0u8; 4]).await.unwrap(), 0, "the end of the stream");
    }

    #[tokio::test]
    async fn implicit_tls() {
        let (mut server, mut client) = tls_connected().await;
        assert!(server.is_tls());
        let info = server.tls_info().unwrap();
        assert_eq!((info.protocol, info.server_name.as_deref()), ("TLSv1.3", Some("localhost")));
        assert!(info.cipher.starts_with("TLS13_"), "{info:?}");
        tokio::join!(ping_pong(&mut server), client_ping(&mut client));
    }

    /// A TLS connection dropped without a shutdown (a timeout ended it) still sends
    /// `close_notify`: the client reads a clean end of stream, not a truncation error.
    #[tokio::test]
    async fn a_dropped_tls_connection_says_close_notify() {
        let (mut server, mut client) = tls_connected().await;
        tokio::join!(ping_pong(&mut server), client_ping(&mut client));
        drop(server);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await.unwrap();
        assert_eq!(read.expect("a clean end of stream, not a truncation"), 0);
    }

    #[tokio::test]
    async fn starttls_upgrade() {
        let (tls, connector) = tls_pair();
        let (server, mut client) = pair().await;
        let mut server = Connection::plain(server);
        let upgrade = async {
            let mut buf = [0u8; 10];
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"STARTTLS\r\n");
            server.write_all_within(b"go\r\n", Duration::from_secs(5)).await.unwrap();
            server.start_tls(&tls, Duration::from_secs(5)).await.unwrap();
            ping_pong(&mut server).await;
        };
        let client = async {
            client.write_all(b"STARTTLS\r\n").await.unwrap();
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"go\r\n");
            let mut client = connector.connect(ServerName::try_from("localhost").unwrap(), client).await.unwrap();
            client_ping(&mut client).await;
        };
        tokio::join!(upgrade, client);
        assert!(server.is_tls());
        let again = server.start_tls(&tls, Duration::from_secs(5)).await;
        assert!(again.is_err(), "TLS is already active");
        assert!(server.is_tls(), "a refused second upgrade keeps the connection");
    }

    #[tokio::test]
    async fn handshakes_time_out_when_the_client_sends_nothing() {
        let (tls, _) = tls_pair();
        let timeout = Duration::from_millis(100);
        let (server, _client) = pair().await;
        let start = Instant::now();
        let err = Connection::accept_tls(server, &tls, timeout).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        let (server, _client) = pair().await;
        let mut server = Connection::plain(server);
        let err = server.start_tls(&tls, timeout).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(!server.is_tls());
        // The connection is closed: nothing more is read or written.
        assert_eq!(server.read(&mut [0u8; 4]).await.unwrap(), 0);
        assert!(server.write_all_within(b"x", timeout).await.is_err());
    }

    /// More than loopback's socket buffers hold.
    const UNREAD_BYTES: usize = 32 << 20;

    #[tokio::test]
    async fn writes_time_out_when_the_client_never_reads() {
        let (server, _client) = pair().await;
        let mut server = Connection::plain(server);
        let bytes = vec![b'x'; UNREAD_BYTES];
        let start = Instant::now();
        let err = server.write_all_within(&bytes, Duration::from_millis(200)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
        // Through `AsyncWrite`, with a stall timeout: the same, over TLS.
        let (mut server, _client) = tls_connected().await;
        server.set_write_stall_timeout(Duration::from_millis(200));
        let start = Instant::now();
        let err = server.write_all(&bytes).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn writes_that_progress_never_stall() {
        // Small socket buffers, so that a slow reader holds the writer back.
        let listener = tokio::net::TcpSocket::new_v4().unwrap();
        listener.set_send_buffer_size(8 << 10).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = listener.listen(1).unwrap();
        let client = tokio::net::TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(8 << 10).unwrap();
        let mut client = client.connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = Connection::plain(server);
        server.set_write_stall_timeout(Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut n_bytes = 0;
            let mut buf = vec![0u8; 8 << 10];
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return n_bytes,
                    Ok(n) => n_bytes += n,
                }
            }
        });
        // Read slowly, but steadily: longer in all than the stall timeout.
        let bytes = vec![b'x'; 1 << 20];
        let start = Instant::now();
        server.write_all(&bytes).await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), bytes.len());
        assert!(start.elapsed() > Duration::from_millis(200), "{:?}", start.elapsed());
    }
}

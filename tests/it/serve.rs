//! `hameau init`, `hameau serve`, shutdown, `--version`.

use std::time::{Duration, Instant};

use crate::support::{block_on, config_path, https_get, init, run, start_server};

#[test]
fn version() {
    let (status, stdout, _) = run(&["--version"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), format!("hameau {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn init_then_serve_answers_health_and_stops_on_sigterm() {
    let dir = init();
    let config = config_path(dir.path());
    let mut server = start_server(&config);
    assert_eq!(server.https.len(), 1);
    assert!(server.https[0].ip().is_loopback() && server.https[0].port() != 0);
    let (status, body) = block_on(https_get(server.https[0], &server.cert, "/healthz"));
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = block_on(https_get(server.https[0], &server.cert, "/no-such-page"));
    assert_eq!(status, 404);

    server.signal(libc::SIGTERM);
    let exit = server.wait(Duration::from_secs(30)).expect("hameau stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let log = server.log().join("\n");
    assert!(log.contains("\"signal\":\"SIGTERM\""), "{log}");
    assert!(log.contains("hameau stopped"), "{log}");
    assert!(!log.contains("panicked"), "{log}");

    // The store was closed cleanly: a new server opens it.
    let mut again = start_server(&config);
    again.signal(libc::SIGINT);
    let exit = again.wait(Duration::from_secs(30)).expect("hameau stops on SIGINT");
    assert!(exit.success(), "{exit:?}");
    assert!(again.log().join("\n").contains("\"signal\":\"SIGINT\""));
}

#[test]
fn shutdown_does_not_wait_for_idle_connections() {
    let dir = init();
    let mut server = start_server(&config_path(dir.path()));
    let addr = server.https[0];
    let cert = server.cert.clone();
    // A client connects and says nothing; another is mid-handshake.
    let idle = std::net::TcpStream::connect(addr).unwrap();
    let tls_idle = block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        crate::support::tls_connector(&cert).connect(name, tcp).await.unwrap()
    });
    let start = Instant::now();
    server.signal(libc::SIGTERM);
    let exit = server.wait(Duration::from_secs(25)).expect("hameau stops");
    assert!(exit.success());
    // The grace period is 30 s: idle connections must not hold the shutdown that long.
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    drop((idle, tls_idle));
}

/// On RocksDB, one process holds the store; on PostgreSQL, a second node on the same
/// configuration (the same database) starts and serves beside the first.
#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = init();
    let config = config_path(dir.path());
    let first = start_server(&config);
    if crate::support::on_postgresql() {
        let second = start_server(&config);
        assert!(!first.smtp.is_empty() && !second.smtp.is_empty() && first.smtp != second.smtp);
        return;
    }
    let (status, _, stderr) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!status.success());
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("hameau: error: opening the store: the store at "), "{stderr}");
    assert!(last.ends_with("/data/store is in use by another process"), "{stderr}");
}

#[test]
fn init_refuses_an_initialised_directory() {
    let dir = init();
    let data = dir.path().join("data");
    let before = std::fs::read_to_string(config_path(dir.path())).unwrap();
    let (status, _, stderr) = run(&["init", "--data-dir", data.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("hameau.toml already exists: this data directory is initialised"), "{stderr}");
    assert_eq!(std::fs::read_to_string(config_path(dir.path())).unwrap(), before);
}

#[test]
fn init_writes_a_private_directory_and_a_valid_config() {
    use std::os::unix::fs::PermissionsExt;
    let dir = init();
    let data = dir.path().join("data");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    let key_mode = std::fs::metadata(data.join("tls/key.pem")).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let (status, stdout, stderr) = run(&["config", "check", "--config", config_path(dir.path()).to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.ends_with("configuration OK\n"), "{stdout}");
}

#[test]
fn a_listen_address_in_use_is_a_clear_error() {
    let dir = init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = config_path(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"{}\"]", taken.local_addr().unwrap()));
    std::fs::write(&config, text).unwrap();
    let (status, _, stderr) = run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!status.success());
    let last = stderr.lines().last().unwrap();
    assert!(last.contains("http.listen: cannot listen on"), "{stderr}");
    assert!(last.contains("hameau.toml:"), "{stderr}");
}

#[test]
fn silent_and_idle_clients_are_closed_after_the_header_timeout() {
    use std::io::Read;
    let dir = init();
    let config = config_path(dir.path());
    let text = std::fs::read_to_string(&config).unwrap().replace("header_timeout_s = 10", "header_timeout_s = 1");
    std::fs::write(&config, text).unwrap();
    let server = start_server(&config);
    let addr = server.https[0];

    // A client that connects and never starts TLS.
    let start = Instant::now();
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n_read = silent.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n_read, 0, "the server closes the connection");
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());

    // A keep-alive client that sends one request and then nothing.
    let cert = server.cert.clone();
    let elapsed = block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = crate::support::tls_connector(&cert).connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
        let start = Instant::now();
        let mut response = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
        let read = read.expect("the idle connection was not closed");
        // Closed with TLS's close_notify, not cut (a truncation error in the client).
        read.expect("a clean end of the TLS stream");
        assert!(String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200"));
        start.elapsed()
    });
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

/// Request headers past `http.header_bytes_max` get `431` and the connection ends, on
/// HTTPS and on port 80; a request just under it is served, and so is the next client.
#[test]
fn headers_past_their_bound_get_431() {
    let dir = init();
    let config = config_path(dir.path());
    // The [http] key (`text_index_header_bytes_max` ends the same way).
    crate::support::set_config(&config, "\nheader_bytes_max = 65536", "\nheader_bytes_max = 16384");
    let server = start_server(&config);
    let cert = server.cert.clone();
    let (https, plain) = (server.https[0], server.http[0]);
    let request = |padding: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(padding)
        )
    };
    let status_line = |response: &[u8]| String::from_utf8_lossy(response).lines().next().unwrap_or("").to_string();
    let (small, large) = block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut answers = Vec::new();
        for padding in [12_000, 40_000] {
            let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = crate::support::tls_connector(&cert).connect(name, tcp).await.unwrap();
            // The server may answer and close before it has read all of a long request.
            let _ = tls.write_all(request(padding).as_bytes()).await;
            let mut response = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response)).await;
            answers.push(response);
        }
        (answers.remove(0), answers.remove(0))
    });
    assert!(status_line(&small).starts_with("HTTP/1.1 200"), "{}", status_line(&small));
    assert!(status_line(&large).starts_with("HTTP/1.1 431"), "{}", status_line(&large));
    // Port 80 too.
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(plain).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = tcp.write_all(request(40_000).as_bytes());
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response);
    assert!(status_line(&response).starts_with("HTTP/1.1 431"), "{}", status_line(&response));
    let (status, _) = block_on(crate::support::https_get(https, &server.cert, "/healthz"));
    assert_eq!(status, 200);
}

/// A new self-signed certificate for `name` written over `cert` and `key`.
fn self_signed(name: &str, cert: &std::path::Path, key: &std::path::Path) {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    std::fs::write(cert, made.cert.pem()).unwrap();
    std::fs::write(key, made.signing_key.serialize_pem()).unwrap();
}

/// A TLS handshake with the IMAPS listener asking for `name` and trusting only `cert`;
/// the greeting line when it succeeds.
async fn imaps_greeting(
    addr: std::net::SocketAddr,
    cert: &std::path::Path,
    name: &str,
) -> Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use tokio::io::AsyncBufReadExt;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let tls = crate::support::tls_connector(cert).connect(server_name, tcp).await.ok()?;
    let mut reader = tokio::io::BufReader::new(tls);
    let mut greeting = String::new();
    reader.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    Some(reader.into_inner())
}

#[test]
fn sighup_reloads_certificates_without_dropping_connections() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let dir = init();
    let config = config_path(dir.path());
    let data = config.parent().unwrap().to_path_buf();
    let mut server = start_server(&config);
    let addr = server.imaps[0];
    // One runtime: the connection made before the reload lives across the reload.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let block_on = |future| runtime.block_on(future);
    let first = data.join("tls/first.pem");
    std::fs::copy(&server.cert, &first).unwrap();
    let connected = block_on(imaps_greeting(addr, &first, "localhost")).expect("the first certificate serves");

    // The operator replaces the certificate, adds one for a commune's name, changes the
    // log level and an IMAP limit (which waits for a restart), then reloads.
    self_signed("localhost", &data.join("tls/cert.pem"), &data.join("tls/key.pem"));
    self_signed("autoconfig.ville.fr", &data.join("tls/ville.pem"), &data.join("tls/ville.key"));
    crate::support::set_config(
        &config,
        "sni = []",
        "sni = [{ names = [\"autoconfig.ville.fr\"], certificate = \"tls/ville.pem\", private_key = \"tls/ville.key\" }]",
    );
    crate::support::set_config(&config, "level = \"info\"", "level = \"debug\"");
    crate::support::set_config(&config, "idle_timeout_s = 1800", "idle_timeout_s = 1900");
    server.signal(libc::SIGHUP);
    // The reload logs the sections left for the restart and the new log level.
    let said = |log: &[String], needle: &str| log.iter().any(|line| line.contains(needle));
    server.log_when(Duration::from_secs(10), |log| {
        said(log, "take effect at the next restart")
            && said(log, "\"sections\":\"imap\"")
            && said(log, "log level changed")
    });

    // New handshakes get the new certificates, by name; the old one is no longer served.
    let cert = data.join("tls/cert.pem");
    assert!(block_on(imaps_greeting(addr, &cert, "localhost")).is_some());
    assert!(block_on(imaps_greeting(addr, &first, "localhost")).is_none());
    let ville = data.join("tls/ville.pem");
    assert!(block_on(imaps_greeting(addr, &ville, "autoconfig.ville.fr")).is_some());
    // The connection made before the reload still works.
    let mut connected = tokio::io::BufReader::new(connected);
    let answer = runtime.block_on(async {
        connected.get_mut().write_all(b"a NOOP\r\n").await.unwrap();
        let mut line = String::new();
        connected.read_line(&mut line).await.unwrap();
        line
    });
    assert!(answer.starts_with("a OK"), "{answer}");

    // A file that does not load changes nothing, and the server keeps serving.
    std::fs::write(&config, "[server\n").unwrap();
    server.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().iter().any(|line| line.contains("configuration not reloaded")) {
        assert!(Instant::now() < deadline, "no error: {}", server.log().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(block_on(imaps_greeting(addr, &cert, "localhost")).is_some());
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).expect("stops").success());
    assert!(!server.log().join("\n").contains("panicked"));
}

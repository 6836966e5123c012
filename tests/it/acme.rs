//! ACME end to end (issue 12): the real binary with `[acme]` pointing at Pebble gets a
//! certificate for its host name, and IMAPS and HTTPS clients then verify the certificate
//! they are served against Pebble's root.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hameau_testkit::{Pebble, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::support::{block_on, config_path, init, start_server};

const HOST: &str = "mail.commune.test";

#[test]
fn tls_alpn_01_certifies_the_host_name_for_imaps_and_https() {
    certifies_the_host_name("tls-alpn-01");
}

#[test]
fn http_01_certifies_the_host_name_for_imaps_and_https() {
    certifies_the_host_name("http-01");
}

fn certifies_the_host_name(challenge: &str) {
    let (_dir, pebble, server) = started_with_pebble(challenge);
    wait_for_message(&server, "ACME: certificate issued and installed", &pebble);
    let roots = pebble.roots_pem();
    block_on(async {
        verify(server.imaps[0], &roots, true).await.expect("IMAPS serves the ACME certificate");
        verify(server.https[0], &roots, true).await.expect("HTTPS serves the ACME certificate");
        // A client that sends no name (Postfix by default) gets the host name's certificate.
        verify(server.imaps[0], &roots, false).await.expect("without SNI, IMAPS serves the ACME certificate");
    });
    let log = server.log().join("\n");
    assert!(!log.contains("certificate order failed"), "{log}");
    assert!(log.contains(&format!("\"challenge\":\"{challenge}\"")), "{log}");
}

/// A data directory, Pebble, and a server listening where Pebble's validator connects.
/// Those ports are chosen free before the server binds them, so another test may take one
/// in between: the server then stops with "cannot listen on …" and all is tried again.
fn started_with_pebble(challenge: &str) -> (tempfile::TempDir, Pebble, hameau_testkit::Server) {
    for attempt in 1..=3 {
        let dir = init();
        let pebble = Pebble::start(dir.path(), 90 * 86_400);
        let config = config_path(dir.path());
        configure(&config, &pebble, challenge);
        match std::panic::catch_unwind(|| start_server(&config)) {
            Ok(server) => return (dir, pebble, server),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                if attempt == 3 || !text.contains("cannot listen on") {
                    std::panic::resume_unwind(panic);
                }
                eprintln!("attempt {attempt}: a port was taken before the server bound it; again");
            }
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Host name, listeners where Pebble's validator connects (HTTPS on its `tlsPort`, plain
/// HTTP on its `httpPort`), and `[acme]` at Pebble.
fn configure(config: &Path, pebble: &Pebble, challenge: &str) {
    let text = std::fs::read_to_string(config).unwrap();
    let (head, acme) = text.split_once("\n[acme]\n").expect("an [acme] section");
    let head = head
        .replacen("hostname = \"localhost\"", &format!("hostname = \"{HOST}\""), 1)
        // The first listener is [http]'s.
        .replacen("listen = [\"127.0.0.1:0\"]", &format!("listen = [\"127.0.0.1:{}\"]", pebble.tls_port), 1)
        .replacen(
            "listen_plain = [\"127.0.0.1:0\"]",
            &format!("listen_plain = [\"127.0.0.1:{}\"]", pebble.http_port),
            1,
        );
    let acme = acme
        .replacen("directory_url = \"\"", &format!("directory_url = \"{}\"", pebble.directory_url), 1)
        .replacen("challenge = \"tls-alpn-01\"", &format!("challenge = \"{challenge}\""), 1)
        .replacen("ca_file = \"\"", &format!("ca_file = \"{}\"", pebble.ca_file.display()), 1)
        .replacen("check_interval_s = 600", "check_interval_s = 1", 1)
        .replacen("retry_min_s = 300", "retry_min_s = 1", 1);
    std::fs::write(config, format!("{head}\n[acme]\n{acme}")).unwrap();
}

fn wait_for_message(server: &Server, message: &str, pebble: &Pebble) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Some(line) = server.next_line(remaining) else {
            panic!("no '{message}' in the log:\n{}\npebble:\n{}", server.log().join("\n"), pebble.log());
        };
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if event["message"].as_str() == Some(message) {
            return;
        }
    }
}

/// A TLS handshake with `addr` asking for the host name (with `sni`, else sending no
/// name), trusting Pebble's root only and checking the certificate names the host.
async fn verify(addr: SocketAddr, roots_pem: &str, sni: bool) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(roots_pem.as_bytes()) {
        roots.add(root.expect("root PEM")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut config = config;
    config.enable_sni = sni;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(HOST).expect("name");
    connector.connect(name, tcp).await.map(drop).map_err(|e| e.to_string())
}

//! Pebble, Let's Encrypt's ACME test server (Debian `pebble`), on loopback ports with a
//! configuration of the test's own, and its companion `pebble-challtestsrv` as the DNS
//! server Pebble's validator asks (every name is 127.0.0.1 unless told otherwise).
//!
//! Debian's Pebble (2.4.0) ships no TLS certificate for its API: one is made here by a
//! [`TestCa`], which the ACME client trusts through [`Pebble::ca_file`]. Certificates
//! Pebble issues chain to a root it makes at start, read from its management interface
//! ([`Pebble::roots_pem`]). Its validity is `certificateValidityPeriod` (seconds; Pebble's
//! default is 5 years), which [`Pebble::start`] sets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{TestCa, free_port};

/// A running Pebble and its DNS server; both stopped when dropped.
pub struct Pebble {
    pebble: Child,
    challtestsrv: Child,
    /// The ACME directory, `https://127.0.0.1:PORT/dir`.
    pub directory_url: String,
    /// A PEM file trusting Pebble's API certificate (`acme.ca_file`).
    pub ca_file: PathBuf,
    /// Where Pebble's validator connects for HTTP-01 and TLS-ALPN-01 (on the name's
    /// address, 127.0.0.1).
    pub http_port: u16,
    pub tls_port: u16,
    management_port: u16,
    challtestsrv_port: u16,
    ca: TestCa,
    log: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pebble {
    /// Starts `pebble-challtestsrv` (DNS only) and `pebble` with files in `dir`, issuing
    /// certificates valid for `validity_s` seconds, and waits until both listen.
    pub fn start(dir: &Path, validity_s: u64) -> Pebble {
        let (http_port, tls_port) = (free_port(), free_port());
        let (listen_port, management_port) = (free_port(), free_port());
        let (dns_port, challtestsrv_port) = (free_port(), free_port());
        let ca = TestCa::new();
        let files = ca.issue(dir, &["127.0.0.1", "localhost"]);
        let ca_file = ca.write_pem(dir);
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen_port}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": files.cert,
                "privateKey": files.key,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
                "certificateValidityPeriod": validity_s,
            }
        });
        let config_path = dir.join("pebble.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = dir.join("pebble.log");
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{challtestsrv_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv (Debian package pebble)");
        let output = std::fs::File::create(&log).unwrap();
        let pebble = Command::new("pebble")
            .args(["-config", config_path.to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // No random sleeps before validating, no reuse of earlier authorizations (each
            // order runs its challenges), no spurious badNonce rejections.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start pebble (Debian package pebble)");
        let pebble = Pebble {
            pebble,
            challtestsrv,
            directory_url: format!("https://127.0.0.1:{listen_port}/dir"),
            ca_file,
            http_port,
            tls_port,
            management_port,
            challtestsrv_port,
            ca,
            log,
        };
        for port in [listen_port, management_port, challtestsrv_port] {
            wait_listening(port);
        }
        pebble
    }

    /// The root (PEM) Pebble's certificates chain to.
    pub fn roots_pem(&self) -> String {
        let (status, body) = self.https_get(self.management_port, "/roots/0");
        assert_eq!(status, 200, "pebble /roots/0: {body}");
        body
    }

    /// Makes Pebble's validator find `host` at `address` (IPv4) instead of 127.0.0.1.
    pub fn set_address(&self, host: &str, address: &str) {
        let body = serde_json::json!({ "host": host, "addresses": [address] }).to_string();
        let request = format!(
            "POST /add-a HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let mut tcp = TcpStream::connect(("127.0.0.1", self.challtestsrv_port)).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "challtestsrv /add-a: {answer}");
    }

    /// Pebble's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A GET over HTTPS to Pebble's `port`: the status and the body.
    fn https_get(&self, port: u16, path: &str) -> (u16, String) {
        let config: Arc<rustls::ClientConfig> = self.ca.client_config();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = rustls::ClientConnection::new(config, name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut tls = rustls::StreamOwned::new(client, tcp);
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        // Go's server closes without close_notify at times: what was read is the answer.
        let _ = tls.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
        (status, body)
    }
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

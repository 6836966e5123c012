//! Starting the real `hameau` binary and its test companions (a knotd authoritative DNS
//! server) on loopback ports, for the end-to-end tests (`tests/it`) and the benchmarks
//! (`benches/`). Panics on failure: its callers are tests and load generators.

mod postfix;
pub use postfix::{Postfix, TlsFiles};

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `hameau serve`.
pub struct Server {
    pub child: Child,
    pub https: Vec<SocketAddr>,
    pub smtp: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    /// Submission with STARTTLS (587) and over TLS (465).
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    pub cert: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `BINARY serve --config CONFIG` and waits until it says it is ready.
    pub fn start(binary: &Path, config: &Path) -> Server {
        let mut child = Command::new(binary)
            .env_remove("HAMEAU_LOG")
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hameau");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines_tx, lines) = mpsc::channel();
        let log_writer = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log_writer.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let mut server = Server {
            child,
            https: Vec::new(),
            smtp: Vec::new(),
            imap: Vec::new(),
            imaps: Vec::new(),
            submission: Vec::new(),
            submissions: Vec::new(),
            cert: PathBuf::new(),
            log,
            lines,
        };
        loop {
            let line = server.next_line(Duration::from_secs(120)).expect("hameau never said it was ready");
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
            match event["message"].as_str() {
                Some("listening") => {
                    let addr = event["addr"].as_str().unwrap().parse().unwrap();
                    match event["service"].as_str() {
                        Some("smtp") => server.smtp.push(addr),
                        Some("imap") => server.imap.push(addr),
                        Some("imaps") => server.imaps.push(addr),
                        Some("submission") => server.submission.push(addr),
                        Some("submissions") => server.submissions.push(addr),
                        Some("https") => server.https.push(addr),
                        other => panic!("a listener of an unknown service {other:?}"),
                    }
                }
                Some("hameau ready") => break,
                _ => {}
            }
        }
        // `hameau init` puts the configuration in the data directory, next to `tls/`.
        server.cert = config.parent().unwrap().join("tls/cert.pem");
        server
    }

    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: libc::c_int) {
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Changes `key = old` to `key = new` in a configuration file.
pub fn set_config(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in the configuration");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// A knotd serving zone files on a loopback port; stopped when dropped.
pub struct Knot {
    child: Child,
    pub port: u16,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    // A port free for both UDP and TCP at the time of asking.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn start_knot(dir: &Path, zones: &[(&str, String)]) -> Knot {
    let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"].into_iter().find(|path| Path::new(path).exists());
    let knotd = knotd.expect("knotd is needed (Debian package knot; scripts/test.sh installs it)");
    let port = free_port();
    let mut config = format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\ndatabase:\n    storage: {dir}/db\n\
         log:\n  - target: stderr\n    any: warning\nzone:\n",
        dir = dir.display()
    );
    for (name, records) in zones {
        let path = dir.join(format!("{name}.zone"));
        let head = format!(
            "{name}. 3600 IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 300\n\
             {name}. 3600 IN NS ns.{name}.\nns.{name}. 3600 IN A 127.0.0.1\n"
        );
        std::fs::write(&path, head + records).unwrap();
        config.push_str(&format!("  - domain: {name}\n    file: {}\n", path.display()));
    }
    let config_path = dir.join("knot.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(knotd)
        .args(["-c", config_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start knotd");
    let knot = Knot { child, port };
    // Ready when it answers on TCP.
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "knotd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    knot
}

/// Postfix's `smtp-sink` (Debian package postfix) on a free loopback port, stopped by its
/// PID when dropped: a remote MX for the outbound tests.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// Starts `smtp-sink ARGS 127.0.0.1:PORT 10` and waits until it accepts connections.
    pub fn start(args: &[&str]) -> SmtpSink {
        use std::os::unix::fs::MetadataExt;
        let port = free_port();
        let mut command = Command::new("/usr/sbin/smtp-sink");
        // smtp-sink refuses to run as root without a user to become.
        if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .args(args)
            .arg(format!("127.0.0.1:{port}"))
            .arg("10")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/smtp-sink (Debian package postfix)");
        let sink = SmtpSink { child, port };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        sink
    }

    /// A sink that writes each transaction to a file in `dir` (made writable for the
    /// user smtp-sink becomes).
    pub fn dumping_into(dir: &Path, extra: &[&str]) -> SmtpSink {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let template = format!("{}/%H%M%S.", dir.display());
        SmtpSink::start(&[&["-d", template.as_str()][..], extra].concat())
    }
}

/// A rustls server configuration with a self-signed certificate for `localhost`, and a
/// client connector that trusts it.
pub fn tls_pair() -> (Arc<rustls::ServerConfig>, tokio_rustls::TlsConnector) {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert: CertificateDer<'static> = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), tokio_rustls::TlsConnector::from(Arc::new(client)))
}

//! Starting the real `hameau` binary and its test companions (a knotd authoritative DNS
//! server, Postfix, an HTTPS server, a test CA, the Pebble ACME server) on loopback ports, for the end-to-end tests
//! (`tests/it`) and the benchmarks (`benches/`). Panics on failure: its callers are tests
//! and load generators.

mod dovecot;
mod https;
mod pebble;
mod pki;
mod postfix;
pub use dovecot::Dovecot;
pub use https::HttpsServer;
pub use pebble::Pebble;
pub use pki::{TestCa, client_config, server_config};
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
    /// The plain HTTP listeners (ACME's HTTP-01, redirects).
    pub http: Vec<SocketAddr>,
    pub smtp: Vec<SocketAddr>,
    pub imap: Vec<SocketAddr>,
    pub imaps: Vec<SocketAddr>,
    /// Submission with STARTTLS (587) and over TLS (465).
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
    pub cert: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
    /// The thread that reads the server's output into `log`.
    reader: std::thread::JoinHandle<()>,
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
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log_writer.lock().unwrap().push(line.clone());
                let _ = lines_tx.send(line);
            }
        });
        let mut server = Server {
            child,
            https: Vec::new(),
            http: Vec::new(),
            smtp: Vec::new(),
            imap: Vec::new(),
            imaps: Vec::new(),
            submission: Vec::new(),
            submissions: Vec::new(),
            cert: PathBuf::new(),
            log,
            lines,
            reader,
        };
        loop {
            let line = server.next_line(Duration::from_secs(120)).expect("hameau never said it was ready");
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("JSON log lines: {e}: {line:?}"));
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
                        Some("http") => server.http.push(addr),
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

    /// The log once `until` holds on it, waiting at most `within`; panics with the log if
    /// it never does. A thread reads the server's output, so a line written before a reply
    /// may reach [`Server::log`] a moment after the client has that reply.
    pub fn log_when(&self, within: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
        let started = Instant::now();
        loop {
            let log = self.log();
            if until(&log) {
                return log;
            }
            assert!(started.elapsed() < within, "the log never got there within {within:?}:\n{}", log.join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log once it has at least `n` lines containing `needle` (see [`Server::log_when`]).
    pub fn log_with(&self, needle: &str, n: usize, within: Duration) -> Vec<String> {
        self.log_when(within, |log| log.iter().filter(|line| line.contains(needle)).count() >= n)
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
                // Its last lines too: the reader stops at the end of the output.
                while !self.reader.is_finished() && start.elapsed() < timeout {
                    std::thread::sleep(Duration::from_millis(10));
                }
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

/// A knotd serving zone files on a loopback port ([`start_knot`], [`start_knot_signed`]);
/// stopped when dropped.
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

/// A knotd serving `zones` (name, records; each gets an SOA, an NS and its `ns` address) on a
/// loopback port, from files in `dir`.
pub fn start_knot(dir: &Path, zones: &[(&str, String)]) -> Knot {
    let port = free_port();
    let mut config = knot_config(dir, port, "");
    for (name, records) in zones {
        let path = write_zone(dir, name, records);
        config.push_str(&format!("  - domain: {name}\n    file: {}\n", path.display()));
    }
    spawn_knot(dir, port, &config)
}

/// A knotd serving `zones` as [`start_knot`] does, those named in `signed` signed with
/// DNSSEC (one ECDSA P-256 combined signing key each, made with keymgr in `dir`), and the
/// path of a trust-anchor file for them, in the format `[dns] trust_anchor_file` reads.
///
/// The zones form a tree: a zone whose parent (the longest other zone it is under) is in
/// `zones` is delegated from it (NS and glue records added to the parent), with a DS record
/// when it is signed, so that a validating resolver finds it secure when signed and
/// provably insecure (the parent's signed NSEC) when not. The anchor file holds the keys of
/// the signed zones with no parent in `zones`: give a signed top zone (e.g. `test`) so that
/// unsigned zones below it validate as insecure rather than bogus.
pub fn start_knot_signed(dir: &Path, zones: &[(&str, String)], signed: &[&str]) -> (Knot, PathBuf) {
    let port = free_port();
    for name in signed {
        assert!(zones.iter().any(|(zone, _)| zone == name), "{name} is signed but not among the zones");
    }
    // The journal of signed zones lives in the storage directory, which must exist.
    std::fs::create_dir_all(dir.join("db")).unwrap();
    let policy = "policy:\n  - id: test\n    algorithm: ecdsap256sha256\n    single-type-signing: on\n    \
                  nsec3: off\n    manual: on\n";
    let mut config = knot_config(dir, port, policy);
    for (name, _) in zones {
        let path = dir.join(format!("{name}.zone"));
        config.push_str(&format!("  - domain: {name}\n    file: {}\n", path.display()));
        if signed.contains(name) {
            config.push_str("    dnssec-signing: on\n    dnssec-policy: test\n");
        }
    }
    let config_path = dir.join("knot.conf");
    std::fs::write(&config_path, &config).unwrap();
    // Keys first: the parents' DS records and the anchors are made from them.
    let mut anchors = String::new();
    let mut ds: Vec<(&str, String)> = Vec::new();
    for name in signed {
        keymgr(&config_path, name, &["generate", "algorithm=ecdsap256sha256", "ksk=yes", "zsk=yes"]);
        // `keymgr ds` prints `name. DS tag 13 2 hex` (and the SHA-384 one): add TTL and class.
        let line = keymgr(&config_path, name, &["ds"]);
        let line = line.lines().find(|line| line.contains(" DS ") && line.split(' ').nth(4) == Some("2")).unwrap();
        ds.push((name, line.replacen(" DS ", " 3600 IN DS ", 1)));
        if parent(name, zones).is_none() {
            let keys = keymgr(&config_path, name, &["dnskey"]);
            for key in keys.lines().filter(|line| line.contains(" DNSKEY 257 ")) {
                anchors.push_str(&key.replacen(" DNSKEY ", " 3600 IN DNSKEY ", 1));
                anchors.push('\n');
            }
        }
    }
    for (name, records) in zones {
        let mut records = records.clone();
        for (child, _) in zones.iter().filter(|(child, _)| parent(child, zones) == Some(name)) {
            records.push_str(&format!("\n{child}. 3600 IN NS ns.{child}.\nns.{child}. 3600 IN A 127.0.0.1\n"));
            if let Some((_, line)) = ds.iter().find(|(zone, _)| zone == child) {
                records.push_str(line);
                records.push('\n');
            }
        }
        write_zone(dir, name, &records);
    }
    let anchors_path = dir.join("trust-anchors");
    std::fs::write(&anchors_path, anchors).unwrap();
    let knot = spawn_knot(dir, port, &config);
    // Ready when every zone is served, the signed ones with their signatures.
    let start = Instant::now();
    for (name, _) in zones {
        let answers_min = if signed.contains(name) { 2 } else { 1 };
        while !soa_answers(port, name).is_some_and(|(rcode, answers)| rcode == 0 && answers >= answers_min) {
            assert!(start.elapsed() < Duration::from_secs(20), "knotd does not serve {name}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (knot, anchors_path)
}

/// The head of a knot.conf, up to its `zone:` list.
fn knot_config(dir: &Path, port: u16, policy: &str) -> String {
    format!(
        "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\ndatabase:\n    storage: {dir}/db\n    \
         kasp-db: {dir}/keys\nlog:\n  - target: stderr\n    any: warning\n{policy}zone:\n",
        dir = dir.display()
    )
}

/// Writes `name`'s zone file, with its SOA, NS and the NS's address before `records`.
fn write_zone(dir: &Path, name: &str, records: &str) -> PathBuf {
    let path = dir.join(format!("{name}.zone"));
    let head = format!(
        "{name}. 3600 IN SOA ns.{name}. hostmaster.{name}. 1 3600 600 86400 300\n\
         {name}. 3600 IN NS ns.{name}.\nns.{name}. 3600 IN A 127.0.0.1\n"
    );
    std::fs::write(&path, head + records).unwrap();
    path
}

/// Starts knotd with `config` and waits until it answers on TCP.
fn spawn_knot(dir: &Path, port: u16, config: &str) -> Knot {
    let knotd = ["/usr/sbin/knotd", "/usr/bin/knotd"].into_iter().find(|path| Path::new(path).exists());
    let knotd = knotd.expect("knotd is needed (Debian package knot; scripts/test.sh installs it)");
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

/// The closest enclosing zone of `name` among `zones`.
fn parent<'a>(name: &str, zones: &'a [(&str, String)]) -> Option<&'a str> {
    zones.iter().map(|(zone, _)| *zone).filter(|zone| name.ends_with(&format!(".{zone}"))).max_by_key(|zone| zone.len())
}

/// Runs `keymgr -c CONFIG ZONE. ARGS` and returns what it printed.
fn keymgr(config: &Path, zone: &str, args: &[&str]) -> String {
    let keymgr = ["/usr/sbin/keymgr", "/usr/bin/keymgr"].into_iter().find(|path| Path::new(path).exists());
    let keymgr = keymgr.expect("keymgr is needed (Debian package knot)");
    let output =
        Command::new(keymgr).arg("-c").arg(config).arg(format!("{zone}.")).args(args).output().expect("run keymgr");
    assert!(output.status.success(), "keymgr {zone} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Asks the DNS server on `port` over TCP for `zone`'s SOA with the DO bit (RFC 3225) and
/// returns the response code and the number of answers (the SOA and, if signed, its RRSIG).
fn soa_answers(port: u16, zone: &str) -> Option<(u8, u16)> {
    use std::io::{Read, Write};
    let mut query = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    for label in zone.split('.').filter(|label| !label.is_empty()) {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    // QTYPE SOA, QCLASS IN, then an OPT record: root name, type 41, 4096-byte payload, DO.
    query.extend_from_slice(&[0, 0, 6, 0, 1, 0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(&(query.len() as u16).to_be_bytes()).ok()?;
    stream.write_all(&query).ok()?;
    let mut length = [0; 2];
    stream.read_exact(&mut length).ok()?;
    let mut response = vec![0; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut response).ok()?;
    if response.len() < 12 {
        return None;
    }
    Some((response[3] & 0x0f, u16::from_be_bytes([response[6], response[7]])))
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

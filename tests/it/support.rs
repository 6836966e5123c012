//! Starting `hameau` and talking to it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

pub use hameau_testkit::{Knot, Server, set_config, start_knot};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn hameau() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hameau"));
    command.env_remove("HAMEAU_LOG");
    command
}

/// Runs `hameau ARGS` to the end; returns its status, stdout and stderr.
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    let output = hameau().args(args).output().expect("run hameau");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8 output");
    (output.status, text(output.stdout), text(output.stderr))
}

/// Starts `hameau serve --config CONFIG` (the binary of this build) and waits until ready.
pub fn start_server(config: &Path) -> Server {
    Server::start(Path::new(env!("CARGO_BIN_EXE_hameau")), config)
}

/// `hameau init` in a new temporary directory, HTTPS on a port the system picks.
pub fn init() -> tempfile::TempDir {
    init_with_token().0
}

pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("data/hameau.toml")
}

/// A TLS client that trusts only the server's own (self-signed) certificate.
pub fn tls_connector(cert: &Path) -> tokio_rustls::TlsConnector {
    tokio_rustls::TlsConnector::from(hameau_testkit::client_config(&std::fs::read(cert).unwrap()))
}

/// One HTTPS request; returns the status code and the body.
pub async fn https_get(addr: SocketAddr, cert: &Path, path: &str) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tls_connector(cert).connect(name, tcp).await.expect("TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    (status, body)
}

pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

/// A client of the admin API of a running server.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    /// Where requests come from (any 127.0.0.0/8 address; the limiter counts per address).
    pub source: std::net::IpAddr,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        Api { addr: server.https[0], cert: server.cert.clone(), source: "127.0.0.1".parse().unwrap() }
    }

    /// Sends one request with raw headers and body; reads the whole response.
    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let (addr, cert, source) = (self.addr, self.cert.clone(), self.source);
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source, 0)).unwrap();
            let tcp = socket.connect(addr).await.expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut tls = tls_connector(&cert).connect(name, tcp).await.expect("TLS handshake");
            // The server may answer (413) before reading the whole body: ignore write errors.
            let _ = tls.write_all(&bytes).await;
            let mut response = Vec::new();
            let _ = tls.read_to_end(&mut response).await;
            parse_response(&response)
        })
    }

    /// A JSON request with a bearer token (if any).
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Response {
        let auth = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        let body = body.map(|body| body.to_string()).unwrap_or_default();
        self.raw(method, path, &headers, body.as_bytes())
    }
}

fn parse_response(bytes: &[u8]) -> Response {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let mut lines = head.lines();
    let status =
        lines.next().and_then(|line| line.split(' ').nth(1)).and_then(|code| code.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect::<Vec<_>>();
    let chunked =
        headers.iter().any(|(name, value)| name.eq_ignore_ascii_case("transfer-encoding") && value == "chunked");
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Response { status, headers, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// The store the end-to-end tests run on: RocksDB (the default), or PostgreSQL with
/// `HAMEAU_TEST_STORE=postgresql`, in the database of `HAMEAU_TEST_PG_URL` (scripts/test.sh
/// runs the suite both ways): the arguments of `hameau init` that choose it, each test in
/// a schema of its own.
pub fn store_args() -> Vec<String> {
    if on_postgresql() { postgresql_args() } else { Vec::new() }
}

/// The arguments of `hameau init` for the database of `HAMEAU_TEST_PG_URL`, in a schema of
/// its own.
fn postgresql_args() -> Vec<String> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let url = std::env::var("HAMEAU_TEST_PG_URL").expect("the tests on PostgreSQL need HAMEAU_TEST_PG_URL");
    let schema = format!("it_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    vec!["--store-url".into(), url, "--store-schema".into(), schema]
}

/// Whether this run of the suite is on PostgreSQL (`HAMEAU_TEST_STORE=postgresql`): a few
/// tests check what only RocksDB does (one process holds a data directory's store) and
/// check what PostgreSQL does instead (several processes share one database).
pub fn on_postgresql() -> bool {
    std::env::var("HAMEAU_TEST_STORE").is_ok_and(|store| store == "postgresql")
}

/// The store options of the configuration `config` (to read a stopped server's store).
pub fn store_options(config: &Path) -> hameau_store::Options {
    hameau_config::Config::load(config).expect("configuration").store
}

/// `hameau init --demo` output: the operator's token.
pub fn init_with_token() -> (tempfile::TempDir, String) {
    init_on(store_args())
}

/// [`init_with_token`] on PostgreSQL whatever the run's store (`HAMEAU_TEST_PG_URL`, a
/// schema of its own): for the tests of several nodes on one database.
pub fn init_on_postgresql() -> (tempfile::TempDir, String) {
    init_on(postgresql_args())
}

/// [`init_with_token`] on RocksDB whatever the run's store: for the tests that move a
/// RocksDB installation elsewhere.
pub fn init_on_rocksdb() -> (tempfile::TempDir, String) {
    init_on(Vec::new())
}

/// A fresh schema's name in the database of `HAMEAU_TEST_PG_URL`, and that URL.
pub fn postgresql_schema() -> (String, String) {
    let args = postgresql_args();
    (args[1].clone(), args[3].clone())
}

/// [`init_with_token`] on the PostgreSQL database at `url` (several hosts possible), in
/// schema `hameau`.
pub fn init_on_store_url(url: &str) -> (tempfile::TempDir, String) {
    init_on(vec!["--store-url".into(), url.into(), "--store-schema".into(), "hameau".into()])
}

/// `hameau init` with `store` (the arguments that choose the store) added.
fn init_on(store: Vec<String>) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut args = vec![
        "init",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-listen",
        "127.0.0.1:0",
        "--http-plain-listen",
        "127.0.0.1:0",
        "--smtp-listen",
        "127.0.0.1:0",
        "--imap-listen",
        "127.0.0.1:0",
        "--imaps-listen",
        "127.0.0.1:0",
        "--submission-listen",
        "127.0.0.1:0",
        "--submissions-listen",
        "127.0.0.1:0",
    ];
    args.extend(store.iter().map(String::as_str));
    let (status, stdout, stderr) = run(&args);
    assert!(status.success(), "init failed: {stderr}");
    assert!(stdout.contains("hameau serve --config"), "{stdout}");
    no_outside_dns(&config_path(dir.path()));
    let token = stdout
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("hmk_"))
        .expect("init prints the operator key")
        .to_string();
    (dir, token)
}

/// Tests never ask a DNS server outside this machine: the resolver is a closed local port
/// (answers fail at once), unless a test starts its own server.
pub fn no_outside_dns(config: &Path) {
    set_config(config, "resolvers = []", "resolvers = [\"127.0.0.1:9\"]");
    set_config(config, "timeout_s = 5", "timeout_s = 1");
}

/// Runs each admin command on the local data directory of `config`; all must succeed.
pub fn admin(config: &Path, commands: &[&[&str]]) {
    for command in commands {
        let mut args = command.to_vec();
        args.extend(["--config", config.to_str().unwrap()]);
        let (status, _, stderr) = run(&args);
        assert!(status.success(), "{command:?}: {stderr}");
    }
}

/// The value of one series of `/metrics` (read with the configuration's metrics token).
pub fn metric(server: &Server, config: &Path, series: &str) -> u64 {
    let text = std::fs::read_to_string(config).unwrap();
    let token =
        text.lines().find_map(|line| line.strip_prefix("metrics_token = ")).unwrap().trim_matches('"').to_string();
    let metrics = Api::new(server).call("GET", "/metrics", Some(&token), None);
    assert_eq!(metrics.status, 200);
    let line = metrics.body.lines().find(|line| line.starts_with(series));
    line.map_or(0, |line| line.rsplit(' ').next().unwrap().parse().unwrap())
}

/// Queues `n` messages of agent@a.test (account 1 of tenant `a`) for x@remote.test straight
/// into the store of `config`, as submission queues them (acknowledged = committed), with
/// the Message-IDs `<TAG-0@a.test>` to `<TAG-(n-1)@a.test>`. On RocksDB the server must be
/// stopped.
pub fn enqueue_numbered(config: &Path, n: usize, tag: &str) {
    let options = store_options(config);
    let tag = tag.to_string();
    block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
        let queue = hameau_queue::Queue::new(store.clone(), hameau_queue::Limits::default());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        for i in 0..n {
            let raw = format!(
                "From: agent@a.test\r\nTo: x@remote.test\r\nSubject: {tag}\r\nMessage-ID: <{tag}-{i}@a.test>\r\n\r\nmessage {i}\r\n"
            );
            let message = hameau_queue::NewMessage {
                raw: raw.into_bytes().into(),
                mail_from: "agent@a.test".into(),
                recipients: vec!["x@remote.test".into()],
                tenant: Some("a".into()),
                account: Some(1),
                envelope_id: format!("{tag}.{i}"),
                held: None,
            };
            queue.enqueue(message, now).await.unwrap();
        }
        store.close().await.unwrap();
    });
}

/// Queues a message of `tenant` for `recipients` straight into the store of `config` (the
/// server must be stopped), held if `held` says why; its queue id.
pub fn enqueue(config: &Path, tenant: &str, recipients: &[&str], held: Option<&str>) -> u64 {
    let options = store_options(config);
    let new = hameau_queue::NewMessage {
        raw: bytes::Bytes::from_static(b"From: agent@a.test\r\nSubject: test\r\n\r\nBonjour\r\n"),
        mail_from: format!("agent@{tenant}.test"),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        tenant: Some(tenant.to_string()),
        account: None,
        envelope_id: "test".into(),
        held: held.map(|reason| hameau_queue::Hold { reason: reason.into(), since: 0, by_brake: false }),
    };
    block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
        let queue = hameau_queue::Queue::new(store.clone(), hameau_queue::Limits::default());
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let id = queue.enqueue(new, now).await.unwrap();
        store.close().await.unwrap();
        id
    })
}

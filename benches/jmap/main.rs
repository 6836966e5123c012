//! `bench-jmap`: JMAP on a mailbox of MESSAGES messages (about 1 KiB each), CLIENTS
//! concurrent clients each on its own keep-alive HTTPS connection, each sending REQUESTS
//! requests per phase, one request at a time:
//!
//! - `query+get`: `Email/query` of the INBOX sorted by `receivedAt` descending, 50 results,
//!   chained by a result reference with `Email/get` of those 50 (the properties of a
//!   message list: subject, from, receivedAt, keywords, preview);
//! - `text query+get`: the same with a text filter (`text` of a word in about one message
//!   in a hundred) under an `AND` with `inMailbox`.
//!
//! Prints p50/p99 latency and requests/s per phase, and the server's memory. Issue 15's
//! targets: p50 ≤ 5 ms without the text filter, ≤ 20 ms with it. The clients share the
//! machine with the server: each reads every answer whole but parses only its first
//! (checked: 50 ids, 50 emails), so that the load generator takes little of the CPU.
//!
//! The mailbox is seeded through `hameau_mailbox::Mail::ingest_many` in the store of the
//! stopped server (as `bench-imap-big` does), each message one second after the one
//! before, its text index built, then the release `hameau` (built next to this binary) starts on it.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches --bin hameau --bin bench-jmap &&
//! $CARGO_TARGET_DIR/release/bench-jmap [MESSAGES] [CLIENTS] [REQUESTS] [DIR]`
//! (defaults 100000, 20, 100, /var/tmp). Figures in docs/jmap.md.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine as _;
use hameau_benches::imap::{Dates, PASSWORD, Setup, USER, build_text_index, load_average, seed_inbox, word};
use hameau_benches::{percentile, status_kib, tls_connector};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESSAGE_BYTES: usize = 1024;
/// Most bytes of one response this client reads.
const RESPONSE_BYTES_MAX: usize = 16 << 20;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let clients: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let requests: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    // The 20 clients are one account's (the "20 concurrent clients" on one
    // mailbox): its concurrent requests are raised from 4 so that none is refused.
    let setup = Setup::new("bench-jmap", &base, &[("concurrent_requests_max = 4", "concurrent_requests_max = 64")])?;
    let account = setup.account_id()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let start = Instant::now();
    runtime.block_on(async {
        let store = setup.data.join("store");
        seed_inbox(&store, account, messages, MESSAGE_BYTES, Dates::OneASecond).await?;
        build_text_index(&store, account).await
    })?;
    let seed_s = start.elapsed().as_secs_f64();
    let server = setup.start();
    let addr = *server.https.first().context("no HTTPS listener")?;
    let pid = server.child.id();
    let connector = tls_connector(&server.cert)?;
    println!(
        "bench-jmap: INBOX of {messages} messages of ~{} KiB (seeded in {seed_s:.1} s), {clients} clients on \
         keep-alive HTTPS, {requests} requests each per phase; server pid {pid}; load average {}",
        MESSAGE_BYTES / 1024,
        load_average()
    );
    let account_id = format!("a{account}");
    let inbox = runtime.block_on(async {
        let mut client = Client::connect(addr, &connector).await?;
        let answer = client
            .call(&serde_json::to_vec(&json!({"using": CAPABILITIES, "methodCalls": [
                ["Mailbox/query", {"accountId": account_id, "filter": {"role": "inbox"}}, "m"]]}))?)
            .await?;
        let answer: Value = serde_json::from_slice(&answer)?;
        answer["methodResponses"][0][1]["ids"][0].as_str().map(str::to_string).context("no inbox in the answer")
    })?;
    // A word of the vocabulary's middle: in about one message of a hundred.
    let needle = word(400);
    println!("{:<16} {:>9} {:>9} {:>9} {:>10}", "phase", "p50 ms", "p99 ms", "max ms", "requests/s");
    for (phase, filter) in [
        ("query+get", json!({"inMailbox": inbox})),
        ("text query+get", json!({"operator": "AND", "conditions": [{"inMailbox": inbox}, {"text": needle}]})),
    ] {
        let body = Arc::new(serde_json::to_vec(&json!({"using": CAPABILITIES, "methodCalls": [
            ["Email/query", {"accountId": account_id, "filter": filter,
                "sort": [{"property": "receivedAt", "isAscending": false}], "limit": 50}, "q"],
            ["Email/get", {"accountId": account_id, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                "properties": ["id", "subject", "from", "receivedAt", "keywords", "preview"]}, "g"],
        ]}))?);
        let started = Instant::now();
        let latencies = runtime.block_on(run_phase(addr, &connector, body, clients, requests))?;
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{phase:<16} {:>9.2} {:>9.2} {:>9.2} {:>10.0}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
            latencies.len() as f64 / elapsed
        );
    }
    println!(
        "targets: p50 <= 5 ms without the text filter, <= 20 ms with it; server VmRSS {} MiB, peak {} MiB",
        status_kib(&pid.to_string(), "VmRSS") / 1024,
        status_kib(&pid.to_string(), "VmHWM") / 1024
    );
    hameau_benches::imap::stop(server)?;
    drop(setup);
    Ok(())
}

const CAPABILITIES: [&str; 2] = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail"];

/// `clients` tasks each sending `requests` times `body`: every latency in ms. The first
/// answer of each client is checked (50 ids and 50 emails, or the phase fails).
async fn run_phase(
    addr: std::net::SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    body: Arc<Vec<u8>>,
    clients: usize,
    requests: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (connector, body) = (connector.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(addr, &connector).await?;
            let mut latencies = Vec::with_capacity(requests);
            for n in 0..requests {
                let start = Instant::now();
                let answer = client.call(&body).await?;
                latencies.push(start.elapsed().as_secs_f64() * 1000.0);
                // Only the first answer is parsed: the load generator shares the
                // machine's two cores with the server, and takes as little as it can.
                if n == 0 {
                    let answer: Value = serde_json::from_slice(&answer)?;
                    let responses = &answer["methodResponses"];
                    let ids = responses[0][1]["ids"].as_array().map_or(0, Vec::len);
                    let list = responses[1][1]["list"].as_array().map_or(0, Vec::len);
                    if ids == 0 || ids != list {
                        bail!("unexpected answer: {}", answer.to_string().chars().take(500).collect::<String>());
                    }
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// One keep-alive HTTPS connection to the API endpoint.
struct Client {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    authorization: String,
    buffer: Vec<u8>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, connector: &tokio_rustls::TlsConnector) -> anyhow::Result<Client> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost")?;
        let stream = connector.connect(name, tcp).await?;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        Ok(Client { stream, authorization: format!("Basic {credentials}"), buffer: Vec::new() })
    }

    /// POSTs `body` (JSON) to `/jmap/api`: the answer's body, unparsed.
    async fn call(&mut self, body: &[u8]) -> anyhow::Result<Vec<u8>> {
        let head = format!(
            "POST /jmap/api HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            self.authorization,
            body.len()
        );
        self.stream.write_all(&[head.as_bytes(), body].concat()).await?;
        // The head, then Content-Length bytes.
        let head_end = loop {
            if let Some(at) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 200") {
            bail!("answer: {}", head.lines().next().unwrap_or(""));
        }
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .context("no Content-Length")?
            .trim()
            .parse()?;
        if length > RESPONSE_BYTES_MAX {
            bail!("a response of {length} bytes");
        }
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let answer = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Ok(answer)
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

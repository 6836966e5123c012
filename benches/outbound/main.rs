//! `bench-outbound`: submission and remote delivery, Hameau against Postfix relaying the
//! same load to the same kind of receiver (issue 11).
//!
//! The receiver is Postfix's `smtp-sink` (Debian package `postfix`) writing every message to
//! a file of its own (`-d`), so that each one is counted by the `X-Bench-Id` header the
//! bench puts in it; knotd serves the receiver's domain (`sink.test`, MX → 127.0.0.1).
//!
//! 1. **Hameau**: the release `hameau` (built next to this binary) on a fresh data directory
//!    under DIR (a real disk: synced storage as in production), one tenant, the domain
//!    a.test (DKIM keys made by `hameau domain create`) and the account bench@a.test;
//!    `[outbound] port` is the sink's, and the submission brakes are raised to their
//!    maximum (the bench would trip them: one account sends everything). SESSIONS clients
//!    each open one connection to 587, STARTTLS (rustls, trusting the server's self-signed
//!    certificate), AUTH PLAIN, then send messages one after the other (MAIL, RCPT and DATA
//!    pipelined, RSET after each) until MESSAGES were sent in all.
//! 2. **Postfix**: a private Postfix instance (testkit's `Postfix::relay`, Debian's
//!    defaults for concurrency and connection caching, its queue under DIR too) relaying
//!    everything from 127.0.0.0/8 to a fresh sink; the same clients and messages,
//!    STARTTLS without AUTH. Postfix does not sign: Hameau's two DKIM signatures per
//!    message (Ed25519 and RSA-2048) are work Postfix does not do here.
//!
//! Reported for each: submission msg/s and latency (MAIL sent to the 250 after the dot:
//! p50, p99, max), delivery msg/s (the first MAIL to the last message written by the sink,
//! by the files' modification times), the server's CPU time per message over the same
//! span, and the count of distinct messages at the sink (and duplicates); then Hameau's
//! delivery rate over Postfix's and its CPU per message over Postfix's. Issue 11's target:
//! at least 5× the rate at most 1/5 of the CPU per message.
//!
//! CPU time is read from /proc at the start of the load and once the sink has every
//! message: for Hameau, utime + stime of its one process; for Postfix, the sum over the
//! master and every live descendant of utime + stime + cutime + cstime (the master reaps
//! every daemon that exits — smtpd, cleanup, smtp … — so an exited daemon's time is in the
//! master's cutime/cstime, a live one's in its own utime/stime). The `postfix start`
//! scripts before the load, and the sinks, knotd and the clients, count for neither.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! target/release/bench-outbound [MESSAGES] [SESSIONS] [BYTES] [DIR]`
//! (defaults 20000, 20, 4096, /var/tmp).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use hameau_benches::{cpu_seconds, percentile};
use hameau_testkit::{Postfix, Server, SmtpSink, TlsFiles, set_config, start_knot};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const SENDER: &str = "bench@a.test";
const PASSWORD: &str = "bench outbound password";
const RECIPIENT: &str = "rcpt@sink.test";
/// The longest wait for one reply, and for the sink to make progress.
const STALL: Duration = Duration::from_secs(120);

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    let sessions: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let bytes: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4096);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!(
        "bench-outbound: {messages} messages of {bytes} bytes over {sessions} sessions, to {RECIPIENT} \
         (smtp-sink); data under {}",
        base.display()
    );
    println!(
        "{:<8} {:>9} {:>8} {:>9} {:>9} {:>9} {:>10} {:>12} {:>9} {:>6}",
        "server", "messages", "subm/s", "p50", "p99", "max", "deliv/s", "CPU ms/msg", "at sink", "twice"
    );

    let knot_dir = tempfile::tempdir()?;
    let zone = "sink.test. 300 IN MX 10 mx.sink.test.\nmx.sink.test. 300 IN A 127.0.0.1\n".to_string();
    let knot = start_knot(knot_dir.path(), &[("sink.test", zone)]);
    let load = Load { messages, sessions, bytes };

    let hameau = run_hameau(&runtime, &base, knot.port, &load)?;
    println!("{}", hameau.row("hameau"));
    let postfix = run_postfix(&runtime, &base, &load)?;
    println!("{}", postfix.row("postfix"));
    drop(knot);

    println!(
        "Hameau / Postfix: delivery rate {:.2}× (target ≥ 5), CPU per message {:.2}× (target ≤ 0.20)",
        hameau.delivery_rate() / postfix.delivery_rate(),
        hameau.cpu_per_message() / postfix.cpu_per_message(),
    );
    for (name, run) in [("hameau", &hameau), ("postfix", &postfix)] {
        if run.at_sink != messages {
            bail!("{name}: {messages} messages submitted, {} distinct ones at the sink", run.at_sink);
        }
    }
    println!("every message accounted for at each sink: {messages} distinct, each once or more as shown");
    Ok(())
}

/// What is sent: `messages` of about `bytes` each over `sessions` connections.
#[derive(Clone, Copy)]
struct Load {
    messages: u64,
    sessions: u64,
    bytes: usize,
}

/// One server's figures.
struct Run {
    messages: u64,
    submission_s: f64,
    /// Latencies in milliseconds.
    latencies: Vec<f64>,
    delivery_s: f64,
    cpu_s: f64,
    at_sink: u64,
    twice: u64,
}

impl Run {
    fn delivery_rate(&self) -> f64 {
        self.messages as f64 / self.delivery_s
    }

    fn cpu_per_message(&self) -> f64 {
        self.cpu_s / self.messages as f64
    }

    fn row(&self, name: &str) -> String {
        format!(
            "{name:<8} {:>9} {:>8.0} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>10.0} {:>12.3} {:>9} {:>6}",
            self.messages,
            self.messages as f64 / self.submission_s,
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
            percentile(&self.latencies, 1.0),
            self.delivery_rate(),
            1000.0 * self.cpu_per_message(),
            self.at_sink,
            self.twice,
        )
    }
}

/// Hameau: submission on 587 with AUTH, delivery to a sink.
fn run_hameau(runtime: &tokio::runtime::Runtime, base: &Path, dns_port: u16, load: &Load) -> anyhow::Result<Run> {
    let (dir, hameau, config) = hameau_benches::init_data_dir("bench-outbound", base)?;
    set_config(&config, "resolvers = []", &format!("resolvers = [\"127.0.0.1:{dns_port}\"]"));
    for key in [
        "account_messages_per_hour_max = 200",
        "account_recipients_per_hour_max = 500",
        "tenant_messages_per_hour_max = 1000",
        "tenant_recipients_per_hour_max = 2000",
    ] {
        let (name, _) = key.split_once(" = ").unwrap();
        set_config(&config, key, &format!("{name} = 100000000"));
    }
    cli(&hameau, &config, &["tenant", "create", "bench", "--name", "Bench"], None)?;
    cli(&hameau, &config, &["domain", "create", "a.test", "--tenant", "bench"], None)?;
    cli(&hameau, &config, &["account", "create", SENDER, "--password-stdin"], Some(PASSWORD))?;
    let sink_dir = tempfile::Builder::new().prefix("sink-hameau").tempdir_in(base)?;
    let sink = SmtpSink::dumping_into(sink_dir.path(), &[]);
    set_config(&config, "port = 25", &format!("port = {}", sink.port));

    let mut server = Server::start(&hameau, &config);
    let pid = server.child.id();
    let connector = hameau_benches::tls_connector(&server.cert)?;
    let run = measure(runtime, load, server.submission[0], connector, true, sink_dir.path(), || cpu_seconds(pid))?;
    server.signal(libc::SIGTERM);
    server.wait(Duration::from_secs(60)).context("hameau did not stop")?;
    drop(server);
    drop(sink);
    drop(dir);
    Ok(run)
}

/// Postfix: relay from 127.0.0.0/8 (no AUTH) to a sink.
fn run_postfix(runtime: &tokio::runtime::Runtime, base: &Path, load: &Load) -> anyhow::Result<Run> {
    let sink_dir = tempfile::Builder::new().prefix("sink-postfix").tempdir_in(base)?;
    let sink = SmtpSink::dumping_into(sink_dir.path(), &[]);
    let tls_dir = tempfile::tempdir()?;
    let tls = TlsFiles::self_signed(tls_dir.path(), &["localhost"]);
    let postfix = Postfix::relay(base, sink.port, Some(&tls));
    let master = postfix.master_pid();
    let connector = hameau_benches::tls_connector(&tls.cert)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], postfix.port));
    let run = measure(runtime, load, addr, connector, false, sink_dir.path(), || tree_cpu_seconds(master))?;
    drop(postfix);
    drop(sink);
    Ok(run)
}

/// Sends the load to `addr`, waits until the sink in `sink_dir` has every message, and
/// measures; `cpu` reads the server's CPU seconds so far.
fn measure(
    runtime: &tokio::runtime::Runtime,
    load: &Load,
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    auth: bool,
    sink_dir: &Path,
    cpu: impl Fn() -> f64,
) -> anyhow::Result<Run> {
    let cpu_before = cpu();
    let (started, wall_started) = (Instant::now(), SystemTime::now());
    let latencies = runtime.block_on(submit_all(addr, connector, auth, load))?;
    let submission_s = started.elapsed().as_secs_f64();
    let (at_sink, twice, last) = wait_for_sink(sink_dir, load.messages)?;
    let cpu_s = cpu() - cpu_before;
    let delivery_s = last.duration_since(wall_started).unwrap_or_default().as_secs_f64();
    Ok(Run { messages: load.messages, submission_s, latencies, delivery_s, cpu_s, at_sink, twice })
}

/// Runs the sessions to the end; every message's latency in milliseconds.
async fn submit_all(
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    auth: bool,
    load: &Load,
) -> anyhow::Result<Vec<f64>> {
    let next = Arc::new(AtomicU64::new(0));
    let filler = filler(load.bytes);
    let mut tasks = Vec::new();
    for _ in 0..load.sessions {
        let (next, connector, filler) = (next.clone(), connector.clone(), filler.clone());
        let messages = load.messages;
        tasks.push(tokio::spawn(async move { session(addr, connector, auth, &next, messages, &filler).await }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

/// One client: STARTTLS, AUTH PLAIN if `auth`, then messages numbered from `next` until
/// `messages`; the latency of each.
async fn session(
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    auth: bool,
    next: &AtomicU64,
    messages: u64,
    filler: &str,
) -> anyhow::Result<Vec<f64>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut plain = BufReader::new(tcp);
    expect(&mut plain, 220).await?;
    plain.get_mut().write_all(b"EHLO bench.test\r\n").await?;
    expect(&mut plain, 250).await?;
    plain.get_mut().write_all(b"STARTTLS\r\n").await?;
    expect(&mut plain, 220).await?;
    if !plain.buffer().is_empty() {
        bail!("bytes after the reply to STARTTLS");
    }
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let tls = connector.connect(name, plain.into_inner()).await?;
    let mut stream = BufReader::new(tls);
    stream.get_mut().write_all(b"EHLO bench.test\r\n").await?;
    expect(&mut stream, 250).await?;
    if auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{SENDER}\0{PASSWORD}"));
        stream.get_mut().write_all(format!("AUTH PLAIN {token}\r\n").as_bytes()).await?;
        expect(&mut stream, 235).await?;
    }
    let mut latencies = Vec::new();
    loop {
        let id = next.fetch_add(1, Ordering::Relaxed);
        if id >= messages {
            break;
        }
        let started = Instant::now();
        // PIPELINING (RFC 2920), offered by both servers: MAIL, RCPT and DATA at once.
        let envelope = format!("MAIL FROM:<{SENDER}>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n");
        stream.get_mut().write_all(envelope.as_bytes()).await?;
        expect(&mut stream, 250).await?;
        expect(&mut stream, 250).await?;
        expect(&mut stream, 354).await?;
        let message = format!(
            "From: Bench <{SENDER}>\r\nTo: <{RECIPIENT}>\r\nSubject: bench {id}\r\n\
             Message-ID: <bench-{id}@a.test>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nX-Bench-Id: {id}\r\n\r\n\
             {filler}.\r\n"
        );
        stream.get_mut().write_all(message.as_bytes()).await?;
        expect(&mut stream, 250).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        stream.get_mut().write_all(b"RSET\r\n").await?;
        expect(&mut stream, 250).await?;
    }
    stream.get_mut().write_all(b"QUIT\r\n").await?;
    Ok(latencies)
}

/// Reads one reply (all its lines) and checks its code.
async fn expect<S: tokio::io::AsyncRead + Unpin>(stream: &mut BufReader<S>, code: u16) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(STALL, stream.read_line(&mut line)).await.context("no reply")??;
        if n == 0 {
            bail!("connection closed while waiting for {code}");
        }
        if !line.starts_with(&code.to_string()) {
            bail!("expected {code}, got {line:?}");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
}

/// Body lines making a message of about `bytes` with its header, ending in CRLF.
fn filler(bytes: usize) -> Arc<str> {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n";
    let n_lines = bytes.saturating_sub(200) / line.len() + 1;
    Arc::from(line.repeat(n_lines))
}

/// Waits until the sink's files hold `messages` distinct `X-Bench-Id`s (no progress for
/// `STALL`: gives up); returns the distinct count, how many arrived more than once, and
/// the last file's modification time.
fn wait_for_sink(dir: &Path, messages: u64) -> anyhow::Result<(u64, u64, SystemTime)> {
    let mut seen: HashMap<PathBuf, Option<u64>> = HashMap::new();
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut last = SystemTime::UNIX_EPOCH;
    let mut progress = Instant::now();
    loop {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if matches!(seen.get(&path), Some(Some(_))) {
                continue;
            }
            // smtp-sink writes a file while the transaction goes on: read again later if
            // the id is not there yet.
            let text = std::fs::read(&path)?;
            let id = bench_id(&text);
            if let Some(id) = id {
                *counts.entry(id).or_default() += 1;
                last = last.max(std::fs::metadata(&path)?.modified()?);
                progress = Instant::now();
            }
            seen.insert(path, id);
        }
        if counts.len() as u64 >= messages {
            break;
        }
        if progress.elapsed() > STALL {
            eprintln!("the sink in {} stalled at {} of {messages}", dir.display(), counts.len());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let twice = counts.values().filter(|count| **count > 1).count() as u64;
    Ok((counts.len() as u64, twice, last))
}

/// The `X-Bench-Id` of a dumped message, if its header is there yet.
fn bench_id(text: &[u8]) -> Option<u64> {
    let at = text.windows(12).position(|window| window == b"X-Bench-Id: ")? + 12;
    let digits: Vec<u8> = text[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    let end = text.get(at + digits.len())?;
    if *end != b'\r' && *end != b'\n' {
        return None;
    }
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// CPU seconds used so far by the process tree under `root` (Postfix's master): utime,
/// stime, cutime and cstime of `root` and of each live descendant, from /proc.
fn tree_cpu_seconds(root: u32) -> f64 {
    let mut parents: HashMap<u32, u32> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')':
        // state, ppid (0), …, utime (11), stime (12), cutime (13), cstime (14).
        let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        parents.insert(pid, field(1) as u32);
        ticks.insert(pid, field(11) + field(12) + field(13) + field(14));
    }
    let in_tree = |mut pid: u32| {
        // Walks up at most the depth of the process table: no loop on a reused PID.
        for _ in 0..parents.len() {
            if pid == root {
                return true;
            }
            match parents.get(&pid) {
                Some(parent) if *parent != 0 => pid = *parent,
                _ => return false,
            }
        }
        false
    };
    let total: u64 = ticks.iter().filter(|(pid, _)| in_tree(**pid)).map(|(_, ticks)| ticks).sum();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    total as f64 / hz
}

/// `hameau ARGS --config CONFIG`, with `stdin` written to it if given.
fn cli(hameau: &Path, config: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new(hameau)
        .args(args)
        .args(["--config", config.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        writeln!(input, "{text}")?;
    }
    drop(input);
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("hameau {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

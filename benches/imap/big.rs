//! `bench-imap-big`: opening a mailbox of MESSAGES messages (about 1 KiB each, a third
//! `\Seen`) as a client does on start: SELECT INBOX then UID FETCH 1:* (FLAGS), timed from
//! sending SELECT to the tagged OK of the FETCH, RUNS times, each on a new connection (a cold SELECT), by this
//! bench's Rust client and by Python's imaplib (the system `python3`: `M.select();
//! M.uid('FETCH', '1:*', '(FLAGS)')`).
//!
//! The mailbox is seeded directly through `hameau_mailbox::Mail::ingest_many` (batches of
//! 500, 16 at a time) in the store of the stopped server, then the release `hameau` (built
//! next to this binary) starts on it: plain TCP, `plaintext_auth = true`, data under DIR.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! $CARGO_TARGET_DIR/release/bench-imap-big [MESSAGES] [RUNS] [DIR]`
//! (defaults 100000, 5, /var/tmp).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use hameau_benches::imap::{Client, Dates, PASSWORD, Setup, USER, load_average, seed_inbox};
use hameau_benches::{percentile, status_kib};

const MESSAGE_BYTES: usize = 1024;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let setup = Setup::new("bench-imap-big", &base, &[])?;
    let account = setup.account_id()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let start = Instant::now();
    runtime.block_on(seed_inbox(&setup.data.join("store"), account, messages, MESSAGE_BYTES, Dates::AllNow))?;
    let seed_s = start.elapsed().as_secs_f64();

    let server = setup.start();
    let addr = server.imap[0];
    let pid = server.child.id();
    println!(
        "bench-imap-big: INBOX of {messages} messages of ~{} KiB (seeded by Mail::ingest_many in {seed_s:.1} s, \
         {:.0}/s), SELECT INBOX + UID FETCH 1:* (FLAGS) {runs} times, each on a new connection, plain TCP with \
         plaintext_auth = true; server pid {pid}; load average {}",
        MESSAGE_BYTES / 1024,
        messages as f64 / seed_s,
        load_average()
    );
    let rust = runtime.block_on(rust_client(addr, messages, runs))?;
    let (imaplib, python_raw) = python_clients(addr, messages, runs)?;
    println!(
        "{:<18} {:>8} {:>10} {:>11} {:>11} {:>15}   each run (SELECT + FETCH, ms)",
        "client", "min ms", "median ms", "SELECT p50", "FETCH p50", "client CPU p50"
    );
    for (name, runs) in [("rust (this bench)", &rust), ("python imaplib", &imaplib), ("python raw socket", &python_raw)]
    {
        let totals: Vec<f64> = runs.iter().map(|run| run.select + run.fetch).collect();
        let selects: Vec<f64> = runs.iter().map(|run| run.select).collect();
        let fetches: Vec<f64> = runs.iter().map(|run| run.fetch).collect();
        let cpu: Vec<f64> = runs.iter().filter_map(|run| run.client_cpu).collect();
        println!(
            "{name:<18} {:>8.1} {:>10.1} {:>9.1}ms {:>9.1}ms {:>13}   {}",
            percentile(&totals, 0.0),
            percentile(&totals, 0.5),
            percentile(&selects, 0.5),
            percentile(&fetches, 0.5),
            if cpu.is_empty() { "-".to_string() } else { format!("{:.0}ms", percentile(&cpu, 0.5)) },
            totals.iter().map(|ms| format!("{ms:.0}")).collect::<Vec<_>>().join(" ")
        );
    }
    println!(
        "target: <= 150 ms from SELECT to the FETCH's OK; server VmRSS {} MiB, peak {} MiB",
        status_kib(&pid.to_string(), "VmRSS") / 1024,
        status_kib(&pid.to_string(), "VmHWM") / 1024
    );
    hameau_benches::imap::stop(server)?;
    drop(setup);
    Ok(())
}

/// One run: SELECT and FETCH times (ms), and the client's CPU for the FETCH (ms) when known.
struct Run {
    select: f64,
    fetch: f64,
    client_cpu: Option<f64>,
}

async fn rust_client(addr: SocketAddr, messages: usize, runs: usize) -> anyhow::Result<Vec<Run>> {
    let mut times = Vec::new();
    for _ in 0..runs {
        // A new connection each time: the mailbox is opened cold, not re-selected (a
        // re-SELECT only reads what changed since).
        let mut client = Client::login(addr, None).await?;
        let start = Instant::now();
        client.command("SELECT INBOX").await?.ok("SELECT")?;
        let selected = start.elapsed().as_secs_f64() * 1000.0;
        let fetched = client.command("UID FETCH 1:* (FLAGS)").await?.ok("UID FETCH")?;
        let total = start.elapsed().as_secs_f64() * 1000.0;
        let n = fetched.count(b" FETCH ");
        if n != messages {
            bail!("UID FETCH 1:* returned {n} messages, not {messages}");
        }
        times.push(Run { select: selected, fetch: total - selected, client_cpu: None });
        client.command("LOGOUT").await?;
    }
    Ok(times)
}

/// imaplib's runs, then the same commands over a raw Python socket (what Python needs
/// without imaplib's parsing).
fn python_clients(addr: SocketAddr, messages: usize, runs: usize) -> anyhow::Result<(Vec<Run>, Vec<Run>)> {
    let script = format!(
        r#"
import imaplib, socket, time
for _ in range({runs}):
    M = imaplib.IMAP4("{ip}", {port})
    M.login("{USER}", "{PASSWORD}")
    start = time.perf_counter()
    typ, _ = M.select("INBOX")
    assert typ == "OK", typ
    selected = time.perf_counter()
    cpu = time.process_time()
    typ, data = M.uid("FETCH", "1:*", "(FLAGS)")
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    assert typ == "OK", typ
    assert len(data) == {messages}, len(data)
    print("imaplib", (selected - start) * 1000, (done - selected) * 1000, cpu * 1000)
    M.logout()
# FLAGS responses hold no literal: a command ends at the line starting with its tag.
def command(tag, line):
    s.sendall(tag + b" " + line + b"\r\n")
    data = bytearray()
    while not (data.endswith(b"\r\n") and (b"\r\n" + tag + b" " in data[-300:] or data.startswith(tag + b" "))):
        chunk = s.recv(1 << 20)
        assert chunk, bytes(data[-200:])
        data += chunk
    return data
for run in range({runs}):
    s = socket.create_connection(("{ip}", {port}))
    s.recv(1024)
    command(b"l", b'LOGIN {USER} "{PASSWORD}"')
    start = time.perf_counter()
    command(b"s%d" % run, b"SELECT INBOX")
    selected = time.perf_counter()
    cpu = time.process_time()
    data = command(b"f%d" % run, b"UID FETCH 1:* (FLAGS)")
    done = time.perf_counter()
    cpu = time.process_time() - cpu
    assert data.count(b" FETCH (") == {messages}, data.count(b" FETCH (")
    print("raw", (selected - start) * 1000, (done - selected) * 1000, cpu * 1000)
    s.close()
"#,
        ip = addr.ip(),
        port = addr.port()
    );
    let output = Command::new("python3").args(["-c", &script]).output().context("python3")?;
    if !output.status.success() {
        bail!("python3 imaplib: {}", String::from_utf8_lossy(&output.stderr));
    }
    let (mut imaplib, mut raw) = (Vec::new(), Vec::new());
    for line in String::from_utf8(output.stdout)?.lines() {
        let (times, rest) = match line.split_once(' ') {
            Some(("imaplib", rest)) => (&mut imaplib, rest),
            Some(("raw", rest)) => (&mut raw, rest),
            _ => bail!("python3 printed {line:?}"),
        };
        let fields: Vec<f64> = rest.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
        let [select, fetch, cpu] = fields[..] else { bail!("python3 printed {line:?}") };
        times.push(Run { select, fetch, client_cpu: Some(cpu) });
    }
    Ok((imaplib, raw))
}

//! `bench-imap-idle`: CONNECTIONS IMAP connections logged in and in IDLE on a small INBOX.
//! Reported: the server's resident memory per connection (VmRSS once all are idling minus
//! VmRSS before the first, divided by CONNECTIONS), how many connections per second the
//! server sets up (connect, greeting, LOGIN, SELECT INBOX, IDLE's `+` — over all of them,
//! SETUPS_AT_ONCE at a time), and how long one APPEND takes to wake every idler (`* N
//! EXISTS` on each connection).
//!
//! Starts the release `hameau` (built next to this binary) on a fresh data directory under
//! DIR with `connections_max` and `connections_per_ip_max` above CONNECTIONS and
//! `plaintext_auth = true` (plain TCP). Raises this process's open-file limit to its hard
//! limit first, so that the server, its child, inherits it. All connections log in as ONE
//! account: its first login pays argon2id (done before measuring), the later ones hit the
//! credential cache. Connections come from SOURCES loopback addresses (127.0.0.1, .2, …)
//! so that ephemeral ports never run out.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! $CARGO_TARGET_DIR/release/bench-imap-idle [CONNECTIONS] [SETUPS_AT_ONCE] [SOURCES] [DIR]`
//! (defaults 10000, 64, 4, /var/tmp; the hard `ulimit -n` must exceed CONNECTIONS).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hameau_benches::imap::{Client, Rng, Setup, load_average, message, raise_nofile};
use hameau_benches::{cpu_seconds, percentile, status_kib};
use tokio::sync::{Semaphore, mpsc, watch};

/// Messages in the INBOX the connections select.
const MESSAGES: usize = 10;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let at_once: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64);
    let sources: u8 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let nofile = raise_nofile()?;
    if nofile < connections as u64 + 500 {
        bail!("the open-file limit is {nofile}, {connections} connections need more: raise the hard ulimit -n");
    }
    let budget = (connections + 100).to_string();
    let setup = Setup::new(
        "bench-imap-idle",
        &base,
        &[
            ("connections_max = 10000", &format!("connections_max = {budget}")),
            ("connections_per_ip_max = 200", &format!("connections_per_ip_max = {budget}")),
        ],
    )?;
    let server = setup.start();
    let addr = server.imap[0];
    let pid = server.child.id();
    let server_nofile = std::fs::read_to_string(format!("/proc/{pid}/limits"))?
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .map(|line| line.split_whitespace().nth(3).unwrap_or("?").to_string())
        .unwrap_or_default();
    println!(
        "bench-imap-idle: {connections} connections in IDLE, all logged in as ONE account (credential cache warm), \
         INBOX of {MESSAGES} messages, {at_once} set-ups at a time from {sources} source addresses, plain TCP with \
         plaintext_auth = true; open files: bench {nofile}, server {server_nofile}; server pid {pid}; load average {}",
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(measure(addr, pid, connections, at_once, sources));
    hameau_benches::imap::stop(server)?;
    drop(setup);
    result
}

async fn measure(addr: SocketAddr, pid: u32, connections: usize, at_once: usize, sources: u8) -> anyhow::Result<()> {
    // The INBOX, and the one login that pays argon2id.
    let mut writer = Client::login(addr, None).await?;
    let mut rng = Rng::new(7);
    for serial in 0..MESSAGES {
        writer.append("INBOX", "", &message(&mut rng, serial as u64, 1024)).await?.ok("APPEND")?;
    }
    writer.command("SELECT INBOX").await?.ok("SELECT")?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid_text = pid.to_string();
    let rss_before = status_kib(&pid_text, "VmRSS");
    let cpu_before = cpu_seconds(pid);

    let permits = Arc::new(Semaphore::new(at_once));
    let (ready_tx, mut ready_rx) = mpsc::channel::<anyhow::Result<f64>>(1024);
    let (append_tx, append_rx) = watch::channel(None::<Instant>);
    let (woken_tx, mut woken_rx) = mpsc::channel::<anyhow::Result<f64>>(1024);
    let start = Instant::now();
    for index in 0..connections {
        let local = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (index % sources.max(1) as usize) as u8));
        let (permits, ready, woken, append_rx) =
            (permits.clone(), ready_tx.clone(), woken_tx.clone(), append_rx.clone());
        tokio::spawn(async move {
            let permit = permits.acquire_owned().await.expect("semaphore open");
            let began = Instant::now();
            let client = set_up(addr, local).await;
            drop(permit);
            let mut client = match client {
                Ok(client) => client,
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                    return;
                }
            };
            let _ = ready.send(Ok(began.elapsed().as_secs_f64() * 1000.0)).await;
            let _ = woken.send(wait_for_exists(&mut client, append_rx).await).await;
        });
    }
    drop((ready_tx, woken_tx));
    let mut setups = Vec::with_capacity(connections);
    let mut failures = Vec::new();
    while setups.len() + failures.len() < connections {
        match ready_rx.recv().await.context("set-up tasks gone")? {
            Ok(ms) => setups.push(ms),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    let setup_s = start.elapsed().as_secs_f64();
    let setup_cpu = cpu_seconds(pid) - cpu_before;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = status_kib(&pid_text, "VmRSS");
    let idling = setups.len();
    println!(
        "{:<12} {:>10} {:>11} {:>13} {:>13} {:>13} {:>14}",
        "connections", "set-up s", "logins/s", "set-up p50", "set-up p99", "server CPU", "CPU/login"
    );
    println!(
        "{idling:<12} {setup_s:>10.2} {:>11.0} {:>11.2}ms {:>11.2}ms {:>12.1}s {:>12.0}µs",
        idling as f64 / setup_s,
        percentile(&setups, 0.5),
        percentile(&setups, 0.99),
        setup_cpu,
        1e6 * setup_cpu / idling.max(1) as f64
    );
    println!(
        "server VmRSS: {} KiB before, {} KiB with {idling} idling: {:.2} KiB per connection [target <= 8 KiB]",
        rss_before,
        rss_after,
        (rss_after as f64 - rss_before as f64) / idling.max(1) as f64
    );
    for failure in failures.iter().take(5) {
        println!("set-up failed: {failure}");
    }

    // One APPEND from another connection: every idler should see `* 11 EXISTS`.
    let appended = Instant::now();
    append_tx.send(Some(appended))?;
    writer.append("INBOX", "", &message(&mut rng, MESSAGES as u64, 1024)).await?.ok("APPEND")?;
    let append_ms = appended.elapsed().as_secs_f64() * 1000.0;
    let mut woken = Vec::with_capacity(idling);
    let mut missed = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while woken.len() + missed.len() < idling {
        match tokio::time::timeout_at(deadline, woken_rx.recv()).await {
            Ok(Some(Ok(ms))) => woken.push(ms),
            Ok(Some(Err(e))) => missed.push(format!("{e:#}")),
            Ok(None) => break,
            Err(_) => {
                missed.push("no EXISTS within 60 s".into());
                break;
            }
        }
    }
    println!(
        "one APPEND (OK after {append_ms:.1} ms) woke {} of {idling} idlers: EXISTS p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms \
         after the APPEND was sent; server VmRSS now {} KiB",
        woken.len(),
        percentile(&woken, 0.5),
        percentile(&woken, 0.99),
        percentile(&woken, 1.0),
        status_kib(&pid_text, "VmRSS")
    );
    for miss in missed.iter().take(5) {
        println!("idler: {miss}");
    }
    if !failures.is_empty() || woken.len() != idling {
        bail!("{} set-ups failed, {} of {idling} idlers not woken", failures.len(), idling - woken.len());
    }
    Ok(())
}

/// connect, greeting, LOGIN, SELECT INBOX, IDLE until its `+`.
async fn set_up(addr: SocketAddr, local: IpAddr) -> anyhow::Result<Client> {
    let mut client = Client::login(addr, Some(local)).await?;
    client.command("SELECT INBOX").await?.ok("SELECT")?;
    client.idle().await?;
    client.shrink();
    Ok(client)
}

/// Waits in IDLE for `* N EXISTS` with N above `MESSAGES`; ms since the APPEND was sent.
async fn wait_for_exists(client: &mut Client, mut append_rx: watch::Receiver<Option<Instant>>) -> anyhow::Result<f64> {
    loop {
        let line = client.read_line().await?;
        let text = String::from_utf8_lossy(&line);
        let count = text.strip_prefix("* ").and_then(|rest| rest.strip_suffix(" EXISTS"));
        if count.and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n > MESSAGES) {
            let appended = *append_rx.wait_for(Option::is_some).await?;
            return Ok(appended.expect("set").elapsed().as_secs_f64() * 1000.0);
        }
    }
}

//! `bench-imap-mixed`: CLIENTS IMAP clients on one INBOX of MESSAGES messages of about
//! 4 KiB, each sending a mix of commands one at a time (no pipelining, as real clients)
//! for SECONDS: FETCH FLAGS 1:* 5 %, UID FETCH of 20 consecutive messages (ENVELOPE
//! BODYSTRUCTURE) 20 %, UID FETCH BODY.PEEK[] of one message 25 %, SEARCH on headers or
//! flags 10 %, SEARCH BODY 2 %, UID STORE ±FLAGS on 1 to 3 messages 15 %, APPEND 5 %,
//! UID STORE \Deleted + UID EXPUNGE of one message 5 % (APPENDs and expunges balance, the
//! mailbox stays near MESSAGES), NOOP 8 %, SELECT 5 %.
//!
//! Starts the release `hameau` (built next to this binary) on a fresh data directory under
//! DIR (a real disk), plain TCP on the IMAP port with `plaintext_auth = true`, one account;
//! fills the INBOX with APPENDs from 10 connections, then runs the clients (tokio tasks,
//! one connection each: LOGIN, SELECT INBOX, then the mix). Reported: commands/s, p50 and
//! p99 per command kind, errors, server CPU and resident memory.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! $CARGO_TARGET_DIR/release/bench-imap-mixed [SECONDS] [CLIENTS] [MESSAGES] [DIR]`
//! (defaults 30, 20, 2000, /var/tmp). With `BENCH_IMAP_ONLY=KIND` (fetch-flags,
//! fetch-envelopes, fetch-body, search-header, search-body, store, append, expunge, noop,
//! select) the clients send that kind alone: its server CPU per command.
//! `BENCH_STORE=postgresql` (with `BENCH_PG_URL`, and `BENCH_PG_DATA` for the database's
//! CPU per command) runs on PostgreSQL; `BENCH_NODES=2` then starts a second node on the
//! same database, the clients shared between the two (server CPU is both nodes').

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hameau_benches::imap::{Client, Rng, SENDERS, Setup, Status, VOCABULARY_WORDS, load_average, message, word};
use hameau_benches::{cpu_seconds, percentile, status_kib};

const MESSAGE_BYTES: usize = 4096;
/// Connections that fill the mailbox before the measurement.
const LOADERS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FetchFlags,
    FetchEnvelopes,
    FetchBody,
    SearchHeader,
    SearchBody,
    Store,
    Append,
    Expunge,
    Noop,
    Select,
}

/// The mix, in percent, with each kind's short name (for `BENCH_IMAP_ONLY`).
const MIX: [(Kind, u32, &str, &str); 10] = [
    (Kind::FetchFlags, 5, "FETCH 1:* (FLAGS)", "fetch-flags"),
    (Kind::FetchEnvelopes, 20, "UID FETCH 20 (ENVELOPE BODYSTRUCTURE)", "fetch-envelopes"),
    (Kind::FetchBody, 25, "UID FETCH 1 BODY.PEEK[]", "fetch-body"),
    (Kind::SearchHeader, 10, "SEARCH FROM/SUBJECT/UNSEEN FLAGGED", "search-header"),
    (Kind::SearchBody, 2, "SEARCH BODY word", "search-body"),
    (Kind::Store, 15, "UID STORE ±FLAGS 1-3 msgs", "store"),
    (Kind::Append, 5, "APPEND 4 KiB", "append"),
    (Kind::Expunge, 5, "UID STORE \\Deleted+UID EXPUNGE", "expunge"),
    (Kind::Noop, 8, "NOOP", "noop"),
    (Kind::Select, 5, "SELECT INBOX", "select"),
];

/// What the clients share: the UIDs in the INBOX (sorted), as a client's cache would know
/// them, and the next message serial for APPEND.
struct Shared {
    uids: Mutex<Vec<u32>>,
    serial: AtomicU64,
    stop: AtomicBool,
}

/// One client's measurements, per kind (index in `MIX`).
#[derive(Default)]
struct Tally {
    latencies: Vec<Vec<f64>>,
    commands: u64,
    errors: Vec<u64>,
    first_errors: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    let clients: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    assert_eq!(MIX.iter().map(|(_, weight, ..)| weight).sum::<u32>(), 100);
    // BENCH_IMAP_ONLY=KIND runs one kind alone (its server CPU per command), e.g. search-body.
    let only = std::env::var("BENCH_IMAP_ONLY").ok();
    let weights: Vec<u32> = match &only {
        Some(name) => {
            if !MIX.iter().any(|(.., short)| short == name) {
                bail!("BENCH_IMAP_ONLY: {name} is none of {:?}", MIX.map(|(.., short)| short));
            }
            MIX.iter().map(|(.., short)| if short == name { 100 } else { 0 }).collect()
        }
        None => MIX.iter().map(|(_, weight, ..)| *weight).collect(),
    };

    let setup =
        Setup::new("bench-imap-mixed", &base, &[("connections_per_ip_max = 200", "connections_per_ip_max = 10000")])?;
    let nodes: usize = std::env::var("BENCH_NODES").ok().map(|n| n.parse()).transpose()?.unwrap_or(1);
    if !(1..=2).contains(&nodes) || (nodes == 2 && std::env::var("BENCH_STORE").map_or(true, |s| s != "postgresql")) {
        bail!("BENCH_NODES is 1, or 2 with BENCH_STORE=postgresql");
    }
    let server = setup.start();
    let second = (nodes == 2).then(|| setup.start());
    let addr = server.imap[0];
    let pid = server.child.id();
    let addrs: Vec<SocketAddr> = std::iter::once(addr).chain(second.as_ref().map(|server| server.imap[0])).collect();
    let pids: Vec<u32> = std::iter::once(pid).chain(second.as_ref().map(|server| server.child.id())).collect();
    let postmaster = hameau_benches::postmaster_pid();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!(
        "bench-imap-mixed: {clients} clients, one INBOX of {messages} messages of ~{} KiB, {seconds} s, \
         plain TCP with plaintext_auth = true, one command at a time, mix {}; server pid {pid}; load average {}",
        MESSAGE_BYTES / 1024,
        only.as_deref().map_or("as in the issue".to_string(), |name| format!("{name} only")),
        load_average()
    );
    let shared =
        Arc::new(Shared { uids: Mutex::new(Vec::new()), serial: AtomicU64::new(0), stop: AtomicBool::new(false) });
    let start = Instant::now();
    runtime.block_on(fill(addr, messages, &shared))?;
    let fill_s = start.elapsed().as_secs_f64();
    println!(
        "filled by APPEND from {LOADERS} connections: {messages} messages in {fill_s:.1} s ({:.0}/s); server RSS {} MiB",
        messages as f64 / fill_s,
        status_kib(&pid.to_string(), "VmRSS") / 1024
    );

    let cpu_of_nodes = || pids.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let cpu_before = cpu_of_nodes();
    let db_before = postmaster.map(hameau_benches::tree_cpu_seconds);
    let self_cpu_before = cpu_seconds(std::process::id());
    let (tallies, elapsed) = runtime.block_on(run(&addrs, clients, Duration::from_secs(seconds), &weights, &shared))?;
    let server_cpu = cpu_of_nodes() - cpu_before;
    let client_cpu = cpu_seconds(std::process::id()) - self_cpu_before;
    report(&tallies, &weights, elapsed, server_cpu, client_cpu);
    if let (Some(pid), Some(before)) = (postmaster, db_before) {
        let commands: u64 = tallies.iter().map(|tally| tally.commands).sum();
        let db = hameau_benches::tree_cpu_seconds(pid) - before;
        println!(
            "database CPU: {:.3} ms per command ({nodes} node(s)); nodes {:.3} ms per command",
            1000.0 * db / commands.max(1) as f64,
            1000.0 * server_cpu / commands.max(1) as f64
        );
    }
    println!(
        "server resident memory: {} MiB now, {} MiB at peak; INBOX now {} messages (client's view)",
        status_kib(&pid.to_string(), "VmRSS") / 1024,
        status_kib(&pid.to_string(), "VmHWM") / 1024,
        shared.uids.lock().unwrap().len()
    );
    if let Some(second) = second {
        // The other node's last changes are heard within a second.
        std::thread::sleep(Duration::from_secs(1));
        hameau_benches::imap::stop(second)?;
    }
    let exists = runtime.block_on(async {
        let mut client = Client::login(addr, None).await?;
        let selected = client.command("SELECT INBOX").await?.ok("SELECT")?;
        anyhow::Ok(selected.untagged.iter().find_map(|line| exists_count(line)).unwrap_or(0))
    })?;
    hameau_benches::imap::stop(server)?;
    let expected = shared.uids.lock().unwrap().len();
    println!("INBOX after the run: server says {exists} EXISTS, the clients expect {expected}");
    if exists != expected {
        bail!("the server has {exists} messages where the clients' APPENDs and EXPUNGEs leave {expected}");
    }
    drop(setup);
    Ok(())
}

/// `* N EXISTS` → N.
fn exists_count(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("* ")?.strip_suffix(" EXISTS")?;
    rest.parse().ok()
}

/// APPENDs `messages` messages from `LOADERS` connections; records their UIDs.
async fn fill(addr: SocketAddr, messages: usize, shared: &Arc<Shared>) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for loader in 0..LOADERS {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::login(addr, None).await?;
            let mut rng = Rng::new(1000 + loader as u64);
            for serial in (loader..messages).step_by(LOADERS) {
                let raw = message(&mut rng, serial as u64, MESSAGE_BYTES);
                // A third read, one in twenty flagged: SEARCH UNSEEN FLAGGED has work.
                let flags = match serial % 60 {
                    n if n % 3 == 0 => "\\Seen",
                    n if n % 20 == 1 => "\\Flagged",
                    _ => "",
                };
                let response = client.append("INBOX", flags, &raw).await?.ok("APPEND")?;
                let uid = append_uid(&response.text).context("APPEND without APPENDUID")?;
                insert(&shared.uids, uid);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    shared.serial.store(messages as u64, Ordering::Relaxed);
    Ok(())
}

/// `[APPENDUID validity uid] …` → uid (RFC 4315).
fn append_uid(text: &str) -> Option<u32> {
    let rest = text.strip_prefix("[APPENDUID ")?;
    rest.split([' ', ']']).nth(1)?.parse().ok()
}

fn insert(uids: &Mutex<Vec<u32>>, uid: u32) {
    let mut uids = uids.lock().unwrap();
    if let Err(at) = uids.binary_search(&uid) {
        uids.insert(at, uid);
    }
}

/// Connects the clients (LOGIN, SELECT INBOX), then lets them run the mix for `duration`.
async fn run(
    addrs: &[SocketAddr],
    clients: usize,
    duration: Duration,
    weights: &[u32],
    shared: &Arc<Shared>,
) -> anyhow::Result<(Vec<Tally>, Duration)> {
    let mut connected = Vec::new();
    for index in 0..clients {
        let mut client = Client::login(addrs[index % addrs.len()], None).await?;
        client.command("SELECT INBOX").await?.ok("SELECT")?;
        connected.push(client);
    }
    let start = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .enumerate()
        .map(|(index, client)| {
            let (shared, weights) = (shared.clone(), weights.to_vec());
            tokio::spawn(async move { client_loop(client, index as u64, &weights, &shared).await })
        })
        .collect();
    tokio::time::sleep(duration).await;
    shared.stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await?);
    }
    Ok((tallies, start.elapsed()))
}

async fn client_loop(mut client: Client, index: u64, weights: &[u32], shared: &Shared) -> Tally {
    let mut rng = Rng::new(index);
    let mut tally = Tally { latencies: vec![Vec::new(); MIX.len()], errors: vec![0; MIX.len()], ..Tally::default() };
    while !shared.stop.load(Ordering::Relaxed) {
        let mut pick = rng.below(100) as u32;
        let mut kind = 0;
        while pick >= weights[kind] {
            pick -= weights[kind];
            kind += 1;
        }
        let start = Instant::now();
        match one(&mut client, MIX[kind].0, &mut rng, shared).await {
            Ok((commands, failure)) => {
                tally.latencies[kind].push(start.elapsed().as_secs_f64() * 1000.0);
                tally.commands += commands;
                if let Some(failure) = failure {
                    tally.errors[kind] += 1;
                    if tally.first_errors.len() < 3 {
                        tally.first_errors.push(format!("{}: {failure}", MIX[kind].2));
                    }
                }
            }
            Err(e) => {
                tally.errors[kind] += 1;
                tally.first_errors.push(format!("client {index} stopped at {}: {e:#}", MIX[kind].2));
                break;
            }
        }
    }
    tally
}

/// Sends one operation; returns how many commands it took and what went wrong, if the
/// server said NO or BAD. Transport errors end the client.
async fn one(client: &mut Client, kind: Kind, rng: &mut Rng, shared: &Shared) -> anyhow::Result<(u64, Option<String>)> {
    let failed = |status: Status, text: &str| (status != Status::Ok).then(|| format!("{status:?} {text}"));
    let command = match kind {
        Kind::FetchFlags => "FETCH 1:* (FLAGS)".to_string(),
        Kind::FetchEnvelopes => {
            let uids = shared.uids.lock().unwrap();
            let first = rng.below(uids.len().saturating_sub(19));
            let last = (first + 19).min(uids.len() - 1);
            format!("UID FETCH {}:{} (ENVELOPE BODYSTRUCTURE)", uids[first], uids[last])
        }
        Kind::FetchBody => format!("UID FETCH {} BODY.PEEK[]", pick_uid(shared, rng)),
        Kind::SearchHeader => match rng.below(3) {
            0 => format!("SEARCH FROM \"dupont{}@\"", rng.below(SENDERS)),
            1 => "SEARCH UNSEEN FLAGGED".to_string(),
            _ => format!("UID SEARCH SUBJECT \"{}\"", word(rng.skewed(VOCABULARY_WORDS))),
        },
        Kind::SearchBody => format!("SEARCH BODY \"{}\"", word(rng.below(VOCABULARY_WORDS))),
        Kind::Store => {
            let uids = shared.uids.lock().unwrap();
            let first = rng.below(uids.len().saturating_sub(2));
            let count = 1 + rng.below(3);
            let set: Vec<String> = uids[first..(first + count).min(uids.len())].iter().map(u32::to_string).collect();
            let sign = if rng.below(2) == 0 { '+' } else { '-' };
            let flag = if rng.below(2) == 0 { "\\Flagged" } else { "\\Seen" };
            format!("UID STORE {} {sign}FLAGS ({flag})", set.join(","))
        }
        Kind::Append => {
            let serial = shared.serial.fetch_add(1, Ordering::Relaxed);
            let raw = message(rng, serial, MESSAGE_BYTES);
            let response = client.append("INBOX", "", &raw).await?;
            if let Some(uid) = append_uid(&response.text) {
                insert(&shared.uids, uid);
            }
            return Ok((1, failed(response.status, &response.text)));
        }
        Kind::Expunge => {
            // Taken out of the shared view first, so that no two clients expunge one UID.
            let uid = {
                let mut uids = shared.uids.lock().unwrap();
                // Expunges alone (BENCH_IMAP_ONLY) must not empty the mailbox.
                (uids.len() >= 100).then(|| {
                    let at = rng.below(uids.len());
                    uids.remove(at)
                })
            };
            let Some(uid) = uid else {
                let noop = client.command("NOOP").await?;
                return Ok((1, failed(noop.status, &noop.text)));
            };
            let flagged = client.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)")).await?;
            if flagged.status != Status::Ok {
                return Ok((1, failed(flagged.status, &flagged.text)));
            }
            let expunged = client.command(&format!("UID EXPUNGE {uid}")).await?;
            if expunged.status == Status::Ok && expunged.count(b" EXPUNGE") + expunged.count(b"VANISHED") == 0 {
                return Ok((2, Some(format!("UID EXPUNGE {uid}: no EXPUNGE response"))));
            }
            return Ok((2, failed(expunged.status, &expunged.text)));
        }
        Kind::Noop => "NOOP".to_string(),
        Kind::Select => "SELECT INBOX".to_string(),
    };
    let response = client.command(&command).await?;
    let mut failure = failed(response.status, &response.text).map(|f| format!("{command}: {f}"));
    if failure.is_none() && kind == Kind::FetchBody && response.count(b"BODY[]") == 0 {
        failure = Some(format!("{command}: no BODY[] returned"));
    }
    Ok((1, failure))
}

fn pick_uid(shared: &Shared, rng: &mut Rng) -> u32 {
    let uids = shared.uids.lock().unwrap();
    uids[rng.below(uids.len())]
}

fn report(tallies: &[Tally], weights: &[u32], elapsed: Duration, server_cpu: f64, client_cpu: f64) {
    let seconds = elapsed.as_secs_f64();
    println!(
        "{:<36} {:>6} {:>8} {:>8} {:>9} {:>9} {:>7}",
        "command", "share", "ops", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    let mut operations = 0;
    for (kind, (_, _, name, _)) in MIX.iter().enumerate() {
        let weight = weights[kind];
        let latencies: Vec<f64> = tallies.iter().flat_map(|t| t.latencies[kind].iter().copied()).collect();
        let errors: u64 = tallies.iter().map(|t| t.errors[kind]).sum();
        operations += latencies.len();
        println!(
            "{name:<36} {:>5}% {:>8} {:>8.0} {:>9.2} {:>9.2} {errors:>7}",
            weight,
            latencies.len(),
            latencies.len() as f64 / seconds,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    let commands: u64 = tallies.iter().map(|t| t.commands).sum();
    println!(
        "total: {operations} operations, {commands} commands in {seconds:.1} s = {:.0} commands/s ({:.0} operations/s) \
         [target >= 5000 commands/s]",
        commands as f64 / seconds,
        operations as f64 / seconds
    );
    println!(
        "server CPU: {server_cpu:.1} s = {:.0}% of one core, {:.0} µs per command; bench client CPU {client_cpu:.1} s",
        100.0 * server_cpu / seconds,
        1e6 * server_cpu / commands.max(1) as f64
    );
    for error in tallies.iter().flat_map(|t| &t.first_errors).take(10) {
        println!("error: {error}");
    }
}

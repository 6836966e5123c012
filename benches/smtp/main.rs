//! `bench-smtp`: the MX under Postfix's `smtp-source` (Debian package `postfix`).
//!
//! Starts the release `hameau` (built next to this binary) on a fresh data directory under
//! /var/tmp (a real disk; synced storage as in production) with a knotd serving the
//! sender's SPF and DMARC records, so every message is authenticated as on the internet.
//! Then, for each mode, `smtp-source` sends MESSAGES messages of BYTES bytes over SESSIONS
//! parallel sessions to one mailbox: first one connection per message, then with `-d`
//! (several messages per connection). Reported per mode: messages/s, server CPU per message
//! and the latency of a probe client that sends one message per connection alongside the
//! load (connect to the `250` after DATA: p50, p99, max). At the end the mailbox is opened
//! and every acknowledged message counted.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! target/release/bench-smtp [MESSAGES] [SESSIONS] [BYTES] [DIR]`
//! (defaults 20000, 20, 4096, /var/tmp). `BENCH_FILTER=off` runs the MX without its filter
//! stage (`[filter] enabled = false`), to compare with the default run (where the shared
//! classifier is first trained on 420 synthetic messages, so that it scores every one);
//! `BENCH_FILTER=untrained` runs the filter with an untrained classifier (which then reads
//! two counters per message and scores nothing). `BENCH_TEXT_INDEX=off` runs without the
//! text index (`[mail] text_index = false`), to compare its cost on delivery (issue 15).
//! `BENCH_DELIVERY_CACHE=off` reads each delivery's mailboxes and vacation response from
//! the store (`[mail] delivery_cache_entries_max = 0`).
//! `BENCH_STORE=postgresql` with `BENCH_PG_URL` stores in that PostgreSQL database (a
//! schema of its own) instead of RocksDB (issue 16; `scripts/pg-cluster.sh` starts one);
//! with `BENCH_PG_DATA` (the cluster's data directory) the database's CPU per message is
//! reported too. `BENCH_NODES=2` (PostgreSQL only) starts a second node on the same
//! database and splits the sessions and messages between the two; CPU is then both nodes'.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hameau_benches::{cpu_seconds, percentile, status_kib};
use hameau_testkit::{Server, set_config, start_knot};

const RECIPIENT: &str = "bench@a.test";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20_000);
    let sessions: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    let bytes: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(4096);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let smtp_source = ["/usr/sbin/smtp-source", "/usr/bin/smtp-source"].into_iter().find(|p| Path::new(p).exists());
    let smtp_source = smtp_source.context("smtp-source is needed: apt-get install postfix")?;
    let (dir, hameau, config) = hameau_benches::init_data_dir("bench-smtp", &base)?;
    let knot_dir = tempfile::tempdir()?;
    let zones = [
        (
            "sender.test",
            "sender.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
             _dmarc.sender.test. 300 IN TXT \"v=DMARC1; p=reject\"\n"
                .to_string(),
        ),
        ("test", String::new()),
    ];
    let knot = start_knot(knot_dir.path(), &zones);
    set_config(&config, "resolvers = []", &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port));
    // `BENCH_FILTER=off`: the same run without the filter stage (issue 14 compares both).
    let filter = std::env::var("BENCH_FILTER").unwrap_or_else(|_| "on".into());
    if filter == "off" {
        let text = std::fs::read_to_string(&config)?;
        let at = text.find("[filter]").context("no [filter] section in the configuration")?;
        let (before, after) = text.split_at(at);
        std::fs::write(&config, format!("{before}{}", after.replacen("enabled = true", "enabled = false", 1)))?;
    }
    // Every session comes from 127.0.0.1: the per-address limit is raised for the bench.
    set_config(&config, "connections_per_ip_max = 20", "connections_per_ip_max = 10000");
    for command in [
        &["tenant", "create", "bench", "--name", "Bench"][..],
        &["domain", "create", "a.test", "--tenant", "bench"],
        &["account", "create", RECIPIENT],
    ] {
        let output = Command::new(&hameau).args(command).args(["--config", config.to_str().unwrap()]).output()?;
        if !output.status.success() {
            bail!("hameau {command:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
    }

    if std::env::var("BENCH_TEXT_INDEX").is_ok_and(|value| value == "off") {
        set_config(&config, "text_index = true", "text_index = false");
    }
    if std::env::var("BENCH_DELIVERY_CACHE").is_ok_and(|value| value == "off") {
        set_config(&config, "delivery_cache_entries_max = 20000", "delivery_cache_entries_max = 0");
    }
    // `BENCH_FILTER=untrained`: the filter without a trained classifier (its cost apart).
    if filter == "on" {
        seed_classifier(&hameau, &config, dir.path())?;
    }
    let nodes: usize = std::env::var("BENCH_NODES").ok().map(|n| n.parse()).transpose()?.unwrap_or(1);
    if nodes != 1 && std::env::var("BENCH_STORE").map_or(true, |store| store != "postgresql") {
        bail!("BENCH_NODES={nodes}: several nodes need BENCH_STORE=postgresql");
    }
    if !(1..=2).contains(&nodes) {
        bail!("BENCH_NODES is 1 or 2");
    }
    let mut server = Server::start(&hameau, &config);
    let mut second = (nodes == 2).then(|| Server::start(&hameau, &config));
    let addr = server.smtp[0];
    let pid = server.child.id();
    let pids: Vec<u32> = std::iter::once(pid).chain(second.as_ref().map(|server| server.child.id())).collect();
    let addrs: Vec<SocketAddr> = std::iter::once(addr).chain(second.as_ref().map(|server| server.smtp[0])).collect();
    let postmaster = hameau_benches::postmaster_pid();
    println!(
        "bench-smtp: {messages} messages of {bytes} bytes, {sessions} sessions, to one mailbox, filter {filter}, {nodes} node(s); data under {}",
        base.display()
    );
    println!(
        "{:<28} {:>9} {:>8} {:>12} {:>10} {:>10} {:>10} {:>12}",
        "mode", "messages", "msg/s", "CPU ms/msg", "probe p50", "probe p99", "probe max", "DB ms/msg"
    );
    let mut sent = 0;
    for (mode, flags) in [("one connection per message", &[][..]), ("-d (connection reused)", &["-d"][..])] {
        let stop = Arc::new(AtomicBool::new(false));
        let probe = std::thread::spawn({
            let stop = stop.clone();
            move || probe(addr, bytes as usize, &stop)
        });
        let cpu_of_nodes = || pids.iter().map(|pid| cpu_seconds(*pid)).sum::<f64>();
        let cpu_before = cpu_of_nodes();
        let db_before = postmaster.map(hameau_benches::tree_cpu_seconds);
        let start = Instant::now();
        // One smtp-source per node, each with its share of the sessions and messages.
        let share = |total: u64, index: usize| total / nodes as u64 + u64::from((index as u64) < total % nodes as u64);
        let sources: Vec<_> = addrs
            .iter()
            .enumerate()
            .map(|(index, addr)| {
                Command::new(smtp_source)
                    .args(flags)
                    .args(["-s", &share(sessions, index).to_string(), "-m", &share(messages, index).to_string()])
                    .args(["-l", &bytes.to_string()])
                    .args(["-M", "sender.test", "-f", "bench@sender.test", "-t", RECIPIENT])
                    .arg(format!("127.0.0.1:{}", addr.port()))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for source in sources {
            let output = source.wait_with_output()?;
            if !output.status.success() {
                bail!("smtp-source failed: {}", String::from_utf8_lossy(&output.stderr));
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_of_nodes() - cpu_before;
        let db_ms = match (postmaster, db_before) {
            (Some(pid), Some(before)) => {
                format!("{:.3}", 1000.0 * (hameau_benches::tree_cpu_seconds(pid) - before) / messages as f64)
            }
            _ => "-".to_string(),
        };
        stop.store(true, Ordering::Relaxed);
        let (latencies, probed) = probe.join().expect("probe thread");
        sent += messages + probed;
        println!(
            "{mode:<28} {messages:>9} {:>8.0} {:>12.3} {:>8.2}ms {:>8.2}ms {:>8.2}ms {db_ms:>12}",
            messages as f64 / elapsed,
            1000.0 * cpu / messages as f64,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
        );
    }
    println!(
        "server resident memory: {} MiB now, {} MiB at peak",
        status_kib(&pid.to_string(), "VmRSS") / 1024,
        status_kib(&pid.to_string(), "VmHWM") / 1024
    );
    for server in std::iter::once(&mut server).chain(second.as_mut()) {
        server.signal(libc::SIGTERM);
        server.wait(Duration::from_secs(60)).context("the server did not stop")?;
    }
    drop((server, second));
    drop(knot);

    let stored = count_inbox(&hameau, &config)?;
    println!("acknowledged {sent}, found in the mailbox {stored}");
    if stored != sent as usize {
        bail!("{sent} messages acknowledged but {stored} stored");
    }
    Ok(())
}

/// Sends one message per connection, one after the other, until `stop`; returns the
/// latencies (ms, connect to the 250 after DATA) and how many were acknowledged.
fn probe(addr: SocketAddr, bytes: usize, stop: &AtomicBool) -> (Vec<f64>, u64) {
    let body: String = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
        .repeat(bytes / 75 + 1)
        .chars()
        .take(bytes)
        .collect();
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = Instant::now();
        match send(addr, &body) {
            Ok(()) => latencies.push(start.elapsed().as_secs_f64() * 1000.0),
            Err(e) => eprintln!("probe: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let acknowledged = latencies.len() as u64;
    (latencies, acknowledged)
}

fn send(addr: SocketAddr, body: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut expect = |code: &str| -> anyhow::Result<()> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                bail!("connection closed");
            }
            if !line.starts_with(code) {
                bail!("expected {code}, got {line:?}");
            }
            if line.as_bytes().get(3) == Some(&b' ') {
                return Ok(());
            }
        }
    };
    expect("220")?;
    writer.write_all(b"EHLO sender.test\r\n")?;
    expect("250")?;
    writer.write_all(format!("MAIL FROM:<probe@sender.test>\r\nRCPT TO:<{RECIPIENT}>\r\nDATA\r\n").as_bytes())?;
    expect("250")?;
    expect("250")?;
    expect("354")?;
    writer.write_all(
        format!("From: probe@sender.test\r\nTo: {RECIPIENT}\r\nSubject: probe\r\n\r\n{body}\r\n.\r\n").as_bytes(),
    )?;
    expect("250")?;
    writer.write_all(b"QUIT\r\n")?;
    Ok(())
}

/// Trains the shared classifier past `filter.bayes_min_messages` (200 of each class) with
/// synthetic messages, so that the filter's run reads the classifier's counts for every
/// message as a trained server does.
fn seed_classifier(hameau: &Path, config: &Path, dir: &Path) -> anyhow::Result<()> {
    const WORDS: [&str; 12] = [
        "mairie", "conseil", "budget", "facture", "urgent", "gagnez", "offre", "gratuit", "réunion", "école", "prix",
        "cliquez",
    ];
    for (class, offset) in [("spam", 5), ("ham", 0)] {
        let mut mbox = String::new();
        for i in 0..210 {
            let words: Vec<&str> = (0..40).map(|j| WORDS[(i * 7 + j * 3 + offset) % WORDS.len()]).collect();
            mbox.push_str(&format!(
                "From seed@{class}.test Mon Nov 30 00:00:00 2026\nFrom: seed@{class}.test\nSubject: {class} {i}\nMessage-ID: <{i}@{class}.test>\n\n{}\n\n",
                words.join(" ")
            ));
        }
        let file = dir.join(format!("{class}.mbox"));
        std::fs::write(&file, mbox)?;
        let output = Command::new(hameau)
            .args(["filter", "learn", &format!("--{class}")])
            .arg(&file)
            .args(["--config", config.to_str().unwrap()])
            .output()?;
        if !output.status.success() {
            bail!("hameau filter learn: {}", String::from_utf8_lossy(&output.stderr));
        }
    }
    Ok(())
}

/// The messages in the bench mailbox's INBOX, counted from the store of the stopped server.
fn count_inbox(hameau: &Path, config: &Path) -> anyhow::Result<usize> {
    let output =
        Command::new(hameau).args(["account", "show", RECIPIENT, "--config", config.to_str().unwrap()]).output()?;
    let shown: serde_json::Value = serde_json::from_slice(&output.stdout).context("hameau account show")?;
    let id = shown["id"].as_u64().context("account id")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = hameau_store::Store::open(&hameau_config::Config::load(config)?.store).await?;
        let mail = hameau_mailbox::Mail::new(store.clone());
        let inbox = mail.mailbox_by_role(id, hameau_mailbox::Role::Inbox).await?.context("no INBOX")?;
        let count = mail.uids(id, inbox.id).await?.len();
        store.close().await?;
        Ok(count)
    })
}

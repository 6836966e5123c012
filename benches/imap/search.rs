//! `bench-imap-search`: IMAP `UID SEARCH TEXT` on an INBOX of MESSAGES messages (about
//! 1 KiB each, the words of `bench-imap-big`), with the text index and without it.
//!
//! The mailbox is seeded directly through `hameau_mailbox::Mail::ingest_many` in the store
//! of the stopped server, then its text index is built (`Mail::index_text`, timed: the
//! build an existing account gets on its first query); the server (built next to this
//! binary) starts on it, plain TCP with `plaintext_auth = true`, and one connection runs
//! each needle RUNS times after one warm-up (which fills the shared caches), timing each
//! SEARCH from sending it to its tagged OK. The server then restarts with
//! `mail.text_index = false` and runs each needle RUNS_WITHOUT times: the counts must be
//! the same, the times are those of the scan that the index replaces.
//!
//! Run: `cargo build --release -p hameau -p hameau-benches &&
//! $CARGO_TARGET_DIR/release/bench-imap-search [MESSAGES] [RUNS] [RUNS_WITHOUT] [DIR]`
//! (defaults 100000, 50, 5, /var/tmp). `NEEDLE=2` runs only the needles whose name begins
//! so (here the two-letter scan), to profile one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use hameau_benches::imap::{Client, Dates, Setup, build_text_index, load_average, seed_inbox, sender, word};
use hameau_benches::{percentile, status_kib};

const MESSAGE_BYTES: usize = 1024;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let runs: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(50);
    let runs_without: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let setup = Setup::new("bench-imap-search", &base, &[])?;
    let account = setup.account_id()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let store_path = setup.data.join("store");
    let start = Instant::now();
    runtime.block_on(seed_inbox(&store_path, account, messages, MESSAGE_BYTES, Dates::AllNow))?;
    let seed_s = start.elapsed().as_secs_f64();
    let bytes_before = dir_bytes(&store_path);
    let start = Instant::now();
    let indexed = runtime.block_on(build_text_index(&store_path, account))?;
    let index_s = start.elapsed().as_secs_f64();
    let bytes_after = dir_bytes(&store_path);
    println!(
        "bench-imap-search: INBOX of {messages} messages of ~{} KiB (seeded in {seed_s:.1} s); text index built \
         for {indexed} emails in {index_s:.1} s ({:.0}/s), store {:.0} MiB before, {:.0} MiB after; load average {}",
        MESSAGE_BYTES / 1024,
        indexed as f64 / index_s,
        bytes_before as f64 / (1 << 20) as f64,
        bytes_after as f64 / (1 << 20) as f64,
        load_average()
    );
    let needles = vec![
        ("rare word", word(2_999)),
        ("mid word", word(500)),
        ("common word", word(3)),
        ("sender", sender(17).split('@').next().unwrap_or_default().to_string()),
        ("two words", format!("{} {}", word(0), word(1))),
        ("absent", "introuvable".to_string()),
        ("2 chars (scan)", "ou".to_string()),
    ];
    // `NEEDLE=<name prefix>` runs only those needles (to profile one).
    let needles: Vec<_> = match std::env::var("NEEDLE") {
        Ok(prefix) => needles.into_iter().filter(|(name, _)| name.starts_with(&prefix)).collect(),
        Err(_) => needles,
    };
    let server = setup.start();
    let pid = server.child.id();
    let with = runtime.block_on(searches(server.imap[0], &needles, runs))?;
    let rss = status_kib(&pid.to_string(), "VmHWM") / 1024;
    hameau_benches::imap::stop(server)?;
    hameau_testkit::set_config(&setup.config, "text_index = true", "text_index = false");
    let server = setup.start();
    let without = runtime.block_on(searches(server.imap[0], &needles, runs_without))?;
    hameau_benches::imap::stop(server)?;
    println!(
        "{:<16} {:>24} {:>9} {:>9} {:>9}   {:>9} {:>9}",
        "needle", "", "results", "p50 ms", "p99 ms", "scan p50", "scan p99"
    );
    for ((name, needle), (with, without)) in needles.iter().zip(with.iter().zip(&without)) {
        if with.0 != without.0 {
            bail!("{name} {needle:?}: {} results with the index, {} without", with.0, without.0);
        }
        println!(
            "{name:<16} {needle:>24} {:>9} {:>9.2} {:>9.2}   {:>9.1} {:>9.1}",
            with.0,
            percentile(&with.1, 0.5),
            percentile(&with.1, 0.99),
            percentile(&without.1, 0.5),
            percentile(&without.1, 0.99),
        );
    }
    println!("target: SEARCH TEXT p50 <= 20 ms on 100,000 messages; server peak VmRSS {rss} MiB (with the index)");
    drop(setup);
    Ok(())
}

/// For each needle, its result count and the times (ms) of `runs` searches after a warm-up.
async fn searches(addr: SocketAddr, needles: &[(&str, String)], runs: usize) -> anyhow::Result<Vec<(usize, Vec<f64>)>> {
    let mut client = Client::login(addr, None).await?;
    client.command("SELECT INBOX").await?.ok("SELECT")?;
    let mut out = Vec::new();
    for (_, needle) in needles {
        // A literal (LITERAL+): the needle may hold UTF-8.
        let command = format!("UID SEARCH CHARSET UTF-8 TEXT {{{}+}}\r\n{needle}", needle.len());
        let count = client.command(&command).await?.ok("SEARCH")?.search_results();
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let found = client.command(&command).await?.ok("SEARCH")?.search_results();
            times.push(start.elapsed().as_secs_f64() * 1000.0);
            if found != count {
                bail!("SEARCH TEXT {needle:?}: {found} results, then {count}");
            }
        }
        out.push((count, times));
    }
    client.command("LOGOUT").await?;
    Ok(out)
}

/// Bytes of the files under `path`.
fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => stack.push(entry.path()),
                Ok(meta) => total += meta.len(),
                Err(_) => {}
            }
        }
    }
    total
}

//! `bench-move-tenant`: how long `hameau cluster move` (`Mail::move_tenant`) takes, and how
//! long a tenant's mail waits, for a commune of ACCOUNTS mailboxes and MESSAGES messages of
//! about 8 KiB, between two PostgreSQL databases, while deliveries keep coming for it at
//! RATE msg/s (the mail model's `ingest`, the MX's way in).
//!
//! Reported: the first copy's time and rate (the tenant served meanwhile), the pause (its
//! mail waits), what the catch-up wrote, the deliveries during the move (their latency
//! percentiles and the slowest: one that waited out the pause), failures (there must be
//! none with `move_wait_ms` above the pause), and this process's peak memory.
//!
//! Run: `BENCH_PG_URL=postgresql://… BENCH_PG_URL_B=postgresql://… cargo run --release -p
//! hameau-benches --bin bench-move-tenant [MESSAGES] [ACCOUNTS] [RATE]` (defaults 10000, 5,
//! 20). Each run uses schemas of its own in both databases (`bench_move_<pid>`), dropped by
//! nobody: use throwaway clusters (`scripts/pg-cluster.sh start DIR`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hameau_benches::{percentile, status_kib};
use hameau_mailbox::{AccountTenants, AccountsOf, Beside, Ingest, Mail, Quota, Role, TenantOf};
use hameau_store::placement::Clusters;
use hameau_store::{Options, Store};

const NOW: u64 = 1_795_000_000;
const TENANT: &str = "commune";
/// mail.ingest_batch_max (200 by default).
const BATCH: usize = 200;

/// Every account is the commune's.
#[derive(Debug)]
struct OneTenant;

impl AccountTenants for OneTenant {
    fn tenant_of(&self, _account: u64) -> TenantOf<'_> {
        Box::pin(async { Ok(Some(TENANT.to_string())) })
    }

    fn accounts_of<'a>(&'a self, _tenant: &'a str) -> AccountsOf<'a> {
        Box::pin(async { Ok((1..=ACCOUNTS.load(std::sync::atomic::Ordering::Relaxed)).collect()) })
    }
}

/// How many accounts the commune has (the bench's second argument).
static ACCOUNTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(5);

fn message(n: usize) -> Vec<u8> {
    let line = format!("ligne du message {n}, texte du conseil municipal et de ses annexes.\r\n");
    format!(
        "From: Jeanne <jeanne@mairie-a.fr>\r\nTo: accueil@mairie-b.fr\r\nSubject: message {n}\r\n\
         Message-ID: <m{n}@mairie-a.fr>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n{}",
        line.repeat(8192 / line.len())
    )
    .into_bytes()
}

fn ingest(n: usize, inbox: u32) -> Ingest {
    let quota = Quota { tenant: Some(TENANT.into()), ..Quota::default() };
    Ingest { raw: message(n).into(), mailboxes: vec![inbox], keywords: vec![], received_at: NOW, quota }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let accounts: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5).max(1);
    let rate: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(20);
    ACCOUNTS.store(accounts, std::sync::atomic::Ordering::Relaxed);
    let url_a = std::env::var("BENCH_PG_URL").map_err(|_| anyhow::anyhow!("BENCH_PG_URL: the first database"))?;
    let url_b = std::env::var("BENCH_PG_URL_B").map_err(|_| anyhow::anyhow!("BENCH_PG_URL_B: the second database"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(run(messages, accounts, rate, &url_a, &url_b))
}

async fn run(messages: usize, accounts: u64, rate: u64, url_a: &str, url_b: &str) -> anyhow::Result<()> {
    let schema = format!("bench_move_{}", std::process::id());
    let open = |url: &str| Options { schema: schema.clone(), ..Options::postgresql(url) };
    let control = Store::open(&open(url_a)).await?;
    let b = Store::open(&open(url_b)).await?;
    let move_wait = Duration::from_secs(60);
    let clusters = Clusters::new(control.clone(), BTreeMap::from([("b".into(), b)]), move_wait).await?;
    let mail = Mail::new(control).with_placement(clusters, Arc::new(OneTenant));
    println!("bench-move-tenant: {messages} messages of ~8 KiB in {accounts} mailboxes, {rate} msg/s during the move");
    let mut inboxes = Vec::new();
    for account in 1..=accounts {
        let mailboxes = mail.ensure_account(account, NOW).await?;
        inboxes.push(mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).map(|m| m.id).unwrap_or(1));
    }
    let seeding = Instant::now();
    for start in (0..messages).step_by(BATCH) {
        let batch = (start..(start + BATCH).min(messages))
            .map(|n| {
                let account = (n as u64 % accounts) + 1;
                (account, ingest(n, inboxes[account as usize - 1]))
            })
            .collect();
        mail.ingest_many(batch).await?;
    }
    println!("seeded in {:.1} s", seeding.elapsed().as_secs_f64());

    // Deliveries during the move, one every 1/RATE s, each timed.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn({
        let (mail, inboxes) = (mail.clone(), inboxes.clone());
        async move {
            let (mut latencies, mut failures) = (Vec::new(), 0u64);
            let period = Duration::from_micros(1_000_000 / rate.max(1));
            let mut n = messages;
            while !*stopped.borrow() && rate > 0 {
                let account = (n as u64 % accounts) + 1;
                let started = Instant::now();
                match mail.ingest(account, ingest(n, inboxes[account as usize - 1])).await {
                    Ok(_) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        failures += 1;
                        eprintln!("delivery failed: {e}");
                    }
                }
                n += 1;
                tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
            }
            (latencies, failures)
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let beside = Beside { prefix_of: &|account| format!("none/{account}/").into_bytes(), account_of: &|_| None };
    let report = mail.move_tenant(TENANT, "b", Duration::ZERO, &beside).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop.send(true);
    let (latencies, failures) = load.await?;
    let copy_s = report.copy_ms as f64 / 1000.0;
    println!(
        "copy: {} records, {} blobs, {:.1} MB in {copy_s:.2} s ({:.0} msg/s, {:.1} MB/s)",
        report.copied.digest.keys,
        report.copied.digest.blobs,
        report.copied.blob_bytes as f64 / 1e6,
        messages as f64 / copy_s.max(1e-3),
        report.copied.blob_bytes as f64 / 1e6 / copy_s.max(1e-3)
    );
    println!(
        "pause: {} ms ({:.3} ms per 1,000 messages); catch-up wrote {} and removed {} records; {} records removed from main",
        report.pause_ms,
        report.pause_ms as f64 * 1000.0 / messages.max(1) as f64,
        report.caught_up.written,
        report.caught_up.removed,
        report.removed
    );
    println!(
        "deliveries during the move: {} (failed {failures}), latency ms p50 {:.1} p99 {:.1} max {:.1}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.iter().copied().fold(0.0, f64::max)
    );
    println!("peak memory of this process: {} MiB", status_kib("self", "VmHWM") / 1024);
    anyhow::ensure!(failures == 0, "{failures} deliveries failed");
    Ok(())
}

//! `bench-backup`: backup and restore times of `hameau_backup` (the code `hameau backup`
//! and `hameau restore` run), on stores seeded through `hameau_mailbox::Mail::ingest_many`
//! (the MX's way in) with messages of about 4 KiB:
//!
//! 1. one mailbox of MESSAGES messages: full backup, restore, then an incremental backup
//!    after 1,000 more messages;
//! 2. a commune of 20 mailboxes and 20,000 messages: full backup and restore
//!    (target: restore under a minute on this machine).
//!
//! Run: `cargo run -p hameau-benches --bin bench-backup [MESSAGES] [DIR]` (defaults 100000,
//! /var/tmp; the dev profile builds dependencies, RocksDB included, optimised).

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hameau_backup::{BackupOptions, RestoreOptions};
use hameau_benches::imap::{Rng, message};
use hameau_mailbox::{Ingest, Mail, Role};
use hameau_store::{Options, Store};

const MESSAGE_BYTES: usize = 4096;
// mail.ingest_batch_max (200 by default).
const BATCH: usize = 200;
const SEEDERS: usize = 8;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!("bench-backup: messages of ~{} KiB, data under {base}", MESSAGE_BYTES / 1024);
    println!(
        "{:<34} {:>9} {:>10} {:>10} {:>10} {:>9} {:>10}",
        "case", "messages", "seed s", "backup s", "restore s", "msg/s in", "backup MB"
    );
    runtime.block_on(case(&format!("one mailbox, {messages} messages"), Path::new(&base), 1, messages, true))?;
    runtime.block_on(case("commune: 20 mailboxes, 20,000 msgs", Path::new(&base), 20, 1000, false))?;
    Ok(())
}

async fn case(name: &str, base: &Path, accounts: u64, per_account: usize, incremental: bool) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("bench-backup-").tempdir_in(base)?;
    let store = Store::open(&Options::rocksdb(dir.path().join("store"))).await?;
    let start = Instant::now();
    for account in 1..=accounts {
        seed(&store, account, per_account, 0).await?;
    }
    let seed_s = start.elapsed().as_secs_f64();
    let set = dir.path().join("set");
    let start = Instant::now();
    let report = hameau_backup::backup(&store, &set, &BackupOptions::default(), now()).await?;
    let backup_s = start.elapsed().as_secs_f64();
    let total = accounts as usize * per_account;
    anyhow::ensure!(report.counts.blobs_written as usize == total, "{report:?}");
    let restored = Store::open(&Options::rocksdb(dir.path().join("restored"))).await?;
    let start = Instant::now();
    let restore = hameau_backup::restore(&restored, &set, &RestoreOptions::default()).await?;
    // As `hameau restore` does by default: a new UIDVALIDITY for every mailbox.
    Mail::new(restored.clone()).renew_uid_validity_all(now()).await?;
    let restore_s = start.elapsed().as_secs_f64();
    anyhow::ensure!(restore.blobs as usize == total, "{restore:?}");
    let inbox_count = Mail::new(restored.clone()).uids(1, inbox(&restored, 1).await?).await?.len();
    anyhow::ensure!(inbox_count == per_account, "restored INBOX holds {inbox_count}");
    restored.close().await?;
    println!(
        "{name:<34} {total:>9} {seed_s:>10.1} {backup_s:>10.1} {restore_s:>10.1} {:>9.0} {:>10.0}",
        total as f64 / restore_s,
        report.bytes as f64 / 1e6
    );
    if incremental {
        seed(&store, 1, 1000, per_account as u64).await?;
        let start = Instant::now();
        let report = hameau_backup::backup(&store, &set, &BackupOptions::default(), now()).await?;
        println!(
            "{:<34} {:>9} {:>10} {:>10.2} {:>10} {:>9} {:>10.1}   ({} records, {} message files)",
            "  incremental after 1,000 more",
            1000,
            "-",
            start.elapsed().as_secs_f64(),
            "-",
            "-",
            report.bytes as f64 / 1e6,
            report.counts.records,
            report.counts.blobs_written
        );
    }
    store.close().await?;
    Ok(())
}

async fn inbox(store: &Store, account: u64) -> anyhow::Result<u32> {
    Ok(Mail::new(store.clone()).mailbox_by_role(account, Role::Inbox).await?.context("no INBOX")?.id)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `messages` messages into `account`'s INBOX, serials from `first` (distinct content).
async fn seed(store: &Store, account: u64, messages: usize, first: u64) -> anyhow::Result<()> {
    let mail = Mail::new(store.clone());
    mail.ensure_account(account, now()).await?;
    let inbox = inbox(store, account).await?;
    let mut tasks = Vec::new();
    for seeder in 0..SEEDERS {
        let mail = mail.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(account * 1000 + first + seeder as u64);
            for batch_start in (seeder * BATCH..messages).step_by(SEEDERS * BATCH) {
                let batch = (batch_start..(batch_start + BATCH).min(messages))
                    .map(|serial| {
                        let serial = account << 32 | (first + serial as u64);
                        let raw = message(&mut rng, serial, MESSAGE_BYTES);
                        let ingest = Ingest {
                            raw: raw.into(),
                            mailboxes: vec![inbox],
                            keywords: Vec::new(),
                            received_at: 0,
                            quota: Default::default(),
                        };
                        (account, ingest)
                    })
                    .collect();
                mail.ingest_many(batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

//! `bench-store`: synced commits/s of the store against raw RocksDB in the same run, for
//! 1, 8 and 64 concurrent writers of small batches, and blob writes/s for 4 KiB and 1 MiB.
//!
//! Run: `cargo run --release -p hameau-benches --bin bench-store -- [SECONDS] [DIR] [WRITERS...]`
//! (SECONDS per measurement, default 5; DIR where the databases go, default a temp dir
//! under /var/tmp so that it is on a real disk, not tmpfs; WRITERS, default 1 8 64; with
//! WRITERS given, the blob measurements are skipped).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hameau_benches::{percentile, status_kib};
use hameau_store::{Batch, Options, Store};

const VALUE_BYTES: usize = 100;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5);
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let writer_counts: Vec<usize> = args.map(|arg| arg.parse()).collect::<Result<_, _>>()?;
    let blobs = writer_counts.is_empty();
    let writer_counts = if blobs { vec![1, 8, 64] } else { writer_counts };
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    println!("bench-store: {seconds} s per measurement, databases under {base}");
    println!(
        "{:<28} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "synced commits", "raw/s", "store/s", "ratio", "p50 ms", "p99 ms"
    );
    for writers in writer_counts {
        let raw = raw_rocksdb(&base, writers, duration)?;
        let (store, latencies) = runtime.block_on(store_commits(&base, writers, duration))?;
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>7.1}% {:>10.3} {:>10.3}",
            format!("{writers} writer(s), 1 key/batch"),
            raw,
            store,
            100.0 * store / raw,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    if !blobs {
        return Ok(());
    }
    println!("{:<28} {:>12} {:>12} {:>10} {:>10}", "blob writes (8 writers)", "blobs/s", "MiB/s", "p50 ms", "p99 ms");
    for blob_bytes in [4 * 1024usize, 1024 * 1024] {
        let (rate, latencies) = runtime.block_on(blob_writes(&base, blob_bytes, 8, duration))?;
        println!(
            "{:<28} {:>12.0} {:>12.1} {:>10.3} {:>10.3}",
            format!("{} KiB blobs", blob_bytes / 1024),
            rate,
            rate * blob_bytes as f64 / (1024.0 * 1024.0),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
        );
    }
    println!("peak resident memory: {} MiB", status_kib("self", "VmHWM") / 1024);
    Ok(())
}

/// Raw RocksDB: `writers` threads each write one-key batches with `sync = true`.
fn raw_rocksdb(base: &str, writers: usize, duration: Duration) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(base)?;
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    options.increase_parallelism(2);
    options.set_max_background_jobs(2);
    let db = Arc::new(rocksdb::DB::open(&options, dir.path())?);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..writers)
        .map(|writer| {
            let (db, stop, count) = (db.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut write_options = rocksdb::WriteOptions::default();
                write_options.set_sync(true);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut batch = rocksdb::WriteBatch::default();
                    batch.put(key(writer, i), [7u8; VALUE_BYTES]);
                    db.write_opt(batch, &write_options).expect("write");
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(duration);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("writer thread");
    }
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

/// The store: `writers` tasks each commit one-key batches.
async fn store_commits(base: &str, writers: usize, duration: Duration) -> anyhow::Result<(f64, Vec<f64>)> {
    run_writers(base, writers, duration, |store, writer, i| async move {
        let mut batch = Batch::new();
        batch.set(&key(writer, i), &[7u8; VALUE_BYTES]);
        store.commit(batch).await.expect("commit");
    })
    .await
}

/// Blob writes: stage a blob of distinct content (nothing deduplicated) and commit a
/// reference to it.
async fn blob_writes(
    base: &str,
    blob_bytes: usize,
    writers: usize,
    duration: Duration,
) -> anyhow::Result<(f64, Vec<f64>)> {
    run_writers(base, writers, duration, move |store, writer, i| async move {
        let mut content = vec![0u8; blob_bytes];
        content[..16].copy_from_slice(&key(writer, i));
        let staged = store.stage_blob(&mut content.as_slice()).await.expect("stage");
        let mut batch = Batch::new();
        batch.blob_acquire(staged);
        store.commit(batch).await.expect("commit");
    })
    .await
}

/// Runs `operation` in a loop on `writers` tasks over a fresh store for `duration`;
/// returns operations/s and each operation's latency in ms.
async fn run_writers<F, Fut>(
    base: &str,
    writers: usize,
    duration: Duration,
    operation: F,
) -> anyhow::Result<(f64, Vec<f64>)>
where
    F: Fn(Store, usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir_in(base)?;
    let store = Store::open(&Options::rocksdb(dir.path())).await?;
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (store, operation) = (store.clone(), operation.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    operation(store.clone(), writer, i).await;
                    latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
                    i += 1;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    store.close().await?;
    Ok((rate, latencies))
}

fn key(writer: usize, i: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(writer as u64).to_be_bytes());
    key[8..].copy_from_slice(&i.to_be_bytes());
    key
}

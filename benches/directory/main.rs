//! `bench-logins`: password logins/s for 200 users, cold (every login pays argon2id with
//! the default parameters: 19 MiB, 2 passes) and warm (the verified-credential cache
//! answers), with latency percentiles.
//!
//! Run: `cargo run --release -p hameau-benches --bin bench-logins -- [SECONDS] [DIR]`
//! (SECONDS for the warm run, default 10; DIR for the store, default /var/tmp).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hameau_directory::{AccountRole, Directory, NewAccount, NewDomain, NewTenant, Options, Principal};
use hameau_store::Store;

const USERS: usize = 200;
const CLIENTS: usize = 16;
const NOW: u64 = 1_795_000_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let base = args.next().unwrap_or_else(|| "/var/tmp".into());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(seconds, &base))
}

async fn run(seconds: u64, base: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(base)?;
    let store = Store::open(&hameau_store::Options::rocksdb(dir.path())).await?;
    let directory = Directory::new(store.clone(), Options::default());
    let operator = Principal::Operator;
    let tenant = NewTenant {
        id: "bench".into(),
        name: "Bench".into(),
        siren: None,
        insee: None,
        quota_bytes: None,
        accounts_max: None,
    };
    directory.create_tenant(&operator, tenant, NOW).await?;
    directory.create_domain(&operator, NewDomain { name: "bench.test".into(), tenant: "bench".into() }, NOW).await?;
    let setup = Instant::now();
    for user in 0..USERS {
        let account = NewAccount {
            address: format!("user{user}@bench.test"),
            display_name: String::new(),
            password: Some(format!("password of user {user}")),
            quota_bytes: None,
            enabled: true,
            role: AccountRole::User,
        };
        directory.create_account(&operator, account, NOW).await?;
    }
    println!(
        "bench-logins: {USERS} users created in {:.1} s, {CLIENTS} concurrent clients",
        setup.elapsed().as_secs_f64()
    );
    println!("{:<10} {:>10} {:>10} {:>10} {:>10}", "", "logins", "logins/s", "p50 ms", "p99 ms");
    // Cold: each user logs in once, nothing cached.
    let (n, elapsed, latencies) = logins(&directory, Some(USERS), Duration::MAX).await;
    report("cold", n, elapsed, latencies);
    // Warm: the same users again and again, for `seconds`.
    let (n, elapsed, latencies) = logins(&directory, None, Duration::from_secs(seconds)).await;
    report("warm", n, elapsed, latencies);
    println!("cached credentials: {}", directory.credential_cache().len());
    store.close().await?;
    Ok(())
}

/// `CLIENTS` tasks log users in, round robin, until `count` logins or `duration`.
async fn logins(directory: &Directory, count: Option<usize>, duration: Duration) -> (usize, Duration, Vec<f64>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (directory, next) = (directory.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if count.is_some_and(|count| i >= count) || start.elapsed() >= duration {
                        return latencies;
                    }
                    let user = i % USERS;
                    let begun = Instant::now();
                    directory
                        .authenticate_password(
                            &format!("user{user}@bench.test"),
                            &format!("password of user {user}"),
                            NOW,
                        )
                        .await
                        .expect("login");
                    latencies.push(begun.elapsed().as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("client task"));
    }
    (latencies.len(), start.elapsed(), latencies)
}

fn report(label: &str, n: usize, elapsed: Duration, latencies: Vec<f64>) {
    let rate = n as f64 / elapsed.as_secs_f64();
    let (p50, p99) = (hameau_benches::percentile(&latencies, 0.50), hameau_benches::percentile(&latencies, 0.99));
    println!("{label:<10} {n:>10} {rate:>10.0} {p50:>10.3} {p99:>10.3}");
}

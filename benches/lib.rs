//! What the load generators share: percentiles and process measurements from /proc, and
//! (`imap`) an IMAP client with the set-up of the IMAP benches.

pub mod imap;

/// The `at` quantile (0 to 1) of `samples`, nearest rank; NaN when there are none.
pub fn percentile(samples: &[f64], at: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * at).round() as usize]
}

/// A field of /proc/PID/status in KiB (`VmHWM` peak resident, `VmRSS` resident); 0 if unknown.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) as f64 / hz
}

/// CPU time (user + system) of a process and of its children, live and ended, in seconds:
/// PostgreSQL's postmaster and its backends (one per connection).
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let fields = |pid: &str| -> Vec<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        rest.split_whitespace().map(|field| field.parse().unwrap_or(0)).collect()
    };
    let own = fields(&pid.to_string());
    // After the name: ppid is field 1; utime, stime, cutime, cstime are fields 11 to 14.
    let mut ticks: u64 = own.get(11..15).map_or(0, |times| times.iter().sum());
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let child = fields(&name);
        if child.get(1) == Some(&u64::from(pid)) {
            ticks += child.get(11..13).map_or(0, |times| times.iter().sum());
        }
    }
    ticks as f64 / hz
}

/// The postmaster's pid of the PostgreSQL cluster whose data directory is `BENCH_PG_DATA`
/// (the first line of `postmaster.pid`), to measure the database's CPU per message.
pub fn postmaster_pid() -> Option<u32> {
    let data = std::env::var("BENCH_PG_DATA").ok()?;
    let text = std::fs::read_to_string(std::path::Path::new(&data).join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A fresh data directory made by the release `hameau` built next to the running bench
/// (`hameau init` under `base`, every listener on a port the system picks): the
/// directory (removed when dropped), the binary and the configuration file. With
/// `BENCH_STORE=postgresql`, the store is the PostgreSQL database `BENCH_PG_URL`, in a
/// schema of its own.
pub fn init_data_dir(
    prefix: &str,
    base: &std::path::Path,
) -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> {
    let hameau = std::env::current_exe()?.with_file_name("hameau");
    if !hameau.exists() {
        anyhow::bail!("{} is missing: cargo build --release -p hameau", hameau.display());
    }
    let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(base)?;
    let data = dir.path().join("data");
    let mut store = Vec::new();
    if std::env::var("BENCH_STORE").is_ok_and(|store| store == "postgresql") {
        let url = std::env::var("BENCH_PG_URL").map_err(|_| {
            anyhow::anyhow!("BENCH_STORE=postgresql needs BENCH_PG_URL (scripts/pg-cluster.sh starts one)")
        })?;
        let schema = format!("{}_{}", prefix.replace('-', "_"), std::process::id());
        store = vec!["--store-url".to_string(), url, "--store-schema".into(), schema];
    }
    let init = std::process::Command::new(&hameau)
        .args(["init", "--data-dir", data.to_str().unwrap(), "--http-listen", "127.0.0.1:0"])
        .args(["--http-plain-listen", "127.0.0.1:0"])
        .args(&store)
        .args(["--smtp-listen", "127.0.0.1:0", "--imap-listen", "127.0.0.1:0", "--imaps-listen", "127.0.0.1:0"])
        .args(["--submission-listen", "127.0.0.1:0", "--submissions-listen", "127.0.0.1:0"])
        .output()?;
    if !init.status.success() {
        anyhow::bail!("hameau init: {}", String::from_utf8_lossy(&init.stderr));
    }
    Ok((dir, hameau, data.join("hameau.toml")))
}

/// A TLS client trusting only the certificates of the PEM file `cert` (a server's
/// self-signed certificate).
pub fn tls_connector(cert: &std::path::Path) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert)? {
        roots.add(cert?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

//! `hameau import imap`: pulls old mailboxes over IMAP into local accounts; `hameau import
//! mbox|maildir`: copies mailbox files (Thunderbird's local folders, an old server's
//! Maildir, Hameau's own export) into one account. Both on the local data directory (the
//! server stopped: the store has one user at a time), with a progress line on a terminal
//! and the verification report at the end. The work is the `hameau-migrate` crate's; here
//! are the arguments, the directory look-ups, the clock and the exit status (0 complete,
//! [`hameau_migrate::EXIT_INCOMPLETE`] incomplete, 1 when it could not run).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use hameau_directory::{Directory, Principal};
use hameau_mailbox::Quota;
use hameau_migrate::{FileFormat, FileImporter, ImapSource, Importer, Progress, Report, SourceUrl, Target};

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Copies an old IMAP mailbox (every folder, flags, dates) into a local account; a
    /// rerun copies only what is missing. Exit status 0 complete, 3 incomplete.
    Imap(ImapArgs),
    /// Copies mbox files into a local account: one file, or a directory of them
    /// (Thunderbird's "Local Folders", e.g. ~/.thunderbird/PROFILE/Mail/Local Folders).
    /// A rerun copies only what is missing. Exit status 0 complete, 3 incomplete.
    Mbox(FilesArgs),
    /// Copies a Maildir (with its Maildir++ folders, Dovecot's keywords and UIDs) into a
    /// local account. A rerun copies only what is missing. Exit status 0 complete, 3
    /// incomplete.
    Maildir(FilesArgs),
}

#[derive(Args, Debug)]
pub struct FilesArgs {
    /// The Hameau account that receives the mail, e.g. alice@commune.fr.
    #[arg(long)]
    account: String,
    /// The mbox file, the directory of mbox files, or the Maildir's root.
    path: PathBuf,
    /// Writes the verification report as JSON.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ImapArgs {
    /// The Hameau account that receives the mail, e.g. alice@commune.fr.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    account: Option<String>,
    /// The old server: imaps://host[:port] (TLS) or imap://host[:port] (STARTTLS).
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    from: Option<String>,
    /// The login on the old server.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    user: Option<String>,
    /// A file whose first line is the password on the old server.
    #[arg(long, required_unless_present = "csv", conflicts_with = "csv")]
    password_file: Option<PathBuf>,
    /// A whole tenant: a CSV file of account,from,user,password_file lines
    /// (docs/migration.md); accounts run migrate.accounts_concurrent_max at a time.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// A PEM certificate to trust for the old server, besides the system's.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Writes the verification report as JSON (with --csv: a JSON array of reports).
    #[arg(long)]
    report: Option<PathBuf>,
    /// For tests on loopback only: imap:// without STARTTLS, the password in clear.
    #[arg(long, hide = true)]
    insecure_plain_text: bool,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// One account to import, resolved.
struct Work {
    target: Target,
    source: ImapSource,
}

pub fn run(command: ImportCommand) -> ExitCode {
    let res = match command {
        ImportCommand::Imap(args) => run_imap(&args),
        ImportCommand::Mbox(args) => run_files(&args, FileFormat::Mbox).map(|report| vec![report]),
        ImportCommand::Maildir(args) => run_files(&args, FileFormat::Maildir).map(|report| vec![report]),
    };
    match res {
        Ok(reports) => {
            if reports.iter().all(|report| report.complete) {
                ExitCode::SUCCESS
            } else if reports.iter().all(|report| report.folders.is_empty() && report.error.is_some()) {
                // Nothing could be read (a refused login, an unreachable server): the
                // report says why.
                ExitCode::FAILURE
            } else {
                ExitCode::from(hameau_migrate::EXIT_INCOMPLETE)
            }
        }
        Err(e) => {
            eprintln!("hameau: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_imap(args: &ImapArgs) -> anyhow::Result<Vec<Report>> {
    with_store(args.config.as_deref(), |config, store| async move { import_all(args, &config, &store).await })
}

/// Loads the configuration, opens the store (refused while a server holds it), runs `work`
/// on a runtime of two workers, and closes the store.
pub(crate) fn with_store<T, F, Fut>(config: Option<&Path>, work: F) -> anyhow::Result<T>
where
    F: FnOnce(hameau_config::Config, hameau_store::Store) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let config = crate::load_config(config)?;
    // Reconnections and progress are logged (JSON lines when not on a terminal).
    let _reload = crate::logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = match hameau_store::Store::open(&config.store).await {
            Err(hameau_store::Error::Locked(path)) => anyhow::bail!(
                "le stockage {path} est utilisé par un serveur en marche : arrêtez-le d'abord (systemctl stop hameau) / \
                 the store {path} is in use by a running server: stop it first (systemctl stop hameau)"
            ),
            res => res.context("opening the store")?,
        };
        let res = work(config, store.clone()).await;
        store.close().await.context("closing the store")?;
        res
    })
}

/// `hameau import mbox|maildir`: one account from files, with the progress line and the
/// report.
fn run_files(args: &FilesArgs, format: FileFormat) -> anyhow::Result<Report> {
    anyhow::ensure!(args.path.exists(), "{} : introuvable / not found", args.path.display());
    with_store(args.config.as_deref(), |config, store| async move {
        let directory = Directory::new(store.clone(), config.directory.clone());
        let target = target_of(&directory, &args.account).await?;
        let mail = crate::cluster::mail(&config, &store, &directory).await?;
        let importer = FileImporter::new(mail, config.migrate.clone(), system_clock());
        let progress = Arc::new(Progress::default());
        let cancel = hameau_migrate::Cancel::default();
        let account = target.address.clone();
        let task = {
            let (progress, path) = (progress.clone(), args.path.clone());
            tokio::spawn(async move { importer.import_files(target, &path, format, &progress, &cancel).await })
        };
        let terminal = std::io::stderr().is_terminal();
        while !task.is_finished() {
            tokio::time::sleep(Duration::from_millis(if terminal { 500 } else { 200 })).await;
            show_progress(&[(account.as_str(), progress.as_ref())], terminal);
        }
        let report = task.await.unwrap_or_else(|e| Report {
            account: account.clone(),
            error: Some(format!("the import failed: {e}")),
            ..Report::default()
        });
        if terminal {
            eprintln!();
        }
        print!("{}", report.render());
        if let Some(path) = &args.report {
            std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(report)
    })
}

/// The system's clock, in seconds since the Unix epoch.
fn system_clock() -> hameau_migrate::Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
    })
}

async fn import_all(
    args: &ImapArgs,
    config: &hameau_config::Config,
    store: &hameau_store::Store,
) -> anyhow::Result<Vec<Report>> {
    let directory = Directory::new(store.clone(), config.directory.clone());
    let tls = crate::tls::client_config(args.ca_file.as_deref())?;
    let lines = match &args.csv {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
            let base = path.parent().unwrap_or(Path::new("."));
            hameau_migrate::parse_accounts(&text, base).with_context(|| format!("{}", path.display()))?
        }
        None => vec![hameau_migrate::CsvAccount {
            account: args.account.clone().context("--account")?,
            from: args.from.clone().context("--from")?,
            user: args.user.clone().context("--user")?,
            password_file: args.password_file.clone().context("--password-file")?,
        }],
    };
    // Every account is checked before anything is copied: a typo fails the run at once.
    let mut work = Vec::with_capacity(lines.len());
    for line in &lines {
        work.push(resolve(&directory, line, args.insecure_plain_text, tls.clone()).await?);
    }
    let mail = crate::cluster::mail(config, store, &directory).await?;
    let importer = Arc::new(Importer::new(mail, config.migrate.clone(), system_clock()));
    let concurrent = config.migrate.accounts_concurrent_max.max(1);
    let terminal = std::io::stderr().is_terminal();
    let mut reports = Vec::with_capacity(work.len());
    let mut pending = work.into_iter();
    let mut running: Vec<hameau_migrate::Job> = Vec::new();
    loop {
        while running.len() < concurrent
            && let Some(next) = pending.next()
        {
            running.push(importer.start_imap(next.target, next.source));
        }
        if running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(if terminal { 500 } else { 200 })).await;
        let lines: Vec<(&str, &Progress)> =
            running.iter().map(|job| (job.account.as_str(), job.progress.as_ref())).collect();
        show_progress(&lines, terminal);
        let mut index = 0;
        while index < running.len() {
            if running[index].is_finished() {
                let job = running.remove(index);
                let report = job.report().await;
                if terminal {
                    eprintln!();
                }
                print!("{}", report.render());
                reports.push(report);
            } else {
                index += 1;
            }
        }
    }
    if let Some(path) = &args.report {
        let json = if args.csv.is_some() {
            serde_json::to_vec_pretty(&reports)?
        } else {
            serde_json::to_vec_pretty(&reports[0])?
        };
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(reports)
}

/// On a terminal, each running account's line, rewritten in place; otherwise a log line
/// per account every 30 seconds (JSON, as every log line off a terminal).
fn show_progress(running: &[(&str, &Progress)], terminal: bool) {
    static LAST_LOG: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    if terminal {
        let line: Vec<String> = running.iter().map(|(account, progress)| progress.snapshot().line(account)).collect();
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[K{}", line.join(" | "));
        let _ = stderr.flush();
        return;
    }
    let mut last = LAST_LOG.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_some_and(|at| at.elapsed() < Duration::from_secs(30)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    for (account, progress) in running {
        let snapshot = progress.snapshot();
        tracing::info!(
            account = %account,
            folder = %snapshot.folder,
            messages_done = snapshot.messages_done,
            messages_total = snapshot.messages_total,
            bytes_done = snapshot.bytes_done,
            bytes_per_second = snapshot.bytes_per_second as u64,
            eta_s = snapshot.eta_s.map(|eta| eta as u64),
            "import progress"
        );
    }
}

/// The local account and the source of one line.
async fn resolve(
    directory: &Directory,
    line: &hameau_migrate::CsvAccount,
    plain: bool,
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<Work> {
    let target = target_of(directory, &line.account).await?;
    let url = SourceUrl::parse(&line.from, plain)?;
    let password = std::fs::read_to_string(&line.password_file)
        .with_context(|| format!("password file {}", line.password_file.display()))?;
    let password = password.lines().next().unwrap_or("").to_string();
    anyhow::ensure!(!password.is_empty(), "password file {}: empty", line.password_file.display());
    Ok(Work { target, source: ImapSource { url, user: line.user.clone(), password, tls } })
}

/// The local account that receives an import, with its quotas.
async fn target_of(directory: &Directory, address: &str) -> anyhow::Result<Target> {
    let account =
        directory.get_account(&Principal::Operator, address).await.with_context(|| format!("account {address}"))?;
    let tenant = directory
        .get_tenant(&Principal::Operator, &account.tenant)
        .await
        .with_context(|| format!("tenant {}", account.tenant))?;
    Ok(Target {
        account: account.id,
        address: account.address.clone(),
        quota: Quota {
            account_bytes_max: account.quota_bytes,
            tenant: Some(account.tenant.clone()),
            tenant_bytes_max: tenant.quota_bytes,
        },
    })
}

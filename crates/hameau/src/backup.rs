//! `hameau backup`, `hameau backup verify` and `hameau restore`. An online backup (`--url`)
//! goes through the operator's `/api/v1/backups` job (`hameau_http::api::backups`): only
//! the process that holds the store can take its snapshot (docs/backup.md says why this and
//! not a second RocksDB reader).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use hameau_backup::{BackupOptions, Decryption, Encryption, Owner, Owners, RestoreOptions};
use serde_json::{Value, json};

use crate::admin::{ApiCall, Target};

/// `hameau backup`: a backup now, or `verify`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Checks every file of a backup set (or of one backup's chain) against its manifests;
    /// says what is missing or corrupt and exits 1 if anything is. Needs no key.
    Verify {
        /// The backup set, or one backup's directory in it.
        dir: PathBuf,
        /// The report as JSON.
        #[arg(long)]
        json: bool,
        /// The configuration whose [backup] limits apply (else the built-in ones).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// A backup into a set: incremental on its last backup, full the first time or with
/// --full. With --url, the running server makes it (online); without, the store of the
/// local data directory is opened (the server must be stopped).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The backup set (a directory; made if missing). On the server's machine with --url.
    #[arg(long)]
    pub to: Option<PathBuf>,
    /// A full backup even if the set holds one.
    #[arg(long)]
    pub full: bool,
    /// Encrypt to this age X25519 recipient (age1…, from age-keygen).
    #[arg(long, conflicts_with = "passphrase_file")]
    pub recipient: Option<String>,
    /// Encrypt with the passphrase on the first line of this file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// A settings file (e.g. /etc/hameau/backup.toml, for the timer) giving to, url,
    /// api_key_file, ca_file, recipient or passphrase_file; options given here win.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

/// `hameau restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A backup set (its last backup is restored) or one backup's directory.
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory: must not exist or be empty. The store is made in DIR/store.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The age identity file of an encrypted backup (age-keygen's output).
    #[arg(long, conflicts_with = "passphrase_file")]
    pub key: Option<PathBuf>,
    /// The passphrase of an encrypted backup, on the first line of this file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// One tenant only (its id): its directory records, its accounts' mail and imports,
    /// its queued messages, with the installation's own records (counters, operator API
    /// keys, ACME account); message reference counts and the queue's size recounted.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The configuration whose [backup] limits apply (else the built-in ones).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep every mailbox's UIDVALIDITY: only for the very last state of a server that
    /// gives no more UIDs (a move to another host). By default each mailbox gets a new
    /// one, so that IMAP clients drop the UIDs the old server may have given after the
    /// backup.
    #[arg(long)]
    pub keep_uid_validity: bool,
}

/// What `/etc/hameau/backup.toml` may hold.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    to: Option<PathBuf>,
    url: Option<String>,
    api_key_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    recipient: Option<String>,
    passphrase_file: Option<PathBuf>,
    full: Option<bool>,
}

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BackupCommand::Verify { dir, json, config }) => verify(&dir, json, &limits(config.as_deref())?),
        None => run_backup(args.run),
    }
}

fn run_backup(mut args: RunArgs) -> anyhow::Result<()> {
    if let Some(path) = args.settings.clone() {
        apply_settings(&mut args, &path)?;
    }
    let to = args
        .to
        .clone()
        .context("--to DIR est requis (ou `to` dans --settings) / --to DIR is required (or `to` in --settings)")?;
    let encryption = match (&args.recipient, &args.passphrase_file) {
        (Some(recipient), _) => Some(Encryption::Recipient(recipient.clone())),
        (None, Some(path)) => Some(Encryption::Passphrase(first_line(path)?)),
        (None, None) => None,
    };
    let report = match &args.target.url {
        Some(_) => remote_backup(&args, &to, encryption)?,
        None => local_backup(&args, &to, encryption)?,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "sauvegarde {} écrite / backup {} written: {} ({} records, {} new message files of {}, {} bytes)",
        report["name"].as_str().unwrap_or("?"),
        report["name"].as_str().unwrap_or("?"),
        report["path"].as_str().unwrap_or("?"),
        report["counts"]["records"],
        report["counts"]["blobs_written"],
        report["counts"]["blobs"],
        report["bytes"],
    );
    if let Some(note) = report["note"].as_str() {
        eprintln!("note: {note}");
    }
    Ok(())
}

fn apply_settings(args: &mut RunArgs, path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let settings: Settings = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    args.to = args.to.take().or(settings.to);
    args.full |= settings.full.unwrap_or(false);
    args.recipient = args.recipient.take().or(settings.recipient);
    args.passphrase_file = args.passphrase_file.take().or(settings.passphrase_file);
    args.target.url = args.target.url.take().or(settings.url);
    args.target.ca_file = args.target.ca_file.take().or(settings.ca_file);
    if args.target.api_key.is_none()
        && let Some(key_file) = settings.api_key_file
    {
        args.target.api_key = Some(first_line(&key_file)?);
    }
    Ok(())
}

/// The first line of a secret file, without its line break.
fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    anyhow::ensure!(!line.is_empty(), "{}: the first line is empty", path.display());
    Ok(line)
}

fn now_unix_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The backup in this process, on the local store (the server stopped).
fn local_backup(args: &RunArgs, to: &Path, encryption: Option<Encryption>) -> anyhow::Result<Value> {
    let config = crate::load_config(args.target.config.as_deref())?;
    crate::cluster::refuse_clusters(&config, "backup")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = match hameau_store::Store::open(&config.store).await {
            Ok(store) => store,
            Err(hameau_store::Error::Locked(path)) => anyhow::bail!(
                "le serveur tourne ({path} est ouvert) : sauvegardez en ligne avec --url et --api-key / \
                 the server is running ({path} is open): back up online with --url and --api-key"
            ),
            Err(e) => return Err(e).context("opening the store"),
        };
        let options = BackupOptions { full: args.full, encryption, limits: config.backup.clone(), progress: None };
        let report = hameau_backup::backup(&store, to, &options, now_unix_s()).await;
        store.close().await.context("closing the store")?;
        Ok(serde_json::to_value(report?)?)
    })
}

/// The backup made by the running server: started over the API, then polled.
fn remote_backup(args: &RunArgs, to: &Path, encryption: Option<Encryption>) -> anyhow::Result<Value> {
    anyhow::ensure!(to.is_absolute(), "--to must be an absolute path on the server's machine with --url");
    let mut body = json!({ "to": to, "full": args.full });
    match encryption {
        Some(Encryption::Recipient(recipient)) => body["recipient"] = json!(recipient),
        Some(Encryption::Passphrase(passphrase)) => body["passphrase"] = json!(passphrase),
        Some(_) | None => {}
    }
    let call = ApiCall { method: "POST", path: "/api/v1/backups".into(), body: Some(body) };
    let mut job = crate::client::call_json(&args.target, call)?.context("an empty answer")?;
    let id = job["id"].as_u64().context("the server's answer has no job id")?;
    let mut last_shown = std::time::Instant::now();
    while job["state"] == "running" {
        std::thread::sleep(Duration::from_millis(200));
        let call = ApiCall { method: "GET", path: format!("/api/v1/backups/{id}"), body: None };
        job = crate::client::call_json(&args.target, call)?.context("an empty answer")?;
        // A long backup says how far it is, every 10 s.
        if last_shown.elapsed() >= Duration::from_secs(10) && job["state"] == "running" {
            let progress = &job["progress"];
            eprintln!(
                "sauvegarde en cours / backup running: {} keys, {} messages",
                progress["keys"], progress["blobs"]
            );
            last_shown = std::time::Instant::now();
        }
    }
    match job["state"].as_str() {
        Some("done") => Ok(job["report"].clone()),
        _ => anyhow::bail!("the server's backup failed: {}", job["error"].as_str().unwrap_or("no reason given")),
    }
}

/// The `[backup]` limits of the configuration `path`, or the built-in ones. Only the
/// limits are read: restore and verify need no data directory of the configuration.
fn limits(path: Option<&Path>) -> anyhow::Result<hameau_backup::Limits> {
    Ok(match path {
        Some(path) => hameau_config::Config::load(path)?.backup,
        None => hameau_backup::Limits::default(),
    })
}

fn verify(dir: &Path, json: bool, limits: &hameau_backup::Limits) -> anyhow::Result<()> {
    let report = hameau_backup::verify(dir, limits.manifest_bytes_max)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for finding in &report.findings {
            println!("{finding}");
        }
        println!(
            "{} sauvegardes, {} fichiers, {} octets vérifiés / {} backups, {} files, {} bytes checked: {}",
            report.backups.len(),
            report.files,
            report.bytes,
            report.backups.len(),
            report.files,
            report.bytes,
            if report.is_sound() { "OK" } else { "PROBLEMS" }
        );
    }
    anyhow::ensure!(
        report.is_sound(),
        "{} problème(s) dans la sauvegarde / {} problem(s) in the backup",
        report.findings.len(),
        report.findings.len()
    );
    Ok(())
}

pub fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let decryption = match (&args.key, &args.passphrase_file) {
        (Some(key), _) => Some(Decryption::Identity(
            std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        )),
        (None, Some(path)) => Some(Decryption::Passphrase(first_line(path)?)),
        (None, None) => None,
    };
    let dir = &args.data_dir;
    let not_empty = std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(false);
    anyhow::ensure!(
        !not_empty,
        "{} n'est pas vide : la restauration se fait dans un répertoire de données neuf / \
         {} is not empty: restore into a new data directory",
        dir.display(),
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let store_dir = dir.join("store");
    let owners: Option<std::sync::Arc<dyn Owners>> =
        args.tenant.as_ref().map(|_| std::sync::Arc::new(WorkspaceOwners) as _);
    let options =
        RestoreOptions { decryption, tenant: args.tenant.clone(), owners, limits: limits(args.config.as_deref())? };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let result = runtime.block_on(async {
        let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(&store_dir)).await?;
        let report = hameau_backup::restore(&store, &args.from, &options).await;
        // docs/backup.md: the old server may have handed out UIDs after the backup.
        let renewed = match (&report, args.keep_uid_validity) {
            (Ok(_), false) => {
                let mail = hameau_mailbox::Mail::new(store.clone());
                Some(mail.renew_uid_validity_all(now_unix_s()).await)
            }
            _ => None,
        };
        store.close().await?;
        let report = report?;
        if let Some(renewed) = renewed {
            let (accounts, mailboxes) = renewed.context("giving the mailboxes a new UIDVALIDITY")?;
            eprintln!(
                "nouvel UIDVALIDITY pour {mailboxes} dossiers de {accounts} comptes : les clients IMAP rechargent leurs dossiers / \
                 new UIDVALIDITY for {mailboxes} mailboxes of {accounts} accounts: IMAP clients reload their mailboxes"
            );
        }
        anyhow::Ok(report)
    });
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            // Half a store is worse than none: the directory goes back to empty.
            let _ = std::fs::remove_dir_all(&store_dir);
            return Err(e.context(format!("restoring {}", args.from.display())));
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    eprintln!(
        "restauré dans {} : {} clés, {} messages ; donnez server.data_dir = {:?} dans la configuration, puis hameau serve / \
         restored into {}: {} keys, {} messages; set server.data_dir = {:?} in the configuration, then hameau serve",
        dir.display(),
        report.keys,
        report.blobs,
        dir,
        dir.display(),
        report.keys,
        report.blobs,
        dir
    );
    Ok(())
}

/// Whose each record is, for `hameau restore --tenant`: asks each crate that writes records
/// (its `keys.rs`), so that the backup crate decodes none of their keys. The installation's
/// own tables (ACME account and certificates, cached MTA-STS policies of other domains, the
/// backup's keys) are kept with any tenant: the restored installation goes on working as
/// the old one did, operator API keys included (else it would have no administrator).
#[derive(Debug)]
struct WorkspaceOwners;

/// Prefixes of the installation's own tables.
const INSTALLATION_PREFIXES: &[&[u8]] = &[b"acme/", b"mta-sts/", b"backup/"];

impl Owners for WorkspaceOwners {
    fn owner(&self, key: &[u8], value: &[u8]) -> Owner {
        use hameau_directory::RecordOwner as D;
        use hameau_mailbox::RecordOwner as M;
        use hameau_queue::RecordOwner as Q;
        let account = |id: u64| Owner::Via(hameau_directory::account_record_key(id));
        if let Some(owner) = hameau_directory::record_owner(key, value) {
            return match owner {
                D::Tenant(tenant) => Owner::Tenant(tenant),
                D::Via(key) => Owner::Via(key),
                D::Installation => Owner::Installation,
                D::Nobody => Owner::Nobody,
            };
        }
        if let Some(owner) = hameau_mailbox::record_owner(key) {
            return match owner {
                M::Account(id) => account(id),
                M::Tenant(tenant) => Owner::Tenant(tenant),
                M::Installation => Owner::Installation,
            };
        }
        if let Some(owner) = hameau_queue::record_owner(key, value) {
            return match owner {
                Q::Tenant(tenant) => Owner::Tenant(tenant),
                Q::Via(key) => Owner::Via(key),
                Q::Installation => Owner::Installation,
                Q::CountOfMessages => Owner::CountOf(hameau_queue::MESSAGES_PREFIX.to_vec()),
                Q::Nobody => Owner::Nobody,
            };
        }
        if let Some(id) = hameau_migrate::destination::record_account(key) {
            return account(id);
        }
        if let Some(owner) = hameau_filter::quarantine::record_owner(key, value) {
            use hameau_filter::quarantine::RecordOwner as F;
            return match owner {
                F::Tenant(tenant) => Owner::Tenant(tenant),
                F::Via(key) => Owner::Via(key),
                F::Installation => Owner::Installation,
            };
        }
        if let Some(tenant) = hameau_filter::contacts::record_owner(key) {
            return Owner::Tenant(tenant);
        }
        if let Some(tenant) = hameau_filter::settings::record_owner(key) {
            return Owner::Tenant(tenant);
        }
        if let Some(owner) = hameau_filter::learning::record_owner(key) {
            return match owner {
                hameau_filter::learning::RecordOwner::Tenant(tenant) => Owner::Tenant(tenant),
                hameau_filter::learning::RecordOwner::Installation => Owner::Installation,
            };
        }
        if INSTALLATION_PREFIXES.iter().any(|prefix| key.starts_with(prefix)) {
            return Owner::Installation;
        }
        Owner::Unknown
    }

    fn blob_refs(&self, key: &[u8], value: &[u8]) -> Vec<hameau_store::BlobHash> {
        let mut refs = hameau_mailbox::record_blob_refs(key, value);
        refs.extend(hameau_queue::record_blob_refs(key, value));
        refs.extend(hameau_filter::quarantine::record_blob_refs(key, value));
        refs
    }
}

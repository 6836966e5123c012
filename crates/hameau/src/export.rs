//! `hameau export`: the mail of one account, or of every account of a tenant, written as
//! Maildir++ or mbox files that Thunderbird, mutt or Dovecot read without Hameau (an
//! agent leaving, a commune leaving the operator: no lock-in). The formats and the flags'
//! mapping are in docs/export.md; the writers are `hameau_mailfile`'s.
//!
//! It runs on the local data directory, like the other in-process admin commands, and
//! needs the server stopped: the store is opened by one process at a time, so what is
//! exported is one consistent state. Every mailbox (with its hierarchy), every message's
//! bytes, keywords and received date are read through `Mail`, the accounts of a tenant
//! through the directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hameau_directory::{Directory, Principal, model::Account};
use hameau_mailbox::{DELIMITER, Mail};
use hameau_mailfile::{MaildirWriter, MboxWriter, SourceMessage, Written, names};

use crate::lang::{Lang, say};

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The account to export (its address).
    #[arg(long, required_unless_present = "tenant", conflicts_with = "tenant")]
    pub account: Option<String>,
    /// The tenant whose every account is exported, one directory per account.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The directory to write; it must not exist or be empty.
    #[arg(long)]
    pub to: PathBuf,
    /// The files' format: mbox (Thunderbird's local folders) or maildir.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Maildir++: one file per message, exact bytes, flags in the file name.
    Maildir,
    /// mbox (mboxrd) in Thunderbird's layout: one file per folder, flags in headers.
    Mbox,
}

/// What was exported, in all.
#[derive(Debug, Default)]
struct Totals {
    accounts: u64,
    folders: u64,
    written: Written,
}

pub fn run(args: &ExportArgs) -> anyhow::Result<()> {
    let lang = Lang::from_env();
    let config = crate::load_config(args.config.as_deref())?;
    check_destination(lang, &args.to)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let totals = runtime.block_on(async {
        let store = match hameau_store::Store::open(&config.store).await {
            Ok(store) => store,
            Err(hameau_store::Error::Locked(path)) => bail!(say!(
                lang,
                "Hameau est en marche (son stockage {path} est utilisé par un autre processus) : arrêtez-le \
                 d'abord (systemctl stop hameau), puis relancez l'export",
                "Hameau is running (its store {path} is in use by another process): stop it first (systemctl \
                 stop hameau), then run the export again",
            )),
            Err(e) => bail!(say!(lang, "ouverture du stockage : {e}", "opening the store: {e}")),
        };
        let directory = Directory::new(store.clone(), config.directory.clone());
        let mail = crate::cluster::mail(&config, &store, &directory).await?;
        let res = export(lang, args, &directory, &mail).await;
        store.close().await.context("closing the store")?;
        res
    })?;
    println!(
        "{}",
        say!(
            lang,
            "export terminé : {} compte(s), {} dossier(s), {} message(s), {} octets dans {}",
            "export done: {} account(s), {} folder(s), {} message(s), {} bytes in {}",
            totals.accounts,
            totals.folders,
            totals.written.messages,
            totals.written.bytes,
            args.to.display()
        )
    );
    if totals.written.keywords_dropped > 0 {
        eprintln!(
            "{}",
            say!(
                lang,
                "attention : {} mot(s)-clé(s) non écrit(s) (un dossier Maildir en porte 26 au plus)",
                "warning: {} keyword(s) not written (a Maildir folder carries 26 at most)",
                totals.written.keywords_dropped
            )
        );
    }
    Ok(())
}

/// An export never mixes with other files: the destination is new or empty.
fn check_destination(lang: Lang, to: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(say!(
                    lang,
                    "{} n'est pas vide : choisissez un répertoire nouveau ou vide",
                    "{} is not empty: choose a new or empty directory",
                    to.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => bail!("{}: {e}", to.display()),
    }
}

async fn export(lang: Lang, args: &ExportArgs, directory: &Directory, mail: &Mail) -> anyhow::Result<Totals> {
    let operator = Principal::Operator;
    let mut totals = Totals::default();
    if let Some(address) = &args.account {
        let account = directory
            .get_account(&operator, address)
            .await
            .map_err(|e| anyhow::anyhow!(say!(lang, "compte {address} : {e}", "account {address}: {e}")))?;
        export_account(&account, mail, &args.to, args.format, &mut totals).await?;
        return Ok(totals);
    }
    let tenant = args.tenant.as_deref().context("--account or --tenant")?;
    let mut after: Option<String> = None;
    loop {
        let page = directory
            .list_accounts(&operator, Some(tenant), after.as_deref(), None)
            .await
            .map_err(|e| anyhow::anyhow!(say!(lang, "commune {tenant} : {e}", "tenant {tenant}: {e}")))?;
        for account in &page.items {
            // Addresses hold no '/', but the name is encoded like a folder's all the same.
            let dir = args.to.join(names::mbox_encode(&account.address));
            export_account(account, mail, &dir, args.format, &mut totals).await?;
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if totals.accounts == 0 {
        std::fs::create_dir_all(&args.to).with_context(|| args.to.display().to_string())?;
    }
    Ok(totals)
}

/// The writer of one account's tree.
enum Writer {
    Maildir(MaildirWriter),
    Mbox(MboxWriter),
}

async fn export_account(
    account: &Account,
    mail: &Mail,
    root: &Path,
    format: ExportFormat,
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let mut writer = match format {
        ExportFormat::Maildir => Writer::Maildir(MaildirWriter::create(root)?),
        ExportFormat::Mbox => Writer::Mbox(MboxWriter::create(root)?),
    };
    let mut mailboxes = mail.mailboxes(account.id).await.with_context(|| account.address.clone())?;
    // Parents before their children, for the readers that create folders in order.
    mailboxes.sort_by(|a, b| a.name.cmp(&b.name));
    for mailbox in &mailboxes {
        let path: Vec<String> = mailbox.name.split(DELIMITER).map(str::to_string).collect();
        let entries = mail.uids(account.id, mailbox.id).await.with_context(|| mailbox.name.clone())?;
        let written = match &mut writer {
            Writer::Maildir(writer) => {
                let mut folder = writer.folder(&path)?;
                let uid_next = mail.uid_next(account.id, mailbox.id).await.with_context(|| mailbox.name.clone())?;
                folder.keep_uids(mailbox.uid_validity, uid_next);
                for entry in &entries {
                    folder.append(&message(mail, account, entry).await?)?;
                }
                folder.finish()?
            }
            Writer::Mbox(writer) => {
                let mut folder = writer.folder(&path)?;
                for entry in &entries {
                    folder.append(&message(mail, account, entry).await?)?;
                }
                folder.finish()?
            }
        };
        totals.folders += 1;
        totals.written.messages += written.messages;
        totals.written.bytes += written.bytes;
        totals.written.keywords_dropped += written.keywords_dropped;
    }
    totals.accounts += 1;
    Ok(())
}

/// One message as the writers take it: the stored bytes, the system flags (`\Seen`…) apart
/// from the keywords, the received date.
async fn message(mail: &Mail, account: &Account, entry: &hameau_mailbox::UidEntry) -> anyhow::Result<SourceMessage> {
    let raw = mail
        .raw(account.id, entry.email)
        .await
        .with_context(|| format!("{}: email {}", account.address, entry.email))?;
    let (flags, keywords) =
        entry.keywords.iter().map(|keyword| keyword.imap().to_string()).partition(|keyword| keyword.starts_with('\\'));
    Ok(SourceMessage { raw, flags, keywords, internal_date: Some(entry.received_at), uid: Some(entry.uid) })
}

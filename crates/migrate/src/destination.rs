//! The destination side of every import, whatever the source (IMAP here; mbox and
//! Maildir files next): which mailbox each source folder goes to, the records that make a
//! rerun copy only what is missing, and the batches into `Mail::ingest_many_with`.
//! The file source is `files` (`Importer::import_files`).
//!
//! A source hands over folders ([`SourceFolder`]) and, for each, batches of messages
//! ([`SourceMessage`]: the exact bytes, flags and keywords, the internal date, and an id
//! stable within the folder's `validity`: an IMAP UID under its UIDVALIDITY; for a file,
//! e.g., a message's position under a hash of the file). [`Destination::import_folder`]
//! takes a folder's messages one by one (skipping what earlier runs copied), or
//! [`Destination::copy`] one batch; either fills the folder's [`FolderReport`]. What was
//! copied is recorded in the same commit as the messages, under `mi/`, so a crash at any
//! point never copies a message twice.
//!
//! A file source, in outline:
//!
//! ```text
//! let mut destination = Destination::open(mail, store, target, "mbox\n/path/to/file", 100, now).await?;
//! let plan = destination.plan(&folders);            // target name and role per folder
//! for (folder, (name, role)) in folders.iter().zip(plan) {
//!     let Some(name) = name else { continue };
//!     let mailbox = destination.mailbox(&name, role).await?;
//!     let mut report = FolderReport { source: folder.name.clone(), target: Some(name), ..Default::default() };
//!     destination.import_folder(folder, mailbox, &mut receiver_of(folder), 32 << 20, &mut report, &progress).await?;
//! }
//! ```

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use hameau_mailbox::{AccountId, Ingest, Keyword, Mail, MailboxId, Quota, Role};
use hameau_store::placement::Placed;
use hameau_store::{Batch, Scan};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::mapping::{FolderKind, target_name};
use crate::progress::Progress;
use crate::report::{FolderReport, Skipped};

/// The account that receives the import.
#[derive(Clone, Debug)]
pub struct Target {
    pub account: AccountId,
    /// Its address, for the report.
    pub address: String,
    /// What its messages count against (the account's and its tenant's quotas).
    pub quota: Quota,
}

/// One source folder, as the destination needs it.
#[derive(Clone, Debug)]
pub struct SourceFolder {
    /// Decoded, levels joined with `/`.
    pub name: String,
    pub kind: FolderKind,
    /// The folder's UIDVALIDITY (IMAP) or any number that changes when the ids of its
    /// messages stop meaning the same messages.
    pub validity: u32,
}

/// One source message.
#[derive(Clone, Debug)]
pub struct SourceMessage {
    /// Its id in the folder under the folder's validity (IMAP UID).
    pub id: u32,
    /// The exact bytes, stored as they are.
    pub raw: Bytes,
    /// `\Seen`-style flags and keywords, as the source spells them (any case); what
    /// [`Keyword::parse_imap`] does not take is dropped.
    pub keywords: Vec<String>,
    /// Seconds since the Unix epoch (IMAP INTERNALDATE).
    pub internal_date: u64,
}

/// What a rerun knows of a folder: the ids recorded under the current validity, and the
/// content hashes recorded under any validity (used when the validity changed).
#[derive(Debug, Default)]
pub struct Records {
    /// Id under the current validity, and the SHA-256 of what was copied.
    pub current: HashMap<u32, [u8; 32]>,
    /// Hashes recorded under other validities, with how many times each.
    pub earlier: HashMap<[u8; 32], u32>,
}

/// Every migration record starts with it: `mi/{account}/{source}/…`.
pub const RECORDS_PREFIX: &[u8] = b"mi/";

/// The prefix of every migration record of `account`.
pub fn account_records_prefix(account: AccountId) -> Vec<u8> {
    format!("mi/{account}/").into_bytes()
}

/// The account whose import a migration record follows (`mi/{account}/…`), for a
/// one-tenant restore (docs/backup.md); `None` for other keys.
pub fn record_account(key: &[u8]) -> Option<AccountId> {
    let rest = key.strip_prefix(RECORDS_PREFIX)?;
    let account = rest.split(|b| *b == b'/').next()?;
    std::str::from_utf8(account).ok()?.parse().ok()
}

/// The Hameau side of one account's import from one source.
pub struct Destination {
    mail: Mail,
    /// The store holding the account's mail (its tenant's cluster): the records of what
    /// was copied go in the same commits as the messages.
    store: Placed,
    target: Target,
    /// `mi/{account}/{source}/`.
    prefix: String,
    now: u64,
    /// Each role's mailbox (id, name).
    roles: HashMap<Role, (MailboxId, String)>,
    /// Source folders that went to a role mailbox, and that mailbox's name: folders under
    /// them go under it.
    role_folders: Vec<(String, String)>,
    /// Roles already taken by a source folder: a second "Sent" is copied under its name.
    taken: HashSet<Role>,
    batch_messages_max: usize,
}

impl Destination {
    /// Opens the account's side: makes its special-use mailboxes if it has none yet.
    /// `source_identity` names the source (server, port and login; a file's path) so that
    /// records of different sources never mix; it is hashed.
    pub async fn open(
        mail: Mail,
        target: Target,
        source_identity: &str,
        batch_messages_max: usize,
        now: u64,
    ) -> Result<Destination, Error> {
        let mailboxes = mail.ensure_account(target.account, now).await?;
        let store = mail.account_store(target.account).await?;
        let roles = mailboxes.iter().filter_map(|m| m.role.map(|role| (role, (m.id, m.name.clone())))).collect();
        let prefix = format!("mi/{}/{}/", target.account, short_hash(source_identity.as_bytes()));
        debug_assert!(prefix.as_bytes().starts_with(&account_records_prefix(target.account)));
        let batch_messages_max = batch_messages_max.min(mail.limits().ingest_batch_max).max(1);
        Ok(Destination {
            mail,
            store,
            target,
            prefix,
            now,
            roles,
            role_folders: Vec::new(),
            taken: HashSet::new(),
            batch_messages_max,
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Most messages per [`Destination::copy`].
    pub fn batch_messages_max(&self) -> usize {
        self.batch_messages_max
    }

    /// Chooses the target mailbox of each folder, in order: a role folder takes the
    /// account's mailbox of that role (the first folder of each role; a second one is
    /// copied under its own name), folders under it go under that mailbox, the others
    /// keep their name. `None` for a folder not copied as such ([`FolderKind::All`],
    /// [`FolderKind::View`]). Call it once with every folder, parents before children.
    pub fn plan(&mut self, folders: &[SourceFolder]) -> Vec<(Option<String>, Option<Role>)> {
        let mut planned = Vec::with_capacity(folders.len());
        for folder in folders {
            let (name, role) = match folder.kind {
                FolderKind::All | FolderKind::View => (None, None),
                FolderKind::Role(role) if !self.taken.contains(&role) => {
                    self.taken.insert(role);
                    let target = self.roles.get(&role).map(|(_, name)| name.clone());
                    let target = target.unwrap_or_else(|| target_name(&folder.name, &self.role_folders));
                    if target != folder.name {
                        self.role_folders.push((folder.name.clone(), target.clone()));
                    }
                    (Some(target), Some(role))
                }
                FolderKind::Role(_) | FolderKind::Plain => (Some(target_name(&folder.name, &self.role_folders)), None),
            };
            planned.push((name, role));
        }
        planned
    }

    /// The mailbox of that name (made, with its parents, if missing), or of that role.
    pub async fn mailbox(&self, name: &str, role: Option<Role>) -> Result<MailboxId, Error> {
        let account = self.target.account;
        if let Some(role) = role
            && let Some((id, _)) = self.roles.get(&role)
        {
            return Ok(*id);
        }
        if let Some(mailbox) = self.mail.mailbox_by_name(account, name).await? {
            return Ok(mailbox.id);
        }
        match self.mail.create_mailbox(account, name, None, self.now).await {
            Ok(mailbox) => Ok(mailbox.id),
            // Made meanwhile (another import of the same account).
            Err(hameau_mailbox::Error::MailboxExists(_)) => {
                let mailbox = self.mail.mailbox_by_name(account, name).await?;
                mailbox.map(|m| m.id).ok_or_else(|| Error::Destination(format!("mailbox {name:?} vanished")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The mailbox of a role (the archive, for Gmail's messages without a label).
    pub fn role_mailbox(&self, role: Role) -> Option<(MailboxId, String)> {
        self.roles.get(&role).cloned()
    }

    /// What earlier runs recorded of a folder.
    pub async fn records(&self, folder: &SourceFolder) -> Result<Records, Error> {
        let folder_prefix = self.folder_prefix(&folder.name);
        let entries = self.store.scan(&Scan::prefix(folder_prefix.as_bytes())).await?;
        let mut records = Records::default();
        for entry in entries {
            let Some((validity, id, hash)) = parse_record(&entry.key[folder_prefix.len()..], &entry.value) else {
                continue;
            };
            if validity == folder.validity {
                records.current.insert(id, hash);
            } else {
                *records.earlier.entry(hash).or_default() += 1;
            }
        }
        Ok(records)
    }

    /// Every content hash recorded for this source, in every folder but `except`: Gmail's
    /// "All Mail" asks whether a message has a label.
    pub async fn hashes_elsewhere(&self, except: &str) -> Result<HashSet<[u8; 32]>, Error> {
        let skip = self.folder_prefix(except);
        let entries = self.store.scan(&Scan::prefix(self.prefix.as_bytes())).await?;
        let mut hashes = HashSet::new();
        for entry in entries {
            if entry.key.starts_with(skip.as_bytes()) {
                continue;
            }
            if let Ok(hex_text) = std::str::from_utf8(&entry.value)
                && let Some(hash) = parse_hash(hex_text)
            {
                hashes.insert(hash);
            }
        }
        Ok(hashes)
    }

    /// Records messages as handled without storing them (found elsewhere, or already
    /// there under an earlier validity): nothing to duplicate, so a commit of its own.
    pub async fn record_only(&self, folder: &SourceFolder, entries: &[(u32, [u8; 32])]) -> Result<(), Error> {
        for chunk in entries.chunks(1_000) {
            let mut batch = Batch::new();
            for (id, hash) in chunk {
                batch.set(self.record_key(folder, *id).as_bytes(), hex::encode(hash).as_bytes());
            }
            self.store.commit(batch).await?;
        }
        Ok(())
    }

    /// Stores a batch into `mailbox` with its records, in one commit. If the commit
    /// fails (a message the parser refuses, a quota), each message is tried alone, so that
    /// one bad message skips itself only. Fills `report` and `progress`.
    pub async fn copy(
        &self,
        folder: &SourceFolder,
        mailbox: MailboxId,
        messages: Vec<SourceMessage>,
        report: &mut FolderReport,
        progress: &Progress,
    ) -> Result<(), Error> {
        if messages.is_empty() {
            return Ok(());
        }
        match self.ingest(folder, mailbox, &messages).await {
            Ok(()) => {
                for message in &messages {
                    report.copied += 1;
                    report.copied_bytes += message.raw.len() as u64;
                    progress.add_done(1, message.raw.len() as u64);
                }
                return Ok(());
            }
            Err(e) if messages.len() == 1 => {
                let message = &messages[0];
                progress.add_done(1, message.raw.len() as u64);
                report.skipped.push(Skipped { uid: message.id, size: message.raw.len() as u64, reason: refusal(&e) });
                return keep_going(e);
            }
            Err(_) => {}
        }
        for message in messages {
            let size = message.raw.len() as u64;
            match self.ingest(folder, mailbox, std::slice::from_ref(&message)).await {
                Ok(()) => {
                    report.copied += 1;
                    report.copied_bytes += size;
                }
                Err(e) => {
                    report.skipped.push(Skipped { uid: message.id, size, reason: refusal(&e) });
                    keep_going(e)?;
                }
            }
            progress.add_done(1, size);
        }
        Ok(())
    }

    /// Copies one folder from a source that reads its messages one at a time (mbox,
    /// Maildir): skips what earlier runs recorded (by id under the folder's validity, else
    /// by content hash when the validity changed), stores the rest in batches of at most
    /// [`Destination::batch_messages_max`] messages and `batch_bytes_max` bytes (one
    /// message at least), and counts everything in `report` (`on_source` included; a
    /// message the source could not read comes as a [`Skipped`]). `messages` is a channel
    /// so that the reading runs on a blocking thread, never on the runtime's workers; at
    /// most one batch is held here.
    pub async fn import_folder(
        &self,
        folder: &SourceFolder,
        mailbox: MailboxId,
        messages: &mut tokio::sync::mpsc::Receiver<Result<SourceMessage, Skipped>>,
        batch_bytes_max: u64,
        report: &mut FolderReport,
        progress: &Progress,
    ) -> Result<(), Error> {
        let records = self.records(folder).await?;
        let mut earlier = records.earlier;
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        let mut handled = Vec::new();
        while let Some(message) = messages.recv().await {
            report.on_source += 1;
            // The total grows as the files are read: they do not say their count first.
            progress.add_total(1, 0);
            let message = match message {
                Ok(message) => message,
                Err(skipped) => {
                    report.skipped.push(skipped);
                    progress.add_done(1, 0);
                    continue;
                }
            };
            if records.current.contains_key(&message.id) {
                report.already_there += 1;
                progress.add_done(1, 0);
                continue;
            }
            if !earlier.is_empty() {
                let hash: [u8; 32] = Sha256::digest(&message.raw).into();
                if let Some(count) = earlier.get_mut(&hash).filter(|count| **count > 0) {
                    *count -= 1;
                    report.already_there += 1;
                    handled.push((message.id, hash));
                    progress.add_done(1, 0);
                    continue;
                }
            }
            batch_bytes += message.raw.len() as u64;
            progress.add_total(0, message.raw.len() as u64);
            batch.push(message);
            if batch.len() >= self.batch_messages_max || batch_bytes >= batch_bytes_max {
                self.record_only(folder, &std::mem::take(&mut handled)).await?;
                self.copy(folder, mailbox, std::mem::take(&mut batch), report, progress).await?;
                batch_bytes = 0;
            }
        }
        self.record_only(folder, &handled).await?;
        self.copy(folder, mailbox, batch, report, progress).await
    }

    async fn ingest(
        &self,
        folder: &SourceFolder,
        mailbox: MailboxId,
        messages: &[SourceMessage],
    ) -> Result<(), hameau_mailbox::Error> {
        let mut deliveries = Vec::with_capacity(messages.len());
        let mut records = Vec::with_capacity(messages.len());
        for message in messages {
            let hash: [u8; 32] = Sha256::digest(&message.raw).into();
            records.push((self.record_key(folder, message.id).into_bytes(), hex::encode(hash).into_bytes()));
            deliveries.push((
                self.target.account,
                Ingest {
                    raw: message.raw.clone(),
                    mailboxes: vec![mailbox],
                    keywords: message.keywords.iter().filter_map(|keyword| Keyword::parse_imap(keyword)).collect(),
                    received_at: message.internal_date,
                    quota: self.target.quota.clone(),
                },
            ));
        }
        self.mail.ingest_many_with(deliveries, records).await.map(drop)
    }

    /// The content hashes of a mailbox's messages, with their counts: what Hameau holds,
    /// for the verification.
    pub async fn stored_hashes(&self, mailbox: MailboxId) -> Result<HashMap<[u8; 32], u32>, Error> {
        let mut hashes = HashMap::new();
        for entry in self.mail.uids(self.target.account, mailbox).await? {
            let email = self.mail.email(self.target.account, entry.email).await?;
            if let Some(hash) = parse_hash(&email.blob) {
                *hashes.entry(hash).or_default() += 1;
            }
        }
        Ok(hashes)
    }

    fn folder_prefix(&self, folder: &str) -> String {
        format!("{}{}/", self.prefix, short_hash(folder.as_bytes()))
    }

    fn record_key(&self, folder: &SourceFolder, id: u32) -> String {
        format!("{}{:010}/{:010}", self.folder_prefix(&folder.name), folder.validity, id)
    }
}

/// A skipped message's reason, for people.
fn refusal(e: &hameau_mailbox::Error) -> String {
    match e {
        hameau_mailbox::Error::Unstorable(e) => format!("Hameau refuses this message: {e}"),
        hameau_mailbox::Error::OverQuota { .. } => format!("over quota: {e}"),
        e => e.to_string(),
    }
}

/// A permanent refusal skips the message; anything else (the store failing) stops the
/// import, whose rerun resumes.
fn keep_going(e: hameau_mailbox::Error) -> Result<(), Error> {
    if e.is_permanent() || matches!(e, hameau_mailbox::Error::OverQuota { .. }) { Ok(()) } else { Err(e.into()) }
}

/// The first 8 bytes of SHA-256, hex: a key segment of fixed length for any name.
fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// `{validity:010}/{id:010}` and a hex hash.
fn parse_record(key_tail: &[u8], value: &[u8]) -> Option<(u32, u32, [u8; 32])> {
    let tail = std::str::from_utf8(key_tail).ok()?;
    let (validity, id) = tail.split_once('/')?;
    Some((validity.parse().ok()?, id.parse().ok()?, parse_hash(std::str::from_utf8(value).ok()?)?))
}

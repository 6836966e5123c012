//! The import of mailbox files (`hameau import mbox|maildir`): Thunderbird's local
//! folders, a single mbox, a Maildir++ tree (Dovecot, Courier, Hameau's own export), read
//! by `hameau_mailfile` and copied by [`FileImporter`] through the same [`Destination`] as the IMAP pull, so
//! the folders go to the same roles, a rerun copies nothing twice and the [`Report`] is
//! the same.
//!
//! The readers are blocking file I/O: they run on a blocking thread
//! ([`tokio::task::spawn_blocking`]) that hands folders and messages over bounded
//! channels, so the runtime's workers never wait on a disk and at most
//! [`MESSAGES_IN_FLIGHT`] messages (plus one batch) are held.
//!
//! **Ids and resume.** The source's identity is the canonical path of the file or
//! directory. A message's id is its `dovecot-uidlist` UID under the folder's UIDVALIDITY
//! when the Maildir's uidlist names every message of the folder; otherwise its position
//! in the folder (1, 2…) under a validity made of the folder's size and modification
//! times, so that a folder that changed (a message appended, deleted, a flag rewritten,
//! a file Dovecot had not yet seen) is matched by content hash instead (the records of
//! earlier validities, [`Destination::import_folder`]): a rerun copies exactly what is
//! missing. (A position is never trusted across a change: mail that arrives and mail
//! that goes could give a new message an old one's place.)
//!
//! **Verification.** After the copy the files are read again and each message's SHA-256
//! is compared with its record and with what Hameau's mailbox holds.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use hameau_mailfile as mailfile;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::Error;
use crate::Options;
use crate::destination::{Destination, SourceFolder, SourceMessage, Target};
use crate::mapping::{FolderKind, folder_kind};
use crate::progress::{Cancel, Phase, Progress};
use crate::pull::Clock;
use crate::report::{FolderReport, Report, Skipped, Verification};

/// What the files at the path are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// An mbox file or a directory of them (Thunderbird's local folders), written by
    /// Thunderbird and older mutt (mboxo) or by Dovecot and Hameau (mboxrd): `From `
    /// lines in a body are unquoted the mboxrd way, which reads mboxo's `>From ` alike.
    Mbox,
    /// A Maildir with its Maildir++ folders.
    Maildir,
}

/// Messages read ahead of the copy, per folder: the reading thread waits when they are
/// not yet taken. Two keeps the disk and the store busy together; each is at most
/// `migrate.files.message_bytes_max`.
pub const MESSAGES_IN_FLIGHT: usize = 2;

/// One folder as the reading thread hands it over.
struct ReadFolder<T> {
    /// Its levels joined with `/`.
    name: String,
    special_use: Option<&'static str>,
    validity: u32,
    items: mpsc::Receiver<Result<T, Skipped>>,
}

/// What the reading thread sends: a folder, or a folder it could not read.
enum TreeItem<T> {
    Folder(ReadFolder<T>),
    Unread(mailfile::Skip),
}

/// A message of the verification: its id and SHA-256.
type Hashed = (u32, [u8; 32]);

/// Runs file imports: the mail model, the options (`[migrate]` and its
/// `[migrate.files]` limits) and the clock, as [`crate::Importer`] holds them for the pull.
pub struct FileImporter {
    mail: hameau_mailbox::Mail,
    options: Options,
    clock: Clock,
}

impl FileImporter {
    pub fn new(mail: hameau_mailbox::Mail, options: Options, clock: Clock) -> FileImporter {
        FileImporter { mail, options, clock }
    }

    /// Copies every folder of the files at `path` into the account, then verifies; the
    /// report says what happened. Never fails as a whole: what went wrong is in the report.
    pub async fn import_files(
        &self,
        target: Target,
        path: &Path,
        format: FileFormat,
        progress: &Progress,
        cancel: &Cancel,
    ) -> Report {
        let mut report = Report {
            account: target.address.clone(),
            source: format!("{} {}", format_name(format), path.display()),
            started_at: (self.clock)(),
            ..Report::default()
        };
        let outcome = tokio::select! {
            outcome = self.run_files(target, path, format, progress, cancel, &mut report) => outcome,
            () = cancel.cancelled() => Err(Error::Cancelled),
        };
        report.close(outcome, progress, (self.clock)());
        report
    }

    async fn run_files(
        &self,
        target: Target,
        path: &Path,
        format: FileFormat,
        progress: &Progress,
        cancel: &Cancel,
        report: &mut Report,
    ) -> Result<(), Error> {
        let canonical =
            tokio::fs::canonicalize(path).await.map_err(|e| Error::Files(format!("{}: {e}", path.display())))?;
        report.source = format!("{} {}", format_name(format), canonical.display());
        let identity = format!("{}\n{}", format_name(format), canonical.display());
        let now = (self.clock)();
        let mut destination =
            Destination::open(self.mail.clone(), target, &identity, self.options.batch_messages_max, now).await?;
        progress.set_phase(Phase::Copying);
        let mut tree = spawn_reader(canonical.clone(), format, self.options.files.clone(), move |id, message| {
            to_source_message(id, message, now)
        });
        // Each copied folder: its index in the report, its record key, its mailbox.
        let mut done = Vec::new();
        while let Some(item) = tree.recv().await {
            let mut folder = match item? {
                TreeItem::Unread(skip) => {
                    report.folders.push(unread_folder(skip));
                    continue;
                }
                TreeItem::Folder(folder) => folder,
            };
            let attributes: Vec<String> = folder.special_use.iter().map(|s| s.to_string()).collect();
            // Gmail's views and "All Mail" mean something only on Gmail's IMAP: a file of
            // that name (a Takeout) is a folder like any other.
            let kind = match folder_kind(&folder.name, &attributes) {
                FolderKind::All | FolderKind::View => FolderKind::Plain,
                kind => kind,
            };
            let source = SourceFolder { name: folder.name.clone(), kind, validity: folder.validity };
            let (target_name, role) = destination.plan(std::slice::from_ref(&source)).remove(0);
            let mut folder_report = FolderReport {
                source: source.name.clone(),
                target: target_name.clone(),
                kind: Some(kind),
                role,
                uid_validity: source.validity,
                ..FolderReport::default()
            };
            if cancel.is_cancelled() {
                folder_report.error = Some("cancelled before this folder".into());
                report.folders.push(folder_report);
                continue;
            }
            progress.set_folder(&source.name);
            let Some(target_name) = target_name else {
                report.folders.push(folder_report);
                continue;
            };
            let batch_bytes_max = self.options.batch_bytes_max;
            let outcome = match destination.mailbox(&target_name, role).await {
                Ok(mailbox) => destination
                    .import_folder(&source, mailbox, &mut folder.items, batch_bytes_max, &mut folder_report, progress)
                    .await
                    .map(|()| mailbox),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(mailbox) => done.push((report.folders.len(), source, mailbox)),
                // A name Hameau cannot take, the account's mailbox limit: this folder only.
                Err(Error::Mail(e)) if e.is_permanent() => folder_report.error = Some(e.to_string()),
                Err(e) => {
                    folder_report.error = Some(e.to_string());
                    report.folders.push(folder_report);
                    return Err(e);
                }
            }
            report.folders.push(folder_report);
        }
        drop(tree);
        progress.set_phase(Phase::Verifying);
        self.verify_files(&destination, &canonical, format, &done, cancel, report).await
    }

    /// Reads the files again and compares each message's SHA-256 with its record and with
    /// what the mailbox holds.
    async fn verify_files(
        &self,
        destination: &Destination,
        path: &Path,
        format: FileFormat,
        done: &[(usize, SourceFolder, hameau_mailbox::MailboxId)],
        cancel: &Cancel,
        report: &mut Report,
    ) -> Result<(), Error> {
        if !self.options.verify_contents {
            for (index, _, _) in done {
                report.folders[*index].verification = Some(Verification {
                    note: Some("contents not compared (migrate.verify_contents = false)".into()),
                    ..Verification::default()
                });
            }
            return Ok(());
        }
        let mut tree = spawn_reader(path.to_path_buf(), format, self.options.files.clone(), |id, message| {
            let hash: [u8; 32] = Sha256::digest(&message.raw).into();
            (id, hash)
        });
        while let Some(item) = tree.recv().await {
            let TreeItem::Folder(mut folder) = item? else { continue };
            let Some((index, source, mailbox)) = done.iter().find(|(_, source, _)| source.name == folder.name) else {
                continue;
            };
            if cancel.is_cancelled() {
                break;
            }
            let verification = if folder.validity != source.validity {
                Verification {
                    note: Some(
                        "the folder changed during the import: run it again to copy and compare the rest".into(),
                    ),
                    ..Verification::default()
                }
            } else {
                let records = destination.records(source).await?;
                let stored = destination.stored_hashes(*mailbox).await?;
                compare(&mut folder.items, &records.current, &stored).await
            };
            report.folders[*index].verification = Some(verification);
        }
        for (index, _, _) in done {
            let folder = &mut report.folders[*index];
            if folder.verification.is_none() {
                folder.verification = Some(Verification {
                    note: Some("not found again for the verification".into()),
                    ..Verification::default()
                });
            }
        }
        Ok(())
    }
}

/// Compares the hashes of what the files hold now with the records and the mailbox.
async fn compare(
    items: &mut mpsc::Receiver<Result<Hashed, Skipped>>,
    records: &std::collections::HashMap<u32, [u8; 32]>,
    stored: &std::collections::HashMap<[u8; 32], u32>,
) -> Verification {
    let mut verification = Verification::default();
    while let Some(item) = items.recv().await {
        verification.on_source += 1;
        // A message the reader skips was reported skipped by the copy.
        let Ok((id, hash)) = item else { continue };
        let Some(recorded) = records.get(&id) else {
            verification.missing.push(id);
            continue;
        };
        verification.recorded += 1;
        verification.compared += 1;
        if *recorded == hash && stored.contains_key(&hash) {
            verification.matching += 1;
        } else {
            verification.mismatched.push(id);
        }
    }
    verification
}

fn format_name(format: FileFormat) -> &'static str {
    match format {
        FileFormat::Mbox => "mbox",
        FileFormat::Maildir => "maildir",
    }
}

/// A folder of the tree that could not be read at all.
fn unread_folder(skip: mailfile::Skip) -> FolderReport {
    FolderReport { source: skip.location, error: Some(skip.reason.to_string()), ..FolderReport::default() }
}

/// A file message as the destination takes it: flags and keywords together, and the
/// import's time when the file gives no date.
fn to_source_message(id: u32, message: mailfile::SourceMessage, now: u64) -> SourceMessage {
    let mut keywords = message.flags;
    keywords.extend(message.keywords);
    SourceMessage { id, raw: Bytes::from(message.raw), keywords, internal_date: message.internal_date.unwrap_or(now) }
}

/// Starts the blocking thread that reads the tree at `path`, handing each folder over
/// with a channel of its messages, each made into a `T` by `make`. Dropping a folder's
/// channel skips the rest of that folder; dropping the returned channel stops the thread.
fn spawn_reader<T: Send + 'static>(
    path: PathBuf,
    format: FileFormat,
    limits: mailfile::Limits,
    make: impl Fn(u32, mailfile::SourceMessage) -> T + Send + 'static,
) -> mpsc::Receiver<Result<TreeItem<T>, Error>> {
    let (tree_tx, tree_rx) = mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mailfile_format = match format {
            FileFormat::Mbox => mailfile::Format::Mbox(mailfile::mbox::Quoting::Mboxrd),
            FileFormat::Maildir => mailfile::Format::Maildir,
        };
        let folders = match mailfile::open(&path, mailfile_format, &limits) {
            Ok(folders) => folders,
            Err(e) => {
                let _ = tree_tx.blocking_send(Err(Error::Files(e.to_string())));
                return;
            }
        };
        for folder in folders {
            let folder = match folder {
                Ok(folder) => folder,
                Err(skip) => {
                    if tree_tx.blocking_send(Ok(TreeItem::Unread(skip))).is_err() {
                        return;
                    }
                    continue;
                }
            };
            let (items_tx, items_rx) = mpsc::channel(MESSAGES_IN_FLIGHT);
            // UIDs are keys only when the uidlist names every message.
            let uid_validity = folder.uid_validity.filter(|_| folder.unlisted == 0);
            let read = ReadFolder {
                name: folder.path.join("/"),
                special_use: folder.special_use,
                validity: uid_validity.unwrap_or_else(|| fingerprint(&folder.source)),
                items: items_rx,
            };
            if tree_tx.blocking_send(Ok(TreeItem::Folder(read))).is_err() {
                return;
            }
            let mut position: u32 = 0;
            for item in folder.messages {
                position = position.saturating_add(1);
                let item = match item {
                    Ok(message) => {
                        let id = match (uid_validity, message.uid) {
                            (Some(_), Some(uid)) => uid,
                            _ => position,
                        };
                        Ok(make(id, message))
                    }
                    Err(skip) => Err(skipped(position, skip)),
                };
                // The folder is not wanted (any more): on to the next.
                if items_tx.blocking_send(item).is_err() {
                    break;
                }
            }
        }
    });
    tree_rx
}

/// A message the reader could not take, for the report.
fn skipped(position: u32, skip: mailfile::Skip) -> Skipped {
    let size = match skip.reason {
        mailfile::SkipReason::TooLarge { bytes, .. } | mailfile::SkipReason::Truncated { bytes } => bytes,
        _ => 0,
    };
    Skipped { uid: position, size, reason: skip.to_string() }
}

/// A validity for a folder without a UIDVALIDITY: it changes when the folder does (an
/// mbox's size and modification time; a Maildir's directories' modification times), so
/// that positions are trusted only while nothing moved.
fn fingerprint(source: &Path) -> u32 {
    let mut hasher = Sha256::new();
    let mut add = |path: &Path| {
        if let Ok(metadata) = std::fs::metadata(path) {
            hasher.update(metadata.len().to_le_bytes());
            let modified = metadata.modified().ok().and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok());
            hasher.update(modified.map_or(0, |since| since.as_nanos()).to_le_bytes());
        }
    };
    add(source);
    if source.is_dir() {
        add(&source.join("cur"));
        add(&source.join("new"));
    }
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

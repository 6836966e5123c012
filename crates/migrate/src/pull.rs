//! The IMAP pull of one account: list the folders, copy each (resuming from the
//! records), then verify against what the source serves now. The connection is opened
//! again when lost (`reconnects_max`), and a batch that fails is fetched one message at a
//! time so that one bad message (or a connection that always dies on it) costs only
//! that message, which the report names.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hameau_mailbox::{Mail, Role};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::destination::{Destination, SourceFolder, SourceMessage, Target};
use crate::imap::{Connection, ImapSource, Listed, ListedFolder};
use crate::mapping::{FolderKind, decode_name, folder_kind};
use crate::progress::{Cancel, Phase, Progress};
use crate::report::{FolderReport, Report, Skipped, Verification};
use crate::{Error, Options};

/// The clock, in seconds since the Unix epoch (the binary gives the system's; this crate
/// reads no environment).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Runs imports: holds the mail model, the options and the connection slots
/// per source host (`connections_per_host_max`), shared by every account it runs.
pub struct Importer {
    mail: Mail,
    options: Options,
    clock: Clock,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A running import: its progress, its cancellation, and its report at the end. What a
/// job runner (`/api/v1/imports`) holds.
pub struct Job {
    pub account: String,
    pub progress: Arc<Progress>,
    pub cancel: Cancel,
    handle: tokio::task::JoinHandle<Report>,
}

impl Job {
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the end; the report (a panic inside becomes a report with the error).
    pub async fn report(self) -> Report {
        match self.handle.await {
            Ok(report) => report,
            Err(e) => {
                Report { account: self.account, error: Some(format!("the import failed: {e}")), ..Report::default() }
            }
        }
    }
}

impl Importer {
    pub fn new(mail: Mail, options: Options, clock: Clock) -> Importer {
        Importer { mail, options, clock, hosts: Mutex::new(HashMap::new()) }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Starts an account's import on the runtime; see [`Importer::import_imap`].
    pub fn start_imap(self: &Arc<Self>, target: Target, source: ImapSource) -> Job {
        self.start_imap_with(target, source, Arc::new(Progress::default()), Cancel::default())
    }

    /// [`Importer::start_imap`] with the caller's counters and cancellation: a job runner
    /// that made them before the job could start (queued, and cancellable while it waits)
    /// keeps the same ones throughout.
    pub fn start_imap_with(
        self: &Arc<Self>,
        target: Target,
        source: ImapSource,
        progress: Arc<Progress>,
        cancel: Cancel,
    ) -> Job {
        let importer = self.clone();
        let (job_progress, job_cancel) = (progress.clone(), cancel.clone());
        let account = target.address.clone();
        let handle =
            tokio::spawn(async move { importer.import_imap(target, source, &job_progress, &job_cancel).await });
        Job { account, progress, cancel, handle }
    }

    /// Copies every folder of `source` into the account, then verifies; the report says
    /// what happened. Never fails as a whole: what went wrong is in the report.
    pub async fn import_imap(
        &self,
        target: Target,
        source: ImapSource,
        progress: &Progress,
        cancel: &Cancel,
    ) -> Report {
        let mut report = Report {
            account: target.address.clone(),
            source: format!("{} ({})", source.url.display(), source.user),
            started_at: (self.clock)(),
            ..Report::default()
        };
        let outcome = tokio::select! {
            outcome = self.run(target, &source, progress, cancel, &mut report) => outcome,
            () = cancel.cancelled() => Err(Error::Cancelled),
        };
        report.close(outcome, progress, (self.clock)());
        report
    }

    async fn run(
        &self,
        target: Target,
        source: &ImapSource,
        progress: &Progress,
        cancel: &Cancel,
        report: &mut Report,
    ) -> Result<(), Error> {
        let identity = format!("imap\n{}\n{}\n{}", source.url.host, source.url.port, source.user);
        let destination =
            Destination::open(self.mail.clone(), target, &identity, self.options.batch_messages_max, (self.clock)())
                .await?;
        let mut session = Session::open(self, source).await?;
        let listed = session.list().await?;
        let (folders, listed) = plan_order(listed, self.options.name_bytes_max);
        let mut destination = destination;
        let plan = destination.plan(&folders);
        // The whole account's count first, so the progress has a total from the start.
        for (folder, listed) in folders.iter().zip(&listed) {
            if listed.selectable && folder.kind != FolderKind::View {
                let res = session.connection().await?.count(&listed.raw).await;
                if let Ok(n) = session.settle(res) {
                    progress.add_total(u64::from(n), 0);
                }
            }
        }
        progress.set_phase(Phase::Copying);
        let mut done = Vec::new();
        for ((folder, listed), (target_name, role)) in folders.into_iter().zip(listed).zip(plan) {
            let mut folder_report = FolderReport {
                source: folder.name.clone(),
                target: target_name.clone(),
                kind: Some(folder.kind),
                role,
                ..FolderReport::default()
            };
            if cancel.is_cancelled() {
                folder_report.error = Some("cancelled before this folder".into());
                report.folders.push(folder_report);
                continue;
            }
            progress.set_folder(&folder.name);
            let outcome = self
                .copy_folder(&mut session, &destination, folder, &listed, role, &mut folder_report, progress, cancel)
                .await;
            match outcome {
                Ok(Some(folder)) => done.push((report.folders.len(), folder, listed)),
                Ok(None) => {}
                Err(Error::Refused(text)) | Err(Error::Limit(text)) => folder_report.error = Some(text),
                // A name Hameau cannot take, the account's mailbox limit: this folder only.
                Err(Error::Mail(e)) if e.is_permanent() => folder_report.error = Some(e.to_string()),
                Err(e) => {
                    folder_report.error = Some(e.to_string());
                    report.folders.push(folder_report);
                    session.close().await;
                    return Err(e);
                }
            }
            report.folders.push(folder_report);
        }
        progress.set_phase(Phase::Verifying);
        for (index, folder, listed) in done {
            if cancel.is_cancelled() {
                break;
            }
            let folder_report = &mut report.folders[index];
            progress.set_folder(&folder.name);
            match self.verify_folder(&mut session, &destination, &folder, &listed, folder_report).await {
                Ok(verification) => folder_report.verification = Some(verification),
                Err(e @ Error::Connection(_)) => {
                    folder_report.verification =
                        Some(Verification { note: Some(format!("not verified: {e}")), ..Verification::default() });
                    session.close().await;
                    return Err(e);
                }
                Err(e) => {
                    folder_report.verification =
                        Some(Verification { note: Some(format!("not verified: {e}")), ..Verification::default() })
                }
            }
        }
        if cancel.is_cancelled() {
            report.error = Some(Error::Cancelled.to_string());
        }
        session.close().await;
        Ok(())
    }

    /// Copies one folder; the folder as verified next (`None` when there is nothing to
    /// verify: a view, a folder that cannot be opened).
    #[allow(clippy::too_many_arguments)]
    async fn copy_folder(
        &self,
        session: &mut Session<'_>,
        destination: &Destination,
        mut folder: SourceFolder,
        listed: &ListedFolder,
        role: Option<Role>,
        report: &mut FolderReport,
        progress: &Progress,
        cancel: &Cancel,
    ) -> Result<Option<SourceFolder>, Error> {
        let mailbox = match (&report.target, folder.kind) {
            (_, FolderKind::View) => {
                report.note = Some(
                    "a view of messages kept in other folders (Gmail Important/Starred): not copied; starred messages keep \\Flagged"
                        .into(),
                );
                return Ok(None);
            }
            (Some(name), _) => Some(destination.mailbox(name, role).await?),
            (None, _) => None,
        };
        if !listed.selectable {
            report.note = Some("a level of the hierarchy, without messages".into());
            return Ok(None);
        }
        folder.validity = session.select(&listed.raw).await?;
        report.uid_validity = folder.validity;
        let messages = session.listing().await?;
        report.on_source = messages.len() as u64;
        let records = destination.records(&folder).await?;
        let mut earlier = records.earlier;
        let mut todo = Vec::new();
        for message in messages {
            if records.current.contains_key(&message.uid) {
                report.already_there += 1;
            } else if message.size > self.options.message_bytes_max {
                report.skipped.push(Skipped {
                    uid: message.uid,
                    size: message.size,
                    reason: format!("larger than migrate.message_bytes_max ({} bytes)", self.options.message_bytes_max),
                });
            } else {
                todo.push(message);
            }
        }
        progress.add_total(0, todo.iter().map(|m| m.size).sum());
        progress.add_done(report.already_there + report.skipped.len() as u64, 0);
        // Gmail's "All Mail": only what has no label is copied, into the archive.
        let (mailbox, elsewhere) = match (mailbox, folder.kind) {
            (_, FolderKind::All) => {
                let archive = destination.role_mailbox(Role::Archive);
                let Some((id, name)) = archive else {
                    return Err(Error::Destination("the account has no archive mailbox".into()));
                };
                report.target = Some(name);
                (id, Some(destination.hashes_elsewhere(&folder.name).await?))
            }
            (Some(mailbox), _) => (mailbox, None),
            (None, _) => return Ok(None),
        };
        let hash_first = elsewhere.is_some() || !earlier.is_empty();
        for batch in batches(&todo, destination.batch_messages_max(), self.options.batch_bytes_max) {
            if cancel.is_cancelled() {
                break;
            }
            let fetched = session.fetch_isolating(batch).await?;
            let mut to_store = Vec::with_capacity(fetched.len());
            let mut handled = Vec::new();
            for (listed, body) in batch.iter().zip(fetched) {
                let raw = match body {
                    // The server announced less than it sent.
                    Ok(raw) if raw.len() as u64 > self.options.message_bytes_max => {
                        progress.add_done(1, listed.size);
                        let reason = format!(
                            "{} bytes, larger than migrate.message_bytes_max ({} bytes)",
                            raw.len(),
                            self.options.message_bytes_max
                        );
                        report.skipped.push(Skipped { uid: listed.uid, size: raw.len() as u64, reason });
                        continue;
                    }
                    Ok(raw) => raw,
                    Err(reason) => {
                        progress.add_done(1, listed.size);
                        report.skipped.push(Skipped { uid: listed.uid, size: listed.size, reason });
                        continue;
                    }
                };
                if hash_first {
                    let hash: [u8; 32] = Sha256::digest(&raw).into();
                    if let Some(count) = earlier.get_mut(&hash).filter(|count| **count > 0) {
                        *count -= 1;
                        report.already_there += 1;
                        handled.push((listed.uid, hash));
                        progress.add_done(1, listed.size);
                        continue;
                    }
                    if elsewhere.as_ref().is_some_and(|hashes| hashes.contains(&hash)) {
                        report.elsewhere += 1;
                        handled.push((listed.uid, hash));
                        progress.add_done(1, listed.size);
                        continue;
                    }
                }
                to_store.push(SourceMessage {
                    id: listed.uid,
                    raw,
                    keywords: listed.keywords.clone(),
                    internal_date: listed.internal_date,
                });
            }
            destination.record_only(&folder, &handled).await?;
            destination.copy(&folder, mailbox, to_store, report, progress).await?;
        }
        Ok(Some(folder))
    }

    /// Lists the folder again and compares it with the records and, if
    /// `verify_contents`, each message's SHA-256 with the record and with Hameau's mailbox.
    async fn verify_folder(
        &self,
        session: &mut Session<'_>,
        destination: &Destination,
        folder: &SourceFolder,
        listed: &ListedFolder,
        report: &FolderReport,
    ) -> Result<Verification, Error> {
        let validity = session.select(&listed.raw).await?;
        let mut verification = Verification::default();
        if validity != folder.validity {
            verification.note =
                Some(format!("the UIDVALIDITY changed during the import ({} then {validity})", folder.validity));
            return Ok(verification);
        }
        let messages = session.listing().await?;
        verification.on_source = messages.len() as u64;
        let records = destination.records(folder).await?;
        let mut recorded = Vec::new();
        for message in &messages {
            match records.current.get(&message.uid) {
                Some(hash) => recorded.push((message.clone(), *hash)),
                None => verification.missing.push(message.uid),
            }
        }
        verification.recorded = recorded.len() as u64;
        if !self.options.verify_contents {
            verification.note = Some("contents not compared (migrate.verify_contents = false)".into());
            return Ok(verification);
        }
        // Messages of "All Mail" found in a label are in another mailbox: compared with the record only.
        let stored = match (&report.target, folder.kind) {
            (_, FolderKind::All) => None,
            (Some(name), _) => {
                let id = destination.mailbox(name, report.role).await?;
                Some(destination.stored_hashes(id).await?)
            }
            (None, _) => None,
        };
        let listed_only: Vec<Listed> = recorded.iter().map(|(listed, _)| listed.clone()).collect();
        let mut not_compared = Vec::new();
        let mut offset = 0;
        for batch in batches(&listed_only, destination.batch_messages_max(), self.options.batch_bytes_max) {
            let fetched = session.fetch_isolating(batch).await?;
            for ((_, expected), body) in recorded[offset..offset + batch.len()].iter().zip(fetched) {
                let uid = recorded[offset].0.uid;
                offset += 1;
                let Ok(raw) = body else {
                    not_compared.push(uid);
                    continue;
                };
                verification.compared += 1;
                let hash: [u8; 32] = Sha256::digest(&raw).into();
                let held = stored.as_ref().is_none_or(|stored| stored.contains_key(&hash));
                if hash == *expected && held {
                    verification.matching += 1;
                } else {
                    verification.mismatched.push(uid);
                }
            }
        }
        if !not_compared.is_empty() {
            verification.note = Some(format!("could not fetch again to compare: UIDs {not_compared:?}"));
        }
        Ok(verification)
    }

    /// One connection slot to `host`, waited for.
    async fn slot(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            let per_host = self.options.connections_per_host_max;
            hosts.entry(host.to_ascii_lowercase()).or_insert_with(|| Arc::new(Semaphore::new(per_host))).clone()
        };
        semaphore.acquire_owned().await.expect("the semaphore is never closed")
    }
}

/// Folders in the order they are planned and copied: those with a SPECIAL-USE role first
/// (they win their role over a folder that only has the usual name), then by name
/// (parents before children), Gmail's "All Mail" last (it needs every label's records).
fn plan_order(listed: Vec<ListedFolder>, name_bytes_max: usize) -> (Vec<SourceFolder>, Vec<ListedFolder>) {
    let mut pairs: Vec<(SourceFolder, ListedFolder, bool)> = listed
        .into_iter()
        .map(|listed| {
            let mut name = decode_name(&listed.raw, listed.delimiter.as_deref());
            if name.len() > name_bytes_max {
                let mut cut = name_bytes_max;
                while !name.is_char_boundary(cut) {
                    cut -= 1;
                }
                name.truncate(cut);
            }
            let mut kind = folder_kind(&name, &listed.attributes);
            // A level of the hierarchy holds no messages: it does not take a role from a
            // real folder (`Sent Items` above `Sent Items.2019`, beside `Éléments envoyés`).
            if !listed.selectable && matches!(kind, FolderKind::Role(_)) {
                kind = FolderKind::Plain;
            }
            let by_attribute = folder_kind("", &listed.attributes) != FolderKind::Plain;
            (SourceFolder { name, kind, validity: 0 }, listed, by_attribute)
        })
        .collect();
    pairs.sort_by(|a, b| {
        let key = |(folder, _, by_attribute): &(SourceFolder, ListedFolder, bool)| {
            (folder.kind == FolderKind::All, !by_attribute, folder.name.clone())
        };
        key(a).cmp(&key(b))
    });
    pairs.into_iter().map(|(folder, listed, _)| (folder, listed)).unzip()
}

/// Consecutive runs of messages within the batch limits (one message at least).
fn batches(messages: &[Listed], messages_max: usize, bytes_max: u64) -> Vec<&[Listed]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < messages.len() {
        let mut end = start + 1;
        let mut bytes = messages[start].size;
        while end < messages.len() && end - start < messages_max && bytes + messages[end].size <= bytes_max {
            bytes += messages[end].size;
            end += 1;
        }
        out.push(&messages[start..end]);
        start = end;
    }
    out
}

/// The connection of one account's import, opened again when lost.
struct Session<'a> {
    importer: &'a Importer,
    source: &'a ImapSource,
    connection: Option<Connection>,
    _slot: OwnedSemaphorePermit,
    /// The folder open, to open it again after a reconnection, and its UIDVALIDITY.
    selected: Option<(String, u32)>,
    reconnects_left: usize,
}

impl<'a> Session<'a> {
    async fn open(importer: &'a Importer, source: &'a ImapSource) -> Result<Session<'a>, Error> {
        let slot = importer.slot(&source.url.host).await;
        let connection = Connection::open(source, &importer.options).await?;
        Ok(Session {
            importer,
            source,
            connection: Some(connection),
            _slot: slot,
            selected: None,
            reconnects_left: importer.options.reconnects_max,
        })
    }

    /// The connection, opened again (and the folder selected again) if it was lost.
    async fn connection(&mut self) -> Result<&mut Connection, Error> {
        if self.connection.is_none() {
            if self.reconnects_left == 0 {
                return Err(Error::Connection(format!(
                    "the connection was lost {} times (migrate.reconnects_max)",
                    self.importer.options.reconnects_max
                )));
            }
            self.reconnects_left -= 1;
            tracing::warn!(source = %self.source.url.display(), left = self.reconnects_left, "import: connecting again");
            let mut connection = Connection::open(self.source, &self.importer.options).await?;
            if let Some((raw, validity)) = &self.selected {
                let now = connection.examine(raw).await?;
                if now != *validity {
                    return Err(Error::Refused(format!("the folder's UIDVALIDITY changed ({validity} then {now})")));
                }
            }
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("just set"))
    }

    /// Runs `op` on the connection; a lost connection is dropped (the next call opens
    /// another) and the error returned.
    async fn list(&mut self) -> Result<Vec<ListedFolder>, Error> {
        let res = self.connection().await?.list().await;
        self.settle(res)
    }

    async fn select(&mut self, raw: &str) -> Result<u32, Error> {
        self.selected = None;
        let mut tries = 0;
        loop {
            let res = self.connection().await?.examine(raw).await;
            match self.settle(res) {
                Ok(validity) => {
                    self.selected = Some((raw.to_string(), validity));
                    return Ok(validity);
                }
                Err(Error::Connection(_)) if tries < 1 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    async fn listing(&mut self) -> Result<Vec<Listed>, Error> {
        let mut tries = 0;
        loop {
            let res = self.connection().await?.listing().await;
            match self.settle(res) {
                Err(Error::Connection(_)) if tries < 1 => tries += 1,
                res => return res,
            }
        }
    }

    /// The bytes of each message of the batch, or why it could not be had. A batch that
    /// fails is fetched again one message at a time. Fails only when the connection
    /// cannot be opened again.
    async fn fetch_isolating(&mut self, batch: &[Listed]) -> Result<Vec<Result<Bytes, String>>, Error> {
        let uids: Vec<u32> = batch.iter().map(|m| m.uid).collect();
        let sizes: Vec<u64> = batch.iter().map(|m| m.size).collect();
        let res = self.connection().await?.fetch(&uids, &sizes).await;
        match self.settle(res) {
            Ok(fetched) => {
                let mut by_uid: HashMap<u32, Bytes> = fetched.into_iter().collect();
                let out = uids
                    .iter()
                    .map(|uid| {
                        by_uid.remove(uid).ok_or_else(|| "the server did not send it (deleted meanwhile?)".into())
                    })
                    .collect();
                return Ok(out);
            }
            Err(e) if batch.len() == 1 => return Ok(vec![Err(fetch_failure(&e))]),
            Err(_) => {}
        }
        let mut out = Vec::with_capacity(batch.len());
        for message in batch {
            let res = self.connection().await?.fetch(&[message.uid], &[message.size]).await;
            out.push(match self.settle(res) {
                Ok(fetched) => fetched
                    .into_iter()
                    .find(|(uid, _)| *uid == message.uid)
                    .map(|(_, raw)| raw)
                    .ok_or_else(|| "the server did not send it (deleted meanwhile?)".into()),
                Err(e) => Err(fetch_failure(&e)),
            });
        }
        Ok(out)
    }

    fn settle<T>(&mut self, res: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::Connection(_)) = &res {
            self.connection = None;
        }
        res
    }

    async fn close(&mut self) {
        if let Some(connection) = self.connection.take() {
            connection.logout().await;
        }
    }
}

fn fetch_failure(e: &Error) -> String {
    match e {
        Error::Connection(text) => format!("the connection failed while fetching it: {text}"),
        Error::Refused(text) => format!("the server refused to send it: {text}"),
        e => e.to_string(),
    }
}

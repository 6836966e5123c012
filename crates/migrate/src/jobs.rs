//! The imports a running server runs for its admin API (`/api/v1/imports`): each job one
//! account's [`Importer::start_imap_with`], at most `migrate.jobs_concurrent_max` at once
//! (the others queued, tenants in turn), at most `migrate.jobs_kept_max` remembered.
//!
//! Jobs live in memory only: the source's password is held by the job's task until the
//! import ends, and never kept, logged nor shown; a restart forgets every job, which is
//! safe because the import is resumable (a job started again copies only what is missing).
//! A finished job's report stays until it is forgotten or the bound evicts the oldest
//! finished job. [`Jobs::shutdown`] cancels every job and waits for them: what was
//! committed stays, a commit is whole or absent.
//!
//! Jobs carry the tenant of their account as an opaque label: who may see which job is the
//! caller's rule (the admin API's, over the directory's scopes), not this module's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::destination::Target;
use crate::imap::ImapSource;
use crate::progress::{Cancel, Progress, Snapshot};
use crate::pull::Importer;
use crate::report::Report;
use crate::{Error, Options};

/// The job table of one server.
pub struct Jobs {
    importer: Arc<Importer>,
    roots: Arc<rustls::RootCertStore>,
    table: Arc<Mutex<Table>>,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for one of the `jobs_concurrent_max` slots.
    Queued,
    Running,
    /// Asked to stop; it stops at once, between two commits.
    Cancelling,
    /// Ended by itself: the report says whether it is complete.
    Finished,
    /// Ended by a cancellation (or the server's shutdown); a new job resumes it.
    Cancelled,
}

/// A job as its readers see it: never the password.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    /// Random, 128 bits in hex: ids tell nothing of other tenants' jobs.
    pub id: String,
    /// The tenant of the account (the label the job was started with).
    pub tenant: String,
    pub account: String,
    /// The source as `imaps://host:port`.
    pub source: String,
    /// The login on the source.
    pub user: String,
    pub state: JobState,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    pub finished_at: Option<u64>,
    /// Absent while queued.
    pub progress: Option<Snapshot>,
    /// Once ended.
    pub report: Option<Report>,
}

/// Why a job could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `jobs_kept_max` jobs are remembered and none is finished.
    #[error("{0} import jobs are queued or running (migrate.jobs_kept_max): try again once one has finished")]
    Full(usize),
    /// The tenant has `jobs_per_tenant_max` jobs queued or running: one commune cannot
    /// fill the table that every commune shares.
    #[error(
        "{0} import jobs of this commune are queued or running (migrate.jobs_per_tenant_max): try again once one has finished"
    )]
    TenantFull(usize),
    /// The server is stopping.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// What [`Jobs::cancel_or_forget`] did.
#[derive(Debug)]
pub enum Removal {
    /// The job was queued or running: it is stopping, and stays listed until it has.
    Cancelling(Box<JobView>),
    /// The job had ended: it is forgotten, report and all.
    Forgotten,
}

#[derive(Default)]
struct Table {
    /// In the order they were started: the first finished one is the oldest.
    entries: Vec<Entry>,
    /// Jobs started since the server started.
    started: u64,
    /// Jobs holding one of the `jobs_concurrent_max` slots.
    running: usize,
    slots_max: usize,
    /// Queued jobs, in the order they came: each task waits for its signal.
    waiting: std::collections::VecDeque<(String, oneshot::Sender<()>)>,
    /// Slots handed out so far, and when each tenant was last handed one.
    handed: u64,
    last_handed: HashMap<String, u64>,
    shutting_down: bool,
}

impl Table {
    /// Hands free slots to queued jobs, tenants in turn: the job of the tenant with the
    /// fewest running, then the one served longest ago, then the oldest. A commune that
    /// queued all its agents does not hold back the next commune's first import.
    fn dispatch(&mut self) {
        while self.running < self.slots_max {
            let Some(position) = self.next_waiting() else {
                // Only cancelled jobs wait: each ends by itself once its signal is dropped.
                self.waiting.clear();
                return;
            };
            let Some((id, go)) = self.waiting.remove(position) else { return };
            let Some(entry) = self.entries.iter_mut().find(|entry| entry.id == id) else { continue };
            entry.slot = true;
            self.running += 1;
            self.handed += 1;
            self.last_handed.insert(entry.tenant.clone(), self.handed);
            // A task that is gone gives its slot back when it ends (`slot` is set).
            let _ = go.send(());
        }
    }

    /// The position in `waiting` of the job to start next, if one still waits.
    fn next_waiting(&self) -> Option<usize> {
        let mut running: HashMap<&str, usize> = HashMap::new();
        let mut by_id: HashMap<&str, &Entry> = HashMap::with_capacity(self.entries.len());
        for entry in &self.entries {
            if entry.slot {
                *running.entry(&entry.tenant).or_default() += 1;
            }
            by_id.insert(&entry.id, entry);
        }
        let mut best: Option<((usize, u64), usize)> = None;
        for (position, (id, _)) in self.waiting.iter().enumerate() {
            let Some(entry) = by_id.get(id.as_str()).filter(|entry| !entry.cancel.is_cancelled()) else { continue };
            let tenant = entry.tenant.as_str();
            let rank = (running.get(tenant).copied().unwrap_or(0), self.last_handed.get(tenant).copied().unwrap_or(0));
            // Strictly better only: among equals the oldest stays.
            if best.is_none_or(|(best_rank, _)| rank < best_rank) {
                best = Some((rank, position));
            }
        }
        best.map(|(_, position)| position)
    }
}

struct Entry {
    id: String,
    tenant: String,
    account: String,
    source: String,
    user: String,
    created_at: u64,
    finished_at: Option<u64>,
    cancel: Cancel,
    /// Holds one of the slots (from the dispatch to the task's end).
    slot: bool,
    progress: Option<Arc<Progress>>,
    report: Option<Report>,
    /// The task until it ends; taken by [`Jobs::shutdown`] to wait for it.
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Entry {
    fn state(&self) -> JobState {
        // Running from the slot's handing: its task makes the progress a moment later.
        match (&self.report, self.cancel.is_cancelled(), self.slot || self.progress.is_some()) {
            (Some(_), true, _) => JobState::Cancelled,
            (Some(_), false, _) => JobState::Finished,
            (None, true, _) => JobState::Cancelling,
            (None, false, false) => JobState::Queued,
            (None, false, true) => JobState::Running,
        }
    }

    fn view(&self) -> JobView {
        JobView {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            account: self.account.clone(),
            source: self.source.clone(),
            user: self.user.clone(),
            state: self.state(),
            created_at: self.created_at,
            finished_at: self.finished_at,
            progress: self.progress.as_ref().map(|progress| progress.snapshot()),
            report: self.report.clone(),
        }
    }
}

impl Jobs {
    /// Jobs over `importer` (its `Options` give the bounds), trusting `roots` (the
    /// system's, and the operator's CA file) for every source.
    pub fn new(importer: Arc<Importer>, roots: Arc<rustls::RootCertStore>) -> Jobs {
        let slots_max = importer.options().jobs_concurrent_max.max(1);
        let table = Table { slots_max, ..Table::default() };
        Jobs { importer, roots, table: Arc::new(Mutex::new(table)) }
    }

    pub fn options(&self) -> &Options {
        self.importer.options()
    }

    /// The TLS client of one source: the server's roots, and `ca_pem`'s certificates (a
    /// source with a private CA) if given.
    pub fn client_tls(&self, ca_pem: Option<&str>) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = (*self.roots).clone();
        if let Some(pem) = ca_pem {
            let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::Tls(format!("the CA is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Tls("the CA holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| Error::Tls(format!("the CA's certificate is not usable: {e}")))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// Queues the import of `source` into `target` (an account of `tenant`); it starts as
    /// soon as a slot is free. The password goes with the job's task only.
    pub fn start(&self, tenant: &str, target: Target, source: ImapSource) -> Result<JobView, StartError> {
        let now = (self.importer.clock())();
        let cancel = Cancel::default();
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.shutting_down {
            return Err(StartError::ShuttingDown);
        }
        let unfinished = table.entries.iter().filter(|entry| entry.tenant == tenant && entry.report.is_none()).count();
        if unfinished >= self.options().jobs_per_tenant_max.max(1) {
            return Err(StartError::TenantFull(unfinished));
        }
        table.started += 1;
        let id = random_id(now, table.started);
        let kept_max = self.options().jobs_kept_max.max(1);
        while table.entries.len() >= kept_max {
            let Some(oldest) = table.entries.iter().position(|entry| entry.report.is_some()) else {
                return Err(StartError::Full(table.entries.len()));
            };
            table.entries.remove(oldest);
        }
        let entry = Entry {
            id: id.clone(),
            tenant: tenant.to_string(),
            account: target.address.clone(),
            source: source.url.display(),
            user: source.user.clone(),
            created_at: now,
            finished_at: None,
            cancel: cancel.clone(),
            slot: false,
            progress: None,
            report: None,
            task: None,
        };
        let view = entry.view();
        table.entries.push(entry);
        let (go, wait) = oneshot::channel();
        table.waiting.push_back((id.clone(), go));
        table.dispatch();
        let task =
            tokio::spawn(run(self.importer.clone(), self.table.clone(), id.clone(), (target, source), wait, cancel));
        if let Some(entry) = table.entries.iter_mut().find(|entry| entry.id == id) {
            entry.task = Some(task);
        }
        Ok(view)
    }

    /// Every job, oldest first, whose tenant `visible` accepts.
    pub fn list(&self, visible: impl Fn(&str) -> bool) -> Vec<JobView> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.entries.iter().filter(|entry| visible(&entry.tenant)).map(Entry::view).collect()
    }

    pub fn get(&self, id: &str) -> Option<JobView> {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.entries.iter().find(|entry| entry.id == id).map(Entry::view)
    }

    /// Cancels a job that has not ended, forgets one that has. `None`: no such job.
    pub fn cancel_or_forget(&self, id: &str) -> Option<Removal> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let index = table.entries.iter().position(|entry| entry.id == id)?;
        if table.entries[index].report.is_some() {
            table.entries.remove(index);
            return Some(Removal::Forgotten);
        }
        table.entries[index].cancel.cancel();
        Some(Removal::Cancelling(Box::new(table.entries[index].view())))
    }

    /// Refuses new jobs, cancels every job, and waits for each to end (an import stops
    /// between two commits, at once).
    pub async fn shutdown(&self) {
        let tasks: Vec<_> = {
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            table.shutting_down = true;
            table
                .entries
                .iter_mut()
                .filter_map(|entry| {
                    entry.cancel.cancel();
                    entry.task.take()
                })
                .collect()
        };
        let n_jobs = tasks.len();
        for task in tasks {
            let _ = task.await;
        }
        if n_jobs > 0 {
            tracing::info!(jobs = n_jobs, "imports stopped for the shutdown: a new job resumes each");
        }
    }
}

/// One job's task: waits for a slot (or its cancellation), imports, keeps the report,
/// and hands its slot to the next queued job.
async fn run(
    importer: Arc<Importer>,
    table: Arc<Mutex<Table>>,
    id: String,
    (target, source): (Target, ImapSource),
    wait: oneshot::Receiver<()>,
    cancel: Cancel,
) {
    tokio::select! {
        _ = wait => {}
        () = cancel.cancelled() => {}
    }
    let (account, source_name) = (target.address.clone(), format!("{} ({})", source.url.display(), source.user));
    let progress = Arc::new(Progress::default());
    let mut started = false;
    set(&table, &id, |entry| {
        started = entry.slot && !entry.cancel.is_cancelled();
        if started {
            entry.progress = Some(progress.clone());
        }
    });
    let report = if started {
        tracing::info!(job = %id, account = %account, source = %source_name, "import job started");
        let report = importer.start_imap_with(target, source, progress, cancel).report().await;
        tracing::info!(job = %id, account = %account, complete = report.complete, error = ?report.error, "import job ended");
        report
    } else {
        drop(source);
        let mut report =
            Report { account, source: source_name, error: Some(Error::Cancelled.to_string()), ..Report::default() };
        report.settle();
        report
    };
    let finished_at = (importer.clock())();
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    table.waiting.retain(|(waiting, _)| *waiting != id);
    let mut released = false;
    if let Some(entry) = table.entries.iter_mut().find(|entry| entry.id == id) {
        entry.report = Some(report);
        entry.finished_at = Some(finished_at);
        entry.task = None;
        released = std::mem::take(&mut entry.slot);
    }
    if released {
        table.running -= 1;
    }
    table.dispatch();
}

fn set(table: &Mutex<Table>, id: &str, change: impl FnOnce(&mut Entry)) {
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = table.entries.iter_mut().find(|entry| entry.id == id) {
        change(entry);
    }
}

/// 128 random bits, in hex.
fn random_id(now: u64, sequence: u64) -> String {
    let mut bytes = [0u8; 16];
    let random = rustls::crypto::ring::default_provider().secure_random;
    if random.fill(&mut bytes).is_err() {
        // The system's generator failed: the ids must still be unique (the time and a
        // sequence), though guessable ones tell a tenant admin that others run imports.
        tracing::error!("no random bytes for an import job's id: using the time and a sequence");
        bytes[..8].copy_from_slice(&now.to_be_bytes());
        bytes[8..].copy_from_slice(&sequence.to_be_bytes());
    }
    hex::encode(bytes)
}

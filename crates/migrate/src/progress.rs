//! What an import has done so far, readable while it runs (the terminal's progress line,
//! the API's job status), and its cancellation.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

/// Counters of one account's import, shared between the import and its readers.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    messages_total: AtomicU64,
    messages_done: AtomicU64,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    folder: Mutex<String>,
    phase: Mutex<Phase>,
}

/// Where the import is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Connecting,
    Copying,
    Verifying,
    Done,
}

/// A copy of the counters at one instant, with the rate and the time left.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub phase: Phase,
    pub folder: String,
    /// Messages on the source (every folder's count, read first).
    pub messages_total: u64,
    /// Messages copied, found already there or skipped.
    pub messages_done: u64,
    /// Bytes to copy, as known so far (each folder's sizes are listed when it is reached).
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub elapsed_s: f64,
    pub bytes_per_second: f64,
    /// At the current rate of messages; `None` before the first.
    pub eta_s: Option<f64>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            started: Instant::now(),
            messages_total: AtomicU64::new(0),
            messages_done: AtomicU64::new(0),
            bytes_total: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            folder: Mutex::new(String::new()),
            phase: Mutex::new(Phase::Connecting),
        }
    }
}

impl Progress {
    pub(crate) fn add_total(&self, messages: u64, bytes: u64) {
        self.messages_total.fetch_add(messages, Ordering::Relaxed);
        self.bytes_total.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_done(&self, messages: u64, bytes: u64) {
        self.messages_done.fetch_add(messages, Ordering::Relaxed);
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn set_folder(&self, folder: &str) {
        *self.folder.lock().unwrap_or_else(|e| e.into_inner()) = folder.to_string();
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    pub fn snapshot(&self) -> Snapshot {
        let elapsed_s = self.started.elapsed().as_secs_f64();
        let bytes_done = self.bytes_done.load(Ordering::Relaxed);
        let bytes_total = self.bytes_total.load(Ordering::Relaxed);
        let bytes_per_second = if elapsed_s > 0.0 { bytes_done as f64 / elapsed_s } else { 0.0 };
        // By messages: their total is known from the start (the folders' counts), the
        // bytes only folder by folder.
        let messages_total = self.messages_total.load(Ordering::Relaxed);
        let messages_done = self.messages_done.load(Ordering::Relaxed);
        let eta_s = (messages_done > 0 && elapsed_s > 0.0)
            .then(|| messages_total.saturating_sub(messages_done) as f64 * elapsed_s / messages_done as f64);
        Snapshot {
            phase: *self.phase.lock().unwrap_or_else(|e| e.into_inner()),
            folder: self.folder.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            messages_total,
            messages_done,
            bytes_total,
            bytes_done,
            elapsed_s,
            bytes_per_second,
            eta_s,
        }
    }
}

impl Snapshot {
    /// One line for a terminal: `alice@commune.fr  1234/5000 msg  45.2/210.0 MiB  3.1 MiB/s  ETA 0:53`.
    pub fn line(&self, account: &str) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let eta = match self.eta_s {
            Some(eta) => {
                let eta = eta as u64;
                format!("{}:{:02}:{:02}", eta / 3600, eta / 60 % 60, eta % 60)
            }
            None => "-".into(),
        };
        format!(
            "{account}  {}/{} msg  {:.1}/{:.1} MiB  {:.1} MiB/s  ETA {eta}  {}",
            self.messages_done,
            self.messages_total,
            self.bytes_done as f64 / MIB,
            self.bytes_total as f64 / MIB,
            self.bytes_per_second / MIB,
            self.folder
        )
    }
}

/// Stops an import: at once (what is committed stays, a commit is whole or absent), and a
/// rerun resumes.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Relaxed);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::Relaxed)
    }

    /// Returns once [`Cancel::cancel`] was called.
    pub async fn cancelled(&self) {
        loop {
            // Created before the check: a `notify_waiters` after it wakes it.
            let notified = self.0.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

//! Work the server does in the background for the operator's API calls (a backup, a
//! tenant's move to another cluster), one at a time of each kind, kept in memory for
//! polling: the last [`JOBS_KEPT_MAX`] of each kind. A restart forgets them; what they made
//! stays (a backup set, a tenant in its new cluster).

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::http::StatusCode;
use hameau_directory::Principal;
use serde::Serialize;
use utoipa::ToSchema;

use super::Problem;

/// Finished jobs remembered for polling. 16 is hours of hourly backups, and keeps the
/// list one short page.
pub const JOBS_KEPT_MAX: usize = 16;

/// The operator's work: anyone else is refused (403) before anything is read, told that
/// only the operator does `what`.
pub fn operator_only(caller: &Principal, what: &str) -> Result<(), Problem> {
    match caller {
        Principal::Operator => Ok(()),
        _ => Err(Problem::new(StatusCode::FORBIDDEN, format!("only the operator {what}"))),
    }
}

/// Whether the caller sees the operator's jobs: the operator does; a tenant admin sees
/// none (no job is of its tenant); a user is refused.
fn sees_jobs(caller: &Principal) -> Result<bool, Problem> {
    Ok(caller.administered_tenant()?.is_none())
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Done,
    Failed,
}

/// The jobs `J` of one kind, and what the running one reports as it goes (`P`).
pub struct JobTable<J, P> {
    inner: Mutex<Inner<J, P>>,
}

struct Inner<J, P> {
    next_id: u64,
    jobs: BTreeMap<u64, J>,
    /// The running job and its progress.
    running: Option<(u64, P)>,
}

impl<J, P> Default for JobTable<J, P> {
    fn default() -> Self {
        JobTable { inner: Mutex::new(Inner { next_id: 0, jobs: BTreeMap::new(), running: None }) }
    }
}

impl<J: Clone, P: Clone> JobTable<J, P> {
    /// Records a new running job, `make` given its id; `None` while another runs.
    pub fn start(&self, progress: P, make: impl FnOnce(u64) -> J) -> Option<J> {
        let mut inner = self.lock();
        if inner.running.is_some() {
            return None;
        }
        inner.next_id += 1;
        let id = inner.next_id;
        let job = make(id);
        inner.jobs.insert(id, job.clone());
        // The running job is the newest: never the one forgotten.
        while inner.jobs.len() > JOBS_KEPT_MAX {
            inner.jobs.pop_first();
        }
        inner.running = Some((id, progress));
        Some(job)
    }

    /// The job `id` ended as `job`: another may start.
    pub fn finish(&self, id: u64, job: J) {
        let mut inner = self.lock();
        inner.jobs.insert(id, job);
        if inner.running.as_ref().is_some_and(|(running, _)| *running == id) {
            inner.running = None;
        }
    }

    /// The job `id`, with its progress while it runs.
    pub fn get(&self, id: u64) -> Option<(J, Option<P>)> {
        let inner = self.lock();
        let job = inner.jobs.get(&id)?.clone();
        let progress =
            inner.running.as_ref().filter(|(running, _)| *running == id).map(|(_, progress)| progress.clone());
        Some((job, progress))
    }

    /// The jobs remembered, oldest first.
    pub fn list(&self) -> Vec<J> {
        self.lock().jobs.values().cloned().collect()
    }

    /// The job whose id is the path's `typed`, as `caller` may read it: a user is refused
    /// (403); an id that is not a number, any job for a tenant admin, and a job forgotten
    /// or never started read as absent (404, "no `kind` job …").
    pub fn get_for(&self, caller: &Principal, typed: &str, kind: &str) -> Result<(J, Option<P>), Problem> {
        let sees_jobs = sees_jobs(caller)?;
        let not_found = || Problem::new(StatusCode::NOT_FOUND, format!("no {kind} job {typed:?}"));
        let id: u64 = typed.parse().map_err(|_| not_found())?;
        if !sees_jobs {
            return Err(not_found());
        }
        self.get(id).ok_or_else(not_found)
    }

    /// [`JobTable::list`] as `caller` may read it: none for a tenant admin, 403 for a user.
    pub fn list_for(&self, caller: &Principal) -> Result<Vec<J>, Problem> {
        Ok(if sees_jobs(caller)? { self.list() } else { Vec::new() })
    }

    /// The lock, even if a handler panicked while holding it: the table stays consistent
    /// (each change is one insert or remove).
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<J, P>> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_job_runs_at_a_time_and_the_oldest_are_forgotten() {
        let table: JobTable<(u64, &str), u8> = JobTable::default();
        let first = table.start(7, |id| (id, "running")).unwrap();
        assert_eq!(first, (1, "running"));
        assert!(table.start(0, |id| (id, "running")).is_none(), "one at a time");
        assert_eq!(table.get(1), Some(((1, "running"), Some(7))));
        table.finish(1, (1, "done"));
        assert_eq!(table.get(1), Some(((1, "done"), None)));
        for _ in 0..JOBS_KEPT_MAX + 3 {
            let (id, _) = table.start(0, |id| (id, "running")).unwrap();
            table.finish(id, (id, "done"));
        }
        let kept = table.list();
        assert_eq!(kept.len(), JOBS_KEPT_MAX);
        assert_eq!(kept.first().unwrap().0, 5, "the oldest went first");
        assert_eq!(table.get(1), None);
    }
}

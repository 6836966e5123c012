//! The outbound queue: messages accepted for delivery elsewhere, kept in the store until
//! every recipient is delivered or has failed for good. No sockets: the delivery worker
//! (`hameau-smtp`) claims due messages, tries them, and records each recipient's outcome.
//!
//! Durability: [`Queue::enqueue`] returns once the message, its envelope and its schedule
//! entry are committed (synced) in one batch, so a `250` given after it survives any
//! crash. Delivery is at least once: a worker [claims](Queue::claim_due) a message by
//! moving its schedule entry to the end of a lease that names its node's store session;
//! if the node dies, another (or its next run) takes the message back as soon as it sees
//! the session ended ([`Queue::release_ended_leases`]), and at the latest the lease ends
//! and the message is due again. A recipient recorded [`State::Delivered`] is never sent
//! again; only one accepted by the receiver whose record was lost in a crash can be sent
//! twice (or, on PostgreSQL, one under way on a node whose session was seen ended while
//! the node lived on: its connection to the database broke for longer than the other
//! nodes' look at the leases).
//!
//! Retries follow [`Limits::retry_schedule_s`] until [`Limits::lifetime_s`]; the worker is
//! told which recipients failed for good and which are late enough for a delay notice
//! ([`Recorded`]), and builds the notifications. A held message ([`Queue::hold`]) has no
//! schedule entry until released.
//!
//! The worker sleeps until the next message is due, or until [`Queue::watch_due`] says a
//! message was queued or made due earlier: store counters that the commits doing so add
//! to, notified by the store, so that a message queued or released on any node wakes it.

pub mod dsn;
mod keys;
pub use keys::{
    MESSAGES as MESSAGES_PREFIX, Owner as RecordOwner, blob_refs as record_blob_refs, owner as record_owner,
};
mod model;

#[cfg(test)]
mod tests;

use bytes::Bytes;
use hameau_store::{Batch, BlobHash, CounterValue, Patch, PatchTarget, Scan, Store};
use tokio::sync::watch;

pub use model::{Brake, Hold, Message, Outcome, Recipient, State};

/// A queued message's id: never reused.
pub type QueueId = u64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    #[error("corrupt queue record {key}: {problem}")]
    Corrupt { key: String, problem: String },
    #[error("a message needs at least one recipient")]
    NoRecipients,
    #[error("{n} recipients, over the queue's limit of {max}")]
    TooManyRecipients { n: usize, max: usize },
    #[error("no queued message {0}")]
    NotFound(QueueId),
    #[error("no such brake")]
    NoBrake,
    /// Concurrent changes of the message kept conflicting; try again.
    #[error("busy: try again")]
    Busy,
}

/// The queue's limits and schedule. `config` fills them (`[queue]`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Waits before each retry of a recipient after a temporary failure, in seconds: the
    /// n-th retry waits the n-th entry, and every later one the last. 5 minutes first, as
    /// Postfix's `minimal_backoff_time`, doubling to an hour (its `maximal_backoff_time`
    /// is 4,000 s): a receiver's short outage costs minutes, a long one an attempt an hour.
    ///
    /// Each wait may be as short as 1 s, and [`Limits::lifetime_s`] and
    /// [`Limits::delay_notice_s`] too, so that an end-to-end test sees a retry, a delay
    /// notice and an expiry in seconds (as `[outbound]`'s timeouts go down to 1 s for the
    /// same reason). A server should not: a receiver that greylists (typically for 5
    /// minutes) counts every earlier retry as one more refusal and may throttle or list
    /// the sending address, and a lifetime under RFC 5321's 4-5 days bounces the mail of
    /// an ordinary weekend outage.
    pub retry_schedule_s: Vec<u64>,
    /// How long a recipient is retried before it fails for good, from the time the
    /// message was queued: 5 days, Postfix's `maximal_queue_lifetime` and RFC 5321
    /// §4.5.4.1's "at least 4-5 days". Under an hour is for tests only (see
    /// [`Limits::retry_schedule_s`]).
    pub lifetime_s: u64,
    /// After this long undelivered, the sender is told once that the message is late (a
    /// delay DSN): 4 hours, as Postfix's `delay_warning_time` when it is on. Under 10
    /// minutes is for tests only: a sender told of every greylisting learns to ignore it.
    pub delay_notice_s: u64,
    /// How long a worker holds a message it claimed before another may take it: longer
    /// than one attempt can last (RFC 5321 §4.5.3.2's timeouts add up to about 10 minutes
    /// for the data of one message). A worker that dies holds its messages this long.
    pub lease_s: u64,
    /// How often a delivery worker looks for leases whose node's store session ended (the
    /// node died or stopped mid-delivery) and takes their messages back: 10 s, so that on
    /// several nodes a dead one's deliveries resume within seconds, not [`Limits::lease_s`].
    /// Each look reads the leases (a message per worker round under way) and asks the store
    /// which of their sessions ended (one query on PostgreSQL).
    pub lease_sweep_s: u64,
    /// Most recipients of one queued message. Submission refuses more at RCPT;
    /// 1,000 holds a commune's newsletter to its agents and associations.
    pub recipients_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            retry_schedule_s: vec![300, 600, 1200, 2400, 3600],
            lifetime_s: 5 * 86_400,
            delay_notice_s: 4 * 3600,
            lease_s: 900,
            lease_sweep_s: 10,
            recipients_max: 1000,
        }
    }
}

impl Limits {
    /// Ranges and relationships, each naming its `[queue]` key.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::{Problem, range};
        let section = "queue";
        range(section, "retry_schedule_s", self.retry_schedule_s.len() as u64, 1, 100)?;
        // The minimums of 1 s are for tests (see `retry_schedule_s`); a day between
        // retries is already more than any receiver's outage needs.
        if let Some(wait) = self.retry_schedule_s.iter().find(|wait| !(1..=86_400).contains(*wait)) {
            let problem = format!("a wait of {wait} s is out of range: each must be between 1 and 86400");
            return Err(Problem::new(section, "retry_schedule_s", problem));
        }
        // RFC 5321 §4.5.4.1: give up after at least 4-5 days (less is for tests); at most
        // a month.
        range(section, "lifetime_s", self.lifetime_s, 1, 30 * 86_400)?;
        range(section, "delay_notice_s", self.delay_notice_s, 1, 30 * 86_400)?;
        range(section, "lease_s", self.lease_s, 60, 86_400)?;
        range(section, "lease_sweep_s", self.lease_sweep_s, 1, 3600)?;
        range(section, "recipients_max", self.recipients_max as u64, 100, 100_000)?;
        if self.delay_notice_s >= self.lifetime_s {
            let problem = format!(
                "{} is not below queue.lifetime_s ({}): the delay notice would never be sent",
                self.delay_notice_s, self.lifetime_s
            );
            return Err(Problem::new(section, "delay_notice_s", problem));
        }
        Ok(())
    }

    /// The wait before retry number `attempt` (1 for the first retry).
    pub fn retry_wait_s(&self, attempt: u32) -> u64 {
        let index = (attempt.max(1) as usize - 1).min(self.retry_schedule_s.len().saturating_sub(1));
        self.retry_schedule_s.get(index).copied().unwrap_or(3600)
    }
}

/// A message to queue.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The message as it is to be sent (signed, with its trace headers).
    pub raw: Bytes,
    /// Empty for a delivery status notification.
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub tenant: Option<String>,
    pub account: Option<u64>,
    pub envelope_id: String,
    /// Queued held (the sender's account is over its sending limits).
    pub held: Option<Hold>,
}

/// A message a worker claimed: it is the worker's until `leased_until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: QueueId,
    pub message: Message,
    pub leased_until: u64,
}

/// What [`Queue::record`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The message as recorded (`None` when it left the queue meanwhile: deleted).
    pub message: Option<Message>,
    /// Recipients that failed for good in this record: a failure DSN tells the sender
    /// (unless the message is itself a DSN).
    pub failed: Vec<Recipient>,
    /// Recipients late enough for the one delay DSN (unless the message is a DSN).
    pub delayed: Vec<Recipient>,
    /// Every recipient is final: the message left the queue.
    pub done: bool,
}

/// Optimistic retries of one change before [`Error::Busy`].
const RETRIES_MAX: usize = 16;

/// Most leases one [`Queue::release_ended_leases`] reads: the messages under way on every
/// node are far fewer (a claim batch per round); what is past it is read by the next look.
const LEASE_SWEEP_MAX: usize = 10_000;

/// What wakes a delivery worker ([`Queue::watch_due`]): a message queued, or one made due
/// earlier than it was, by any writer over the store.
#[derive(Debug)]
pub struct DueWatch {
    /// [`keys::SEQ`]: every enqueue.
    enqueued: watch::Receiver<CounterValue>,
    /// [`keys::WAKE`]: releases, retries, brakes lifted, leases taken back.
    woken: watch::Receiver<CounterValue>,
}

impl DueWatch {
    /// Waits until a message is queued or made due earlier after the last wait returned
    /// (or the watch was made): a change during the caller's work is not lost, it ends the
    /// next wait at once. Fails only when the store is dropped.
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        tokio::select! {
            changed = self.enqueued.changed() => changed,
            changed = self.woken.changed() => changed,
        }
    }
}

/// The outbound queue over a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Queue {
    store: Store,
    limits: Limits,
}

impl Queue {
    pub fn new(store: Store, limits: Limits) -> Queue {
        Queue { store, limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// What wakes a delivery worker: every [`Queue::enqueue`], and every change that makes
    /// a message due earlier than it was ([`Queue::release`], [`Queue::retry_now`],
    /// [`Queue::lift_brake`], [`Queue::release_ended_leases`]), made through any `Queue` over
    /// the store (the store's notifications of two counters those commits add to).
    pub async fn watch_due(&self) -> Result<DueWatch, Error> {
        let enqueued = self.store.watch(keys::SEQ).await?;
        let woken = self.store.watch(keys::WAKE).await?;
        Ok(DueWatch { enqueued, woken })
    }

    /// Queues a message for its recipients, due at once (or held): returns once it is
    /// committed, synced.
    pub async fn enqueue(&self, new: NewMessage, now: u64) -> Result<QueueId, Error> {
        if new.recipients.is_empty() {
            return Err(Error::NoRecipients);
        }
        if new.recipients.len() > self.limits.recipients_max {
            return Err(Error::TooManyRecipients { n: new.recipients.len(), max: self.limits.recipients_max });
        }
        let staged = self.store.stage_blob_bytes(&new.raw).await?;
        let held = new.held.is_some();
        let message = Message {
            blob: staged.hash().to_hex(),
            size: new.raw.len() as u64,
            mail_from: new.mail_from,
            tenant: new.tenant,
            account: new.account,
            queued_at: now,
            envelope_id: new.envelope_id,
            recipients: new
                .recipients
                .into_iter()
                .map(|address| Recipient {
                    address,
                    state: State::Pending,
                    attempts: 0,
                    last_reply: None,
                    next_at: now,
                    delay_notified: false,
                })
                .collect(),
            held: new.held,
            due_at: (!held).then_some(now),
            leased_until: None,
            leased_by: None,
        };
        let mut batch = Batch::new();
        // The id is the counter's value, patched into every key that holds it: one commit.
        let id = batch.add(keys::SEQ, 1);
        batch.add(keys::SIZE, 1);
        let patch = |key: &[u8]| [Patch { counter: id, target: PatchTarget::Key, offset: key.len() - 8 }];
        let key = keys::message(0);
        batch.set_patched(&key, &encode(&message), &patch(&key));
        if !held {
            let key = keys::due(now, 0);
            batch.set_patched(&key, &[], &patch(&key));
        }
        if let Some(tenant) = &message.tenant {
            let key = keys::tenant(tenant, 0);
            batch.set_patched(&key, &[], &patch(&key));
        }
        batch.blob_acquire(staged);
        let committed = self.store.commit(batch).await?;
        Ok(committed.counters[id.index()] as QueueId)
    }

    /// The number of messages in the queue, held ones included.
    pub async fn size(&self) -> Result<u64, Error> {
        Ok(self.store.counter(keys::SIZE).await?.max(0) as u64)
    }

    /// The message `id`, if queued.
    pub async fn get(&self, id: QueueId) -> Result<Option<Message>, Error> {
        Ok(self.read(id).await?.map(|(message, _)| message))
    }

    /// The bytes of a queued message.
    pub async fn raw(&self, message: &Message) -> Result<Vec<u8>, Error> {
        let hash = BlobHash::from_hex(&message.blob).ok_or_else(|| Error::Corrupt {
            key: message.envelope_id.clone(),
            problem: format!("blob id {:?}", message.blob),
        })?;
        self.store.read_blob(&hash).await?.ok_or_else(|| Error::Corrupt {
            key: message.envelope_id.clone(),
            problem: format!("blob {} is missing", message.blob),
        })
    }

    /// Claims up to `max` messages due at `now`, of at most `bytes_max` together (at least
    /// one), each leased to the caller (its store's session) until `now + lease_s`. A
    /// message another worker claimed meanwhile is skipped.
    pub async fn claim_due(&self, now: u64, max: usize, bytes_max: u64) -> Result<Vec<Claim>, Error> {
        let mut scan = Scan::range(keys::DUE, &keys::due_after(now));
        scan.limit = max;
        let leased_until = now.saturating_add(self.limits.lease_s);
        let mut entries = self.store.scan(&scan).await?;
        // The claimer reads every message it claims: their sizes, summed in order, stay
        // within `bytes_max` (one message is always taken, whatever its size).
        let records = entries.iter().map(|entry| async move {
            let Some(id) = keys::due_id(&entry.key) else { return Ok(0) };
            Ok::<u64, Error>(self.read(id).await?.map_or(0, |(message, _)| message.size))
        });
        let mut taken = 0;
        let mut bytes = 0u64;
        for size in futures_util::future::join_all(records).await {
            let size = size?;
            if taken > 0 && bytes.saturating_add(size) > bytes_max {
                break;
            }
            bytes = bytes.saturating_add(size);
            taken += 1;
        }
        entries.truncate(taken);
        // One commit per message, all under way at once: the store syncs them together
        // (group commit), and a message another worker took meanwhile costs only its own.
        let claims = entries.iter().map(|entry| self.claim(&entry.key, leased_until));
        let mut claimed = Vec::with_capacity(entries.len());
        for claim in futures_util::future::join_all(claims).await {
            if let Some(claim) = claim? {
                claimed.push(claim);
            }
        }
        Ok(claimed)
    }

    /// Claims the message of the due entry `key` until `leased_until`; `None` when another
    /// worker took it first or it is gone.
    async fn claim(&self, key: &[u8], leased_until: u64) -> Result<Option<Claim>, Error> {
        let Some(id) = keys::due_id(key) else { return Ok(None) };
        let Some((mut message, version)) = self.read(id).await? else {
            // An entry left by a message gone: drop it.
            let mut batch = Batch::new();
            batch.delete(key);
            self.store.commit(batch).await?;
            return Ok(None);
        };
        // The entry was read before the message: another worker (on another node) may have
        // claimed it in between, moving its schedule to the end of its lease. The version
        // expected below is the one read now, the claimed one; only the schedule tells.
        if message.due_at != keys::due_at(key) {
            return Ok(None);
        }
        let mut batch = Batch::new();
        batch.expect_version(&keys::message(id), version);
        batch.delete(key);
        if let Some(at) = message.due_at {
            batch.delete(&keys::due(at, id));
        }
        message.due_at = Some(leased_until);
        message.leased_until = Some(leased_until);
        // A lease that ended without being taken back (its node's session still seen
        // live, or the lease's end come first) gives way to this one.
        if let Some(session) = message.leased_by.replace(self.store.session()) {
            batch.delete(&keys::lease(session, id));
        }
        batch.set(&keys::lease(self.store.session(), id), &[]);
        batch.set(&keys::due(leased_until, id), &[]);
        batch.set(&keys::message(id), &encode(&message));
        match self.store.commit(batch).await {
            Ok(_) => Ok(Some(Claim { id, message, leased_until })),
            Err(hameau_store::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the outcomes of an attempt, by recipient address, at `now`: delivered
    /// recipients are final at once; deferred ones are scheduled by
    /// [`Limits::retry_schedule_s`], or fail past [`Limits::lifetime_s`]. A message whose
    /// recipients are all final leaves the queue (its blob released). Outcomes for
    /// recipients no longer pending are ignored.
    pub async fn record(&self, id: QueueId, outcomes: &[(String, Outcome)], now: u64) -> Result<Recorded, Error> {
        for _ in 0..RETRIES_MAX {
            let Some((mut message, version)) = self.read(id).await? else { return Ok(Recorded::default()) };
            let mut recorded = Recorded::default();
            for (address, outcome) in outcomes {
                let Some(recipient) = message
                    .recipients
                    .iter_mut()
                    .find(|recipient| recipient.state == State::Pending && recipient.address == *address)
                else {
                    continue;
                };
                match outcome {
                    Outcome::Delivered { reply } => {
                        recipient.state = State::Delivered { at: now };
                        recipient.last_reply = Some(reply.clone());
                    }
                    Outcome::Failed { reply } => {
                        recipient.state = State::Failed { at: now };
                        recipient.last_reply = Some(reply.clone());
                        recorded.failed.push(recipient.clone());
                    }
                    Outcome::Deferred { reply } => {
                        recipient.attempts = recipient.attempts.saturating_add(1);
                        recipient.last_reply = Some(reply.clone());
                        if now >= message.queued_at.saturating_add(self.limits.lifetime_s) {
                            recipient.state = State::Failed { at: now };
                            recorded.failed.push(recipient.clone());
                            continue;
                        }
                        recipient.next_at = now.saturating_add(self.limits.retry_wait_s(recipient.attempts));
                        if !recipient.delay_notified
                            && now >= message.queued_at.saturating_add(self.limits.delay_notice_s)
                        {
                            recipient.delay_notified = true;
                            recorded.delayed.push(recipient.clone());
                        }
                    }
                }
            }
            message.leased_until = None;
            let mut batch = Batch::new();
            batch.expect_version(&keys::message(id), version);
            if let Some(session) = message.leased_by.take() {
                batch.delete(&keys::lease(session, id));
            }
            if let Some(at) = message.due_at {
                batch.delete(&keys::due(at, id));
            }
            if message.pending().next().is_none() {
                self.remove(&mut batch, id, &message)?;
                recorded.done = true;
            } else {
                message.due_at = match message.held {
                    Some(_) => None,
                    None => message.pending().map(|recipient| recipient.next_at).min(),
                };
                if let Some(at) = message.due_at {
                    batch.set(&keys::due(at, id), &[]);
                }
                batch.set(&keys::message(id), &encode(&message));
            }
            match self.store.commit(batch).await {
                Ok(_) => {
                    recorded.message = Some(message);
                    return Ok(recorded);
                }
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// Holds a message: it is not delivered until [`Queue::release`]d (an attempt under
    /// way finishes, and what it records stands).
    pub async fn hold(&self, id: QueueId, reason: &str, now: u64) -> Result<Message, Error> {
        self.change(id, |message| {
            if message.held.is_none() {
                message.held = Some(Hold { reason: reason.to_string(), since: now, by_brake: false });
            }
            message.due_at = None;
        })
        .await
    }

    /// Puts on a brake: records it, and holds the queued messages it covers (the tenant's,
    /// or the account's); returns how many were held. Held by the brake, they are released
    /// with it ([`Queue::lift_brake`]).
    pub async fn brake(&self, brake: &Brake, now: u64) -> Result<usize, Error> {
        let mut batch = Batch::new();
        batch.set(&keys::brake(&brake.tenant, brake.account), &serde_json::to_vec(brake).expect("serialises"));
        self.store.commit(batch).await?;
        let mut held = 0;
        for id in self.ids_of(&brake.tenant, brake.account).await? {
            let hold = Hold { reason: brake.reason.clone(), since: now, by_brake: true };
            let changed = self
                .change(id, |message| {
                    if message.held.is_none() && message.pending().next().is_some() {
                        message.held = Some(hold.clone());
                        message.due_at = None;
                    }
                })
                .await;
            match changed {
                Ok(message) if message.held.as_ref().is_some_and(|hold| hold.by_brake) => held += 1,
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(held)
    }

    /// The brake that stops `account` of `tenant`: its own, or its tenant's.
    pub async fn brake_of(&self, tenant: &str, account: u64) -> Result<Option<Brake>, Error> {
        for key in [keys::brake(tenant, Some(account)), keys::brake(tenant, None)] {
            if let Some(entry) = self.store.get(&key).await? {
                return serde_json::from_slice(&entry.value).map(Some).map_err(|e| Error::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    problem: e.to_string(),
                });
            }
        }
        Ok(None)
    }

    /// The brakes on, of one tenant or all.
    pub async fn brakes(&self, tenant: Option<&str>) -> Result<Vec<Brake>, Error> {
        let prefix = tenant.map_or(keys::BRAKES.to_vec(), keys::brakes_of);
        let mut brakes = Vec::new();
        for entry in self.store.scan(&Scan::prefix(&prefix)).await? {
            let brake = serde_json::from_slice(&entry.value).map_err(|e| Error::Corrupt {
                key: String::from_utf8_lossy(&entry.key).into_owned(),
                problem: e.to_string(),
            })?;
            brakes.push(brake);
        }
        Ok(brakes)
    }

    /// Lifts a brake (the operator's decision): the messages it held are due at once.
    /// Returns how many were released; [`Error::NoBrake`] if there was none.
    pub async fn lift_brake(&self, tenant: &str, account: Option<u64>, now: u64) -> Result<usize, Error> {
        let key = keys::brake(tenant, account);
        if self.store.get(&key).await?.is_none() {
            return Err(Error::NoBrake);
        }
        let mut batch = Batch::new();
        batch.delete(&key);
        self.store.commit(batch).await?;
        let mut released = 0;
        for id in self.ids_of(tenant, account).await? {
            let changed = self
                .change(id, |message| {
                    if message.held.as_ref().is_some_and(|hold| hold.by_brake) {
                        message.held = None;
                        message.due_at = Some(now);
                    }
                })
                .await;
            match changed {
                Ok(message) if message.held.is_none() && message.due_at == Some(now) => released += 1,
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// The ids of the queued messages of `tenant`, or of one of its accounts.
    async fn ids_of(&self, tenant: &str, account: Option<u64>) -> Result<Vec<QueueId>, Error> {
        let mut ids = Vec::new();
        for entry in self.store.scan(&Scan::prefix(&keys::tenant_prefix(tenant))).await? {
            let Some(id) = keys::trailing_id(&entry.key) else { continue };
            match account {
                None => ids.push(id),
                Some(account) => {
                    if self.get(id).await?.is_some_and(|message| message.account == Some(account)) {
                        ids.push(id);
                    }
                }
            }
        }
        Ok(ids)
    }

    /// Releases a held message: due at once.
    pub async fn release(&self, id: QueueId, now: u64) -> Result<Message, Error> {
        self.change(id, |message| {
            message.held = None;
            message.due_at = Some(now);
        })
        .await
    }

    /// Makes a message not held due at once, its pending recipients too (the operator's
    /// "retry now").
    pub async fn retry_now(&self, id: QueueId, now: u64) -> Result<Message, Error> {
        self.change(id, |message| {
            if message.held.is_none() {
                message.due_at = Some(now);
            }
            for recipient in message.recipients.iter_mut().filter(|recipient| recipient.state == State::Pending) {
                recipient.next_at = now;
            }
        })
        .await
    }

    /// Removes a message from the queue without delivering it (no DSN).
    pub async fn delete(&self, id: QueueId) -> Result<Message, Error> {
        for _ in 0..RETRIES_MAX {
            let (message, version) = self.read(id).await?.ok_or(Error::NotFound(id))?;
            let mut batch = Batch::new();
            batch.expect_version(&keys::message(id), version);
            if let Some(at) = message.due_at {
                batch.delete(&keys::due(at, id));
            }
            self.remove(&mut batch, id, &message)?;
            match self.store.commit(batch).await {
                Ok(_) => return Ok(message),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// Queued messages in id order after `after`, at most `limit`: all of them, or one
    /// tenant's.
    pub async fn list(
        &self,
        tenant: Option<&str>,
        after: Option<QueueId>,
        limit: usize,
    ) -> Result<Vec<(QueueId, Message)>, Error> {
        let prefix = match tenant {
            Some(tenant) => keys::tenant_prefix(tenant),
            None => keys::MESSAGES.to_vec(),
        };
        let mut scan = Scan::prefix(&prefix);
        if let Some(after) = after {
            let from = [prefix.as_slice(), &after.saturating_add(1).to_be_bytes()].concat();
            scan.from = std::ops::Bound::Included(from);
        }
        scan.limit = limit;
        let mut listed = Vec::new();
        for entry in self.store.scan(&scan).await? {
            let Some(id) = keys::trailing_id(&entry.key) else { continue };
            let message = match tenant {
                None => decode(&entry.key, &entry.value)?,
                Some(_) => match self.read(id).await? {
                    Some((message, _)) => message,
                    None => continue,
                },
            };
            listed.push((id, message));
        }
        Ok(listed)
    }

    /// Takes back the messages leased by store sessions that ended (a node that died or
    /// stopped mid-delivery; on RocksDB, this node's previous run): due at once, unless
    /// held meanwhile. Returns how many leases it took back. A delivery worker calls it as
    /// it starts and every [`Limits::lease_sweep_s`].
    pub async fn release_ended_leases(&self, now: u64) -> Result<usize, Error> {
        let mut scan = Scan::prefix(keys::LEASES);
        scan.limit = LEASE_SWEEP_MAX;
        let leases: Vec<(u64, QueueId)> =
            self.store.scan(&scan).await?.iter().filter_map(|entry| keys::lease_parts(&entry.key)).collect();
        let mut sessions: Vec<u64> = leases.iter().map(|(session, _)| *session).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let ended = self.store.ended_sessions(&sessions).await?;
        let mut released = 0;
        for (session, id) in leases.into_iter().filter(|(session, _)| ended.contains(session)) {
            let taken_back = std::sync::atomic::AtomicBool::new(false);
            let changed = self
                .change(id, |message| {
                    let ours = message.leased_by == Some(session);
                    taken_back.store(ours, std::sync::atomic::Ordering::Relaxed);
                    if ours {
                        message.leased_by = None;
                        message.leased_until = None;
                        message.due_at = message.held.is_none().then_some(now);
                    }
                })
                .await;
            match changed {
                Ok(_) if taken_back.load(std::sync::atomic::Ordering::Relaxed) => released += 1,
                // A lease entry whose message is gone or was leased again since: dropped.
                Ok(_) | Err(Error::NotFound(_)) => {
                    let mut batch = Batch::new();
                    batch.delete(&keys::lease(session, id));
                    self.store.commit(batch).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    /// When the earliest scheduled message is due (a lease's end counts), if any: how
    /// long the delivery worker may sleep.
    pub async fn next_due(&self) -> Result<Option<u64>, Error> {
        let mut scan = Scan::prefix(keys::DUE);
        scan.limit = 1;
        Ok(self.store.scan(&scan).await?.first().and_then(|entry| keys::due_at(&entry.key)))
    }

    /// How many messages are scheduled (held ones are not), counting up to `limit`: the
    /// queue size `/metrics` shows.
    pub async fn due_count(&self, limit: usize) -> Result<usize, Error> {
        let mut scan = Scan::prefix(keys::DUE);
        scan.limit = limit;
        Ok(self.store.scan(&scan).await?.len())
    }

    /// Reads, changes and writes one message, moving its schedule entry with `due_at`.
    async fn change(&self, id: QueueId, edit: impl Fn(&mut Message)) -> Result<Message, Error> {
        for _ in 0..RETRIES_MAX {
            let (mut message, version) = self.read(id).await?.ok_or(Error::NotFound(id))?;
            let unchanged = message.clone();
            edit(&mut message);
            if message == unchanged {
                return Ok(message);
            }
            let before = unchanged.due_at;
            let mut batch = Batch::new();
            batch.expect_version(&keys::message(id), version);
            if unchanged.leased_by != message.leased_by {
                if let Some(session) = unchanged.leased_by {
                    batch.delete(&keys::lease(session, id));
                }
                if let Some(session) = message.leased_by {
                    batch.set(&keys::lease(session, id), &[]);
                }
            }
            if before != message.due_at {
                if let Some(at) = before {
                    batch.delete(&keys::due(at, id));
                }
                if let Some(at) = message.due_at {
                    batch.set(&keys::due(at, id), &[]);
                    // Due earlier than the workers may be sleeping until: wake them.
                    if before.is_none_or(|before| at < before) {
                        batch.add(keys::WAKE, 1);
                    }
                }
            }
            batch.set(&keys::message(id), &encode(&message));
            match self.store.commit(batch).await {
                Ok(_) => return Ok(message),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// Adds to `batch` what takes a message out of the queue (its schedule entry aside).
    fn remove(&self, batch: &mut Batch, id: QueueId, message: &Message) -> Result<(), Error> {
        let hash = BlobHash::from_hex(&message.blob).ok_or_else(|| Error::Corrupt {
            key: format!("q/m/{id}"),
            problem: format!("blob id {:?}", message.blob),
        })?;
        batch.delete(&keys::message(id));
        batch.add(keys::SIZE, -1);
        if let Some(session) = message.leased_by {
            batch.delete(&keys::lease(session, id));
        }
        if let Some(tenant) = &message.tenant {
            batch.delete(&keys::tenant(tenant, id));
        }
        batch.blob_release(&hash);
        Ok(())
    }

    async fn read(&self, id: QueueId) -> Result<Option<(Message, hameau_store::Version)>, Error> {
        let key = keys::message(id);
        let Some(entry) = self.store.get(&key).await? else { return Ok(None) };
        Ok(Some((decode(&key, &entry.value)?, entry.version)))
    }
}

fn encode(message: &Message) -> Vec<u8> {
    serde_json::to_vec(message).expect("a queue record always serialises")
}

fn decode(key: &[u8], value: &[u8]) -> Result<Message, Error> {
    serde_json::from_slice(value)
        .map_err(|e| Error::Corrupt { key: String::from_utf8_lossy(key).into_owned(), problem: e.to_string() })
}

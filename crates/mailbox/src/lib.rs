//! Hameau's mail model, shared by IMAP (RFC 9051) and JMAP (RFC 8621): per account,
//! mailboxes with special-use roles (RFC 6154), emails stored once as content-addressed
//! blobs, a summary parsed once at delivery, thread ids from Message-ID/References,
//! per-mailbox UIDs and UIDVALIDITY, keywords, one change log with a monotonically
//! increasing modseq (CONDSTORE/QRESYNC, RFC 7162, and JMAP `/changes` alike), and quota
//! accounting.
//!
//! There is one way in: [`Mail::ingest`], used by SMTP delivery and later by IMAP APPEND,
//! JMAP import and migration. It stores the message, its summary, a UID in each mailbox
//! and a change, in one atomic, synced commit: when it returns, the message is there.
//!
//! IMAP works on mailboxes by UID: [`Mail::store_keywords`], [`Mail::copy`],
//! [`Mail::move_messages`], [`Mail::expunge`], each one commit (per 1,000 UIDs) that
//! reads only the entries it names; [`Mail::status`] and [`Mail::uids`] read one index
//! scan; [`Mail::mailbox_changes_since`] and [`Mail::subscribe`] keep sessions in step.
//! The mailbox tree (full-path names, [`DELIMITER`]) is in `tree.rs`. The decisions are
//! in `docs/mail-model.md`.
//!
//! The clock is an argument; this crate reads no environment.

mod keys;
mod messages;
mod model;
mod notify;
mod summary;
mod tree;

use hameau_store::{Batch, Patch, PatchTarget, Scan, Store};

pub use model::{
    Change, ChangeKind, Copied, Email, Ingest, Ingested, KeywordOp, Mailbox, MailboxDelta, MailboxId, MailboxNames,
    MailboxStatus, Role, StoreOutcome, UidEntry,
};
pub use summary::{EmailAddress, Part, Summary, search_text};

/// The hierarchy delimiter of mailbox names (IMAP `LIST` reports it). [`Mailbox::name`]
/// is the full path (`Projets/2026`); [`Mailbox::parent`] is the id of the parent path.
pub const DELIMITER: char = '/';

/// An account's id, as the directory gives it.
pub type AccountId = u64;
/// An email's id within its account; never reused.
pub type EmailId = u64;

/// Why a mail operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("mailbox {0} does not exist")]
    NoMailbox(MailboxId),
    #[error("email {0} does not exist")]
    NoEmail(EmailId),
    #[error("a mailbox named {0:?} exists already")]
    MailboxExists(String),
    /// Delivering would take the account over its quota.
    #[error("over quota: {used} of {quota} bytes used, the message has {size}")]
    OverQuota { used: u64, quota: u64, size: u64 },
    /// A mailbox has handed out every UID IMAP allows (2^32 - 1).
    #[error("mailbox {0} has no UIDs left")]
    UidsExhausted(MailboxId),
    #[error("an email must be in at least one mailbox")]
    NoTargetMailbox,
    /// Concurrent changes kept conflicting; try again.
    #[error("busy: try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    #[error("corrupt mail record {key}: {problem}")]
    Corrupt { key: String, problem: String },
    /// A mailbox name breaks the naming rules ([`Mail::create_mailbox`] lists them).
    #[error("invalid mailbox name {0:?}")]
    InvalidName(String),
    /// A mailbox with children cannot be deleted (RFC 9051 §6.3.5 allows refusing).
    #[error("mailbox {0:?} has children")]
    HasChildren(String),
    /// The operation is not allowed on this mailbox or these arguments; the text says why.
    #[error("{0}")]
    Cannot(String),
}

/// One delivery added to a batch, waiting for the commit's counters.
struct Prepared {
    account: AccountId,
    email: EmailId,
    thread: EmailId,
    modseq: hameau_store::CounterRef,
    uids: Vec<hameau_store::CounterRef>,
    mailboxes: Vec<MailboxId>,
}

/// How many times a read-modify-write is tried before [`Error::Busy`]. With the backoff
/// below, 16 tries span about 50 ms: many sessions flagging the same message all get
/// through, a livelock does not hold a session for long.
const RETRIES_MAX: usize = 16;

/// How many UIDs one commit of a bulk operation (STORE, COPY, MOVE, EXPUNGE) takes at
/// most. At most 7 operations per UID, 1,000 UIDs keep a commit under the store's
/// `batch_ops_max` (10,000) with room for the change record.
const UIDS_PER_COMMIT_MAX: usize = 1_000;

/// The mail of every account, over a store. Cheap to clone; clones share the change
/// notifications of [`Mail::subscribe`].
#[derive(Clone, Debug)]
pub struct Mail {
    store: Store,
    watchers: notify::Watchers,
    /// Email ids reserved in blocks, per account: `(next, end)`.
    email_ids: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<AccountId, (EmailId, EmailId)>>>,
}

/// Email ids taken from the store at a time: one commit per block instead of one per
/// delivery (a second synced commit per message cost the MX a fifth of its throughput).
/// Ids are unique and never reused; a restart leaves the rest of a block unused.
const EMAIL_ID_BLOCK: i64 = 64;

impl Mail {
    pub fn new(store: Store) -> Mail {
        Mail { store, watchers: notify::Watchers::default(), email_ids: Default::default() }
    }

    /// Creates the account's special-use mailboxes if it has none yet; returns them all.
    /// Idempotent: concurrent calls end with one set.
    pub async fn ensure_account(
        &self,
        account: AccountId,
        names: &MailboxNames,
        now: u64,
    ) -> Result<Vec<Mailbox>, Error> {
        let existing = self.mailboxes(account).await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let mut batch = Batch::new();
        // The marker makes two concurrent first deliveries create the set only once.
        batch.expect_absent(&keys::initialised(account)).set(&keys::initialised(account), b"");
        for (index, role) in Role::ALL.iter().enumerate() {
            let id = index as MailboxId + 1;
            let mailbox = Mailbox {
                id,
                name: names.name(*role).to_string(),
                parent: None,
                role: Some(*role),
                // RFC 9051 §2.3.1.1: UIDVALIDITY must change if UIDs are ever reused; a
                // creation time in seconds is the usual choice (Dovecot, Cyrus).
                uid_validity: (now as u32).max(1),
                subscribed: true,
                created_at: now,
            };
            batch.set(&keys::mailbox(account, id), &encode(&mailbox));
            batch.set(&keys::mailbox_name(account, &mailbox.name), &id.to_be_bytes());
        }
        batch.add(&keys::mailbox_ids(account), Role::ALL.len() as i64);
        match self.store.commit(batch).await {
            Ok(_) | Err(hameau_store::Error::Conflict { .. }) => self.mailboxes(account).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Every mailbox of the account, by id.
    pub async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>, Error> {
        let entries = self.store.scan(&Scan::prefix(&keys::mailboxes(account))).await?;
        entries.iter().map(|entry| decode(&entry.key, &entry.value)).collect()
    }

    pub async fn mailbox(&self, account: AccountId, id: MailboxId) -> Result<Mailbox, Error> {
        let entry = self.store.get(&keys::mailbox(account, id)).await?.ok_or(Error::NoMailbox(id))?;
        decode(&entry.key, &entry.value)
    }

    pub async fn mailbox_by_role(&self, account: AccountId, role: Role) -> Result<Option<Mailbox>, Error> {
        Ok(self.mailboxes(account).await?.into_iter().find(|mailbox| mailbox.role == Some(role)))
    }

    /// The UID the mailbox will give next (IMAP UIDNEXT).
    pub async fn uid_next(&self, account: AccountId, id: MailboxId) -> Result<u32, Error> {
        Ok(self.store.counter(&keys::uid_next(account, id)).await? as u32 + 1)
    }

    /// Bytes of mail the account holds.
    pub async fn quota_used(&self, account: AccountId) -> Result<u64, Error> {
        Ok(self.store.counter(&keys::used(account)).await?.max(0) as u64)
    }

    /// The account's highest modseq (IMAP HIGHESTMODSEQ, JMAP state).
    pub async fn modseq(&self, account: AccountId) -> Result<u64, Error> {
        Ok(self.store.counter(&keys::modseq(account)).await?.max(0) as u64)
    }

    /// Stores a message in one or more mailboxes of an account: the blob, the parsed
    /// summary, a UID in each mailbox, the thread, the quota and a change, in one commit.
    pub async fn ingest(&self, account: AccountId, ingest: Ingest) -> Result<Ingested, Error> {
        let mut stored = self.ingest_many(vec![(account, ingest)]).await?;
        Ok(stored.remove(0))
    }

    /// Stores messages for several accounts in ONE commit: all or none. SMTP delivers a
    /// message to all its recipients this way, so that a failure and the client's retry
    /// never leave some recipients with the message twice.
    pub async fn ingest_many(&self, deliveries: Vec<(AccountId, Ingest)>) -> Result<Vec<Ingested>, Error> {
        let mut batch = Batch::new();
        let mut pending = Vec::with_capacity(deliveries.len());
        for (account, ingest) in deliveries {
            pending.push(self.prepare(&mut batch, account, ingest).await?);
        }
        let committed = self.store.commit(batch).await.map_err(|e| match e {
            // A mailbox deleted meanwhile fails the delivery rather than orphan it.
            hameau_store::Error::Conflict { .. } => Error::NoMailbox(pending[0].mailboxes[0]),
            e => e.into(),
        })?;
        let mut stored = Vec::with_capacity(pending.len());
        for prepared in &pending {
            self.notify(prepared.account, committed.counters[prepared.modseq.index()] as u64);
        }
        for prepared in pending {
            let mut uids = Vec::with_capacity(prepared.uids.len());
            for (id, uid) in prepared.mailboxes.iter().zip(&prepared.uids) {
                let uid = committed.counters[uid.index()];
                if uid > i64::from(u32::MAX) {
                    return Err(Error::UidsExhausted(*id));
                }
                uids.push((*id, uid as u32));
            }
            let modseq = committed.counters[prepared.modseq.index()] as u64;
            stored.push(Ingested { email: prepared.email, thread: prepared.thread, modseq, uids });
        }
        Ok(stored)
    }

    /// Adds one account's delivery to `batch`.
    async fn prepare(&self, batch: &mut Batch, account: AccountId, ingest: Ingest) -> Result<Prepared, Error> {
        if ingest.mailboxes.is_empty() {
            return Err(Error::NoTargetMailbox);
        }
        let size = ingest.raw.len() as u64;
        let used = self.quota_used(account).await?;
        if let Some(quota) = ingest.quota_bytes
            && used + size > quota
        {
            return Err(Error::OverQuota { used, quota, size });
        }
        for id in &ingest.mailboxes {
            let entry = self.store.get(&keys::mailbox(account, *id)).await?.ok_or(Error::NoMailbox(*id))?;
            batch.expect_version(&keys::mailbox(account, *id), entry.version);
        }
        let (summary, text) = Summary::parse_with_text(&ingest.raw);
        let email_id = self.next_email_id(account).await?;
        let thread = self.thread_of(account, &summary, email_id).await?;
        let staged = self.store.stage_blob_bytes(ingest.raw).await?;
        let email = Email {
            id: email_id,
            blob: staged.hash().to_hex(),
            size,
            received_at: ingest.received_at,
            keywords: normalize_keywords(&ingest.keywords),
            thread,
            mailboxes: ingest.mailboxes.clone(),
        };
        batch.blob_acquire(staged);
        let modseq = batch.add(&keys::modseq(account), 1);
        batch.add(&keys::used(account), size as i64);
        let mut uids = Vec::with_capacity(ingest.mailboxes.len());
        for id in &ingest.mailboxes {
            let uid = batch.add(&keys::uid_next(account, *id), 1);
            uids.push(uid);
            let key = keys::uid(account, *id, 0);
            let value = index_value(&email);
            let patches = [
                Patch { counter: uid, target: PatchTarget::Key, offset: key.len() - 8 },
                Patch { counter: modseq, target: PatchTarget::Value, offset: keys::UID_VALUE_MODSEQ_OFFSET },
            ];
            batch.set_patched(&key, &value, &patches);
            let reverse = keys::email_uid(account, email_id, *id);
            batch.set_patched(&reverse, &[0; 8], &[Patch { counter: uid, target: PatchTarget::Value, offset: 0 }]);
        }
        batch.set(&keys::email(account, email_id), &encode(&email));
        batch.set(&keys::summary(account, email_id), &encode(&summary));
        if !text.is_empty() {
            batch.set(&keys::text(account, email_id), text.as_bytes());
        }
        for message_id in summary.message_id.iter() {
            batch.set(&keys::thread_ref(account, message_id), &thread.to_be_bytes());
        }
        let change = Change::new(vec![(email_id, ChangeKind::Created)], ingest.mailboxes.clone(), vec![], vec![]);
        log_change(batch, account, modseq, &change);
        Ok(Prepared { account, email: email_id, thread, modseq, uids, mailboxes: ingest.mailboxes })
    }

    /// A new email id for `account`, from the account's reserved block.
    async fn next_email_id(&self, account: AccountId) -> Result<EmailId, Error> {
        let take = |ids: &mut std::collections::HashMap<AccountId, (EmailId, EmailId)>| {
            let (next, end) = ids.get_mut(&account)?;
            (*next < *end).then(|| {
                *next += 1;
                *next - 1
            })
        };
        if let Some(id) = take(&mut self.email_ids.lock().expect("ids lock")) {
            return Ok(id);
        }
        let last = self.store.next_value(&keys::email_ids(account), EMAIL_ID_BLOCK).await? as EmailId;
        let first = last + 1 - EMAIL_ID_BLOCK as EmailId;
        self.email_ids.lock().expect("ids lock").insert(account, (first + 1, last + 1));
        Ok(first)
    }

    /// The thread of a new message: that of the first message it refers to (References,
    /// In-Reply-To), else its own id (RFC 8621 §3: threads by reference, as JMAP servers do).
    async fn thread_of(&self, account: AccountId, summary: &Summary, email: EmailId) -> Result<EmailId, Error> {
        for reference in summary.references.iter().chain(summary.in_reply_to.iter()) {
            if let Some(entry) = self.store.get(&keys::thread_ref(account, reference)).await? {
                let bytes: [u8; 8] = entry.value.as_slice().try_into().map_err(|_| corrupt(&entry.key, "thread id"))?;
                return Ok(u64::from_be_bytes(bytes));
            }
        }
        Ok(email)
    }

    /// The messages of a mailbox in UID order, with their modseq and keywords: what
    /// `FETCH 1:* (UID FLAGS)` needs, read from one index scan.
    pub async fn uids(&self, account: AccountId, mailbox: MailboxId) -> Result<Vec<UidEntry>, Error> {
        let prefix = keys::uids(account, mailbox);
        let entries = self.store.scan(&Scan::prefix(&prefix)).await?;
        entries.iter().map(|entry| keys::decode_uid_entry(&entry.key, &entry.value)).collect()
    }

    pub async fn email(&self, account: AccountId, id: EmailId) -> Result<Email, Error> {
        let entry = self.store.get(&keys::email(account, id)).await?.ok_or(Error::NoEmail(id))?;
        decode(&entry.key, &entry.value)
    }

    /// The searchable text of an email's body, made at delivery (see [`search_text`]):
    /// IMAP SEARCH BODY/TEXT and JMAP's text filter match against it, never re-parsing.
    /// Empty for a message without text.
    pub async fn body_text(&self, account: AccountId, id: EmailId) -> Result<String, Error> {
        match self.store.get(&keys::text(account, id)).await? {
            Some(entry) => String::from_utf8(entry.value).map_err(|_| corrupt(&keys::text(account, id), "text")),
            None => Ok(String::new()),
        }
    }

    pub async fn summary(&self, account: AccountId, id: EmailId) -> Result<Summary, Error> {
        let entry = self.store.get(&keys::summary(account, id)).await?.ok_or(Error::NoEmail(id))?;
        decode(&entry.key, &entry.value)
    }

    /// The raw message.
    pub async fn raw(&self, account: AccountId, id: EmailId) -> Result<Vec<u8>, Error> {
        let email = self.email(account, id).await?;
        let hash = hameau_store::BlobHash::from_hex(&email.blob).ok_or_else(|| corrupt(b"email", "blob hash"))?;
        self.store.read_blob(&hash).await?.ok_or(Error::NoEmail(id))
    }

    /// Replaces an email's keywords; returns the new modseq. Every mailbox index the email
    /// is in is updated in the same commit, with a change.
    pub async fn set_keywords(&self, account: AccountId, id: EmailId, keywords: &[String]) -> Result<u64, Error> {
        let keywords = normalize_keywords(keywords);
        self.update_email(account, id, |email| email.keywords = keywords.clone(), ChangeKind::Updated).await
    }

    /// Removes an email from a mailbox (IMAP EXPUNGE, a move's source); an email in no
    /// mailbox any more is destroyed, its blob released and its size given back. Returns
    /// the modseq. [`Mail::expunge`] does the same by UIDs, many at a time.
    pub async fn remove(&self, account: AccountId, id: EmailId, mailbox: MailboxId) -> Result<u64, Error> {
        let uid = self.uid_in(account, id, mailbox).await?;
        let (removed, modseq) = self.expunge(account, mailbox, &[uid]).await?;
        if removed.is_empty() {
            return Err(Error::NoEmail(id));
        }
        Ok(modseq)
    }

    /// The changes after `modseq`, oldest first, at most `limit`.
    pub async fn changes_since(&self, account: AccountId, modseq: u64, limit: usize) -> Result<Vec<Change>, Error> {
        let scan = Scan::prefix(&keys::changes(account)).after(&keys::change(account, modseq)).limit(limit);
        let entries = self.store.scan(&scan).await?;
        entries
            .iter()
            .map(|entry| {
                let mut change: Change = decode(&entry.key, &entry.value)?;
                change.modseq = keys::tail_u64(&entry.key)?;
                Ok(change)
            })
            .collect()
    }

    async fn uid_in(&self, account: AccountId, id: EmailId, mailbox: MailboxId) -> Result<u32, Error> {
        let entry = self.store.get(&keys::email_uid(account, id, mailbox)).await?.ok_or(Error::NoEmail(id))?;
        let bytes: [u8; 8] = entry.value.as_slice().try_into().map_err(|_| corrupt(&entry.key, "uid"))?;
        Ok(u64::from_be_bytes(bytes) as u32)
    }

    /// Rewrites the email's entry in each mailbox index (keywords and modseq changed).
    async fn rewrite_uid_values(
        &self,
        account: AccountId,
        email: &Email,
        batch: &mut Batch,
        modseq: hameau_store::CounterRef,
    ) -> Result<(), Error> {
        for mailbox in &email.mailboxes {
            let uid = self.uid_in(account, email.id, *mailbox).await?;
            set_index_entry(batch, account, *mailbox, uid, email, modseq);
        }
        Ok(())
    }

    async fn update_email(
        &self,
        account: AccountId,
        id: EmailId,
        change: impl Fn(&mut Email),
        kind: ChangeKind,
    ) -> Result<u64, Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let entry = self.store.get(&keys::email(account, id)).await?.ok_or(Error::NoEmail(id))?;
            let mut email: Email = decode(&entry.key, &entry.value)?;
            change(&mut email);
            let mut batch = Batch::new();
            batch.expect_version(&keys::email(account, id), entry.version);
            let modseq = batch.add(&keys::modseq(account), 1);
            log_change(
                &mut batch,
                account,
                modseq,
                &Change::new(vec![(id, kind)], email.mailboxes.clone(), vec![], vec![]),
            );
            batch.set(&keys::email(account, id), &encode(&email));
            self.rewrite_uid_values(account, &email, &mut batch, modseq).await?;
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                return Ok(modseq);
            }
        }
        Err(Error::Busy)
    }

    /// Commits a read-modify-write batch: its modseq, or `None` if another writer changed
    /// what it read (the caller reads again). Wakes the account's subscribers.
    async fn commit_change(
        &self,
        account: AccountId,
        batch: Batch,
        modseq: hameau_store::CounterRef,
    ) -> Result<Option<u64>, Error> {
        Ok(self.commit_counters(account, batch, modseq).await?.map(|(modseq, _)| modseq))
    }

    /// As [`Mail::commit_change`], also returning every counter of the commit.
    async fn commit_counters(
        &self,
        account: AccountId,
        batch: Batch,
        modseq: hameau_store::CounterRef,
    ) -> Result<Option<(u64, Vec<i64>)>, Error> {
        match self.store.commit(batch).await {
            Ok(committed) => {
                let modseq = committed.counters[modseq.index()] as u64;
                self.notify(account, modseq);
                Ok(Some((modseq, committed.counters)))
            }
            Err(hameau_store::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Waits before the `attempt`th try of a read-modify-write that conflicted: a random
/// delay (so that the writers that collided do not collide again) growing from 0.1 ms
/// to at most 5 ms. The first try does not wait.
async fn backoff(attempt: usize) {
    use std::hash::{BuildHasher, Hasher};
    if attempt == 0 {
        return;
    }
    let ceiling_us = (100u64 << attempt.min(6)).min(5_000);
    // `RandomState` is seeded randomly per instance: jitter without a `rand` dependency.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    tokio::time::sleep(std::time::Duration::from_micros(random % ceiling_us + 1)).await;
}

/// Adds `change` to the account's log under the commit's `modseq`.
fn log_change(batch: &mut Batch, account: AccountId, modseq: hameau_store::CounterRef, change: &Change) {
    let key = keys::change(account, 0);
    batch.set_patched(
        &key,
        &encode(change),
        &[Patch { counter: modseq, target: PatchTarget::Key, offset: key.len() - 8 }],
    );
}

/// The mailbox index value of an email, its modseq left for the commit to patch.
fn index_value(email: &Email) -> Vec<u8> {
    let size = u32::try_from(email.size).unwrap_or(u32::MAX);
    keys::uid_value(email.id, 0, size, email.received_at, &email.keywords)
}

/// Writes an email's entry in a mailbox index under a known UID, with the commit's modseq.
fn set_index_entry(
    batch: &mut Batch,
    account: AccountId,
    mailbox: MailboxId,
    uid: u32,
    email: &Email,
    modseq: hameau_store::CounterRef,
) {
    let patch = Patch { counter: modseq, target: PatchTarget::Value, offset: keys::UID_VALUE_MODSEQ_OFFSET };
    batch.set_patched(&keys::uid(account, mailbox, uid), &index_value(email), &[patch]);
}

/// Keywords as IMAP and JMAP share them: system flags keep their backslash and case
/// (`\Seen`), other keywords are lowercased (RFC 8621 §4.1.1), no duplicates, sorted.
fn normalize_keywords(keywords: &[String]) -> Vec<String> {
    let mut out: Vec<String> = keywords
        .iter()
        .map(|keyword| {
            if let Some(flag) = keyword.strip_prefix('\\') {
                let mut chars = flag.chars();
                let first = chars.next().map(|c| c.to_ascii_uppercase()).into_iter();
                format!("\\{}", first.chain(chars.flat_map(|c| c.to_lowercase())).collect::<String>())
            } else {
                keyword.to_lowercase()
            }
        })
        .filter(|keyword| !keyword.is_empty() && !keyword.contains(' '))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn encode<T: serde::Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("mail records serialise")
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, &e.to_string()))
}

fn corrupt(key: &[u8], problem: &str) -> Error {
    Error::Corrupt { key: key.escape_ascii().to_string(), problem: problem.to_string() }
}

#[cfg(test)]
mod tests;

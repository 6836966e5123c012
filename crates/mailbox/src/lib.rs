//! Hameau's mail model, shared by IMAP (RFC 9051) and JMAP (RFC 8621): per account,
//! mailboxes with special-use roles (RFC 6154), emails stored once as content-addressed
//! blobs, a summary parsed once at delivery, thread ids from Message-ID/References,
//! per-mailbox UIDs and UIDVALIDITY, keywords, one change log with a monotonically
//! increasing modseq (CONDSTORE/QRESYNC, RFC 7162, and JMAP `/changes` alike), and quota
//! accounting.
//!
//! There is one way in: [`Mail::ingest`] / [`Mail::ingest_many`], used by SMTP delivery and
//! IMAP APPEND, later JMAP import and migration. It stores the message, its summary, a UID
//! in each mailbox and a change, in one atomic, synced commit: when it returns, the
//! message is there. A message for several accounts is read (`hameau-message`, the parse
//! boundary) and staged once; quotas (account and tenant) are bounded counters checked
//! inside that commit; a message that can never be stored fails with an error whose
//! [`Error::is_permanent`] is true.
//!
//! IMAP works on mailboxes by UID: [`Mail::store_keywords`], [`Mail::copy`],
//! [`Mail::move_messages`], [`Mail::expunge`], each one commit (per 1,000 UIDs) that
//! reads only the entries it names; [`Mail::status`] and [`Mail::uids`] read one index
//! scan; [`Mail::mailbox_changes_since`] and [`Mail::subscribe`] keep sessions in step.
//! The mailbox tree (full-path names, [`DELIMITER`]) is in `tree.rs`; the names of a new
//! account's special-use mailboxes are the model's ([`Mail::names`]).
//!
//! A message's flags and keywords are [`Keyword`]s, each with its IMAP and JMAP spelling;
//! searching (IMAP SEARCH, JMAP `Email/query`) is [`query`]: a protocol-neutral
//! [`query::Filter`] evaluated over a mailbox's index, summaries and texts through the
//! caches every session shares. The decisions are in `docs/mail-model.md`.
//!
//! The clock is an argument; this crate reads no environment.

mod client_records;
mod deliver;
mod delivery_cache;
mod forget;
mod keys;
mod keyword;
mod learn;
pub use keys::{Owner as RecordOwner, blob_refs as record_blob_refs, owner as record_owner};
pub use keyword::{JMAP_KEYWORD_BYTES_MAX, Keyword};
pub use learn::{Judgement, JunkLearner};
pub use moving::{Beside, MoveReport};
pub use placement::{AccountTenants, AccountsOf, TenantOf};
mod messages;
mod model;
mod notify;
pub use notify::ModseqWatch;
mod moving;
mod objects;
mod placement;
pub mod query;
mod restored;
mod tree;
mod update;
mod vacation;
pub use vacation::{VACATION_KIND, Vacation};

pub use bytes::Bytes;
pub use client_records::{Upload, UploadTerms};
pub use deliver::{Filing, LocalDelivery};
pub use forget::MailDeleted;
use hameau_store::placement::Placed;
use hameau_store::{Batch, BlobHash, Patch, PatchTarget, Scan, StagedBlob, Store};

pub use hameau_message::{
    EmailAddress, Limits as MessageLimits, Part, Summary, fold_accents, fold_char, parse as parse_message, search_text,
};
pub use model::{
    Change, ChangeKind, Copied, Email, Ingest, Ingested, KeywordOp, Mailbox, MailboxDelta, MailboxId, MailboxNames,
    MailboxStatus, Quota, Role, StoreOutcome, UidEntry,
};
pub use query::index::IndexProgress;

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
    /// Delivering would take the account, or its tenant, over its quota (checked inside
    /// the commit). Temporary: SMTP `452 4.2.2`, IMAP `NO [OVERQUOTA]`.
    #[error("over quota: {used} of {quota} bytes used, the message has {size}")]
    OverQuota { used: u64, quota: u64, size: u64 },
    /// The message can never be stored: it makes the MIME parser fail, or its summary is
    /// over `summary_bytes_max`. Permanent.
    #[error(transparent)]
    Unstorable(#[from] hameau_message::Error),
    /// One ingest holds more deliveries than `ingest_batch_max` (the recipient accounts
    /// of one SMTP message, the messages of one MULTIAPPEND). Permanent for that batch:
    /// SMTP refuses the recipients past the limit at RCPT ([`Mail::limits`]).
    #[error("{n} deliveries in one ingest, over ingest_batch_max = {max}")]
    TooManyDeliveries { n: usize, max: usize },
    /// The account has `mailboxes_max` mailboxes already (IMAP `NO [LIMIT]`).
    #[error("the account has {max} mailboxes, the most it may have")]
    TooManyMailboxes { max: usize },
    /// The account has `objects_max` objects of one kind already.
    #[error("the account has {max} objects of this kind, the most it may keep")]
    TooManyObjects { max: usize },
    /// An email would have more than `keywords_max` keywords (IMAP `NO [LIMIT]`).
    #[error("an email may have at most {max} keywords")]
    TooManyKeywords { max: usize },
    /// A mailbox has handed out every UID IMAP allows (2^32 - 1).
    #[error("mailbox {0} has no UIDs left")]
    UidsExhausted(MailboxId),
    #[error("an email must be in at least one mailbox")]
    NoTargetMailbox,
    /// A local delivery found no mailbox of its role in the account (one was deleted
    /// meanwhile, or the account's mailboxes were made by hand). Temporary.
    #[error("account {account} has no {role:?} mailbox")]
    NoRoleMailbox { account: AccountId, role: Role },
    /// Concurrent changes kept conflicting; try again.
    #[error("busy: try again")]
    Busy,
    /// The account holds `max` bytes of uploads not yet used already (JMAP's
    /// `upload_pending_bytes_max`); they are used or expire.
    #[error("the account holds {max} bytes of unused uploads, the most it may")]
    UploadsFull { max: u64 },
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

impl Error {
    /// Whether trying again can never succeed: SMTP answers `5xx` (not `451`, which the
    /// sender would retry for days) and IMAP `NO` with a code that says why.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Unstorable(_)
            | Error::TooManyDeliveries { .. }
            | Error::TooManyMailboxes { .. }
            | Error::TooManyKeywords { .. }
            | Error::TooManyObjects { .. }
            | Error::UidsExhausted(_)
            | Error::NoTargetMailbox
            | Error::InvalidName(_) => true,
            // A record or batch over the store's limits is over them on every try.
            Error::Store(hameau_store::Error::Limit { .. }) => true,
            _ => false,
        }
    }
}

/// Every limit of the mail model, named: the `[mail]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// What is kept of a message (summary, text, thread lookups): keys of the same `[mail]`
    /// table, declared by `hameau-message`; `config` reads them here.
    #[serde(skip)]
    pub message: hameau_message::Limits,
    /// Most deliveries (one message into one account) one ingest commits together: the
    /// recipient accounts of one SMTP message, the messages of one MULTIAPPEND. RFC 5321
    /// §4.5.3.1.8 asks for at least 100 recipients; 200 leaves room for aliases, and one
    /// commit of 200 deliveries stays near 2,500 store operations (`batch_ops_max` is
    /// 10,000) with its records a few MiB.
    pub ingest_batch_max: usize,
    /// Most mailboxes an account may have. People file mail in tens of folders; 1,000
    /// leaves room for years of archives while bounding LIST and the tree's scans.
    pub mailboxes_max: usize,
    /// Reads of accounts' mailboxes and vacation responses the deliveries keep in memory
    /// between changes of them (two per account delivered to; `delivery_cache.rs`). On
    /// PostgreSQL each one kept spares a delivery a round trip to the database. 20,000
    /// (the accounts of a few hundred communes) is about 20 MiB; 0 reads the store each
    /// time.
    pub delivery_cache_entries_max: usize,
    /// Most keywords (flags included) of one email. Clients use a handful (Thunderbird's
    /// five tags, `$Junk`, `$Forwarded`); 100 bounds the index entry every listing of
    /// flags reads, which a client adding keyword after keyword would otherwise grow
    /// until the store refused it.
    pub keywords_max: usize,
    /// Most objects of one kind of [`Mail::create_object`] an account keeps (JMAP's email
    /// submissions, push subscriptions). 10,000 is years of a town hall agent's sending
    /// before the oldest submissions are destroyed; it bounds the scans that list them.
    pub objects_max: usize,
    /// Whether this server keeps a text index of each account (docs/mail-model.md): text
    /// queries (IMAP SEARCH TEXT, BODY, SUBJECT, FROM…; JMAP `text`, `body`…) then read a
    /// few candidates instead of every message. On by default: without it a SEARCH TEXT
    /// over 100,000 messages reads 100,000 texts.
    pub text_index: bool,
    /// Milliseconds without a delivery the indexer waits for before indexing: a burst of
    /// deliveries is indexed after it, in large rounds (each posting chunk a round touches
    /// is rewritten once per round, not once per message), leaving the CPU to SMTP while
    /// it lasts. Queries stay exact meanwhile (what is not indexed is read). 2,000 ms.
    pub text_index_delay_ms: u64,
    /// Seconds after a first delivery the indexer starts anyway, however busy SMTP is:
    /// the lag, hence what queries read unindexed, stays bounded. 60 s: a minute of the
    /// busiest commune's mail is a few hundred messages.
    pub text_index_lag_max_s: u64,
    /// Most emails one indexing round reads and indexes, bounding the time it holds the
    /// indexer; its memory is bounded apart (2 million postings, then written early).
    /// 2,000: a burst of deliveries rewrites each common term's chunk about twice per
    /// 4,096 messages rather than eight times with rounds of 500.
    pub text_index_batch_emails_max: usize,
    /// Share of the time (percent) the indexer works while catching up: after each round
    /// it waits for the rest, so that a burst of deliveries (or an account's first build)
    /// leaves the CPU to SMTP and IMAP and is indexed a little later. 50 kept `bench-smtp`
    /// close to its figure without the index (docs/mail-model.md).
    pub text_index_work_percent: u64,
    /// Accounts waiting for the indexer; a delivery to one more is indexed at its next
    /// delivery or query. 10,000: every account of a large installation, a few hundred KiB.
    pub text_index_queue_max: usize,
    /// Posting lists one query reads at most (the trigrams of its strings): a client's
    /// 10,000-character needle reads 64, spread over it, and the evaluation confirms the
    /// rest. 64 lists of 100,000 emails are decoded in about a millisecond.
    pub text_index_lookups_max: usize,
    /// Bytes of header past which an email is not indexed but confirmed by every text
    /// query: real headers are a few KiB (20 KiB with many Received and signatures);
    /// 64 KiB bounds what indexing one message reads.
    pub text_index_header_bytes_max: usize,
    /// Distinct trigrams of one email past which it is not indexed but confirmed by every
    /// text query: a 1,000-word letter has about 3,000; 50,000 bounds the postings one
    /// message adds (a 1 MiB text of random bytes would add a million).
    pub text_index_terms_per_email_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message: hameau_message::Limits::default(),
            ingest_batch_max: 200,
            mailboxes_max: 1_000,
            delivery_cache_entries_max: 20_000,
            keywords_max: 100,
            objects_max: 10_000,
            text_index: true,
            text_index_delay_ms: 2_000,
            text_index_lag_max_s: 60,
            text_index_batch_emails_max: 2_000,
            text_index_work_percent: 50,
            text_index_queue_max: 10_000,
            text_index_lookups_max: 64,
            text_index_header_bytes_max: 64 * 1024,
            text_index_terms_per_email_max: 50_000,
        }
    }
}

impl Limits {
    /// Checks each key of `[mail]`, the message's limits included.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::range;
        self.message.check()?;
        range("mail", "ingest_batch_max", self.ingest_batch_max as u64, 1, 100_000)?;
        // A mailbox per special-use role (six) must fit.
        range("mail", "mailboxes_max", self.mailboxes_max as u64, 6, 1_000_000)?;
        range("mail", "delivery_cache_entries_max", self.delivery_cache_entries_max as u64, 0, 10_000_000)?;
        range("mail", "keywords_max", self.keywords_max as u64, 8, 10_000)?;
        range("mail", "objects_max", self.objects_max as u64, 1, 10_000_000)?;
        range("mail", "text_index_delay_ms", self.text_index_delay_ms, 0, 60_000)?;
        range("mail", "text_index_lag_max_s", self.text_index_lag_max_s, 1, 86_400)?;
        range("mail", "text_index_batch_emails_max", self.text_index_batch_emails_max as u64, 1, 100_000)?;
        range("mail", "text_index_work_percent", self.text_index_work_percent, 1, 100)?;
        range("mail", "text_index_queue_max", self.text_index_queue_max as u64, 1, 10_000_000)?;
        range("mail", "text_index_lookups_max", self.text_index_lookups_max as u64, 1, 10_000)?;
        range("mail", "text_index_header_bytes_max", self.text_index_header_bytes_max as u64, 1024, 64 << 20)?;
        range("mail", "text_index_terms_per_email_max", self.text_index_terms_per_email_max as u64, 1_000, 10_000_000)
    }
}

/// Summaries and texts this large or larger are stored once per message, as blobs shared
/// by every account that received it, rather than copied into each account: a message
/// to 100 accounts does not hold 100 copies of a 1 MiB text. Smaller ones (nearly all)
/// stay in the account, read with one get.
const SHARED_RECORD_BYTES_MIN: usize = 64 * 1024;

/// Messages larger than this are read on a blocking thread: parsing megabytes takes
/// milliseconds that must not stall the other sessions of an async worker.
const PARSE_INLINE_BYTES_MAX: usize = 256 * 1024;

/// Marks a record value that is a pointer to a shared blob: `0xFF` then the blob's hash.
/// JSON and UTF-8 text never begin with `0xFF`.
const SHARED_RECORD_TAG: u8 = 0xFF;

/// One distinct message of an ingest, read once.
struct Read {
    parsed: hameau_message::Parsed,
    blob: BlobHash,
    /// What each account's summary and text keys hold: the record itself, or a pointer.
    summary_value: Vec<u8>,
    text_value: Vec<u8>,
    /// Shared records staged for the batch, with the blobs to list in each email.
    shared: Vec<StagedBlob>,
    records: Vec<String>,
    /// How many deliveries of the ingest are this message.
    refs: u64,
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

/// How many UIDs one commit of a bulk operation (STORE, COPY, MOVE, EXPUNGE, a mailbox's
/// deletion) takes at most. Destroying an email takes at most 9 operations (7, and one
/// per shared record), and a deletion also drops up to 800 expunge-log entries: 800 UIDs
/// keep a commit near 8,000 operations, under the store's `batch_ops_max` (10,000).
const UIDS_PER_COMMIT_MAX: usize = 800;

/// The mail of every account, over a store. Cheap to clone; the change notifications of
/// [`Mail::subscribe`] are the store's, shared by every `Mail` over it.
#[derive(Clone, Debug)]
pub struct Mail {
    store: Store,
    limits: Limits,
    /// Email ids reserved in blocks, per account: `(next, end)`.
    email_ids: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<AccountId, (EmailId, EmailId)>>>,
    /// Told of the agents' judgements (into or out of Junk), if any (see `learn.rs`).
    learner: Option<std::sync::Arc<dyn JunkLearner>>,
    /// The names of the special-use mailboxes made for a new account.
    names: std::sync::Arc<MailboxNames>,
    /// The text index's queue, when this process keeps the index ([`Mail::with_text_index`]).
    indexer: Option<std::sync::Arc<query::index::Indexer>>,
    /// Where each tenant's mail is, when tenants are spread over clusters
    /// ([`Mail::with_placement`]); `None`: every account's mail is in `store`.
    placement: Option<placement::Placement>,
    /// What deliveries read of their accounts, kept between changes (`delivery_cache.rs`).
    delivery_cache: std::sync::Arc<delivery_cache::DeliveryCache>,
}

/// Email ids taken from the store at a time: one commit per block instead of one per
/// delivery (a second synced commit per message cost the MX a fifth of its throughput).
/// Ids are unique and never reused; a restart leaves the rest of a block unused.
const EMAIL_ID_BLOCK: i64 = 64;

impl Mail {
    /// The mail model with the default [`Limits`].
    pub fn new(store: Store) -> Mail {
        Mail::with_limits(store, Limits::default())
    }

    pub fn with_limits(store: Store, limits: Limits) -> Mail {
        Mail {
            store,
            delivery_cache: std::sync::Arc::new(delivery_cache::DeliveryCache::new(limits.delivery_cache_entries_max)),
            limits,
            email_ids: Default::default(),
            learner: None,
            names: Default::default(),
            indexer: None,
            placement: None,
        }
    }

    /// Names the special-use mailboxes of the accounts made from now on (French by
    /// default, [`MailboxNames::default`]); existing mailboxes keep their names.
    pub fn with_names(mut self, names: MailboxNames) -> Mail {
        self.names = std::sync::Arc::new(names);
        self
    }

    /// Spreads the tenants' mail over `clusters` (`[store.clusters]`): each account's mail
    /// is in its tenant's cluster, which `tenants` tells (docs/storage.md). The store given
    /// to [`Mail::new`] must be the clusters' control store.
    pub fn with_placement(
        mut self,
        clusters: hameau_store::placement::Clusters,
        tenants: std::sync::Arc<dyn AccountTenants>,
    ) -> Mail {
        self.placement = Some(placement::Placement::new(clusters, tenants));
        self
    }

    /// The clusters the tenants' mail is spread over; `None` without `[store.clusters]`.
    pub fn clusters(&self) -> Option<&hameau_store::placement::Clusters> {
        self.placement.as_ref().map(|placement| &placement.clusters)
    }

    /// The entries of `read` for `account`, through the deliveries' cache.
    pub(crate) async fn delivery_read(
        &self,
        account: AccountId,
        read: delivery_cache::Read,
    ) -> Result<Vec<hameau_store::Entry>, Error> {
        let at = self.at(account).await?;
        let placement = self.placement.as_ref().map(|placement| placement.clusters.changes());
        Ok(self.delivery_cache.entries(&at, placement.as_ref(), account, read).await?)
    }

    /// The store holding `account`'s mail, fenced while its tenant moves between clusters.
    pub(crate) async fn at(&self, account: AccountId) -> Result<Placed, Error> {
        match &self.placement {
            None => Ok(Placed::plain(self.store.clone())),
            Some(placement) => placement.for_account(account).await,
        }
    }

    /// Every store holding mail: the one store, or each cluster's (for what goes over every
    /// account: expiries, the push subscriptions loaded at start).
    pub(crate) fn stores(&self) -> Vec<Store> {
        match &self.placement {
            None => vec![self.store.clone()],
            Some(placement) => {
                placement.clusters.names().filter_map(|name| placement.clusters.store(name).ok().cloned()).collect()
            }
        }
    }

    /// The store holding `account`'s mail, for a caller that writes records of its own
    /// beside it ([`Mail::ingest_many_with`]'s, read back from there).
    pub async fn account_store(&self, account: AccountId) -> Result<Placed, Error> {
        self.at(account).await
    }

    /// The store holding `tenant`'s mail.
    pub(crate) async fn at_tenant(&self, tenant: &str) -> Result<Placed, Error> {
        match &self.placement {
            None => Ok(Placed::plain(self.store.clone())),
            Some(placement) => Ok(placement.clusters.for_tenant(tenant).await?),
        }
    }

    /// The names given to the special-use mailboxes of new accounts, by role.
    pub fn names(&self) -> &MailboxNames {
        &self.names
    }

    /// Tells `learner` of every message an agent moves into or out of Junk, or flags
    /// `$Junk` or `$NotJunk` (the spam filter learns from it), after the commit.
    pub fn with_junk_learner(mut self, learner: std::sync::Arc<dyn JunkLearner>) -> Mail {
        self.learner = Some(learner);
        self
    }

    /// The limits, for the protocols to refuse early what ingest would refuse (SMTP counts
    /// recipient accounts against [`Limits::ingest_batch_max`] at RCPT).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Creates the account's special-use mailboxes if it has none yet, named by
    /// [`Mail::names`]; returns them all. Idempotent: concurrent calls end with one set.
    pub async fn ensure_account(&self, account: AccountId, now: u64) -> Result<Vec<Mailbox>, Error> {
        let names = &self.names;
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
        batch.add(&keys::mailbox_count(account), Role::ALL.len() as i64);
        settings_changed(&mut batch);
        match self.at(account).await?.commit(batch).await {
            Ok(_) | Err(hameau_store::Error::Conflict { .. }) => self.mailboxes(account).await,
            Err(e) => Err(e.into()),
        }
    }

    /// Every mailbox of the account, by id.
    pub async fn mailboxes(&self, account: AccountId) -> Result<Vec<Mailbox>, Error> {
        let entries = self.at(account).await?.scan(&Scan::prefix(&keys::mailboxes(account))).await?;
        entries.iter().map(|entry| decode(&entry.key, &entry.value)).collect()
    }

    pub async fn mailbox(&self, account: AccountId, id: MailboxId) -> Result<Mailbox, Error> {
        let entry = self.at(account).await?.get(&keys::mailbox(account, id)).await?.ok_or(Error::NoMailbox(id))?;
        decode(&entry.key, &entry.value)
    }

    pub async fn mailbox_by_role(&self, account: AccountId, role: Role) -> Result<Option<Mailbox>, Error> {
        Ok(self.mailboxes(account).await?.into_iter().find(|mailbox| mailbox.role == Some(role)))
    }

    /// The UID the mailbox will give next (IMAP UIDNEXT).
    pub async fn uid_next(&self, account: AccountId, id: MailboxId) -> Result<u32, Error> {
        Ok(self.at(account).await?.counter(&keys::uid_next(account, id)).await? as u32 + 1)
    }

    /// Bytes of mail the account holds.
    pub async fn quota_used(&self, account: AccountId) -> Result<u64, Error> {
        Ok(self.at(account).await?.counter(&keys::used(account)).await?.max(0) as u64)
    }

    /// Bytes of mail all the accounts of a tenant hold (see [`Quota::tenant`]).
    pub async fn tenant_used(&self, tenant: &str) -> Result<u64, Error> {
        Ok(self.at_tenant(tenant).await?.counter(&keys::tenant_used(tenant)).await?.max(0) as u64)
    }

    /// The account's highest modseq (IMAP HIGHESTMODSEQ, JMAP state).
    pub async fn modseq(&self, account: AccountId) -> Result<u64, Error> {
        Ok(self.at(account).await?.counter(&keys::modseq(account)).await?.max(0) as u64)
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
    ///
    /// Deliveries sharing the same bytes (the same [`Ingest::raw`] buffer) are read and
    /// staged once: the blob is taken with one reference per delivery. At most
    /// [`Limits::ingest_batch_max`] deliveries. Quotas are checked by the commit itself
    /// ([`Error::OverQuota`]); a staged blob of a failed ingest is removed.
    pub async fn ingest_many(&self, deliveries: Vec<(AccountId, Ingest)>) -> Result<Vec<Ingested>, Error> {
        self.ingest_many_with(deliveries, Vec::new()).await
    }

    /// [`Mail::ingest_many`], also writing the caller's own `records` (key, value) in the
    /// same commit. The migration records which source message it copied this way: were
    /// the record a commit of its own, a crash between the two would copy the message
    /// again on the next run. The keys must lie outside the mail model's `m/` prefix
    /// ([`Error::Cannot`] otherwise); they count against the store's batch limits.
    pub async fn ingest_many_with(
        &self,
        deliveries: Vec<(AccountId, Ingest)>,
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Ingested>, Error> {
        if records.iter().any(|(key, _)| key.starts_with(keys::MAIL_PREFIX)) {
            return Err(Error::Cannot("a caller's record may not be written under the mail model's keys".into()));
        }
        if deliveries.len() > self.limits.ingest_batch_max {
            return Err(Error::TooManyDeliveries { n: deliveries.len(), max: self.limits.ingest_batch_max });
        }
        if deliveries.iter().any(|(_, ingest)| ingest.mailboxes.is_empty()) {
            return Err(Error::NoTargetMailbox);
        }
        let Some(placement) = &self.placement else {
            return self.ingest_at(&Placed::plain(self.store.clone()), &deliveries, records).await;
        };
        // Each cluster's deliveries in a commit of their own (docs/storage.md); the caller's
        // records with the first. A commit refused because the tenant started to move is
        // tried once more, once the move is over (the lookup waits for it).
        let mut places = Vec::with_capacity(deliveries.len());
        for (account, _) in &deliveries {
            places.push(placement.for_account(*account).await?);
        }
        let mut groups: Vec<(Placed, Vec<usize>)> = Vec::new();
        for (index, placed) in places.into_iter().enumerate() {
            match groups.iter_mut().find(|(seen, _)| seen.cluster() == placed.cluster()) {
                Some((_, indexes)) => indexes.push(index),
                None => groups.push((placed, vec![index])),
            }
        }
        let mut stored: Vec<Option<Ingested>> = vec![None; deliveries.len()];
        let mut records = Some(records);
        for (placed, indexes) in groups {
            let group: Vec<(AccountId, Ingest)> = indexes.iter().map(|index| deliveries[*index].clone()).collect();
            let own = records.take().unwrap_or_default();
            let done = match self.ingest_at(&placed, &group, own.clone()).await {
                Err(Error::Store(hameau_store::Error::Moving)) => {
                    let placed = placement.for_account(group[0].0).await?;
                    self.ingest_at(&placed, &group, own).await?
                }
                other => other?,
            };
            for (index, ingested) in indexes.into_iter().zip(done) {
                stored[index] = Some(ingested);
            }
        }
        Ok(stored.into_iter().map(|ingested| ingested.expect("every delivery is in a group")).collect())
    }

    /// [`Mail::ingest_many_with`] into one store, in one commit.
    async fn ingest_at(
        &self,
        at: &Placed,
        deliveries: &[(AccountId, Ingest)],
        records: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<Vec<Ingested>, Error> {
        let (mut reads, read_of) = self.read_messages(at, deliveries).await?;
        let mut batch = Batch::new();
        let mut pending = Vec::with_capacity(deliveries.len());
        for ((account, ingest), read) in deliveries.iter().zip(&read_of) {
            pending.push(self.prepare(at, &mut batch, *account, ingest, &reads[*read]).await?);
        }
        for (key, value) in &records {
            batch.set(key, value);
        }
        // Staged last, once every read succeeded: an ingest that fails before stages nothing.
        for (index, read) in reads.iter_mut().enumerate() {
            let first = read_of.iter().position(|of| *of == index).expect("every read has a delivery");
            // Hashed once, when the message was read.
            let staged = at.stage_blob_bytes_hashed(&deliveries[first].1.raw, read.blob).await?;
            batch.blob_acquire_n(staged, read.refs);
            for shared in read.shared.drain(..) {
                batch.blob_acquire_n(shared, read.refs);
            }
        }
        let committed = at.commit(batch).await.map_err(|e| match e {
            // A mailbox missing, or deleted meanwhile (the batch's only expectations).
            hameau_store::Error::Conflict { key } => {
                let missing = pending.iter().find_map(|prepared| {
                    let mut ids = prepared.mailboxes.iter();
                    ids.find(|id| keys::mailbox(prepared.account, **id) == key).copied()
                });
                Error::NoMailbox(missing.unwrap_or(pending[0].mailboxes[0]))
            }
            hameau_store::Error::CounterBound { current, delta, max, .. } => {
                Error::OverQuota { used: current.max(0) as u64, quota: max.max(0) as u64, size: delta as u64 }
            }
            e => e.into(),
        })?;
        let mut stored = Vec::with_capacity(pending.len());
        for prepared in &pending {
            self.poke_indexer(prepared.account);
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

    /// Reads each distinct message of the deliveries once; returns the reads and, for each
    /// delivery, the index of its read. Messages are the same when they share their bytes'
    /// buffer (SMTP hands every recipient account one `Bytes`).
    async fn read_messages(
        &self,
        at: &Placed,
        deliveries: &[(AccountId, Ingest)],
    ) -> Result<(Vec<Read>, Vec<usize>), Error> {
        let mut reads: Vec<Read> = Vec::new();
        // (address, length) of each buffer read; an address, not a pointer: the future stays Send.
        let mut buffers: Vec<(usize, usize)> = Vec::new();
        let mut read_of = Vec::with_capacity(deliveries.len());
        for (_, ingest) in deliveries {
            let buffer = (ingest.raw.as_ptr() as usize, ingest.raw.len());
            if let Some(index) = buffers.iter().position(|seen| *seen == buffer) {
                reads[index].refs += 1;
                read_of.push(index);
                continue;
            }
            reads.push(self.read_message(at, &ingest.raw).await?);
            buffers.push(buffer);
            read_of.push(reads.len() - 1);
        }
        Ok((reads, read_of))
    }

    /// Reads one message (the parse boundary), and stages its large records as blobs.
    async fn read_message(&self, at: &Placed, raw: &Bytes) -> Result<Read, Error> {
        let limits = self.limits.message.clone();
        // Parsed and hashed together: off the async workers for a large message.
        let read = move |raw: &[u8]| hameau_message::parse(raw, &limits).map(|parsed| (parsed, BlobHash::of(raw)));
        let (parsed, blob) = if raw.len() <= PARSE_INLINE_BYTES_MAX {
            read(raw)?
        } else {
            let raw = raw.clone();
            tokio::task::spawn_blocking(move || read(&raw))
                .await
                .map_err(|e| hameau_message::Error::Unreadable(e.to_string()))??
        };
        let mut read = Read {
            summary_value: Vec::new(),
            text_value: Vec::new(),
            shared: Vec::new(),
            records: Vec::new(),
            blob,
            refs: 1,
            parsed,
        };
        read.summary_value = self.shared_or_inline(at, &mut read, |read| read.parsed.summary_json.as_slice()).await?;
        read.text_value = self.shared_or_inline(at, &mut read, |read| read.parsed.text.as_bytes()).await?;
        Ok(read)
    }

    /// The value of a record in each account: itself if small, else a pointer to a blob
    /// staged (once) in `read.shared`.
    async fn shared_or_inline(
        &self,
        at: &Placed,
        read: &mut Read,
        record: impl Fn(&Read) -> &[u8],
    ) -> Result<Vec<u8>, Error> {
        let bytes = record(read);
        // A record kept in the account must also fit in one store value.
        if bytes.len() < SHARED_RECORD_BYTES_MIN.min(self.store.limits().value_bytes_max) {
            return Ok(bytes.to_vec());
        }
        let staged = at.stage_blob_bytes(bytes).await?;
        let hash = staged.hash();
        read.shared.push(staged);
        read.records.push(hash.to_hex());
        Ok([&[SHARED_RECORD_TAG][..], &hash.0].concat())
    }

    /// Adds one account's delivery to `batch`, reading from `at` (the account's store).
    async fn prepare(
        &self,
        at: &Placed,
        batch: &mut Batch,
        account: AccountId,
        ingest: &Ingest,
        read: &Read,
    ) -> Result<Prepared, Error> {
        let size = ingest.raw.len() as u64;
        // Checked by the commit, not read before it: a mailbox deleted meanwhile fails the
        // delivery rather than orphan it (one round trip less per delivery on PostgreSQL);
        // one renamed meanwhile still takes it.
        for id in &ingest.mailboxes {
            batch.expect_present(&keys::mailbox(account, *id));
        }
        let keywords = normalize_keywords(&ingest.keywords);
        self.check_keywords(&keywords)?;
        let email_id = self.next_email_id(at, account).await?;
        let thread = thread_of(at, account, &read.parsed.thread_lookups, email_id).await?;
        let email = Email {
            id: email_id,
            blob: read.blob.to_hex(),
            size,
            received_at: ingest.received_at,
            keywords,
            thread,
            mailboxes: ingest.mailboxes.clone(),
            tenant: ingest.quota.tenant.clone(),
            records: read.records.clone(),
        };
        let modseq = batch.add(&keys::modseq(account), 1);
        charge(batch, account, &ingest.quota, size);
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
        batch.set(&keys::summary(account, email_id), &read.summary_value);
        if !read.text_value.is_empty() {
            batch.set(&keys::text(account, email_id), &read.text_value);
        }
        for message_id in read.parsed.summary.message_id.iter() {
            batch.set(&keys::thread_ref(account, message_id), &thread.to_be_bytes());
        }
        batch.set(&keys::thread_member(account, thread, email_id), &[]);
        let change = Change::new(vec![(email_id, ChangeKind::Created)], ingest.mailboxes.clone(), vec![], vec![]);
        log_change(batch, account, modseq, &change);
        Ok(Prepared { account, email: email_id, thread, modseq, uids, mailboxes: ingest.mailboxes.clone() })
    }

    /// A new email id for `account`, from the account's reserved block (a new block from
    /// `at`, the account's store).
    async fn next_email_id(&self, at: &Placed, account: AccountId) -> Result<EmailId, Error> {
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
        let last = at.next_value(&keys::email_ids(account), EMAIL_ID_BLOCK).await? as EmailId;
        let first = last + 1 - EMAIL_ID_BLOCK as EmailId;
        self.email_ids.lock().expect("ids lock").insert(account, (first + 1, last + 1));
        Ok(first)
    }

    /// The messages of a mailbox in UID order, with their modseq and keywords: what
    /// `FETCH 1:* (UID FLAGS)` needs, read from one index scan.
    pub async fn uids(&self, account: AccountId, mailbox: MailboxId) -> Result<Vec<UidEntry>, Error> {
        let prefix = keys::uids(account, mailbox);
        let entries = self.at(account).await?.scan(&Scan::prefix(&prefix)).await?;
        entries.iter().map(|entry| keys::decode_uid_entry(&entry.key, &entry.value)).collect()
    }

    pub async fn email(&self, account: AccountId, id: EmailId) -> Result<Email, Error> {
        let entry = self.at(account).await?.get(&keys::email(account, id)).await?.ok_or(Error::NoEmail(id))?;
        decode(&entry.key, &entry.value)
    }

    /// The emails of `ids`, `None` for those that do not exist: one batched read of the
    /// store (JMAP's `Email/get` and thread counts read hundreds at a time).
    pub async fn emails(&self, account: AccountId, ids: &[EmailId]) -> Result<Vec<Option<Email>>, Error> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| keys::email(account, *id)).collect();
        let entries = self.at(account).await?.get_many(&keys).await?;
        entries.into_iter().map(|entry| entry.map(|entry| decode(&entry.key, &entry.value)).transpose()).collect()
    }

    /// The searchable text of an email's body, made at delivery (see [`search_text`]):
    /// IMAP SEARCH BODY/TEXT and JMAP's text filter match against it, never re-parsing.
    /// Empty for a message without text.
    pub async fn body_text(&self, account: AccountId, id: EmailId) -> Result<String, Error> {
        let key = keys::text(account, id);
        match self.at(account).await?.get(&key).await? {
            Some(entry) => {
                let value = self.record(account, &key, entry.value).await?;
                String::from_utf8(value).map_err(|_| corrupt(&key, "text"))
            }
            None => Ok(String::new()),
        }
    }

    pub async fn summary(&self, account: AccountId, id: EmailId) -> Result<Summary, Error> {
        let key = keys::summary(account, id);
        let entry = self.at(account).await?.get(&key).await?.ok_or(Error::NoEmail(id))?;
        decode(&key, &self.record(account, &key, entry.value).await?)
    }

    /// A record's content: the value itself, or the shared blob it points to.
    async fn record(&self, account: AccountId, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, Error> {
        if value.first() != Some(&SHARED_RECORD_TAG) {
            return Ok(value);
        }
        let hash: [u8; 32] = value[1..].try_into().map_err(|_| corrupt(key, "shared record pointer"))?;
        self.at(account).await?.read_blob(&BlobHash(hash)).await?.ok_or_else(|| corrupt(key, "shared record missing"))
    }

    /// The raw message.
    pub async fn raw(&self, account: AccountId, id: EmailId) -> Result<Vec<u8>, Error> {
        let email = self.email(account, id).await?;
        let hash = hameau_store::BlobHash::from_hex(&email.blob).ok_or_else(|| corrupt(b"email", "blob hash"))?;
        self.at(account).await?.read_blob(&hash).await?.ok_or(Error::NoEmail(id))
    }

    /// Replaces an email's keywords; returns the new modseq. Every mailbox index the email
    /// is in is updated in the same commit, with a change.
    pub async fn set_keywords(&self, account: AccountId, id: EmailId, keywords: &[Keyword]) -> Result<u64, Error> {
        let keywords = normalize_keywords(keywords);
        self.check_keywords(&keywords)?;
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

    /// The emails of a thread, by id (the order they arrived in), from one prefix scan; at
    /// most `limit`. An email stored before the thread index existed (issue 15) is not
    /// listed, but for the thread's first one, whose id is the thread's.
    pub async fn thread_emails(
        &self,
        account: AccountId,
        thread: EmailId,
        limit: usize,
    ) -> Result<Vec<EmailId>, Error> {
        let scan = Scan::prefix(&keys::thread_members(account, thread)).limit(limit);
        let entries = self.at(account).await?.scan(&scan).await?;
        let mut emails = entries.iter().map(|entry| keys::tail_u64(&entry.key)).collect::<Result<Vec<_>, _>>()?;
        if emails.is_empty() && self.at(account).await?.get(&keys::email(account, thread)).await?.is_some() {
            emails.push(thread);
        }
        Ok(emails)
    }

    /// The changes after `modseq`, oldest first, at most `limit`.
    pub async fn changes_since(&self, account: AccountId, modseq: u64, limit: usize) -> Result<Vec<Change>, Error> {
        let scan = Scan::prefix(&keys::changes(account)).after(&keys::change(account, modseq)).limit(limit);
        let entries = self.at(account).await?.scan(&scan).await?;
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
        let entry =
            self.at(account).await?.get(&keys::email_uid(account, id, mailbox)).await?.ok_or(Error::NoEmail(id))?;
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
            let entry = self.at(account).await?.get(&keys::email(account, id)).await?.ok_or(Error::NoEmail(id))?;
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
    /// what it read (the caller reads again). The store wakes the account's subscribers
    /// (the batch adds to its modseq).
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
        match self.at(account).await?.commit(batch).await {
            Ok(committed) => Ok(Some((committed.counters[modseq.index()] as u64, committed.counters))),
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

/// Counts `size` bytes against the account and its tenant, within their limits: bounded
/// counters, so the commit itself refuses a delivery over a quota, however many race.
fn charge(batch: &mut Batch, account: AccountId, quota: &Quota, size: u64) {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let bound = |max: u64| i64::try_from(max).unwrap_or(i64::MAX);
    match quota.account_bytes_max {
        Some(max) => batch.add_at_most(&keys::used(account), size, bound(max)),
        None => batch.add(&keys::used(account), size),
    };
    if let Some(tenant) = &quota.tenant {
        match quota.tenant_bytes_max {
            Some(max) => batch.add_at_most(&keys::tenant_used(tenant), size, bound(max)),
            None => batch.add(&keys::tenant_used(tenant), size),
        };
    }
}

/// The thread of a new message: that of the first message it refers to (References,
/// In-Reply-To, at most `thread_lookups_max` of them), else its own id (RFC 8621 §3: threads
/// by reference, as JMAP servers do). Read from `at`, the account's store.
async fn thread_of(at: &Placed, account: AccountId, lookups: &[String], email: EmailId) -> Result<EmailId, Error> {
    for reference in lookups {
        if let Some(entry) = at.get(&keys::thread_ref(account, reference)).await? {
            let bytes: [u8; 8] = entry.value.as_slice().try_into().map_err(|_| corrupt(&entry.key, "thread id"))?;
            return Ok(u64::from_be_bytes(bytes));
        }
    }
    Ok(email)
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

impl Mail {
    /// [`Error::TooManyKeywords`] past [`Limits::keywords_max`].
    fn check_keywords(&self, keywords: &[Keyword]) -> Result<(), Error> {
        let max = self.limits.keywords_max;
        if keywords.len() > max { Err(Error::TooManyKeywords { max }) } else { Ok(()) }
    }
}

/// Keywords as the records keep them: custom ones in lower case (one built by hand may not
/// be), sorted by their stored spelling, no duplicates.
fn normalize_keywords(keywords: &[Keyword]) -> Vec<Keyword> {
    let mut out: Vec<Keyword> = keywords
        .iter()
        .map(|keyword| match keyword {
            Keyword::Custom(word) if word.chars().any(char::is_uppercase) => Keyword::from_stored(word.to_lowercase()),
            other => other.clone(),
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Adds to the store's [`keys::DELIVERY_SETTINGS_CHANGES`]: `batch` writes a mailbox record
/// or a vacation response, which the deliveries' cache must read again.
pub(crate) fn settings_changed(batch: &mut Batch) {
    batch.add(keys::DELIVERY_SETTINGS_CHANGES, 1);
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

//! The records of the mail model.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{EmailId, Keyword};

/// A mailbox's id within its account.
pub type MailboxId = u32;

/// Special-use roles (RFC 6154), created with every account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Inbox,
    Drafts,
    Sent,
    Trash,
    Junk,
    Archive,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Inbox, Role::Drafts, Role::Sent, Role::Trash, Role::Junk, Role::Archive];

    /// The role's name in JMAP (RFC 8621 §2, from the IANA "IMAP Mailbox Name Attributes"
    /// registry, lower case): `inbox`, `drafts`, `sent`, `trash`, `junk`, `archive`; also
    /// its spelling in the records.
    pub fn name(self) -> &'static str {
        match self {
            Role::Inbox => "inbox",
            Role::Drafts => "drafts",
            Role::Sent => "sent",
            Role::Trash => "trash",
            Role::Junk => "junk",
            Role::Archive => "archive",
        }
    }

    /// The role named `name` (any case), as [`Role::name`] spells it.
    pub fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name().eq_ignore_ascii_case(name))
    }

    /// The IMAP special-use attribute (RFC 6154 §2); the inbox has none.
    pub fn special_use(self) -> Option<&'static str> {
        match self {
            Role::Inbox => None,
            Role::Drafts => Some("\\Drafts"),
            Role::Sent => Some("\\Sent"),
            Role::Trash => Some("\\Trash"),
            Role::Junk => Some("\\Junk"),
            Role::Archive => Some("\\Archive"),
        }
    }
}

/// The names given to the special-use mailboxes of new accounts, owned by [`crate::Mail`]
/// ([`crate::Mail::names`]). The inbox is always `INBOX` (RFC 9051 §5.1); the others
/// default to French, for the agents of communes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxNames {
    pub drafts: String,
    pub sent: String,
    pub trash: String,
    pub junk: String,
    pub archive: String,
}

impl Default for MailboxNames {
    fn default() -> Self {
        MailboxNames {
            drafts: "Brouillons".into(),
            sent: "Envoyés".into(),
            trash: "Corbeille".into(),
            junk: "Indésirables".into(),
            archive: "Archives".into(),
        }
    }
}

impl MailboxNames {
    /// The name of the mailbox of `role`.
    pub fn name(&self, role: Role) -> &str {
        match role {
            Role::Inbox => "INBOX",
            Role::Drafts => &self.drafts,
            Role::Sent => &self.sent,
            Role::Trash => &self.trash,
            Role::Junk => &self.junk,
            Role::Archive => &self.archive,
        }
    }

    /// Every role with its mailbox's name, the inbox first.
    pub fn iter(&self) -> impl Iterator<Item = (Role, &str)> {
        Role::ALL.into_iter().map(|role| (role, self.name(role)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub id: MailboxId,
    pub name: String,
    pub parent: Option<MailboxId>,
    pub role: Option<Role>,
    /// IMAP UIDVALIDITY (RFC 9051 §2.3.1.1).
    pub uid_validity: u32,
    pub subscribed: bool,
    pub created_at: u64,
}

/// An email of an account; its content is the blob `blob`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub id: EmailId,
    /// SHA-256 of the raw message, hex.
    pub blob: String,
    pub size: u64,
    /// Seconds since the Unix epoch (IMAP INTERNALDATE, JMAP receivedAt).
    pub received_at: u64,
    /// Keywords, sorted, without duplicates.
    pub keywords: Vec<Keyword>,
    pub thread: EmailId,
    pub mailboxes: Vec<MailboxId>,
    /// The tenant whose usage counts this email (see [`Quota::tenant`]); given back when
    /// the email is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Blobs holding this email's large records (summary, text) shared with the other
    /// accounts that received the same message (hex hashes); released with the email.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<String>,
}

/// One message of a mailbox, as its index holds it: everything `FETCH (UID FLAGS
/// MODSEQ RFC822.SIZE INTERNALDATE)` and `SEARCH LARGER/SINCE/KEYWORD` need, from one
/// prefix scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidEntry {
    pub uid: u32,
    pub email: EmailId,
    /// The modseq of this entry's last change (CONDSTORE): its arrival in the mailbox or
    /// its last keyword change.
    pub modseq: u64,
    /// Keywords, sorted, without duplicates.
    pub keywords: Vec<Keyword>,
    /// The raw message's size in bytes (IMAP RFC822.SIZE).
    pub size: u32,
    /// Seconds since the Unix epoch (IMAP INTERNALDATE).
    pub received_at: u64,
}

impl UidEntry {
    /// Whether the message has `keyword`.
    pub fn has(&self, keyword: &Keyword) -> bool {
        self.keywords.contains(keyword)
    }
}

/// What `STATUS` and `SELECT` report of a mailbox (RFC 9051 §6.3.11, RFC 7162 §3.1.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Messages with `\Deleted`.
    pub deleted: u32,
    /// Sum of the messages' sizes (STATUS SIZE, RFC 8438).
    pub size: u64,
    pub uid_next: u32,
    pub uid_validity: u32,
    /// The account's modseq: it is at least every modseq of the mailbox, and grows with
    /// every change of the mailbox, expunges included, as RFC 7162 §3.1.2.1 requires.
    pub highest_modseq: u64,
    /// Messages above the recent mark (IMAP4rev1 `\Recent`, see [`crate::Mail::claim_recent`]).
    pub recent: u32,
}

/// How `STORE` changes keywords (RFC 9051 §6.4.6: `+FLAGS`, `-FLAGS`, `FLAGS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeywordOp {
    Add,
    Remove,
    Replace,
}

/// What [`crate::Mail::store_keywords`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOutcome {
    /// The entries whose keywords changed, as they are now, in UID order. Entries whose
    /// keywords would not change are left alone (no new modseq) and not listed.
    pub updated: Vec<UidEntry>,
    /// UIDs left alone because their modseq is above `unchanged_since` (RFC 7162 §3.1.3,
    /// the `MODIFIED` response code), ascending.
    pub modified: Vec<u32>,
    /// The modseq of the operation's commit; the account's modseq if nothing changed.
    pub modseq: u64,
}

/// What [`crate::Mail::copy`] and [`crate::Mail::move_messages`] did (RFC 4315 COPYUID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copied {
    /// The target mailbox's UIDVALIDITY.
    pub uid_validity: u32,
    /// (source UID, UID in the target), in source UID order.
    pub pairs: Vec<(u32, u32)>,
    pub modseq: u64,
}

/// What changed in one mailbox since a modseq (RFC 7162 QRESYNC, and sessions catching up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MailboxDelta {
    /// Entries present now whose modseq is above the one given, in UID order.
    pub changed: Vec<UidEntry>,
    /// UIDs removed since (ascending); some may never have been seen by the client.
    pub expunged: Vec<u32>,
    /// The account's modseq, read before the changes: the next call starts from it.
    pub highest_modseq: u64,
}

/// What to store.
#[derive(Clone, Debug)]
pub struct Ingest {
    /// The raw message, as received (RFC 5322). Shared, not copied: the same bytes given
    /// to several accounts (a message to an alias) are read, staged and stored once.
    pub raw: Bytes,
    pub mailboxes: Vec<MailboxId>,
    pub keywords: Vec<Keyword>,
    pub received_at: u64,
    /// What the message is counted against; delivery over a limit is refused.
    pub quota: Quota,
}

/// The quotas a message is counted against, checked inside the commit that stores it
/// (docs/mail-model.md, "Quotas").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    /// The account's limit in bytes (the directory's account `quota_bytes`).
    pub account_bytes_max: Option<u64>,
    /// The account's tenant: all its accounts' mail is counted together under this id.
    /// `None` counts the message against the account alone.
    pub tenant: Option<String>,
    /// The tenant's limit in bytes on all its accounts together (the directory's tenant
    /// `quota_bytes`).
    pub tenant_bytes_max: Option<u64>,
}

impl Quota {
    /// An account's own limit, counted in no tenant.
    pub fn account(account_bytes_max: Option<u64>) -> Quota {
        Quota { account_bytes_max, ..Quota::default() }
    }
}

/// What was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingested {
    pub email: EmailId,
    pub thread: EmailId,
    pub modseq: u64,
    /// The UID given in each mailbox.
    pub uids: Vec<(MailboxId, u32)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Destroyed,
}

/// One entry of the account's change log: everything one commit changed, under its modseq.
///
/// Emails: `email` with `kind` is the first email changed, `emails` the others, each with
/// its kind ([`Change::email_changes`] yields them all). Mailboxes themselves (created,
/// renamed, subscribed, deleted) are in `mailbox_changes`, for JMAP `Mailbox/changes`;
/// a commit that changed only mailboxes has `email: None` and `kind` is that of the first
/// mailbox change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Filled from the key when read.
    #[serde(skip)]
    pub modseq: u64,
    pub kind: ChangeKind,
    pub email: Option<EmailId>,
    /// The mailboxes whose content changed.
    pub mailboxes: Vec<MailboxId>,
    /// The other emails changed by the same commit (bulk STORE, COPY, MOVE, EXPUNGE).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<(EmailId, ChangeKind)>,
    /// The UIDs removed from mailboxes (QRESYNC `VANISHED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expunged: Vec<(MailboxId, u32)>,
    /// Mailboxes created, updated (renamed, moved, subscribed) or destroyed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mailbox_changes: Vec<(MailboxId, ChangeKind)>,
    /// Objects of other kinds ([`crate::Mail::create_object`]) created, updated or
    /// destroyed: kind, id, change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<(String, u64, ChangeKind)>,
    /// The thread of each email this commit destroyed, `(email, thread)`: its record is
    /// gone, and JMAP `Thread/changes` must still say which thread lost it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destroyed_threads: Vec<(EmailId, EmailId)>,
}

impl Change {
    /// A change of several emails and mailboxes; `kind` and `email` are taken from the
    /// first email, else from the first mailbox change.
    pub(crate) fn new(
        emails: Vec<(EmailId, ChangeKind)>,
        mailboxes: Vec<MailboxId>,
        expunged: Vec<(MailboxId, u32)>,
        mailbox_changes: Vec<(MailboxId, ChangeKind)>,
    ) -> Change {
        let mut emails = emails.into_iter();
        let first = emails.next();
        let kind = first.map(|(_, kind)| kind).or(mailbox_changes.first().map(|(_, kind)| *kind));
        Change {
            modseq: 0,
            kind: kind.unwrap_or(ChangeKind::Updated),
            email: first.map(|(email, _)| email),
            mailboxes,
            emails: emails.collect(),
            expunged,
            mailbox_changes,
            objects: Vec::new(),
            destroyed_threads: Vec::new(),
        }
    }

    /// Every email this commit changed, with its kind.
    pub fn email_changes(&self) -> impl Iterator<Item = (EmailId, ChangeKind)> + '_ {
        self.email.map(|email| (email, self.kind)).into_iter().chain(self.emails.iter().copied())
    }
}

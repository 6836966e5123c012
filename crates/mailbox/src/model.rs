//! The records of the mail model.

use serde::{Deserialize, Serialize};

use crate::EmailId;

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

/// The names given to the special-use mailboxes of new accounts. The inbox is always
/// `INBOX` (RFC 9051 §5.1); the others default to French, for the agents of communes, and
/// may be set per tenant.
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
    /// Keywords, normalised: `\Seen`-style system flags and lowercase keywords.
    pub keywords: Vec<String>,
    pub thread: EmailId,
    pub mailboxes: Vec<MailboxId>,
}

/// One message of a mailbox, as its index holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidEntry {
    pub uid: u32,
    pub email: EmailId,
    /// The modseq of the email's last change (CONDSTORE).
    pub modseq: u64,
    pub keywords: Vec<String>,
}

/// What to store.
#[derive(Clone, Debug)]
pub struct Ingest {
    /// The raw message, as received (RFC 5322).
    pub raw: Vec<u8>,
    pub mailboxes: Vec<MailboxId>,
    pub keywords: Vec<String>,
    pub received_at: u64,
    /// The account's quota; delivery over it is refused.
    pub quota_bytes: Option<u64>,
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

/// One entry of the account's change log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Filled from the key when read.
    #[serde(skip)]
    pub modseq: u64,
    pub kind: ChangeKind,
    pub email: Option<EmailId>,
    /// The mailboxes whose content changed.
    pub mailboxes: Vec<MailboxId>,
}

//! The queue's records, as stored (JSON).

use serde::{Deserialize, Serialize};

/// A queued message: the envelope and each recipient's state. The bytes are a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message's blob (hex SHA-256), released when the message leaves the queue.
    pub blob: String,
    pub size: u64,
    /// The envelope sender; empty for a delivery status notification, which is never
    /// answered by another (RFC 3464 §2, RFC 5321 §4.5.5).
    pub mail_from: String,
    /// The sender's tenant (its admin sees the message) and account (for the brakes and
    /// the notifications).
    pub tenant: Option<String>,
    pub account: Option<u64>,
    /// When it was queued (seconds since the epoch): the retry lifetime counts from here.
    pub queued_at: u64,
    /// The id given when it was accepted (logs, `Received`).
    pub envelope_id: String,
    pub recipients: Vec<Recipient>,
    /// Held messages are not delivered until released.
    pub held: Option<Hold>,
    /// The time of its entry in the schedule: the next attempt, or the end of a worker's
    /// lease; `None` while held.
    pub due_at: Option<u64>,
    /// While a worker has it: the end of that worker's lease (also `due_at`).
    #[serde(default)]
    pub leased_until: Option<u64>,
    /// While a worker has it: the store session of the worker's node
    /// ([`hameau_store::Store::session`]), so that another node takes the message back as
    /// soon as that session ends instead of at the lease's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_by: Option<u64>,
}

impl Message {
    /// The recipients still to deliver.
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|recipient| recipient.state == State::Pending)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub state: State,
    /// Attempts that ended in a temporary failure.
    pub attempts: u32,
    /// The last reply (or local error) for this recipient, as the DSN and the API show it.
    pub last_reply: Option<String>,
    /// When this recipient is next tried (seconds since the epoch).
    pub next_at: u64,
    /// A delay notification was sent for it (one per recipient).
    pub delay_notified: bool,
}

impl Recipient {
    /// The domain the recipient is delivered to (lowercase).
    pub fn domain(&self) -> String {
        self.address.rsplit_once('@').map_or("", |(_, domain)| domain).to_ascii_lowercase()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Pending,
    /// The receiver accepted it (`250`): never sent again.
    Delivered {
        at: u64,
    },
    /// Failed for good (a `5xx`, a null MX, the lifetime over): a DSN tells the sender.
    Failed {
        at: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why, as the API shows it (e.g. "sending limit: 200 messages per hour").
    pub reason: String,
    pub since: u64,
    /// Held by a sending brake (lifting the brake releases it), not by the operator.
    #[serde(default)]
    pub by_brake: bool,
}

/// A sending brake: an account (or a whole tenant) that went over its sending limits,
/// perhaps because its password was phished. Its queued mail is held and new mail
/// refused until the operator lifts it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brake {
    pub tenant: String,
    /// The account braked (its id, and its address as it was); `None`: the whole tenant.
    pub account: Option<u64>,
    #[serde(default)]
    pub address: Option<String>,
    /// Which limit, as the API and the log show it.
    pub reason: String,
    pub since: u64,
}

/// What one attempt gave for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        reply: String,
    },
    /// Try again later (a `4xx`, no connection, a TLS policy not met).
    Deferred {
        reply: String,
    },
    /// Never (a `5xx`, a null MX).
    Failed {
        reply: String,
    },
}

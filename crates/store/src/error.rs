use crate::BlobHash;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An expectation of the batch did not hold: another writer changed `key` first.
    /// Nothing of the batch was written; read again and retry.
    #[error("conflict on key {}: it changed since it was read", crate::key::printable(key))]
    Conflict { key: Vec<u8> },
    /// [`crate::Batch::add`] on a key whose value is not an 8-byte counter.
    #[error("key {} is not a counter", crate::key::printable(key))]
    NotACounter { key: Vec<u8> },
    /// A counter would overflow `i64`.
    #[error("counter {} would overflow", crate::key::printable(key))]
    CounterOverflow { key: Vec<u8> },
    /// [`crate::Batch::add_at_most`] would take the counter past its bound; nothing of the
    /// batch was written.
    #[error("counter {} is {current}: adding {delta} would pass its bound {max}", crate::key::printable(key))]
    CounterBound { key: Vec<u8>, current: i64, delta: i64, max: i64 },
    /// [`crate::Batch::blob_release`] of a blob that is not stored.
    #[error("blob {hash} is not stored")]
    BlobMissing { hash: BlobHash },
    /// A named limit was exceeded.
    #[error("{what} is {got}, over the limit {limit_name} = {max}")]
    Limit { what: &'static str, limit_name: &'static str, max: u64, got: u64 },
    /// The batch is malformed (a patch outside its key or value, or naming a later counter).
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The options are inconsistent.
    #[error("invalid store options: {0}")]
    InvalidOptions(String),
    /// Data on disk is not what this version of Hameau wrote.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// Another process holds the store.
    #[error("the store at {0} is in use by another process")]
    Locked(String),
    /// The backend failed (I/O error, disk full...).
    #[error("store backend error: {0}")]
    Backend(String),
    /// Reading a blob's source failed.
    #[error("reading blob content: {0}")]
    Read(#[from] std::io::Error),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A copy's destination holds records already ([`crate::copy::copy`]).
    #[error("the destination store is not empty: a copy goes into an empty store only")]
    NotEmpty,
    /// A copy, read back, differs from its source ([`crate::copy::copy`]).
    #[error("the copy does not match its source: {0}")]
    CopyMismatch(String),
    /// The tenant is being moved to another database cluster ([`crate::placement`]): its
    /// writes wait for the move to end; this one waited too long. Try again shortly.
    #[error("the tenant is being moved to another database cluster: try again shortly")]
    Moving,
    /// No cluster has this name (`[store.clusters]`).
    #[error("no database cluster is named {0:?} (see [store.clusters])")]
    NoCluster(String),
}

impl Error {
    /// Whether the store could not be reached (the database away, a failover under way, the
    /// store closing): temporary, for the client to try again (SMTP `451`, IMAP
    /// `NO [UNAVAILABLE]`, HTTP 503), unlike a record that breaks a rule.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Backend(_) | Error::Closed | Error::Moving)
    }
}

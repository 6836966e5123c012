//! Which tenant a record belongs to, for a one-tenant restore: the seam through which the
//! crates that write records say it, so that this crate decodes none of their keys. The
//! binary, which knows every crate, gives an [`Owners`] that asks each crate's `keys.rs`.

use hameau_store::BlobHash;

/// Whose a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// One tenant's (its id): restored with that tenant.
    Tenant(String),
    /// Owned as the record at this key is (an account's mail by the account's record, a
    /// domain's index by the domain's record). That record's owner must be a [`Owner::Tenant`]:
    /// one step only, so that resolving an owner never follows a chain.
    Via(Vec<u8>),
    /// The installation's (its counters that must only grow, the operator's API keys, its
    /// ACME account, its backup keys): restored whatever the tenant.
    Installation,
    /// An installation counter (8 bytes, big-endian) of the records under this prefix:
    /// recomputed from the records kept (the queue's size).
    CountOf(Vec<u8>),
    /// Nobody's (a transient mark, a message queued for no tenant): not restored with a
    /// tenant.
    Nobody,
    /// Not known to any crate: a one-tenant restore stops rather than guess.
    Unknown,
}

/// What a one-tenant restore asks of the crates that write records.
pub trait Owners: Send + Sync + std::fmt::Debug {
    /// Whose the record is.
    fn owner(&self, key: &[u8], value: &[u8]) -> Owner;
    /// The blobs the record holds a reference to, one reference each (a message's content,
    /// its shared records): the restored reference counts are the sum over the records kept.
    fn blob_refs(&self, key: &[u8], value: &[u8]) -> Vec<BlobHash>;
}

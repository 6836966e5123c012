//! Why an operation of the quarantine or of the tenants' settings failed.

/// Each kind maps to one HTTP status in the admin API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No held message with this id, or one outside the caller's scope (404): the id as
    /// the caller typed it, both ways.
    #[error("held message {0:?} does not exist")]
    NotFound(String),
    /// Another release of the message is under way (409).
    #[error("held message {0:?} is being released")]
    Releasing(String),
    /// A setting is out of its range (400): the problem names the key.
    #[error(transparent)]
    Invalid(hameau_limits::Problem),
    /// The directory refused (the caller's role, a tenant that does not exist) or failed.
    #[error(transparent)]
    Directory(#[from] hameau_directory::Error),
    /// Delivering a released message failed (over quota, a mailbox missing).
    #[error(transparent)]
    Mail(#[from] hameau_mailbox::Error),
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    /// A stored record could not be read.
    #[error("corrupt filter record {key}: {problem}")]
    Corrupt { key: String, problem: String },
    /// The tenant's quarantine holds `filter.quarantine_tenant_bytes_max` already: the
    /// message is not held (the MX answers `452 4.3.1`, the sender tries again later).
    #[error("the quarantine of tenant {tenant} is full (filter.quarantine_tenant_bytes_max = {max} bytes)")]
    QuarantineFull { tenant: String, max: u64 },
    /// Concurrent changes of the record kept conflicting; try again.
    #[error("busy: try again")]
    Busy,
}

pub(crate) fn corrupt(key: &[u8], problem: impl std::fmt::Display) -> Error {
    Error::Corrupt { key: String::from_utf8_lossy(key).into_owned(), problem: problem.to_string() }
}

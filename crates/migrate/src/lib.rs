//! Moving a commune's mail into Hameau without losing a message (issue 13): the IMAP
//! pull from the old provider, resumable, throttled, with a verification report.
//!
//! - [`Importer::import_imap`] copies one account: every folder with its hierarchy
//!   (modified UTF-7 names decoded, RFC 3501 §5.1.3), special folders to our roles
//!   ([`mapping`]: RFC 6154 SPECIAL-USE, then the usual French and English names), Gmail's
//!   "All Mail" without duplicates, flags, keywords, INTERNALDATE and the exact bytes,
//!   through `Mail::ingest_many_with` (the one way in). [`Importer::start_imap`] runs it
//!   as a [`Job`] with its [`Progress`] and [`Cancel`]; [`Jobs`] is a running server's
//!   table of them (`/api/v1/imports`): bounded, in memory, cancelled at shutdown.
//! - Resumable: each copied message is recorded (source folder, UIDVALIDITY, UID, SHA-256)
//!   in the same commit as the message, so a rerun after any interruption, a SIGKILL
//!   included, copies only what is missing; a changed UIDVALIDITY falls back to the
//!   content hashes.
//! - [`Report`]: per folder, on the source, copied, already there, skipped and why, and
//!   the SHA-256 of what the source serves now against what Hameau holds.
//! - [`destination`] is the side every source shares: another source (mbox, Maildir)
//!   hands it [`SourceFolder`]s and batches of [`SourceMessage`]s and gets the same
//!   records, resume and report.
//!
//! Every count and size from the source is bounded by a key of [`Options`] (`[migrate]`);
//! the bytes read pass through [`guard`], which enforces them under the IMAP client. The
//! clock is an argument ([`Clock`]); this crate reads no environment.

pub mod accounts;
pub mod destination;
pub mod files;
pub mod guard;
pub mod imap;
pub mod jobs;
pub mod mapping;
mod options;
pub mod progress;
mod pull;
pub mod report;

pub use accounts::{CsvAccount, parse_accounts};
pub use destination::{Destination, Records, SourceFolder, SourceMessage, Target};
pub use files::{FileFormat, FileImporter};
pub use imap::{ImapSource, Security, SourceUrl};
pub use jobs::{JobState, JobView, Jobs, Removal, StartError};
pub use mapping::{FolderKind, decode_name, folder_kind, target_name};
pub use options::Options;
pub use progress::{Cancel, Phase, Progress, Snapshot};
pub use pull::{Clock, Importer, Job};
pub use report::{EXIT_INCOMPLETE, FolderReport, Report, Skipped, Totals, Verification};

/// Why an import (or one of its steps) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source's URL is not one we read.
    #[error("source URL {0}")]
    Url(String),
    /// The connection could not be opened, or was lost (the pull opens it again).
    #[error("connection: {0}")]
    Connection(String),
    /// The TLS trust given for a source (a CA's PEM) is not usable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the login: nothing can be copied.
    #[error("login: {0}")]
    Login(String),
    /// The server answered `NO` or `BAD` (a folder it cannot open); the connection lives.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The source went over one of `[migrate]`'s limits.
    #[error("limit: {0}")]
    Limit(String),
    #[error("destination: {0}")]
    Destination(String),
    #[error(transparent)]
    Mail(#[from] hameau_mailbox::Error),
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    #[error("cancelled: what was copied stays, a rerun resumes")]
    Cancelled,
    /// Mailbox files that cannot be read at all (`hameau import mbox|maildir`): the path
    /// is missing, or is not a Maildir.
    #[error("files: {0}")]
    Files(String),
    /// The accounts file of a tenant's import.
    #[error("{0}")]
    Accounts(String),
}

#[cfg(test)]
mod tests;

//! Backups of a Hameau store in an open format, incremental and optionally encrypted, with
//! restore and verification (docs/backup.md describes the format for a person reading it
//! without Hameau).
//!
//! A backup set is a directory; each backup is a subdirectory of it (`000001-full`,
//! `000002-incremental`, …) holding a `manifest.json`, the records as JSON lines
//! (`records.jsonl`), the list of what the store held (`index.jsonl`), and the messages as
//! files named by their SHA-256 (`blobs/ab/abcdef…`). An incremental backup holds the
//! records written since its base and the blobs the chain does not hold yet; its index says
//! what the store held whole, so that a restore replaying the chain drops what was deleted.
//!
//! A backup reads one [`hameau_store::Snapshot`]: it holds every commit that returned before
//! it began and no commit partly, while the server goes on serving.
//!
//! Encrypted backups (age, to an X25519 recipient or under a passphrase) encrypt every file
//! but the manifest, and name message files by an HMAC of their hash, so that the names do
//! not tell which known messages the backup holds.

mod crypt;
mod format;
mod owners;
mod read;
mod restore;
#[cfg(test)]
mod tests;
mod verify;
mod write;

use std::path::PathBuf;

use hameau_limits::{Problem, range};

pub use format::{BaseRef, Counts, EncryptionInfo, FORMAT, FORMAT_VERSION, FileEntry, Kind, MANIFEST, Manifest};
pub use owners::{Owner, Owners};
pub use restore::{RestoreReport, restore};
pub use verify::{Finding, VerifyReport, verify};
pub use write::{Report, backup};

/// The section of the configuration that holds these limits (`[backup]`): `check` names
/// each key as `backup.<field>`.
const SECTION: &str = "backup";

/// How a backup is encrypted.
#[derive(Clone)]
#[non_exhaustive]
pub enum Encryption {
    /// To an age X25519 recipient (`age1…`, as `age-keygen` prints): whoever holds the
    /// matching identity file restores it. The server needs only the public key.
    Recipient(String),
    /// Under a passphrase (age's scrypt): the backup set holds one random key, encrypted
    /// with the passphrase (`key.age`), that every file is encrypted to.
    Passphrase(String),
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encryption::Recipient(recipient) => f.debug_tuple("Recipient").field(recipient).finish(),
            Encryption::Passphrase(_) => f.write_str("Passphrase(<hidden>)"),
        }
    }
}

/// What a restore decrypts with.
#[derive(Clone)]
#[non_exhaustive]
pub enum Decryption {
    /// The text of an age identity file (`AGE-SECRET-KEY-1…` lines).
    Identity(String),
    /// The passphrase the backup was made with.
    Passphrase(String),
}

impl std::fmt::Debug for Decryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decryption::Identity(_) => "Identity(<hidden>)",
            Decryption::Passphrase(_) => "Passphrase(<hidden>)",
        })
    }
}

/// What [`backup`] makes.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// A full backup even when the set holds one already (else: incremental on the last).
    pub full: bool,
    pub encryption: Option<Encryption>,
    pub limits: Limits,
    /// Counted as the backup goes, for whoever watches it (the API's job).
    pub progress: Option<std::sync::Arc<Progress>>,
}

/// How far a running backup is.
#[derive(Debug, Default)]
pub struct Progress {
    /// Keys read from the snapshot.
    pub keys: std::sync::atomic::AtomicU64,
    /// Blobs listed from the snapshot (written or already in the chain).
    pub blobs: std::sync::atomic::AtomicU64,
}

/// What [`restore`] reads.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub decryption: Option<Decryption>,
    /// One tenant only (its id): its records, its accounts' mail, its queue and the
    /// installation's own records; needs [`RestoreOptions::owners`].
    pub tenant: Option<String>,
    /// Who owns each record, for a one-tenant restore (the binary gives it: it knows every
    /// crate that writes records).
    pub owners: Option<std::sync::Arc<dyn Owners>>,
    pub limits: Limits,
}

/// Every limit of backup, restore and verification, named: the `[backup]` section of the
/// configuration. The backup job's own settings (where to, which key) are not limits and
/// stay in the timer's settings file (`/etc/hameau/backup.toml`, docs/backup.md).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Records read from the snapshot per scan. 1,000 keeps one page's memory to about a
    /// megabyte of typical records while the scans stay few.
    pub scan_page_max: usize,
    /// Blob records listed from the snapshot per page. 1,000, as for records.
    pub blobs_page_max: usize,
    /// Longest line of a records or index file read back: a key (1 KiB) and a value
    /// (`store.value_bytes_max`, 1 MiB) in base64 and JSON fit in 4 MiB.
    pub line_bytes_max: usize,
    /// Largest `manifest.json` read. A manifest lists every file of its backup; 100,000
    /// messages make about 15 MB; 256 MiB is far above a commune's.
    pub manifest_bytes_max: u64,
    /// Entries loaded into the store per write during a restore: 5,000 records of a few
    /// KiB make writes of tens of MB, large enough that syncs do not dominate.
    pub load_entries_max: usize,
    /// Bytes of message content loaded per write during a restore. 32 MiB bounds the
    /// memory of a restore whatever the message sizes (one message over it goes alone).
    pub load_bytes_max: usize,
    /// Backups in one chain (a full one and its incremental ones) before the next backup is
    /// a full one again: each incremental backup replays its chain, and a restore reads it
    /// whole. 168 is a week of hourly backups.
    pub chain_backups_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            scan_page_max: 1000,
            blobs_page_max: 1000,
            line_bytes_max: 4 << 20,
            manifest_bytes_max: 256 << 20,
            load_entries_max: 5000,
            load_bytes_max: 32 << 20,
            chain_backups_max: 168,
        }
    }
}

impl Limits {
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "scan_page_max", self.scan_page_max as u64, 1, 100_000)?;
        range(SECTION, "blobs_page_max", self.blobs_page_max as u64, 1, 10_000)?;
        range(SECTION, "line_bytes_max", self.line_bytes_max as u64, 64 << 10, 1 << 30)?;
        range(SECTION, "manifest_bytes_max", self.manifest_bytes_max, 1 << 20, 1 << 34)?;
        range(SECTION, "load_entries_max", self.load_entries_max as u64, 1, 1_000_000)?;
        range(SECTION, "load_bytes_max", self.load_bytes_max as u64, 1 << 20, 1 << 32)?;
        range(SECTION, "chain_backups_max", self.chain_backups_max as u64, 1, 100_000)?;
        Ok(())
    }
}

/// Why a backup, restore or verification failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    /// A file of the backup is not what its manifest or format says.
    #[error("{path}: {problem}")]
    Format { path: PathBuf, problem: String },
    /// Files of the backup are missing or do not match their manifest.
    #[error("{0}")]
    Damaged(String),
    /// The backup is encrypted and no key or passphrase was given.
    #[error("the backup is encrypted ({0}): give its key or passphrase")]
    KeyNeeded(String),
    /// The key or passphrase does not open the backup, or the encryption failed.
    #[error("encryption: {0}")]
    Crypt(String),
    /// No backup where one was expected.
    #[error("{0} holds no backup (no manifest.json)")]
    NoBackup(PathBuf),
    /// A one-tenant restore without [`RestoreOptions::owners`].
    #[error("restoring one tenant needs to know who owns each record (no owners given)")]
    TenantRestore,
    /// A one-tenant restore met a record no crate claims, or whose owner cannot be resolved.
    #[error("restoring one tenant: {0}")]
    Owner(String),
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, problem: impl Into<String>) -> Error {
        Error::Format { path: path.into(), problem: problem.into() }
    }
}

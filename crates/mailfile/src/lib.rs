//! Mailbox files: the readers of mbox (RFC 4155, with the mboxrd and mboxo `From `
//! quoting) and Maildir (with Maildir++ folders and Dovecot's keywords) that an import
//! consumes, and the writers that an export uses.
//!
//! Nothing here knows the store: a reader is a plain iterator over files, so it can be
//! fuzzed and run on a blocking thread, and the import (crate `migrate`) decides where
//! each message goes. [`open`] gives the [`Folders`] of a file or directory, each
//! [`Folder`] an iterator of [`SourceMessage`]s or [`Skip`]s: a message that cannot be
//! taken (too large, a line too long, deleted but not compacted) is skipped with its
//! reason, never a failure of the whole import.
//!
//! Reading is streaming and bounded by [`Limits`]: one message at a time (an mbox of
//! several gigabytes is never read whole), and nothing grows past a named limit. No
//! recursion follows the depth of a directory tree.
//!
//! **Line endings.** Messages are given back with CRLF line ends, as SMTP and IMAP carry
//! them and as Hameau stores them (`Mail::ingest` keeps the bytes it is given; the MX and
//! APPEND give CRLF). A lone LF becomes CRLF; a CRLF stays as it is. A Maildir written by
//! Hameau holds the stored bytes exactly; an mbox is written with LF line ends (the Unix
//! convention every mbox reader expects), so a message whose line ends were not all
//! CRLF may come back with CRLF ends (docs/export.md).
//!
//! **Local state.** The headers that mail programs add to an mbox to keep their own state
//! (`Status`, `X-Status`, `X-Keywords`, `X-UID`, `X-IMAP`, `X-IMAPbase`, and
//! Thunderbird's `X-Mozilla-Status`, `X-Mozilla-Status2`, `X-Mozilla-Keys`) are read for
//! the flags and removed from the stored bytes, as Dovecot hides them: they are not
//! message content, and they change whenever the file's owner reads the mail.

mod date;
pub mod maildir;
pub mod mbox;
pub mod mutf7;
pub mod names;
mod tree;
pub mod write;

use std::fmt;
use std::path::{Path, PathBuf};

use hameau_limits::{Problem, range};
use serde::Deserialize;

pub use write::{MaildirWriter, MboxWriter, Written};

/// One message read from a file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceMessage {
    /// The message (RFC 5322), CRLF line ends, without the mbox `From ` line and without
    /// the mail programs' local-state headers.
    pub raw: Vec<u8>,
    /// IMAP system flags, spelled as IMAP does: `\Seen`, `\Answered`, `\Flagged`,
    /// `\Deleted`, `\Draft`.
    pub flags: Vec<String>,
    /// Keywords (`$Forwarded`, `$MDNSent`, `$label1`, a user's own words).
    pub keywords: Vec<String>,
    /// IMAP INTERNALDATE, seconds since the Unix epoch, when the file says it.
    pub internal_date: Option<u64>,
    /// The message's UID where the files keep one (a Maildir's `dovecot-uidlist`), valid
    /// under [`Folder::uid_validity`]: what a resumable import can key on.
    pub uid: Option<u32>,
}

/// A message or a folder that is not read, and why: the import reports it and goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// Where: the file, and for an mbox the message's number and byte offset.
    pub location: String,
    pub reason: SkipReason,
}

/// Why something is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// The message is larger than [`Limits::message_bytes_max`].
    TooLarge { bytes: u64, max: u64 },
    /// A line of the message is longer than [`Limits::line_bytes_max`].
    LineTooLong { max: u64 },
    /// The folder holds more than [`Limits::messages_max`] messages: the rest are not read.
    TooManyMessages { max: u64 },
    /// More than [`Limits::folders_max`] folders: the rest are not read.
    TooManyFolders { max: u64 },
    /// A folder deeper than [`Limits::depth_max`].
    TooDeep { max: u64 },
    /// The message carries more keywords than [`Limits::keywords_max`].
    TooManyKeywords { max: u64 },
    /// Thunderbird marked the message deleted (`X-Mozilla-Status` 0x0008) and had not yet
    /// compacted the folder: the user had deleted it.
    DeletedByThunderbird,
    /// The mbox file ends in the middle of the message's last line: the file was cut
    /// short (an interrupted copy, a full disk); `bytes` were read of it.
    Truncated { bytes: u64 },
    /// The file is not an mbox (it does not start with a `From ` line).
    NotMbox,
    /// A folder name that cannot be a mailbox name (an empty level, `..x`).
    BadName(String),
    /// Reading failed.
    Io(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TooLarge { bytes, max } => {
                write!(f, "message of {bytes} bytes or more, over the {max}-byte limit")
            }
            SkipReason::LineTooLong { max } => write!(f, "a line longer than {max} bytes"),
            SkipReason::TooManyMessages { max } => write!(f, "more than {max} messages in the folder"),
            SkipReason::TooManyFolders { max } => write!(f, "more than {max} folders"),
            SkipReason::TooDeep { max } => write!(f, "folder deeper than {max} levels"),
            SkipReason::TooManyKeywords { max } => write!(f, "more than {max} keywords"),
            SkipReason::DeletedByThunderbird => write!(f, "deleted in Thunderbird (folder not compacted)"),
            SkipReason::Truncated { bytes } => {
                write!(f, "message cut short: the file ends in the middle of a line, after {bytes} bytes of it")
            }
            SkipReason::NotMbox => write!(f, "not an mbox file (no `From ` line at its start)"),
            SkipReason::BadName(name) => write!(f, "folder name {name:?} has an empty level"),
            SkipReason::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.reason)
    }
}

/// The messages of a folder, read one at a time.
pub type Messages = Box<dyn Iterator<Item = Result<SourceMessage, Skip>> + Send>;

/// A folder of a mailbox file tree.
pub struct Folder {
    /// The hierarchy, decoded (modified UTF-7 and the export's escapes undone):
    /// `["Projets", "Été 2026"]`. The inbox is `["INBOX"]`.
    pub path: Vec<String>,
    /// An IMAP special-use attribute (RFC 6154: `\Sent`, `\Drafts`, `\Trash`, `\Junk`,
    /// `\Archive`) guessed from a usual top-level name, if any; the files do not say it.
    pub special_use: Option<&'static str>,
    /// Where it was read from.
    pub source: PathBuf,
    /// The UIDVALIDITY under which [`SourceMessage::uid`]s are given, if the files keep
    /// one (a Maildir's `dovecot-uidlist`).
    pub uid_validity: Option<u32>,
    /// How many of its messages the uidlist does not name (mail delivered since Dovecot
    /// last looked); 0 without a uidlist. Their UIDs are not known yet, so an import
    /// cannot key on UIDs for this folder.
    pub unlisted: u64,
    pub messages: Messages,
}

impl fmt::Debug for Folder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Folder").field("path", &self.path).field("source", &self.source).finish_non_exhaustive()
    }
}

/// What a path holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One mbox file, or a directory of them (Thunderbird's `Name` files and `Name.sbd/`
    /// directories; `.msf` and other files that are not mboxes are left alone).
    Mbox(mbox::Quoting),
    /// A Maildir with its Maildir++ folders (`.Folder.Sub`).
    Maildir,
}

/// The bounds of reading, each with its reason. Deserialised by the section of the
/// configuration that embeds it (the import's), checked by [`Limits::check`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message taken; a larger one is skipped with its size. 256 MiB is the
    /// store's largest blob (`store.blob_bytes_max`): nothing larger could be stored.
    pub message_bytes_max: u64,
    /// Longest line; a message with a longer one is skipped. 4 MiB: RFC 5322 allows 998
    /// bytes, but old mail holds base64 or HTML on one line of a few megabytes; the
    /// reader holds at most one line and one message in memory.
    pub line_bytes_max: u64,
    /// Most folders read from one tree. 10,000: Thunderbird's and Dovecot's users rarely
    /// pass a few hundred; a tree with more is a mistake or an attack.
    pub folders_max: u64,
    /// Deepest folder. 32 levels: past that a tree is not a person's filing.
    pub depth_max: u64,
    /// Most messages read from one folder. 10 million: more than any real mailbox, and a
    /// bound on a Maildir's listing (about 100 bytes a name).
    pub messages_max: u64,
    /// Most keywords of one message. 100 is the store's own bound (`mail.keywords_max`):
    /// a message with more could not be stored as it is, and a header of a million
    /// words is not read past it.
    pub keywords_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes_max: 256 * 1024 * 1024,
            line_bytes_max: 4 * 1024 * 1024,
            folders_max: 10_000,
            depth_max: 32,
            messages_max: 10_000_000,
            keywords_max: 100,
        }
    }
}

impl Limits {
    /// Checks the ranges and that a line fits in a message; `section` is the dotted
    /// path of the configuration section that embeds these limits.
    pub fn check(&self, section: &str) -> Result<(), Problem> {
        range(section, "message_bytes_max", self.message_bytes_max, 1024, 1 << 40)?;
        range(section, "line_bytes_max", self.line_bytes_max, 1000, 1 << 30)?;
        range(section, "folders_max", self.folders_max, 1, 1_000_000)?;
        range(section, "depth_max", self.depth_max, 1, 1000)?;
        range(section, "messages_max", self.messages_max, 1, 1_000_000_000)?;
        range(section, "keywords_max", self.keywords_max, 1, 100_000)?;
        if self.line_bytes_max > self.message_bytes_max {
            return Err(Problem::new(section, "line_bytes_max", "must not exceed message_bytes_max"));
        }
        Ok(())
    }
}

/// Why a tree cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: not a Maildir (no cur/ or new/ directory, and no Maildir++ folder)")]
    NotMaildir(PathBuf),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io { path: path.to_path_buf(), source }
    }
}

/// The folders at `path`: an mbox file (one folder, named after the file), a directory of
/// mbox files (Thunderbird's local folders), or a Maildir.
pub fn open(path: &Path, format: Format, limits: &Limits) -> Result<Folders, Error> {
    let folders = match format {
        Format::Mbox(quoting) => tree::mbox_folders(path, quoting, limits)?,
        Format::Maildir => maildir::folders(path, limits)?,
    };
    Ok(Folders { pending: folders.into_iter() })
}

/// The folders of a tree, each opened when it is reached.
pub struct Folders {
    pending: std::vec::IntoIter<Result<PendingFolder, Skip>>,
}

/// A folder found, not yet opened.
pub(crate) enum PendingFolder {
    Mbox {
        path: Vec<String>,
        file: PathBuf,
        quoting: mbox::Quoting,
        limits: Limits,
    },
    /// A folder that holds only subfolders (a Thunderbird `Name.sbd/` without `Name`).
    Empty {
        path: Vec<String>,
        dir: PathBuf,
    },
    Maildir {
        path: Vec<String>,
        dir: PathBuf,
        limits: Limits,
    },
}

impl Iterator for Folders {
    type Item = Result<Folder, Skip>;

    fn next(&mut self) -> Option<Self::Item> {
        let pending = match self.pending.next()? {
            Ok(pending) => pending,
            Err(skip) => return Some(Err(skip)),
        };
        Some(match pending {
            PendingFolder::Mbox { path, file, quoting, limits } => tree::open_mbox(path, file, quoting, limits),
            PendingFolder::Empty { path, dir } => Ok(Folder {
                special_use: names::special_use(&path),
                path,
                source: dir,
                uid_validity: None,
                unlisted: 0,
                messages: Box::new(std::iter::empty()),
            }),
            PendingFolder::Maildir { path, dir, limits } => maildir::open_folder(path, dir, limits),
        })
    }
}

/// IMAP system flags this crate knows, in the order it gives them.
pub const SYSTEM_FLAGS: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Whether `word` may be an IMAP keyword (RFC 9051 §9 `flag-keyword`: an atom, no
/// backslash): files may hold anything, the store takes atoms only.
pub fn is_keyword(word: &str) -> bool {
    !word.is_empty() && word.len() <= 255 && word.bytes().all(|b| b > b' ' && b < 0x7f && !b"(){%*\"\\]".contains(&b))
}

/// Adds `item` to `list` unless it is there already, in any case: flags and keywords are
/// case-insensitive (RFC 9051 §2.3.2).
pub(crate) fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|existing| existing.eq_ignore_ascii_case(item)) {
        list.push(item.to_string());
    }
}

#[cfg(test)]
mod tests;

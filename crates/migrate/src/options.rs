//! The `[migrate]` section: the pull's throttles and limits, the file imports' reading
//! limits (`[migrate.files]`), their defaults and checks.

use std::time::Duration;

use hameau_limits::{Problem, range};

/// The section of the configuration file.
const SECTION: &str = "migrate";
/// The table of the file imports' reading limits.
const FILES_SECTION: &str = "migrate.files";

/// The migration's options: the `[migrate]` section. Every count and size that comes from
/// the old server is bounded by one of them, so that a broken or hostile server cannot take
/// Hameau down: it fails the folder or the message, which the report then names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Most IMAP connections open at once to one source host, all accounts together.
    /// Providers ban accounts that open many: Gmail allows 15 per account, Orange and Free
    /// fewer; 2 per host keeps a whole commune's migration polite.
    pub connections_per_host_max: usize,
    /// Most accounts imported at once from a CSV (`hameau import imap --csv`). 3 keeps the
    /// store's commits and the network busy without starving a small machine.
    pub accounts_concurrent_max: usize,
    /// Most bytes per second read from the source, per connection; 0 reads as fast as the
    /// source sends. 4 MiB/s pulls a 2 GB mailbox in under ten minutes while staying far
    /// from the rates that make providers throttle.
    pub bytes_per_second_max: u64,
    /// Most messages fetched and stored in one batch (one `UID FETCH`, one
    /// `Mail::ingest_many` commit). Also bounded by `mail.ingest_batch_max`. 100 makes
    /// commits large enough to be cheap and small enough that a crash redoes little.
    pub batch_messages_max: usize,
    /// Most bytes of messages in one batch: what the pull holds in memory at a time (plus
    /// one message). 32 MiB.
    pub batch_bytes_max: u64,
    /// Largest message copied; a larger one is skipped, and the report says so. 50 MiB:
    /// above what any mail provider accepts (Gmail 25 MB, Orange 50 MB with encoding).
    pub message_bytes_max: u64,
    /// Most folders read from one source account; past it the account fails with a clear
    /// error. 1,000, as `mail.mailboxes_max`.
    pub folders_max: usize,
    /// Most messages listed in one source folder; a larger folder is reported as not
    /// copied. One million: ten times the largest mailboxes of a town hall.
    pub messages_per_folder_max: usize,
    /// Longest mailbox name, in bytes, once decoded. 1,000, as Hameau's own names.
    pub name_bytes_max: usize,
    /// Most bytes the listing of one folder (its messages' UIDs, sizes, flags and dates)
    /// may take. 256 MiB: a million messages at about 100 bytes each, with room. (LIST is
    /// bounded by `folders_max` and `name_bytes_max`.)
    pub listing_bytes_max: u64,
    /// Longest wait for a TCP connection and the TLS handshake.
    pub connect_timeout_s: u64,
    /// Longest wait for the answer to one command; a fetch of a batch of messages gets
    /// this plus a second per 64 KiB announced.
    pub command_timeout_s: u64,
    /// Longest silence while an answer is being read (a message's literal): a server that
    /// stops sending in the middle of a message is given up on after it.
    pub literal_timeout_s: u64,
    /// How many times an account's connection is opened again after it was lost; past it
    /// the account stops and the report says what is left. 10.
    pub reconnects_max: usize,
    /// Whether the verification fetches every message again from the source to compare
    /// its SHA-256 with what Hameau stores. It doubles the traffic; off, the report compares
    /// listings only (counts and UIDs) and says that contents were not compared.
    pub verify_contents: bool,
    /// The bounds of reading mbox and Maildir files (`hameau import mbox|maildir`): the
    /// table `[migrate.files]`, declared by `hameau_mailfile::Limits`. A table of its own
    /// because its keys mean other things than the pull's (`message_bytes_max` of a file
    /// is bounded by the store's largest blob, not by what a provider accepts).
    pub files: hameau_mailfile::Limits,
    /// Most imports running at once in the server (`/api/v1/imports`), every tenant
    /// together; the others wait, queued, tenants in turn. 3, as `accounts_concurrent_max`:
    /// the server keeps serving mail while it imports.
    pub jobs_concurrent_max: usize,
    /// Most import jobs the server remembers (queued, running and finished, every tenant
    /// together): a finished job's report is kept until it is deleted or this bound
    /// evicts the oldest finished one; past it with none finished, a new job is refused.
    /// 200: every account of the largest communes started at once, with their reports.
    pub jobs_kept_max: usize,
    /// Most import jobs of one tenant queued or running at once; past it, its next job is
    /// refused (`429`) until one has finished. 50: a commune's every agent at once, while
    /// one commune can never fill `jobs_kept_max` and refuse the others theirs.
    pub jobs_per_tenant_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            connections_per_host_max: 2,
            accounts_concurrent_max: 3,
            bytes_per_second_max: 4 * 1024 * 1024,
            batch_messages_max: 100,
            batch_bytes_max: 32 * 1024 * 1024,
            message_bytes_max: 50 * 1024 * 1024,
            folders_max: 1_000,
            messages_per_folder_max: 1_000_000,
            name_bytes_max: 1_000,
            listing_bytes_max: 256 * 1024 * 1024,
            // 30 s: a TLS handshake to a busy provider takes a second or two.
            connect_timeout_s: 30,
            // 5 minutes: listing the flags of 100,000 messages on a slow server.
            command_timeout_s: 300,
            // 2 minutes of silence in the middle of an answer is a dead server.
            literal_timeout_s: 120,
            reconnects_max: 10,
            verify_contents: true,
            files: hameau_mailfile::Limits::default(),
            jobs_concurrent_max: 3,
            jobs_kept_max: 200,
            jobs_per_tenant_max: 50,
        }
    }
}

impl Options {
    /// Checks each key's range and their relationships, naming the key.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "connections_per_host_max", self.connections_per_host_max as u64, 1, 100)?;
        range(SECTION, "accounts_concurrent_max", self.accounts_concurrent_max as u64, 1, 1_000)?;
        range(SECTION, "bytes_per_second_max", self.bytes_per_second_max, 0, 10 * 1024 * 1024 * 1024)?;
        range(SECTION, "batch_messages_max", self.batch_messages_max as u64, 1, 100_000)?;
        range(SECTION, "message_bytes_max", self.message_bytes_max, 1024, 4 * 1024 * 1024 * 1024)?;
        range(SECTION, "batch_bytes_max", self.batch_bytes_max, 64 * 1024, 16 * 1024 * 1024 * 1024)?;
        range(SECTION, "folders_max", self.folders_max as u64, 1, 1_000_000)?;
        range(SECTION, "messages_per_folder_max", self.messages_per_folder_max as u64, 1, 100_000_000)?;
        range(SECTION, "name_bytes_max", self.name_bytes_max as u64, 16, 10_000)?;
        range(SECTION, "listing_bytes_max", self.listing_bytes_max, 64 * 1024, 64 * 1024 * 1024 * 1024)?;
        range(SECTION, "connect_timeout_s", self.connect_timeout_s, 1, 3_600)?;
        range(SECTION, "command_timeout_s", self.command_timeout_s, 1, 86_400)?;
        range(SECTION, "literal_timeout_s", self.literal_timeout_s, 1, 86_400)?;
        range(SECTION, "reconnects_max", self.reconnects_max as u64, 0, 10_000)?;
        range(SECTION, "jobs_concurrent_max", self.jobs_concurrent_max as u64, 1, 1_000)?;
        range(SECTION, "jobs_kept_max", self.jobs_kept_max as u64, 1, 100_000)?;
        range(SECTION, "jobs_per_tenant_max", self.jobs_per_tenant_max as u64, 1, 100_000)?;
        if self.jobs_per_tenant_max > self.jobs_kept_max {
            return Err(Problem::new(
                SECTION,
                "jobs_per_tenant_max",
                format!("must be at most jobs_kept_max ({})", self.jobs_kept_max),
            ));
        }
        if self.jobs_kept_max < self.jobs_concurrent_max {
            return Err(Problem::new(
                SECTION,
                "jobs_kept_max",
                format!("must be at least jobs_concurrent_max ({})", self.jobs_concurrent_max),
            ));
        }
        self.files.check(FILES_SECTION)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_s)
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_s)
    }

    pub fn literal_timeout(&self) -> Duration {
        Duration::from_secs(self.literal_timeout_s)
    }
}

//! Hameau's IMAP server: port 143 (STARTTLS) and 993 (implicit TLS, RFC 8314) over the
//! mail model. The protocol (parsing, literals, limits, states, SASL, response syntax) is
//! the sans-IO [`hameau_imap_session::Session`]; this crate owns the sockets, TLS and
//! DEFLATE layers, and gives the commands their meaning over [`hameau_mailbox::Mail`]:
//!
//! - [`server`]: accept loops, connection limits (total and per address), the driver of
//!   one connection (reads only when the session wants input, writes its output, IDLE
//!   woken by the account's change notifications, STARTTLS, COMPRESS=DEFLATE).
//! - `state`: a connection's state (`State`: not authenticated, authenticated
//!   with the account, or with a selected mailbox's view too), the login, and the
//!   refresh that reports other sessions' changes; below every command.
//! - `commands`: the dispatch of each command to `mailboxes` (SELECT, CREATE, LIST,
//!   STATUS, quotas…), `messages` (APPEND, STORE, COPY, MOVE, EXPUNGE…), `fetch` and
//!   `search`; `transport` is a connection's bytes (TLS, DEFLATE).
//! - `view`: the selected mailbox as the session knows it (UIDs in sequence order, flags,
//!   modseqs), brought up to date from the change log, which gives the untagged
//!   `EXISTS`/`EXPUNGE`/`VANISHED`/`FETCH FLAGS` updates.
//! - `fetch`: FETCH items rendered from the stored summary and raw message (never a
//!   re-parse): ENVELOPE, BODYSTRUCTURE, sections, BINARY.
//! - `search`: SEARCH, SORT and THREAD: SEARCH keys mapped onto the mail model's
//!   [`hameau_mailbox::query::Filter`] (the threading itself is the pure
//!   [`hameau_imap_session::thread`], run on the blocking pool).
//!
//! Logins go through `Directory::login`: failures are counted per client address and per
//! account by the directory's `AuthLimiter` (shared with HTTPS); each failure slows the
//! next attempt, and past the limit logins are refused without checking the password.

mod commands;
mod fetch;
mod mailboxes;
mod messages;
mod options;
mod search;
pub mod server;
mod state;
mod transport;
mod view;

use std::sync::Arc;
use std::time::Duration;

use hameau_directory::Directory;
use hameau_mailbox::Mail;
use hameau_telemetry::ServiceMetrics;

pub use hameau_mailbox::query::{SummaryCache, TextCache};
pub use options::Options;

/// What each connection runs with, made from the `[imap]` section by
/// [`Options::connection`].
#[derive(Clone, Debug)]
pub struct ConnectionOptions {
    /// Limits, extensions and the greeting of each session. `tls_active` and
    /// `starttls_available` are set per listener.
    pub session: hameau_imap_session::Options,
    pub tls_handshake_timeout: Duration,
    /// How often a logged-in session checks that its login still holds
    /// (`Directory::login_still_valid`): the account not deleted nor disabled, its
    /// password not changed, its application password not revoked.
    pub login_check: Duration,
}

/// What every connection shares.
pub struct Context {
    pub mail: Mail,
    pub directory: Directory,
    /// The certificate for STARTTLS and port 993; `None` disables both.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub options: ConnectionOptions,
    /// Seconds since the Unix epoch (the clock is given, not read here).
    pub now_s: fn() -> u64,
    /// Decoded summaries shared by the sessions.
    pub summaries: std::sync::Arc<SummaryCache>,
    /// Searchable body texts shared by the sessions.
    pub texts: std::sync::Arc<TextCache>,
    /// Counters with `protocol="imap"` (commands are `requests`).
    pub metrics: ServiceMetrics,
}

//! Sans-IO IMAP server session: IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051).
//!
//! The [`Session`] takes bytes in and gives responses and [`Event`]s out; it knows nothing
//! of sockets, tokio, TLS, the store or the mail model. Its driver (the `imap` crate) owns
//! the socket, the TLS and DEFLATE layers, the clock and the mailboxes:
//!
//! ```text
//! let mut session = Session::new(options, now);
//! loop {
//!     while let Some(event) = session.poll_event(now) {
//!         match event {
//!             Event::Command(command) => {
//!                 // run it; write untagged data with session.untagged().exists(..),
//!                 // .fetch(seq).uid(..).body_section(..), .esearch(..), .list(..) ...
//!                 session.complete(&command.tag, Status::Ok, None, "FETCH completed");
//!             }
//!             Event::Login { .. } => session.handle_login(check(..)),
//!             Event::Idle { .. } => { /* push updates with session.untagged() until IdleDone */ }
//!             Event::IdleDone { tag } => session.complete(&tag, Status::Ok, None, "IDLE terminated"),
//!             Event::StartTls => { /* write output, handshake */ session.handle_tls_started() }
//!             Event::Compress { tag } => { /* complete OK, write output, wrap the stream,
//!                                             inflate session.take_buffered_input() */ }
//!             Event::Close { .. } => { /* write output, close */ }
//!         }
//!     }
//!     write session.poll_output();
//!     read the socket (when session.wants_input()) until session.poll_timeout();
//!     session.handle_input(bytes) or session.handle_timeout(now)
//! }
//! ```
//!
//! The session answers by itself `CAPABILITY`, `LOGOUT`, `STARTTLS`, `ENABLE`, `NOOP`
//! before login, the SASL exchanges of `AUTHENTICATE PLAIN` and `LOGIN` (SASL-IR
//! included), wrong-state commands and syntax errors. Extensions (each can be switched off
//! in [`Extensions`]): LITERAL+ or LITERAL- (RFC 7888), SASL-IR (RFC 4959), ID (RFC 2971),
//! ENABLE (RFC 5161), IDLE (RFC 2177), NAMESPACE (RFC 2342), UIDPLUS (RFC 4315), MOVE
//! (RFC 6851), SPECIAL-USE and CREATE-SPECIAL-USE (RFC 6154), LIST-EXTENDED (RFC 5258),
//! LIST-STATUS (RFC 5819), CHILDREN (RFC 3348), UNSELECT (RFC 3691), ESEARCH (RFC 4731),
//! SEARCHRES (RFC 5182), SORT and THREAD (RFC 5256), CONDSTORE and QRESYNC (RFC 7162),
//! QUOTA (RFC 9208), STATUS=SIZE (RFC 8438), BINARY (RFC 3516), COMPRESS=DEFLATE
//! (RFC 4978), UTF8=ACCEPT (RFC 6855), MULTIAPPEND (RFC 3502), APPENDLIMIT (RFC 7889).
//!
//! # Policies
//!
//! Where the RFCs leave a choice, this is what the session does (docs/imap.md has more):
//!
//! - **One command at a time.** Pipelined commands are read in order; while the driver
//!   owes an answer ([`Session::complete`], [`Session::handle_login`]) no further command
//!   is parsed, so responses never interleave. At most [`Limits::pipelined_bytes_max`] of
//!   unread input is held ([`Session::wants_input`]).
//! - **Line endings.** CRLF, or a bare LF (tolerated, as Dovecot does). Empty lines are
//!   ignored.
//! - **Synchronising literals** `{n}` get `+ Ready for literal data` only when they fit:
//!   message literals of `APPEND` (after login) against [`Limits::literal_bytes_max`] and
//!   [`Limits::append_bytes_max`], every other literal against what remains of
//!   [`Limits::command_line_bytes_max`]. Otherwise the command is answered at once with
//!   `NO [TOOBIG]` (APPEND) or `BAD [TOOBIG]` and no `+`: the client does not send it.
//! - **Non-synchronising literals** `{n+}` over their limit come anyway: they are counted
//!   down and dropped without being buffered, then the command gets `NO [TOOBIG]` or
//!   `BAD [TOOBIG]`. One larger than [`Limits::literal_discard_bytes_max`] gets
//!   `* BYE Literal too large` and the session closes. Without LITERAL+ (LITERAL-, as
//!   IMAP4rev2 requires) a non-synchronising literal above 4096 octets gets
//!   `BAD [TOOBIG]` after being dropped (RFC 7888 §4).
//! - **Over-long commands** (over [`Limits::command_line_bytes_max`]) are skipped to their
//!   end, literals announced in the skipped part included, and get `BAD [TOOBIG]`.
//! - **Syntax errors, unknown commands, 8-bit garbage**: tagged `BAD` with a short reason,
//!   or `* BAD` when no tag can be read; the session goes on. The `BAD` answers (the
//!   driver's included) count; at [`Limits::errors_max`] the session says `* BYE` and
//!   closes. Commands in the wrong state get `BAD`.
//! - **Strings.** Quoted strings and literals must be UTF-8 where text is expected (search
//!   strings, credentials, header names); `SEARCH`, `SORT` and `THREAD` accept the charsets
//!   `UTF-8` and `US-ASCII` only, others get `NO [BADCHARSET (UTF-8 US-ASCII)]`.
//! - **Mailbox names** are modified UTF-7 (strictly checked, RFC 3501 §5.1.3) until
//!   IMAP4rev2 or UTF8=ACCEPT is enabled, UTF-8 after. Only the name `INBOX` itself is
//!   case-insensitive; `inbox/sub` keeps its case.
//! - **Login.** `LOGIN` and `AUTHENTICATE` without TLS get `NO [PRIVACYREQUIRED]` unless
//!   [`Options::plaintext_auth_allowed`]; `LOGINDISABLED` is then advertised instead of
//!   `AUTH=`. A cancelled (`*`) or malformed SASL exchange gets `BAD`. After
//!   [`Limits::auth_failures_max`] failures: `* BYE`.
//! - **STARTTLS.** Bytes after the command in the same read, and bytes fed before
//!   [`Session::handle_tls_started`], are dropped (CVE-2011-0411).
//! - **ENABLE** is accepted in the authenticated state only (RFC 5161 §3.1) and ignores
//!   unknown names. `QRESYNC` implies `CONDSTORE`. CONDSTORE is also enabled by the first
//!   CONDSTORE-enabling command (RFC 7162 §3.1, [`Command::enables_condstore`]).
//! - **SELECT while selected** unselects at once; with QRESYNC or IMAP4rev2 enabled the
//!   session writes `* OK [CLOSED]` before the driver's data.
//! - **IDLE** ends with `DONE` (any case). Any other line ends it too, after
//!   `* BAD Expected DONE`.
//! - **Timeouts** run from the last input: [`Limits::idle_timeout`] when authenticated
//!   (IDLE included), [`Limits::command_timeout`] inside a partly received command, and
//!   [`Limits::not_authenticated_timeout`] from the greeting until login. None runs while
//!   the driver owes an answer. Expiry: `* BYE Autologout; idle for too long`.
//!
//! Memory is bounded: a command is at most [`Limits::command_line_bytes_max`] plus its
//! APPEND messages; buffers above 1 KiB are freed after the command that needed them, so an
//! idle session holds at most a few KiB.

mod capability;
pub mod fuzzing;
mod limits;
pub mod list_match;
mod mutf7;
mod parse;
mod session;
#[cfg(test)]
mod tests;
pub mod thread;
mod types;
mod write;

pub use capability::Extensions;
pub use limits::Limits;
pub use session::{CloseReason, Enabled, Event, LoginError, Options, Session, SessionState};
pub use types::{
    AppendMessage, Command, CommandBody, Date, DateTime, FetchAttribute, Flag, ListCommand, ListReturn, ListSelection,
    MailboxName, Partial, QresyncParams, SearchKey, SearchReturn, Section, SectionText, SelectParams, SeqNumber,
    SeqRange, SequenceSet, SortCriterion, SortKey, SpecialUse, StatusItem, StoreAction, ThreadAlgorithm,
};
/// Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for IMAP clients too (the migration's
/// pull from old servers decodes the names it lists, its tests encode the ones they create).
pub fn mutf7_decode(bytes: &[u8]) -> Option<String> {
    mutf7::decode(bytes)
}

/// Encodes a mailbox name in modified UTF-7 (see [`mutf7_decode`]).
pub fn mutf7_encode(name: &str) -> String {
    let mut out = Vec::with_capacity(name.len());
    mutf7::encode(name, &mut out);
    // The encoding is printable ASCII only.
    String::from_utf8(out).unwrap_or_default()
}
pub use write::{
    Code, Esearch, FetchWriter, ListItem, ListWriter, MailboxAttribute, Namespace, QuotaResource, Responses, Status,
    Thread, Threads,
};

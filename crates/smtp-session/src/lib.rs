//! Sans-IO SMTP server session (RFC 5321), used by the MX (port 25) and by submission.
//!
//! The [`Session`] takes bytes in and gives replies and [`Event`]s out; it knows nothing of
//! sockets, tokio, TLS or the store. Its driver owns the socket, the TLS handshake, the
//! clock and the decisions (recipient checks, SPF, storing the message):
//!
//! ```text
//! let mut session = Session::new(options, "mx.example.org", now);
//! loop {
//!     while let Some(event) = session.poll_event(now) {
//!         // write session.poll_output(); answer with handle_decision(...) when
//!         // event.needs_decision(); handshake then handle_tls_started() on StartTls;
//!         // close the socket on Quit and Close
//!     }
//!     write session.poll_output();
//!     if session.is_ready() { continue } // more pipelined commands, once replies are out
//!     read the socket (only when session.wants_input()), until session.poll_timeout();
//!     session.handle_input(bytes) or session.handle_timeout(now)
//! }
//! ```
//!
//! Extensions advertised by `EHLO`: PIPELINING (RFC 2920), SIZE (RFC 1870), 8BITMIME
//! (RFC 6152), SMTPUTF8 (RFC 6531), ENHANCEDSTATUSCODES (RFC 2034, RFC 3463), CHUNKING
//! (RFC 3030), STARTTLS (RFC 3207) when [`Options::starttls_available`] and TLS is not
//! active yet, and AUTH (RFC 4954) with [`Options::auth_mechanisms`] once TLS is active.
//!
//! # Policies
//!
//! Where the RFCs leave a choice, this is what a production MX does here:
//!
//! - **Pipelining.** Commands of one read are handled in order and their replies queued in
//!   order. While an event waits for a decision no further command is read; it resumes
//!   after [`Session::handle_decision`]. Once [`Limits::reply_bytes_max`] of replies are
//!   queued, no further command runs until the driver has taken them
//!   ([`Session::is_ready`]): a client that never reads holds no more than that.
//! - **End of data** is only `<CRLF>.<CRLF>` (RFC 5321 §4.1.1.4), with dot-unstuffing.
//!   A bare CR or bare LF never starts a line, so `\n.\n`, `\r.\r`, `\n.\r\n` and
//!   `\r\n.\r` stay inside the message (SMTP smuggling, 2023).
//! - **Text lines in a message** have no length limit of their own (RFC 5321 §4.5.3.1.6
//!   sets 1000 octets, but servers should accept longer ones); the message size bounds them.
//! - **Bare CR or LF in a message** (DATA or BDAT): the whole message is read to its real
//!   end and refused with `550 5.6.0`; nothing of it reaches the driver. RFC 5321 §2.3.8
//!   forbids them, and refusing (as Postfix 3.9 does by default) is safer than guessing
//!   what a later hop would make of them.
//! - **Command lines** must end with CRLF. A line ending in a bare LF gets
//!   `500 5.5.2 Line must end with CRLF` and is not run. A line longer than
//!   [`Limits::line_bytes_max`] gets `500 5.5.6` and is skipped without being buffered.
//!   Arguments that are not UTF-8 or hold control characters get `501 5.5.4`; an unknown
//!   or binary verb gets `500 5.5.2`.
//! - **Addresses** must be in angle brackets (`MAIL FROM:<a@b>`; one space after the colon
//!   is tolerated). The null sender `<>` is allowed on `MAIL` only. `RCPT TO:<Postmaster>`
//!   gives the address `postmaster` (RFC 5321 §4.1.1.3). A source route
//!   (`<@a,@b:user@c>`) is checked and dropped, keeping `user@c` (RFC 5321 §4.1.1.3,
//!   Appendix C), so it can never cause relaying. `%` and `!` in local parts are not
//!   interpreted: they are part of the local part, for the driver to refuse as unknown.
//!   Length limits of local parts (64) and paths (256) are not enforced, as real VERP and
//!   SRS senders exceed them; the line limit bounds them.
//! - **SMTPUTF8.** A non-ASCII address is accepted only when `MAIL` carried `SMTPUTF8`;
//!   otherwise `553 5.6.7` (RFC 6531 §3.4).
//! - **Parameters.** `MAIL` takes `SIZE`, `BODY=7BIT|8BITMIME` and `SMTPUTF8`, each at most
//!   once, and only after `EHLO`; `RCPT` takes none. Others get `555 5.5.4`.
//! - **BDAT.** A refused chunk is still read (RFC 3030 §2) so the next command is found:
//!   out of a transaction `503 5.5.1`, over the message size `552 5.3.4` (the transaction
//!   ends, later chunks get `503`). A `BDAT` without a readable size, or announcing more than
//!   [`Limits::bdat_chunk_bytes_max`], closes the session with `421`, as the next command
//!   cannot be found cheaply. `DATA` and `RCPT` after a `BDAT` chunk get `503 5.5.1`.
//! - **STARTTLS.** Bytes after the command in the same read, and bytes fed before
//!   [`Session::handle_tls_started`], are dropped (CVE-2011-0411); the client must `EHLO`
//!   again. `STARTTLS` once TLS is active gets `503 5.5.1`, without TLS `454 4.7.0`.
//! - **AUTH** is offered and accepted only over TLS (without it `538 5.7.11`, RFC 4954
//!   §6), after `EHLO`, outside a transaction, and once per session (`503 5.5.1`). PLAIN
//!   (RFC 4616) and LOGIN take an initial response or answer `334` challenges; `*` cancels
//!   (`501 5.0.0`), bad base64 or a malformed response gets `501 5.5.2`. The driver decides
//!   on the [`Credentials`] ([`Event::Auth`]); a refusal counts as an error, so
//!   [`Limits::errors_max`] bounds guessing on one connection.
//! - **VRFY** answers `252 2.5.2` and discloses nothing; **EXPN** gets `502 5.5.1`.
//! - **Enhanced codes** are on every 2xx, 4xx and 5xx reply except the greeting and the
//!   success replies to `EHLO`/`HELO` (RFC 2034 §3); `354` has none.
//! - **Errors and closing.** Every 4xx/5xx reply counts as an error, the driver's
//!   rejections included, except `452 4.5.3` for extra recipients. At
//!   [`Limits::errors_max`] errors, after [`Limits::commands_max`] commands, or on a
//!   timeout, the session queues `421` (`4.7.0`, `4.7.0`, `4.4.2`) and raises
//!   [`Event::Close`]. A driver rejection with code `421` closes the session too.
//! - **Timeouts** run from the last bytes received or decision given; none runs while the
//!   driver owes a decision or a handshake, except the session timeout.
//!
//! Memory is bounded: an unfinished command line is shorter than the line limit, message
//! bytes over the size limit are dropped as they come, queued replies stop commands at
//! [`Limits::reply_bytes_max`], and the driver reads only when [`Session::wants_input`].

mod address;
mod data;
pub mod fuzzing;
pub mod header;
mod limits;
mod session;
#[cfg(test)]
mod tests;

pub use limits::Limits;
pub use session::{Body, CloseReason, Credentials, Decision, Event, MailParams, Mechanism, Options, Reply, Session};

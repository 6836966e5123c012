//! The seam between the SMTP driver and what a server does with mail: the driver reads,
//! feeds the sans-IO session, asks the [`Pipeline`] about each of the session's events,
//! and writes the answers. The MX ([`crate::Inbound`]) is one pipeline; submission is the
//! next.
//!
//! A pipeline keeps what it must know of one connection (the client's name, the accepted
//! recipients, who authenticated) in its [`Pipeline::Session`], made per connection.

use std::future::Future;
use std::net::SocketAddr;

use hameau_smtp_session::{Credentials, Decision, MailParams, Mechanism, Reply};

/// What a server does with the events of its SMTP sessions. Each answer is the reply the
/// client gets: [`Decision::Accept`] for the session's own success reply, or a refusal.
pub trait Pipeline: Send + Sync + 'static {
    /// The pipeline's state for one connection.
    type Session: Send;

    /// The SASL mechanisms `AUTH` offers (over TLS only); none: `AUTH` is neither
    /// advertised nor accepted.
    fn auth_mechanisms(&self) -> &[Mechanism] {
        &[]
    }

    /// The state of a new connection from `peer`.
    fn session(&self, peer: SocketAddr) -> Self::Session;

    /// `EHLO` or `HELO`: the client's name for itself.
    fn helo(&self, session: &mut Self::Session, host: &str) -> impl Future<Output = Decision> + Send;

    /// `MAIL FROM`, which starts a transaction; `address` is empty for the null sender.
    fn mail_from(
        &self,
        session: &mut Self::Session,
        address: &str,
        params: &MailParams,
    ) -> impl Future<Output = Decision> + Send;

    /// `RCPT TO`; `address` is `postmaster` for `<Postmaster>`.
    fn rcpt_to(&self, session: &mut Self::Session, address: &str) -> impl Future<Output = Decision> + Send;

    /// A whole message with its envelope. The reply is what the log says; a success is
    /// given to the client as the session's `250`, and only once the message is durable.
    fn message(&self, session: &mut Self::Session, message: Message<'_>) -> impl Future<Output = Reply> + Send;

    /// `AUTH` with decoded credentials (only when [`Pipeline::auth_mechanisms`] offers some).
    fn auth(&self, session: &mut Self::Session, credentials: Credentials) -> impl Future<Output = Decision> + Send;
}

/// A message at the end of `DATA` (or the last `BDAT` chunk), with what the driver knows.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: &'a str,
    /// The recipients the pipeline accepted, in order.
    pub recipients: &'a [String],
    pub params: &'a MailParams,
    /// The message, dot-unstuffed.
    pub data: &'a [u8],
    /// Whether the session runs over TLS.
    pub tls: bool,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// The message's id (the session's and its number in it), for `Received` and the logs.
    pub id: &'a str,
}

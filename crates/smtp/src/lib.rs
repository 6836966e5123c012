//! Hameau's SMTP (RFC 5321). The socket driver ([`server`]) runs the sans-IO session and
//! asks a [`Pipeline`] about each of its events. The MX's pipeline ([`inbound`]) decides
//! which recipients are accepted, how a message is authenticated (SPF RFC 7208, DKIM
//! RFC 6376, ARC RFC 8617, DMARC RFC 7489, with mail-auth), which headers are added
//! (`Received`, `Authentication-Results` RFC 8601), and delivers it durably into the mail
//! model. Submission ([`submission`], with the [`brakes`] of a hijacked account) queues
//! what agents send; the delivery [`worker`] takes it from the queue and delivers it
//! locally or through [`outbound`], with TLS as the receiver's [`mta_sts`] policy or
//! [`dane`] records require, and reports what it saw in [`tls_rpt`].

pub mod brakes;
pub mod dane;
pub mod dns;
pub mod dnsbl;
pub mod filtering;
pub mod inbound;
pub mod mta_sts;
mod options;
pub mod outbound;
pub mod pipeline;
pub mod server;
mod signing;
pub mod submission;
pub mod tls_rpt;
pub mod vacation;
pub mod worker;

pub use hameau_smtp_session::Reply;
pub use inbound::{Envelope, Inbound, InboundOptions, MxSession, RcptVerdict};
pub use options::Options;
pub use outbound::{Delivery, OutboundOptions, Outgoing, TlsContext, deliver};
pub use pipeline::{Message, Pipeline};
pub use submission::{Refused, RefusedKind, Submission, SubmissionOptions, SubmissionSession, Submitted};

#[cfg(test)]
mod tests;

//! Hameau's SMTP (RFC 5321). Today: the inbound pipeline of the MX ([`inbound`]): which
//! recipients are accepted, how a message is authenticated (SPF RFC 7208, DKIM RFC 6376,
//! ARC RFC 8617, DMARC RFC 7489, with mail-auth), which headers are added
//! (`Received`, `Authentication-Results` RFC 8601), and its durable delivery into the
//! mail model. The socket driver on top of the sans-IO session comes next.

pub mod dns;
pub mod inbound;
mod options;
pub mod server;

pub use inbound::{Envelope, Inbound, InboundOptions, RcptVerdict, Reply};
pub use options::Options;

#[cfg(test)]
mod tests;

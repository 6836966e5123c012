//! JMAP (RFC 8620, the core; RFC 8621, mail) for Hameau: the first layer, the protocol's
//! core, JSON in and JSON out (issue 15).
//!
//! What is here:
//! - [`Request::parse`]: the body of a POST to the API endpoint read as a JMAP request
//!   (RFC 8620 §3.3), every size the client controls bounded by [`Limits`] (the session
//!   object's `maxSizeRequest`, `maxCallsInRequest`, …), and each failure as the RFC's
//!   request-level error ([`RequestError`], a problem details document, §3.6.1);
//! - [`resolve_references`]: an argument taken from the result of an earlier call of the
//!   same request (`"#ids": {"resultOf": …, "name": …, "path": …}`, §3.7), with the JSON
//!   Pointer `*` extension, evaluated without recursion;
//! - [`apply_patch`]: a `PatchObject` of `/set` (§5.3) applied to an object;
//! - [`MethodError`] and [`SetError`]: the method-level errors (§3.6.2, §5.3) as the
//!   responses write them.
//!
//! - [`filter`]: a `/query` filter flattened and evaluated without recursion.
//!
//! With the feature `mail` (on by default; the fuzz targets build without it):
//! - [`api`]: the session object of a user and the running of a request's calls in order;
//! - [`mail`]: the methods over the mail model (mailboxes, emails, identities, submissions,
//!   vacation response, quotas, push subscriptions) and the blobs of an account. Upload,
//!   download and the event stream are the HTTP layer's (`crates/http`), on these.
//!
//! A request that names a method this server does not have gets `unknownMethod`, as the
//! RFC says.

#[cfg(feature = "mail")]
pub mod api;
mod error;
pub mod filter;
#[cfg(feature = "mail")]
pub mod mail;
mod options;
mod patch;
mod reference;
mod request;

pub use error::{MethodError, RequestError, SetError};
pub use options::Limits;
pub use patch::apply_patch;
pub use reference::{evaluate_pointer, resolve_references};
pub use request::{Invocation, Request, Response};

/// The capability of the core (RFC 8620 §2): every request uses it.
pub const CORE_CAPABILITY: &str = "urn:ietf:params:jmap:core";

#[cfg(test)]
mod tests;

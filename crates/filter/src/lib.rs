//! Phishing and spam defence for the MX (issue 14; docs/filter.md): each check on a
//! message adds a named [`Symbol`] with a score, and the total decides the [`Action`]
//! under a tenant's [`Thresholds`]: deliver, deliver with a warning, Junk, quarantine or
//! reject at DATA.
//!
//! The crate opens no socket. What needs the network (DNS blocklists) is asked by the MX
//! and handed in; what needs the store (the classifier's counts, the correspondents, the
//! quarantine) goes through the store's interface only.
//!
//! - `rules`: the checks on a raw message and its [`Context`] (impersonation of the
//!   tenant's people, lookalike domains, dangerous attachments, links), within [`Limits`].
//! - `banner`: the warning shown to the agent (a banner at the top of the visible body,
//!   a subject tag), without breaking the message's structure.
//! - `bayes`: the learning classifier's math on one message's tokens.
//! - `learning`: the classifiers' counts in the store, per tenant and shared
//!   ([`learning::Classifier`]), and `trainer`: the learner the mail model tells of the
//!   agents' judgements ([`trainer::Trainer`]: into Junk, spam; out of Junk, ham).
//! - [`quarantine`]: held messages, their listing, release and expiry.
//! - [`settings`]: a tenant's own thresholds and warning, over the `[filter]` defaults.

mod banner;
pub mod bayes;
#[cfg(feature = "store")]
pub mod contacts;
#[cfg(feature = "store")]
mod error;
#[cfg(feature = "store")]
pub mod forget;
#[cfg(feature = "store")]
pub mod learning;
mod options;
#[cfg(feature = "store")]
pub mod quarantine;
mod rules;
mod search;
#[cfg(feature = "store")]
pub mod settings;
#[cfg(feature = "store")]
pub mod trainer;
mod verdict;

pub use banner::{explain, warn};
#[cfg(feature = "store")]
pub use contacts::Contacts;
#[cfg(feature = "store")]
pub use error::Error;
#[cfg(feature = "store")]
pub use forget::{Forgotten, forget_tenant};
pub use options::{Limits, Options, Thresholds, WarningStyle};
#[cfg(feature = "store")]
pub use quarantine::{Held, Quarantine};
pub use rules::{Analysis, Context, Person, analyse, analyse_parsed, symbol};
#[cfg(feature = "store")]
pub use settings::{Settings, TenantSettings};
pub use verdict::{Action, Symbol, Verdict};

/// The fuzz target's entry (`fuzz/fuzz_targets/filter_rules.rs`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::rules::fuzz_rules;
}

#[cfg(test)]
mod tests;

/// `raw` parsed once for the rules ([`analyse_parsed`]) and the classifier
/// ([`bayes::tokens_parsed`]); `None` when mail-parser cannot read it.
///
/// The parse boundary, as `hameau_message::parse`'s: mail-parser documents that it never
/// panics and has been found to (issue 10); a panic is a message it cannot read.
pub fn parse(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    std::panic::catch_unwind(|| mail_parser::MessageParser::default().parse(raw)).ok().flatten()
}

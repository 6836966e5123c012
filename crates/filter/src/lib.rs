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
//! - `bayes`: the learning classifier, per tenant and shared.
//! - `quarantine`: held messages, their listing, release and expiry.

mod options;
mod rules;
mod verdict;

pub use options::{Limits, Options, Thresholds, WarningStyle};
pub use rules::{Analysis, Context, Person, analyse, symbol};
pub use verdict::{Action, Symbol, Verdict};

/// The fuzz target's entry (`fuzz/fuzz_targets/filter_rules.rs`); not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::rules::fuzz_rules;
}

#[cfg(test)]
mod tests;

//! Symbols, their total, and the action the total decides.

use std::fmt::Write as _;

use crate::Thresholds;

/// One check's finding: a name in capitals (`IMPERSONATION_NAME`), its score, and a short
/// reason in English for the log (the agent's French text is `banner`'s).
#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    pub name: &'static str,
    pub score: f64,
    /// What was found, e.g. `"display name \"Le Maire\" is mairie@example.fr's"`; no
    /// line breaks (it goes into a header).
    pub detail: String,
}

/// What the total score decides, from the mildest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deliver,
    /// Delivered with a banner and a subject tag.
    Warn,
    /// Delivered into the Junk mailbox.
    Junk,
    /// Held, not in the user's mailbox, until an administrator releases it or it expires.
    Quarantine,
    /// Refused at DATA, `550 5.7.1` with the reason.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Warn => "warn",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
        }
    }
}

/// The filter's answer on one message for one tenant.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub symbols: Vec<Symbol>,
    pub action: Action,
}

impl Verdict {
    /// The action `thresholds` give `symbols`' total, and never milder than `at_least`
    /// (a rule that holds whatever the score: a dangerous attachment quarantines).
    pub fn decide(symbols: Vec<Symbol>, thresholds: &Thresholds, at_least: Action) -> Verdict {
        let action = thresholds.action(total(&symbols)).max(at_least);
        Verdict { symbols, action }
    }

    pub fn score(&self) -> f64 {
        total(&self.symbols)
    }

    /// The value of the `X-Hameau-Filter` header: the action, the score, then each symbol
    /// with its score, e.g. `action=warn; score=6.50; IMPERSONATION_NAME(6.00), FIRST_CONTACT(0.50)`.
    pub fn header_value(&self) -> String {
        let mut value = format!("action={}; score={:.2}", self.action.as_str(), self.score());
        for (index, symbol) in self.symbols.iter().enumerate() {
            let separator = if index == 0 { "; " } else { ", " };
            let _ = write!(value, "{separator}{}({:.2})", symbol.name, symbol.score);
        }
        value
    }

    /// Whether anything counts against the message: a symbol of positive score, or an
    /// action other than delivery (the classifier's `BAYES_HAM` alone is no finding).
    pub fn has_findings(&self) -> bool {
        self.action != Action::Deliver || self.symbols.iter().any(|symbol| symbol.score > 0.0)
    }

    /// The findings' details on one line, for the log and the quarantine's administrators.
    /// They quote what the message holds and name the tenant's people: never for the sender.
    pub fn reason(&self) -> String {
        let reasons: Vec<String> = self.symbols.iter().filter(|s| s.score > 0.0).map(|s| s.detail.clone()).collect();
        reasons.join("; ")
    }

    /// The names of the findings against the message, for the `550` reply to the sender:
    /// our own constants only (the details quote the message, which may hold control
    /// characters a reply must not, and name the tenant's people, which the sender must not
    /// learn).
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.symbols.iter().filter(|s| s.score > 0.0).map(|s| s.name).collect();
        names.join(", ")
    }
}

fn total(symbols: &[Symbol]) -> f64 {
    // A fold from 0.0, not `sum` (which starts from -0.0 and prints `-0.00` for none).
    symbols.iter().fold(0.0, |total, symbol| total + symbol.score)
}

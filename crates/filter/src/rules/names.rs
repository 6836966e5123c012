//! Impersonation of the tenant's people by display name (IMPERSONATION_NAME).
//!
//! A display name and a person's name are compared folded: Unicode decomposition with the
//! combining marks dropped (É → e), lower case, every non-letter a word break
//! ("Jean-Pierre" is "jean pierre"), French articles and titles dropped ("le", "la", "M.",
//! "Mme", "Monsieur"…), the words sorted (word order does not count). A person is known
//! by the words of their display name and by those of their address's local part
//! ("maire@" makes "Le Maire" theirs).
//!
//! The rule against false positives: a key of one word matches only the whole display name
//! (after dropping the words of the tenant's own domains: "Mairie de Saint-Martin" is
//! "mairie"), is at least [`SINGLE_WORD_LETTERS_MIN`] letters long, is not a generic role
//! ([`GENERIC_WORDS`]: "Info", "Contact", "Support"…), and is not matched when the sender's
//! domain is one the tenant corresponded with (another commune's "Mairie" writing as
//! usual); a key of two words or more (a person's full name) matches when all its words
//! are in the display name ("Jean-Pierre Dupont via Docs").

use std::collections::BTreeSet;

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use super::{Context, Findings, domain_of, symbol};

/// 5: "maire" and "mairie" count, "elu", "dg", "rh" would match too much.
pub const SINGLE_WORD_LETTERS_MIN: usize = 5;

/// Role words many organisations use as display names or local parts: alone, they say
/// nothing about who writes.
pub const GENERIC_WORDS: &[&str] = &[
    "accueil",
    "admin",
    "administration",
    "bonjour",
    "communication",
    "comptabilite",
    "contact",
    "contacts",
    "direction",
    "equipe",
    "facturation",
    "hello",
    "infos",
    "information",
    "informations",
    "mailer",
    "newsletter",
    "noreply",
    "notification",
    "notifications",
    "postmaster",
    "reply",
    "secretariat",
    "service",
    "services",
    "support",
    "webmaster",
];

/// Words dropped before comparing: French articles, prepositions and titles, and their
/// English equivalents.
const DROPPED_WORDS: &[&str] = &[
    "l",
    "le",
    "la",
    "les",
    "de",
    "du",
    "des",
    "d",
    "et",
    "a",
    "au",
    "aux",
    "m",
    "mr",
    "mme",
    "mlle",
    "mrs",
    "ms",
    "dr",
    "monsieur",
    "madame",
    "mademoiselle",
    "pr",
    "the",
    "of",
    "and",
];

/// Display names longer than this are not compared (no real name is; the work stays small).
const NAME_CHARS_MAX: usize = 256;

/// The folded, sorted, distinct words of `text`.
pub fn fold(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut word = String::new();
    for c in text.chars().take(NAME_CHARS_MAX).nfd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            take(&mut words, &mut word);
        }
    }
    take(&mut words, &mut word);
    words
}

fn take(words: &mut BTreeSet<String>, word: &mut String) {
    if !word.is_empty() && !DROPPED_WORDS.contains(&word.as_str()) {
        words.insert(std::mem::take(word));
    }
    word.clear();
}

/// IMPERSONATION_NAME when the display name `name` of a sender outside the tenant is one
/// of its people's.
pub(crate) fn check_impersonation(name: &str, from: Option<&str>, context: &Context<'_>, findings: &mut Findings) {
    let from = from.unwrap_or("");
    let from_domain = domain_of(from).unwrap_or("");
    let is_own = |domain: &str| {
        context
            .own_domains
            .iter()
            .any(|own| domain == own || domain.strip_suffix(own.as_str()).is_some_and(|p| p.ends_with('.')))
    };
    if context.people.iter().any(|person| person.address.eq_ignore_ascii_case(from)) || is_own(from_domain) {
        return;
    }
    // "mairie@saint-martin.fr <x@evil.example>": the tenant's address shown as the name.
    let lowered = name.to_lowercase();
    for token in lowered.split(|c: char| c.is_whitespace() || "<>()\"',;".contains(c)) {
        if let Some(domain) = domain_of(token)
            && (is_own(domain) || context.people.iter().any(|person| person.address.eq_ignore_ascii_case(token)))
        {
            findings.add(symbol::IMPERSONATION_NAME, || format!("display name shows {token} but the sender is {from}"));
            return;
        }
    }
    let words = fold(name);
    if words.is_empty() {
        return;
    }
    let own_words: BTreeSet<String> = context.own_domains.iter().flat_map(|domain| domain_words(domain)).collect();
    let without_own: BTreeSet<String> = words.difference(&own_words).cloned().collect();
    let sender_is_known = context.known_domains.iter().any(|known| known == from_domain);
    for person in context.people {
        let local = person.address.rsplit_once('@').map_or(person.address.as_str(), |(local, _)| local);
        for key in [fold(&person.name), fold(local)] {
            if key.is_empty() {
                continue;
            }
            let matched = if key.len() == 1 {
                let word = key.first().map_or("", String::as_str);
                !sender_is_known
                    && word.chars().count() >= SINGLE_WORD_LETTERS_MIN
                    && !GENERIC_WORDS.contains(&word)
                    && (words == key || without_own == key)
            } else {
                key.is_subset(&words)
            };
            if matched {
                findings.add(symbol::IMPERSONATION_NAME, || {
                    format!("display name \"{name}\" is {}'s but the sender is {from}", person.address)
                });
                return;
            }
        }
    }
}

/// The words of a domain's labels but its last (`saint-martin.fr` gives saint, martin).
fn domain_words(domain: &str) -> BTreeSet<String> {
    let without_tld = domain.rsplit_once('.').map_or(domain, |(rest, _)| rest);
    fold(without_tld)
}

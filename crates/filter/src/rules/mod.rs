//! The checks on one raw message and its recipient's tenant (issue 14, scope 2, 3, 6, 7):
//! impersonation of the tenant's people (`names`), lookalike domains (`domains`), links
//! (`links`) and dangerous attachments (`attachments`, with a bounded zip reader).
//!
//! One parse by mail-parser, whose flat list of parts is walked in order (nested
//! `message/rfc822` parts through a work list, never by recursion), within [`Limits`]:
//! what a limit cut is not looked at and says so with `FILTER_LIMIT`, never a failure.
//! Each symbol is given at most once per message; its detail names the first example.

mod attachments;
mod domains;
mod links;
mod names;
#[cfg(test)]
mod tests;

use mail_parser::{Message, MimeHeaders, PartType};

use crate::{Action, Limits, Symbol};

/// What the rules know besides the message, from the recipient's tenant.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The tenant's domains, lower-case (IDNs as stored: their A-label `xn--…` or U-label; both are handled).
    pub own_domains: &'a [String],
    /// The tenant's people: accounts, aliases and shared addresses, each with its display name (may be empty) and address.
    pub people: &'a [Person],
    /// Domains the tenant corresponded with before, lower-case (may be thousands).
    pub known_domains: &'a [String],
    /// The envelope sender (`MAIL FROM`), empty for `<>`.
    pub mail_from: &'a str,
}

/// One of the tenant's people, as the rules compare names with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// The display name, e.g. "Jean-Pierre Dupont"; may be empty.
    pub name: String,
    pub address: String,
}

/// Everything the rules found in one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    pub symbols: Vec<Symbol>,
    /// The mildest action the findings allow whatever the score (Quarantine for a dangerous attachment), else Action::Deliver.
    pub at_least: Action,
    /// The From address, lower-case, if the message has one (the MX uses it for first contact).
    pub from_address: Option<String>,
    /// The From display name, as decoded (for the log).
    pub from_name: Option<String>,
    /// The distinct host names of the links (lower-case, A-labels), at most `limits.links_max`, for the DNS blocklists.
    pub link_hosts: Vec<String>,
}

/// The symbols of the rules and their default scores (the list every part of issue 14
/// agrees on).
pub mod symbol {
    pub const IMPERSONATION_NAME: (&str, f64) = ("IMPERSONATION_NAME", 6.0);
    pub const LOOKALIKE_OWN_DOMAIN: (&str, f64) = ("LOOKALIKE_OWN_DOMAIN", 9.0);
    pub const LOOKALIKE_PUBLIC_DOMAIN: (&str, f64) = ("LOOKALIKE_PUBLIC_DOMAIN", 9.0);
    pub const LOOKALIKE_KNOWN_DOMAIN: (&str, f64) = ("LOOKALIKE_KNOWN_DOMAIN", 7.0);
    pub const LINK_LOOKALIKE: (&str, f64) = ("LINK_LOOKALIKE", 6.0);
    pub const LINK_TEXT_MISMATCH: (&str, f64) = ("LINK_TEXT_MISMATCH", 3.0);
    pub const LINK_SHORTENER: (&str, f64) = ("LINK_SHORTENER", 1.0);
    pub const LINK_IP_LITERAL: (&str, f64) = ("LINK_IP_LITERAL", 3.0);
    pub const ATTACHMENT_DANGEROUS: (&str, f64) = ("ATTACHMENT_DANGEROUS", 10.0);
    pub const ATTACHMENT_MACRO: (&str, f64) = ("ATTACHMENT_MACRO", 10.0);
    pub const ARCHIVE_DANGEROUS: (&str, f64) = ("ARCHIVE_DANGEROUS", 10.0);
    pub const ARCHIVE_ENCRYPTED: (&str, f64) = ("ARCHIVE_ENCRYPTED", 4.0);
    pub const FILTER_LIMIT: (&str, f64) = ("FILTER_LIMIT", 0.5);
}

/// The rules' findings as they are made: each symbol once, the first detail kept.
pub(crate) struct Findings {
    symbols: Vec<Symbol>,
    at_least: Action,
}

impl Findings {
    fn new() -> Findings {
        Findings { symbols: Vec::new(), at_least: Action::Deliver }
    }

    pub(crate) fn add(&mut self, (name, score): (&'static str, f64), detail: impl FnOnce() -> String) {
        if self.symbols.iter().any(|symbol| symbol.name == name) {
            return;
        }
        // The detail goes into a header: one line, bounded.
        let detail: String = detail().chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
        self.symbols.push(Symbol { name, score, detail });
    }

    /// A finding that holds whatever the score (a dangerous attachment is quarantined).
    pub(crate) fn require(&mut self, action: Action) {
        self.at_least = self.at_least.max(action);
    }

    pub(crate) fn limit(&mut self, key: &str) {
        self.add(symbol::FILTER_LIMIT, || format!("filter.{key} reached, the rest was not looked at"));
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.symbols.iter().any(|symbol| symbol.name == name)
    }
}

/// Every check on `raw` for the tenant of `context`, within `limits`. Never fails: a
/// message mail-parser cannot read gets no symbol but what its headers allow.
pub fn analyse(raw: &[u8], context: &Context<'_>, limits: &Limits) -> Analysis {
    analyse_parsed(crate::parse(raw).as_ref(), context, limits)
}

/// [`analyse`] of a message parsed by [`crate::parse`] (`None`: it could not be), for a
/// caller that also tokenizes it for the classifier: one parse for both.
pub fn analyse_parsed(parsed: Option<&Message<'_>>, context: &Context<'_>, limits: &Limits) -> Analysis {
    let mut findings = Findings::new();
    let references = domains::References::new(context);
    let Some(message) = parsed else {
        return Analysis {
            symbols: findings.symbols,
            at_least: findings.at_least,
            from_address: None,
            from_name: None,
            link_hosts: Vec::new(),
        };
    };
    let from = message.from().and_then(|from| from.first());
    let from_address = from.and_then(|addr| addr.address.as_deref()).map(str::to_lowercase);
    let from_name = from.and_then(|addr| addr.name.as_deref()).map(str::to_owned);

    let from_domain = from_address.as_deref().and_then(domain_of);
    if let Some(name) = from_name.as_deref() {
        names::check_impersonation(name, from_address.as_deref(), context, &mut findings);
    }
    let envelope_domain = domain_of(context.mail_from);
    let mut sender_domains: Vec<&str> = from_domain.into_iter().collect();
    if let Some(envelope) = envelope_domain
        && !sender_domains.contains(&envelope)
    {
        sender_domains.push(envelope);
    }
    let mut lookalikes = domains::Lookalikes::new(&references);
    for domain in sender_domains {
        if let Some(found) = lookalikes.check(domain, true) {
            findings.add(found.symbol(), || format!("sender domain {domain} looks like {}", found.reference));
        }
    }

    let mut scan = links::Scan::new(limits);
    let mut archive = attachments::Budget::new(limits);
    walk(message, limits, &mut findings, &mut scan, &mut archive);
    scan.judge(&mut lookalikes, &mut findings);
    Analysis {
        symbols: findings.symbols,
        at_least: findings.at_least,
        from_address,
        from_name,
        link_hosts: scan.into_hosts(),
    }
}

/// The parts of `message` and of the messages attached to it, at most `parts_max` in
/// all, through a work list (mail-parser keeps each message's parts flat; a nested
/// `message/rfc822` is one part holding its own list).
fn walk<'m>(
    message: &'m Message<'m>,
    limits: &Limits,
    findings: &mut Findings,
    scan: &mut links::Scan,
    archive: &mut attachments::Budget,
) {
    let mut pending: Vec<&'m Message<'m>> = vec![message];
    let mut n_parts = 0usize;
    while let Some(message) = pending.pop() {
        for part in &message.parts {
            if n_parts >= limits.parts_max {
                findings.limit("parts_max");
                return;
            }
            n_parts += 1;
            let name = part.attachment_name().map(str::to_owned).or_else(|| {
                let header = message.raw_message.get(part.offset_header as usize..part.offset_body as usize)?;
                attachments::raw_name(header)
            });
            match &part.body {
                PartType::Text(text) => {
                    if let Some(name) = name.as_deref() {
                        attachments::check(name, text.as_bytes(), archive, findings);
                    } else {
                        scan.plain(text, findings);
                    }
                }
                PartType::Html(html) => {
                    if let Some(name) = name.as_deref() {
                        attachments::check(name, html.as_bytes(), archive, findings);
                    }
                    scan.html(html, findings);
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    attachments::check(name.as_deref().unwrap_or(""), bytes, archive, findings);
                }
                PartType::Message(nested) => {
                    if let Some(name) = name.as_deref() {
                        attachments::check_name(name, findings);
                    }
                    pending.push(nested);
                }
                PartType::Multipart(_) => {}
            }
        }
    }
}

/// The part after the last `@`, lower-cased by the caller; `None` for no domain.
fn domain_of(address: &str) -> Option<&str> {
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.').trim_end_matches('>');
    (!domain.is_empty()).then_some(domain)
}

/// The rules on `bytes` as a message for the test tenant, with small limits, and the
/// invariants every answer keeps: each symbol once, at most `links_max` link hosts,
/// Quarantine exactly when a dangerous attachment was found.
pub fn fuzz_rules(bytes: &[u8]) {
    let own_domains = ["saint-martin.fr".to_owned(), "xn--saint-mrtin-9dh.fr".to_owned()];
    let people = [
        Person { name: "Mairie".into(), address: "mairie@saint-martin.fr".into() },
        Person { name: "Jean-Pierre Dupont".into(), address: "maire@saint-martin.fr".into() },
    ];
    let known_domains = ["fournisseur-bureau.fr".to_owned(), "cdg35.fr".to_owned()];
    let context =
        Context { own_domains: &own_domains, people: &people, known_domains: &known_domains, mail_from: "x@cdg53.fr" };
    let limits = Limits {
        parts_max: 32,
        links_max: 16,
        text_bytes_max: 16 << 10,
        zip_entries_max: 32,
        zip_depth_max: 2,
        zip_inflated_bytes_max: 1 << 20,
        ..Limits::default()
    };
    let analysis = analyse(bytes, &context, &limits);
    assert!(analysis.link_hosts.len() <= limits.links_max);
    let mut names: Vec<&str> = analysis.symbols.iter().map(|symbol| symbol.name).collect();
    names.sort_unstable();
    let n_symbols = names.len();
    names.dedup();
    assert_eq!(names.len(), n_symbols, "a symbol given twice");
    let dangerous = [symbol::ATTACHMENT_DANGEROUS.0, symbol::ATTACHMENT_MACRO.0, symbol::ARCHIVE_DANGEROUS.0];
    let held = names.iter().any(|name| dangerous.contains(name));
    assert_eq!(analysis.at_least == Action::Quarantine, held);
    assert!(analysis.symbols.iter().all(|symbol| !symbol.detail.contains(['\r', '\n'])));
}

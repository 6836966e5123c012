//! Lookalike domains (LOOKALIKE_OWN_DOMAIN, LOOKALIKE_PUBLIC_DOMAIN,
//! LOOKALIKE_KNOWN_DOMAIN, and LINK_LOOKALIKE for a link's host).
//!
//! A domain is compared with the references (the tenant's own domains, the shipped
//! French public-sector list, the domains the tenant corresponded with, in that order of
//! precedence) only if it is none of them and under none of them. It is a lookalike of a
//! reference when, on registrable domains (the last two labels, three under a
//! second-level suffix such as `gouv.fr`, [`SECOND_LEVEL`]; an approximation of the
//! public suffix list, enough for the names compared here):
//! - their Unicode TR39 confusable skeletons are the same (`xn--` labels decoded first):
//!   `saint-mаrtin.fr` with a Cyrillic а, `saint-rnartin.fr`;
//! - with the hyphens and dots but the last removed, they are the same name, at least
//!   [`LABEL_LETTERS_MIN`] letters long: `impots-gouv.fr` is `impots.gouv.fr`,
//!   `saintmartin.fr` and `saint-martin.com` are `saint-martin.fr`;
//! - under the same suffix, their first labels are one edit apart (insertion, deletion,
//!   substitution, transposition of neighbours), the reference's at least
//!   [`LABEL_LETTERS_MIN`] letters long: `fournisseur-burreau.fr`;
//! - a public-sector lookalike also: a `gouv` word in a domain outside `gouv.fr`
//!   (`gouv-fr.com`, `ille-et-vilaine-gouv.fr`).
//!
//! Shorter names are compared by skeleton only: one edit from `caf.fr` is too many real
//! domains. The known domains may be thousands: the names are looked up in hash sets,
//! the skeletons of the references computed once per message and only when a name is
//! compared, and the one-edit scan skips every reference of another length.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use unicode_security::confusable_detection::skeleton;

use super::{Context, symbol};

/// 5 letters: below, one edit or another TLD of a name is too often a real other domain.
pub const LABEL_LETTERS_MIN: usize = 5;

/// The large mailbox providers, each under several TLDs of its own (`yahoo.fr`,
/// `yahoo.com`): a known domain's other TLD is not a lookalike for these names.
pub const MAIL_PROVIDERS: &[&str] = &[
    "gmail",
    "googlemail",
    "yahoo",
    "outlook",
    "hotmail",
    "live",
    "orange",
    "wanadoo",
    "icloud",
    "proton",
    "protonmail",
];

/// Second-level suffixes under which names are registered (the registrable domain has
/// three labels there).
pub const SECOND_LEVEL: &[&str] = &[
    "gouv.fr",
    "asso.fr",
    "com.fr",
    "nom.fr",
    "presse.fr",
    "tm.fr",
    "co.uk",
    "org.uk",
    "ac.uk",
    "gov.uk",
    "com.au",
    "co.nz",
    "co.za",
    "co.jp",
    "com.br",
    "com.cn",
    "com.tr",
];

/// French public-sector domains, one a line (`data/public-domains.txt`).
pub const PUBLIC_DOMAINS: &str = include_str!("../../data/public-domains.txt");

/// Which references a lookalike imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Own,
    Public,
    Known,
}

/// A lookalike: the kind of the reference and the reference.
#[derive(Clone, Debug)]
pub struct Found {
    pub kind: Kind,
    pub reference: String,
}

impl Found {
    /// The sender's symbol for this kind.
    pub fn symbol(&self) -> (&'static str, f64) {
        match self.kind {
            Kind::Own => symbol::LOOKALIKE_OWN_DOMAIN,
            Kind::Public => symbol::LOOKALIKE_PUBLIC_DOMAIN,
            Kind::Known => symbol::LOOKALIKE_KNOWN_DOMAIN,
        }
    }
}

/// The references of one message's tenant, in Unicode form (U-labels).
pub struct References<'a> {
    list: Vec<(Kind, Cow<'a, str>)>,
    exact: HashSet<Cow<'a, str>>,
}

impl<'a> References<'a> {
    pub fn new(context: &Context<'a>) -> References<'a> {
        let public = PUBLIC_DOMAINS.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'));
        let mut list = Vec::with_capacity(context.own_domains.len() + context.known_domains.len() + 64);
        list.extend(context.own_domains.iter().map(|domain| (Kind::Own, unicode(domain))));
        list.extend(public.map(|domain| (Kind::Public, Cow::Borrowed(domain))));
        list.extend(context.known_domains.iter().map(|domain| (Kind::Known, unicode(domain))));
        let exact = list.iter().map(|(_, domain)| domain.clone()).collect();
        References { list, exact }
    }

    /// `domain` is a reference or under one.
    pub fn covers(&self, domain: &str) -> bool {
        let mut rest = domain;
        loop {
            if self.exact.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return false,
            }
        }
    }
}

/// The comparisons of one message, with what they need computed once.
pub struct Lookalikes<'r, 'a> {
    references: &'r References<'a>,
    /// Registrable skeleton → reference index, and squashed name → reference index, built
    /// at the first comparison.
    indexes: Option<(HashMap<String, usize>, HashMap<String, usize>)>,
    seen: HashMap<String, Option<Found>>,
}

impl<'r, 'a> Lookalikes<'r, 'a> {
    pub fn new(references: &'r References<'a>) -> Self {
        Lookalikes { references, indexes: None, seen: HashMap::new() }
    }

    /// The reference `domain` imitates, if any (case and a final dot ignored; A-labels
    /// decoded).
    pub fn check(&mut self, domain: &str) -> Option<Found> {
        let domain = unicode(domain.trim_end_matches('.'));
        if domain.is_empty() || !domain.contains('.') {
            return None;
        }
        if let Some(found) = self.seen.get(domain.as_ref()) {
            return found.clone();
        }
        let found = if self.references.covers(&domain) { None } else { self.compare(&domain) };
        self.seen.insert(domain.into_owned(), found.clone());
        found
    }

    fn compare(&mut self, domain: &str) -> Option<Found> {
        let references = self.references;
        let (skeletons, squashed) = self.indexes.get_or_insert_with(|| index(references));
        let registrable = registrable(domain);
        let found = |index: usize| {
            let (kind, reference) = &references.list[index];
            Some(Found { kind: *kind, reference: reference.to_string() })
        };
        let mut best: Option<usize> = None;
        // The references are in order of precedence: the lowest index wins.
        let mut consider = |index: usize| best = Some(best.map_or(index, |b| b.min(index)));
        if let Some(&index) = skeletons.get(&skeleton(registrable).collect::<String>()) {
            consider(index);
        }
        let name = squash(registrable);
        if name.chars().count() >= LABEL_LETTERS_MIN
            && let Some(&index) = squashed.get(&name)
            && !(references.list[index].0 == Kind::Known && MAIL_PROVIDERS.contains(&name.as_str()))
        {
            consider(index);
        }
        if best.is_none() {
            best = one_edit(references, registrable);
        }
        if let Some(index) = best {
            return found(index);
        }
        let without_tld = registrable.rsplit_once('.').map_or(registrable, |(rest, _)| rest);
        if without_tld.split(['-', '.']).any(|word| word == "gouv" || word == "gouvfr") {
            return Some(Found { kind: Kind::Public, reference: "gouv.fr".into() });
        }
        None
    }
}

/// The skeleton and squashed-name indexes of the references (the first of a key wins:
/// own domains before public ones before known ones).
fn index(references: &References<'_>) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut skeletons = HashMap::with_capacity(references.list.len());
    let mut squashed = HashMap::with_capacity(references.list.len());
    for (index, (_, reference)) in references.list.iter().enumerate() {
        let registrable = registrable(reference);
        skeletons.entry(skeleton(registrable).collect()).or_insert(index);
        let name = squash(reference);
        if name.chars().count() >= LABEL_LETTERS_MIN {
            squashed.entry(name).or_insert(index);
        }
    }
    (skeletons, squashed)
}

/// The first reference whose first registrable label is one edit from `registrable`'s,
/// under the same suffix.
fn one_edit(references: &References<'_>, domain: &str) -> Option<usize> {
    let (label, suffix) = domain.split_once('.')?;
    let label_chars = label.chars().count();
    for (index, (_, reference)) in references.list.iter().enumerate() {
        let Some((reference_label, reference_suffix)) = registrable(reference).split_once('.') else { continue };
        if reference_suffix != suffix {
            continue;
        }
        let reference_chars = reference_label.chars().count();
        if reference_chars < LABEL_LETTERS_MIN || reference_chars.abs_diff(label_chars) > 1 {
            continue;
        }
        if label != reference_label && within_one_edit(label, reference_label) {
            return Some(index);
        }
    }
    None
}

/// The registrable domain: the last two labels, three under a [`SECOND_LEVEL`] suffix.
pub fn registrable(domain: &str) -> &str {
    let mut dots = domain.rmatch_indices('.').map(|(at, _)| at);
    let Some(_last) = dots.next() else { return domain };
    let Some(second) = dots.next() else { return domain };
    let two = &domain[second + 1..];
    if SECOND_LEVEL.contains(&two) {
        match dots.next() {
            Some(third) => &domain[third + 1..],
            None => domain,
        }
    } else {
        two
    }
}

/// The name without its last label and without hyphens and dots (`impots-gouv.fr` and
/// `impots.gouv.fr` are both `impotsgouv`).
fn squash(domain: &str) -> String {
    let without_tld = domain.rsplit_once('.').map_or(domain, |(rest, _)| rest);
    without_tld.chars().filter(|c| *c != '-' && *c != '.').collect()
}

/// Optimal string alignment distance at most 1, in one pass over both.
pub fn within_one_edit(a: &str, b: &str) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let (a_rest, b_rest) = (&a[prefix..], &b[prefix..]);
    match (a_rest.len(), b_rest.len()) {
        (0, 0) => true,
        (n, m) if n == m => {
            a_rest[1..] == b_rest[1..]
                || (n >= 2 && a_rest[0] == b_rest[1] && a_rest[1] == b_rest[0] && a_rest[2..] == b_rest[2..])
        }
        (n, m) if n == m + 1 => a_rest[1..] == *b_rest,
        (n, m) if n + 1 == m => *a_rest == b_rest[1..],
        _ => false,
    }
}

/// `domain` in lower case with its `xn--` labels decoded (an undecodable label is kept).
pub fn unicode(domain: &str) -> Cow<'_, str> {
    let lower = if domain.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(domain.to_ascii_lowercase())
    } else {
        Cow::Borrowed(domain)
    };
    if !lower.contains("xn--") {
        return if lower.chars().any(char::is_uppercase) { Cow::Owned(lower.to_lowercase()) } else { lower };
    }
    let (decoded, result) = idna::domain_to_unicode(&lower);
    if result.is_ok() { Cow::Owned(decoded) } else { lower }
}

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
//! The known domains are compared with the sender's domains and with the first
//! [`LINK_DOMAINS_WITH_KNOWN_MAX`] link domains of a message only: each comparison scans
//! them all.
//!
//! Shorter names are compared by skeleton only: one edit from `caf.fr` is too many real
//! domains. The known domains may be thousands: the names are looked up in hash sets,
//! the skeletons of the references computed once per message and only when a name is
//! compared, and the one-edit scan skips every reference of another length.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use unicode_security::confusable_detection::skeleton;

use super::{Context, symbol};

/// 1: the first link domain of a lure is most often its target (a supplier lookalike
/// usually comes as the sender domain, compared in any case),
/// and each comparison with the known domains scans them (thousands).
pub const LINK_DOMAINS_WITH_KNOWN_MAX: usize = 1;

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

/// The references of one message's tenant, in Unicode form (U-labels). The own domains
/// (a few) are listed once per message, the public ones (a few dozen) indexed once per
/// process; the known domains (maybe thousands) are not copied nor indexed: they are
/// scanned, each skipped on its length first, and looked up by binary search when the
/// caller gives them sorted.
pub struct References<'a> {
    /// Own domains, then public ones (the lowest index wins).
    small: Vec<(Kind, Cow<'a, str>)>,
    n_own: usize,
    known: &'a [String],
    known_sorted: bool,
    /// The known domains given as A-labels, decoded (rare), found at the first need.
    known_idn: std::cell::OnceCell<Vec<Cow<'a, str>>>,
}

impl<'a> References<'a> {
    pub fn new(context: &Context<'a>) -> References<'a> {
        let public = &public().list;
        let mut small = Vec::with_capacity(context.own_domains.len() + 64);
        small.extend(context.own_domains.iter().map(|domain| (Kind::Own, unicode(domain))));
        small.extend(public.iter().map(|domain| (Kind::Public, Cow::Borrowed(*domain))));
        let known = context.known_domains;
        let n_own = context.own_domains.len();
        References { small, n_own, known, known_sorted: known.is_sorted(), known_idn: std::cell::OnceCell::new() }
    }

    /// `domain` is a reference or under one.
    pub fn covers(&self, domain: &str) -> bool {
        let mut rest = domain;
        loop {
            let is_known = if self.known_sorted {
                self.known.binary_search_by(|known| known.as_str().cmp(rest)).is_ok()
            } else {
                self.known.iter().any(|known| known == rest)
            };
            let is_reference =
                public().names.contains(rest) || self.small[..self.n_own].iter().any(|(_, own)| own == rest);
            if is_known || is_reference || self.known_idn().iter().any(|idn| idn == rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return false,
            }
        }
    }

    fn known_idn(&self) -> &[Cow<'a, str>] {
        self.known_idn.get_or_init(|| {
            let known = self.known.iter().filter(|domain| is_idn(domain));
            known.map(|domain| unicode(domain)).collect()
        })
    }

    /// Every known domain, then the A-label ones again in Unicode form (compared as
    /// given too: harmless, a Unicode name never matches an `xn--` one).
    fn known(&self) -> impl Iterator<Item = &str> {
        let given = self.known.iter().map(String::as_str);
        given.chain(self.known_idn().iter().map(|domain| domain.as_ref()))
    }
}

/// The comparisons of one message, with what they need computed once.
pub struct Lookalikes<'r, 'a> {
    references: &'r References<'a>,
    seen: HashMap<(String, bool), Option<Found>>,
}

impl<'r, 'a> Lookalikes<'r, 'a> {
    pub fn new(references: &'r References<'a>) -> Self {
        Lookalikes { references, seen: HashMap::new() }
    }

    /// The reference `domain` imitates, if any (case and a final dot ignored; A-labels
    /// decoded); the known domains are compared only `with_known` (a scan of them all).
    pub fn check(&mut self, domain: &str, with_known: bool) -> Option<Found> {
        let domain = unicode(domain.trim_end_matches('.'));
        if domain.is_empty() || !domain.contains('.') {
            return None;
        }
        let key = (domain.into_owned(), with_known);
        if let Some(found) = self.seen.get(&key) {
            return found.clone();
        }
        let found = if self.references.covers(&key.0) { None } else { self.compare(&key.0, with_known) };
        self.seen.insert(key, found.clone());
        found
    }

    fn compare(&mut self, domain: &str, with_known: bool) -> Option<Found> {
        let references = self.references;
        let Public { skeletons, squashed, .. } = public();
        let n_own = references.n_own;
        let registrable = registrable(domain);
        let domain_skeleton: String = skeleton(registrable).collect();
        let name = squash(registrable);
        let long_enough = name.chars().count() >= LABEL_LETTERS_MIN;
        let mut best: Option<usize> = None;
        // The own references come before the public ones: the lowest index wins.
        let mut consider = |index: usize| best = Some(best.map_or(index, |b| b.min(index)));
        for (index, (_, own)) in references.small[..n_own].iter().enumerate() {
            if skeleton_is(registrable_of(own), &domain_skeleton) || (long_enough && squash_eq(own, &name)) {
                consider(index);
            }
        }
        if let Some(&index) = skeletons.get(&domain_skeleton) {
            consider(n_own + index);
        }
        if long_enough && let Some(&index) = squashed.get(&name) {
            consider(n_own + index);
        }
        if let Some(index) = best.or_else(|| one_edit(references.small.iter().map(|(_, r)| r.as_ref()), registrable)) {
            let (kind, reference) = &references.small[index];
            return Some(Found { kind: *kind, reference: reference.to_string() });
        }
        let without_tld = registrable.rsplit_once('.').map_or(registrable, |(rest, _)| rest);
        if without_tld.split(['-', '.']).any(|word| word == "gouv" || word == "gouvfr") {
            return Some(Found { kind: Kind::Public, reference: "gouv.fr".into() });
        }
        if !with_known {
            return None;
        }
        let provider = MAIL_PROVIDERS.contains(&name.as_str());
        // One pass over the known domains, each skipped on its length before any work.
        let (label, suffix) = registrable.split_once('.').unwrap_or((registrable, ""));
        let label_chars = label.chars().count();
        let known = references.known().find(|reference| {
            // A name is never shorter than its registrable domain: most are skipped here.
            if reference.len() + 4 < registrable.len() {
                return false;
            }
            let reference_registrable = registrable_of(reference);
            // Skeletons and squashed names are never much longer or shorter than the name.
            if reference_registrable.len().abs_diff(registrable.len()) > 4 {
                return false;
            }
            if skeleton_is(reference_registrable, &domain_skeleton)
                || (long_enough && !provider && squash_eq(reference, &name))
            {
                return true;
            }
            let Some(reference_label) = reference_registrable.strip_suffix(suffix).and_then(|r| r.strip_suffix('.'))
            else {
                return false;
            };
            let reference_chars = reference_label.chars().count();
            !reference_label.contains('.')
                && reference_chars >= LABEL_LETTERS_MIN
                && reference_chars.abs_diff(label_chars) <= 1
                && label != reference_label
                && within_one_edit(label, reference_label)
        });
        known.map(|reference| Found { kind: Kind::Known, reference: reference.to_owned() })
    }
}

/// The shipped public references, read once per process: in the list's order, by name,
/// and indexed by skeleton and squashed name (skeletons are the costly part of a
/// comparison).
struct Public {
    list: Vec<&'static str>,
    names: HashSet<&'static str>,
    skeletons: HashMap<String, usize>,
    squashed: HashMap<String, usize>,
}

fn public() -> &'static Public {
    static PUBLIC: OnceLock<Public> = OnceLock::new();
    PUBLIC.get_or_init(|| {
        let list: Vec<&'static str> =
            PUBLIC_DOMAINS.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
        let names = list.iter().copied().collect();
        let (skeletons, squashed) = index(list.iter().copied());
        Public { list, names, skeletons, squashed }
    })
}

/// The skeleton and squashed-name indexes of `references` (the first of a key wins).
fn index<'r>(references: impl Iterator<Item = &'r str>) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut skeletons = HashMap::new();
    let mut squashed = HashMap::new();
    for (index, reference) in references.enumerate() {
        skeletons.entry(skeleton(registrable(reference)).collect()).or_insert(index);
        let name = squash(reference);
        if name.chars().count() >= LABEL_LETTERS_MIN {
            squashed.entry(name).or_insert(index);
        }
    }
    (skeletons, squashed)
}

/// The index of the first of `references` whose first registrable label is one edit
/// from `domain`'s, under the same suffix.
fn one_edit<'r>(references: impl Iterator<Item = &'r str>, domain: &str) -> Option<usize> {
    let (label, suffix) = domain.split_once('.')?;
    let label_chars = label.chars().count();
    for (index, reference) in references.enumerate() {
        if reference.len().abs_diff(domain.len()) > 8 {
            continue;
        }
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

fn registrable_of(domain: &str) -> &str {
    registrable(domain)
}

/// The TR39 skeleton of `reference` is `expected`. An ASCII name (the usual known domain)
/// goes through a table of the ASCII characters' skeletons made once per process, a few
/// nanoseconds a name; others through the crate's skeleton.
fn skeleton_is(reference: &str, expected: &str) -> bool {
    if !reference.is_ascii() {
        return skeleton(reference).eq(expected.chars());
    }
    static ASCII: OnceLock<Vec<String>> = OnceLock::new();
    let table = ASCII.get_or_init(|| (0u8..128).map(|byte| skeleton(&(byte as char).to_string()).collect()).collect());
    let mut rest = expected.as_bytes();
    for byte in reference.bytes() {
        let Some(mapped) = table.get(byte as usize) else { return false };
        match rest.strip_prefix(mapped.as_bytes()) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

/// An `xn--` label in `domain` (a cheap test first: the known domains are scanned).
fn is_idn(domain: &str) -> bool {
    domain.as_bytes().windows(2).any(|pair| pair == b"--") && domain.contains("xn--")
}

/// `reference` squashed (see [`squash`]) is `name`, compared without allocating.
fn squash_eq(reference: &str, name: &str) -> bool {
    let without_tld = reference.rsplit_once('.').map_or(reference, |(rest, _)| rest);
    without_tld.chars().filter(|c| *c != '-' && *c != '.').eq(name.chars())
}

/// The registrable domain: the last two labels, three under a [`SECOND_LEVEL`] suffix.
/// One backward pass over the bytes (it runs on every known domain).
pub fn registrable(domain: &str) -> &str {
    let bytes = domain.as_bytes();
    let mut dots = [usize::MAX; 3];
    let mut n_dots = 0;
    for (at, byte) in bytes.iter().enumerate().rev() {
        if *byte == b'.' {
            dots[n_dots] = at;
            n_dots += 1;
            if n_dots == 3 {
                break;
            }
        }
    }
    if n_dots < 2 {
        return domain;
    }
    let two = &domain[dots[1] + 1..];
    if !SECOND_LEVEL.contains(&two) {
        return two;
    }
    if n_dots == 3 { &domain[dots[2] + 1..] } else { domain }
}

/// The name without its last label and without hyphens and dots (`impots-gouv.fr` and
/// `impots.gouv.fr` are both `impotsgouv`).
fn squash(domain: &str) -> String {
    let without_tld = domain.rsplit_once('.').map_or(domain, |(rest, _)| rest);
    without_tld.chars().filter(|c| *c != '-' && *c != '.').collect()
}

/// Optimal string alignment distance at most 1, in one pass over both (over bytes for
/// ASCII names, without allocating: it runs on many known domains).
pub fn within_one_edit(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return within_one_edit_of(a.as_bytes(), b.as_bytes());
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    within_one_edit_of(&a, &b)
}

fn within_one_edit_of<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
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

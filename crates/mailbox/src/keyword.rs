//! Keywords: the flags of a message that IMAP and JMAP share (RFC 9051 §2.3.2, RFC 8621
//! §4.1.1), in one place with their spellings.
//!
//! A keyword has three spellings. The stored one is what the records hold (unchanged since
//! the first release: `\Seen` for the system flags, lower case for the others, so that
//! records written before this type read back the same). The IMAP one is what IMAP shows:
//! the registry's for the known ones (`\Seen`, `$Junk`, `$MDNSent`), as the `FLAGS` list
//! announces them, and the stored one, in lower case, for the others.
//! The JMAP one maps the system flags to `$seen`, `$answered`, `$flagged`, `$draft`;
//! `\Deleted` has none, since JMAP does not expunge (RFC 8621 §4.1.1).
//! `\Recent` is not a keyword: it belongs to an IMAP session, never to a message.
//!
//! Both protocols compare keywords case-insensitively; the parsers here are the one place
//! that folds case.

use std::borrow::Cow;
use std::cmp::Ordering;

/// One keyword of a message. Equality, order and hashing follow the stored spelling, so
/// that a sorted list is in the order the records have always had.
#[derive(Clone, Debug)]
pub enum Keyword {
    /// `\Seen`, JMAP `$seen`.
    Seen,
    /// `\Answered`, JMAP `$answered`.
    Answered,
    /// `\Flagged`, JMAP `$flagged`.
    Flagged,
    /// `\Draft`, JMAP `$draft`.
    Draft,
    /// `\Deleted`: IMAP only; a JMAP client does not see it.
    Deleted,
    /// `$Junk` (RFC 5788): an agent's client or the MX judged the message junk.
    Junk,
    /// `$NotJunk` (RFC 5788): an agent's client judged it not junk.
    NotJunk,
    /// `$Forwarded` (RFC 5788).
    Forwarded,
    /// `$MDNSent` (RFC 3503): a read receipt was sent.
    MdnSent,
    /// `$Phishing` (RFC 8621 §4.1.1, RFC 5788 registry).
    Phishing,
    /// Any other keyword, in lower case (Thunderbird's `$label1`, a user's own word). A
    /// record written by an older release may hold an IMAP extension flag here (`\Foo`):
    /// it reads back and shows as it was, and is never made anew.
    Custom(String),
}

/// The known keywords with their stored spelling and the spelling of the IANA IMAP
/// keywords registry (what the `FLAGS` list shows).
const KNOWN: [(Keyword, &str, &str); 10] = [
    (Keyword::Seen, "\\Seen", "\\Seen"),
    (Keyword::Answered, "\\Answered", "\\Answered"),
    (Keyword::Flagged, "\\Flagged", "\\Flagged"),
    (Keyword::Draft, "\\Draft", "\\Draft"),
    (Keyword::Deleted, "\\Deleted", "\\Deleted"),
    (Keyword::Junk, "$junk", "$Junk"),
    (Keyword::NotJunk, "$notjunk", "$NotJunk"),
    (Keyword::Forwarded, "$forwarded", "$Forwarded"),
    (Keyword::MdnSent, "$mdnsent", "$MDNSent"),
    (Keyword::Phishing, "$phishing", "$Phishing"),
];

/// The most bytes of a JMAP keyword (RFC 8621 §4.1.1). IMAP sets no such bound (the
/// command's size bounds an atom), and IMAP clients have always been able to store longer
/// ones here, so it is checked on JMAP's way in only.
pub const JMAP_KEYWORD_BYTES_MAX: usize = 255;

impl Keyword {
    /// The five IMAP system flags (RFC 9051 §2.3.2), in the order IMAP lists them.
    pub const SYSTEM: [Keyword; 5] =
        [Keyword::Answered, Keyword::Flagged, Keyword::Deleted, Keyword::Seen, Keyword::Draft];

    /// The spelling in the records (mailbox index entries and email records).
    pub fn stored(&self) -> &str {
        match self {
            Keyword::Custom(word) => word,
            known => KNOWN[known.known_index()].1,
        }
    }

    /// The IMAP spelling of a message's flag in FETCH (and in exports): the registry's
    /// for a known keyword (what the `FLAGS` list shows: a client that set `$junk` sees
    /// `$Junk`, as from the server that knows it), the stored one for the others.
    pub fn imap(&self) -> &str {
        self.registered().unwrap_or_else(|| self.stored())
    }

    /// The spelling of the IANA IMAP keywords registry (`$Junk`, `$MDNSent`), for the list
    /// a server announces; a custom keyword has none.
    pub fn registered(&self) -> Option<&'static str> {
        match self {
            Keyword::Custom(_) => None,
            known => Some(KNOWN[known.known_index()].2),
        }
    }

    /// The JMAP spelling (RFC 8621 §4.1.1); `None` for `\Deleted` and for an old record's
    /// extension flag, which JMAP does not show.
    pub fn jmap(&self) -> Option<&str> {
        Some(match self {
            Keyword::Seen => "$seen",
            Keyword::Answered => "$answered",
            Keyword::Flagged => "$flagged",
            Keyword::Draft => "$draft",
            Keyword::Deleted => return None,
            Keyword::Custom(word) if word.starts_with('\\') => return None,
            other => other.stored(),
        })
    }

    /// Whether this is an IMAP system flag (spelled with a backslash).
    pub fn is_system_flag(&self) -> bool {
        self.stored().starts_with('\\')
    }

    /// An IMAP flag or keyword (RFC 9051 §9 `flag`), any case: a system flag, or an atom.
    /// `None` for `\Recent` (a session's), other extension flags (not kept: they are not
    /// in PERMANENTFLAGS), and words that are not atoms.
    pub fn parse_imap(word: &str) -> Option<Keyword> {
        if let Some(flag) = word.strip_prefix('\\') {
            return Keyword::SYSTEM.into_iter().find(|known| known.stored()[1..].eq_ignore_ascii_case(flag));
        }
        Keyword::parse_word(word)
    }

    /// A JMAP keyword (RFC 8621 §4.1.1), any case: `$seen` and the other three system
    /// keywords become the IMAP system flags. `None` for what is not a keyword there.
    pub fn parse_jmap(word: &str) -> Option<Keyword> {
        for known in [Keyword::Seen, Keyword::Answered, Keyword::Flagged, Keyword::Draft] {
            if known.jmap().is_some_and(|spelling| spelling.eq_ignore_ascii_case(word)) {
                return Some(known);
            }
        }
        if word.len() > JMAP_KEYWORD_BYTES_MAX {
            return None;
        }
        Keyword::parse_word(word)
    }

    /// A keyword that is not a system flag: printable ASCII characters without the
    /// specials `( ) { ] % * " \` (IMAP `atom` and JMAP's keyword alike), lower-cased.
    fn parse_word(word: &str) -> Option<Keyword> {
        let valid = !word.is_empty() && word.bytes().all(|b| b > b' ' && b < 0x7f && !b"(){]%*\"\\".contains(&b));
        valid.then(|| Keyword::from_stored(word.to_ascii_lowercase()))
    }

    /// A keyword as the records hold it. Never fails: an unknown word is a custom keyword,
    /// so that every record written so far reads back.
    pub fn from_stored(word: impl Into<String> + AsRef<str>) -> Keyword {
        match KNOWN.iter().find(|(_, stored, _)| *stored == word.as_ref()) {
            Some((known, _, _)) => known.clone(),
            None => Keyword::Custom(word.into()),
        }
    }

    fn known_index(&self) -> usize {
        match self {
            Keyword::Seen => 0,
            Keyword::Answered => 1,
            Keyword::Flagged => 2,
            Keyword::Draft => 3,
            Keyword::Deleted => 4,
            Keyword::Junk => 5,
            Keyword::NotJunk => 6,
            Keyword::Forwarded => 7,
            Keyword::MdnSent => 8,
            Keyword::Phishing => 9,
            // Never asked: `stored` and `registered` answer for custom keywords themselves.
            Keyword::Custom(_) => usize::MAX,
        }
    }
}

impl PartialEq for Keyword {
    fn eq(&self, other: &Keyword) -> bool {
        self.stored() == other.stored()
    }
}

impl Eq for Keyword {}

impl PartialOrd for Keyword {
    fn partial_cmp(&self, other: &Keyword) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Keyword {
    fn cmp(&self, other: &Keyword) -> Ordering {
        self.stored().cmp(other.stored())
    }
}

impl std::hash::Hash for Keyword {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.stored().hash(state)
    }
}

impl PartialEq<str> for Keyword {
    fn eq(&self, other: &str) -> bool {
        self.stored() == other
    }
}

impl PartialEq<&str> for Keyword {
    fn eq(&self, other: &&str) -> bool {
        self.stored() == *other
    }
}

impl PartialEq<String> for Keyword {
    fn eq(&self, other: &String) -> bool {
        self.stored() == other
    }
}

impl std::fmt::Display for Keyword {
    /// The stored (and IMAP) spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.stored())
    }
}

impl serde::Serialize for Keyword {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.stored())
    }
}

impl<'de> serde::Deserialize<'de> for Keyword {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Keyword, D::Error> {
        let word: Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
        Ok(Keyword::from_stored(word.into_owned()))
    }
}

#[cfg(test)]
mod tests;

//! The selected mailbox as one session knows it: its messages in sequence order (UID,
//! email, modseq, flags, size, arrival), and the highest modseq it has seen. Other
//! sessions' changes (and SMTP deliveries) are read from the account's change log and
//! reported as untagged `EXISTS`, `EXPUNGE` (or `VANISHED` under QRESYNC) and `FETCH`.

use hameau_imap_session::{Flag, SequenceSet};
use hameau_mailbox::{Keyword, MailboxId, UidEntry};

/// The selected mailbox.
pub struct Selected {
    pub id: MailboxId,
    pub read_only: bool,
    /// In sequence order (ascending UID): message `n` is `entries[n - 1]`.
    pub entries: Vec<UidEntry>,
    /// Every change up to this modseq is reflected in `entries`.
    pub highest_modseq: u64,
    /// The UIDs of `SEARCH ... RETURN (SAVE)` (RFC 5182), for `$`.
    pub saved: Vec<u32>,
    /// The UIDs that are `\Recent` in this session (IMAP4rev1), ascending.
    pub recent: Vec<u32>,
    /// Expunges read from the change log but not reported yet (they wait for a command
    /// that allows them).
    pub pending_expunges: bool,
}

impl Selected {
    /// The sequence number of `uid`, if present.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.entries.binary_search_by_key(&uid, |entry| entry.uid).ok().map(|index| index as u32 + 1)
    }

    /// Whether `\Recent` is shown for `uid`: recent in this session, and IMAP4rev2 (which
    /// dropped the flag) not enabled.
    pub fn is_recent(&self, uid: u32, enabled: hameau_imap_session::Enabled) -> bool {
        !enabled.imap4rev2 && self.recent.binary_search(&uid).is_ok()
    }

    pub fn uid_next_hint(&self) -> u32 {
        self.entries.last().map_or(1, |entry| entry.uid + 1)
    }

    /// Indexes in `entries` named by `set`: sequence numbers, or UIDs when `uid`. `$` is the
    /// saved result. Ascending, without duplicates.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<usize> {
        if set.is_saved() {
            return self.saved.iter().filter_map(|uid| self.seq_of(*uid)).map(|seq| seq as usize - 1).collect();
        }
        let mut indexes = Vec::new();
        if uid {
            let Some(largest) = self.entries.last().map(|entry| entry.uid) else { return indexes };
            for (low, high) in set.normalized(largest) {
                let start = self.entries.partition_point(|entry| entry.uid < low);
                let end = self.entries.partition_point(|entry| entry.uid <= high);
                indexes.extend(start..end);
            }
        } else {
            let largest = self.entries.len() as u32;
            for (low, high) in set.normalized(largest) {
                indexes.extend(low as usize - 1..high as usize);
            }
        }
        indexes.sort_unstable();
        indexes.dedup();
        indexes
    }
}

/// The IMAP flags of stored keywords: `\Seen` and the other system flags, then keywords.
pub fn flags_of(keywords: &[Keyword]) -> Vec<Flag> {
    keywords
        .iter()
        .map(|keyword| match keyword {
            Keyword::Seen => Flag::Seen,
            Keyword::Answered => Flag::Answered,
            Keyword::Flagged => Flag::Flagged,
            Keyword::Deleted => Flag::Deleted,
            Keyword::Draft => Flag::Draft,
            other => match other.imap().strip_prefix('\\') {
                Some(name) => Flag::Extension(name.to_string()),
                None => Flag::Keyword(other.imap().to_string()),
            },
        })
        .collect()
}

/// The stored keyword of an IMAP flag ([`Keyword::parse_imap`]). Extension flags other
/// than the five system flags are not kept (they are not in PERMANENTFLAGS).
pub fn keyword_of(flag: &Flag) -> Option<Keyword> {
    Some(match flag {
        Flag::Seen => Keyword::Seen,
        Flag::Answered => Keyword::Answered,
        Flag::Flagged => Keyword::Flagged,
        Flag::Deleted => Keyword::Deleted,
        Flag::Draft => Keyword::Draft,
        Flag::Keyword(keyword) => return Keyword::parse_imap(keyword),
        Flag::Extension(_) => return None,
    })
}

pub use hameau_mailbox::query::in_ranges;

//! The selected mailbox as one session knows it: its messages in sequence order (UID,
//! email, modseq, flags, size, arrival), and the highest modseq it has seen. Other
//! sessions' changes (and SMTP deliveries) are read from the account's change log and
//! reported as untagged `EXISTS`, `EXPUNGE` (or `VANISHED` under QRESYNC) and `FETCH`.

use hameau_imap_session::{Flag, SequenceSet};
use hameau_mailbox::{MailboxId, UidEntry};

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
pub fn flags_of(keywords: &[String]) -> Vec<Flag> {
    keywords
        .iter()
        .map(|keyword| match keyword.as_str() {
            "\\Seen" => Flag::Seen,
            "\\Answered" => Flag::Answered,
            "\\Flagged" => Flag::Flagged,
            "\\Deleted" => Flag::Deleted,
            "\\Draft" => Flag::Draft,
            other => match other.strip_prefix('\\') {
                Some(name) => Flag::Extension(name.to_string()),
                None => Flag::Keyword(other.to_string()),
            },
        })
        .collect()
}

/// The stored keyword of an IMAP flag (system flags keep their backslash; keywords are
/// case-insensitive and stored lowercase, as JMAP has them). Extension flags other than the
/// five system flags are not kept (they are not in PERMANENTFLAGS).
pub fn keyword_of(flag: &Flag) -> Option<String> {
    Some(match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Keyword(keyword) => keyword.to_lowercase(),
        Flag::Extension(_) => return None,
    })
}

/// Whether `number` is in `ranges` (from `SequenceSet::normalized`: sorted, disjoint), by
/// binary search: a set of thousands of ranges is not walked once per message.
pub fn in_ranges(ranges: &[(u32, u32)], number: u32) -> bool {
    let after = ranges.partition_point(|(low, _)| *low <= number);
    after > 0 && number <= ranges[after - 1].1
}

pub fn has(entry: &UidEntry, keyword: &str) -> bool {
    entry.keywords.iter().any(|k| k == keyword)
}

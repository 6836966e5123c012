//! What every session shares in memory:
//!
//! - Summaries and searchable body texts of emails: an email's content never changes, so
//!   once read they are kept (ENVELOPE, BODYSTRUCTURE, header searches, SORT, THREAD, SEARCH
//!   BODY). Each is bounded (`imap.summary_cache_entries`, `imap.text_cache_bytes`); when full
//!   it is emptied and fills again with what is used (cheap, and rare with a sensible bound).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use hameau_mailbox::{AccountId, EmailAddress, EmailId, Error, Mail, Summary};

/// Keys are two ids chosen by us, not by clients: a multiply-xor hash is enough, and much
/// cheaper than SipHash for the thousands of lookups of one search.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type IdMap<V> = HashMap<(AccountId, EmailId), V, BuildHasherDefault<IdHasher>>;

/// A summary with its header fields lowercased once, for header searches.
#[derive(Debug)]
pub struct Cached {
    pub summary: Summary,
    /// Names and addresses, lowercased, one per line.
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
}

impl Cached {
    fn new(summary: Summary) -> Cached {
        let lower = |addresses: &[EmailAddress]| {
            let mut out = String::new();
            for address in addresses {
                for part in [&address.name, &address.address].into_iter().flatten() {
                    out.push_str(&part.to_lowercase());
                    out.push('\n');
                }
            }
            out
        };
        Cached {
            from: lower(&summary.from),
            to: lower(&summary.to),
            cc: lower(&summary.cc),
            bcc: lower(&summary.bcc),
            subject: summary.subject.as_deref().unwrap_or("").to_lowercase(),
            summary,
        }
    }
}

pub struct SummaryCache {
    entries: Mutex<IdMap<Arc<Cached>>>,
    entries_max: usize,
}

impl SummaryCache {
    /// A cache of at most `entries_max` summaries; 0 keeps none.
    pub fn new(entries_max: usize) -> SummaryCache {
        SummaryCache { entries: Mutex::new(IdMap::default()), entries_max }
    }

    pub async fn get(&self, mail: &Mail, account: AccountId, email: EmailId) -> Result<Arc<Cached>, Error> {
        if let Some(summary) = self.entries.lock().expect("cache lock").get(&(account, email)) {
            return Ok(summary.clone());
        }
        let summary = Arc::new(Cached::new(mail.summary(account, email).await?));
        if self.entries_max > 0 {
            let mut entries = self.entries.lock().expect("cache lock");
            if entries.len() >= self.entries_max {
                entries.clear();
            }
            entries.insert((account, email), summary.clone());
        }
        Ok(summary)
    }
}

impl std::fmt::Debug for SummaryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryCache").field("entries_max", &self.entries_max).finish()
    }
}

/// The texts, and their bytes in all.
type Texts = (IdMap<Arc<str>>, usize);

/// Body texts (`Mail::body_text`), bounded in bytes.
pub struct TextCache {
    entries: Mutex<Texts>,
    bytes_max: usize,
}

impl TextCache {
    /// A cache of at most `bytes_max` bytes of text; 0 keeps none.
    pub fn new(bytes_max: usize) -> TextCache {
        TextCache { entries: Mutex::new((IdMap::default(), 0)), bytes_max }
    }

    pub async fn get(&self, mail: &Mail, account: AccountId, email: EmailId) -> Result<Arc<str>, Error> {
        if let Some(text) = self.entries.lock().expect("cache lock").0.get(&(account, email)) {
            return Ok(text.clone());
        }
        let text: Arc<str> = mail.body_text(account, email).await?.into();
        if text.len() < self.bytes_max {
            let mut guard = self.entries.lock().expect("cache lock");
            let (entries, bytes) = &mut *guard;
            if *bytes + text.len() > self.bytes_max {
                entries.clear();
                *bytes = 0;
            }
            *bytes += text.len();
            entries.insert((account, email), text.clone());
        }
        Ok(text)
    }
}

impl std::fmt::Debug for TextCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextCache").field("bytes_max", &self.bytes_max).finish()
    }
}

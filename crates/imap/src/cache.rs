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

/// A map bounded by a total weight (entries, or bytes); emptied when full.
struct Bounded<V> {
    entries: Mutex<(IdMap<V>, usize)>,
    weight_max: usize,
    weight: fn(&V) -> usize,
}

impl<V: Clone> Bounded<V> {
    fn new(weight_max: usize, weight: fn(&V) -> usize) -> Bounded<V> {
        Bounded { entries: Mutex::new((IdMap::default(), 0)), weight_max, weight }
    }

    /// The values of `emails` (`None` for an email that is gone), one lock for the hits,
    /// `load` for the misses.
    async fn get_many<F, Fut>(&self, account: AccountId, emails: &[EmailId], load: F) -> Result<Vec<Option<V>>, Error>
    where
        F: Fn(EmailId) -> Fut,
        Fut: std::future::Future<Output = Result<V, Error>>,
    {
        let mut values: Vec<Option<V>> = {
            let guard = self.entries.lock().expect("cache lock");
            emails.iter().map(|email| guard.0.get(&(account, *email)).cloned()).collect()
        };
        let mut loaded = Vec::new();
        for (index, email) in emails.iter().enumerate() {
            if values[index].is_some() {
                continue;
            }
            match load(*email).await {
                Ok(value) => {
                    values[index] = Some(value.clone());
                    loaded.push((*email, value));
                }
                Err(Error::NoEmail(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !loaded.is_empty() && self.weight_max > 0 {
            let mut guard = self.entries.lock().expect("cache lock");
            let (entries, total) = &mut *guard;
            for (email, value) in loaded {
                let weight = (self.weight)(&value);
                if weight > self.weight_max {
                    continue;
                }
                if *total + weight > self.weight_max {
                    entries.clear();
                    *total = 0;
                }
                *total += weight;
                entries.insert((account, email), value);
            }
        }
        Ok(values)
    }
}

/// Summaries (with lowercased header fields), bounded in entries.
pub struct SummaryCache(Bounded<Arc<Cached>>);

impl SummaryCache {
    /// A cache of at most `entries_max` summaries; 0 keeps none.
    pub fn new(entries_max: usize) -> SummaryCache {
        SummaryCache(Bounded::new(entries_max, |_| 1))
    }

    pub async fn get(&self, mail: &Mail, account: AccountId, email: EmailId) -> Result<Arc<Cached>, Error> {
        let mut values = self.get_many(mail, account, &[email]).await?;
        values.pop().flatten().ok_or(Error::NoEmail(email))
    }

    /// The summaries of `emails`, `None` for those that are gone.
    pub async fn get_many(
        &self,
        mail: &Mail,
        account: AccountId,
        emails: &[EmailId],
    ) -> Result<Vec<Option<Arc<Cached>>>, Error> {
        self.0
            .get_many(
                account,
                emails,
                |email| async move { Ok(Arc::new(Cached::new(mail.summary(account, email).await?))) },
            )
            .await
    }
}

impl std::fmt::Debug for SummaryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummaryCache").field("entries_max", &self.0.weight_max).finish()
    }
}

/// Body texts (`Mail::body_text`), bounded in bytes.
pub struct TextCache(Bounded<Arc<str>>);

impl TextCache {
    /// A cache of at most `bytes_max` bytes of text; 0 keeps none.
    pub fn new(bytes_max: usize) -> TextCache {
        TextCache(Bounded::new(bytes_max, |text| text.len()))
    }

    /// The texts of `emails` (empty for a message without text).
    pub async fn get_many(
        &self,
        mail: &Mail,
        account: AccountId,
        emails: &[EmailId],
    ) -> Result<Vec<Option<Arc<str>>>, Error> {
        self.0
            .get_many(account, emails, |email| async move { Ok(Arc::from(mail.body_text(account, email).await?)) })
            .await
    }
}

impl std::fmt::Debug for TextCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextCache").field("bytes_max", &self.0.weight_max).finish()
    }
}

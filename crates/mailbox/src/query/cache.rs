//! What every session (IMAP and, later, JMAP) shares in memory: summaries and searchable
//! body texts of emails. An email's content never changes, so once read they are kept
//! (IMAP's ENVELOPE, BODYSTRUCTURE, SORT and THREAD, and every query on headers or text).
//! Each is bounded (today `imap.summary_cache_entries` and `imap.summary_cache_bytes`, each
//! summary counted by its size; `imap.text_cache_bytes`); when full it is emptied and fills
//! again with what is used (cheap, and rare with a sensible bound).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use crate::{AccountId, EmailAddress, EmailId, Error, Mail, Part, Summary};

/// Keys are two ids chosen by us, not by clients: a multiply-xor hash is enough, and much
/// cheaper than SipHash for the thousands of lookups of one search.
#[derive(Default)]
struct IdHasher(u64);

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

/// A summary with its header fields lowercased once, for the queries on them.
#[derive(Debug)]
pub struct Cached {
    pub summary: Summary,
    /// Names and addresses, lowercased, one per line.
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    /// About the heap bytes of all this, for the cache's bound.
    bytes: usize,
}

impl Cached {
    pub(crate) fn new(summary: Summary) -> Cached {
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
        let (from, to, cc, bcc) = (lower(&summary.from), lower(&summary.to), lower(&summary.cc), lower(&summary.bcc));
        let subject = summary.subject.as_deref().unwrap_or("").to_lowercase();
        let bytes = summary_bytes(&summary) + from.len() + to.len() + cc.len() + bcc.len() + subject.len() + 64;
        Cached { from, to, cc, bcc, subject, bytes, summary }
    }
}

/// A map bounded by its number of entries and by the total of their weights (bytes);
/// emptied when either is full.
struct Bounded<V> {
    entries: Mutex<(IdMap<V>, usize)>,
    entries_max: usize,
    weight_max: usize,
    weight: fn(&V) -> usize,
}

/// Misses loaded from the store between two yields: a search over a cold mailbox of
/// 100,000 messages lets the other connections of its worker run every 64 reads.
const LOADS_PER_YIELD: usize = 64;

impl<V: Clone> Bounded<V> {
    fn new(entries_max: usize, weight_max: usize, weight: fn(&V) -> usize) -> Bounded<V> {
        Bounded { entries: Mutex::new((IdMap::default(), 0)), entries_max, weight_max, weight }
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
            if loaded.len() % LOADS_PER_YIELD == LOADS_PER_YIELD - 1 {
                tokio::task::yield_now().await;
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
        let weight_max = self.weight_max;
        if !loaded.is_empty() && weight_max > 0 && self.entries_max > 0 {
            let mut guard = self.entries.lock().expect("cache lock");
            let (entries, total) = &mut *guard;
            for (email, value) in loaded {
                let weight = (self.weight)(&value);
                if weight > weight_max {
                    continue;
                }
                if *total + weight > weight_max || entries.len() >= self.entries_max {
                    entries.clear();
                    *total = 0;
                }
                if let Some(old) = entries.insert((account, email), value) {
                    *total -= (self.weight)(&old);
                }
                *total += weight;
            }
        }
        Ok(values)
    }
}

/// Summaries (with lowercased header fields), bounded in entries and in bytes.
pub struct SummaryCache(Bounded<Arc<Cached>>);

impl SummaryCache {
    /// A cache of at most `entries_max` summaries (`imap.summary_cache_entries`) and
    /// `bytes_max` bytes of them (`imap.summary_cache_bytes`); 0 keeps none.
    pub fn new(entries_max: usize, bytes_max: usize) -> SummaryCache {
        SummaryCache(Bounded::new(entries_max, bytes_max, |cached| cached.bytes))
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
        f.debug_struct("SummaryCache")
            .field("entries_max", &self.0.entries_max)
            .field("bytes_max", &self.0.weight_max)
            .finish()
    }
}

/// About the heap bytes of a summary: its strings and lists, nested messages included
/// (walked with a stack: no recursion).
fn summary_bytes(summary: &Summary) -> usize {
    let addresses = |list: &[EmailAddress]| -> usize {
        list.iter()
            .map(|a| 48 + a.name.as_ref().map_or(0, String::len) + a.address.as_ref().map_or(0, String::len))
            .sum()
    };
    let strings = |list: &[String]| -> usize { list.iter().map(|s| 24 + s.len()).sum() };
    let pairs = |list: &[(String, String)]| -> usize { list.iter().map(|(a, b)| 48 + a.len() + b.len()).sum() };
    let mut total = 0;
    let mut stack = vec![summary];
    while let Some(s) = stack.pop() {
        total += std::mem::size_of::<Summary>()
            + s.subject.as_ref().map_or(0, String::len)
            + s.date.as_ref().map_or(0, String::len)
            + s.preview.len()
            + [&s.from, &s.sender, &s.reply_to, &s.to, &s.cc, &s.bcc].iter().map(|l| addresses(l)).sum::<usize>()
            + strings(&s.message_id)
            + strings(&s.in_reply_to)
            + strings(&s.references);
        for part in &s.parts {
            total += std::mem::size_of::<Part>()
                + part.content_type.len()
                + pairs(&part.params)
                + pairs(&part.disposition_params)
                + strings(&part.language)
                + [
                    &part.charset,
                    &part.name,
                    &part.content_id,
                    &part.description,
                    &part.transfer_encoding,
                    &part.disposition,
                    &part.location,
                ]
                .iter()
                .map(|o| o.as_ref().map_or(0, String::len))
                .sum::<usize>()
                + part.children.len() * 4;
            if let Some(nested) = &part.message {
                stack.push(nested);
            }
        }
    }
    total
}

/// Body texts (`Mail::body_text`) and raw headers, bounded in bytes together.
pub struct TextCache {
    texts: Bounded<Arc<str>>,
    /// The raw header of messages whose header a query read (`TEXT` found only there,
    /// `HEADER`): a quarter of the bytes, so that a repeated search by sender does not
    /// read the same messages again.
    headers: Bounded<Arc<[u8]>>,
    bytes_max: usize,
}

impl TextCache {
    /// A cache of at most `bytes_max` bytes (texts three quarters, headers one); 0 keeps
    /// none.
    pub fn new(bytes_max: usize) -> TextCache {
        let headers_max = bytes_max / 4;
        TextCache {
            texts: Bounded::new(usize::MAX, bytes_max - headers_max, |text| text.len()),
            headers: Bounded::new(usize::MAX, headers_max, |header| header.len()),
            bytes_max,
        }
    }

    /// The texts of `emails` (empty for a message without text).
    pub async fn get_many(
        &self,
        mail: &Mail,
        account: AccountId,
        emails: &[EmailId],
    ) -> Result<Vec<Option<Arc<str>>>, Error> {
        self.texts
            .get_many(account, emails, |email| async move { Ok(Arc::from(mail.body_text(account, email).await?)) })
            .await
    }

    /// The first `header_bytes` of the raw message (its header), `None` if it is gone.
    pub(crate) async fn header(
        &self,
        mail: &Mail,
        account: AccountId,
        email: EmailId,
        header_bytes: u64,
    ) -> Result<Option<Arc<[u8]>>, Error> {
        let bytes = usize::try_from(header_bytes).unwrap_or(usize::MAX);
        let load = |email| async move {
            match mail.raw_prefix(account, email, bytes).await? {
                Some(header) => Ok(Arc::from(header)),
                None => Err(Error::NoEmail(email)),
            }
        };
        let mut values = self.headers.get_many(account, &[email], load).await?;
        Ok(values.pop().flatten())
    }
}

impl std::fmt::Debug for TextCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextCache").field("bytes_max", &self.bytes_max).finish()
    }
}

//! Summaries of emails, shared by every session: an email's content never changes, so its
//! summary (read for ENVELOPE, BODYSTRUCTURE, SEARCH on headers, SORT and THREAD) is kept
//! decoded in memory once read. Bounded by `imap.summary_cache_entries`; when full it is
//! emptied and fills again with what is used (cheap, and rare with a sensible bound).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hameau_mailbox::{AccountId, EmailId, Error, Mail, Summary};

pub struct SummaryCache {
    entries: Mutex<HashMap<(AccountId, EmailId), Arc<Summary>>>,
    entries_max: usize,
}

impl SummaryCache {
    /// A cache of at most `entries_max` summaries; 0 keeps none.
    pub fn new(entries_max: usize) -> SummaryCache {
        SummaryCache { entries: Mutex::new(HashMap::new()), entries_max }
    }

    pub async fn get(&self, mail: &Mail, account: AccountId, email: EmailId) -> Result<Arc<Summary>, Error> {
        if let Some(summary) = self.entries.lock().expect("cache lock").get(&(account, email)) {
            return Ok(summary.clone());
        }
        let summary = Arc::new(mail.summary(account, email).await?);
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

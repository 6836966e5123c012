//! Local delivery: one message to one or more local accounts, as the MX delivers it and
//! as the outbound queue will deliver its local recipients. One function, so that both
//! file mail the same way.

use bytes::Bytes;

use crate::delivery_cache::Read;
use crate::{AccountId, Error, Ingest, Ingested, Keyword, Mail, Mailbox, Quota, Role};

/// Where a delivered message is filed in each recipient account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filing {
    Inbox,
    /// The Junk mailbox, with [`Keyword::Junk`] (DMARC `p=quarantine`, later the filter).
    Junk,
}

/// One local delivery: the message as it is to be stored (trace and results headers
/// added) and its recipient accounts. An account without mailboxes gets its special-use
/// ones, named by [`Mail::names`].
#[derive(Clone, Debug)]
pub struct LocalDelivery {
    pub raw: Bytes,
    /// Each recipient account with the quotas it is counted against. An account listed
    /// more than once (a person and an alias of theirs) receives one copy, counted under
    /// the first quota given for it.
    pub recipients: Vec<(AccountId, Quota)>,
    pub filing: Filing,
    pub received_at: u64,
}

impl Mail {
    /// Delivers a message to local accounts: each account once, its special-use mailboxes
    /// made if it has none yet, the message filed by [`Filing`], all of them in ONE commit
    /// ([`Mail::ingest_many`]): every account has it, or none. The errors are those of
    /// `ingest_many`, and [`Error::NoRoleMailbox`] (temporary) when an account has no
    /// mailbox of the filing's role.
    pub async fn deliver(&self, delivery: LocalDelivery) -> Result<Vec<(AccountId, Ingested)>, Error> {
        let mut accounts: Vec<(AccountId, Quota)> = Vec::with_capacity(delivery.recipients.len());
        for (account, quota) in delivery.recipients {
            if !accounts.iter().any(|(seen, _)| *seen == account) {
                accounts.push((account, quota));
            }
        }
        // Bounded before any work: each account costs a read of its mailboxes below.
        if accounts.len() > self.limits.ingest_batch_max {
            return Err(Error::TooManyDeliveries { n: accounts.len(), max: self.limits.ingest_batch_max });
        }
        let (role, keywords) = match delivery.filing {
            Filing::Inbox => (Role::Inbox, Vec::new()),
            Filing::Junk => (Role::Junk, vec![Keyword::Junk]),
        };
        let mut batch = Vec::with_capacity(accounts.len());
        for (account, quota) in &accounts {
            let mailboxes = self.delivery_mailboxes(*account, delivery.received_at).await?;
            let target = mailboxes
                .iter()
                .find(|mailbox| mailbox.role == Some(role))
                .ok_or(Error::NoRoleMailbox { account: *account, role })?;
            let ingest = Ingest {
                raw: delivery.raw.clone(),
                mailboxes: vec![target.id],
                keywords: keywords.clone(),
                received_at: delivery.received_at,
                quota: quota.clone(),
            };
            batch.push((*account, ingest));
        }
        let stored = self.ingest_many(batch).await?;
        Ok(accounts.into_iter().map(|(account, _)| account).zip(stored).collect())
    }

    /// [`Mail::ensure_account`] through the deliveries' cache (`delivery_cache.rs`).
    async fn delivery_mailboxes(&self, account: AccountId, now: u64) -> Result<Vec<Mailbox>, Error> {
        let entries = self.delivery_read(account, Read::Mailboxes).await?;
        if entries.is_empty() {
            return self.ensure_account(account, now).await;
        }
        entries.iter().map(|entry| crate::decode(&entry.key, &entry.value)).collect()
    }
}

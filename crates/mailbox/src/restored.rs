//! What a store restored from a backup needs before it serves (docs/backup.md): every
//! mailbox gets a new UIDVALIDITY. The server that made the backup may have given UIDs
//! after it; the restored server would give the same UIDs again to other messages, and an
//! IMAP client that cached them would show the wrong messages. RFC 9051 §2.3.1.1: a new
//! UIDVALIDITY tells the client its cache of the mailbox is void. JMAP ids and the
//! messages themselves are left as they are.

use hameau_store::{Batch, Scan};

use crate::{AccountId, Error, Mail, Mailbox, RETRIES_MAX, backoff, decode, encode, keys, tree};

impl Mail {
    /// Gives every mailbox of `account` a new UIDVALIDITY, made as a new mailbox's is at
    /// `now` and never the one it had. Returns how many mailboxes it changed.
    pub async fn renew_uid_validity(&self, account: AccountId, now: u64) -> Result<u64, Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let entries = self.at(account).await?.scan(&Scan::prefix(&keys::mailboxes(account))).await?;
            let mut batch = Batch::new();
            for entry in &entries {
                let mailbox: Mailbox = decode(&entry.key, &entry.value)?;
                let uid_validity = renewed(mailbox.uid_validity, now, mailbox.id);
                batch.expect_version(&entry.key, entry.version);
                batch.set(&entry.key, &encode(&Mailbox { uid_validity, ..mailbox }));
            }
            crate::settings_changed(&mut batch);
            match self.at(account).await?.commit(batch).await {
                Ok(_) => return Ok(entries.len() as u64),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// [`Mail::renew_uid_validity`] for every account of the store, one account at a
    /// time (an account's mailboxes are bounded by `mailboxes_max`). Returns the accounts
    /// and mailboxes changed.
    pub async fn renew_uid_validity_all(&self, now: u64) -> Result<(u64, u64), Error> {
        let (mut n_accounts, mut n_mailboxes) = (0, 0);
        for store in self.stores() {
            let (accounts, mailboxes) = self.renew_uid_validity_in(&store, now).await?;
            n_accounts += accounts;
            n_mailboxes += mailboxes;
        }
        Ok((n_accounts, n_mailboxes))
    }

    /// [`Mail::renew_uid_validity_all`] for the accounts whose mail is in `store`.
    async fn renew_uid_validity_in(&self, store: &hameau_store::Store, now: u64) -> Result<(u64, u64), Error> {
        let (mut n_accounts, mut n_mailboxes) = (0, 0);
        let mut scan = Scan::prefix(keys::MAIL_PREFIX);
        scan.limit = 1;
        // Skips from one account to the next: one key read per account, whatever its mail.
        while let Some(entry) = store.scan(&scan).await?.into_iter().next() {
            let Some(account) = keys::account_of(&entry.key) else {
                return Err(Error::Corrupt { key: entry.key.escape_ascii().to_string(), problem: "short key".into() });
            };
            n_mailboxes += self.renew_uid_validity(account, now).await?;
            n_accounts += 1;
            let Some(next) = account.checked_add(1) else { break };
            scan.from = std::ops::Bound::Included(keys::account_start(next));
        }
        Ok((n_accounts, n_mailboxes))
    }
}

/// The UIDVALIDITY a restored mailbox gets: a new mailbox's at `now`, and never `old`.
pub(crate) fn renewed(old: u32, now: u64, id: crate::MailboxId) -> u32 {
    match tree::uid_validity(now, id) {
        same if same == old => tree::uid_validity(now.wrapping_add(1), id),
        fresh => fresh,
    }
}

#[cfg(test)]
mod tests;

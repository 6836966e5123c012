//! Deleting an account's mail, once the directory has deleted the account (the admin API's
//! `DELETE /api/v1/accounts/{address}?delete_mail=true`; docs/admin-api.md).
//!
//! Everything of the account goes: its mailboxes, emails, indexes, counters, uploads, push
//! subscriptions and the caller's records kept beside them ([`Beside`]: the migration's).
//! Each email and upload gives its bytes back to the tenant it was counted against, and every
//! reference the account's records held on a blob is released, in the commit that deletes
//! the record: a blob no one refers to any more is collected as after an expunge.
//!
//! Order matters, because mail may still come in while this runs (a message in DATA when
//! the account was deleted, an IMAP session still logged in):
//! 1. the mailboxes go first: every ingest, APPEND or copy expects the version of the
//!    mailbox it writes to, so none can add mail once its mailbox is gone;
//! 2. then every other record of the account, a page at a time, in key order;
//! 3. the account's `init` marker is kept: without it, the next delivery would make the
//!    special-use mailboxes again ([`Mail::ensure_account`]); with it, such a delivery finds
//!    no mailbox and fails with a temporary error (the sender tries again and the
//!    directory then refuses the address). Account ids are never given again, so the
//!    marker bars no other account;
//! 4. before all that, the tree key is set to [`keys::TREE_DELETED`], and kept: a change of
//!    the tree already under way conflicts and, read again, is refused, and so is every
//!    later one (a session still logged in cannot CREATE a mailbox no one would own).
//!
//! A write that races a page makes that page's commit conflict: it is read and tried
//! again, a bounded number of times ([`Error::Busy`] past them). Safe to call again after
//! a failure: what is left is removed.

use std::collections::BTreeMap;

use hameau_store::{Batch, Scan};

use crate::keys;
use crate::{AccountId, Beside, Email, Error, Mail};

/// Records deleted per commit: far below `store.batch_ops_max` (each may add a blob
/// release), a short commit between two looks at the rest of the server.
const PAGE_MAX: usize = 500;

/// Times a page is read again after a conflict before giving up.
const CONFLICTS_MAX: usize = 16;

/// What [`Mail::delete_account_mail`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MailDeleted {
    /// Emails destroyed.
    pub emails: u64,
    /// Their bytes and those of the account's uploads, given back to the tenant.
    pub bytes: u64,
    /// Records deleted in all (emails, indexes, mailboxes, counters…).
    pub records: u64,
}

impl Mail {
    /// Deletes every record of `account`'s mail (see the module's documentation). `tenant`
    /// is the account's (its mail's cluster: the directory no longer knows the account).
    pub async fn delete_account_mail(
        &self,
        account: AccountId,
        tenant: &str,
        beside: &Beside<'_>,
    ) -> Result<MailDeleted, Error> {
        let at = self.at_tenant(tenant).await?;
        let mut deleted = MailDeleted::default();
        let (init, tree) = (keys::initialised(account), keys::mailbox_tree(account));
        let keep = [init.as_slice(), tree.as_slice()];
        // 0. The tree can no longer change.
        let mut batch = Batch::new();
        batch.set(&tree, keys::TREE_DELETED);
        crate::settings_changed(&mut batch);
        at.commit(batch).await?;
        // 1. The mailboxes (records and names): no mail comes in after.
        for prefix in [keys::mailboxes(account), keys::mailbox_names(account)] {
            self.delete_under(&at, &prefix, &keep, &mut deleted).await?;
        }
        // 2. Everything else of the account's, `init` and the tree key excepted.
        self.delete_under(&at, &keys::account_start(account), &keep, &mut deleted).await?;
        // 3. Its records outside its prefix.
        for prefix in [crate::client_records::push_prefix(account), (beside.prefix_of)(account)] {
            self.delete_under(&at, &prefix, &keep, &mut deleted).await?;
        }
        Ok(deleted)
    }

    /// Deletes every key under `prefix` but those in `keep`, a page at a time: each email's bytes
    /// given back to its tenant and each blob reference released in the same commit.
    async fn delete_under(
        &self,
        at: &hameau_store::placement::Placed,
        prefix: &[u8],
        keep: &[&[u8]],
        deleted: &mut MailDeleted,
    ) -> Result<(), Error> {
        let mut after: Option<Vec<u8>> = None;
        let mut conflicts = 0;
        loop {
            let mut scan = Scan::prefix(prefix).limit(PAGE_MAX);
            if let Some(key) = &after {
                scan = scan.after(key);
            }
            let page = at.scan(&scan).await?;
            let Some(last) = page.last().map(|entry| entry.key.clone()) else { return Ok(()) };
            let mut batch = Batch::new();
            let mut freed: BTreeMap<String, u64> = BTreeMap::new();
            let (mut emails, mut bytes, mut records) = (0, 0, 0);
            for entry in page.iter().filter(|entry| !keep.contains(&entry.key.as_slice())) {
                batch.expect_version(&entry.key, entry.version).delete(&entry.key);
                for hash in keys::blob_refs(&entry.key, &entry.value) {
                    batch.blob_release(&hash);
                }
                let charge = if keys::is_email(&entry.key) {
                    let email = crate::decode::<Email>(&entry.key, &entry.value).ok();
                    emails += u64::from(email.is_some());
                    email.map(|email| (email.size, email.tenant))
                } else {
                    crate::client_records::upload_charge(&entry.key, &entry.value)
                };
                if let Some((size, tenant)) = charge {
                    bytes += size;
                    if let Some(tenant) = tenant {
                        *freed.entry(tenant).or_default() += size;
                    }
                }
                records += 1;
            }
            if records == 0 {
                // Only kept keys on this page.
                after = Some(last);
                continue;
            }
            for (tenant, bytes) in &freed {
                batch.add(&keys::tenant_used(tenant), -(*bytes as i64));
            }
            // The deliveries' caches read the account's mailboxes again.
            crate::settings_changed(&mut batch);
            match at.commit(batch).await {
                Ok(_) => {
                    deleted.emails += emails;
                    deleted.bytes += bytes;
                    deleted.records += records;
                    after = Some(last);
                }
                Err(hameau_store::Error::Conflict { .. }) if conflicts < CONFLICTS_MAX => {
                    // Written meanwhile: this page is read again.
                    conflicts += 1;
                    crate::backoff(conflicts).await;
                }
                Err(hameau_store::Error::Conflict { .. }) => return Err(Error::Busy),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Forgets `tenant`'s usage counter, once the directory has deleted the tenant (and so
    /// every account of it): a tenant id may be given again to another commune, which must
    /// start from zero.
    pub async fn forget_tenant(&self, tenant: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&keys::tenant_used(tenant));
        self.at_tenant(tenant).await?.commit(batch).await?;
        Ok(())
    }
}

//! Deleting a deleted account's mail: right after `DELETE /api/v1/accounts/{address}`,
//! and again in the background ([`forget_deleted_accounts`], run by `hameau serve` every
//! [`FORGET_SWEEP_S`]) for a deletion cut short (a store that stopped answering, a node
//! killed in the middle). The directory marks the account's mail as to be deleted in the
//! commit that deletes the account (`Directory::accounts_to_forget`), and the mark goes
//! once [`forget_account`] has deleted it all: nothing is left that belongs to no one, and
//! the commune's quota gets its bytes back.

use hameau_directory::Directory;
use hameau_mailbox::{Mail, MailDeleted};

/// How often `hameau serve` looks for deleted accounts whose mail is left: ten minutes
/// (a deletion cut short is rare, and one look costs a scan that finds nothing).
pub const FORGET_SWEEP_S: u64 = 600;

/// Marks read per page of a sweep.
const PAGE_MAX: usize = 100;

/// Deletes the mail of the deleted account `id` of `tenant`, then its mark.
pub async fn forget_account(directory: &Directory, mail: &Mail, id: u64, tenant: &str) -> Result<MailDeleted, String> {
    let beside = hameau_mailbox::Beside {
        prefix_of: &hameau_migrate::destination::account_records_prefix,
        account_of: &hameau_migrate::destination::record_account,
    };
    let deleted = mail.delete_account_mail(id, tenant, &beside).await.map_err(|e| e.to_string())?;
    directory.account_forgotten(id).await.map_err(|e| e.to_string())?;
    Ok(deleted)
}

/// Finishes every deletion cut short: each deleted account's mail still marked is deleted
/// ([`forget_account`]). One that fails again is logged and left for the next sweep; the
/// others go on. Returns how many accounts were finished.
pub async fn forget_deleted_accounts(directory: &Directory, mail: &Mail) -> Result<usize, String> {
    let mut finished = 0;
    let mut after = None;
    loop {
        let page = directory.accounts_to_forget(after, PAGE_MAX).await.map_err(|e| e.to_string())?;
        let Some((last, _)) = page.last() else { return Ok(finished) };
        after = Some(*last);
        let full = page.len() == PAGE_MAX;
        for (id, tenant) in page {
            match forget_account(directory, mail, id, &tenant).await {
                Ok(deleted) => {
                    finished += 1;
                    tracing::info!(
                        account = id,
                        %tenant,
                        emails = deleted.emails,
                        bytes = deleted.bytes,
                        "the rest of a deleted account's mail is deleted"
                    );
                }
                Err(error) => tracing::warn!(
                    account = id,
                    %tenant,
                    %error,
                    "a deleted account's mail could not be deleted yet; tried again later"
                ),
            }
        }
        if !full {
            return Ok(finished);
        }
    }
}

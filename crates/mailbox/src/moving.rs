//! Moving a tenant's mail to another database cluster while every node serves it
//! (`hameau cluster move`; docs/storage.md): a first copy while it is served, then, under a
//! pause of its mail, what changed since; the store's `placement` and `relocate` do the
//! steps, this module says which records are the tenant's.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use hameau_store::relocate::{self, CaughtUp, Copied, Selection};

use crate::keys::{self, Owner};
use crate::{AccountId, Error, Mail};

/// Records a caller keeps beside an account's mail, in the same commits
/// ([`Mail::ingest_many_with`]'s): they move with it.
pub struct Beside<'a> {
    /// Every such record of an account is under this prefix of the account's.
    pub prefix_of: &'a (dyn Fn(AccountId) -> Vec<u8> + Send + Sync),
    /// The account a record of the caller's belongs to; `None` for a key not the caller's.
    pub account_of: &'a (dyn Fn(&[u8]) -> Option<AccountId> + Send + Sync),
}

/// What a move did.
#[derive(Debug, serde::Serialize)]
pub struct MoveReport {
    pub tenant: String,
    pub from: String,
    pub to: String,
    pub accounts: usize,
    /// The first copy, made while the tenant's mail was served, checked with every blob
    /// read back and hashed.
    pub copied: Copied,
    /// What changed meanwhile, written under the pause, and the digest then, the same in
    /// both clusters.
    pub caught_up: CaughtUp,
    /// How long the first copy took (the tenant's mail was served meanwhile).
    pub copy_ms: u64,
    /// How long the tenant's mail waited: from marking it moving to the map naming the
    /// destination.
    pub pause_ms: u64,
    /// Records removed from the cluster left.
    pub removed: u64,
}

/// The records of a tenant and its accounts in a cluster: the mail model's, and the
/// caller's kept beside them.
struct TenantPart<'a> {
    prefixes: Vec<Vec<u8>>,
    keep: Box<KeyFilter<'a>>,
}

/// Whether a key is one of the part's.
type KeyFilter<'a> = dyn Fn(&[u8]) -> bool + Send + Sync + 'a;

impl<'a> TenantPart<'a> {
    fn new(tenant: &'a str, accounts: &[AccountId], beside: &'a Beside<'a>) -> TenantPart<'a> {
        let mut prefixes = keys::tenant_prefixes(tenant, accounts);
        prefixes.extend(accounts.iter().map(|account| (beside.prefix_of)(*account)));
        let accounts: HashSet<AccountId> = accounts.iter().copied().collect();
        let keep = move |key: &[u8]| match keys::owner(key) {
            Some(Owner::Account(account)) => accounts.contains(&account),
            Some(Owner::Tenant(owner)) => owner == tenant,
            // The store's own (its count of settings changes): stays.
            Some(Owner::Installation) => false,
            None => (beside.account_of)(key).is_some_and(|account| accounts.contains(&account)),
        };
        TenantPart { prefixes, keep: Box::new(keep) }
    }

    fn selection(&self) -> Selection<'_> {
        Selection { prefixes: self.prefixes.clone(), keep: &*self.keep, blob_refs: &keys::blob_refs }
    }
}

impl Mail {
    /// Moves the mail of `tenant` to the cluster `to`: copies it while it is served, then
    /// marks it moving (its mail waits), fences it in its cluster, writes what changed
    /// since the copy (the mail of accounts made meanwhile included), names the
    /// destination in the map, and after `grace` removes the copy left behind. A failure
    /// before the map names the destination removes what was copied and leaves the tenant
    /// where it was.
    pub async fn move_tenant(
        &self,
        tenant: &str,
        to: &str,
        grace: Duration,
        beside: &Beside<'_>,
    ) -> Result<MoveReport, Error> {
        let Some(placement) = &self.placement else {
            return Err(Error::Cannot("no [store.clusters]: every tenant's mail is in the one store".into()));
        };
        let clusters = &placement.clusters;
        let place = clusters.place(tenant).await?;
        if let Some(moving_to) = &place.moving_to {
            let problem = format!("tenant {tenant} is already being moved from {} to {moving_to}", place.cluster);
            return Err(Error::Cannot(problem));
        }
        let from = place.cluster;
        if from == to {
            return Err(Error::Cannot(format!("tenant {tenant} is in cluster {to} already")));
        }
        let (source, destination) = (clusters.store(&from)?.clone(), clusters.store(to)?.clone());
        let accounts = placement.tenants.accounts_of(tenant).await?;
        let started = Instant::now();
        let selection = TenantPart::new(tenant, &accounts, beside);
        let selection = selection.selection();
        let copied = match relocate::copy(&source, &destination, &selection).await {
            Ok(copied) => copied,
            Err(hameau_store::Error::NotEmpty) => {
                let problem = format!("cluster {to} holds mail of tenant {tenant} already (a move left it?)");
                return Err(Error::Cannot(problem));
            }
            Err(e) => {
                abandon(clusters, tenant, None, &destination, &selection).await?;
                return Err(e.into());
            }
        };
        let copy_ms = started.elapsed().as_millis() as u64;
        let paused = Instant::now();
        match clusters.begin_move(tenant, to).await {
            Ok(left) if left == from => {}
            Ok(left) => {
                // Another move came first: this copy is not where the tenant is.
                abandon(clusters, tenant, Some(&left), &destination, &selection).await?;
                return Err(Error::Cannot(format!("tenant {tenant} moved meanwhile: run the move again")));
            }
            Err(e) => {
                abandon(clusters, tenant, None, &destination, &selection).await?;
                return Err(e.into());
            }
        }
        // The accounts again, now that the tenant's mail waits: one made during the copy
        // has mail in the cluster left, which the catch-up brings.
        let accounts_now = match placement.tenants.accounts_of(tenant).await {
            Ok(mut now) => {
                // An account removed meanwhile: its records copied go too (and away here).
                let gone: Vec<AccountId> = accounts.iter().copied().filter(|account| !now.contains(account)).collect();
                now.extend(gone);
                now
            }
            Err(e) => {
                abandon(clusters, tenant, Some(&from), &destination, &selection).await?;
                return Err(e);
            }
        };
        let part_now = TenantPart::new(tenant, &accounts_now, beside);
        let selection_now = part_now.selection();
        let caught_up = async {
            clusters.fence(tenant, &from).await?;
            relocate::catch_up(&source, &destination, &selection_now).await
        }
        .await;
        let caught_up = match caught_up {
            Ok(caught_up) => caught_up,
            Err(e) => {
                abandon(clusters, tenant, Some(&from), &destination, &selection_now).await?;
                return Err(e.into());
            }
        };
        clusters.finish_move(tenant, to).await?;
        let pause_ms = paused.elapsed().as_millis() as u64;
        tracing::info!(tenant, from, to, copy_ms, pause_ms, keys = caught_up.digest.keys, "tenant moved");
        tokio::time::sleep(grace).await;
        let removed = relocate::remove(&source, &selection_now).await?;
        Ok(MoveReport {
            tenant: tenant.to_string(),
            from,
            to: to.to_string(),
            accounts: accounts_now.len(),
            copied,
            caught_up,
            copy_ms,
            pause_ms,
            removed,
        })
    }
}

/// Undoes a move that failed before the map named its destination: nothing of the copy
/// stays in `destination`, and when the tenant was marked moving, it stays in `left`,
/// unfenced.
async fn abandon(
    clusters: &hameau_store::placement::Clusters,
    tenant: &str,
    left: Option<&str>,
    destination: &hameau_store::Store,
    selection: &Selection<'_>,
) -> Result<(), hameau_store::Error> {
    relocate::remove(destination, selection).await?;
    match left {
        Some(left) => clusters.abort_move(tenant, left).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use hameau_store::Store;
    use hameau_store::placement::Clusters;

    use super::*;
    use crate::{AccountTenants, AccountsOf, Ingest, Quota, Role, TenantOf};

    const NOW: u64 = 1_795_000_000;

    /// Accounts 1, 2 and 4 are tenant t's, 3 is tenant u's. Account 4 is listed from the
    /// second time t's accounts are asked for: made while a move copied t.
    #[derive(Debug, Default)]
    struct Tenants {
        asked: std::sync::atomic::AtomicUsize,
    }

    impl AccountTenants for Tenants {
        fn tenant_of(&self, account: AccountId) -> TenantOf<'_> {
            Box::pin(async move { Ok(Some(if account == 3 { "u" } else { "t" }.to_string())) })
        }

        fn accounts_of<'a>(&'a self, tenant: &'a str) -> AccountsOf<'a> {
            let first = self.asked.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 0;
            Box::pin(async move {
                Ok(match tenant {
                    "u" => vec![3],
                    _ if first => vec![1, 2],
                    _ => vec![1, 2, 4],
                })
            })
        }
    }

    fn ingest(n: usize, inbox: u32, tenant: &str) -> Ingest {
        let raw =
            format!("From: a@b.fr\r\nTo: c@d.fr\r\nSubject: m{n}\r\nMessage-ID: <m{n}@b.fr>\r\n\r\nmessage {n}\r\n");
        let quota = Quota { tenant: Some(tenant.into()), ..Quota::default() };
        Ingest { raw: raw.into_bytes().into(), mailboxes: vec![inbox], keywords: vec![], received_at: NOW, quota }
    }

    async fn inbox(mail: &Mail, account: AccountId) -> u32 {
        let mailboxes = mail.ensure_account(account, NOW).await.unwrap();
        mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap().id
    }

    #[tokio::test]
    async fn a_tenant_moves_with_its_mail_and_its_watchers_follow() {
        let (control, b) = (Store::memory(Default::default()), Store::memory(Default::default()));
        let others = BTreeMap::from([("b".to_string(), b.clone())]);
        let clusters = Clusters::new(control.clone(), others, Duration::from_secs(2)).await.unwrap();
        let mail = Mail::new(control.clone()).with_placement(clusters, Arc::new(Tenants::default()));
        for account in [1, 2, 3, 4] {
            let inbox = inbox(&mail, account).await;
            let tenant = if account == 3 { "u" } else { "t" };
            for n in 0..5 {
                mail.ingest(account, ingest(n, inbox, tenant)).await.unwrap();
            }
        }
        let mut watch = mail.subscribe(1).await.unwrap();
        let no_beside = Beside { prefix_of: &|account| format!("x/{account}/").into_bytes(), account_of: &|_| None };

        let report = mail.move_tenant("t", "b", Duration::ZERO, &no_beside).await.unwrap();
        assert_eq!((report.from.as_str(), report.to.as_str(), report.accounts), ("main", "b", 3));
        // The same five messages in accounts 1 and 2: five blobs, two references each;
        // account 4's (made during the copy) came with the catch-up.
        let digest = &report.copied.digest;
        assert_eq!((digest.blobs, digest.blob_refs), (5, 10));
        assert_eq!((report.caught_up.digest.blob_refs, report.removed), (15, report.caught_up.digest.keys));
        assert!(report.caught_up.written > 0);
        // Tenant t's mail is in b only; u's stayed in main.
        let in_store = |store: &Store, account: AccountId| {
            let store = store.clone();
            async move { !store.scan(&hameau_store::Scan::prefix(&keys::account_start(account))).await.unwrap().is_empty() }
        };
        assert!(in_store(&b, 1).await && in_store(&b, 2).await && in_store(&b, 4).await && !in_store(&b, 3).await);
        assert!(!in_store(&control, 1).await && !in_store(&control, 4).await && in_store(&control, 3).await);
        // The tenant's usage moved with it (each account's copy counts).
        assert_eq!(mail.tenant_used("t").await.unwrap(), 3 * report.copied.blob_bytes);
        // Served from b: reads, a delivery, and the watcher made before the move hears it.
        let inbox1 = inbox(&mail, 1).await;
        assert_eq!(mail.status(1, inbox1).await.unwrap().messages, 5);
        mail.ingest(1, ingest(9, inbox1, "t")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), async {
            while watch.modseq() < mail.modseq(1).await.unwrap() {
                watch.changed().await.unwrap();
            }
        })
        .await
        .expect("the watcher heard the delivery in b");
        assert_eq!(mail.status(1, inbox1).await.unwrap().messages, 6);
        // Moving again where it is is refused; back to main works, unfenced there.
        assert!(matches!(mail.move_tenant("t", "b", Duration::ZERO, &no_beside).await, Err(Error::Cannot(_))));
        mail.move_tenant("t", "main", Duration::ZERO, &no_beside).await.unwrap();
        mail.ingest(2, ingest(10, inbox(&mail, 2).await, "t")).await.unwrap();
        assert!(in_store(&control, 2).await && !in_store(&b, 2).await);
    }
}

//! Which store holds an account's mail when tenants are spread over several database
//! clusters (`[store.clusters]`, issue 16 item 5; `hameau_store::placement`).
//!
//! The mail model routes every call by account: the account's tenant (asked of the
//! directory through [`AccountTenants`], which this crate does not know), then the
//! tenant's cluster. Without clusters, every account's mail is in the one store and no
//! lookup is made. What the mail model writes is all one tenant's per commit (an account's
//! records and its tenant's usage counter), so each commit goes to one cluster; a delivery
//! to accounts of tenants on two clusters is one commit per cluster ([`crate::Mail::ingest_many`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use hameau_store::placement::{Clusters, Placed};

use crate::{AccountId, Error};

/// A future of the tenant of an account.
pub type TenantOf<'a> = Pin<Box<dyn Future<Output = Result<Option<String>, Error>> + Send + 'a>>;

/// A future of the accounts of a tenant.
pub type AccountsOf<'a> = Pin<Box<dyn Future<Output = Result<Vec<AccountId>, Error>> + Send + 'a>>;

/// Who tells the tenant of an account, and the accounts of a tenant (the directory, wired
/// by the binary).
pub trait AccountTenants: Send + Sync + std::fmt::Debug {
    /// The tenant of `account`; `None` for an account the directory does not know (its
    /// mail, if any, is in the control store).
    fn tenant_of(&self, account: AccountId) -> TenantOf<'_>;

    /// Every account of `tenant` now (a move reads them again under its pause: an account
    /// made during the first copy moves too).
    fn accounts_of<'a>(&'a self, tenant: &'a str) -> AccountsOf<'a>;
}

/// Accounts whose tenant is remembered before the memory is emptied (an account never
/// changes tenant).
const TENANTS_CACHED_MAX: usize = 100_000;

/// The clusters, and who tells the tenant of an account.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub(crate) clusters: Clusters,
    pub(crate) tenants: Arc<dyn AccountTenants>,
    known: Arc<Mutex<HashMap<AccountId, String>>>,
}

impl Placement {
    pub(crate) fn new(clusters: Clusters, tenants: Arc<dyn AccountTenants>) -> Placement {
        Placement { clusters, tenants, known: Arc::default() }
    }

    /// The store of `account`'s tenant, fenced (see `hameau_store::placement`).
    pub(crate) async fn for_account(&self, account: AccountId) -> Result<Placed, Error> {
        let known = self.known.lock().expect("account tenants poisoned").get(&account).cloned();
        let tenant = match known {
            Some(tenant) => tenant,
            None => match self.tenants.tenant_of(account).await? {
                None => return Ok(Placed::plain(self.clusters.control().clone())),
                Some(tenant) => {
                    let mut known = self.known.lock().expect("account tenants poisoned");
                    if known.len() >= TENANTS_CACHED_MAX {
                        known.clear();
                    }
                    known.insert(account, tenant.clone());
                    tenant
                }
            },
        };
        Ok(self.clusters.for_tenant(&tenant).await?)
    }
}

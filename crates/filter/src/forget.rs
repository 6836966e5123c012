//! What the filter keeps of a tenant, removed when the tenant is deleted: its settings
//! (`fs/`), held mail (`fq/`), classifier (`fb/t/`) and correspondents (`fc/`).
//!
//! Tenant ids are the operator's names and may be given again to a new commune: a tenant
//! created under the id of a deleted one must not inherit its held mail, its settings or
//! what its agents taught the classifier. The directory knows nothing of the filter, so the
//! caller that deletes a tenant (the admin API, for the CLI too) calls [`forget_tenant`]
//! after the deletion, and again when a tenant is created (a deletion whose process died
//! before the forgetting leaves nothing behind for the next owner of the id).

use hameau_store::{Batch, Scan, Store};

use crate::{Error, Quarantine, Settings};

/// Keys removed per commit: far below `store.batch_ops_max`, a short commit between two
/// looks at the rest of the server.
const PAGE_MAX: usize = 1000;

/// What [`forget_tenant`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Held messages deleted.
    pub held: usize,
    /// Records of the classifier and of the correspondents deleted.
    pub records: usize,
}

/// Removes everything the filter keeps of `tenant`, a page at a time. Safe to call for a
/// tenant that has nothing (a few empty reads) and to call again after a failure.
pub async fn forget_tenant(
    store: &Store,
    quarantine: &Quarantine,
    settings: &Settings,
    tenant: &str,
) -> Result<Forgotten, Error> {
    if tenant.is_empty() || tenant.contains('/') {
        // Not an id the directory gives: no prefix of it may be trusted to be its own.
        return Ok(Forgotten::default());
    }
    settings.forget_tenant(tenant).await?;
    let held = quarantine.forget_tenant(tenant).await?;
    let mut records = 0;
    for prefix in [
        [crate::learning::PREFIX, b"t/", tenant.as_bytes(), b"/"].concat(),
        [crate::contacts::PREFIX, tenant.as_bytes(), b"/"].concat(),
    ] {
        loop {
            let entries = store.scan(&Scan::prefix(&prefix).limit(PAGE_MAX)).await?;
            if entries.is_empty() {
                break;
            }
            let mut batch = Batch::new();
            for entry in &entries {
                batch.delete(&entry.key);
            }
            store.commit(batch).await?;
            records += entries.len();
        }
    }
    Ok(Forgotten { held, records })
}

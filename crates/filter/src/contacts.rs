//! The tenant's correspondents: the addresses (and their domains) its agents wrote to, and
//! the senders of its clean, authenticated mail. A message from an address the tenant
//! never corresponded with gets `FIRST_CONTACT` (the big providers' "you don't often get
//! mail from…"), and the lookalike rules compare senders with the domains corresponded
//! with (`LOOKALIKE_KNOWN_DOMAIN`).
//!
//! Decisions (docs/filter.md):
//! - Per tenant, not per account: in a town hall the secretary answers the mayor's
//!   correspondents; an address one agent wrote to is known to all of them.
//! - What counts as corresponding: mail an agent sent (submission), and inbound mail that
//!   authenticated (DMARC pass) and that the filter delivered without any finding. A
//!   warned, junked or held message never makes its sender known, so a phisher's second
//!   message is marked as the first was.
//! - Bounded: at most [`Options::contacts_max`] addresses per tenant; past it, new ones
//!   are not recorded (logged by the caller) and are marked first contact.
//!
//! Keys (`fc/`): `fc/{tenant}/a/{address}` and `fc/{tenant}/d/{domain}` (value: when
//! last seen, seconds since the epoch, 8 bytes big-endian), and the counter
//! `fc/{tenant}/n` of addresses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_store::{Batch, Scan, Store};

use crate::Options;

/// The prefix of every record of this module.
pub const PREFIX: &[u8] = b"fc/";

/// A tenant's known domains and when they were read.
type Cached = (Instant, Arc<Vec<String>>);

/// The correspondents of every tenant, over the store, with bounded caches of each
/// tenant's known domains and of the senders found known (both read for every inbound
/// message).
#[derive(Clone)]
pub struct Contacts {
    store: Store,
    contacts_max: u64,
    known_domains_max: usize,
    cache_tenants_max: usize,
    cache_ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
    /// Keys of addresses found known, with when: only known ones, as an address becomes
    /// known and never unknown again while its tenant lives (a tenant deleted and created
    /// again under the same name within `cache_s` may find a sender known for that time).
    senders_max: usize,
    senders: Arc<Mutex<HashMap<Vec<u8>, Instant>>>,
}

impl std::fmt::Debug for Contacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contacts").field("contacts_max", &self.contacts_max).finish_non_exhaustive()
    }
}

impl Contacts {
    pub fn new(store: Store, options: &Options) -> Contacts {
        Contacts {
            store,
            contacts_max: options.contacts_max,
            known_domains_max: options.known_domains_max,
            cache_tenants_max: options.cache_tenants_max,
            cache_ttl: Duration::from_secs(options.cache_s),
            cache: Arc::new(Mutex::new(HashMap::new())),
            senders_max: options.contacts_cache_entries,
            senders: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Whether `tenant` corresponded with `address` before. A known sender is answered
    /// from memory for [`Options::cache_s`] (at most [`Options::contacts_cache_entries`]).
    pub async fn is_known(&self, tenant: &str, address: &str) -> Result<bool, hameau_store::Error> {
        let key = address_key(tenant, &address.to_lowercase());
        if let Some(at) = self.senders.lock().expect("not poisoned").get(&key)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(true);
        }
        let known = self.store.get(&key).await?.is_some();
        if known && self.senders_max > 0 {
            let mut senders = self.senders.lock().expect("not poisoned");
            if senders.len() >= self.senders_max {
                // Bounded: emptied whole (each sender is read again once, on its next message).
                senders.clear();
            }
            senders.insert(key, Instant::now());
        }
        Ok(known)
    }

    /// How many known senders are kept in memory.
    #[cfg(test)]
    pub(crate) fn cached_senders(&self) -> usize {
        self.senders.lock().expect("not poisoned").len()
    }

    /// Records that `tenant` corresponded with `addresses` at `now`. Addresses already
    /// known only have their time renewed; new ones count against
    /// [`Options::contacts_max`], and those past it are not recorded. Returns how many
    /// could not be recorded.
    pub async fn record(&self, tenant: &str, addresses: &[String], now: u64) -> Result<usize, hameau_store::Error> {
        let mut dropped = 0;
        for address in addresses {
            let address = address.to_lowercase();
            let Some((_, domain)) =
                address.rsplit_once('@').filter(|(local, domain)| !local.is_empty() && !domain.is_empty())
            else {
                continue;
            };
            let key = address_key(tenant, &address);
            let seen = now.to_be_bytes();
            let mut batch = Batch::new();
            match self.store.get(&key).await? {
                Some(entry) => {
                    // Renewed at most once a day: a busy correspondent costs no write per message.
                    let last = entry.value.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes);
                    if now.saturating_sub(last) < 86_400 {
                        continue;
                    }
                    batch.expect_version(&key, entry.version);
                }
                None => {
                    batch.expect_absent(&key);
                    batch.add_at_most(&count_key(tenant), 1, self.contacts_max as i64);
                }
            }
            batch.set(&key, &seen);
            batch.set(&domain_key(tenant, domain), &seen);
            match self.store.commit(batch).await {
                Ok(_) => {}
                Err(hameau_store::Error::CounterBound { .. }) => dropped += 1,
                // Another delivery recorded it first: known either way.
                Err(hameau_store::Error::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(dropped)
    }

    /// The domains `tenant` corresponded with, at most [`Options::known_domains_max`]
    /// (those first in order), sorted; kept [`Options::cache_s`] in memory.
    pub async fn known_domains(&self, tenant: &str) -> Result<Arc<Vec<String>>, hameau_store::Error> {
        if let Some((at, domains)) = self.cache.lock().expect("not poisoned").get(tenant)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(domains.clone());
        }
        let prefix = domain_key(tenant, "");
        let entries = self.store.scan(&Scan::prefix(&prefix).limit(self.known_domains_max)).await?;
        let domains: Vec<String> = entries
            .iter()
            .filter_map(|entry| std::str::from_utf8(&entry.key[prefix.len()..]).ok().map(str::to_owned))
            .collect();
        let domains = Arc::new(domains);
        let mut cache = self.cache.lock().expect("not poisoned");
        if cache.len() >= self.cache_tenants_max {
            // Bounded: the stalest half goes (a simple sweep, not a true LRU; a tenant
            // dropped is read again on its next message).
            let mut ages: Vec<(Instant, String)> = cache.iter().map(|(t, (at, _))| (*at, t.clone())).collect();
            ages.sort();
            for (_, tenant) in ages.into_iter().take(self.cache_tenants_max / 2 + 1) {
                cache.remove(&tenant);
            }
        }
        cache.insert(tenant.to_owned(), (Instant::now(), domains.clone()));
        Ok(domains)
    }
}

/// The tenant a record of this module belongs to (for the one-tenant restore), or `None`
/// when the key is not this module's.
pub fn record_owner(key: &[u8]) -> Option<String> {
    let rest = key.strip_prefix(PREFIX)?;
    let end = rest.iter().position(|byte| *byte == b'/').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok().map(str::to_owned)
}

fn address_key(tenant: &str, address: &str) -> Vec<u8> {
    format!("fc/{tenant}/a/{address}").into_bytes()
}

fn domain_key(tenant: &str, domain: &str) -> Vec<u8> {
    format!("fc/{tenant}/d/{domain}").into_bytes()
}

fn count_key(tenant: &str) -> Vec<u8> {
    format!("fc/{tenant}/n").into_bytes()
}

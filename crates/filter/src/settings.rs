//! A tenant's own filter settings: its thresholds and how its agents are warned, over
//! the `[filter]` defaults (issue 14, "thresholds per tenant, defaults in config").
//!
//! Stored under `fs/` + tenant id, one JSON record per tenant that set any; no record is
//! the defaults. The MX reads them for every message, so [`Settings`] keeps them in a
//! small bounded cache (`filter.cache_tenants_max` tenants, each read again after
//! `filter.cache_s`), emptied of a tenant when its settings are written through
//! this same handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_directory::{Directory, Principal};
use hameau_store::{Batch, Store};
use serde::{Deserialize, Serialize};

use crate::error::corrupt;
use crate::{Error, Thresholds, WarningStyle};

/// Where a tenant's settings live: `fs/` + tenant id.
const PREFIX: &[u8] = b"fs/";

/// A tenant's own filter settings; a part absent is the configuration's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantSettings {
    /// The scores from which each action applies, given whole (a key left out takes the
    /// built-in default).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "object_only")]
    pub thresholds: Option<Thresholds>,
    /// How the tenant's agents are warned, given whole.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "object_only")]
    pub warning: Option<WarningStyle>,
}

/// A part given as a JSON object (or `null`, absent). serde's derive also reads a struct
/// from an array (`"thresholds": []` would be every default), which the API's schema
/// refuses: found by schemathesis (ST201).
fn object_only<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    match Option::<serde_json::Value>::deserialize(deserializer)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(value @ serde_json::Value::Object(_)) => {
            serde_json::from_value(value).map(Some).map_err(serde::de::Error::custom)
        }
        Some(_) => Err(serde::de::Error::custom("expected an object")),
    }
}

impl TenantSettings {
    /// Each part's ranges, the key named as `thresholds.junk_score` or
    /// `warning.subject_tag`.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        if let Some(thresholds) = &self.thresholds {
            thresholds.check("thresholds")?;
        }
        if let Some(warning) = &self.warning {
            warning.check("warning")?;
        }
        Ok(())
    }
}

/// The tenants' settings over the store, with the defaults of `[filter]`. Cheap to clone:
/// every clone shares one cache, so that a write through the API is seen at once by the
/// MX holding a clone.
#[derive(Clone, Debug)]
pub struct Settings {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    thresholds: Thresholds,
    warning: WarningStyle,
    cache_tenants: usize,
    cache_for: Duration,
    cache: Mutex<HashMap<String, (Instant, TenantSettings)>>,
}

impl Settings {
    pub fn new(store: Store, options: &crate::Options) -> Settings {
        Settings {
            inner: Arc::new(Inner {
                store,
                thresholds: options.thresholds,
                warning: options.warning.clone(),
                cache_tenants: options.cache_tenants_max,
                cache_for: Duration::from_secs(options.cache_s),
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration's defaults.
    pub fn defaults(&self) -> (Thresholds, WarningStyle) {
        (self.inner.thresholds, self.inner.warning.clone())
    }

    /// What applies to `tenant`'s mail: its own settings over the defaults. No scope
    /// check: for the MX.
    pub async fn effective(&self, tenant: &str) -> Result<(Thresholds, WarningStyle), Error> {
        let own = self.read(tenant).await?;
        Ok((own.thresholds.unwrap_or(self.inner.thresholds), own.warning.unwrap_or_else(|| self.inner.warning.clone())))
    }

    /// `tenant`'s own settings, for its admin or the operator.
    pub async fn get(
        &self,
        principal: &Principal,
        directory: &Directory,
        tenant: &str,
    ) -> Result<TenantSettings, Error> {
        administered(principal, directory, tenant).await?;
        self.read(tenant).await
    }

    /// Sets `tenant`'s own settings (its admin or the operator), each part checked; all
    /// parts absent is [`Settings::reset`].
    pub async fn set(
        &self,
        principal: &Principal,
        directory: &Directory,
        tenant: &str,
        settings: TenantSettings,
    ) -> Result<TenantSettings, Error> {
        administered(principal, directory, tenant).await?;
        settings.check().map_err(Error::Invalid)?;
        let mut batch = Batch::new();
        match settings == TenantSettings::default() {
            true => batch.delete(&key(tenant)),
            false => batch.set(&key(tenant), &serde_json::to_vec(&settings).expect("settings always serialise")),
        };
        self.inner.store.commit(batch).await?;
        self.forget(tenant);
        Ok(settings)
    }

    /// Removes `tenant`'s own settings: the defaults apply again.
    pub async fn reset(&self, principal: &Principal, directory: &Directory, tenant: &str) -> Result<(), Error> {
        self.set(principal, directory, tenant, TenantSettings::default()).await.map(|_| ())
    }

    /// `tenant`'s own settings, from the cache while fresh.
    async fn read(&self, tenant: &str) -> Result<TenantSettings, Error> {
        let now = Instant::now();
        if let Some((read_at, settings)) = self.cache().get(tenant)
            && now.duration_since(*read_at) < self.inner.cache_for
        {
            return Ok(settings.clone());
        }
        let key = key(tenant);
        let settings = match self.inner.store.get(&key).await? {
            Some(entry) => serde_json::from_slice(&entry.value).map_err(|e| corrupt(&key, e))?,
            None => TenantSettings::default(),
        };
        let mut cache = self.cache();
        // Bounded simply: a full cache starts again empty (a few thousand reads).
        if cache.len() >= self.inner.cache_tenants && !cache.contains_key(tenant) {
            cache.clear();
        }
        cache.insert(tenant.to_string(), (now, settings.clone()));
        Ok(settings)
    }

    /// Removes `tenant`'s own settings (the tenant is being deleted), without asking who.
    pub(crate) async fn forget_tenant(&self, tenant: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&key(tenant));
        self.inner.store.commit(batch).await?;
        self.forget(tenant);
        Ok(())
    }

    fn forget(&self, tenant: &str) {
        self.cache().remove(tenant);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, TenantSettings)>> {
        // A panic while the lock was held left a map that is still whole.
        self.inner.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The tenant whose record `key` is, for a one-tenant restore; `None` when the key is
/// not the settings'.
pub fn record_owner(key: &[u8]) -> Option<String> {
    let tenant = key.strip_prefix(PREFIX)?;
    std::str::from_utf8(tenant).ok().map(str::to_string)
}

fn key(tenant: &str) -> Vec<u8> {
    [PREFIX, tenant.as_bytes()].concat()
}

/// The caller administers `tenant`, which exists: a user is refused (403), another
/// tenant reads as an absent one (404), as the directory answers.
async fn administered(principal: &Principal, directory: &Directory, tenant: &str) -> Result<(), Error> {
    principal.administered_tenant()?;
    directory.get_tenant(principal, tenant).await?;
    Ok(())
}

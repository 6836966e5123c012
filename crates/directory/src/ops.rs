//! The directory's operations. Each takes the caller's [`Principal`] and checks its scope:
//! out-of-scope objects are reported as missing ([`Error::NotFound`]); in-scope actions the
//! role may not take are [`Error::Forbidden`].

use std::net::IpAddr;

use hameau_store::{Batch, Expect};
use serde::{Deserialize, Deserializer, Serialize};

use crate::credentials::{
    app_password_id, compact_app_password, digests_match, display_app_password, new_api_key, new_app_password,
    parse_api_key, secret_digest,
};
use crate::limiter::{AuthLimiter, Verdict};
use crate::model::{self, Account, AccountRole, Alias, ApiKey, AppPassword, Domain, KeyScope, Tenant};
use crate::records::{self, Backoff, Read, any, commit_new, commit_once, get, index_entries, index_page, set};
use crate::{Directory, Error, Principal, keys};

/// Longest free text (names), bytes.
const TEXT_BYTES_MAX: usize = 200;

/// 9999-12-31T23:59:59Z: no time the API accepts is later.
const LATEST_TIME_S: u64 = 253_402_300_799;

/// Largest quota: the store counts bytes in `i64`.
const QUOTA_BYTES_MAX: u64 = i64::MAX as u64;

/// Most accounts a tenant may be limited to: far above any commune (Paris employs about
/// 50,000 people), and within every integer type a client may use.
const ACCOUNTS_MAX_LIMIT: u32 = 1_000_000;

fn check_accounts_max(accounts_max: Option<u32>) -> Result<(), Error> {
    if accounts_max.is_some_and(|max| max > ACCOUNTS_MAX_LIMIT) {
        return Err(Error::invalid("accounts_max", format!("must be at most {ACCOUNTS_MAX_LIMIT}")));
    }
    Ok(())
}

fn check_quota(quota: Option<u64>) -> Result<(), Error> {
    if quota.is_some_and(|quota| quota > QUOTA_BYTES_MAX) {
        return Err(Error::invalid("quota_bytes", format!("must be at most {QUOTA_BYTES_MAX}")));
    }
    Ok(())
}

/// One page of a list, and the cursor for the next page if there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub siren: Option<String>,
    #[serde(default)]
    pub insee: Option<String>,
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default)]
    pub accounts_max: Option<u32>,
}

/// A partial update: absent fields are kept; `null` clears an optional field.
#[derive(Clone, Debug, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub siren: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub insee: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub quota_bytes: Option<Option<u64>>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>))]
    pub accounts_max: Option<Option<u32>>,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewDomain {
    /// The domain, in Unicode or ASCII form.
    pub name: String,
    pub tenant: String,
}

/// What a login used, for [`Directory::login_still_valid`]: the account, how many times
/// it had been disabled (the version of `keys::disabled`), and its credential (the
/// password's record version, or the application password's id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginStamp {
    account: u64,
    disabled: u64,
    credential: Credential,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Credential {
    Password { version: u64 },
    AppPassword { id: String },
}

/// Its `Debug` form leaves the password out: a request logged must not log a password.
#[derive(Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub address: String,
    #[serde(default)]
    pub display_name: String,
    /// Without a password the account cannot log in until one is set.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub quota_bytes: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub role: AccountRole,
}

/// Its `Debug` form leaves the password out.
#[derive(Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>))]
    pub quota_bytes: Option<Option<u64>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub role: Option<AccountRole>,
    #[serde(default)]
    pub may_send_as: Option<Vec<String>>,
}

impl std::fmt::Debug for NewAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewAccount")
            .field("address", &self.address)
            .field("display_name", &self.display_name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("quota_bytes", &self.quota_bytes)
            .field("enabled", &self.enabled)
            .field("role", &self.role)
            .finish()
    }
}

impl std::fmt::Debug for AccountUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountUpdate")
            .field("display_name", &self.display_name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("quota_bytes", &self.quota_bytes)
            .field("enabled", &self.enabled)
            .field("role", &self.role)
            .field("may_send_as", &self.may_send_as)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAlias {
    pub address: String,
    /// Addresses of accounts of the same tenant.
    pub targets: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AliasUpdate {
    pub targets: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewAppPassword {
    /// What it is for, e.g. "Thunderbird on the front-desk PC".
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
    pub scope: KeyScope,
    /// Seconds since the Unix epoch after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

fn yes() -> bool {
    true
}

/// Distinguishes an absent field (`None`) from `null` (`Some(None)`).
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// What an address delivers to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum AddressRecord {
    Account { id: u64, tenant: String },
    Alias { tenant: String, targets: Vec<u64>, created_at: u64 },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AppPasswordRecord {
    view: AppPassword,
    hash: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct ApiKeyRecord {
    key: ApiKey,
    secret_sha256: String,
    /// The account of a user key, resolved when the key was made.
    account_id: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PasswordRecord {
    hash: String,
}

/// `keys::mail_to_forget`'s record: the deleted account's tenant (its mail's cluster).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ForgetRecord {
    tenant: String,
}

// Scope rules.

/// The principal may see `tenant`'s objects (else they do not exist for it).
fn see_tenant(principal: &Principal, tenant: &str, what: &'static str, name: &str) -> Result<(), Error> {
    match principal.tenant() {
        Some(own) if own != tenant => Err(Error::NotFound { what, name: name.to_string() }),
        _ => Ok(()),
    }
}

/// The principal may administer `tenant` (operator, or that tenant's admin).
fn administer_tenant(principal: &Principal, tenant: &str, what: &'static str, name: &str) -> Result<(), Error> {
    see_tenant(principal, tenant, what, name)?;
    match principal {
        Principal::User { .. } => Err(Error::Forbidden("only an administrator may do this".into())),
        _ => Ok(()),
    }
}

fn operator_only(principal: &Principal, action: &str) -> Result<(), Error> {
    match principal {
        Principal::Operator => Ok(()),
        _ => Err(Error::Forbidden(format!("only the operator may {action}"))),
    }
}

/// The page size: 100 by default, at most `page_items_max`; 0 is refused.
fn page_limit(directory: &Directory, limit: Option<usize>) -> Result<usize, Error> {
    match limit {
        Some(0) => Err(Error::invalid("limit", "must be at least 1")),
        Some(limit) => Ok(limit.min(directory.options.page_items_max)),
        None => Ok(100.min(directory.options.page_items_max)),
    }
}

fn check_optional_codes(siren: Option<&str>, insee: Option<&str>) -> Result<(), Error> {
    if let Some(siren) = siren {
        model::check_siren(siren)?;
    }
    if let Some(insee) = insee {
        model::check_insee(insee)?;
    }
    Ok(())
}

impl Directory {
    /// The page size of a list for `?limit=`: 100 by default, at most `page_items_max`;
    /// 0 is refused. For lists kept outside the directory (the outbound queue).
    pub fn page_limit(&self, limit: Option<usize>) -> Result<usize, Error> {
        page_limit(self, limit)
    }

    // Tenants.

    pub async fn create_tenant(&self, principal: &Principal, new: NewTenant, now: u64) -> Result<Tenant, Error> {
        operator_only(principal, "create tenants")?;
        model::check_tenant_id(&new.id)?;
        model::check_text("name", &new.name, TEXT_BYTES_MAX)?;
        if new.name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        check_optional_codes(new.siren.as_deref(), new.insee.as_deref())?;
        check_quota(new.quota_bytes)?;
        check_accounts_max(new.accounts_max)?;
        let tenant = Tenant {
            id: new.id,
            name: new.name,
            siren: new.siren,
            insee: new.insee,
            quota_bytes: new.quota_bytes,
            accounts_max: new.accounts_max,
            created_at: now,
        };
        let key = keys::tenant(&tenant.id);
        let mut batch = Batch::new();
        batch.expect_absent(&key);
        set(&mut batch, &key, &tenant);
        commit_new(&self.store, batch, |_| Error::Exists { what: "tenant", name: tenant.id.clone() }).await?;
        Ok(tenant)
    }

    pub async fn get_tenant(&self, principal: &Principal, id: &str) -> Result<Tenant, Error> {
        see_tenant(principal, id, "tenant", id)?;
        Ok(self.read_tenant(id).await?.record)
    }

    async fn read_tenant(&self, id: &str) -> Result<Read<Tenant>, Error> {
        get(&self.store, &keys::tenant(id)).await?.ok_or_else(|| Error::NotFound { what: "tenant", name: id.into() })
    }

    pub async fn list_tenants(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Tenant>, Error> {
        let limit = page_limit(self, limit)?;
        if let Some(own) = principal.tenant() {
            let items = match after {
                Some(after) if after >= own => Vec::new(),
                _ => vec![self.read_tenant(own).await?.record],
            };
            return Ok(Page { items, next: None });
        }
        let (ids, more) = index_page(&self.store, keys::TENANTS, after, limit).await?;
        let mut items = Vec::with_capacity(ids.len());
        for id in &ids {
            items.push(self.read_tenant(id).await?.record);
        }
        Ok(Page { next: more.then(|| ids.last().cloned()).flatten(), items })
    }

    pub async fn update_tenant(&self, principal: &Principal, id: &str, update: TenantUpdate) -> Result<Tenant, Error> {
        see_tenant(principal, id, "tenant", id)?;
        operator_only(principal, "change a tenant")?;
        if let Some(name) = &update.name {
            model::check_text("name", name, TEXT_BYTES_MAX)?;
            if name.trim().is_empty() {
                return Err(Error::invalid("name", "must not be empty"));
            }
        }
        check_optional_codes(update.siren.clone().flatten().as_deref(), update.insee.clone().flatten().as_deref())?;
        check_quota(update.quota_bytes.flatten())?;
        check_accounts_max(update.accounts_max.flatten())?;
        let mut backoff = Backoff::new();
        loop {
            let Read { mut record, version } = self.read_tenant(id).await?;
            if let Some(name) = &update.name {
                record.name = name.clone();
            }
            if let Some(siren) = &update.siren {
                record.siren = siren.clone();
            }
            if let Some(insee) = &update.insee {
                record.insee = insee.clone();
            }
            if let Some(quota) = update.quota_bytes {
                record.quota_bytes = quota;
            }
            if let Some(accounts_max) = update.accounts_max {
                record.accounts_max = accounts_max;
            }
            let key = keys::tenant(id);
            let mut batch = Batch::new();
            batch.expect_version(&key, version);
            set(&mut batch, &key, &record);
            match self.commit(batch).await {
                Ok(_) => return Ok(record),
                Err(hameau_store::Error::Conflict { .. }) => backoff.wait().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes a tenant without domains, and its API keys.
    pub async fn delete_tenant(&self, principal: &Principal, id: &str) -> Result<(), Error> {
        see_tenant(principal, id, "tenant", id)?;
        operator_only(principal, "delete a tenant")?;
        let tenant = self.read_tenant(id).await?;
        // Mark it closing first: no domain commits under it from then on (see
        // `keys::closing`), so that the check below cannot miss one.
        let closing = self.close(&keys::tenant(id), tenant.version).await?;
        if any(&self.store, &keys::tenant_domains(id)).await? {
            self.reopen(&closing).await?;
            return Err(Error::Conflict(format!("tenant {id:?} still has domains: delete them first")));
        }
        let key_ids = self.store.scan(&hameau_store::Scan::prefix(&keys::tenant_api_keys(id))).await?;
        let mut batch = Batch::new();
        batch.expect_version(&keys::tenant(id), tenant.version);
        batch.delete(&keys::tenant(id)).delete(&keys::tenant_account_count(id)).delete(&closing);
        for entry in key_ids {
            let key_id = String::from_utf8_lossy(&entry.key[keys::tenant_api_keys(id).len()..]).into_owned();
            batch.delete(&entry.key).delete(&keys::api_key(&key_id));
        }
        commit_once(&self.store, batch).await
    }

    // Domains.

    pub async fn create_domain(&self, principal: &Principal, new: NewDomain, now: u64) -> Result<Domain, Error> {
        operator_only(principal, "add domains")?;
        let name = model::normalize_domain("name", &new.name)?;
        let tenant = get::<Tenant>(&self.store, &keys::tenant(&new.tenant))
            .await?
            .ok_or_else(|| Error::invalid("tenant", format!("tenant {:?} does not exist", new.tenant)))?;
        let dkim_keys = crate::dkim::generate(&name, now).await?;
        let domain = Domain {
            display_name: model::display_domain(&name),
            name,
            tenant: new.tenant.clone(),
            dkim: dkim_keys.iter().map(|key| key.public.clone()).collect(),
            created_at: now,
        };
        let key = keys::domain(&domain.name);
        let tenant_key = keys::tenant(&new.tenant);
        let mut tenant_version = tenant.version;
        let mut backoff = Backoff::new();
        loop {
            let mut batch = Batch::new();
            // The tenant as read, and not being deleted (`keys::closing`); it is not
            // rewritten, so that domains created at once in one tenant do not conflict.
            batch
                .expect_absent(&key)
                .expect_version(&tenant_key, tenant_version)
                .expect_absent(&keys::closing(&tenant_key));
            set(&mut batch, &key, &domain);
            batch.set(&keys::tenant_domain(&new.tenant, &domain.name), b"");
            for dkim in &dkim_keys {
                batch.set(&keys::dkim_private(&domain.name, &dkim.public.selector), &dkim.private_record);
            }
            match self.commit(batch).await {
                Ok(_) => return Ok(domain),
                Err(hameau_store::Error::Conflict { key: conflict }) if conflict == key => {
                    return Err(Error::Exists { what: "domain", name: domain.name.clone() });
                }
                Err(hameau_store::Error::Conflict { .. }) => {
                    backoff.wait().await?;
                    tenant_version = get::<Tenant>(&self.store, &tenant_key)
                        .await?
                        .ok_or_else(|| Error::invalid("tenant", format!("tenant {:?} does not exist", new.tenant)))?
                        .version;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Marks the record at `parent` (read at `version`) as closing; returns the mark's key.
    async fn close(&self, parent: &[u8], version: hameau_store::Version) -> Result<Vec<u8>, Error> {
        // A mark left by a deletion that crashed midway is taken over, not refused.
        let closing = keys::closing(parent);
        let mut batch = Batch::new();
        batch.expect_version(parent, version).set(&closing, b"");
        commit_once(&self.store, batch).await?;
        Ok(closing)
    }

    /// Takes a closing mark back: the deletion found something left.
    async fn reopen(&self, closing: &[u8]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(closing);
        self.commit(batch).await?;
        Ok(())
    }

    pub async fn get_domain(&self, principal: &Principal, name: &str) -> Result<Domain, Error> {
        let ascii =
            model::normalize_domain("name", name).map_err(|_| Error::NotFound { what: "domain", name: name.into() })?;
        // Absent and out of scope read the same: the name as typed, both ways.
        let not_found = || Error::NotFound { what: "domain", name: name.into() };
        let domain = get::<Domain>(&self.store, &keys::domain(&ascii)).await?.ok_or_else(not_found)?.record;
        see_tenant(principal, &domain.tenant, "domain", name)?;
        Ok(domain)
    }

    async fn read_domain(&self, ascii: &str) -> Result<Read<Domain>, Error> {
        get(&self.store, &keys::domain(ascii))
            .await?
            .ok_or_else(|| Error::NotFound { what: "domain", name: ascii.into() })
    }

    /// The DKIM private keys of a domain, by selector. For signing only: never shown.
    pub async fn dkim_private_keys(&self, domain: &str) -> Result<Vec<crate::DkimPrivate>, Error> {
        let prefix = keys::dkim_privates(domain);
        let entries = self.store.scan(&hameau_store::Scan::prefix(&prefix)).await?;
        entries.iter().map(|entry| records::decode(&entry.key, &entry.value)).collect()
    }

    pub async fn list_domains(
        &self,
        principal: &Principal,
        tenant: Option<&str>,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Domain>, Error> {
        let limit = page_limit(self, limit)?;
        let tenant = match (principal.tenant(), tenant) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Error::NotFound { what: "tenant", name: asked.into() });
            }
            (Some(own), _) => Some(own),
            (None, asked) => asked,
        };
        let prefix = match tenant {
            Some(tenant) => {
                self.read_tenant(tenant).await?;
                keys::tenant_domains(tenant)
            }
            None => keys::DOMAINS.to_vec(),
        };
        let (names, more) = index_page(&self.store, &prefix, after, limit).await?;
        let mut items = Vec::with_capacity(names.len());
        for name in &names {
            items.push(self.read_domain(name).await?.record);
        }
        Ok(Page { next: more.then(|| names.last().cloned()).flatten(), items })
    }

    /// Deletes a domain that has no addresses left, with its DKIM keys.
    pub async fn delete_domain(&self, principal: &Principal, name: &str) -> Result<(), Error> {
        let domain = self.get_domain(principal, name).await?;
        operator_only(principal, "delete domains")?;
        let read = self.read_domain(&domain.name).await?;
        // Mark it closing, then check it is empty: no address commits in it meanwhile.
        let closing = self.close(&keys::domain(&domain.name), read.version).await?;
        if any(&self.store, &keys::domain_addresses(&domain.name)).await? {
            self.reopen(&closing).await?;
            return Err(Error::Conflict(format!(
                "domain {:?} still has accounts or aliases: delete them first",
                domain.name
            )));
        }
        let mut batch = Batch::new();
        batch.expect_version(&keys::domain(&domain.name), read.version);
        batch
            .delete(&keys::domain(&domain.name))
            .delete(&keys::tenant_domain(&domain.tenant, &domain.name))
            .delete(&closing);
        for key in self.dkim_private_keys(&domain.name).await? {
            batch.delete(&keys::dkim_private(&domain.name, &key.selector));
        }
        commit_once(&self.store, batch).await
    }

    // Accounts.

    /// The domain an address may be created in by `principal`: it exists and belongs to a
    /// tenant the principal administers.
    async fn address_domain(&self, principal: &Principal, address: &str) -> Result<(String, Read<Domain>), Error> {
        let (address, domain) = model::normalize_address("address", address)?;
        let read = get::<Domain>(&self.store, &keys::domain(&domain)).await?;
        let Some(read) = read.filter(|read| principal.tenant().is_none_or(|own| own == read.record.tenant)) else {
            return Err(Error::invalid("address", format!("{domain:?} is not a domain of this tenant")));
        };
        administer_tenant(principal, &read.record.tenant, "domain", &domain)?;
        Ok((address, read))
    }

    pub async fn create_account(&self, principal: &Principal, new: NewAccount, now: u64) -> Result<Account, Error> {
        let (address, domain) = self.address_domain(principal, &new.address).await?;
        model::check_text("display_name", &new.display_name, TEXT_BYTES_MAX)?;
        check_quota(new.quota_bytes)?;
        if let Some(password) = &new.password {
            self.options.passwords.check_new("password", password)?;
        }
        let tenant_id = domain.record.tenant.clone();
        if new.role == AccountRole::TenantAdmin && matches!(principal, Principal::User { .. }) {
            return Err(Error::Forbidden("only an administrator may make administrators".into()));
        }
        let hash = match &new.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let id = u64::try_from(self.store.next_value(keys::ACCOUNT_IDS, 1).await?).expect("ids are positive");
        let account = Account {
            id,
            tenant: tenant_id.clone(),
            address: address.clone(),
            display_name: new.display_name,
            quota_bytes: new.quota_bytes,
            enabled: new.enabled,
            role: new.role,
            may_send_as: Vec::new(),
            created_at: now,
        };
        let domain_key = keys::domain(&domain.record.name);
        let address_key = keys::address(&address);
        let count_key = keys::tenant_account_count(&tenant_id);
        let mut domain_version = domain.version;
        let mut backoff = Backoff::new();
        loop {
            let mut batch = Batch::new();
            // The domain as read and not being deleted (`keys::closing`). Nothing shared is
            // rewritten, so that creations in one domain do not conflict with each other.
            batch
                .expect_absent(&address_key)
                .expect_version(&domain_key, domain_version)
                .expect_absent(&keys::closing(&domain_key));
            // Only a tenant with `accounts_max` reads its count and expects it unchanged:
            // its creations are then checked one after the other.
            let tenant = self.read_tenant(&tenant_id).await?;
            if let Some(max) = tenant.record.accounts_max {
                let (n_accounts, count_expect) = match self.store.get(&count_key).await? {
                    None => (0, Expect::Absent),
                    Some(entry) => (self.store.counter(&count_key).await?, Expect::Version(entry.version)),
                };
                if n_accounts >= i64::from(max) {
                    return Err(Error::Conflict(format!("tenant {tenant_id:?} has reached its accounts_max of {max}")));
                }
                batch.expect(&count_key, count_expect);
            }
            batch.add(&count_key, 1);
            set(&mut batch, &keys::account(id), &account);
            set(&mut batch, &address_key, &AddressRecord::Account { id, tenant: tenant_id.clone() });
            batch.set(&keys::tenant_account(&tenant_id, &address), &id.to_be_bytes());
            batch.set(&keys::domain_address(&domain.record.name, &address), b"");
            if let Some(hash) = &hash {
                set(&mut batch, &keys::password(id), &PasswordRecord { hash: hash.clone() });
            }
            match self.commit(batch).await {
                Ok(_) => return Ok(account),
                Err(hameau_store::Error::Conflict { key }) if key == address_key => {
                    return Err(Error::Exists { what: "address", name: address });
                }
                Err(hameau_store::Error::Conflict { .. }) => {
                    backoff.wait().await?;
                    // The domain may have been deleted (or deleted and made again) meanwhile.
                    let Some(read) =
                        get::<Domain>(&self.store, &domain_key).await?.filter(|read| read.record.tenant == tenant_id)
                    else {
                        return Err(Error::invalid(
                            "address",
                            format!("{:?} is not a domain of this tenant", domain.record.name),
                        ));
                    };
                    domain_version = read.version;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The account at `address` as `principal` may see it.
    async fn visible_account(&self, principal: &Principal, address: &str) -> Result<Read<Account>, Error> {
        let not_found = || Error::NotFound { what: "account", name: address.to_string() };
        let (normalized, _) = model::normalize_address("address", address).map_err(|_| not_found())?;
        let Some(target) = get::<AddressRecord>(&self.store, &keys::address(&normalized)).await? else {
            return Err(not_found());
        };
        let AddressRecord::Account { id, tenant } = target.record else { return Err(not_found()) };
        see_tenant(principal, &tenant, "account", address)?;
        if let Principal::User { account, .. } = principal
            && *account != id
        {
            return Err(not_found());
        }
        get::<Account>(&self.store, &keys::account(id)).await?.ok_or_else(not_found)
    }

    pub async fn get_account(&self, principal: &Principal, address: &str) -> Result<Account, Error> {
        Ok(self.visible_account(principal, address).await?.record)
    }

    pub async fn list_accounts(
        &self,
        principal: &Principal,
        tenant: Option<&str>,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Account>, Error> {
        let limit = page_limit(self, limit)?;
        if let Principal::User { account, tenant: own } = principal {
            if tenant.is_some_and(|asked| asked != own) {
                return Err(Error::NotFound { what: "tenant", name: tenant.unwrap_or_default().into() });
            }
            let record = get::<Account>(&self.store, &keys::account(*account)).await?;
            let items: Vec<Account> = record
                .map(|read| read.record)
                .filter(|a| after.is_none_or(|after| a.address.as_str() > after))
                .into_iter()
                .collect();
            return Ok(Page { items, next: None });
        }
        let tenant = self.scoped_tenant(principal, tenant).await?;
        let (addresses, more) = index_entries(&self.store, &keys::tenant_accounts(&tenant), after, limit).await?;
        let mut items = Vec::with_capacity(addresses.len());
        for (_, value) in &addresses {
            let id = u64::from_be_bytes(
                value
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt { key: "tenant account index".into(), problem: "not an id".into() })?,
            );
            if let Some(read) = get::<Account>(&self.store, &keys::account(id)).await? {
                items.push(read.record);
            }
        }
        Ok(Page { next: more.then(|| addresses.last().map(|(name, _)| name.clone())).flatten(), items })
    }

    /// The tenant of the account `id`, if it exists: for the installation's own routing
    /// (which cluster holds the account's mail), not for a caller's request.
    pub async fn account_tenant(&self, id: u64) -> Result<Option<String>, Error> {
        Ok(get::<Account>(&self.store, &keys::account(id)).await?.map(|read| read.record.tenant))
    }

    /// The ids of every account of `tenant`, for the installation's own tasks (moving the
    /// tenant to another cluster). Paged through the tenant's index; a tenant's accounts
    /// are bounded by its `accounts_max`.
    pub async fn tenant_account_ids(&self, tenant: &str) -> Result<Vec<u64>, Error> {
        const PAGE: usize = 1000;
        let prefix = keys::tenant_accounts(tenant);
        let (mut ids, mut after) = (Vec::new(), None::<String>);
        loop {
            let (entries, more) = index_entries(&self.store, &prefix, after.as_deref(), PAGE).await?;
            for (_, value) in &entries {
                let id: [u8; 8] = value
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Corrupt { key: "tenant account index".into(), problem: "not an id".into() })?;
                ids.push(u64::from_be_bytes(id));
            }
            match (more, entries.last()) {
                (true, Some((name, _))) => after = Some(name.clone()),
                _ => return Ok(ids),
            }
        }
    }

    /// The tenant a list is about: the caller's own, or for the operator the one asked for
    /// (required, since accounts and aliases are listed per tenant).
    async fn scoped_tenant(&self, principal: &Principal, asked: Option<&str>) -> Result<String, Error> {
        let tenant = match (principal.tenant(), asked) {
            (Some(own), Some(asked)) if own != asked => {
                return Err(Error::NotFound { what: "tenant", name: asked.into() });
            }
            (Some(own), _) => own.to_string(),
            (None, Some(asked)) => asked.to_string(),
            (None, None) => return Err(Error::invalid("tenant", "the operator lists per tenant: give ?tenant=ID")),
        };
        self.read_tenant(&tenant).await?;
        Ok(tenant)
    }

    pub async fn update_account(
        &self,
        principal: &Principal,
        address: &str,
        update: AccountUpdate,
    ) -> Result<Account, Error> {
        let current = self.visible_account(principal, address).await?;
        let is_user = matches!(principal, Principal::User { .. });
        if is_user
            && (update.quota_bytes.is_some()
                || update.enabled.is_some()
                || update.role.is_some()
                || update.may_send_as.is_some())
        {
            return Err(Error::Forbidden("a user may change only its display name and password".into()));
        }
        if let Some(name) = &update.display_name {
            model::check_text("display_name", name, TEXT_BYTES_MAX)?;
        }
        check_quota(update.quota_bytes.flatten())?;
        if let Some(password) = &update.password {
            self.options.passwords.check_new("password", password)?;
        }
        let may_send_as = match &update.may_send_as {
            Some(addresses) => Some(self.check_send_as(&current.record.tenant, addresses).await?),
            None => None,
        };
        let hash = match &update.password {
            Some(password) => Some(self.hasher.hash(password).await?),
            None => None,
        };
        let id = current.record.id;
        let mut backoff = Backoff::new();
        loop {
            let Some(Read { mut record, version }) = get::<Account>(&self.store, &keys::account(id)).await? else {
                return Err(Error::NotFound { what: "account", name: address.into() });
            };
            if let Some(name) = &update.display_name {
                record.display_name = name.clone();
            }
            if let Some(quota) = update.quota_bytes {
                record.quota_bytes = quota;
            }
            if let Some(enabled) = update.enabled {
                record.enabled = enabled;
            }
            if let Some(role) = update.role {
                record.role = role;
            }
            if let Some(addresses) = &may_send_as {
                record.may_send_as = addresses.clone();
            }
            let mut batch = Batch::new();
            batch.expect_version(&keys::account(id), version);
            set(&mut batch, &keys::account(id), &record);
            if update.enabled == Some(false) {
                // The sessions opened before end, even if the account is enabled again
                // before they are checked.
                batch.set(&keys::disabled(id), b"");
            }
            if let Some(hash) = &hash {
                set(&mut batch, &keys::password(id), &PasswordRecord { hash: hash.clone() });
            }
            match self.commit(batch).await {
                Ok(_) => {
                    if hash.is_some() || update.enabled == Some(false) {
                        self.cache.forget(id);
                    }
                    return Ok(record);
                }
                Err(hameau_store::Error::Conflict { .. }) => backoff.wait().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The addresses an account may send as must be aliases of its tenant.
    async fn check_send_as(&self, tenant: &str, addresses: &[String]) -> Result<Vec<String>, Error> {
        let mut normalized = Vec::with_capacity(addresses.len());
        for address in addresses {
            let (address, _) = model::normalize_address("may_send_as", address)?;
            let target = get::<AddressRecord>(&self.store, &keys::address(&address)).await?;
            match target.map(|read| read.record) {
                Some(AddressRecord::Alias { tenant: alias_tenant, .. }) if alias_tenant == tenant => {}
                _ => return Err(Error::invalid("may_send_as", format!("{address:?} is not an alias of this tenant"))),
            }
            if !normalized.contains(&address) {
                normalized.push(address);
            }
        }
        Ok(normalized)
    }

    /// Deletes an account that no alias delivers to, with its credentials.
    /// The account `principal` would delete at `address`, when it may: the checks of
    /// [`Directory::delete_account`] before it, for a caller that looks at the account's
    /// mail first.
    pub async fn account_to_delete(&self, principal: &Principal, address: &str) -> Result<Account, Error> {
        Ok(self.deletable_account(principal, address).await?.record)
    }

    /// The account at `address`, read, if `principal` may delete it.
    async fn deletable_account(&self, principal: &Principal, address: &str) -> Result<Read<Account>, Error> {
        let read = self.visible_account(principal, address).await?;
        administer_tenant(principal, &read.record.tenant, "account", address)?;
        Ok(read)
    }

    /// Deletes the account at `address` and its credentials; returns what it was (its id
    /// and tenant: the caller deletes its mail, which the directory does not know). The same
    /// commit marks the account's mail as to be deleted ([`Directory::accounts_to_forget`]).
    pub async fn delete_account(&self, principal: &Principal, address: &str) -> Result<Account, Error> {
        let read = self.deletable_account(principal, address).await?;
        let account = read.record;
        let aliases = self.aliases_targeting(&account.tenant, account.id).await?;
        if !aliases.is_empty() {
            return Err(Error::Conflict(format!(
                "aliases deliver to {}: remove it from {} first",
                account.address,
                aliases.join(", ")
            )));
        }
        let domain = account.address.rsplit_once('@').map(|(_, domain)| domain.to_string()).unwrap_or_default();
        let count_key = keys::tenant_account_count(&account.tenant);
        let mut batch = Batch::new();
        batch.expect_version(&keys::account(account.id), read.version);
        batch
            .delete(&keys::account(account.id))
            .delete(&keys::password(account.id))
            .delete(&keys::disabled(account.id))
            .delete(&keys::address(&account.address))
            .delete(&keys::tenant_account(&account.tenant, &account.address))
            .delete(&keys::domain_address(&domain, &account.address));
        batch.add(&count_key, -1);
        set(&mut batch, &keys::mail_to_forget(account.id), &ForgetRecord { tenant: account.tenant.clone() });
        for entry in self.store.scan(&hameau_store::Scan::prefix(&keys::app_passwords(account.id))).await? {
            batch.delete(&entry.key);
        }
        commit_once(&self.store, batch).await?;
        self.cache.forget(account.id);
        Ok(account)
    }

    /// Deleted accounts whose mail is not known to be deleted yet, by id, after `after`, at
    /// most `max`: each id with its tenant. The caller deletes their mail, then calls
    /// [`Directory::account_forgotten`].
    pub async fn accounts_to_forget(&self, after: Option<u64>, max: usize) -> Result<Vec<(u64, String)>, Error> {
        let mut scan = hameau_store::Scan::prefix(keys::MAIL_TO_FORGET).limit(max);
        if let Some(id) = after {
            scan = scan.after(&keys::mail_to_forget(id));
        }
        let mut found = Vec::new();
        for entry in self.store.scan(&scan).await? {
            let id = entry.key[keys::MAIL_TO_FORGET.len()..].try_into().map(u64::from_be_bytes);
            match (id, records::decode::<ForgetRecord>(&entry.key, &entry.value)) {
                (Ok(id), Ok(record)) => found.push((id, record.tenant)),
                _ => tracing::warn!(key = ?entry.key, "directory: a malformed mark of mail to delete, left alone"),
            }
        }
        Ok(found)
    }

    /// The mail of the deleted account `id` is deleted: its mark goes.
    pub async fn account_forgotten(&self, id: u64) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&keys::mail_to_forget(id));
        self.commit(batch).await?;
        Ok(())
    }

    async fn aliases_targeting(&self, tenant: &str, account: u64) -> Result<Vec<String>, Error> {
        let prefix = keys::tenant_aliases(tenant);
        let mut found = Vec::new();
        for entry in self.store.scan(&hameau_store::Scan::prefix(&prefix)).await? {
            let address = String::from_utf8_lossy(&entry.key[prefix.len()..]).into_owned();
            if let Some(Read { record: AddressRecord::Alias { targets, .. }, .. }) =
                get::<AddressRecord>(&self.store, &keys::address(&address)).await?
                && targets.contains(&account)
            {
                found.push(address);
            }
        }
        Ok(found)
    }

    // Aliases.

    /// Resolves alias targets (addresses of accounts of `tenant`) to account ids, and
    /// rewrites each target account in `batch` so that deleting one of them meanwhile fails.
    async fn alias_targets(&self, batch: &mut Batch, tenant: &str, targets: &[String]) -> Result<Vec<u64>, Error> {
        if targets.is_empty() {
            return Err(Error::invalid("targets", "an alias delivers to at least one account"));
        }
        if targets.len() > 1000 {
            return Err(Error::invalid("targets", "an alias delivers to at most 1000 accounts"));
        }
        let mut ids = Vec::with_capacity(targets.len());
        for target in targets {
            let (address, _) = model::normalize_address("targets", target)?;
            match get::<AddressRecord>(&self.store, &keys::address(&address)).await?.map(|read| read.record) {
                Some(AddressRecord::Account { id, tenant: target_tenant }) if target_tenant == tenant => {
                    if ids.contains(&id) {
                        continue;
                    }
                    let account = get::<Account>(&self.store, &keys::account(id)).await?;
                    let Some(account) = account else {
                        return Err(Error::invalid("targets", format!("{address:?} is not an account of this tenant")));
                    };
                    batch.expect_version(&keys::account(id), account.version);
                    set(batch, &keys::account(id), &account.record);
                    ids.push(id);
                }
                _ => return Err(Error::invalid("targets", format!("{address:?} is not an account of this tenant"))),
            }
        }
        Ok(ids)
    }

    async fn alias_view(
        &self,
        address: &str,
        tenant: String,
        targets: &[u64],
        created_at: u64,
    ) -> Result<Alias, Error> {
        let mut addresses = Vec::with_capacity(targets.len());
        for id in targets {
            if let Some(read) = get::<Account>(&self.store, &keys::account(*id)).await? {
                addresses.push(read.record.address);
            }
        }
        Ok(Alias { address: address.to_string(), tenant, targets: addresses, created_at })
    }

    pub async fn create_alias(&self, principal: &Principal, new: NewAlias, now: u64) -> Result<Alias, Error> {
        let (address, domain) = self.address_domain(principal, &new.address).await?;
        let tenant = domain.record.tenant.clone();
        let address_key = keys::address(&address);
        let domain_key = keys::domain(&domain.record.name);
        let mut backoff = Backoff::new();
        loop {
            let mut batch = Batch::new();
            // Each try reads the targets again: one of them changed meanwhile.
            let targets = self.alias_targets(&mut batch, &tenant, &new.targets).await?;
            batch
                .expect_absent(&address_key)
                .expect_version(&domain_key, domain.version)
                .expect_absent(&keys::closing(&domain_key));
            set(
                &mut batch,
                &address_key,
                &AddressRecord::Alias { tenant: tenant.clone(), targets: targets.clone(), created_at: now },
            );
            batch.set(&keys::tenant_alias(&tenant, &address), b"");
            batch.set(&keys::domain_address(&domain.record.name, &address), b"");
            match self.commit(batch).await {
                Ok(_) => return self.alias_view(&address, tenant, &targets, now).await,
                Err(hameau_store::Error::Conflict { key }) if key == address_key => {
                    return Err(Error::Exists { what: "address", name: address });
                }
                Err(hameau_store::Error::Conflict { key })
                    if key == domain_key || key == keys::closing(&domain_key) =>
                {
                    return Err(Error::invalid(
                        "address",
                        format!("{:?} is not a domain of this tenant", domain.record.name),
                    ));
                }
                Err(hameau_store::Error::Conflict { .. }) => backoff.wait().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn visible_alias(
        &self,
        principal: &Principal,
        address: &str,
    ) -> Result<(String, Read<AddressRecord>), Error> {
        let not_found = || Error::NotFound { what: "alias", name: address.to_string() };
        let (normalized, _) = model::normalize_address("address", address).map_err(|_| not_found())?;
        let read = get::<AddressRecord>(&self.store, &keys::address(&normalized)).await?.ok_or_else(not_found)?;
        let AddressRecord::Alias { tenant, .. } = &read.record else { return Err(not_found()) };
        see_tenant(principal, tenant, "alias", address)?;
        // A user sees only its own account.
        if matches!(principal, Principal::User { .. }) {
            return Err(not_found());
        }
        Ok((normalized, read))
    }

    pub async fn get_alias(&self, principal: &Principal, address: &str) -> Result<Alias, Error> {
        let (normalized, read) = self.visible_alias(principal, address).await?;
        let AddressRecord::Alias { tenant, targets, created_at } = read.record else { unreachable!("checked") };
        self.alias_view(&normalized, tenant, &targets, created_at).await
    }

    pub async fn list_aliases(
        &self,
        principal: &Principal,
        tenant: Option<&str>,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<Alias>, Error> {
        if matches!(principal, Principal::User { .. }) {
            return Err(Error::Forbidden("a user sees only its own account".into()));
        }
        let tenant = self.scoped_tenant(principal, tenant).await?;
        let limit = page_limit(self, limit)?;
        let (addresses, more) = index_entries(&self.store, &keys::tenant_aliases(&tenant), after, limit).await?;
        let mut items = Vec::with_capacity(addresses.len());
        for (address, _) in &addresses {
            if let Some(Read { record: AddressRecord::Alias { tenant, targets, created_at }, .. }) =
                get::<AddressRecord>(&self.store, &keys::address(address)).await?
            {
                items.push(self.alias_view(address, tenant, &targets, created_at).await?);
            }
        }
        Ok(Page { next: more.then(|| addresses.last().map(|(name, _)| name.clone())).flatten(), items })
    }

    pub async fn update_alias(
        &self,
        principal: &Principal,
        address: &str,
        update: AliasUpdate,
    ) -> Result<Alias, Error> {
        let (normalized, read) = self.visible_alias(principal, address).await?;
        let AddressRecord::Alias { tenant, created_at, .. } = read.record else { unreachable!("checked") };
        administer_tenant(principal, &tenant, "alias", address)?;
        let mut batch = Batch::new();
        let targets = self.alias_targets(&mut batch, &tenant, &update.targets).await?;
        let key = keys::address(&normalized);
        batch.expect_version(&key, read.version);
        set(&mut batch, &key, &AddressRecord::Alias { tenant: tenant.clone(), targets: targets.clone(), created_at });
        commit_once(&self.store, batch).await?;
        self.alias_view(&normalized, tenant, &targets, created_at).await
    }

    pub async fn delete_alias(&self, principal: &Principal, address: &str) -> Result<(), Error> {
        let (normalized, read) = self.visible_alias(principal, address).await?;
        let AddressRecord::Alias { tenant, .. } = &read.record else { unreachable!("checked") };
        administer_tenant(principal, tenant, "alias", address)?;
        let domain = normalized.rsplit_once('@').map(|(_, domain)| domain.to_string()).unwrap_or_default();
        let mut batch = Batch::new();
        batch.expect_version(&keys::address(&normalized), read.version);
        batch
            .delete(&keys::address(&normalized))
            .delete(&keys::tenant_alias(tenant, &normalized))
            .delete(&keys::domain_address(&domain, &normalized));
        commit_once(&self.store, batch).await
    }

    // Application passwords.

    /// Makes an application password; returns it with the secret, shown this once.
    pub async fn create_app_password(
        &self,
        principal: &Principal,
        address: &str,
        new: NewAppPassword,
        now: u64,
    ) -> Result<(AppPassword, String), Error> {
        let account = self.visible_account(principal, address).await?.record;
        model::check_text("name", &new.name, TEXT_BYTES_MAX)?;
        if new.name.trim().is_empty() {
            return Err(Error::invalid("name", "must not be empty"));
        }
        let mut backoff = Backoff::new();
        loop {
            let secret = new_app_password();
            let id = app_password_id(&secret).expect("24 generated ASCII characters").to_string();
            let hash = self.hasher.hash(&secret).await?;
            let view = AppPassword {
                id: id.clone(),
                account: account.address.clone(),
                name: new.name.clone(),
                created_at: now,
            };
            let key = keys::app_password(account.id, &id);
            let mut batch = Batch::new();
            batch.expect_absent(&key);
            set(&mut batch, &key, &AppPasswordRecord { view: view.clone(), hash });
            match self.commit(batch).await {
                Ok(_) => return Ok((view, display_app_password(&secret))),
                // Another password of this account has the same first four characters.
                Err(hameau_store::Error::Conflict { .. }) => backoff.wait().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn list_app_passwords(&self, principal: &Principal, address: &str) -> Result<Vec<AppPassword>, Error> {
        let account = self.visible_account(principal, address).await?.record;
        let prefix = keys::app_passwords(account.id);
        let mut items = Vec::new();
        for entry in self.store.scan(&hameau_store::Scan::prefix(&prefix)).await? {
            items.push(records::decode::<AppPasswordRecord>(&entry.key, &entry.value)?.view);
        }
        Ok(items)
    }

    pub async fn delete_app_password(&self, principal: &Principal, address: &str, id: &str) -> Result<(), Error> {
        let account = self.visible_account(principal, address).await?.record;
        let key = keys::app_password(account.id, id);
        if self.store.get(&key).await?.is_none() {
            return Err(Error::NotFound { what: "application password", name: id.into() });
        }
        let mut batch = Batch::new();
        batch.delete(&key);
        self.commit(batch).await?;
        self.cache.forget(account.id);
        Ok(())
    }

    // API keys.

    /// Makes an API key; returns it with the secret token, shown this once.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        new: NewApiKey,
        now: u64,
    ) -> Result<(ApiKey, String), Error> {
        model::check_text("name", &new.name, TEXT_BYTES_MAX)?;
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid("expires_at", "is in the past"));
        }
        if new.expires_at.is_some_and(|at| at > LATEST_TIME_S) {
            return Err(Error::invalid("expires_at", "is after the year 9999"));
        }
        let (scope, tenant, account_id) = match new.scope {
            KeyScope::Operator => {
                operator_only(principal, "make operator keys")?;
                (KeyScope::Operator, String::new(), None)
            }
            KeyScope::TenantAdmin { tenant } => {
                see_tenant(principal, &tenant, "tenant", &tenant)?;
                administer_tenant(principal, &tenant, "tenant", &tenant)?;
                self.read_tenant(&tenant)
                    .await
                    .map_err(|_| Error::invalid("scope", format!("tenant {tenant:?} does not exist")))?;
                (KeyScope::TenantAdmin { tenant: tenant.clone() }, tenant, None)
            }
            KeyScope::User { account } => {
                let read = self
                    .visible_account(principal, &account)
                    .await
                    .map_err(|_| Error::invalid("scope", format!("account {account:?} does not exist")))?;
                let record = read.record;
                (KeyScope::User { account: record.address.clone() }, record.tenant, Some(record.id))
            }
        };
        let (id, secret, token) = new_api_key();
        let key = ApiKey {
            id: id.clone(),
            name: new.name,
            scope,
            created_at: now,
            expires_at: new.expires_at,
            revoked: false,
        };
        let record = ApiKeyRecord { key: key.clone(), secret_sha256: secret_digest(&secret), account_id };
        let mut batch = Batch::new();
        batch.expect_absent(&keys::api_key(&id));
        set(&mut batch, &keys::api_key(&id), &record);
        batch.set(&keys::tenant_api_key(&tenant, &id), b"");
        commit_new(&self.store, batch, |_| Error::Busy).await?;
        Ok((key, token))
    }

    /// The API key `id` if `principal` may see it: the operator sees all, a tenant admin
    /// its tenant's, a user its own.
    async fn visible_api_key(&self, principal: &Principal, id: &str) -> Result<Read<ApiKeyRecord>, Error> {
        let not_found = || Error::NotFound { what: "API key", name: id.to_string() };
        let read = get::<ApiKeyRecord>(&self.store, &keys::api_key(id)).await?.ok_or_else(not_found)?;
        let visible = match (principal, &read.record.key.scope) {
            (Principal::Operator, _) => true,
            (Principal::TenantAdmin { tenant }, KeyScope::TenantAdmin { tenant: key_tenant }) => tenant == key_tenant,
            (Principal::TenantAdmin { tenant }, KeyScope::User { .. }) => {
                self.key_tenant(&read.record).await?.as_deref() == Some(tenant.as_str())
            }
            (Principal::User { account, .. }, KeyScope::User { .. }) => read.record.account_id == Some(*account),
            _ => false,
        };
        if visible { Ok(read) } else { Err(not_found()) }
    }

    async fn key_tenant(&self, record: &ApiKeyRecord) -> Result<Option<String>, Error> {
        match record.account_id {
            Some(id) => Ok(get::<Account>(&self.store, &keys::account(id)).await?.map(|read| read.record.tenant)),
            None => Ok(None),
        }
    }

    pub async fn get_api_key(&self, principal: &Principal, id: &str) -> Result<ApiKey, Error> {
        Ok(self.visible_api_key(principal, id).await?.record.key)
    }

    pub async fn list_api_keys(
        &self,
        principal: &Principal,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Page<ApiKey>, Error> {
        let limit = page_limit(self, limit)?;
        let prefix = match principal.tenant() {
            Some(tenant) => keys::tenant_api_keys(tenant),
            None => keys::API_KEYS.to_vec(),
        };
        let mut items = Vec::new();
        let mut cursor = after.map(str::to_string);
        // Users see only their own keys among their tenant's: filter, page by page.
        loop {
            let (ids, more) = index_page(&self.store, &prefix, cursor.as_deref(), limit).await?;
            for id in &ids {
                if items.len() == limit {
                    return Ok(Page { items, next: cursor });
                }
                cursor = Some(id.clone());
                if let Ok(read) = self.visible_api_key(principal, id).await {
                    items.push(read.record.key);
                }
            }
            if !more {
                return Ok(Page { items, next: None });
            }
        }
    }

    /// Revokes an API key. The record stays, marked revoked, for the audit trail.
    pub async fn revoke_api_key(&self, principal: &Principal, id: &str) -> Result<ApiKey, Error> {
        let read = self.visible_api_key(principal, id).await?;
        if matches!(principal, Principal::User { .. }) && !matches!(read.record.key.scope, KeyScope::User { .. }) {
            return Err(Error::Forbidden("a user may revoke only its own keys".into()));
        }
        let mut record = read.record;
        record.key.revoked = true;
        let mut batch = Batch::new();
        batch.expect_version(&keys::api_key(id), read.version);
        set(&mut batch, &keys::api_key(id), &record);
        commit_once(&self.store, batch).await?;
        Ok(record.key)
    }

    // Authentication.

    /// The principal an API key token stands for, if it is valid now.
    pub async fn authenticate_api_key(&self, token: &str, now: u64) -> Result<Principal, Error> {
        let (id, secret) = parse_api_key(token).ok_or(Error::Unauthenticated)?;
        let record = get::<ApiKeyRecord>(&self.store, &keys::api_key(id)).await?.ok_or(Error::Unauthenticated)?.record;
        if !digests_match(&secret_digest(secret), &record.secret_sha256) {
            return Err(Error::Unauthenticated);
        }
        if record.key.revoked || record.key.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::Unauthenticated);
        }
        match record.key.scope {
            KeyScope::Operator => Ok(Principal::Operator),
            KeyScope::TenantAdmin { tenant } => {
                self.read_tenant(&tenant).await.map_err(|_| Error::Unauthenticated)?;
                Ok(Principal::TenantAdmin { tenant })
            }
            KeyScope::User { .. } => {
                let id = record.account_id.ok_or(Error::Unauthenticated)?;
                let account =
                    get::<Account>(&self.store, &keys::account(id)).await?.ok_or(Error::Unauthenticated)?.record;
                if !account.enabled {
                    return Err(Error::Unauthenticated);
                }
                Ok(Principal::User { account: account.id, tenant: account.tenant })
            }
        }
    }

    /// The enabled account a user-scoped API key stands for: JMAP's bearer tokens. An
    /// operator's or a tenant admin's key is no account's and is refused like a wrong one.
    /// Not counted here: the caller counts failures per client address, as for API keys.
    pub async fn authenticate_account_key(&self, token: &str, now: u64) -> Result<Account, Error> {
        let Principal::User { account, .. } = self.authenticate_api_key(token, now).await? else {
            return Err(Error::Unauthenticated);
        };
        let account = get::<Account>(&self.store, &keys::account(account)).await?.ok_or(Error::Unauthenticated)?;
        Some(account.record).filter(|account| account.enabled).ok_or(Error::Unauthenticated)
    }

    /// Checks a password login from `peer` (IMAP, and every protocol that logs in with
    /// a password): the account's own password or one of its application passwords.
    ///
    /// Limited under two keys: the client address (IPv6 per /64) and the account (its id;
    /// for an address that is no account, its [`model::login_key_form`], so that variants
    /// of one name count together and a lockout does not tell which addresses exist).
    /// Refused without checking past `auth.failures_max` ([`Error::Refused`]), slowed down
    /// before that. A failure is counted even when this future is dropped or panics
    /// midway; a success takes back only the failures of this account from this address.
    pub async fn login(&self, peer: IpAddr, address: &str, password: &str, now: u64) -> Result<Account, Error> {
        Ok(self.login_stamped(peer, address, password, now).await?.0)
    }

    /// [`Directory::login`], with what the login used: a session that lasts (IMAP) checks
    /// it again from time to time ([`Directory::login_still_valid`]) and ends when the
    /// account is deleted or disabled, its password changed, or the application password
    /// it used revoked.
    pub async fn login_stamped(
        &self,
        peer: IpAddr,
        address: &str,
        password: &str,
        now: u64,
    ) -> Result<(Account, LoginStamp), Error> {
        let address_key = AuthLimiter::ip_key(peer);
        let (account, account_key) = self.login_account_and_key(address).await?;
        match self.limiter.check_login(&address_key, &account_key, now) {
            Verdict::Refuse { retry_after_s } => return Err(Error::Refused { retry_after_s }),
            Verdict::Allow { delay } if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Allow { .. } => {}
        }
        let attempt = Attempt { limiter: &self.limiter, keys: Some((Some(address_key), account_key)), now };
        let result = self.check_password(account, password, now).await;
        attempt.finish(&result);
        result
    }

    /// Whether the login `stamp` records still holds: the account exists, is enabled and
    /// was not disabled since, and the credential it used is unchanged (the same password,
    /// or an application password not revoked). Read through the routing reads' cache: while the directory
    /// does not change, every session's check is answered from memory; a change made on
    /// this node is seen by the next check, one made on another node within a second.
    pub async fn login_still_valid(&self, stamp: &LoginStamp) -> Result<bool, Error> {
        let Some(account) = self.cached::<Account>(&keys::account(stamp.account)).await? else {
            return Ok(false);
        };
        if !account.enabled || self.disabled_count(stamp.account).await? != stamp.disabled {
            return Ok(false);
        }
        Ok(match &stamp.credential {
            Credential::Password { version } => {
                let stored = self.records.get(&self.store, &keys::password(stamp.account)).await?;
                stored.map_or(0, |entry| entry.version) == *version
            }
            Credential::AppPassword { id } => {
                self.records.get(&self.store, &keys::app_password(stamp.account, id)).await?.is_some()
            }
        })
    }

    /// Checks an address and password without a client address: counted under the
    /// account's key alone (see [`Directory::login`], which protocols should call).
    pub async fn authenticate_password(&self, address: &str, password: &str, now: u64) -> Result<Account, Error> {
        let (account, account_key) = self.login_account_and_key(address).await?;
        match self.limiter.check(&account_key, now) {
            Verdict::Refuse { .. } => return Err(Error::Unauthenticated),
            Verdict::Allow { delay } if !delay.is_zero() => tokio::time::sleep(delay).await,
            Verdict::Allow { .. } => {}
        }
        let attempt = Attempt { limiter: &self.limiter, keys: Some((None, account_key)), now };
        let result = self.check_password(account, password, now).await;
        attempt.finish(&result);
        result.map(|(account, _)| account)
    }

    /// The enabled account an address logs into, if any, and its limiter key.
    async fn login_account_and_key(&self, address: &str) -> Result<(Option<Account>, String), Error> {
        if let Ok((normalized, _)) = model::normalize_address("address", address)
            && let Some(account) = self.login_account(&normalized).await?
        {
            let key = format!("account:{}", account.id);
            return Ok((Some(account).filter(|account| account.enabled), key));
        }
        Ok((None, format!("address:{}", model::login_key_form(address))))
    }

    /// Unknown addresses cost the same argon2 work as known ones, so that the time taken
    /// does not tell which exist.
    async fn check_password(
        &self,
        account: Option<Account>,
        password: &str,
        now: u64,
    ) -> Result<(Account, LoginStamp), Error> {
        let Some(account) = account else {
            self.hasher.verify(None, password).await;
            return Err(Error::Unauthenticated);
        };
        let stored = get::<PasswordRecord>(&self.store, &keys::password(account.id)).await?;
        let version = stored.as_ref().map_or(0, |read| read.version);
        let cached = self.cache.contains(account.id, version, password, now);
        // The password, else an application password (its first four characters name it).
        let credential =
            if cached || self.hasher.verify(stored.as_ref().map(|read| read.record.hash.as_str()), password).await {
                if !cached {
                    self.cache.insert(account.id, version, password, now);
                }
                Credential::Password { version }
            } else if let Some(compact) = compact_app_password(password)
                && let Some(id) = app_password_id(&compact)
                && let Some(read) = get::<AppPasswordRecord>(&self.store, &keys::app_password(account.id, id)).await?
                && self.hasher.verify(Some(&read.record.hash), &compact).await
            {
                Credential::AppPassword { id: id.to_string() }
            } else {
                return Err(Error::Unauthenticated);
            };
        // Read once a credential matched: a wrong password costs no more reads than before.
        let disabled = self.disabled_count(account.id).await?;
        let stamp = LoginStamp { account: account.id, disabled, credential };
        Ok((account, stamp))
    }

    /// The version of the account's `keys::disabled` record (0 if never disabled), through
    /// the routing reads' cache.
    async fn disabled_count(&self, account: u64) -> Result<u64, Error> {
        Ok(self.records.get(&self.store, &keys::disabled(account)).await?.map_or(0, |entry| entry.version))
    }

    async fn login_account(&self, address: &str) -> Result<Option<Account>, Error> {
        let Some(target) = get::<AddressRecord>(&self.store, &keys::address(address)).await? else { return Ok(None) };
        let AddressRecord::Account { id, .. } = target.record else { return Ok(None) };
        Ok(get::<Account>(&self.store, &keys::account(id)).await?.map(|read| read.record))
    }

    // Mail routing (for the MX and local delivery; no principal: these are not admin
    // operations and reveal nothing to a caller).

    /// Whether `domain` (any form) is a domain of this installation.
    pub async fn is_local_domain(&self, domain: &str) -> Result<bool, Error> {
        let Ok(ascii) = model::normalize_domain("domain", domain) else { return Ok(false) };
        Ok(self.records.get(&self.store, &keys::domain(&ascii)).await?.is_some())
    }

    /// A routing record, from the cache of records read since the directory last changed.
    async fn cached<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, Error> {
        match self.records.get(&self.store, key).await? {
            Some(entry) => Ok(Some(crate::records::decode(key, &entry.value)?)),
            None => Ok(None),
        }
    }

    /// Commits a change of the directory, telling the routing reads' cache.
    async fn commit(&self, mut batch: Batch) -> Result<hameau_store::Committed, hameau_store::Error> {
        batch.add(keys::CHANGES, 1);
        self.store.commit(batch).await
    }

    /// The accounts mail to `address` is delivered to: the account itself, or the targets
    /// of an alias (disabled accounts still receive: their mail is kept). `None` if the
    /// address is not local or does not exist.
    pub async fn resolve_recipient(&self, address: &str) -> Result<Option<Recipient>, Error> {
        let Ok((normalized, _)) = model::normalize_address("address", address) else { return Ok(None) };
        let Some(target) = self.cached::<AddressRecord>(&keys::address(&normalized)).await? else {
            return Ok(None);
        };
        let (tenant, ids) = match target {
            AddressRecord::Account { id, tenant } => (tenant, vec![id]),
            AddressRecord::Alias { tenant, targets, .. } => (tenant, targets),
        };
        let quota_bytes =
            self.cached::<Tenant>(&keys::tenant(&tenant)).await.ok().flatten().and_then(|tenant| tenant.quota_bytes);
        let mut accounts = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(account) = self.cached::<Account>(&keys::account(id)).await? {
                accounts.push(account);
            }
        }
        Ok(Some(Recipient { address: normalized, tenant, tenant_quota_bytes: quota_bytes, accounts }))
    }
}

/// One login attempt under way: counted as a failure unless [`Attempt::finish`] says
/// otherwise, so that a panic or a dropped future (a client that hangs up while argon2
/// runs) is a failure too.
struct Attempt<'a> {
    limiter: &'a AuthLimiter,
    /// The address key (none for [`Directory::authenticate_password`]) and account key.
    keys: Option<(Option<String>, String)>,
    now: u64,
}

impl Attempt<'_> {
    fn finish<T>(mut self, result: &Result<T, Error>) {
        match result {
            Ok(_) => {
                if let Some((Some(address_key), account_key)) = self.keys.take() {
                    self.limiter.login_succeeded(&address_key, &account_key);
                }
            }
            // Dropping `self` counts it.
            Err(Error::Unauthenticated) => {}
            // The store failed: not the client's doing.
            Err(_) => self.keys = None,
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        match self.keys.take() {
            Some((Some(address_key), account_key)) => self.limiter.login_failed(&address_key, &account_key, self.now),
            Some((None, account_key)) => self.limiter.failed(&account_key, self.now),
            None => {}
        }
    }
}

/// Where mail to one address goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The address, normalised.
    pub address: String,
    pub tenant: String,
    pub tenant_quota_bytes: Option<u64>,
    /// The accounts that receive it (one, or an alias's targets).
    pub accounts: Vec<Account>,
}

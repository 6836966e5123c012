//! Hameau's directory: tenants (communes), their domains, accounts, aliases and shared
//! addresses, credentials (argon2id passwords, application passwords, API keys) and the
//! roles that scope what each caller may see and change.
//!
//! Every operation takes the caller's [`Principal`] and checks its scope here, so that the
//! admin API, the CLI and later the protocols enforce the same rules. A tenant admin never
//! learns anything of another tenant: what is out of its scope is reported exactly as what
//! does not exist ([`Error::NotFound`]).
//!
//! The clock is an argument (`now`, seconds since the Unix epoch): only the binary reads it.

mod credentials;
mod dkim;
pub mod dns;
mod hashing;
mod keys;
pub use keys::{Owner as RecordOwner, account as account_record_key, owner as record_owner};
pub mod limiter;
pub mod model;
mod ops;
mod record_cache;
mod records;

use std::sync::Arc;

use hameau_store::Store;

pub use credentials::{CredentialCache, PasswordOptions};
pub use dkim::DkimPrivate;
pub use limiter::{AuthLimiter, LimiterOptions, Verdict};
pub use model::{Account, AccountRole, Alias, ApiKey, AppPassword, DkimPublic, Domain, KeyScope, Tenant};
pub use ops::{
    AccountUpdate, AliasUpdate, LoginStamp, NewAccount, NewAlias, NewApiKey, NewAppPassword, NewDomain, NewTenant,
    Page, Recipient, TenantUpdate,
};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator: every tenant.
    Operator,
    /// The admin of one tenant.
    TenantAdmin { tenant: String },
    /// One account, for itself.
    User { account: u64, tenant: String },
}

impl Principal {
    /// The tenant this principal is confined to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::TenantAdmin { tenant } | Principal::User { tenant, .. } => Some(tenant),
        }
    }

    /// What this principal administers, for records kept outside the directory (the
    /// outbound queue): every tenant (`None`, the operator) or its own (a tenant admin).
    /// A user administers nothing: [`Error::Forbidden`], whatever it asks for, so that
    /// the refusal tells nothing of what exists.
    pub fn administered_tenant(&self) -> Result<Option<&str>, Error> {
        match self {
            Principal::Operator => Ok(None),
            Principal::TenantAdmin { tenant } => Ok(Some(tenant)),
            Principal::User { .. } => Err(Error::Forbidden("only an administrator may do this".into())),
        }
    }

    /// This principal administers records of `tenant` (`None`: of no tenant, which only
    /// the operator sees). Out of scope reads as absent: the caller answers
    /// [`Error::NotFound`].
    pub fn administers(&self, tenant: Option<&str>) -> Result<bool, Error> {
        Ok(match self.administered_tenant()? {
            None => true,
            Some(own) => tenant == Some(own),
        })
    }
}

/// Why a directory operation failed. Each kind maps to one HTTP status in the admin API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field of the request is not valid (400).
    #[error("{field}: {problem}")]
    Invalid { field: &'static str, problem: String },
    /// The object does not exist, or is outside the caller's scope (404).
    #[error("{what} {name:?} does not exist")]
    NotFound { what: &'static str, name: String },
    /// An object of that name exists already (409).
    #[error("{what} {name:?} exists already")]
    Exists { what: &'static str, name: String },
    /// The object is in use and cannot be deleted, or a limit of the tenant is reached (409).
    #[error("{0}")]
    Conflict(String),
    /// The caller's role may not do this, in its own scope (403).
    #[error("{0}")]
    Forbidden(String),
    /// The credentials are wrong, expired or revoked (401).
    #[error("invalid credentials")]
    Unauthenticated,
    /// Concurrent changes kept conflicting; try again (503).
    #[error("the directory is busy: try again")]
    Busy,
    /// Too many failed logins from this client address or for this account: refused
    /// without checking the credentials (429).
    #[error("too many failed logins: try again in {retry_after_s} s")]
    Refused { retry_after_s: u64 },
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] hameau_store::Error),
    /// A stored record could not be read (500).
    #[error("corrupt directory record {key}: {problem}")]
    Corrupt { key: String, problem: String },
}

impl Error {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Error {
        Error::Invalid { field, problem: problem.into() }
    }
}

/// Options of the directory: the `[directory]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// How passwords are hashed: keys of the same `[directory]` table, declared by
    /// [`PasswordOptions`]; `config` reads them here.
    #[serde(skip)]
    pub passwords: PasswordOptions,
    /// How long a verified password is trusted without running argon2 again. 5 minutes:
    /// a mail client that reconnects every minute pays argon2 once in five.
    pub credential_cache_s: u64,
    /// Most verified credentials kept. 10,000 covers every account of a large installation.
    pub credential_cache_entries_max: usize,
    /// Most items a list returns in one page. 1,000 keeps a response under about 1 MiB.
    pub page_items_max: usize,
    /// Most routing records (domains, addresses, accounts, tenants) kept in memory between
    /// changes of the directory, so that a delivery does not read them from the store each
    /// time (a round trip each on PostgreSQL). 50,000 hold the addresses and accounts of a
    /// large installation in about 25 MiB; 0 disables it.
    pub record_cache_entries_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            passwords: PasswordOptions::default(),
            credential_cache_s: 300,
            credential_cache_entries_max: 10_000,
            page_items_max: 1_000,
            record_cache_entries_max: 50_000,
        }
    }
}

impl Options {
    /// Checks each key of `[directory]`, the passwords' included.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::range;
        self.passwords.check()?;
        range("directory", "credential_cache_s", self.credential_cache_s, 0, 86_400)?;
        range("directory", "credential_cache_entries_max", self.credential_cache_entries_max as u64, 0, 10_000_000)?;
        range("directory", "page_items_max", self.page_items_max as u64, 1, 100_000)?;
        range("directory", "record_cache_entries_max", self.record_cache_entries_max as u64, 0, 10_000_000)
    }
}

/// The directory over a store. Cheap to clone.
#[derive(Clone)]
pub struct Directory {
    store: Store,
    options: Arc<Options>,
    cache: Arc<CredentialCache>,
    records: Arc<record_cache::RecordCache>,
    hasher: Arc<hashing::Hasher>,
    limiter: Arc<AuthLimiter>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory").field("options", &self.options).finish_non_exhaustive()
    }
}

impl Directory {
    pub fn new(store: Store, options: Options) -> Directory {
        let cache = CredentialCache::new(options.credential_cache_s, options.credential_cache_entries_max);
        let hasher = hashing::Hasher::new(options.passwords.clone());
        let limiter = Arc::new(AuthLimiter::new(LimiterOptions::default()));
        let records = Arc::new(record_cache::RecordCache::new(options.record_cache_entries_max));
        Directory {
            store,
            options: Arc::new(options),
            cache: Arc::new(cache),
            records,
            hasher: Arc::new(hasher),
            limiter,
        }
    }

    /// The directory with `limiter` counting its logins' failures (one limiter for every
    /// protocol, so that failures over IMAP and HTTPS count together).
    pub fn with_limiter(mut self, limiter: Arc<AuthLimiter>) -> Directory {
        self.limiter = limiter;
        self
    }

    pub fn limiter(&self) -> &Arc<AuthLimiter> {
        &self.limiter
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The cache of verified passwords (for metrics and tests).
    pub fn credential_cache(&self) -> &CredentialCache {
        &self.cache
    }
}

#[cfg(test)]
mod tests;

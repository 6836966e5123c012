//! Where the directory's records live in the store. Every key starts with `d/`.
//! Names (tenant ids, domains, addresses) are stored as they are: they are normalised and
//! cannot hold '/' in a way that confuses a prefix, because each index ends with the name.

/// Tenant record, by id.
pub fn tenant(id: &str) -> Vec<u8> {
    [b"d/t/".as_slice(), id.as_bytes()].concat()
}

pub const TENANTS: &[u8] = b"d/t/";

/// Domain record, by ASCII name.
pub fn domain(name: &str) -> Vec<u8> {
    [b"d/dom/".as_slice(), name.as_bytes()].concat()
}

pub const DOMAINS: &[u8] = b"d/dom/";

/// The domains of a tenant (index, empty values).
pub fn tenant_domain(tenant: &str, domain: &str) -> Vec<u8> {
    [tenant_domains(tenant).as_slice(), domain.as_bytes()].concat()
}

pub fn tenant_domains(tenant: &str) -> Vec<u8> {
    [b"d/td/".as_slice(), tenant.as_bytes(), b"\0"].concat()
}

/// The DKIM private key of a domain's selector.
pub fn dkim_private(domain: &str, selector: &str) -> Vec<u8> {
    [dkim_privates(domain).as_slice(), selector.as_bytes()].concat()
}

pub fn dkim_privates(domain: &str) -> Vec<u8> {
    [b"d/dkim/".as_slice(), domain.as_bytes(), b"\0"].concat()
}

/// Account record, by id.
pub fn account(id: u64) -> Vec<u8> {
    [b"d/acc/".as_slice(), &id.to_be_bytes()].concat()
}

/// The password hash of an account.
pub fn password(id: u64) -> Vec<u8> {
    [b"d/pw/".as_slice(), &id.to_be_bytes()].concat()
}

/// Written each time the account is disabled: its version tells a session that lasts
/// (IMAP) that the account was disabled since the login, even if enabled again since
/// ([`crate::Directory::login_still_valid`]).
pub fn disabled(id: u64) -> Vec<u8> {
    [b"d/off/".as_slice(), &id.to_be_bytes()].concat()
}

/// A deleted account whose mail is still to be deleted (its tenant, as JSON): written by
/// the commit that deletes the account, removed once the mail is gone
/// ([`crate::Directory::accounts_to_forget`]), so that a deletion cut short is finished
/// later instead of leaving mail that belongs to no one.
pub fn mail_to_forget(id: u64) -> Vec<u8> {
    [MAIL_TO_FORGET, &id.to_be_bytes()].concat()
}

pub const MAIL_TO_FORGET: &[u8] = b"d/forget/";

/// Every address (account or alias), by normalised address: what it delivers to.
pub fn address(address: &str) -> Vec<u8> {
    [b"d/addr/".as_slice(), address.as_bytes()].concat()
}

/// The addresses of a domain (index): accounts and aliases.
pub fn domain_address(domain: &str, address: &str) -> Vec<u8> {
    [domain_addresses(domain).as_slice(), address.as_bytes()].concat()
}

pub fn domain_addresses(domain: &str) -> Vec<u8> {
    [b"d/da/".as_slice(), domain.as_bytes(), b"\0"].concat()
}

/// The accounts of a tenant (index), by address.
pub fn tenant_account(tenant: &str, address: &str) -> Vec<u8> {
    [tenant_accounts(tenant).as_slice(), address.as_bytes()].concat()
}

pub fn tenant_accounts(tenant: &str) -> Vec<u8> {
    [b"d/ta/".as_slice(), tenant.as_bytes(), b"\0"].concat()
}

/// The aliases of a tenant (index), by address.
pub fn tenant_alias(tenant: &str, address: &str) -> Vec<u8> {
    [tenant_aliases(tenant).as_slice(), address.as_bytes()].concat()
}

pub fn tenant_aliases(tenant: &str) -> Vec<u8> {
    [b"d/tl/".as_slice(), tenant.as_bytes(), b"\0"].concat()
}

/// Counter of a tenant's accounts (for `accounts_max`).
pub fn tenant_account_count(tenant: &str) -> Vec<u8> {
    [b"d/tn/".as_slice(), tenant.as_bytes()].concat()
}

/// The next account id.
pub const ACCOUNT_IDS: &[u8] = b"d/seq/account";

/// Added to by every commit of the directory: the routing reads' cache (`record_cache`)
/// forgets what it holds when it moves.
pub const CHANGES: &[u8] = b"d/changes";

/// Application passwords of an account.
pub fn app_password(account: u64, id: &str) -> Vec<u8> {
    [app_passwords(account).as_slice(), id.as_bytes()].concat()
}

pub fn app_passwords(account: u64) -> Vec<u8> {
    [b"d/app/".as_slice(), &account.to_be_bytes(), b"/"].concat()
}

/// API key record, by key id.
pub fn api_key(id: &str) -> Vec<u8> {
    [b"d/key/".as_slice(), id.as_bytes()].concat()
}

pub const API_KEYS: &[u8] = b"d/key/";

/// The API keys of a tenant (index); operator keys are under the empty tenant.
pub fn tenant_api_key(tenant: &str, id: &str) -> Vec<u8> {
    [tenant_api_keys(tenant).as_slice(), id.as_bytes()].concat()
}

pub fn tenant_api_keys(tenant: &str) -> Vec<u8> {
    [b"d/tk/".as_slice(), tenant.as_bytes(), b"\0"].concat()
}

/// Marks a domain or a tenant (by its record's key) while it is being deleted: creations
/// under it expect the mark absent, so that none commits after the deletion has checked
/// that nothing is left under it. Creations under one parent never write the parent, so
/// they do not conflict with each other.
pub fn closing(parent: &[u8]) -> Vec<u8> {
    [b"d/closing/".as_slice(), parent].concat()
}

/// Whose a directory record is, for a one-tenant restore (docs/backup.md): said here, next
/// to the keys, so that the backup never decodes the directory's keys itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The tenant's (its id).
    Tenant(String),
    /// Owned as the record at this key is: an account's record (`d/acc/…`) for what hangs
    /// on an account, a domain's (`d/dom/…`) for what hangs on a domain. That record's owner
    /// is always a tenant.
    Via(Vec<u8>),
    /// The installation's: the account id counter, the operator's API keys.
    Installation,
    /// Nobody's: a deletion's transient mark.
    Nobody,
}

/// Whose the record `key` with `value` is; `None` when the key is not the directory's or
/// does not read as one of its records (the caller stops rather than guess).
pub fn owner(key: &[u8], value: &[u8]) -> Option<Owner> {
    let rest = key.strip_prefix(b"d/")?;
    let text = |bytes: &[u8]| std::str::from_utf8(bytes).ok().map(str::to_string);
    // The tenant before the NUL of a tenant index (`d/td/`, `d/ta/`, `d/tl/`, `d/tk/`).
    let before_nul = |bytes: &[u8]| text(bytes.split(|b| *b == 0).next()?);
    // The record of the domain before the NUL of a domain index (`d/dkim/`, `d/da/`).
    let domain_of = |bytes: &[u8]| Some(domain(&before_nul(bytes)?));
    let json = || serde_json::from_slice::<serde_json::Value>(value).ok();
    let tenant_in_value = || Some(Owner::Tenant(json()?.get("tenant")?.as_str()?.to_string()));
    let account_of = |bytes: &[u8]| Some(account(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)));
    if key == ACCOUNT_IDS || key == CHANGES {
        return Some(Owner::Installation);
    }
    if let Some(id) = rest.strip_prefix(b"t/") {
        return Some(Owner::Tenant(text(id)?));
    }
    if rest.starts_with(b"dom/") || rest.starts_with(b"acc/") || rest.starts_with(b"forget/") {
        return tenant_in_value();
    }
    for prefix in [&b"td/"[..], b"ta/", b"tl/", b"tn/"] {
        if let Some(tail) = rest.strip_prefix(prefix) {
            return Some(Owner::Tenant(if prefix == b"tn/" { text(tail)? } else { before_nul(tail)? }));
        }
    }
    if let Some(tail) = rest.strip_prefix(b"tk/") {
        let tenant = before_nul(tail)?;
        return Some(if tenant.is_empty() { Owner::Installation } else { Owner::Tenant(tenant) });
    }
    if let Some(tail) = rest.strip_prefix(b"dkim/").or_else(|| rest.strip_prefix(b"da/")) {
        return Some(Owner::Via(domain_of(tail)?));
    }
    if let Some(tail) =
        rest.strip_prefix(b"pw/").or_else(|| rest.strip_prefix(b"app/")).or_else(|| rest.strip_prefix(b"off/"))
    {
        return Some(Owner::Via(account_of(tail)?));
    }
    if let Some(address) = rest.strip_prefix(b"addr/") {
        let address = text(address)?;
        return Some(Owner::Via(self::domain(address.rsplit_once('@')?.1)));
    }
    if rest.starts_with(b"key/") {
        // An API key's record: its scope says whose it is; a user's key resolved its
        // account when it was made.
        let record = json()?;
        let scope = record.get("key")?.get("scope")?;
        return match scope.get("role")?.as_str()? {
            "operator" => Some(Owner::Installation),
            "tenant_admin" => Some(Owner::Tenant(scope.get("tenant")?.as_str()?.to_string())),
            "user" => Some(Owner::Via(account(record.get("account_id")?.as_u64()?))),
            _ => None,
        };
    }
    if rest.starts_with(b"closing/") {
        return Some(Owner::Nobody);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_directory_record_has_an_owner() {
        let tenant = |id: &str| Some(Owner::Tenant(id.into()));
        assert_eq!(owner(&self::tenant("a"), b"{}"), tenant("a"));
        assert_eq!(owner(&domain("a.test"), br#"{"name":"a.test","tenant":"a"}"#), tenant("a"));
        assert_eq!(owner(&account(7), br#"{"id":7,"tenant":"a"}"#), tenant("a"));
        assert_eq!(owner(&mail_to_forget(7), br#"{"tenant":"a"}"#), tenant("a"));
        for key in [tenant_domain("a", "a.test"), tenant_account("a", "x@a.test"), tenant_alias("a", "m@a.test")] {
            assert_eq!(owner(&key, b""), tenant("a"));
        }
        assert_eq!(owner(&tenant_account_count("a"), &1i64.to_be_bytes()), tenant("a"));
        assert_eq!(owner(&tenant_api_key("a", "k1"), b""), tenant("a"));
        assert_eq!(owner(&tenant_api_key("", "k1"), b""), Some(Owner::Installation));
        assert_eq!(owner(ACCOUNT_IDS, &1i64.to_be_bytes()), Some(Owner::Installation));
        for key in [password(7), app_password(7, "p1"), disabled(7)] {
            assert_eq!(owner(&key, b"x"), Some(Owner::Via(account(7))));
        }
        for key in [dkim_private("a.test", "s1"), domain_address("a.test", "x@a.test"), address("x@a.test")] {
            assert_eq!(owner(&key, b"{}"), Some(Owner::Via(domain("a.test"))));
        }
        let key = |scope: &str, account: &str| format!(r#"{{"key":{{"scope":{scope}}},"account_id":{account}}}"#);
        assert_eq!(owner(&api_key("k"), key(r#"{"role":"operator"}"#, "null").as_bytes()), Some(Owner::Installation));
        let admin = key(r#"{"role":"tenant_admin","tenant":"a"}"#, "null");
        assert_eq!(owner(&api_key("k"), admin.as_bytes()), tenant("a"));
        let user = key(r#"{"role":"user","account":"x@a.test"}"#, "7");
        assert_eq!(owner(&api_key("k"), user.as_bytes()), Some(Owner::Via(account(7))));
        assert_eq!(owner(&closing(&self::tenant("a")), b""), Some(Owner::Nobody));
        // Not the directory's, or unreadable: nobody guesses.
        assert_eq!(owner(b"m/x", b""), None);
        assert_eq!(owner(&account(7), b"not json"), None);
        assert_eq!(owner(b"d/other/x", b""), None);
    }
}

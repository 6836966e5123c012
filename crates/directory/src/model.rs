//! The directory's records and the rules for their names.
//!
//! Tenant ids are slugs chosen by the operator (`saint-martin-38`); domains are stored in
//! their IDNA ASCII form, lowercase (RFC 5890); addresses are `local@domain` with the local
//! part lowercased and the domain in its ASCII form. Accounts have a numeric id that never
//! changes, so that mail stays with the account when its address changes.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A tenant: one commune.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Slug chosen by the operator: lowercase letters, digits and '-', 1 to 63 characters.
    pub id: String,
    /// The commune's name, as it should be displayed.
    pub name: String,
    /// SIREN number of the commune (9 digits), if known.
    pub siren: Option<String>,
    /// INSEE code of the commune (5 characters), if known.
    pub insee: Option<String>,
    /// Most bytes of mail all the tenant's accounts may hold; none means no limit.
    pub quota_bytes: Option<u64>,
    /// Most accounts the tenant may have; none means no limit.
    pub accounts_max: Option<u32>,
    /// Creation time, seconds since the Unix epoch.
    pub created_at: u64,
}

/// A domain of a tenant. Its DKIM keys are kept apart and never shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// The domain in IDNA ASCII form, lowercase (`xn--...` for internationalised names).
    pub name: String,
    /// The domain as it reads (Unicode form).
    pub display_name: String,
    pub tenant: String,
    /// The DKIM selectors and public keys to publish.
    pub dkim: Vec<DkimPublic>,
    pub created_at: u64,
}

/// A DKIM selector and its public key, as published in DNS (RFC 6376 §3.6.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DkimPublic {
    pub selector: String,
    /// `ed25519` (RFC 8463) or `rsa`.
    pub algorithm: String,
    /// The public key, base64, as in the record's `p=` tag.
    pub public_key: String,
}

/// What an account may do in the admin API besides managing itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    #[default]
    User,
    /// Manages its tenant (a tenant admin).
    TenantAdmin,
}

/// A mailbox owner: a town-hall agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Never changes, even when the address does.
    pub id: u64,
    pub tenant: String,
    pub address: String,
    pub display_name: String,
    /// Most bytes of mail; none means the tenant's limit alone applies.
    pub quota_bytes: Option<u64>,
    /// A disabled account cannot log in; its mail is kept and still received.
    pub enabled: bool,
    pub role: AccountRole,
    /// Addresses (aliases or shared addresses) this account may send as.
    pub may_send_as: Vec<String>,
    pub created_at: u64,
}

/// An address that delivers to one or more accounts of the same tenant (an alias, or a
/// shared address such as `mairie@`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Alias {
    pub address: String,
    pub tenant: String,
    /// The addresses of the accounts it delivers to.
    pub targets: Vec<String>,
    pub created_at: u64,
}

/// A named, revocable password for one mail client of an account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppPassword {
    pub id: String,
    pub account: String,
    pub name: String,
    pub created_at: u64,
}

/// The scope of an API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "role", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyScope {
    /// Everything.
    Operator,
    /// One tenant.
    TenantAdmin { tenant: String },
    /// One account.
    User { account: String },
}

/// An API key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scope: KeyScope,
    pub created_at: u64,
    /// After this time (seconds since the Unix epoch) the key is refused.
    pub expires_at: Option<u64>,
    pub revoked: bool,
}

/// Checks a tenant id: a slug of 1 to 63 lowercase letters, digits and inner '-'.
pub fn check_tenant_id(id: &str) -> Result<(), Error> {
    let valid = (1..=63).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if !valid {
        return Err(Error::invalid(
            "id",
            format!("{id:?} is not a valid tenant id (1 to 63 of a-z, 0-9 and inner '-')"),
        ));
    }
    Ok(())
}

/// The ASCII (IDNA) form of a domain name, lowercase, or why it is not one.
pub fn normalize_domain(field: &'static str, domain: &str) -> Result<String, Error> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let invalid = |why: &str| Error::invalid(field, format!("{domain:?} is not a valid domain name: {why}"));
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    let ascii = idna::domain_to_ascii_strict(trimmed).map_err(|_| invalid("not a valid internationalised name"))?;
    if ascii.len() > 253 {
        return Err(invalid("longer than 253 characters"));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(invalid("it needs at least two labels, as in commune.fr"));
    }
    for label in &labels {
        let valid_label = (1..=63).contains(&label.len())
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid_label {
            return Err(invalid("each label is 1 to 63 letters, digits and inner '-'"));
        }
    }
    if labels.last().is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit())) {
        return Err(invalid("an IP address is not a domain"));
    }
    Ok(ascii)
}

/// The Unicode form of an ASCII domain name, for display.
pub fn display_domain(ascii: &str) -> String {
    let (unicode, result) = idna::domain_to_unicode(ascii);
    if result.is_ok() { unicode } else { ascii.to_string() }
}

/// Splits and normalises an address: `local@domain` with a dot-atom local part (RFC 5321
/// §4.1.2, UTF-8 allowed as in RFC 6531), lowercased, and the domain's ASCII form.
pub fn normalize_address(field: &'static str, address: &str) -> Result<(String, String), Error> {
    let invalid = |why: &str| Error::invalid(field, format!("{address:?} is not a valid address: {why}"));
    let (local, domain) = address.rsplit_once('@').ok_or_else(|| invalid("it has no '@'"))?;
    if local.is_empty() || local.len() > 64 {
        return Err(invalid("the part before '@' must be 1 to 64 bytes"));
    }
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'*+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local.chars().all(|c| c == '.' || atext(c))
    {
        return Err(invalid("the part before '@' may hold letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots"));
    }
    let domain = normalize_domain(field, domain)?;
    let local = local.to_lowercase();
    Ok((format!("{local}@{domain}"), domain))
}

/// The form of a login name under which the limiter counts the failures of an address
/// that is no account: variants of one name count together, as those of an account do
/// under its id. Both parts are mapped as UTS #46 maps a domain name (compatibility
/// forms such as fullwidth letters folded, case folded, default-ignorable code points such
/// as the soft hyphen removed), and trailing dots of the domain are dropped.
pub fn login_key_form(address: &str) -> String {
    // A login name is client input (up to a whole command line): past this length it can
    // be no account, and the limiter keeps its SHA-256 instead, so that each of the
    // limiter's entries stays small. 1,024 bytes hold any address (64 + 1 + 253
    // characters) written in fullwidth letters or with soft hyphens.
    const LOGIN_NAME_BYTES_MAX: usize = 1024;
    if address.len() > LOGIN_NAME_BYTES_MAX {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(address.as_bytes());
        return digest.iter().fold(String::from("sha256:"), |key, byte| key + &format!("{byte:02x}"));
    }
    let fold = |text: &str| idna::domain_to_unicode(text).0;
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let domain = normalize_domain("address", domain).unwrap_or_else(|_| fold(domain.trim_end_matches('.')));
            format!("{}@{domain}", fold(local))
        }
        None => fold(address),
    }
}

/// Checks a display name or other free text: no control characters, bounded length.
pub fn check_text(field: &'static str, text: &str, bytes_max: usize) -> Result<(), Error> {
    if text.len() > bytes_max {
        return Err(Error::invalid(field, format!("longer than {bytes_max} bytes")));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not hold control characters (such as line breaks)"));
    }
    Ok(())
}

/// Checks a SIREN (9 digits, Luhn checksum) or INSEE code (5 characters: digits, or 2A/2B
/// for Corsica).
pub fn check_siren(siren: &str) -> Result<(), Error> {
    let digits: Vec<u32> = siren.chars().filter_map(|c| c.to_digit(10)).collect();
    if siren.len() != 9 || digits.len() != 9 {
        return Err(Error::invalid("siren", format!("{siren:?} is not a SIREN number (9 digits)")));
    }
    // Luhn: double every second digit from the right.
    let sum: u32 =
        digits.iter().rev().enumerate().map(|(i, d)| if i % 2 == 1 { (d * 2) / 10 + (d * 2) % 10 } else { *d }).sum();
    if !sum.is_multiple_of(10) {
        return Err(Error::invalid("siren", format!("{siren:?} is not a SIREN number (its check digit is wrong)")));
    }
    Ok(())
}

pub fn check_insee(insee: &str) -> Result<(), Error> {
    let bytes = insee.as_bytes();
    let valid = bytes.len() == 5
        && (bytes[..2].iter().all(u8::is_ascii_digit) || &bytes[..2] == b"2A" || &bytes[..2] == b"2B")
        && bytes[2..].iter().all(u8::is_ascii_digit);
    if !valid {
        return Err(Error::invalid(
            "insee",
            format!("{insee:?} is not an INSEE commune code (5 characters, e.g. 38185 or 2A004)"),
        ));
    }
    Ok(())
}

//! The one piece of an Autodiscover POX request Hameau reads: the address (MS-OXDSCLI
//! §2.2.3). It uses nothing but `std`, so the fuzz target `autodiscover_pox` includes
//! this file by path (crates/http depends on the store, which the fuzz crate must not).

/// Longest email address a request may name: 254 octets, the longest that fits in an
/// SMTP path (RFC 5321 §4.5.3.1.3, 256 octets with the angle brackets; RFC 3696 erratum
/// 1690). Longer is refused before anything is read.
pub const EMAIL_BYTES_MAX: usize = 254;

/// The domain part of `address` when it looks like an address: at most
/// [`EMAIL_BYTES_MAX`], a non-empty local part, no control characters or spaces. The
/// directory normalises the domain (IDNA, case) when it reads it.
pub fn address_domain(address: &str) -> Option<&str> {
    if address.len() > EMAIL_BYTES_MAX || address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let (local, domain) = address.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain)
}

/// Why a POX request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PoxRequestError {
    /// Not an Autodiscover request: no address, a DTD or an entity, not UTF-8.
    Invalid,
    /// It asks for a response schema other than Outlook's (ActiveSync's "mobilesync").
    WrongSchema,
}

/// The response schema this server answers with.
const OUTLOOK_RESPONSE_SCHEMA: &str = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// The `EMailAddress` of a POX request (MS-OXDSCLI §2.2.3). No XML parser is in the
/// dependency tree, and the request is two text elements: a bounded scan finds the first
/// element named `EMailAddress` (any namespace prefix) and takes its text, which must be
/// plain (no markup, no references). A document with a DTD (`<!`) is refused whole, so no
/// entity can be declared; the body is at most `[http] autodiscover_request_bytes_max`.
pub fn pox_request_address(body: &[u8]) -> Result<String, PoxRequestError> {
    let text = std::str::from_utf8(body).map_err(|_| PoxRequestError::Invalid)?;
    if text.contains("<!") {
        return Err(PoxRequestError::Invalid);
    }
    if let Some(schema) = element_text(text, "AcceptableResponseSchema")
        && schema.trim() != OUTLOOK_RESPONSE_SCHEMA
    {
        return Err(PoxRequestError::WrongSchema);
    }
    let address = element_text(text, "EMailAddress").ok_or(PoxRequestError::Invalid)?.trim();
    // XML text may hold `>` and `"`; neither belongs in an address this server serves (an
    // apostrophe does: d'arc@…).
    if address.contains(['&', '<', '>', '"']) || address_domain(address).is_none() {
        return Err(PoxRequestError::Invalid);
    }
    Ok(address.to_string())
}

/// The text of the first element whose local name is `local_name`, up to the next `<`.
fn element_text<'a>(text: &'a str, local_name: &str) -> Option<&'a str> {
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        rest = &rest[start + 1..];
        let end = rest.find('>')?;
        let tag = &rest[..end];
        let name = tag.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or("");
        let local = name.rsplit_once(':').map_or(name, |(_, local)| local);
        if local == local_name && !tag.ends_with('/') {
            let content = &rest[end + 1..];
            return Some(&content[..content.find('<')?]);
        }
        rest = &rest[end + 1..];
    }
    None
}

//! Paths and ESMTP parameters of `MAIL FROM` and `RCPT TO` (RFC 5321 §4.1.2, RFC 6531 §3.3).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{Body, MailParams};

/// Why an argument of `MAIL` or `RCPT` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgError {
    /// Not the grammar of RFC 5321 §4.1.2: `501 5.5.4`.
    Syntax,
    /// A parameter we do not implement: `555 5.5.4` (RFC 5321 §4.1.1.11).
    UnknownParam,
}

/// Parses `<path>` at the start of `s` and returns the mailbox and what follows the `>`.
/// The null path `<>` gives an empty mailbox. A source route (`<@a,@b:user@c>`) is checked
/// and dropped, as RFC 5321 §4.1.1.3 and Appendix C allow: only `user@c` is kept, so the
/// route can never make us relay. The mailbox may hold UTF-8; the caller checks SMTPUTF8.
pub(crate) fn parse_path(s: &str) -> Result<(String, &str), ArgError> {
    let rest = s.strip_prefix('<').ok_or(ArgError::Syntax)?;
    if let Some(after) = rest.strip_prefix('>') {
        return Ok((String::new(), after));
    }
    let mut body = rest;
    // RFC 5321 §4.1.2: A-d-l = At-domain *( "," At-domain ), followed by ":".
    if body.starts_with('@') {
        let colon = body.find(':').ok_or(ArgError::Syntax)?;
        for hop in body[..colon].split(',') {
            let domain = hop.strip_prefix('@').ok_or(ArgError::Syntax)?;
            check_domain(domain)?;
        }
        body = &body[colon + 1..];
    }
    let local_len = local_part_len(body)?;
    let local = &body[..local_len];
    let after_at = body[local_len..].strip_prefix('@').ok_or(ArgError::Syntax)?;
    let end = after_at.find('>').ok_or(ArgError::Syntax)?;
    let domain = &after_at[..end];
    if domain.starts_with('[') {
        check_address_literal(domain)?;
    } else {
        check_domain(domain)?;
    }
    Ok((format!("{local}@{domain}"), &after_at[end + 1..]))
}

/// Parses the parameters after the path of `MAIL FROM` (RFC 5321 §4.1.2 `Mail-parameters`):
/// SIZE (RFC 1870), BODY (RFC 6152) and SMTPUTF8 (RFC 6531), each at most once.
pub(crate) fn parse_mail_params(s: &str) -> Result<MailParams, ArgError> {
    let mut params = MailParams::default();
    let mut seen_body = false;
    for param in s.split(' ').filter(|param| !param.is_empty()) {
        let (keyword, value) = match param.split_once('=') {
            Some((keyword, value)) => (keyword, Some(value)),
            None => (param, None),
        };
        check_param_syntax(keyword, value)?;
        if keyword.eq_ignore_ascii_case("SIZE") {
            // RFC 1870 §3: size-value ::= 1*20DIGIT.
            let value = value.ok_or(ArgError::Syntax)?;
            if params.size.is_some() || value.len() > 20 || !is_digits(value) {
                return Err(ArgError::Syntax);
            }
            params.size = Some(value.parse().unwrap_or(u64::MAX));
        } else if keyword.eq_ignore_ascii_case("BODY") {
            let value = value.ok_or(ArgError::Syntax)?;
            if seen_body {
                return Err(ArgError::Syntax);
            }
            seen_body = true;
            params.body = if value.eq_ignore_ascii_case("7BIT") {
                Some(Body::SevenBit)
            } else if value.eq_ignore_ascii_case("8BITMIME") {
                Some(Body::EightBitMime)
            } else {
                // BINARYMIME (RFC 3030) is not advertised.
                return Err(ArgError::UnknownParam);
            };
        } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
            if value.is_some() || params.smtputf8 {
                return Err(ArgError::Syntax);
            }
            params.smtputf8 = true;
        } else {
            return Err(ArgError::UnknownParam);
        }
    }
    Ok(params)
}

/// Checks that `s` holds no ESMTP parameter (for `RCPT`, which takes none): a parameter is
/// unknown, a malformed one a syntax error.
pub(crate) fn check_no_params(s: &str) -> Result<(), ArgError> {
    let Some(param) = s.split(' ').find(|param| !param.is_empty()) else {
        return Ok(());
    };
    let (keyword, value) = match param.split_once('=') {
        Some((keyword, value)) => (keyword, Some(value)),
        None => (param, None),
    };
    check_param_syntax(keyword, value)?;
    Err(ArgError::UnknownParam)
}

/// RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-");
/// esmtp-value = 1*(%d33-60 / %d62-126), extended to UTF-8 by RFC 6531.
fn check_param_syntax(keyword: &str, value: Option<&str>) -> Result<(), ArgError> {
    let keyword_ok = keyword.starts_with(|c: char| c.is_ascii_alphanumeric())
        && keyword.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let value_ok = value.is_none_or(|value| {
        !value.is_empty() && value.chars().all(|c| !c.is_ascii() || (c.is_ascii_graphic() && c != '='))
    });
    if keyword_ok && value_ok { Ok(()) } else { Err(ArgError::Syntax) }
}

/// The length in bytes of the local part at the start of `s` (RFC 5321 §4.1.2
/// `Local-part = Dot-string / Quoted-string`, with UTF-8 allowed by RFC 6531 §3.3).
fn local_part_len(s: &str) -> Result<usize, ArgError> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut escaped = false;
        for (idx, c) in quoted.char_indices() {
            if escaped {
                // quoted-pairSMTP = %d92 %d32-126
                if !(c == ' ' || c.is_ascii_graphic()) {
                    return Err(ArgError::Syntax);
                }
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Ok(idx + 2);
            } else if !(c == ' ' || c.is_ascii_graphic() || !c.is_ascii()) {
                return Err(ArgError::Syntax);
            }
        }
        return Err(ArgError::Syntax);
    }
    let len = s.find(|c: char| !is_atext(c) && c != '.').unwrap_or(s.len());
    let dot_string = &s[..len];
    if dot_string.is_empty() || dot_string.split('.').any(str::is_empty) {
        return Err(ArgError::Syntax);
    }
    Ok(len)
}

/// RFC 5322 §3.2.3 atext, plus any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5321 §4.1.2: Domain = sub-domain *("." sub-domain), with U-labels allowed by
/// RFC 6531 §3.3. Labels are at most 63 octets and the domain at most 255 (RFC 1035 §2.3.4).
fn check_domain(domain: &str) -> Result<(), ArgError> {
    if domain.is_empty() || domain.len() > 255 {
        return Err(ArgError::Syntax);
    }
    for label in domain.split('.') {
        let label_ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii());
        if !label_ok {
            return Err(ArgError::Syntax);
        }
    }
    Ok(())
}

/// RFC 5321 §4.1.3: `[1.2.3.4]` or `[IPv6:…]`. General address literals have no registered
/// tag, so they are refused.
fn check_address_literal(literal: &str) -> Result<(), ArgError> {
    let inner = literal.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).ok_or(ArgError::Syntax)?;
    let valid = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..].parse::<Ipv6Addr>().is_ok(),
        _ => inner.parse::<Ipv4Addr>().is_ok(),
    };
    if valid { Ok(()) } else { Err(ArgError::Syntax) }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

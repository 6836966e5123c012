//! The two texts of MTA-STS (RFC 8461) a sender reads from the network: the `_mta-sts` TXT
//! record (§3.1) and the policy body (§3.2), and the match of an MX host against the
//! policy's `mx` patterns (§4.1).
//!
//! Pure: this file uses nothing but `std`, so that the fuzz target (`fuzz/fuzz_targets/
//! mta_sts_policy.rs`) can include it without building `hameau-smtp` and the store below
//! it. Every loop walks the input once; nothing recurses.

/// What a policy asks of senders (RFC 8461 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to an MX that matches the policy, over TLS with a valid certificate.
    Enforce,
    /// Deliver as without a policy, and report (TLS-RPT) what would have failed.
    Testing,
    /// The domain has withdrawn its policy: deliver as without one.
    None,
}

/// A parsed policy body (RFC 8461 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// The `mx` patterns in the order written, lowercased, without a trailing dot:
    /// `mx.example.com`, or `*.example.net` (one leftmost label).
    pub mx: Vec<String>,
    /// How long the policy may be cached, in seconds (at most [`MAX_AGE_S_MAX`]).
    pub max_age_s: u64,
}

/// RFC 8461 §3.2: "max_age: Max lifetime of the policy (plaintext non-negative integer
/// seconds, maximum value of 31557600)", one year.
pub const MAX_AGE_S_MAX: u64 = 31_557_600;

/// RFC 8461 §3.1: `sts-id = %s"id=" 1*32(ALPHA / DIGIT)`.
const ID_CHARS_MAX: usize = 32;

/// RFC 1035 §2.3.4: a label is at most 63 octets, a name at most 255 octets on the wire,
/// so 253 characters written without the trailing dot.
const LABEL_CHARS_MAX: usize = 63;
const NAME_CHARS_MAX: usize = 253;

impl Policy {
    /// Parses a policy body (RFC 8461 §3.2): lines of `key: value` separated by CRLF or LF,
    /// `version: STSv1` first, then `mode` and `max_age` once each, `mx` once or more
    /// (at least once unless the mode is `none`), other keys ignored.
    ///
    /// Decisions where the RFC is silent, each taken so that a policy is read one way only:
    /// - `version`, `mode` or `max_age` given twice is an error: the RFC defines no
    ///   precedence, and two readings of one policy could differ on whether to enforce.
    /// - Empty lines are skipped (a body often ends with one more line break than the
    ///   grammar allows); a line without `:` is an error.
    /// - Keys and the `version` and `mode` values are case-sensitive (the ABNF's `%s`);
    ///   `mx` values are host names, so any case, lowercased here.
    /// - An `mx` pattern with a trailing dot is accepted without it (the same name).
    ///
    /// The caller bounds the body's size (`Options::policy_bytes_max`); parsing takes time
    /// linear in it.
    pub fn parse(body: &[u8]) -> Result<Policy, String> {
        let mut version_seen = false;
        let mut mode = None;
        let mut max_age_s = None;
        let mut mx = Vec::new();
        // RFC 8461 §3.2: `sts-policy-term-delim = CRLF / LF`.
        for (line_idx, line) in body.split(|&byte| byte == b'\n').enumerate() {
            let line_no = line_idx + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            let Some(colon) = line.iter().position(|&byte| byte == b':') else {
                return Err(format!("line {line_no} has no ':' between a key and its value"));
            };
            let key = &line[..colon];
            // RFC 8461 §3.2: `sts-policy-field-delim = ":" *WSP`, and `*WSP` after a field.
            let value = trim_wsp(&line[colon + 1..]);
            if !version_seen {
                // RFC 8461 §3.2: "version: (plaintext, required). Currently, only STSv1 is
                // defined", and the record starts with it.
                if key != b"version" {
                    return Err(format!("line {line_no}: the policy must start with 'version: STSv1'"));
                }
                if value != b"STSv1" {
                    return Err(format!("line {line_no}: version {} is not STSv1", shown(value)));
                }
                version_seen = true;
                continue;
            }
            match key {
                b"version" => return Err(format!("line {line_no}: version given twice")),
                b"mode" => {
                    if mode.is_some() {
                        return Err(format!("line {line_no}: mode given twice"));
                    }
                    mode = Some(match value {
                        b"enforce" => Mode::Enforce,
                        b"testing" => Mode::Testing,
                        b"none" => Mode::None,
                        _ => {
                            return Err(format!(
                                "line {line_no}: mode {} is not enforce, testing or none",
                                shown(value)
                            ));
                        }
                    });
                }
                b"max_age" => {
                    if max_age_s.is_some() {
                        return Err(format!("line {line_no}: max_age given twice"));
                    }
                    max_age_s = Some(parse_max_age(value).map_err(|why| format!("line {line_no}: {why}"))?);
                }
                b"mx" => mx.push(parse_mx(value).map_err(|why| format!("line {line_no}: {why}"))?),
                // RFC 8461 §3.2: "Additional key/value pairs can be added in future
                // revisions. ... Clients MUST ignore unknown key/value pairs." The key is
                // still checked to be a key, so that binary junk is not read as a policy.
                _ => {
                    if !is_extension_name(key) {
                        return Err(format!("line {line_no}: {} is not a key", shown(key)));
                    }
                }
            }
        }
        if !version_seen {
            return Err("the policy is empty (no 'version: STSv1' line)".to_string());
        }
        let Some(mode) = mode else { return Err("the policy has no mode".to_string()) };
        let Some(max_age_s) = max_age_s else { return Err("the policy has no max_age".to_string()) };
        // RFC 8461 §3.2: mx "MUST be present ... one or more times" (the `none` mode
        // withdraws a policy and needs none).
        if mx.is_empty() && mode != Mode::None {
            return Err("the policy has no mx line".to_string());
        }
        Ok(Policy { mode, mx, max_age_s })
    }

    /// Whether the MX host `mx_host` (any case, with or without a trailing dot) matches one
    /// of the policy's patterns (RFC 8461 §4.1): an exact name, or `*.rest` for a name of
    /// exactly one more label than `rest` ("the wildcard MUST match only a single
    /// leftmost label"; `*.example.net` matches neither `example.net` nor `a.b.example.net`).
    pub fn matches(&self, mx_host: &str) -> bool {
        let host = mx_host.strip_suffix('.').unwrap_or(mx_host).to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        self.mx.iter().any(|pattern| match pattern.strip_prefix("*.") {
            Some(parent) => match host.split_once('.') {
                Some((first_label, rest)) => !first_label.is_empty() && rest == parent,
                None => false,
            },
            None => *pattern == host,
        })
    }
}

/// Reads the `_mta-sts.<domain>` TXT record (RFC 8461 §3.1): `v=STSv1` first, then fields
/// separated by `;` of which `id` (1 to 32 letters and digits) is required and others
/// ignored; gives the id.
///
/// Empty fields (`v=STSv1; ; id=1`, or a trailing `;`) are skipped; an `id` given twice is
/// an error (which one would the policy be cached under?).
pub fn parse_txt(txt: &str) -> Result<String, String> {
    // RFC 8461 §3.1: `sts-field-delim = *WSP ";" *WSP`, and the record begins with
    // `sts-version = %s"v=STSv1"`.
    let mut fields = txt.split(';');
    if fields.next().map(|first| first.trim_end_matches([' ', '\t'])) != Some("v=STSv1") {
        return Err(format!("the record does not start with 'v=STSv1;': {}", shown(txt.as_bytes())));
    }
    let mut id = None;
    for field in fields.map(|field| field.trim_matches([' ', '\t'])).filter(|field| !field.is_empty()) {
        let Some((name, value)) = field.split_once('=') else {
            return Err(format!("field {} has no '='", shown(field.as_bytes())));
        };
        if name == "id" {
            if id.is_some() {
                return Err("id given twice".to_string());
            }
            // RFC 8461 §3.1: `sts-id = %s"id=" 1*32(ALPHA / DIGIT)`.
            if value.is_empty() || value.len() > ID_CHARS_MAX || !value.bytes().all(|byte| byte.is_ascii_alphanumeric())
            {
                return Err(format!("id {} is not 1 to 32 letters and digits", shown(value.as_bytes())));
            }
            id = Some(value.to_string());
        } else if !is_extension_name(name.as_bytes()) {
            return Err(format!("{} is not a field name", shown(name.as_bytes())));
        }
        // RFC 8461 §3.1: other fields (`sts-extension`) are ignored.
    }
    id.ok_or_else(|| "the record has no id".to_string())
}

/// Whether a TXT record claims to be an MTA-STS record, which is how RFC 8461 §3.1 tells
/// them apart from a domain's other TXT records ("records that do not begin with
/// `v=STSv1;` are discarded"); a record that begins so but is malformed still counts, so
/// two such records mean no policy.
pub fn is_sts_record(txt: &str) -> bool {
    match txt.strip_prefix("v=STSv1") {
        Some(rest) => rest.is_empty() || rest.starts_with([';', ' ', '\t']),
        None => false,
    }
}

/// RFC 8461 §3.2: `sts-policy-max-age-value = 1*10DIGIT`, at most [`MAX_AGE_S_MAX`].
fn parse_max_age(value: &[u8]) -> Result<u64, String> {
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return Err(format!("max_age {} is not a number of seconds", shown(value)));
    }
    // At most ten digits: no overflow.
    let seconds = value.iter().fold(0u64, |acc, digit| acc * 10 + u64::from(digit - b'0'));
    if seconds > MAX_AGE_S_MAX {
        return Err(format!("max_age {seconds} is over {MAX_AGE_S_MAX} (one year)"));
    }
    Ok(seconds)
}

/// RFC 8461 §3.2: `sts-policy-mx-value = ["*."] Domain`, Domain as in RFC 5321 §4.1.2:
/// labels of letters, digits and inner hyphens.
fn parse_mx(value: &[u8]) -> Result<String, String> {
    let bad = || format!("mx {} is not a host name or *.host name", shown(value));
    let name = value.strip_suffix(b".").unwrap_or(value);
    let host = name.strip_prefix(b"*.").unwrap_or(name);
    if host.is_empty() || host.len() > NAME_CHARS_MAX {
        return Err(bad());
    }
    for label in host.split(|&byte| byte == b'.') {
        let inner_ok = label.iter().all(|&byte| byte.is_ascii_alphanumeric() || byte == b'-');
        let ends_ok =
            label.first().is_some_and(u8::is_ascii_alphanumeric) && label.last().is_some_and(u8::is_ascii_alphanumeric);
        if label.len() > LABEL_CHARS_MAX || !inner_ok || !ends_ok {
            return Err(bad());
        }
    }
    // Only ASCII letters, digits, hyphens, dots and the leading `*` are left.
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// RFC 8461 §3.1 and §3.2: `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`.
fn is_extension_name(name: &[u8]) -> bool {
    name.len() <= 32
        && name.first().is_some_and(u8::is_ascii_alphanumeric)
        && name.iter().all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.'))
}

fn trim_wsp(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// A piece of input for an error message: quoted, escaped, at most 64 bytes of it, so
/// that a hostile policy cannot fill the logs or the TLS-RPT report.
fn shown(bytes: &[u8]) -> String {
    const SHOWN_BYTES_MAX: usize = 64;
    let mut text: String =
        bytes.iter().take(SHOWN_BYTES_MAX).flat_map(|&byte| std::ascii::escape_default(byte)).map(char::from).collect();
    if bytes.len() > SHOWN_BYTES_MAX {
        text.push('…');
    }
    format!("'{text}'")
}

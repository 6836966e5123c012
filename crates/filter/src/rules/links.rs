//! Links of the text and HTML parts (LINK_TEXT_MISMATCH, LINK_SHORTENER, LINK_IP_LITERAL,
//! LINK_LOOKALIKE), and their hosts for the DNS blocklists.
//!
//! HTML is read by a small scanner, not a parser: it looks for `<a … href=…>` tags and the
//! text up to the next `</a`, skipping other tags and comments; it keeps no stack (no
//! nesting to follow), reads at most `text_bytes_max` bytes of a part and looks at most
//! `links_max` links per message. Plain text gives its `http://` and `https://` URLs.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::domains::{LINK_DOMAINS_WITH_KNOWN_MAX, Lookalikes, registrable};
use super::{Findings, symbol};
use crate::Limits;
use crate::search::{find, find_ignore_case};

/// Known URL shorteners, one a line (`data/shorteners.txt`).
pub const SHORTENERS: &str = include_str!("../../data/shorteners.txt");

/// A link's visible text is read this far for a domain it shows (a real one is short).
const LINK_TEXT_BYTES_MAX: usize = 1024;

/// Top-level domains a bare word of a link's text must end with to be read as a domain
/// (`facture.pdf` is not one); text starting with `http` or `www.` needs none.
const SHOWN_TLDS: &[&str] = &[
    "fr", "com", "net", "org", "eu", "info", "biz", "de", "be", "ch", "uk", "io", "co", "us", "ru", "cn", "es", "it",
    "nl", "ca", "re", "gp", "mq", "nc", "pf", "yt",
];

/// The links of one message, as they are found.
pub struct Scan {
    links_max: usize,
    text_bytes_max: usize,
    n_links: usize,
    hosts: Vec<String>,
    distinct: HashSet<String>,
}

impl Scan {
    pub fn new(limits: &Limits) -> Scan {
        Scan {
            links_max: limits.links_max,
            text_bytes_max: limits.text_bytes_max,
            n_links: 0,
            hosts: Vec::new(),
            distinct: HashSet::new(),
        }
    }

    /// The `http(s)://` URLs of a text part.
    pub fn plain(&mut self, text: &str, findings: &mut Findings) {
        let bytes = self.bounded(text.as_bytes(), findings);
        let mut at = 0;
        while at < bytes.len() {
            let Some(start) = find_ignore_case(&bytes[at..], b"http").map(|found| at + found) else { break };
            let rest = &bytes[start..];
            let scheme_end = if starts_with_ignore_case(rest, b"https://") {
                8
            } else if starts_with_ignore_case(rest, b"http://") {
                7
            } else {
                at = start + 4;
                continue;
            };
            let length =
                rest.iter().position(|b| b.is_ascii_whitespace() || b"<>\"'".contains(b)).unwrap_or(rest.len());
            let url = String::from_utf8_lossy(&rest[..length]);
            if !self.link(&url, None, findings) {
                return;
            }
            at = start + length.max(scheme_end);
        }
    }

    /// The `<a href>` links of an HTML part, each with its visible text.
    pub fn html(&mut self, html: &str, findings: &mut Findings) {
        let bytes = self.bounded(html.as_bytes(), findings);
        let mut at = 0;
        while let Some(open) = bytes[at..].iter().position(|b| *b == b'<').map(|found| at + found) {
            let rest = &bytes[open..];
            if rest.starts_with(b"<!--") {
                at = find(&rest[4..], b"-->").map_or(bytes.len(), |end| open + 4 + end + 3);
                continue;
            }
            let tag_end = find(rest, b">").map_or(bytes.len(), |end| open + end);
            let tag = &bytes[open..tag_end];
            at = (tag_end + 1).min(bytes.len());
            let is_anchor = tag.len() > 2 && tag[1].eq_ignore_ascii_case(&b'a') && tag[2].is_ascii_whitespace();
            if !is_anchor {
                continue;
            }
            let Some(href) = attribute(tag, b"href") else { continue };
            let text_region = &bytes[at..bytes.len().min(at + LINK_TEXT_BYTES_MAX)];
            let text_end = find_ignore_case(text_region, b"</a").unwrap_or(text_region.len());
            let text = visible_text(&text_region[..text_end]);
            if !self.link(&String::from_utf8_lossy(href), Some(&text), findings) {
                return;
            }
        }
    }

    fn bounded<'t>(&self, bytes: &'t [u8], findings: &mut Findings) -> &'t [u8] {
        if bytes.len() > self.text_bytes_max {
            findings.limit("text_bytes_max");
            &bytes[..self.text_bytes_max]
        } else {
            bytes
        }
    }

    /// One link; false when `links_max` is reached (the scan stops).
    fn link(&mut self, url: &str, text: Option<&str>, findings: &mut Findings) -> bool {
        if self.n_links >= self.links_max {
            findings.limit("links_max");
            return false;
        }
        self.n_links += 1;
        let Some(host) = host_of(url) else { return true };
        if is_ip_literal(&host) {
            findings.add(symbol::LINK_IP_LITERAL, || format!("link to {host}"));
            return true;
        }
        let Some(host) = ascii_host(&host) else { return true };
        if is_shortener(&host) {
            findings.add(symbol::LINK_SHORTENER, || format!("link through the shortener {host}"));
        }
        if let Some(text) = text
            && let Some(shown) = shown_domain(text)
            && registrable(&shown) != registrable(&host)
            && !findings.has(symbol::LINK_TEXT_MISMATCH.0)
        {
            findings.add(symbol::LINK_TEXT_MISMATCH, || format!("link text shows {shown} but goes to {host}"));
        }
        if !self.distinct.contains(&host) {
            self.distinct.insert(host.clone());
            self.hosts.push(host);
        }
        true
    }

    /// LINK_LOOKALIKE for the first link host (by registrable domain) that imitates a
    /// reference.
    pub fn judge(&self, lookalikes: &mut Lookalikes<'_, '_>, findings: &mut Findings) {
        let mut checked = HashSet::new();
        for host in &self.hosts {
            let domain = registrable(host);
            if !checked.insert(domain) {
                continue;
            }
            let with_known = checked.len() <= LINK_DOMAINS_WITH_KNOWN_MAX;
            if let Some(found) = lookalikes.check(domain, with_known) {
                findings
                    .add(symbol::LINK_LOOKALIKE, || format!("link to {host}, which looks like {}", found.reference));
                return;
            }
        }
    }

    pub fn into_hosts(self) -> Vec<String> {
        self.hosts
    }
}

/// The host of an `http(s)` URL, lower case, without user information and port; an IPv6
/// literal keeps its brackets.
pub fn host_of(url: &str) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or("");
    // `http://impots.gouv.fr@evil.example/`: the host is after the last `@`.
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let host = host.trim_end_matches('.').to_lowercase();
    (!host.is_empty()).then_some(host)
}

/// `[…]`, a dotted IPv4 address, or a number (browsers read `http://3232235777/` as one).
fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[')
        || host.parse::<Ipv4Addr>().is_ok()
        || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || (host.starts_with("0x") && host.bytes().skip(2).all(|b| b.is_ascii_hexdigit() || b == b'.'))
}

/// The host as A-labels; `None` for a host no resolver would look up.
fn ascii_host(host: &str) -> Option<String> {
    if host.is_ascii() {
        let valid = host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        return (valid && host.contains('.')).then(|| host.to_owned());
    }
    idna::domain_to_ascii(host).ok().filter(|ascii| ascii.contains('.'))
}

fn is_shortener(host: &str) -> bool {
    let domain = registrable(host);
    SHORTENERS.lines().map(str::trim).any(|line| !line.starts_with('#') && (line == domain || line == host))
}

/// The domain a link's visible text shows, if it shows one: a URL, a `www.` name, or a
/// bare name ending with a [`SHOWN_TLDS`] TLD when it is the whole text.
fn shown_domain(text: &str) -> Option<String> {
    let trimmed = text.trim();
    let words: Vec<&str> = trimmed.split_whitespace().take(8).collect();
    for word in &words {
        let word =
            word.trim_start_matches(['(', '<', '[', '"']).trim_end_matches(['.', ',', ';', ':', ')', '>', ']', '"']);
        let lower = word.to_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return host_of(&lower).and_then(|host| ascii_host(&host));
        }
        if lower.starts_with("www.") {
            let host = lower.split(['/', '?', '#']).next().unwrap_or("");
            return ascii_host(host);
        }
    }
    if words.len() == 1 {
        let word = words[0].trim_end_matches(['.', ',', ';', ':']).to_lowercase();
        let host = word.split('/').next().unwrap_or("");
        let tld = host.rsplit_once('.').map(|(_, tld)| tld)?;
        if SHOWN_TLDS.contains(&tld) && !host.contains('@') {
            return ascii_host(host);
        }
    }
    None
}

/// The text of an HTML fragment: tags removed, a few entities decoded.
fn visible_text(fragment: &[u8]) -> String {
    let mut text = Vec::with_capacity(fragment.len());
    let mut in_tag = false;
    for &byte in fragment {
        match byte {
            b'<' => in_tag = true,
            b'>' => in_tag = false,
            _ if !in_tag => text.push(byte),
            _ => {}
        }
    }
    String::from_utf8_lossy(&text).replace("&nbsp;", " ").replace("&#46;", ".").replace("&amp;", "&")
}

/// The value of attribute `name` in a tag (`<a href="…">`), quoted or not.
fn attribute<'t>(tag: &'t [u8], name: &[u8]) -> Option<&'t [u8]> {
    let mut at = 0;
    while let Some(found) = find_ignore_case(&tag[at..], name).map(|found| at + found) {
        at = found + name.len();
        let before_ok =
            found > 0 && (tag[found - 1].is_ascii_whitespace() || tag[found - 1] == b'"' || tag[found - 1] == b'\'');
        let mut value_at = at;
        while tag.get(value_at).is_some_and(u8::is_ascii_whitespace) {
            value_at += 1;
        }
        if !before_ok || tag.get(value_at) != Some(&b'=') {
            continue;
        }
        value_at += 1;
        while tag.get(value_at).is_some_and(u8::is_ascii_whitespace) {
            value_at += 1;
        }
        let value = &tag[value_at.min(tag.len())..];
        return Some(match value.first() {
            Some(&quote @ (b'"' | b'\'')) => {
                let inner = &value[1..];
                &inner[..inner.iter().position(|b| *b == quote).unwrap_or(inner.len())]
            }
            _ => &value[..value.iter().position(u8::is_ascii_whitespace).unwrap_or(value.len())],
        });
    }
    None
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

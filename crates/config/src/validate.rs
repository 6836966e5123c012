//! Range and relationship checks, and the mapping of errors to file lines and keys.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::{Config, Error, Source};

/// Checks every limit's range and the relationships between limits (STYLE.md: assert
/// them at start). Returns the first problem.
pub(crate) fn check(config: &Config) -> Result<(), Error> {
    let source = config.source.as_ref();
    let fail = |key: &str, problem: String| Err(error_at(source, key, problem));
    let owners = [config.store.check(), config.mail.check(), config.directory.check(), config.auth.check()];
    for checked in owners {
        if let Err(problem) = checked {
            return fail(&problem.key, problem.problem);
        }
    }
    let ranges: Vec<(&str, u64, u64, u64)> = vec![
        ("server.shutdown_grace_s", config.server.shutdown_grace_s, 1, 3600),
        ("http.connections_max", config.http.connections_max as u64, 1, 1_000_000),
        ("http.connections_per_ip_max", config.http.connections_per_ip_max as u64, 1, 100_000),
        ("http.header_timeout_s", config.http.header_timeout_s, 1, 3600),
        ("http.body_timeout_s", config.http.body_timeout_s, 1, 3600),
        ("http.write_timeout_s", config.http.write_timeout_s, 1, 3600),
        ("http.listen", config.http.listen.len() as u64, 0, 64),
        ("http.request_bytes_max", config.http.request_bytes_max as u64, 1024, 64 << 20),
        ("dns.resolvers", config.dns.resolvers.len() as u64, 0, 16),
        ("dns.timeout_s", config.dns.timeout_s, 1, 60),
        ("dns.cache_entries", config.dns.cache_entries, 0, 10_000_000),
        ("dns.cache_ttl_max_s", config.dns.cache_ttl_max_s, 1, 86_400),
        ("smtp.listen", config.smtp.listen.len() as u64, 0, 64),
        ("smtp.connections_max", config.smtp.connections_max as u64, 1, 1_000_000),
        ("smtp.connections_per_ip_max", config.smtp.connections_per_ip_max as u64, 1, 100_000),
        // RFC 5321 §4.5.3.1.4: a command line of 512 bytes must be accepted.
        ("smtp.line_bytes_max", config.smtp.line_bytes_max as u64, 512, 1 << 20),
        ("smtp.message_bytes_max", config.smtp.message_bytes_max as u64, 64 * 1024, 1 << 30),
        ("smtp.bdat_chunk_bytes_max", config.smtp.bdat_chunk_bytes_max as u64, 1024, 1 << 30),
        // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
        ("smtp.recipients_max", config.smtp.recipients_max as u64, 100, 100_000),
        ("smtp.commands_max", config.smtp.commands_max as u64, 10, 10_000_000),
        ("smtp.errors_max", config.smtp.errors_max as u64, 1, 10_000),
        ("smtp.command_timeout_s", config.smtp.command_timeout_s, 1, 3600),
        ("smtp.data_timeout_s", config.smtp.data_timeout_s, 1, 3600),
        ("smtp.session_timeout_s", config.smtp.session_timeout_s, 1, 86_400),
        ("smtp.tls_handshake_timeout_s", config.smtp.tls_handshake_timeout_s, 1, 600),
        ("smtp.reply_bytes_max", config.smtp.reply_bytes_max as u64, 512, 16 << 20),
        ("smtp.write_timeout_s", config.smtp.write_timeout_s, 1, 3600),
        ("smtp.arc_trusted_sealers", config.smtp.arc_trusted_sealers.len() as u64, 0, 1000),
        ("smtp.dkim_signatures_max", config.smtp.dkim_signatures_max as u64, 1, 100),
        // RFC 8617 §4.2.1: instance numbers go up to 50.
        ("smtp.arc_sets_max", config.smtp.arc_sets_max as u64, 1, 50),
        ("smtp.verifications_max", config.smtp.verifications_max as u64, 1, 1024),
        ("imap.listen", config.imap.listen.len() as u64, 0, 64),
        ("imap.listen_tls", config.imap.listen_tls.len() as u64, 0, 64),
        ("imap.connections_max", config.imap.connections_max as u64, 1, 1_000_000),
        ("imap.connections_per_ip_max", config.imap.connections_per_ip_max as u64, 1, 1_000_000),
        // RFC 7162 §4: lines of at least 8192 octets.
        ("imap.command_line_bytes_max", config.imap.command_line_bytes_max as u64, 8192, 16 << 20),
        ("imap.literal_bytes_max", config.imap.literal_bytes_max as u64, 64 * 1024, 1 << 30),
        ("imap.append_bytes_max", config.imap.append_bytes_max as u64, 64 * 1024, 4 << 30),
        ("imap.literal_discard_bytes_max", config.imap.literal_discard_bytes_max, 0, 16 << 30),
        ("imap.nesting_depth_max", config.imap.nesting_depth_max as u64, 4, 1000),
        ("imap.pipelined_bytes_max", config.imap.pipelined_bytes_max as u64, 8192, 16 << 20),
        ("imap.errors_max", config.imap.errors_max as u64, 1, 10_000),
        ("imap.auth_failures_max", config.imap.auth_failures_max as u64, 1, 100),
        // RFC 9051 §5.4: an autologout timer of at least 30 minutes.
        ("imap.idle_timeout_s", config.imap.idle_timeout_s, 1800, 86_400),
        ("imap.not_authenticated_timeout_s", config.imap.not_authenticated_timeout_s, 1, 3600),
        ("imap.command_timeout_s", config.imap.command_timeout_s, 1, 3600),
        ("imap.tls_handshake_timeout_s", config.imap.tls_handshake_timeout_s, 1, 600),
        ("imap.summary_cache_entries", config.imap.summary_cache_entries as u64, 0, 10_000_000),
        ("imap.text_cache_bytes", config.imap.text_cache_bytes as u64, 0, 64 << 30),
        ("imap.summary_cache_bytes", config.imap.summary_cache_bytes as u64, 0, 64 << 30),
        ("imap.write_timeout_s", config.imap.write_timeout_s, 1, 3600),
        ("imap.fetch_items_max", config.imap.fetch_items_max as u64, 8, 10_000),
        ("imap.search_keys_max", config.imap.search_keys_max as u64, 8, 100_000),
        // A mailbox name has at most 1,000 bytes.
        ("imap.list_pattern_bytes_max", config.imap.list_pattern_bytes_max as u64, 1024, 1 << 20),
        ("imap.output_bytes_max", config.imap.output_bytes_max as u64, 4096, 64 << 20),
        ("imap.inflate_bytes_max", config.imap.inflate_bytes_max as u64, 4096, 16 << 20),
        ("imap.thread_references_max", config.imap.thread_references_max as u64, 1, 100_000),
        ("imap.thread_work_max", config.imap.thread_work_max, 1000, 1 << 40),
    ];
    for (key, value, min, max) in ranges {
        if value < min || value > max {
            return fail(key, format!("{value} is out of range: it must be between {min} and {max}"));
        }
    }
    // One delivery takes about 16 store operations (records, index, counters, blob): an
    // ingest at its limit must fit in one batch.
    if config.mail.ingest_batch_max * 16 > config.store.limits.batch_ops_max {
        return fail(
            "mail.ingest_batch_max",
            format!(
                "{} deliveries of about 16 operations each do not fit in store.batch_ops_max ({})",
                config.mail.ingest_batch_max, config.store.limits.batch_ops_max
            ),
        );
    }
    if let Err(e) = config.imap_limits().check() {
        return fail("imap", e.to_string());
    }
    if let Err(e) = config.smtp_limits().check() {
        return fail("smtp", e.to_string());
    }
    let postmaster = &config.smtp.postmaster;
    if !postmaster.is_empty()
        && !postmaster.rsplit_once('@').is_some_and(|(local, domain)| !local.is_empty() && is_domain_name(domain))
    {
        return fail(
            "smtp.postmaster",
            format!("{postmaster:?} is not an address with a lower-case domain such as \"postmaster@commune.fr\""),
        );
    }
    if let Some(bad) = config.smtp.arc_trusted_sealers.iter().find(|name| !is_domain_name(name)) {
        return fail(
            "smtp.arc_trusted_sealers",
            format!("{bad:?} is not a lower-case domain name such as \"listes.example.fr\""),
        );
    }
    // Every way in stores a message as one blob.
    for (key, bytes) in [
        ("smtp.message_bytes_max", config.smtp.message_bytes_max),
        ("imap.literal_bytes_max", config.imap.literal_bytes_max),
    ] {
        if bytes as u64 > config.store.limits.blob_bytes_max {
            return fail(
                key,
                format!(
                    "{bytes} is larger than store.blob_bytes_max ({}): a message is stored as one blob",
                    config.store.limits.blob_bytes_max
                ),
            );
        }
    }
    let token = &config.http.metrics_token;
    if !token.is_empty() && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic())) {
        return fail("http.metrics_token", "must be empty (disabled) or at least 16 visible ASCII characters".into());
    }
    if !valid_hostname(&config.server.hostname) {
        return fail(
            "server.hostname",
            format!("{:?} is not a valid host name (letters, digits, '-' and '.')", config.server.hostname),
        );
    }
    if config.server.data_dir.as_os_str().is_empty() {
        return fail("server.data_dir", "must not be empty".into());
    }
    Ok(())
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An error from the TOML deserializer, with its line and the key it is about.
pub(crate) fn from_toml(source: &Source, error: toml::de::Error) -> Error {
    let span = error.span();
    let line = span.as_ref().map(|span| line_of(&source.text, span.start));
    let key = span.as_ref().and_then(|span| key_at(&source.text, span));
    let mut problem = error.message().to_string();
    // serde names the unknown key in its message; the span points at it.
    if let Some(unknown) = problem.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        let unknown = unknown.to_string();
        let expected = problem.split_once(", expected ").map(|(_, expected)| expected.trim_start_matches("one of "));
        problem = match expected {
            Some(expected) => format!("unknown key `{unknown}` (known keys: {expected})"),
            None => format!("unknown key `{unknown}`"),
        };
    }
    // serde names Rust types; a sysadmin reads TOML.
    for (rust, toml) in [
        ("expected usize", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected a sequence", "expected an array"),
    ] {
        problem = problem.replace(rust, toml);
    }
    if let Some(at) = problem.find("expected struct ") {
        problem.truncate(at);
        problem.push_str("expected a table");
    }
    Error { file: Some(source.path.clone()), line, key, problem }
}

/// An error about `key` (dotted path) at `span` of the file.
pub(crate) fn error_at_span(source: &Source, span: Range<usize>, key: &str, problem: String) -> Error {
    let line = line_of(&source.text, span.start);
    Error { file: Some(source.path.clone()), line: Some(line), key: Some(key.to_string()), problem }
}

/// An error about `key` (dotted path), at its line when the file sets it.
pub(crate) fn error_at(source: Option<&Source>, key: &str, problem: String) -> Error {
    let line = source.and_then(|source| {
        let document = DeTable::parse(&source.text).ok()?;
        let span = find_key(document.get_ref(), key)?;
        Some(line_of(&source.text, span.start))
    });
    Error { file: source.map(|source| source.path.clone()), line, key: Some(key.to_string()), problem }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// The span of the dotted `path` in the document.
fn find_key(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let (first, rest) = match path.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (path, None),
    };
    let (name, value) = table.iter().find(|(name, _)| name.get_ref() == first)?;
    match (rest, value.get_ref()) {
        (None, _) => Some(name.span()),
        (Some(rest), DeValue::Table(inner)) => find_key(inner, rest),
        (Some(_), _) => None,
    }
}

/// The dotted path of the key whose name or value holds `span`.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let document = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    walk(document.get_ref(), span, &mut path).then(|| path.join("."))
}

fn walk(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
    for (name, value) in table.iter() {
        let inside =
            |spanned: Range<usize>| spanned.start <= span.start && span.end <= spanned.end.max(spanned.start + 1);
        if inside(name.span()) {
            path.push(name.get_ref().to_string());
            return true;
        }
        if let DeValue::Table(inner) = value.get_ref() {
            path.push(name.get_ref().to_string());
            if walk(inner, span, path) {
                return true;
            }
            path.pop();
        } else if inside(value.span()) {
            path.push(name.get_ref().to_string());
            return true;
        }
    }
    false
}

/// A lower-case ASCII domain name (IDNs in their `xn--` form) of at least two labels.
fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

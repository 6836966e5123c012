//! Range and relationship checks, and the mapping of errors to file lines and keys.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::{Config, Error, Source};

/// Checks every section with its owner's `check`, then what only `config` sees: `[server]`
/// and the relationships between sections (STYLE.md: assert them at start). Returns the
/// first problem.
pub(crate) fn check(config: &Config) -> Result<(), Error> {
    let source = config.source.as_ref();
    let fail = |key: &str, problem: String| Err(error_at(source, key, problem));
    let owners = [
        config.store.check(),
        config.mail.check(),
        config.directory.check(),
        config.auth.check(),
        config.http.check(),
        config.smtp.check(),
        config.imap.check(),
        config.dns.check(),
        config.submission.check(),
        config.queue.check(),
        config.outbound.check(),
        config.acme.check(),
        config.migrate.check(),
        config.backup.check(),
        config.filter.check(),
        config.jmap.check(),
    ];
    for checked in owners {
        if let Err(problem) = checked {
            return fail(&problem.key, problem.problem);
        }
    }
    // HTTP-01 is answered on port 80 only.
    if config.acme.enabled()
        && config.acme.challenge == hameau_acme::Challenge::Http01
        && config.http.listen_plain.is_empty()
    {
        return fail("acme.challenge", "\"http-01\" needs the plain HTTP listener: http.listen_plain is []".into());
    }
    if let Err(problem) = hameau_limits::range("server", "shutdown_grace_s", config.server.shutdown_grace_s, 1, 3600) {
        return fail(&problem.key, problem.problem);
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
    // Every way in stores a message as one blob.
    for (key, bytes) in [
        ("smtp.message_bytes_max", config.smtp.limits.message_bytes_max),
        ("imap.literal_bytes_max", config.imap.limits.literal_bytes_max),
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
    // A backup writes each record as one line: the longest key and value, in base64
    // (4/3) and JSON, must fit in a line a restore reads back.
    let record_line_bytes = (config.store.limits.key_bytes_max + config.store.limits.value_bytes_max) / 3 * 4 + 4096;
    if (config.backup.line_bytes_max as u64) < record_line_bytes as u64 {
        return fail(
            "backup.line_bytes_max",
            format!(
                "{} is smaller than a record line of store.key_bytes_max and store.value_bytes_max in base64 ({record_line_bytes})",
                config.backup.line_bytes_max
            ),
        );
    }
    if !valid_hostname(&config.server.hostname) {
        return fail(
            "server.hostname",
            format!("{:?} is not a valid host name (letters, digits, '-' and '.')", config.server.hostname),
        );
    }
    for entry in &config.tls.sni {
        if entry.names.is_empty() {
            return fail("tls.sni", "each certificate must list the names it serves (names = [...])".into());
        }
        let bad = entry.names.iter().find(|name| !valid_hostname(name.strip_prefix("*.").unwrap_or(name)));
        if let Some(name) = bad {
            return fail("tls.sni", format!("{name:?} is not a valid host name (letters, digits, '-' and '.')"));
        }
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

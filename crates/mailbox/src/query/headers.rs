//! A message's header as the conditions on it read it: split into fields once per message
//! and each field decoded at most once, whatever the number of conditions (IMAP `HEADER`
//! and `TEXT`, JMAP `header` and `text`).

use std::cell::OnceCell;

/// What the conditions made of one message's header so far.
#[derive(Default)]
pub(super) struct Header {
    fields: Option<Vec<Field>>,
    /// The header as text, lowercased.
    lowercase: Option<String>,
}

impl Header {
    pub(super) fn has_fields(&self) -> bool {
        self.fields.is_some()
    }

    pub(super) fn set_fields(&mut self, fields: Vec<Field>) {
        self.fields = Some(fields);
    }

    pub(super) fn has_lowercase(&self) -> bool {
        self.lowercase.is_some()
    }

    pub(super) fn set_lowercase(&mut self, lowercase: String) {
        self.lowercase = Some(lowercase);
    }

    /// Whether a field named `name` has a value containing `value` (both lowercased
    /// already), decoded (RFC 2047 encoded words) and lowercased when first asked.
    pub(super) fn field_contains(&self, name: &str, value: &str) -> bool {
        self.fields
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|field| field.name == name)
            .any(|field| field.decoded.get_or_init(|| decode_header_value(&field.value).to_lowercase()).contains(value))
    }

    /// Whether the header's text contains `needle` (lowercased already).
    pub(super) fn contains(&self, needle: &str) -> bool {
        needle.is_empty() || self.lowercase.as_deref().is_some_and(|text| text.contains(needle))
    }
}

/// One header field: its name lowercased, its value as written, and the value decoded
/// and lowercased when a condition first asks for it.
pub(super) struct Field {
    pub(super) name: String,
    pub(super) value: String,
    pub(super) decoded: OnceCell<String>,
}

/// The header's fields, unfolded.
pub(super) fn parse_fields(header: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut current: Option<String> = None;
    let mut finish = |field: Option<String>| {
        if let Some((name, value)) = field.as_deref().and_then(|field| field.split_once(':')) {
            let (name, value) = (name.trim().to_lowercase(), value.to_string());
            fields.push(Field { name, value, decoded: OnceCell::new() });
        }
    };
    for line in header.split_inclusive(|b| *b == b'\n') {
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            if let Some(field) = &mut current {
                field.push_str(line.trim_end_matches(['\r', '\n']));
            }
            continue;
        }
        finish(current.take());
        current = Some(line.trim_end_matches(['\r', '\n']).to_string());
    }
    finish(current);
    fields
}

/// A header value with its encoded words (RFC 2047) decoded, for matching.
pub(super) fn decode_header_value(value: &str) -> String {
    // Parsed as a Subject: mail-parser decodes the encoded words of the fields it knows as
    // text, and keeps other fields' values raw.
    // A panic of the parser on a stored header (it has a few) leaves the value raw.
    let field = format!("Subject: {value}\r\n\r\n");
    std::panic::catch_unwind(|| {
        mail_parser::MessageParser::default()
            .parse_headers(field.as_bytes())
            .and_then(|message| message.subject().map(str::to_string))
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| value.trim().to_string())
}

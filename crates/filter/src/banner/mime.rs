//! The byte-level pieces the banner needs: a header block's fields with their exact
//! ranges, a parameter's value inside a field, and the transfer encodings (RFC 2045 §6.7
//! quoted-printable, §6.8 base64). Each is one pass over its input, without recursion.

use std::ops::Range;

use base64::Engine as _;

/// One header field as it is in the message: `range` from the name to the end of its last
/// line, line break included; `value` from after the colon to before the last line break.
#[derive(Clone, Debug)]
pub(super) struct Field {
    pub range: Range<usize>,
    pub name: Range<usize>,
    pub value: Range<usize>,
}

/// The fields of a header block, the empty line that closes it, where a field can be added.
pub(super) struct Header {
    pub fields: Vec<Field>,
    /// Where a new field goes: after the last field's line break.
    pub end: usize,
    /// The block is closed by an empty line (a body follows).
    pub closed: bool,
    /// The last field's last line has a line break (a field can be appended after it).
    pub ends_with_newline: bool,
}

impl Header {
    /// The header block from `start`, read no further than `end`.
    pub fn parse(raw: &[u8], start: usize, end: usize) -> Header {
        let raw = &raw[..end.min(raw.len())];
        let mut fields: Vec<Field> = Vec::new();
        let mut position = start;
        let mut closed = false;
        let mut ends_with_newline = true;
        while position < raw.len() {
            let line_end = memchr(b'\n', &raw[position..]).map_or(raw.len(), |index| position + index + 1);
            let line = &raw[position..line_end];
            if line == b"\n" || line == b"\r\n" {
                closed = true;
                break;
            }
            ends_with_newline = line.ends_with(b"\n");
            let continuation = matches!(line[0], b' ' | b'\t');
            match fields.last_mut() {
                Some(field) if continuation => {
                    field.range.end = line_end;
                    field.value.end = line_end - newline_len(line);
                }
                _ => {
                    // A line without a colon is kept as a field of no name: it is copied as
                    // it is and never matched.
                    let colon = memchr(b':', line).unwrap_or(0);
                    let name_end = position + colon;
                    let value_start = if colon == 0 { position } else { name_end + 1 };
                    fields.push(Field {
                        range: position..line_end,
                        name: position..name_end,
                        value: value_start..line_end - newline_len(line),
                    });
                }
            }
            position = line_end;
        }
        Header { fields, end: position, closed, ends_with_newline }
    }

    /// The first field named `name` (ASCII case folded, blanks before the colon allowed).
    pub fn find(&self, raw: &[u8], name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| trim(&raw[field.name.clone()]).eq_ignore_ascii_case(name.as_bytes()))
    }
}

fn newline_len(line: &[u8]) -> usize {
    if line.ends_with(b"\r\n") {
        2
    } else if line.ends_with(b"\n") {
        1
    } else {
        0
    }
}

pub(super) fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|byte| *byte == needle)
}

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|byte| !byte.is_ascii_whitespace()).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|byte| !byte.is_ascii_whitespace()).map_or(start, |index| index + 1);
    &bytes[start..end]
}

/// Where the value of parameter `name` is in a field's `value` (quotes included), for a
/// `charset=` to be replaced in place and the rest of the field kept byte for byte.
/// Quoted strings and comments are stepped over, so a `charset=` inside one is not taken.
pub(super) fn parameter(value: &[u8], name: &str) -> Option<Range<usize>> {
    let mut index = 0;
    let mut in_quotes = false;
    let mut comment_depth = 0usize;
    while index < value.len() {
        let byte = value[index];
        if in_quotes {
            match byte {
                b'\\' => index += 1,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else if comment_depth > 0 {
            match byte {
                b'\\' => index += 1,
                b'(' => comment_depth += 1,
                b')' => comment_depth -= 1,
                _ => {}
            }
        } else if byte == b'"' {
            in_quotes = true;
        } else if byte == b'(' {
            comment_depth = 1;
        } else if byte == b';' {
            let mut start = index + 1;
            while start < value.len() && value[start].is_ascii_whitespace() {
                start += 1;
            }
            let name_end = start + name.len();
            if name_end < value.len() && value[start..name_end].eq_ignore_ascii_case(name.as_bytes()) {
                let mut equals = name_end;
                while equals < value.len() && value[equals].is_ascii_whitespace() {
                    equals += 1;
                }
                if equals < value.len() && value[equals] == b'=' {
                    let mut value_start = equals + 1;
                    while value_start < value.len() && value[value_start].is_ascii_whitespace() {
                        value_start += 1;
                    }
                    return Some(value_start..token_end(value, value_start));
                }
            }
        }
        index += 1;
    }
    None
}

/// The end of the token or quoted string starting at `start`.
fn token_end(value: &[u8], start: usize) -> usize {
    if value.get(start) == Some(&b'"') {
        let mut index = start + 1;
        while index < value.len() {
            match value[index] {
                b'\\' => index += 1,
                b'"' => return index + 1,
                _ => {}
            }
            index += 1;
        }
        return value.len();
    }
    value[start..]
        .iter()
        .position(|byte| byte.is_ascii_whitespace() || matches!(byte, b';' | b'(' | b'"'))
        .map_or(value.len(), |offset| start + offset)
}

/// Quoted-printable, lenient as receivers are (RFC 2045 §6.7 note 1): a malformed `=` is
/// kept as it is.
pub(super) fn qp_decode(encoded: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(encoded.len());
    // Blanks written as they are at the end of what is decoded: removed at a line break
    // (RFC 2045 §6.7 rule 3, added in transport), as a blank written `=20` is not.
    let mut literal_blanks = 0;
    let mut index = 0;
    while index < encoded.len() {
        let byte = encoded[index];
        if byte == b'\r' && encoded.get(index + 1) != Some(&b'\n') {
            // A lone CR is not quoted-printable text (§6.7 rule 4): dropped, as mail-parser does.
            index += 1;
            continue;
        }
        if byte != b'=' {
            if byte == b'\n' {
                let carriage_return = decoded.last() == Some(&b'\r');
                if carriage_return {
                    decoded.pop();
                }
                decoded.truncate(decoded.len() - literal_blanks);
                if carriage_return {
                    decoded.push(b'\r');
                }
                literal_blanks = 0;
            } else if matches!(byte, b' ' | b'\t') {
                literal_blanks += 1;
            } else if !(byte == b'\r' && encoded.get(index + 1) == Some(&b'\n')) {
                literal_blanks = 0;
            }
            decoded.push(byte);
            index += 1;
            continue;
        }
        literal_blanks = 0;
        let rest = &encoded[index + 1..];
        if rest.is_empty() {
            // A soft line break at the very end: the line break is the boundary's.
            break;
        } else if rest.starts_with(b"\r\n") {
            index += 3;
        } else if rest.starts_with(b"\n") {
            index += 2;
        } else if let (Some(high), Some(low)) = (rest.first().and_then(hex), rest.get(1).and_then(hex)) {
            decoded.push(high << 4 | low);
            index += 3;
        } else {
            // Blanks after a soft line break's `=` (RFC 2045 §6.7 rule 3: transport padding).
            let blanks = rest.iter().take_while(|byte| matches!(byte, b' ' | b'\t')).count();
            let after = &rest[blanks..];
            if blanks > 0 && (after.starts_with(b"\r\n") || after.starts_with(b"\n")) {
                index += 1 + blanks + if after.starts_with(b"\r\n") { 2 } else { 1 };
            } else {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    // The body ends where the boundary's line break starts: the last line ends there too.
    decoded.truncate(decoded.len() - literal_blanks);
    decoded
}

/// Every `=` of `encoded` starts a hex pair or a soft line break: a decoder then reads it
/// as [`qp_decode`] does. A `=` otherwise is read differently by different decoders (some
/// give up on the whole part and show it encoded).
pub(super) fn qp_is_strict(encoded: &[u8]) -> bool {
    let mut index = 0;
    while let Some(offset) = memchr(b'=', &encoded[index..]) {
        let rest = &encoded[index + offset + 1..];
        let blanks = rest.iter().take_while(|byte| matches!(byte, b' ' | b'\t')).count();
        let soft_break =
            rest[blanks..].starts_with(b"\r\n") || rest[blanks..].starts_with(b"\n") || rest.len() == blanks;
        let pair = rest.len() >= 2 && hex(&rest[0]).is_some() && hex(&rest[1]).is_some();
        if !(soft_break || pair) {
            return false;
        }
        index += offset + 1;
    }
    true
}

fn hex(byte: &u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Quoted-printable with lines of at most 76 characters (RFC 2045 §6.7 rule 5): each line
/// break of `decoded` (CRLF, or a lone LF) becomes a hard `newline`; a blank before a line
/// break, `=`, controls and bytes above 126 are encoded.
pub(super) fn qp_encode(decoded: &[u8], newline: &str) -> Vec<u8> {
    const LINE_CHARS_MAX: usize = 76;
    let mut encoded = Vec::with_capacity(decoded.len() + decoded.len() / 8 + 8);
    let mut line_len = 0;
    let mut index = 0;
    while index < decoded.len() {
        let byte = decoded[index];
        let rest = &decoded[index..];
        if rest.starts_with(b"\r\n") || byte == b'\n' {
            encoded.extend_from_slice(newline.as_bytes());
            line_len = 0;
            index += if byte == b'\n' { 1 } else { 2 };
            continue;
        }
        let next = decoded.get(index + 1);
        let at_line_end = next.is_none() || next == Some(&b'\n') || rest[1..].starts_with(b"\r\n");
        let literal = matches!(byte, b'!'..=b'<' | b'>'..=b'~') || (matches!(byte, b' ' | b'\t') && !at_line_end);
        let width = if literal { 1 } else { 3 };
        // Room for the soft break's `=`, unless this is the line's last character.
        let room = if at_line_end { LINE_CHARS_MAX } else { LINE_CHARS_MAX - 1 };
        if line_len + width > room {
            encoded.push(b'=');
            encoded.extend_from_slice(newline.as_bytes());
            line_len = 0;
        }
        if literal {
            encoded.push(byte);
        } else {
            encoded.extend_from_slice(format!("={byte:02X}").as_bytes());
        }
        line_len += width;
        index += 1;
    }
    encoded
}

/// Base64 as a receiver reads it: blanks and line breaks skipped, padding optional.
/// `None` when what is left is not base64 (the part is then not rewritten).
pub(super) fn base64_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let compact: Vec<u8> = encoded.iter().copied().filter(|byte| !byte.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(compact).ok()
}

/// Base64 in lines of 76 characters (RFC 2045 §6.8), each but the last followed by
/// `newline`.
pub(super) fn base64_encode(decoded: &[u8], newline: &str) -> Vec<u8> {
    let flat = base64::engine::general_purpose::STANDARD.encode(decoded);
    let mut encoded = Vec::with_capacity(flat.len() + flat.len() / 76 * newline.len() + 2);
    for (index, line) in flat.as_bytes().chunks(76).enumerate() {
        if index > 0 {
            encoded.extend_from_slice(newline.as_bytes());
        }
        encoded.extend_from_slice(line);
    }
    encoded
}

//! The header section of a message as the MX reads it before storing it: its fields one
//! by one (RFC 5322 §2.2), without parsing their values, and the authserv-id of
//! `Authentication-Results` (RFC 8601 §2.2), so that results claiming our name can be
//! removed however they are written (RFC 8601 §5).
//!
//! Work is linear in the header section and memory is constant: no recursion (comments
//! nest, and are skipped with a depth counter), no allocation but for a quoted
//! authserv-id holding escapes or folding.

use std::borrow::Cow;

/// One header field: its name and its bytes, from the start of its name to the end of its
/// last (folded) line, line break included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name, without the colon and the white space around it (RFC 5322 §4.5.8 allows
    /// white space before the colon); empty when the first line has no colon.
    pub name: &'a [u8],
    /// What follows the colon, folded lines and line breaks included.
    pub value: &'a [u8],
    /// Offset of the field in the message.
    pub start: usize,
    /// Offset just past the field.
    pub end: usize,
}

impl Field<'_> {
    /// Whether the field's name is `name`, compared without regard to case.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }
}

/// The fields of a message's header section, in order. A line starting with a space or a
/// tab continues the field before it (RFC 5322 §2.2.3); the section ends at the first empty
/// line (RFC 5322 §2.1) or at the end of the message.
#[derive(Clone, Debug)]
pub struct Fields<'a> {
    raw: &'a [u8],
    pos: usize,
    body_start: Option<usize>,
}

impl<'a> Fields<'a> {
    pub fn new(raw: &'a [u8]) -> Fields<'a> {
        Fields { raw, pos: 0, body_start: None }
    }

    /// Where the body starts (just past the empty line), or the message's length when it
    /// has none; known once the iterator has returned `None`.
    pub fn body_start(&self) -> Option<usize> {
        self.body_start
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.body_start.is_some() {
            return None;
        }
        let raw = self.raw;
        let start = self.pos;
        let first_end = line_end(raw, start);
        if start >= raw.len() || matches!(&raw[start..first_end], b"\r\n" | b"\n") {
            self.body_start = Some(first_end);
            self.pos = first_end;
            return None;
        }
        let mut end = first_end;
        while matches!(raw.get(end), Some(b' ' | b'\t')) {
            end = line_end(raw, end);
        }
        self.pos = end;
        let first_line = &raw[start..first_end];
        let (name, value) = match first_line.iter().position(|&byte| byte == b':') {
            Some(colon) => (first_line[..colon].trim_ascii(), &raw[start + colon + 1..end]),
            None => (&[][..], &raw[start..end]),
        };
        Some(Field { name, value, start, end })
    }
}

/// Just past the line break of the line starting at `pos`, or the end of `raw`.
fn line_end(raw: &[u8], pos: usize) -> usize {
    match raw.get(pos..).and_then(|rest| rest.iter().position(|&byte| byte == b'\n')) {
        Some(lf) => pos + lf + 1,
        None => raw.len(),
    }
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2): after optional
/// comments and folding white space (CFWS), a token or a quoted-string (RFC 2045 `value`),
/// unquoted and unfolded. `None` when the value starts with something else, or a comment
/// or quoted-string never ends.
pub fn authserv_id(value: &[u8]) -> Option<Cow<'_, [u8]>> {
    let start = skip_cfws(value)?;
    if value.get(start) == Some(&b'"') {
        return quoted_string(&value[start + 1..]);
    }
    let len = value[start..].iter().position(|&byte| !is_token_byte(byte)).unwrap_or(value.len() - start);
    (len > 0).then(|| Cow::Borrowed(&value[start..start + len]))
}

/// Whether `field` is an `Authentication-Results` field whose authserv-id is `ours`,
/// compared without regard to case or a final dot.
pub fn is_results_of(field: &Field<'_>, ours: &str) -> bool {
    if !field.is("Authentication-Results") {
        return false;
    }
    let Some(id) = authserv_id(field.value) else { return false };
    let id = id.strip_suffix(b".").unwrap_or(&id);
    let ours = ours.strip_suffix('.').unwrap_or(ours);
    id.eq_ignore_ascii_case(ours.as_bytes())
}

/// Appends `raw` to `out` without the `Authentication-Results` fields of its header
/// section whose authserv-id is `ours` (RFC 8601 §5: a forged one could make us vouch
/// for it); returns how many were removed.
pub fn strip_results_into(raw: &[u8], ours: &str, out: &mut Vec<u8>) -> usize {
    let mut kept_from = 0;
    let mut n_removed = 0;
    for field in Fields::new(raw) {
        if is_results_of(&field, ours) {
            out.extend_from_slice(&raw[kept_from..field.start]);
            kept_from = field.end;
            n_removed += 1;
        }
    }
    out.extend_from_slice(&raw[kept_from..]);
    n_removed
}

/// `raw` without the `Authentication-Results` fields claiming `ours` (see
/// [`strip_results_into`]).
pub fn strip_results(raw: &[u8], ours: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    strip_results_into(raw, ours, &mut out);
    out
}

/// The offset of the first byte after comments and white space (line breaks of folding
/// included). Comments nest (RFC 5322 §3.2.2); the depth is a counter, not recursion.
fn skip_cfws(value: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        match value.get(pos) {
            Some(b' ' | b'\t' | b'\r' | b'\n') => pos += 1,
            Some(b'(') => {
                let mut depth = 0usize;
                loop {
                    match value.get(pos)? {
                        b'\\' => pos += 1,
                        b'(' => depth += 1,
                        b')' => depth -= 1,
                        _ => {}
                    }
                    pos += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            _ => return Some(pos),
        }
    }
}

/// The content of a quoted-string whose opening quote is just before `rest`: quoted pairs
/// unescaped, the line breaks of folding removed (RFC 5322 §3.2.4).
fn quoted_string(rest: &[u8]) -> Option<Cow<'_, [u8]>> {
    let close = {
        let mut pos = 0;
        loop {
            match rest.get(pos)? {
                b'"' => break pos,
                b'\\' => pos += 2,
                _ => pos += 1,
            }
        }
    };
    let content = &rest[..close];
    if !content.iter().any(|&byte| matches!(byte, b'\\' | b'\r' | b'\n')) {
        return Some(Cow::Borrowed(content));
    }
    let mut unquoted = Vec::with_capacity(content.len());
    let mut pos = 0;
    while let Some(&byte) = content.get(pos) {
        match byte {
            b'\\' => {
                unquoted.extend(content.get(pos + 1));
                pos += 2;
            }
            b'\r' | b'\n' => pos += 1,
            _ => {
                unquoted.push(byte);
                pos += 1;
            }
        }
    }
    Some(Cow::Owned(unquoted))
}

/// RFC 2045 §5.1 `token`: anything but controls, space and tspecials. Bytes above 127
/// (internationalised names, RFC 6532) count as token bytes.
fn is_token_byte(byte: u8) -> bool {
    byte > b' ' && byte != 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&byte)
}

#[cfg(test)]
mod tests;

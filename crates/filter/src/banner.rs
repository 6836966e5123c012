//! The warning shown to the agent for a message delivered with [`crate::Action::Warn`]
//! (issue 14 scope 5; docs/filter.md): a banner at the top of the visible body, and a
//! tag in front of the subject.
//!
//! The message's structure is kept: the bytes of every part but the two that get the
//! banner (the first text/plain and the first text/html that are not attachments, so
//! both alternatives of a multipart/alternative) are copied as they are, boundaries
//! included, and every header but `Subject` too, except the few fields a rewritten part
//! needs changed (below).
//!
//! How a part is rewritten:
//! - Its transfer encoding is kept: base64 is decoded, given the banner and encoded again;
//!   quoted-printable text gets the banner encoded in front of its own unchanged bytes
//!   (when they are strict quoted-printable; else, like quoted-printable HTML, it is
//!   decoded leniently and encoded again, so that every decoder reads it the same); 8bit
//!   and binary get the banner's bytes as they are.
//! - A 7bit text/plain part (or one without `Content-Transfer-Encoding`) becomes
//!   quoted-printable, since the French banner is not ASCII: quoted-printable keeps the
//!   message 7bit, so a later relay without 8BITMIME can still carry it.
//! - Text/plain charsets: UTF-8 is kept; US-ASCII (or none) becomes UTF-8 (a superset);
//!   ISO-8859-1, ISO-8859-15 and Windows-1252 keep their charset and get the banner encoded
//!   in it (its French texts are in ISO-8859-1's repertoire); any other charset, or
//!   undeclared bytes that are not UTF-8, leave the part as it is.
//! - HTML gets a styled block right after `<body…>` (else after `</head>`, else at the
//!   start), in ASCII with character references: it is the same bytes in every
//!   ASCII-compatible charset, so the part's charset and a `<meta charset>` stay true and a
//!   7bit part stays 7bit. UTF-16, UTF-32 and UTF-7 HTML is left as it is.
//!
//! What is not rewritten, and only gets the subject tag:
//! - A message that is signed or encrypted anywhere (`multipart/signed`,
//!   `multipart/encrypted`, `application/pkcs7-mime`): a banner inside the signed content
//!   would make the user's client report a broken signature, which teaches agents to
//!   ignore that warning.
//! - A text part that is an inline PGP message or signature, for the same reason.
//! - A part over [`Limits::text_bytes_max`], a message of more than [`Limits::parts_max`]
//!   parts, a part of an unknown transfer encoding or charset, a message mail-parser
//!   cannot read (or that makes it panic), a message without an empty line after its
//!   header, a part of a multipart that is never closed (no closing boundary: mail-parser
//!   then leaves it encoded, and readers disagree on where it ends).
//! - A message without a text or HTML part (only an attachment): adding a text part would
//!   change its structure (the number of parts a client shows), so it gets the tag only.
//!
//! The parts of a forwarded message (`message/rfc822`) are never rewritten: the banner
//! goes into the outer message's own text. The body's DKIM signature no longer verifies
//! after the banner, which is why the MX records authentication (`Authentication-Results`)
//! before the filter runs.
//!
//! The work is one parse by mail-parser (its nested messages bounded by its own depth,
//! which the banner never enters) and passes over the two rewritten parts: linear in the
//! message's size, with no recursion of its own.

mod mime;
mod texts;

use std::ops::Range;

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::{Limits, Symbol, WarningStyle};
use mime::{Field, Header};

/// The message with the warning: `symbols` are the findings (names as in the symbol
/// list; details are English, for the log — the banner uses its own French/English text
/// per symbol name).
pub fn warn(raw: &[u8], symbols: &[Symbol], style: &WarningStyle, limits: &Limits) -> Vec<u8> {
    warn_with_report(raw, symbols, style, limits).0
}

/// The French and English sentence the agent reads for one symbol (None for symbols that
/// are not shown, e.g. BAYES_HAM).
pub fn explain(symbol: &str) -> Option<(&'static str, &'static str)> {
    texts::explain(symbol)
}

/// What [`warn`] did to a message, for the tests and the corpus figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub text: Outcome,
    pub html: Outcome,
    pub subject: SubjectOutcome,
}

/// What became of one of the two parts that can get the banner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Outcome {
    Banner,
    /// The message has no such part.
    Absent,
    /// [`WarningStyle::banner`] is off.
    Off,
    /// Signed or encrypted somewhere: no body is touched.
    Protected,
    /// An inline PGP text.
    Pgp,
    /// mail-parser could not read it, or its offsets are not usable.
    Unparsed,
    TooManyParts,
    TooLarge,
    Charset,
    Encoding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SubjectOutcome {
    Tagged,
    /// The message had no `Subject`: one with the tag alone was added.
    Added,
    AlreadyTagged,
    /// The tag is empty.
    NoTag,
}

/// One change to the input: `range` replaced by `bytes` (an insertion when empty).
#[derive(Clone)]
struct Edit {
    range: Range<usize>,
    bytes: Vec<u8>,
}

pub(crate) fn warn_with_report(
    raw: &[u8],
    symbols: &[Symbol],
    style: &WarningStyle,
    limits: &Limits,
) -> (Vec<u8>, Report) {
    let top = Header::parse(raw, 0, raw.len());
    let newline =
        if raw.iter().position(|byte| *byte == b'\n').is_some_and(|index| index > 0 && raw[index - 1] == b'\r')
            || !raw.contains(&b'\n')
        {
            "\r\n"
        } else {
            "\n"
        };
    // The parse boundary, as in hameau-message: mail-parser has been found to panic.
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| MessageParser::default().parse(raw))).ok().flatten();

    let mut edits = Vec::new();
    let decoded_subject = parsed.as_ref().map(|message| message.subject().unwrap_or_default());
    let subject = subject_edit(raw, &top, decoded_subject, &style.subject_tag, newline, &mut edits);
    let mut part_edits = Vec::new();
    let (mut text, mut html) = match &parsed {
        _ if !style.banner => (Outcome::Off, Outcome::Off),
        None => (Outcome::Unparsed, Outcome::Unparsed),
        Some(_) if !top.closed => (Outcome::Unparsed, Outcome::Unparsed),
        Some(message) => {
            let reasons = texts::reasons(symbols);
            let context = Context { raw, reasons: &reasons, english: style.english, limits, newline };
            body_edits(&context, message, &mut part_edits)
        }
    };
    let mut ranges: Vec<Range<usize>> = edits.iter().chain(&part_edits).map(|edit| edit.range.clone()).collect();
    if overlap(&mut ranges) {
        // Only the subject's edit then: a part's edits are all made or none.
        (text, html) = (Outcome::Unparsed, Outcome::Unparsed);
        part_edits.clear();
    }
    // The structure the reader sees must not change. On a malformed message (fields
    // without a colon, NUL bytes) an edit can shift how mail-parser cuts it: then the
    // banner is left out, and if the tag alone still shifts it, the message stays as it came.
    let Some(before) = parsed.as_ref().map(|message| message.parts.len()) else {
        edits.append(&mut part_edits);
        return (apply(raw, edits), Report { text, html, subject });
    };
    let same_structure = |warned: &[u8]| {
        std::panic::catch_unwind(|| MessageParser::default().parse(warned).map(|message| message.parts.len()))
            .ok()
            .flatten()
            == Some(before)
    };
    if !part_edits.is_empty() {
        let all: Vec<Edit> = edits.iter().chain(&part_edits).map(Edit::clone).collect();
        let warned = apply(raw, all);
        if same_structure(&warned) {
            return (warned, Report { text, html, subject });
        }
        (text, html) = (Outcome::Unparsed, Outcome::Unparsed);
    }
    let tagged = apply(raw, edits);
    if same_structure(&tagged) {
        return (tagged, Report { text, html, subject });
    }
    (raw.to_vec(), Report { text, html, subject: SubjectOutcome::NoTag })
}

/// What the rewriting of one part needs.
struct Context<'a> {
    raw: &'a [u8],
    reasons: &'a [(&'static str, &'static str)],
    english: bool,
    limits: &'a Limits,
    /// The message's line break, for what goes into headers and encodings.
    newline: &'static str,
}

/// The banner into the first text/plain and the first text/html part that are not
/// attachments.
fn body_edits(context: &Context, message: &mail_parser::Message, edits: &mut Vec<Edit>) -> (Outcome, Outcome) {
    if message.parts.len() > context.limits.parts_max {
        return (Outcome::TooManyParts, Outcome::TooManyParts);
    }
    if message.parts.iter().any(is_protected) {
        return (Outcome::Protected, Outcome::Protected);
    }
    let mut text = Outcome::Absent;
    let mut html = Outcome::Absent;
    for (index, part) in message.parts.iter().enumerate() {
        let is_html = match &part.body {
            PartType::Html(_) => true,
            PartType::Text(_) => false,
            _ => continue,
        };
        let subtype = part.content_type().map(|content_type| {
            (content_type.ctype().to_ascii_lowercase(), content_type.subtype().map(str::to_ascii_lowercase))
        });
        let is_plain = match &subtype {
            None => true,
            Some((ctype, subtype)) => ctype == "text" && matches!(subtype.as_deref(), None | Some("plain")),
        };
        // What mail-parser's reader lists as an attachment (a second text part of a
        // multipart/mixed, say) is not the visible body.
        let is_attachment = part.content_disposition().is_some_and(|disposition| disposition.is_attachment())
            || message.attachments.contains(&(index as u32));
        if is_attachment || !(is_html || is_plain) {
            continue;
        }
        let slot = if is_html { &mut html } else { &mut text };
        if *slot != Outcome::Absent {
            continue;
        }
        let charset = part.content_type().and_then(|content_type| content_type.attribute("charset"));
        *slot = match Located::new(context.raw, part, index == 0) {
            None => Outcome::Unparsed,
            Some(located) if is_html => rewrite_html(context, &located, charset, edits),
            Some(located) => rewrite_plain(context, &located, charset, edits),
        };
        if text != Outcome::Absent && html != Outcome::Absent {
            break;
        }
    }
    (text, html)
}

fn is_protected(part: &mail_parser::MessagePart) -> bool {
    let Some(content_type) = part.content_type() else { return false };
    let subtype = content_type.subtype().unwrap_or_default();
    let ctype = content_type.ctype();
    (ctype.eq_ignore_ascii_case("multipart")
        && (subtype.eq_ignore_ascii_case("signed") || subtype.eq_ignore_ascii_case("encrypted")))
        || (ctype.eq_ignore_ascii_case("application")
            && ["pkcs7-mime", "x-pkcs7-mime", "pkcs7-signature", "x-pkcs7-signature", "pgp-encrypted", "pgp-signature"]
                .iter()
                .any(|name| subtype.eq_ignore_ascii_case(name)))
}

/// A part's header and body in the raw message.
struct Located {
    header: Header,
    body: Range<usize>,
    /// The message's own header (a single-part message): a new `Content-Type` needs a
    /// `MIME-Version` there.
    is_root: bool,
}

impl Located {
    fn new(raw: &[u8], part: &mail_parser::MessagePart, is_root: bool) -> Option<Located> {
        let (header_start, body_start, body_end) =
            (part.offset_header as usize, part.offset_body as usize, part.offset_end as usize);
        if !(header_start <= body_start && body_start <= body_end && body_end <= raw.len()) {
            return None;
        }
        if !is_root && body_end == raw.len() {
            // A part of a multipart never closed: mail-parser then does not decode it
            // (and readers disagree on where it ends).
            return None;
        }
        let header = Header::parse(raw, header_start, body_start);
        // New fields go before the empty line that closes the part's header.
        header.closed.then_some(Located { header, body: body_start..body_end, is_root })
    }
}

/// The transfer encodings a part can be rewritten in (RFC 2045 §6.1).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    SevenBit,
    EightBit,
    QuotedPrintable,
    Base64,
}

fn encoding(raw: &[u8], header: &Header) -> Option<Encoding> {
    let Some(field) = header.find(raw, "content-transfer-encoding") else { return Some(Encoding::SevenBit) };
    let value = mime::trim(&raw[field.value.clone()]).to_ascii_lowercase();
    match value.as_slice() {
        b"7bit" | b"" => Some(Encoding::SevenBit),
        b"8bit" | b"binary" => Some(Encoding::EightBit),
        b"quoted-printable" => Some(Encoding::QuotedPrintable),
        b"base64" => Some(Encoding::Base64),
        _ => None,
    }
}

/// A part's decoded body, or why it cannot be.
fn decode(context: &Context, located: &Located) -> Result<(Encoding, Vec<u8>), Outcome> {
    let body = &context.raw[located.body.clone()];
    if body.len() > context.limits.text_bytes_max {
        return Err(Outcome::TooLarge);
    }
    let encoding = encoding(context.raw, &located.header).ok_or(Outcome::Encoding)?;
    let decoded = match encoding {
        Encoding::Base64 => mime::base64_decode(body).ok_or(Outcome::Encoding)?,
        Encoding::QuotedPrintable => mime::qp_decode(body),
        Encoding::SevenBit | Encoding::EightBit => body.to_vec(),
    };
    Ok((encoding, decoded))
}

/// The charsets a text/plain part can take the banner in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// US-ASCII or none, relabelled UTF-8.
    Ascii,
    Latin1,
    Windows1252,
    Latin9,
}

fn charset(label: Option<&str>, decoded: &[u8]) -> Option<Charset> {
    let label = label.map(|label| label.trim().to_ascii_lowercase());
    let charset = match label.as_deref() {
        None | Some("us-ascii" | "ascii" | "ansi_x3.4-1968" | "iso646-us" | "") => Charset::Ascii,
        Some("utf-8" | "utf8") => Charset::Utf8,
        Some("iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1" | "iso-ir-100" | "cp819") => {
            Charset::Latin1
        }
        Some("windows-1252" | "cp1252" | "x-cp1252") => Charset::Windows1252,
        Some("iso-8859-15" | "iso8859-15" | "iso_8859-15" | "latin-9" | "latin9" | "l9") => Charset::Latin9,
        Some(_) => return None,
    };
    // Undeclared bytes above ASCII: UTF-8 if they are, else the part's real charset is
    // unknown and UTF-8 would show them wrong.
    if charset == Charset::Ascii && !decoded.is_ascii() && std::str::from_utf8(decoded).is_err() {
        return None;
    }
    Some(charset)
}

/// `text` in `charset`, `None` if a character has no code there.
fn encode_text(text: &str, charset: Charset) -> Option<Vec<u8>> {
    if matches!(charset, Charset::Utf8 | Charset::Ascii) {
        return Some(text.as_bytes().to_vec());
    }
    text.chars()
        .map(|character| {
            let code = u32::from(character);
            let representable = match charset {
                Charset::Latin1 => code <= 0xFF,
                // Windows-1252 has other characters at 0x80–0x9F.
                Charset::Windows1252 => code <= 0x7F || (0xA0..=0xFF).contains(&code),
                // ISO-8859-15 replaced eight of Latin-1's signs (¤ ¦ ¨ ´ ¸ ¼ ½ ¾).
                _ => code <= 0xFF && ![0xA4, 0xA6, 0xA8, 0xB4, 0xB8, 0xBC, 0xBD, 0xBE].contains(&code),
            };
            representable.then_some(code as u8)
        })
        .collect()
}

/// The line break `decoded` uses, else the message's.
fn content_newline(decoded: &[u8], newline: &'static str) -> &'static str {
    match decoded.iter().position(|byte| *byte == b'\n') {
        Some(index) if index > 0 && decoded[index - 1] == b'\r' => "\r\n",
        Some(_) => "\n",
        None => newline,
    }
}

fn is_inline_pgp(decoded: &[u8]) -> bool {
    let start = mime::trim(&decoded[..decoded.len().min(4096)]);
    start.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----") || start.starts_with(b"-----BEGIN PGP MESSAGE-----")
}

fn rewrite_plain(context: &Context, located: &Located, label: Option<&str>, edits: &mut Vec<Edit>) -> Outcome {
    let (encoding, decoded) = match decode(context, located) {
        Ok(decoded) => decoded,
        Err(outcome) => return outcome,
    };
    if is_inline_pgp(&decoded) {
        return Outcome::Pgp;
    }
    let Some(charset) = charset(label, &decoded) else { return Outcome::Charset };
    let banner = texts::plain(context.reasons, context.english, content_newline(&decoded, context.newline));
    let Some(banner) = encode_text(&banner, charset) else { return Outcome::Charset };
    let (raw, newline) = (context.raw, context.newline);
    let body = &raw[located.body.clone()];
    let mut becomes_quoted_printable = false;
    let new_body = match encoding {
        Encoding::Base64 => base64_body(&banner, &decoded, body, newline),
        Encoding::QuotedPrintable if mime::qp_is_strict(body) => {
            [mime::qp_encode(&banner, newline), body.to_vec()].concat()
        }
        Encoding::QuotedPrintable => mime::qp_encode(&[banner, decoded].concat(), newline),
        Encoding::EightBit => [banner, body.to_vec()].concat(),
        Encoding::SevenBit if banner.is_ascii() => [banner, body.to_vec()].concat(),
        Encoding::SevenBit => {
            becomes_quoted_printable = true;
            mime::qp_encode(&[banner, decoded].concat(), newline)
        }
    };
    edits.push(Edit { range: located.body.clone(), bytes: new_body });
    let header = &located.header;
    let mut new_fields = Vec::new();
    if charset == Charset::Ascii {
        match header.find(raw, "content-type") {
            Some(field) => edits.push(charset_edit(raw, field)),
            None => {
                if located.is_root && header.find(raw, "mime-version").is_none() {
                    new_fields.extend_from_slice(format!("MIME-Version: 1.0{newline}").as_bytes());
                }
                new_fields.extend_from_slice(format!("Content-Type: text/plain; charset=utf-8{newline}").as_bytes());
            }
        }
    }
    if becomes_quoted_printable {
        match header.find(raw, "content-transfer-encoding") {
            Some(field) => edits.push(Edit { range: field.value.clone(), bytes: b" quoted-printable".to_vec() }),
            None => {
                new_fields.extend_from_slice(format!("Content-Transfer-Encoding: quoted-printable{newline}").as_bytes())
            }
        }
    }
    if !new_fields.is_empty() {
        edits.push(Edit { range: header.end..header.end, bytes: new_fields });
    }
    Outcome::Banner
}

/// `charset=utf-8` in a `Content-Type` field: its value replaced where it is, else added.
fn charset_edit(raw: &[u8], field: &Field) -> Edit {
    match mime::parameter(&raw[field.value.clone()], "charset") {
        Some(value) => {
            Edit { range: field.value.start + value.start..field.value.start + value.end, bytes: b"utf-8".to_vec() }
        }
        None => Edit { range: field.value.end..field.value.end, bytes: b"; charset=utf-8".to_vec() },
    }
}

/// `banner` and `decoded` in base64, followed by the blanks and line breaks that ended the
/// original `body` (the one before a boundary belongs to the boundary).
fn base64_body(banner: &[u8], decoded: &[u8], body: &[u8], newline: &str) -> Vec<u8> {
    let content_len = body.iter().rposition(|byte| !byte.is_ascii_whitespace()).map_or(0, |index| index + 1);
    let mut new_body = mime::base64_encode(&[banner, decoded].concat(), newline);
    new_body.extend_from_slice(&body[content_len..]);
    new_body
}

fn rewrite_html(context: &Context, located: &Located, label: Option<&str>, edits: &mut Vec<Edit>) -> Outcome {
    let label = label.map(str::to_ascii_lowercase).unwrap_or_default();
    if ["utf-16", "utf16", "utf-32", "utf32", "ucs-2", "ucs-4", "utf-7", "utf7", "unicode"]
        .iter()
        .any(|prefix| label.starts_with(prefix))
    {
        return Outcome::Charset;
    }
    let (encoding, decoded) = match decode(context, located) {
        Ok(decoded) => decoded,
        Err(outcome) => return outcome,
    };
    let banner = texts::html(context.reasons, context.english, content_newline(&decoded, context.newline));
    let at = html_insertion_point(&decoded);
    let newline = context.newline;
    match encoding {
        Encoding::SevenBit | Encoding::EightBit => {
            let position = located.body.start + at;
            edits.push(Edit { range: position..position, bytes: banner.into_bytes() });
        }
        Encoding::QuotedPrintable | Encoding::Base64 => {
            let new_decoded = [&decoded[..at], banner.as_bytes(), &decoded[at..]].concat();
            let body = &context.raw[located.body.clone()];
            let new_body = if encoding == Encoding::Base64 {
                base64_body(&[], &new_decoded, body, newline)
            } else {
                mime::qp_encode(&new_decoded, newline)
            };
            edits.push(Edit { range: located.body.clone(), bytes: new_body });
        }
    }
    Outcome::Banner
}

/// Right after the `<body…>` tag; else after `</head>`, else after `<html…>`, else 0.
fn html_insertion_point(html: &[u8]) -> usize {
    let after_tag = |name: &[u8]| -> Option<usize> {
        let mut from = 0;
        while let Some(offset) = mime::memchr(b'<', &html[from..]) {
            let start = from + offset + 1;
            let end = start + name.len();
            let follows = html.get(end).copied();
            if end <= html.len()
                && html[start..end].eq_ignore_ascii_case(name)
                && matches!(follows, Some(b'>' | b'/' | b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'))
            {
                return Some(tag_end(html, end));
            }
            from = start;
        }
        None
    };
    after_tag(b"body").or_else(|| after_tag(b"/head")).or_else(|| after_tag(b"html")).unwrap_or(0)
}

/// After the `>` closing the tag whose attributes start at `from`; the end of the text if it
/// is never closed. As an HTML tokenizer (HTML §13.2.5.32–38), a quote opens a value only
/// right after `=`: elsewhere it is part of a malformed name, as in `background=""x.gif"`.
fn tag_end(html: &[u8], from: usize) -> usize {
    enum State {
        Attributes,
        AfterEquals,
        Quoted(u8),
    }
    let mut state = State::Attributes;
    for (offset, byte) in html[from..].iter().enumerate() {
        state = match (state, byte) {
            (State::Quoted(quote), _) if quote == *byte => State::Attributes,
            (State::Quoted(quote), _) => State::Quoted(quote),
            (_, b'>') => return from + offset + 1,
            (State::Attributes, b'=') => State::AfterEquals,
            (State::AfterEquals, b'"' | b'\'') => State::Quoted(*byte),
            (State::AfterEquals, byte) if byte.is_ascii_whitespace() => State::AfterEquals,
            _ => State::Attributes,
        };
    }
    html.len()
}

/// The tag in front of the `Subject` (a `Subject` with the tag alone when there is none),
/// unless the subject already starts with it.
fn subject_edit(
    raw: &[u8],
    top: &Header,
    decoded_subject: Option<&str>,
    tag: &str,
    newline: &str,
    edits: &mut Vec<Edit>,
) -> SubjectOutcome {
    let tag = tag.trim();
    if tag.is_empty() {
        return SubjectOutcome::NoTag;
    }
    let Some(field) = top.find(raw, "subject") else {
        let separator = if top.ends_with_newline { "" } else { newline };
        let bytes = format!("{separator}Subject: {}{newline}", tag_words(tag, false));
        edits.push(Edit { range: top.end..top.end, bytes: bytes.into_bytes() });
        return SubjectOutcome::Added;
    };
    let value = &raw[field.value.clone()];
    let already = match decoded_subject {
        Some(subject) => subject.trim_start().starts_with(tag),
        None => String::from_utf8_lossy(value).trim_start().starts_with(tag),
    };
    if already {
        return SubjectOutcome::AlreadyTagged;
    }
    let blanks = value.iter().take_while(|byte| byte.is_ascii_whitespace()).count();
    let rest = &value[blanks..];
    let before_encoded_word = rest.starts_with(b"=?");
    let words = tag_words(tag, before_encoded_word);
    // RFC 5322 §2.1.1: a line of at most 998 characters; past that, the rest goes on a
    // folded line of its own (unfolding gives back the one space).
    let first_line_len = field.value.start - field.range.start
        + rest.iter().position(|byte| *byte == b'\r' || *byte == b'\n').unwrap_or(rest.len());
    let separator = match () {
        _ if rest.is_empty() => String::new(),
        _ if first_line_len + words.len() + 2 > 998 => format!("{newline} "),
        _ => " ".to_string(),
    };
    let bytes = format!(" {words}{separator}");
    edits.push(Edit { range: field.value.start..field.value.start + blanks, bytes: bytes.into_bytes() });
    SubjectOutcome::Tagged
}

/// The tag as header text: as it is when it is printable ASCII, else RFC 2047 encoded
/// words (Q encoding, each at most 75 characters, §2). Before another encoded word, the
/// space that separates them goes inside the last word: whitespace between two encoded
/// words is not shown (§6.2).
fn tag_words(tag: &str, before_encoded_word: bool) -> String {
    if tag.bytes().all(|byte| (b' '..=b'~').contains(&byte)) && !tag.contains("=?") {
        return tag.to_string();
    }
    const PAYLOAD_CHARS_MAX: usize = 75 - "=?UTF-8?Q??=".len();
    let mut words: Vec<String> = vec![String::new()];
    let mut characters: Vec<String> = tag
        .chars()
        .map(|character| {
            let mut utf8 = [0; 4];
            character
                .encode_utf8(&mut utf8)
                .bytes()
                .map(|byte| match byte {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                        (byte as char).to_string()
                    }
                    b' ' => "_".to_string(),
                    other => format!("={other:02X}"),
                })
                .collect()
        })
        .collect();
    if before_encoded_word {
        characters.push("_".to_string());
    }
    for character in characters {
        let word = words.last_mut().expect("one word at least");
        if word.len() + character.len() > PAYLOAD_CHARS_MAX {
            words.push(character);
        } else {
            word.push_str(&character);
        }
    }
    words.iter().map(|word| format!("=?UTF-8?Q?{word}?=")).collect::<Vec<_>>().join(" ")
}

/// `raw` with `edits` made, in their order in `raw`. They do not overlap (each is a
/// different field or part; [`overlap`] is checked before).
fn apply(raw: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by_key(|edit| (edit.range.start, edit.range.end));
    let added: usize = edits.iter().map(|edit| edit.bytes.len()).sum();
    let mut output = Vec::with_capacity(raw.len() + added);
    let mut copied = 0;
    for edit in edits {
        output.extend_from_slice(&raw[copied..edit.range.start.max(copied)]);
        output.extend_from_slice(&edit.bytes);
        copied = edit.range.end.max(copied);
    }
    output.extend_from_slice(&raw[copied..]);
    output
}

/// Two of `edits` touch the same bytes: possible only if mail-parser's offsets of two
/// parts overlap in a malformed message.
fn overlap(ranges: &mut [Range<usize>]) -> bool {
    ranges.sort_by_key(|range| (range.start, range.end));
    ranges.windows(2).any(|pair| pair[1].start < pair[0].end)
}

#[cfg(test)]
mod tests;

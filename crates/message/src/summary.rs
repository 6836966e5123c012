//! The summary of a message, parsed once at delivery with mail-parser so that IMAP FETCH
//! (ENVELOPE, BODYSTRUCTURE, sections) and JMAP Email/get never parse it again: envelope
//! fields, MIME parts with their byte offsets in the raw message and every MIME fact a
//! body structure reports (parameters, disposition, language, location, line counts), an
//! attached message's own summary, a preview. Protocol-neutral: IMAP and JMAP each render
//! it in their own syntax.

use mail_parser::{Address, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// Characters of text kept as the preview (JMAP `preview` is at most 256, RFC 8621 §4.1.4).
const PREVIEW_CHARS: usize = 256;

/// Attached messages inside attached messages are described this deep; deeper ones are
/// opaque parts (mail-parser stops at about the same depth).
const NESTED_DEPTH_MAX: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub address: Option<String>,
}

/// One MIME part, in the order mail-parser numbers them (part 0 is the message itself).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// `type/subtype`, lowercase; `text/plain` when the part says nothing.
    pub content_type: String,
    pub charset: Option<String>,
    /// File name (Content-Disposition filename or Content-Type name).
    pub name: Option<String>,
    pub disposition: Option<String>,
    pub content_id: Option<String>,
    pub transfer_encoding: Option<String>,
    /// Byte offsets in the raw message: headers start, body start, end.
    pub offset_header: u32,
    pub offset_body: u32,
    pub offset_end: u32,
    /// The sub-parts of a multipart, as indexes in `Summary::parts`.
    pub children: Vec<u32>,
    /// Content-Type parameters (names lowercase), in header order.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// Content-Disposition parameters (names lowercase).
    #[serde(default)]
    pub disposition_params: Vec<(String, String)>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub language: Vec<String>,
    #[serde(default)]
    pub location: Option<String>,
    /// Lines of the body (its line feeds, and a last line without one).
    #[serde(default)]
    pub lines: u32,
    /// For a `message/rfc822` part: the attached message, its part offsets in the raw
    /// message of the whole email. `None` when it could not be read in place.
    #[serde(default)]
    pub message: Option<Box<Summary>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub subject: Option<String>,
    pub from: Vec<EmailAddress>,
    pub sender: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
    /// The Date header, seconds since the Unix epoch.
    pub sent_at: Option<i64>,
    /// Message-ID, without angle brackets (a list: RFC 8621 allows several).
    pub message_id: Vec<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub preview: String,
    pub has_attachment: bool,
    pub parts: Vec<Part>,
    /// Whether mail-parser could read the message at all; if not, it is stored as is.
    pub parsed: bool,
    /// The Date header's text as written (IMAP ENVELOPE gives it as is).
    #[serde(default)]
    pub date: Option<String>,
}

/// A character without its accents: the first character of its canonical decomposition
/// (`é` → `e`, `Ç` → `C`, `œ` and `ß` unchanged, having none). One character for one,
/// so that folding keeps substrings (`fold(a + b) = fold(a) + fold(b)`) and a match in
/// folded text is at the same character positions as in the text.
pub fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c;
    }
    let mut base = None;
    unicode_normalization::char::decompose_canonical(c, |part| {
        base.get_or_insert(part);
    });
    base.unwrap_or(c)
}

/// `text` with every character through [`fold_char`]: what a search that ignores accents
/// compares (`"État"` and `"etat"` once lowercased too).
pub fn fold_accents(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.chars().map(fold_char).collect())
}

/// Text as searches compare it: lowercase, runs of whitespace as one space, trimmed.
/// IMAP SEARCH (RFC 9051 §6.4.4) matches substrings case-insensitively; queries go
/// through the same function.
pub fn search_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

impl Summary {
    /// The summary and the searchable text of the body (its text parts decoded, HTML as
    /// text, through [`search_text`], at most `text_bytes_max` bytes), from one parse. A
    /// message mail-parser cannot read gets an empty summary. This may panic inside
    /// mail-parser on hostile input: [`crate::parse`] is the boundary that catches it.
    pub(crate) fn parse_with_text(raw: &[u8], text_bytes_max: usize) -> (Summary, String) {
        let Some(message) = MessageParser::default().parse(raw) else { return (Summary::default(), String::new()) };
        let mut text = String::new();
        for index in 0..message.text_body_count() {
            if let Some(body) = message.body_text(index) {
                text.push_str(&body);
                text.push('\n');
            }
            if text.len() > text_bytes_max {
                break;
            }
        }
        let mut text = search_text(&text);
        if text.len() > text_bytes_max {
            let mut end = text_bytes_max;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        (Summary::parse_message(&message, raw), text)
    }

    fn parse_message(message: &Message<'_>, raw: &[u8]) -> Summary {
        let mut summary = summarise(message, raw, 0);
        summary.preview = message
            .body_preview(PREVIEW_CHARS)
            .map(|preview| preview.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        summary.has_attachment = message.attachment_count() > 0;
        summary
    }
}

/// The summary of `message`, whose offsets are in `raw` (the whole email's bytes).
fn summarise(message: &Message<'_>, raw: &[u8], depth: usize) -> Summary {
    let ids = |value: &HeaderValue<'_>| -> Vec<String> {
        value.as_text_list().map(|list| list.iter().map(|id| id.to_string()).collect()).unwrap_or_default()
    };
    let n_parts = u32::try_from(message.parts.len()).unwrap_or(u32::MAX);
    let parts = message.parts.iter().map(|part| describe(part, n_parts, raw, depth)).collect();
    Summary {
        subject: message.subject().map(str::to_string),
        from: addresses(message.from()),
        sender: addresses(message.sender()),
        reply_to: addresses(message.reply_to()),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        bcc: addresses(message.bcc()),
        sent_at: message.date().map(|date| date.to_timestamp()),
        message_id: message.message_id().map(|id| vec![id.to_string()]).unwrap_or_default(),
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        preview: String::new(),
        has_attachment: false,
        parts,
        parsed: true,
        date: message.header_raw("Date").map(|date| date.trim().to_string()),
    }
}

fn describe(part: &mail_parser::MessagePart<'_>, n_parts: u32, raw: &[u8], depth: usize) -> Part {
    let content_type = part
        .content_type()
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("plain")).to_ascii_lowercase())
        .unwrap_or_else(|| "text/plain".into());
    let params = |ct: Option<&mail_parser::ContentType<'_>>| -> Vec<(String, String)> {
        ct.and_then(|ct| ct.attributes())
            .map(|attributes| attributes.iter().map(|a| (a.name.to_ascii_lowercase(), a.value.to_string())).collect())
            .unwrap_or_default()
    };
    // FETCH slices the raw message by these offsets: they are made to hold (header <=
    // body <= end <= the message's length) whatever the parser says of a malformed part.
    let offset_end = part.offset_end.min(u32::try_from(raw.len()).unwrap_or(u32::MAX));
    let offset_body = part.offset_body.min(offset_end);
    let offset_header = part.offset_header.min(offset_body);
    let body = &raw[offset_body as usize..offset_end as usize];
    // An attached message read in place: its parts' offsets are in `raw` itself (one that
    // had to be decoded first, e.g. base64, was parsed from other bytes: left opaque).
    let message = match &part.body {
        PartType::Message(nested)
            if depth < NESTED_DEPTH_MAX && std::ptr::eq(nested.raw_message.as_ptr(), raw.as_ptr()) =>
        {
            Some(Box::new(summarise(nested, raw, depth + 1)))
        }
        _ => None,
    };
    Part {
        content_type,
        charset: part.content_type().and_then(|ct| ct.attribute("charset")).map(str::to_string),
        name: part.attachment_name().map(str::to_string),
        disposition: part.content_disposition().map(|cd| cd.ctype().to_ascii_lowercase()),
        content_id: part.content_id().map(str::to_string),
        transfer_encoding: part.content_transfer_encoding().map(str::to_ascii_lowercase),
        offset_header,
        offset_body,
        offset_end,
        children: match &part.body {
            PartType::Multipart(children) => children.iter().copied().filter(|child| *child < n_parts).collect(),
            _ => Vec::new(),
        },
        params: params(part.content_type()),
        disposition_params: params(part.content_disposition()),
        description: part.content_description().map(str::to_string),
        language: part
            .content_language()
            .as_text_list()
            .map(|list| list.iter().map(|l| l.to_string()).collect())
            .unwrap_or_default(),
        location: part.content_location().map(str::to_string),
        // A last line without its line break (a MIME part's last CRLF belongs to the
        // boundary) still counts.
        lines: (body.iter().filter(|b| **b == b'\n').count() + usize::from(!body.is_empty() && !body.ends_with(b"\n")))
            as u32,
        message,
    }
}

fn addresses(address: Option<&Address<'_>>) -> Vec<EmailAddress> {
    address
        .map(|address| {
            address
                .iter()
                .map(|addr| EmailAddress {
                    name: addr.name.as_ref().map(|name| name.to_string()),
                    address: addr.address.as_ref().map(|address| address.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

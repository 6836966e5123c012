//! The summary of a message, parsed once at delivery with mail-parser so that IMAP FETCH
//! (ENVELOPE, BODYSTRUCTURE, sections) and JMAP Email/get never parse it again: envelope
//! fields, MIME parts with their byte offsets in the raw message, a preview.

use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// Characters of text kept as the preview (JMAP `preview` is at most 256, RFC 8621 §4.1.4).
const PREVIEW_CHARS: usize = 256;

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
}

impl Summary {
    /// Never fails: a message mail-parser cannot read gets an empty summary.
    pub fn parse(raw: &[u8]) -> Summary {
        let Some(message) = MessageParser::default().parse(raw) else { return Summary::default() };
        let ids = |value: &HeaderValue<'_>| -> Vec<String> {
            value.as_text_list().map(|list| list.iter().map(|id| id.to_string()).collect()).unwrap_or_default()
        };
        let parts = message
            .parts
            .iter()
            .map(|part| {
                let content_type = part
                    .content_type()
                    .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("plain")).to_ascii_lowercase())
                    .unwrap_or_else(|| "text/plain".into());
                Part {
                    content_type,
                    charset: part.content_type().and_then(|ct| ct.attribute("charset")).map(str::to_string),
                    name: part.attachment_name().map(str::to_string),
                    disposition: part.content_disposition().map(|cd| cd.ctype().to_ascii_lowercase()),
                    content_id: part.content_id().map(str::to_string),
                    transfer_encoding: part.content_transfer_encoding().map(str::to_ascii_lowercase),
                    offset_header: part.offset_header,
                    offset_body: part.offset_body,
                    offset_end: part.offset_end,
                    children: match &part.body {
                        PartType::Multipart(children) => children.clone(),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
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
            preview: message
                .body_preview(PREVIEW_CHARS)
                .map(|preview| preview.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            has_attachment: message.attachment_count() > 0,
            parts,
            parsed: true,
        }
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

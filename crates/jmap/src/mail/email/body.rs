//! An email's MIME structure as JMAP shows it (RFC 8621 §4.1.4): `EmailBodyPart` objects,
//! `bodyStructure`, the `textBody`, `htmlBody` and `attachments` lists chosen by the RFC's
//! algorithm, and `bodyValues` (decoded text, bounded by `maxBodyValueBytes`).
//!
//! Parts are numbered as mail-parser lists them (0 is the message itself): `partId` is that
//! number, and a part's `blobId` is `b{email}.{number}`. An attached message
//! (`message/rfc822`) is one part, its own parts not listed (RFC 8621 §4.1.4: `subParts` is
//! for multiparts only). Everything here walks the tree with explicit stacks; the depth of
//! `bodyStructure` as written is bounded by `jmap.body_depth_max`.

use mail_parser::{Message, MessagePart, MimeHeaders, PartType};
use serde_json::{Map, Value, json};

use super::header::{self, HeaderProperty};

/// Every property of an `EmailBodyPart` (RFC 8621 §4.1.4), `header:` ones aside.
pub const PROPERTIES: [&str; 12] = [
    "partId",
    "blobId",
    "size",
    "headers",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
    "subParts",
];

/// The default `bodyProperties` (RFC 8621 §4.2).
pub const DEFAULT_PROPERTIES: [&str; 10] =
    ["partId", "blobId", "size", "name", "type", "charset", "disposition", "cid", "language", "location"];

/// What a client asks of each body part.
#[derive(Clone, Debug)]
pub struct PartProperties {
    pub names: Vec<String>,
    pub headers: Vec<(String, HeaderProperty)>,
}

/// Which parts' text `bodyValues` holds, and how much of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ValuesWanted {
    pub text: bool,
    pub html: bool,
    pub all: bool,
    /// 0: whole.
    pub max_bytes: u64,
}

/// The JMAP lists of one message's parts, by part number.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub text: Vec<usize>,
    pub html: Vec<usize>,
    pub attachments: Vec<usize>,
}

/// The media type of a part, lower case; `text/plain` when it says none (RFC 2045 §5.2),
/// `message/rfc822` for an attached message.
pub fn media_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(subtype) => format!("{}/{}", ct.ctype(), subtype).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if matches!(part.body, PartType::Message(_)) => "message/rfc822".into(),
        None => "text/plain".into(),
    }
}

fn children<'p>(part: &'p MessagePart<'_>) -> &'p [u32] {
    match &part.body {
        PartType::Multipart(children) => children,
        _ => &[],
    }
}

fn is_inline_media(media: &str) -> bool {
    media.starts_with("image/") || media.starts_with("audio/") || media.starts_with("video/")
}

/// One open multipart of [`lists`]' walk: the `parseStructure` call of the RFC's code.
struct Frame {
    children: Vec<u32>,
    next: usize,
    multipart: String,
    in_alternative: bool,
    /// `textBody` / `htmlBody` not nulled in this call.
    text_on: bool,
    html_on: bool,
    /// Their lengths when the call began (`-1` of the RFC: `None`).
    text_start: Option<usize>,
    html_start: Option<usize>,
}

/// `textBody`, `htmlBody` and `attachments` by the algorithm of RFC 8621 §4.1.4, its
/// recursion unrolled onto a stack of [`Frame`]s. A part reached twice (a malformed tree)
/// is taken once.
pub fn lists(message: &Message<'_>) -> Lists {
    let parts = &message.parts;
    let mut out = Lists::default();
    if parts.is_empty() {
        return out;
    }
    let mut seen = vec![false; parts.len()];
    let mut stack = vec![Frame {
        children: vec![0],
        next: 0,
        multipart: "mixed".into(),
        in_alternative: false,
        text_on: true,
        html_on: true,
        text_start: Some(0),
        html_start: Some(0),
    }];
    while let Some(frame) = stack.last_mut() {
        if frame.next == frame.children.len() {
            let frame = stack.pop().expect("a frame");
            finish_alternative(&frame, &mut out);
            continue;
        }
        let i = frame.next;
        frame.next += 1;
        let index = frame.children[i] as usize;
        if index >= parts.len() || seen[index] {
            continue;
        }
        seen[index] = true;
        let part = &parts[index];
        let media = media_type(part);
        let is_multipart = matches!(part.body, PartType::Multipart(_));
        let disposition = part.content_disposition().map(|cd| cd.ctype().to_ascii_lowercase());
        let is_inline = disposition.as_deref() != Some("attachment")
            && (media == "text/plain" || media == "text/html" || is_inline_media(&media))
            && (i == 0
                || (frame.multipart != "related" && (is_inline_media(&media) || part.attachment_name().is_none())));
        if is_multipart {
            let subtype = media.split_once('/').map(|(_, subtype)| subtype.to_string()).unwrap_or_default();
            let in_alternative = frame.in_alternative || subtype == "alternative";
            let (text_on, html_on) = (frame.text_on, frame.html_on);
            stack.push(Frame {
                children: children(part).to_vec(),
                next: 0,
                multipart: subtype,
                in_alternative,
                text_on,
                html_on,
                text_start: text_on.then_some(out.text.len()),
                html_start: html_on.then_some(out.html.len()),
            });
        } else if is_inline {
            if frame.multipart == "alternative" {
                match media.as_str() {
                    "text/plain" if frame.text_on => out.text.push(index),
                    "text/html" if frame.html_on => out.html.push(index),
                    "text/plain" | "text/html" => {}
                    _ => out.attachments.push(index),
                }
                continue;
            } else if frame.in_alternative {
                if media == "text/plain" {
                    frame.html_on = false;
                }
                if media == "text/html" {
                    frame.text_on = false;
                }
            }
            if frame.text_on {
                out.text.push(index);
            }
            if frame.html_on {
                out.html.push(index);
            }
            if (!frame.text_on || !frame.html_on) && is_inline_media(&media) {
                out.attachments.push(index);
            }
        } else {
            out.attachments.push(index);
        }
    }
    out
}

/// The end of a `multipart/alternative` call: the part that only one of the two lists got
/// goes into the other too.
fn finish_alternative(frame: &Frame, out: &mut Lists) {
    if frame.multipart != "alternative" || !frame.text_on || !frame.html_on {
        return;
    }
    let (Some(text_start), Some(html_start)) = (frame.text_start, frame.html_start) else { return };
    if text_start == out.text.len() && html_start != out.html.len() {
        let added: Vec<usize> = out.html[html_start..].to_vec();
        out.text.extend(added);
    }
    if html_start == out.html.len() && text_start != out.text.len() {
        let added: Vec<usize> = out.text[text_start..].to_vec();
        out.html.extend(added);
    }
}

/// The decoded size of a part: what a download of its blob gives.
fn decoded_size(part: &MessagePart<'_>) -> usize {
    match &part.body {
        PartType::Text(text) | PartType::Html(text) => text.len(),
        PartType::Binary(bytes) | PartType::InlineBinary(bytes) => bytes.len(),
        PartType::Message(message) => message.raw_message.len(),
        PartType::Multipart(_) => 0,
    }
}

/// The raw value of each header field of `part`, named as the message writes it.
pub fn fields<'m>(raw: &'m [u8], part: &MessagePart<'_>) -> Vec<(String, &'m [u8])> {
    part.headers
        .iter()
        .filter_map(|field| {
            let (start, value, end) =
                (field.offset_field as usize, field.offset_start as usize, field.offset_end as usize);
            if !(start < value && value <= end && end <= raw.len()) {
                return None;
            }
            let name = String::from_utf8_lossy(&raw[start..value - 1]).trim().to_string();
            Some((name, &raw[value..end]))
        })
        .collect()
}

/// The `headers` property (RFC 8621 §4.1.3): every field in order, raw.
pub fn headers_json(fields: &[(String, &[u8])]) -> Value {
    Value::from(
        fields
            .iter()
            .map(|(name, raw)| json!({"name": name, "value": header::parse(raw, header::Form::Raw)}))
            .collect::<Vec<_>>(),
    )
}

/// The `header:` properties `asked` of a part whose fields are `fields`.
pub fn header_properties(asked: &[(String, HeaderProperty)], fields: &[(String, &[u8])], out: &mut Map<String, Value>) {
    for (property, header) in asked {
        let values: Vec<&[u8]> =
            fields.iter().filter(|(name, _)| name.eq_ignore_ascii_case(&header.name)).map(|(_, raw)| *raw).collect();
        out.insert(property.clone(), header.value(&values));
    }
}

/// The `EmailBodyPart` of part `index`, with the properties `asked` (`subParts` left to
/// the caller); `blob` is the wire id of the message's own blob, whose part ids extend it.
pub fn part_json(
    raw: &[u8],
    blob: &str,
    message: &Message<'_>,
    index: usize,
    asked: &PartProperties,
) -> Map<String, Value> {
    let part = &message.parts[index];
    let media = media_type(part);
    let multipart = matches!(part.body, PartType::Multipart(_));
    let wants = |property: &str| asked.names.iter().any(|name| name == property);
    let mut object = Map::new();
    if wants("partId") {
        object.insert("partId".into(), if multipart { Value::Null } else { Value::from(index.to_string()) });
    }
    if wants("blobId") {
        object.insert("blobId".into(), if multipart { Value::Null } else { Value::from(format!("{blob}.{index}")) });
    }
    if wants("size") {
        object.insert("size".into(), Value::from(decoded_size(part)));
    }
    let fields = if wants("headers") || !asked.headers.is_empty() { fields(raw, part) } else { Vec::new() };
    if wants("headers") {
        object.insert("headers".into(), headers_json(&fields));
    }
    if wants("name") {
        object.insert("name".into(), json!(part.attachment_name()));
    }
    if wants("type") {
        object.insert("type".into(), Value::from(media.clone()));
    }
    if wants("charset") {
        let charset = part.content_type().and_then(|ct| ct.attribute("charset")).map(str::to_string);
        // RFC 8621 §4.1.4: a text part without a charset is us-ascii (RFC 2046 §4.1.2).
        let charset = charset.or_else(|| media.starts_with("text/").then(|| "us-ascii".to_string()));
        object.insert("charset".into(), json!(charset));
    }
    if wants("disposition") {
        object
            .insert("disposition".into(), json!(part.content_disposition().map(|cd| cd.ctype().to_ascii_lowercase())));
    }
    if wants("cid") {
        object.insert("cid".into(), json!(part.content_id().map(|id| id.trim_matches(['<', '>']).to_string())));
    }
    if wants("language") {
        object.insert("language".into(), json!(part.content_language().as_text_list()));
    }
    if wants("location") {
        object.insert("location".into(), json!(part.content_location()));
    }
    header_properties(&asked.headers, &fields, &mut object);
    object
}

/// `bodyStructure`: the tree from part 0, each multipart with its `subParts`, built
/// bottom-up with a stack; a multipart deeper than `depth_max` is shown without its
/// sub-parts (serde_json writes and drops nested values by recursion).
pub fn structure(raw: &[u8], blob: &str, message: &Message<'_>, asked: &PartProperties, depth_max: usize) -> Value {
    let parts = &message.parts;
    if parts.is_empty() {
        return Value::Null;
    }
    let mut built: Vec<Option<Map<String, Value>>> = vec![None; parts.len()];
    let mut visited = vec![false; parts.len()];
    // (part, depth, children pushed).
    let mut stack = vec![(0usize, 0usize, false)];
    visited[0] = true;
    while let Some((index, depth, expanded)) = stack.pop() {
        let kids: Vec<usize> = if depth < depth_max {
            children(&parts[index]).iter().map(|child| *child as usize).filter(|child| *child < parts.len()).collect()
        } else {
            Vec::new()
        };
        if !expanded && !kids.is_empty() {
            stack.push((index, depth, true));
            for child in kids.iter().rev() {
                if !visited[*child] {
                    visited[*child] = true;
                    stack.push((*child, depth + 1, false));
                }
            }
            continue;
        }
        let mut object = part_json(raw, blob, message, index, asked);
        // A multipart's `subParts` always: the default `bodyProperties` (RFC 8621 §4.2)
        // lack it, and a structure without it would be one part.
        if matches!(parts[index].body, PartType::Multipart(_)) {
            let sub_parts: Vec<Value> =
                kids.iter().filter_map(|child| built[*child].take()).map(Value::Object).collect();
            object.insert("subParts".into(), Value::from(sub_parts));
        }
        built[index] = Some(object);
    }
    built[0].take().map(Value::Object).unwrap_or(Value::Null)
}

/// `bodyValues`: the decoded text of the text parts `wanted` asks for, keyed by `partId`.
/// At most `budget` bytes of text in all (the call's `jmap.body_values_bytes_max` left):
/// past it, values are cut as `maxBodyValueBytes` cuts them. Returns the bytes given.
pub fn values(message: &Message<'_>, lists: &Lists, wanted: ValuesWanted, budget: u64) -> (Map<String, Value>, u64) {
    let mut left = budget;
    let mut chosen: Vec<usize> = Vec::new();
    if wanted.all {
        chosen.extend(0..message.parts.len());
    } else {
        if wanted.text {
            chosen.extend(&lists.text);
        }
        if wanted.html {
            chosen.extend(&lists.html);
        }
    }
    let mut out = Map::new();
    for index in chosen {
        let part = &message.parts[index];
        if !media_type(part).starts_with("text/") || out.contains_key(&index.to_string()) {
            continue;
        }
        let (mut text, problem) = match &part.body {
            PartType::Text(text) | PartType::Html(text) => (text.to_string(), part.is_encoding_problem),
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                (String::from_utf8_lossy(bytes).into_owned(), true)
            }
            _ => continue,
        };
        let max = if wanted.max_bytes > 0 { wanted.max_bytes.min(left) } else { left };
        let mut truncated = false;
        if text.len() as u64 > max {
            let mut end = max as usize;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            truncated = true;
        }
        left -= text.len() as u64;
        out.insert(index.to_string(), json!({"value": text, "isEncodingProblem": problem, "isTruncated": truncated}));
    }
    (out, budget - left)
}

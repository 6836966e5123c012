//! The `header:{name}:{form}:all` properties (RFC 8621 §4.1.2, §4.1.3): a header field's
//! value parsed in one of the RFC's forms, from the raw bytes of the field, by mail-parser's
//! own field parsers (the same ones it runs when it reads a message).

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};
use serde_json::{Value, json};

use crate::MethodError;

/// How a header field's value is given (RFC 8621 §4.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Raw,
    Text,
    Addresses,
    GroupedAddresses,
    MessageIds,
    Date,
    Urls,
}

/// A `header:` property as the client wrote it, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderProperty {
    /// The field's name, lower case (names compare without case).
    pub name: String,
    pub form: Form,
    /// Every instance, in order (`:all`), or the last one.
    pub all: bool,
}

/// The header fields RFC 5322 and RFC 2369 define, with the forms RFC 8621 §4.1.2 allows
/// each besides `Raw`; any other field may have every form.
const DEFINED: [(&str, &[Form]); 28] = [
    ("date", &[Form::Date]),
    ("from", &[Form::Addresses, Form::GroupedAddresses]),
    ("sender", &[Form::Addresses, Form::GroupedAddresses]),
    ("reply-to", &[Form::Addresses, Form::GroupedAddresses]),
    ("to", &[Form::Addresses, Form::GroupedAddresses]),
    ("cc", &[Form::Addresses, Form::GroupedAddresses]),
    ("bcc", &[Form::Addresses, Form::GroupedAddresses]),
    ("message-id", &[Form::MessageIds]),
    ("in-reply-to", &[Form::MessageIds]),
    ("references", &[Form::MessageIds]),
    ("subject", &[Form::Text]),
    ("comments", &[Form::Text]),
    ("keywords", &[Form::Text]),
    ("resent-date", &[Form::Date]),
    ("resent-from", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-sender", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-reply-to", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-to", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-cc", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-bcc", &[Form::Addresses, Form::GroupedAddresses]),
    ("resent-message-id", &[Form::MessageIds]),
    ("return-path", &[]),
    ("received", &[]),
    ("list-help", &[Form::Urls]),
    ("list-unsubscribe", &[Form::Urls]),
    ("list-subscribe", &[Form::Urls]),
    ("list-post", &[Form::Urls]),
    ("list-owner", &[Form::Urls]),
];

impl HeaderProperty {
    /// The `header:` property `property`; `None` when it is not one, an error when it is
    /// one the RFC does not allow (an unknown form, a form not valid for the field).
    pub fn parse(property: &str) -> Option<Result<HeaderProperty, MethodError>> {
        let rest = property.strip_prefix("header:")?;
        let wrong = || MethodError::invalid_arguments(format!("{property:?} is no header property this server reads"));
        let mut pieces = rest.split(':');
        let name = pieces.next().unwrap_or_default();
        // RFC 5322 §2.2: a field name is printable US-ASCII but the colon.
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return Some(Err(wrong()));
        }
        let mut form = Form::Raw;
        let mut all = false;
        for (index, piece) in pieces.enumerate() {
            match (index, piece) {
                (0, "asRaw") => form = Form::Raw,
                (0, "asText") => form = Form::Text,
                (0, "asAddresses") => form = Form::Addresses,
                (0, "asGroupedAddresses") => form = Form::GroupedAddresses,
                (0, "asMessageIds") => form = Form::MessageIds,
                (0, "asDate") => form = Form::Date,
                (0, "asURLs") => form = Form::Urls,
                (0 | 1, "all") if !all => all = true,
                _ => return Some(Err(wrong())),
            }
        }
        let name = name.to_ascii_lowercase();
        let allowed = match DEFINED.iter().find(|(defined, _)| *defined == name) {
            Some((_, forms)) => form == Form::Raw || forms.contains(&form),
            // List-Archive is RFC 2369's too (the array is one short of it).
            None if name == "list-archive" => matches!(form, Form::Raw | Form::Urls),
            None => true,
        };
        if !allowed {
            return Some(Err(MethodError::invalid_arguments(format!(
                "{property:?}: this form is not valid for this header field (RFC 8621 §4.1.2)"
            ))));
        }
        Some(Ok(HeaderProperty { name, form, all }))
    }

    /// The property's value from the raw values of the fields of its name, in order (each
    /// from after the colon to the end of the field, line break included).
    pub fn value(&self, raw_values: &[&[u8]]) -> Value {
        if self.all {
            return Value::from(raw_values.iter().map(|raw| parse(raw, self.form)).collect::<Vec<_>>());
        }
        match raw_values.last() {
            Some(raw) => parse(raw, self.form),
            None => Value::Null,
        }
    }
}

/// One field's raw value in `form`.
pub fn parse(raw: &[u8], form: Form) -> Value {
    match form {
        // RFC 8621 §4.1.2.1: the octets after the colon, up to the final CRLF, unchanged.
        Form::Raw => {
            let value = raw.strip_suffix(b"\n").unwrap_or(raw);
            let value = value.strip_suffix(b"\r").unwrap_or(value);
            Value::from(String::from_utf8_lossy(value).into_owned())
        }
        Form::Text => match MessageStream::new(raw).parse_unstructured() {
            HeaderValue::Text(text) => Value::from(text.trim().to_string()),
            HeaderValue::TextList(list) => Value::from(list.join(" ").trim().to_string()),
            _ => Value::from(""),
        },
        Form::Addresses => match MessageStream::new(raw).parse_address() {
            HeaderValue::Address(address) => addresses(address.iter()),
            _ => json!([]),
        },
        Form::GroupedAddresses => match MessageStream::new(raw).parse_address() {
            HeaderValue::Address(Address::List(list)) => json!([{"name": null, "addresses": addresses(list.iter())}]),
            HeaderValue::Address(Address::Group(groups)) => Value::from(
                groups
                    .iter()
                    .map(|group| json!({"name": group.name, "addresses": addresses(group.addresses.iter())}))
                    .collect::<Vec<_>>(),
            ),
            _ => json!([]),
        },
        Form::MessageIds => match MessageStream::new(raw).parse_id() {
            HeaderValue::Text(id) => json!([id]),
            HeaderValue::TextList(ids) if !ids.is_empty() => json!(ids),
            _ => Value::Null,
        },
        Form::Date => match MessageStream::new(raw).parse_date() {
            HeaderValue::DateTime(date) if date.is_valid() => Value::from(date.to_rfc3339()),
            _ => Value::Null,
        },
        Form::Urls => urls(raw),
    }
}

/// `EmailAddress` objects (RFC 8621 §4.1.2.3).
pub fn addresses<'a>(list: impl Iterator<Item = &'a mail_parser::Addr<'a>>) -> Value {
    Value::from(
        list.map(|address| json!({"name": address.name, "email": address.address.as_deref().unwrap_or_default()}))
            .collect::<Vec<_>>(),
    )
}

/// RFC 8621 §4.1.2.7: the URLs between angle brackets (RFC 2369), in order; `null` when
/// there is none.
fn urls(raw: &[u8]) -> Value {
    let text = String::from_utf8_lossy(raw);
    let mut found = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let url: String = after[..end].chars().filter(|c| !c.is_whitespace()).collect();
        found.push(Value::from(url));
        rest = &after[end + 1..];
    }
    if found.is_empty() { Value::Null } else { Value::from(found) }
}

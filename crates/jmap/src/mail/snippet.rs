//! `SearchSnippet/get` (RFC 8621 §5): an email's subject and a part of its text with the
//! words a query looked for between `<mark>` and `</mark>`, the rest HTML-escaped.
//!
//! The words are the values of the filter's `text`, `subject` and `body` conditions (not
//! those under a `NOT`, which no result contains), matched as the query matches them:
//! case-insensitive substrings (accents ignored too with `jmap.fold_accents`), a run of
//! spaces matching any run of whitespace. The
//! subject is marked for `text` and `subject`; the preview for `text` and `body`, in the
//! email's stored preview when a word is there, else in a window of the body's searchable
//! text around the first word found (lower case: the text as searches keep it). A field
//! with no word found is `null`, as the RFC says.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::email::{email_id, parse_email_id};
use super::{Context, arguments, server_fail};
use crate::MethodError;
use crate::filter::{self, Node};

/// Characters of body text shown around the first word found, when the stored preview
/// holds none: about the length of a preview (RFC 8621 §4.1.4: at most 256).
const WINDOW_CHARS: usize = 200;
/// Characters of that window before the word.
const WINDOW_BEFORE_CHARS: usize = 60;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetArguments {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    email_ids: Vec<String>,
}

/// The words a filter looks for: in subjects, and in bodies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Words {
    pub subject: Vec<String>,
    pub body: Vec<String>,
    /// The words are without accents, and match text with them.
    pub accents: bool,
}

/// The words of a flattened filter, those under a `NOT` left out, folded without accents
/// when `accents`; `unsupportedFilter` for a condition `Email/query` does not know.
pub fn words(nodes: &[Node], accents: bool) -> Result<Words, MethodError> {
    let mut words = Words { accents, ..Words::default() };
    let fold = |word: &str| {
        let word = hameau_mailbox::search_text(word);
        if accents { hameau_mailbox::fold_accents(&word).into_owned() } else { word }
    };
    // (negated, operands left) of each open operator.
    let mut open: Vec<(bool, usize)> = Vec::new();
    for node in nodes {
        let negated = open.last().is_some_and(|(negated, _)| *negated);
        if let Some(top) = open.last_mut() {
            top.1 = top.1.saturating_sub(1);
        }
        while open.last().is_some_and(|(_, left)| *left == 0) {
            open.pop();
        }
        match node {
            Node::And(n) | Node::Or(n) if *n > 0 => open.push((negated, *n)),
            Node::Not(n) if *n > 0 => open.push((true, *n)),
            Node::And(_) | Node::Or(_) | Node::Not(_) => {}
            Node::Condition(condition) => {
                if let Some(unknown) =
                    condition.keys().find(|key| !super::email_query::CONDITIONS.contains(&key.as_str()))
                {
                    return Err(MethodError::new(
                        "unsupportedFilter",
                        format!("emails are not filtered by {unknown:?}"),
                    ));
                }
                if negated {
                    continue;
                }
                for (property, value) in condition {
                    let Some(word) = value.as_str().map(fold) else { continue };
                    if word.is_empty() {
                        continue;
                    }
                    match property.as_str() {
                        "text" => {
                            words.subject.push(word.clone());
                            words.body.push(word);
                        }
                        "subject" => words.subject.push(word),
                        "body" => words.body.push(word),
                        _ => {}
                    }
                }
            }
        }
    }
    Ok(words)
}

/// The byte ranges in `text` where one of `words` (folded) is found, case-insensitively
/// (and without accents when `accents`), merged where they overlap; a space of a word
/// matches a run of whitespace.
pub fn find(text: &str, words: &[String], accents: bool) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut ranges = Vec::new();
    for word in words {
        let wanted: Vec<char> = word.chars().collect();
        let mut start = 0;
        while start < chars.len() {
            match match_at(&chars, start, &wanted, accents) {
                Some(end) => {
                    let end_byte = chars.get(end).map_or(text.len(), |(byte, _)| *byte);
                    ranges.push((chars[start].0, end_byte));
                    start = end.max(start + 1);
                }
                None => start += 1,
            }
        }
    }
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Where a match of `wanted` starting at char `start` ends (a char index), if it matches.
fn match_at(chars: &[(usize, char)], start: usize, wanted: &[char], accents: bool) -> Option<usize> {
    let mut at = start;
    for want in wanted {
        if *want == ' ' {
            let first = at;
            while at < chars.len() && chars[at].1.is_whitespace() {
                at += 1;
            }
            if at == first {
                return None;
            }
            continue;
        }
        let (_, have) = *chars.get(at)?;
        let mut lower = have.to_lowercase();
        // A char whose lower case is several (rare) matches on its first.
        let lower = lower.next().map(|c| if accents { hameau_mailbox::fold_char(c) } else { c });
        if lower != Some(*want) {
            return None;
        }
        at += 1;
    }
    Some(at)
}

/// `text` HTML-escaped, `ranges` between `<mark>` and `</mark>`.
pub fn mark(text: &str, ranges: &[(usize, usize)]) -> String {
    let mut out = String::with_capacity(text.len() + ranges.len() * 13);
    let mut at = 0;
    for (start, end) in ranges {
        escape(&text[at..*start], &mut out);
        out.push_str("<mark>");
        escape(&text[*start..*end], &mut out);
        out.push_str("</mark>");
        at = *end;
    }
    escape(&text[at..], &mut out);
    out
}

fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The window of the body's searchable `text` (folded as the words are: plain substring
/// search, no copy of a text that may be a megabyte, unless accents are ignored) around
/// the first word found, marked; `…` where it is cut. `None` when no word is found.
fn window(text: &str, words: &[String], accents: bool) -> Option<String> {
    let first = if accents {
        // Found in the text without accents: the same character, at another byte.
        let folded = hameau_mailbox::fold_accents(text);
        let at = words.iter().filter_map(|word| folded.find(word.as_str())).min()?;
        let chars = folded[..at].chars().count();
        text.char_indices().nth(chars).map_or(text.len(), |(byte, _)| byte)
    } else {
        words.iter().filter_map(|word| text.find(word.as_str())).min()?
    };
    let start = text[..first].char_indices().rev().nth(WINDOW_BEFORE_CHARS - 1).map_or(0, |(at, _)| at);
    let end = text[start..].char_indices().nth(WINDOW_CHARS).map_or(text.len(), |(at, _)| start + at);
    let shown = &text[start..end];
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.push_str(&mark(shown, &find(shown, words, accents)));
    if end < text.len() {
        out.push('…');
    }
    Some(out)
}

/// `SearchSnippet/get` (RFC 8621 §5.1).
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: GetArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let nodes = filter::flatten(arguments.filter, ctx.limits().filter_nodes_max)?;
    let words = words(&nodes, ctx.limits().fold_accents)?;
    let ids = super::ids_to_get(Some(arguments.email_ids), ctx.limits())?.unwrap_or_default();
    let mut not_found = Vec::new();
    let mut wanted: Vec<(String, u64)> = Vec::with_capacity(ids.len());
    for wire in ids {
        match parse_email_id(ctx, &wire) {
            Some(number) => wanted.push((wire, number)),
            None => not_found.push(wire),
        }
    }
    let numbers: Vec<u64> = wanted.iter().map(|(_, number)| *number).collect();
    let summaries = ctx.services.summaries.get_many(ctx.mail(), ctx.account(), &numbers).await.map_err(server_fail)?;
    let mut list = Vec::with_capacity(wanted.len());
    for ((wire, number), summary) in wanted.into_iter().zip(summaries) {
        let Some(cached) = summary else {
            not_found.push(wire);
            continue;
        };
        let subject = cached.summary.subject.as_deref().unwrap_or_default();
        let subject_ranges = find(subject, &words.subject, words.accents);
        let subject = (!subject_ranges.is_empty()).then(|| mark(subject, &subject_ranges));
        let preview_ranges = find(&cached.summary.preview, &words.body, words.accents);
        let preview = if !preview_ranges.is_empty() {
            Some(mark(&cached.summary.preview, &preview_ranges))
        } else if words.body.is_empty() {
            None
        } else {
            let texts = ctx.services.texts.get_many(ctx.mail(), ctx.account(), &[number]).await.map_err(server_fail)?;
            texts.into_iter().flatten().next().and_then(|text| window(&text, &words.body, words.accents))
        };
        list.push(json!({"emailId": email_id(number), "subject": subject, "preview": preview}));
    }
    let mut response = Map::new();
    response.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
    response.insert("list".into(), Value::from(list));
    response.insert("notFound".into(), if not_found.is_empty() { Value::Null } else { Value::from(not_found) });
    Ok(response)
}

#[cfg(test)]
#[path = "snippet_tests.rs"]
mod tests;

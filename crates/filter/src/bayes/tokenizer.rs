//! A message's tokens: what the classifier counts.
//!
//! What a token is matters more than the arithmetic after it. A token is a kind and a
//! text, hashed together, so that "free" in the subject and "free" in the body are two
//! tokens:
//! - the words of the subject, and of the display names and addresses of From and
//!   Reply-To, each under its header's name; the sender's domain and its parents;
//! - the names of the headers present (a mailing list's List-* headers as one), the words
//!   of the mailer's name, the shapes of Message-ID, Date, X-Mailer, Content-Type and To
//!   (digits as 9, letters as a or A: a bulk mailer shows in which headers it writes and
//!   how), and the hosts and addresses of the relays the Received headers name;
//! - the words of every text part, decoded (transfer encoding and charset), HTML turned to
//!   text without its style and scripts; runs too long to be words by their shape only;
//! - the hosts of the links (and their parent domains), the types and extensions of the
//!   attachments;
//! - a few shapes: a message only in HTML, its size, its number of parts.
//!
//! What was measured and left out is said where it would go (HTML tag names, the pairs of
//! neighbouring words of the body, a few HTML elements: `Kind`). The lesson of all three is
//! the same: tokens that come together are one piece of evidence counted many times, and
//! the combination, which takes tokens as independent, grows sure of itself on the
//! newsletters that people do ask for.
//!
//! Bounded: at most `Limits::parts_max` parts, `Limits::text_bytes_max` bytes of each
//! text, `Limits::bayes_tokens_max` distinct tokens (the first ones: headers, then the
//! body in order). The MIME tree is walked in a loop over mail-parser's flat part list, with
//! attached messages pushed on a bounded stack, never by recursion.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;

use mail_parser::{Message, MimeHeaders, PartType};

use crate::Limits;
use crate::search::find_ignore_case;

/// The distinct tokens of a message (64-bit hashes), at most `limits.bayes_tokens_max`, in
/// the order first seen. The hashes are stable (FNV-1a then a fixed mix, no random seed):
/// the store keeps counts under them across restarts and versions.
pub fn tokens(raw: &[u8], limits: &Limits) -> Vec<u64> {
    tokenize(raw, limits, false).tokens
}

/// [`tokens`] with what each one is (its kind and text, e.g. `Subject "gratuit"`), to
/// explain a score to an operator and to tune the tokenizer.
pub fn tokens_explained(raw: &[u8], limits: &Limits) -> Vec<(u64, String)> {
    let sink = tokenize(raw, limits, true);
    sink.tokens.into_iter().zip(sink.texts).collect()
}

/// [`tokens`] of a message already parsed by [`crate::parse`] (`None`: it could not be,
/// and `raw` is tokenized as plain text), for a caller that also gives it to the rules.
pub fn tokens_parsed(parsed: Option<&Message<'_>>, raw: &[u8], limits: &Limits) -> Vec<u64> {
    tokenize_parsed(parsed, raw, limits, false).tokens
}

fn tokenize(raw: &[u8], limits: &Limits, explain: bool) -> Sink {
    tokenize_parsed(crate::parse(raw).as_ref(), raw, limits, explain)
}

fn tokenize_parsed(parsed: Option<&Message<'_>>, raw: &[u8], limits: &Limits, explain: bool) -> Sink {
    // mail-parser documents that it never panics, and has been found to (issue 10): a
    // message it cannot parse, or whose parts make it panic when read, is tokenized as
    // plain text.
    let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut sink = Sink::new(limits.bayes_tokens_max, explain);
        match parsed {
            Some(message) => message_tokens(message, limits, &mut sink),
            None => raw_tokens(raw, limits, &mut sink),
        }
        sink
    }));
    read.unwrap_or_else(|_| {
        let mut sink = Sink::new(limits.bayes_tokens_max, explain);
        raw_tokens(raw, limits, &mut sink);
        sink
    })
}

/// Attached messages (message/rfc822 parts) read inside a message: 2, a forward of a
/// forward; deeper ones are left out (mail-parser itself decodes only 3 levels).
const NESTED_MESSAGES_MAX: usize = 2;

/// A word longer than this is not a word (base64 left in a body, a hash, a long URL's
/// path) and is counted by its shape only: 40 bytes, as the longest French and English
/// words are under 30 characters.
const WORD_BYTES_MAX: usize = 40;

/// The longest domain name written: 253 bytes (RFC 1035 §2.3.4's 255 octets on the wire).
const DOMAIN_BYTES_MAX: usize = 253;

/// Kinds of token: each kind's texts are hashed apart from the others'. The numbers are
/// part of the hashes the store keeps: never renumber, only add.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Word = 1,
    // 2 was the pairs of neighbouring words of the body ("click here"). A pair is seen with
    // its two words, so a phrase counted three times, and the newsletters that legitimate
    // senders write use the same phrases as spam ("click here", "to unsubscribe"): on the
    // two folds of the corpus benchmark's training half, without them, 888 spam were
    // caught for 3 hams lost, against 873 with them, and 898 for 4 against 875 (ranked by
    // probability alone; the subject's pairs, few, made no difference and stay). Counts
    // stored under this kind by an older version are no longer read.
    Subject = 3,
    SubjectPair = 4,
    HeaderName = 5,
    FromName = 6,
    FromAddress = 7,
    FromDomain = 8,
    ReplyToDomain = 9,
    Mailer = 10,
    ContentType = 11,
    Charset = 12,
    Host = 13,
    // 14 was the HTML tag names: they rose and fell together (every HTML message has
    // `html`, `body`, `p`), one piece of evidence counted ten times, and cost more false
    // positives than they caught spam on the corpus.
    Attachment = 15,
    Shape = 16,
    Received = 17,
}

impl Kind {
    fn tag(self) -> u8 {
        self as u8
    }
}

/// The hasher of the set of tokens seen: a token is already a well-mixed 64-bit hash
/// ([`hash`]), so it is its own hash (SipHash over it again cost a tenth of the
/// tokenizer's time).
#[derive(Default)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other input is folded in all the same.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The distinct tokens so far, and the bound.
struct Sink {
    seen: HashSet<u64, BuildHasherDefault<TokenHasher>>,
    tokens: Vec<u64>,
    max: usize,
    /// Each token's kind and text, when explaining.
    explain: bool,
    texts: Vec<String>,
}

impl Sink {
    fn new(max: usize, explain: bool) -> Self {
        Sink { seen: HashSet::default(), tokens: Vec::new(), max, explain, texts: Vec::new() }
    }

    fn full(&self) -> bool {
        self.tokens.len() >= self.max
    }

    fn push(&mut self, kind: Kind, text: &str) {
        self.push_joined(kind, &[text]);
    }

    /// The token of `pieces` written one after the other, without building their text: a
    /// word pair is hashed from its two words and the space between.
    fn push_joined(&mut self, kind: Kind, pieces: &[&str]) {
        if self.full() {
            return;
        }
        let token = hash(kind, pieces);
        if self.seen.insert(token) {
            self.tokens.push(token);
            if self.explain {
                self.texts.push(format!("{kind:?} {:?}", pieces.concat()));
            }
        }
    }

    /// The words of `text` under `kind`, and each pair of neighbours under `pair_kind`.
    fn push_words(&mut self, kind: Kind, pair_kind: Option<Kind>, text: &str) {
        let mut previous: Option<String> = None;
        for word in words(text) {
            if self.full() {
                return;
            }
            word.with_pieces(|pieces| self.push_joined(kind, pieces));
            if let Some(pair_kind) = pair_kind {
                let current = word.with_pieces(|pieces| pieces.concat());
                if let Some(previous) = &previous {
                    self.push_joined(pair_kind, &[previous, " ", &current]);
                }
                previous = Some(current);
            }
        }
    }
}

fn message_tokens(message: &Message<'_>, limits: &Limits, sink: &mut Sink) {
    header_tokens(message, sink);
    let mut n_parts = 0;
    let mut has_text = false;
    let mut has_html = false;
    // Attached messages met on the way, read after this one, each with its depth.
    let mut pending: Vec<(&Message<'_>, usize)> = vec![(message, 0)];
    while let Some((message, depth)) = pending.pop() {
        for part in &message.parts {
            if sink.full() {
                break;
            }
            if n_parts >= limits.parts_max {
                sink.push(Kind::Shape, "parts limit reached");
                break;
            }
            n_parts += 1;
            if let Some(content_type) = part.content_type() {
                let full = format!("{}/{}", content_type.ctype(), content_type.subtype().unwrap_or(""));
                sink.push(Kind::ContentType, &full.to_lowercase());
                if let Some(charset) = content_type.attribute("charset") {
                    sink.push(Kind::Charset, &charset.to_lowercase());
                }
            }
            match &part.body {
                PartType::Text(text) => {
                    has_text = true;
                    text_tokens(bounded(text, limits.text_bytes_max), sink);
                }
                PartType::Html(html) => {
                    has_html = true;
                    html_tokens(bounded(html, limits.text_bytes_max), sink);
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => attachment_tokens(part, sink),
                PartType::Message(nested) => {
                    if depth < NESTED_MESSAGES_MAX {
                        pending.push((nested, depth + 1));
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
    }
    if has_html && !has_text {
        sink.push(Kind::Shape, "html only");
    }
    sink.push(Kind::Shape, &format!("parts {}", n_parts.min(10)));
    // Powers of two of the size: 2 KiB, 4 KiB, … (a one-line spam, a 40 KiB newsletter).
    let size_class = usize::BITS - message.raw_message.len().leading_zeros();
    sink.push(Kind::Shape, &format!("size 2^{size_class}"));
}

fn header_tokens(message: &Message<'_>, sink: &mut Sink) {
    if let Some(subject) = message.subject() {
        sink.push_words(Kind::Subject, Some(Kind::SubjectPair), subject);
        let letters: Vec<char> = subject.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 8 && letters.iter().all(|c| c.is_uppercase()) {
            sink.push(Kind::Shape, "subject in capitals");
        }
    } else {
        sink.push(Kind::Shape, "no subject");
    }
    for address in message.from().iter().flat_map(|address| address.iter()) {
        if let Some(name) = address.name() {
            sink.push_words(Kind::FromName, None, name);
        }
        if let Some(address) = address.address() {
            let address = address.to_lowercase();
            sink.push(Kind::FromAddress, &address);
            if let Some((_, domain)) = address.rsplit_once('@') {
                domain_tokens(Kind::FromDomain, domain, sink);
            }
        }
    }
    for address in message.reply_to().iter().flat_map(|address| address.iter()) {
        if let Some((_, domain)) = address.address().and_then(|address| address.rsplit_once('@')) {
            domain_tokens(Kind::ReplyToDomain, &domain.to_lowercase(), sink);
        }
    }
    for (name, value) in message.headers_raw() {
        let name = name.to_ascii_lowercase();
        // The headers of a mailing list come together (List-Id, List-Post, List-Help, …): one
        // token for all of them, not six that say the same thing six times.
        let is_list =
            name.starts_with("list-") || name.starts_with("x-mailman") || name == "x-beenthere" || name == "precedence";
        sink.push(Kind::HeaderName, if is_list { "list-*" } else { &name });
        if matches!(name.as_str(), "x-mailer" | "user-agent") {
            sink.push_words(Kind::Mailer, None, value);
        }
        if name == "received" {
            received_tokens(value, sink);
        }
        // The shape of these headers tells the software that wrote them: a bulk mailer's
        // Message-ID or Date is not a mail client's.
        if matches!(name.as_str(), "message-id" | "date" | "x-mailer" | "content-type" | "to") {
            sink.push(Kind::Shape, &format!("{name} {}", pattern(value)));
        }
    }
}

/// The shape of a header's value: digits as 9, lower-case letters as a, capitals as A,
/// runs of each collapsed, the rest kept, the first 80 characters
/// (`<20020821.ABC123@example.fr>` is `<9.A9@a.a>`).
fn pattern(value: &str) -> String {
    let mut shape = String::new();
    for c in value.trim().chars().take(80) {
        let class = if c.is_ascii_digit() {
            '9'
        } else if c.is_lowercase() {
            'a'
        } else if c.is_uppercase() {
            'A'
        } else if c.is_whitespace() {
            ' '
        } else {
            c
        };
        if !shape.ends_with(class) || !matches!(class, '9' | 'a' | 'A' | ' ') {
            shape.push(class);
        }
    }
    shape
}

/// The hosts and addresses a Received header names (`mail.example.fr`, `192.0.2.1`), with
/// the parent domains of the hosts and the /24 network of the addresses: the relays a
/// message came through say who sent it.
fn received_tokens(value: &str, sink: &mut Sink) {
    let pieces =
        value.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '<' | '>' | ';' | '=' | ','));
    for piece in pieces {
        let piece = piece.trim_matches('.').to_ascii_lowercase();
        if !piece.contains('.') || piece.contains('@') || piece.len() > 100 {
            continue;
        }
        if piece.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            sink.push(Kind::Received, &piece);
            if let Some((network, _)) = piece.rsplit_once('.') {
                sink.push(Kind::Received, &format!("{network}.0/24"));
            }
        } else if piece.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') {
            domain_tokens(Kind::Received, &piece, sink);
        }
    }
}

/// Words of a text part, and the hosts of its links.
fn text_tokens(text: &str, sink: &mut Sink) {
    link_tokens(text, sink);
    sink.push_words(Kind::Word, None, text);
}

/// The hosts of an HTML part's links, then its text's words.
///
/// No token for the HTML elements present (`<img`, `<form`, `<font`, `<table`, `<a `, as
/// an older version had under `Kind::Shape`): the newsletters people subscribe to are
/// HTML with tables, fonts and images too, and on the two folds of the corpus benchmark's
/// training half (the body's word pairs already gone), without them, 907 spam were caught
/// for 3 hams lost against 888, and 909 for 4 against 898.
fn html_tokens(html: &str, sink: &mut Sink) {
    link_tokens(html, sink);
    let text = mail_parser::decoders::html::html_to_text(&without_style_and_script(html));
    sink.push_words(Kind::Word, None, &text);
}

/// `html` without its `<style>` and `<script>` elements: mail-parser's HTML-to-text keeps
/// their content when the opening tag has attributes (`<style type="text/css">`), and CSS
/// colour codes are not words of the message.
fn without_style_and_script(html: &str) -> std::borrow::Cow<'_, str> {
    const OPENS: [&[u8]; 2] = [b"<style", b"<script"];
    const CLOSES: [&[u8]; 2] = [b"</style", b"</script"];
    let bytes = html.as_bytes();
    if !OPENS.iter().any(|open| find_ignore_case(bytes, open).is_some()) {
        return std::borrow::Cow::Borrowed(html);
    }
    let mut kept = String::with_capacity(html.len());
    // As in `link_tokens`: the next place of each opening tag (`Some(None)`: none until the
    // end), searched again only once passed, so that the text is searched a few times, not
    // once per element.
    let mut next: [Option<Option<usize>>; 2] = [None; 2];
    let mut index = 0;
    while index < html.len() {
        for (which, open) in OPENS.iter().enumerate() {
            if next[which].is_none() || next[which].is_some_and(|at| at.is_some_and(|at| at < index)) {
                next[which] = Some(find_ignore_case(&bytes[index..], open).map(|at| index + at));
            }
        }
        let Some((at, which)) =
            next.iter().enumerate().filter_map(|(which, at)| at.flatten().map(|at| (at, which))).min()
        else {
            kept.push_str(&html[index..]);
            break;
        };
        kept.push_str(&html[index..at]);
        kept.push(' ');
        // Past the closing tag's `>`, or to the end when it is missing.
        index = match find_ignore_case(&bytes[at..], CLOSES[which]) {
            Some(end) => memchr::memchr(b'>', &bytes[at + end..]).map(|gt| at + end + gt + 1).unwrap_or(html.len()),
            None => html.len(),
        };
    }
    std::borrow::Cow::Owned(kept)
}

fn attachment_tokens(part: &mail_parser::MessagePart<'_>, sink: &mut Sink) {
    let content_type = part
        .content_type()
        .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_lowercase())
        .unwrap_or_default();
    sink.push(Kind::Attachment, &content_type);
    if let Some(name) = part.attachment_name() {
        let extension = name.rsplit_once('.').map(|(_, extension)| extension).unwrap_or("");
        sink.push(Kind::Attachment, &format!(".{}", extension.to_lowercase()));
    }
}

/// The host of every `http://`, `https://` and `www.` link in `text`, and its parent
/// domains; an IP address as its own token too.
fn link_tokens(text: &str, sink: &mut Sink) {
    const STARTS: [&[u8]; 3] = [b"http://", b"https://", b"www."];
    // Searched with the case ignored, in place: no lower-case copy of the whole text.
    let bytes = text.as_bytes();
    // The next place of each start at or after `index` (`Some(None)`: none until the end),
    // searched again only once passed: the text is searched a few times, not once per link.
    let mut next: [Option<Option<usize>>; 3] = [None; 3];
    let mut index = 0;
    while index < bytes.len() && !sink.full() {
        for (which, start) in STARTS.iter().enumerate() {
            let stale = match next[which] {
                None => true,
                Some(Some(at)) => at < index,
                Some(None) => false,
            };
            if stale {
                next[which] = Some(find_ignore_case(&bytes[index..], start).map(|at| index + at));
            }
        }
        let Some((at, which)) =
            next.iter().enumerate().filter_map(|(which, at)| at.flatten().map(|at| (at, which))).min()
        else {
            return;
        };
        let host_start = if STARTS[which] == b"www." { at } else { at + STARTS[which].len() };
        let host_len =
            bytes[host_start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-').count();
        // ASCII only (the bytes just taken), so a char boundary at both ends.
        let host = text[host_start..host_start + host_len].to_ascii_lowercase();
        let host = host.trim_matches('.');
        if !host.is_empty() {
            if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                sink.push(Kind::Host, "ip address");
            }
            domain_tokens(Kind::Host, host, sink);
        }
        index = host_start + host_len.max(1);
    }
}

/// `domain` and each parent domain with at least two labels (`a.b.example.fr`,
/// `b.example.fr`, `example.fr`).
fn domain_tokens(kind: Kind, domain: &str, sink: &mut Sink) {
    let domain = domain.trim_matches(|c: char| c == '.' || c == '>' || c.is_whitespace());
    // RFC 1035 §2.3.4: a name has at most 255 octets (253 written). A longer run of labels
    // is no host, and its parents would cost time quadratic in its length.
    if domain.len() > DOMAIN_BYTES_MAX {
        return;
    }
    let mut rest = domain;
    while !rest.is_empty() {
        sink.push(kind, rest);
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => break,
        }
    }
}

/// The words of `text`, lowercased: runs of letters, digits, `'`, `-` and `$` (Graham's
/// choice; `$` and `€` say money), trimmed of `'` and `-`, of at least 2 bytes. A number is
/// replaced by its shape (`#3` for three digits): the amounts and dates themselves repeat
/// too little to learn from. A run longer than [`WORD_BYTES_MAX`] (base64 left in a body,
/// a sentence of Chinese or Japanese, which has no spaces) becomes `long:` with its first
/// character and its length in tens of bytes, as SpamBayes' "skip" tokens: such runs are
/// common in some spam and rare in ham.
fn words(text: &str) -> impl Iterator<Item = Word<'_>> + '_ {
    Runs { text, at: 0 }.map(|word| word.trim_matches(|c| c == '\'' || c == '-')).filter(|word| word.len() >= 2).map(
        |word| {
            if word.len() > WORD_BYTES_MAX {
                let first = word.chars().next().map_or("", |c| &word[..c.len_utf8()]);
                Word::Long(first, word.len() / 10)
            } else if word.bytes().all(|b| b.is_ascii_digit()) {
                Word::Number(word.len())
            } else if word.is_ascii() && !word.bytes().any(|b| b.is_ascii_uppercase()) {
                // Most words are written in lower case already: no copy.
                Word::Text(Cow::Borrowed(word))
            } else {
                Word::Text(Cow::Owned(word.to_lowercase()))
            }
        },
    )
}

/// A word as it is counted; its text is built only when explained or paired.
enum Word<'t> {
    Text(Cow<'t, str>),
    /// `long:{first}:{tens}`.
    Long(&'t str, usize),
    /// `#{digits}`.
    Number(usize),
}

impl Word<'_> {
    /// Calls `f` with the word's text in pieces (hashed as if written one after the other).
    fn with_pieces<R>(&self, f: impl FnOnce(&[&str]) -> R) -> R {
        let mut buffer = [0u8; 20];
        match self {
            Word::Text(text) => f(&[text]),
            Word::Long(first, tens) => f(&["long:", first, ":", decimal(*tens, &mut buffer)]),
            Word::Number(digits) => f(&["#", decimal(*digits, &mut buffer)]),
        }
    }
}

/// `n` written in decimal in `buffer`, without allocating.
fn decimal(mut n: usize, buffer: &mut [u8; 20]) -> &str {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buffer[at..]).expect("ASCII digits")
}

/// The maximal runs of word characters of a text (letters, digits, `'`, `-`, `$`, `€`),
/// read byte by byte where the text is ASCII and by character elsewhere: the same runs as
/// `str::split` on the other characters without its empty pieces, at a third of its cost.
struct Runs<'t> {
    text: &'t str,
    at: usize,
}

impl<'t> Runs<'t> {
    /// Whether a word character starts at `at` (a char boundary), and its length.
    fn char_at(&self, at: usize) -> (bool, usize) {
        let byte = self.text.as_bytes()[at];
        if byte.is_ascii() {
            return (byte.is_ascii_alphanumeric() || matches!(byte, b'\'' | b'-' | b'$'), 1);
        }
        let c = self.text[at..].chars().next().expect("a char boundary below the end");
        (c.is_alphanumeric() || c == '€', c.len_utf8())
    }
}

impl<'t> Iterator for Runs<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let len = self.text.len();
        while self.at < len {
            let (is_word, width) = self.char_at(self.at);
            if is_word {
                break;
            }
            self.at += width;
        }
        if self.at >= len {
            return None;
        }
        let start = self.at;
        while self.at < len {
            let (is_word, width) = self.char_at(self.at);
            if !is_word {
                break;
            }
            self.at += width;
        }
        Some(&self.text[start..self.at])
    }
}

/// The first `max` bytes of `text`, cut on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A message mail-parser could not read: its bytes as text.
fn raw_tokens(raw: &[u8], limits: &Limits, sink: &mut Sink) {
    let raw = &raw[..raw.len().min(limits.text_bytes_max)];
    let text = String::from_utf8_lossy(raw);
    sink.push(Kind::Shape, "unparsed");
    text_tokens(&text, sink);
}

/// FNV-1a (64 bits) over the kind and the text, then the finaliser of SplitMix64 so that
/// the low bits vary as much as the high ones (a store may shard on them). Both are
/// published constants, not a library's hasher: the value must never change.
/// The text is given in pieces, hashed as if written one after the other.
fn hash(kind: Kind, pieces: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = (OFFSET ^ u64::from(kind.tag())).wrapping_mul(PRIME);
    for byte in pieces.iter().flat_map(|piece| piece.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
pub(super) fn hash_for_tests(text: &str) -> u64 {
    hash(Kind::Word, &[text])
}

#[cfg(test)]
mod tests {
    use super::{Kind, hash, link_tokens, words};

    /// The definition `words` had before it read bytes: the split it must keep giving.
    fn reference(text: &str) -> Vec<String> {
        text.split(|c: char| !(c.is_alphanumeric() || matches!(c, '\'' | '-' | '$' | '€')))
            .map(|word| word.trim_matches(|c| c == '\'' || c == '-'))
            .filter(|word| word.len() >= 2)
            .map(|word| {
                if word.len() > super::WORD_BYTES_MAX {
                    let first = word.chars().next().unwrap_or(' ');
                    format!("long:{first}:{}", word.len() / 10)
                } else if word.bytes().all(|b| b.is_ascii_digit()) {
                    format!("#{}", word.len())
                } else {
                    word.to_lowercase()
                }
            })
            .collect()
    }

    #[test]
    fn words_are_read_as_the_split_read_them() {
        let long = "É".repeat(30);
        let texts = [
            "Bonjour Madame, la FACTURE n°2026-114 de 1 250,00 € est jointe.",
            "l'été -- 'quoted' -x- $100 €€ 12345678 ΣΑΣ ΟΔΟΣ straße İstanbul",
            "日本語のテキストは空白がありません。日本語のテキストは空白がありません。",
            "1XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n2XX",
            &long,
            "",
            "a b c ' - '' -- ab",
            "\u{0}\u{7f}\u{80}\u{10ffff}ab\u{300}cd",
        ];
        for text in texts {
            let got: Vec<String> = words(text).map(|word| word.with_pieces(|pieces| pieces.concat())).collect();
            assert_eq!(got, reference(text), "{text:?}");
            // Hashed in pieces as the text written whole.
            for word in words(text) {
                let whole = word.with_pieces(|pieces| pieces.concat());
                assert_eq!(word.with_pieces(|pieces| hash(Kind::Word, pieces)), hash(Kind::Word, &[&whole]));
            }
        }
    }

    #[test]
    fn link_hosts_are_found_whatever_their_case() {
        let mut sink = super::Sink::new(100, true);
        link_tokens("Voir HTTPS://Mairie.Example.FR/x et Www.Autre.fr, http://192.0.2.1/ et http://", &mut sink);
        let texts: Vec<&str> = sink.texts.iter().map(String::as_str).collect();
        assert_eq!(
            texts,
            [
                r#"Host "mairie.example.fr""#,
                r#"Host "example.fr""#,
                r#"Host "www.autre.fr""#,
                r#"Host "autre.fr""#,
                r#"Host "ip address""#,
                r#"Host "192.0.2.1""#,
                r#"Host "0.2.1""#,
                r#"Host "2.1""#,
            ]
        );
    }
}

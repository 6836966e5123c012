//! The mbox reader (RFC 4155): messages one after another, each after a `From ` line.
//!
//! A separator is a line that starts with `From ` and carries a date after the sender
//! (mutt's rule): a `From ` line without a date inside a message is body text from a
//! writer that did not quote it. The first line of the file is taken as a separator
//! whatever follows `From `. Body lines quoted by the writer are unquoted per the
//! variant ([`Quoting`]). A `Content-Length:` header (mboxcl, mboxcl2) is tolerated but
//! not used to split: the separators are found the same way, so a lying length cannot
//! merge or cut messages; the only cost is that an mboxcl2 body line that looks exactly
//! like a separator (`From `, a sender and a full date) ends its message there.
//!
//! The blank line that writers put after each message (RFC 4155 §2) is removed. A last
//! message cut short (the file ends in the middle of a line: a copy or a disk that
//! stopped) is skipped as [`SkipReason::Truncated`]: storing half a message would hide
//! the loss, and every writer ends a message with a line end.

use std::io::{BufRead, BufReader, ErrorKind};

use crate::{Limits, Skip, SkipReason, SourceMessage, date, is_keyword, push_unique};

/// How body lines that start with `From ` were quoted by the writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quoting {
    /// mboxrd: every `>*From ` line got one more `>`; one is removed from each. Written by
    /// Hameau's export, Dovecot's `doveadm` and mutt with `mbox_type=mboxrd`.
    #[default]
    Mboxrd,
    /// mboxo (and mboxcl): only `From ` became `>From `; `>From ` lines lose their `>`,
    /// `>>From ` stay as they are (the format cannot tell them apart). Thunderbird and
    /// older mutt write this.
    Mboxo,
}

/// Reads the messages of one mbox, one at a time.
pub struct MboxReader<R> {
    input: BufReader<R>,
    quoting: Quoting,
    limits: Limits,
    /// Names the file in [`Skip::location`].
    label: String,
    /// The `From ` line that starts the next message.
    separator: Option<Vec<u8>>,
    started: bool,
    done: bool,
    n_messages: u64,
    /// The byte offset of the next line, for locations.
    offset: u64,
    line: Vec<u8>,
}

/// What [`MboxReader::read_line`] found.
enum LineRead {
    Eof,
    /// A line (in `line`), with its line end unless it is the last of the file.
    Line,
    /// A line longer than the limit, read and thrown away.
    TooLong,
}

/// The read buffer: 64 KiB reads, as `std` uses for files.
const READ_BUFFER_BYTES: usize = 64 * 1024;

impl<R: std::io::Read> MboxReader<R> {
    pub fn new(input: R, quoting: Quoting, limits: Limits, label: String) -> MboxReader<R> {
        MboxReader {
            input: BufReader::with_capacity(READ_BUFFER_BYTES, input),
            quoting,
            limits,
            label,
            separator: None,
            started: false,
            done: false,
            n_messages: 0,
            offset: 0,
            line: Vec::new(),
        }
    }

    /// Reads one line into `self.line`, holding at most `line_bytes_max` bytes of it.
    fn read_line(&mut self) -> std::io::Result<LineRead> {
        self.line.clear();
        let max = self.limits.line_bytes_max as usize;
        let mut too_long = false;
        loop {
            let available = match self.input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(match (too_long, self.line.is_empty()) {
                    (true, _) => LineRead::TooLong,
                    (false, true) => LineRead::Eof,
                    (false, false) => LineRead::Line,
                });
            }
            let (taken, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (at + 1, true),
                None => (available.len(), false),
            };
            if !too_long && self.line.len() + taken <= max {
                self.line.extend_from_slice(&available[..taken]);
            } else if !too_long {
                too_long = true;
                self.line = Vec::new();
            }
            self.input.consume(taken);
            self.offset += taken as u64;
            if complete {
                return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
            }
        }
    }

    fn skipped(&self, n_message: u64, offset: u64, reason: SkipReason) -> Skip {
        Skip { location: format!("{}: message {n_message} (byte {offset})", self.label), reason }
    }

    /// Reads the first line: an mbox starts with `From `.
    fn start(&mut self) -> Option<Skip> {
        self.started = true;
        match self.read_line() {
            Ok(LineRead::Eof) => self.done = true,
            Ok(LineRead::Line) if self.line.starts_with(b"From ") => {
                self.separator = Some(std::mem::take(&mut self.line))
            }
            Ok(_) => {
                self.done = true;
                return Some(Skip { location: self.label.clone(), reason: SkipReason::NotMbox });
            }
            Err(e) => {
                self.done = true;
                return Some(Skip { location: self.label.clone(), reason: SkipReason::Io(e.to_string()) });
            }
        }
        None
    }

    /// Reads the lines of one message up to the next separator or the end.
    fn read_message(&mut self) -> Result<Body, std::io::Error> {
        let mut body = Body::default();
        let max = self.limits.message_bytes_max as usize;
        loop {
            match self.read_line()? {
                LineRead::Eof => {
                    self.done = true;
                    body.truncated = !body.raw.is_empty() && !body.raw.ends_with(b"\n");
                    return Ok(body);
                }
                LineRead::TooLong => {
                    body.line_too_long = true;
                    body.raw = Vec::new();
                    body.bytes_seen += self.limits.line_bytes_max;
                }
                LineRead::Line => {
                    if is_separator(&self.line) {
                        self.separator = Some(std::mem::take(&mut self.line));
                        return Ok(body);
                    }
                    body.bytes_seen += self.line.len() as u64;
                    if body.line_too_long || body.too_large {
                        continue;
                    }
                    append_line(&mut body.raw, &self.line, self.quoting);
                    if body.raw.len() > max {
                        body.too_large = true;
                        body.raw = Vec::new();
                    }
                }
            }
        }
    }
}

/// A message's lines as read.
#[derive(Default)]
struct Body {
    raw: Vec<u8>,
    bytes_seen: u64,
    too_large: bool,
    line_too_long: bool,
    /// The file ended in the middle of the message's last line.
    truncated: bool,
}

impl<R: std::io::Read> Iterator for MboxReader<R> {
    type Item = Result<SourceMessage, Skip>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done && self.separator.is_none() {
            return None;
        }
        if !self.started
            && let Some(skip) = self.start()
        {
            return Some(Err(skip));
        }
        let separator = self.separator.take()?;
        let offset = self.offset - separator.len() as u64;
        if self.n_messages >= self.limits.messages_max {
            self.done = true;
            let reason = SkipReason::TooManyMessages { max: self.limits.messages_max };
            return Some(Err(self.skipped(self.n_messages + 1, offset, reason)));
        }
        self.n_messages += 1;
        let n_message = self.n_messages;
        let body = match self.read_message() {
            Ok(body) => body,
            Err(e) => {
                self.done = true;
                self.separator = None;
                return Some(Err(self.skipped(n_message, offset, SkipReason::Io(e.to_string()))));
            }
        };
        if body.line_too_long {
            return Some(Err(self.skipped(
                n_message,
                offset,
                SkipReason::LineTooLong { max: self.limits.line_bytes_max },
            )));
        }
        if body.too_large {
            let reason = SkipReason::TooLarge { bytes: body.bytes_seen, max: self.limits.message_bytes_max };
            return Some(Err(self.skipped(n_message, offset, reason)));
        }
        if body.truncated {
            return Some(Err(self.skipped(n_message, offset, SkipReason::Truncated { bytes: body.bytes_seen })));
        }
        let mut raw = body.raw;
        // RFC 4155 §2: the writer ends each message with a blank line of its own.
        if raw.ends_with(b"\r\n\r\n") || raw == b"\r\n" {
            raw.truncate(raw.len() - 2);
        }
        let state = take_local_state(&mut raw, self.limits.keywords_max);
        if state.deleted {
            return Some(Err(self.skipped(n_message, offset, SkipReason::DeletedByThunderbird)));
        }
        if state.too_many_keywords {
            let reason = SkipReason::TooManyKeywords { max: self.limits.keywords_max };
            return Some(Err(self.skipped(n_message, offset, reason)));
        }
        let internal_date = date::parse_from_line(trim_line_end(&separator[5..]));
        Some(Ok(SourceMessage { raw, flags: state.flags, keywords: state.keywords, internal_date, uid: None }))
    }
}

/// Whether a line separates messages: `From `, a sender, a date.
pub fn is_separator(line: &[u8]) -> bool {
    line.starts_with(b"From ") && date::parse_from_line(trim_line_end(&line[5..])).is_some()
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Appends one line, unquoted, with a CRLF line end if it had a line end.
fn append_line(out: &mut Vec<u8>, line: &[u8], quoting: Quoting) {
    let (content, ended) = match line.strip_suffix(b"\n") {
        Some(content) => (content.strip_suffix(b"\r").unwrap_or(content), true),
        None => (line, false),
    };
    let quoted = match quoting {
        Quoting::Mboxrd => {
            let n_quotes = content.iter().take_while(|b| **b == b'>').count();
            n_quotes > 0 && content[n_quotes..].starts_with(b"From ")
        }
        Quoting::Mboxo => content.starts_with(b">From "),
    };
    out.extend_from_slice(if quoted { &content[1..] } else { content });
    if ended {
        out.extend_from_slice(b"\r\n");
    }
}

/// What the local-state headers said.
#[derive(Debug, Default)]
pub(crate) struct LocalState {
    pub flags: Vec<String>,
    pub keywords: Vec<String>,
    /// Thunderbird's "expunged" bit.
    pub deleted: bool,
    /// More keywords than the limit: the rest were not read.
    pub too_many_keywords: bool,
}

/// The headers mail programs add to keep their own state, lower case.
pub const LOCAL_STATE_HEADERS: [&str; 9] = [
    "status",
    "x-status",
    "x-keywords",
    "x-uid",
    "x-imap",
    "x-imapbase",
    "x-mozilla-status",
    "x-mozilla-status2",
    "x-mozilla-keys",
];

/// Reads the local-state headers of the header block of `raw` (CRLF lines) and removes
/// them, continuation lines included.
pub(crate) fn take_local_state(raw: &mut Vec<u8>, keywords_max: u64) -> LocalState {
    let mut state = LocalState::default();
    let mut removed: Vec<(usize, usize)> = Vec::new();
    for (start, colon, end) in header_fields(raw) {
        let name = String::from_utf8_lossy(&raw[start..colon]).trim().to_ascii_lowercase();
        if LOCAL_STATE_HEADERS.contains(&name.as_str()) {
            let value = String::from_utf8_lossy(&raw[colon + 1..end]).split_whitespace().collect::<Vec<_>>().join(" ");
            read_local_header(&name, &value, &mut state, keywords_max);
            removed.push((start, end));
        }
    }
    if !removed.is_empty() {
        let mut kept = Vec::with_capacity(raw.len());
        let mut from = 0;
        for (start, end) in removed {
            kept.extend_from_slice(&raw[from..start]);
            from = end;
        }
        kept.extend_from_slice(&raw[from..]);
        *raw = kept;
    }
    state.flags.sort_by_key(|flag| crate::SYSTEM_FLAGS.iter().position(|known| known == flag));
    state
}

/// The fields of the header block: `(start, colon, end)` of each, continuation lines
/// included. The block ends at a blank line, or at a line that is not a field (no colon,
/// or white space where a field must start): what follows is not read as header. The
/// export inserts its headers after the last field, so this reader finds them.
pub(crate) fn header_fields(raw: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let first = raw[at];
        if first == b' ' || first == b'\t' || first == b'\r' || first == b'\n' {
            break;
        }
        let end = field_end(raw, at);
        let Some(colon) = raw[at..end].iter().position(|b| *b == b':') else { break };
        let name = &raw[at..at + colon];
        if name.is_empty() || name.iter().any(|b| *b < b' ' || *b == 0x7f) {
            break;
        }
        fields.push((at, at + colon, end));
        at = end;
    }
    fields
}

/// The end of the header field starting at `at`: its line and its continuation lines.
fn field_end(raw: &[u8], at: usize) -> usize {
    let mut end = at;
    loop {
        end = match raw[end..].iter().position(|b| *b == b'\n') {
            Some(newline) => end + newline + 1,
            None => return raw.len(),
        };
        // A field is one line unless the next starts with white space (RFC 5322 §2.2.3).
        if end >= raw.len() || !(raw[end] == b' ' || raw[end] == b'\t') {
            return end;
        }
    }
}

fn read_local_header(name: &str, value: &str, state: &mut LocalState, keywords_max: u64) {
    let flags = &mut state.flags;
    match name {
        // mutt, Pine, Dovecot: R read, O old (not new: nothing in IMAP).
        "status" if value.contains('R') => push_unique(flags, "\\Seen"),
        "x-status" => {
            for (letter, flag) in [('A', "\\Answered"), ('F', "\\Flagged"), ('T', "\\Draft"), ('D', "\\Deleted")] {
                if value.contains(letter) {
                    push_unique(flags, flag);
                }
            }
        }
        "x-keywords" | "x-mozilla-keys" => {
            for word in value.split([' ', ',']).filter(|word| is_keyword(word)) {
                // Counted before adding: the list (searched at each word) stays small.
                if state.keywords.len() as u64 >= keywords_max {
                    state.too_many_keywords = true;
                    break;
                }
                push_unique(&mut state.keywords, word);
            }
        }
        "x-mozilla-status" => {
            let bits = u32::from_str_radix(value.trim(), 16).unwrap_or(0);
            // Thunderbird's nsMsgMessageFlags: Read, Replied, Marked, Expunged, Forwarded.
            for (bit, flag) in [(0x0001, "\\Seen"), (0x0002, "\\Answered"), (0x0004, "\\Flagged")] {
                if bits & bit != 0 {
                    push_unique(flags, flag);
                }
            }
            state.deleted |= bits & 0x0008 != 0;
            if bits & 0x1000 != 0 {
                push_unique(&mut state.keywords, "$Forwarded");
            }
        }
        "x-mozilla-status2" => {
            let bits = u32::from_str_radix(value.trim(), 16).unwrap_or(0);
            if bits & 0x0080_0000 != 0 {
                push_unique(&mut state.keywords, "$MDNSent");
            }
            // The old labels 1 to 5 (bits 25 to 27), the `$label1`… keywords of today.
            let label = (bits >> 25) & 7;
            if (1..=5).contains(&label) {
                push_unique(&mut state.keywords, &format!("$label{label}"));
            }
        }
        _ => {}
    }
}

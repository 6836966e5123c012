//! The response writer: untagged data and status responses in wire syntax (RFC 9051 §7,
//! §9 grammar), appended straight to the session's output buffer.
//!
//! Strings are written quoted when they can be (short, no CR, LF or NUL, 7-bit unless
//! UTF-8 is enabled), as literals otherwise; message data is always a literal (`literal8`
//! for `BINARY` data holding NUL). Mailbox names are encoded in modified UTF-7 unless
//! IMAP4rev2 or UTF8=ACCEPT is enabled.

use std::io::Write as _;

use crate::capability::Capabilities;
use crate::mutf7;
use crate::types::{Flag, Section, SequenceSet, SpecialUse, StatusItem};

/// The status of a tagged response, or of an untagged one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// A response code (RFC 9051 §7.1 and the extensions'), written in brackets before the
/// text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code<'a> {
    Alert,
    AlreadyExists,
    AuthenticationFailed,
    AuthorizationFailed,
    Cannot,
    /// The session's current capability list.
    Capability,
    ClientBug,
    Closed,
    CompressionActive,
    ContactAdmin,
    Corruption,
    Expired,
    ExpungeIssued,
    HasChildren,
    InUse,
    Limit,
    NoModSeq,
    NonExistent,
    NoPerm,
    OverQuota,
    Parse,
    PrivacyRequired,
    ReadOnly,
    ReadWrite,
    ServerBug,
    TooBig,
    TryCreate,
    Unavailable,
    UnknownCte,
    UseAttr,
    /// `PERMANENTFLAGS (flags [\*])`; `keywords_allowed` adds `\*`.
    PermanentFlags {
        flags: &'a [Flag],
        keywords_allowed: bool,
    },
    UidValidity(u32),
    UidNext(u32),
    /// RFC 3501 only (IMAP4rev2 dropped it).
    Unseen(u32),
    HighestModSeq(u64),
    /// RFC 4315 §3.
    AppendUid {
        uid_validity: u32,
        uids: &'a SequenceSet,
    },
    /// RFC 4315 §3.
    CopyUid {
        uid_validity: u32,
        source: &'a SequenceSet,
        destination: &'a SequenceSet,
    },
    /// RFC 7162 §3.1.3: messages that `UNCHANGEDSINCE` kept from being stored.
    Modified(&'a SequenceSet),
    BadCharset(&'a [&'a str]),
}

/// Mailbox attributes of `LIST` (RFC 9051 §7.3.1, RFC 5258, RFC 6154).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailboxAttribute {
    NoInferiors,
    NoSelect,
    NonExistent,
    Marked,
    Unmarked,
    Subscribed,
    Remote,
    HasChildren,
    HasNoChildren,
    SpecialUse(SpecialUse),
}

/// One `* LIST` (or `* LSUB`) line.
#[derive(Clone, Copy, Debug)]
pub struct ListItem<'a> {
    pub attributes: &'a [MailboxAttribute],
    /// The hierarchy delimiter, `None` for a flat namespace (`NIL`).
    pub delimiter: Option<char>,
    /// The name, UTF-8; the writer encodes it for the session's mode.
    pub mailbox: &'a str,
    /// `("CHILDINFO" ("SUBSCRIBED"))`, RFC 5258 §3.5.
    pub child_info_subscribed: bool,
    /// `("OLDNAME" (name))`, RFC 9051 §6.3.6.
    pub old_name: Option<&'a str>,
}

/// One `* ESEARCH` line (RFC 4731 §3.1, RFC 7162 `MODSEQ`). `tag` is the command's tag.
#[derive(Clone, Copy, Debug, Default)]
pub struct Esearch<'a> {
    pub tag: Option<&'a str>,
    pub uid: bool,
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub all: Option<&'a SequenceSet>,
    pub count: Option<u32>,
    pub modseq: Option<u64>,
}

/// One node of a `* THREAD` answer (RFC 5256 §4): a message, or a dummy parent (`None`)
/// that holds sub-threads, and its children as indexes in [`Threads::nodes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    pub message: Option<u32>,
    pub children: Vec<u32>,
}

/// The threads of a `* THREAD` answer, as a flat forest: threads can be as deep as a
/// mailbox is large, so nothing recurses over them (not even dropping them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Threads {
    pub nodes: Vec<Thread>,
    /// The top-level threads, in order.
    pub roots: Vec<u32>,
}

impl Threads {
    /// Adds a node; returns its index.
    pub fn push(&mut self, node: Thread) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// One namespace of `* NAMESPACE` (RFC 2342).
#[derive(Clone, Copy, Debug)]
pub struct Namespace<'a> {
    pub prefix: &'a str,
    pub delimiter: Option<char>,
}

/// One resource of `* QUOTA` (RFC 9208 §5.1), e.g. `("STORAGE", 10, 512)` in KiB.
#[derive(Clone, Copy, Debug)]
pub struct QuotaResource<'a> {
    pub name: &'a str,
    pub usage: u64,
    pub limit: u64,
}

/// Writes untagged responses into the session's output. Get one from
/// [`crate::Session::untagged`]; it can be used at any time, while a command runs or
/// while idling.
#[derive(Debug)]
pub struct Responses<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) utf8: bool,
    pub(crate) capabilities: Capabilities,
}

/// Writes one `* n FETCH (...)` line; items are added in order and the line is closed when
/// the writer is dropped (or [`FetchWriter::finish`]ed).
#[derive(Debug)]
pub struct FetchWriter<'a> {
    out: &'a mut Vec<u8>,
    utf8: bool,
    first: bool,
}

/// Writes a parenthesised list (ENVELOPE, BODYSTRUCTURE and their nested lists); closed
/// with `)` when dropped. Items are separated by spaces automatically.
#[derive(Debug)]
pub struct ListWriter<'a> {
    out: &'a mut Vec<u8>,
    utf8: bool,
    first: bool,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        }
    }
}

impl MailboxAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            MailboxAttribute::NoInferiors => "\\Noinferiors",
            MailboxAttribute::NoSelect => "\\Noselect",
            MailboxAttribute::NonExistent => "\\NonExistent",
            MailboxAttribute::Marked => "\\Marked",
            MailboxAttribute::Unmarked => "\\Unmarked",
            MailboxAttribute::Subscribed => "\\Subscribed",
            MailboxAttribute::Remote => "\\Remote",
            MailboxAttribute::HasChildren => "\\HasChildren",
            MailboxAttribute::HasNoChildren => "\\HasNoChildren",
            MailboxAttribute::SpecialUse(special) => special.as_str(),
        }
    }
}

impl Responses<'_> {
    /// `* OK|NO|BAD [code] text`.
    pub fn status(&mut self, status: Status, code: Option<Code<'_>>, text: &str) {
        write_status_line(self.out, "*", status.as_str(), code, text, self.utf8, &self.capabilities);
    }

    /// `* CAPABILITY ...` with the session's current list.
    pub fn capability(&mut self) {
        self.out.extend_from_slice(b"* CAPABILITY ");
        self.capabilities.write(self.out);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn exists(&mut self, count: u32) {
        let _ = write!(self.out, "* {count} EXISTS\r\n");
    }

    /// RFC 3501 only: IMAP4rev2 dropped `RECENT`.
    pub fn recent(&mut self, count: u32) {
        let _ = write!(self.out, "* {count} RECENT\r\n");
    }

    pub fn expunge(&mut self, seq: u32) {
        let _ = write!(self.out, "* {seq} EXPUNGE\r\n");
    }

    /// `* VANISHED [(EARLIER)] uids` (RFC 7162 §3.2.10).
    pub fn vanished(&mut self, earlier: bool, uids: &SequenceSet) {
        let earlier = if earlier { "(EARLIER) " } else { "" };
        let _ = write!(self.out, "* VANISHED {earlier}{uids}\r\n");
    }

    /// `* FLAGS (...)`.
    pub fn flags(&mut self, flags: &[Flag]) {
        self.out.extend_from_slice(b"* FLAGS ");
        write_flags(self.out, flags, false);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn list(&mut self, item: &ListItem<'_>) {
        self.list_line("LIST", item);
    }

    pub fn lsub(&mut self, item: &ListItem<'_>) {
        self.list_line("LSUB", item);
    }

    fn list_line(&mut self, name: &str, item: &ListItem<'_>) {
        let _ = write!(self.out, "* {name} (");
        for (idx, attribute) in item.attributes.iter().enumerate() {
            if idx > 0 {
                self.out.push(b' ');
            }
            self.out.extend_from_slice(attribute.as_str().as_bytes());
        }
        self.out.extend_from_slice(b") ");
        match item.delimiter {
            Some(delimiter) => write_quoted_char(self.out, delimiter),
            None => self.out.extend_from_slice(b"NIL"),
        }
        self.out.push(b' ');
        write_mailbox(self.out, item.mailbox, self.utf8);
        let extended = item.child_info_subscribed || item.old_name.is_some();
        if extended {
            self.out.extend_from_slice(b" (");
            if item.child_info_subscribed {
                self.out.extend_from_slice(b"\"CHILDINFO\" (\"SUBSCRIBED\")");
            }
            if let Some(old_name) = item.old_name {
                if item.child_info_subscribed {
                    self.out.push(b' ');
                }
                self.out.extend_from_slice(b"\"OLDNAME\" (");
                write_mailbox(self.out, old_name, self.utf8);
                self.out.push(b')');
            }
            self.out.push(b')');
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* STATUS mailbox (ITEM n ...)`.
    pub fn mailbox_status(&mut self, mailbox: &str, items: &[(StatusItem, u64)]) {
        self.out.extend_from_slice(b"* STATUS ");
        write_mailbox(self.out, mailbox, self.utf8);
        self.out.extend_from_slice(b" (");
        for (idx, (item, value)) in items.iter().enumerate() {
            if idx > 0 {
                self.out.push(b' ');
            }
            let _ = write!(self.out, "{} {value}", item.as_str());
        }
        self.out.extend_from_slice(b")\r\n");
    }

    /// `* SEARCH n n ... [(MODSEQ m)]`.
    pub fn search(&mut self, numbers: impl IntoIterator<Item = u32>, modseq: Option<u64>) {
        self.number_line("SEARCH", numbers, modseq);
    }

    /// `* SORT n n ... [(MODSEQ m)]`.
    pub fn sort(&mut self, numbers: impl IntoIterator<Item = u32>, modseq: Option<u64>) {
        self.number_line("SORT", numbers, modseq);
    }

    fn number_line(&mut self, name: &str, numbers: impl IntoIterator<Item = u32>, modseq: Option<u64>) {
        let _ = write!(self.out, "* {name}");
        for number in numbers {
            let _ = write!(self.out, " {number}");
        }
        if let Some(modseq) = modseq {
            let _ = write!(self.out, " (MODSEQ {modseq})");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* ESEARCH (TAG "t") [UID] MIN n MAX n ALL set COUNT n MODSEQ n`.
    pub fn esearch(&mut self, result: &Esearch<'_>) {
        self.out.extend_from_slice(b"* ESEARCH");
        if let Some(tag) = result.tag {
            self.out.extend_from_slice(b" (TAG ");
            write_quoted(self.out, tag.as_bytes());
            self.out.push(b')');
        }
        if result.uid {
            self.out.extend_from_slice(b" UID");
        }
        if let Some(min) = result.min {
            let _ = write!(self.out, " MIN {min}");
        }
        if let Some(max) = result.max {
            let _ = write!(self.out, " MAX {max}");
        }
        if let Some(all) = result.all {
            let _ = write!(self.out, " ALL {all}");
        }
        if let Some(count) = result.count {
            let _ = write!(self.out, " COUNT {count}");
        }
        if let Some(modseq) = result.modseq {
            let _ = write!(self.out, " MODSEQ {modseq}");
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* THREAD (...)(...)`.
    pub fn thread(&mut self, threads: &Threads) {
        self.out.extend_from_slice(b"* THREAD");
        if !threads.roots.is_empty() {
            self.out.push(b' ');
        }
        write_threads(self.out, threads);
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* NAMESPACE personal other shared`, each a list or `NIL` when empty.
    pub fn namespace(&mut self, personal: &[Namespace<'_>], other: &[Namespace<'_>], shared: &[Namespace<'_>]) {
        self.out.extend_from_slice(b"* NAMESPACE");
        for group in [personal, other, shared] {
            self.out.push(b' ');
            if group.is_empty() {
                self.out.extend_from_slice(b"NIL");
                continue;
            }
            self.out.push(b'(');
            for namespace in group {
                self.out.push(b'(');
                let mut prefix = Vec::new();
                encode_mailbox(namespace.prefix, self.utf8, &mut prefix);
                write_string(self.out, &prefix, self.utf8);
                self.out.push(b' ');
                match namespace.delimiter {
                    Some(delimiter) => write_quoted_char(self.out, delimiter),
                    None => self.out.extend_from_slice(b"NIL"),
                }
                self.out.push(b')');
            }
            self.out.push(b')');
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* ID (...)` or `* ID NIL` (RFC 2971).
    pub fn id(&mut self, params: Option<&[(&str, Option<&str>)]>) {
        self.out.extend_from_slice(b"* ID ");
        match params {
            None => self.out.extend_from_slice(b"NIL"),
            Some(params) => {
                self.out.push(b'(');
                for (idx, (field, value)) in params.iter().enumerate() {
                    if idx > 0 {
                        self.out.push(b' ');
                    }
                    write_string(self.out, field.as_bytes(), self.utf8);
                    self.out.push(b' ');
                    write_nstring(self.out, value.map(str::as_bytes), self.utf8);
                }
                self.out.push(b')');
            }
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// `* QUOTA root (RESOURCE usage limit ...)`.
    pub fn quota(&mut self, root: &str, resources: &[QuotaResource<'_>]) {
        self.out.extend_from_slice(b"* QUOTA ");
        write_astring(self.out, root.as_bytes(), self.utf8);
        self.out.extend_from_slice(b" (");
        for (idx, resource) in resources.iter().enumerate() {
            if idx > 0 {
                self.out.push(b' ');
            }
            debug_assert!(crate::types::is_atom(resource.name), "quota resource names are atoms");
            let _ = write!(self.out, "{} {} {}", resource.name, resource.usage, resource.limit);
        }
        self.out.extend_from_slice(b")\r\n");
    }

    /// `* QUOTAROOT mailbox root ...`.
    pub fn quota_root(&mut self, mailbox: &str, roots: &[&str]) {
        self.out.extend_from_slice(b"* QUOTAROOT ");
        write_mailbox(self.out, mailbox, self.utf8);
        for root in roots {
            self.out.push(b' ');
            write_astring(self.out, root.as_bytes(), self.utf8);
        }
        self.out.extend_from_slice(b"\r\n");
    }

    /// Starts `* seq FETCH (`; add items on the returned writer.
    pub fn fetch(&mut self, seq: u32) -> FetchWriter<'_> {
        let _ = write!(self.out, "* {seq} FETCH (");
        FetchWriter { out: self.out, utf8: self.utf8, first: true }
    }
}

impl FetchWriter<'_> {
    fn item(&mut self, name: &str) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(name.as_bytes());
    }

    pub fn uid(&mut self, uid: u32) -> &mut Self {
        self.item("UID");
        let _ = write!(self.out, " {uid}");
        self
    }

    /// `FLAGS (...)`; `recent` adds `\Recent` (IMAP4rev1 only).
    pub fn flags(&mut self, flags: &[Flag], recent: bool) -> &mut Self {
        self.item("FLAGS ");
        write_flags(self.out, flags, recent);
        self
    }

    /// `MODSEQ (n)` (RFC 7162 §3.1.4.1).
    pub fn modseq(&mut self, modseq: u64) -> &mut Self {
        self.item("MODSEQ");
        let _ = write!(self.out, " ({modseq})");
        self
    }

    pub fn internal_date(&mut self, date: &crate::types::DateTime) -> &mut Self {
        self.item("INTERNALDATE");
        let _ = write!(self.out, " \"{date}\"");
        self
    }

    pub fn rfc822_size(&mut self, size: u64) -> &mut Self {
        self.item("RFC822.SIZE");
        let _ = write!(self.out, " {size}");
        self
    }

    /// `ENVELOPE (...)`: fill the ten fields of RFC 9051 §7.5.2 on the returned list.
    pub fn envelope(&mut self) -> ListWriter<'_> {
        self.item("ENVELOPE ");
        ListWriter::open(self.out, self.utf8)
    }

    /// `BODYSTRUCTURE (...)`.
    pub fn body_structure(&mut self) -> ListWriter<'_> {
        self.item("BODYSTRUCTURE ");
        ListWriter::open(self.out, self.utf8)
    }

    /// `BODY (...)`: the non-extensible structure.
    pub fn body(&mut self) -> ListWriter<'_> {
        self.item("BODY ");
        ListWriter::open(self.out, self.utf8)
    }

    /// `BODY[section]<origin> data`, the section echoed as requested; `None` is `NIL`.
    /// Data is copied once, into the output. Answer `BODY.PEEK[...]` with this too.
    pub fn body_section(&mut self, section: &Section, origin: Option<u32>, data: Option<&[u8]>) -> &mut Self {
        self.item("BODY[");
        section.write_spec(self.out, self.utf8);
        self.out.push(b']');
        if let Some(origin) = origin {
            let _ = write!(self.out, "<{origin}>");
        }
        self.out.push(b' ');
        match data {
            Some(data) => write_literal(self.out, data, false),
            None => self.out.extend_from_slice(b"NIL"),
        }
        self
    }

    /// `BINARY[part]<origin> data` (RFC 3516 §4.2): `literal8` when the data holds NUL.
    pub fn binary(&mut self, part: &[u32], origin: Option<u32>, data: Option<&[u8]>) -> &mut Self {
        self.item("BINARY[");
        write_part(self.out, part);
        self.out.push(b']');
        if let Some(origin) = origin {
            let _ = write!(self.out, "<{origin}>");
        }
        self.out.push(b' ');
        match data {
            Some(data) => write_literal(self.out, data, data.contains(&0)),
            None => self.out.extend_from_slice(b"NIL"),
        }
        self
    }

    /// `BINARY.SIZE[part] n`.
    pub fn binary_size(&mut self, part: &[u32], size: u64) -> &mut Self {
        self.item("BINARY.SIZE[");
        write_part(self.out, part);
        let _ = write!(self.out, "] {size}");
        self
    }

    pub fn rfc822(&mut self, data: Option<&[u8]>) -> &mut Self {
        self.data_item("RFC822", data)
    }

    pub fn rfc822_header(&mut self, data: Option<&[u8]>) -> &mut Self {
        self.data_item("RFC822.HEADER", data)
    }

    pub fn rfc822_text(&mut self, data: Option<&[u8]>) -> &mut Self {
        self.data_item("RFC822.TEXT", data)
    }

    fn data_item(&mut self, name: &str, data: Option<&[u8]>) -> &mut Self {
        self.item(name);
        self.out.push(b' ');
        match data {
            Some(data) => write_literal(self.out, data, false),
            None => self.out.extend_from_slice(b"NIL"),
        }
        self
    }

    /// Bytes of output waiting to be written, this line's so far included.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Takes the output written so far (the start of this line included) so that the
    /// driver can write it before the line is complete: a FETCH of large items is streamed
    /// item by item, not held whole. The line goes on where it was.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(self.out)
    }

    /// Ends the line (dropping the writer does the same).
    pub fn finish(self) {}
}

impl Drop for FetchWriter<'_> {
    fn drop(&mut self) {
        self.out.extend_from_slice(b")\r\n");
    }
}

impl<'a> ListWriter<'a> {
    fn open(out: &'a mut Vec<u8>, utf8: bool) -> ListWriter<'a> {
        out.push(b'(');
        ListWriter { out, utf8, first: true }
    }

    fn separate(&mut self) {
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
    }

    pub fn nil(&mut self) -> &mut Self {
        self.separate();
        self.out.extend_from_slice(b"NIL");
        self
    }

    /// A string, quoted or literal as fits.
    pub fn string(&mut self, bytes: &[u8]) -> &mut Self {
        self.separate();
        write_string(self.out, bytes, self.utf8);
        self
    }

    pub fn nstring(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        self.separate();
        write_nstring(self.out, bytes, self.utf8);
        self
    }

    pub fn number(&mut self, number: u64) -> &mut Self {
        self.separate();
        let _ = write!(self.out, "{number}");
        self
    }

    /// A nested list.
    pub fn list(&mut self) -> ListWriter<'_> {
        self.separate();
        ListWriter::open(self.out, self.utf8)
    }

    /// Ends the list (dropping the writer does the same).
    pub fn finish(self) {}
}

impl Drop for ListWriter<'_> {
    fn drop(&mut self) {
        self.out.push(b')');
    }
}

/// A tagged or untagged status line: `prefix STATUS [code] text`.
pub(crate) fn write_status_line(
    out: &mut Vec<u8>,
    prefix: &str,
    status: &str,
    code: Option<Code<'_>>,
    text: &str,
    utf8: bool,
    capabilities: &Capabilities,
) {
    out.extend_from_slice(prefix.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.as_bytes());
    out.push(b' ');
    if let Some(code) = code {
        write_code(out, code, capabilities);
        out.push(b' ');
    }
    write_text(out, text, utf8);
    out.extend_from_slice(b"\r\n");
}

fn write_code(out: &mut Vec<u8>, code: Code<'_>, capabilities: &Capabilities) {
    out.push(b'[');
    let simple = match code {
        Code::Alert => "ALERT",
        Code::AlreadyExists => "ALREADYEXISTS",
        Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
        Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
        Code::Cannot => "CANNOT",
        Code::ClientBug => "CLIENTBUG",
        Code::Closed => "CLOSED",
        Code::CompressionActive => "COMPRESSIONACTIVE",
        Code::ContactAdmin => "CONTACTADMIN",
        Code::Corruption => "CORRUPTION",
        Code::Expired => "EXPIRED",
        Code::ExpungeIssued => "EXPUNGEISSUED",
        Code::HasChildren => "HASCHILDREN",
        Code::InUse => "INUSE",
        Code::Limit => "LIMIT",
        Code::NoModSeq => "NOMODSEQ",
        Code::NonExistent => "NONEXISTENT",
        Code::NoPerm => "NOPERM",
        Code::OverQuota => "OVERQUOTA",
        Code::Parse => "PARSE",
        Code::PrivacyRequired => "PRIVACYREQUIRED",
        Code::ReadOnly => "READ-ONLY",
        Code::ReadWrite => "READ-WRITE",
        Code::ServerBug => "SERVERBUG",
        Code::TooBig => "TOOBIG",
        Code::TryCreate => "TRYCREATE",
        Code::Unavailable => "UNAVAILABLE",
        Code::UnknownCte => "UNKNOWN-CTE",
        Code::UseAttr => "USEATTR",
        Code::Capability => {
            out.extend_from_slice(b"CAPABILITY ");
            capabilities.write(out);
            ""
        }
        Code::PermanentFlags { flags, keywords_allowed } => {
            out.extend_from_slice(b"PERMANENTFLAGS (");
            for (idx, flag) in flags.iter().enumerate() {
                if idx > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(flag.as_str().as_bytes());
            }
            if keywords_allowed {
                out.extend_from_slice(if flags.is_empty() { b"\\*" } else { b" \\*" });
            }
            out.push(b')');
            ""
        }
        Code::UidValidity(value) => {
            let _ = write!(out, "UIDVALIDITY {value}");
            ""
        }
        Code::UidNext(value) => {
            let _ = write!(out, "UIDNEXT {value}");
            ""
        }
        Code::Unseen(value) => {
            let _ = write!(out, "UNSEEN {value}");
            ""
        }
        Code::HighestModSeq(value) => {
            let _ = write!(out, "HIGHESTMODSEQ {value}");
            ""
        }
        Code::AppendUid { uid_validity, uids } => {
            let _ = write!(out, "APPENDUID {uid_validity} {uids}");
            ""
        }
        Code::CopyUid { uid_validity, source, destination } => {
            let _ = write!(out, "COPYUID {uid_validity} {source} {destination}");
            ""
        }
        Code::Modified(set) => {
            let _ = write!(out, "MODIFIED {set}");
            ""
        }
        Code::BadCharset(charsets) => {
            out.extend_from_slice(b"BADCHARSET (");
            for (idx, charset) in charsets.iter().enumerate() {
                if idx > 0 {
                    out.push(b' ');
                }
                write_astring(out, charset.as_bytes(), false);
            }
            out.push(b')');
            ""
        }
    };
    out.extend_from_slice(simple.as_bytes());
    out.push(b']');
}

/// Human-readable text: controls become spaces, 8-bit becomes `?` unless UTF-8 is on,
/// and empty text becomes `Done` (RFC 9051 `text` is not empty).
fn write_text(out: &mut Vec<u8>, text: &str, utf8: bool) {
    if text.is_empty() {
        out.extend_from_slice(b"Done");
        return;
    }
    for ch in text.chars() {
        if ch.is_control() {
            out.push(b' ');
        } else if ch.is_ascii() || utf8 {
            let mut buf = [0u8; 4];
            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
        } else {
            out.push(b'?');
        }
    }
}

fn write_flags(out: &mut Vec<u8>, flags: &[Flag], recent: bool) {
    out.push(b'(');
    for (idx, flag) in flags.iter().enumerate() {
        if idx > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(flag.as_str().as_bytes());
    }
    if recent {
        out.extend_from_slice(if flags.is_empty() { b"\\Recent" } else { b" \\Recent" });
    }
    out.push(b')');
}

fn write_part(out: &mut Vec<u8>, part: &[u32]) {
    for (idx, number) in part.iter().enumerate() {
        if idx > 0 {
            out.push(b'.');
        }
        let _ = write!(out, "{number}");
    }
}

/// RFC 5256 §4: `(` a chain of messages, each the only child of the one before, then the
/// sub-threads of the last one, each in parentheses `)`. Written with an explicit stack
/// of the sub-thread lists being written: no recursion, however deep the threads.
pub(crate) fn write_threads(out: &mut Vec<u8>, threads: &Threads) {
    let mut stack: Vec<(&[u32], usize)> = vec![(&threads.roots, 0)];
    while let Some(top) = stack.last_mut() {
        let (children, next) = *top;
        let Some(&child) = children.get(next) else {
            stack.pop();
            if !stack.is_empty() {
                out.push(b')');
            }
            continue;
        };
        top.1 += 1;
        if let Some(grandchildren) = open_thread(out, threads, child) {
            stack.push((grandchildren, 0));
        }
    }
}

/// Opens the thread at `node` and writes its chain; returns the children still to write
/// (a branch), or `None` once the thread is closed.
fn open_thread<'t>(out: &mut Vec<u8>, threads: &'t Threads, node: u32) -> Option<&'t [u32]> {
    out.push(b'(');
    let mut current = &threads.nodes[node as usize];
    let mut first = true;
    loop {
        if let Some(message) = current.message {
            if !first {
                out.push(b' ');
            }
            first = false;
            let _ = write!(out, "{message}");
        }
        match current.children.as_slice() {
            [] => {
                out.push(b')');
                return None;
            }
            [only] if current.message.is_some() => current = &threads.nodes[*only as usize],
            children => {
                if !first {
                    out.push(b' ');
                }
                return Some(children);
            }
        }
    }
}

fn write_quoted_char(out: &mut Vec<u8>, ch: char) {
    let mut buf = [0u8; 4];
    write_quoted(out, ch.encode_utf8(&mut buf).as_bytes());
}

/// Encodes a mailbox name for the mode: modified UTF-7 unless `utf8`.
pub(crate) fn encode_mailbox(name: &str, utf8: bool, out: &mut Vec<u8>) {
    if utf8 {
        out.extend_from_slice(name.as_bytes());
    } else {
        mutf7::encode(name, out);
    }
}

pub(crate) fn write_mailbox(out: &mut Vec<u8>, name: &str, utf8: bool) {
    if utf8 || name.bytes().all(|byte| (0x20..0x7F).contains(&byte) && byte != b'&') {
        write_astring(out, name.as_bytes(), utf8);
    } else {
        let mut encoded = Vec::with_capacity(name.len() * 2);
        mutf7::encode(name, &mut encoded);
        write_astring(out, &encoded, utf8);
    }
}

/// An atom when it can be one (and is not `NIL`), else a string.
pub(crate) fn write_astring(out: &mut Vec<u8>, bytes: &[u8], utf8: bool) {
    let atom = !bytes.is_empty()
        && bytes.iter().all(|&byte| crate::types::is_atom_char(byte) || byte == b']')
        && !bytes.eq_ignore_ascii_case(b"NIL");
    if atom {
        out.extend_from_slice(bytes);
    } else {
        write_string(out, bytes, utf8);
    }
}

pub(crate) fn write_nstring(out: &mut Vec<u8>, bytes: Option<&[u8]>, utf8: bool) {
    match bytes {
        Some(bytes) => write_string(out, bytes, utf8),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Quoted when short and clean, else a literal.
pub(crate) fn write_string(out: &mut Vec<u8>, bytes: &[u8], utf8: bool) {
    if is_quotable(bytes, utf8) {
        write_quoted(out, bytes);
    } else {
        write_literal(out, bytes, false);
    }
}

fn is_quotable(bytes: &[u8], utf8: bool) -> bool {
    const QUOTED_BYTES_MAX: usize = 1024;
    if bytes.len() > QUOTED_BYTES_MAX || bytes.iter().any(|&byte| matches!(byte, 0 | b'\r' | b'\n')) {
        return false;
    }
    bytes.is_ascii() || (utf8 && std::str::from_utf8(bytes).is_ok())
}

fn write_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &byte in bytes {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

fn write_literal(out: &mut Vec<u8>, bytes: &[u8], binary: bool) {
    let prefix = if binary { "~" } else { "" };
    let _ = write!(out, "{prefix}{{{}}}\r\n", bytes.len());
    out.extend_from_slice(bytes);
}

//! The parsed form of client commands: RFC 9051 §6 and RFC 3501 §6, with the extensions
//! the crate documentation lists. Every string is already decoded: quoted strings are
//! unescaped, literals are taken out of the stream, mailbox names are UTF-8.

use std::fmt;
use std::num::NonZeroU32;

/// One client command: its tag and what it asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub tag: String,
    pub body: CommandBody,
}

/// What a command asks. The session answers `CAPABILITY`, `LOGOUT`, `STARTTLS`,
/// `AUTHENTICATE`, `LOGIN`, `ENABLE`, `IDLE`, `COMPRESS` and (before login) `NOOP` itself;
/// every other variant reaches the driver as [`crate::Event::Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandBody {
    Capability,
    Noop,
    Logout,
    StartTls,
    /// RFC 9051 §6.2.2; `initial_response` is the decoded SASL-IR (RFC 4959) argument,
    /// empty for `=`.
    Authenticate {
        mechanism: String,
        initial_response: Option<Vec<u8>>,
    },
    Login {
        username: String,
        password: String,
    },
    /// RFC 5161; the names as sent, upper-cased.
    Enable {
        capabilities: Vec<String>,
    },
    /// `SELECT` (`read_only: false`) or `EXAMINE` (`read_only: true`), RFC 9051 §6.3.2–3.
    Select {
        mailbox: MailboxName,
        read_only: bool,
        params: SelectParams,
    },
    /// RFC 9051 §6.3.4, with `USE (...)` of RFC 6154 §3.
    Create {
        mailbox: MailboxName,
        special_use: Vec<SpecialUse>,
    },
    Delete {
        mailbox: MailboxName,
    },
    Rename {
        from: MailboxName,
        to: MailboxName,
    },
    Subscribe {
        mailbox: MailboxName,
    },
    Unsubscribe {
        mailbox: MailboxName,
    },
    /// RFC 9051 §6.3.9 and LIST-EXTENDED (RFC 5258).
    List(ListCommand),
    /// RFC 3501 §6.3.9; `reference` and `pattern` are decoded like mailbox names.
    Lsub {
        reference: String,
        pattern: String,
    },
    Namespace,
    /// RFC 9051 §6.3.11.
    Status {
        mailbox: MailboxName,
        items: Vec<StatusItem>,
    },
    /// RFC 9051 §6.3.12, with MULTIAPPEND (RFC 3502): one or more messages.
    Append {
        mailbox: MailboxName,
        messages: Vec<AppendMessage>,
    },
    Idle,
    /// RFC 2971: `None` for `ID NIL`.
    Id {
        params: Option<Vec<(String, Option<String>)>>,
    },
    Check,
    Close,
    Unselect,
    /// `EXPUNGE`, or `UID EXPUNGE set` (RFC 4315 §2.1) with `uids`.
    Expunge {
        uids: Option<SequenceSet>,
    },
    /// RFC 9051 §6.4.4, ESEARCH (RFC 4731) and SEARCHRES (RFC 5182). `returns` is `None`
    /// for a plain `SEARCH` (answered by `* SEARCH`), `Some` when `RETURN (...)` was given.
    Search {
        uid: bool,
        charset: Option<String>,
        returns: Option<SearchReturn>,
        criteria: SearchKey,
    },
    /// RFC 5256 §3.
    Sort {
        uid: bool,
        criteria: Vec<SortCriterion>,
        charset: String,
        search: SearchKey,
    },
    /// RFC 5256 §3.
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        search: SearchKey,
    },
    /// RFC 9051 §6.4.5, with `CHANGEDSINCE` and `VANISHED` (RFC 7162 §3.1.4, §3.2.6).
    /// The macros `ALL`, `FAST` and `FULL` are expanded.
    Fetch {
        uid: bool,
        set: SequenceSet,
        attributes: Vec<FetchAttribute>,
        changed_since: Option<u64>,
        vanished: bool,
    },
    /// RFC 9051 §6.4.6 with `UNCHANGEDSINCE` (RFC 7162 §3.1.3).
    Store {
        uid: bool,
        set: SequenceSet,
        action: StoreAction,
        silent: bool,
        flags: Vec<Flag>,
        unchanged_since: Option<u64>,
    },
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: MailboxName,
    },
    /// RFC 6851.
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: MailboxName,
    },
    /// RFC 9208 §4.
    GetQuota {
        root: String,
    },
    GetQuotaRoot {
        mailbox: MailboxName,
    },
    /// RFC 9208 §4.3: resource names upper-cased, with their limits.
    SetQuota {
        root: String,
        limits: Vec<(String, u64)>,
    },
    /// RFC 4978; only `DEFLATE` parses.
    Compress,
}

/// A mailbox name, decoded to UTF-8. `INBOX` in any case is stored as `INBOX`
/// (RFC 9051 §5.1); other names keep their case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxName(String);

/// `SELECT`/`EXAMINE` parameters (RFC 7162 §3.1.8, §3.2.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectParams {
    pub condstore: bool,
    pub qresync: Option<QresyncParams>,
}

/// `QRESYNC (uidvalidity modseq [known-uids [(seq-match-data)]])`, RFC 7162 §3.2.5.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QresyncParams {
    pub uid_validity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
    /// `(known-sequence-set known-uid-set)`.
    pub seq_match: Option<(SequenceSet, SequenceSet)>,
}

/// Special-use attributes (RFC 6154 §2, RFC 8457 `\Important`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
    Important,
}

/// `LIST`, extended (RFC 5258) or not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListCommand {
    pub selection: ListSelection,
    /// The reference name, decoded like a mailbox name (may be empty).
    pub reference: String,
    /// One pattern, or several with `("a" "b")` (RFC 5258 §3); `%` and `*` are wildcards.
    pub patterns: Vec<String>,
    pub returns: ListReturn,
    /// Whether selection options, several patterns or `RETURN` were used: the answer is
    /// then an extended one (RFC 5258 §3.4: `CHILDINFO`, `\NonExistent`).
    pub extended: bool,
}

/// LIST selection options (RFC 5258 §3.1, RFC 6154 §5.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListSelection {
    pub subscribed: bool,
    pub remote: bool,
    pub recursive_match: bool,
    pub special_use: bool,
}

/// LIST return options (RFC 5258 §3.2, RFC 6154 §5.2, RFC 5819).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListReturn {
    pub subscribed: bool,
    pub children: bool,
    pub special_use: bool,
    /// `STATUS (...)`: a `* STATUS` line follows each selectable mailbox (RFC 5819).
    pub status: Option<Vec<StatusItem>>,
}

/// Items of `STATUS` (RFC 9051 §6.3.11, RFC 8438 `SIZE`, RFC 7162 `HIGHESTMODSEQ`,
/// RFC 3501 `RECENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
}

/// One message of `APPEND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<Flag>,
    pub date: Option<DateTime>,
    pub data: Vec<u8>,
    /// Sent as `literal8` (`~{n}`, RFC 3516 §4.4): the data may hold NULs and binary parts.
    pub binary: bool,
}

/// A message flag. `\Recent` is not one: the client cannot set it (RFC 3501 §2.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Flag {
    Answered,
    Flagged,
    Deleted,
    Seen,
    Draft,
    /// A keyword (`$Forwarded`, `NonJunk`), case kept; compare case-insensitively.
    Keyword(String),
    /// Another `\Name` flag, without its backslash.
    Extension(String),
}

/// `SEARCH ... RETURN (...)` options (RFC 4731 §3.1, RFC 5182 `SAVE`). `RETURN ()`
/// means `ALL` and is stored so.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

/// A search key (RFC 9051 §6.4.4, RFC 3501 §6.4.4, RFC 7162 §3.1.5, RFC 5182).
/// Strings are UTF-8 (the charset was `US-ASCII` or `UTF-8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchKey {
    /// A parenthesised list, or the top-level list of keys: all must match.
    And(Vec<SearchKey>),
    All,
    Answered,
    Bcc(String),
    Before(Date),
    Body(String),
    Cc(String),
    Deleted,
    Draft,
    Flagged,
    From(String),
    Header(String, String),
    Keyword(String),
    Larger(u64),
    New,
    Not(Box<SearchKey>),
    Old,
    On(Date),
    Or(Box<SearchKey>, Box<SearchKey>),
    Recent,
    Seen,
    SentBefore(Date),
    SentOn(Date),
    SentSince(Date),
    Since(Date),
    Smaller(u64),
    Subject(String),
    Text(String),
    To(String),
    Uid(SequenceSet),
    Unanswered,
    Undeleted,
    Undraft,
    Unflagged,
    Unkeyword(String),
    Unseen,
    /// Message sequence numbers (or `$`).
    SequenceSet(SequenceSet),
    /// `MODSEQ [entry-name entry-type] modseq` (RFC 7162 §3.1.5); the entry is kept as sent.
    ModSeq {
        entry: Option<(String, String)>,
        modseq: u64,
    },
}

/// Sort criteria (RFC 5256 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortCriterion {
    pub reverse: bool,
    pub key: SortKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

/// One item of `FETCH` (RFC 9051 §6.4.5, RFC 3516, RFC 7162).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchAttribute {
    Flags,
    Envelope,
    BodyStructure,
    /// `BODY` without a section: the non-extensible body structure.
    Body,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Text,
    Rfc822Size,
    Uid,
    ModSeq,
    /// `BODY[section]<partial>` or `BODY.PEEK[...]`. Without `peek` the driver sets `\Seen`.
    BodySection {
        peek: bool,
        section: Section,
        partial: Option<Partial>,
    },
    /// `BINARY[part]<partial>` or `BINARY.PEEK[...]` (RFC 3516 §4.2).
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<Partial>,
    },
    /// `BINARY.SIZE[part]`.
    BinarySize {
        part: Vec<u32>,
    },
}

/// `<origin.length>`: the answer echoes only `<origin>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partial {
    pub origin: u32,
    pub length: u32,
}

/// A body section (RFC 9051 §6.4.5): part numbers (empty for the whole message) and what
/// of that part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names as sent (compare case-insensitively); the answer echoes them.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    /// Only after a part number.
    Mime,
}

/// `+FLAGS`, `-FLAGS` or `FLAGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreAction {
    Add,
    Remove,
    Replace,
}

/// A date of `SEARCH` (RFC 9051 `date`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    /// 1–12.
    pub month: u8,
    /// 1–31, valid for the month.
    pub day: u8,
}

/// A date and time with its zone (RFC 9051 `date-time`), as in `APPEND` and `INTERNALDATE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    pub date: Date,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// Offset from UTC in minutes, -1439..=1439.
    pub offset_minutes: i16,
}

/// A sequence set (RFC 9051 `sequence-set`): message numbers or UIDs, with `*` for the
/// largest one in use, or `$` for the saved search result (RFC 5182).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceSet(SetRepr);

#[derive(Clone, Debug, PartialEq, Eq)]
enum SetRepr {
    Saved,
    Ranges(Vec<SeqRange>),
}

/// `a`, `a:b` or with `*`; `start` may be larger than `end` (RFC 9051 §9: `4:2` is `2:4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqNumber,
    pub end: SeqNumber,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqNumber {
    Value(NonZeroU32),
    /// `*`: the largest number in use.
    Largest,
}

const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

impl MailboxName {
    /// Builds a name, mapping `INBOX` in any case to `INBOX`.
    pub fn new(name: impl Into<String>) -> MailboxName {
        let name = name.into();
        if name.eq_ignore_ascii_case("INBOX") { MailboxName("INBOX".to_owned()) } else { MailboxName(name) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == "INBOX"
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl SpecialUse {
    pub fn as_str(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
            SpecialUse::Important => "\\Important",
        }
    }

    /// Parses `\Drafts` and the others, case-insensitively.
    pub fn parse(name: &str) -> Option<SpecialUse> {
        const ALL: [SpecialUse; 8] = [
            SpecialUse::All,
            SpecialUse::Archive,
            SpecialUse::Drafts,
            SpecialUse::Flagged,
            SpecialUse::Junk,
            SpecialUse::Sent,
            SpecialUse::Trash,
            SpecialUse::Important,
        ];
        ALL.into_iter().find(|special| special.as_str().eq_ignore_ascii_case(name))
    }
}

impl StatusItem {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        }
    }
}

impl Flag {
    /// Parses a flag as sent in `STORE`, `APPEND` or a search keyword position:
    /// `\Seen` (any case) or a keyword atom. `\Recent` and `\*` are not flags a client sets.
    pub fn parse(text: &str) -> Option<Flag> {
        if let Some(name) = text.strip_prefix('\\') {
            let system = [
                ("Answered", Flag::Answered),
                ("Flagged", Flag::Flagged),
                ("Deleted", Flag::Deleted),
                ("Seen", Flag::Seen),
                ("Draft", Flag::Draft),
            ];
            if let Some((_, flag)) = system.into_iter().find(|(known, _)| known.eq_ignore_ascii_case(name)) {
                return Some(flag);
            }
            if name.eq_ignore_ascii_case("Recent") || !is_atom(name) {
                return None;
            }
            return Some(Flag::Extension(name.to_owned()));
        }
        is_atom(text).then(|| Flag::Keyword(text.to_owned()))
    }

    /// The wire form: `\Seen`, `$Forwarded`.
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Flag::Answered => Cow::Borrowed("\\Answered"),
            Flag::Flagged => Cow::Borrowed("\\Flagged"),
            Flag::Deleted => Cow::Borrowed("\\Deleted"),
            Flag::Seen => Cow::Borrowed("\\Seen"),
            Flag::Draft => Cow::Borrowed("\\Draft"),
            Flag::Keyword(name) => Cow::Borrowed(name),
            Flag::Extension(name) => Cow::Owned(format!("\\{name}")),
        }
    }
}

/// Whether `text` is a non-empty IMAP atom (RFC 9051 `atom`).
pub(crate) fn is_atom(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_atom_char)
}

/// RFC 9051 `ATOM-CHAR`: any CHAR except atom-specials `(){ SP CTL % * " \ ]`.
pub(crate) fn is_atom_char(byte: u8) -> bool {
    matches!(byte, 0x21..=0x7E) && !matches!(byte, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

impl SearchReturn {
    /// Whether no option is set (then `ALL` is meant).
    pub fn is_empty(&self) -> bool {
        !(self.min || self.max || self.all || self.count || self.save)
    }
}

impl Section {
    /// Writes the section spec between the brackets, e.g. `1.2.HEADER.FIELDS (From To)`.
    pub(crate) fn write_spec(&self, out: &mut Vec<u8>, utf8: bool) {
        for (idx, part) in self.part.iter().enumerate() {
            if idx > 0 {
                out.push(b'.');
            }
            out.extend_from_slice(part.to_string().as_bytes());
        }
        let Some(text) = &self.text else { return };
        if !self.part.is_empty() {
            out.push(b'.');
        }
        let (name, fields) = match text {
            SectionText::Header => ("HEADER", None),
            SectionText::HeaderFields(fields) => ("HEADER.FIELDS", Some(fields)),
            SectionText::HeaderFieldsNot(fields) => ("HEADER.FIELDS.NOT", Some(fields)),
            SectionText::Text => ("TEXT", None),
            SectionText::Mime => ("MIME", None),
        };
        out.extend_from_slice(name.as_bytes());
        if let Some(fields) = fields {
            out.extend_from_slice(b" (");
            for (idx, field) in fields.iter().enumerate() {
                if idx > 0 {
                    out.push(b' ');
                }
                crate::write::write_astring(out, field.as_bytes(), utf8);
            }
            out.push(b')');
        }
    }
}

impl Date {
    /// A valid calendar date (years 1–9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let valid =
            (1..=9999).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
        valid.then_some(Date { year, month, day })
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_epoch(&self) -> i64 {
        hameau_calendar::days_from_civil(i64::from(self.year), u32::from(self.month), u32::from(self.day))
    }

    /// The date `days` after 1970-01-01; `None` outside years 1–9999.
    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        let (year, month, day) = hameau_calendar::civil_from_days(days);
        Date::new(u16::try_from(year).ok()?, u8::try_from(month).ok()?, u8::try_from(day).ok()?)
    }
}

impl fmt::Display for Date {
    /// `1-Feb-1994`, the form of `SEARCH` dates.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:04}", self.day, MONTHS[usize::from(self.month - 1)], self.year)
    }
}

pub(crate) fn month_from_name(name: &[u8]) -> Option<u8> {
    let idx = MONTHS.iter().position(|month| month.as_bytes().eq_ignore_ascii_case(name))?;
    u8::try_from(idx + 1).ok()
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 31,
    }
}

impl DateTime {
    /// The instant `unix_seconds` shown in the zone `offset_minutes` east of UTC.
    pub fn from_unix(unix_seconds: i64, offset_minutes: i16) -> Option<DateTime> {
        if offset_minutes.unsigned_abs() >= 24 * 60 {
            return None;
        }
        let local = unix_seconds.checked_add(i64::from(offset_minutes) * 60)?;
        let date = Date::from_days_since_epoch(local.div_euclid(86_400))?;
        let seconds = local.rem_euclid(86_400);
        Some(DateTime {
            date,
            hour: (seconds / 3600) as u8,
            minute: (seconds / 60 % 60) as u8,
            second: (seconds % 60) as u8,
            offset_minutes,
        })
    }

    /// Seconds since the Unix epoch.
    pub fn to_unix(&self) -> i64 {
        let local = self.date.days_since_epoch() * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        local - i64::from(self.offset_minutes) * 60
    }
}

impl fmt::Display for DateTime {
    /// `17-Jul-1996 02:44:25 -0700`, the form of `INTERNALDATE` (without the quotes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let offset = self.offset_minutes.unsigned_abs();
        write!(
            f,
            "{:02}-{}-{:04} {:02}:{:02}:{:02} {sign}{:02}{:02}",
            self.date.day,
            MONTHS[usize::from(self.date.month - 1)],
            self.date.year,
            self.hour,
            self.minute,
            self.second,
            offset / 60,
            offset % 60
        )
    }
}

impl SequenceSet {
    /// `$`: the saved search result (RFC 5182).
    pub fn saved() -> SequenceSet {
        SequenceSet(SetRepr::Saved)
    }

    /// A set of ranges; `None` if `ranges` is empty.
    pub fn from_ranges(ranges: Vec<SeqRange>) -> Option<SequenceSet> {
        (!ranges.is_empty()).then_some(SequenceSet(SetRepr::Ranges(ranges)))
    }

    /// One number; `None` for 0.
    pub fn single(number: u32) -> Option<SequenceSet> {
        let number = SeqNumber::Value(NonZeroU32::new(number)?);
        SequenceSet::from_ranges(vec![SeqRange { start: number, end: number }])
    }

    /// The compact set of numbers given in ascending order (duplicates allowed), e.g.
    /// `1,2,3,7` gives `1:3,7`. `None` if there is none or one is 0. Useful for
    /// `COPYUID`, `APPENDUID`, `VANISHED`, `MODIFIED` and `ESEARCH ALL`.
    pub fn from_sorted(numbers: impl IntoIterator<Item = u32>) -> Option<SequenceSet> {
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        for number in numbers {
            if number == 0 {
                return None;
            }
            match ranges.last_mut() {
                Some((_, end)) if number <= end.saturating_add(1) => *end = (*end).max(number),
                _ => ranges.push((number, number)),
            }
        }
        let ranges = ranges
            .into_iter()
            .map(|(start, end)| SeqRange {
                start: SeqNumber::Value(NonZeroU32::new(start).expect("checked above")),
                end: SeqNumber::Value(NonZeroU32::new(end).expect("checked above")),
            })
            .collect();
        SequenceSet::from_ranges(ranges)
    }

    pub fn is_saved(&self) -> bool {
        matches!(self.0, SetRepr::Saved)
    }

    /// The ranges as sent; empty for `$`.
    pub fn ranges(&self) -> &[SeqRange] {
        match &self.0 {
            SetRepr::Saved => &[],
            SetRepr::Ranges(ranges) => ranges,
        }
    }

    /// The ranges with `*` read as `largest`, each as `(low, high)` with `low <= high`,
    /// clipped to `1..=largest`; ranges wholly above `largest` are left out, except that a
    /// range reaching `*` always holds `largest` (RFC 9051 §6.4.8: `UID 559:*` names the
    /// last message even when its UID is below 559). Nothing for `$` or when `largest`
    /// is 0. Ranges come in the order sent and may overlap; see [`SequenceSet::normalized`].
    pub fn iter_ranges(&self, largest: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ranges().iter().filter_map(move |range| {
            let start = range.start.resolve(largest);
            let end = range.end.resolve(largest);
            let (low, high) = if start <= end { (start, end) } else { (end, start) };
            let high = high.min(largest);
            (largest > 0 && low <= high).then_some((low.max(1), high))
        })
    }

    /// Every number of [`SequenceSet::iter_ranges`], one by one, without allocating.
    pub fn iter(&self, largest: u32) -> impl Iterator<Item = u32> + '_ {
        self.iter_ranges(largest).flat_map(|(low, high)| low..=high)
    }

    /// The ranges sorted and merged (one allocation).
    pub fn normalized(&self, largest: u32) -> Vec<(u32, u32)> {
        let mut ranges: Vec<(u32, u32)> = self.iter_ranges(largest).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (low, high) in ranges {
            match merged.last_mut() {
                Some((_, end)) if low <= end.saturating_add(1) => *end = (*end).max(high),
                _ => merged.push((low, high)),
            }
        }
        merged
    }

    /// Whether `number` is in the set when `*` is `largest`.
    pub fn contains(&self, number: u32, largest: u32) -> bool {
        self.iter_ranges(largest).any(|(low, high)| (low..=high).contains(&number))
    }

    /// Whether every explicit number is at most `largest`: message sequence numbers above
    /// the message count are invalid (RFC 9051 §6.4.5), UIDs above it merely match nothing.
    pub fn fits(&self, largest: u32) -> bool {
        self.ranges().iter().all(|range| {
            [range.start, range.end].iter().all(|bound| match bound {
                SeqNumber::Value(value) => value.get() <= largest,
                SeqNumber::Largest => true,
            })
        })
    }
}

impl SeqNumber {
    fn resolve(self, largest: u32) -> u32 {
        match self {
            SeqNumber::Value(value) => value.get(),
            SeqNumber::Largest => largest,
        }
    }
}

impl fmt::Display for SequenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SetRepr::Saved => f.write_str("$"),
            SetRepr::Ranges(ranges) => {
                for (idx, range) in ranges.iter().enumerate() {
                    if idx > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}", range.start)?;
                    if range.start != range.end {
                        write!(f, ":{}", range.end)?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeqNumber::Value(value) => write!(f, "{value}"),
            SeqNumber::Largest => f.write_str("*"),
        }
    }
}

impl Command {
    /// Whether the command is a "CONDSTORE enabling command" (RFC 7162 §3.1): the session
    /// marks CONDSTORE enabled when it sees one, and the driver then sends `HIGHESTMODSEQ`
    /// and `MODSEQ` data for the rest of the session.
    pub fn enables_condstore(&self) -> bool {
        fn search_has_modseq(key: &SearchKey) -> bool {
            match key {
                SearchKey::ModSeq { .. } => true,
                SearchKey::And(keys) => keys.iter().any(search_has_modseq),
                SearchKey::Not(key) => search_has_modseq(key),
                SearchKey::Or(left, right) => search_has_modseq(left) || search_has_modseq(right),
                _ => false,
            }
        }
        match &self.body {
            CommandBody::Select { params, .. } => params.condstore,
            CommandBody::Status { items, .. } => items.contains(&StatusItem::HighestModSeq),
            CommandBody::Fetch { attributes, changed_since, .. } => {
                changed_since.is_some() || attributes.contains(&FetchAttribute::ModSeq)
            }
            CommandBody::Store { unchanged_since, .. } => unchanged_since.is_some(),
            CommandBody::Search { criteria, .. } => search_has_modseq(criteria),
            CommandBody::Sort { search, .. } => search_has_modseq(search),
            CommandBody::Thread { search, .. } => search_has_modseq(search),
            _ => false,
        }
    }
}

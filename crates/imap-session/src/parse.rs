//! The command parser (RFC 9051 §9 grammar, with the extensions' rules).
//!
//! It runs on one whole command, once the framer in `session` has read it: the command
//! text (lines joined, each literal announcement `{n}` kept with its CRLF) and, aside, the
//! literals' bytes in order. It never needs more input, never panics, recurses at most
//! `depth_max` levels, and answers every fault with a [`ParseError`] whose text the session
//! sends in a tagged `BAD` (or `NO` where the RFC says so).

use std::borrow::Cow;
use std::num::NonZeroU32;

use crate::mutf7;
use crate::types::*;
use crate::write::Code;

/// Why a command could not be parsed: the status and text the session answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// `NO` rather than `BAD` (e.g. an unknown charset, RFC 9051 §6.4.4).
    pub no: bool,
    pub code: Option<Code<'static>>,
    pub message: &'static str,
}

/// A command that did not parse, with its tag when one could be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub tag: Option<String>,
    pub error: ParseError,
}

/// How the session's state changes the grammar.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParseOptions {
    /// Mailbox names are UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled), not modified UTF-7.
    pub utf8: bool,
    pub depth_max: usize,
}

type PResult<T> = Result<T, ParseError>;

const CHARSETS: &[&str] = &["UTF-8", "US-ASCII"];

fn bad(message: &'static str) -> ParseError {
    ParseError { no: false, code: None, message }
}

/// Parses one command: `text` without its final line ending, `literals` in order.
pub(crate) fn parse_command(text: &[u8], literals: Vec<Vec<u8>>, options: ParseOptions) -> Result<Command, Rejected> {
    let mut parser = Parser {
        input: text,
        pos: 0,
        literals: literals.into_iter(),
        utf8: options.utf8,
        depth: 0,
        depth_max: options.depth_max,
    };
    let tag = match parser.tag() {
        Ok(tag) => tag,
        Err(error) => return Err(Rejected { tag: None, error }),
    };
    let res = parser.sp().and_then(|()| parser.command_body()).and_then(|body| {
        if parser.pos != parser.input.len() {
            return Err(bad("Unexpected characters at the end of the command"));
        }
        Ok(body)
    });
    match res {
        Ok(body) => Ok(Command { tag, body }),
        Err(error) => Err(Rejected { tag: Some(tag), error }),
    }
}

/// Whether `bytes` is a valid tag (RFC 9051 `tag`).
pub(crate) fn is_tag(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&byte| is_astring_char(byte) && byte != b'+')
}

fn is_astring_char(byte: u8) -> bool {
    is_atom_char(byte) || byte == b']'
}

fn is_list_char(byte: u8) -> bool {
    is_astring_char(byte) || byte == b'%' || byte == b'*'
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    literals: std::vec::IntoIter<Vec<u8>>,
    utf8: bool,
    depth: usize,
    depth_max: usize,
}

impl<'a> Parser<'a> {
    // ------------------------------------------------------------ commands

    fn command_body(&mut self) -> PResult<CommandBody> {
        let name = self.atom().map_err(|_| bad("Expected a command name"))?;
        let name = upper(name);
        let body = match name.as_str() {
            "CAPABILITY" => CommandBody::Capability,
            "NOOP" => CommandBody::Noop,
            "LOGOUT" => CommandBody::Logout,
            "STARTTLS" => CommandBody::StartTls,
            "AUTHENTICATE" => self.authenticate()?,
            "LOGIN" => {
                self.sp()?;
                let username = self.astring_utf8()?;
                self.sp()?;
                let password = self.astring_utf8()?;
                CommandBody::Login { username, password }
            }
            "ENABLE" => {
                let mut capabilities = Vec::new();
                while self.eat(b' ') {
                    capabilities.push(self.atom()?.to_ascii_uppercase());
                }
                if capabilities.is_empty() {
                    return Err(bad("ENABLE needs at least one capability"));
                }
                CommandBody::Enable { capabilities }
            }
            "SELECT" | "EXAMINE" => self.select(name.as_str() == "EXAMINE")?,
            "CREATE" => self.create()?,
            "DELETE" => CommandBody::Delete { mailbox: self.sp_mailbox()? },
            "RENAME" => CommandBody::Rename { from: self.sp_mailbox()?, to: self.sp_mailbox()? },
            "SUBSCRIBE" => CommandBody::Subscribe { mailbox: self.sp_mailbox()? },
            "UNSUBSCRIBE" => CommandBody::Unsubscribe { mailbox: self.sp_mailbox()? },
            "LIST" => self.list()?,
            "LSUB" => {
                self.sp()?;
                let reference = self.list_mailbox(false)?;
                self.sp()?;
                let pattern = self.list_mailbox(true)?;
                CommandBody::Lsub { reference, pattern }
            }
            "NAMESPACE" => CommandBody::Namespace,
            "STATUS" => {
                let mailbox = self.sp_mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                CommandBody::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "IDLE" => CommandBody::Idle,
            "ID" => self.id()?,
            "CHECK" => CommandBody::Check,
            "CLOSE" => CommandBody::Close,
            "UNSELECT" => CommandBody::Unselect,
            "EXPUNGE" => CommandBody::Expunge { uids: None },
            "UID" => {
                self.sp()?;
                let name = self.atom().map_err(|_| bad("Expected a command after UID"))?;
                match upper(name).as_str() {
                    "EXPUNGE" => {
                        self.sp()?;
                        CommandBody::Expunge { uids: Some(self.sequence_set()?) }
                    }
                    other => self.uid_able(other, true)?.ok_or_else(|| bad("Unknown UID command"))?,
                }
            }
            "GETQUOTA" => {
                self.sp()?;
                CommandBody::GetQuota { root: self.astring_utf8()? }
            }
            "GETQUOTAROOT" => CommandBody::GetQuotaRoot { mailbox: self.sp_mailbox()? },
            "SETQUOTA" => self.setquota()?,
            "COMPRESS" => {
                self.sp()?;
                let algorithm = self.atom()?;
                if !algorithm.eq_ignore_ascii_case("DEFLATE") {
                    return Err(bad("Unknown compression algorithm"));
                }
                CommandBody::Compress
            }
            other => self.uid_able(other, false)?.ok_or_else(|| bad("Unknown command"))?,
        };
        Ok(body)
    }

    /// The commands that take a `UID` prefix.
    fn uid_able(&mut self, upper: &str, uid: bool) -> PResult<Option<CommandBody>> {
        let body = match upper {
            "FETCH" => self.fetch(uid)?,
            "STORE" => self.store(uid)?,
            "COPY" | "MOVE" => {
                self.sp()?;
                let set = self.sequence_set()?;
                let mailbox = self.sp_mailbox()?;
                if upper == "COPY" {
                    CommandBody::Copy { uid, set, mailbox }
                } else {
                    CommandBody::Move { uid, set, mailbox }
                }
            }
            "SEARCH" => self.search(uid)?,
            "SORT" => self.sort(uid)?,
            "THREAD" => self.thread(uid)?,
            _ => return Ok(None),
        };
        Ok(Some(body))
    }

    fn authenticate(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let mechanism = self.atom()?.to_ascii_uppercase();
        let mut initial_response = None;
        if self.eat(b' ') {
            let raw = self.take_while(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'='));
            initial_response =
                Some(hameau_sasl::decode(raw).map_err(|_| bad("Invalid base64 in the initial response"))?);
        }
        Ok(CommandBody::Authenticate { mechanism, initial_response })
    }

    fn select(&mut self, read_only: bool) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut params = SelectParams::default();
        if self.eat(b' ') {
            self.expect(b'(', "Expected ( before SELECT parameters")?;
            self.items_nonempty(|parser| {
                let name = parser.atom()?;
                if name.eq_ignore_ascii_case("CONDSTORE") {
                    params.condstore = true;
                } else if name.eq_ignore_ascii_case("QRESYNC") && params.qresync.is_none() {
                    parser.sp()?;
                    params.qresync = Some(parser.qresync_params()?);
                } else {
                    return Err(bad("Unknown SELECT parameter"));
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::Select { mailbox, read_only, params })
    }

    /// RFC 7162 §3.2.5: `(uidvalidity modseq [known-uids] [(seq-match-data)])`.
    fn qresync_params(&mut self) -> PResult<QresyncParams> {
        self.expect(b'(', "Expected ( after QRESYNC")?;
        let uid_validity = self.nz_number()?.get();
        self.sp()?;
        let modseq = self.modseq_value(false)?;
        let mut known_uids = None;
        let mut seq_match = None;
        if self.eat(b' ') {
            if self.peek() != Some(b'(') {
                known_uids = Some(self.sequence_set_no_saved()?);
                if self.eat(b' ') {
                    seq_match = Some(self.seq_match_data()?);
                }
            } else {
                seq_match = Some(self.seq_match_data()?);
            }
        }
        self.expect(b')', "Expected ) after QRESYNC parameters")?;
        Ok(QresyncParams { uid_validity, modseq, known_uids, seq_match })
    }

    fn seq_match_data(&mut self) -> PResult<(SequenceSet, SequenceSet)> {
        self.expect(b'(', "Expected (")?;
        let sequences = self.sequence_set_no_saved()?;
        self.sp()?;
        let uids = self.sequence_set_no_saved()?;
        self.expect(b')', "Expected )")?;
        Ok((sequences, uids))
    }

    fn create(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut special_use = Vec::new();
        if self.eat(b' ') {
            // RFC 6154 §3: `(USE (\Drafts ...))`.
            self.expect(b'(', "Expected ( before CREATE parameters")?;
            if !self.word("USE") {
                return Err(bad("Unknown CREATE parameter"));
            }
            self.sp()?;
            self.expect(b'(', "Expected ( after USE")?;
            self.items_nonempty(|parser| {
                let name = parser.flag_text()?;
                let Some(special) = SpecialUse::parse(name) else {
                    return Err(ParseError {
                        no: true,
                        code: Some(Code::UseAttr),
                        message: "Unknown special-use attribute",
                    });
                };
                special_use.push(special);
                Ok(())
            })?;
            self.expect(b')', "Expected ) after CREATE parameters")?;
        }
        Ok(CommandBody::Create { mailbox, special_use })
    }

    fn list(&mut self) -> PResult<CommandBody> {
        let mut list = ListCommand::default();
        self.sp()?;
        if self.eat(b'(') {
            list.extended = true;
            self.items(|parser| {
                let option = upper(parser.atom()?);
                match option.as_str() {
                    "SUBSCRIBED" => list.selection.subscribed = true,
                    "REMOTE" => list.selection.remote = true,
                    "RECURSIVEMATCH" => list.selection.recursive_match = true,
                    "SPECIAL-USE" => list.selection.special_use = true,
                    _ => return Err(bad("Unknown LIST selection option")),
                }
                Ok(())
            })?;
            // RFC 5258 §3.1: RECURSIVEMATCH needs another option to modify.
            if list.selection.recursive_match && !list.selection.subscribed && !list.selection.special_use {
                return Err(bad("RECURSIVEMATCH needs another selection option"));
            }
            self.sp()?;
        }
        list.reference = self.list_mailbox(false)?;
        self.sp()?;
        if self.eat(b'(') {
            list.extended = true;
            self.items_nonempty(|parser| {
                list.patterns.push(parser.list_mailbox(true)?);
                Ok(())
            })?;
        } else {
            list.patterns.push(self.list_mailbox(true)?);
        }
        if self.eat(b' ') {
            list.extended = true;
            if !self.word("RETURN") {
                return Err(bad("Expected RETURN"));
            }
            self.sp()?;
            self.expect(b'(', "Expected ( after RETURN")?;
            self.items(|parser| {
                let option = upper(parser.atom()?);
                match option.as_str() {
                    "SUBSCRIBED" => list.returns.subscribed = true,
                    "CHILDREN" => list.returns.children = true,
                    "SPECIAL-USE" => list.returns.special_use = true,
                    "STATUS" if list.returns.status.is_none() => {
                        parser.sp()?;
                        list.returns.status = Some(parser.status_items()?);
                    }
                    _ => return Err(bad("Unknown LIST return option")),
                }
                Ok(())
            })?;
        }
        Ok(CommandBody::List(list))
    }

    fn status_items(&mut self) -> PResult<Vec<StatusItem>> {
        self.expect(b'(', "Expected ( before status items")?;
        let mut items = Vec::new();
        loop {
            let name = upper(self.atom()?);
            let item = match name.as_str() {
                "MESSAGES" => StatusItem::Messages,
                "UIDNEXT" => StatusItem::UidNext,
                "UIDVALIDITY" => StatusItem::UidValidity,
                "UNSEEN" => StatusItem::Unseen,
                "DELETED" => StatusItem::Deleted,
                "SIZE" => StatusItem::Size,
                "RECENT" => StatusItem::Recent,
                "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                _ => return Err(bad("Unknown STATUS item")),
            };
            if !items.contains(&item) {
                items.push(item);
            }
            if self.eat(b')') {
                return Ok(items);
            }
            self.sp()?;
        }
    }

    fn append(&mut self) -> PResult<CommandBody> {
        let mailbox = self.sp_mailbox()?;
        let mut messages = Vec::new();
        // RFC 3502: one or more `SP [flag-list SP] [date-time SP] literal`.
        while self.eat(b' ') {
            let mut flags = Vec::new();
            let mut date = None;
            if self.peek() == Some(b'(') {
                flags = self.flag_list()?;
                self.sp()?;
            }
            if self.peek() == Some(b'"') {
                date = Some(self.date_time()?);
                self.sp()?;
            }
            let binary = self.peek() == Some(b'~');
            if !matches!(self.peek(), Some(b'{' | b'~')) {
                return Err(bad("Expected a literal with the message"));
            }
            let data = self.literal(true)?;
            messages.push(AppendMessage { flags, date, data, binary });
        }
        if messages.is_empty() {
            return Err(bad("APPEND needs a message"));
        }
        Ok(CommandBody::Append { mailbox, messages })
    }

    fn id(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        if self.word("NIL") {
            return Ok(CommandBody::Id { params: None });
        }
        self.expect(b'(', "Expected ( or NIL")?;
        let mut params = Vec::new();
        if self.eat(b')') {
            return Ok(CommandBody::Id { params: Some(params) });
        }
        loop {
            // RFC 2971 §3.3: at most 30 pairs, fields of 30 octets, values of 1024.
            let field = self.string_utf8()?;
            self.sp()?;
            let value = match self.nstring()? {
                Some(bytes) => Some(String::from_utf8(bytes).map_err(|_| bad("ID values must be UTF-8"))?),
                None => None,
            };
            if field.len() > 30 || value.as_ref().is_some_and(|value| value.len() > 1024) || params.len() == 30 {
                return Err(bad("ID parameters over the limits of RFC 2971"));
            }
            params.push((field, value));
            if self.eat(b')') {
                return Ok(CommandBody::Id { params: Some(params) });
            }
            self.sp()?;
        }
    }

    fn setquota(&mut self) -> PResult<CommandBody> {
        self.sp()?;
        let root = self.astring_utf8()?;
        self.sp()?;
        self.expect(b'(', "Expected ( before quota limits")?;
        let mut limits = Vec::new();
        self.items(|parser| {
            let resource = parser.atom()?.to_ascii_uppercase();
            parser.sp()?;
            let limit = parser.number64()?;
            limits.push((resource, limit));
            Ok(())
        })?;
        Ok(CommandBody::SetQuota { root, limits })
    }

    fn fetch(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut attributes = Vec::new();
        if self.eat(b'(') {
            self.items_nonempty(|parser| {
                parser.fetch_attribute(&mut attributes)?;
                Ok(())
            })?;
        } else {
            let save = self.pos;
            let word = upper(self.atom()?);
            let expanded: &[FetchAttribute] = match word.as_str() {
                "ALL" => &[
                    FetchAttribute::Flags,
                    FetchAttribute::InternalDate,
                    FetchAttribute::Rfc822Size,
                    FetchAttribute::Envelope,
                ],
                "FAST" => &[FetchAttribute::Flags, FetchAttribute::InternalDate, FetchAttribute::Rfc822Size],
                "FULL" => &[
                    FetchAttribute::Flags,
                    FetchAttribute::InternalDate,
                    FetchAttribute::Rfc822Size,
                    FetchAttribute::Envelope,
                    FetchAttribute::Body,
                ],
                _ => &[],
            };
            if expanded.is_empty() {
                self.pos = save;
                self.fetch_attribute(&mut attributes)?;
            } else {
                attributes.extend_from_slice(expanded);
            }
        }
        if uid && !attributes.contains(&FetchAttribute::Uid) {
            // RFC 9051 §6.4.9: UID FETCH always returns the UID.
            attributes.push(FetchAttribute::Uid);
        }
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            self.expect(b'(', "Expected ( before FETCH modifiers")?;
            self.items_nonempty(|parser| {
                let name = upper(parser.atom()?);
                match name.as_str() {
                    "CHANGEDSINCE" if changed_since.is_none() => {
                        parser.sp()?;
                        changed_since = Some(parser.modseq_value(false)?);
                    }
                    "VANISHED" if !vanished => vanished = true,
                    _ => return Err(bad("Unknown FETCH modifier")),
                }
                Ok(())
            })?;
            // RFC 7162 §3.2.6: VANISHED only with UID FETCH and CHANGEDSINCE.
            if vanished && (!uid || changed_since.is_none()) {
                return Err(bad("VANISHED needs UID FETCH and CHANGEDSINCE"));
            }
        }
        Ok(CommandBody::Fetch { uid, set, attributes, changed_since, vanished })
    }

    fn fetch_attribute(&mut self, attributes: &mut Vec<FetchAttribute>) -> PResult<()> {
        let name = self.take_while(|byte| byte.is_ascii_alphanumeric() || byte == b'.');
        let upper = upper(name);
        let attribute = match upper.as_bytes() {
            b"FLAGS" => FetchAttribute::Flags,
            b"ENVELOPE" => FetchAttribute::Envelope,
            b"BODYSTRUCTURE" => FetchAttribute::BodyStructure,
            b"INTERNALDATE" => FetchAttribute::InternalDate,
            b"RFC822" => FetchAttribute::Rfc822,
            b"RFC822.HEADER" => FetchAttribute::Rfc822Header,
            b"RFC822.TEXT" => FetchAttribute::Rfc822Text,
            b"RFC822.SIZE" => FetchAttribute::Rfc822Size,
            b"UID" => FetchAttribute::Uid,
            b"MODSEQ" => FetchAttribute::ModSeq,
            b"BODY" | b"BODY.PEEK" if self.peek() == Some(b'[') => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAttribute::BodySection { peek: upper.as_bytes().len() > 4, section, partial }
            }
            b"BODY" => FetchAttribute::Body,
            b"BINARY" | b"BINARY.PEEK" | b"BINARY.SIZE" => {
                self.expect(b'[', "Expected [ after BINARY")?;
                let part = if self.peek() == Some(b']') { Vec::new() } else { self.part_numbers()? };
                self.expect(b']', "Expected ] after the part number")?;
                if upper.as_bytes() == b"BINARY.SIZE" {
                    FetchAttribute::BinarySize { part }
                } else {
                    let partial = self.partial()?;
                    FetchAttribute::Binary { peek: upper.as_bytes().len() > 6, part, partial }
                }
            }
            _ => return Err(bad("Unknown FETCH attribute")),
        };
        if !attributes.contains(&attribute) {
            attributes.push(attribute);
        }
        Ok(())
    }

    fn section(&mut self) -> PResult<Section> {
        self.expect(b'[', "Expected [")?;
        let mut section = Section::default();
        if self.eat(b']') {
            return Ok(section);
        }
        if self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            section.part = self.part_numbers()?;
            if self.eat(b']') {
                return Ok(section);
            }
            self.expect(b'.', "Expected . or ] after the part number")?;
        }
        let word = upper(self.take_while(|byte| byte.is_ascii_alphabetic() || byte == b'.'));
        let text = match word.as_bytes() {
            b"HEADER" => SectionText::Header,
            b"TEXT" => SectionText::Text,
            b"MIME" if !section.part.is_empty() => SectionText::Mime,
            b"HEADER.FIELDS" | b"HEADER.FIELDS.NOT" => {
                self.sp()?;
                self.expect(b'(', "Expected ( before header field names")?;
                let mut fields = Vec::new();
                self.items_nonempty(|parser| {
                    fields.push(parser.astring_utf8()?);
                    Ok(())
                })?;
                if word.as_bytes().len() == 13 {
                    SectionText::HeaderFields(fields)
                } else {
                    SectionText::HeaderFieldsNot(fields)
                }
            }
            _ => return Err(bad("Unknown body section")),
        };
        section.text = Some(text);
        self.expect(b']', "Expected ] after the body section")?;
        Ok(section)
    }

    fn part_numbers(&mut self) -> PResult<Vec<u32>> {
        let mut part = vec![self.nz_number()?.get()];
        while self.peek() == Some(b'.') && self.input.get(self.pos + 1).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
            part.push(self.nz_number()?.get());
            if part.len() > self.depth_max {
                return Err(bad("Part number nested too deeply"));
            }
        }
        Ok(part)
    }

    fn partial(&mut self) -> PResult<Option<Partial>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let origin = self.number()?;
        self.expect(b'.', "Expected . in the partial range")?;
        let length = self.nz_number()?.get();
        self.expect(b'>', "Expected > after the partial range")?;
        Ok(Some(Partial { origin, length }))
    }

    fn store(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            if !self.word("UNCHANGEDSINCE") {
                return Err(bad("Unknown STORE modifier"));
            }
            self.sp()?;
            unchanged_since = Some(self.modseq_value(true)?);
            self.expect(b')', "Expected ) after STORE modifiers")?;
            self.sp()?;
        }
        let action = if self.eat(b'+') {
            StoreAction::Add
        } else if self.eat(b'-') {
            StoreAction::Remove
        } else {
            StoreAction::Replace
        };
        let item = self.take_while(|byte| byte.is_ascii_alphabetic() || byte == b'.');
        let silent = if item.eq_ignore_ascii_case(b"FLAGS") {
            false
        } else if item.eq_ignore_ascii_case(b"FLAGS.SILENT") {
            true
        } else {
            return Err(bad("Expected FLAGS, +FLAGS or -FLAGS"));
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list()?
        } else {
            let mut flags = vec![self.flag()?];
            while self.eat(b' ') {
                flags.push(self.flag()?);
            }
            flags
        };
        Ok(CommandBody::Store { uid, set, action, silent, flags, unchanged_since })
    }

    fn search(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let mut returns = None;
        if self.word("RETURN") {
            self.sp()?;
            self.expect(b'(', "Expected ( after RETURN")?;
            let mut options = SearchReturn::default();
            self.items(|parser| {
                let name = upper(parser.atom()?);
                match name.as_str() {
                    "MIN" => options.min = true,
                    "MAX" => options.max = true,
                    "ALL" => options.all = true,
                    "COUNT" => options.count = true,
                    "SAVE" => options.save = true,
                    _ => return Err(bad("Unknown SEARCH return option")),
                }
                Ok(())
            })?;
            // RFC 4731 §3.1: `RETURN ()` is `RETURN (ALL)`.
            if options.is_empty() {
                options.all = true;
            }
            returns = Some(options);
            self.sp()?;
        }
        let mut charset = None;
        if self.word("CHARSET") {
            self.sp()?;
            charset = Some(self.charset()?);
            self.sp()?;
        }
        let criteria = self.search_keys()?;
        Ok(CommandBody::Search { uid, charset, returns, criteria })
    }

    fn sort(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        self.expect(b'(', "Expected ( before sort criteria")?;
        let mut criteria = Vec::new();
        self.items_nonempty(|parser| {
            let mut reverse = false;
            let mut name = upper(parser.atom()?);
            if name.as_str() == "REVERSE" {
                reverse = true;
                parser.sp()?;
                name = upper(parser.atom()?);
            }
            let key = match name.as_str() {
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                _ => return Err(bad("Unknown sort criterion")),
            };
            criteria.push(SortCriterion { reverse, key });
            Ok(())
        })?;
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let search = self.search_keys()?;
        Ok(CommandBody::Sort { uid, criteria, charset, search })
    }

    fn thread(&mut self, uid: bool) -> PResult<CommandBody> {
        self.sp()?;
        let name = self.atom()?;
        let algorithm = if name.eq_ignore_ascii_case("REFERENCES") {
            ThreadAlgorithm::References
        } else if name.eq_ignore_ascii_case("ORDEREDSUBJECT") {
            ThreadAlgorithm::OrderedSubject
        } else {
            return Err(bad("Unknown threading algorithm"));
        };
        self.sp()?;
        let charset = self.charset()?;
        self.sp()?;
        let search = self.search_keys()?;
        Ok(CommandBody::Thread { uid, algorithm, charset, search })
    }

    fn charset(&mut self) -> PResult<String> {
        let charset = self.astring_utf8()?.to_ascii_uppercase();
        if !CHARSETS.contains(&charset.as_str()) {
            // RFC 9051 §6.4.4: an unsupported charset is a NO with BADCHARSET.
            return Err(ParseError {
                no: true,
                code: Some(Code::BadCharset(CHARSETS)),
                message: "Unsupported charset",
            });
        }
        Ok(charset)
    }

    // ------------------------------------------------------------ search keys

    fn search_keys(&mut self) -> PResult<SearchKey> {
        let mut keys = vec![self.search_key()?];
        while self.eat(b' ') {
            keys.push(self.search_key()?);
        }
        Ok(if keys.len() == 1 { keys.pop().expect("one key") } else { SearchKey::And(keys) })
    }

    fn search_key(&mut self) -> PResult<SearchKey> {
        if self.depth >= self.depth_max {
            return Err(bad("Search keys nested too deeply"));
        }
        self.depth += 1;
        let res = self.search_key_inner();
        self.depth -= 1;
        res
    }

    fn search_key_inner(&mut self) -> PResult<SearchKey> {
        match self.peek() {
            Some(b'(') => {
                self.pos += 1;
                let mut keys = vec![self.search_key()?];
                while !self.eat(b')') {
                    self.sp()?;
                    keys.push(self.search_key()?);
                }
                return Ok(if keys.len() == 1 { keys.pop().expect("one key") } else { SearchKey::And(keys) });
            }
            Some(b'0'..=b'9' | b'*' | b'$') => return Ok(SearchKey::SequenceSet(self.sequence_set()?)),
            _ => {}
        }
        let name = upper(self.atom().map_err(|_| bad("Expected a search key"))?);
        let key = match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => SearchKey::Answered,
            "DELETED" => SearchKey::Deleted,
            "DRAFT" => SearchKey::Draft,
            "FLAGGED" => SearchKey::Flagged,
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "SEEN" => SearchKey::Seen,
            "UNANSWERED" => SearchKey::Unanswered,
            "UNDELETED" => SearchKey::Undeleted,
            "UNDRAFT" => SearchKey::Undraft,
            "UNFLAGGED" => SearchKey::Unflagged,
            "UNSEEN" => SearchKey::Unseen,
            "BCC" => SearchKey::Bcc(self.sp_search_string()?),
            "BODY" => SearchKey::Body(self.sp_search_string()?),
            "CC" => SearchKey::Cc(self.sp_search_string()?),
            "FROM" => SearchKey::From(self.sp_search_string()?),
            "SUBJECT" => SearchKey::Subject(self.sp_search_string()?),
            "TEXT" => SearchKey::Text(self.sp_search_string()?),
            "TO" => SearchKey::To(self.sp_search_string()?),
            "HEADER" => {
                let field = self.sp_search_string()?;
                SearchKey::Header(field, self.sp_search_string()?)
            }
            "BEFORE" => SearchKey::Before(self.sp_date()?),
            "ON" => SearchKey::On(self.sp_date()?),
            "SINCE" => SearchKey::Since(self.sp_date()?),
            "SENTBEFORE" => SearchKey::SentBefore(self.sp_date()?),
            "SENTON" => SearchKey::SentOn(self.sp_date()?),
            "SENTSINCE" => SearchKey::SentSince(self.sp_date()?),
            "KEYWORD" | "UNKEYWORD" => {
                self.sp()?;
                let keyword = self.atom()?.to_owned();
                if name.as_str() == "KEYWORD" { SearchKey::Keyword(keyword) } else { SearchKey::Unkeyword(keyword) }
            }
            "LARGER" | "SMALLER" => {
                self.sp()?;
                let size = self.number64()?;
                if name.as_str() == "LARGER" { SearchKey::Larger(size) } else { SearchKey::Smaller(size) }
            }
            "NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.search_key()?))
            }
            "OR" => {
                self.sp()?;
                let left = self.search_key()?;
                self.sp()?;
                SearchKey::Or(Box::new(left), Box::new(self.search_key()?))
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "MODSEQ" => self.search_modseq()?,
            _ => return Err(bad("Unknown search key")),
        };
        Ok(key)
    }

    /// RFC 7162 §3.1.5: `MODSEQ [entry-name SP entry-type-req SP] mod-sequence-valzer`.
    fn search_modseq(&mut self) -> PResult<SearchKey> {
        self.sp()?;
        let mut entry = None;
        if self.peek() == Some(b'"') {
            let name = String::from_utf8(self.quoted()?).map_err(|_| bad("Entry names must be UTF-8"))?;
            self.sp()?;
            let kind = self.atom()?.to_ascii_lowercase();
            if !matches!(kind.as_str(), "priv" | "shared" | "all") {
                return Err(bad("Expected priv, shared or all"));
            }
            self.sp()?;
            entry = Some((name, kind));
        }
        let modseq = self.modseq_value(true)?;
        Ok(SearchKey::ModSeq { entry, modseq })
    }

    fn sp_search_string(&mut self) -> PResult<String> {
        self.sp()?;
        self.astring_utf8()
    }

    fn sp_date(&mut self) -> PResult<Date> {
        self.sp()?;
        let quoted = self.eat(b'"');
        let day = self.digits(1, 2)?;
        self.expect(b'-', "Expected - in the date")?;
        let month = self.month()?;
        self.expect(b'-', "Expected - in the date")?;
        let year = self.digits(4, 4)?;
        if quoted {
            self.expect(b'"', "Expected \" after the date")?;
        }
        Date::new(year as u16, month, day as u8).ok_or_else(|| bad("Invalid date"))
    }

    /// RFC 9051 `date-time`: `"dd-Mon-yyyy hh:mm:ss +zzzz"`, the day possibly space-padded.
    fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"', "Expected \" before the date")?;
        self.eat(b' ');
        let day = self.digits(1, 2)?;
        self.expect(b'-', "Expected - in the date")?;
        let month = self.month()?;
        self.expect(b'-', "Expected - in the date")?;
        let year = self.digits(4, 4)?;
        self.sp()?;
        let hour = self.digits(2, 2)?;
        self.expect(b':', "Expected : in the time")?;
        let minute = self.digits(2, 2)?;
        self.expect(b':', "Expected : in the time")?;
        let second = self.digits(2, 2)?;
        self.sp()?;
        let negative = match self.next() {
            Some(b'+') => false,
            Some(b'-') => true,
            _ => return Err(bad("Expected + or - in the zone")),
        };
        let zone = self.digits(4, 4)?;
        self.expect(b'"', "Expected \" after the date")?;
        let date = Date::new(year as u16, month, day as u8).ok_or_else(|| bad("Invalid date"))?;
        if hour > 23 || minute > 59 || second > 60 || zone % 100 > 59 || zone / 100 > 23 {
            return Err(bad("Invalid time"));
        }
        let offset = (zone / 100 * 60 + zone % 100) as i16;
        Ok(DateTime {
            date,
            hour: hour as u8,
            minute: minute as u8,
            second: second.min(59) as u8,
            offset_minutes: if negative { -offset } else { offset },
        })
    }

    fn month(&mut self) -> PResult<u8> {
        let name = self.input.get(self.pos..self.pos + 3).ok_or_else(|| bad("Expected a month"))?;
        let month = month_from_name(name).ok_or_else(|| bad("Expected a month"))?;
        self.pos += 3;
        Ok(month)
    }

    fn digits(&mut self, min: usize, max: usize) -> PResult<u32> {
        let start = self.pos;
        while self.pos - start < max && self.peek().is_some_and(|byte| byte.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos - start < min {
            return Err(bad("Expected digits"));
        }
        Ok(self.input[start..self.pos].iter().fold(0, |acc, &byte| acc * 10 + u32::from(byte - b'0')))
    }

    // ------------------------------------------------------------ flags and sets

    /// As [`Parser::items`], for a list that must hold at least one item.
    fn items_nonempty(&mut self, mut item: impl FnMut(&mut Self) -> PResult<()>) -> PResult<()> {
        loop {
            item(self)?;
            if self.eat(b')') {
                return Ok(());
            }
            self.sp()?;
        }
    }

    /// The items of a parenthesised list whose `(` was read, separated by single spaces,
    /// up to the closing `)`; `()` has none.
    fn items(&mut self, mut item: impl FnMut(&mut Self) -> PResult<()>) -> PResult<()> {
        let mut first = true;
        while !self.eat(b')') {
            if !first {
                self.sp()?;
            }
            first = false;
            item(self)?;
        }
        Ok(())
    }

    fn flag_list(&mut self) -> PResult<Vec<Flag>> {
        self.expect(b'(', "Expected ( before flags")?;
        let mut flags = Vec::new();
        self.items(|parser| {
            let flag = parser.flag()?;
            if !flags.contains(&flag) {
                flags.push(flag);
            }
            Ok(())
        })?;
        Ok(flags)
    }

    fn flag(&mut self) -> PResult<Flag> {
        let text = self.flag_text()?;
        Flag::parse(text).ok_or_else(|| bad("Invalid flag"))
    }

    /// An atom, or `\` and an atom.
    fn flag_text(&mut self) -> PResult<&'a str> {
        let start = self.pos;
        self.eat(b'\\');
        self.atom()?;
        Ok(std::str::from_utf8(&self.input[start..self.pos]).expect("atoms are ASCII"))
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::saved());
        }
        self.sequence_set_no_saved()
    }

    fn sequence_set_no_saved(&mut self) -> PResult<SequenceSet> {
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_number()?;
            let end = if self.eat(b':') { self.seq_number()? } else { start };
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                break;
            }
        }
        SequenceSet::from_ranges(ranges).ok_or_else(|| bad("Expected a sequence set"))
    }

    fn seq_number(&mut self) -> PResult<SeqNumber> {
        if self.eat(b'*') {
            return Ok(SeqNumber::Largest);
        }
        Ok(SeqNumber::Value(self.nz_number().map_err(|_| bad("Invalid sequence set"))?))
    }

    // ------------------------------------------------------------ strings and names

    fn sp_mailbox(&mut self) -> PResult<MailboxName> {
        self.sp()?;
        let bytes = self.astring()?;
        Ok(MailboxName::new(self.decode_name(&bytes)?))
    }

    /// A LIST reference (`wildcards: false`) or pattern: an astring, or for patterns an
    /// atom that may also hold `%` and `*`. Decoded like mailbox names.
    fn list_mailbox(&mut self, wildcards: bool) -> PResult<String> {
        let bytes = if wildcards && self.peek().is_some_and(is_list_char) {
            Cow::Borrowed(self.take_while(is_list_char))
        } else {
            self.astring()?
        };
        self.decode_name(&bytes)
    }

    fn decode_name(&self, bytes: &[u8]) -> PResult<String> {
        if self.utf8 {
            let name = std::str::from_utf8(bytes).map_err(|_| bad("Mailbox names must be UTF-8"))?;
            if name.chars().any(char::is_control) {
                return Err(bad("Control characters in the mailbox name"));
            }
            return Ok(name.to_owned());
        }
        mutf7::decode(bytes).ok_or_else(|| bad("Invalid mailbox name: expected modified UTF-7 (RFC 3501 §5.1.3)"))
    }

    fn astring_utf8(&mut self) -> PResult<String> {
        let bytes = self.astring()?;
        bytes_to_string(bytes)
    }

    fn string_utf8(&mut self) -> PResult<String> {
        let bytes = self.string()?;
        String::from_utf8(bytes).map_err(|_| bad("Strings must be UTF-8"))
    }

    fn astring(&mut self) -> PResult<Cow<'a, [u8]>> {
        match self.peek() {
            Some(b'"' | b'{') => Ok(Cow::Owned(self.string()?)),
            Some(byte) if is_astring_char(byte) => Ok(Cow::Borrowed(self.take_while(is_astring_char))),
            _ => Err(bad("Expected a string")),
        }
    }

    fn nstring(&mut self) -> PResult<Option<Vec<u8>>> {
        if self.word("NIL") {
            return Ok(None);
        }
        self.string().map(Some)
    }

    fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            _ => Err(bad("Expected a quoted string or a literal")),
        }
    }

    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"', "Expected \"")?;
        let mut out = Vec::new();
        loop {
            match self.next() {
                None => return Err(bad("Unterminated quoted string")),
                Some(b'"') => return Ok(out),
                Some(b'\\') => match self.next() {
                    Some(byte @ (b'"' | b'\\')) => out.push(byte),
                    _ => return Err(bad("Invalid escape in a quoted string")),
                },
                Some(b'\r' | b'\n' | 0) => return Err(bad("Control character in a quoted string")),
                Some(byte) => out.push(byte),
            }
        }
    }

    /// `{n}`, `{n+}` or (when `allow_binary`) `~{n}`, then the line ending, then the bytes
    /// the framer set aside.
    fn literal(&mut self, allow_binary: bool) -> PResult<Vec<u8>> {
        if self.eat(b'~') && !allow_binary {
            return Err(bad("literal8 is allowed only in APPEND"));
        }
        self.expect(b'{', "Expected a literal")?;
        let length = self.number64()?;
        self.eat(b'+');
        self.expect(b'}', "Expected } in the literal")?;
        self.eat(b'\r');
        self.expect(b'\n', "A literal's announcement must end the line")?;
        let data = self.literals.next().ok_or_else(|| bad("Missing literal"))?;
        if data.len() as u64 != length {
            return Err(bad("Literal length mismatch"));
        }
        Ok(data)
    }

    // ------------------------------------------------------------ tokens

    fn tag(&mut self) -> PResult<String> {
        let tag = self.take_while(|byte| is_astring_char(byte) && byte != b'+');
        if tag.is_empty() {
            return Err(bad("Expected a tag"));
        }
        Ok(String::from_utf8(tag.to_vec()).expect("tags are ASCII"))
    }

    fn atom(&mut self) -> PResult<&'a str> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(bad("Expected an atom"));
        }
        Ok(std::str::from_utf8(atom).expect("atoms are ASCII"))
    }

    /// Consumes `word` (any case) when it is followed by something other than an atom char.
    fn word(&mut self, word: &str) -> bool {
        let end = self.pos + word.len();
        let matches = self.input.get(self.pos..end).is_some_and(|text| text.eq_ignore_ascii_case(word.as_bytes()))
            && !self.input.get(end).copied().is_some_and(is_atom_char);
        if matches {
            self.pos = end;
        }
        matches
    }

    fn number(&mut self) -> PResult<u32> {
        u32::try_from(self.number64()?).map_err(|_| bad("Number too large"))
    }

    fn nz_number(&mut self) -> PResult<NonZeroU32> {
        NonZeroU32::new(self.number()?).ok_or_else(|| bad("Expected a number greater than zero"))
    }

    fn number64(&mut self) -> PResult<u64> {
        let digits = self.take_while(|byte| byte.is_ascii_digit());
        if digits.is_empty() || digits.len() > 19 {
            return Err(bad("Expected a number"));
        }
        Ok(digits.iter().fold(0, |acc, &byte| acc * 10 + u64::from(byte - b'0')))
    }

    /// RFC 7162 `mod-sequence-value`: 1 to 2^63-1 (`allow_zero` for `mod-sequence-valzer`).
    fn modseq_value(&mut self, allow_zero: bool) -> PResult<u64> {
        let value = self.number64()?;
        if value > i64::MAX as u64 || (value == 0 && !allow_zero) {
            return Err(bad("Invalid mod-sequence value"));
        }
        Ok(value)
    }

    fn sp(&mut self) -> PResult<()> {
        self.expect(b' ', "Expected a space")
    }

    fn expect(&mut self, byte: u8, message: &'static str) -> PResult<()> {
        if self.eat(byte) { Ok(()) } else { Err(bad(message)) }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos;
        let input: &'a [u8] = self.input;
        while input.get(self.pos).is_some_and(|&byte| pred(byte)) {
            self.pos += 1;
        }
        &input[start..self.pos]
    }
}

/// A keyword upper-cased on the stack, so matching command and item names allocates
/// nothing. Longer words become empty, which matches no keyword.
struct Upper {
    buf: [u8; 24],
    len: usize,
}

impl Upper {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

fn upper(text: impl AsRef<[u8]>) -> Upper {
    let text = text.as_ref();
    let mut buf = [0u8; 24];
    if text.len() > buf.len() {
        return Upper { buf, len: 0 };
    }
    for (slot, byte) in buf.iter_mut().zip(text) {
        *slot = byte.to_ascii_uppercase();
    }
    Upper { buf, len: text.len() }
}

fn bytes_to_string(bytes: Cow<'_, [u8]>) -> PResult<String> {
    match bytes {
        Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| bad("Strings must be UTF-8")),
        Cow::Owned(bytes) => String::from_utf8(bytes).map_err(|_| bad("Strings must be UTF-8")),
    }
}

#[cfg(test)]
mod tests;

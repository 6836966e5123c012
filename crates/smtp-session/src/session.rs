//! The SMTP server session: the state machine between bytes in, replies out and events.

use std::mem;
use std::time::Instant;

use crate::Limits;
use crate::address::{self, ArgError};
use crate::data::{self, DataDecoder, Decoded};

/// How a session is set up.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub limits: Limits,
    /// The driver can do a TLS handshake: `STARTTLS` is advertised and accepted (RFC 3207).
    pub starttls_available: bool,
    /// The connection is encrypted already (implicit TLS, port 465, RFC 8314).
    pub tls_active: bool,
    /// The SASL mechanisms `AUTH` offers (RFC 4954), once TLS is active; none: no `AUTH`
    /// (the MX).
    pub auth_mechanisms: Vec<Mechanism>,
}

/// The SASL mechanisms and credentials of `AUTH` (RFC 4954): the exchanges are those of
/// `hameau-sasl`, shared with IMAP. `Credentials`' `Debug` hides the password.
pub use hameau_sasl::{Credentials, Mechanism};

/// What the session asks of its driver. [`Event::needs_decision`] says which events wait for
/// [`Session::handle_decision`]; the session reads no further command until then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `EHLO` or `HELO`. Accepting writes the greeting reply and resets the transaction.
    Helo { ehlo: bool, host: String },
    /// `MAIL FROM`; `address` is empty for the null sender `<>`.
    MailFrom { address: String, params: MailParams },
    /// `RCPT TO`; `address` is `postmaster` (no domain) for `<Postmaster>` (RFC 5321 §4.1.1.3).
    RcptTo { address: String },
    /// A whole message, after `DATA`'s `<CRLF>.<CRLF>` or the last `BDAT` chunk, dot-unstuffed,
    /// with its envelope. Accept only once it is stored and synced: acceptance writes `250`.
    Message { data: Vec<u8>, mail_from: String, recipients: Vec<String>, params: MailParams },
    /// `AUTH` with its credentials (RFC 4954). Accepting writes `235 2.7.0`; a rejection
    /// (`535 5.7.8` for bad credentials) counts as an error.
    Auth(Credentials),
    /// `STARTTLS` was accepted and `220` queued: write the output, do the handshake, then
    /// call [`Session::handle_tls_started`]. Bytes that followed the command are dropped.
    StartTls,
    /// `QUIT`: write the output (`221`) and close.
    Quit,
    /// The session ended on its own (its `421` is queued): write the output and close.
    Close { reason: CloseReason },
}

/// The parameters of `MAIL FROM` (RFC 5321 §4.1.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=` (RFC 1870): the client's estimate of the message size.
    pub size: Option<u64>,
    /// `BODY=` (RFC 6152).
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531): addresses and headers may be UTF-8.
    pub smtputf8: bool,
}

/// The `BODY=` parameter of `MAIL FROM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    SevenBit,
    EightBitMime,
}

/// Why the session closed itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// `Limits::errors_max` error replies were sent.
    TooManyErrors,
    /// More than `Limits::commands_max` commands.
    TooManyCommands,
    /// No command for `Limits::command_timeout_s`.
    CommandTimeout,
    /// No data for `Limits::data_timeout_s` inside `DATA` or a `BDAT` chunk.
    DataTimeout,
    /// The session lasted `Limits::session_timeout_s`.
    SessionTimeout,
    /// A `BDAT` chunk larger than `Limits::bdat_chunk_bytes_max` was announced.
    BdatChunkTooBig,
    /// A `BDAT` command without a readable size: the session cannot find the next command.
    BdatMalformed,
    /// The driver rejected with a `421` reply.
    Driver,
}

/// The driver's answer to an event that [`Event::needs_decision`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the default reply (`250 2.1.0`, `250 2.1.5`, `250 2.0.0`, the EHLO list,
    /// `235 2.7.0`).
    Accept,
    /// Refuse with this 4xx or 5xx reply. A `421` reply also closes the session.
    Reject(Reply),
}

/// One reply line with its enhanced status code (RFC 3463), e.g. `550 5.1.1 No such user`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: String,
    text: String,
}

/// The SMTP server session. See the crate documentation for the driver's loop.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    host: String,
    starttls_available: bool,
    tls_active: bool,
    auth_mechanisms: Vec<Mechanism>,
    /// `AUTH` succeeded; it cannot be given again (RFC 4954 §4).
    authenticated: bool,
    /// The `AUTH` exchange waits for this response line from the client.
    sasl: Option<hameau_sasl::Exchange>,
    phase: Phase,
    /// The accepted `EHLO`/`HELO`: `Some(true)` for EHLO.
    helo_ehlo: Option<bool>,
    transaction: Option<Transaction>,
    input: Vec<u8>,
    output: Vec<u8>,
    /// An event raised outside `poll_event` (a timeout), or by a decision (a `421`).
    event_ready: Option<Event>,
    /// Discarding the rest of an over-long command line.
    skipping_long_line: bool,
    n_commands: usize,
    n_errors: usize,
    started_at: Instant,
    last_activity: Instant,
    /// Input or a decision arrived since `last_activity` was set; the next call that knows
    /// the time sets it.
    activity_pending: bool,
}

impl Reply {
    /// Builds a reply. Panics (a programmer error) if `code` is not 2xx–5xx, if `enhanced` is
    /// not `class.subject.detail` with the code's class, or if `text` holds control characters.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        let text = text.into();
        assert!((200..600).contains(&code), "bad SMTP reply code {code}");
        let parts: Vec<&str> = enhanced.split('.').collect();
        let enhanced_ok = parts.len() == 3
            && parts[0] == (code / 100).to_string()
            && parts[1..].iter().all(|part| (1..=3).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit()));
        assert!(enhanced_ok, "bad enhanced status code {enhanced:?} for {code}");
        assert!(!text.chars().any(char::is_control), "control character in SMTP reply text {text:?}");
        Reply { code, enhanced: enhanced.to_owned(), text }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> &str {
        &self.enhanced
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// A 2xx or 3xx reply.
    pub fn is_success(&self) -> bool {
        self.code < 400
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

impl Event {
    /// Whether the session waits for [`Session::handle_decision`] after this event.
    pub fn needs_decision(&self) -> bool {
        matches!(
            self,
            Event::Helo { .. } | Event::MailFrom { .. } | Event::RcptTo { .. } | Event::Message { .. } | Event::Auth(_)
        )
    }
}

#[derive(Debug)]
enum Phase {
    /// Reading command lines.
    Command,
    /// Reading the body of `DATA`.
    Data(DataDecoder),
    /// Reading the bytes of one `BDAT` chunk.
    Bdat(BdatChunk),
    /// An event waits for the driver's decision.
    Awaiting(Awaiting),
    /// `StartTls` was raised; waiting for `handle_tls_started`.
    AwaitingTls,
    Closed,
}

#[derive(Debug)]
enum Awaiting {
    Helo { ehlo: bool },
    MailFrom { address: String, params: MailParams },
    RcptTo { address: String },
    Message,
    Auth,
}

#[derive(Debug)]
struct BdatChunk {
    size: u64,
    remaining: u64,
    last: bool,
    fate: ChunkFate,
}

/// What happens to the bytes of a `BDAT` chunk: RFC 3030 §2 has the server read a refused
/// chunk all the same, so that the next command is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkFate {
    Keep,
    /// The message would exceed `message_bytes_max`: drop, then `552 5.3.4`.
    TooBig,
    /// No transaction to add it to: drop, then `503 5.5.1`.
    OutOfSequence,
}

#[derive(Debug)]
struct Transaction {
    mail_from: String,
    params: MailParams,
    recipients: Vec<String>,
    /// The chunks of `BDAT` received so far.
    bdat_data: Vec<u8>,
    bdat_started: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    Auth,
}

/// What one step of the input loop gave.
enum Step {
    Event(Event),
    Continue,
    NeedInput,
}

const VERBS: [(&str, Verb); 14] = [
    ("EHLO", Verb::Ehlo),
    ("HELO", Verb::Helo),
    ("MAIL", Verb::Mail),
    ("RCPT", Verb::Rcpt),
    ("DATA", Verb::Data),
    ("BDAT", Verb::Bdat),
    ("RSET", Verb::Rset),
    ("NOOP", Verb::Noop),
    ("QUIT", Verb::Quit),
    ("VRFY", Verb::Vrfy),
    ("EXPN", Verb::Expn),
    ("HELP", Verb::Help),
    ("STARTTLS", Verb::StartTls),
    ("AUTH", Verb::Auth),
];

impl Session {
    /// Starts a session and queues the greeting `220 <greeting_host> ESMTP Hameau`.
    /// Panics (a programmer error) if the limits fail [`Limits::check_consistent`] or the host name
    /// holds spaces or control characters.
    pub fn new(options: Options, greeting_host: &str, now: Instant) -> Session {
        if let Err(err) = options.limits.check_consistent() {
            panic!("invalid SMTP limits: {err}");
        }
        assert!(
            !greeting_host.is_empty() && !greeting_host.chars().any(|c| c.is_control() || c == ' '),
            "bad greeting host {greeting_host:?}"
        );
        let mut session = Session {
            limits: options.limits,
            host: greeting_host.to_owned(),
            starttls_available: options.starttls_available,
            tls_active: options.tls_active,
            auth_mechanisms: options.auth_mechanisms,
            authenticated: false,
            sasl: None,
            phase: Phase::Command,
            helo_ehlo: None,
            transaction: None,
            input: Vec::new(),
            output: Vec::new(),
            event_ready: None,
            skipping_long_line: false,
            n_commands: 0,
            n_errors: 0,
            started_at: now,
            last_activity: now,
            activity_pending: false,
        };
        // RFC 2034 §3: no enhanced code in the greeting.
        session.write_line(&format!("220 {greeting_host} ESMTP Hameau"));
        session
    }

    /// Takes bytes read from the client. They are parsed by [`Session::poll_event`]. Bytes
    /// are dropped once the session is closed, and while it waits for the TLS handshake
    /// (RFC 3207 §5: nothing sent in clear after `STARTTLS` may be used).
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || matches!(self.phase, Phase::Closed | Phase::AwaitingTls) {
            return;
        }
        self.activity_pending = true;
        self.input.extend_from_slice(bytes);
    }

    /// Parses buffered input and returns the next event, or `None` when more input (or a
    /// decision) is needed. Replies are queued for [`Session::poll_output`] as it goes.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.refresh_activity(now);
        loop {
            if let Some(event) = self.event_ready.take() {
                return Some(event);
            }
            let step = match self.phase {
                // Back-pressure on a client that pipelines and does not read: the driver
                // writes what is queued, then calls again (`is_ready`).
                Phase::Command if self.output.len() >= self.limits.reply_bytes_max => return None,
                Phase::Command => self.step_command(),
                Phase::Data(_) => self.step_data(),
                Phase::Bdat(_) => self.step_bdat(),
                Phase::Awaiting(_) | Phase::AwaitingTls | Phase::Closed => Step::NeedInput,
            };
            match step {
                Step::Event(event) => return Some(event),
                Step::Continue => {}
                Step::NeedInput => {
                    // Bounded memory: an unfinished command line is shorter than the limit,
                    // and DATA or BDAT bytes are consumed as they come.
                    debug_assert!(match self.phase {
                        Phase::Command => self.input.len() < self.limits.line_bytes_max,
                        Phase::Data(_) | Phase::Bdat(_) => self.input.is_empty(),
                        _ => true,
                    });
                    return None;
                }
            }
        }
    }

    /// Takes the bytes to write to the client: replies, in command order.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() { None } else { Some(mem::take(&mut self.output)) }
    }

    /// When [`Session::handle_timeout`] should be called next; `None` once closed.
    /// No command or data timeout runs while the driver owes a decision or a handshake.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let session_deadline = self.started_at + self.limits.session_timeout();
        let phase_deadline = match self.phase {
            Phase::Command => self.last_activity + self.limits.command_timeout(),
            Phase::Data(_) | Phase::Bdat(_) => self.last_activity + self.limits.data_timeout(),
            Phase::Awaiting(_) | Phase::AwaitingTls => session_deadline,
            Phase::Closed => return None,
        };
        Some(session_deadline.min(phase_deadline))
    }

    /// Checks the timeouts at `now`. On expiry, `421 4.4.2` is queued and the next
    /// [`Session::poll_event`] returns [`Event::Close`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_activity(now);
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let reason = if now >= self.started_at + self.limits.session_timeout() {
            CloseReason::SessionTimeout
        } else {
            match self.phase {
                Phase::Command if now >= self.last_activity + self.limits.command_timeout() => {
                    CloseReason::CommandTimeout
                }
                Phase::Data(_) | Phase::Bdat(_) if now >= self.last_activity + self.limits.data_timeout() => {
                    CloseReason::DataTimeout
                }
                _ => return,
            }
        };
        self.close("4.4.2", "Timeout, closing connection", reason);
    }

    /// Answers the event that [`Event::needs_decision`]. Ignored once the session is closed
    /// (a timeout may close it while the driver decides). Panics (a programmer error) if no
    /// decision is awaited, or if a rejection is not 4xx or 5xx.
    pub fn handle_decision(&mut self, decision: Decision) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let Phase::Awaiting(awaiting) = mem::replace(&mut self.phase, Phase::Command) else {
            panic!("handle_decision without a pending decision");
        };
        self.activity_pending = true;
        match decision {
            Decision::Accept => self.accept(awaiting),
            Decision::Reject(reply) => {
                assert!(reply.code >= 400, "a rejection must be 4xx or 5xx, not {}", reply.code);
                if matches!(awaiting, Awaiting::Message) {
                    self.transaction = None;
                }
                if reply.code == 421 {
                    self.close(&reply.enhanced, &reply.text, CloseReason::Driver);
                } else {
                    self.reply_error(reply.code, &reply.enhanced, &reply.text);
                }
            }
        }
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded. The session forgets the
    /// greeting and the transaction (RFC 3207 §4.2): the client must send `EHLO` again.
    pub fn handle_tls_started(&mut self) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        assert!(matches!(self.phase, Phase::AwaitingTls), "handle_tls_started without StartTls");
        self.phase = Phase::Command;
        self.tls_active = true;
        self.helo_ehlo = None;
        self.transaction = None;
        self.input.clear();
        self.activity_pending = true;
    }

    /// Whether the driver should read from the socket: `poll_event` cannot progress
    /// without more bytes. It is false while a decision or a handshake is owed, which gives
    /// back-pressure on pipelining clients.
    pub fn wants_input(&self) -> bool {
        if self.event_ready.is_some() {
            return false;
        }
        match self.phase {
            Phase::Command => {
                !self.input.contains(&b'\n')
                    && (self.skipping_long_line || self.input.len() < self.limits.line_bytes_max)
            }
            Phase::Data(_) | Phase::Bdat(_) => self.input.is_empty(),
            Phase::Awaiting(_) | Phase::AwaitingTls | Phase::Closed => false,
        }
    }

    /// Whether [`Session::poll_event`] can go on without more input or a decision: it
    /// stopped because [`Limits::reply_bytes_max`] of replies were queued, with commands
    /// still buffered. The driver writes [`Session::poll_output`], then polls again.
    pub fn is_ready(&self) -> bool {
        self.event_ready.is_some() || (matches!(self.phase, Phase::Command) && self.input.contains(&b'\n'))
    }

    /// Whether the session has ended (after `Quit` or `Close`).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether TLS is active (implicit TLS, or after `STARTTLS`).
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    fn refresh_activity(&mut self, now: Instant) {
        if mem::take(&mut self.activity_pending) {
            self.last_activity = now;
        }
    }

    fn step_command(&mut self) -> Step {
        let Some(lf_idx) = self.input.iter().position(|&byte| byte == b'\n') else {
            // RFC 5321 §4.5.3.1.4: a line longer than the limit is dropped as it comes.
            if self.skipping_long_line || self.input.len() >= self.limits.line_bytes_max {
                self.skipping_long_line = true;
                self.input.clear();
            }
            return Step::NeedInput;
        };
        let line: Vec<u8> = self.input.drain(..=lf_idx).collect();
        self.n_commands += 1;
        if self.n_commands > self.limits.commands_max {
            self.close("4.7.0", "Too many commands, closing connection", CloseReason::TooManyCommands);
            return Step::Continue;
        }
        // A line that is no valid response ends an `AUTH` exchange with its error.
        let sasl = self.sasl.take();
        if mem::take(&mut self.skipping_long_line) || line.len() > self.limits.line_bytes_max {
            self.reply_error(500, "5.5.6", "Line too long");
            return Step::Continue;
        }
        // RFC 5321 §2.3.8: lines end with CRLF; a bare LF is refused, not guessed at.
        let Some(line) = line.strip_suffix(b"\r\n") else {
            self.reply_error(500, "5.5.2", "Line must end with CRLF");
            return Step::Continue;
        };
        match sasl {
            Some(exchange) => self.sasl_line(exchange, line),
            None => self.handle_line(line),
        }
    }

    fn handle_line(&mut self, line: &[u8]) -> Step {
        let (verb, args) = match line.iter().position(|&byte| byte == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &[][..]),
        };
        let Some(verb) =
            VERBS.iter().find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(verb)).map(|&(_, verb)| verb)
        else {
            self.reply_error(500, "5.5.2", "Command not recognized");
            return Step::Continue;
        };
        let Ok(args) = std::str::from_utf8(args) else {
            self.reply_error(501, "5.5.4", "Invalid UTF-8 in command");
            return Step::Continue;
        };
        if args.chars().any(char::is_control) {
            self.reply_error(501, "5.5.4", "Invalid character in command");
            return Step::Continue;
        }
        match verb {
            Verb::Ehlo => self.command_helo(args, true),
            Verb::Helo => self.command_helo(args, false),
            Verb::Mail => self.command_mail(args),
            Verb::Rcpt => self.command_rcpt(args),
            Verb::Data => self.command_data(args),
            Verb::Bdat => self.command_bdat(args),
            Verb::StartTls => self.command_starttls(args),
            Verb::Quit => self.command_quit(args),
            Verb::Auth => self.command_auth(args),
            Verb::Rset | Verb::Noop | Verb::Vrfy | Verb::Expn | Verb::Help => self.command_simple(verb, args),
        }
    }

    fn command_helo(&mut self, args: &str, ehlo: bool) -> Step {
        let host = args.trim_matches(' ');
        if host.is_empty() || host.contains(' ') {
            let text = if ehlo { "Syntax: EHLO hostname" } else { "Syntax: HELO hostname" };
            self.reply_error(501, "5.5.4", text);
            return Step::Continue;
        }
        self.phase = Phase::Awaiting(Awaiting::Helo { ehlo });
        Step::Event(Event::Helo { ehlo, host: host.to_owned() })
    }

    fn command_mail(&mut self, args: &str) -> Step {
        let Some(ehlo) = self.helo_ehlo else {
            self.reply_error(503, "5.5.1", "Send EHLO or HELO first");
            return Step::Continue;
        };
        if self.transaction.is_some() {
            self.reply_error(503, "5.5.1", "Sender already specified");
            return Step::Continue;
        }
        let parsed = strip_prefix_ignore_case(args, "FROM:")
            .ok_or(ArgError::Syntax)
            .and_then(|rest| address::parse_path(rest.trim_start_matches(' ')))
            .and_then(|(address, rest)| {
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(ArgError::Syntax);
                }
                // RFC 5321 §4.1.1.11 and RFC 1869: parameters need EHLO.
                if !ehlo && !rest.trim().is_empty() {
                    return Err(ArgError::UnknownParam);
                }
                Ok((address, address::parse_mail_params(rest)?))
            });
        let (address, params) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => return self.arg_error(err, "Syntax: MAIL FROM:<address> [parameters]"),
        };
        if params.size.is_some_and(|size| size > self.limits.message_bytes_max as u64) {
            self.reply_error(552, "5.3.4", "Message size exceeds fixed maximum message size");
            return Step::Continue;
        }
        // RFC 6531 §3.4: a UTF-8 address needs the SMTPUTF8 parameter.
        if !address.is_ascii() && !params.smtputf8 {
            self.reply_error(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
            return Step::Continue;
        }
        self.phase = Phase::Awaiting(Awaiting::MailFrom { address: address.clone(), params: params.clone() });
        Step::Event(Event::MailFrom { address, params })
    }

    fn command_rcpt(&mut self, args: &str) -> Step {
        let Some(transaction) = &self.transaction else {
            self.reply_error(503, "5.5.1", "Need MAIL before RCPT");
            return Step::Continue;
        };
        if transaction.bdat_started {
            self.reply_error(503, "5.5.1", "RCPT not allowed after BDAT");
            return Step::Continue;
        }
        let smtputf8 = transaction.params.smtputf8;
        let n_recipients = transaction.recipients.len();
        let parsed = strip_prefix_ignore_case(args, "TO:")
            .ok_or(ArgError::Syntax)
            .and_then(|rest| parse_forward_path(rest.trim_start_matches(' ')))
            .and_then(|(address, rest)| {
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(ArgError::Syntax);
                }
                address::check_no_params(rest)?;
                Ok(address)
            });
        let address = match parsed {
            Ok(address) => address,
            Err(err) => return self.arg_error(err, "Syntax: RCPT TO:<address>"),
        };
        if !address.is_ascii() && !smtputf8 {
            self.reply_error(553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
            return Step::Continue;
        }
        if n_recipients >= self.limits.recipients_max {
            // RFC 5321 §4.5.3.1.10; not counted as an error (see `Limits::recipients_max`).
            self.write_reply(452, "4.5.3", "Too many recipients");
            return Step::Continue;
        }
        self.phase = Phase::Awaiting(Awaiting::RcptTo { address: address.clone() });
        Step::Event(Event::RcptTo { address })
    }

    fn command_data(&mut self, args: &str) -> Step {
        if !args.is_empty() {
            self.reply_error(501, "5.5.4", "Syntax: DATA");
            return Step::Continue;
        }
        let Some(transaction) = &self.transaction else {
            self.reply_error(503, "5.5.1", "Need MAIL before DATA");
            return Step::Continue;
        };
        if transaction.bdat_started {
            self.reply_error(503, "5.5.1", "DATA not allowed after BDAT");
            return Step::Continue;
        }
        if transaction.recipients.is_empty() {
            // RFC 5321 §3.3: "no valid recipients".
            self.reply_error(554, "5.5.1", "No valid recipients");
            return Step::Continue;
        }
        // RFC 2034 §3: enhanced codes are for 2xx, 4xx and 5xx replies only.
        self.write_line("354 End data with <CR><LF>.<CR><LF>");
        self.phase = Phase::Data(DataDecoder::new(self.limits.message_bytes_max));
        Step::Continue
    }

    fn command_bdat(&mut self, args: &str) -> Step {
        // RFC 3030 §4: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] CR LF.
        let mut words = args.split(' ');
        let size = words
            .next()
            .filter(|word| (1..=20).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|word| word.parse::<u64>().ok());
        let last = match words.next() {
            None => Some(false),
            Some(word) if word.eq_ignore_ascii_case("LAST") => Some(true),
            Some(_) => None,
        };
        let (Some(size), Some(last), None) = (size, last, words.next()) else {
            // Without a size the chunk cannot be skipped: its bytes would be read as commands.
            self.close("4.5.4", "Syntax: BDAT chunk-size [LAST], closing connection", CloseReason::BdatMalformed);
            return Step::Continue;
        };
        if size > self.limits.bdat_chunk_bytes_max as u64 {
            self.close("4.3.4", "BDAT chunk too big, closing connection", CloseReason::BdatChunkTooBig);
            return Step::Continue;
        }
        let fate = match &mut self.transaction {
            Some(transaction) if !transaction.recipients.is_empty() => {
                transaction.bdat_started = true;
                if transaction.bdat_data.len() as u64 + size > self.limits.message_bytes_max as u64 {
                    ChunkFate::TooBig
                } else {
                    ChunkFate::Keep
                }
            }
            _ => ChunkFate::OutOfSequence,
        };
        self.phase = Phase::Bdat(BdatChunk { size, remaining: size, last, fate });
        Step::Continue
    }

    fn command_starttls(&mut self, args: &str) -> Step {
        if !args.is_empty() {
            self.reply_error(501, "5.5.4", "Syntax: STARTTLS");
        } else if self.tls_active {
            self.reply_error(503, "5.5.1", "TLS already active");
        } else if !self.starttls_available {
            // RFC 3207 §4.
            self.reply_error(454, "4.7.0", "TLS not available");
        } else {
            self.write_reply(220, "2.0.0", "Ready to start TLS");
            // CVE-2011-0411: commands pipelined after STARTTLS came in clear; drop them.
            self.input.clear();
            self.helo_ehlo = None;
            self.transaction = None;
            self.phase = Phase::AwaitingTls;
            return Step::Event(Event::StartTls);
        }
        Step::Continue
    }

    fn command_auth(&mut self, args: &str) -> Step {
        if self.auth_mechanisms.is_empty() {
            self.reply_error(503, "5.5.1", "Authentication not enabled");
            return Step::Continue;
        }
        if !self.tls_active {
            // RFC 4954 §6: passwords never travel in clear.
            self.reply_error(538, "5.7.11", "Encryption required for requested authentication mechanism");
            return Step::Continue;
        }
        let refusal = if self.helo_ehlo != Some(true) {
            Some("Send EHLO first")
        } else if self.authenticated {
            Some("Already authenticated")
        } else if self.transaction.is_some() {
            Some("AUTH not allowed during a mail transaction")
        } else {
            None
        };
        if let Some(text) = refusal {
            // RFC 4954 §4.
            self.reply_error(503, "5.5.1", text);
            return Step::Continue;
        }
        let mut words = args.split(' ');
        let (Some(name), initial, None) = (words.next().filter(|name| !name.is_empty()), words.next(), words.next())
        else {
            self.reply_error(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]");
            return Step::Continue;
        };
        let Some(mechanism) = self.auth_mechanisms.iter().copied().find(|m| m.name().eq_ignore_ascii_case(name)) else {
            self.reply_error(504, "5.5.4", "Unrecognized authentication type");
            return Step::Continue;
        };
        let exchange = hameau_sasl::Exchange::new(mechanism);
        match initial {
            // RFC 4954 §4: the initial response spares a round trip.
            Some(initial) => self.sasl_line(exchange, initial.as_bytes()),
            None => {
                let challenge = exchange.first_challenge();
                self.sasl_challenge(exchange, challenge);
                Step::Continue
            }
        }
    }

    /// Queues `334 challenge` and waits for the response (RFC 4954 §4).
    fn sasl_challenge(&mut self, exchange: hameau_sasl::Exchange, challenge: &str) {
        self.write_line(&format!("334 {challenge}"));
        self.sasl = Some(exchange);
    }

    /// One response of the `AUTH` exchange: base64, `=` for an empty one, `*` to cancel.
    fn sasl_line(&mut self, exchange: hameau_sasl::Exchange, line: &[u8]) -> Step {
        match exchange.respond_line(line) {
            Ok(hameau_sasl::Next::Challenge { exchange, challenge }) => {
                self.sasl_challenge(exchange, challenge);
                Step::Continue
            }
            Ok(hameau_sasl::Next::Done(credentials)) => {
                self.phase = Phase::Awaiting(Awaiting::Auth);
                Step::Event(Event::Auth(credentials))
            }
            Err(hameau_sasl::Error::Cancelled) => {
                self.reply_error(501, "5.0.0", "Authentication cancelled");
                Step::Continue
            }
            Err(e) => {
                self.reply_error(501, "5.5.2", &e.to_string());
                Step::Continue
            }
        }
    }

    fn command_quit(&mut self, args: &str) -> Step {
        if !args.is_empty() {
            self.reply_error(501, "5.5.4", "Syntax: QUIT");
            return Step::Continue;
        }
        self.write_reply(221, "2.0.0", "Bye");
        self.end();
        Step::Event(Event::Quit)
    }

    fn command_simple(&mut self, verb: Verb, args: &str) -> Step {
        match verb {
            Verb::Rset if !args.is_empty() => self.reply_error(501, "5.5.4", "Syntax: RSET"),
            Verb::Rset => {
                self.transaction = None;
                self.write_reply(250, "2.0.0", "Ok");
            }
            Verb::Noop => self.write_reply(250, "2.0.0", "Ok"),
            Verb::Vrfy if args.trim().is_empty() => self.reply_error(501, "5.5.4", "Syntax: VRFY address"),
            // RFC 5321 §3.5.3: 252 discloses nothing about who exists.
            Verb::Vrfy => {
                self.write_reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
            }
            Verb::Expn => self.reply_error(502, "5.5.1", "EXPN not available"),
            Verb::Help => self.write_reply(
                214,
                "2.0.0",
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS",
            ),
            _ => unreachable!("not a simple command: {verb:?}"),
        }
        Step::Continue
    }

    fn step_data(&mut self) -> Step {
        let Phase::Data(decoder) = &mut self.phase else {
            unreachable!("step_data outside DATA");
        };
        if self.input.is_empty() {
            return Step::NeedInput;
        }
        let (consumed, done) = decoder.decode(&self.input);
        self.input.drain(..consumed);
        if !done {
            return Step::NeedInput;
        }
        let Phase::Data(decoder) = mem::replace(&mut self.phase, Phase::Command) else {
            unreachable!("step_data outside DATA");
        };
        self.finish_message(decoder.finish())
    }

    fn step_bdat(&mut self) -> Step {
        let Phase::Bdat(chunk) = &mut self.phase else {
            unreachable!("step_bdat outside BDAT");
        };
        let n_bytes = (chunk.remaining.min(self.input.len() as u64)) as usize;
        if chunk.fate == ChunkFate::Keep {
            let transaction = self.transaction.as_mut().expect("a kept BDAT chunk has a transaction");
            transaction.bdat_data.extend_from_slice(&self.input[..n_bytes]);
        }
        self.input.drain(..n_bytes);
        chunk.remaining -= n_bytes as u64;
        if chunk.remaining > 0 {
            return Step::NeedInput;
        }
        let Phase::Bdat(chunk) = mem::replace(&mut self.phase, Phase::Command) else {
            unreachable!("step_bdat outside BDAT");
        };
        match chunk.fate {
            ChunkFate::OutOfSequence => {
                self.reply_error(503, "5.5.1", "Need MAIL and RCPT before BDAT");
                Step::Continue
            }
            ChunkFate::TooBig => self.finish_message(Decoded { data: Vec::new(), too_big: true, bare_cr_or_lf: false }),
            ChunkFate::Keep if !chunk.last => {
                self.write_reply(250, "2.0.0", &format!("{} octets received", chunk.size));
                Step::Continue
            }
            ChunkFate::Keep => {
                let transaction = self.transaction.as_mut().expect("a kept BDAT chunk has a transaction");
                let data = mem::take(&mut transaction.bdat_data);
                let bare_cr_or_lf = data::has_bare_cr_or_lf(&data);
                self.finish_message(Decoded { data, too_big: false, bare_cr_or_lf })
            }
        }
    }

    /// The end of `DATA` or of the last `BDAT` chunk: refuse, or ask the driver.
    fn finish_message(&mut self, decoded: Decoded) -> Step {
        if decoded.too_big {
            self.transaction = None;
            self.reply_error(552, "5.3.4", "Message size exceeds fixed maximum message size");
            return Step::Continue;
        }
        if decoded.bare_cr_or_lf {
            // RFC 5321 §2.3.8; SMTP smuggling (2023): such a message is refused whole.
            self.transaction = None;
            self.reply_error(550, "5.6.0", "Message contains bare CR or LF, lines must end with CRLF");
            return Step::Continue;
        }
        let transaction = self.transaction.take().expect("a finished message has a transaction");
        self.phase = Phase::Awaiting(Awaiting::Message);
        Step::Event(Event::Message {
            data: decoded.data,
            mail_from: transaction.mail_from,
            recipients: transaction.recipients,
            params: transaction.params,
        })
    }

    fn accept(&mut self, awaiting: Awaiting) {
        match awaiting {
            Awaiting::Helo { ehlo } => {
                // RFC 5321 §4.1.4: EHLO/HELO resets the transaction.
                self.helo_ehlo = Some(ehlo);
                self.transaction = None;
                if ehlo {
                    self.write_ehlo_reply();
                } else {
                    // RFC 2034 §3: no enhanced code in the reply to HELO and EHLO.
                    self.write_line(&format!("250 {}", self.host));
                }
            }
            Awaiting::MailFrom { address, params } => {
                self.transaction = Some(Transaction {
                    mail_from: address,
                    params,
                    recipients: Vec::new(),
                    bdat_data: Vec::new(),
                    bdat_started: false,
                });
                self.write_reply(250, "2.1.0", "Ok");
            }
            Awaiting::RcptTo { address } => {
                let transaction = self.transaction.as_mut().expect("RCPT has a transaction");
                transaction.recipients.push(address);
                self.write_reply(250, "2.1.5", "Ok");
            }
            Awaiting::Message => {
                self.transaction = None;
                self.write_reply(250, "2.0.0", "Ok: queued");
            }
            Awaiting::Auth => {
                self.authenticated = true;
                self.write_reply(235, "2.7.0", "Authentication successful");
            }
        }
    }

    fn write_ehlo_reply(&mut self) {
        let mut lines = vec![
            self.host.clone(),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.limits.message_bytes_max),
            "8BITMIME".to_owned(),
            "SMTPUTF8".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
            "CHUNKING".to_owned(),
        ];
        if self.starttls_available && !self.tls_active {
            lines.push("STARTTLS".to_owned());
        }
        if !self.auth_mechanisms.is_empty() && self.tls_active {
            let names: Vec<&str> = self.auth_mechanisms.iter().map(|mechanism| mechanism.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        let n_lines = lines.len();
        for (idx, line) in lines.iter().enumerate() {
            let separator = if idx + 1 == n_lines { ' ' } else { '-' };
            self.write_line(&format!("250{separator}{line}"));
        }
    }

    fn arg_error(&mut self, err: ArgError, syntax: &str) -> Step {
        match err {
            ArgError::Syntax => self.reply_error(501, "5.5.4", syntax),
            ArgError::UnknownParam => self.reply_error(555, "5.5.4", "Unsupported parameter"),
        }
        Step::Continue
    }

    /// Queues an error reply and closes the session when it is one too many.
    fn reply_error(&mut self, code: u16, enhanced: &str, text: &str) {
        self.write_reply(code, enhanced, text);
        self.n_errors += 1;
        if self.n_errors >= self.limits.errors_max {
            self.close("4.7.0", "Too many errors, closing connection", CloseReason::TooManyErrors);
        }
    }

    /// Queues `421`, ends the session and raises [`Event::Close`].
    fn close(&mut self, enhanced: &str, text: &str, reason: CloseReason) {
        self.write_reply(421, enhanced, text);
        self.end();
        self.event_ready = Some(Event::Close { reason });
    }

    fn end(&mut self) {
        self.phase = Phase::Closed;
        self.input = Vec::new();
        self.transaction = None;
    }

    fn write_reply(&mut self, code: u16, enhanced: &str, text: &str) {
        self.write_line(&format!("{code} {enhanced} {text}"));
    }

    fn write_line(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }
}

/// A forward path: a mailbox, or `<Postmaster>` without a domain (RFC 5321 §4.1.1.3),
/// given as `postmaster`. The null path is refused.
fn parse_forward_path(s: &str) -> Result<(String, &str), ArgError> {
    if let Some(rest) = strip_prefix_ignore_case(s, "<postmaster>") {
        return Ok(("postmaster".to_owned(), rest));
    }
    let (address, rest) = address::parse_path(s)?;
    if address.is_empty() {
        return Err(ArgError::Syntax);
    }
    Ok((address, rest))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

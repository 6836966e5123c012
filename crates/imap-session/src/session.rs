//! The IMAP server session: the state machine between bytes in, responses out and events.

use std::mem;
use std::time::Instant;

use crate::Limits;
use crate::capability::{Capabilities, Extensions};
use crate::parse::{self, ParseOptions};
use crate::types::{Command, CommandBody, SearchKey};
use crate::write::{self, Code, Responses, Status};

/// How a session is set up.
#[derive(Clone, Debug)]
pub struct Options {
    pub limits: Limits,
    pub extensions: Extensions,
    /// The driver can do a TLS handshake: `STARTTLS` is advertised and accepted.
    pub starttls_available: bool,
    /// The connection is encrypted already (port 993, RFC 8314).
    pub tls_active: bool,
    /// `LOGIN` and `AUTHENTICATE` work without TLS. Off, they get `NO [PRIVACYREQUIRED]`
    /// and `LOGINDISABLED` is advertised (RFC 9051 §6.2.3).
    pub plaintext_auth_allowed: bool,
    /// The session starts authenticated and greets with `* PREAUTH` (RFC 9051 §7.1.4).
    pub preauthenticated: bool,
    /// The text of the greeting, after the capability code.
    pub greeting: String,
}

/// What the session asks of its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A command for the driver: write its untagged data with [`Session::untagged`], then
    /// end it with [`Session::complete`]. No further command is read until then.
    Command(Command),
    /// `LOGIN` or a finished `AUTHENTICATE` exchange: check the credentials and answer with
    /// [`Session::handle_login`]. `authzid` is the SASL PLAIN authorization identity, when
    /// one was given and differs from nothing.
    Login { tag: String, authzid: Option<String>, username: String, password: String },
    /// `IDLE` (RFC 2177): `+ idling` is queued. Push untagged updates at any time until
    /// [`Event::IdleDone`].
    Idle { tag: String },
    /// The client ended `IDLE`: answer with [`Session::complete`] for `tag` (OK). If it sent
    /// something other than `DONE`, the session has queued `* BAD Expected DONE` first.
    IdleDone { tag: String },
    /// `STARTTLS` was accepted and `OK` queued: write the output, do the handshake, then call
    /// [`Session::handle_tls_started`]. Bytes that followed the command were dropped.
    StartTls,
    /// `COMPRESS DEFLATE` (RFC 4978): answer with [`Session::complete`]. After an `OK`,
    /// write the output uncompressed, then compress both directions, and pass the bytes of
    /// [`Session::take_buffered_input`] through the inflater.
    Compress { tag: String },
    /// The session ended (its `* BYE` is queued): write the output and close.
    Close { reason: CloseReason },
}

/// Why the session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Logout,
    /// [`Limits::errors_max`] `BAD` answers.
    TooManyErrors,
    /// [`Limits::auth_failures_max`] failed logins.
    TooManyAuthFailures,
    /// A timeout of [`Limits`] expired.
    Timeout,
    /// A non-synchronising literal above [`Limits::literal_discard_bytes_max`].
    LiteralTooBig,
    /// The driver called [`Session::bye`].
    Driver,
}

/// Why the driver refused a login; each maps to its response code (RFC 5530).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// `NO [AUTHENTICATIONFAILED]`: wrong user or password.
    Failed,
    /// `NO [AUTHORIZATIONFAILED]`: the authzid may not be used.
    AuthorizationFailed,
    /// `NO [UNAVAILABLE]`: the directory is down; try later.
    Unavailable,
    /// `NO [EXPIRED]`.
    Expired,
    /// `NO [CONTACTADMIN]`: the account is disabled.
    ContactAdmin,
}

/// The protocol state (RFC 9051 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    NotAuthenticated,
    Authenticated,
    Selected { read_only: bool },
    Logout,
}

/// What the client turned on with `ENABLE` (RFC 5161) or, for CONDSTORE, with a CONDSTORE
/// enabling command (RFC 7162 §3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enabled {
    pub condstore: bool,
    pub qresync: bool,
    pub utf8_accept: bool,
    pub imap4rev2: bool,
}

/// The IMAP server session. See the crate documentation for the driver's loop.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    extensions: Extensions,
    starttls_available: bool,
    tls_active: bool,
    plaintext_auth_allowed: bool,
    compress_active: bool,
    enabled: Enabled,
    state: SessionState,
    phase: Phase,
    frame: Frame,
    input: Vec<u8>,
    /// Bytes of `input` already used.
    input_pos: usize,
    output: Vec<u8>,
    /// An event raised outside the input loop (a close).
    event_ready: Option<Event>,
    n_errors: u32,
    n_auth_failures: u32,
    started_at: Instant,
    last_activity: Instant,
    /// Input or a completion arrived since `last_activity` was set; the next call that
    /// knows the time sets it.
    activity_pending: bool,
}

#[derive(Debug)]
enum Phase {
    /// Reading commands.
    Command,
    /// Reading SASL responses of `AUTHENTICATE`.
    Sasl(Sasl),
    /// In `IDLE`, waiting for `DONE`.
    Idle {
        tag: String,
    },
    /// The driver owes an answer.
    Awaiting(Awaiting),
    /// `StartTls` was raised; waiting for `handle_tls_started`.
    AwaitingTls,
    Closed,
}

#[derive(Debug)]
enum Awaiting {
    Command { tag: String, kind: Pending },
    Login { tag: String },
}

/// What completing a command changes in the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Select { read_only: bool },
    Unselect,
    Compress,
    Other,
}

#[derive(Debug)]
struct Sasl {
    tag: String,
    exchange: hameau_sasl::Exchange,
}

/// One command being read: its lines (with the literal announcements) and literals.
#[derive(Debug, Default)]
struct Frame {
    text: Vec<u8>,
    literals: Vec<Vec<u8>>,
    reading: Reading,
    /// Bytes counted against `command_line_bytes_max`: lines and non-message literals.
    command_bytes: usize,
    /// Message literal bytes of an `APPEND`.
    append_bytes: usize,
    /// Whether this is an `APPEND` whose literals are messages; known at the first literal.
    append: Option<bool>,
    /// The command is refused already; its remaining bytes are skipped, not stored.
    failure: Option<Failure>,
    /// The tag of a refused command, when it could be read.
    failed_tag: Option<String>,
    /// The last bytes of a skipped line, to find a literal announcement at its end.
    tail: [u8; TAIL_BYTES],
    tail_len: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Reading {
    #[default]
    Line,
    Literal {
        remaining: usize,
    },
    Discard {
        remaining: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    TooLong,
    LiteralTooBig { append: bool },
    LiteralMinus,
}

/// A literal announcement at the end of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Marker {
    length: u64,
    sync: bool,
}

/// What one step of the input loop gave.
enum Step {
    Event(Event),
    Continue,
    NeedInput,
}

enum SimpleLine {
    Incomplete,
    TooLong,
    Line(Vec<u8>),
}

/// `~{` + 20 digits + `+}` + CRLF fits.
const TAIL_BYTES: usize = 32;
/// RFC 7888 §4: LITERAL- allows non-synchronising literals up to 4096 octets.
const LITERAL_MINUS_BYTES_MAX: u64 = 4096;
/// Buffers larger than this are freed once a command is done, so idle sessions stay small
/// (10,000 idle sessions at 8 KiB each is the target).
const BUFFER_KEEP_BYTES: usize = 1024;

impl Default for Options {
    fn default() -> Options {
        Options {
            limits: Limits::default(),
            extensions: Extensions::default(),
            starttls_available: false,
            tls_active: false,
            plaintext_auth_allowed: false,
            preauthenticated: false,
            greeting: "Hameau IMAP ready".to_owned(),
        }
    }
}

impl Session {
    /// Starts a session and queues the greeting, `* OK [CAPABILITY ...] text` or
    /// `* PREAUTH [CAPABILITY ...] text`. Panics (a programmer error) if the limits fail
    /// [`Limits::check`].
    pub fn new(options: Options, now: Instant) -> Session {
        if let Err(err) = options.limits.check_consistent() {
            panic!("invalid IMAP limits: {err}");
        }
        let mut session = Session {
            limits: options.limits,
            extensions: options.extensions,
            starttls_available: options.starttls_available,
            tls_active: options.tls_active,
            plaintext_auth_allowed: options.plaintext_auth_allowed,
            compress_active: false,
            enabled: Enabled::default(),
            state: if options.preauthenticated { SessionState::Authenticated } else { SessionState::NotAuthenticated },
            phase: Phase::Command,
            frame: Frame::default(),
            input: Vec::new(),
            input_pos: 0,
            output: Vec::new(),
            event_ready: None,
            n_errors: 0,
            n_auth_failures: 0,
            started_at: now,
            last_activity: now,
            activity_pending: false,
        };
        let status = if options.preauthenticated { "PREAUTH" } else { "OK" };
        session.write_status("*", status, Some(Code::Capability), &options.greeting);
        session
    }

    /// Takes bytes read from the client; [`Session::poll_event`] parses them. Bytes are
    /// dropped once the session is closed, and while it waits for the TLS handshake
    /// (nothing sent in clear after `STARTTLS` may be used, CVE-2011-0411).
    pub fn handle_input(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || matches!(self.phase, Phase::Closed | Phase::AwaitingTls) {
            return;
        }
        self.activity_pending = true;
        self.input.extend_from_slice(bytes);
    }

    /// Parses buffered input and returns the next event, or `None` when more input (or an
    /// answer from the driver) is needed. Responses are queued as it goes.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.refresh_activity(now);
        let event = loop {
            if let Some(event) = self.event_ready.take() {
                break Some(event);
            }
            let step = match self.phase {
                Phase::Command => self.step_command(),
                Phase::Sasl(_) => self.step_sasl(),
                Phase::Idle { .. } => self.step_idle(),
                Phase::Awaiting(_) | Phase::AwaitingTls | Phase::Closed => Step::NeedInput,
            };
            match step {
                Step::Event(event) => break Some(event),
                Step::Continue => {}
                Step::NeedInput => break None,
            }
        };
        self.compact_input();
        event
    }

    /// Takes the bytes to write to the client.
    pub fn poll_output(&mut self) -> Option<Vec<u8>> {
        if self.output.is_empty() { None } else { Some(mem::take(&mut self.output)) }
    }

    /// Bytes of output waiting for [`Session::poll_output`]: the driver writes them out
    /// during a long answer once they pass [`Limits::output_bytes_max`].
    pub fn buffered_output(&self) -> usize {
        self.output.len()
    }

    /// Whether the driver should read from the socket: the session is reading (commands,
    /// SASL responses or `DONE`) and holds less than [`Limits::pipelined_bytes_max`] of
    /// unprocessed input. False while the driver owes an answer.
    pub fn wants_input(&self) -> bool {
        matches!(self.phase, Phase::Command | Phase::Sasl(_) | Phase::Idle { .. })
            && self.event_ready.is_none()
            && self.input.len() - self.input_pos < self.limits.pipelined_bytes_max
    }

    /// When [`Session::handle_timeout`] should be called next; `None` while the driver owes
    /// an answer and once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let login_deadline = self.started_at + self.limits.not_authenticated_timeout();
        let not_authenticated = self.state == SessionState::NotAuthenticated;
        match self.phase {
            Phase::Closed | Phase::Awaiting(_) => return None,
            Phase::AwaitingTls => return Some(login_deadline),
            Phase::Command | Phase::Sasl(_) | Phase::Idle { .. } => {}
        }
        let partial =
            !self.frame.text.is_empty() || self.frame.failure.is_some() || self.frame.reading != Reading::Line;
        let inactivity = if partial {
            self.limits.command_timeout().min(self.limits.idle_timeout())
        } else {
            self.limits.idle_timeout()
        };
        let deadline = self.last_activity + inactivity;
        Some(if not_authenticated { deadline.min(login_deadline) } else { deadline })
    }

    /// Checks the timeouts at `now`. On expiry `* BYE` is queued and the next
    /// [`Session::poll_event`] returns [`Event::Close`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_activity(now);
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            self.close("Autologout; idle for too long", CloseReason::Timeout);
        }
    }

    /// Writes untagged responses (at any time: during a command, while idling, or between
    /// commands for unsolicited updates).
    pub fn untagged(&mut self) -> Responses<'_> {
        let capabilities = self.capabilities();
        let utf8 = self.utf8_names();
        Responses { out: &mut self.output, utf8, capabilities }
    }

    /// Ends the command of [`Event::Command`], [`Event::IdleDone`] or [`Event::Compress`]
    /// with `tag OK|NO|BAD [code] text`, and reads on. The session follows the outcome:
    /// an `OK` to `SELECT`/`EXAMINE` selects (read-only for `EXAMINE` or a `READ-ONLY`
    /// code), an `OK` to `CLOSE`/`UNSELECT` unselects, an `OK` to `COMPRESS` marks
    /// compression active. A `BAD` counts against [`Limits::errors_max`]. Ignored once the
    /// session is closed; panics (a programmer error) if no command awaits or `tag` differs.
    pub fn complete(&mut self, tag: &str, status: Status, code: Option<Code<'_>>, text: &str) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let Phase::Awaiting(Awaiting::Command { tag: pending_tag, kind }) =
            mem::replace(&mut self.phase, Phase::Command)
        else {
            panic!("complete({tag:?}) without a command awaiting completion");
        };
        assert_eq!(pending_tag, tag, "complete for the wrong tag");
        self.activity_pending = true;
        if status == Status::Ok {
            match kind {
                Pending::Select { read_only } => {
                    let read_only = read_only || code == Some(Code::ReadOnly);
                    self.state = SessionState::Selected { read_only };
                }
                Pending::Unselect => self.state = SessionState::Authenticated,
                Pending::Compress => self.compress_active = true,
                Pending::Other => {}
            }
        }
        self.write_status(tag, status.as_str(), code, text);
        if status == Status::Bad {
            self.count_error();
        }
    }

    /// Answers [`Event::Login`]: `Ok` authenticates (`tag OK [CAPABILITY ...]`), `Err` gives
    /// `tag NO [code]` and counts against [`Limits::auth_failures_max`]. Ignored once closed;
    /// panics (a programmer error) if no login awaits.
    pub fn handle_login(&mut self, result: Result<(), LoginError>) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        let Phase::Awaiting(Awaiting::Login { tag }) = mem::replace(&mut self.phase, Phase::Command) else {
            panic!("handle_login without a login awaiting an answer");
        };
        self.activity_pending = true;
        let (code, text) = match result {
            Ok(()) => {
                self.state = SessionState::Authenticated;
                self.write_status(&tag, "OK", Some(Code::Capability), "Logged in");
                return;
            }
            Err(LoginError::Failed) => (Code::AuthenticationFailed, "Authentication failed"),
            Err(LoginError::AuthorizationFailed) => (Code::AuthorizationFailed, "Authorization failed"),
            Err(LoginError::Unavailable) => (Code::Unavailable, "Authentication is unavailable, try again later"),
            Err(LoginError::Expired) => (Code::Expired, "Credentials have expired"),
            Err(LoginError::ContactAdmin) => (Code::ContactAdmin, "Account disabled, contact your administrator"),
        };
        self.write_status(&tag, "NO", Some(code), text);
        self.n_auth_failures += 1;
        if self.n_auth_failures as usize >= self.limits.auth_failures_max {
            self.close("Too many authentication failures", CloseReason::TooManyAuthFailures);
        }
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded. The client must ask for the
    /// capabilities again (RFC 9051 §6.2.1).
    pub fn handle_tls_started(&mut self) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        assert!(matches!(self.phase, Phase::AwaitingTls), "handle_tls_started without StartTls");
        self.phase = Phase::Command;
        self.tls_active = true;
        self.input.clear();
        self.input_pos = 0;
        self.activity_pending = true;
    }

    /// Bytes received after the command that started compression, still compressed: after
    /// completing `COMPRESS` with `OK`, inflate them and feed them back.
    pub fn take_buffered_input(&mut self) -> Vec<u8> {
        let rest = self.input.split_off(self.input_pos);
        self.input.clear();
        self.input_pos = 0;
        rest
    }

    /// Marks a mailbox selected without a `SELECT` completion (normally
    /// [`Session::complete`] does it).
    pub fn selected(&mut self, read_only: bool) {
        if self.state != SessionState::NotAuthenticated && self.state != SessionState::Logout {
            self.state = SessionState::Selected { read_only };
        }
    }

    /// Leaves the selected state (e.g. the mailbox was deleted by another session).
    pub fn unselected(&mut self) {
        if matches!(self.state, SessionState::Selected { .. }) {
            self.state = SessionState::Authenticated;
        }
    }

    /// Ends the session with `* BYE text` (server shutdown, mailbox gone). The next
    /// [`Session::poll_event`] returns [`Event::Close`].
    pub fn bye(&mut self, text: &str) {
        if !matches!(self.phase, Phase::Closed) {
            self.close(text, CloseReason::Driver);
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn enabled(&self) -> Enabled {
        self.enabled
    }

    /// Whether mailbox names are UTF-8 on the wire (IMAP4rev2 or UTF8=ACCEPT enabled).
    pub fn utf8_names(&self) -> bool {
        self.enabled.imap4rev2 || self.enabled.utf8_accept
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the command tagged `tag` still waits for [`Session::complete`].
    pub fn is_awaiting(&self, tag: &str) -> bool {
        matches!(&self.phase, Phase::Awaiting(Awaiting::Command { tag: pending, .. }) if pending == tag)
    }

    pub fn is_idling(&self) -> bool {
        matches!(self.phase, Phase::Idle { .. })
    }

    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    pub fn compress_active(&self) -> bool {
        self.compress_active
    }

    pub(crate) fn buffered_bytes_inner(&self) -> usize {
        self.input.len() + self.frame.text.len() + self.frame.literals.iter().map(Vec::len).sum::<usize>()
    }

    /// Heap bytes the session holds in its buffers (capacity, not length).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.input.capacity()
            + self.frame.text.capacity()
            + self.output.capacity()
            + self.frame.literals.capacity() * 24
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            extensions: self.extensions,
            starttls_available: self.starttls_available,
            tls_active: self.tls_active,
            plaintext_auth_allowed: self.plaintext_auth_allowed,
            authenticated: self.state != SessionState::NotAuthenticated,
            compress_active: self.compress_active,
            append_limit: self.limits.literal_bytes_max,
        }
    }

    fn refresh_activity(&mut self, now: Instant) {
        if self.activity_pending {
            self.activity_pending = false;
            self.last_activity = now;
        }
    }

    fn compact_input(&mut self) {
        if self.input_pos == self.input.len() {
            self.input.clear();
            self.input_pos = 0;
        } else if self.input_pos > 0 {
            self.input.drain(..self.input_pos);
            self.input_pos = 0;
        }
        if self.input.capacity() > BUFFER_KEEP_BYTES && self.input.len() <= BUFFER_KEEP_BYTES / 4 {
            self.input.shrink_to(self.input.len());
        }
    }

    // ------------------------------------------------------------ framing

    fn step_command(&mut self) -> Step {
        match self.frame.reading {
            Reading::Line => self.step_line(),
            Reading::Literal { remaining } => {
                let available = self.input.len() - self.input_pos;
                if available == 0 {
                    return Step::NeedInput;
                }
                let take = remaining.min(available);
                let literal = self.frame.literals.last_mut().expect("a literal is being read");
                literal.extend_from_slice(&self.input[self.input_pos..self.input_pos + take]);
                self.input_pos += take;
                self.frame.reading =
                    if take == remaining { Reading::Line } else { Reading::Literal { remaining: remaining - take } };
                Step::Continue
            }
            Reading::Discard { remaining } => {
                let available = self.input.len() - self.input_pos;
                if available == 0 {
                    return Step::NeedInput;
                }
                let take = remaining.min(available as u64) as usize;
                self.input_pos += take;
                self.frame.reading = if take as u64 == remaining {
                    Reading::Line
                } else {
                    Reading::Discard { remaining: remaining - take as u64 }
                };
                Step::Continue
            }
        }
    }

    /// Reads up to the next LF into the frame; at a line end, starts a literal or runs the
    /// command.
    fn step_line(&mut self) -> Step {
        if !self.read_line_segment() {
            return Step::NeedInput;
        }
        match self.frame.marker() {
            Some(marker) => self.literal_announced(marker),
            None => self.command_complete(),
        }
    }

    /// Moves input up to and including the next LF into the frame (or its tail, once the
    /// command is refused). Returns whether a line end was reached.
    fn read_line_segment(&mut self) -> bool {
        let available = &self.input[self.input_pos..];
        if available.is_empty() {
            return false;
        }
        let (len, complete) = match available.iter().position(|&byte| byte == b'\n') {
            Some(idx) => (idx + 1, true),
            None => (available.len(), false),
        };
        let segment = &self.input[self.input_pos..self.input_pos + len];
        self.frame.push_line(segment, self.limits.command_line_bytes_max);
        self.input_pos += len;
        complete
    }

    fn literal_announced(&mut self, marker: Marker) -> Step {
        let append = *self
            .frame
            .append
            .get_or_insert_with(|| self.state != SessionState::NotAuthenticated && is_append(&self.frame.text));
        let failure = self.frame.failure.or_else(|| {
            let over = if append {
                marker.length > self.limits.literal_bytes_max as u64
                    || (self.frame.append_bytes as u64).saturating_add(marker.length)
                        > self.limits.append_bytes_max as u64
            } else {
                (self.frame.command_bytes as u64).saturating_add(marker.length)
                    > self.limits.command_line_bytes_max as u64
            };
            if !marker.sync && !self.extensions.literal_plus && marker.length > LITERAL_MINUS_BYTES_MAX {
                Some(Failure::LiteralMinus)
            } else if over {
                Some(Failure::LiteralTooBig { append })
            } else {
                None
            }
        });
        let Some(failure) = failure else {
            // Within limits: `marker.length` fits in usize as it is below a usize limit.
            let length = marker.length as usize;
            if marker.sync {
                self.output.extend_from_slice(b"+ Ready for literal data\r\n");
            }
            self.frame.literals.push(Vec::with_capacity(length.min(64 * 1024)));
            if append {
                self.frame.append_bytes += length;
            } else {
                self.frame.command_bytes += length;
            }
            self.frame.reading = Reading::Literal { remaining: length };
            return Step::Continue;
        };
        self.frame.fail(failure);
        if marker.sync {
            // RFC 9051 §7.5: without `+` the client does not send the literal; the command
            // ends here.
            self.finish_failed();
        } else if marker.length > self.limits.literal_discard_bytes_max {
            self.close("Literal too large", CloseReason::LiteralTooBig);
        } else {
            self.frame.reading = Reading::Discard { remaining: marker.length };
        }
        Step::Continue
    }

    fn command_complete(&mut self) -> Step {
        if self.frame.failure.is_some() {
            self.finish_failed();
            return Step::Continue;
        }
        let text = strip_line_end(&self.frame.text);
        if text.is_empty() && self.frame.literals.is_empty() {
            // An empty line is ignored, as clients send a stray CRLF after a literal.
            self.frame.reset();
            return Step::Continue;
        }
        let options = ParseOptions { utf8: self.utf8_names(), depth_max: self.limits.nesting_depth_max };
        let literals = mem::take(&mut self.frame.literals);
        let res = parse::parse_command(text, literals, options);
        self.frame.reset();
        match res {
            Ok(command) => self.dispatch(command),
            Err(rejected) => {
                let prefix = rejected.tag.as_deref().unwrap_or("*");
                let status = if rejected.error.no { "NO" } else { "BAD" };
                self.write_status(prefix, status, rejected.error.code, rejected.error.message);
                if !rejected.error.no {
                    self.count_error();
                }
                Step::Continue
            }
        }
    }

    /// Answers a command refused while it was read.
    fn finish_failed(&mut self) {
        let failure = self.frame.failure.expect("a failed command");
        let tag = self.frame.failed_tag.take();
        self.frame.reset();
        let (status, text) = match failure {
            Failure::TooLong => ("BAD", "Command line too long"),
            Failure::LiteralTooBig { append: true } => ("NO", "Message too big"),
            Failure::LiteralTooBig { append: false } => ("BAD", "Literal too big for this command"),
            Failure::LiteralMinus => ("BAD", "Non-synchronizing literals are limited to 4096 octets"),
        };
        self.write_status(tag.as_deref().unwrap_or("*"), status, Some(Code::TooBig), text);
        if status == "BAD" {
            self.count_error();
        }
    }

    /// Reads one line for SASL or IDLE, bounded by the command limit.
    fn take_simple_line(&mut self) -> SimpleLine {
        if !self.read_line_segment() {
            return SimpleLine::Incomplete;
        }
        if self.frame.failure.is_some() {
            self.frame.reset();
            return SimpleLine::TooLong;
        }
        let line = strip_line_end(&self.frame.text).to_vec();
        self.frame.reset();
        SimpleLine::Line(line)
    }

    fn step_idle(&mut self) -> Step {
        let line = match self.take_simple_line() {
            SimpleLine::Incomplete => return Step::NeedInput,
            SimpleLine::Line(line) => line,
            SimpleLine::TooLong => Vec::new(),
        };
        let Phase::Idle { tag } = mem::replace(&mut self.phase, Phase::Command) else {
            unreachable!("step_idle outside IDLE");
        };
        self.phase = Phase::Awaiting(Awaiting::Command { tag: tag.clone(), kind: Pending::Other });
        if !line.eq_ignore_ascii_case(b"DONE") {
            // RFC 2177 §3: only DONE ends IDLE; anything else is an error, and ends it too.
            self.write_status("*", "BAD", None, "Expected DONE");
            self.count_error();
        }
        Step::Event(Event::IdleDone { tag })
    }

    fn step_sasl(&mut self) -> Step {
        let line = match self.take_simple_line() {
            SimpleLine::Incomplete => return Step::NeedInput,
            SimpleLine::Line(line) => Some(line),
            SimpleLine::TooLong => None,
        };
        let Phase::Sasl(sasl) = mem::replace(&mut self.phase, Phase::Command) else {
            unreachable!("step_sasl outside AUTHENTICATE");
        };
        let Some(line) = line else {
            return self.bad(&sasl.tag, "SASL response too long");
        };
        // RFC 9051 §6.2.2: a cancelled exchange (`*`) gets BAD, as does a malformed one.
        let next = sasl.exchange.respond_line(&line);
        self.sasl_next(sasl.tag, next)
    }

    fn sasl_next(&mut self, tag: String, next: Result<hameau_sasl::Next, hameau_sasl::Error>) -> Step {
        match next {
            Ok(hameau_sasl::Next::Challenge { exchange, challenge }) => {
                self.sasl_challenge(challenge);
                self.phase = Phase::Sasl(Sasl { tag, exchange });
                Step::Continue
            }
            Ok(hameau_sasl::Next::Done(credentials)) => {
                let hameau_sasl::Credentials { authzid, username, password, .. } = credentials;
                self.login_event(tag, authzid, username, password)
            }
            Err(e) => self.bad(&tag, &e.to_string()),
        }
    }

    /// `+ challenge` (RFC 9051 §7.5).
    fn sasl_challenge(&mut self, challenge: &str) {
        self.output.extend_from_slice(b"+ ");
        self.output.extend_from_slice(challenge.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn login_event(&mut self, tag: String, authzid: Option<String>, username: String, password: String) -> Step {
        self.phase = Phase::Awaiting(Awaiting::Login { tag: tag.clone() });
        Step::Event(Event::Login { tag, authzid, username, password })
    }

    // ------------------------------------------------------------ commands

    fn dispatch(&mut self, command: Command) -> Step {
        let tag = command.tag.as_str();
        if let Some(text) = self.wrong_state(&command.body) {
            return self.bad(tag, text);
        }
        if !self.extension_on(&command.body) {
            return self.bad(tag, "Unknown command");
        }
        match &command.body {
            CommandBody::Capability => {
                self.untagged().capability();
                self.write_status(tag, "OK", None, "CAPABILITY completed");
                Step::Continue
            }
            CommandBody::Noop if self.state == SessionState::NotAuthenticated => {
                self.write_status(tag, "OK", None, "NOOP completed");
                Step::Continue
            }
            CommandBody::Logout => {
                self.output.extend_from_slice(b"* BYE Logging out\r\n");
                self.write_status(tag, "OK", None, "LOGOUT completed");
                self.end(CloseReason::Logout);
                Step::Continue
            }
            CommandBody::StartTls => self.starttls(tag),
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => self.login(command),
            CommandBody::Enable { capabilities } => {
                self.enable(capabilities);
                self.write_status(tag, "OK", None, "ENABLE completed");
                Step::Continue
            }
            CommandBody::Idle => {
                self.output.extend_from_slice(b"+ idling\r\n");
                self.phase = Phase::Idle { tag: command.tag.clone() };
                Step::Event(Event::Idle { tag: command.tag })
            }
            CommandBody::Compress if self.compress_active => {
                // RFC 4978 §3.
                self.write_status(tag, "NO", Some(Code::CompressionActive), "DEFLATE is active already");
                Step::Continue
            }
            CommandBody::Compress => {
                self.phase = Phase::Awaiting(Awaiting::Command { tag: command.tag.clone(), kind: Pending::Compress });
                Step::Event(Event::Compress { tag: command.tag })
            }
            _ => self.driver_command(command),
        }
    }

    fn driver_command(&mut self, command: Command) -> Step {
        let mut kind = Pending::Other;
        match &command.body {
            CommandBody::Select { read_only, params, .. } => {
                if params.qresync.is_some() && !self.enabled.qresync {
                    // RFC 7162 §3.2.5.
                    return self.bad(&command.tag, "QRESYNC is not enabled");
                }
                if matches!(self.state, SessionState::Selected { .. }) {
                    // RFC 9051 §6.3.2, RFC 7162 §3.2.11: the previous mailbox closes first.
                    self.state = SessionState::Authenticated;
                    if self.enabled.qresync || self.enabled.imap4rev2 {
                        self.write_status("*", "OK", Some(Code::Closed), "Previous mailbox is now closed");
                    }
                }
                kind = Pending::Select { read_only: *read_only };
            }
            CommandBody::Close | CommandBody::Unselect => kind = Pending::Unselect,
            CommandBody::Fetch { vanished: true, .. } if !self.enabled.qresync => {
                // RFC 7162 §3.2.6.
                return self.bad(&command.tag, "VANISHED needs QRESYNC enabled");
            }
            _ => {}
        }
        if let Some(text) = self.over_limit(&command.body) {
            // RFC 5530 §3: LIMIT, the command is valid but asks for more than allowed.
            self.write_status(&command.tag, "NO", Some(Code::Limit), &text);
            return Step::Continue;
        }
        if command.enables_condstore() {
            self.enabled.condstore = true;
        }
        self.phase = Phase::Awaiting(Awaiting::Command { tag: command.tag.clone(), kind });
        Step::Event(Event::Command(command))
    }

    /// Why a well-formed command asks for more than [`Limits`] allow, if it does.
    fn over_limit(&self, body: &CommandBody) -> Option<String> {
        let limits = &self.limits;
        match body {
            CommandBody::Fetch { attributes, .. } if attributes.len() > limits.fetch_items_max => {
                Some(format!("Too many FETCH items (at most {})", limits.fetch_items_max))
            }
            CommandBody::Search { criteria: key, .. }
            | CommandBody::Sort { search: key, .. }
            | CommandBody::Thread { search: key, .. }
                if count_keys(key) > limits.search_keys_max =>
            {
                Some(format!("Too many search keys (at most {})", limits.search_keys_max))
            }
            CommandBody::List(list) => {
                let bytes: usize = list.patterns.iter().map(|pattern| list.reference.len() + pattern.len()).sum();
                (bytes > limits.list_pattern_bytes_max)
                    .then(|| format!("LIST patterns too long (at most {} bytes)", limits.list_pattern_bytes_max))
            }
            CommandBody::Lsub { reference, pattern } => (reference.len() + pattern.len()
                > limits.list_pattern_bytes_max)
                .then(|| format!("LSUB pattern too long (at most {} bytes)", limits.list_pattern_bytes_max)),
            _ => None,
        }
    }

    fn starttls(&mut self, tag: &str) -> Step {
        if self.tls_active {
            return self.bad(tag, "TLS is active already");
        }
        if !self.starttls_available {
            return self.bad(tag, "STARTTLS is not available");
        }
        self.write_status(tag, "OK", None, "Begin TLS negotiation now");
        // CVE-2011-0411: nothing pipelined after STARTTLS in clear text may be used.
        self.input.clear();
        self.input_pos = 0;
        self.phase = Phase::AwaitingTls;
        Step::Event(Event::StartTls)
    }

    fn login(&mut self, command: Command) -> Step {
        let tag = command.tag;
        if !self.capabilities().login_allowed() {
            self.write_status(&tag, "NO", Some(Code::PrivacyRequired), "Login requires TLS");
            return Step::Continue;
        }
        match command.body {
            CommandBody::Login { username, password } => self.login_event(tag, None, username, password),
            CommandBody::Authenticate { mechanism, initial_response } => {
                if initial_response.is_some() && !self.extensions.sasl_ir {
                    return self.bad(&tag, "SASL-IR is not supported");
                }
                let mechanism = match hameau_sasl::Mechanism::parse(&mechanism) {
                    Some(hameau_sasl::Mechanism::Plain) if self.extensions.auth_plain => hameau_sasl::Mechanism::Plain,
                    Some(hameau_sasl::Mechanism::Login) if self.extensions.auth_login => hameau_sasl::Mechanism::Login,
                    _ => {
                        self.write_status(&tag, "NO", None, "Unsupported authentication mechanism");
                        return Step::Continue;
                    }
                };
                let exchange = hameau_sasl::Exchange::new(mechanism);
                if let Some(response) = initial_response {
                    let next = exchange.respond(response);
                    return self.sasl_next(tag, next);
                }
                self.sasl_challenge(exchange.first_challenge());
                self.phase = Phase::Sasl(Sasl { tag, exchange });
                Step::Continue
            }
            _ => unreachable!("login() is called for LOGIN and AUTHENTICATE"),
        }
    }

    /// RFC 5161: enables what is known and on, ignores the rest, and lists what was newly
    /// enabled in `* ENABLED`.
    fn enable(&mut self, capabilities: &[String]) {
        let mut newly: Vec<&str> = Vec::new();
        for capability in capabilities {
            let ext = &self.extensions;
            let (flag, name) = match capability.as_str() {
                "CONDSTORE" if ext.condstore => (&mut self.enabled.condstore, "CONDSTORE"),
                "QRESYNC" if ext.qresync && ext.condstore => {
                    // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
                    self.enabled.condstore = true;
                    (&mut self.enabled.qresync, "QRESYNC")
                }
                "UTF8=ACCEPT" if ext.utf8_accept => (&mut self.enabled.utf8_accept, "UTF8=ACCEPT"),
                "IMAP4REV2" if ext.imap4rev2 => (&mut self.enabled.imap4rev2, "IMAP4rev2"),
                _ => continue,
            };
            if !*flag {
                *flag = true;
                newly.push(name);
            }
        }
        self.output.extend_from_slice(b"* ENABLED");
        for name in newly {
            self.output.push(b' ');
            self.output.extend_from_slice(name.as_bytes());
        }
        self.output.extend_from_slice(b"\r\n");
    }

    /// Why the command is not valid in the current state, if it is not.
    fn wrong_state(&self, body: &CommandBody) -> Option<&'static str> {
        use CommandBody as C;
        let not_authenticated = self.state == SessionState::NotAuthenticated;
        let selected = matches!(self.state, SessionState::Selected { .. });
        match body {
            C::Capability | C::Noop | C::Logout | C::Id { .. } => None,
            C::StartTls | C::Authenticate { .. } | C::Login { .. } => {
                (!not_authenticated).then_some("Already authenticated")
            }
            _ if not_authenticated => Some("Not authenticated"),
            // RFC 5161 §3.1: ENABLE only in the authenticated state.
            C::Enable { .. } => selected.then_some("ENABLE is valid only before SELECT"),
            C::Check
            | C::Close
            | C::Unselect
            | C::Expunge { .. }
            | C::Search { .. }
            | C::Sort { .. }
            | C::Thread { .. }
            | C::Fetch { .. }
            | C::Store { .. }
            | C::Copy { .. }
            | C::Move { .. } => (!selected).then_some("No mailbox selected"),
            _ => None,
        }
    }

    /// Whether the extension a command needs is switched on.
    fn extension_on(&self, body: &CommandBody) -> bool {
        use CommandBody as C;
        let ext = &self.extensions;
        match body {
            C::Idle => ext.idle,
            C::Id { .. } => ext.id,
            C::Enable { .. } => ext.enable,
            C::Namespace => ext.namespace,
            C::Expunge { uids: Some(_) } => ext.uidplus,
            C::Move { .. } => ext.move_messages,
            C::Create { special_use, .. } => special_use.is_empty() || ext.create_special_use,
            C::List(list) => {
                (!list.extended || ext.list_extended)
                    && (list.returns.status.is_none() || ext.list_status)
                    && (!(list.selection.special_use || list.returns.special_use) || ext.special_use)
            }
            C::Unselect => ext.unselect,
            C::Search { returns, criteria, .. } => {
                returns.is_none_or(|returns| ext.esearch && (!returns.save || ext.searchres))
                    && (ext.searchres || !search_uses_saved(criteria))
            }
            C::Sort { .. } => ext.sort,
            C::Thread { .. } => ext.thread,
            C::Select { params, .. } => {
                (!params.condstore || ext.condstore) && (params.qresync.is_none() || ext.qresync)
            }
            C::GetQuota { .. } | C::GetQuotaRoot { .. } | C::SetQuota { .. } => ext.quota,
            C::Status { items, .. } => {
                (!items.contains(&crate::StatusItem::Size) || ext.status_size)
                    && (!items.contains(&crate::StatusItem::HighestModSeq) || ext.condstore)
            }
            C::Append { messages, .. } => {
                (messages.len() == 1 || ext.multiappend)
                    && (ext.binary || messages.iter().all(|message| !message.binary))
            }
            C::Fetch { attributes, changed_since, .. } => {
                let binary = attributes.iter().any(|attribute| {
                    matches!(attribute, crate::FetchAttribute::Binary { .. } | crate::FetchAttribute::BinarySize { .. })
                });
                (!binary || ext.binary) && (changed_since.is_none() || ext.condstore)
            }
            C::Store { unchanged_since, .. } => unchanged_since.is_none() || ext.condstore,
            C::Compress => ext.compress,
            _ => true,
        }
    }

    // ------------------------------------------------------------ output

    fn bad(&mut self, tag: &str, text: &str) -> Step {
        self.write_status(tag, "BAD", None, text);
        self.count_error();
        Step::Continue
    }

    fn count_error(&mut self) {
        self.n_errors += 1;
        if self.n_errors as usize >= self.limits.errors_max && !matches!(self.phase, Phase::Closed) {
            self.close("Too many invalid commands", CloseReason::TooManyErrors);
        }
    }

    fn close(&mut self, text: &str, reason: CloseReason) {
        self.write_status("*", "BYE", None, text);
        self.end(reason);
    }

    fn end(&mut self, reason: CloseReason) {
        self.phase = Phase::Closed;
        self.state = SessionState::Logout;
        self.event_ready = Some(Event::Close { reason });
        self.input = Vec::new();
        self.input_pos = 0;
        self.frame = Frame::default();
    }

    fn write_status(&mut self, prefix: &str, status: &str, code: Option<Code<'_>>, text: &str) {
        let capabilities = self.capabilities();
        let utf8 = self.utf8_names();
        write::write_status_line(&mut self.output, prefix, status, code, text, utf8, &capabilities);
    }
}

impl Frame {
    /// Adds a line segment: stored while the command fits its limit, else the command fails
    /// and only the tail is kept.
    fn push_line(&mut self, segment: &[u8], limit: usize) {
        if self.failure.is_none() {
            if self.command_bytes + segment.len() <= limit {
                self.text.extend_from_slice(segment);
                self.command_bytes += segment.len();
                return;
            }
            let head = if self.text.is_empty() { segment } else { &self.text };
            let tag = tag_of(head);
            self.fail(Failure::TooLong);
            self.failed_tag = tag;
        }
        self.push_tail(segment);
    }

    fn push_tail(&mut self, bytes: &[u8]) {
        if bytes.len() >= TAIL_BYTES {
            self.tail.copy_from_slice(&bytes[bytes.len() - TAIL_BYTES..]);
            self.tail_len = TAIL_BYTES;
            return;
        }
        let keep = (TAIL_BYTES - bytes.len()).min(self.tail_len);
        self.tail.copy_within(self.tail_len - keep..self.tail_len, 0);
        self.tail[keep..keep + bytes.len()].copy_from_slice(bytes);
        self.tail_len = keep + bytes.len();
    }

    /// Marks the command refused, keeping its tag and dropping what was stored.
    fn fail(&mut self, failure: Failure) {
        if self.failure.is_some() {
            return;
        }
        self.failed_tag = tag_of(&self.text);
        self.failure = Some(failure);
        self.text.clear();
        self.literals = Vec::new();
        self.tail_len = 0;
    }

    /// The literal announcement ending the current line, if any.
    fn marker(&self) -> Option<Marker> {
        let line = if self.failure.is_none() { &self.text[..] } else { &self.tail[..self.tail_len] };
        literal_marker(line)
    }

    /// Forgets the command, keeping small buffers for the next one.
    fn reset(&mut self) {
        let mut text = mem::take(&mut self.text);
        text.clear();
        if text.capacity() > BUFFER_KEEP_BYTES {
            text = Vec::new();
        }
        *self = Frame { text, ..Frame::default() };
    }
}

/// Finds `{n}`, `{n+}`, `~{n}` or `~{n+}` just before the line ending of `line`.
fn literal_marker(line: &[u8]) -> Option<Marker> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let (line, sync) = match line.strip_suffix(b"+") {
        Some(rest) => (rest, false),
        None => (line, true),
    };
    let n_digits = line.iter().rev().take_while(|byte| byte.is_ascii_digit()).count();
    if n_digits == 0 || line.len() == n_digits || line[line.len() - n_digits - 1] != b'{' {
        return None;
    }
    let digits = &line[line.len() - n_digits..];
    // Absurd lengths saturate, and are refused like any over the limit.
    let length = digits.iter().fold(0u64, |acc, &byte| acc.saturating_mul(10).saturating_add(u64::from(byte - b'0')));
    Some(Marker { length, sync })
}

fn strip_line_end(text: &[u8]) -> &[u8] {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.strip_suffix(b"\r").unwrap_or(text)
}

/// The tag at the start of a command, if it is a valid one followed by a space.
fn tag_of(text: &[u8]) -> Option<String> {
    let end = text.iter().position(|&byte| byte == b' ')?;
    let tag = &text[..end];
    parse::is_tag(tag).then(|| String::from_utf8_lossy(tag).into_owned())
}

/// Whether the command being read is `APPEND` (`tag APPEND ...`).
fn is_append(text: &[u8]) -> bool {
    let Some(start) = text.iter().position(|&byte| byte == b' ') else {
        return false;
    };
    let rest = &text[start + 1..];
    rest.len() > 6 && rest[..6].eq_ignore_ascii_case(b"APPEND") && rest[6] == b' '
}

/// The keys of a search, `OR` and `NOT` counted, groups not (without recursion: the
/// parser bounds the depth, but counting needs none).
fn count_keys(key: &SearchKey) -> usize {
    let mut count = 0;
    let mut stack = vec![key];
    while let Some(key) = stack.pop() {
        count += usize::from(!matches!(key, SearchKey::And(_)));
        match key {
            SearchKey::And(keys) => stack.extend(keys.iter()),
            SearchKey::Not(key) => stack.push(key),
            SearchKey::Or(left, right) => stack.extend([&**left, &**right]),
            _ => {}
        }
    }
    count
}

fn search_uses_saved(key: &SearchKey) -> bool {
    match key {
        SearchKey::SequenceSet(set) | SearchKey::Uid(set) => set.is_saved(),
        SearchKey::And(keys) => keys.iter().any(search_uses_saved),
        SearchKey::Not(key) => search_uses_saved(key),
        SearchKey::Or(left, right) => search_uses_saved(left) || search_uses_saved(right),
        _ => false,
    }
}

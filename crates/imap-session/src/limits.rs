//! Every limit of one IMAP session, with its default and the reason for it.

use std::time::Duration;

use hameau_limits::{Problem, range};

/// The section of the configuration file these limits are keys of.
const SECTION: &str = "imap";

/// The limits of one IMAP session: keys of `[imap]`, declared here; `config` reads them
/// into `hameau_imap::Options::limits`. [`Limits::check`] says whether an operator may set
/// them; [`crate::Session::new`] asserts [`Limits::check_consistent`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of one command, CRLFs included, except the message literals of `APPEND`:
    /// the command lines plus the other literals. RFC 7162 §4 asks servers to accept lines of
    /// at least 8192 octets (long `UID FETCH` sets); 64 KiB is Dovecot's
    /// `imap_max_line_length`. Over it: `tag BAD [TOOBIG]`, the rest of the command is
    /// skipped without being buffered.
    pub command_line_bytes_max: usize,
    /// Largest message literal of `APPEND`, advertised as `APPENDLIMIT` (RFC 7889). 64 MiB
    /// holds the 25 MB attachments of Gmail and Outlook after base64 and leaves room for
    /// Sent copies of large mails. Over it: `tag NO [TOOBIG]` without `+` for a
    /// synchronising literal; a non-synchronising one is read and dropped first.
    pub literal_bytes_max: usize,
    /// All message literals of one `APPEND` together (MULTIAPPEND, RFC 3502): the whole
    /// command is buffered before it reaches the driver, so this bounds a session's memory.
    /// Over it: `tag NO [TOOBIG]`.
    pub append_bytes_max: usize,
    /// A non-synchronising literal over its limit is read and dropped (its bytes are coming
    /// anyway, RFC 7888 §4) when it is at most this large. Beyond it, skipping is not worth
    /// the bandwidth: `* BYE` and the session closes. 256 MiB is four times the default
    /// message limit.
    pub literal_discard_bytes_max: u64,
    /// Depth of nested parentheses, `NOT` and `OR` in one command. Real clients nest a
    /// handful of levels; 32 bounds the parser's recursion. Deeper: `tag BAD`.
    pub nesting_depth_max: usize,
    /// Unprocessed pipelined input the session holds before [`crate::Session::wants_input`]
    /// turns false: commands are run one at a time, and the rest waits in this buffer.
    /// 64 KiB holds hundreds of pipelined `FETCH` commands (mbsync pipelines tens).
    pub pipelined_bytes_max: usize,
    /// `BAD` answers (the session's and the driver's) before `* BYE` and closing. 20 lets
    /// a confused client recover (Dovecot disconnects after 20 bad commands too).
    pub errors_max: usize,
    /// Failed `LOGIN`/`AUTHENTICATE` attempts before `* BYE`. 3, as Dovecot; the driver
    /// also delays its failure answers.
    pub auth_failures_max: usize,
    /// How long an authenticated session may stay without input (IDLE included). RFC 9051
    /// §5.4 requires at least 30 minutes; clients re-send `IDLE` every 29 minutes (RFC 2177).
    pub idle_timeout_s: u64,
    /// How long a session may stay before login, from the greeting. 60 s covers the TLS
    /// handshake and a typed login, and limits idle unauthenticated connections.
    pub not_authenticated_timeout_s: u64,
    /// How long a partly received command (a line or a literal) may wait for its next bytes.
    /// 5 minutes, as SMTP's data timeout: a literal that never comes is not waited for the
    /// whole idle timeout while holding its buffer.
    pub command_timeout_s: u64,
    /// How long one write to the client may wait for it to read. A client that reads
    /// nothing for 60 s while responses wait for it is gone or hostile (mobile links stall
    /// for seconds, not minutes); the driver closes the connection and frees its slot.
    pub write_timeout_s: u64,
    /// Items (macros expanded, each section counted) of one `FETCH`. Thunderbird asks for
    /// about 8, Apple Mail about 12; 64 leaves room. Over it: `tag NO [LIMIT]`.
    pub fetch_items_max: usize,
    /// Search keys (`NOT`, `OR` and parenthesised groups counted) of one `SEARCH`, `SORT`
    /// or `THREAD`. Thunderbird's quick filter and saved searches stay under 100; each key
    /// costs a pass over every message. Over it: `tag NO [LIMIT]`.
    pub search_keys_max: usize,
    /// Bytes of all patterns of one `LIST` or `LSUB`, the reference included once per
    /// pattern. A mailbox name has at most 1,000 bytes (the mail model's limit); 1,024 holds
    /// one with wildcards. Over it: `tag NO [LIMIT]`.
    pub list_pattern_bytes_max: usize,
    /// Bytes of responses the driver holds before writing them: FETCH writes each
    /// message's data as soon as this much waits, so a `FETCH 1:* BODY[]` holds one message
    /// and this buffer, not the mailbox. 256 KiB keeps writes large.
    pub output_bytes_max: usize,
    /// Bytes inflated from the client's input at a time under COMPRESS=DEFLATE (RFC 4978):
    /// the rest of what was read stays compressed until the session has used these. A
    /// deflate stream expands up to 1,032 times; 64 KiB matches `pipelined_bytes_max`.
    pub inflate_bytes_max: usize,
    /// References considered per message by THREAD=REFERENCES (RFC 5256 §2.2), the last
    /// ones: the last is the parent, the earlier ones only link ancestors that are usually
    /// here with References of their own. 32 threads real conversations as the whole list
    /// would, and bounds what one message costs.
    pub thread_references_max: usize,
    /// Steps of loop checking one THREAD may take (walks up the tree when a link is added
    /// under a message that has replies). Honest mailboxes of 100,000 messages need far
    /// less than 10,000,000 (tens of milliseconds); past it: `tag NO [LIMIT]`.
    pub thread_work_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        const KIB: usize = 1024;
        const MIB: usize = 1024 * KIB;
        Limits {
            command_line_bytes_max: 64 * KIB,
            literal_bytes_max: 64 * MIB,
            append_bytes_max: 64 * MIB,
            literal_discard_bytes_max: 256 * MIB as u64,
            nesting_depth_max: 32,
            pipelined_bytes_max: 64 * KIB,
            errors_max: 20,
            auth_failures_max: 3,
            idle_timeout_s: 30 * 60,
            not_authenticated_timeout_s: 60,
            command_timeout_s: 5 * 60,
            write_timeout_s: 60,
            fetch_items_max: 64,
            search_keys_max: 256,
            list_pattern_bytes_max: 1024,
            output_bytes_max: 256 * KIB,
            inflate_bytes_max: 64 * KIB,
            thread_references_max: 32,
            thread_work_max: 10_000_000,
        }
    }
}

impl Limits {
    /// How long an authenticated session may stay without input.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }

    /// How long a session may stay before login.
    pub fn not_authenticated_timeout(&self) -> Duration {
        Duration::from_secs(self.not_authenticated_timeout_s)
    }

    /// How long a partly received command may wait for its next bytes.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_s)
    }

    /// How long one write to the client may wait for it to read.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_s)
    }

    /// Checks what an operator may set: each limit's range, then
    /// [`Limits::check_consistent`].
    pub fn check(&self) -> Result<(), Problem> {
        let ranges = [
            // RFC 7162 §4: lines of at least 8192 octets.
            ("command_line_bytes_max", self.command_line_bytes_max as u64, 8192, 16 << 20),
            ("literal_bytes_max", self.literal_bytes_max as u64, 64 * 1024, 1 << 30),
            ("append_bytes_max", self.append_bytes_max as u64, 64 * 1024, 4 << 30),
            ("literal_discard_bytes_max", self.literal_discard_bytes_max, 0, 16 << 30),
            ("nesting_depth_max", self.nesting_depth_max as u64, 4, 1000),
            ("pipelined_bytes_max", self.pipelined_bytes_max as u64, 8192, 16 << 20),
            ("errors_max", self.errors_max as u64, 1, 10_000),
            ("auth_failures_max", self.auth_failures_max as u64, 1, 100),
            // RFC 9051 §5.4: an autologout timer of at least 30 minutes.
            ("idle_timeout_s", self.idle_timeout_s, 1800, 86_400),
            ("not_authenticated_timeout_s", self.not_authenticated_timeout_s, 1, 3600),
            ("command_timeout_s", self.command_timeout_s, 1, 3600),
            ("write_timeout_s", self.write_timeout_s, 1, 3600),
            ("fetch_items_max", self.fetch_items_max as u64, 8, 10_000),
            ("search_keys_max", self.search_keys_max as u64, 8, 100_000),
            // A mailbox name has at most 1,000 bytes.
            ("list_pattern_bytes_max", self.list_pattern_bytes_max as u64, 1024, 1 << 20),
            ("output_bytes_max", self.output_bytes_max as u64, 4096, 64 << 20),
            ("inflate_bytes_max", self.inflate_bytes_max as u64, 4096, 16 << 20),
            ("thread_references_max", self.thread_references_max as u64, 1, 100_000),
            ("thread_work_max", self.thread_work_max, 1000, 1 << 40),
        ];
        for (key, value, min, max) in ranges {
            range(SECTION, key, value, min, max)?;
        }
        self.check_consistent()
    }

    /// Checks what a session relies on, whatever the ranges (tests and fuzzing run with
    /// limits far below them): nothing is zero, the RFC minimums hold, and each buffer
    /// limit is at most the next larger one.
    pub fn check_consistent(&self) -> Result<(), Problem> {
        let counts = [
            ("command_line_bytes_max", self.command_line_bytes_max as u64),
            ("literal_bytes_max", self.literal_bytes_max as u64),
            ("append_bytes_max", self.append_bytes_max as u64),
            ("nesting_depth_max", self.nesting_depth_max as u64),
            ("pipelined_bytes_max", self.pipelined_bytes_max as u64),
            ("errors_max", self.errors_max as u64),
            ("auth_failures_max", self.auth_failures_max as u64),
            ("fetch_items_max", self.fetch_items_max as u64),
            ("search_keys_max", self.search_keys_max as u64),
            ("list_pattern_bytes_max", self.list_pattern_bytes_max as u64),
            ("output_bytes_max", self.output_bytes_max as u64),
            ("inflate_bytes_max", self.inflate_bytes_max as u64),
            ("thread_references_max", self.thread_references_max as u64),
            ("not_authenticated_timeout_s", self.not_authenticated_timeout_s),
            ("command_timeout_s", self.command_timeout_s),
            ("write_timeout_s", self.write_timeout_s),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(Problem::new(SECTION, key, "must be greater than zero"));
            }
        }
        if self.command_line_bytes_max < 8192 {
            let problem = format!("{} is below the 8192 octets RFC 7162 §4 asks for", self.command_line_bytes_max);
            return Err(Problem::new(SECTION, "command_line_bytes_max", problem));
        }
        if self.idle_timeout_s < 30 * 60 {
            let problem = format!("{} is below the 30 minutes RFC 9051 §5.4 requires", self.idle_timeout_s);
            return Err(Problem::new(SECTION, "idle_timeout_s", problem));
        }
        // Each buffer limit is at most the next: a command's literal within the command's
        // messages, those within what is discarded.
        let order = [
            (
                "command_line_bytes_max",
                self.command_line_bytes_max as u64,
                "literal_bytes_max",
                self.literal_bytes_max as u64,
            ),
            ("literal_bytes_max", self.literal_bytes_max as u64, "append_bytes_max", self.append_bytes_max as u64),
            (
                "append_bytes_max",
                self.append_bytes_max as u64,
                "literal_discard_bytes_max",
                self.literal_discard_bytes_max,
            ),
        ];
        for (key, value, next_key, next) in order {
            if value > next {
                let problem = format!("{value} is larger than imap.{next_key} ({next})");
                return Err(Problem::new(SECTION, key, problem));
            }
        }
        if u32::try_from(self.literal_bytes_max).is_err() {
            let problem = format!("{} does not fit in 32 bits, as literal lengths do", self.literal_bytes_max);
            return Err(Problem::new(SECTION, "literal_bytes_max", problem));
        }
        Ok(())
    }
}

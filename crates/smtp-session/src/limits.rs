//! Every limit of one SMTP session, with its default and the reason for it.

use std::time::Duration;

use hameau_limits::{Problem, range};

/// The section of the configuration file these limits are keys of.
const SECTION: &str = "smtp";

/// The limits of one SMTP session: keys of `[smtp]`, declared here; `config` reads them
/// into `hameau_smtp::Options::limits`. [`Limits::check`] says whether an operator may set
/// them; [`crate::Session::new`] asserts [`Limits::check_consistent`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest command line, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 octets as the
    /// minimum a server must accept; ESMTP parameters and SMTPUTF8 addresses (RFC 6531)
    /// make real lines longer, so 4096 leaves room (Postfix's `line_length_limit` is 2048).
    /// A longer line gets `500 5.5.6` and is skipped without being buffered.
    pub line_bytes_max: usize,
    /// Largest message (after dot-unstuffing), advertised as `SIZE` (RFC 1870). 40 MiB holds
    /// the 25 MB attachments that Gmail and Outlook let users send, once base64 has grown
    /// them by a third. A larger message gets `552 5.3.4`; the rest of it is read and
    /// dropped, never buffered.
    pub message_bytes_max: usize,
    /// Largest single `BDAT` chunk (RFC 3030). A chunk larger than the largest message can
    /// never be accepted, so the default equals `message_bytes_max`. A client declaring a
    /// larger chunk gets `421 4.3.4` and the session closes: skipping gigabytes to stay in
    /// step with it is not worth the bandwidth.
    pub bdat_chunk_bytes_max: usize,
    /// Recipients per transaction. RFC 5321 §4.5.3.1.8 requires at least 100; 1000 is
    /// Postfix's `smtpd_recipient_limit`. Extra recipients get `452 4.5.3` and the client
    /// sends them in a later transaction (RFC 5321 §4.5.3.1.10). These replies do not count
    /// as errors, so a mailing list over the limit is not disconnected.
    pub recipients_max: usize,
    /// Commands per session, including invalid ones. 10,000 carries hundreds of messages
    /// on one connection (Postfix's client reuses one for at most 300 s) yet ends a client
    /// that loops on `NOOP`. Over it: `421 4.7.0` and the session closes.
    pub commands_max: usize,
    /// Error replies (4xx and 5xx, the driver's rejections included) before the session
    /// closes with `421 4.7.0`. 20 is Postfix's `smtpd_hard_error_limit`; counting the
    /// driver's `550 5.1.1` makes address harvesting slow.
    pub errors_max: usize,
    /// Bytes of replies queued before the session stops running pipelined commands until
    /// the driver has written them ([`crate::Session::is_ready`]). A client pipelining
    /// (RFC 2920) and never reading would otherwise have a whole read's worth of commands
    /// answered in memory: 16 KiB of `HELP` lines queue 250 KiB of replies. 16 KiB holds
    /// the replies to hundreds of pipelined commands; at least 512 bytes (RFC 5321
    /// §4.5.3.1.5's reply line, and more than our longest reply, EHLO's).
    pub reply_bytes_max: usize,
    /// How long the server waits for the next command. RFC 5321 §4.5.3.2.7 sets the server
    /// timeout at 5 minutes (Postfix's `smtpd_timeout` is 300 s too).
    pub command_timeout_s: u64,
    /// How long the server waits for the next bytes of `DATA` or of a `BDAT` chunk. RFC 5321
    /// §4.5.3.2.5 gives the client 3 minutes per data block; the server waits that long too.
    pub data_timeout_s: u64,
    /// Longest session, whatever it does. A 40 MiB message at 1 Mbit/s takes under 6 minutes;
    /// a session lasting 30 minutes is stalling (slowloris) or abusive.
    pub session_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        const MIB: usize = 1024 * 1024;
        Limits {
            line_bytes_max: 4096,
            message_bytes_max: 40 * MIB,
            bdat_chunk_bytes_max: 40 * MIB,
            recipients_max: 1000,
            commands_max: 10_000,
            errors_max: 20,
            reply_bytes_max: 16 * 1024,
            command_timeout_s: 5 * 60,
            data_timeout_s: 3 * 60,
            session_timeout_s: 30 * 60,
        }
    }
}

impl Limits {
    /// How long the server waits for the next command.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_s)
    }

    /// How long the server waits for the next bytes of `DATA` or of a `BDAT` chunk.
    pub fn data_timeout(&self) -> Duration {
        Duration::from_secs(self.data_timeout_s)
    }

    /// Longest session.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.session_timeout_s)
    }

    /// Checks what an operator may set: each limit's range, then
    /// [`Limits::check_consistent`].
    pub fn check(&self) -> Result<(), Problem> {
        let ranges = [
            // RFC 5321 §4.5.3.1.4: a command line of 512 bytes must be accepted.
            ("line_bytes_max", self.line_bytes_max as u64, 512, 1 << 20),
            ("message_bytes_max", self.message_bytes_max as u64, 64 * 1024, 1 << 30),
            ("bdat_chunk_bytes_max", self.bdat_chunk_bytes_max as u64, 1024, 1 << 30),
            // RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted.
            ("recipients_max", self.recipients_max as u64, 100, 100_000),
            ("commands_max", self.commands_max as u64, 10, 10_000_000),
            ("errors_max", self.errors_max as u64, 1, 10_000),
            ("reply_bytes_max", self.reply_bytes_max as u64, 512, 16 << 20),
            ("command_timeout_s", self.command_timeout_s, 1, 3600),
            ("data_timeout_s", self.data_timeout_s, 1, 3600),
            ("session_timeout_s", self.session_timeout_s, 1, 86_400),
        ];
        for (key, value, min, max) in ranges {
            range(SECTION, key, value, min, max)?;
        }
        self.check_consistent()
    }

    /// Checks what a session relies on, whatever the ranges (tests and fuzzing run with
    /// limits far below them): nothing is zero, command lines are at least as long as
    /// RFC 5321 requires, and no line or chunk is larger than a whole message.
    pub fn check_consistent(&self) -> Result<(), Problem> {
        let counts = [
            ("line_bytes_max", self.line_bytes_max as u64),
            ("message_bytes_max", self.message_bytes_max as u64),
            ("bdat_chunk_bytes_max", self.bdat_chunk_bytes_max as u64),
            ("recipients_max", self.recipients_max as u64),
            ("commands_max", self.commands_max as u64),
            ("errors_max", self.errors_max as u64),
            ("command_timeout_s", self.command_timeout_s),
            ("data_timeout_s", self.data_timeout_s),
            ("session_timeout_s", self.session_timeout_s),
        ];
        for (key, value) in counts {
            if value == 0 {
                return Err(Problem::new(SECTION, key, "must be greater than zero"));
            }
        }
        if self.line_bytes_max < 512 {
            let problem = format!("{} is below the 512 octets RFC 5321 §4.5.3.1.4 requires", self.line_bytes_max);
            return Err(Problem::new(SECTION, "line_bytes_max", problem));
        }
        if self.reply_bytes_max < 512 {
            let problem = format!("{} is below the 512 octets of one reply line", self.reply_bytes_max);
            return Err(Problem::new(SECTION, "reply_bytes_max", problem));
        }
        if self.line_bytes_max > self.message_bytes_max {
            let problem =
                format!("{} is larger than smtp.message_bytes_max ({})", self.line_bytes_max, self.message_bytes_max);
            return Err(Problem::new(SECTION, "line_bytes_max", problem));
        }
        if self.bdat_chunk_bytes_max > self.message_bytes_max {
            let problem = format!(
                "{} is larger than smtp.message_bytes_max ({})",
                self.bdat_chunk_bytes_max, self.message_bytes_max
            );
            return Err(Problem::new(SECTION, "bdat_chunk_bytes_max", problem));
        }
        Ok(())
    }
}

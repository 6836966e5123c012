//! Every limit of one SMTP session, with its default and the reason for it.

use std::time::Duration;

/// The limits of one SMTP session. `config` fills them; [`Limits::check`] says whether they
/// fit together, and [`crate::Session::new`] asserts it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub command_timeout: Duration,
    /// How long the server waits for the next bytes of `DATA` or of a `BDAT` chunk. RFC 5321
    /// §4.5.3.2.5 gives the client 3 minutes per data block; the server waits that long too.
    pub data_timeout: Duration,
    /// Longest session, whatever it does. A 40 MiB message at 1 Mbit/s takes under 6 minutes;
    /// a session lasting 30 minutes is stalling (slowloris) or abusive.
    pub session_timeout: Duration,
}

/// Why a set of [`Limits`] cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitsError {
    #[error("smtp limit `{name}` must be greater than zero")]
    Zero { name: &'static str },
    #[error("smtp limit `line_bytes_max` is {line_bytes_max}, below the 512 octets RFC 5321 §4.5.3.1.4 requires")]
    LineBelowRfc { line_bytes_max: usize },
    #[error("smtp limit `reply_bytes_max` is {reply_bytes_max}, below the 512 octets of one reply line")]
    ReplyBelowLine { reply_bytes_max: usize },
    #[error("smtp limit `line_bytes_max` ({line_bytes_max}) is larger than `message_bytes_max` ({message_bytes_max})")]
    LineAboveMessage { line_bytes_max: usize, message_bytes_max: usize },
    #[error(
        "smtp limit `bdat_chunk_bytes_max` ({bdat_chunk_bytes_max}) is larger than `message_bytes_max` ({message_bytes_max})"
    )]
    ChunkAboveMessage { bdat_chunk_bytes_max: usize, message_bytes_max: usize },
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
            command_timeout: Duration::from_secs(5 * 60),
            data_timeout: Duration::from_secs(3 * 60),
            session_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl Limits {
    /// Checks that the limits fit together: nothing is zero, command lines are at least as
    /// long as RFC 5321 requires, and no line or chunk is larger than a whole message.
    pub fn check(&self) -> Result<(), LimitsError> {
        let counts = [
            ("line_bytes_max", self.line_bytes_max),
            ("message_bytes_max", self.message_bytes_max),
            ("bdat_chunk_bytes_max", self.bdat_chunk_bytes_max),
            ("recipients_max", self.recipients_max),
            ("commands_max", self.commands_max),
            ("errors_max", self.errors_max),
        ];
        for (name, value) in counts {
            if value == 0 {
                return Err(LimitsError::Zero { name });
            }
        }
        let timeouts = [
            ("command_timeout", self.command_timeout),
            ("data_timeout", self.data_timeout),
            ("session_timeout", self.session_timeout),
        ];
        for (name, value) in timeouts {
            if value.is_zero() {
                return Err(LimitsError::Zero { name });
            }
        }
        if self.line_bytes_max < 512 {
            return Err(LimitsError::LineBelowRfc { line_bytes_max: self.line_bytes_max });
        }
        if self.reply_bytes_max < 512 {
            return Err(LimitsError::ReplyBelowLine { reply_bytes_max: self.reply_bytes_max });
        }
        if self.line_bytes_max > self.message_bytes_max {
            return Err(LimitsError::LineAboveMessage {
                line_bytes_max: self.line_bytes_max,
                message_bytes_max: self.message_bytes_max,
            });
        }
        if self.bdat_chunk_bytes_max > self.message_bytes_max {
            return Err(LimitsError::ChunkAboveMessage {
                bdat_chunk_bytes_max: self.bdat_chunk_bytes_max,
                message_bytes_max: self.message_bytes_max,
            });
        }
        Ok(())
    }
}

//! The body of `DATA`: end-of-data detection and dot-unstuffing (RFC 5321 §4.1.1.4, §4.5.2),
//! streaming, in bounded memory, and proof against SMTP smuggling.
//!
//! End of data is only `<CRLF>.<CRLF>`, where the first CRLF may be the one ending the
//! `DATA` command. A bare LF or bare CR never starts a line: after one, a dot is plain text,
//! so `\n.\n`, `\r.\r`, `\n.\r\n` and `\r\n.\r` can neither end the message nor begin a
//! second one. Every bare CR or LF is noted so the session can refuse the message.

/// Where the decoder stands in the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Just after a CRLF (or at the start of the data).
    LineStart,
    /// Inside a line.
    Text,
    /// After a CR inside a line, not yet followed by anything.
    Cr,
    /// After a dot at the start of a line.
    Dot,
    /// After `<CRLF>.<CR>`.
    DotCr,
}

/// Decodes the body of one `DATA` command.
#[derive(Debug)]
pub(crate) struct DataDecoder {
    state: State,
    data: Vec<u8>,
    bytes_max: usize,
    too_big: bool,
    bare_cr_or_lf: bool,
}

/// What a finished `DATA` body gave.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// The unstuffed message; empty when `too_big`.
    pub(crate) data: Vec<u8>,
    /// The message was larger than the limit; its bytes were dropped as they came.
    pub(crate) too_big: bool,
    /// The message held a CR not followed by LF, or an LF not preceded by CR.
    pub(crate) bare_cr_or_lf: bool,
}

impl DataDecoder {
    pub(crate) fn new(bytes_max: usize) -> DataDecoder {
        DataDecoder { state: State::LineStart, data: Vec::new(), bytes_max, too_big: false, bare_cr_or_lf: false }
    }

    /// Decodes from `input` and returns how many bytes it consumed and whether it reached
    /// the end of data. Bytes after the end of data are left for the caller (pipelining).
    pub(crate) fn decode(&mut self, input: &[u8]) -> (usize, bool) {
        let mut idx = 0;
        while idx < input.len() {
            let byte = input[idx];
            match self.state {
                State::LineStart if byte == b'.' => {
                    self.state = State::Dot;
                    idx += 1;
                }
                State::LineStart => self.state = State::Text,
                State::Dot if byte == b'\r' => {
                    self.state = State::DotCr;
                    idx += 1;
                }
                // RFC 5321 §4.5.2: a leading dot is removed; what follows is plain text.
                State::Dot => self.state = State::Text,
                State::Text => {
                    let run = input[idx..]
                        .iter()
                        .position(|&byte| byte == b'\r' || byte == b'\n')
                        .unwrap_or(input.len() - idx);
                    if run > 0 {
                        self.emit(&input[idx..idx + run]);
                        idx += run;
                        continue;
                    }
                    if byte == b'\r' {
                        self.state = State::Cr;
                    } else {
                        // A bare LF: kept in the text, and the next byte is still mid-line.
                        self.bare_cr_or_lf = true;
                        self.emit(b"\n");
                    }
                    idx += 1;
                }
                State::Cr if byte == b'\n' => {
                    self.emit(b"\r\n");
                    self.state = State::LineStart;
                    idx += 1;
                }
                State::Cr => {
                    // A bare CR; the current byte is read again as text.
                    self.bare_cr_or_lf = true;
                    self.emit(b"\r");
                    self.state = State::Text;
                }
                State::DotCr if byte == b'\n' => return (idx + 1, true),
                State::DotCr => {
                    // `<CRLF>.<CR>` not followed by LF: the dot was stuffing, the CR is bare.
                    self.bare_cr_or_lf = true;
                    self.emit(b"\r");
                    self.state = State::Text;
                }
            }
        }
        (input.len(), false)
    }

    pub(crate) fn finish(self) -> Decoded {
        Decoded { data: self.data, too_big: self.too_big, bare_cr_or_lf: self.bare_cr_or_lf }
    }

    fn emit(&mut self, bytes: &[u8]) {
        if self.too_big {
            return;
        }
        if self.data.len() + bytes.len() > self.bytes_max {
            // Over the limit: free what was kept and drop the rest as it comes.
            self.too_big = true;
            self.data = Vec::new();
            return;
        }
        self.data.extend_from_slice(bytes);
    }
}

/// Whether `data` holds a CR not followed by LF or an LF not preceded by CR.
pub(crate) fn has_bare_cr_or_lf(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(idx, &byte)| match byte {
        b'\r' => data.get(idx + 1) != Some(&b'\n'),
        b'\n' => idx == 0 || data[idx - 1] != b'\r',
        _ => false,
    })
}

//! A connection's bytes: the transport (plain or TLS, `hameau_net`), COMPRESS=DEFLATE on
//! it, and the bounded reads and timed writes the driver (`server`) and FETCH's streamed
//! answer (`fetch`) share. It knows no command.

use std::io;
use std::time::Duration;

use hameau_imap_session::Session;
use tokio::io::AsyncRead;

/// Bytes read at most at once. The buffer exists only while bytes are being read: an idle
/// connection holds none.
pub(crate) const READ_BYTES: usize = 16 * 1024;

/// The next bytes from the peer; empty at its end. The read buffer lives on the stack of
/// each poll only, so a connection waiting for input holds none; and a TLS stream is polled
/// directly, so plaintext rustls has already decrypted is never left waiting for the socket
/// to become readable again.
pub(crate) async fn read_some(transport: &mut hameau_net::Connection) -> io::Result<Vec<u8>> {
    std::future::poll_fn(|cx| {
        let mut space = [0u8; READ_BYTES];
        let mut buf = tokio::io::ReadBuf::new(&mut space);
        std::pin::Pin::new(&mut *transport).poll_read(cx, &mut buf).map_ok(|()| buf.filled().to_vec())
    })
    .await
}

/// COMPRESS=DEFLATE (RFC 4978): raw DEFLATE both ways, each write flushed with a sync
/// flush so that the peer can read it at once.
///
/// Input is inflated at most `inflate_bytes_max` at a time: what was read and not yet
/// inflated waits in `pending` (at most one read), and the socket is not read again until
/// it is used up, so a deflate bomb costs one bounded buffer. Every loop either consumes
/// input, produces output or ends: data after the end of the client's stream (RFC 4978
/// gives no way to end compression) is a protocol error that closes the connection.
pub(crate) struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
    /// Compressed input read but not inflated yet.
    pub(crate) pending: Vec<u8>,
    /// The client ended its deflate stream.
    ended: bool,
    /// The last inflate stopped because its output was full: zlib may hold inflated bytes
    /// of input it has already consumed, so they must be asked for even when `pending` is
    /// empty (issue 13: otherwise the driver waits on the socket for a command it has
    /// already received, and a client waiting for our answer, as mbsync does, stalls).
    output_held: bool,
}

impl Deflate {
    pub(crate) fn new() -> Deflate {
        Deflate {
            compress: flate2::Compress::new(flate2::Compression::new(6), false),
            decompress: flate2::Decompress::new(false),
            pending: Vec::new(),
            ended: false,
            output_held: false,
        }
    }

    pub(crate) fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            out.reserve(4096);
            let (before_in, before_out) = (self.compress.total_in(), out.len());
            self.compress
                .compress_vec(&input[consumed..], &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| io::Error::other(e.to_string()))?;
            consumed += (self.compress.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.compress.total_in() == before_in && out.len() == before_out {
                return Err(io::Error::other("deflate made no progress"));
            }
        }
    }

    /// Inflates up to `limit` bytes of `pending`, and of what zlib still holds from input
    /// already consumed. Empty output means everything pending is used and more must be
    /// read.
    pub(crate) fn inflate(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        if self.pending.is_empty() && !self.output_held {
            return Ok(Vec::new());
        }
        // Output goes into this capacity and no further: at most `limit` bytes.
        let mut out = Vec::with_capacity(limit);
        let mut consumed = 0;
        while out.len() < limit && (consumed < self.pending.len() || self.output_held) {
            if self.ended {
                if !out.is_empty() || consumed == self.pending.len() {
                    // What came before the end is used first; the next call fails.
                    self.output_held = false;
                    break;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, "data after the end of the deflate stream"));
            }
            let (before_in, before_out) = (self.decompress.total_in(), out.len());
            let status = self
                .decompress
                .decompress_vec(&self.pending[consumed..], &mut out, flate2::FlushDecompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            consumed += (self.decompress.total_in() - before_in) as usize;
            // Stopped by a full output: more may wait inside zlib, whatever is pending.
            self.output_held = out.len() == out.capacity();
            if status == flate2::Status::StreamEnd {
                self.ended = true;
            } else if self.decompress.total_in() == before_in && out.len() == before_out {
                if consumed == self.pending.len() {
                    // Nothing was pending and zlib held nothing more: all is used.
                    self.output_held = false;
                    break;
                }
                // Neither input used nor output made, with room for output: the input
                // cannot be decoded (flate2 reports some corruptions this way).
                return Err(io::Error::new(io::ErrorKind::InvalidData, "deflate input makes no progress"));
            }
        }
        self.pending.drain(..consumed);
        if self.pending.capacity() > 2 * READ_BYTES && self.pending.is_empty() {
            self.pending = Vec::new();
        }
        Ok(out)
    }
}

/// A connection: transport, optional compression, and the limits of its writes and of
/// inflated input.
pub(crate) struct Connection {
    pub(crate) transport: hameau_net::Connection,
    pub(crate) deflate: Option<Deflate>,
    pub(crate) write_timeout: Duration,
    pub(crate) inflate_bytes_max: usize,
}

impl Connection {
    pub(crate) async fn read(&mut self) -> io::Result<Vec<u8>> {
        let Some(deflate) = &mut self.deflate else { return read_some(&mut self.transport).await };
        loop {
            let plain = deflate.inflate(self.inflate_bytes_max)?;
            if !plain.is_empty() {
                return Ok(plain);
            }
            let bytes = read_some(&mut self.transport).await?;
            if bytes.is_empty() {
                return Ok(bytes);
            }
            deflate.pending.extend_from_slice(&bytes);
        }
    }

    /// Writes `bytes` (compressed when DEFLATE is on) within the write timeout: a client
    /// that does not read is disconnected instead of holding its slot and its buffers.
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let compressed;
        let bytes = match &mut self.deflate {
            Some(deflate) => {
                compressed = deflate.deflate(bytes)?;
                &compressed[..]
            }
            None => bytes,
        };
        self.transport.write_all_within(bytes, self.write_timeout).await
    }

    /// Writes everything the session has queued.
    pub(crate) async fn flush(&mut self, session: &mut Session) -> io::Result<()> {
        while let Some(bytes) = session.poll_output() {
            self.write(&bytes).await?;
        }
        Ok(())
    }

    /// Writes bytes taken from the session in the middle of a response.
    pub(crate) async fn write_partial(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write(bytes).await
    }
}

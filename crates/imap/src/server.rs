//! Sockets: the accept loop and the driver of one connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hameau_imap_session::{Code, Event, LoginError, Session, Status};
use tokio::io::AsyncRead;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Context;
use crate::commands::Conn;

/// Serves IMAP on `listener` until `shutdown` turns true (implicit TLS when
/// `implicit_tls`, port 993), then waits for its connections to end: each is told
/// `* BYE` as soon as it is between commands. `gate` holds the connection limits the
/// service's listeners share.
pub async fn run(
    listener: TcpListener,
    context: Arc<Context>,
    implicit_tls: bool,
    gate: Arc<hameau_net::Gate>,
    shutdown: watch::Receiver<bool>,
) {
    let sessions_shutdown = shutdown.clone();
    let service = if implicit_tls { "imaps" } else { "imap" };
    hameau_net::accept_loop(listener, gate, shutdown, service, |accepted| {
        let context = context.clone();
        let shutdown = sessions_shutdown.clone();
        async move {
            let hameau_net::Accepted { tcp, peer, over_limit } = accepted;
            context.metrics.connections.inc();
            if over_limit {
                if !implicit_tls {
                    let bye = b"* BYE Too many connections from your address\r\n";
                    let timeout = context.options.session.limits.write_timeout();
                    let _ = hameau_net::Connection::plain(tcp).write_all_within(bye, timeout).await;
                }
            } else if let Err(e) = serve(tcp, peer, &context, implicit_tls, shutdown).await {
                tracing::debug!(%peer, error = %e, "imap connection ended with an error");
            }
        }
    })
    .await;
}

/// Polls a future, turning a panic inside it into an error (the connection's task would
/// otherwise end without an answer).
struct CatchUnwind<F>(F);

impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| std::pin::Pin::new(inner).poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic.downcast_ref::<&str>().copied().or_else(|| panic.downcast_ref::<String>().map(String::as_str)).unwrap_or("?")
}

/// Bytes read at most at once. The buffer exists only while bytes are being read: an idle
/// connection holds none.
const READ_BYTES: usize = 16 * 1024;

/// The next bytes from the peer; empty at its end. The read buffer lives on the stack of
/// each poll only, so a connection waiting for input holds none; and a TLS stream is polled
/// directly, so plaintext rustls has already decrypted is never left waiting for the socket
/// to become readable again.
async fn read_some(transport: &mut hameau_net::Connection) -> io::Result<Vec<u8>> {
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
struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
    /// Compressed input read but not inflated yet.
    pending: Vec<u8>,
    /// The client ended its deflate stream.
    ended: bool,
    /// The last inflate stopped because its output was full: zlib may hold inflated bytes
    /// of input it has already consumed, so they must be asked for even when `pending` is
    /// empty (issue 13: otherwise the driver waits on the socket for a command it has
    /// already received, and a client waiting for our answer, as mbsync does, stalls).
    output_held: bool,
}

impl Deflate {
    fn new() -> Deflate {
        Deflate {
            compress: flate2::Compress::new(flate2::Compression::new(6), false),
            decompress: flate2::Decompress::new(false),
            pending: Vec::new(),
            ended: false,
            output_held: false,
        }
    }

    fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
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
    fn inflate(&mut self, limit: usize) -> io::Result<Vec<u8>> {
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
    transport: hameau_net::Connection,
    deflate: Option<Deflate>,
    write_timeout: Duration,
    inflate_bytes_max: usize,
}

impl Connection {
    async fn read(&mut self) -> io::Result<Vec<u8>> {
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

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    context: &Context,
    implicit_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let transport = match (&context.tls, implicit_tls) {
        (_, false) => hameau_net::Connection::plain(tcp),
        (Some(tls), true) => {
            match Box::pin(hameau_net::Connection::accept_tls(tcp, tls, context.options.tls_handshake_timeout)).await {
                Ok(transport) => transport,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "imap: TLS handshake failed");
                    return Ok(());
                }
            }
        }
        (None, true) => return Ok(()),
    };
    let limits = &context.options.session.limits;
    let mut connection = Connection {
        transport,
        deflate: None,
        write_timeout: limits.write_timeout(),
        inflate_bytes_max: limits.inflate_bytes_max,
    };
    let mut options = context.options.session.clone();
    options.tls_active = implicit_tls;
    options.starttls_available = !implicit_tls && context.tls.is_some();
    let mut session = Session::new(options, Instant::now());
    let mut conn = Conn::new(context, peer);
    loop {
        while let Some(event) = session.poll_event(Instant::now()) {
            match event {
                Event::Command(command) => {
                    context.metrics.requests.inc();
                    let tag = command.tag.clone();
                    // Boxed: the large future of a command exists only while it runs. A
                    // panic inside it ends the command with NO, not the server or the
                    // connection (STYLE.md §9).
                    let run = CatchUnwind(Box::pin(conn.run(&mut session, &mut connection, command))).await;
                    if let Err(panic) = run {
                        tracing::error!(%peer, panic = panic_text(&panic), "imap: a command panicked");
                        if session.is_awaiting(&tag) {
                            session.complete(&tag, Status::No, Some(Code::ServerBug), "Internal error");
                        }
                    }
                    if let Some(error) = conn.broken.take() {
                        return Err(error);
                    }
                }
                Event::Login { tag: _, authzid, username, password } => {
                    let login = CatchUnwind(Box::pin(conn.login(authzid, &username, &password))).await;
                    let result = login.unwrap_or_else(|panic| {
                        tracing::error!(%peer, panic = panic_text(&panic), "imap: a login panicked");
                        Err(LoginError::Unavailable)
                    });
                    session.handle_login(result);
                }
                Event::Idle { .. } => {
                    // `+ idling` is queued; updates are pushed as changes come (below).
                    Box::pin(conn.refresh(&mut session, true)).await;
                }
                Event::IdleDone { tag } => session.complete(&tag, Status::Ok, None, "IDLE terminated"),
                Event::StartTls => {
                    connection.flush(&mut session).await?;
                    let Some(tls) = &context.tls else { return Ok(()) };
                    let timeout = context.options.tls_handshake_timeout;
                    if let Err(e) = Box::pin(connection.transport.start_tls(tls, timeout)).await {
                        tracing::debug!(%peer, error = %e, "imap: STARTTLS failed");
                        return Ok(());
                    }
                    session.handle_tls_started();
                }
                Event::Compress { tag } => {
                    session.complete(&tag, Status::Ok, None, "DEFLATE active");
                    connection.flush(&mut session).await?;
                    // What followed the command is compressed already: it is inflated as
                    // the session reads, like the rest.
                    let mut deflate = Deflate::new();
                    deflate.pending = session.take_buffered_input();
                    connection.deflate = Some(deflate);
                }
                Event::Close { .. } => {
                    connection.flush(&mut session).await?;
                    return Ok(());
                }
            }
        }
        connection.flush(&mut session).await?;
        if session.is_closed() {
            return Ok(());
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let idling = session.is_idling();
        tokio::select! {
            read = connection.read(), if session.wants_input() => {
                let bytes = match read {
                    Ok(bytes) => bytes,
                    Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                        // Broken or trailing DEFLATE input: nothing more can be understood.
                        session.bye("Compressed input is invalid");
                        connection.flush(&mut session).await?;
                        return Err(error);
                    }
                    Err(error) => return Err(error),
                };
                if bytes.is_empty() {
                    return Ok(());
                }
                session.handle_input(&bytes);
            }
            _ = timeout => session.handle_timeout(Instant::now()),
            changed = conn.changed(), if idling => {
                if changed {
                    Box::pin(conn.refresh(&mut session, true)).await;
                }
            }
            _ = hameau_net::stopped(&mut shutdown) => {
                session.bye("Server shutting down, reconnect later");
            }
        }
    }
}

#[cfg(test)]
mod tests;

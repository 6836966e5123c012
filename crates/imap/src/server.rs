//! Sockets: the accept loop and the driver of one connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hameau_imap_session::{Event, Session, Status};
use tokio::io::{AsyncRead, AsyncWriteExt};
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
            let hameau_net::Accepted { mut tcp, peer, over_limit } = accepted;
            context.metrics.connections.inc();
            if over_limit {
                if !implicit_tls {
                    let _ = tcp.write_all(b"* BYE Too many connections from your address\r\n").await;
                }
            } else if let Err(e) = serve(tcp, peer, &context, implicit_tls, shutdown).await {
                tracing::debug!(%peer, error = %e, "imap connection ended with an error");
            }
        }
    })
    .await;
}

/// Bytes read at most at once. The buffer exists only while bytes are being read: an idle
/// connection holds none.
const READ_BYTES: usize = 16 * 1024;

/// A plain or TLS connection.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Between the two, while the handshake runs.
    Upgrading,
}

impl Transport {
    /// The next bytes from the peer; empty at its end. The read buffer lives on the stack
    /// of each poll only, so a connection waiting for input holds none; and a TLS stream is
    /// polled directly, so plaintext rustls has already decrypted is never left waiting
    /// for the socket to become readable again.
    async fn read(&mut self) -> io::Result<Vec<u8>> {
        std::future::poll_fn(|cx| {
            let mut space = [0u8; READ_BYTES];
            let mut buf = tokio::io::ReadBuf::new(&mut space);
            let polled = match self {
                Transport::Plain(stream) => std::pin::Pin::new(stream).poll_read(cx, &mut buf),
                Transport::Tls(stream) => std::pin::Pin::new(stream.as_mut()).poll_read(cx, &mut buf),
                Transport::Upgrading => return std::task::Poll::Ready(Ok(Vec::new())),
            };
            polled.map_ok(|()| buf.filled().to_vec())
        })
        .await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Transport::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
            Transport::Upgrading => Ok(()),
        }
    }
}

/// COMPRESS=DEFLATE (RFC 4978): raw DEFLATE both ways, each write flushed with a sync
/// flush so that the peer can read it at once.
struct Deflate {
    compress: flate2::Compress,
    decompress: flate2::Decompress,
}

impl Deflate {
    fn new() -> Deflate {
        Deflate {
            compress: flate2::Compress::new(flate2::Compression::new(6), false),
            decompress: flate2::Decompress::new(false),
        }
    }

    fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            out.reserve(4096);
            let before_in = self.compress.total_in();
            self.compress
                .compress_vec(&input[consumed..], &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| io::Error::other(e.to_string()))?;
            consumed += (self.compress.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn inflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            out.reserve(16 * 1024);
            let before_in = self.decompress.total_in();
            self.decompress
                .decompress_vec(&input[consumed..], &mut out, flate2::FlushDecompress::Sync)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            consumed += (self.decompress.total_in() - before_in) as usize;
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// A connection: transport, optional compression.
struct Connection {
    transport: Transport,
    deflate: Option<Deflate>,
}

impl Connection {
    async fn read(&mut self) -> io::Result<Vec<u8>> {
        let bytes = self.transport.read().await?;
        match &mut self.deflate {
            Some(deflate) if !bytes.is_empty() => deflate.inflate(&bytes),
            _ => Ok(bytes),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.deflate {
            Some(deflate) => {
                let compressed = deflate.deflate(bytes)?;
                self.transport.write_all(&compressed).await
            }
            None => self.transport.write_all(bytes).await,
        }
    }

    async fn flush(&mut self, session: &mut Session) -> io::Result<()> {
        while let Some(bytes) = session.poll_output() {
            self.write(&bytes).await?;
        }
        Ok(())
    }
}

async fn handshake(context: &Context, tcp: TcpStream) -> Option<Transport> {
    let tls = context.tls.as_ref()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    match tokio::time::timeout(context.options.tls_handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(Transport::Tls(Box::new(stream))),
        _ => None,
    }
}

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    context: &Context,
    implicit_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let transport = if implicit_tls {
        match Box::pin(handshake(context, tcp)).await {
            Some(transport) => transport,
            None => return Ok(()),
        }
    } else {
        Transport::Plain(tcp)
    };
    let mut connection = Connection { transport, deflate: None };
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
                    // Boxed: the large future of a command exists only while it runs.
                    Box::pin(conn.run(&mut session, command)).await;
                }
                Event::Login { tag: _, authzid, username, password } => {
                    let result = Box::pin(conn.login(authzid, &username, &password)).await;
                    session.handle_login(result);
                }
                Event::Idle { .. } => {
                    // `+ idling` is queued; updates are pushed as changes come (below).
                    Box::pin(conn.refresh(&mut session, true)).await;
                }
                Event::IdleDone { tag } => session.complete(&tag, Status::Ok, None, "IDLE terminated"),
                Event::StartTls => {
                    connection.flush(&mut session).await?;
                    let Transport::Plain(tcp) = std::mem::replace(&mut connection.transport, Transport::Upgrading)
                    else {
                        return Ok(());
                    };
                    match Box::pin(handshake(context, tcp)).await {
                        Some(transport) => connection.transport = transport,
                        None => return Ok(()),
                    }
                    session.handle_tls_started();
                }
                Event::Compress { tag } => {
                    session.complete(&tag, Status::Ok, None, "DEFLATE active");
                    connection.flush(&mut session).await?;
                    let mut deflate = Deflate::new();
                    let rest = session.take_buffered_input();
                    let plain = if rest.is_empty() { rest } else { deflate.inflate(&rest)? };
                    connection.deflate = Some(deflate);
                    if !plain.is_empty() {
                        session.handle_input(&plain);
                    }
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
                let bytes = read?;
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

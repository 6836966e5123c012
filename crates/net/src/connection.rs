//! The connection every server of Hameau runs on: plain TCP or TLS (rustls), with the TLS
//! handshake bounded in time, implicit (993, 465, HTTPS: [`Connection::accept_tls`]) or
//! after STARTTLS (25, 587, 143: [`Connection::start_tls`]), and writes bounded in time
//! (a client that does not read cannot hold its connection and the memory of its answer).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

/// A client's connection, plain or TLS. It is an [`AsyncRead`] and [`AsyncWrite`], so that
/// hyper or a compression layer can sit on it; [`Connection::write_all_within`] is the
/// write of a line protocol's replies.
pub struct Connection {
    stream: Stream,
    /// A write through [`AsyncWrite`] that makes no progress for this long fails.
    write_stall_timeout: Option<Duration>,
    /// Armed while such a write is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

/// What a TLS connection negotiated, for `Received` and the logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// `TLSv1.2` or `TLSv1.3`.
    pub protocol: &'static str,
    /// The cipher suite, by its IANA-like rustls name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: &'static str,
    /// The host name the client asked for (SNI, RFC 6066 §3), if it sent one.
    pub server_name: Option<String>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A STARTTLS handshake failed (or runs): the TCP stream is gone. Reads see the end of
    /// the stream; writes fail.
    Closed,
}

impl Connection {
    /// A connection in clear (ports 25, 587, 143 before STARTTLS).
    pub fn plain(tcp: TcpStream) -> Connection {
        Connection { stream: Stream::Plain(tcp), write_stall_timeout: None, stalled: None }
    }

    /// Runs the server side of a TLS handshake on `tcp` (implicit TLS: 993, 465, HTTPS)
    /// within `timeout`: a client that sends nothing cannot hold the connection.
    pub async fn accept_tls(
        tcp: TcpStream,
        tls: &Arc<rustls::ServerConfig>,
        timeout: Duration,
    ) -> io::Result<Connection> {
        let stream = handshake(tcp, tls, timeout).await?;
        Ok(Connection { stream: Stream::Tls(Box::new(stream)), write_stall_timeout: None, stalled: None })
    }

    /// Upgrades a plain connection to TLS (STARTTLS: RFC 3207, RFC 9051 §6.2.1) within
    /// `timeout`. The caller has written its "go ahead" and dropped whatever the client
    /// sent after the command in clear. On failure the connection is closed.
    pub async fn start_tls(&mut self, tls: &Arc<rustls::ServerConfig>, timeout: Duration) -> io::Result<()> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Closed) {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(stream) => {
                self.stream = Stream::Tls(stream);
                return Err(io::Error::other("TLS is already active"));
            }
            Stream::Closed => return Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        let stream = handshake(tcp, tls, timeout).await?;
        self.stream = Stream::Tls(Box::new(stream));
        Ok(())
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// What TLS negotiated; `None` in clear.
    pub fn tls_info(&self) -> Option<TlsInfo> {
        let Stream::Tls(stream) = &self.stream else { return None };
        let (_, server) = stream.get_ref();
        let protocol = match server.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "TLS",
        };
        let cipher = server.negotiated_cipher_suite().and_then(|suite| suite.suite().as_str()).unwrap_or("unknown");
        Some(TlsInfo { protocol, cipher, server_name: server.server_name().map(str::to_owned) })
    }

    /// The application protocol TLS negotiated (ALPN, RFC 7301), if any: HTTPS closes a
    /// connection that negotiated ACME's `acme-tls/1` right after the handshake.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        let Stream::Tls(stream) = &self.stream else { return None };
        stream.get_ref().1.alpn_protocol()
    }

    /// Bounds every write (and flush and shutdown) made through [`AsyncWrite`]: one that
    /// makes no progress for `timeout` fails with [`io::ErrorKind::TimedOut`], which ends
    /// the connection of a client that stopped reading. Writes that progress, however
    /// slowly, never time out (hyper writes a large answer in many of them).
    pub fn set_write_stall_timeout(&mut self, timeout: Duration) {
        self.write_stall_timeout = Some(timeout);
    }

    /// Writes and flushes `bytes` within `timeout`: a client that does not read them in
    /// time would otherwise hold its connection past every timeout of its session.
    pub async fn write_all_within(&mut self, bytes: &[u8], timeout: Duration) -> io::Result<()> {
        let write = async {
            self.write_all(bytes).await?;
            self.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(written) => written,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read what is written to it")),
        }
    }

    /// Called when a write is pending: fails once it has been pending for the stall
    /// timeout, if one is set.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(timeout) = self.write_stall_timeout else { return Poll::Pending };
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))
    }

    fn progress<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(res) => {
                self.stalled = None;
                Poll::Ready(res)
            }
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

async fn handshake(
    tcp: TcpStream,
    tls: &Arc<rustls::ServerConfig>,
    timeout: Duration,
) -> io::Result<TlsStream<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(accepted) => accepted,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake took too long")),
    }
}

/// Closing a TLS connection that was not shut down (a timeout, an error, the end of a
/// session that did not call `shutdown`) still tells the client it is closed on purpose:
/// the `close_notify` alert (RFC 8446 §6.1), written without waiting, only if the socket
/// takes it at once (a few dozen bytes; a client that stopped reading gets none).
/// Without it a client sees a truncated stream: Python's `ssl` reports "EOF occurred in
/// violation of protocol" on a keep-alive connection HTTPS closed after
/// `http.header_timeout_s`, where it would otherwise open a new one quietly.
impl Drop for Connection {
    fn drop(&mut self) {
        let Stream::Tls(stream) = &mut self.stream else { return };
        let (tcp, tls) = stream.get_mut();
        tls.send_close_notify();
        let mut socket = NoWait(tcp);
        // Each round writes what the socket takes at once; the alert is one record.
        for _ in 0..4 {
            if !tls.wants_write() || !matches!(tls.write_tls(&mut socket), Ok(n) if n > 0) {
                break;
            }
        }
    }
}

/// A TCP socket written without waiting (`try_write`): for [`Connection`]'s drop.
struct NoWait<'a>(&'a TcpStream);

impl io::Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stream = match self.stream {
            Stream::Plain(_) => "plain",
            Stream::Tls(_) => "tls",
            Stream::Closed => "closed",
        };
        f.debug_struct("Connection").field("stream", &stream).finish_non_exhaustive()
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = match &mut self.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Stream::Closed => return Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
        };
        self.progress(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = match &mut self.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            Stream::Closed => return Poll::Ready(Err(io::Error::from(io::ErrorKind::NotConnected))),
        };
        self.progress(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(stream) => stream.is_write_vectored(),
            Stream::Closed => false,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = match &mut self.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Stream::Closed => return Poll::Ready(Ok(())),
        };
        self.progress(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = match &mut self.stream {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            Stream::Closed => return Poll::Ready(Ok(())),
        };
        self.progress(cx, polled)
    }
}

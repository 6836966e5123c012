//! The stream under the IMAP client: every byte the old server sends passes here, so the
//! limits that protect Hameau hold whatever the client library does.
//!
//! - A byte budget per command ([`Budget`]): the client's read buffer cannot grow past
//!   what the command may bring back (LIST: `folders_max` names; the flags of a folder:
//!   `listing_bytes_max`; a batch: its announced sizes plus room; 1 MiB for the rest); past
//!   it the read fails and the command with it. This is also the bound on a line's length:
//!   a line is part of one command's answer.
//! - A read rate (`bytes_per_second_max`): reads pause to stay under it.
//! - A stall timeout (`literal_timeout_s`): a read that waits longer fails.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The bytes the current command may still read; set before each command.
#[derive(Clone, Debug, Default)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    pub fn set(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// Takes `n` bytes; false if the budget had fewer.
    fn take(&self, n: u64) -> bool {
        self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(n)).is_ok()
    }
}

/// The connection: plain TCP (tests, or before STARTTLS) or TLS.
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A [`Transport`] with the budget, the rate and the stall timeout.
#[derive(Debug)]
pub struct Guarded {
    pub(crate) inner: Transport,
    budget: Budget,
    bytes_per_second_max: u64,
    stall: Duration,
    /// Armed while a read waits (stall) or while reads pause for the rate.
    stall_timer: Option<Pin<Box<Sleep>>>,
    pause: Option<Pin<Box<Sleep>>>,
    /// When the bytes read so far at the allowed rate may all have been read.
    rate_clock: Option<Instant>,
}

impl Guarded {
    pub fn new(inner: Transport, budget: Budget, bytes_per_second_max: u64, stall: Duration) -> Guarded {
        Guarded { inner, budget, bytes_per_second_max, stall, stall_timer: None, pause: None, rate_clock: None }
    }

    /// After `n` bytes were read: when the next read may start under the rate.
    fn account_rate(&mut self, n: usize) {
        if self.bytes_per_second_max == 0 || n == 0 {
            return;
        }
        let now = Instant::now();
        let cost = Duration::from_secs_f64(n as f64 / self.bytes_per_second_max as f64);
        // A clock behind now means the connection was idle: no credit is saved up beyond
        // one second, so a burst after a pause stays short.
        let start = match self.rate_clock {
            Some(clock) if clock + Duration::from_secs(1) > now => clock,
            _ => now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
        };
        let clock = start + cost;
        self.rate_clock = Some(clock);
        if clock > now {
            self.pause = Some(Box::pin(tokio::time::sleep_until(clock)));
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let before = buf.filled().len();
        let polled = match &mut this.inner {
            Transport::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        };
        match polled {
            Poll::Pending => {
                let stall = this.stall;
                let timer = this.stall_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                if timer.as_mut().poll(cx).is_ready() {
                    this.stall_timer = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the server sent nothing for {} s", stall.as_secs()),
                    )));
                }
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                this.stall_timer = None;
                let n = buf.filled().len() - before;
                if !this.budget.take(n as u64) {
                    return Poll::Ready(Err(io::Error::other("the server's answer is over its limit")));
                }
                this.account_rate(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.stall_timer = None;
                Poll::Ready(Err(e))
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.inner {
            Transport::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Transport::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Transport::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Transport::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

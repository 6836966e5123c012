//! The SMTP socket driver: accepts connections up to a limit (in all and per client
//! address, one [`hameau_net::Gate`] for all the MX's listeners), runs a sans-IO
//! [`Session`] on each, answers its events with the [`Inbound`] pipeline, does STARTTLS
//! with rustls, enforces the session's timeouts and a timeout on every write (a client
//! that stops reading is dropped), and on shutdown stops accepting and closes idle
//! sessions with `421`. A panic while a message is delivered is answered `451 4.3.0`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hameau_smtp_session::{Decision, Event, Reply, Session};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use hameau_telemetry::{Counter, Registry};

use crate::inbound::CatchUnwind;
use crate::{Envelope, Inbound, RcptVerdict};

/// The listener's options, made from the `[smtp]` section by [`crate::Options::server`].
#[derive(Clone, Debug)]
pub struct Options {
    pub session: hameau_smtp_session::Options,
    /// The name in the greeting and in `Received`.
    pub hostname: String,
    /// Time for a STARTTLS handshake (`smtp.tls_handshake_timeout_s`).
    pub tls_handshake_timeout: Duration,
    /// Time for one write (and flush) of replies; past it the connection is dropped
    /// (`smtp.write_timeout_s`).
    pub write_timeout: Duration,
}

/// What the driver needs besides the socket.
pub struct Context {
    pub inbound: Inbound,
    /// Connections in all (accepting waits past it) and per client address (past it,
    /// `421 4.7.0` and close), shared by all the MX's listeners.
    pub gate: Arc<hameau_net::Gate>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub options: Options,
    /// Seconds since the Unix epoch (the binary's clock).
    pub now_s: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// Numbers sessions, for their ids.
    pub sessions: std::sync::atomic::AtomicU64,
    pub metrics: Metrics,
}

/// The MX's counters in `/metrics`.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub connections: Counter,
    pub messages_accepted: Counter,
    /// Refused for good (5xx) at the end of data: DMARC, quota, bad message.
    pub messages_refused: Counter,
    /// Told to try again (4xx) at the end of data.
    pub messages_deferred: Counter,
    pub recipients_refused: Counter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Metrics {
        let smtp = [("protocol", "smtp")];
        let messages = |result: &str| {
            registry.counter(
                "hameau_messages_total",
                "Messages at the end of DATA, by outcome.",
                &[("protocol", "smtp"), ("result", result)],
            )
        };
        Metrics {
            connections: registry.counter("hameau_connections_total", "Connections accepted.", &smtp),
            messages_accepted: messages("accepted"),
            messages_refused: messages("refused"),
            messages_deferred: messages("deferred"),
            recipients_refused: registry.counter("hameau_recipients_refused_total", "RCPT TO refused.", &smtp),
        }
    }
}

/// Serves SMTP on `listener` until `shutdown` turns true, then waits for the sessions in
/// flight to end (each is told `421` as soon as it is idle).
pub async fn run(listener: TcpListener, context: Arc<Context>, shutdown: watch::Receiver<bool>) {
    let sessions_shutdown = shutdown.clone();
    hameau_net::accept_loop(listener, context.gate.clone(), shutdown, "smtp", |accepted| {
        let context = context.clone();
        let shutdown = sessions_shutdown.clone();
        async move {
            let hameau_net::Accepted { mut tcp, peer, over_limit } = accepted;
            context.metrics.connections.inc();
            if over_limit {
                let refusal = tcp.write_all(b"421 4.7.0 Too many connections from your address\r\n");
                let _ = tokio::time::timeout(context.options.write_timeout, refusal).await;
            } else if let Err(e) = serve(tcp, peer, &context, shutdown).await {
                tracing::debug!(%peer, error = %e, "smtp session ended with an error");
            }
        }
    })
    .await;
}

/// A plain or TLS connection.
enum Connection {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Between the two, while the handshake runs.
    Upgrading,
}

impl Connection {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Connection::Plain(stream) => stream.read(buf).await,
            Connection::Tls(stream) => stream.read(buf).await,
            Connection::Upgrading => Ok(0),
        }
    }

    /// Writes and flushes `bytes` within `timeout`: a client that does not read them in
    /// time would otherwise hold its connection past every session timeout.
    async fn write_all(&mut self, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
        let write = async {
            match self {
                Connection::Plain(stream) => write_flush(stream, bytes).await,
                Connection::Tls(stream) => write_flush(stream.as_mut(), bytes).await,
                Connection::Upgrading => Ok(()),
            }
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(written) => written,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read its replies")),
        }
    }
}

async fn write_flush<S: AsyncWrite + AsyncRead + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// The transaction as the driver knows it: the resolved recipients of accepted RCPTs.
#[derive(Default)]
struct Transaction {
    helo: String,
    recipients: HashMap<String, hameau_directory::Recipient>,
    /// The accounts of `recipients` (checked against `mail.ingest_batch_max` at RCPT).
    accounts: std::collections::BTreeSet<u64>,
}

/// Reads at most this much at a time; the session bounds what it keeps.
const READ_BYTES: usize = 16 * 1024;

async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    context: &Context,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut session = Session::new(context.options.session.clone(), &context.options.hostname, Instant::now());
    let mut connection = Connection::Plain(tcp);
    let mut transaction = Transaction::default();
    let mut buf = vec![0u8; READ_BYTES];
    let n_session = context.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("{:x}{n_session:x}", (context.now_s)());
    let mut n_messages = 0u32;
    loop {
        while let Some(event) = session.poll_event(Instant::now()) {
            flush(&mut session, &mut connection, context).await?;
            let decision = match &event {
                Event::Helo { host, .. } => {
                    transaction.helo = host.clone();
                    Some(Decision::Accept)
                }
                Event::MailFrom { .. } => {
                    transaction.recipients.clear();
                    transaction.accounts.clear();
                    Some(Decision::Accept)
                }
                Event::RcptTo { address } => Some(match context.inbound.check_recipient(address).await {
                    RcptVerdict::Accept(recipient) => {
                        match context.inbound.too_many_accounts(&transaction.accounts, &recipient) {
                            Some(reply) => {
                                context.metrics.recipients_refused.inc();
                                Decision::Reject(Reply::new(reply.code, reply.enhanced, &reply.text))
                            }
                            None => {
                                transaction.accounts.extend(recipient.accounts.iter().map(|account| account.id));
                                transaction.recipients.insert(address.clone(), *recipient);
                                Decision::Accept
                            }
                        }
                    }
                    RcptVerdict::Refuse(reply) => {
                        context.metrics.recipients_refused.inc();
                        Decision::Reject(Reply::new(reply.code, reply.enhanced, &reply.text))
                    }
                }),
                Event::Message { data, mail_from, recipients, .. } => {
                    n_messages += 1;
                    let envelope = Envelope {
                        client_ip: peer.ip(),
                        helo: transaction.helo.clone(),
                        mail_from: mail_from.clone(),
                        recipients: recipients.iter().filter_map(|r| transaction.recipients.get(r).cloned()).collect(),
                        tls: session.tls_active(),
                        received_at: (context.now_s)(),
                        id: format!("{id}.{n_messages}"),
                    };
                    let delivery = CatchUnwind(std::pin::pin!(context.inbound.deliver(&envelope, data))).await;
                    let reply = delivery.unwrap_or_else(|_| {
                        // Not the message's fault as far as we know (the pipeline refuses
                        // those it cannot parse): a temporary error, logged by the panic.
                        tracing::error!(%peer, id = %envelope.id, "delivery panicked");
                        crate::Reply { code: 451, enhanced: "4.3.0", text: "local error, try again later".into() }
                    });
                    tracing::info!(%peer, from = %mail_from, n_recipients = recipients.len(), reply = %reply, "smtp message");
                    match reply.code {
                        200..=399 => context.metrics.messages_accepted.inc(),
                        400..=499 => context.metrics.messages_deferred.inc(),
                        _ => context.metrics.messages_refused.inc(),
                    }
                    Some(if reply.is_success() {
                        Decision::Accept
                    } else {
                        Decision::Reject(Reply::new(reply.code, reply.enhanced, &reply.text))
                    })
                }
                Event::StartTls => {
                    let Some(tls) = &context.tls else { return Ok(()) };
                    let Connection::Plain(tcp) = std::mem::replace(&mut connection, Connection::Upgrading) else {
                        return Ok(());
                    };
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                    match tokio::time::timeout(context.options.tls_handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection = Connection::Tls(Box::new(stream)),
                        _ => return Ok(()),
                    }
                    session.handle_tls_started();
                    None
                }
                Event::Quit | Event::Close { .. } => {
                    flush(&mut session, &mut connection, context).await?;
                    return Ok(());
                }
            };
            if let Some(decision) = decision {
                session.handle_decision(decision);
            }
        }
        flush(&mut session, &mut connection, context).await?;
        if session.is_closed() {
            return Ok(());
        }
        // Pipelined commands wait while their replies are written (`reply_bytes_max`).
        if session.is_ready() {
            continue;
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        let timeout = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = connection.read(&mut buf), if session.wants_input() => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                session.handle_input(&buf[..n]);
            }
            _ = timeout => session.handle_timeout(Instant::now()),
            _ = hameau_net::stopped(&mut shutdown) => {
                let bye = b"421 4.3.2 Server shutting down, try again later\r\n";
                connection.write_all(bye, context.options.write_timeout).await?;
                return Ok(());
            }
        }
    }
}

async fn flush(session: &mut Session, connection: &mut Connection, context: &Context) -> std::io::Result<()> {
    while let Some(bytes) = session.poll_output() {
        connection.write_all(&bytes, context.options.write_timeout).await?;
    }
    Ok(())
}

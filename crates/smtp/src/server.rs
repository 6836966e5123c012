//! The SMTP socket driver: accepts connections up to a limit (in all and per client
//! address, one [`hameau_net::Gate`] for all of a service's listeners), runs a sans-IO
//! [`Session`] on each, answers its events with a [`Pipeline`] (the MX's is
//! [`crate::Inbound`]), does STARTTLS ([`hameau_net::Connection`]), enforces the session's
//! timeouts and a timeout on every write (a client that stops reading is dropped), and on
//! shutdown stops accepting and closes idle sessions with `421`. A panic while a message
//! is delivered is answered `451 4.3.0`.
//!
//! The driver only reads, feeds the session, asks the pipeline and writes: what a
//! transaction means (recipients, authentication, delivery) is the pipeline's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hameau_net::Connection;
use hameau_smtp_session::{Decision, Event, Reply, Session};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use hameau_telemetry::{Counter, Registry};

use crate::inbound::CatchUnwind;
use crate::pipeline::{Message, Pipeline};

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
pub struct Context<P> {
    pub pipeline: P,
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
        Metrics::for_protocol(registry, "smtp")
    }

    /// The counters of one service (`smtp` for the MX, `submission`), labelled with it.
    pub fn for_protocol(registry: &Registry, protocol: &'static str) -> Metrics {
        let smtp = [("protocol", protocol)];
        let messages = |result: &str| {
            registry.counter(
                "hameau_messages_total",
                "Messages at the end of DATA, by outcome.",
                &[("protocol", protocol), ("result", result)],
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

/// How a listener's connections start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// In clear, `STARTTLS` offered when there is a certificate (25, 587).
    StartTls,
    /// TLS from the first byte (465, RFC 8314 §3.3).
    Implicit,
}

/// Serves SMTP on `listener` until `shutdown` turns true, then waits for the sessions in
/// flight to end (each is told `421` as soon as it is idle).
pub async fn run<P: Pipeline>(listener: TcpListener, context: Arc<Context<P>>, shutdown: watch::Receiver<bool>) {
    run_with(listener, context, Security::StartTls, shutdown).await
}

/// [`run`] for a listener whose connections start as `security` says.
pub async fn run_with<P: Pipeline>(
    listener: TcpListener,
    context: Arc<Context<P>>,
    security: Security,
    shutdown: watch::Receiver<bool>,
) {
    let sessions_shutdown = shutdown.clone();
    hameau_net::accept_loop(listener, context.gate.clone(), shutdown, "smtp", |accepted| {
        let context = context.clone();
        let shutdown = sessions_shutdown.clone();
        async move {
            let hameau_net::Accepted { tcp, peer, over_limit } = accepted;
            context.metrics.connections.inc();
            if over_limit {
                let refusal = b"421 4.7.0 Too many connections from your address\r\n";
                let _ = Connection::plain(tcp).write_all_within(refusal, context.options.write_timeout).await;
            } else if let Err(e) = serve(tcp, peer, &context, security, shutdown).await {
                tracing::debug!(%peer, error = %e, "smtp session ended with an error");
            }
        }
    })
    .await;
}

/// Reads at most this much at a time; the session bounds what it keeps.
const READ_BYTES: usize = 16 * 1024;

async fn serve<P: Pipeline>(
    tcp: TcpStream,
    peer: SocketAddr,
    context: &Context<P>,
    security: Security,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut options = context.options.session.clone();
    options.auth_mechanisms = context.pipeline.auth_mechanisms().to_vec();
    let mut connection = match (security, &context.tls) {
        (Security::StartTls, _) => Connection::plain(tcp),
        (Security::Implicit, Some(tls)) => {
            let connection = Connection::accept_tls(tcp, tls, context.options.tls_handshake_timeout).await?;
            options.tls_active = true;
            options.starttls_available = false;
            connection
        }
        // No certificate: an implicit-TLS listener cannot serve (serve.rs refuses to start it).
        (Security::Implicit, None) => return Ok(()),
    };
    let mut session = Session::new(options, &context.options.hostname, Instant::now());
    let mut state = context.pipeline.session(peer);
    let mut buf = vec![0u8; READ_BYTES];
    let n_session = context.sessions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("{:x}{n_session:x}", (context.now_s)());
    let mut n_messages = 0u32;
    loop {
        while let Some(event) = session.poll_event(Instant::now()) {
            flush(&mut session, &mut connection, context).await?;
            let pipeline = &context.pipeline;
            let decision = match event {
                Event::Helo { host, .. } => pipeline.helo(&mut state, &host).await,
                Event::MailFrom { address, params } => pipeline.mail_from(&mut state, &address, &params).await,
                Event::RcptTo { address } => {
                    let decision = pipeline.rcpt_to(&mut state, &address).await;
                    if matches!(decision, Decision::Reject(_)) {
                        context.metrics.recipients_refused.inc();
                    }
                    decision
                }
                Event::Message { data, mail_from, recipients, params } => {
                    n_messages += 1;
                    let message = Message {
                        mail_from: &mail_from,
                        recipients: &recipients,
                        params: &params,
                        data: &data,
                        tls: session.tls_active(),
                        received_at: (context.now_s)(),
                        id: &format!("{id}.{n_messages}"),
                    };
                    deliver(context, &mut state, peer, message).await
                }
                Event::Auth(credentials) => pipeline.auth(&mut state, credentials).await,
                Event::StartTls => {
                    let Some(tls) = &context.tls else { return Ok(()) };
                    if let Err(e) = connection.start_tls(tls, context.options.tls_handshake_timeout).await {
                        tracing::debug!(%peer, error = %e, "smtp: STARTTLS failed");
                        return Ok(());
                    }
                    session.handle_tls_started();
                    continue;
                }
                Event::Quit | Event::Close { .. } => {
                    flush(&mut session, &mut connection, context).await?;
                    return Ok(());
                }
            };
            session.handle_decision(decision);
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
                connection.write_all_within(bye, context.options.write_timeout).await?;
                return Ok(());
            }
        }
    }
}

/// Hands a message to the pipeline, logs and counts its outcome, and turns the reply
/// into the session's decision.
async fn deliver<P: Pipeline>(
    context: &Context<P>,
    state: &mut P::Session,
    peer: SocketAddr,
    message: Message<'_>,
) -> Decision {
    let delivery = CatchUnwind(std::pin::pin!(context.pipeline.message(state, message))).await;
    let reply = delivery.unwrap_or_else(|_| {
        // Not the message's fault as far as we know (the pipeline refuses those it cannot
        // parse): a temporary error, logged by the panic.
        tracing::error!(%peer, id = %message.id, "delivery panicked");
        Reply::new(451, "4.3.0", "local error, try again later")
    });
    let n_recipients = message.recipients.len();
    tracing::info!(%peer, from = %message.mail_from, n_recipients, reply = %reply, "smtp message");
    match reply.code() {
        200..=399 => context.metrics.messages_accepted.inc(),
        400..=499 => context.metrics.messages_deferred.inc(),
        _ => context.metrics.messages_refused.inc(),
    }
    if reply.is_success() { Decision::Accept } else { Decision::Reject(reply) }
}

async fn flush<P>(session: &mut Session, connection: &mut Connection, context: &Context<P>) -> std::io::Result<()> {
    while let Some(bytes) = session.poll_output() {
        connection.write_all_within(&bytes, context.options.write_timeout).await?;
    }
    Ok(())
}

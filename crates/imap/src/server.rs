//! Sockets: the accept loop and the driver of one connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hameau_imap_session::{Code, Event, LoginError, Session, Status};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::Context;
use crate::state::Conn;
use crate::transport::{Connection, Deflate};

/// The `* BYE` of a session whose login lapsed (IMAP text is ASCII: English, as the
/// server's other answers).
const LOGIN_LAPSED: &str = "Login no longer valid: password changed, account disabled or deleted";

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
                    if Box::pin(conn.login_lapsed()).await {
                        // The command is not run: its tag gets no answer, BYE ends it.
                        session.bye(LOGIN_LAPSED);
                        break;
                    }
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
        let login_check = conn.next_login_check();
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
            // A session that only waits (IDLE, or a client keeping a connection open) ends
            // too once its login lapses.
            _ = tokio::time::sleep_until(login_check.unwrap_or_else(tokio::time::Instant::now)), if login_check.is_some() => {
                if Box::pin(conn.login_lapsed()).await {
                    session.bye(LOGIN_LAPSED);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

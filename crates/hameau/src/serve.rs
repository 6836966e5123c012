//! `hameau serve`: opens the store, starts every listener, and on SIGTERM or SIGINT stops
//! accepting, gives work in flight `server.shutdown_grace_s` to finish, and closes the store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hameau_config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use hameau_directory::{AuthLimiter, Directory};
use hameau_telemetry::Registry;

/// The system clock: the one place the time is read.
pub struct SystemClock;

impl hameau_http::Clock for SystemClock {
    fn now_s(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
    }
}

/// What the HTTP handlers share, from the configuration and the open store.
pub fn app_state(
    config: &Config,
    store: &hameau_store::Store,
    directory: &Directory,
    registry: &Arc<Registry>,
) -> hameau_http::AppState {
    let metrics_token = Some(config.http.metrics_token.clone()).filter(|token| !token.is_empty());
    hameau_http::AppState {
        store: store.clone(),
        directory: directory.clone(),
        limiter: directory.limiter().clone(),
        clock: Arc::new(SystemClock),
        registry: registry.clone(),
        metrics: hameau_http::HttpMetrics::new(registry, "https"),
        options: Arc::new(hameau_http::ApiOptions {
            request_bytes_max: config.http.request_bytes_max,
            metrics_token,
            dns: hameau_directory::dns::DnsOptions { mx_host: config.server.hostname.clone() },
        }),
    }
}

pub fn run(config: Config) -> anyhow::Result<()> {
    crate::logging::init(&config.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    // An error is printed once, by main, as one line.
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    match &config.source {
        Some(source) => tracing::info!(version, config = %source.path.display(), "hameau starting"),
        None => tracing::info!(version, "hameau starting with the built-in configuration"),
    }
    // Signal handlers first: a signal that comes once we say "ready" must be caught.
    let mut signals = Signals::new()?;
    let store = hameau_store::Store::open(&config.store).await.context("opening the store")?;
    tracing::info!(backend = "rocksdb", path = %config.store_path().display(), "store open");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut services = JoinSet::new();
    let registry = Arc::new(Registry::new());
    // One limiter: failed logins over IMAP and HTTPS count together per address.
    let limiter = Arc::new(AuthLimiter::new(config.auth.clone()));
    // One directory for every service: one credential cache, one view of the accounts.
    let directory = Directory::new(store.clone(), config.directory.clone()).with_limiter(limiter.clone());
    // One mail model: SMTP deliveries wake the IMAP sessions of the same account.
    let mail = hameau_mailbox::Mail::with_limits(store.clone(), config.mail.clone());
    let mut started = start_http(&config, &store, &directory, &limiter, &registry, &shutdown_rx, &mut services).await;
    if started.is_ok() {
        started = start_smtp(&config, &mail, &directory, &registry, &shutdown_rx, &mut services).await;
    }
    if started.is_ok() {
        started = start_imap(&config, &mail, &directory, &registry, &shutdown_rx, &mut services).await;
    }
    if let Err(e) = started {
        services.abort_all();
        store.close().await.context("closing the store")?;
        return Err(e);
    }
    tracing::info!("hameau ready");

    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down: no new connections");
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_secs(config.server.shutdown_grace_s);
    let drained = tokio::time::timeout(grace, async { while services.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(grace_s = grace.as_secs(), "work still in flight after the grace period: closing it");
        services.abort_all();
        while services.join_next().await.is_some() {}
    }
    store.close().await.context("closing the store")?;
    tracing::info!("hameau stopped");
    Ok(())
}

async fn start_http(
    config: &Config,
    store: &hameau_store::Store,
    directory: &Directory,
    limiter: &Arc<AuthLimiter>,
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.http.listen.is_empty() {
        return Ok(());
    }
    let tls = crate::tls::server_config(config)?;
    let mut state = app_state(config, store, directory, registry);
    state.limiter = limiter.clone();
    let options = hameau_http::Options {
        connections_max: config.http.connections_max,
        connections_per_ip_max: config.http.connections_per_ip_max,
        header_timeout: Duration::from_secs(config.http.header_timeout_s),
        body_timeout: Duration::from_secs(config.http.body_timeout_s),
        write_timeout: Duration::from_secs(config.http.write_timeout_s),
        metrics: state.metrics.clone(),
    };
    let router = hameau_http::router(state);
    for addr in &config.http.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| config.error("http.listen", format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().context("listener address")?;
        tracing::info!(service = "https", addr = %local, "listening");
        services.spawn(hameau_http::run(listener, tls.clone(), router.clone(), options.clone(), shutdown.clone()));
    }
    Ok(())
}

async fn start_smtp(
    config: &Config,
    mail: &hameau_mailbox::Mail,
    directory: &Directory,
    registry: &Registry,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.smtp.listen.is_empty() {
        return Ok(());
    }
    // The MX offers STARTTLS with the same certificate, without HTTP's ALPN.
    let mut tls = (*crate::tls::server_config(config)?).clone();
    tls.alpn_protocols.clear();
    let cache = hameau_smtp::dns::Cache {
        entries: config.dns.cache_entries,
        ttl_max: Duration::from_secs(config.dns.cache_ttl_max_s),
    };
    let resolver = hameau_smtp::dns::resolver(&config.dns.resolvers, Duration::from_secs(config.dns.timeout_s), cache)
        .map_err(|e| config.error("dns.resolvers", e))?;
    let inbound = hameau_smtp::Inbound::new(
        directory.clone(),
        mail.clone(),
        mail_auth::MessageAuthenticator(resolver),
        hameau_smtp::InboundOptions {
            hostname: config.server.hostname.clone(),
            mailbox_names: hameau_mailbox::MailboxNames::default(),
            arc_trusted_sealers: config.smtp.arc_trusted_sealers.clone(),
            dkim_signatures_max: config.smtp.dkim_signatures_max,
            arc_sets_max: config.smtp.arc_sets_max,
            verifications_max: config.smtp.verifications_max,
            postmaster: Some(config.smtp.postmaster.clone()).filter(|address| !address.is_empty()),
        },
    );
    let context = Arc::new(hameau_smtp::server::Context {
        inbound,
        // One budget of connections and one count per address for all the MX's listeners.
        gate: hameau_net::Gate::new(config.smtp.connections_max, config.smtp.connections_per_ip_max),
        tls: Some(Arc::new(tls)),
        options: hameau_smtp::server::Options {
            session: hameau_smtp_session::Options {
                limits: config.smtp_limits(),
                starttls_available: true,
                tls_active: false,
            },
            hostname: config.server.hostname.clone(),
            tls_handshake_timeout: Duration::from_secs(config.smtp.tls_handshake_timeout_s),
            write_timeout: Duration::from_secs(config.smtp.write_timeout_s),
        },
        now_s: Arc::new(|| <SystemClock as hameau_http::Clock>::now_s(&SystemClock)),
        sessions: std::sync::atomic::AtomicU64::new(0),
        metrics: hameau_smtp::server::Metrics::new(registry),
    });
    for addr in &config.smtp.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| config.error("smtp.listen", format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().context("listener address")?;
        tracing::info!(service = "smtp", addr = %local, "listening");
        services.spawn(hameau_smtp::server::run(listener, context.clone(), shutdown.clone()));
    }
    Ok(())
}

async fn start_imap(
    config: &Config,
    mail: &hameau_mailbox::Mail,
    directory: &Directory,
    registry: &Registry,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.imap.listen.is_empty() && config.imap.listen_tls.is_empty() {
        return Ok(());
    }
    let mut tls = (*crate::tls::server_config(config)?).clone();
    tls.alpn_protocols = vec![b"imap".to_vec()];
    let context = Arc::new(hameau_imap::Context {
        mail: mail.clone(),
        directory: directory.clone(),
        tls: Some(Arc::new(tls)),
        options: hameau_imap::Options {
            session: hameau_imap_session::Options {
                limits: config.imap_limits(),
                extensions: hameau_imap_session::Extensions::default(),
                starttls_available: true,
                tls_active: false,
                plaintext_auth_allowed: config.imap.plaintext_auth,
                preauthenticated: false,
                greeting: "Hameau ready".into(),
            },
            tls_handshake_timeout: Duration::from_secs(config.imap.tls_handshake_timeout_s),
            mailbox_names: hameau_mailbox::MailboxNames::default(),
        },
        now_s: || <SystemClock as hameau_http::Clock>::now_s(&SystemClock),
        summaries: hameau_imap::SummaryCache::new(config.imap.summary_cache_entries, config.imap.summary_cache_bytes),
        texts: hameau_imap::TextCache::new(config.imap.text_cache_bytes),
        metrics: hameau_telemetry::ServiceMetrics::new(registry, "imap"),
    });
    // One budget of connections and one count per address for both ports.
    let gate = hameau_net::Gate::new(config.imap.connections_max, config.imap.connections_per_ip_max);
    for (addrs, implicit_tls, key, service) in [
        (&config.imap.listen, false, "imap.listen", "imap"),
        (&config.imap.listen_tls, true, "imap.listen_tls", "imaps"),
    ] {
        for addr in addrs {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| config.error(key, format!("cannot listen on {addr}: {e}")))?;
            let local = listener.local_addr().context("listener address")?;
            tracing::info!(service, addr = %local, "listening");
            services.spawn(hameau_imap::server::run(
                listener,
                context.clone(),
                implicit_tls,
                gate.clone(),
                shutdown.clone(),
            ));
        }
    }
    Ok(())
}

/// SIGTERM (systemd's stop) and SIGINT (Ctrl-C).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        Ok(Signals { term, int })
    }

    /// Waits for either and names it.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

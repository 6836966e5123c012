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

impl hameau_acme::Clock for SystemClock {
    fn now_s(&self) -> u64 {
        <SystemClock as hameau_http::Clock>::now_s(self)
    }
}

/// What the HTTP handlers share, from the configuration and the open store.
pub fn app_state(
    config: &Config,
    store: &hameau_store::Store,
    directory: &Directory,
    mail: &hameau_mailbox::Mail,
    registry: &Arc<Registry>,
) -> hameau_http::AppState {
    // What autoconfiguration tells mail clients: the host name, and the port of each
    // listener's first address; the standard port where a listener has none or lets the
    // system pick (port 0), since clients cannot use those.
    let standard = hameau_http::ClientSettings::standard(&config.server.hostname);
    let port = |listen: &[std::net::SocketAddr], default: u16| {
        listen.first().map(|addr| addr.port()).filter(|port| *port != 0).unwrap_or(default)
    };
    let client = hameau_http::ClientSettings {
        imaps_port: port(&config.imap.listen_tls, standard.imaps_port),
        imap_port: port(&config.imap.listen, standard.imap_port),
        submissions_port: port(&config.submission.listen_tls, standard.submissions_port),
        submission_port: port(&config.submission.listen, standard.submission_port),
        host: standard.host,
    };
    hameau_http::AppState {
        store: store.clone(),
        directory: directory.clone(),
        limiter: directory.limiter().clone(),
        clock: Arc::new(SystemClock),
        registry: registry.clone(),
        metrics: hameau_http::HttpMetrics::new(registry, "https"),
        options: Arc::new(config.http.clone()),
        dns: hameau_directory::dns::DnsOptions { mx_host: config.server.hostname.clone() },
        queue: hameau_queue::Queue::new(store.clone(), config.queue.clone()),
        client,
        backups: Arc::new(match crate::cluster::refuse_clusters(config, "backup") {
            Ok(()) => hameau_http::api::backups::Jobs::new(config.backup.clone()),
            Err(e) => hameau_http::api::backups::Jobs::new(config.backup.clone()).refusing(e.to_string()),
        }),
        moves: Arc::default(),
        imports: None,
        mail: mail.clone(),
        quarantine: hameau_filter::Quarantine::new(store.clone(), &config.filter),
        filter_settings: hameau_filter::Settings::new(store.clone(), &config.filter),
        jmap: Arc::new(hameau_jmap::mail::Services {
            mail: mail.clone(),
            summaries: config.imap.summary_cache(),
            texts: config.imap.text_cache(),
            limits: config.jmap.clone(),
            submitter: None,
            push: Arc::default(),
            queries: Default::default(),
        }),
        jmap_in_flight: Arc::default(),
    }
}

pub fn run(config: Config) -> anyhow::Result<()> {
    let reload_log = crate::logging::init(&config.log);
    if config.server.release_start_code {
        crate::code_pages::at_start();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    // An error is printed once, by main, as one line.
    runtime.block_on(serve(config, &reload_log))
}

async fn serve(config: Config, reload_log: &crate::logging::Reload) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    match &config.source {
        Some(source) => tracing::info!(version, config = %source.path.display(), "hameau starting"),
        None => tracing::info!(version, "hameau starting with the built-in configuration"),
    }
    // Signal handlers first: a signal that comes once we say "ready" must be caught.
    let mut signals = Signals::new()?;
    let store = hameau_store::Store::open(&config.store).await.context("opening the store")?;
    if matches!(config.store.backend, hameau_store::BackendKind::Postgresql) {
        // Not the URL: it may hold a password.
        tracing::info!(backend = "postgresql", schema = %config.store.schema, "store open");
    } else {
        tracing::info!(backend = "rocksdb", path = %config.store_path().display(), "store open");
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut services = JoinSet::new();
    let registry = Arc::new(Registry::new());
    // One limiter: failed logins over IMAP and HTTPS count together per address.
    let limiter = Arc::new(AuthLimiter::new(config.auth.clone()));
    // One directory for every service: one credential cache, one view of the accounts.
    let directory = Directory::new(store.clone(), config.directory.clone()).with_limiter(limiter.clone());
    // One mail model: SMTP deliveries wake the IMAP sessions of the same account; the
    // agents' moves into and out of Junk train their tenant's classifier.
    // Over the clusters of [store.clusters], if any: each account's mail in its tenant's.
    let mut mail = crate::cluster::mail(&config, &store, &directory).await?;
    // One classifier for the trainer and the MX: the counts the MX keeps in memory
    // (filter.bayes_cache_s) are forgotten by the learnings that change them.
    let classifier = hameau_filter::learning::Classifier::new(store.clone(), config.filter.limits.clone());
    if let Some(trainer) = crate::filter::trainer(&config, &store, classifier.clone()) {
        mail = mail.with_junk_learner(trainer);
    }
    // The text index follows each account's deliveries (mail.text_index, docs/mail-model.md).
    mail = mail.with_text_index();
    // What JMAP runs on: the same mail model, the caches IMAP shares with it, and (below)
    // the submission pipeline.
    let mut jmap = hameau_jmap::mail::Services {
        mail: mail.clone(),
        summaries: config.imap.summary_cache(),
        texts: config.imap.text_cache(),
        limits: config.jmap.clone(),
        submitter: None,
        push: Arc::default(),
        queries: Default::default(),
    };
    // One quarantine and one cache of the tenants' filter settings: the MX holds and
    // reads, the API releases and writes (a change applies to the next message).
    let filter = (
        hameau_filter::Quarantine::new(store.clone(), &config.filter),
        hameau_filter::Settings::new(store.clone(), &config.filter),
    );
    // One queue: submission fills it, the API administers it; what they queue or make due
    // wakes its worker through the store's notifications.
    let queue = hameau_queue::Queue::new(store.clone(), config.queue.clone());
    // One submission pipeline for SMTP submission and JMAP's EmailSubmission: one set of
    // sending limits per account and tenant.
    let mut submission = hameau_smtp::Submission::new(
        directory.clone(),
        queue.clone(),
        config.submission.pipeline(&config.server.hostname),
        system_now_s(),
        &registry,
    );
    if config.filter.enabled {
        submission = submission.with_contacts(hameau_filter::Contacts::new(store.clone(), &config.filter));
    }
    jmap.submitter = Some(Arc::new(crate::sending::JmapSubmitter {
        submission: submission.clone(),
        directory: directory.clone(),
        sent: std::sync::atomic::AtomicU64::new(0),
    }));
    // One resolver, one answer cache, for the MX's checks and the outbound queue's routes.
    let resolver = match config.dns.resolver() {
        Ok(resolver) => resolver,
        Err(e) => {
            store.close().await.context("closing the store")?;
            return Err(config.error("dns.resolvers", e).into());
        }
    };
    // One certificate table for every TLS listener: replaced in place on SIGHUP.
    let certificates = match crate::tls::certificates(&config) {
        Ok(certificates) => certificates,
        Err(e) => {
            store.close().await.context("closing the store")?;
            return Err(e);
        }
    };
    // A certificate ACME installs for the host name then serves clients without SNI too.
    certificates.set_default_name(&config.server.hostname);
    let certs = &certificates;
    // ACME's HTTP-01 answers, served on port 80.
    let http01 = hameau_net::Http01Tokens::new();
    let imports = match start_imports(&config, &mail, &shutdown_rx, &mut services) {
        Ok(imports) => imports,
        Err(e) => {
            store.close().await.context("closing the store")?;
            return Err(e);
        }
    };
    let shared = (&store, &directory, &queue, certs);
    let mut started =
        start_http(&config, shared, (&jmap, &filter), &imports, &registry, &shutdown_rx, &mut services).await;
    if started.is_ok() {
        started = start_plain(&config, &http01, &registry, &shutdown_rx, &mut services).await;
    }
    let filter_stage = filter_stage(&config, (&store, &filter, classifier), &directory, &resolver, &registry);
    if started.is_ok() {
        let shared = (&mail, &directory, &resolver, certs);
        started = match &filter_stage {
            Ok(filter) => {
                // Vacation responses go out through the one queue.
                let responder = Arc::new(hameau_smtp::vacation::Responder {
                    mail: mail.clone(),
                    directory: directory.clone(),
                    queue: queue.clone(),
                    period_s: config.smtp.vacation_period_s,
                    senders_max: config.smtp.vacation_senders_max,
                    hostname: config.server.hostname.clone(),
                });
                let stages = (filter.clone(), responder);
                start_smtp(&config, shared, stages, &registry, &shutdown_rx, &mut services).await
            }
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
    }
    if started.is_ok() {
        started = start_imap(&config, &jmap, &directory, certs, &registry, &shutdown_rx, &mut services).await;
    }
    if started.is_ok() {
        let shared = (&store, &resolver, queue, certs);
        started =
            start_submission(&config, shared, (&mail, &directory, submission), &registry, &shutdown_rx, &mut services)
                .await;
    }
    let acme = match started {
        Ok(()) => start_acme(&config, (&store, &directory, certs, &http01), &registry, &shutdown_rx, &mut services),
        Err(e) => Err(e),
    };
    let acme = match acme {
        Ok(acme) => acme,
        Err(e) => {
            services.abort_all();
            store.close().await.context("closing the store")?;
            return Err(e);
        }
    };
    start_quarantine_sweep(&filter.0, &shutdown_rx, &mut services);
    start_forget_sweep(&directory, &mail, &shutdown_rx, &mut services);
    tracing::info!("hameau ready");
    if config.server.release_start_code {
        tokio::spawn(crate::code_pages::release_start_code());
    }

    let mut running = config.clone();
    let signal = loop {
        match signals.wait().await {
            "SIGHUP" => {
                reload(&mut running, &certificates, reload_log);
                // A reload is also when an operator wants ACME to look again (a new domain).
                if let Some(acme) = &acme {
                    acme.notify_one();
                }
            }
            signal => break signal,
        }
    };
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
    (store, directory, queue, certificates): (
        &hameau_store::Store,
        &Directory,
        &hameau_queue::Queue,
        &Arc<hameau_net::Certificates>,
    ),
    (jmap, (quarantine, filter_settings)): (&hameau_jmap::mail::Services, &FilterShared),
    imports: &Arc<hameau_migrate::Jobs>,
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.http.listen.is_empty() {
        return Ok(());
    }
    // ACME's TLS-ALPN-01 is answered on 443 (RFC 8737): offer its protocol when it is used.
    let tls_alpn_01 = config.acme.enabled() && config.acme.challenge == hameau_acme::Challenge::TlsAlpn01;
    let alpn: &[&[u8]] = if tls_alpn_01 { &[b"http/1.1", hameau_net::certs::ACME_TLS_ALPN] } else { &[b"http/1.1"] };
    let tls = crate::tls::server_config(certificates, alpn);
    let mut state = app_state(config, store, directory, &jmap.mail, registry);
    // The directory's limiter is the one every protocol shares (`app_state` takes it).
    state.queue = queue.clone();
    state.imports = Some(imports.clone());
    state.jmap = Arc::new(jmap.clone());
    (state.quarantine, state.filter_settings) = (quarantine.clone(), filter_settings.clone());
    let metrics = state.metrics.clone();
    // JMAP's pushes to PushSubscriptions and the expiry of uploads; at shutdown it ends
    // the EventSource streams, so that connections can close.
    services.spawn(hameau_http::jmap::push::run(state.clone(), shutdown.clone()));
    let router = hameau_http::router(state);
    for addr in &config.http.listen {
        let listener = listen(config, addr, "http.listen", "https").await?;
        let options = config.http.clone();
        services.spawn(hameau_http::run(
            listener,
            tls.clone(),
            router.clone(),
            options,
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    Ok(())
}

/// The import jobs of the admin API (`/api/v1/imports`), over the server's mail model and
/// the system's TLS roots (a job may add its source's CA); cancelled at shutdown, before
/// the store closes.
fn start_imports(
    config: &Config,
    mail: &hameau_mailbox::Mail,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<Arc<hameau_migrate::Jobs>> {
    let clock: hameau_migrate::Clock = system_now_s();
    let importer = hameau_migrate::Importer::new(mail.clone(), config.migrate.clone(), clock);
    let roots = crate::tls::roots(None).context("the system's TLS roots")?;
    let jobs = Arc::new(hameau_migrate::Jobs::new(Arc::new(importer), Arc::new(roots)));
    let (task_jobs, mut stop) = (jobs.clone(), shutdown.clone());
    services.spawn(async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
        task_jobs.shutdown().await;
    });
    Ok(jobs)
}

/// The plain HTTP listeners (port 80): ACME's HTTP-01 answers, and a redirect to HTTPS.
async fn start_plain(
    config: &Config,
    http01: &Arc<hameau_net::Http01Tokens>,
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let router = hameau_http::plain::router(http01.clone());
    let metrics = hameau_http::HttpMetrics::new(registry, "http");
    for addr in &config.http.listen_plain {
        let listener = listen(config, addr, "http.listen_plain", "http").await?;
        let run =
            hameau_http::run_plain(listener, router.clone(), config.http.clone(), metrics.clone(), shutdown.clone());
        services.spawn(run);
    }
    Ok(())
}

/// The ACME client when `[acme] directory_url` is set: certificates for the host name and
/// each domain's client names, installed in the table. Returns what wakes it.
fn start_acme(
    config: &Config,
    (store, directory, certificates, http01): (
        &hameau_store::Store,
        &Directory,
        &Arc<hameau_net::Certificates>,
        &Arc<hameau_net::Http01Tokens>,
    ),
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<Option<Arc<tokio::sync::Notify>>> {
    if !config.acme.enabled() {
        return Ok(None);
    }
    let context = hameau_acme::Context {
        host_name: config.server.hostname.clone(),
        certificates: certificates.clone(),
        http01: http01.clone(),
        store: store.clone(),
        domains: Arc::new(directory.clone()),
        clock: Arc::new(SystemClock),
        registry: registry.clone(),
        roots: Arc::new(
            crate::tls::roots(config.acme.ca_file()).map_err(|e| config.error("acme.ca_file", format!("{e:#}")))?,
        ),
    };
    let acme = hameau_acme::Acme::new(config.acme.clone(), context);
    let wake = acme.waker();
    services.spawn(acme.run(shutdown.clone()));
    Ok(Some(wake))
}

/// The MX's filter stage (`[filter]`), with its blocklists' resolver; `None` when the
/// filter is off.
fn filter_stage(
    config: &Config,
    (store, (quarantine, settings), classifier): (
        &hameau_store::Store,
        &FilterShared,
        hameau_filter::learning::Classifier,
    ),
    directory: &Directory,
    resolver: &hickory_resolver::TokioResolver,
    registry: &Arc<Registry>,
) -> anyhow::Result<Option<Arc<hameau_smtp::filtering::FilterStage>>> {
    let options = &config.filter;
    if !options.enabled {
        return Ok(None);
    }
    let dnsbl_resolver = match options.dnsbl_resolvers.is_empty() {
        true => resolver.clone(),
        false => {
            let cache = hameau_smtp::dns::Cache {
                entries: config.dns.cache_entries,
                ttl_max: std::time::Duration::from_secs(config.dns.cache_ttl_max_s),
            };
            hameau_smtp::dns::resolver(&options.dnsbl_resolvers, config.dns.timeout(), cache)
                .map_err(|e| config.error("filter.dnsbl_resolvers", e))?
        }
    };
    Ok(Some(Arc::new(hameau_smtp::filtering::FilterStage::new(
        options.clone(),
        directory.clone(),
        hameau_filter::Contacts::new(store.clone(), options),
        classifier,
        settings.clone(),
        quarantine.clone(),
        hameau_smtp::dnsbl::Dnsbl::new(dnsbl_resolver, options),
        registry.clone(),
    ))))
}

async fn start_smtp(
    config: &Config,
    (mail, directory, resolver, certificates): (
        &hameau_mailbox::Mail,
        &Directory,
        &hickory_resolver::TokioResolver,
        &Arc<hameau_net::Certificates>,
    ),
    (filter, responder): (Option<Arc<hameau_smtp::filtering::FilterStage>>, Arc<hameau_smtp::vacation::Responder>),
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.smtp.listen.is_empty() {
        return Ok(());
    }
    // SMTP has no ALPN.
    let tls = crate::tls::server_config(certificates, &[]);
    let hostname = &config.server.hostname;
    let mut inbound = hameau_smtp::Inbound::new(
        directory.clone(),
        mail.clone(),
        mail_auth::MessageAuthenticator(resolver.clone()),
        config.smtp.inbound(hostname),
    );
    if let Some(filter) = filter {
        inbound = inbound.with_filter(filter);
    }
    let inbound = inbound.with_responder(responder);
    let context = Arc::new(hameau_smtp::server::Context {
        pipeline: inbound,
        // One budget of connections and one count per address for all the MX's listeners.
        gate: config.smtp.gate(),
        tls: Some(tls),
        options: config.smtp.server(hostname, true),
        now_s: system_now_s(),
        sessions: std::sync::atomic::AtomicU64::new(0),
        metrics: hameau_smtp::server::Metrics::new(registry),
    });
    for addr in &config.smtp.listen {
        let listener = listen(config, addr, "smtp.listen", "smtp").await?;
        services.spawn(hameau_smtp::server::run(listener, context.clone(), shutdown.clone()));
    }
    Ok(())
}

/// Binds `addr` (the config key `key` named in the error) and logs that `service` listens.
async fn listen(
    config: &Config,
    addr: &std::net::SocketAddr,
    key: &str,
    service: &'static str,
) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).await.map_err(|e| config.error(key, format!("cannot listen on {addr}: {e}")))?;
    let local = listener.local_addr().context("listener address")?;
    tracing::info!(service, addr = %local, "listening");
    Ok(listener)
}

/// The binary's clock, in seconds since the Unix epoch, for the SMTP pipelines.
fn system_now_s() -> Arc<dyn Fn() -> u64 + Send + Sync> {
    Arc::new(|| <SystemClock as hameau_http::Clock>::now_s(&SystemClock))
}

/// The filter's quarantine and the tenants' settings, shared by the MX and the API.
type FilterShared = (hameau_filter::Quarantine, hameau_filter::Settings);

/// How often the held mail that expired is deleted: expiry is counted in days
/// (`filter.quarantine_expiry_s`), so an hour late is nothing, and a sweep an hour costs
/// a scan that finds nothing most of the time.
const QUARANTINE_SWEEP_S: u64 = 3600;

/// Deletes the held mail that expired, at start and every [`QUARANTINE_SWEEP_S`], until
/// shutdown.
fn start_quarantine_sweep(
    quarantine: &hameau_filter::Quarantine,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) {
    let (quarantine, mut shutdown) = (quarantine.clone(), shutdown.clone());
    services.spawn(async move {
        loop {
            match quarantine.expire(<SystemClock as hameau_http::Clock>::now_s(&SystemClock)).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "quarantine: expired held mail deleted"),
                Err(e) => tracing::warn!(error = %e, "quarantine: the expiry sweep failed; it runs again later"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(QUARANTINE_SWEEP_S)) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    });
}

/// Finishes the deletions of accounts' mail cut short (`hameau_http::api::forget`), at
/// start and every `FORGET_SWEEP_S`, until shutdown.
fn start_forget_sweep(
    directory: &Directory,
    mail: &hameau_mailbox::Mail,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) {
    use hameau_http::api::forget::{FORGET_SWEEP_S, forget_deleted_accounts};
    let (directory, mail, mut shutdown) = (directory.clone(), mail.clone(), shutdown.clone());
    services.spawn(async move {
        loop {
            if let Err(error) = forget_deleted_accounts(&directory, &mail).await {
                tracing::warn!(%error, "deleted accounts: the sweep of their mail failed; it runs again later");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(FORGET_SWEEP_S)) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
    });
}

/// The outbound queue's delivery worker (always: the queue may hold mail from before),
/// and the submission listeners that fill the queue.
async fn start_submission(
    config: &Config,
    (store, resolver, queue, certificates): (
        &hameau_store::Store,
        &hickory_resolver::TokioResolver,
        hameau_queue::Queue,
        &Arc<hameau_net::Certificates>,
    ),
    (mail, directory, pipeline): (&hameau_mailbox::Mail, &Directory, hameau_smtp::Submission),
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let hostname = &config.server.hostname;
    let now_s = system_now_s();
    let outbound = &config.outbound;
    // DANE needs DNSSEC-validated answers (RFC 7672 §2.1): its lookups have their own resolver.
    let validating = match outbound.dane {
        true => Some(config.dns.validating_resolver().map_err(|e| config.error("dns.trust_anchor_file", e))?),
        false => None,
    };
    let roots =
        crate::tls::roots(outbound.ca_file()).map_err(|e| config.error("outbound.ca_file", format!("{e:#}")))?;
    let tls =
        hameau_smtp::outbound::TlsContext::new(Arc::new(roots), outbound.mta_sts(), validating, Some(store.clone()))
            .map_err(|e| config.error("outbound.ca_file", e))?;
    let options = outbound.worker(hostname);
    let policies_max = options.tls_rpt.as_ref().map_or(1, |o| o.policies_max);
    let worker = hameau_smtp::worker::Worker {
        queue: queue.clone(),
        mail: mail.clone(),
        directory: directory.clone(),
        resolver: resolver.clone(),
        options,
        now_s: now_s.clone(),
        metrics: hameau_smtp::worker::WorkerMetrics::new(registry),
        tls,
        tls_sessions: Arc::new(hameau_smtp::tls_rpt::Aggregator::new(policies_max, now_s())),
    };
    services.spawn(worker.run(shutdown.clone()));
    let options = &config.submission;
    if options.listen.is_empty() && options.listen_tls.is_empty() {
        return Ok(());
    }
    let tls = crate::tls::server_config(certificates, &[]);
    let context = Arc::new(hameau_smtp::server::Context {
        pipeline,
        gate: options.gate(),
        tls: Some(tls),
        // Sessions take the MX's limits; STARTTLS is offered on 587 (required before AUTH).
        options: config.smtp.server(hostname, true),
        now_s,
        sessions: std::sync::atomic::AtomicU64::new(0),
        metrics: hameau_smtp::server::Metrics::for_protocol(registry, "submission"),
    });
    use hameau_smtp::server::Security;
    for (addrs, security, key, service) in [
        (&options.listen, Security::StartTls, "submission.listen", "submission"),
        (&options.listen_tls, Security::Implicit, "submission.listen_tls", "submissions"),
    ] {
        for addr in addrs {
            let listener = listen(config, addr, key, service).await?;
            services.spawn(hameau_smtp::server::run_with(listener, context.clone(), security, shutdown.clone()));
        }
    }
    Ok(())
}

async fn start_imap(
    config: &Config,
    jmap: &hameau_jmap::mail::Services,
    directory: &Directory,
    certificates: &Arc<hameau_net::Certificates>,
    registry: &Arc<Registry>,
    shutdown: &watch::Receiver<bool>,
    services: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    if config.imap.listen.is_empty() && config.imap.listen_tls.is_empty() {
        return Ok(());
    }
    let tls = crate::tls::server_config(certificates, &[b"imap"]);
    let context = Arc::new(hameau_imap::Context {
        mail: jmap.mail.clone(),
        directory: directory.clone(),
        tls: Some(tls),
        options: config.imap.connection(),
        now_s: || <SystemClock as hameau_http::Clock>::now_s(&SystemClock),
        summaries: jmap.summaries.clone(),
        texts: jmap.texts.clone(),
        metrics: hameau_telemetry::ServiceMetrics::new(registry, "imap"),
    });
    let gate = config.imap.gate();
    for (addrs, implicit_tls, key, service) in [
        (&config.imap.listen, false, "imap.listen", "imap"),
        (&config.imap.listen_tls, true, "imap.listen_tls", "imaps"),
    ] {
        for addr in addrs {
            let listener = listen(config, addr, key, service).await?;
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

/// SIGTERM (systemd's stop), SIGINT (Ctrl-C) and SIGHUP (`systemctl reload`).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
        let hup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
        Ok(Signals { term, int, hup })
    }

    /// Waits for one and names it.
    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// SIGHUP: reads the configuration file again and applies what changes without a
/// restart: every certificate file (`[tls]`: a renewed certificate is served from the next
/// handshake; connections in flight keep theirs) and the log level (`[log] level`). The
/// other sections are built into the running services: a change to them is logged as
/// waiting for a restart. A file that does not load changes nothing; the server keeps
/// running on what it has.
fn reload(running: &mut Config, certificates: &hameau_net::Certificates, reload_log: &crate::logging::Reload) {
    let Some(path) = running.source.as_ref().map(|source| source.path.clone()) else {
        // The built-in configuration has no file to read again; certificate files it can.
        if let Err(e) = crate::tls::reload_certificates(running, running, certificates) {
            tracing::error!(error = %format!("{e:#}"), "reload: certificates not reloaded; the old ones still serve");
        }
        return;
    };
    let new = match Config::load(&path) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(error = %e, "reload: configuration not reloaded; the running one stays");
            return;
        }
    };
    if let Err(e) = crate::tls::reload_certificates(&new, running, certificates) {
        tracing::error!(error = %format!("{e:#}"), "reload: configuration not reloaded; the running one stays");
        return;
    }
    running.tls = new.tls.clone();
    if new.log.level != running.log.level {
        reload_log(&new.log);
        running.log.level = new.log.level;
    }
    let waiting = changed_sections(running, &new);
    if waiting.is_empty() {
        tracing::info!(config = %path.display(), certificates = certificates.names().len() + 1, "reloaded");
    } else {
        tracing::warn!(
            config = %path.display(),
            sections = %waiting.join(", "),
            "reloaded the certificates and the log level; these sections changed and take effect at the next \
             restart (systemctl restart hameau)"
        );
    }
}

/// The sections of `new` that differ from `running` (after what a reload applies).
fn changed_sections(running: &Config, new: &Config) -> Vec<&'static str> {
    let sections = [
        ("server", running.server != new.server),
        ("log", running.log != new.log),
        ("store", running.store != new.store),
        ("mail", running.mail != new.mail),
        ("directory", running.directory != new.directory),
        ("auth", running.auth != new.auth),
        ("http", running.http != new.http),
        ("smtp", running.smtp != new.smtp),
        ("submission", running.submission != new.submission),
        ("queue", running.queue != new.queue),
        ("outbound", running.outbound != new.outbound),
        ("imap", running.imap != new.imap),
        ("dns", running.dns != new.dns),
        ("acme", running.acme != new.acme),
    ];
    sections.into_iter().filter(|(_, changed)| *changed).map(|(name, _)| name).collect()
}

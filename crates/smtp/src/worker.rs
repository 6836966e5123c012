//! The delivery worker: takes due messages from the queue ([`Queue::claim_due`]), delivers
//! their local recipients through the mail model ([`Mail::deliver`], as the MX does) and
//! the others over SMTP ([`crate::outbound`], recipients grouped per domain, one connection
//! carrying the messages of one round for that domain), records each recipient's outcome,
//! and queues the delivery status notifications the queue asks for: failure, and delay
//! once, to the sender, never for a notification.
//!
//! It sleeps until the next message is due, or until the queue's watch
//! ([`Queue::watch_due`]) says one was queued or made due sooner, on this node or any
//! other over the store.
//! Everything it does to a message happens under the queue's lease: a worker that dies
//! midway leaves the message to be tried again (at least once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hameau_directory::Directory;
use hameau_mailbox::{Filing, LocalDelivery, Mail};
use hameau_queue::{Claim, DueWatch, NewMessage, Outcome, Queue, Recorded, dsn};
use hameau_telemetry::{Counter, Gauge, Registry};
use hickory_resolver::TokioResolver;
use tokio::sync::{Semaphore, watch};

use crate::outbound::{self, Failure, OutboundOptions, Outgoing, TlsContext, TlsUsed};
use crate::tls_rpt;

/// The `[outbound]` section: how queued mail leaves for other servers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The receivers' port: 25 (RFC 5321 §4.5.4). Only tests set another.
    pub port: u16,
    /// Opening a TCP connection, in seconds: 30, Postfix's `smtp_connect_timeout`.
    pub connect_timeout_s: u64,
    /// Waiting for the greeting, and for the reply to EHLO, STARTTLS, MAIL, RCPT and RSET,
    /// in seconds: 300 (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout_s: u64,
    /// Waiting for the 354 reply to DATA, in seconds: 120 (RFC 5321 §4.5.3.2.4).
    pub data_init_timeout_s: u64,
    /// Each write of a block of the message, in seconds: 180 (RFC 5321 §4.5.3.2.5).
    pub data_block_timeout_s: u64,
    /// Waiting for the reply after the final dot, in seconds: 600 (RFC 5321 §4.5.3.2.6).
    pub data_termination_timeout_s: u64,
    /// Messages sent over one connection before another is opened: 100.
    pub messages_per_connection_max: usize,
    /// MX addresses tried per delivery: 5, Postfix's `smtp_mx_address_limit`.
    pub addresses_max: usize,
    /// Bytes a receiver may send between two commands of ours (its greeting, the replies to
    /// one batch of pipelined commands): 1 MiB; past it the delivery is deferred.
    pub replies_bytes_max: usize,
    /// Messages claimed per round of the worker: 100 lets one connection carry many
    /// messages to a domain.
    pub claim_batch_max: usize,
    /// Bytes of message claimed per round (at least one message): each is read whole, so
    /// this times `rounds_concurrent_max` bounds the worker's memory. 64 MiB: a hundred
    /// ordinary messages, or one of the largest (40 MiB) and a few more; without it an
    /// agent's hundred 40 MiB attachments would be read at once.
    pub claim_batch_bytes_max: u64,
    /// Destination domains delivered to at once: 16 keeps one slow receiver from holding
    /// the others up without opening hundreds of connections from one small VM.
    pub domains_concurrent_max: usize,
    /// Connections to one destination domain at once within a round: 4, so that a round's
    /// hundred messages to one big provider do not queue behind each other on one
    /// connection (Postfix allows 20 per destination).
    pub connections_per_domain_max: usize,
    /// Rounds delivered at once: 4. A round waits for its slowest receiver (up to the data
    /// termination timeout), so the mail queued meanwhile leaves in another round; at most
    /// this times `domains_concurrent_max` connections are open.
    pub rounds_concurrent_max: usize,
    /// Honour the receivers' MTA-STS policies (RFC 8461): on, as Gmail and Outlook.com
    /// publish them so that mail to them cannot be stripped of TLS on the way.
    pub mta_sts: bool,
    /// The port of the MTA-STS policy hosts: 443 (RFC 8461 §3.3). Only tests set another.
    pub mta_sts_port: u16,
    /// Fetching one policy, connection to end, in seconds: 10 s; a policy host slower than
    /// that is treated as unreachable (the cached policy, if any, still holds).
    pub mta_sts_fetch_timeout_s: u64,
    /// Largest policy body read: 64 KiB (RFC 8461 §3.3 lets senders bound it; real
    /// policies are a few hundred bytes).
    pub mta_sts_policy_bytes_max: usize,
    /// Domains whose policy is kept in memory: 10,000, a few MB.
    pub mta_sts_cache_entries_max: usize,
    /// Honour DANE (RFC 7672) where a receiver's MX and TLSA records are DNSSEC-signed: on.
    /// The resolvers of `[dns]` must then pass DNSSEC records (a local unbound does).
    pub dane: bool,
    /// A PEM file of certificate authorities trusted besides the system's, for MTA-STS
    /// (policy hosts and MX hosts): empty for none. Tests give their own test authority.
    pub ca_file: String,
    /// Send TLS reports (RFC 8460) to the domains that ask for them: on.
    pub tls_rpt: bool,
    /// The period a TLS report covers, in seconds: 86,400, one UTC day (RFC 8460 §4.1).
    pub tls_rpt_interval_s: u64,
    /// Policies counted per period: 10,000 bounds the counts' memory.
    pub tls_rpt_policies_max: usize,
    /// The reports' `From:`; empty gives `tls-reports@` the host name. Signed with that
    /// domain's DKIM keys when it has some here.
    pub tls_rpt_from: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 25,
            connect_timeout_s: 30,
            command_timeout_s: 300,
            data_init_timeout_s: 120,
            data_block_timeout_s: 180,
            data_termination_timeout_s: 600,
            messages_per_connection_max: 100,
            addresses_max: 5,
            replies_bytes_max: 1 << 20,
            claim_batch_max: 100,
            claim_batch_bytes_max: 64 * 1024 * 1024,
            domains_concurrent_max: 16,
            connections_per_domain_max: 4,
            rounds_concurrent_max: 4,
            mta_sts: true,
            mta_sts_port: 443,
            mta_sts_fetch_timeout_s: 10,
            mta_sts_policy_bytes_max: 64 * 1024,
            mta_sts_cache_entries_max: 10_000,
            dane: true,
            ca_file: String::new(),
            tls_rpt: true,
            tls_rpt_interval_s: 86_400,
            tls_rpt_policies_max: 10_000,
            tls_rpt_from: String::new(),
        }
    }
}

impl Options {
    /// Ranges, each naming its `[outbound]` key.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::range;
        let ranges = [
            ("port", u64::from(self.port), 1, 65_535),
            ("connect_timeout_s", self.connect_timeout_s, 1, 600),
            // RFC 5321 §4.5.3.2: the minimums are 5, 2, 3 and 10 minutes; shorter is for tests.
            ("command_timeout_s", self.command_timeout_s, 1, 3600),
            ("data_init_timeout_s", self.data_init_timeout_s, 1, 3600),
            ("data_block_timeout_s", self.data_block_timeout_s, 1, 3600),
            ("data_termination_timeout_s", self.data_termination_timeout_s, 1, 3600),
            ("messages_per_connection_max", self.messages_per_connection_max as u64, 1, 10_000),
            ("addresses_max", self.addresses_max as u64, 1, 100),
            ("replies_bytes_max", self.replies_bytes_max as u64, 64 * 1024, 64 * 1024 * 1024),
            ("claim_batch_max", self.claim_batch_max as u64, 1, 10_000),
            ("claim_batch_bytes_max", self.claim_batch_bytes_max, 1024 * 1024, 16 * 1024 * 1024 * 1024),
            ("domains_concurrent_max", self.domains_concurrent_max as u64, 1, 10_000),
            ("connections_per_domain_max", self.connections_per_domain_max as u64, 1, 100),
            ("rounds_concurrent_max", self.rounds_concurrent_max as u64, 1, 1000),
            ("mta_sts_port", u64::from(self.mta_sts_port), 1, 65_535),
            ("mta_sts_fetch_timeout_s", self.mta_sts_fetch_timeout_s, 1, 300),
            ("mta_sts_policy_bytes_max", self.mta_sts_policy_bytes_max as u64, 1024, 1024 * 1024),
            ("mta_sts_cache_entries_max", self.mta_sts_cache_entries_max as u64, 1, 10_000_000),
            // Under a minute only for tests; RFC 8460 §4.1 expects daily reports.
            ("tls_rpt_interval_s", self.tls_rpt_interval_s, 1, 7 * 86_400),
            ("tls_rpt_policies_max", self.tls_rpt_policies_max as u64, 1, 10_000_000),
        ];
        for (key, value, min, max) in ranges {
            range("outbound", key, value, min, max)?;
        }
        if !self.tls_rpt_from.is_empty() && !self.tls_rpt_from.contains('@') {
            let problem = format!("{:?} is not an address", self.tls_rpt_from);
            return Err(hameau_limits::Problem::new("outbound", "tls_rpt_from", problem));
        }
        Ok(())
    }

    /// `ca_file`, when given.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        Some(std::path::Path::new(&self.ca_file)).filter(|_| !self.ca_file.is_empty())
    }

    /// The MTA-STS settings, when MTA-STS is on.
    pub fn mta_sts(&self) -> Option<crate::mta_sts::Options> {
        self.mta_sts.then(|| crate::mta_sts::Options {
            port: self.mta_sts_port,
            fetch_timeout: Duration::from_secs(self.mta_sts_fetch_timeout_s),
            policy_bytes_max: self.mta_sts_policy_bytes_max,
            cache_entries_max: self.mta_sts_cache_entries_max,
        })
    }

    /// The worker's options, for `hostname`.
    pub fn worker(&self, hostname: &str) -> WorkerOptions {
        let seconds = Duration::from_secs;
        let mut outbound = OutboundOptions::new(hostname);
        outbound.port = self.port;
        outbound.connect_timeout = seconds(self.connect_timeout_s);
        outbound.greeting_timeout = seconds(self.command_timeout_s);
        outbound.command_timeout = seconds(self.command_timeout_s);
        outbound.mail_timeout = seconds(self.command_timeout_s);
        outbound.rcpt_timeout = seconds(self.command_timeout_s);
        outbound.data_init_timeout = seconds(self.data_init_timeout_s);
        outbound.data_block_timeout = seconds(self.data_block_timeout_s);
        outbound.data_termination_timeout = seconds(self.data_termination_timeout_s);
        outbound.messages_per_connection_max = self.messages_per_connection_max;
        outbound.addresses_max = self.addresses_max;
        outbound.replies_bytes_max = self.replies_bytes_max;
        let tls_rpt_from =
            if self.tls_rpt_from.is_empty() { format!("tls-reports@{hostname}") } else { self.tls_rpt_from.clone() };
        WorkerOptions {
            hostname: hostname.to_string(),
            outbound,
            claim_batch_max: self.claim_batch_max,
            claim_batch_bytes_max: self.claim_batch_bytes_max,
            domains_concurrent_max: self.domains_concurrent_max,
            rounds_concurrent_max: self.rounds_concurrent_max,
            connections_per_domain_max: self.connections_per_domain_max,
            tls_rpt: self.tls_rpt.then_some(TlsRptOptions {
                interval_s: self.tls_rpt_interval_s,
                policies_max: self.tls_rpt_policies_max,
                from: tls_rpt_from,
            }),
        }
    }
}

/// How the worker works.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Our host name (notifications, `Authentication-Results` of local deliveries).
    pub hostname: String,
    pub outbound: OutboundOptions,
    /// `outbound.claim_batch_max`.
    pub claim_batch_max: usize,
    /// `outbound.claim_batch_bytes_max`.
    pub claim_batch_bytes_max: u64,
    /// `outbound.domains_concurrent_max`.
    pub domains_concurrent_max: usize,
    /// `outbound.rounds_concurrent_max`.
    pub rounds_concurrent_max: usize,
    /// `outbound.connections_per_domain_max`.
    pub connections_per_domain_max: usize,
    /// TLS reports, when `outbound.tls_rpt` is on.
    pub tls_rpt: Option<TlsRptOptions>,
}

/// How the worker sends TLS reports.
#[derive(Clone, Debug)]
pub struct TlsRptOptions {
    /// `outbound.tls_rpt_interval_s`: reports leave at each multiple of it (UTC midnight
    /// for a day).
    pub interval_s: u64,
    /// `outbound.tls_rpt_policies_max`.
    pub policies_max: usize,
    /// The reports' sender.
    pub from: String,
}

/// The worker's series in `/metrics`: recipients by outcome and route, transactions by the
/// TLS that carried them, TLS failures by kind, and the queue's size.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    outcomes: [Counter; 6],
    /// By [`TlsUsed`]: none, starttls, mta-sts, dane.
    tls: [Counter; 4],
    queue_size: Gauge,
    /// By TLS-RPT result type, in the order of [`TLS_RESULT_TYPES`].
    tls_failures: Vec<Counter>,
}

/// The result types of RFC 8460 §4.3.2.1 a failure may have.
const TLS_RESULT_TYPES: [&str; 11] = [
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
];

impl WorkerMetrics {
    pub fn new(registry: &Registry) -> WorkerMetrics {
        let counter = |route: &str, result: &str| {
            registry.counter(
                "hameau_outbound_recipients_total",
                "Delivery attempts of queued recipients, by route (local or remote) and result.",
                &[("route", route), ("result", result)],
            )
        };
        WorkerMetrics {
            outcomes: [
                counter("local", "delivered"),
                counter("local", "deferred"),
                counter("local", "failed"),
                counter("remote", "delivered"),
                counter("remote", "deferred"),
                counter("remote", "failed"),
            ],
            tls: [TlsUsed::None, TlsUsed::Starttls, TlsUsed::MtaSts, TlsUsed::Dane].map(|used| {
                registry.counter(
                    "hameau_outbound_transactions_total",
                    "Messages handed to remote servers, by what secured the connection (none, starttls, mta-sts, dane).",
                    &[("tls", used.label())],
                )
            }),
            queue_size: registry.gauge("hameau_queue_messages", "Messages in the outbound queue, held ones included.", &[]),
            tls_failures: TLS_RESULT_TYPES
                .iter()
                .map(|result| {
                    registry.counter(
                        "hameau_outbound_tls_failures_total",
                        "TLS sessions with remote servers that failed, by TLS-RPT result type.",
                        &[("result", result)],
                    )
                })
                .collect(),
        }
    }

    fn count_tls(&self, used: TlsUsed) {
        let at = match used {
            TlsUsed::None => 0,
            TlsUsed::Starttls => 1,
            TlsUsed::MtaSts => 2,
            TlsUsed::Dane => 3,
        };
        self.tls[at].inc();
    }

    /// A TLS session's failure, by its TLS-RPT result type.
    fn count_tls_failure(&self, failure: &Failure) {
        let at = TLS_RESULT_TYPES.iter().position(|name| *name == failure.result_type);
        // Every type the client gives is listed; another would be counted as the generic one.
        let at = at.unwrap_or(4);
        self.tls_failures[at].inc();
    }

    fn count(&self, remote: bool, outcome: &Outcome) {
        let result = match outcome {
            Outcome::Delivered { .. } => 0,
            Outcome::Deferred { .. } => 1,
            Outcome::Failed { .. } => 2,
        };
        self.outcomes[usize::from(remote) * 3 + result].inc();
    }
}

/// The worker; [`Worker::run`] until shutdown.
pub struct Worker {
    pub queue: Queue,
    pub mail: Mail,
    pub directory: Directory,
    pub resolver: TokioResolver,
    pub options: WorkerOptions,
    /// Seconds since the Unix epoch.
    pub now_s: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub metrics: WorkerMetrics,
    /// TLS towards receivers: MTA-STS, DANE, the trust anchors.
    pub tls: TlsContext,
    /// The TLS sessions of the period under way, for TLS-RPT.
    pub tls_sessions: Arc<tls_rpt::Aggregator>,
}

/// A domain and the messages one connection carries there: (message index, recipients).
type Share = (String, Vec<(usize, Vec<String>)>);

/// Returns when a message was queued or made due sooner; never without a watch (the store
/// gone: the schedule is looked at every [`IDLE_S_MAX`] all the same).
async fn due_changed(due: &mut Option<DueWatch>) {
    let Some(watch) = due.as_mut() else { return std::future::pending().await };
    if watch.changed().await.is_err() {
        *due = None;
    }
}

/// Longest sleep when nothing is due: the worker looks again at least this often (a clock
/// change, a notification lost with a commit whose caller was cancelled).
const IDLE_S_MAX: u64 = 60;

/// Pause after the store failed, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// At shutdown, how long rounds under way may take to finish: under systemd's stop timeout
/// (90 s), long enough to record what was just delivered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

impl Worker {
    /// Delivers until `shutdown` turns true; a round under way finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Watched before the first look at the schedule: what is queued after it wakes us.
        let mut due = match self.queue.watch_due().await {
            Ok(due) => Some(due),
            Err(e) => {
                tracing::error!(error = %e, "queue: cannot watch for queued mail; looking every {IDLE_S_MAX} s");
                None
            }
        };
        let this = Arc::new(self);
        // Rounds under way: a receiver that stalls holds up its own round only, while the
        // mail queued meanwhile leaves in the next ones.
        let mut rounds = tokio::task::JoinSet::new();
        let mut reports_at = this.options.tls_rpt.as_ref().map(|o| next_period((this.now_s)(), o.interval_s));
        // The leases of ended sessions are taken back as the worker starts (on RocksDB, its
        // previous run's), then every `queue.lease_sweep_s` (on PostgreSQL, a node that died).
        let mut sweep_at = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = (this.now_s)();
            let sweep_s = this.queue.limits().lease_sweep_s;
            // (A clock set back does not put the next look off.)
            if now >= sweep_at || sweep_at > now.saturating_add(sweep_s) {
                sweep_at = now.saturating_add(sweep_s);
                match this.queue.release_ended_leases(now).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(n, "queue: took back the messages of a node's deliveries that ended unfinished")
                    }
                    Err(e) => tracing::error!(error = %e, "queue: cannot take back the leases of ended sessions"),
                }
            }
            if let (Some(at), Some(options)) = (reports_at, &this.options.tls_rpt)
                && now >= at
            {
                // Beside the deliveries: one DNS lookup per domain seen, which must not
                // hold the queue up.
                reports_at = Some(next_period(now, options.interval_s));
                let (worker, options) = (this.clone(), options.clone());
                tokio::spawn(async move { worker.send_tls_reports(&options, now).await });
            }
            match this.queue.size().await {
                Ok(size) => this.metrics.queue_size.set(size as i64),
                Err(e) => tracing::error!(error = %e, "queue: cannot read its size"),
            }
            let mut pause = Duration::from_secs(IDLE_S_MAX);
            if rounds.len() < this.options.rounds_concurrent_max {
                match this.queue.claim_due(now, this.options.claim_batch_max, this.options.claim_batch_bytes_max).await
                {
                    Ok(claims) if !claims.is_empty() => {
                        let worker = this.clone();
                        rounds.spawn(async move { worker.deliver_claims(claims).await });
                        continue;
                    }
                    Ok(_) => match this.queue.next_due().await {
                        Ok(Some(at)) => pause = Duration::from_secs(at.saturating_sub(now).clamp(1, IDLE_S_MAX)),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "queue: cannot read the schedule");
                            pause = ERROR_PAUSE;
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "queue: cannot claim due messages");
                        pause = ERROR_PAUSE;
                    }
                }
            }
            // Asleep past the next report's time or look at the leases: woken for it.
            if let Some(at) = reports_at {
                pause = pause.min(Duration::from_secs(at.saturating_sub(now).max(1)));
            }
            pause = pause.min(Duration::from_secs(sweep_at.saturating_sub(now).max(1)));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                () = due_changed(&mut due) => {}
                Some(done) = rounds.join_next(), if !rounds.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "queue: a delivery round ended abnormally");
                    }
                }
                _ = hameau_net::stopped(&mut shutdown) => break,
            }
        }
        // Rounds under way get a moment to record what they delivered; what they had not
        // finished is tried again after the restart (their leases are taken back).
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while !rounds.is_empty() {
            tokio::select! {
                _ = rounds.join_next() => {}
                _ = &mut grace => {
                    tracing::info!(rounds = rounds.len(), "queue: stopping with deliveries under way; they will be tried again");
                    rounds.abort_all();
                    break;
                }
            }
        }
    }

    /// Delivers claimed messages and records the outcomes (one round).
    async fn deliver_claims(&self, claims: Vec<Claim>) {
        if let Err(e) = self.round(&claims).await {
            tracing::error!(error = %e, "queue: a delivery round failed");
        }
    }

    /// One round: delivers `claims` and records each recipient's outcome.
    async fn round(&self, claims: &[Claim]) -> Result<(), hameau_queue::Error> {
        let raws = futures_util::future::join_all(claims.iter().map(|claim| self.queue.raw(&claim.message))).await;
        // Per message, the outcome of each recipient, by address.
        let mut outcomes: Vec<Vec<(String, Outcome)>> = vec![Vec::new(); claims.len()];
        // Remote recipients per domain: (message index, recipients).
        let mut remote: BTreeMap<String, Vec<(usize, Vec<String>)>> = BTreeMap::new();
        let mut is_local: HashMap<String, bool> = HashMap::new();
        // Local recipients per message: (message index, recipients).
        let mut locals: Vec<(usize, Vec<String>)> = Vec::new();
        for (index, claim) in claims.iter().enumerate() {
            if let Err(e) = &raws[index] {
                tracing::error!(id = claim.id, error = %e, "queue: a message's bytes cannot be read");
                continue;
            }
            let mut local = Vec::new();
            for recipient in claim.message.pending() {
                let domain = recipient.domain();
                // Asked once per domain and round: a round holds up to `claim_batch_max`
                // messages, most of them to a handful of domains.
                let is_local = match is_local.get(&domain) {
                    Some(known) => Ok(*known),
                    None => self.directory.is_local_domain(&domain).await.inspect(|known| {
                        is_local.insert(domain.clone(), *known);
                    }),
                };
                match is_local {
                    Ok(true) => local.push(recipient.address.clone()),
                    Ok(false) => {
                        let batch = remote.entry(domain).or_default();
                        match batch.last_mut() {
                            Some((last, recipients)) if *last == index => recipients.push(recipient.address.clone()),
                            _ => batch.push((index, vec![recipient.address.clone()])),
                        }
                    }
                    Err(e) => outcomes[index].push((recipient.address.clone(), deferred(format!("451 4.3.0 {e}")))),
                }
            }
            if !local.is_empty() {
                locals.push((index, local));
            }
        }
        // Local deliveries at once: the store syncs their commits together.
        let local_deliveries = locals.iter().map(|(index, local)| {
            let raw = raws[*index].as_deref().expect("only readable messages are delivered");
            self.deliver_locally(&claims[*index], raw, local)
        });
        for ((index, _), delivered) in locals.iter().zip(futures_util::future::join_all(local_deliveries).await) {
            for (_, outcome) in &delivered {
                self.metrics.count(false, outcome);
            }
            outcomes[*index].extend(delivered);
        }
        // A domain's messages go over up to `connections_per_domain_max` connections at
        // once, each carrying a share; every connection holds one of the round's
        // `domains_concurrent_max` permits.
        let per_domain = self.options.connections_per_domain_max.max(1);
        let shares: Vec<Share> = remote
            .into_iter()
            .flat_map(|(domain, batch)| {
                let share = batch.len().div_ceil(per_domain).max(1);
                let mut batch = batch.into_iter().peekable();
                let mut shares = Vec::new();
                while batch.peek().is_some() {
                    shares.push((domain.clone(), batch.by_ref().take(share).collect::<Vec<_>>()));
                }
                shares
            })
            .collect();
        // Each message is recorded as soon as all its parts are final (its local recipients
        // are, by now): a crash resends only what was under way, not the whole round.
        let mut parts = vec![0usize; claims.len()];
        for (_, batch) in &shares {
            for (index, _) in batch {
                parts[*index] += 1;
            }
        }
        let (told, mut finals) = tokio::sync::mpsc::unbounded_channel::<(usize, Vec<(String, Outcome)>)>();
        let limit = Arc::new(Semaphore::new(self.options.domains_concurrent_max.max(1)));
        let deliveries = shares.into_iter().map(|(domain, batch)| {
            let (limit, raws, told) = (limit.clone(), &raws, told.clone());
            async move {
                let _permit = limit.acquire().await.expect("never closed");
                let messages: Vec<Outgoing<'_>> = batch
                    .iter()
                    .map(|(index, recipients)| Outgoing {
                        mail_from: &claims[*index].message.mail_from,
                        recipients,
                        data: raws[*index].as_deref().expect("only readable messages are batched"),
                    })
                    .collect();
                let done = |at: usize, results: &[Outcome]| {
                    let (index, recipients) = &batch[at];
                    let part = recipients.iter().cloned().zip(results.iter().cloned()).collect();
                    // The receiver lives as long as the round.
                    let _ = told.send((*index, part));
                };
                outbound::deliver(&self.resolver, &self.options.outbound, &self.tls, &domain, &messages, &done).await
            }
        });
        // Made now, so that the last sender goes with the last delivery.
        let deliveries: Vec<_> = deliveries.collect();
        drop(told);
        let mut records = futures_util::stream::FuturesUnordered::new();
        for (index, remaining) in parts.iter().enumerate() {
            if *remaining == 0 && raws[index].is_ok() {
                records.push(self.record(&claims[index], std::mem::take(&mut outcomes[index]), &raws[index]));
            }
        }
        let deliveries = futures_util::future::join_all(deliveries);
        tokio::pin!(deliveries);
        let mut delivered = false;
        let mut failure = Ok(());
        loop {
            tokio::select! {
                Some((index, part)) = finals.recv() => {
                    for (_, outcome) in &part {
                        self.metrics.count(true, outcome);
                    }
                    outcomes[index].extend(part);
                    parts[index] -= 1;
                    if parts[index] == 0 {
                        records.push(self.record(&claims[index], std::mem::take(&mut outcomes[index]), &raws[index]));
                    }
                }
                Some(result) = futures_util::StreamExt::next(&mut records), if !records.is_empty() => {
                    if let Err(e) = result {
                        failure = Err(e);
                    }
                }
                all = &mut deliveries, if !delivered => {
                    delivered = true;
                    for delivery in all {
                        self.tls_sessions.record(&delivery.sessions);
                        for failure in delivery.sessions.iter().filter_map(|session| session.failure.as_ref()) {
                            self.metrics.count_tls_failure(failure);
                        }
                        for used in delivery.tls.iter().flatten() {
                            self.metrics.count_tls(*used);
                        }
                    }
                }
                else => break,
            }
        }
        failure
    }

    /// Records one message's outcomes and queues the notifications they call for.
    async fn record(
        &self,
        claim: &Claim,
        outcomes: Vec<(String, Outcome)>,
        raw: &Result<Vec<u8>, hameau_queue::Error>,
    ) -> Result<(), hameau_queue::Error> {
        for (address, outcome) in &outcomes {
            tracing::info!(id = claim.id, to = %address, outcome = ?outcome, "queue: delivery attempt");
        }
        let now = (self.now_s)();
        let recorded = self.queue.record(claim.id, &outcomes, now).await?;
        // The bytes read for this round: a message whose recipients are all final has left
        // the queue, its blob with it.
        if let Ok(raw) = raw {
            self.notify_sender(claim, raw, &recorded, now).await;
        }
        Ok(())
    }

    /// Delivers `claim` to its local recipients `addresses`: one outcome each.
    async fn deliver_locally(&self, claim: &Claim, raw: &[u8], addresses: &[String]) -> Vec<(String, Outcome)> {
        let mut outcomes = Vec::new();
        let mut recipients = Vec::new();
        let mut delivered = Vec::new();
        for address in addresses {
            match self.directory.resolve_recipient(address).await {
                Ok(Some(recipient)) => {
                    for account in &recipient.accounts {
                        let quota = hameau_mailbox::Quota {
                            account_bytes_max: account.quota_bytes,
                            tenant: Some(recipient.tenant.clone()),
                            tenant_bytes_max: recipient.tenant_quota_bytes,
                        };
                        recipients.push((account.id, quota));
                    }
                    delivered.push(address.clone());
                }
                Ok(None) => outcomes.push((address.clone(), failed("550 5.1.1 no such user here"))),
                Err(e) => outcomes.push((address.clone(), deferred(format!("451 4.3.0 {e}")))),
            }
        }
        if recipients.is_empty() {
            return outcomes;
        }
        // Submitted here, or a notification made here: what this server vouches for.
        let results = match claim.message.account {
            Some(_) => format!(
                "Authentication-Results: {}; auth=pass smtp.mailfrom={}\r\n",
                self.options.hostname, claim.message.mail_from
            ),
            None => format!("Authentication-Results: {}; none\r\n", self.options.hostname),
        };
        let delivery = LocalDelivery {
            raw: [results.as_bytes(), raw].concat().into(),
            recipients,
            filing: Filing::Inbox,
            received_at: (self.now_s)(),
        };
        let outcome = match self.mail.deliver(delivery).await {
            Ok(_) => Outcome::Delivered { reply: "250 2.0.0 delivered to the mailbox".into() },
            Err(hameau_mailbox::Error::OverQuota { .. }) => deferred("452 4.2.2 mailbox full".into()),
            Err(e) if e.is_permanent() => failed(&format!("554 5.6.0 the message cannot be stored ({e})")),
            Err(e) => deferred(format!("451 4.3.0 {e}")),
        };
        outcomes.extend(delivered.into_iter().map(|address| (address, outcome.clone())));
        outcomes
    }

    /// Queues the notifications `recorded` asks for, to the sender of `claim` (`raw`).
    async fn notify_sender(&self, claim: &Claim, raw: &[u8], recorded: &Recorded, now: u64) {
        let message = &claim.message;
        if message.mail_from.is_empty() {
            // RFC 3464 §2, RFC 5321 §4.5.5: never a notification about a notification.
            return;
        }
        let retry_until = message.queued_at.saturating_add(self.queue.limits().lifetime_s);
        for (kind, recipients) in
            [(dsn::Kind::Failed, &recorded.failed), (dsn::Kind::Delayed { retry_until }, &recorded.delayed)]
        {
            if recipients.is_empty() {
                continue;
            }
            let token = format!("{}.{now}.{}", claim.id, matches!(kind, dsn::Kind::Failed) as u8);
            let report = dsn::Report {
                hostname: &self.options.hostname,
                to: &message.mail_from,
                kind,
                recipients,
                original: raw,
                queued_at: message.queued_at,
                now,
                id: &token,
            };
            let notification = NewMessage {
                raw: dsn::build(&report).into(),
                mail_from: String::new(),
                recipients: vec![message.mail_from.clone()],
                tenant: message.tenant.clone(),
                account: None,
                envelope_id: format!("dsn.{token}"),
                held: None,
            };
            match self.queue.enqueue(notification, now).await {
                Ok(id) => {
                    tracing::info!(id = claim.id, dsn = id, to = %message.mail_from, ?kind, "queue: sender notified")
                }
                Err(e) => tracing::error!(id = claim.id, error = %e, "queue: the notification could not be queued"),
            }
        }
    }
}

impl Worker {
    /// Ends the TLS-RPT period at `now` and queues a report to each domain that asks for
    /// one (RFC 8460 §3), signed with the sender domain's DKIM keys when it has some.
    async fn send_tls_reports(&self, options: &TlsRptOptions, now: u64) {
        for report in self.tls_sessions.take(now) {
            let rua = match tls_rpt::rua(&self.resolver, &report.domain).await {
                Ok(rua) if rua.is_empty() => continue,
                Ok(rua) => rua,
                Err(e) => {
                    tracing::info!(domain = %report.domain, error = %e, "TLS-RPT: no report sent");
                    continue;
                }
            };
            let id = format!("{}.{}.{now}", report.domain, report.start_s);
            let message = report.message(&options.from, &rua, &self.options.hostname, &id, now);
            let from_domain = options.from.rsplit_once('@').map_or("", |(_, domain)| domain);
            let signed = match crate::signing::dkim_fields(&self.directory, from_domain, &message).await {
                Ok(fields) => [fields, message].concat(),
                Err(e) => {
                    tracing::info!(domain = from_domain, error = %e, "TLS-RPT: the report goes unsigned");
                    message
                }
            };
            let new = NewMessage {
                raw: signed.into(),
                // A report is not answered with a bounce (as a DSN is not).
                mail_from: String::new(),
                recipients: rua,
                tenant: None,
                account: None,
                envelope_id: format!("tlsrpt.{id}"),
                held: None,
            };
            match self.queue.enqueue(new, now).await {
                Ok(queued) => tracing::info!(domain = %report.domain, id = queued, "TLS-RPT: report queued"),
                Err(e) => {
                    tracing::error!(domain = %report.domain, error = %e, "TLS-RPT: the report could not be queued")
                }
            }
        }
    }
}

/// The first multiple of `interval_s` after `now`: a day's period ends at UTC midnight.
fn next_period(now: u64, interval_s: u64) -> u64 {
    (now / interval_s.max(1) + 1) * interval_s.max(1)
}

fn deferred(reply: String) -> Outcome {
    Outcome::Deferred { reply }
}

fn failed(reply: &str) -> Outcome {
    Outcome::Failed { reply: reply.to_string() }
}

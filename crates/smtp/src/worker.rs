//! The delivery worker: takes due messages from the queue ([`Queue::claim_due`]), delivers
//! their local recipients through the mail model ([`Mail::deliver`], as the MX does) and
//! the others over SMTP ([`crate::outbound`], recipients grouped per domain, one connection
//! carrying the messages of one round for that domain), records each recipient's outcome,
//! and queues the delivery status notifications the queue asks for: failure, and delay
//! once, to the sender, never for a notification.
//!
//! It sleeps until the next message is due, or until [`Worker::wake`] says one was queued.
//! Everything it does to a message happens under the queue's lease: a worker that dies
//! midway leaves the message to be tried again (at least once).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use hameau_directory::Directory;
use hameau_mailbox::{Filing, LocalDelivery, Mail, MailboxNames};
use hameau_queue::{Claim, NewMessage, Outcome, Queue, Recorded, dsn};
use hameau_telemetry::{Counter, Registry};
use hickory_resolver::TokioResolver;
use tokio::sync::{Notify, Semaphore, watch};

use crate::outbound::{self, OutboundOptions, Outgoing};

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
    /// Messages claimed per round of the worker: 100 bounds a round's memory (each
    /// message is read whole) and lets one connection carry many messages to a domain.
    pub claim_batch_max: usize,
    /// Destination domains delivered to at once: 16 keeps one slow receiver from holding
    /// the others up without opening hundreds of connections from one small VM.
    pub domains_concurrent_max: usize,
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
            claim_batch_max: 100,
            domains_concurrent_max: 16,
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
            ("claim_batch_max", self.claim_batch_max as u64, 1, 10_000),
            ("domains_concurrent_max", self.domains_concurrent_max as u64, 1, 10_000),
        ];
        for (key, value, min, max) in ranges {
            range("outbound", key, value, min, max)?;
        }
        Ok(())
    }

    /// The worker's options, for `hostname`.
    pub fn worker(&self, hostname: &str, mailbox_names: MailboxNames) -> WorkerOptions {
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
        WorkerOptions {
            hostname: hostname.to_string(),
            outbound,
            mailbox_names,
            claim_batch_max: self.claim_batch_max,
            domains_concurrent_max: self.domains_concurrent_max,
        }
    }
}

/// How the worker works.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Our host name (notifications, `Authentication-Results` of local deliveries).
    pub hostname: String,
    pub outbound: OutboundOptions,
    pub mailbox_names: MailboxNames,
    /// `outbound.claim_batch_max`.
    pub claim_batch_max: usize,
    /// `outbound.domains_concurrent_max`.
    pub domains_concurrent_max: usize,
}

/// The worker's counters in `/metrics`: recipients by outcome and route.
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    outcomes: [Counter; 6],
}

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
        }
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
    /// Notified when a message is queued.
    pub wake: Arc<Notify>,
    pub metrics: WorkerMetrics,
}

/// Longest sleep when nothing is due: the worker looks again at least this often (a clock
/// change, a message released by another node later).
const IDLE_S_MAX: u64 = 60;

/// Pause after the store failed, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

impl Worker {
    /// Delivers until `shutdown` turns true; a round under way finishes first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        match self.queue.release_leases((self.now_s)()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "queue: took back the messages a previous run had under way"),
            Err(e) => tracing::error!(error = %e, "queue: cannot take back the previous run's leases"),
        }
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = (self.now_s)();
            let pause = match self.round(now).await {
                Ok(0) => match self.queue.next_due().await {
                    Ok(Some(at)) => Duration::from_secs(at.saturating_sub(now).clamp(1, IDLE_S_MAX)),
                    Ok(None) => Duration::from_secs(IDLE_S_MAX),
                    Err(e) => {
                        tracing::error!(error = %e, "queue: cannot read the schedule");
                        ERROR_PAUSE
                    }
                },
                Ok(_) => continue,
                Err(e) => {
                    tracing::error!(error = %e, "queue: a delivery round failed");
                    ERROR_PAUSE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.wake.notified() => {}
                _ = hameau_net::stopped(&mut shutdown) => return,
            }
        }
    }

    /// One round: claims what is due at `now` and delivers it; the number of messages.
    pub async fn round(&self, now: u64) -> Result<usize, hameau_queue::Error> {
        let claims = self.queue.claim_due(now, self.options.claim_batch_max).await?;
        if claims.is_empty() {
            return Ok(0);
        }
        let mut raws = Vec::with_capacity(claims.len());
        for claim in &claims {
            raws.push(self.queue.raw(&claim.message).await);
        }
        // Per message, the outcome of each recipient, by address.
        let mut outcomes: Vec<Vec<(String, Outcome)>> = vec![Vec::new(); claims.len()];
        // Remote recipients per domain: (message index, recipients).
        let mut remote: BTreeMap<String, Vec<(usize, Vec<String>)>> = BTreeMap::new();
        let mut is_local: HashMap<String, bool> = HashMap::new();
        for (index, claim) in claims.iter().enumerate() {
            let raw = match &raws[index] {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::error!(id = claim.id, error = %e, "queue: a message's bytes cannot be read");
                    continue;
                }
            };
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
                let delivered = self.deliver_locally(claim, raw, &local).await;
                for (_, outcome) in &delivered {
                    self.metrics.count(false, outcome);
                }
                outcomes[index].extend(delivered);
            }
        }
        let limit = Arc::new(Semaphore::new(self.options.domains_concurrent_max.max(1)));
        let deliveries = remote.into_iter().map(|(domain, batch)| {
            let (limit, raws) = (limit.clone(), &raws);
            let claims = &claims;
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
                let results =
                    outbound::deliver_to_domain(&self.resolver, &self.options.outbound, &domain, &messages).await;
                (batch, results)
            }
        });
        for (batch, results) in futures_util::future::join_all(deliveries).await {
            for ((index, recipients), results) in batch.into_iter().zip(results) {
                for outcome in &results {
                    self.metrics.count(true, outcome);
                }
                outcomes[index].extend(recipients.into_iter().zip(results));
            }
        }
        let now = (self.now_s)();
        for ((claim, outcomes), raw) in claims.iter().zip(outcomes).zip(&raws) {
            for (address, outcome) in &outcomes {
                tracing::info!(id = claim.id, to = %address, outcome = ?outcome, "queue: delivery attempt");
            }
            let recorded = self.queue.record(claim.id, &outcomes, now).await?;
            // The bytes read for this round: a message whose recipients are all final has
            // left the queue, its blob with it.
            if let Ok(raw) = raw {
                self.notify_sender(claim, raw, &recorded, now).await;
            }
        }
        Ok(claims.len())
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
            names: &self.options.mailbox_names,
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

fn deferred(reply: String) -> Outcome {
    Outcome::Deferred { reply }
}

fn failed(reply: &str) -> Outcome {
    Outcome::Failed { reply: reply.to_string() }
}

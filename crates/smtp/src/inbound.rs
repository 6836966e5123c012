//! The MX's inbound pipeline, independent of sockets: the driver asks it about each
//! recipient at RCPT and hands it the message at the end of DATA; its answers are SMTP
//! replies.
//!
//! - A recipient outside our domains is refused `554 5.7.1` (never an open relay); an
//!   unknown local address `550 5.1.1`; a recipient over quota `452 4.2.2`.
//! - At end of data, SPF (HELO and MAIL FROM), DKIM, ARC and DMARC are evaluated. A DMARC
//!   failure under the sender's `p=reject` is refused `550 5.7.1`; under `p=quarantine` the
//!   message goes to Junk, unless a forwarder we trust sealed a valid ARC chain
//!   ([`InboundOptions::arc_trusted_sealers`]). `Authentication-Results` and `Received` are prepended, and any
//!   incoming `Authentication-Results` claiming our host name is removed (RFC 8601 §5),
//!   however its authserv-id is written ([`hameau_smtp_session::header`]).
//! - Authors: a message must have exactly one `From` field (RFC 5322 §3.6) naming authors
//!   of one domain, or it is refused `550 5.7.1`. DMARC evaluates one author domain; with
//!   several, mail-auth gives no verdict at all, so a `From:` naming the commune's mayor
//!   and the attacker would escape the commune's `p=reject` (RFC 7489 §6.6.1 lets the
//!   receiver reject such messages, as large receivers do).
//! - Work is bounded: at most [`InboundOptions::dkim_signatures_max`] DKIM signatures are
//!   verified (the others are reported `dkim=permerror`), a chain of more than
//!   [`InboundOptions::arc_sets_max`] ARC sets fails unchecked, and messages of
//!   [`HEAVY_MESSAGE_BYTES`] or more are authenticated at most
//!   [`InboundOptions::verifications_max`] at a time, each on a thread of its own
//!   (`block_in_place`), so that hashing them cannot starve the other sessions.
//! - A panic in mail-auth or mail-parser on a message is caught: `554 5.6.0`, never a
//!   dropped connection (the sender would retry for days).
//! - `RCPT TO:<Postmaster>` and `postmaster@` a served domain without such an address go
//!   to [`InboundOptions::postmaster`] (RFC 5321 §4.5.1).
//! - The message is stored for every recipient account in ONE commit
//!   ([`hameau_mailbox::Mail::ingest_many`]): the `250` is given only after it is synced,
//!   and a failure leaves no recipient with a copy.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hameau_directory::{Directory, Recipient};
use hameau_mailbox::{Filing, LocalDelivery, Mail};
use hameau_smtp_session::header::{self, Fields};
use hameau_smtp_session::{Credentials, Decision, MailParams, Reply};
use mail_auth::arc::ArcError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator,
};
use tokio::sync::Semaphore;

use crate::filtering::{Facts, FilterStage};
use crate::pipeline::{Message, Pipeline};
use hameau_filter::Action;

/// Messages at least this large are authenticated within the budget of
/// [`InboundOptions::verifications_max`], on a thread of their own. Parsing one hashes its
/// body up to four times (DKIM's and ARC's canonicalizations and algorithms) and each
/// signature hashes its headers: at 1 MiB that is tens of milliseconds that would hold an
/// async worker; below it, well under a millisecond, not worth a thread hand-off.
pub const HEAVY_MESSAGE_BYTES: usize = 1 << 20;

/// What to do with a RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    Accept(Box<Recipient>),
    Refuse(Reply),
}

/// The pipeline's options, made from the `[smtp]` section by [`crate::Options::inbound`],
/// where each key is declared with its default and its reason.
#[derive(Clone, Debug)]
pub struct InboundOptions {
    /// Our host name: `Received` and `Authentication-Results` name it.
    pub hostname: String,
    /// `smtp.arc_trusted_sealers`: forwarders whose valid ARC seal overrides a DMARC failure.
    pub arc_trusted_sealers: Vec<String>,
    /// `smtp.dkim_signatures_max`: DKIM signatures verified per message, from the top.
    pub dkim_signatures_max: usize,
    /// `smtp.arc_sets_max`: ARC sets beyond which the chain fails unchecked.
    pub arc_sets_max: usize,
    /// `smtp.verifications_max`: authentications of messages of [`HEAVY_MESSAGE_BYTES`] or
    /// more running at once.
    pub verifications_max: usize,
    /// `smtp.postmaster`: where `<Postmaster>` goes; `None`: `postmaster@` the host name or
    /// a domain above it.
    pub postmaster: Option<String>,
}

/// One message's transaction, as the session saw it.
#[derive(Clone, Debug)]
pub struct Envelope {
    pub client_ip: IpAddr,
    pub helo: String,
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    /// Whether the session ran over TLS (`ESMTPS` in `Received`).
    pub tls: bool,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// The session's id, for `Received` and the logs.
    pub id: String,
}

/// What the MX keeps of one connection ([`Pipeline::Session`]): the client, its `HELO`,
/// and the transaction's resolved recipients.
#[derive(Debug)]
pub struct MxSession {
    client_ip: IpAddr,
    helo: String,
    recipients: HashMap<String, Recipient>,
    /// The accounts of `recipients` (checked against `mail.ingest_batch_max` at RCPT).
    accounts: BTreeSet<u64>,
}

/// The MX's decisions and delivery.
pub struct Inbound {
    directory: Directory,
    mail: Mail,
    authenticator: MessageAuthenticator,
    options: InboundOptions,
    /// Permits for authentications of heavy messages.
    verifications: Arc<Semaphore>,
    /// The filter stage; none: messages are stored as they come (`filter.enabled = false`).
    filter: Option<Arc<FilterStage>>,
    /// Answers for the accounts whose vacation response is on; none: no answers.
    responder: Option<Arc<crate::vacation::Responder>>,
}

impl Inbound {
    pub fn new(
        directory: Directory,
        mail: Mail,
        authenticator: MessageAuthenticator,
        options: InboundOptions,
    ) -> Inbound {
        assert!(options.dkim_signatures_max > 0 && options.arc_sets_max > 0 && options.verifications_max > 0);
        let verifications = Arc::new(Semaphore::new(options.verifications_max));
        Inbound { directory, mail, authenticator, options, verifications, filter: None, responder: None }
    }

    /// The MX with the vacation responder.
    pub fn with_responder(mut self, responder: Arc<crate::vacation::Responder>) -> Inbound {
        self.responder = Some(responder);
        self
    }

    /// The MX with its filter stage.
    pub fn with_filter(mut self, filter: Arc<FilterStage>) -> Inbound {
        self.filter = Some(filter);
        self
    }

    /// The verdict on `RCPT TO:<address>` from an unauthenticated client.
    pub async fn check_recipient(&self, address: &str) -> RcptVerdict {
        // RFC 5321 §4.5.1: `<Postmaster>` without a domain must be accepted.
        if address.eq_ignore_ascii_case("postmaster") {
            return self.postmaster().await;
        }
        let Some((local, domain)) = address.rsplit_once('@') else {
            return RcptVerdict::Refuse(Reply::new(550, "5.1.3", "that is not an address"));
        };
        match self.directory.is_local_domain(domain).await {
            Ok(true) => {}
            Ok(false) => return RcptVerdict::Refuse(Reply::new(554, "5.7.1", "relay access denied")),
            Err(e) => return RcptVerdict::Refuse(temporary(&e)),
        }
        let recipient = match self.directory.resolve_recipient(address).await {
            Ok(Some(recipient)) => recipient,
            // RFC 5321 §4.5.1: postmaster@ every domain we serve must be accepted.
            Ok(None) if local.eq_ignore_ascii_case("postmaster") => return self.postmaster().await,
            Ok(None) => return RcptVerdict::Refuse(Reply::new(550, "5.1.1", "no such user here")),
            Err(e) => return RcptVerdict::Refuse(temporary(&e)),
        };
        self.unless_full(recipient).await
    }

    /// The postmaster's verdict: [`InboundOptions::postmaster`], else `postmaster@` the
    /// host name or the first domain above it that resolves to an account.
    async fn postmaster(&self) -> RcptVerdict {
        let candidates: Vec<String> = match &self.options.postmaster {
            Some(address) => vec![address.clone()],
            None => {
                let mut domain = self.options.hostname.as_str();
                let mut candidates = vec![format!("postmaster@{domain}")];
                while let Some((_, parent)) = domain.split_once('.').filter(|(_, parent)| parent.contains('.')) {
                    candidates.push(format!("postmaster@{parent}"));
                    domain = parent;
                }
                candidates
            }
        };
        for candidate in candidates {
            match self.directory.resolve_recipient(&candidate).await {
                Ok(Some(recipient)) => return self.unless_full(recipient).await,
                Ok(None) => {}
                Err(e) => return RcptVerdict::Refuse(temporary(&e)),
            }
        }
        tracing::warn!("mail to the postmaster refused: no postmaster address here (set smtp.postmaster)");
        RcptVerdict::Refuse(Reply::new(550, "5.1.1", "no postmaster mailbox is set up here"))
    }

    /// `452 4.5.3` when `new` would take the message past the recipient accounts one
    /// ingest holds (`mail.ingest_batch_max`): RFC 5321 §4.5.3.1.10 lets the client send
    /// the other recipients in another transaction, where refusing at DATA would refuse
    /// the whole message.
    ///
    /// `accounts` are those of the recipients accepted so far in the transaction.
    pub fn too_many_accounts(&self, accounts: &BTreeSet<u64>, new: &Recipient) -> Option<Reply> {
        let mut added: Vec<u64> =
            new.accounts.iter().map(|account| account.id).filter(|id| !accounts.contains(id)).collect();
        added.sort_unstable();
        added.dedup();
        (accounts.len() + added.len() > self.mail.limits().ingest_batch_max)
            .then(|| Reply::new(452, "4.5.3", "too many recipients, send the others in another message"))
    }

    /// Accepts `recipient` unless its tenant or one of its accounts is full (`452 4.2.2`).
    /// The commit of the delivery is the real check; this one refuses earlier.
    async fn unless_full(&self, recipient: Recipient) -> RcptVerdict {
        if let Some(quota) = recipient.tenant_quota_bytes {
            match self.mail.tenant_used(&recipient.tenant).await {
                Ok(used) if used >= quota => {
                    return RcptVerdict::Refuse(Reply::new(452, "4.2.2", "mailbox full, try again later"));
                }
                Ok(_) => {}
                Err(e) => return RcptVerdict::Refuse(temporary(&e)),
            }
        }
        for account in &recipient.accounts {
            let Some(quota) = account.quota_bytes else { continue };
            match self.mail.quota_used(account.id).await {
                Ok(used) if used >= quota => {
                    return RcptVerdict::Refuse(Reply::new(452, "4.2.2", "mailbox full, try again later"));
                }
                Ok(_) => {}
                Err(e) => return RcptVerdict::Refuse(temporary(&e)),
            }
        }
        RcptVerdict::Accept(Box::new(recipient))
    }

    /// Authenticates, filters and stores a message; the reply to give at the end of DATA.
    pub async fn deliver(&self, envelope: &Envelope, raw: &[u8]) -> Reply {
        let verdict = match self.check(envelope, raw).await {
            Ok(verdict) => verdict,
            Err(refusal) => return refusal,
        };
        let Some(stage) = &self.filter else {
            // One buffer shared by every recipient account: read, staged and stored once.
            let stored = hameau_mailbox::Bytes::from(self.with_headers(envelope, &verdict.results, None, raw));
            let recipients: Vec<&Recipient> = envelope.recipients.iter().collect();
            let filing = if verdict.junk { Filing::Junk } else { Filing::Inbox };
            return match self.store(envelope, stored, &recipients, filing).await {
                Ok(()) => Reply::new(250, "2.0.0", format!("message accepted, id {}", envelope.id)),
                Err(reply) => reply,
            };
        };
        // Each recipient tenant has its own thresholds, people and correspondents: one
        // verdict per tenant (one in the common case).
        let mut tenants: Vec<(&str, Vec<&Recipient>)> = Vec::new();
        for recipient in &envelope.recipients {
            match tenants.iter_mut().find(|(tenant, _)| *tenant == recipient.tenant) {
                Some((_, recipients)) => recipients.push(recipient),
                None => tenants.push((&recipient.tenant, vec![recipient])),
            }
        }
        let facts = Facts {
            client_ip: envelope.client_ip,
            mail_from: &envelope.mail_from,
            dmarc_pass: verdict.dmarc_pass,
            dmarc_quarantine: verdict.junk,
        };
        let mut judged = Vec::with_capacity(tenants.len());
        for (tenant, recipients) in tenants {
            let judgement = match off_the_workers(
                raw.len() >= HEAVY_MESSAGE_BYTES,
                CatchUnwind(std::pin::pin!(stage.judge(tenant, raw, &facts))),
            )
            .await
            {
                Ok(judgement) => judgement,
                Err(_) => {
                    tracing::error!(id = %envelope.id, tenant, "the filter panicked on a message");
                    return Reply::new(554, "5.6.0", "the message could not be parsed");
                }
            };
            // A verdict with a finding against the message is logged with its reason; one
            // without (most mail: none, or only the classifier's BAYES_HAM, whose reason is
            // empty) only at debug: the message's own line ("smtp message") says it was
            // accepted. That second line per message was a tenth of the filter's cost.
            if !judgement.verdict.has_findings() {
                tracing::debug!(id = %envelope.id, tenant, action = judgement.verdict.action.as_str(), "filter verdict");
            } else {
                tracing::info!(
                    id = %envelope.id,
                    tenant,
                    action = judgement.verdict.action.as_str(),
                    score = judgement.verdict.score(),
                    reason = %judgement.verdict.reason(),
                    "filter verdict"
                );
            }
            judged.push((tenant, recipients, judgement));
        }
        // SMTP has one reply for all recipients: refused only when every tenant refuses;
        // otherwise a tenant that would refuse holds the message in quarantine.
        if judged.iter().all(|(_, _, judgement)| judgement.verdict.action == Action::Reject) {
            // The findings' names only: their details (in the log) quote the message and name
            // the tenant's people.
            let names = judged.first().map(|(_, _, judgement)| judgement.verdict.names()).unwrap_or_default();
            return Reply::new(550, "5.7.1", format!("message refused as spam or phishing ({names})"));
        }
        for (tenant, recipients, judgement) in judged {
            let header = judgement.verdict.header_value();
            let stored = self.with_headers(envelope, &verdict.results, Some(&header), raw);
            let outcome = match judgement.verdict.action {
                Action::Deliver => self.store(envelope, stored.into(), &recipients, Filing::Inbox).await,
                Action::Warn => {
                    let limits = stage.limits();
                    let warned = hameau_filter::warn(&stored, &judgement.verdict.symbols, &judgement.warning, limits);
                    self.store(envelope, warned.into(), &recipients, Filing::Inbox).await
                }
                Action::Junk => self.store(envelope, stored.into(), &recipients, Filing::Junk).await,
                Action::Quarantine | Action::Reject => {
                    self.hold(stage, tenant, envelope, stored, &recipients, &header, &judgement.verdict.reason()).await
                }
            };
            // A later tenant's failure has the sender retry the whole message: the tenants
            // already stored then get it twice (rare: several communes in one message, and
            // a storage failure).
            if let Err(reply) = outcome {
                return reply;
            }
        }
        Reply::new(250, "2.0.0", format!("message accepted, id {}", envelope.id))
    }

    /// Holds a message for `recipients` (all of one tenant) in quarantine.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        stage: &FilterStage,
        tenant: &str,
        envelope: &Envelope,
        stored: Vec<u8>,
        recipients: &[&Recipient],
        header: &str,
        reason: &str,
    ) -> Result<(), Reply> {
        let held: Vec<(String, u64)> = recipients
            .iter()
            .flat_map(|recipient| recipient.accounts.iter().map(|account| (recipient.address.clone(), account.id)))
            .collect();
        let hold = hameau_filter::quarantine::Hold {
            tenant,
            mail_from: &envelope.mail_from,
            recipients: &held,
            received_at: envelope.received_at,
            verdict: header,
            reason,
        };
        match stage.quarantine.hold(hold, stored.into()).await {
            Ok(id) => {
                tracing::info!(id = %envelope.id, tenant, quarantine = %id, "message held in quarantine");
                Ok(())
            }
            // RFC 3463 X.3.1, "mail system full": the sender keeps the message and tries
            // again, by when an administrator may have made room (logged by the quarantine).
            Err(hameau_filter::Error::QuarantineFull { .. }) => {
                stage.count_quarantine_full();
                Err(Reply::new(452, "4.3.1", "insufficient system storage, try again later"))
            }
            Err(e) => Err(temporary(&e)),
        }
    }

    /// Stores `stored` for `recipients`' accounts in one commit, filed by `filing`.
    async fn store(
        &self,
        envelope: &Envelope,
        stored: hameau_mailbox::Bytes,
        recipients: &[&Recipient],
        filing: Filing,
    ) -> Result<(), Reply> {
        let answered = match (&self.responder, filing) {
            (Some(_), Filing::Inbox) => Some((
                stored.clone(),
                recipients
                    .iter()
                    .map(|recipient| crate::vacation::Stored {
                        address: recipient.address.clone(),
                        tenant: recipient.tenant.clone(),
                        accounts: recipient.accounts.iter().map(|account| account.id).collect(),
                    })
                    .collect::<Vec<_>>(),
            )),
            _ => None,
        };
        let recipients = recipients
            .iter()
            .flat_map(|recipient| {
                recipient.accounts.iter().map(|account| {
                    let quota = hameau_mailbox::Quota {
                        account_bytes_max: account.quota_bytes,
                        tenant: Some(recipient.tenant.clone()),
                        tenant_bytes_max: recipient.tenant_quota_bytes,
                    };
                    (account.id, quota)
                })
            })
            .collect();
        let delivery = LocalDelivery { raw: stored, recipients, filing, received_at: envelope.received_at };
        match self.mail.deliver(delivery).await {
            Ok(_) => {
                if let (Some(responder), Some((stored, answered))) = (&self.responder, answered) {
                    responder.after_delivery(&envelope.mail_from, &stored, answered, envelope.received_at);
                }
                Ok(())
            }
            Err(hameau_mailbox::Error::OverQuota { .. }) => {
                Err(Reply::new(452, "4.2.2", "mailbox full, try again later"))
            }
            Err(hameau_mailbox::Error::NoRoleMailbox { .. }) => {
                Err(Reply::new(451, "4.3.0", "the recipient's mailbox is not available"))
            }
            // A message that can never be stored is refused for good (a 451 would have the
            // sender retry it for days); the reason is logged, not echoed.
            Err(e) if e.is_permanent() => {
                tracing::info!(error = %e, id = %envelope.id, "message refused: it can never be stored");
                Err(match e {
                    hameau_mailbox::Error::TooManyDeliveries { max, .. } => {
                        Reply::new(554, "5.5.3", format!("too many recipient accounts for one message (at most {max})"))
                    }
                    hameau_mailbox::Error::Store(_) => Reply::new(552, "5.3.4", "message too big for this system"),
                    _ => Reply::new(554, "5.6.0", "the message cannot be stored (malformed or oversized header)"),
                })
            }
            Err(e) => Err(temporary(&e)),
        }
    }

    /// Everything done to a message before it is stored: its authors, then SPF, DKIM,
    /// ARC and DMARC within their caps and budget. `Err` is the refusal to give. A panic of
    /// a dependency on the message is caught here: `554 5.6.0`.
    async fn check(&self, envelope: &Envelope, raw: &[u8]) -> Result<Verdict, Reply> {
        let heavy = raw.len() >= HEAVY_MESSAGE_BYTES;
        // Held outside the guarded future, so that a panic cannot keep it.
        let _permit = match heavy {
            true => Some(self.verifications.acquire().await.expect("the semaphore is never closed")),
            false => None,
        };
        match off_the_workers(heavy, CatchUnwind(std::pin::pin!(self.authenticate(envelope, raw)))).await {
            Ok(checked) => checked,
            Err(panic) => {
                let what = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
                tracing::error!(id = %envelope.id, panic = what.unwrap_or("?"), "authentication panicked on a message");
                Err(Reply::new(554, "5.6.0", "the message could not be parsed"))
            }
        }
    }

    async fn authenticate(&self, envelope: &Envelope, raw: &[u8]) -> Result<Verdict, Reply> {
        let census = Census::of(raw);
        if census.n_fields == 0 {
            return Err(Reply::new(554, "5.6.0", "the message has no valid header"));
        }
        match census.n_from {
            1 => {}
            0 => return Err(Reply::new(550, "5.7.1", "the message has no From field (RFC 5322 §3.6)")),
            _ => return Err(Reply::new(550, "5.7.1", "the message has several From fields (RFC 5322 §3.6)")),
        }
        let n_dkim_unverified = census.n_dkim.saturating_sub(self.options.dkim_signatures_max);
        let arc_too_long = census.n_arc > self.options.arc_sets_max;
        // Over a cap, what is verified is a copy without the excess signatures (rare: the
        // common case verifies the message as it came, without a copy).
        let trimmed;
        let verified = if n_dkim_unverified > 0 || arc_too_long {
            trimmed = census.trimmed(raw, self.options.dkim_signatures_max, arc_too_long);
            trimmed.as_slice()
        } else {
            raw
        };
        let Some(message) = AuthenticatedMessage::parse(verified) else {
            return Err(Reply::new(554, "5.6.0", "the message has no valid header"));
        };
        check_authors(message.froms())?;
        let hostname = self.options.hostname.as_str();
        let ip = envelope.client_ip;
        let helo = envelope.helo.as_str();
        let dkim = self.authenticator.verify_dkim(&message).await;
        let arc = match arc_too_long {
            // RFC 8617 §5.2: a chain too long fails.
            true => ArcOutput::default().with_result(DkimResult::Fail(mail_auth::Error::Arc(ArcError::ChainTooLong))),
            false => self.authenticator.verify_arc(&message).await,
        };
        let message = &message;
        let spf_ehlo = self.authenticator.verify_spf(SpfParameters::verify_ehlo(ip, helo, hostname)).await;
        let spf_mail_from = if envelope.mail_from.is_empty() {
            spf_ehlo.clone()
        } else {
            self.authenticator
                .verify_spf(SpfParameters::verify_mail_from(ip, helo, hostname, &envelope.mail_from))
                .await
        };
        // RFC 7489 §4.1: without a MAIL FROM domain, the HELO identity stands for it.
        let mail_from_domain = envelope.mail_from.rsplit_once('@').map_or(helo, |(_, domain)| domain);
        let dmarc = self
            .authenticator
            .verify_dmarc(DmarcParameters::new(message, &dkim, mail_from_domain, &spf_mail_from))
            .await;
        let mut results = AuthenticationResults::new(hostname)
            .with_dkim_results(&dkim, message.from())
            .with_spf_ehlo_result(&spf_ehlo, ip, helo)
            .with_spf_mailfrom_result(&spf_mail_from, ip, &envelope.mail_from, helo)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc)
            .to_string()
            // A body that does not match its signature's hash is a failed signature (RFC
            // 6376 §6.1.3: PERMFAIL), `dkim=fail` in RFC 8601 terms; mail-auth says neutral.
            // Its DMARC evaluation counts neither as a pass, so only the header changes.
            .replace("dkim=neutral (body hash did not verify)", "dkim=fail (body hash did not verify)");
        if n_dkim_unverified > 0 {
            // RFC 8601 §2.7.1: permerror, a signature that could not be evaluated.
            let unverified = format!(
                ";\r\n\tdkim=permerror ({n_dkim_unverified} more signatures not verified: over the limit of {})",
                self.options.dkim_signatures_max
            );
            let at = results.find(";\r\n\tspf=").unwrap_or(results.len());
            results.insert_str(at, &unverified);
        }
        // Enforced only on a definite failure: a temporary DNS error is not a forgery.
        let mut failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        if failed && let Some(sealer) = self.trusted_arc_sealer(&arc) {
            // RFC 8617 §7.2.1: a receiver may let a valid chain from a forwarder it trusts
            // override the DMARC failure; the results say so (RFC 7489 §7.3's
            // `trusted_forwarder`).
            results.push_str(&format!(" (overridden: ARC chain sealed by trusted forwarder {sealer})"));
            failed = false;
        }
        let junk = match (failed, dmarc.policy()) {
            (true, Policy::Reject) => {
                return Err(Reply::new(
                    550,
                    "5.7.1",
                    format!("DMARC policy of {} rejects this message", dmarc.domain()),
                ));
            }
            (true, Policy::Quarantine) => true,
            _ => false,
        };
        let dmarc_pass = matches!(dmarc.result(), DmarcResult::Pass);
        Ok(Verdict { results, junk, dmarc_pass })
    }

    /// The newest sealer of a valid ARC chain, when it is one we trust.
    fn trusted_arc_sealer(&self, arc: &mail_auth::ArcOutput<'_>) -> Option<String> {
        if *arc.result() != DkimResult::Pass {
            return None;
        }
        let newest = arc.sets().iter().max_by_key(|set| set.seal.header.i)?;
        let sealer = newest.seal.header.d.to_ascii_lowercase();
        self.options.arc_trusted_sealers.contains(&sealer).then_some(sealer)
    }

    /// The message as stored: `Authentication-Results`, `Received` and the filter's
    /// `X-Hameau-Filter` first, then the message without any `Authentication-Results`
    /// that claims to be ours and without any `X-Hameau-Filter` (only ours is believed).
    fn with_headers(&self, envelope: &Envelope, results: &str, filter: Option<&str>, raw: &[u8]) -> Vec<u8> {
        let hostname = &self.options.hostname;
        let protocol = if envelope.tls { "ESMTPS" } else { "ESMTP" };
        let date = mail_parser::DateTime::from_timestamp(envelope.received_at as i64).to_rfc822();
        let mut out = Vec::with_capacity(raw.len() + 1024);
        out.extend_from_slice(format!("Authentication-Results: {results}\r\n").as_bytes());
        let ip = match envelope.client_ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        // RFC 5321 §4.4: `for` names the recipient, only when there is one (several would
        // disclose the Bcc recipients to each other).
        let recipient = match envelope.recipients.as_slice() {
            [one] => format!("\r\n\tfor <{}>", one.address),
            _ => String::new(),
        };
        out.extend_from_slice(
            format!(
                "Received: from {} ([{ip}])\r\n\tby {hostname} (Hameau) with {protocol} id {}{recipient};\r\n\t{date}\r\n",
                envelope.helo, envelope.id
            )
            .as_bytes(),
        );
        if let Some(filter) = filter {
            out.extend_from_slice(format!("{FILTER_HEADER}: {filter}\r\n").as_bytes());
        }
        let without_ours = strip_filter_headers(raw);
        header::strip_results_into(without_ours.as_deref().unwrap_or(raw), hostname, &mut out);
        out
    }
}

/// The MX as the SMTP driver sees it: recipients checked at RCPT, messages authenticated
/// and stored at the end of DATA, no `AUTH`.
impl Pipeline for Inbound {
    type Session = MxSession;

    fn session(&self, peer: SocketAddr) -> MxSession {
        MxSession { client_ip: peer.ip(), helo: String::new(), recipients: HashMap::new(), accounts: BTreeSet::new() }
    }

    async fn helo(&self, session: &mut MxSession, host: &str) -> Decision {
        session.helo = host.to_owned();
        Decision::Accept
    }

    async fn mail_from(&self, session: &mut MxSession, _address: &str, _params: &MailParams) -> Decision {
        session.recipients.clear();
        session.accounts.clear();
        Decision::Accept
    }

    async fn rcpt_to(&self, session: &mut MxSession, address: &str) -> Decision {
        let recipient = match self.check_recipient(address).await {
            RcptVerdict::Accept(recipient) => recipient,
            RcptVerdict::Refuse(reply) => return Decision::Reject(reply),
        };
        if let Some(reply) = self.too_many_accounts(&session.accounts, &recipient) {
            return Decision::Reject(reply);
        }
        session.accounts.extend(recipient.accounts.iter().map(|account| account.id));
        session.recipients.insert(address.to_owned(), *recipient);
        Decision::Accept
    }

    async fn message(&self, session: &mut MxSession, message: Message<'_>) -> Reply {
        let envelope = Envelope {
            client_ip: session.client_ip,
            helo: session.helo.clone(),
            mail_from: message.mail_from.to_owned(),
            recipients: message.recipients.iter().filter_map(|r| session.recipients.get(r).cloned()).collect(),
            tls: message.tls,
            received_at: message.received_at,
            id: message.id.to_owned(),
        };
        self.deliver(&envelope, message.data).await
    }

    async fn auth(&self, _session: &mut MxSession, _credentials: Credentials) -> Decision {
        // Never asked: the MX offers no mechanism, so the session refuses `AUTH` itself.
        Decision::Reject(Reply::new(503, "5.5.1", "Authentication not enabled"))
    }
}

struct Verdict {
    results: String,
    /// DMARC failed under `p=quarantine` and no trusted ARC sealer overrode it.
    junk: bool,
    /// The author domain passed DMARC.
    dmarc_pass: bool,
}

/// What the MX counts in a header section before parsing it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Census {
    pub(crate) n_fields: usize,
    pub(crate) n_from: usize,
    pub(crate) n_dkim: usize,
    /// ARC sets: the most of any of the three fields of a set.
    pub(crate) n_arc: usize,
}

impl Census {
    pub(crate) fn of(raw: &[u8]) -> Census {
        let mut census = Census::default();
        let (mut n_seals, mut n_signatures, mut n_results) = (0, 0, 0);
        for field in Fields::new(raw) {
            census.n_fields += 1;
            if field.is("From") {
                census.n_from += 1;
            } else if field.is("DKIM-Signature") {
                census.n_dkim += 1;
            } else if field.is("ARC-Seal") {
                n_seals += 1;
            } else if field.is("ARC-Message-Signature") {
                n_signatures += 1;
            } else if field.is("ARC-Authentication-Results") {
                n_results += 1;
            }
        }
        census.n_arc = n_seals.max(n_signatures).max(n_results);
        census
    }

    /// A copy of `raw` without the DKIM signatures after the first `dkim_max`, and without
    /// its ARC fields when `drop_arc`.
    pub(crate) fn trimmed(&self, raw: &[u8], dkim_max: usize, drop_arc: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len());
        let mut kept_from = 0;
        let mut n_dkim = 0;
        for field in Fields::new(raw) {
            let is_dkim = field.is("DKIM-Signature");
            n_dkim += usize::from(is_dkim);
            let is_arc =
                ["ARC-Seal", "ARC-Message-Signature", "ARC-Authentication-Results"].iter().any(|name| field.is(name));
            if (is_dkim && n_dkim > dkim_max) || (drop_arc && is_arc) {
                out.extend_from_slice(&raw[kept_from..field.start]);
                kept_from = field.end;
            }
        }
        out.extend_from_slice(&raw[kept_from..]);
        out
    }
}

/// `raw` without its `X-Hameau-Filter` fields, or `None` when it has none (no copy).
pub(crate) fn strip_filter_headers(raw: &[u8]) -> Option<Vec<u8>> {
    let fields: Vec<(usize, usize)> =
        Fields::new(raw).filter(|field| field.is(FILTER_HEADER)).map(|field| (field.start, field.end)).collect();
    if fields.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut kept_from = 0;
    for (start, end) in fields {
        out.extend_from_slice(&raw[kept_from..start]);
        kept_from = end;
    }
    out.extend_from_slice(&raw[kept_from..]);
    Some(out)
}

/// The filter's header field, which only this server writes.
pub const FILTER_HEADER: &str = "X-Hameau-Filter";

/// The authors of a message (its `From` addresses, lower-cased) must all be of one domain:
/// DMARC evaluates one (RFC 7489 §6.6.1).
pub(crate) fn check_authors(froms: &[String]) -> Result<(), Reply> {
    let mut domains = froms.iter().map(|from| from.rsplit_once('@').map(|(_, domain)| domain));
    let first = match domains.next() {
        Some(Some(domain)) if !domain.is_empty() => domain,
        _ => return Err(Reply::new(550, "5.7.1", "the From field has no address with a domain (RFC 7489 §6.6.1)")),
    };
    if domains.any(|domain| domain != Some(first)) {
        return Err(Reply::new(550, "5.7.1", "the From field names authors of several domains (RFC 7489 §6.6.1)"));
    }
    Ok(())
}

/// Runs `future` to its end; when `heavy` (and the runtime has several workers), on this
/// thread taken out of the async workers (`block_in_place`), so that its CPU work does not
/// hold one.
async fn off_the_workers<F: Future>(heavy: bool, future: F) -> F::Output {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if heavy && Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(|| Handle::current().block_on(future))
    } else {
        future.await
    }
}

/// A future whose panic is caught and returned (as `std::panic::catch_unwind` does for a
/// function): a dependency that panics on a message refuses it instead of dropping the
/// connection. Wraps a pinned future (`std::pin::pin!`, no allocation per message).
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = Pin::new(&mut self.0);
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn temporary(error: &dyn std::fmt::Display) -> Reply {
    tracing::error!(error = %error, "delivery failed");
    Reply::new(451, "4.3.0", "local error, try again later")
}

//! Remote delivery: the SMTP client (RFC 5321) that hands queued messages to one destination
//! domain's mail exchangers, with no knowledge of the queue's storage.
//!
//! [`deliver_to_domain`] finds the domain's MX hosts (RFC 5321 §5.1, null MX RFC 7505),
//! tries their addresses in preference order (equal preferences shuffled), upgrades each
//! connection with STARTTLS (RFC 3207) when it is offered, carries several messages per
//! connection, and gives one [`Outcome`] per recipient.
//!
//! The commands are mail-send's (`SmtpClient`), its replies parsed by smtp-proto, which
//! bounds a reply to `smtp_proto::response::parser::MAX_RESPONSE_LENGTH` (4 KiB); the
//! message itself is written here, dot-stuffed in bounded chunks (`write_data`), and
//! so is the TLS handshake, on a stream that tells an end of stream from a bad reply
//! (`Watched`), which mail-send does not.
//!
//! TLS is decided per MX host ([`tls`]): DANE (RFC 7672) where the MX and TLSA answers are
//! DNSSEC-secure, else the domain's MTA-STS policy (RFC 8461) in `enforce` mode, else
//! opportunistic STARTTLS (RFC 7435) that falls back to clear text when the handshake
//! fails. Where TLS is required, a host without it is skipped, never used in clear. Each
//! TLS session is returned for TLS-RPT (RFC 8460, [`crate::tls_rpt`]).

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hameau_queue::Outcome;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use mail_send::SmtpClient;
use rand::seq::SliceRandom;
use rustls::pki_types::ServerName;
use smtp_proto::{EXT_8BIT_MIME, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::{dane, mta_sts, tls_rpt};

/// How the outbound client behaves towards every destination.
///
/// The command timeouts are RFC 5321 §4.5.3.2's: "an SMTP client MUST provide a timeout
/// mechanism", with these minimums, because a receiver may legitimately take minutes (a
/// busy host, a slow content filter) and giving up early delivers the message twice.
#[derive(Clone, Debug)]
pub struct OutboundOptions {
    /// Our name in EHLO: the host's public name, the one its PTR record gives.
    pub hostname: String,
    /// The receivers' port: 25 (RFC 5321 §4.5.4); tests point it at a local server.
    pub port: u16,
    /// Opening a TCP connection. 30 s is Postfix's `smtp_connect_timeout`: an address that
    /// does not answer by then is down, and the next MX is tried.
    pub connect_timeout: Duration,
    /// Waiting for the 220 greeting: 5 minutes (RFC 5321 §4.5.3.2.1).
    pub greeting_timeout: Duration,
    /// Commands the RFC names no timeout for (EHLO, STARTTLS and its handshake, RSET): 5
    /// minutes, as for MAIL (Postfix's `smtp_helo_timeout` is 300 s too).
    pub command_timeout: Duration,
    /// The reply to MAIL: 5 minutes (RFC 5321 §4.5.3.2.2).
    pub mail_timeout: Duration,
    /// The reply to each RCPT: 5 minutes (RFC 5321 §4.5.3.2.3).
    pub rcpt_timeout: Duration,
    /// The 354 reply to DATA: 2 minutes (RFC 5321 §4.5.3.2.4).
    pub data_init_timeout: Duration,
    /// Each write of a block of the message: 3 minutes (RFC 5321 §4.5.3.2.5), so a
    /// large message on a slow link is not cut as long as the receiver keeps reading.
    pub data_block_timeout: Duration,
    /// The reply after the final `.`: 10 minutes (RFC 5321 §4.5.3.2.6), the receiver
    /// filtering and storing the message. A timeout here defers the message even though it
    /// may have been delivered: a duplicate is better than a loss (RFC 5321 §6.1).
    pub data_termination_timeout: Duration,
    /// Waiting for the 221 reply to QUIT; nothing depends on it. 30 s.
    pub quit_timeout: Duration,
    /// Messages sent over one connection before it is closed and another opened: 100, a
    /// bound on how long one receiver holds a connection (Exim's `connection_max_messages`
    /// is 500; Postfix reuses for at most 300 s).
    pub messages_per_connection_max: usize,
    /// MX addresses tried per delivery: 5, Postfix's `smtp_mx_address_limit`. A domain with
    /// twenty MX hosts all down costs five connection timeouts, not twenty.
    pub addresses_max: usize,
    /// Bytes the receiver may send between two writes of ours (a greeting, the replies to
    /// one batch of pipelined commands): 1 MiB. Real ones are a few hundred bytes; past
    /// it the delivery is deferred (see [`Watched`]).
    pub replies_bytes_max: usize,
}

impl OutboundOptions {
    /// The defaults above, for `hostname`.
    pub fn new(hostname: impl Into<String>) -> OutboundOptions {
        let minutes = |n: u64| Duration::from_secs(60 * n);
        OutboundOptions {
            hostname: hostname.into(),
            port: 25,
            connect_timeout: Duration::from_secs(30),
            greeting_timeout: minutes(5),
            command_timeout: minutes(5),
            mail_timeout: minutes(5),
            rcpt_timeout: minutes(5),
            data_init_timeout: minutes(2),
            data_block_timeout: minutes(3),
            data_termination_timeout: minutes(10),
            quit_timeout: Duration::from_secs(30),
            messages_per_connection_max: 100,
            addresses_max: 5,
            replies_bytes_max: 1 << 20,
        }
    }
}

/// One message for [`deliver_to_domain`]: its envelope and its bytes (CRLF lines, as the
/// queue keeps them; not yet dot-stuffed).
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    pub mail_from: &'a str,
    /// Every one at the domain being delivered to.
    pub recipients: &'a [String],
    pub data: &'a [u8],
}

/// What delivering to one domain gave.
#[derive(Debug)]
pub struct Delivery {
    /// One `Vec` per message, one [`Outcome`] per recipient, in the order given.
    pub outcomes: Vec<Vec<Outcome>>,
    /// Per message, what secured the connection of its transaction (`None`: none started).
    pub tls: Vec<Option<TlsUsed>>,
    /// The TLS sessions tried and the policy failures met, for TLS-RPT (RFC 8460).
    pub sessions: Vec<Session>,
}

/// One connection's TLS, or a policy's failure before any, under the policy applied.
#[derive(Clone, Debug)]
pub struct Session {
    pub policy: Arc<tls_rpt::Policy>,
    /// The MX host (empty when the failure is the policy's own, before any host).
    pub mx_host: String,
    pub address: Option<IpAddr>,
    pub failure: Option<Failure>,
}

/// Delivers each message to its recipients at `domain`: the outcomes, the TLS used, and
/// the sessions for TLS-RPT.
///
/// MX hosts are tried in preference order (RFC 5321 §5.1), those of equal preference in a
/// random order; a domain without MX is its own (implicit MX); a null MX (RFC 7505) fails
/// every recipient at once. The next address is tried when a connection fails, times out,
/// or greets with anything but 2xx; replies to a transaction are final for it (a 4xx to
/// RCPT defers that recipient, it does not move to the next MX).
///
/// TLS, per MX host: DANE when the MX answer and the host's TLSA records are DNSSEC-secure
/// (RFC 7672: it takes precedence over MTA-STS, RFC 8461 §2); else the domain's MTA-STS
/// policy in `enforce` mode (only MX hosts the policy names, a certificate valid for the
/// host from a trusted authority); else opportunistic STARTTLS. Where TLS is required, a
/// host that does not offer it or fails the check is skipped, never used in clear, and the
/// messages are deferred if no host passes.
///
/// `done` is told each message's outcomes as soon as they are final (its transaction
/// answered, or no host left to try), so that the caller can record them before the rest
/// of the batch is through: a crash then resends only what was under way.
pub async fn deliver(
    resolver: &TokioResolver,
    options: &OutboundOptions,
    tls: &TlsContext,
    domain: &str,
    messages: &[Outgoing<'_>],
    done: &Done<'_>,
) -> Delivery {
    let told = std::sync::Mutex::new(vec![false; messages.len()]);
    let tell = |index: usize, outcomes: &[Outcome]| {
        told.lock().expect("delivery bookkeeping")[index] = true;
        done(index, outcomes);
    };
    let delivery = attempt(resolver, options, tls, domain, messages, &tell).await;
    let told = told.into_inner().expect("delivery bookkeeping");
    for (index, outcomes) in delivery.outcomes.iter().enumerate() {
        if !told[index] {
            done(index, outcomes);
        }
    }
    delivery
}

/// [`deliver`]'s work; `done` is told of the messages whose transaction was answered.
async fn attempt(
    resolver: &TokioResolver,
    options: &OutboundOptions,
    tls: &TlsContext,
    domain: &str,
    messages: &[Outgoing<'_>],
    done: &Done<'_>,
) -> Delivery {
    assert!(options.messages_per_connection_max >= 1);
    assert!(options.addresses_max >= 1);
    let mut delivery = Delivery {
        outcomes: messages.iter().map(|_| Vec::new()).collect(),
        tls: vec![None; messages.len()],
        sessions: Vec::new(),
    };
    if messages.iter().all(|message| message.recipients.is_empty()) {
        return delivery;
    }
    let all = |outcome: &Outcome| messages.iter().map(|m| vec![outcome.clone(); m.recipients.len()]).collect();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let policy = match &tls.mta_sts {
        Some(mta_sts) => mta_sts.lookup(resolver, &domain, now_s).await,
        None => mta_sts::Lookup::None,
    };
    let no_policy = Arc::new(tls_rpt::Policy::none(&domain));
    let (sts, sts_report) = match policy {
        mta_sts::Lookup::Policy(policy) if !matches!(policy.mode, mta_sts::Mode::None) => {
            let report = Arc::new(tls_rpt::Policy::sts(&domain, &policy));
            (Some(policy), report)
        }
        mta_sts::Lookup::Policy(_) | mta_sts::Lookup::None => (None, no_policy.clone()),
        mta_sts::Lookup::FetchFailed { result_type, why } => {
            tracing::info!(domain, "MTA-STS: no policy could be had ({result_type}): {why}");
            let failure = Failure::new(result_type, why);
            delivery.sessions.push(Session {
                policy: no_policy.clone(),
                mx_host: String::new(),
                address: None,
                failure: Some(failure),
            });
            (None, no_policy.clone())
        }
    };
    let enforce = sts.as_ref().filter(|policy| matches!(policy.mode, mta_sts::Mode::Enforce));
    let (mut targets, implicit) = match route(resolver, &domain, options.addresses_max).await {
        Ok(route) => route,
        Err(outcome) => {
            delivery.outcomes = all(&outcome);
            return delivery;
        }
    };
    let mx_secure = match &tls.dane {
        Some(validating) if !implicit => mx_secure(validating, &domain).await,
        _ => false,
    };
    if let Some(policy) = enforce {
        // RFC 8461 §4.1: only the MX hosts the policy names may be used.
        let before = targets.len();
        targets.retain(|target| policy.matches(&target.host));
        if targets.is_empty() {
            let why = format!("no MX host of {domain} is named by its MTA-STS policy");
            tracing::warn!(domain, "{why} ({before} tried)");
            delivery.sessions.push(Session {
                policy: sts_report.clone(),
                mx_host: String::new(),
                address: None,
                failure: Some(Failure::new("validation-failure", why.clone())),
            });
            delivery.outcomes = all(&Outcome::Deferred { reply: format!("451 4.7.5 {why}") });
            return delivery;
        }
    }
    let mut results: Vec<Option<Vec<Outcome>>> = vec![None; messages.len()];
    // Messages not yet tried, in order; a message leaves this list when its transaction
    // starts, and its outcomes are then final for this delivery.
    let mut pending: Vec<usize> = (0..messages.len()).collect();
    pending.reverse();
    let mut last_error = format!("451 4.4.1 no MX address of {domain} was tried");
    // TLSA answers per MX host: a host has one per address otherwise.
    let mut tlsa_of: Vec<(String, dane::TlsaLookup)> = Vec::new();
    for target in &targets {
        let requirement = if let (Some(validating), true) = (&tls.dane, mx_secure) {
            let known = tlsa_of.iter().position(|(host, _)| *host == target.host);
            let at = match known {
                Some(at) => at,
                None => {
                    let found = dane::tlsa(validating, &target.host, options.port).await;
                    tlsa_of.push((target.host.clone(), found));
                    tlsa_of.len() - 1
                }
            };
            match &tlsa_of[at].1 {
                dane::TlsaLookup::Secure(records) => {
                    let names = vec![target.host.clone(), domain.clone()];
                    let report = Arc::new(tls_rpt::Policy::tlsa(&domain, &target.host, records));
                    let connector = TlsConnector::from(dane::client_config(records.clone(), names));
                    Requirement::Dane { connector, report }
                }
                dane::TlsaLookup::Failed(why) => {
                    // RFC 7672 §2.2: a host whose TLSA lookup failed is not used.
                    last_error = format!("451 4.7.5 {target}: DANE: {why}");
                    delivery.sessions.push(Session {
                        policy: no_policy.clone(),
                        mx_host: target.host.clone(),
                        address: Some(target.address),
                        failure: Some(Failure::new("dnssec-invalid", why.clone())),
                    });
                    continue;
                }
                dane::TlsaLookup::Unusable => {
                    let report = Arc::new(tls_rpt::Policy::tlsa(&domain, &target.host, &[]));
                    Requirement::Encrypt { report }
                }
                dane::TlsaLookup::None => Requirement::of_sts(sts.as_ref(), &sts_report),
            }
        } else {
            Requirement::of_sts(sts.as_ref(), &sts_report)
        };
        let mut use_tls = true;
        // Each turn either opens a connection and decides at least one message, or moves
        // on: bounded by the number of messages plus one TLS fallback.
        while !pending.is_empty() {
            let start = match &requirement {
                _ if !use_tls => Start::Clear,
                Requirement::Opportunistic { .. } => Start::Try(&tls.any),
                Requirement::MtaSts { .. } => match &tls.webpki {
                    Some(connector) => Start::Require(connector, TlsUsed::MtaSts),
                    None => Start::Try(&tls.any),
                },
                Requirement::Dane { connector, .. } => Start::Require(connector, TlsUsed::Dane),
                Requirement::Encrypt { .. } => Start::Require(&tls.any, TlsUsed::Starttls),
            };
            let (connection, used) = match open(target, options, start).await {
                Ok(opened) => opened,
                Err(Broken::Tls(why)) => {
                    tracing::info!(mx = %target, "STARTTLS failed, retrying in clear: {why}");
                    last_error = why;
                    use_tls = false;
                    continue;
                }
                Err(Broken::Connection(why)) => {
                    tracing::info!(mx = %target, "{why}");
                    last_error = why;
                    break;
                }
                Err(Broken::Policy(failure)) => {
                    let by = match requirement {
                        Requirement::Dane { .. } | Requirement::Encrypt { .. } => "DANE",
                        _ => "MTA-STS",
                    };
                    tracing::warn!(mx = %target, result = failure.result_type, "TLS required by {by} failed: {}", failure.why);
                    last_error = format!("451 4.7.5 {target}: TLS required by {by}: {}", failure.why);
                    delivery.sessions.push(Session {
                        policy: requirement.report().clone(),
                        mx_host: target.host.clone(),
                        address: Some(target.address),
                        failure: Some(failure),
                    });
                    break;
                }
            };
            let mut session = Session {
                policy: requirement.report().clone(),
                mx_host: target.host.clone(),
                address: Some(target.address),
                failure: None,
            };
            let (carried, lost) = match connection {
                Connection::Plain(client, ehlo) => {
                    if used == TlsUsed::None && requirement.reported() {
                        session.failure = Some(Failure::new(
                            "starttls-not-supported",
                            format!("{target} did not offer STARTTLS, or its handshake failed"),
                        ));
                    }
                    carry(client, &ehlo, options, (messages, done), &mut pending, &mut results, target).await
                }
                Connection::Tls(client, ehlo) => {
                    if let Requirement::Opportunistic { testing: true, .. } = requirement {
                        // MTA-STS `testing`: delivered all the same, what failed is reported.
                        let chain = client.stream.inner.get_ref().1.peer_certificates().unwrap_or_default().to_vec();
                        session.failure = tls.check_webpki(&chain, &target.host).err();
                    }
                    carry(*client, &ehlo, options, (messages, done), &mut pending, &mut results, target).await
                }
            };
            delivery.sessions.push(session);
            for index in carried {
                delivery.tls[index] = Some(used);
            }
            if let Err(why) = lost {
                last_error = why;
                break;
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    let deferred = Outcome::Deferred { reply: last_error };
    delivery.outcomes = results
        .into_iter()
        .zip(messages)
        .map(|(outcomes, message)| outcomes.unwrap_or_else(|| vec![deferred.clone(); message.recipients.len()]))
        .collect();
    delivery
}

/// What TLS one MX host requires.
enum Requirement {
    /// STARTTLS when offered, any certificate, clear when it fails (RFC 7435); `testing`
    /// under an MTA-STS `testing` policy, whose checks are reported, not enforced.
    Opportunistic { testing: bool, report: Arc<tls_rpt::Policy> },
    /// MTA-STS `enforce`: STARTTLS, a WebPKI certificate valid for the host.
    MtaSts { report: Arc<tls_rpt::Policy> },
    /// DANE: STARTTLS, a certificate matching the host's TLSA records.
    Dane { connector: TlsConnector, report: Arc<tls_rpt::Policy> },
    /// DANE with no usable TLSA record: STARTTLS, any certificate (RFC 7672 §2.2).
    Encrypt { report: Arc<tls_rpt::Policy> },
}

impl Requirement {
    /// The requirement of a domain's MTA-STS policy (or of none).
    fn of_sts(policy: Option<&Arc<mta_sts::Policy>>, report: &Arc<tls_rpt::Policy>) -> Requirement {
        let report = report.clone();
        match policy.map(|policy| &policy.mode) {
            Some(mta_sts::Mode::Enforce) => Requirement::MtaSts { report },
            Some(mta_sts::Mode::Testing) => Requirement::Opportunistic { testing: true, report },
            Some(mta_sts::Mode::None) | None => Requirement::Opportunistic { testing: false, report },
        }
    }

    fn report(&self) -> &Arc<tls_rpt::Policy> {
        match self {
            Requirement::Opportunistic { report, .. }
            | Requirement::MtaSts { report }
            | Requirement::Dane { report, .. }
            | Requirement::Encrypt { report } => report,
        }
    }

    /// Whether a clear-text session is a failure to report: under a policy, even `testing`.
    fn reported(&self) -> bool {
        !matches!(self, Requirement::Opportunistic { testing: false, .. })
    }
}

/// Told each message's outcomes (its index in the batch) as soon as they are final.
pub type Done<'a> = dyn Fn(usize, &[Outcome]) + Send + Sync + 'a;

/// One address of one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// The MX host's name, without the final dot: what we present as TLS SNI.
    host: String,
    address: IpAddr,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}]", self.host, self.address)
    }
}

/// The addresses to try, in order, and whether the domain is its own MX (implicit MX); or
/// the outcome of every recipient when there is no address.
async fn route(resolver: &TokioResolver, domain: &str, addresses_max: usize) -> Result<(Vec<Target>, bool), Outcome> {
    let domain = domain.trim_end_matches('.');
    let fqdn = format!("{domain}.");
    let mut exchanges: Vec<(u16, String)> = match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => {
            return Err(Outcome::Failed { reply: format!("550 5.1.2 domain {domain} does not exist") });
        }
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => {
            return Err(Outcome::Deferred { reply: format!("451 4.4.3 looking up the MX of {domain}: {e}") });
        }
    };
    // RFC 7505 §3: a null MX is a single MX whose exchange is the root, ".".
    if exchanges.len() == 1 && exchanges[0].1 == "." {
        return Err(Outcome::Failed { reply: "556 5.1.10 domain does not accept mail (null MX)".to_string() });
    }
    exchanges.retain(|(_, exchange)| exchange != ".");
    if exchanges.is_empty() {
        // RFC 5321 §5.1: no MX, so the domain itself is the mail exchanger (implicit MX).
        return match addresses(resolver, &fqdn).await {
            Ok(found) if !found.is_empty() => Ok((
                found
                    .into_iter()
                    .take(addresses_max)
                    .map(|address| Target { host: domain.to_string(), address })
                    .collect(),
                false,
            )),
            Ok(_) => {
                Err(Outcome::Failed { reply: format!("550 5.4.4 domain {domain} has no MX and no address record") })
            }
            Err(why) => Err(Outcome::Deferred { reply: format!("451 4.4.3 looking up {domain}: {why}") }),
        };
    }
    order(&mut exchanges);
    let mut targets = Vec::new();
    let mut last_error = None;
    for (_, exchange) in &exchanges {
        if targets.len() >= addresses_max {
            break;
        }
        let host = exchange.trim_end_matches('.').to_string();
        match addresses(resolver, exchange).await {
            Ok(found) => targets.extend(found.into_iter().map(|address| Target { host: host.clone(), address })),
            Err(why) => last_error = Some(format!("451 4.4.3 looking up MX host {host}: {why}")),
        }
    }
    targets.truncate(addresses_max);
    if targets.is_empty() {
        let reply = last_error.unwrap_or_else(|| format!("451 4.4.4 no MX host of {domain} has an address"));
        return Err(Outcome::Deferred { reply });
    }
    Ok((targets, false))
}

/// Whether `domain`'s MX answer is DNSSEC-secure, asked of the validating resolver: DANE
/// applies only to the hosts of a secure MX answer (RFC 7672 §2.2.1). An answer that cannot
/// be validated (an unsigned zone, a resolver that strips DNSSEC records) is not secure,
/// and delivery goes on without DANE, as Postfix does with a resolver that does not
/// validate: a resolver without DNSSEC must not stop all outbound mail.
async fn mx_secure(validating: &TokioResolver, domain: &str) -> bool {
    match validating.mx_lookup(format!("{domain}.").as_str()).await {
        Ok(lookup) => dane::all_secure(lookup.answers()),
        Err(e) => {
            tracing::debug!(domain, "DANE: the MX answer is not secure: {e}");
            false
        }
    }
}

/// Sorts MX records by preference, shuffling those of equal preference (RFC 5321 §5.1:
/// the client "MUST randomize them to spread the load").
fn order(exchanges: &mut [(u16, String)]) {
    exchanges.shuffle(&mut rand::rng());
    // A stable sort keeps the shuffled order within each preference.
    exchanges.sort_by_key(|(preference, _)| *preference);
}

/// A name's addresses (A and AAAA); none when it has no such record.
async fn addresses(resolver: &TokioResolver, name: &str) -> Result<Vec<IpAddr>, String> {
    match resolver.lookup_ip(name).await {
        Ok(lookup) => Ok(lookup.iter().collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// An open SMTP session after EHLO (the EHLO after STARTTLS, when it was used).
enum Connection {
    Plain(SmtpClient<Watched<TcpStream>>, Ehlo),
    Tls(Box<SmtpClient<Watched<tokio_rustls::client::TlsStream<TcpStream>>>>, Ehlo),
}

/// What EHLO told us.
#[derive(Clone, Copy, Debug)]
struct Ehlo {
    capabilities: u32,
    /// RFC 1870 SIZE; 0 when not announced or unlimited.
    size: usize,
}

impl Ehlo {
    fn has(&self, capability: u32) -> bool {
        self.capabilities & capability != 0
    }
}

/// Why a connection could not carry messages.
enum Broken {
    /// The address is unusable now: try the next one.
    Connection(String),
    /// STARTTLS was accepted but the handshake failed: the connection is lost; the same
    /// address may be tried in clear.
    Tls(String),
    /// TLS was required and the host did not offer it or failed the check: the address is
    /// not used, never in clear.
    Policy(Failure),
}

/// How a connection starts TLS.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// In clear, after a failed opportunistic handshake.
    Clear,
    /// STARTTLS when offered.
    Try(&'a TlsConnector),
    /// STARTTLS or nothing, the certificate checked by the connector, as `TlsUsed`.
    Require(&'a TlsConnector, TlsUsed),
}

/// Connects to `target`, reads the greeting, says EHLO, and upgrades with STARTTLS as
/// `start` says; gives the session and what secured it.
async fn open(target: &Target, options: &OutboundOptions, start: Start<'_>) -> Result<(Connection, TlsUsed), Broken> {
    let peer = SocketAddr::new(target.address, options.port);
    let stream = match tokio::time::timeout(options.connect_timeout, TcpStream::connect(peer)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(Broken::Connection(format!("451 4.4.1 connection to {target}:{} failed: {e}", options.port)));
        }
        Err(_) => {
            return Err(Broken::Connection(format!("451 4.4.1 connection to {target}:{} timed out", options.port)));
        }
    };
    let mut client =
        SmtpClient { stream: Watched::new(stream, options.replies_bytes_max), timeout: options.greeting_timeout };
    let label = format!("{target}:{}", options.port);
    let greeting = match tokio::time::timeout(options.greeting_timeout, client.read()).await {
        Ok(Ok(greeting)) => greeting,
        Ok(Err(e)) => return Err(Broken::Connection(broken(&label, "the greeting", e, client.stream.ended))),
        Err(_) => {
            return Err(Broken::Connection(broken(
                &label,
                "the greeting",
                mail_send::Error::Timeout,
                client.stream.ended,
            )));
        }
    };
    // RFC 5321 §3.1: a 554 (or any non-2xx) greeting means no service here; like Postfix
    // (`smtp_skip_5xx_greeting`), the next MX is tried.
    if !(200..300).contains(&greeting.code) {
        return Err(Broken::Connection(format!("{} (greeting of {label})", reply_text(&greeting))));
    }
    client.timeout = options.command_timeout;
    let ehlo = ehlo(&mut client, options, &label).await.map_err(Broken::Connection)?;
    let (connector, required) = match start {
        Start::Clear => return Ok((Connection::Plain(client, ehlo), TlsUsed::None)),
        Start::Try(connector) => (connector, None),
        Start::Require(connector, used) => (connector, Some(used)),
    };
    if !ehlo.has(EXT_START_TLS) {
        if required.is_some() {
            return Err(Broken::Policy(Failure::new("starttls-not-supported", format!("{label} offers no STARTTLS"))));
        }
        return Ok((Connection::Plain(client, ehlo), TlsUsed::None));
    }
    match client.cmd(b"STARTTLS\r\n").await {
        Ok(reply) if reply.code == 220 => {}
        Ok(reply) if required.is_some() => {
            let why = format!("{} (STARTTLS at {label})", reply_text(&reply));
            return Err(Broken::Policy(Failure::new("starttls-not-supported", why)));
        }
        // RFC 3207 §4: refused; opportunistic TLS goes on in clear on this connection.
        Ok(reply) if reply.code != 421 => return Ok((Connection::Plain(client, ehlo), TlsUsed::None)),
        Ok(reply) => return Err(Broken::Connection(format!("{} (STARTTLS at {label})", reply_text(&reply)))),
        Err(e) => return Err(Broken::Connection(broken(&label, "STARTTLS", e, client.stream.ended))),
    }
    // The server name we present (SNI) is the MX host's, the name a policy checks.
    let name = ServerName::try_from(target.host.clone()).unwrap_or(ServerName::IpAddress(target.address.into()));
    let handshake = connector.connect(name, client.stream.inner);
    let stream = match tokio::time::timeout(options.command_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) if required.is_some() => return Err(Broken::Policy(Failure::from_io(&e))),
        Ok(Err(e)) => return Err(Broken::Tls(format!("451 4.7.5 {label}: TLS handshake failed: {e}"))),
        Err(_) if required.is_some() => {
            return Err(Broken::Policy(Failure::new(
                "validation-failure",
                format!("{label}: TLS handshake timed out"),
            )));
        }
        Err(_) => return Err(Broken::Tls(format!("451 4.7.5 {label}: TLS handshake timed out"))),
    };
    let mut client =
        SmtpClient { stream: Watched::new(stream, options.replies_bytes_max), timeout: options.command_timeout };
    // RFC 3207 §4.2: the server's capabilities are learnt again over TLS.
    let ehlo = self::ehlo(&mut client, options, &label).await.map_err(Broken::Connection)?;
    Ok((Connection::Tls(Box::new(client), ehlo), required.unwrap_or(TlsUsed::Starttls)))
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<Watched<S>>,
    options: &OutboundOptions,
    label: &str,
) -> Result<Ehlo, String> {
    client.timeout = options.command_timeout;
    match client.ehlo(&options.hostname).await {
        Ok(reply) => Ok(Ehlo { capabilities: reply.capabilities, size: reply.size }),
        // No HELO fallback: every receiver of today speaks ESMTP.
        Err(mail_send::Error::UnexpectedReply(reply)) => Err(format!("{} (EHLO at {label})", reply_text(&reply))),
        Err(e) => Err(broken(label, "EHLO", e, client.stream.ended)),
    }
}

/// Sends pending messages over one connection, at most `messages_per_connection_max`, with
/// RSET between them, then QUIT. Gives the messages whose transaction it started, and
/// the connection's loss with its reason.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: SmtpClient<Watched<S>>,
    ehlo: &Ehlo,
    options: &OutboundOptions,
    (messages, done): (&[Outgoing<'_>], &Done<'_>),
    pending: &mut Vec<usize>,
    results: &mut [Option<Vec<Outcome>>],
    target: &Target,
) -> (Vec<usize>, Result<(), String>) {
    let label = format!("{target}:{}", options.port);
    let mut carried = Vec::new();
    // Whether a transaction is left open (MAIL taken, no final reply to the data): RSET
    // then. After the reply to the data the server is ready for MAIL (RFC 5321 §4.1.4),
    // so the round trip is saved.
    let mut open = false;
    for _ in 0..options.messages_per_connection_max {
        let Some(&index) = pending.last() else { break };
        if open {
            client.timeout = options.command_timeout;
            match client.cmd(b"RSET\r\n").await {
                Ok(reply) if (200..300).contains(&reply.code) => {}
                Ok(reply) => return (carried, Err(format!("{} (RSET at {label})", reply_text(&reply)))),
                Err(e) => return (carried, Err(broken(&label, "RSET", e, client.stream.ended))),
            }
        }
        pending.pop();
        carried.push(index);
        let (outcomes, lost, completed) = transaction(&mut client, ehlo, options, &messages[index], &label).await;
        open = !completed;
        done(index, &outcomes);
        results[index] = Some(outcomes);
        if let Some(why) = lost {
            return (carried, Err(why));
        }
    }
    client.timeout = options.quit_timeout;
    let _ = client.cmd(b"QUIT\r\n").await;
    (carried, Ok(()))
}

/// Recipients past which a transaction is not pipelined: the commands of a pipeline are
/// written before any reply is read, and 100 of them fit any socket buffer.
const PIPELINED_RECIPIENTS_MAX: usize = 100;

/// One message's transaction: MAIL, one RCPT per recipient, DATA when one was accepted;
/// the three pipelined in one write when the server offers PIPELINING (RFC 2920). Gives
/// the recipients' outcomes, the reason when the connection is lost, and whether the
/// transaction was completed (a final reply to the data).
async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<Watched<S>>,
    ehlo: &Ehlo,
    options: &OutboundOptions,
    message: &Outgoing<'_>,
    label: &str,
) -> (Vec<Outcome>, Option<String>, bool) {
    let all = |outcome: Outcome| vec![outcome; message.recipients.len()];
    if message.recipients.is_empty() {
        return (Vec::new(), None, true);
    }
    let mail = match mail_command(ehlo, message) {
        Ok(mail) => mail,
        Err(outcome) => return (all(outcome), None, true),
    };
    let mut outcomes: Vec<Option<Outcome>> = message
        .recipients
        .iter()
        .map(|recipient| {
            (!valid_address(recipient) || recipient.is_empty())
                .then(|| Outcome::Failed { reply: "553 5.1.3 invalid recipient address".to_string() })
        })
        .collect();
    if ehlo.has(EXT_PIPELINING) && message.recipients.len() <= PIPELINED_RECIPIENTS_MAX {
        let (outcomes, lost, completed) = pipelined(client, options, message, &mail, outcomes, label).await;
        return (outcomes, lost, completed);
    }
    client.timeout = options.mail_timeout;
    match client.cmd(mail.as_bytes()).await {
        Ok(reply) if (200..300).contains(&reply.code) => {}
        Ok(reply) => return (all(refused(&reply)), closing(&reply, label, "MAIL FROM"), true),
        Err(e) => {
            let why = broken(label, "MAIL FROM", e, client.stream.ended);
            return (all(Outcome::Deferred { reply: why.clone() }), Some(why), false);
        }
    }
    client.timeout = options.rcpt_timeout;
    for (recipient, outcome) in message.recipients.iter().zip(outcomes.iter_mut()) {
        if outcome.is_some() {
            continue;
        }
        match client.cmd(format!("RCPT TO:<{recipient}>\r\n").as_bytes()).await {
            Ok(reply) if (200..300).contains(&reply.code) => {}
            Ok(reply) => {
                *outcome = Some(refused(&reply));
                if let Some(why) = closing(&reply, label, "RCPT TO") {
                    return (finish(outcomes, &why), Some(why), false);
                }
            }
            Err(e) => {
                let why = broken(label, "RCPT TO", e, client.stream.ended);
                return (finish(outcomes, &why), Some(why), false);
            }
        }
    }
    if outcomes.iter().all(Option::is_some) {
        // No recipient accepted: no DATA (RFC 5321 §3.3); the next RSET ends it.
        return (finish(outcomes, ""), None, false);
    }
    let (reply, lost) = data(client, options, message.data, label).await;
    (accepted(outcomes, reply), lost, true)
}

/// The MAIL command for `message` with its parameters, or the outcome of every recipient
/// when the receiver cannot take it.
fn mail_command(ehlo: &Ehlo, message: &Outgoing<'_>) -> Result<String, Outcome> {
    // The envelope comes from our own sessions; this keeps a bad one from injecting a
    // command all the same.
    if !valid_address(message.mail_from) {
        return Err(Outcome::Failed { reply: "553 5.1.7 invalid sender address".to_string() });
    }
    let mut mail = format!("MAIL FROM:<{}>", message.mail_from);
    // RFC 6531 §3.4: international addresses, and a header in UTF-8 (RFC 6532: submission
    // took it only with SMTPUTF8), need SMTPUTF8, which cannot be downgraded.
    let international = !message.mail_from.is_ascii()
        || message.recipients.iter().any(|r| !r.is_ascii())
        || !header_of(message.data).is_ascii();
    if international {
        if !ehlo.has(EXT_SMTP_UTF8) {
            let reply = "550 5.6.7 the receiver does not accept international mail (SMTPUTF8)".to_string();
            return Err(Outcome::Failed { reply });
        }
        mail.push_str(" SMTPUTF8");
    }
    // RFC 1870 §6: refuse ourselves what the receiver announced it would refuse.
    if ehlo.has(EXT_SIZE) {
        if ehlo.size > 0 && message.data.len() > ehlo.size {
            let reply = format!(
                "552 5.3.4 message of {} bytes exceeds the receiver's limit of {} bytes",
                message.data.len(),
                ehlo.size
            );
            return Err(Outcome::Failed { reply });
        }
        mail.push_str(&format!(" SIZE={}", message.data.len()));
    }
    // RFC 6152: declare an 8-bit body when the receiver takes one. Without 8BITMIME it is
    // sent as is (as Exim does): every receiver of today takes 8-bit bodies.
    if ehlo.has(EXT_8BIT_MIME) && !message.data.is_ascii() {
        mail.push_str(" BODY=8BITMIME");
    }
    mail.push_str("\r\n");
    Ok(mail)
}

/// The recipients' outcomes once the data was answered: the accepted ones take the data's.
fn accepted(outcomes: Vec<Option<Outcome>>, reply: Result<Response<String>, String>) -> Vec<Outcome> {
    let accepted = match reply {
        Ok(reply) if (200..300).contains(&reply.code) => Outcome::Delivered { reply: reply_text(&reply) },
        Ok(reply) => refused(&reply),
        Err(why) => Outcome::Deferred { reply: why },
    };
    outcomes.into_iter().map(|outcome| outcome.unwrap_or_else(|| accepted.clone())).collect()
}

/// MAIL, the valid recipients' RCPT and DATA in one write (RFC 2920), their replies read in
/// order, then the message when DATA got its 354.
async fn pipelined<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<Watched<S>>,
    options: &OutboundOptions,
    message: &Outgoing<'_>,
    mail: &str,
    mut outcomes: Vec<Option<Outcome>>,
    label: &str,
) -> (Vec<Outcome>, Option<String>, bool) {
    let tried: Vec<usize> = (0..outcomes.len()).filter(|at| outcomes[*at].is_none()).collect();
    let mut commands = vec![mail.to_string()];
    commands.extend(tried.iter().map(|at| format!("RCPT TO:<{}>\r\n", message.recipients[*at])));
    commands.push("DATA\r\n".to_string());
    // Every reply within the longest of the commands' timeouts.
    let timeout = options.mail_timeout.max(options.rcpt_timeout).max(options.data_init_timeout);
    let (replies, failure) = exchange(&mut client.stream, &commands, timeout).await;
    if let Some(error) = failure {
        // What the server answered before it went stays true (a 421 to RCPT says why).
        let last = replies.last().filter(|reply| reply.code == 421).map(reply_text);
        let why = last.unwrap_or_else(|| broken(label, "MAIL, RCPT and DATA", error, client.stream.ended));
        return (finish(outcomes, &why), Some(why), false);
    }
    let (mail_reply, rest) = replies.split_first().expect("one reply per command");
    let (data_reply, rcpt_replies) = rest.split_last().expect("one reply per command");
    let mail_taken = (200..300).contains(&mail_reply.code);
    let mut lost = closing(mail_reply, label, "MAIL FROM");
    for (at, reply) in tried.iter().zip(rcpt_replies) {
        if !mail_taken {
            outcomes[*at] = Some(refused(mail_reply));
        } else if !(200..300).contains(&reply.code) {
            outcomes[*at] = Some(refused(reply));
            lost = lost.or_else(|| closing(reply, label, "RCPT TO"));
        }
    }
    let any_accepted = outcomes.iter().any(Option::is_none);
    if data_reply.code != 354 {
        // RFC 2920 §3.1: DATA refused, as it must be when no recipient was accepted.
        let why = reply_text(data_reply);
        let outcomes = if any_accepted {
            accepted(outcomes, Ok(data_reply.clone()))
        } else {
            outcomes.into_iter().map(|outcome| outcome.unwrap_or(Outcome::Deferred { reply: why.clone() })).collect()
        };
        return (outcomes, lost.or_else(|| closing(data_reply, label, "DATA")), false);
    }
    if !any_accepted || lost.is_some() {
        // A server that says 354 with no recipient: an empty message ends the data, and
        // its reply is not a delivery.
        let ended = write_within(&mut client.stream, b".\r\n", options.data_block_timeout).await;
        let reply = tokio::time::timeout(options.data_termination_timeout, client.read()).await;
        let why = match (ended, reply) {
            (Ok(()), Ok(Ok(_))) => None,
            _ => Some(format!("451 4.4.2 {label}: the data of a transaction without recipients could not be ended")),
        };
        let why = lost.or(why);
        let outcomes = finish(outcomes, why.as_deref().unwrap_or("451 4.4.2 no recipient was accepted"));
        return (outcomes, why, true);
    }
    let (reply, lost) = send_data(client, options, message.data, label).await;
    (accepted(outcomes, reply), lost, true)
}

/// Replies read per read: enough for a pipelined transaction's replies in one go.
const REPLY_BUFFER_BYTES: usize = 4096;

/// Writes `commands` in one go, then reads one reply per command: the replies read, and the
/// error that stopped it short (mail-send's `cmds` loses the replies before a close).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut Watched<S>,
    commands: &[String],
    timeout: Duration,
) -> (Vec<Response<String>>, Option<mail_send::Error>) {
    let mut replies = Vec::with_capacity(commands.len());
    let run = async {
        for command in commands {
            stream.write_all(command.as_bytes()).await?;
        }
        stream.flush().await?;
        let mut buffer = vec![0u8; REPLY_BUFFER_BYTES];
        let mut parser = smtp_proto::response::parser::ResponseReceiver::default();
        while replies.len() < commands.len() {
            let read = stream.read(&mut buffer).await?;
            if read == 0 {
                return Err(mail_send::Error::UnparseableReply);
            }
            let mut bytes = buffer[..read].iter();
            loop {
                match parser.parse(&mut bytes) {
                    Ok(reply) => {
                        replies.push(reply);
                        parser.reset();
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                    Err(_) => return Err(mail_send::Error::UnparseableReply),
                }
            }
        }
        Ok(())
    };
    let failure = match tokio::time::timeout(timeout, run).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(mail_send::Error::Timeout),
    };
    (replies, failure)
}

/// DATA, the message, and the final reply. Gives that reply (or the 354's refusal), or the
/// reason the connection was lost, and whether it was.
async fn data<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<Watched<S>>,
    options: &OutboundOptions,
    bytes: &[u8],
    label: &str,
) -> (Result<Response<String>, String>, Option<String>) {
    client.timeout = options.data_init_timeout;
    match client.cmd(b"DATA\r\n").await {
        Ok(reply) if reply.code == 354 => {}
        Ok(reply) if reply.code >= 400 => {
            let lost = closing(&reply, label, "DATA");
            return (Ok(reply), lost);
        }
        // A success without 354 would take the message's lines for commands.
        Ok(reply) => {
            let why = format!("451 4.4.2 {label}: unexpected reply to DATA: {}", reply_text(&reply));
            return (Err(why.clone()), Some(why));
        }
        Err(e) => {
            let why = broken(label, "DATA", e, client.stream.ended);
            return (Err(why.clone()), Some(why));
        }
    }
    send_data(client, options, bytes, label).await
}

/// The message after DATA's 354, and the final reply (or the reason the connection was
/// lost, and whether it was).
async fn send_data<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<Watched<S>>,
    options: &OutboundOptions,
    bytes: &[u8],
    label: &str,
) -> (Result<Response<String>, String>, Option<String>) {
    if let Err(why) = write_data(&mut client.stream, bytes, options.data_block_timeout).await {
        let why = format!("451 4.4.2 {label}: {why}");
        return (Err(why.clone()), Some(why));
    }
    match tokio::time::timeout(options.data_termination_timeout, client.read()).await {
        Ok(Ok(reply)) => {
            let lost = closing(&reply, label, "the end of DATA");
            (Ok(reply), lost)
        }
        Ok(Err(e)) => {
            let why = broken(label, "the end of DATA", e, client.stream.ended);
            (Err(why.clone()), Some(why))
        }
        Err(_) => {
            let why = broken(label, "the end of DATA", mail_send::Error::Timeout, client.stream.ended);
            (Err(why.clone()), Some(why))
        }
    }
}

/// Bytes of dot-stuffed message written at a time, each write within the data block
/// timeout: 64 KiB, one TCP window's worth.
const DATA_CHUNK_BYTES: usize = 64 * 1024;

/// Writes `message` as DATA's content: a `.` starting a line is doubled (RFC 5321 §4.5.2)
/// — after any CR or LF, and at the very start, so that no bare CR or LF in a body can end
/// the data early — then `.` on a line of its own, after a CRLF if the message lacks its
/// last one. Memory is one chunk, whatever the message's size.
async fn write_data<W: AsyncWrite + Unpin>(out: &mut W, message: &[u8], block_timeout: Duration) -> Result<(), String> {
    let mut chunk = Vec::with_capacity(DATA_CHUNK_BYTES + 8);
    let mut line_start = true;
    for &byte in message {
        if byte == b'.' && line_start {
            chunk.push(b'.');
        }
        chunk.push(byte);
        line_start = byte == b'\r' || byte == b'\n';
        if chunk.len() >= DATA_CHUNK_BYTES {
            write_within(out, &chunk, block_timeout).await?;
            chunk.clear();
        }
    }
    if !message.ends_with(b"\r\n") {
        chunk.extend_from_slice(b"\r\n");
    }
    chunk.extend_from_slice(b".\r\n");
    write_within(out, &chunk, block_timeout).await
}

/// Writes and flushes `bytes`, giving up when the receiver reads nothing for `timeout`.
async fn write_within<W: AsyncWrite + Unpin>(out: &mut W, bytes: &[u8], timeout: Duration) -> Result<(), String> {
    let write = async {
        out.write_all(bytes).await?;
        out.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("connection lost while sending the message: {e}")),
        Err(_) => Err(format!("the receiver stopped reading the message (a block not taken within {timeout:?})")),
    }
}

/// A message's header section: up to the first empty line (all of it when there is none).
fn header_of(message: &[u8]) -> &[u8] {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |at| at + 2);
    &message[..end]
}

/// An address fit to go between `<` and `>` in a command: no control character, no
/// angle bracket (RFC 5321 §4.1.2 forbids them unquoted, and quoting them is never needed).
fn valid_address(address: &str) -> bool {
    !address.chars().any(|c| c.is_control() || c == '<' || c == '>')
}

/// The remaining recipients of a transaction cut short are deferred with `why`.
fn finish(outcomes: Vec<Option<Outcome>>, why: &str) -> Vec<Outcome> {
    outcomes.into_iter().map(|o| o.unwrap_or_else(|| Outcome::Deferred { reply: why.to_string() })).collect()
}

/// A refusal's outcome: 5xx is final, anything else is tried again.
fn refused(reply: &Response<String>) -> Outcome {
    let reply_text = reply_text(reply);
    if (500..600).contains(&reply.code) {
        Outcome::Failed { reply: reply_text }
    } else {
        Outcome::Deferred { reply: reply_text }
    }
}

/// A 421 means the server is closing the connection (RFC 5321 §3.8).
fn closing(reply: &Response<String>, label: &str, during: &str) -> Option<String> {
    (reply.code == 421).then(|| format!("{} ({during} at {label})", reply_text(reply)))
}

/// A reply as one line, `code x.y.z text`; when the server gave no enhanced status code,
/// the class's generic one (RFC 3463 `X.0.0`), so that DSNs always have one. The text is
/// bounded by smtp-proto (4 KiB); control characters become spaces.
fn reply_text(reply: &Response<String>) -> String {
    let [class, subject, detail] = reply.esc;
    let status = if class == 0 { format!("{}.0.0", reply.code / 100) } else { format!("{class}.{subject}.{detail}") };
    let text: String = reply.message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    format!("{} {status} {}", reply.code, text.trim())
}

/// The deferral text for a connection lost around `during`; `ended` when the server
/// closed it (mail-send reports an end of stream as an unparseable reply).
fn broken(label: &str, during: &str, error: mail_send::Error, ended: bool) -> String {
    match error {
        _ if ended => format!("451 4.4.2 {label}: connection closed by the server at {during}"),
        mail_send::Error::Timeout => format!("451 4.4.2 {label}: no reply to {during} in time"),
        mail_send::Error::Io(e) => format!("451 4.4.2 {label}: connection lost at {during}: {e}"),
        mail_send::Error::UnparseableReply => {
            format!("451 4.4.2 {label}: unreadable reply to {during} (malformed, or over 4 KiB)")
        }
        mail_send::Error::UnexpectedReply(reply) => format!("{} ({during} at {label})", reply_text(&reply)),
        other => format!("451 4.4.2 {label}: {during}: {other}"),
    }
}

/// A stream that remembers whether the server ended it, and bounds what the server sends
/// between two writes of ours ([`OutboundOptions::replies_bytes_max`]). smtp-proto's reply
/// parser bounds a reply to 4 KiB only for long lines: past that bound it still keeps two
/// bytes of every continuation line `250-x`, so an endless multi-line reply would grow the
/// client's memory with it (100,000 such lines, 700 KB, were held whole). Past the bound
/// the read fails and the delivery is deferred.
struct Watched<S> {
    inner: S,
    ended: bool,
    /// Bytes read since our last write, and their bound.
    read_since_write: usize,
    read_max: usize,
}

impl<S> Watched<S> {
    fn new(inner: S, read_max: usize) -> Watched<S> {
        Watched { inner, ended: false, read_since_write: 0, read_max }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.read_since_write >= this.read_max {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the server sent over {} bytes without a command between (outbound.replies_bytes_max)",
                    this.read_max
                ),
            )));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) {
            let read = buf.filled().len() - before;
            this.read_since_write += read;
            if read == 0 && buf.remaining() > 0 {
                this.ended = true;
            }
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, bytes);
        if matches!(res, Poll::Ready(Ok(written)) if written > 0) {
            this.read_since_write = 0;
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

mod tls;

pub use tls::{Failure, TlsContext, TlsUsed};

#[cfg(test)]
mod tests;

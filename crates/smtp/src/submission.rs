//! Submission (RFC 6409) on 587 with STARTTLS and 465 with implicit TLS (RFC 8314): the
//! pipeline through which the commune's agents send mail.
//!
//! - `AUTH PLAIN` and `LOGIN` over TLS only (the session refuses them in clear, `538`),
//!   checked by [`Directory::login`] with the shared authentication limiter: a wrong
//!   password is `535 5.7.8`, a client or account the limiter refuses `454 4.7.0`.
//! - Nothing without authentication: `MAIL` before `AUTH` is `530 5.7.0`. Never a relay
//!   for anyone else.
//! - The envelope sender and every `From:` address must be the account's own address or
//!   one it may send as ([`hameau_directory::Account::may_send_as`]); otherwise
//!   `550 5.7.1`, with the address in the text. The null sender is refused.
//! - The header must be well formed before it is signed (`authors`): 8-bit bytes only
//!   with `SMTPUTF8` (`554 5.6.7` otherwise), exactly one `From:` holding addresses only,
//!   at most one `Sender:`, and one when `From:` names several authors (`554 5.6.0`).
//!   A `Sender:` must be the account's too.
//! - `Date` and `Message-ID` are added when missing; `Received` names the authenticated
//!   submission without the client's address unless [`SubmissionOptions::received_client_ip`].
//! - The message is DKIM-signed with every key of the `From:` domain (Ed25519 and RSA,
//!   relaxed/relaxed, the fields that matter oversigned), then queued for all its
//!   recipients in one synced commit ([`Queue::enqueue`]): the `250` comes after it. The
//!   delivery worker delivers local recipients through the mail model and the others
//!   over SMTP.

use std::net::SocketAddr;
use std::sync::Arc;

use hameau_directory::{Account, Directory};
use hameau_queue::{NewMessage, Queue};
use hameau_smtp_session::header::Fields;
use hameau_smtp_session::{Credentials, Decision, MailParams, Mechanism, Reply};

use hameau_telemetry::{Counter, Registry};

use crate::brakes::{SendingLimiter, SendingLimits, Tripped};
use crate::pipeline::{Message, Pipeline};

/// The `[submission]` section: the listeners agents send through. Sessions take the
/// limits of `[smtp]` (the same protocol and the same bounds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Addresses with STARTTLS required before AUTH (port 587, RFC 6409); `[]` disables.
    pub listen: Vec<SocketAddr>,
    /// Addresses with TLS from the first byte (port 465, RFC 8314, which clients prefer);
    /// `[]` disables.
    pub listen_tls: Vec<SocketAddr>,
    /// Most submission connections at once; past it, accepting waits. A commune's agents
    /// hold a connection only while sending: 1,024 is far above their need.
    pub connections_max: usize,
    /// Most connections from one client address; past it, `421`. A town hall's agents
    /// share one public address: 50 lets all of them send at once.
    pub connections_per_ip_max: usize,
    /// Whether `Received` shows the client's IP address. Off: an agent sending from home
    /// does not publish their address to every recipient (as Gmail and Outlook.com do).
    pub received_client_ip: bool,
    /// Messages one account may send per hour before it is braked (its mail held, new
    /// mail refused with `451 4.7.1` until the operator lifts the brake). A town-hall agent
    /// sends tens a day; 200 an hour leaves room for a busy morning, while a phished
    /// account sends thousands.
    pub account_messages_per_hour_max: u32,
    /// Distinct recipients one account may send to per hour: 500 holds a newsletter to
    /// the commune's associations, not a spam run.
    pub account_recipients_per_hour_max: u32,
    /// Messages all the accounts of one tenant may send per hour: 1,000.
    pub tenant_messages_per_hour_max: u32,
    /// Distinct recipients of all the accounts of one tenant per hour: 2,000.
    pub tenant_recipients_per_hour_max: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: vec!["[::]:587".parse().expect("valid address")],
            listen_tls: vec!["[::]:465".parse().expect("valid address")],
            connections_max: 1024,
            connections_per_ip_max: 50,
            received_client_ip: false,
            account_messages_per_hour_max: 200,
            account_recipients_per_hour_max: 500,
            tenant_messages_per_hour_max: 1000,
            tenant_recipients_per_hour_max: 2000,
        }
    }
}

impl Options {
    /// Ranges, each naming its `[submission]` key.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::range;
        range("submission", "listen", self.listen.len() as u64, 0, 64)?;
        range("submission", "listen_tls", self.listen_tls.len() as u64, 0, 64)?;
        range("submission", "connections_max", self.connections_max as u64, 1, 1_000_000)?;
        range("submission", "connections_per_ip_max", self.connections_per_ip_max as u64, 1, 100_000)?;
        for (key, value) in [
            ("account_messages_per_hour_max", self.account_messages_per_hour_max),
            ("account_recipients_per_hour_max", self.account_recipients_per_hour_max),
            ("tenant_messages_per_hour_max", self.tenant_messages_per_hour_max),
            ("tenant_recipients_per_hour_max", self.tenant_recipients_per_hour_max),
        ] {
            range("submission", key, u64::from(value), 1, 100_000_000)?;
        }
        Ok(())
    }

    /// The sending limits of the brakes.
    pub fn sending_limits(&self) -> SendingLimits {
        SendingLimits {
            account_messages_per_hour_max: self.account_messages_per_hour_max,
            account_recipients_per_hour_max: self.account_recipients_per_hour_max,
            tenant_messages_per_hour_max: self.tenant_messages_per_hour_max,
            tenant_recipients_per_hour_max: self.tenant_recipients_per_hour_max,
        }
    }

    /// The connection limits shared by the submission listeners.
    pub fn gate(&self) -> Arc<hameau_net::Gate> {
        hameau_net::Gate::new(self.connections_max, self.connections_per_ip_max)
    }

    /// The pipeline's options.
    pub fn pipeline(&self, hostname: &str) -> SubmissionOptions {
        SubmissionOptions {
            hostname: hostname.to_string(),
            received_client_ip: self.received_client_ip,
            sending_limits: self.sending_limits(),
        }
    }
}

/// What submission needs to know beyond its collaborators.
#[derive(Clone, Debug)]
pub struct SubmissionOptions {
    /// This server's name (`Received`, `Message-ID`).
    pub hostname: String,
    /// Whether `Received` shows the client's IP address. Off by default: an agent sending
    /// from home does not publish their address to every recipient (as Gmail and
    /// Outlook.com do).
    pub received_client_ip: bool,
    /// The brakes' limits.
    pub sending_limits: SendingLimits,
}

/// The submission pipeline. Clones share the sending limits' counts: SMTP submission and
/// JMAP's EmailSubmission count against one budget per account and tenant.
#[derive(Clone)]
pub struct Submission {
    directory: Directory,
    queue: Queue,
    options: SubmissionOptions,
    now_s: Arc<dyn Fn() -> u64 + Send + Sync>,
    limiter: Arc<SendingLimiter>,
    /// Brakes put on (`/metrics`).
    brakes: Counter,
    /// Where the recipients of what agents send become the tenant's correspondents.
    contacts: Option<hameau_filter::Contacts>,
}

/// One submission connection.
pub struct SubmissionSession {
    peer: SocketAddr,
    helo: String,
    account: Option<Account>,
}

const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

impl Submission {
    pub fn new(
        directory: Directory,
        queue: Queue,
        options: SubmissionOptions,
        now_s: Arc<dyn Fn() -> u64 + Send + Sync>,
        registry: &Registry,
    ) -> Submission {
        let limiter = Arc::new(SendingLimiter::new(options.sending_limits));
        let brakes =
            registry.counter("hameau_sending_brakes_total", "Accounts or tenants braked for sending too much.", &[]);
        Submission { directory, queue, options, now_s, limiter, brakes, contacts: None }
    }

    /// Submission that records each message's recipients as correspondents of the
    /// sender's tenant (the filter's first contact and known domains).
    pub fn with_contacts(mut self, contacts: hameau_filter::Contacts) -> Submission {
        self.contacts = Some(contacts);
        self
    }

    /// The brake that stops `account`, as the refusal to give; `None` when it may send.
    async fn braked(&self, account: &Account) -> Option<Refused> {
        match self.queue.brake_of(&account.tenant, account.id).await {
            Ok(None) => None,
            Ok(Some(brake)) => Some(Refused {
                kind: RefusedKind::Braked,
                reply: Reply::new(
                    451,
                    "4.7.1",
                    format!(
                        "sending is stopped ({}); your administrator has been told / l'envoi est suspendu, votre administrateur est prévenu",
                        brake.reason
                    ),
                ),
            }),
            Err(e) => {
                tracing::error!(account = %account.address, error = %e, "submission: cannot read the sending brakes");
                Some(Refused {
                    kind: RefusedKind::Temporary,
                    reply: Reply::new(451, "4.3.0", "local error, try again later"),
                })
            }
        }
    }

    /// Puts the brake `tripped` on for `account`: its queued mail (or its tenant's) held,
    /// the operator and the tenant's admin told (log, metric, the brake listed by the API).
    async fn brake(&self, account: &Account, tripped: Tripped, now: u64) -> Reply {
        let brake = hameau_queue::Brake {
            tenant: account.tenant.clone(),
            account: (!tripped.tenant_wide).then_some(account.id),
            address: (!tripped.tenant_wide).then(|| account.address.clone()),
            reason: tripped.reason.clone(),
            since: now,
        };
        match self.queue.brake(&brake, now).await {
            Ok(held) => {
                self.brakes.inc();
                tracing::warn!(
                    account = %account.address, tenant = %account.tenant, tenant_wide = tripped.tenant_wide,
                    reason = %tripped.reason, held, "submission: sending braked (a hijacked account?)"
                );
            }
            Err(e) => {
                tracing::error!(account = %account.address, error = %e, "submission: the brake could not be recorded")
            }
        }
        Reply::new(
            451,
            "4.7.1",
            format!(
                "{}; mail is held until your administrator releases it / l'envoi est suspendu jusqu'à ce que votre administrateur le rétablisse",
                tripped.reason
            ),
        )
    }

    /// The message as queued: `Received`, then `Date` and `Message-ID` if missing, then the
    /// message without any `X-Hameau-Filter` (only the MX writes one: a colleague's forged
    /// verdict is not shown to its local recipients); signed.
    fn prepare(&self, account: &Account, message: &Submitted<'_>) -> Vec<u8> {
        let (mut has_date, mut has_id) = (false, false);
        for field in Fields::new(message.data) {
            has_date |= field.is("Date");
            has_id |= field.is("Message-ID");
        }
        let date = mail_parser::DateTime::from_timestamp(message.received_at as i64).to_rfc822();
        let hostname = &self.options.hostname;
        let mut out = Vec::with_capacity(message.data.len() + 2048);
        out.extend_from_slice(
            format!(
                "Received: from {}\r\n\tby {hostname} (Hameau) with {} id {}\r\n\t(authenticated sender {});\r\n\t{date}\r\n",
                message.received_from, message.protocol, message.id, account.address
            )
            .as_bytes(),
        );
        if !has_date {
            out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
        }
        if !has_id {
            out.extend_from_slice(format!("Message-ID: <{}@{hostname}>\r\n", message.id).as_bytes());
        }
        let without_verdicts = crate::inbound::strip_filter_headers(message.data);
        out.extend_from_slice(without_verdicts.as_deref().unwrap_or(message.data));
        out
    }

    /// The DKIM signatures of `domain`'s keys over `message`, as header fields to put first.
    async fn sign(&self, domain: &str, message: &[u8]) -> Result<Vec<u8>, Reply> {
        crate::signing::dkim_fields(&self.directory, domain, message).await.map_err(|e| {
            tracing::error!(domain, error = %e, "submission: DKIM signing failed");
            Reply::new(451, "4.3.0", "local error (signing), try again later")
        })
    }
}

/// Whether `account` may use `address` as its sender (envelope or `From:`).
fn may_send_as(account: &Account, address: &str) -> bool {
    address.eq_ignore_ascii_case(&account.address)
        || account.may_send_as.iter().any(|a| a.eq_ignore_ascii_case(address))
}

/// Who a message says wrote and sent it: the addresses of its `From:` field and of its
/// `Sender:` field, each well formed.
#[derive(Debug, PartialEq, Eq)]
struct Authors {
    from: Vec<String>,
    sender: Option<String>,
}

/// Checks the header section of a submitted message and gives its [`Authors`], or the
/// refusal, before anything is signed or queued:
///
/// - 8-bit bytes only with `SMTPUTF8` (RFC 6532 §3, RFC 6531 §3.1): without it, `554
///   5.6.7` telling the client to encode the field (RFC 2047), as mail programs do for
///   names and subjects (Thunderbird, Outlook). A receiver that did not agree to UTF-8
///   headers may mangle or refuse them, and the queue cannot downgrade them. With it, the
///   header must be UTF-8 (`554 5.6.0`).
/// - Exactly one `From:` field and at most one `Sender:` field (RFC 5322 §3.6): with two
///   `From:` fields, a mail program shows one and the ownership check might see the
///   other, so a second one is refused (`554 5.6.0`) rather than chosen.
/// - Every entry of `From:` (and `Sender:`) an address (`554 5.6.0`); several authors
///   need a `Sender:` field naming the one who sends (RFC 5322 §3.6.2).
///
/// The texts never quote the client's bytes, which may hold anything.
fn authors(data: &[u8], smtputf8: bool) -> Result<Authors, Reply> {
    let malformed = |text: String| Reply::new(554, "5.6.0", text);
    let mut fields = Fields::new(data);
    let (mut n_from, mut n_sender) = (0, 0);
    for field in fields.by_ref() {
        n_from += usize::from(field.is("From"));
        n_sender += usize::from(field.is("Sender"));
    }
    let header = &data[..fields.body_start().unwrap_or(data.len())];
    if !header.is_ascii() {
        if !smtputf8 {
            return Err(Reply::new(
                554,
                "5.6.7",
                "a header field holds 8-bit characters but MAIL FROM has no SMTPUTF8: \
                 encode the field (RFC 2047) or send with SMTPUTF8 (RFC 6532)",
            ));
        }
        if std::str::from_utf8(header).is_err() {
            return Err(malformed("the header is not valid UTF-8 (RFC 6532 §3.2)".into()));
        }
    }
    match (n_from, n_sender) {
        (0, _) => return Err(malformed("the message has no From field (RFC 5322 §3.6)".into())),
        (2.., _) => return Err(malformed(format!("the message has {n_from} From fields, RFC 5322 §3.6 allows one"))),
        (_, 2..) => {
            return Err(malformed(format!("the message has {n_sender} Sender fields, RFC 5322 §3.6 allows one")));
        }
        _ => {}
    }
    let Some(parsed) = mail_parser::MessageParser::new().parse_headers(header) else {
        return Err(malformed("the header cannot be read (RFC 5322 §2.2)".into()));
    };
    let from = addresses(parsed.from(), "From")?;
    let sender = match n_sender {
        0 => None,
        _ => match addresses(parsed.sender(), "Sender")?.as_slice() {
            [one] => Some(one.clone()),
            _ => return Err(malformed("the Sender field must hold one address (RFC 5322 §3.6.2)".into())),
        },
    };
    if from.len() > 1 && sender.is_none() {
        return Err(malformed(format!(
            "the From field names {} authors: a Sender field must name the one who sends (RFC 5322 §3.6.2)",
            from.len()
        )));
    }
    Ok(Authors { from, sender })
}

/// The addresses of a parsed `From:` or `Sender:` field (its groups' members too): at
/// least one, each well formed, or the refusal naming the field.
fn addresses(field: Option<&mail_parser::Address<'_>>, name: &str) -> Result<Vec<String>, Reply> {
    let mut found = Vec::new();
    for entry in field.into_iter().flat_map(|field| field.iter()) {
        match entry.address() {
            Some(address) if well_formed(address) => found.push(address.to_owned()),
            _ => {
                return Err(Reply::new(
                    554,
                    "5.6.0",
                    format!("the {name} field holds something that is not an address (RFC 5322 §3.4)"),
                ));
            }
        }
    }
    if found.is_empty() {
        return Err(Reply::new(554, "5.6.0", format!("the {name} field holds no address (RFC 5322 §3.6.2)")));
    }
    Ok(found)
}

/// `local@domain` with both parts present, nothing a reply or a command could not carry
/// (control characters, white space, angle brackets), and a domain of dot-separated
/// labels or an address literal: what the parser makes of a field that is not an address
/// fails this.
fn well_formed(address: &str) -> bool {
    let Some((local, domain)) = address.rsplit_once('@') else { return false };
    let label_ok = |label: &str| {
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
    };
    let domain_ok =
        (domain.starts_with('[') && domain.ends_with(']') && domain.len() > 2) || domain.split('.').all(label_ok);
    !local.is_empty()
        && domain_ok
        && !address.chars().any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
}

impl Pipeline for Submission {
    type Session = SubmissionSession;

    fn auth_mechanisms(&self) -> &[Mechanism] {
        &MECHANISMS
    }

    fn session(&self, peer: SocketAddr) -> SubmissionSession {
        SubmissionSession { peer, helo: String::new(), account: None }
    }

    async fn helo(&self, session: &mut SubmissionSession, host: &str) -> Decision {
        session.helo = host.to_owned();
        Decision::Accept
    }

    async fn auth(&self, session: &mut SubmissionSession, credentials: Credentials) -> Decision {
        // RFC 4616 §2: acting as another identity is the server's to allow: not here.
        if credentials.authzid.as_deref().is_some_and(|authzid| !authzid.eq_ignore_ascii_case(&credentials.username)) {
            return Decision::Reject(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
        }
        let now = (self.now_s)();
        match self.directory.login(session.peer.ip(), &credentials.username, &credentials.password, now).await {
            Ok(account) => {
                tracing::info!(peer = %session.peer, account = %account.address, "submission: authenticated");
                session.account = Some(account);
                Decision::Accept
            }
            Err(hameau_directory::Error::Refused { retry_after_s }) => Decision::Reject(Reply::new(
                454,
                "4.7.0",
                format!("Too many failed attempts, try again in {retry_after_s} s"),
            )),
            Err(hameau_directory::Error::Unauthenticated) => {
                Decision::Reject(Reply::new(535, "5.7.8", "Authentication credentials invalid"))
            }
            Err(e) => {
                tracing::error!(peer = %session.peer, error = %e, "submission: login failed");
                Decision::Reject(Reply::new(454, "4.7.0", "Temporary authentication failure"))
            }
        }
    }

    async fn mail_from(&self, session: &mut SubmissionSession, address: &str, _params: &MailParams) -> Decision {
        let Some(account) = &session.account else {
            return Decision::Reject(Reply::new(530, "5.7.0", "Authentication required"));
        };
        if !may_send_as(account, address) {
            return Decision::Reject(Reply::new(
                550,
                "5.7.1",
                format!("{} may not send as <{address}>", account.address),
            ));
        }
        match self.braked(account).await {
            Some(refused) => Decision::Reject(refused.reply),
            None => Decision::Accept,
        }
    }

    async fn rcpt_to(&self, session: &mut SubmissionSession, _address: &str) -> Decision {
        // The session allows RCPT only after an accepted MAIL, which needs an account;
        // kept for a pipeline called out of order.
        match session.account {
            Some(_) => Decision::Accept,
            None => Decision::Reject(Reply::new(530, "5.7.0", "Authentication required")),
        }
    }

    async fn message(&self, session: &mut SubmissionSession, message: Message<'_>) -> Reply {
        let Some(account) = session.account.as_ref() else {
            return Reply::new(530, "5.7.0", "Authentication required");
        };
        let received_from = match self.options.received_client_ip {
            true => format!("{} ([{}])", session.helo, session.peer.ip()),
            false => session.helo.clone(),
        };
        let submitted = Submitted {
            mail_from: message.mail_from,
            recipients: message.recipients,
            data: message.data,
            smtputf8: message.params.smtputf8,
            received_at: message.received_at,
            id: message.id,
            received_from,
            protocol: if message.tls { "ESMTPSA" } else { "ESMTPA" },
        };
        match self.submit(account, submitted).await {
            Ok(queued) => Reply::new(250, "2.0.0", format!("queued as {queued}, id {}", message.id)),
            Err(refused) => refused.reply,
        }
    }
}

/// A message an authenticated account hands over to be sent: through SMTP submission, or
/// JMAP's `EmailSubmission` (which names the same checks "as for submission").
pub struct Submitted<'a> {
    /// The envelope sender; the null sender is refused.
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    /// The message as the client wrote it.
    pub data: &'a [u8],
    /// Whether the header may hold UTF-8 (SMTP's `SMTPUTF8`; JMAP messages may).
    pub smtputf8: bool,
    /// Seconds since the Unix epoch.
    pub received_at: u64,
    /// The message's id, for `Received` and the logs.
    pub id: &'a str,
    /// What `Received` says it came from (the client's HELO, its address if configured).
    pub received_from: String,
    /// What `Received` says it came with (`ESMTPSA`, `HTTPS`).
    pub protocol: &'a str,
}

/// Why [`Submission::submit`] refused a message: the SMTP reply, and its kind for a
/// protocol that words refusals otherwise (JMAP's `SetError` types).
#[derive(Clone, Debug)]
pub struct Refused {
    pub kind: RefusedKind,
    pub reply: Reply,
}

/// The kinds of [`Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusedKind {
    /// The envelope sender is not the account's (JMAP `forbiddenMailFrom`).
    MailFrom,
    /// A `From:` or `Sender:` address is not the account's (JMAP `forbiddenFrom`).
    From,
    /// The account or its tenant is braked (JMAP `forbiddenToSend`).
    Braked,
    /// The header is malformed (JMAP `invalidEmail`).
    Malformed,
    /// More recipients than the queue takes (JMAP `tooManyRecipients`).
    TooManyRecipients,
    /// A failure of the server's own: try again later.
    Temporary,
}

impl Submission {
    /// Checks, signs and queues a message of `account`: the envelope sender, `From:` and
    /// `Sender:` the account's own or ones it may send as, the header well formed, the
    /// sending limits (a tripped one brakes the account), then DKIM signatures of the
    /// `From:` domain and one synced commit to the queue. The queue's id, or the refusal.
    pub async fn submit(&self, account: &Account, message: Submitted<'_>) -> Result<String, Refused> {
        let refused = |kind: RefusedKind, reply: Reply| Refused { kind, reply };
        if !may_send_as(account, message.mail_from) {
            let text = format!("{} may not send as <{}>", account.address, message.mail_from);
            return Err(refused(RefusedKind::MailFrom, Reply::new(550, "5.7.1", text)));
        }
        if let Some(braked) = self.braked(account).await {
            return Err(braked);
        }
        let authors =
            authors(message.data, message.smtputf8).map_err(|reply| refused(RefusedKind::Malformed, reply))?;
        let named = authors.from.iter().map(|from| (from, "From")).chain(authors.sender.iter().map(|s| (s, "Sender")));
        for (address, field) in named {
            if !may_send_as(account, address) {
                let text = format!("{} may not send as <{address}> ({field} field)", account.address);
                return Err(refused(RefusedKind::From, Reply::new(550, "5.7.1", text)));
            }
        }
        // `authors` gives at least one From address.
        let first = &authors.from[0];
        let domain = first.rsplit_once('@').map_or("", |(_, domain)| domain).to_ascii_lowercase();
        let prepared = self.prepare(account, &message);
        let signatures = self.sign(&domain, &prepared).await.map_err(|reply| refused(RefusedKind::Temporary, reply))?;
        if let Err(tripped) = self.limiter.count(&account.tenant, account.id, message.recipients, message.received_at) {
            return Err(refused(RefusedKind::Braked, self.brake(account, tripped, message.received_at).await));
        }
        let raw = [signatures, prepared].concat();
        let queued = NewMessage {
            raw: raw.into(),
            mail_from: message.mail_from.to_owned(),
            recipients: message.recipients.to_vec(),
            tenant: Some(account.tenant.clone()),
            account: Some(account.id),
            envelope_id: message.id.to_owned(),
            held: None,
        };
        match self.queue.enqueue(queued, message.received_at).await {
            Ok(id) => {
                // The enqueue wakes the delivery worker (the store notifies the queue's watch).
                if let Some(contacts) = self.contacts.clone() {
                    // Off the reply's path: the message is queued, its recipients become
                    // known a moment later.
                    let (tenant, recipients) = (account.tenant.clone(), message.recipients.to_vec());
                    tokio::spawn(async move { crate::filtering::remember(&contacts, &tenant, &recipients).await });
                }
                Ok(id.to_string())
            }
            Err(hameau_queue::Error::TooManyRecipients { max, .. }) => Err(refused(
                RefusedKind::TooManyRecipients,
                Reply::new(552, "5.5.3", format!("too many recipients (at most {max})")),
            )),
            Err(e) => {
                tracing::error!(id = %message.id, error = %e, "submission: the message could not be queued");
                Err(refused(RefusedKind::Temporary, Reply::new(451, "4.3.0", "local error, try again later")))
            }
        }
    }
}

#[cfg(test)]
mod tests;

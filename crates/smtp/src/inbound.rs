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
//!   incoming `Authentication-Results` claiming our host name is removed (RFC 8601 §5).
//! - The message is stored for every recipient account in ONE commit
//!   ([`hameau_mailbox::Mail::ingest_many`]): the `250` is given only after it is synced,
//!   and a failure leaves no recipient with a copy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use hameau_directory::{Directory, Recipient};
use hameau_mailbox::{Ingest, Mail, MailboxNames, Role};
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator};

/// An SMTP reply: code, enhanced status code (RFC 3463), text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

impl Reply {
    fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Reply {
        Reply { code, enhanced, text: text.into() }
    }

    pub fn is_success(&self) -> bool {
        self.code < 400
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// What to do with a RCPT TO.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    Accept(Box<Recipient>),
    Refuse(Reply),
}

#[derive(Clone, Debug)]
pub struct InboundOptions {
    /// Our host name: `Received` and `Authentication-Results` name it.
    pub hostname: String,
    pub mailbox_names: MailboxNames,
    /// Forwarders (mailing lists, a commune's old provider) whose ARC seal (RFC 8617) is
    /// trusted to override a DMARC failure: a message they forwarded and sealed with a
    /// valid chain is delivered though forwarding broke its DKIM and SPF alignment.
    /// Lower-case domain names; empty trusts none (a seal anyone can make proves nothing).
    pub arc_trusted_sealers: Vec<String>,
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

/// The MX's decisions and delivery.
pub struct Inbound {
    directory: Directory,
    mail: Mail,
    authenticator: MessageAuthenticator,
    options: InboundOptions,
}

impl Inbound {
    pub fn new(
        directory: Directory,
        mail: Mail,
        authenticator: MessageAuthenticator,
        options: InboundOptions,
    ) -> Inbound {
        Inbound { directory, mail, authenticator, options }
    }

    /// The verdict on `RCPT TO:<address>` from an unauthenticated client.
    pub async fn check_recipient(&self, address: &str) -> RcptVerdict {
        let Some((_, domain)) = address.rsplit_once('@') else {
            return RcptVerdict::Refuse(Reply::new(550, "5.1.3", "that is not an address"));
        };
        match self.directory.is_local_domain(domain).await {
            Ok(true) => {}
            Ok(false) => return RcptVerdict::Refuse(Reply::new(554, "5.7.1", "relay access denied")),
            Err(e) => return RcptVerdict::Refuse(temporary(&e)),
        }
        let recipient = match self.directory.resolve_recipient(address).await {
            Ok(Some(recipient)) => recipient,
            Ok(None) => return RcptVerdict::Refuse(Reply::new(550, "5.1.1", "no such user here")),
            Err(e) => return RcptVerdict::Refuse(temporary(&e)),
        };
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

    /// Authenticates and stores a message; the reply to give at the end of DATA.
    pub async fn deliver(&self, envelope: &Envelope, raw: &[u8]) -> Reply {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Reply::new(554, "5.6.0", "the message has no valid header");
        };
        let verdict = self.authenticate(envelope, &message).await;
        if let Some(refusal) = verdict.refusal {
            return refusal;
        }
        let stored = self.with_headers(envelope, &verdict.results, raw);
        let mut deliveries = BTreeMap::new();
        for recipient in &envelope.recipients {
            for account in &recipient.accounts {
                deliveries.entry(account.id).or_insert_with(|| (account.quota_bytes, recipient.tenant_quota_bytes));
            }
        }
        let mut batch = Vec::with_capacity(deliveries.len());
        for (account, (quota_bytes, _tenant_quota)) in deliveries {
            let mailboxes =
                match self.mail.ensure_account(account, &self.options.mailbox_names, envelope.received_at).await {
                    Ok(mailboxes) => mailboxes,
                    Err(e) => return temporary(&e),
                };
            let role = if verdict.junk { Role::Junk } else { Role::Inbox };
            let Some(target) = mailboxes.iter().find(|mailbox| mailbox.role == Some(role)) else {
                return Reply::new(451, "4.3.0", "the recipient's mailbox is not available");
            };
            let ingest = Ingest {
                raw: stored.clone(),
                mailboxes: vec![target.id],
                keywords: if verdict.junk { vec!["$junk".into()] } else { Vec::new() },
                received_at: envelope.received_at,
                quota_bytes,
            };
            batch.push((account, ingest));
        }
        match self.mail.ingest_many(batch).await {
            Ok(_) => Reply::new(250, "2.0.0", format!("message accepted, id {}", envelope.id)),
            Err(hameau_mailbox::Error::OverQuota { .. }) => Reply::new(452, "4.2.2", "mailbox full, try again later"),
            Err(e) => temporary(&e),
        }
    }

    async fn authenticate(&self, envelope: &Envelope, message: &AuthenticatedMessage<'_>) -> Verdict {
        let hostname = self.options.hostname.as_str();
        let ip = envelope.client_ip;
        let helo = envelope.helo.as_str();
        let dkim = self.authenticator.verify_dkim(message).await;
        let arc = self.authenticator.verify_arc(message).await;
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
        // Enforced only on a definite failure: a temporary DNS error is not a forgery.
        let mut failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        if failed && let Some(sealer) = self.trusted_arc_sealer(&arc) {
            // RFC 8617 §7.2.1: a receiver may let a valid chain from a forwarder it trusts
            // override the DMARC failure; the results say so (RFC 7489 §7.3's
            // `trusted_forwarder`).
            results.push_str(&format!(" (overridden: ARC chain sealed by trusted forwarder {sealer})"));
            failed = false;
        }
        let (refusal, junk) = match (failed, dmarc.policy()) {
            (true, Policy::Reject) => (
                Some(Reply::new(550, "5.7.1", format!("DMARC policy of {} rejects this message", dmarc.domain()))),
                false,
            ),
            (true, Policy::Quarantine) => (None, true),
            _ => (None, false),
        };
        Verdict { results, refusal, junk }
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

    /// The message as stored: `Received` and `Authentication-Results` first, then the
    /// message without any `Authentication-Results` that claims to be ours.
    fn with_headers(&self, envelope: &Envelope, results: &str, raw: &[u8]) -> Vec<u8> {
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
        out.extend_from_slice(&strip_our_results(raw, hostname));
        out
    }
}

struct Verdict {
    results: String,
    refusal: Option<Reply>,
    junk: bool,
}

fn temporary(error: &dyn std::fmt::Display) -> Reply {
    tracing::error!(error = %error, "delivery failed");
    Reply::new(451, "4.3.0", "local error, try again later")
}

/// Removes, from the header section only, every `Authentication-Results` field whose
/// authserv-id is `hostname` (RFC 8601 §5: a forged one could make us vouch for it).
pub fn strip_our_results(raw: &[u8], hostname: &str) -> Vec<u8> {
    let header_end = find(raw, b"\r\n\r\n").map_or(raw.len(), |at| at + 2);
    let (headers, body) = raw.split_at(header_end);
    let mut out = Vec::with_capacity(raw.len());
    let mut skipping = false;
    for line in headers.split_inclusive(|b| *b == b'\n') {
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            skipping = is_our_results(line, hostname);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

fn is_our_results(line: &[u8], hostname: &str) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else { return false };
    if !line[..colon].trim_ascii().eq_ignore_ascii_case(b"authentication-results") {
        return false;
    }
    let value = String::from_utf8_lossy(&line[colon + 1..]);
    let authserv = value.trim_start().split([';', ' ', '\t', '\r', '\n']).next().unwrap_or("");
    authserv.eq_ignore_ascii_case(hostname)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

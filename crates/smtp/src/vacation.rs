//! The vacation responder (RFC 3834, JMAP's `VacationResponse`): after the MX stored a
//! message for an account whose vacation response is on, one answer to its sender per
//! period, queued like any outgoing mail (DKIM-signed with the recipient domain's keys,
//! from the null sender so that it never bounces back).
//!
//! Never answered (RFC 3834 §2): mail from the null sender or from a list or daemon
//! address (`mailer-daemon`, `owner-…`, `…-request`, `noreply`), mail marked automatic
//! (`Auto-Submitted` other than `no`, `X-Auto-Response-Suppress`) or from a list
//! (`List-Id`, `List-Unsubscribe`, `Precedence: bulk|list|junk`), mail filed as junk, and
//! mail whose `To` and `Cc` do not name the recipient (a Bcc or a list's copy).
//!
//! The answer is sent off the SMTP reply's path: the sender's `250` never waits for it.

use std::sync::Arc;

use hameau_directory::Directory;
use hameau_mailbox::{Mail, Vacation};
use hameau_queue::{NewMessage, Queue};
use hameau_smtp_session::header::Fields;

/// Bytes of a message's header read to decide whether to answer and how: the answer's
/// subject and references come from it. 64 KiB, far above real headers.
const HEADER_BYTES_MAX: usize = 64 * 1024;

/// What the responder needs, shared by the MX's sessions.
pub struct Responder {
    pub mail: Mail,
    pub directory: Directory,
    pub queue: Queue,
    /// `smtp.vacation_period_s`.
    pub period_s: u64,
    /// `smtp.vacation_senders_max`.
    pub senders_max: u64,
    pub hostname: String,
}

/// One recipient a message was stored for: the address it was sent to, its tenant, its
/// accounts.
pub struct Stored {
    pub address: String,
    pub tenant: String,
    pub accounts: Vec<u64>,
}

impl Responder {
    /// After `raw` from `mail_from` was stored for `recipients` (not as junk): answers
    /// whom the accounts' vacation responses should, in a task of its own.
    pub fn after_delivery(self: &Arc<Self>, mail_from: &str, raw: &[u8], recipients: Vec<Stored>, now: u64) {
        if !answerable_sender(mail_from) {
            return;
        }
        let header = &raw[..Fields::new(raw).body_start().unwrap_or(raw.len()).min(raw.len())];
        if header.len() > HEADER_BYTES_MAX || automatic(header) {
            return;
        }
        let header = header.to_vec();
        let (responder, sender) = (self.clone(), mail_from.to_string());
        tokio::spawn(async move {
            for recipient in recipients {
                if !names(&header, &recipient.address) {
                    continue;
                }
                for account in &recipient.accounts {
                    match responder
                        .mail
                        .vacation_reply(*account, &sender, now, responder.period_s, responder.senders_max)
                        .await
                    {
                        Ok(Some(vacation)) => {
                            responder.answer(&recipient, *account, &sender, &header, &vacation, now).await
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(account, error = %e, "vacation: cannot read the response"),
                    }
                }
            }
        });
    }

    async fn answer(
        &self,
        recipient: &Stored,
        account: u64,
        sender: &str,
        header: &[u8],
        vacation: &Vacation,
        now: u64,
    ) {
        let message = reply(&self.hostname, &recipient.address, sender, header, vacation, now);
        let domain = recipient.address.rsplit_once('@').map_or("", |(_, domain)| domain).to_ascii_lowercase();
        let signatures = match crate::signing::dkim_fields(&self.directory, &domain, &message).await {
            Ok(signatures) => signatures,
            Err(e) => {
                tracing::warn!(domain, error = %e, "vacation: signing failed; the answer is not sent");
                return;
            }
        };
        let queued = NewMessage {
            raw: [signatures, message].concat().into(),
            // RFC 3834 §3.3: from the null sender, so that nothing answers it back.
            mail_from: String::new(),
            recipients: vec![sender.to_string()],
            tenant: Some(recipient.tenant.clone()),
            account: Some(account),
            envelope_id: format!("vacation-{account}-{now}"),
            held: None,
        };
        match self.queue.enqueue(queued, now).await {
            Ok(id) => tracing::info!(account, queue = %id, "vacation: answered a sender"),
            Err(e) => tracing::warn!(account, error = %e, "vacation: the answer could not be queued"),
        }
    }
}

/// Whether mail from this envelope sender may be answered (RFC 3834 §2, §3.1.5).
fn answerable_sender(mail_from: &str) -> bool {
    let Some((local, _)) = mail_from.rsplit_once('@') else { return false };
    let local = local.to_ascii_lowercase();
    !(local.is_empty()
        || local == "mailer-daemon"
        || local == "postmaster"
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.starts_with("noreply")
        || local.starts_with("no-reply")
        || local.starts_with("bounce"))
}

/// Whether the header says the message is automatic or from a list.
fn automatic(header: &[u8]) -> bool {
    Fields::new(header).any(|field| {
        let value = String::from_utf8_lossy(field.value).trim().to_ascii_lowercase();
        (field.is("Auto-Submitted") && value != "no")
            || field.is("List-Id")
            || field.is("List-Unsubscribe")
            || field.is("List-Post")
            || field.is("X-Auto-Response-Suppress") && (value.contains("oof") || value.contains("all"))
            || field.is("Precedence") && ["bulk", "list", "junk"].contains(&value.as_str())
    })
}

/// Whether `To` or `Cc` names `address`.
fn names(header: &[u8], address: &str) -> bool {
    let address = address.to_ascii_lowercase();
    Fields::new(header).any(|field| {
        (field.is("To") || field.is("Cc"))
            && String::from_utf8_lossy(field.value).to_ascii_lowercase().contains(&address)
    })
}

/// The first value of a header field, unfolded.
fn field(header: &[u8], name: &str) -> Option<String> {
    Fields::new(header).find(|field| field.is(name)).map(|field| {
        String::from_utf8_lossy(field.value)
            .split(['\r', '\n'])
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ")
            .trim()
            .to_string()
    })
}

/// The answer: from the address the mail was sent to, to the sender, marked
/// `Auto-Submitted: auto-replied`, referring to the message answered.
fn reply(hostname: &str, from: &str, to: &str, header: &[u8], vacation: &Vacation, now: u64) -> Vec<u8> {
    let original_subject = field(header, "Subject").unwrap_or_default();
    let subject = match &vacation.subject {
        Some(subject) if !subject.trim().is_empty() => subject.clone(),
        _ => format!("Réponse automatique / Auto: {original_subject}"),
    };
    let text = match (&vacation.text_body, &vacation.html_body) {
        (Some(text), _) if !text.trim().is_empty() => text.clone(),
        (_, Some(html)) => strip_tags(html),
        _ => "Je suis absent(e) et lirai votre message à mon retour.\r\n\r\nI am away and will read your message when I am back.".into(),
    };
    let mut builder = mail_builder::MessageBuilder::new()
        .from(from.to_string())
        .to(to.to_string())
        .subject(subject)
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-replied"))
        .message_id(format!("vacation.{now}.{}@{hostname}", fnv(to)))
        .date(now as i64)
        .text_body(text);
    if let Some(html) = vacation.html_body.as_ref().filter(|html| !html.trim().is_empty()) {
        builder = builder.html_body(html.clone());
    }
    if let Some(id) = field(header, "Message-ID") {
        let id = id.trim_matches(['<', '>', ' ']).to_string();
        if !id.is_empty() {
            builder = builder.in_reply_to(id.clone()).references(id);
        }
    }
    builder.write_to_vec().unwrap_or_default()
}

/// Text of HTML, tags dropped (for a vacation response given in HTML only).
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// A short stable number of a text, for unique message ids.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash: u64, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::{answerable_sender, automatic, names, reply};

    #[test]
    fn lists_bounces_and_automatic_mail_are_never_answered() {
        for sender in ["", "MAILER-DAEMON@x.test", "owner-liste@x.test", "liste-request@x.test", "noreply@x.test"] {
            assert!(!answerable_sender(sender), "{sender}");
        }
        assert!(answerable_sender("jeanne@x.test"));
        for header in [
            "Auto-Submitted: auto-replied\r\n",
            "List-Id: <conseil.x.test>\r\n",
            "Precedence: bulk\r\n",
            "X-Auto-Response-Suppress: OOF\r\n",
        ] {
            assert!(automatic(header.as_bytes()), "{header}");
        }
        assert!(!automatic(b"Auto-Submitted: no\r\nSubject: x\r\n"));
        assert!(names(b"To: Accueil <Accueil@Mairie.test>\r\n", "accueil@mairie.test"));
        assert!(!names(b"To: autre@mairie.test\r\nBcc: accueil@mairie.test\r\n", "accueil@mairie.test"));
    }

    #[test]
    fn the_answer_refers_to_the_message_and_is_marked_automatic() {
        let vacation = hameau_mailbox::Vacation { enabled: true, ..Default::default() };
        let header = b"Subject: Permis\r\nMessage-ID: <42@x.test>\r\n";
        let answer =
            String::from_utf8(reply("mx.test", "accueil@mairie.test", "jeanne@x.test", header, &vacation, 1_000))
                .unwrap();
        assert!(answer.contains("Auto-Submitted: auto-replied"), "{answer}");
        assert!(answer.contains("In-Reply-To: <42@x.test>") && answer.contains("References: <42@x.test>"), "{answer}");
        assert!(answer.contains("Permis") && answer.contains("To: <jeanne@x.test>"), "{answer}");
    }
}

//! Delivery status notifications (RFC 3464): the message that tells a sender that some
//! recipients failed for good, or that delivery is late. A `multipart/report` (RFC 6522)
//! with a human part in French then English, the machine-readable `message/delivery-status`
//! part, and the original message's header section (`text/rfc822-headers`). Built with
//! mail-builder; sent with an empty envelope sender, so that it is never answered by
//! another notification.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

use crate::Recipient;

/// Most bytes of the original header section attached: a header larger than this is cut
/// at a line boundary (the notification stays small whatever the message was).
pub const ORIGINAL_HEADER_BYTES_MAX: usize = 64 * 1024;

/// Longest diagnostic (a receiver's reply) quoted, in characters.
const DIAGNOSTIC_CHARS_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Some recipients failed for good.
    Failed,
    /// Some recipients are not delivered yet; delivery goes on until `retry_until`.
    Delayed { retry_until: u64 },
}

/// What a notification reports.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// This server's name (`Reporting-MTA`, the notification's `From` domain).
    pub hostname: &'a str,
    /// Who is told: the original envelope sender.
    pub to: &'a str,
    pub kind: Kind,
    pub recipients: &'a [Recipient],
    /// The original message (its header section is attached).
    pub original: &'a [u8],
    pub queued_at: u64,
    pub now: u64,
    /// A unique token for the notification's Message-ID (e.g. the queue id and the time).
    pub id: &'a str,
}

/// The notification's bytes.
pub fn build(report: &Report<'_>) -> Vec<u8> {
    let subject = match report.kind {
        Kind::Failed => "Message non distribué / Undelivered mail returned to sender",
        Kind::Delayed { .. } => "Message retardé / Delayed mail (still being retried)",
    };
    let from = format!("MAILER-DAEMON@{}", report.hostname);
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(ContentType::new("text/plain").attribute("charset", "utf-8"), human(report)),
            // 7bit as it is (RFC 3464 §2.1: ASCII fields, CRLF lines well under 998 bytes),
            // not quoted-printable: parsers read the fields as they stand.
            MimePart::new(ContentType::new("message/delivery-status"), status(report).into_bytes())
                .transfer_encoding("7bit"),
            MimePart::new(ContentType::new("text/rfc822-headers"), original_header(report.original)),
        ],
    );
    MessageBuilder::new()
        .from(("Serveur de messagerie / Mail server", from.as_str()))
        .to(report.to)
        .subject(subject)
        .date(Date::new(report.now as i64))
        .message_id(format!("dsn.{}@{}", report.id, report.hostname))
        // RFC 3834 §5: an automatic reply; no vacation responder answers it.
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(body)
        .write_to_vec()
        .expect("writing to a Vec never fails")
}

/// The text for people, French first.
fn human(report: &Report<'_>) -> String {
    let list: String = report
        .recipients
        .iter()
        .map(|recipient| {
            let reply = recipient.last_reply.as_deref().map(diagnostic).unwrap_or_default();
            format!("  <{}>\n      {}\n", recipient.address, reply)
        })
        .collect();
    let queued = Date::new(report.queued_at as i64).to_rfc822();
    match report.kind {
        Kind::Failed => format!(
            "Bonjour,\n\nLe serveur de messagerie {host} n'a pas pu distribuer votre message envoyé le {queued}\n\
             aux destinataires ci-dessous. Il ne réessaiera pas. La raison (la réponse du serveur\n\
             du destinataire, ou ce qui a empêché de le joindre en sécurité) suit chaque adresse.\n\
             Vérifiez l'adresse, ou contactez le destinataire par un autre moyen.\n\n{list}\n\
             Les en-têtes de votre message sont joints.\n\n\
             -- English --\n\n\
             The mail server {host} could not deliver your message sent on {queued}\n\
             to the recipients below, and will not try again. The reason (the recipient's server's\n\
             reply, or what kept it from being reached securely) follows each address. Check the\n\
             address, or reach the recipient another way.\n\n{list}\n\
             The headers of your message are attached.\n",
            host = report.hostname,
        ),
        Kind::Delayed { retry_until } => {
            let until = Date::new(retry_until as i64).to_rfc822();
            format!(
                "Bonjour,\n\nVotre message envoyé le {queued} n'a pas encore pu être distribué aux\n\
                 destinataires ci-dessous. Le serveur {host} continue d'essayer jusqu'au {until} ;\n\
                 vous n'avez rien à faire. Si la distribution échoue définitivement, vous recevrez\n\
                 un autre avis.\n\n{list}\n\
                 -- English --\n\n\
                 Your message sent on {queued} could not be delivered yet to the recipients below.\n\
                 The server {host} keeps trying until {until}; you need not do anything. If delivery\n\
                 fails for good, you will get another notice.\n\n{list}",
                host = report.hostname,
            )
        }
    }
}

/// The `message/delivery-status` part (RFC 3464 §2.2, §2.3).
fn status(report: &Report<'_>) -> String {
    let mut out = format!(
        "Reporting-MTA: dns; {}\r\nArrival-Date: {}\r\n",
        diagnostic(report.hostname),
        Date::new(report.queued_at as i64).to_rfc822()
    );
    for recipient in report.recipients {
        let (action, default_status) = match report.kind {
            Kind::Failed => ("failed", "5.0.0"),
            Kind::Delayed { .. } => ("delayed", "4.0.0"),
        };
        let reply = recipient.last_reply.as_deref().map(diagnostic);
        let status = reply.as_deref().and_then(enhanced_status).unwrap_or(default_status.to_string());
        out.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {status}\r\n",
            diagnostic(&recipient.address)
        ));
        if let Some(reply) = reply.filter(|reply| !reply.is_empty()) {
            // A reply from a server is `smtp`; a local reason (no MX, TLS policy) too, as
            // RFC 3464 §2.3.6 has no better type for it.
            out.push_str(&format!("Diagnostic-Code: smtp; {reply}\r\n"));
        }
        out.push_str(&format!("Last-Attempt-Date: {}\r\n", Date::new(report.now as i64).to_rfc822()));
        if let Kind::Delayed { retry_until } = report.kind {
            out.push_str(&format!("Will-Retry-Until: {}\r\n", Date::new(retry_until as i64).to_rfc822()));
        }
    }
    out
}

/// A reply made safe to quote on one header-like line: printable ASCII, bounded.
fn diagnostic(reply: &str) -> String {
    reply
        .chars()
        .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { ' ' })
        .take(DIAGNOSTIC_CHARS_MAX)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The enhanced status code of a reply (`550 5.1.1 …` → `5.1.1`, RFC 3463).
fn enhanced_status(reply: &str) -> Option<String> {
    let code = reply.split_whitespace().nth(1)?;
    let mut parts = code.split('.');
    let class = parts.next()?;
    let (subject, detail) = (parts.next()?, parts.next()?);
    let number = |part: &str, max_len: usize| {
        !part.is_empty() && part.len() <= max_len && part.bytes().all(|b| b.is_ascii_digit())
    };
    (matches!(class, "2" | "4" | "5") && number(subject, 3) && number(detail, 3) && parts.next().is_none())
        .then(|| code.to_string())
}

/// The original header section, up to [`ORIGINAL_HEADER_BYTES_MAX`], cut at a line end.
fn original_header(original: &[u8]) -> String {
    let end = original.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 2).unwrap_or(original.len());
    let mut header = &original[..end.min(ORIGINAL_HEADER_BYTES_MAX)];
    if end > ORIGINAL_HEADER_BYTES_MAX {
        let cut = header.windows(2).rposition(|w| w == b"\r\n").map_or(0, |at| at + 2);
        header = &header[..cut];
    }
    String::from_utf8_lossy(header).into_owned()
}

#[cfg(test)]
mod tests;

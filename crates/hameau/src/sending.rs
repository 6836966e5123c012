//! JMAP's `EmailSubmission` sends through SMTP submission's pipeline: the same sender
//! checks, DKIM signing, sending limits and brakes, and durable queue
//! ([`hameau_smtp::Submission::submit`]). The crate `hameau-jmap` knows neither SMTP nor
//! the queue: it calls this through its `Submitter` seam.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use hameau_directory::{Directory, Principal};
use hameau_jmap::api::User;
use hameau_jmap::mail::submission::{Envelope, Refusal, Submitter};
use hameau_smtp::{RefusedKind, Submission, Submitted};

/// The submission pipeline as JMAP's submitter.
pub struct JmapSubmitter {
    pub submission: Submission,
    pub directory: Directory,
    /// Numbers the messages of this process for their ids in `Received` and the logs.
    pub sent: AtomicU64,
}

impl Submitter for JmapSubmitter {
    fn submit<'a>(
        &'a self,
        user: &'a User,
        envelope: &'a Envelope,
        raw: &'a [u8],
        now: u64,
    ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + 'a>> {
        Box::pin(async move {
            // Read again: a right to send as an address, or the account itself, withdrawn
            // since the login applies at once.
            let account = match self.directory.get_account(&Principal::Operator, &user.address).await {
                Ok(account) if account.id == user.account && account.enabled => account,
                Ok(_) | Err(hameau_directory::Error::NotFound { .. }) => {
                    return Err(Refusal { kind: "forbiddenToSend", description: "the account may not send".into() });
                }
                Err(e) => {
                    tracing::error!(error = %e, "jmap: reading the sending account");
                    return Err(Refusal {
                        kind: "serverFail",
                        description: "the server failed; try again later".into(),
                    });
                }
            };
            let number = self.sent.fetch_add(1, Ordering::Relaxed);
            let id = format!("J{now:x}.{number}");
            let submitted = Submitted {
                mail_from: &envelope.mail_from,
                recipients: &envelope.rcpt_to,
                data: raw,
                // As SMTP without SMTPUTF8: the queue cannot downgrade 8-bit header fields
                // for a receiver that did not agree to them, so such a header is refused
                // (invalidEmail) with the text saying to encode it.
                smtputf8: false,
                received_at: now,
                id: &id,
                received_from: "JMAP".into(),
                protocol: "HTTPS",
            };
            self.submission.submit(&account, submitted).await.map_err(|refused| Refusal {
                kind: match refused.kind {
                    RefusedKind::MailFrom => "forbiddenMailFrom",
                    RefusedKind::From => "forbiddenFrom",
                    RefusedKind::Braked => "forbiddenToSend",
                    RefusedKind::Malformed => "invalidEmail",
                    RefusedKind::TooManyRecipients => "tooManyRecipients",
                    RefusedKind::Temporary => "serverFail",
                },
                description: refused.reply.to_string(),
            })
        })
    }
}

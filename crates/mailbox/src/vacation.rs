//! An account's vacation response (JMAP's `VacationResponse`, RFC 8621 §8): whether it is
//! on, between which dates, and what it says; and the memory of whom it answered, so that
//! each sender gets one answer per period (RFC 3834 §2: "a responder SHOULD NOT respond
//! to the same sender more than once within a period", 7 days suggested).
//!
//! The MX asks [`Mail::vacation_reply`] after storing a message for an account; deciding
//! whether the message may be answered at all (lists, bounces, automatic mail) is the
//! MX's, which has the header.

use hameau_store::Batch;
use serde::{Deserialize, Serialize};

use crate::{AccountId, Change, ChangeKind, Error, Mail, keys, log_change};

/// The kind of the vacation response in the change log's objects (`Change::objects`).
pub const VACATION_KIND: &str = "vacation";

/// What an account's vacation response is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vacation {
    pub enabled: bool,
    /// Answers from this time on (seconds since the Unix epoch), or from now.
    #[serde(default)]
    pub from: Option<u64>,
    /// Answers until before this time, or until switched off.
    #[serde(default)]
    pub until: Option<u64>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub text_body: Option<String>,
    #[serde(default)]
    pub html_body: Option<String>,
    /// When it was last set: answers remembered from before do not count, so switching it
    /// on again answers everyone once more.
    #[serde(default)]
    pub set_at: u64,
}

impl Vacation {
    /// Whether it answers at `now`.
    pub fn active(&self, now: u64) -> bool {
        self.enabled && self.from.is_none_or(|from| now >= from) && self.until.is_none_or(|until| now < until)
    }
}

/// One sender this period: answered at that time.
#[derive(Serialize, Deserialize)]
struct Answered {
    at: u64,
}

/// The vacation response in its record (off without one).
fn stored(entry: Option<&hameau_store::Entry>) -> Result<Vacation, Error> {
    match entry {
        Some(entry) => crate::decode(&entry.key, &entry.value),
        None => Ok(Vacation::default()),
    }
}

impl Mail {
    /// The account's vacation response (off if never set).
    pub async fn vacation(&self, account: AccountId) -> Result<Vacation, Error> {
        stored(self.at(account).await?.get(&keys::vacation(account)).await?.as_ref())
    }

    /// Sets the account's vacation response, in the change log (kind [`VACATION_KIND`]).
    pub async fn set_vacation(&self, account: AccountId, vacation: &Vacation) -> Result<u64, Error> {
        let mut batch = Batch::new();
        batch.set(&keys::vacation(account), &crate::encode(vacation));
        crate::settings_changed(&mut batch);
        let modseq = batch.add(&keys::modseq(account), 1);
        let mut change = Change::new(vec![], vec![], vec![], vec![]);
        change.objects = vec![(VACATION_KIND.to_string(), 0, ChangeKind::Updated)];
        log_change(&mut batch, account, modseq, &change);
        let committed = self.at(account).await?.commit(batch).await?;
        Ok(committed.counters[modseq.index()] as u64)
    }

    /// The vacation response to send `sender` now, if the account's is active and has not
    /// answered that sender within `period_s`; the answer is then remembered. At most
    /// `senders_max` senders are remembered per account: past them, new senders are not
    /// answered (a flood of forged senders cannot make the account a source of
    /// backscatter without bound).
    pub async fn vacation_reply(
        &self,
        account: AccountId,
        sender: &str,
        now: u64,
        period_s: u64,
        senders_max: u64,
    ) -> Result<Option<Vacation>, Error> {
        // Through the deliveries' cache: every delivery asks, few accounts have one.
        let vacation = stored(self.delivery_read(account, crate::delivery_cache::Read::Vacation).await?.first())?;
        if !vacation.active(now) {
            return Ok(None);
        }
        let sender = sender.to_ascii_lowercase();
        let key = keys::vacation_sender(account, &sender);
        let known = self.at(account).await?.get(&key).await?;
        let mut batch = Batch::new();
        match &known {
            Some(entry) => {
                let answered: Answered = crate::decode(&entry.key, &entry.value)?;
                if answered.at >= vacation.set_at && now < answered.at.saturating_add(period_s) {
                    return Ok(None);
                }
                batch.expect_version(&key, entry.version);
            }
            None => {
                batch.expect_absent(&key);
                let max = i64::try_from(senders_max).unwrap_or(i64::MAX);
                batch.add_at_most(&keys::vacation_senders(account), 1, max);
            }
        }
        batch.set(&key, &crate::encode(&Answered { at: now }));
        match self.at(account).await?.commit(batch).await {
            Ok(_) => Ok(Some(vacation)),
            // Another delivery answered the same sender at the same moment, or the
            // memory is full: no answer from this one.
            Err(hameau_store::Error::Conflict { .. } | hameau_store::Error::CounterBound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

//! The seam through which an agent's judgement teaches the spam filter: moving a message
//! into the Junk mailbox (or flagging it `$Junk`) says "spam", moving it out of Junk into a
//! mailbox other than Trash (or flagging it `$NotJunk`) says "ham" (issue 14, scope 9).
//!
//! The mail model knows the roles, so it is the one that tells; it does not know who
//! listens (the filter, wired by the binary), and the listener must not delay or fail the
//! operation: [`JunkLearner::learn`] returns at once, the listener does its work later.
//! IMAP calls the operations that tell ([`crate::Mail::copy`], [`crate::Mail::move_messages`],
//! [`crate::Mail::store_keywords`]); JMAP's `Email/set` will call the same ones.

use hameau_store::BlobHash;

use crate::{AccountId, EmailId, Keyword, KeywordOp, Role};

/// One message an agent judged, after the commit that recorded the judgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub account: AccountId,
    pub email: EmailId,
    /// The message's content (its blob may be gone when the learner reads it, if the
    /// message was destroyed meanwhile: the learner then learns nothing).
    pub blob: BlobHash,
    /// The tenant the email's usage counts under, when the email's record says it (mail
    /// delivered by the MX or appended over IMAP); `None`: ask the directory.
    pub tenant: Option<String>,
    /// Spam (into Junk, `$Junk`) or ham (out of Junk, `$NotJunk`).
    pub spam: bool,
}

/// Who learns from the agents' judgements (the filter's classifier). Registered with
/// [`crate::Mail::with_junk_learner`].
pub trait JunkLearner: Send + Sync + std::fmt::Debug {
    /// Takes one judgement; returns at once (the work is queued or spawned, and dropped
    /// with a log line rather than wait), and never fails the caller.
    fn learn(&self, judgement: Judgement);
}

/// What moving messages from a mailbox of role `from` to one of role `to` says: spam into
/// Junk (from anywhere else), ham out of Junk into anything but Trash (deleting is no
/// judgement), nothing otherwise.
pub(crate) fn transfer_judgement(from: Option<Role>, to: Option<Role>) -> Option<bool> {
    match (from, to) {
        (from, Some(Role::Junk)) if from != Some(Role::Junk) => Some(true),
        (Some(Role::Junk), to) if to != Some(Role::Trash) => Some(false),
        _ => None,
    }
}

/// What a keyword change from `before` to `after` says: spam when `$Junk` was added, ham
/// when `$NotJunk` was added (Thunderbird's "mark as junk" and "not junk"), nothing when
/// both or neither were.
pub(crate) fn keyword_judgement(op: KeywordOp, before: &[Keyword], after: &[Keyword]) -> Option<bool> {
    if op == KeywordOp::Remove {
        return None;
    }
    let gained = |keyword: &Keyword| !before.contains(keyword) && after.contains(keyword);
    match (gained(&Keyword::Junk), gained(&Keyword::NotJunk)) {
        (true, false) => Some(true),
        (false, true) => Some(false),
        _ => None,
    }
}

/// The judgement of `email`; `None` for a record whose blob hash does not read (corrupt:
/// nothing to learn from, the operation goes on).
pub(crate) fn judgement(account: AccountId, email: &crate::Email, spam: bool) -> Option<Judgement> {
    let blob = BlobHash::from_hex(&email.blob)?;
    Some(Judgement { account, email: email.id, blob, tenant: email.tenant.clone(), spam })
}

impl crate::Mail {
    /// Hands the judgements of a committed operation to the learner, if one is registered.
    pub(crate) fn tell_learner(&self, judged: Vec<Judgement>) {
        if let Some(learner) = &self.learner {
            judged.into_iter().for_each(|judgement| learner.learn(judgement));
        }
    }
}

//! One email changed as a whole, as JMAP's `Email/set` changes it (RFC 8621 §4.6): its
//! keywords and its mailboxes at once, or its destruction, each in one commit. IMAP's
//! operations (messages.rs) work by UID in one mailbox; these work by email id, in every
//! mailbox the email is in, and log the same changes (so IMAP sessions see them as
//! FETCH and EXPUNGE, and `/changes` as updates and destructions).

use std::collections::BTreeSet;

use hameau_store::Batch;

use crate::learn::{self, Judgement};
use crate::messages::{Removal, add_destruction, add_freed, add_new_uid, log_expunges};
use crate::{
    AccountId, Change, ChangeKind, EmailId, Error, Keyword, KeywordOp, Mail, MailboxId, RETRIES_MAX, backoff, encode,
    keys, log_change, normalize_keywords, set_index_entry,
};

impl Mail {
    /// Sets an email's keywords (`Some`: the whole new set) and its mailboxes (`Some`: the
    /// whole new set, at least one) in one commit: it gets a new UID in each mailbox added,
    /// leaves each mailbox removed as IMAP EXPUNGE does, and keeps its UID where it stays.
    /// Returns the commit's modseq (the account's, if nothing changed).
    /// [`Error::NoEmail`], [`Error::NoMailbox`] for a mailbox that does not exist,
    /// [`Error::NoTargetMailbox`] for an empty set, [`Error::TooManyKeywords`]. Moving
    /// into or out of Junk, or setting `$Junk`/`$NotJunk`, is told to the junk learner as
    /// IMAP's MOVE and STORE are.
    pub async fn change_email(
        &self,
        account: AccountId,
        id: EmailId,
        keywords: Option<&[Keyword]>,
        mailboxes: Option<&[MailboxId]>,
    ) -> Result<u64, Error> {
        let keywords = keywords.map(normalize_keywords);
        if let Some(keywords) = &keywords {
            self.check_keywords(keywords)?;
        }
        if mailboxes.is_some_and(<[MailboxId]>::is_empty) {
            return Err(Error::NoTargetMailbox);
        }
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let (mut email, version) = self.read_email(account, id).await?.ok_or(Error::NoEmail(id))?;
            let old: BTreeSet<MailboxId> = email.mailboxes.iter().copied().collect();
            let new: BTreeSet<MailboxId> = match mailboxes {
                Some(mailboxes) => mailboxes.iter().copied().collect(),
                None => old.clone(),
            };
            let keywords_changed = keywords.as_ref().is_some_and(|keywords| *keywords != email.keywords);
            if !keywords_changed && new == old {
                return self.modseq(account).await;
            }
            let mut judged: Vec<Judgement> = Vec::new();
            if let Some(keywords) = &keywords {
                if self.learner.is_some() {
                    let spam = learn::keyword_judgement(KeywordOp::Replace, &email.keywords, keywords);
                    judged.extend(spam.and_then(|spam| learn::judgement(account, &email, spam)));
                }
                email.keywords = keywords.clone();
            }
            let mut batch = Batch::new();
            batch.expect_version(&keys::email(account, id), version);
            let modseq = batch.add(&keys::modseq(account), 1);
            let added: Vec<MailboxId> = new.difference(&old).copied().collect();
            let removed: Vec<MailboxId> = old.difference(&new).copied().collect();
            let (mut from_role, mut to_role) = (None, None);
            for mailbox in &added {
                // A mailbox deleted meanwhile fails the commit rather than orphan the entry.
                let entry = self
                    .at(account)
                    .await?
                    .get(&keys::mailbox(account, *mailbox))
                    .await?
                    .ok_or(Error::NoMailbox(*mailbox))?;
                batch.expect_version(&entry.key, entry.version);
                to_role = to_role.or(self.mailbox(account, *mailbox).await?.role);
            }
            let mut expunged = Vec::new();
            for mailbox in &removed {
                let uid = self.uid_in(account, id, *mailbox).await?;
                batch.delete(&keys::uid(account, *mailbox, uid)).delete(&keys::email_uid(account, id, *mailbox));
                log_expunges(&mut batch, account, *mailbox, modseq, &[uid]);
                expunged.push((*mailbox, uid));
                if let Ok(mailbox) = self.mailbox(account, *mailbox).await {
                    from_role = from_role.or(mailbox.role);
                }
            }
            email.mailboxes.retain(|mailbox| new.contains(mailbox));
            email.mailboxes.extend(added.iter().copied());
            let mut touched: BTreeSet<MailboxId> = added.iter().chain(&removed).copied().collect();
            if keywords_changed {
                for mailbox in old.intersection(&new) {
                    let uid = self.uid_in(account, id, *mailbox).await?;
                    set_index_entry(&mut batch, account, *mailbox, uid, &email, modseq);
                    touched.insert(*mailbox);
                }
            }
            for mailbox in &added {
                add_new_uid(&mut batch, account, *mailbox, &email, modseq);
            }
            if self.learner.is_some() && (!added.is_empty() || !removed.is_empty()) {
                let spam = learn::transfer_judgement(from_role, to_role);
                judged.extend(spam.and_then(|spam| learn::judgement(account, &email, spam)));
            }
            batch.set(&keys::email(account, id), &encode(&email));
            let change = Change::new(vec![(id, ChangeKind::Updated)], touched.into_iter().collect(), expunged, vec![]);
            log_change(&mut batch, account, modseq, &change);
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                self.tell_learner(judged);
                return Ok(modseq);
            }
        }
        Err(Error::Busy)
    }

    /// Destroys an email: it leaves every mailbox in one commit (logged as IMAP EXPUNGE
    /// logs it), its blob is released and its size given back to the quotas. Returns the
    /// commit's modseq; [`Error::NoEmail`] if it does not exist.
    pub async fn destroy_email(&self, account: AccountId, id: EmailId) -> Result<u64, Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let (mut email, version) = self.read_email(account, id).await?.ok_or(Error::NoEmail(id))?;
            let mut batch = Batch::new();
            batch.expect_version(&keys::email(account, id), version);
            let modseq = batch.add(&keys::modseq(account), 1);
            let mut expunged = Vec::new();
            for mailbox in &email.mailboxes {
                let uid = self.uid_in(account, id, *mailbox).await?;
                batch.delete(&keys::uid(account, *mailbox, uid)).delete(&keys::email_uid(account, id, *mailbox));
                log_expunges(&mut batch, account, *mailbox, modseq, &[uid]);
                expunged.push((*mailbox, uid));
            }
            let mailboxes = std::mem::take(&mut email.mailboxes);
            let mut removal = Removal {
                uids: Vec::new(),
                emails: Vec::new(),
                freed: 0,
                tenants_freed: Default::default(),
                threads: Vec::new(),
            };
            add_destruction(&mut batch, account, &mut email, &mut removal)?;
            add_freed(&mut batch, account, &removal);
            let mut change = Change::new(removal.emails, mailboxes, expunged, vec![]);
            change.destroyed_threads = removal.threads;
            log_change(&mut batch, account, modseq, &change);
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                return Ok(modseq);
            }
        }
        Err(Error::Busy)
    }
}

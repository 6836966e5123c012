//! Operations on the messages of a mailbox by UID, as IMAP sends them: STORE, COPY,
//! MOVE, EXPUNGE (RFC 9051 §6.4, RFC 6851, RFC 4315), and the catching up of sessions
//! (RFC 7162 CONDSTORE/QRESYNC).
//!
//! Each operation reads only the index entries and email records of the UIDs it is
//! given, and commits once (per 1,000 UIDs). The email record is the truth for keywords
//! and mailboxes: every write of an email's index entries rewrites it, so expecting its
//! version guards the entries too, and a conflict means "read again".

use std::collections::BTreeSet;

use hameau_store::{Batch, CounterRef, Patch, PatchTarget, Scan};

use crate::learn::{self, Judgement};
use crate::{
    AccountId, Change, ChangeKind, Copied, Email, EmailId, Error, Keyword, KeywordOp, Mail, MailboxDelta, MailboxId,
    RETRIES_MAX, StoreOutcome, UIDS_PER_COMMIT_MAX, UidEntry, backoff, corrupt, decode, encode, index_value, keys,
    log_change, normalize_keywords, set_index_entry,
};

/// Most operations one STORE commit holds before the rest goes to the next commit: room
/// under the store's `batch_ops_max` (10,000) for emails that are in many mailboxes.
const STORE_OPS_MAX: usize = 8_000;
/// Most change-log entries [`Mail::mailbox_changes_since`] reads before it scans the
/// mailbox index instead: past this, one scan of the index is the cheaper way. Tests
/// take the other path with a handful of changes.
const LOG_ENTRIES_MAX: usize = if cfg!(test) { 6 } else { 1_000 };
/// A UID set this dense (at least one UID in 4 of its range) is read with one range scan
/// rather than point reads.
const DENSE_RATIO: u64 = 4;

/// The removal of messages from a mailbox, added to a batch.
pub(crate) struct Removal {
    /// The UIDs removed, ascending.
    pub(crate) uids: Vec<u32>,
    pub(crate) emails: Vec<(EmailId, ChangeKind)>,
    /// `(email, thread)` of the emails destroyed ([`Change::destroyed_threads`]).
    pub(crate) threads: Vec<(EmailId, EmailId)>,
    /// Bytes given back to the account's quota, and to each tenant's.
    pub(crate) freed: u64,
    pub(crate) tenants_freed: std::collections::BTreeMap<String, u64>,
}

/// Where a copied message lands in the target mailbox.
enum Landing {
    /// The email was in the target already: it keeps its UID there.
    Existing(u32),
    /// A new UID, given by the commit.
    New(CounterRef),
}

impl Mail {
    /// Changes the keywords of the messages `uids` of a mailbox (IMAP STORE), in one
    /// commit with one new modseq that every updated entry carries. Keywords belong to the
    /// email (as in JMAP): each mailbox index the email is in is updated. UIDs not in the
    /// mailbox are ignored; entries whose keywords would not change are not rewritten.
    /// With `unchanged_since` (RFC 7162 §3.1.3), entries whose modseq is above it are left
    /// alone and listed in `modified`. Concurrent writers are retried over.
    ///
    /// Sets whose commit would exceed the store's batch limit (several thousand UIDs, or
    /// emails in many mailboxes) are committed in several parts, each with its modseq.
    pub async fn store_keywords(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[u32],
        op: KeywordOp,
        keywords: &[Keyword],
        unchanged_since: Option<u64>,
    ) -> Result<StoreOutcome, Error> {
        self.mailbox(account, mailbox).await?;
        let keywords = normalize_keywords(keywords);
        let uids = sorted(uids);
        let mut outcome = StoreOutcome { updated: Vec::new(), modified: Vec::new(), modseq: 0 };
        let mut rest = uids.as_slice();
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(UIDS_PER_COMMIT_MAX)];
            let (n_done, part, judged) =
                self.store_part(account, mailbox, chunk, op, &keywords, unchanged_since).await?;
            self.tell_learner(judged);
            outcome.updated.extend(part.updated);
            outcome.modified.extend(part.modified);
            outcome.modseq = outcome.modseq.max(part.modseq);
            rest = &rest[n_done..];
        }
        if outcome.modseq == 0 {
            outcome.modseq = self.modseq(account).await?;
        }
        Ok(outcome)
    }

    /// Copies messages to another mailbox (IMAP COPY, RFC 4315 COPYUID): each gets a new
    /// UID there, in source UID order, given by the commit. The email is shared, not
    /// duplicated: same id, same blob, no quota change. An email already in the target
    /// keeps its UID there, and that UID is in the pair. Copying into the source mailbox
    /// is refused ([`Error::Cannot`]): an email has one UID per mailbox.
    pub async fn copy(
        &self,
        account: AccountId,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
    ) -> Result<Copied, Error> {
        self.transfer(account, from, uids, to, false).await
    }

    /// Moves messages to another mailbox (RFC 6851): a copy and an expunge from the
    /// source in one commit; the change log records the source UIDs expunged.
    pub async fn move_messages(
        &self,
        account: AccountId,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
    ) -> Result<Copied, Error> {
        self.transfer(account, from, uids, to, true).await
    }

    /// Removes messages from a mailbox (IMAP EXPUNGE, UID EXPUNGE) in one commit per 1,000
    /// UIDs. An email left in no mailbox is destroyed: blob released, size given back to
    /// the quota. Returns the UIDs removed (ascending) and the last commit's modseq (the
    /// account's modseq if nothing was removed). UIDs not in the mailbox are ignored.
    pub async fn expunge(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<(Vec<u32>, u64), Error> {
        self.mailbox(account, mailbox).await?;
        let uids = sorted(uids);
        let mut removed = Vec::new();
        let mut modseq = None;
        for chunk in uids.chunks(UIDS_PER_COMMIT_MAX) {
            let (uids, chunk_modseq) = self.expunge_part(account, mailbox, chunk).await?;
            removed.extend(uids);
            modseq = chunk_modseq.or(modseq);
        }
        let modseq = match modseq {
            Some(modseq) => modseq,
            None => self.modseq(account).await?,
        };
        Ok((removed, modseq))
    }

    /// The index entries of these UIDs that are in the mailbox, in UID order: point reads
    /// (or one range scan for a dense set), for a session refreshing a few messages.
    pub async fn uid_entries(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<Vec<UidEntry>, Error> {
        let uids = sorted(uids);
        let (Some(&first), Some(&last)) = (uids.first(), uids.last()) else { return Ok(Vec::new()) };
        let span = u64::from(last - first) + 1;
        let store = self.at(account).await?;
        if uids.len() >= 16 && span <= DENSE_RATIO * uids.len() as u64 {
            let scan = Scan::range(&keys::uid(account, mailbox, first), &keys::uid_after(account, mailbox, last));
            let mut out = Vec::with_capacity(uids.len());
            for entry in store.scan(&scan).await? {
                let entry = keys::decode_uid_entry(&entry.key, &entry.value)?;
                if uids.binary_search(&entry.uid).is_ok() {
                    out.push(entry);
                }
            }
            return Ok(out);
        }
        let mut out = Vec::with_capacity(uids.len());
        for uid in uids {
            if let Some(entry) = store.get(&keys::uid(account, mailbox, uid)).await? {
                out.push(keys::decode_uid_entry(&entry.key, &entry.value)?);
            }
        }
        Ok(out)
    }

    /// What changed in a mailbox since `modseq` (QRESYNC, RFC 7162 §3.2.5; a session
    /// catching up after NOOP or IDLE): entries changed, UIDs expunged, and the modseq to
    /// ask from next time. Read from the change log when few changes followed `modseq`,
    /// from one scan of the mailbox index otherwise; expunged UIDs come from the mailbox's
    /// expunge log.
    pub async fn mailbox_changes_since(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        modseq: u64,
    ) -> Result<MailboxDelta, Error> {
        // Read first: what commits after it may show up now and again next time, never
        // be missed.
        let highest_modseq = self.modseq(account).await?;
        self.mailbox(account, mailbox).await?;
        let expunged = self.expunged_since(account, mailbox, modseq).await?;
        if modseq >= highest_modseq {
            return Ok(MailboxDelta { changed: Vec::new(), expunged, highest_modseq });
        }
        let log =
            Scan::prefix(&keys::changes(account)).after(&keys::change(account, modseq)).limit(LOG_ENTRIES_MAX + 1);
        let log = self.at(account).await?.scan(&log).await?;
        let changed = if log.len() <= LOG_ENTRIES_MAX {
            let mut emails = BTreeSet::new();
            for entry in &log {
                let change: Change = decode(&entry.key, &entry.value)?;
                if change.mailboxes.contains(&mailbox) {
                    emails.extend(
                        change.email_changes().filter(|(_, kind)| *kind != ChangeKind::Destroyed).map(|(id, _)| id),
                    );
                }
            }
            self.changed_entries(account, mailbox, emails, modseq).await?
        } else {
            let mut entries = self.uids(account, mailbox).await?;
            entries.retain(|entry| entry.modseq > modseq);
            entries
        };
        Ok(MailboxDelta { changed, expunged, highest_modseq })
    }

    /// The entries of `emails` in the mailbox whose modseq is above `modseq`, by UID.
    async fn changed_entries(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        emails: BTreeSet<EmailId>,
        modseq: u64,
    ) -> Result<Vec<UidEntry>, Error> {
        let mut changed = Vec::new();
        let store = self.at(account).await?;
        for email in emails {
            let Some(uid) = store.get(&keys::email_uid(account, email, mailbox)).await? else { continue };
            let uid = keys::tail_u64(&uid.value)? as u32;
            let Some(entry) = store.get(&keys::uid(account, mailbox, uid)).await? else { continue };
            let entry = keys::decode_uid_entry(&entry.key, &entry.value)?;
            if entry.modseq > modseq {
                changed.push(entry);
            }
        }
        changed.sort_unstable_by_key(|entry| entry.uid);
        Ok(changed)
    }

    /// The UIDs removed from the mailbox by commits after `modseq`, ascending.
    async fn expunged_since(&self, account: AccountId, mailbox: MailboxId, modseq: u64) -> Result<Vec<u32>, Error> {
        let scan = Scan::prefix(&keys::expunges(account, mailbox)).after(&keys::expunge(account, mailbox, modseq));
        let mut uids = Vec::new();
        for entry in self.at(account).await?.scan(&scan).await? {
            if entry.value.len() % 4 != 0 {
                return Err(corrupt(&entry.key, "expunged uids"));
            }
            uids.extend(entry.value.chunks_exact(4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes"))));
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// One commit of a STORE: returns how many of `uids` it covered and what it did.
    async fn store_part(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[u32],
        op: KeywordOp,
        keywords: &[Keyword],
        unchanged_since: Option<u64>,
    ) -> Result<(usize, StoreOutcome, Vec<Judgement>), Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let entries = self.uid_entries(account, mailbox, uids).await?;
            let mut batch = Batch::new();
            let modseq = batch.add(&keys::modseq(account), 1);
            let mut n_ops = 2;
            let mut n_done = uids.len();
            let mut outcome = StoreOutcome { updated: Vec::new(), modified: Vec::new(), modseq: 0 };
            let mut changes = Vec::new();
            let mut mailboxes = BTreeSet::new();
            let mut judged = Vec::new();
            for entry in entries {
                if unchanged_since.is_some_and(|limit| entry.modseq > limit) {
                    outcome.modified.push(entry.uid);
                    continue;
                }
                // The index holds the email's keywords: no change, no read.
                if apply(op, &entry.keywords, keywords) == entry.keywords {
                    continue;
                }
                let Some((mut email, version)) = self.read_email(account, entry.email).await? else { continue };
                let new_keywords = apply(op, &email.keywords, keywords);
                if !email.mailboxes.contains(&mailbox) || new_keywords == email.keywords {
                    continue;
                }
                self.check_keywords(&new_keywords)?;
                if n_ops + 2 + email.mailboxes.len() > STORE_OPS_MAX {
                    n_done = uids.partition_point(|uid| *uid < entry.uid);
                    break;
                }
                if self.learner.is_some() {
                    let judgement = learn::keyword_judgement(op, &email.keywords, &new_keywords);
                    judged.extend(judgement.and_then(|spam| learn::judgement(account, &email, spam)));
                }
                email.keywords = new_keywords;
                batch.expect_version(&keys::email(account, email.id), version);
                batch.set(&keys::email(account, email.id), &encode(&email));
                for other in &email.mailboxes {
                    let uid =
                        if *other == mailbox { entry.uid } else { self.uid_in(account, email.id, *other).await? };
                    set_index_entry(&mut batch, account, *other, uid, &email, modseq);
                }
                n_ops += 2 + email.mailboxes.len();
                mailboxes.extend(email.mailboxes.iter().copied());
                changes.push((email.id, ChangeKind::Updated));
                outcome.updated.push(UidEntry { keywords: email.keywords, ..entry });
            }
            if changes.is_empty() {
                return Ok((n_done, outcome, Vec::new()));
            }
            log_change(
                &mut batch,
                account,
                modseq,
                &Change::new(changes, mailboxes.into_iter().collect(), vec![], vec![]),
            );
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                outcome.updated.iter_mut().for_each(|entry| entry.modseq = modseq);
                outcome.modseq = modseq;
                return Ok((n_done, outcome, judged));
            }
        }
        Err(Error::Busy)
    }

    async fn transfer(
        &self,
        account: AccountId,
        from: MailboxId,
        uids: &[u32],
        to: MailboxId,
        remove_source: bool,
    ) -> Result<Copied, Error> {
        if from == to {
            return Err(Error::Cannot("the source and target mailboxes are the same".into()));
        }
        let from_role = self.mailbox(account, from).await?.role;
        let uids = sorted(uids);
        let target = self.mailbox(account, to).await?;
        let judgement = learn::transfer_judgement(from_role, target.role).filter(|_| self.learner.is_some());
        let mut copied = Copied { uid_validity: target.uid_validity, pairs: Vec::new(), modseq: 0 };
        for chunk in uids.chunks(UIDS_PER_COMMIT_MAX) {
            let (pairs, modseq, judged) =
                self.transfer_part(account, (from, chunk), to, remove_source, judgement).await?;
            self.tell_learner(judged);
            copied.pairs.extend(pairs);
            copied.modseq = copied.modseq.max(modseq.unwrap_or(0));
        }
        if copied.modseq == 0 {
            copied.modseq = self.modseq(account).await?;
        }
        Ok(copied)
    }

    /// One commit of a COPY or MOVE: the (source, target) UID pairs, the modseq if it
    /// committed anything, and, with `judgement`, the emails it copied or moved judged so.
    async fn transfer_part(
        &self,
        account: AccountId,
        (from, uids): (MailboxId, &[u32]),
        to: MailboxId,
        remove_source: bool,
        judgement: Option<bool>,
    ) -> Result<(Vec<(u32, u32)>, Option<u64>, Vec<Judgement>), Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let target = self.at(account).await?.get(&keys::mailbox(account, to)).await?.ok_or(Error::NoMailbox(to))?;
            let entries = self.uid_entries(account, from, uids).await?;
            let mut batch = Batch::new();
            // A target deleted meanwhile fails the commit rather than orphan the copies.
            batch.expect_version(&target.key, target.version);
            let modseq = batch.add(&keys::modseq(account), 1);
            let mut landings = Vec::with_capacity(entries.len());
            let mut changes = Vec::new();
            let mut expunged = Vec::new();
            let mut judged = Vec::new();
            for entry in entries {
                let Some((mut email, version)) = self.read_email(account, entry.email).await? else { continue };
                if !email.mailboxes.contains(&from) {
                    continue;
                }
                let landing = if email.mailboxes.contains(&to) {
                    Landing::Existing(self.uid_in(account, email.id, to).await?)
                } else {
                    email.mailboxes.push(to);
                    Landing::New(add_new_uid(&mut batch, account, to, &email, modseq))
                };
                if remove_source {
                    email.mailboxes.retain(|id| *id != from);
                    batch
                        .delete(&keys::uid(account, from, entry.uid))
                        .delete(&keys::email_uid(account, email.id, from));
                    expunged.push(entry.uid);
                }
                if remove_source || matches!(landing, Landing::New(_)) {
                    batch.expect_version(&keys::email(account, email.id), version);
                    batch.set(&keys::email(account, email.id), &encode(&email));
                    changes.push((email.id, ChangeKind::Updated));
                    judged.extend(judgement.and_then(|spam| learn::judgement(account, &email, spam)));
                }
                landings.push((entry.uid, landing));
            }
            if changes.is_empty() {
                let pairs = landings.into_iter().map(|(uid, landing)| (uid, existing_uid(&landing))).collect();
                return Ok((pairs, None, Vec::new()));
            }
            let mailboxes = if remove_source { vec![from, to] } else { vec![to] };
            if remove_source {
                log_expunges(&mut batch, account, from, modseq, &expunged);
            }
            let expunged = expunged.into_iter().map(|uid| (from, uid)).collect();
            log_change(&mut batch, account, modseq, &Change::new(changes, mailboxes, expunged, vec![]));
            let Some((modseq, counters)) = self.commit_counters(account, batch, modseq).await? else { continue };
            let mut pairs = Vec::with_capacity(landings.len());
            for (uid, landing) in landings {
                let new_uid = match landing {
                    Landing::Existing(existing) => existing,
                    Landing::New(counter) => {
                        u32::try_from(counters[counter.index()]).map_err(|_| Error::UidsExhausted(to))?
                    }
                };
                pairs.push((uid, new_uid));
            }
            return Ok((pairs, Some(modseq), judged));
        }
        Err(Error::Busy)
    }

    /// One commit of an EXPUNGE: the UIDs removed and the modseq, if any was removed.
    async fn expunge_part(
        &self,
        account: AccountId,
        mailbox: MailboxId,
        uids: &[u32],
    ) -> Result<(Vec<u32>, Option<u64>), Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let entries = self.uid_entries(account, mailbox, uids).await?;
            let mut batch = Batch::new();
            let modseq = batch.add(&keys::modseq(account), 1);
            let removal = self.add_removals(&mut batch, account, mailbox, &entries).await?;
            if removal.uids.is_empty() {
                return Ok((Vec::new(), None));
            }
            log_expunges(&mut batch, account, mailbox, modseq, &removal.uids);
            let expunged = removal.uids.iter().map(|uid| (mailbox, *uid)).collect();
            let mut change = Change::new(removal.emails, vec![mailbox], expunged, vec![]);
            change.destroyed_threads = removal.threads;
            log_change(&mut batch, account, modseq, &change);
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                return Ok((removal.uids, Some(modseq)));
            }
        }
        Err(Error::Busy)
    }

    /// Adds to `batch` the removal of `entries` from the mailbox: index entries, reverse
    /// UIDs, and the emails left in no mailbox (record, summary, blob reference, quota).
    pub(crate) async fn add_removals(
        &self,
        batch: &mut Batch,
        account: AccountId,
        mailbox: MailboxId,
        entries: &[UidEntry],
    ) -> Result<Removal, Error> {
        let mut removal = Removal {
            uids: Vec::with_capacity(entries.len()),
            emails: Vec::with_capacity(entries.len()),
            threads: Vec::new(),
            freed: 0,
            tenants_freed: Default::default(),
        };
        for entry in entries {
            let email_key = keys::email(account, entry.email);
            let index_keys = [keys::uid(account, mailbox, entry.uid), keys::email_uid(account, entry.email, mailbox)];
            let Some((mut email, version)) = self.read_email(account, entry.email).await? else {
                // An index entry whose email is gone (no commit leaves one; a damaged store
                // could): it goes, so that the UID can be expunged and the mailbox deleted,
                // instead of being found again by every expunge (and by `delete_mailbox`'s
                // loop, which would then never end).
                tracing::warn!(account, mailbox, uid = entry.uid, "mail: an index entry without its email is removed");
                batch.expect_absent(&email_key);
                for key in &index_keys {
                    batch.delete(key);
                }
                removal.uids.push(entry.uid);
                continue;
            };
            batch.expect_version(&email_key, version);
            for key in &index_keys {
                batch.delete(key);
            }
            if !email.mailboxes.contains(&mailbox) {
                // Likewise an index entry left by an email that is no longer in the mailbox.
                tracing::warn!(
                    account,
                    mailbox,
                    uid = entry.uid,
                    "mail: an index entry of an email no longer in its mailbox is removed"
                );
                removal.uids.push(entry.uid);
                continue;
            }
            email.mailboxes.retain(|id| *id != mailbox);
            if email.mailboxes.is_empty() {
                add_destruction(batch, account, &mut email, &mut removal)?;
            } else {
                batch.set(&email_key, &encode(&email));
                removal.emails.push((email.id, ChangeKind::Updated));
            }
            removal.uids.push(entry.uid);
        }
        add_freed(batch, account, &removal);
        Ok(removal)
    }

    pub(crate) async fn read_email(&self, account: AccountId, id: EmailId) -> Result<Option<(Email, u64)>, Error> {
        let Some(entry) = self.at(account).await?.get(&keys::email(account, id)).await? else { return Ok(None) };
        Ok(Some((decode(&entry.key, &entry.value)?, entry.version)))
    }
}

/// Adds to `batch` the destruction of an email left in no mailbox (its index entries are
/// removed by the caller): its record, summary and text, its blob and shared records
/// released, its size counted in `removal` for [`add_freed`].
pub(crate) fn add_destruction(
    batch: &mut Batch,
    account: AccountId,
    email: &mut Email,
    removal: &mut Removal,
) -> Result<(), Error> {
    let email_key = keys::email(account, email.id);
    let hash = hameau_store::BlobHash::from_hex(&email.blob).ok_or_else(|| corrupt(&email_key, "blob hash"))?;
    batch
        .delete(&email_key)
        .delete(&keys::summary(account, email.id))
        .delete(&keys::text(account, email.id))
        .blob_release(&hash);
    for record in &email.records {
        let hash = hameau_store::BlobHash::from_hex(record).ok_or_else(|| corrupt(&email_key, "shared record hash"))?;
        batch.blob_release(&hash);
    }
    removal.freed += email.size;
    if let Some(tenant) = email.tenant.take() {
        *removal.tenants_freed.entry(tenant).or_default() += email.size;
    }
    batch.delete(&keys::thread_member(account, email.thread, email.id));
    removal.threads.push((email.id, email.thread));
    removal.emails.push((email.id, ChangeKind::Destroyed));
    Ok(())
}

/// Gives the bytes of the emails `removal` destroyed back to the account's and tenants'
/// quotas: one add per counter, whatever the number of emails.
pub(crate) fn add_freed(batch: &mut Batch, account: AccountId, removal: &Removal) {
    if removal.freed > 0 {
        batch.add(&keys::used(account), -(removal.freed as i64));
    }
    for (tenant, freed) in &removal.tenants_freed {
        batch.add(&keys::tenant_used(tenant), -(*freed as i64));
    }
}

/// Adds an email's entry under a new UID of `mailbox` and its reverse key; returns the
/// UID's counter.
pub(crate) fn add_new_uid(
    batch: &mut Batch,
    account: AccountId,
    mailbox: MailboxId,
    email: &Email,
    modseq: CounterRef,
) -> CounterRef {
    let uid = batch.add(&keys::uid_next(account, mailbox), 1);
    let key = keys::uid(account, mailbox, 0);
    let patches = [
        Patch { counter: uid, target: PatchTarget::Key, offset: key.len() - 8 },
        Patch { counter: modseq, target: PatchTarget::Value, offset: keys::UID_VALUE_MODSEQ_OFFSET },
    ];
    batch.set_patched(&key, &index_value(email), &patches);
    let reverse = keys::email_uid(account, email.id, mailbox);
    batch.set_patched(&reverse, &[0; 8], &[Patch { counter: uid, target: PatchTarget::Value, offset: 0 }]);
    uid
}

/// Records in the mailbox's expunge log the UIDs a commit removes.
pub(crate) fn log_expunges(
    batch: &mut Batch,
    account: AccountId,
    mailbox: MailboxId,
    modseq: CounterRef,
    uids: &[u32],
) {
    let key = keys::expunge(account, mailbox, 0);
    let value: Vec<u8> = uids.iter().flat_map(|uid| uid.to_be_bytes()).collect();
    batch.set_patched(&key, &value, &[Patch { counter: modseq, target: PatchTarget::Key, offset: key.len() - 8 }]);
}

fn existing_uid(landing: &Landing) -> u32 {
    match landing {
        Landing::Existing(uid) => *uid,
        Landing::New(_) => unreachable!("a new UID means a commit"),
    }
}

/// The keywords after `op`; both lists are normalised (sorted, no duplicates).
fn apply(op: KeywordOp, current: &[Keyword], given: &[Keyword]) -> Vec<Keyword> {
    let mut out = match op {
        KeywordOp::Replace => given.to_vec(),
        KeywordOp::Add => current.iter().chain(given).cloned().collect(),
        KeywordOp::Remove => current.iter().filter(|keyword| !given.contains(keyword)).cloned().collect(),
    };
    out.sort();
    out.dedup();
    out
}

fn sorted(uids: &[u32]) -> Vec<u32> {
    let mut uids = uids.to_vec();
    uids.sort_unstable();
    uids.dedup();
    uids
}

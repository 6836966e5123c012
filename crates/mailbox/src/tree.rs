//! The mailbox tree: creating, finding, renaming, deleting and subscribing mailboxes,
//! and their status (RFC 9051 §6.3).
//!
//! A mailbox's name is its full path, segments joined by [`DELIMITER`]; a name key per
//! mailbox keeps names unique, and the tree key (`keys::mailbox_tree`), written by every
//! change of the tree, makes such changes serialise: each reads it first and commits only
//! if it did not move, so checks like "has no children" or "no other mailbox has this
//! role" hold at commit time.

use hameau_store::{Batch, Entry, Scan};

use crate::{
    AccountId, Change, ChangeKind, DELIMITER, Error, Keyword, Mail, Mailbox, MailboxId, MailboxStatus, RETRIES_MAX,
    Role, UIDS_PER_COMMIT_MAX, backoff, decode, encode, keys, log_change,
};

/// The reserved name of the inbox (RFC 9051 §5.1), case-insensitive.
const INBOX: &str = "INBOX";
/// Longest segment of a name, in bytes: the usual file-system limit, which servers that
/// map mailboxes to directories (Dovecot) inherit and clients therefore respect.
const SEGMENT_BYTES_MAX: usize = 255;
/// Longest full name, in bytes: keeps name keys under the store's `key_bytes_max` (1 KiB).
const NAME_BYTES_MAX: usize = 1000;

impl Mail {
    /// Creates a mailbox and the parents it lacks (`a/b/c` creates `a` and `a/b`).
    ///
    /// Refused with [`Error::InvalidName`]: an empty name or segment (so a leading,
    /// trailing or doubled delimiter), a segment of dots only, control characters, the
    /// LIST wildcards `*` and `%`, a segment over 255 bytes or a name over 1,000, and a
    /// first segment that is INBOX in another case than `INBOX`. [`Error::MailboxExists`]
    /// if the name exists; [`Error::Cannot`] if another mailbox has the role.
    ///
    /// Its UIDVALIDITY differs from that of any earlier mailbox of the same name: ids are
    /// never reused and it is `now + id` (RFC 9051 §2.3.1.1).
    pub async fn create_mailbox(
        &self,
        account: AccountId,
        name: &str,
        role: Option<Role>,
        now: u64,
    ) -> Result<Mailbox, Error> {
        check_name(name)?;
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let tree = self.tree_entry(account).await?;
            if self.mailbox_id_by_name(account, name).await?.is_some() {
                return Err(Error::MailboxExists(name.to_string()));
            }
            if let Some(role) = role
                && self.mailbox_by_role(account, role).await?.is_some()
            {
                return Err(Error::Cannot(format!("another mailbox has the role {role:?}")));
            }
            let mut batch = Batch::new();
            expect_tree(&mut batch, account, tree.as_ref());
            let (parent, mut changes) = self.add_missing_parents(&mut batch, account, name, now).await?;
            let id = self.next_mailbox_id(account).await?;
            let mailbox = new_mailbox(id, name, parent, role, now);
            add_mailbox(&mut batch, account, &mailbox);
            changes.push((id, ChangeKind::Created));
            self.count_new_mailboxes(&mut batch, account, changes.len()).await?;
            let modseq = batch.add(&keys::modseq(account), 1);
            log_change(&mut batch, account, modseq, &Change::new(vec![], vec![], vec![], changes));
            if self.commit_tree_change(account, batch, modseq).await?.is_some() {
                return Ok(mailbox);
            }
        }
        Err(Error::Busy)
    }

    /// The mailbox of that full name; `inbox` in any case finds `INBOX` (RFC 9051 §5.1),
    /// and so does its first segment (`inbox/x` finds `INBOX/x`).
    pub async fn mailbox_by_name(&self, account: AccountId, name: &str) -> Result<Option<Mailbox>, Error> {
        match self.mailbox_id_by_name(account, name).await? {
            Some(id) => match self.mailbox(account, id).await {
                Ok(mailbox) => Ok(Some(mailbox)),
                Err(Error::NoMailbox(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// Renames a mailbox; its children follow (their full names change, their ids and
    /// UIDs stay). Missing parents of the new name are created. One commit.
    /// [`Error::Cannot`] for INBOX (RFC 9051 §6.3.6 gives renaming INBOX a special meaning
    /// this server does not offer) or a move under itself; [`Error::MailboxExists`] if the
    /// new name exists.
    pub async fn rename_mailbox(&self, account: AccountId, id: MailboxId, new_name: &str) -> Result<(), Error> {
        check_name(new_name)?;
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let tree = self.tree_entry(account).await?;
            let (mailbox, version) = self.mailbox_entry(account, id).await?;
            if is_inbox(&mailbox) {
                return Err(Error::Cannot("INBOX cannot be renamed".into()));
            }
            if new_name.starts_with(&format!("{}{DELIMITER}", mailbox.name)) {
                return Err(Error::Cannot("a mailbox cannot move under itself".into()));
            }
            if self.mailbox_id_by_name(account, new_name).await?.is_some() {
                return Err(Error::MailboxExists(new_name.to_string()));
            }
            let descendants = self.descendants(account, &mailbox.name).await?;
            let mut batch = Batch::new();
            expect_tree(&mut batch, account, tree.as_ref());
            let (parent, mut changes) = self.add_missing_parents(&mut batch, account, new_name, 0).await?;
            if !changes.is_empty() {
                self.count_new_mailboxes(&mut batch, account, changes.len()).await?;
            }
            let renamed = Mailbox { name: new_name.to_string(), parent, ..mailbox.clone() };
            rename_one(&mut batch, account, &mailbox.name, &renamed, version);
            changes.push((id, ChangeKind::Updated));
            for (child, child_version) in descendants {
                let suffix = &child.name[mailbox.name.len()..];
                let renamed = Mailbox { name: format!("{new_name}{suffix}"), ..child.clone() };
                rename_one(&mut batch, account, &child.name, &renamed, child_version);
                changes.push((child.id, ChangeKind::Updated));
            }
            let modseq = batch.add(&keys::modseq(account), 1);
            log_change(&mut batch, account, modseq, &Change::new(vec![], vec![], vec![], changes));
            if self.commit_tree_change(account, batch, modseq).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::Busy)
    }

    /// Deletes a mailbox (RFC 9051 §6.3.5). Its messages leave it as [`Mail::expunge`]
    /// removes them, with their UIDs in the change log; emails in no other mailbox are
    /// destroyed. A special-use mailbox may be deleted (its role goes with it); INBOX may
    /// not ([`Error::Cannot`]), nor a mailbox with children ([`Error::HasChildren`]).
    /// Up to 1,000 messages go in the same commit as the mailbox; more are expunged in
    /// commits of 1,000 first.
    pub async fn delete_mailbox(&self, account: AccountId, id: MailboxId) -> Result<(), Error> {
        let mut conflicts = 0;
        while conflicts < RETRIES_MAX {
            let tree = self.tree_entry(account).await?;
            let (mailbox, version) = self.mailbox_entry(account, id).await?;
            if is_inbox(&mailbox) {
                return Err(Error::Cannot("INBOX cannot be deleted".into()));
            }
            let children = Scan::prefix(&keys::mailbox_children(account, &mailbox.name)).limit(1);
            if !self.at(account).await?.scan(&children).await?.is_empty() {
                return Err(Error::HasChildren(mailbox.name));
            }
            // Every delivery or copy into the mailbox moves this counter: reading it
            // before the index and expecting it unchanged means no message is left behind.
            let uid_next = self.at(account).await?.get(&keys::uid_next(account, id)).await?;
            let entries = self.uids(account, id).await?;
            if entries.len() > UIDS_PER_COMMIT_MAX {
                let uids: Vec<u32> = entries.iter().map(|entry| entry.uid).collect();
                // Each turn removes a part of the index, or counts as a conflict: the loop
                // ends either way.
                let (removed, _) = self.expunge(account, id, &uids[..UIDS_PER_COMMIT_MAX]).await?;
                if removed.is_empty() {
                    conflicts += 1;
                    backoff(conflicts).await;
                }
                continue;
            }
            let mut batch = Batch::new();
            expect_tree(&mut batch, account, tree.as_ref());
            batch.expect_version(&keys::mailbox(account, id), version);
            match &uid_next {
                Some(entry) => batch.expect_version(&entry.key, entry.version),
                None => batch.expect_absent(&keys::uid_next(account, id)),
            };
            let modseq = batch.add(&keys::modseq(account), 1);
            let removal = self.add_removals(&mut batch, account, id, &entries).await?;
            batch.delete(&keys::mailbox(account, id));
            batch.delete(&keys::mailbox_name(account, &mailbox.name));
            // An account from before the count has none: its first creation counts.
            if self.at(account).await?.get(&keys::mailbox_count(account)).await?.is_some() {
                batch.add(&keys::mailbox_count(account), -1);
            }
            batch.delete(&keys::uid_next(account, id));
            // The mailbox's expunge log goes with it (its id is never reused).
            let expunges = Scan::prefix(&keys::expunges(account, id)).limit(UIDS_PER_COMMIT_MAX);
            for entry in self.at(account).await?.scan(&expunges).await? {
                batch.delete(&entry.key);
            }
            let expunged = removal.uids.iter().map(|uid| (id, *uid)).collect();
            let mut change = Change::new(removal.emails, vec![id], expunged, vec![(id, ChangeKind::Destroyed)]);
            change.destroyed_threads = removal.threads;
            log_change(&mut batch, account, modseq, &change);
            if self.commit_change(account, batch, modseq).await?.is_some() {
                return Ok(());
            }
            conflicts += 1;
            backoff(conflicts).await;
        }
        Err(Error::Busy)
    }

    /// Subscribes or unsubscribes a mailbox (RFC 9051 §6.3.7, §6.3.8).
    pub async fn set_subscribed(&self, account: AccountId, id: MailboxId, subscribed: bool) -> Result<(), Error> {
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let (mailbox, version) = self.mailbox_entry(account, id).await?;
            if mailbox.subscribed == subscribed {
                return Ok(());
            }
            let mut batch = Batch::new();
            batch.expect_version(&keys::mailbox(account, id), version);
            batch.set(&keys::mailbox(account, id), &encode(&Mailbox { subscribed, ..mailbox }));
            crate::settings_changed(&mut batch);
            let modseq = batch.add(&keys::modseq(account), 1);
            log_change(
                &mut batch,
                account,
                modseq,
                &Change::new(vec![], vec![], vec![], vec![(id, ChangeKind::Updated)]),
            );
            if self.commit_change(account, batch, modseq).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::Busy)
    }

    /// What STATUS and SELECT report: one scan of the mailbox index and two counters.
    pub async fn status(&self, account: AccountId, id: MailboxId) -> Result<MailboxStatus, Error> {
        let highest_modseq = self.modseq(account).await?;
        let mailbox = self.mailbox(account, id).await?;
        let entries = self.uids(account, id).await?;
        let recent_mark = self.recent_mark(account, id).await?;
        Ok(MailboxStatus {
            messages: entries.len() as u32,
            unseen: entries.iter().filter(|entry| !entry.has(&Keyword::Seen)).count() as u32,
            deleted: entries.iter().filter(|entry| entry.has(&Keyword::Deleted)).count() as u32,
            size: entries.iter().map(|entry| u64::from(entry.size)).sum(),
            uid_next: self.uid_next(account, id).await?,
            uid_validity: mailbox.uid_validity,
            highest_modseq,
            recent: entries.iter().filter(|entry| entry.uid > recent_mark).count() as u32,
        })
    }

    /// The recent mark of a mailbox: the highest UID some session has seen as `\Recent`.
    pub async fn recent_mark(&self, account: AccountId, id: MailboxId) -> Result<u32, Error> {
        match self.at(account).await?.get(&keys::recent(account, id)).await? {
            Some(entry) => {
                let bytes: [u8; 4] =
                    entry.value.as_slice().try_into().map_err(|_| crate::corrupt(&entry.key, "recent"))?;
                Ok(u32::from_be_bytes(bytes))
            }
            None => Ok(0),
        }
    }

    /// IMAP4rev1's `\Recent` (RFC 3501 §2.3.2): a message is recent to the first session
    /// that sees it. Raises the mailbox's mark to `last_uid` and returns the mark it had:
    /// the UIDs above it, up to `last_uid`, are this caller's recent ones. Not a change of
    /// the mail (no modseq): JMAP knows nothing of it.
    pub async fn claim_recent(&self, account: AccountId, id: MailboxId, last_uid: u32) -> Result<u32, Error> {
        let key = keys::recent(account, id);
        for _ in 0..16 {
            let current = self.at(account).await?.get(&key).await?;
            let mut batch = Batch::new();
            let mark = match &current {
                Some(entry) => {
                    batch.expect_version(&key, entry.version);
                    let bytes: [u8; 4] =
                        entry.value.as_slice().try_into().map_err(|_| crate::corrupt(&key, "recent"))?;
                    u32::from_be_bytes(bytes)
                }
                None => {
                    batch.expect_absent(&key);
                    0
                }
            };
            if last_uid <= mark {
                return Ok(mark);
            }
            batch.set(&key, &last_uid.to_be_bytes());
            match self.at(account).await?.commit(batch).await {
                Ok(_) => return Ok(mark),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    async fn mailbox_id_by_name(&self, account: AccountId, name: &str) -> Result<Option<MailboxId>, Error> {
        let Some(entry) = self.at(account).await?.get(&keys::mailbox_name(account, &canonical(name))).await? else {
            return Ok(None);
        };
        let bytes: [u8; 4] = entry.value.as_slice().try_into().map_err(|_| crate::corrupt(&entry.key, "mailbox id"))?;
        Ok(Some(MailboxId::from_be_bytes(bytes)))
    }

    async fn mailbox_entry(&self, account: AccountId, id: MailboxId) -> Result<(Mailbox, u64), Error> {
        let entry = self.at(account).await?.get(&keys::mailbox(account, id)).await?.ok_or(Error::NoMailbox(id))?;
        Ok((decode(&entry.key, &entry.value)?, entry.version))
    }

    /// The mailboxes under `name`, with their versions.
    async fn descendants(&self, account: AccountId, name: &str) -> Result<Vec<(Mailbox, u64)>, Error> {
        let entries = self.at(account).await?.scan(&Scan::prefix(&keys::mailbox_children(account, name))).await?;
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let bytes: [u8; 4] =
                entry.value.as_slice().try_into().map_err(|_| crate::corrupt(&entry.key, "mailbox id"))?;
            out.push(self.mailbox_entry(account, MailboxId::from_be_bytes(bytes)).await?);
        }
        Ok(out)
    }

    /// Adds to `batch` the ancestors of `name` that do not exist yet; returns the id of
    /// its parent and the mailboxes created.
    async fn add_missing_parents(
        &self,
        batch: &mut Batch,
        account: AccountId,
        name: &str,
        now: u64,
    ) -> Result<(Option<MailboxId>, Vec<(MailboxId, ChangeKind)>), Error> {
        let mut parent = None;
        let mut created = Vec::new();
        for (at, _) in name.match_indices(DELIMITER) {
            let path = &name[..at];
            let existing = if created.is_empty() { self.mailbox_id_by_name(account, path).await? } else { None };
            parent = match existing {
                Some(id) => Some(id),
                None => {
                    let id = self.next_mailbox_id(account).await?;
                    add_mailbox(batch, account, &new_mailbox(id, path, parent, None, now));
                    created.push((id, ChangeKind::Created));
                    Some(id)
                }
            };
        }
        Ok((parent, created))
    }

    /// Counts `n_new` mailboxes created by `batch` against [`crate::Limits::mailboxes_max`],
    /// inside the commit (a bounded counter; the tree key already serialises the tree's
    /// changes, so the count an old account gets from a scan is exact).
    async fn count_new_mailboxes(&self, batch: &mut Batch, account: AccountId, n_new: usize) -> Result<(), Error> {
        let key = keys::mailbox_count(account);
        if self.at(account).await?.get(&key).await?.is_none() {
            let n_mailboxes = self.mailboxes(account).await?.len();
            batch.expect_absent(&key);
            batch.add(&key, n_mailboxes as i64);
        }
        batch.add_at_most(&key, n_new as i64, self.limits.mailboxes_max as i64);
        Ok(())
    }

    /// [`Mail::commit_change`] for a change that creates mailboxes: over the count, the
    /// account has all the mailboxes it may have.
    async fn commit_tree_change(
        &self,
        account: AccountId,
        batch: Batch,
        modseq: hameau_store::CounterRef,
    ) -> Result<Option<u64>, Error> {
        match self.commit_change(account, batch, modseq).await {
            Err(Error::Store(hameau_store::Error::CounterBound { .. })) => {
                Err(Error::TooManyMailboxes { max: self.limits.mailboxes_max })
            }
            other => other,
        }
    }

    /// The tree key's entry, read before a change of the tree ([`expect_tree`]): refused
    /// once the account's mail is deleted ([`keys::TREE_DELETED`]).
    async fn tree_entry(&self, account: AccountId) -> Result<Option<Entry>, Error> {
        let tree = self.at(account).await?.get(&keys::mailbox_tree(account)).await?;
        if tree.as_ref().is_some_and(|entry| entry.value == keys::TREE_DELETED) {
            return Err(Error::Cannot("the account has been deleted".into()));
        }
        Ok(tree)
    }

    /// A new mailbox id, in a commit of its own: ids are never reused, even if the
    /// creation then fails.
    async fn next_mailbox_id(&self, account: AccountId) -> Result<MailboxId, Error> {
        let id = self.at(account).await?.next_value(&keys::mailbox_ids(account), 1).await?;
        MailboxId::try_from(id).map_err(|_| Error::Cannot("the account has used every mailbox id".into()))
    }
}

/// Checks a name given for a new or renamed mailbox (see [`Mail::create_mailbox`]).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let invalid = || Error::InvalidName(name.to_string());
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(invalid());
    }
    for segment in name.split(DELIMITER) {
        let bad_char = |c: char| c.is_control() || c == '*' || c == '%';
        if segment.is_empty()
            || segment.len() > SEGMENT_BYTES_MAX
            || segment.chars().all(|c| c == '.')
            || segment.chars().any(bad_char)
        {
            return Err(invalid());
        }
    }
    let first = name.split(DELIMITER).next().unwrap_or_default();
    if first.eq_ignore_ascii_case(INBOX) && first != INBOX {
        return Err(invalid());
    }
    Ok(())
}

/// The name as stored: a first segment that is INBOX in any case is `INBOX`.
fn canonical(name: &str) -> String {
    let (first, rest) = match name.find(DELIMITER) {
        Some(at) => name.split_at(at),
        None => (name, ""),
    };
    if first.eq_ignore_ascii_case(INBOX) { format!("{INBOX}{rest}") } else { name.to_string() }
}

fn is_inbox(mailbox: &Mailbox) -> bool {
    mailbox.role == Some(Role::Inbox) || mailbox.name == INBOX
}

fn new_mailbox(id: MailboxId, name: &str, parent: Option<MailboxId>, role: Option<Role>, now: u64) -> Mailbox {
    Mailbox {
        id,
        name: name.to_string(),
        parent,
        role,
        uid_validity: uid_validity(now, id),
        subscribed: true,
        created_at: now,
    }
}

/// RFC 9051 §2.3.1.1: a mailbox created again under an old name must not show the old
/// UIDVALIDITY. The creation time (as Dovecot and Cyrus use) plus the never-reused id
/// guarantees it, even for two creations in the same second; 0 is not a valid value.
pub(crate) fn uid_validity(now: u64, id: MailboxId) -> u32 {
    match (now as u32).wrapping_add(id) {
        0 => 1,
        value => value,
    }
}

/// Adds a new mailbox's record and name to `batch`; the name must still be free.
fn add_mailbox(batch: &mut Batch, account: AccountId, mailbox: &Mailbox) {
    let name_key = keys::mailbox_name(account, &mailbox.name);
    batch.expect_absent(&name_key).set(&name_key, &mailbox.id.to_be_bytes());
    batch.set(&keys::mailbox(account, mailbox.id), &encode(mailbox));
}

/// Moves a mailbox from `old_name` to its new name in `batch`.
fn rename_one(batch: &mut Batch, account: AccountId, old_name: &str, renamed: &Mailbox, version: u64) {
    batch.expect_version(&keys::mailbox(account, renamed.id), version);
    batch.delete(&keys::mailbox_name(account, old_name));
    let name_key = keys::mailbox_name(account, &renamed.name);
    batch.expect_absent(&name_key).set(&name_key, &renamed.id.to_be_bytes());
    batch.set(&keys::mailbox(account, renamed.id), &encode(renamed));
}

/// Makes `batch` commit only if the tree did not change since `tree` was read, and
/// marks it changed (for the deliveries' cache too).
fn expect_tree(batch: &mut Batch, account: AccountId, tree: Option<&Entry>) {
    let key = keys::mailbox_tree(account);
    match tree {
        Some(entry) => batch.expect_version(&key, entry.version),
        None => batch.expect_absent(&key),
    };
    batch.set(&key, b"");
    crate::settings_changed(batch);
}

//! The commands on messages: APPEND (with MULTIAPPEND), CLOSE, EXPUNGE and UID EXPUNGE,
//! STORE (with CONDSTORE's UNCHANGEDSINCE), COPY and MOVE (with COPYUID).

use hameau_imap_session::{Code, Flag, MailboxName, SequenceSet, Session, Status, StoreAction};
use hameau_mailbox::{AccountId, Error as MailError, Ingest, Keyword, KeywordOp, Mailbox, Quota};

use crate::state::{Conn, No, Outcome, Reply, done};
use crate::view::{flags_of, keyword_of};

/// Most bytes of messages one commit of COPY holds in memory and stores at once; a single
/// larger message is copied alone. 16 MiB keeps a COPY of a whole mailbox from holding it all.
const COPY_BYTES_MAX: u64 = 16 * 1024 * 1024;

impl Conn<'_> {
    /// CLOSE (RFC 9051 §6.4.1): the `\Deleted` messages are expunged, silently, unless
    /// the mailbox is read-only; then back to the authenticated state.
    pub(crate) async fn close(&mut self) -> Outcome {
        if let Ok((user, selected)) = self.state.selected()
            && !selected.read_only
        {
            let deleted: Vec<u32> =
                selected.entries.iter().filter(|e| e.has(&Keyword::Deleted)).map(|e| e.uid).collect();
            if !deleted.is_empty() {
                self.ctx.mail.expunge(user.account, selected.id, &deleted).await?;
            }
        }
        self.state.unselect();
        done("CLOSE completed")
    }

    pub(crate) async fn append(
        &mut self,
        session: &mut Session,
        name: MailboxName,
        messages: Vec<hameau_imap_session::AppendMessage>,
    ) -> Outcome {
        let account = self.account()?;
        let Some(mailbox) = self.ctx.mail.mailbox_by_name(account, name.as_str()).await? else {
            return Err(No::new(Some(Code::TryCreate), format!("No mailbox named {name}")));
        };
        let now = self.now();
        let quota = self.user_quota()?;
        let deliveries = messages
            .into_iter()
            .map(|message| {
                let keywords = message.flags.iter().filter_map(keyword_of).collect();
                let received_at = message.date.map_or(now, |date| date.to_unix().max(0) as u64);
                (
                    account,
                    Ingest {
                        raw: message.data.into(),
                        mailboxes: vec![mailbox.id],
                        keywords,
                        received_at,
                        quota: quota.clone(),
                    },
                )
            })
            .collect();
        let stored = self.ctx.mail.ingest_many(deliveries).await?;
        let uids: Vec<u32> = stored.iter().filter_map(|ingested| ingested.uids.first().map(|(_, uid)| *uid)).collect();
        self.refresh(session, true).await;
        let mut sorted = uids;
        sorted.sort_unstable();
        match SequenceSet::from_sorted(sorted) {
            Some(set) => Ok((Reply::AppendUid(mailbox.uid_validity, set), "APPEND completed".into())),
            None => done("APPEND completed"),
        }
    }

    pub(crate) async fn expunge(&mut self, session: &mut Session, uids: Option<SequenceSet>) -> Outcome {
        let (user, selected) = self.state.selected()?;
        let account = user.account;
        if selected.read_only {
            return Err(No::new(Some(Code::ReadOnly), "The mailbox is read-only"));
        }
        let indexes: Vec<usize> = match &uids {
            Some(set) => selected.resolve(set, true),
            None => (0..selected.entries.len()).collect(),
        };
        let deleted: Vec<u32> = indexes
            .iter()
            .map(|index| &selected.entries[*index])
            .filter(|entry| entry.has(&Keyword::Deleted))
            .map(|entry| entry.uid)
            .collect();
        if !deleted.is_empty() {
            self.ctx.mail.expunge(account, selected.id, &deleted).await?;
        }
        self.refresh(session, true).await;
        done("EXPUNGE completed")
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn store(
        &mut self,
        session: &mut Session,
        uid: bool,
        set: &SequenceSet,
        action: StoreAction,
        silent: bool,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Outcome {
        let session_enabled = session.enabled();
        let condstore = session_enabled.condstore || unchanged_since.is_some();
        let (user, selected) = self.state.selected_mut()?;
        let account = user.account;
        if selected.read_only {
            return Err(No::new(Some(Code::ReadOnly), "The mailbox is read-only"));
        }
        if !uid && !set.is_saved() && !set.fits(selected.entries.len() as u32) {
            return Err(No::new(None, "Invalid message sequence number"));
        }
        let indexes = selected.resolve(set, uid);
        let uids: Vec<u32> = indexes.iter().map(|index| selected.entries[*index].uid).collect();
        let keywords: Vec<Keyword> = flags.iter().filter_map(keyword_of).collect();
        let op = match action {
            StoreAction::Add => KeywordOp::Add,
            StoreAction::Remove => KeywordOp::Remove,
            StoreAction::Replace => KeywordOp::Replace,
        };
        let outcome = if uids.is_empty() {
            None
        } else {
            Some(self.ctx.mail.store_keywords(account, selected.id, &uids, op, &keywords, unchanged_since).await?)
        };
        let mut modified = Vec::new();
        if let Some(outcome) = &outcome {
            for entry in &outcome.updated {
                if let Some(seq) = selected.seq_of(entry.uid) {
                    selected.entries[seq as usize - 1] = entry.clone();
                }
            }
            modified = outcome.modified.clone();
        }
        for index in &indexes {
            let entry = &selected.entries[*index];
            if modified.contains(&entry.uid) {
                continue;
            }
            let changed = outcome.as_ref().is_some_and(|o| o.updated.iter().any(|u| u.uid == entry.uid));
            // .SILENT: no FETCH, except that CONDSTORE still reports the new MODSEQ.
            if silent && !(condstore && changed) {
                continue;
            }
            let mut out = session.untagged();
            let mut fetch = out.fetch(*index as u32 + 1);
            if uid {
                fetch.uid(entry.uid);
            }
            if !silent {
                fetch.flags(&flags_of(&entry.keywords), selected.is_recent(entry.uid, session_enabled));
            }
            if condstore {
                fetch.modseq(entry.modseq);
            }
        }
        self.refresh(session, uid).await;
        if !modified.is_empty() {
            let numbers: Vec<u32> = if uid {
                modified
            } else {
                let (_, selected) = self.state.selected()?;
                let mut seqs: Vec<u32> = modified.iter().filter_map(|uid| selected.seq_of(*uid)).collect();
                seqs.sort_unstable();
                seqs
            };
            if let Some(set) = SequenceSet::from_sorted(numbers) {
                return Ok((Reply::Modified(set), "Conditional STORE failed for some messages".into()));
            }
        }
        done("STORE completed")
    }

    pub(crate) async fn copy(
        &mut self,
        session: &mut Session,
        uid: bool,
        set: &SequenceSet,
        name: MailboxName,
        moving: bool,
    ) -> Outcome {
        let (user, selected) = self.state.selected()?;
        let account = user.account;
        let Some(target) = self.ctx.mail.mailbox_by_name(account, name.as_str()).await? else {
            return Err(No::new(Some(Code::TryCreate), format!("No mailbox named {name}")));
        };
        if moving && selected.read_only {
            return Err(No::new(Some(Code::ReadOnly), "The mailbox is read-only"));
        }
        if !uid && !set.is_saved() && !set.fits(selected.entries.len() as u32) {
            return Err(No::new(None, "Invalid message sequence number"));
        }
        let uids: Vec<u32> = selected.resolve(set, uid).iter().map(|index| selected.entries[*index].uid).collect();
        if uids.is_empty() {
            return done(if moving { "MOVE completed (nothing to move)" } else { "COPY completed (nothing to copy)" });
        }
        let copied = if moving {
            self.ctx.mail.move_messages(account, selected.id, &uids, target.id).await?
        } else {
            self.copy_as_new(selected.id, &uids, &target).await?
        };
        let source = SequenceSet::from_sorted(copied.pairs.iter().map(|(from, _)| *from));
        let mut destination_uids: Vec<u32> = copied.pairs.iter().map(|(_, to)| *to).collect();
        destination_uids.sort_unstable();
        let destination = SequenceSet::from_sorted(destination_uids);
        let (Some(source), Some(destination)) = (source, destination) else {
            return done(if moving { "MOVE completed" } else { "COPY completed" });
        };
        if moving {
            // RFC 6851 §4.3: COPYUID in an untagged OK, then the expunges, then the tagged OK.
            let code = Code::CopyUid { uid_validity: copied.uid_validity, source: &source, destination: &destination };
            session.untagged().status(Status::Ok, Some(code), "Moved");
            self.refresh(session, true).await;
            return done("MOVE completed");
        }
        self.refresh(session, uid).await;
        Ok((Reply::CopyUid(copied.uid_validity, source, destination), "COPY completed".into()))
    }

    /// COPY (RFC 9051 §6.4.7): each copy is a new message with flags of its own. The
    /// store's `copy` puts one email in both mailboxes, as JMAP has it, so that the copy would
    /// share the original's keywords: the usual "COPY to Archives, then STORE \Deleted and
    /// EXPUNGE" of clients without MOVE would mark the archived copy `\Deleted`, and the next
    /// EXPUNGE there would destroy it. So the messages are stored anew (the blob store keeps
    /// one copy of the bytes), in commits of at most `COPY_BYTES_MAX`; if a commit fails,
    /// the earlier ones are expunged again so that a failed COPY leaves no copies.
    async fn copy_as_new(
        &self,
        from: hameau_mailbox::MailboxId,
        uids: &[u32],
        target: &Mailbox,
    ) -> Result<hameau_mailbox::Copied, No> {
        let account = self.account()?;
        let quota = self.user_quota()?;
        let entries = self.ctx.mail.uid_entries(account, from, uids).await?;
        let mut pairs = Vec::with_capacity(entries.len());
        let mut modseq = 0;
        let mut rest = entries.as_slice();
        while !rest.is_empty() {
            let mut bytes = 0u64;
            let count = rest
                .iter()
                .take_while(|entry| {
                    bytes += u64::from(entry.size);
                    bytes <= COPY_BYTES_MAX
                })
                .count()
                .max(1);
            let (chunk, after) = rest.split_at(count);
            rest = after;
            match self.copy_chunk(account, chunk, target, &quota).await {
                Ok(copied) => {
                    for (entry, ingested) in chunk.iter().zip(copied) {
                        modseq = modseq.max(ingested.modseq);
                        if let Some((_, uid)) = ingested.uids.first() {
                            pairs.push((entry.uid, *uid));
                        }
                    }
                }
                Err(error) => {
                    let made: Vec<u32> = pairs.iter().map(|(_, to)| *to).collect();
                    if !made.is_empty()
                        && let Err(e) = self.ctx.mail.expunge(account, target.id, &made).await
                    {
                        tracing::error!(error = %e, "imap: undoing a failed COPY");
                    }
                    return Err(error.into());
                }
            }
        }
        Ok(hameau_mailbox::Copied { uid_validity: target.uid_validity, pairs, modseq })
    }

    /// One commit of `copy_as_new`.
    async fn copy_chunk(
        &self,
        account: AccountId,
        chunk: &[hameau_mailbox::UidEntry],
        target: &Mailbox,
        quota: &Quota,
    ) -> Result<Vec<hameau_mailbox::Ingested>, MailError> {
        let mut deliveries = Vec::with_capacity(chunk.len());
        for entry in chunk {
            let raw = self.ctx.mail.raw(account, entry.email).await?;
            let ingest = Ingest {
                raw: raw.into(),
                mailboxes: vec![target.id],
                keywords: entry.keywords.clone(),
                received_at: entry.received_at,
                quota: quota.clone(),
            };
            deliveries.push((account, ingest));
        }
        self.ctx.mail.ingest_many(deliveries).await
    }
}

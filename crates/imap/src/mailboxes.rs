//! The commands on mailboxes: SELECT and EXAMINE (with CONDSTORE and QRESYNC), CREATE,
//! DELETE, RENAME, SUBSCRIBE, LIST and LSUB, STATUS, and the quotas (RFC 9208).

use hameau_imap_session::list_match::Pattern;
use hameau_imap_session::{
    Code, Flag, ListCommand, ListItem, MailboxAttribute, MailboxName, QuotaResource, SelectParams, SequenceSet,
    Session, SpecialUse, Status, StatusItem,
};
use hameau_mailbox::{Keyword, Mailbox, Role};

use crate::state::{Conn, No, Outcome, Reply, State, done};
use crate::view::{self, Selected, flags_of};

impl Conn<'_> {
    async fn mailbox_named(&self, name: &MailboxName) -> Result<Mailbox, No> {
        self.ctx
            .mail
            .mailbox_by_name(self.account()?, name.as_str())
            .await?
            .ok_or_else(|| No::new(Some(Code::NonExistent), format!("No mailbox named {name}")))
    }

    pub(crate) async fn select(
        &mut self,
        session: &mut Session,
        name: MailboxName,
        read_only: bool,
        params: SelectParams,
    ) -> Outcome {
        let previous = self.state.unselect();
        let account = self.account()?;
        let mailbox = self.mailbox_named(&name).await?;
        let mail = &self.ctx.mail;
        let (entries, highest_modseq) = match previous.filter(|previous| previous.id == mailbox.id) {
            // Selected again (clients do it to poll): the view is brought up to date from
            // the change log instead of reading the whole index again.
            Some(previous) => {
                let delta = mail.mailbox_changes_since(account, mailbox.id, previous.highest_modseq).await?;
                let mut entries = previous.entries;
                if !delta.expunged.is_empty() {
                    let gone: std::collections::HashSet<u32> = delta.expunged.iter().copied().collect();
                    entries.retain(|entry| !gone.contains(&entry.uid));
                }
                for entry in delta.changed {
                    match entries.binary_search_by_key(&entry.uid, |e| e.uid) {
                        Ok(index) => entries[index] = entry,
                        Err(index) => entries.insert(index, entry),
                    }
                }
                (entries, delta.highest_modseq.max(previous.highest_modseq))
            }
            None => {
                // Everything up to this modseq is in what is read next.
                let highest_modseq = mail.modseq(account).await?;
                (mail.uids(account, mailbox.id).await?, highest_modseq)
            }
        };
        let uid_next = mail.uid_next(account, mailbox.id).await?;
        let enabled = session.enabled();
        let condstore = enabled.condstore || params.condstore || params.qresync.is_some();
        // \Recent (IMAP4rev1): SELECT claims the messages no session has seen; EXAMINE
        // shows them without claiming.
        let last_uid = entries.last().map_or(0, |entry| entry.uid);
        let recent_from = if read_only {
            mail.recent_mark(account, mailbox.id).await?
        } else {
            mail.claim_recent(account, mailbox.id, last_uid).await?
        };
        let recent: Vec<u32> = entries.iter().map(|entry| entry.uid).filter(|uid| *uid > recent_from).collect();
        {
            let mut out = session.untagged();
            out.flags(&flags_list());
            out.exists(entries.len() as u32);
            if !enabled.imap4rev2 {
                out.recent(recent.len() as u32);
            }
            let permanent = if read_only { Vec::new() } else { flags_list() };
            out.status(
                Status::Ok,
                Some(Code::PermanentFlags { flags: &permanent, keywords_allowed: !read_only }),
                "Flags permitted",
            );
            out.status(Status::Ok, Some(Code::UidValidity(mailbox.uid_validity)), "UIDs valid");
            out.status(Status::Ok, Some(Code::UidNext(uid_next)), "Predicted next UID");
            out.status(Status::Ok, Some(Code::HighestModSeq(highest_modseq.max(1))), "Highest");
        }
        let mut selected = Selected {
            id: mailbox.id,
            read_only,
            entries,
            highest_modseq,
            saved: Vec::new(),
            recent,
            pending_expunges: false,
        };
        // QRESYNC (RFC 7162 §3.2.5): what changed since the client's modseq, and what vanished.
        if let Some(qresync) = params.qresync
            && enabled.qresync
            && qresync.uid_validity == mailbox.uid_validity
        {
            let delta = mail.mailbox_changes_since(account, mailbox.id, qresync.modseq).await?;
            let largest = delta.expunged.iter().copied().max().unwrap_or(0).max(selected.uid_next_hint());
            let known = qresync.known_uids.as_ref().map(|known| known.normalized(largest));
            let vanished: Vec<u32> = delta
                .expunged
                .iter()
                .copied()
                .filter(|uid| known.as_deref().is_none_or(|known| view::in_ranges(known, *uid)))
                .collect();
            let mut vanished = vanished;
            vanished.sort_unstable();
            vanished.dedup();
            if let Some(set) = SequenceSet::from_sorted(vanished) {
                session.untagged().vanished(true, &set);
            }
            for entry in &delta.changed {
                if let Some(seq) = selected.seq_of(entry.uid) {
                    let current = &selected.entries[seq as usize - 1];
                    session
                        .untagged()
                        .fetch(seq)
                        .uid(current.uid)
                        .flags(&flags_of(&current.keywords), selected.is_recent(current.uid, enabled))
                        .modseq(current.modseq);
                }
            }
        }
        let _ = condstore;
        selected.read_only = read_only;
        self.state.select(selected);
        let code = if read_only { Code::ReadOnly } else { Code::ReadWrite };
        Ok((Reply::Plain(Some(code)), if read_only { "EXAMINE completed" } else { "SELECT completed" }.into()))
    }

    pub(crate) async fn create(&mut self, name: MailboxName, special_use: &[SpecialUse]) -> Outcome {
        let role = match special_use {
            [] => None,
            [one] => {
                Some(role_of(*one).ok_or_else(|| No::new(Some(Code::UseAttr), "This special use is not supported"))?)
            }
            _ => return Err(No::new(Some(Code::UseAttr), "One special use per mailbox")),
        };
        let name = name.as_str().trim_end_matches(hameau_mailbox::DELIMITER);
        let mailbox = self.ctx.mail.create_mailbox(self.account()?, name, role, self.now()).await?;
        // The store subscribes new mailboxes (JMAP shows them); in IMAP the subscription list
        // is the client's (RFC 9051 §6.3.7), and clients that subscribe what they create, or
        // read LSUB to know what the user chose, expect CREATE to leave it alone.
        self.ctx.mail.set_subscribed(self.account()?, mailbox.id, false).await?;
        done("CREATE completed")
    }

    pub(crate) async fn delete(&mut self, session: &mut Session, name: MailboxName) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        self.ctx.mail.delete_mailbox(self.account()?, mailbox.id).await?;
        if matches!(&self.state, State::Selected(_, selected) if selected.id == mailbox.id) {
            self.state.unselect();
            session.unselected();
        }
        done("DELETE completed")
    }

    pub(crate) async fn rename(&mut self, from: MailboxName, to: MailboxName) -> Outcome {
        let mailbox = self.mailbox_named(&from).await?;
        let to = to.as_str().trim_end_matches(hameau_mailbox::DELIMITER);
        self.ctx.mail.rename_mailbox(self.account()?, mailbox.id, to).await?;
        done("RENAME completed")
    }

    pub(crate) async fn subscribe(&mut self, name: MailboxName, subscribed: bool) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        self.ctx.mail.set_subscribed(self.account()?, mailbox.id, subscribed).await?;
        done(if subscribed { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" })
    }

    pub(crate) async fn list(&mut self, session: &mut Session, list: ListCommand, lsub: bool) -> Outcome {
        let delimiter = hameau_mailbox::DELIMITER;
        if !lsub && list.patterns.len() == 1 && list.patterns[0].is_empty() && !list.extended {
            // RFC 9051 §6.3.9: the hierarchy delimiter and root.
            session.untagged().list(&ListItem {
                attributes: &[MailboxAttribute::NoSelect],
                delimiter: Some(delimiter),
                mailbox: "",
                child_info_subscribed: false,
                old_name: None,
            });
            return done("LIST completed");
        }
        let account = self.account()?;
        let mut mailboxes = self.ctx.mail.mailboxes(account).await?;
        mailboxes.sort_by(|a, b| a.name.cmp(&b.name));
        // Compiled once; each name is then matched in time linear in its length (the
        // session bounded the patterns' length, `imap.list_pattern_bytes_max`).
        let patterns: Vec<Pattern> = list
            .patterns
            .iter()
            .map(|pattern| Pattern::new(&format!("{}{pattern}", list.reference), delimiter))
            .collect();
        // \HasChildren (RFC 3348): the names that are a proper prefix, up to a delimiter,
        // of another name; one pass over all names.
        let mut parents: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for mailbox in &mailboxes {
            for (at, _) in mailbox.name.match_indices(delimiter) {
                parents.insert(&mailbox.name[..at]);
            }
        }
        let subscribed_only = lsub || list.selection.subscribed;
        for mailbox in &mailboxes {
            if !patterns.iter().any(|pattern| pattern.matches(&mailbox.name)) {
                continue;
            }
            if subscribed_only && !mailbox.subscribed {
                continue;
            }
            if list.selection.special_use && mailbox.role.is_none_or(|role| role == Role::Inbox) {
                continue;
            }
            let children = parents.contains(mailbox.name.as_str());
            let mut attributes =
                vec![if children { MailboxAttribute::HasChildren } else { MailboxAttribute::HasNoChildren }];
            if let Some(special) = mailbox.role.and_then(special_use_of) {
                attributes.push(MailboxAttribute::SpecialUse(special));
            }
            if mailbox.subscribed && (list.returns.subscribed || list.selection.subscribed) && !lsub {
                attributes.push(MailboxAttribute::Subscribed);
            }
            let item = ListItem {
                attributes: &attributes,
                delimiter: Some(delimiter),
                mailbox: &mailbox.name,
                child_info_subscribed: false,
                old_name: None,
            };
            if lsub {
                session.untagged().lsub(&item);
            } else {
                session.untagged().list(&item);
            }
            if let Some(items) = &list.returns.status {
                let values = self.status_values(mailbox, items).await?;
                session.untagged().mailbox_status(&mailbox.name, &values);
            }
        }
        done(if lsub { "LSUB completed" } else { "LIST completed" })
    }

    async fn status_values(&self, mailbox: &Mailbox, items: &[StatusItem]) -> Result<Vec<(StatusItem, u64)>, No> {
        let status = self.ctx.mail.status(self.account()?, mailbox.id).await?;
        Ok(items
            .iter()
            .map(|item| {
                let value = match item {
                    StatusItem::Messages => u64::from(status.messages),
                    StatusItem::UidNext => u64::from(status.uid_next),
                    StatusItem::UidValidity => u64::from(status.uid_validity),
                    StatusItem::Unseen => u64::from(status.unseen),
                    StatusItem::Deleted => u64::from(status.deleted),
                    StatusItem::Size => status.size,
                    StatusItem::Recent => u64::from(status.recent),
                    StatusItem::HighestModSeq => status.highest_modseq.max(1),
                };
                (*item, value)
            })
            .collect())
    }

    pub(crate) async fn status(&mut self, session: &mut Session, name: MailboxName, items: &[StatusItem]) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        let values = self.status_values(&mailbox, items).await?;
        session.untagged().mailbox_status(&mailbox.name, &values);
        done("STATUS completed")
    }

    pub(crate) async fn quota(&mut self, session: &mut Session, mailbox: Option<MailboxName>) -> Outcome {
        let account = self.account()?;
        if let Some(name) = &mailbox {
            self.mailbox_named(name).await?;
        }
        let quota = self.user_quota()?.account_bytes_max;
        match (&mailbox, quota) {
            (Some(name), None) => {
                session.untagged().quota_root(name.as_str(), &[]);
                return done("GETQUOTAROOT completed (no quota)");
            }
            (None, None) => return Err(No::new(Some(Code::NonExistent), "No quota is set for this account")),
            (Some(name), Some(_)) => session.untagged().quota_root(name.as_str(), &[""]),
            (None, Some(_)) => {}
        }
        let used = self.ctx.mail.quota_used(account).await?;
        let limit = quota.unwrap_or(0);
        session
            .untagged()
            .quota("", &[QuotaResource { name: "STORAGE", usage: used.div_ceil(1024), limit: limit / 1024 }]);
        done("GETQUOTA completed")
    }
}

/// The keywords `* FLAGS` and `PERMANENTFLAGS` announce after the system flags (in the
/// registry's spelling): the ones clients set.
const ANNOUNCED_KEYWORDS: [Keyword; 4] = [Keyword::Forwarded, Keyword::Junk, Keyword::NotJunk, Keyword::MdnSent];

/// The flags of `* FLAGS` and `PERMANENTFLAGS` (which adds `\*`): the flags and keywords
/// every mailbox accepts.
fn flags_list() -> Vec<Flag> {
    let mut flags = flags_of(&Keyword::SYSTEM);
    flags.extend(ANNOUNCED_KEYWORDS.iter().filter_map(Keyword::registered).map(|k| Flag::Keyword(k.into())));
    flags
}

fn role_of(special: SpecialUse) -> Option<Role> {
    Some(match special {
        SpecialUse::Drafts => Role::Drafts,
        SpecialUse::Sent => Role::Sent,
        SpecialUse::Trash => Role::Trash,
        SpecialUse::Junk => Role::Junk,
        SpecialUse::Archive => Role::Archive,
        _ => return None,
    })
}

fn special_use_of(role: Role) -> Option<SpecialUse> {
    Some(match role {
        Role::Inbox => return None,
        Role::Drafts => SpecialUse::Drafts,
        Role::Sent => SpecialUse::Sent,
        Role::Trash => SpecialUse::Trash,
        Role::Junk => SpecialUse::Junk,
        Role::Archive => SpecialUse::Archive,
    })
}

//! What each command means over the mail model, for one connection.

use std::net::SocketAddr;

use hameau_imap_session::list_match::Pattern;
use hameau_imap_session::{
    Code, Command, CommandBody, Flag, ListCommand, ListItem, LoginError, MailboxAttribute, MailboxName, Namespace,
    QuotaResource, SelectParams, SequenceSet, Session, SpecialUse, Status, StatusItem, StoreAction,
};
use hameau_mailbox::{AccountId, Error as MailError, Ingest, Keyword, KeywordOp, Mailbox, Quota, Role};
use tokio::sync::watch;

use crate::Context;
use crate::server::Connection;
use crate::view::{self, Selected, flags_of, keyword_of};

/// Most bytes of messages one commit of COPY holds in memory and stores at once; a single
/// larger message is copied alone. 16 MiB keeps a COPY of a whole mailbox from holding it all.
const COPY_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The logged-in account.
pub struct User {
    pub account: AccountId,
    /// The account's and its tenant's limits, read at login: APPEND and COPY are counted
    /// against both inside the commit (docs/mail-model.md, Quotas).
    pub quota: Quota,
    changes: watch::Receiver<u64>,
}

/// One connection's state above the session: who is logged in, what is selected.
pub struct Conn<'a> {
    pub ctx: &'a Context,
    peer: SocketAddr,
    pub user: Option<User>,
    pub selected: Option<Selected>,
    /// Writing to the client failed in the middle of a command (FETCH streams its
    /// answer): the driver ends the connection with this error after the command.
    pub broken: Option<std::io::Error>,
}

/// A command's failure: the tagged `NO` to give.
pub struct No {
    pub code: Option<Code<'static>>,
    pub text: String,
}

impl No {
    pub fn new(code: Option<Code<'static>>, text: impl Into<String>) -> No {
        No { code, text: text.into() }
    }
}

impl From<MailError> for No {
    fn from(error: MailError) -> No {
        match error {
            MailError::NoMailbox(_) => No::new(Some(Code::NonExistent), "No such mailbox"),
            MailError::NoEmail(_) => No::new(Some(Code::ExpungeIssued), "Some messages were expunged meanwhile"),
            MailError::MailboxExists(name) => No::new(Some(Code::AlreadyExists), format!("{name} exists already")),
            MailError::OverQuota { .. } => No::new(Some(Code::OverQuota), "Quota exceeded"),
            MailError::Busy => No::new(Some(Code::InUse), "Mailbox busy, try again"),
            MailError::InvalidName(why) => No::new(Some(Code::Cannot), format!("Invalid mailbox name: {why}")),
            MailError::HasChildren(why) => No::new(Some(Code::HasChildren), why),
            MailError::Cannot(why) => No::new(Some(Code::Cannot), why),
            MailError::UidsExhausted(_) => No::new(Some(Code::Limit), "This mailbox has no UIDs left"),
            MailError::TooManyMailboxes { max } => {
                No::new(Some(Code::Limit), format!("This account has {max} mailboxes, the most it may have"))
            }
            MailError::TooManyKeywords { max } => {
                No::new(Some(Code::Limit), format!("A message may have at most {max} flags and keywords"))
            }
            MailError::TooManyDeliveries { n, max } => {
                No::new(Some(Code::Limit), format!("{n} messages at once, at most {max}: send fewer per command"))
            }
            // RFC 5530 §3: CANNOT, it can never succeed (the message breaks the MIME parser,
            // or its headers are too large to index); the session goes on.
            MailError::Unstorable(why) => No::new(Some(Code::Cannot), format!("This message cannot be stored: {why}")),
            error => {
                tracing::error!(error = %error, "imap: mail store error");
                No::new(Some(Code::ServerBug), "Internal error, try again later")
            }
        }
    }
}

/// The response code of a successful command; the set-carrying ones own their sets.
pub enum Reply {
    Plain(Option<Code<'static>>),
    AppendUid(u32, SequenceSet),
    CopyUid(u32, SequenceSet, SequenceSet),
    Modified(SequenceSet),
}

pub type Outcome = Result<(Reply, String), No>;

pub fn done(text: &str) -> Outcome {
    Ok((Reply::Plain(None), text.to_string()))
}

impl<'a> Conn<'a> {
    pub fn new(ctx: &'a Context, peer: SocketAddr) -> Conn<'a> {
        Conn { ctx, peer, user: None, selected: None, broken: None }
    }

    fn now(&self) -> u64 {
        (self.ctx.now_s)()
    }

    /// Checks a login through [`hameau_directory::Directory::login`]: slowed and limited
    /// per client address and per account (its canonical key, whatever the spelling of
    /// the address), a success taking back only its own failures.
    pub async fn login(&mut self, authzid: Option<String>, username: &str, password: &str) -> Result<(), LoginError> {
        if authzid.as_deref().is_some_and(|authzid| !authzid.eq_ignore_ascii_case(username)) {
            return Err(LoginError::AuthorizationFailed);
        }
        let now = self.now();
        let account = match self.ctx.directory.login(self.peer.ip(), username, password, now).await {
            Ok(account) => account,
            Err(hameau_directory::Error::Refused { retry_after_s }) => {
                self.ctx.metrics.auth_refused.inc();
                tracing::info!(peer = %self.peer, retry_after_s, "imap login refused: too many failures");
                return Err(LoginError::Failed);
            }
            Err(hameau_directory::Error::Unauthenticated) => {
                self.ctx.metrics.auth_failures.inc();
                tracing::info!(peer = %self.peer, "imap login failed");
                return Err(LoginError::Failed);
            }
            Err(e) => {
                tracing::error!(error = %e, "imap login: directory error");
                return Err(LoginError::Unavailable);
            }
        };
        let tenant_bytes_max = match self.ctx.directory.resolve_recipient(&account.address).await {
            Ok(recipient) => recipient.and_then(|recipient| recipient.tenant_quota_bytes),
            Err(e) => {
                tracing::error!(error = %e, "imap login: reading the tenant's quota");
                return Err(LoginError::Unavailable);
            }
        };
        let quota =
            Quota { account_bytes_max: account.quota_bytes, tenant: Some(account.tenant.clone()), tenant_bytes_max };
        if let Err(e) = self.ctx.mail.ensure_account(account.id, now).await {
            tracing::error!(error = %e, "imap login: creating the mailboxes");
            return Err(LoginError::Unavailable);
        }
        let changes = self.ctx.mail.subscribe(account.id);
        self.user = Some(User { account: account.id, quota, changes });
        Ok(())
    }

    /// Waits until the logged-in account changes; false if it never can.
    pub async fn changed(&mut self) -> bool {
        match &mut self.user {
            Some(user) => user.changes.changed().await.is_ok(),
            None => std::future::pending().await,
        }
    }

    fn user_quota(&self) -> Quota {
        self.user.as_ref().expect("the session lets only authenticated commands through").quota.clone()
    }

    fn account(&self) -> AccountId {
        self.user.as_ref().expect("the session lets only authenticated commands through").account
    }

    /// Runs one command and completes it. `connection` takes what a long answer (FETCH)
    /// writes before the command ends.
    pub async fn run(&mut self, session: &mut Session, connection: &mut Connection, command: Command) {
        let Command { tag, body } = command;
        let outcome = self.dispatch(session, connection, &tag, body).await;
        match outcome {
            Ok((reply, text)) => {
                let code = match &reply {
                    Reply::Plain(code) => *code,
                    Reply::AppendUid(uid_validity, uids) => Some(Code::AppendUid { uid_validity: *uid_validity, uids }),
                    Reply::CopyUid(uid_validity, source, destination) => {
                        Some(Code::CopyUid { uid_validity: *uid_validity, source, destination })
                    }
                    Reply::Modified(set) => Some(Code::Modified(set)),
                };
                session.complete(&tag, Status::Ok, code, &text);
            }
            Err(no) => session.complete(&tag, Status::No, no.code, &no.text),
        }
    }

    async fn dispatch(
        &mut self,
        session: &mut Session,
        connection: &mut Connection,
        tag: &str,
        body: CommandBody,
    ) -> Outcome {
        match body {
            CommandBody::Noop | CommandBody::Check => {
                self.refresh(session, true).await;
                done(if matches!(body, CommandBody::Noop) { "NOOP completed" } else { "CHECK completed" })
            }
            CommandBody::Select { mailbox, read_only, params } => {
                self.select(session, mailbox, read_only, params).await
            }
            CommandBody::Create { mailbox, special_use } => self.create(mailbox, &special_use).await,
            CommandBody::Delete { mailbox } => self.delete(session, mailbox).await,
            CommandBody::Rename { from, to } => self.rename(from, to).await,
            CommandBody::Subscribe { mailbox } => self.subscribe(mailbox, true).await,
            CommandBody::Unsubscribe { mailbox } => self.subscribe(mailbox, false).await,
            CommandBody::List(list) => self.list(session, list, false).await,
            CommandBody::Lsub { reference, pattern } => {
                let list = ListCommand { reference, patterns: vec![pattern], ..ListCommand::default() };
                self.list(session, list, true).await
            }
            CommandBody::Namespace => {
                session.untagged().namespace(
                    &[Namespace { prefix: "", delimiter: Some(hameau_mailbox::DELIMITER) }],
                    &[],
                    &[],
                );
                done("NAMESPACE completed")
            }
            CommandBody::Status { mailbox, items } => self.status(session, mailbox, &items).await,
            CommandBody::Append { mailbox, messages } => self.append(session, mailbox, messages).await,
            CommandBody::Id { .. } => {
                session.untagged().id(Some(&[("name", Some("Hameau")), ("vendor", Some("Hameau"))]));
                done("ID completed")
            }
            CommandBody::Close => {
                if let Some(selected) = &self.selected
                    && !selected.read_only
                {
                    let deleted: Vec<u32> =
                        selected.entries.iter().filter(|e| e.has(&Keyword::Deleted)).map(|e| e.uid).collect();
                    if !deleted.is_empty() {
                        self.ctx.mail.expunge(self.account(), selected.id, &deleted).await?;
                    }
                }
                self.selected = None;
                done("CLOSE completed")
            }
            CommandBody::Unselect => {
                self.selected = None;
                done("UNSELECT completed")
            }
            CommandBody::Expunge { uids } => self.expunge(session, uids).await,
            CommandBody::Fetch { uid, set, attributes, changed_since, vanished } => {
                let request =
                    crate::fetch::Request { uid, set: &set, attributes: &attributes, changed_since, vanished };
                crate::fetch::fetch(self, session, connection, request).await
            }
            CommandBody::Store { uid, set, action, silent, flags, unchanged_since } => {
                self.store(session, uid, &set, action, silent, &flags, unchanged_since).await
            }
            CommandBody::Copy { uid, set, mailbox } => self.copy(session, uid, &set, mailbox, false).await,
            CommandBody::Move { uid, set, mailbox } => self.copy(session, uid, &set, mailbox, true).await,
            CommandBody::Search { uid, returns, criteria, .. } => {
                crate::search::search(self, session, tag, uid, returns, &criteria).await
            }
            CommandBody::Sort { uid, criteria, search, .. } => {
                crate::search::sort(self, session, uid, &criteria, &search).await
            }
            CommandBody::Thread { uid, algorithm, search, .. } => {
                crate::search::thread(self, session, uid, algorithm, &search).await
            }
            CommandBody::GetQuota { root } => {
                if !root.is_empty() {
                    return Err(No::new(Some(Code::NonExistent), "No such quota root"));
                }
                self.quota(session, None).await
            }
            CommandBody::GetQuotaRoot { mailbox } => self.quota(session, Some(mailbox)).await,
            CommandBody::SetQuota { .. } => {
                Err(No::new(Some(Code::NoPerm), "Quotas are set by the administrator (hameau account update)"))
            }
            other => {
                tracing::error!(command = ?other, "imap: command reached the driver unexpectedly");
                Err(No::new(Some(Code::ServerBug), "Unexpected command"))
            }
        }
    }

    async fn mailbox_named(&self, name: &MailboxName) -> Result<Mailbox, No> {
        self.ctx
            .mail
            .mailbox_by_name(self.account(), name.as_str())
            .await?
            .ok_or_else(|| No::new(Some(Code::NonExistent), format!("No mailbox named {name}")))
    }

    async fn select(
        &mut self,
        session: &mut Session,
        name: MailboxName,
        read_only: bool,
        params: SelectParams,
    ) -> Outcome {
        let previous = self.selected.take();
        let account = self.account();
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
        self.selected = Some(selected);
        let code = if read_only { Code::ReadOnly } else { Code::ReadWrite };
        Ok((Reply::Plain(Some(code)), if read_only { "EXAMINE completed" } else { "SELECT completed" }.into()))
    }

    async fn create(&mut self, name: MailboxName, special_use: &[SpecialUse]) -> Outcome {
        let role = match special_use {
            [] => None,
            [one] => {
                Some(role_of(*one).ok_or_else(|| No::new(Some(Code::UseAttr), "This special use is not supported"))?)
            }
            _ => return Err(No::new(Some(Code::UseAttr), "One special use per mailbox")),
        };
        let name = name.as_str().trim_end_matches(hameau_mailbox::DELIMITER);
        let mailbox = self.ctx.mail.create_mailbox(self.account(), name, role, self.now()).await?;
        // The store subscribes new mailboxes (JMAP shows them); in IMAP the subscription list
        // is the client's (RFC 9051 §6.3.7), and clients that subscribe what they create, or
        // read LSUB to know what the user chose, expect CREATE to leave it alone.
        self.ctx.mail.set_subscribed(self.account(), mailbox.id, false).await?;
        done("CREATE completed")
    }

    async fn delete(&mut self, session: &mut Session, name: MailboxName) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        self.ctx.mail.delete_mailbox(self.account(), mailbox.id).await?;
        if self.selected.as_ref().is_some_and(|selected| selected.id == mailbox.id) {
            self.selected = None;
            session.unselected();
        }
        done("DELETE completed")
    }

    async fn rename(&mut self, from: MailboxName, to: MailboxName) -> Outcome {
        let mailbox = self.mailbox_named(&from).await?;
        let to = to.as_str().trim_end_matches(hameau_mailbox::DELIMITER);
        self.ctx.mail.rename_mailbox(self.account(), mailbox.id, to).await?;
        done("RENAME completed")
    }

    async fn subscribe(&mut self, name: MailboxName, subscribed: bool) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        self.ctx.mail.set_subscribed(self.account(), mailbox.id, subscribed).await?;
        done(if subscribed { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" })
    }

    async fn list(&mut self, session: &mut Session, list: ListCommand, lsub: bool) -> Outcome {
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
        let account = self.account();
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
        let status = self.ctx.mail.status(self.account(), mailbox.id).await?;
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

    async fn status(&mut self, session: &mut Session, name: MailboxName, items: &[StatusItem]) -> Outcome {
        let mailbox = self.mailbox_named(&name).await?;
        let values = self.status_values(&mailbox, items).await?;
        session.untagged().mailbox_status(&mailbox.name, &values);
        done("STATUS completed")
    }

    async fn append(
        &mut self,
        session: &mut Session,
        name: MailboxName,
        messages: Vec<hameau_imap_session::AppendMessage>,
    ) -> Outcome {
        let account = self.account();
        let Some(mailbox) = self.ctx.mail.mailbox_by_name(account, name.as_str()).await? else {
            return Err(No::new(Some(Code::TryCreate), format!("No mailbox named {name}")));
        };
        let now = self.now();
        let quota = self.user_quota();
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

    async fn expunge(&mut self, session: &mut Session, uids: Option<SequenceSet>) -> Outcome {
        let account = self.account();
        let selected = self.selected.as_ref().expect("selected state");
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
    async fn store(
        &mut self,
        session: &mut Session,
        uid: bool,
        set: &SequenceSet,
        action: StoreAction,
        silent: bool,
        flags: &[Flag],
        unchanged_since: Option<u64>,
    ) -> Outcome {
        let account = self.account();
        let session_enabled = session.enabled();
        let condstore = session_enabled.condstore || unchanged_since.is_some();
        let selected = self.selected.as_mut().expect("selected state");
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
                let selected = self.selected.as_ref().expect("selected state");
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

    async fn copy(
        &mut self,
        session: &mut Session,
        uid: bool,
        set: &SequenceSet,
        name: MailboxName,
        moving: bool,
    ) -> Outcome {
        let account = self.account();
        let Some(target) = self.ctx.mail.mailbox_by_name(account, name.as_str()).await? else {
            return Err(No::new(Some(Code::TryCreate), format!("No mailbox named {name}")));
        };
        let selected = self.selected.as_ref().expect("selected state");
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
        let account = self.account();
        let quota = self.user_quota();
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
            match self.copy_chunk(chunk, target, &quota).await {
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
        chunk: &[hameau_mailbox::UidEntry],
        target: &Mailbox,
        quota: &Quota,
    ) -> Result<Vec<hameau_mailbox::Ingested>, MailError> {
        let account = self.account();
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

    async fn quota(&mut self, session: &mut Session, mailbox: Option<MailboxName>) -> Outcome {
        let account = self.account();
        if let Some(name) = &mailbox {
            self.mailbox_named(name).await?;
        }
        let quota = self.user_quota().account_bytes_max;
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

    /// Brings the selected mailbox up to date with the store and reports what changed:
    /// `FETCH` for flag changes, `EXISTS` for new messages, and when `expunges` are
    /// allowed (not during FETCH, STORE and SEARCH by sequence number, RFC 9051 §7.5.1)
    /// `EXPUNGE` or, under QRESYNC, `VANISHED`.
    pub async fn refresh(&mut self, session: &mut Session, expunges: bool) {
        let Some(user) = self.user.as_ref() else { return };
        let account = user.account;
        let Some(selected) = self.selected.as_mut() else { return };
        // The account's modseq as last notified: nothing committed since what we know.
        if *user.changes.borrow() <= selected.highest_modseq && !selected.pending_expunges {
            return;
        }
        let delta = match self.ctx.mail.mailbox_changes_since(account, selected.id, selected.highest_modseq).await {
            Ok(delta) => delta,
            Err(MailError::NoMailbox(_)) => {
                self.selected = None;
                session.unselected();
                session.untagged().status(Status::Ok, Some(Code::Closed), "The mailbox was deleted");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "imap: reading changes");
                return;
            }
        };
        let enabled = session.enabled();
        let mut pending_expunges = false;
        if !delta.expunged.is_empty() {
            if expunges {
                let mut gone: Vec<u32> =
                    delta.expunged.iter().copied().filter(|uid| selected.seq_of(*uid).is_some()).collect();
                gone.sort_unstable();
                gone.dedup();
                if enabled.qresync {
                    selected.entries.retain(|entry| gone.binary_search(&entry.uid).is_err());
                    if let Some(set) = SequenceSet::from_sorted(gone) {
                        session.untagged().vanished(false, &set);
                    }
                } else {
                    for uid in gone.iter().rev() {
                        if let Some(seq) = selected.seq_of(*uid) {
                            selected.entries.remove(seq as usize - 1);
                            session.untagged().expunge(seq);
                        }
                    }
                }
            } else {
                pending_expunges = true;
            }
        }
        let before = selected.entries.len();
        let last_uid = selected.entries.last().map_or(0, |entry| entry.uid);
        let mut added = Vec::new();
        for entry in delta.changed {
            if entry.uid > last_uid {
                added.push(entry);
            } else if let Some(seq) = selected.seq_of(entry.uid) {
                let recent = selected.is_recent(entry.uid, enabled);
                let current = &mut selected.entries[seq as usize - 1];
                if current.keywords != entry.keywords || current.modseq != entry.modseq {
                    let flags_changed = current.keywords != entry.keywords;
                    *current = entry;
                    if flags_changed || enabled.condstore {
                        let mut out = session.untagged();
                        let mut fetch = out.fetch(seq);
                        fetch.uid(current.uid).flags(&flags_of(&current.keywords), recent);
                        if enabled.condstore {
                            fetch.modseq(current.modseq);
                        }
                    }
                }
            }
        }
        added.sort_by_key(|entry| entry.uid);
        if let Some(newest) = added.last().map(|entry| entry.uid)
            && !selected.read_only
        {
            match self.ctx.mail.claim_recent(account, selected.id, newest).await {
                Ok(mark) => selected.recent.extend(added.iter().map(|entry| entry.uid).filter(|uid| *uid > mark)),
                Err(e) => tracing::error!(error = %e, "imap: claiming recent messages"),
            }
        }
        selected.entries.extend(added);
        let entries = &selected.entries;
        selected.recent.retain(|uid| entries.binary_search_by_key(uid, |entry| entry.uid).is_ok());
        if selected.entries.len() != before || (!delta.expunged.is_empty() && expunges) {
            session.untagged().exists(selected.entries.len() as u32);
            if !enabled.imap4rev2 {
                session.untagged().recent(selected.recent.len() as u32);
            }
        }
        selected.pending_expunges = pending_expunges;
        if !pending_expunges {
            selected.highest_modseq = selected.highest_modseq.max(delta.highest_modseq);
        }
    }
}

/// The keywords `* FLAGS` and `PERMANENTFLAGS` announce after the system flags (in the
/// registry's spelling): the ones clients set.
const ANNOUNCED_KEYWORDS: [Keyword; 4] = [Keyword::Forwarded, Keyword::Junk, Keyword::NotJunk, Keyword::MdnSent];

/// The flags of `* FLAGS` and `PERMANENTFLAGS` (which adds `\*`): the flags and keywords
/// every mailbox accepts.
fn flags_list() -> Vec<Flag> {
    let system = Keyword::SYSTEM.iter().flat_map(|keyword| view::flags_of(std::slice::from_ref(keyword)));
    let announced = ANNOUNCED_KEYWORDS.iter().filter_map(Keyword::registered).map(|k| Flag::Keyword(k.into()));
    system.chain(announced).collect()
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

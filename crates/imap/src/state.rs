//! One connection's state above the session: who is logged in and what is selected
//! ([`State`]), a command's outcome ([`Outcome`], [`No`]), the login, and [`Conn::refresh`],
//! which every command that reports changes calls. The commands (`commands` dispatching
//! to `mailboxes`, `messages`, `fetch` and `search`) sit above it; it imports none of them.

use std::net::SocketAddr;

use hameau_directory::LoginStamp;
use hameau_imap_session::{Code, LoginError, SequenceSet, Session, Status};
use hameau_mailbox::{AccountId, Error as MailError, ModseqWatch, Quota};

use crate::Context;
use crate::view::{Selected, flags_of};

/// The logged-in account.
pub struct User {
    pub account: AccountId,
    /// The account's and its tenant's limits, read at login: APPEND and COPY are counted
    /// against both inside the commit (docs/mail-model.md, Quotas).
    pub quota: Quota,
    /// The account's modseq, notified by the store after each commit that changes it.
    changes: ModseqWatch,
    /// What the login used, checked again at `next_login_check`.
    login: LoginStamp,
    next_login_check: tokio::time::Instant,
}

/// Where a connection is (RFC 9051 §3): the session lets through only the commands of
/// its state, and this says what each state holds, so that a command reaches the user or
/// the selected mailbox through [`State::user`] or [`State::selected`], not an unwrap.
pub enum State {
    NotAuthenticated,
    Authenticated(User),
    Selected(User, Selected),
}

/// One connection's state above the session: who is logged in, what is selected.
pub struct Conn<'a> {
    pub ctx: &'a Context,
    peer: SocketAddr,
    pub state: State,
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
            // RFC 5530 §3: UNAVAILABLE, a temporary failure of a subsystem (the database
            // away, a failover under way).
            MailError::Store(error) if error.is_unavailable() => {
                tracing::warn!(error = %error, "imap: the mail store is unavailable");
                No::new(Some(Code::Unavailable), "The mail store is unavailable, try again later")
            }
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

impl State {
    /// The logged-in user; a command of the authenticated state that reached here before
    /// a login is the session's bug, answered `NO [SERVERBUG]`.
    pub fn user(&self) -> Result<&User, No> {
        match self {
            State::Authenticated(user) | State::Selected(user, _) => Ok(user),
            State::NotAuthenticated => Err(wrong_state("authenticated")),
        }
    }

    /// The user and the selected mailbox, for the commands of the selected state.
    pub fn selected(&self) -> Result<(&User, &Selected), No> {
        match self {
            State::Selected(user, selected) => Ok((user, selected)),
            _ => Err(wrong_state("selected")),
        }
    }

    /// As [`State::selected`], the mailbox to change.
    pub fn selected_mut(&mut self) -> Result<(&User, &mut Selected), No> {
        match self {
            State::Selected(user, selected) => Ok((user, selected)),
            _ => Err(wrong_state("selected")),
        }
    }

    /// Enters the selected state with `selected` (from the authenticated or selected
    /// state; before a login, nothing changes).
    pub fn select(&mut self, selected: Selected) {
        *self = match std::mem::replace(self, State::NotAuthenticated) {
            State::Authenticated(user) | State::Selected(user, _) => State::Selected(user, selected),
            State::NotAuthenticated => {
                tracing::error!("imap: a mailbox selected before a login");
                State::NotAuthenticated
            }
        };
    }

    /// Back to the authenticated state; the mailbox that was selected, if one was.
    pub fn unselect(&mut self) -> Option<Selected> {
        match std::mem::replace(self, State::NotAuthenticated) {
            State::Selected(user, selected) => {
                *self = State::Authenticated(user);
                Some(selected)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}

/// The answer to a command that reached the driver in a state the session should have
/// refused it in: a bug, logged, and the connection goes on.
fn wrong_state(needed: &str) -> No {
    tracing::error!(needed, "imap: a command reached the driver in the wrong state");
    No::new(Some(Code::ServerBug), "Command not allowed in this state")
}

impl<'a> Conn<'a> {
    pub fn new(ctx: &'a Context, peer: SocketAddr) -> Conn<'a> {
        Conn { ctx, peer, state: State::NotAuthenticated, broken: None }
    }

    pub(crate) fn now(&self) -> u64 {
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
        let (account, login) = match self.ctx.directory.login_stamped(self.peer.ip(), username, password, now).await {
            Ok(stamped) => stamped,
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
        let changes = match self.ctx.mail.subscribe(account.id).await {
            Ok(changes) => changes,
            Err(e) => {
                tracing::error!(error = %e, "imap login: watching the account's changes");
                return Err(LoginError::Unavailable);
            }
        };
        let next_login_check = tokio::time::Instant::now() + self.ctx.options.login_check;
        self.state = State::Authenticated(User { account: account.id, quota, changes, login, next_login_check });
        Ok(())
    }

    /// When the logged-in session next checks its login; `None` before a login.
    pub fn next_login_check(&self) -> Option<tokio::time::Instant> {
        match &self.state {
            State::Authenticated(user) | State::Selected(user, _) => Some(user.next_login_check),
            State::NotAuthenticated => None,
        }
    }

    /// Whether the login lapsed: checked when due ([`Conn::next_login_check`]), true once
    /// the account is deleted or disabled, its password changed or the application
    /// password it used revoked. A store that fails to answer ends no session (logged;
    /// checked again at the next turn).
    pub async fn login_lapsed(&mut self) -> bool {
        let (State::Authenticated(user) | State::Selected(user, _)) = &mut self.state else { return false };
        let now = tokio::time::Instant::now();
        if now < user.next_login_check {
            return false;
        }
        user.next_login_check = now + self.ctx.options.login_check;
        match self.ctx.directory.login_still_valid(&user.login).await {
            Ok(valid) => {
                if !valid {
                    tracing::info!(peer = %self.peer, account = user.account, "imap: the login no longer holds, session ended");
                }
                !valid
            }
            Err(e) => {
                tracing::warn!(error = %e, "imap: checking a session's login");
                false
            }
        }
    }

    /// Waits until the logged-in account changes; false if it never can.
    pub async fn changed(&mut self) -> bool {
        match &mut self.state {
            State::Authenticated(user) | State::Selected(user, _) => user.changes.changed().await.is_ok(),
            State::NotAuthenticated => std::future::pending().await,
        }
    }

    /// The logged-in account's quotas.
    pub(crate) fn user_quota(&self) -> Result<Quota, No> {
        Ok(self.state.user()?.quota.clone())
    }

    /// The logged-in account.
    pub(crate) fn account(&self) -> Result<AccountId, No> {
        Ok(self.state.user()?.account)
    }

    /// Brings the selected mailbox up to date with the store and reports what changed:
    /// `FETCH` for flag changes, `EXISTS` for new messages, and when `expunges` are
    /// allowed (not during FETCH, STORE and SEARCH by sequence number, RFC 9051 §7.5.1)
    /// `EXPUNGE` or, under QRESYNC, `VANISHED`.
    pub async fn refresh(&mut self, session: &mut Session, expunges: bool) {
        let State::Selected(user, selected) = &mut self.state else { return };
        let account = user.account;
        // The account's modseq as last notified: nothing committed since what we know.
        if user.changes.modseq() <= selected.highest_modseq && !selected.pending_expunges {
            return;
        }
        let delta = match self.ctx.mail.mailbox_changes_since(account, selected.id, selected.highest_modseq).await {
            Ok(delta) => delta,
            Err(MailError::NoMailbox(_)) => {
                self.state.unselect();
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

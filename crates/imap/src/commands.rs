//! What each command means over the mail model, for one connection: [`Conn::run`]
//! dispatches each command to its module (`mailboxes`, `messages`, `fetch`, `search`),
//! which work on the connection's [`crate::state::State`].

use hameau_imap_session::{Code, Command, CommandBody, ListCommand, Namespace, Session, Status};

use crate::state::{Conn, No, Outcome, Reply, done};
use crate::transport::Connection;

impl Conn<'_> {
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
            CommandBody::Close => self.close().await,
            CommandBody::Unselect => {
                self.state.unselect();
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
}

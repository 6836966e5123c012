//! Change notifications: IMAP IDLE and JMAP push wake when an account's modseq moves.
//!
//! They are in-process: a map of `watch` senders, one per account somebody listens to,
//! fed after each commit this process makes. Several `hameau` nodes on one PostgreSQL
//! store will need a bus between them (DESIGN.md: `LISTEN/NOTIFY`); the receivers stay
//! the same, only what feeds the senders changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::{AccountId, Mail};

/// The senders, shared by every clone of a [`Mail`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Watchers {
    senders: Arc<Mutex<HashMap<AccountId, watch::Sender<u64>>>>,
}

#[cfg(test)]
impl Watchers {
    pub(crate) fn len(&self) -> usize {
        self.senders.lock().expect("watchers lock").len()
    }
}

impl Mail {
    /// A receiver of the account's modseq after each commit that changed the account
    /// (ingest, keywords, copy, move, expunge, mailbox create/rename/delete/subscribe).
    /// Its first value is the last modseq this process saw committed (0 if none since the
    /// account's first subscriber): wait with `changed()`, then read the changes since the
    /// modseq the session knows. Values only grow. Commits made by other processes are not
    /// seen (see the module's documentation).
    pub fn subscribe(&self, account: AccountId) -> watch::Receiver<u64> {
        let mut senders = self.watchers.senders.lock().expect("watchers lock");
        // Senders nobody listens to any more are dropped here and when they would send.
        senders.retain(|_, sender| sender.receiver_count() > 0);
        senders.entry(account).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Tells the account's subscribers that its modseq is now `modseq`.
    pub(crate) fn notify(&self, account: AccountId, modseq: u64) {
        let mut senders = self.watchers.senders.lock().expect("watchers lock");
        let Some(sender) = senders.get(&account) else { return };
        if sender.receiver_count() == 0 {
            senders.remove(&account);
            return;
        }
        // Commits may finish out of modseq order: never move the value back.
        sender.send_if_modified(|value| {
            let newer = modseq > *value;
            if newer {
                *value = modseq;
            }
            newer
        });
    }
}

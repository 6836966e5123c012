//! Change notifications: IMAP IDLE and JMAP push wake when an account's modseq moves.
//!
//! Every change of an account (ingest, keywords, copy, move, expunge, mailbox
//! create/rename/delete/subscribe, vacation, objects) adds to its modseq counter in the
//! commit that makes it, and the store notifies the watchers of a counter after each
//! commit that adds to it ([`hameau_store::Store::watch`]). The mail model keeps no
//! watchers of its own: a commit made through another `Mail` over the same store (another
//! node, once a PostgreSQL store brings the other nodes' commits) wakes the subscribers
//! just the same.

use hameau_store::CounterValue;
use tokio::sync::watch;

use crate::{AccountId, Error, Mail, keys};

/// A receiver of an account's modseq ([`Mail::subscribe`]).
#[derive(Debug)]
pub struct ModseqWatch {
    receiver: watch::Receiver<CounterValue>,
    /// With tenants over clusters: the placement map's changes, after which the account's
    /// modseq is watched again where its mail is now (it may have moved).
    moves: Option<Moves>,
}

#[derive(Debug)]
struct Moves {
    changes: watch::Receiver<CounterValue>,
    mail: Mail,
    account: AccountId,
}

impl ModseqWatch {
    /// Waits for a modseq later than the last one seen ([`ModseqWatch::mark_seen`], or the
    /// first). Fails only when the store is dropped: no change can come any more.
    /// With tenants over clusters, it also returns after each change of the placement map
    /// (the session reads, finds nothing new or everything new, and waits again).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        let Some(moves) = &mut self.moves else { return self.receiver.changed().await };
        tokio::select! {
            changed = self.receiver.changed() => changed,
            moved = moves.changes.changed() => {
                moved?;
                // Where the account's mail is now; if the lookup fails (the move is still
                // under way), the next change of the map tries again.
                if let Ok(placed) = moves.mail.at(moves.account).await
                    && let Ok(receiver) = placed.watch(&keys::modseq(moves.account)).await
                {
                    self.receiver = receiver;
                }
                Ok(())
            }
        }
    }

    /// Whether a modseq later than the last one seen came; an error as
    /// [`ModseqWatch::changed`]'s.
    pub fn has_changed(&self) -> Result<bool, watch::error::RecvError> {
        self.receiver.has_changed()
    }

    /// The account's modseq as last notified (not marked seen).
    pub fn modseq(&self) -> u64 {
        modseq_of(*self.receiver.borrow())
    }

    /// The account's modseq as last notified, marked seen: [`ModseqWatch::changed`] then
    /// waits for a later one.
    pub fn mark_seen(&mut self) -> u64 {
        modseq_of(*self.receiver.borrow_and_update())
    }
}

impl Mail {
    /// A receiver of the account's modseq after each commit that changed the account
    /// (ingest, keywords, copy, move, expunge, mailbox create/rename/delete/subscribe,
    /// vacation, objects), made through this `Mail` or any other over the same store.
    /// Its first value is the modseq stored now, marked seen: wait with `changed()`, then
    /// read the changes since the modseq the session knows; every commit that a read made
    /// after this call does not see wakes it. Values only grow (the modseq does).
    pub async fn subscribe(&self, account: AccountId) -> Result<ModseqWatch, Error> {
        let receiver = self.at(account).await?.watch(&keys::modseq(account)).await?;
        let moves = self.placement.as_ref().map(|placement| Moves {
            changes: placement.clusters.changes(),
            mail: self.clone(),
            account,
        });
        Ok(ModseqWatch { receiver, moves })
    }
}

/// A modseq counter never goes below 0; read as `Mail::modseq` does.
fn modseq_of(value: CounterValue) -> u64 {
    value.value.max(0) as u64
}

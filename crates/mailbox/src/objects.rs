//! Small records of kinds only JMAP has (an email submission, a push subscription…),
//! kept per account beside its mail: created with an id of their kind, updated, destroyed,
//! each change in the account's change log so that `/changes` of the kind and push
//! see it. Bounded per kind by [`crate::Limits::objects_max`]. The values are the
//! caller's (JSON); the mail model does not read them.

use hameau_store::{Batch, Scan};

use crate::{AccountId, Change, ChangeKind, Error, Mail, RETRIES_MAX, backoff, keys, log_change};

impl Mail {
    /// Stores a new object of `kind` (a name without `/`): its id (never reused) and the
    /// commit's modseq. [`Error::TooManyObjects`] past `objects_max` objects of the kind.
    pub async fn create_object(&self, account: AccountId, kind: &str, value: &[u8]) -> Result<(u64, u64), Error> {
        check_kind(kind)?;
        let id = u64::try_from(self.at(account).await?.next_value(&keys::object_ids(account, kind), 1).await?)
            .map_err(|_| Error::Cannot("no object id left".into()))?;
        let mut batch = Batch::new();
        let max = i64::try_from(self.limits.objects_max).unwrap_or(i64::MAX);
        batch.add_at_most(&keys::object_count(account, kind), 1, max);
        batch.set(&keys::object(account, kind, id), value);
        let modseq = self.log_object(&mut batch, account, kind, id, ChangeKind::Created);
        match self.at(account).await?.commit(batch).await {
            Ok(committed) => Ok((id, committed.counters[modseq.index()] as u64)),
            Err(hameau_store::Error::CounterBound { .. }) => {
                Err(Error::TooManyObjects { max: self.limits.objects_max })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The object of `kind` with this id; `None` if there is none.
    pub async fn object(&self, account: AccountId, kind: &str, id: u64) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.at(account).await?.get(&keys::object(account, kind, id)).await?.map(|entry| entry.value))
    }

    /// Every object of `kind`, by id (at most `objects_max`).
    pub async fn objects(&self, account: AccountId, kind: &str) -> Result<Vec<(u64, Vec<u8>)>, Error> {
        let scan = Scan::prefix(&keys::objects(account, kind)).limit(self.limits.objects_max);
        let entries = self.at(account).await?.scan(&scan).await?;
        entries.into_iter().map(|entry| Ok((keys::tail_u64(&entry.key)?, entry.value))).collect()
    }

    /// Replaces an object's value; [`Error::Cannot`] if it does not exist.
    pub async fn update_object(&self, account: AccountId, kind: &str, id: u64, value: &[u8]) -> Result<u64, Error> {
        self.change_object(account, kind, id, Some(value)).await
    }

    /// Removes an object; [`Error::Cannot`] if it does not exist.
    pub async fn destroy_object(&self, account: AccountId, kind: &str, id: u64) -> Result<u64, Error> {
        self.change_object(account, kind, id, None).await
    }

    async fn change_object(&self, account: AccountId, kind: &str, id: u64, value: Option<&[u8]>) -> Result<u64, Error> {
        let key = keys::object(account, kind, id);
        for attempt in 0..RETRIES_MAX {
            backoff(attempt).await;
            let Some(entry) = self.at(account).await?.get(&key).await? else {
                return Err(Error::Cannot(format!("no {kind} {id}")));
            };
            let mut batch = Batch::new();
            batch.expect_version(&key, entry.version);
            let change = match value {
                Some(value) => {
                    batch.set(&key, value);
                    ChangeKind::Updated
                }
                None => {
                    batch.delete(&key);
                    batch.add(&keys::object_count(account, kind), -1);
                    ChangeKind::Destroyed
                }
            };
            let modseq = self.log_object(&mut batch, account, kind, id, change);
            if let Some(modseq) = self.commit_change(account, batch, modseq).await? {
                return Ok(modseq);
            }
        }
        Err(Error::Busy)
    }

    fn log_object(
        &self,
        batch: &mut Batch,
        account: AccountId,
        kind: &str,
        id: u64,
        change: ChangeKind,
    ) -> hameau_store::CounterRef {
        let modseq = batch.add(&keys::modseq(account), 1);
        let mut entry = Change::new(vec![], vec![], vec![], vec![]);
        entry.kind = change;
        entry.objects = vec![(kind.to_string(), id, change)];
        log_change(batch, account, modseq, &entry);
        modseq
    }
}

fn check_kind(kind: &str) -> Result<(), Error> {
    if kind.is_empty() || kind.contains('/') || kind.len() > 64 {
        return Err(Error::Cannot(format!("{kind:?} is not a kind of object")));
    }
    Ok(())
}

//! Reading and writing JSON records, and the bounded retry of optimistic updates.

use hameau_store::{Batch, Scan, Store, Version};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// How many times an update is tried when other writers keep changing what it read.
/// Conflicts are confined to one object (an account, an alias's targets, a capped tenant's
/// account count), and the pause between tries grows to [`BACKOFF_MS_MAX`]: sixteen
/// conflicts in a row, about a second of trying, mean something is hammering that object.
pub const RETRIES_MAX: usize = 16;

/// The longest pause between two tries, milliseconds.
const BACKOFF_MS_MAX: u64 = 100;

/// The pauses between the tries of one optimistic update: random (so that writers that
/// collided do not collide again in step), growing from 2 ms to [`BACKOFF_MS_MAX`].
#[derive(Debug, Default)]
pub struct Backoff {
    tries: usize,
}

impl Backoff {
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Waits before the next try; [`Error::Busy`] once [`RETRIES_MAX`] tries are spent.
    pub async fn wait(&mut self) -> Result<(), Error> {
        self.tries += 1;
        if self.tries >= RETRIES_MAX {
            return Err(Error::Busy);
        }
        let cap_us = (1000u64 << self.tries.min(7)).min(BACKOFF_MS_MAX * 1000);
        tokio::time::sleep(std::time::Duration::from_micros(rand::random_range(0..=cap_us))).await;
        Ok(())
    }
}

/// A record and the version it was read at.
pub struct Read<T> {
    pub record: T,
    pub version: Version,
}

pub async fn get<T: DeserializeOwned>(store: &Store, key: &[u8]) -> Result<Option<Read<T>>, Error> {
    let Some(entry) = store.get(key).await? else { return Ok(None) };
    let record = decode(key, &entry.value)?;
    Ok(Some(Read { record, version: entry.version }))
}

pub fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(value)
        .map_err(|e| Error::Corrupt { key: key.escape_ascii().to_string(), problem: e.to_string() })
}

pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("directory records serialise")
}

pub fn set<T: Serialize>(batch: &mut Batch, key: &[u8], record: &T) {
    batch.set(key, &encode(record));
}

/// One page of an index: the names after `after`, at most `limit`, and whether more follow.
pub async fn index_page(
    store: &Store,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<String>, bool), Error> {
    let (entries, more) = index_entries(store, prefix, after, limit).await?;
    Ok((entries.into_iter().map(|(name, _)| name).collect(), more))
}

/// One page of an index with the values: `(name, value)` after `after`, at most `limit`,
/// and whether more follow.
pub async fn index_entries(
    store: &Store,
    prefix: &[u8],
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<(String, Vec<u8>)>, bool), Error> {
    let mut scan = Scan::prefix(prefix).limit(limit + 1);
    if let Some(after) = after {
        scan = scan.after(&[prefix, after.as_bytes()].concat());
    }
    let entries = store.scan(&scan).await?;
    let more = entries.len() > limit;
    let items = entries
        .into_iter()
        .take(limit)
        .map(|entry| (String::from_utf8_lossy(&entry.key[prefix.len()..]).into_owned(), entry.value))
        .collect();
    Ok((items, more))
}

/// Whether any key starts with `prefix`.
pub async fn any(store: &Store, prefix: &[u8]) -> Result<bool, Error> {
    Ok(!store.scan(&Scan::prefix(prefix).limit(1)).await?.is_empty())
}

/// Commits, mapping a conflict on a key the batch expected absent to `exists`.
pub async fn commit_new(store: &Store, mut batch: Batch, exists: impl FnOnce(&[u8]) -> Error) -> Result<(), Error> {
    batch.add(crate::keys::CHANGES, 1);
    match store.commit(batch).await {
        Ok(_) => Ok(()),
        Err(hameau_store::Error::Conflict { key }) => Err(exists(&key)),
        Err(e) => Err(e.into()),
    }
}

/// Commits a batch whose expectations hold what was just read: a conflict means another
/// writer changed it meanwhile, and the caller is told to try again ([`Error::Busy`]).
pub async fn commit_once(store: &Store, mut batch: hameau_store::Batch) -> Result<(), Error> {
    batch.add(crate::keys::CHANGES, 1);
    match store.commit(batch).await {
        Ok(_) => Ok(()),
        Err(hameau_store::Error::Conflict { .. }) => Err(Error::Busy),
        Err(e) => Err(e.into()),
    }
}

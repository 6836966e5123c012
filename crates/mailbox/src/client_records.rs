//! What the mail model keeps for JMAP clients besides mail (issue 15): uploads (RFC 8620
//! §6.1), blobs a client sent before using them, and push subscriptions (RFC 8620 §7.2).
//!
//! - An upload holds one reference on its blob, is counted against the account's quota
//!   and its tenant's (the bytes are stored), and against `pending_bytes_max`, the bytes an
//!   account may hold in uploads; it lives until [`Mail::remove_upload`] (the JMAP layer
//!   after an import uses it, or the expiry sweep [`Mail::expire_uploads`]).
//! - A push subscription is an opaque record (the JMAP layer's JSON) under its account.
//!
//! Keys: `m/<account>/up/<sha256>` (an upload: its size, times and tenant), `m/<account>/upn`
//! (the pending bytes, a counter), `mu/<expires_at><account><sha256>` (the expiry index the
//! sweep reads in time order), `mp/<account>/<id>` (a push subscription). Every one is its
//! account's for a one-tenant restore ([`crate::record_owner`]).

use hameau_store::{Batch, BlobHash, Scan, StagedBlob};
use serde::{Deserialize, Serialize};

use crate::{AccountId, Error, Mail, Quota, keys};

/// An upload of an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub hash: BlobHash,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// When the sweep may remove it (seconds since the Unix epoch).
    pub expires_at: u64,
}

/// What an upload may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadTerms {
    /// Seconds since the Unix epoch.
    pub now: u64,
    /// How long it is kept unused.
    pub ttl_s: u64,
    /// The bytes the account may hold in uploads, this one included.
    pub pending_bytes_max: u64,
    /// The account's quota and its tenant's.
    pub quota: Quota,
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadRecord {
    size: u64,
    created_at: u64,
    expires_at: u64,
    /// The tenant whose counter the upload was charged to.
    tenant: Option<String>,
}

const UPLOAD_TAG: &[u8] = b"/up/";
pub(crate) const EXPIRY_PREFIX: &[u8] = b"mu/";
const PUSH_PREFIX: &[u8] = b"mp/";

fn upload_key(account: AccountId, hash: &BlobHash) -> Vec<u8> {
    [keys::account_start(account).as_slice(), UPLOAD_TAG, &hash.0].concat()
}

fn pending_key(account: AccountId) -> Vec<u8> {
    [keys::account_start(account).as_slice(), b"/upn"].concat()
}

fn expiry_key(expires_at: u64, account: AccountId, hash: &BlobHash) -> Vec<u8> {
    [EXPIRY_PREFIX, &expires_at.to_be_bytes(), &account.to_be_bytes(), &hash.0].concat()
}

pub(crate) fn push_prefix(account: AccountId) -> Vec<u8> {
    [PUSH_PREFIX, &account.to_be_bytes(), b"/"].concat()
}

/// The account of a key of this module outside the account's prefix (`mu/…`, `mp/…`).
pub(crate) fn account_of(key: &[u8]) -> Option<AccountId> {
    let account = if let Some(rest) = key.strip_prefix(EXPIRY_PREFIX) {
        rest.get(8..16)?
    } else {
        key.strip_prefix(PUSH_PREFIX)?.get(..8)?
    };
    Some(AccountId::from_be_bytes(account.try_into().ok()?))
}

/// The bytes an upload record (`key`, `value`) was charged, and the tenant charged; `None`
/// for another key or a value that does not read as an upload.
pub(crate) fn upload_charge(key: &[u8], value: &[u8]) -> Option<(u64, Option<String>)> {
    upload_blob(key)?;
    let record: UploadRecord = serde_json::from_slice(value).ok()?;
    Some((record.size, record.tenant))
}

/// The blob an upload record holds a reference to (its key's last 32 bytes).
pub(crate) fn upload_blob(key: &[u8]) -> Option<BlobHash> {
    keys::account_of(key)?;
    let hash = key.get(keys::MAIL_PREFIX.len() + 8..)?.strip_prefix(UPLOAD_TAG)?;
    Some(BlobHash(hash.try_into().ok()?))
}

impl Mail {
    /// Stages the content of an upload from `reader`, one chunk at a time (never whole in
    /// memory), in the mail model's store; [`Mail::add_upload`] keeps it.
    pub async fn stage_upload(
        &self,
        account: AccountId,
        reader: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<StagedBlob, Error> {
        Ok(self.at(account).await?.stage_blob(reader).await?)
    }

    /// Keeps `staged` as an upload of `account` until `terms.now + terms.ttl_s`, in one
    /// commit with its quota and pending counts: [`Error::OverQuota`] past the quota,
    /// [`Error::UploadsFull`] past `pending_bytes_max`. The same content uploaded again
    /// keeps the one upload and moves its expiry.
    pub async fn add_upload(
        &self,
        account: AccountId,
        staged: StagedBlob,
        terms: &UploadTerms,
    ) -> Result<Upload, Error> {
        let (hash, size) = (staged.hash(), staged.size());
        let key = upload_key(account, &hash);
        let expires_at = terms.now.saturating_add(terms.ttl_s);
        let mut batch = Batch::new();
        let created_at = match self.at(account).await?.get(&key).await? {
            Some(entry) => {
                // Already held: its expiry moves, nothing is charged twice.
                let old: UploadRecord = decode(&entry.key, &entry.value)?;
                batch.expect_version(&key, entry.version).delete(&expiry_key(old.expires_at, account, &hash));
                let record = UploadRecord { expires_at, ..old };
                batch.set(&key, &encode(&record)?).set(&expiry_key(expires_at, account, &hash), b"");
                drop(staged);
                record.created_at
            }
            None => {
                let record =
                    UploadRecord { size, created_at: terms.now, expires_at, tenant: terms.quota.tenant.clone() };
                batch
                    .expect_absent(&key)
                    .set(&key, &encode(&record)?)
                    .set(&expiry_key(expires_at, account, &hash), b"");
                let pending_max = i64::try_from(terms.pending_bytes_max).unwrap_or(i64::MAX);
                batch.add_at_most(&pending_key(account), i64::try_from(size).unwrap_or(i64::MAX), pending_max);
                crate::charge(&mut batch, account, &terms.quota, size);
                batch.blob_acquire(staged);
                terms.now
            }
        };
        let pending = pending_key(account);
        self.at(account).await?.commit(batch).await.map_err(|e| match e {
            hameau_store::Error::CounterBound { key, max, .. } if key == pending => {
                Error::UploadsFull { max: max.max(0) as u64 }
            }
            hameau_store::Error::CounterBound { current, delta, max, .. } => {
                Error::OverQuota { used: current.max(0) as u64, quota: max.max(0) as u64, size: delta.max(0) as u64 }
            }
            hameau_store::Error::Conflict { .. } => Error::Busy,
            e => e.into(),
        })?;
        Ok(Upload { hash, size, created_at, expires_at })
    }

    /// The upload `hash` of `account`, if it holds one that has not expired at `now`.
    pub async fn upload(&self, account: AccountId, hash: &BlobHash, now: u64) -> Result<Option<Upload>, Error> {
        let Some(entry) = self.at(account).await?.get(&upload_key(account, hash)).await? else { return Ok(None) };
        let record: UploadRecord = decode(&entry.key, &entry.value)?;
        Ok((record.expires_at > now).then_some(Upload {
            hash: *hash,
            size: record.size,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }))
    }

    /// The content of the upload `hash` of `account`, if it holds one that has not expired
    /// at `now` (an import or a parse reads it whole).
    pub async fn read_upload(&self, account: AccountId, hash: &BlobHash, now: u64) -> Result<Option<Vec<u8>>, Error> {
        if self.upload(account, hash, now).await?.is_none() {
            return Ok(None);
        }
        Ok(self.at(account).await?.read_blob(hash).await?)
    }

    /// Removes the upload `hash` of `account` (used, or expired): its record, its blob
    /// reference and what it counted. `false` if there was none.
    pub async fn remove_upload(&self, account: AccountId, hash: &BlobHash) -> Result<bool, Error> {
        let key = upload_key(account, hash);
        let Some(entry) = self.at(account).await?.get(&key).await? else { return Ok(false) };
        let record: UploadRecord = decode(&entry.key, &entry.value)?;
        let size = i64::try_from(record.size).unwrap_or(i64::MAX);
        let mut batch = Batch::new();
        batch.expect_version(&key, entry.version).delete(&key).delete(&expiry_key(record.expires_at, account, hash));
        batch.add(&pending_key(account), -size);
        batch.add(&keys::used(account), -size);
        if let Some(tenant) = &record.tenant {
            batch.add(&keys::tenant_used(tenant), -size);
        }
        batch.blob_release(hash);
        match self.at(account).await?.commit(batch).await {
            Ok(_) => Ok(true),
            // Renewed or removed meanwhile: the other writer's view stands.
            Err(hameau_store::Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes up to `max` uploads that expired at `now`, oldest first; how many.
    pub async fn expire_uploads(&self, now: u64, max: usize) -> Result<u64, Error> {
        let end = [EXPIRY_PREFIX, &now.saturating_add(1).to_be_bytes()].concat();
        let mut scan = Scan::range(EXPIRY_PREFIX, &end);
        scan.limit = max;
        let mut removed = 0;
        let mut expired = Vec::new();
        for store in self.stores() {
            expired.extend(store.scan(&scan).await?);
        }
        expired.sort_by(|a, b| a.key[EXPIRY_PREFIX.len()..].cmp(&b.key[EXPIRY_PREFIX.len()..]));
        expired.truncate(max);
        for entry in expired {
            let (Some(account), Some(hash)) = (account_of(&entry.key), entry.key.get(EXPIRY_PREFIX.len() + 16..))
            else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(hash) else { continue };
            let hash = BlobHash(hash);
            match self.upload(account, &hash, now).await? {
                // Renewed since: its index entry is another key.
                Some(_) => {}
                None if self.remove_upload(account, &hash).await? => removed += 1,
                None => {
                    // An index entry without its upload (removed by a concurrent call).
                    let mut batch = Batch::new();
                    batch.delete(&entry.key);
                    self.at(account).await?.commit(batch).await?;
                }
            }
        }
        Ok(removed)
    }

    /// The bytes `account` holds in uploads.
    pub async fn uploads_pending(&self, account: AccountId) -> Result<u64, Error> {
        Ok(self.at(account).await?.counter(&pending_key(account)).await?.max(0) as u64)
    }

    /// Stores the push subscription `id` of `account` (the caller's record, opaque here).
    pub async fn put_push_subscription(&self, account: AccountId, id: &str, record: &[u8]) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.set(&[push_prefix(account).as_slice(), id.as_bytes()].concat(), record);
        self.at(account).await?.commit(batch).await?;
        Ok(())
    }

    pub async fn delete_push_subscription(&self, account: AccountId, id: &str) -> Result<(), Error> {
        let mut batch = Batch::new();
        batch.delete(&[push_prefix(account).as_slice(), id.as_bytes()].concat());
        self.at(account).await?.commit(batch).await?;
        Ok(())
    }

    /// The push subscriptions of `account`: id and record.
    pub async fn push_subscriptions(&self, account: AccountId) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let prefix = push_prefix(account);
        let entries = self.at(account).await?.scan(&Scan::prefix(&prefix)).await?;
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let id = std::str::from_utf8(entry.key.get(prefix.len()..)?).ok()?.to_string();
                Some((id, entry.value))
            })
            .collect())
    }

    /// Every push subscription of every account, up to `max` (the server loads them at
    /// start): account, id and record.
    pub async fn all_push_subscriptions(&self, max: usize) -> Result<Vec<(AccountId, String, Vec<u8>)>, Error> {
        let mut scan = Scan::prefix(PUSH_PREFIX);
        scan.limit = max;
        let mut entries = Vec::new();
        for store in self.stores() {
            entries.extend(store.scan(&scan).await?);
        }
        entries.truncate(max);
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let account = account_of(&entry.key)?;
                let id = std::str::from_utf8(entry.key.get(PUSH_PREFIX.len() + 9..)?).ok()?.to_string();
                Some((account, id, entry.value))
            })
            .collect())
    }
}

fn encode(record: &UploadRecord) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(record).map_err(|e| Error::Corrupt { key: "upload".into(), problem: e.to_string() })
}

fn decode(key: &[u8], value: &[u8]) -> Result<UploadRecord, Error> {
    serde_json::from_slice(value)
        .map_err(|e| Error::Corrupt { key: key.escape_ascii().to_string(), problem: format!("upload record: {e}") })
}

#[cfg(test)]
#[path = "client_records_tests.rs"]
mod tests;

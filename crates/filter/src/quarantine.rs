//! Quarantine: messages the filter held instead of delivering them (issue 14;
//! docs/quarantine.md), kept until an administrator releases or deletes them, or until
//! they expire after `filter.quarantine_expiry_s`.
//!
//! A held message is a blob of the store's blob store (the message as it would have been
//! stored: trace, results and `X-Hameau-Filter` headers included), so a released message
//! and its copies in the mailboxes share one blob, and a record with its metadata under
//! `fq/m/` + id, indexed by tenant (`fq/t/`, the tenant admin's listing) and by expiry
//! time (`fq/e/`, the sweep). Each is written in the one synced commit that holds it.
//!
//! Every operation of an administrator takes its [`Principal`] and checks its scope as
//! the outbound queue does: a tenant admin sees and acts on its own tenant's held mail
//! only, and another tenant's message reads exactly as an absent one; a user has no
//! access at all.
//!
//! A release delivers through the one local delivery path ([`Mail::deliver`]), then
//! removes the record. It first marks the record as being released in a conditional
//! commit, so that two releases at once deliver once; a release that died midway (the
//! process killed between the delivery and the removal) may be tried again after
//! [`RELEASE_LEASE_S`], and may then deliver a second copy: at least once, as the queue.

use bytes::Bytes;
use hameau_directory::{Directory, Principal};
use hameau_mailbox::{Filing, LocalDelivery, Mail, Quota};
use hameau_store::{Batch, BlobHash, Patch, PatchTarget, Scan, Store, Version};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::error::corrupt;

/// How long a release may take before another may take it over: far longer than one
/// delivery lasts (one commit to at most `mail.ingest_batch_max` accounts), so that only
/// a release that died is taken over.
pub const RELEASE_LEASE_S: u64 = 600;

/// Held messages removed per page of the expiry sweep: each costs a read and a commit, so
/// a page is short work between two looks at the rest of the server.
const EXPIRE_PAGE_MAX: usize = 256;

/// Optimistic retries of one change before [`Error::Busy`].
const RETRIES_MAX: usize = 16;

/// The most bytes of a held message's header shown by [`Quarantine::show`]: 64 KiB is
/// more than any real header (the raw message is a separate download).
const HEADERS_SHOWN_BYTES_MAX: usize = 64 << 10;

/// The characters of a held message's text shown by [`Quarantine::show`]: enough to judge
/// it, as a mail client's preview pane.
const PREVIEW_CHARS_MAX: usize = 1000;

/// The characters of the From and Subject kept in a record, for the listing.
const HEADLINE_CHARS_MAX: usize = 200;

/// What the MX holds: the envelope and the filter's verdict of one message for the
/// recipients of one tenant.
#[derive(Clone, Copy, Debug)]
pub struct Hold<'a> {
    /// The tenant id (as the directory's records name it).
    pub tenant: &'a str,
    /// The envelope sender, `""` for `<>`.
    pub mail_from: &'a str,
    /// Each recipient of this tenant: the address as given at RCPT, and one account it
    /// delivers to (an alias gives one pair per account).
    pub recipients: &'a [(String, u64)],
    /// Seconds since the epoch.
    pub received_at: u64,
    /// The `X-Hameau-Filter` value.
    pub verdict: &'a str,
    /// One line, for the administrator.
    pub reason: &'a str,
}

/// A held message's record: what the listing shows without reading the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub tenant: String,
    /// The message's blob (hex SHA-256).
    pub blob: String,
    pub size: u64,
    /// The envelope sender, empty for `<>`.
    pub mail_from: String,
    pub recipients: Vec<HeldRecipient>,
    pub received_at: u64,
    pub expires_at: u64,
    /// The `X-Hameau-Filter` value: action, score and symbols.
    pub verdict: String,
    pub reason: String,
    /// The message's From (name and address), as it reads.
    pub from: String,
    pub subject: String,
    /// Set while a release delivers it (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub releasing_since: Option<u64>,
}

/// One recipient of a held message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecipient {
    /// As given at RCPT.
    pub address: String,
    /// The account it delivers to.
    pub account: u64,
}

/// A held message as [`Quarantine::show`] gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub id: String,
    pub held: Held,
    /// The message's header as it is, at most 64 KiB.
    pub headers: String,
    /// The start of its text, on one line.
    pub preview: String,
}

/// Which held messages to list, newest first.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListQuery<'a> {
    /// One tenant's (the operator; a tenant admin sees its own only, and another
    /// tenant's list is empty).
    pub tenant: Option<&'a str>,
    /// Only those held for this address (as given at RCPT, any case).
    pub recipient: Option<&'a str>,
    /// The `next` of the previous page.
    pub before: Option<&'a str>,
    /// Messages looked at in this page (at least 1). With `recipient`, a page may hold
    /// fewer, even none, and still have a `next`.
    pub limit: usize,
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listed {
    pub items: Vec<(String, Held)>,
    /// The cursor of the next page, if there are more.
    pub next: Option<String>,
}

/// What a release needs to deliver: the mail model (which names an account's first
/// mailboxes) and the directory for the quotas (read again at release time).
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub mail: &'a Mail,
    pub directory: &'a Directory,
}

/// What a release did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// The addresses whose accounts received the message.
    pub delivered: Vec<String>,
    /// The addresses skipped: the account was deleted since, or the address now delivers
    /// elsewhere.
    pub skipped: Vec<String>,
}

/// Whose a quarantine record is, for a one-tenant restore (docs/backup.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOwner {
    /// The tenant's (a held message, its tenant index entry).
    Tenant(String),
    /// Owned as the held message at this key is (its expiry entry).
    Via(Vec<u8>),
    /// The installation's: the id counter, which must only grow.
    Installation,
}

/// The quarantine over a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Quarantine {
    store: Store,
    expiry_s: u64,
    tenant_bytes_max: u64,
}

impl Quarantine {
    pub fn new(store: Store, options: &crate::Options) -> Quarantine {
        Quarantine {
            store,
            expiry_s: options.quarantine_expiry_s,
            tenant_bytes_max: options.quarantine_tenant_bytes_max,
        }
    }

    /// Holds the message (as it would have been stored) in one synced commit: its blob,
    /// its record and both index entries; returns its id.
    pub async fn hold(&self, hold: Hold<'_>, raw: Bytes) -> Result<String, Error> {
        let (from, subject) = headline(&raw);
        let staged = self.store.stage_blob_bytes(&raw).await?;
        let held = Held {
            tenant: hold.tenant.to_string(),
            blob: staged.hash().to_hex(),
            size: raw.len() as u64,
            mail_from: hold.mail_from.to_string(),
            recipients: hold
                .recipients
                .iter()
                .map(|(address, account)| HeldRecipient { address: address.clone(), account: *account })
                .collect(),
            received_at: hold.received_at,
            expires_at: hold.received_at.saturating_add(self.expiry_s),
            verdict: hold.verdict.to_string(),
            reason: hold.reason.to_string(),
            from,
            subject,
            releasing_since: None,
        };
        let mut batch = Batch::new();
        // The tenant's held bytes, bounded in the same commit: a hold past the bound
        // writes nothing.
        let size = i64::try_from(held.size).unwrap_or(i64::MAX);
        let max = i64::try_from(self.tenant_bytes_max).unwrap_or(i64::MAX);
        batch.add_at_most(&keys::bytes(&held.tenant), size, max);
        // The id is the counter's value, patched into every key that ends with it.
        let id = batch.add(keys::SEQ, 1);
        let patch = |key: &[u8]| [Patch { counter: id, target: PatchTarget::Key, offset: key.len() - 8 }];
        for key in [keys::message(0), keys::tenant(&held.tenant, 0), keys::expiry(held.expires_at, 0)] {
            let value = if key.starts_with(keys::MESSAGES) { encode(&held) } else { Vec::new() };
            batch.set_patched(&key, &value, &patch(&key));
        }
        batch.blob_acquire(staged);
        let committed = match self.store.commit(batch).await {
            Ok(committed) => committed,
            Err(hameau_store::Error::CounterBound { .. }) => {
                tracing::warn!(
                    tenant = hold.tenant,
                    size = held.size,
                    max = self.tenant_bytes_max,
                    "quarantine full (filter.quarantine_tenant_bytes_max): the message is not held, its sender will retry"
                );
                return Err(Error::QuarantineFull { tenant: held.tenant, max: self.tenant_bytes_max });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(committed.counters[id.index()].to_string())
    }

    /// A page of held messages, newest first, within the caller's scope.
    pub async fn list(&self, principal: &Principal, query: ListQuery<'_>) -> Result<Listed, Error> {
        let asked = query.tenant.filter(|tenant| !tenant.is_empty());
        let tenant = match (principal.administered_tenant()?, asked) {
            (Some(own), Some(asked)) if own != asked => return Ok(Listed::default()),
            (Some(own), _) => Some(own),
            (None, asked) => asked,
        };
        let prefix = tenant.map_or_else(|| keys::MESSAGES.to_vec(), keys::tenant_prefix);
        let mut scan = Scan::prefix(&prefix).reverse().limit(query.limit.max(1).saturating_add(1));
        if let Some(before) = query.before {
            // A cursor that is not a number lists from the newest: it names no message.
            if let Ok(before) = before.parse::<u64>() {
                scan = scan.before(&[prefix.as_slice(), &before.to_be_bytes()].concat());
            }
        }
        let mut entries = self.store.scan(&scan).await?;
        let more = entries.len() > query.limit.max(1);
        entries.truncate(query.limit.max(1));
        let next = match more {
            true => entries.last().and_then(|entry| keys::trailing_id(&entry.key)).map(|id| id.to_string()),
            false => None,
        };
        let mut items = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(id) = keys::trailing_id(&entry.key) else { continue };
            let held = match tenant {
                None => decode(&entry.key, &entry.value)?,
                Some(_) => match self.read(id).await? {
                    Some((held, _)) => held,
                    None => continue,
                },
            };
            let wanted = query.recipient.is_none_or(|recipient| {
                held.recipients.iter().any(|held| held.address.eq_ignore_ascii_case(recipient))
            });
            if wanted {
                items.push((id.to_string(), held));
            }
        }
        Ok(Listed { items, next })
    }

    /// A held message's record, header and the start of its text.
    pub async fn show(&self, principal: &Principal, id: &str) -> Result<Shown, Error> {
        let (_, held, _) = self.visible(principal, id).await?;
        let raw = self.content(&held).await?;
        let header_end = raw.windows(4).position(|window| window == b"\r\n\r\n").map_or(raw.len(), |at| at + 2);
        let headers = String::from_utf8_lossy(&raw[..header_end.min(HEADERS_SHOWN_BYTES_MAX)]).into_owned();
        Ok(Shown { id: id.to_string(), held, headers, preview: preview(&raw) })
    }

    /// A held message's record and its bytes.
    pub async fn raw(&self, principal: &Principal, id: &str) -> Result<(Held, Vec<u8>), Error> {
        let (_, held, _) = self.visible(principal, id).await?;
        let raw = self.content(&held).await?;
        Ok((held, raw))
    }

    /// Delivers a held message to its recipients' Inboxes with its original headers,
    /// each account's quota read from the directory now; an account deleted since is
    /// skipped and said so. Then the message leaves the quarantine.
    pub async fn release(
        &self,
        principal: &Principal,
        id: &str,
        delivery: Delivery<'_>,
        now: u64,
    ) -> Result<Released, Error> {
        let (number, held, claimed) = self.claim(principal, id, now).await?;
        match self.deliver(&held, delivery).await {
            Ok(released) => {
                let mut batch = Batch::new();
                batch.expect_version(&keys::message(number), claimed);
                remove(&mut batch, number, &held)?;
                // Only an expiry or a delete that came after the lease can have changed it:
                // the message was delivered all the same.
                match self.store.commit(batch).await {
                    Ok(_) | Err(hameau_store::Error::Conflict { .. }) => Ok(released),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => {
                // Not delivered: releasable again at once.
                let mut held = held;
                held.releasing_since = None;
                let mut batch = Batch::new();
                batch.expect_version(&keys::message(number), claimed);
                batch.set(&keys::message(number), &encode(&held));
                if let Err(undo) = self.store.commit(batch).await {
                    tracing::warn!(id, error = %undo, "quarantine: a failed release stays marked until its lease ends");
                }
                Err(e)
            }
        }
    }

    /// Deletes a held message undelivered.
    pub async fn delete(&self, principal: &Principal, id: &str, now: u64) -> Result<Held, Error> {
        for _ in 0..RETRIES_MAX {
            let (number, held, version) = self.visible(principal, id).await?;
            if releasing(&held, now) {
                return Err(Error::Releasing(id.to_string()));
            }
            let mut batch = Batch::new();
            batch.expect_version(&keys::message(number), version);
            remove(&mut batch, number, &held)?;
            match self.store.commit(batch).await {
                Ok(_) => return Ok(held),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// Deletes every held message whose expiry is at or before `now`, a page at a time;
    /// returns how many. One being released is left to its release.
    pub async fn expire(&self, now: u64) -> Result<usize, Error> {
        let mut removed = 0;
        let mut scan = Scan::range(keys::EXPIRY, &keys::expiry_after(now)).limit(EXPIRE_PAGE_MAX);
        loop {
            let entries = self.store.scan(&scan).await?;
            for entry in &entries {
                removed += usize::from(self.remove_indexed(&entry.key, Some(now)).await?);
            }
            match entries.last() {
                Some(last) if entries.len() == EXPIRE_PAGE_MAX => scan = scan.after(&last.key),
                _ => return Ok(removed),
            }
        }
    }

    /// Marks the message as being released, in a conditional commit: the version of the
    /// marked record, which only this release may remove.
    async fn claim(&self, principal: &Principal, id: &str, now: u64) -> Result<(u64, Held, Version), Error> {
        for _ in 0..RETRIES_MAX {
            let (number, mut held, version) = self.visible(principal, id).await?;
            if releasing(&held, now) {
                return Err(Error::Releasing(id.to_string()));
            }
            held.releasing_since = Some(now);
            let mut batch = Batch::new();
            batch.expect_version(&keys::message(number), version);
            batch.set(&keys::message(number), &encode(&held));
            match self.store.commit(batch).await {
                Ok(committed) => return Ok((number, held, committed.version)),
                Err(hameau_store::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Busy)
    }

    /// Delivers `held` to the accounts its recipients still deliver to, in one commit.
    async fn deliver(&self, held: &Held, delivery: Delivery<'_>) -> Result<Released, Error> {
        let raw = self.content(held).await?;
        let mut released = Released::default();
        let mut recipients: Vec<(u64, Quota)> = Vec::new();
        for recipient in &held.recipients {
            let resolved = delivery.directory.resolve_recipient(&recipient.address).await?;
            let account = resolved.as_ref().filter(|resolved| resolved.tenant == held.tenant).and_then(|resolved| {
                let account = resolved.accounts.iter().find(|account| account.id == recipient.account)?;
                Some(Quota {
                    account_bytes_max: account.quota_bytes,
                    tenant: Some(resolved.tenant.clone()),
                    tenant_bytes_max: resolved.tenant_quota_bytes,
                })
            });
            let (list, address) = match account {
                Some(quota) => {
                    recipients.push((recipient.account, quota));
                    (&mut released.delivered, &recipient.address)
                }
                None => (&mut released.skipped, &recipient.address),
            };
            if !list.contains(address) {
                list.push(address.clone());
            }
        }
        // An address with one account skipped and another kept is delivered.
        released.skipped.retain(|address| !released.delivered.contains(address));
        if !recipients.is_empty() {
            let local = LocalDelivery {
                raw: Bytes::from(raw),
                recipients,
                filing: Filing::Inbox,
                received_at: held.received_at,
            };
            delivery.mail.deliver(local).await?;
        }
        Ok(released)
    }

    /// The message `typed`, if the caller administers its tenant. A user is refused before
    /// anything is read.
    async fn visible(&self, principal: &Principal, typed: &str) -> Result<(u64, Held, Version), Error> {
        principal.administered_tenant()?;
        let not_found = || Error::NotFound(typed.to_string());
        let id: u64 = typed.parse().map_err(|_| not_found())?;
        let (held, version) = self.read(id).await?.ok_or_else(not_found)?;
        if !principal.administers(Some(&held.tenant))? {
            return Err(not_found());
        }
        Ok((id, held, version))
    }

    /// Deletes every message held for `tenant`, a page at a time, whatever its state (the
    /// tenant is being deleted: a release under way delivers to accounts that are gone);
    /// returns how many.
    pub(crate) async fn forget_tenant(&self, tenant: &str) -> Result<usize, Error> {
        let mut removed = 0;
        // Page after page, each entry visited once: the walk ends whatever a commit does.
        let mut scan = Scan::prefix(&keys::tenant_prefix(tenant)).limit(EXPIRE_PAGE_MAX);
        loop {
            let entries = self.store.scan(&scan).await?;
            for entry in &entries {
                removed += usize::from(self.remove_indexed(&entry.key, None).await?);
            }
            match entries.last() {
                Some(last) if entries.len() == EXPIRE_PAGE_MAX => scan = scan.after(&last.key),
                _ => break,
            }
        }
        let mut batch = Batch::new();
        batch.delete(&keys::bytes(tenant));
        self.store.commit(batch).await?;
        Ok(removed)
    }

    /// Removes the held message an index entry (`fq/e/…` or `fq/t/…`) names, unless it is
    /// being released at `now` (`None`: removed whatever its state); an entry left by a
    /// message gone, or not ending with an id, is dropped. Whether a message was removed;
    /// one changed meanwhile (a release) is left for the next pass.
    async fn remove_indexed(&self, index_key: &[u8], now: Option<u64>) -> Result<bool, Error> {
        let mut batch = Batch::new();
        let found = match keys::trailing_id(index_key) {
            Some(id) => self.read(id).await?.map(|found| (id, found)),
            None => None,
        };
        let removing = match found {
            None => {
                batch.delete(index_key);
                false
            }
            Some((_, (held, _))) if now.is_some_and(|now| releasing(&held, now)) => return Ok(false),
            Some((id, (held, version))) => {
                batch.expect_version(&keys::message(id), version);
                remove(&mut batch, id, &held)?;
                true
            }
        };
        match self.store.commit(batch).await {
            Ok(_) => Ok(removing),
            Err(hameau_store::Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn read(&self, id: u64) -> Result<Option<(Held, Version)>, Error> {
        let key = keys::message(id);
        let Some(entry) = self.store.get(&key).await? else { return Ok(None) };
        Ok(Some((decode(&key, &entry.value)?, entry.version)))
    }

    async fn content(&self, held: &Held) -> Result<Vec<u8>, Error> {
        let key = format!("held message blob {}", held.blob);
        let hash = BlobHash::from_hex(&held.blob).ok_or_else(|| corrupt(key.as_bytes(), "not a blob id"))?;
        self.store.read_blob(&hash).await?.ok_or_else(|| corrupt(key.as_bytes(), "the blob is missing"))
    }
}

/// Whose the record `key` with `value` is; `None` when the key is not the quarantine's or
/// the value does not read as its record.
pub fn record_owner(key: &[u8], value: &[u8]) -> Option<RecordOwner> {
    if key == keys::SEQ {
        return Some(RecordOwner::Installation);
    }
    if key.starts_with(keys::MESSAGES) {
        return Some(RecordOwner::Tenant(serde_json::from_slice::<Held>(value).ok()?.tenant));
    }
    if key.starts_with(keys::EXPIRY) {
        return Some(RecordOwner::Via(keys::message(keys::trailing_id(key)?)));
    }
    if let Some(tenant) = key.strip_prefix(keys::BYTES) {
        return Some(RecordOwner::Tenant(std::str::from_utf8(tenant).ok()?.to_string()));
    }
    let tail = key.strip_prefix(keys::TENANTS)?;
    let tenant = tail.get(..tail.len().checked_sub(9)?)?;
    Some(RecordOwner::Tenant(std::str::from_utf8(tenant).ok()?.to_string()))
}

/// The blob a held message's record holds one reference to.
pub fn record_blob_refs(key: &[u8], value: &[u8]) -> Vec<BlobHash> {
    if !key.starts_with(keys::MESSAGES) {
        return Vec::new();
    }
    serde_json::from_slice::<Held>(value).ok().and_then(|held| BlobHash::from_hex(&held.blob)).into_iter().collect()
}

/// A release under way and within its lease.
fn releasing(held: &Held, now: u64) -> bool {
    held.releasing_since.is_some_and(|since| now < since.saturating_add(RELEASE_LEASE_S))
}

/// Adds to `batch` what takes a held message out of the quarantine.
fn remove(batch: &mut Batch, id: u64, held: &Held) -> Result<(), Error> {
    let hash = BlobHash::from_hex(&held.blob).ok_or_else(|| corrupt(&keys::message(id), "not a blob id"))?;
    batch.delete(&keys::message(id));
    batch.delete(&keys::tenant(&held.tenant, id));
    batch.delete(&keys::expiry(held.expires_at, id));
    batch.add(&keys::bytes(&held.tenant), -i64::try_from(held.size).unwrap_or(i64::MAX));
    batch.blob_release(&hash);
    Ok(())
}

/// The From and Subject, for the listing; empty when absent.
fn headline(raw: &[u8]) -> (String, String) {
    let Some(message) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return (String::new(), String::new());
    };
    let from = match message.from().and_then(|from| from.first()) {
        Some(addr) => match (addr.name(), addr.address()) {
            (Some(name), Some(address)) => format!("{name} <{address}>"),
            (None, Some(address)) => address.to_string(),
            (Some(name), None) => name.to_string(),
            (None, None) => String::new(),
        },
        None => String::new(),
    };
    (one_line(&from, HEADLINE_CHARS_MAX), one_line(message.subject().unwrap_or_default(), HEADLINE_CHARS_MAX))
}

/// The start of the message's text, on one line.
fn preview(raw: &[u8]) -> String {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else { return String::new() };
    message.body_text(0).map(|text| one_line(&text, PREVIEW_CHARS_MAX)).unwrap_or_default()
}

/// `text` with its runs of white space and control characters made one space, at most
/// `chars_max` characters.
fn one_line(text: &str, chars_max: usize) -> String {
    let words = text.split(|c: char| c.is_whitespace() || c.is_control()).filter(|word| !word.is_empty());
    let mut line = String::new();
    for word in words {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        if line.chars().count() >= chars_max {
            return line.chars().take(chars_max).collect();
        }
    }
    line
}

fn encode(held: &Held) -> Vec<u8> {
    serde_json::to_vec(held).expect("a quarantine record always serialises")
}

fn decode(key: &[u8], value: &[u8]) -> Result<Held, Error> {
    serde_json::from_slice(value).map_err(|e| corrupt(key, e))
}

/// Where the quarantine lives in the store: every key starts with `fq/`. Numbers are 8
/// bytes big-endian, so keys sort by them (ids, times).
mod keys {
    /// The counter that numbers held messages.
    pub const SEQ: &[u8] = b"fq/seq";

    /// A held message's record: `fq/m/` + id.
    pub const MESSAGES: &[u8] = b"fq/m/";

    /// A tenant's held messages: `fq/t/` + tenant + `/` + id.
    pub const TENANTS: &[u8] = b"fq/t/";

    /// The sweep's schedule: `fq/e/` + expiry time + id.
    pub const EXPIRY: &[u8] = b"fq/e/";

    /// A tenant's held bytes (a counter): `fq/b/` + tenant.
    pub const BYTES: &[u8] = b"fq/b/";

    pub fn bytes(tenant: &str) -> Vec<u8> {
        [BYTES, tenant.as_bytes()].concat()
    }

    pub fn message(id: u64) -> Vec<u8> {
        [MESSAGES, &id.to_be_bytes()].concat()
    }

    pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
        [TENANTS, tenant.as_bytes(), b"/"].concat()
    }

    pub fn tenant(tenant: &str, id: u64) -> Vec<u8> {
        [tenant_prefix(tenant).as_slice(), &id.to_be_bytes()].concat()
    }

    pub fn expiry(at: u64, id: u64) -> Vec<u8> {
        [EXPIRY, &at.to_be_bytes(), &id.to_be_bytes()].concat()
    }

    /// The first expiry key after every entry at or before `at`.
    pub fn expiry_after(at: u64) -> Vec<u8> {
        [EXPIRY, &at.saturating_add(1).to_be_bytes()].concat()
    }

    /// The id at the end of a message, tenant or expiry key.
    pub fn trailing_id(key: &[u8]) -> Option<u64> {
        let id = key.get(key.len().checked_sub(8)?..)?;
        Some(u64::from_be_bytes(id.try_into().ok()?))
    }
}

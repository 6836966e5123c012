//! Where the queue lives in the store: every key starts with `q/`. Numbers are 8 bytes
//! big-endian, so keys sort by them (ids, times).

/// The counter that numbers queued messages. Every enqueue adds to it: the delivery
/// workers watch it ([`crate::Queue::watch_due`]).
pub const SEQ: &[u8] = b"q/seq";

/// Added to by each change that makes a message due earlier than it was without queuing
/// it (released, retried, a brake lifted, a lease taken back), in the same commit: the
/// delivery workers watch it with [`SEQ`], so that a change made on any node wakes them.
pub const WAKE: &[u8] = b"q/wake";

/// The number of messages in the queue (held ones too): added to as messages enter and
/// leave, in the same commit, so that `/metrics` reads one key instead of counting.
pub const SIZE: &[u8] = b"q/size";

/// A message's record: `q/m/` + id.
pub const MESSAGES: &[u8] = b"q/m/";

/// The schedule: `q/d/` + when (seconds) + id, one entry per message not held and not
/// done, at its next attempt (or the end of its lease while a worker has it).
pub const DUE: &[u8] = b"q/d/";

/// The leases: `q/l/` + the claiming node's store session + id, one per message a worker
/// has, so that the sessions that ended are found without reading the schedule.
pub const LEASES: &[u8] = b"q/l/";

pub fn lease(session: u64, id: u64) -> Vec<u8> {
    [LEASES, &session.to_be_bytes(), &id.to_be_bytes()].concat()
}

/// The session and the id in a lease key.
pub fn lease_parts(key: &[u8]) -> Option<(u64, u64)> {
    let tail = key.strip_prefix(LEASES)?;
    let (session, id) = (tail.get(..8)?, tail.get(8..)?);
    Some((u64::from_be_bytes(session.try_into().ok()?), u64::from_be_bytes(id.try_into().ok()?)))
}

/// A tenant's messages: `q/t/` + tenant + `/` + id (for the tenant admin's listing).
pub const TENANTS: &[u8] = b"q/t/";

pub fn message(id: u64) -> Vec<u8> {
    [MESSAGES, &id.to_be_bytes()].concat()
}

pub fn due(at: u64, id: u64) -> Vec<u8> {
    [DUE, &at.to_be_bytes(), &id.to_be_bytes()].concat()
}

/// The first due key after every entry at or before `at`.
pub fn due_after(at: u64) -> Vec<u8> {
    [DUE, &at.saturating_add(1).to_be_bytes()].concat()
}

/// The time in a due key.
pub fn due_at(key: &[u8]) -> Option<u64> {
    let at = key.get(DUE.len()..DUE.len() + 8)?;
    Some(u64::from_be_bytes(at.try_into().ok()?))
}

/// The id in a due key.
pub fn due_id(key: &[u8]) -> Option<u64> {
    let id = key.get(DUE.len() + 8..)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

pub fn tenant_prefix(tenant: &str) -> Vec<u8> {
    [TENANTS, tenant.as_bytes(), b"/"].concat()
}

pub fn tenant(tenant: &str, id: u64) -> Vec<u8> {
    [tenant_prefix(tenant).as_slice(), &id.to_be_bytes()].concat()
}

/// The id at the end of a message or tenant index key.
pub fn trailing_id(key: &[u8]) -> Option<u64> {
    let id = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(id.try_into().ok()?))
}

/// Sending brakes: `q/b/` + tenant + `/t` (the whole tenant) or `/a` + account id.
pub const BRAKES: &[u8] = b"q/b/";

pub fn brakes_of(tenant: &str) -> Vec<u8> {
    [BRAKES, tenant.as_bytes(), b"/"].concat()
}

pub fn brake(tenant: &str, account: Option<u64>) -> Vec<u8> {
    match account {
        Some(account) => [brakes_of(tenant).as_slice(), b"a", &account.to_be_bytes()].concat(),
        None => [brakes_of(tenant).as_slice(), b"t"].concat(),
    }
}

/// Whose a queue record is, for a one-tenant restore (docs/backup.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The sending tenant's (a message's record, its index, its brakes).
    Tenant(String),
    /// Owned as the message record at this key is (its schedule entry).
    Via(Vec<u8>),
    /// The installation's: the id counter and the workers' wake-up counter.
    Installation,
    /// The number of messages (`q/size`): the records under [`MESSAGES`], counted.
    CountOfMessages,
    /// Nobody's: a message queued for no tenant (a notification of the installation).
    Nobody,
}

/// Whose the record `key` with `value` is; `None` when the key is not the queue's or the
/// value does not read as its record.
pub fn owner(key: &[u8], value: &[u8]) -> Option<Owner> {
    if key == SEQ || key == WAKE {
        return Some(Owner::Installation);
    }
    if key == SIZE {
        return Some(Owner::CountOfMessages);
    }
    if key.starts_with(MESSAGES) {
        let message = serde_json::from_slice::<crate::Message>(value).ok()?;
        return Some(message.tenant.map_or(Owner::Nobody, Owner::Tenant));
    }
    if key.starts_with(DUE) {
        return Some(Owner::Via(message(due_id(key)?)));
    }
    if key.starts_with(LEASES) {
        return Some(Owner::Via(message(lease_parts(key)?.1)));
    }
    for prefix in [TENANTS, BRAKES] {
        if let Some(tail) = key.strip_prefix(prefix) {
            let tenant = tail.split(|b| *b == b'/').next()?;
            return Some(Owner::Tenant(std::str::from_utf8(tenant).ok()?.to_string()));
        }
    }
    None
}

/// The blob a message's record holds one reference to (its content).
pub fn blob_refs(key: &[u8], value: &[u8]) -> Vec<hameau_store::BlobHash> {
    if !key.starts_with(MESSAGES) {
        return Vec::new();
    }
    serde_json::from_slice::<crate::Message>(value)
        .ok()
        .and_then(|message| hameau_store::BlobHash::from_hex(&message.blob))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_queue_record_has_an_owner() {
        let hash = "ab".repeat(32);
        let record = |tenant: &str| {
            format!(
                r#"{{"blob":"{hash}","size":1,"mail_from":"","tenant":{tenant},"account":null,"queued_at":0,"envelope_id":"e","recipients":[],"held":null,"due_at":null}}"#
            )
        };
        let a = record(r#""a""#);
        assert_eq!(owner(&message(3), a.as_bytes()), Some(Owner::Tenant("a".into())));
        assert_eq!(owner(&message(3), record("null").as_bytes()), Some(Owner::Nobody));
        assert_eq!(owner(&message(3), b"not json"), None);
        assert_eq!(owner(&due(100, 3), b""), Some(Owner::Via(message(3))));
        assert_eq!(owner(&lease(9, 3), b""), Some(Owner::Via(message(3))));
        assert_eq!(lease_parts(&lease(9, 3)), Some((9, 3)));
        assert_eq!(lease_parts(b"q/l/short"), None);
        assert_eq!(owner(&tenant("a", 3), b""), Some(Owner::Tenant("a".into())));
        assert_eq!(owner(&brake("a", Some(7)), b""), Some(Owner::Tenant("a".into())));
        assert_eq!(owner(SEQ, b""), Some(Owner::Installation));
        assert_eq!(owner(WAKE, b""), Some(Owner::Installation));
        assert_eq!(owner(SIZE, b""), Some(Owner::CountOfMessages));
        assert_eq!(owner(b"m/x", b""), None);
        assert_eq!(blob_refs(&message(3), a.as_bytes()), vec![hameau_store::BlobHash::from_hex(&hash).unwrap()]);
        assert!(blob_refs(&tenant("a", 3), a.as_bytes()).is_empty());
    }
}

//! Where an account's mail lives in the store: every key starts with `m/` and the
//! account's id (8 bytes, big-endian), so that one account's data is contiguous.
//! Numbers are big-endian so that keys sort by them (UIDs, modseqs).

use crate::{AccountId, EmailId, Error, Keyword, MailboxId, UidEntry};

/// Every key of an account's mail starts with it (the mail model's other keys, such as a
/// tenant's counter `mt/…`, do not).
pub const MAIL_PREFIX: &[u8] = b"m/";

/// The first key an account's keys may have: `m/` and its id.
pub fn account_start(account: AccountId) -> Vec<u8> {
    [MAIL_PREFIX, &account.to_be_bytes()].concat()
}

/// The account a key of an account's mail belongs to (`m/` and 8 bytes); `None` for the
/// other keys (a tenant's counter, `mt/…`, or another crate's).
pub fn account_of(key: &[u8]) -> Option<AccountId> {
    let id = key.strip_prefix(MAIL_PREFIX)?.get(..8)?;
    Some(AccountId::from_be_bytes(id.try_into().ok()?))
}

fn account_prefix(account: AccountId, tag: &[u8]) -> Vec<u8> {
    [MAIL_PREFIX, &account.to_be_bytes(), b"/", tag].concat()
}

/// Added to by every commit that writes a mailbox record or a vacation response, in the
/// store it commits to: the deliveries' cache (`delivery_cache.rs`) reads again what it
/// kept when it moved. Outside any account's keys (it is the store's, not moved with a
/// tenant).
pub const DELIVERY_SETTINGS_CHANGES: &[u8] = b"mc/settings";

/// Set when the special-use mailboxes were created.
pub fn initialised(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"init")
}

pub fn mailboxes(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"mb/")
}

pub fn mailbox(account: AccountId, id: MailboxId) -> Vec<u8> {
    [mailboxes(account).as_slice(), &id.to_be_bytes()].concat()
}

/// Every mailbox name of the account is under it.
pub fn mailbox_names(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"mbn/")
}

/// Mailbox names, for uniqueness.
pub fn mailbox_name(account: AccountId, name: &str) -> Vec<u8> {
    [mailbox_names(account).as_slice(), name.as_bytes()].concat()
}

/// Names under `name` (its descendants): `mailbox_name(account, name) ++ "/"`.
pub fn mailbox_children(account: AccountId, name: &str) -> Vec<u8> {
    [mailbox_name(account, name).as_slice(), b"/"].concat()
}

/// Written by every change of the mailbox tree (create, rename, delete), so that two
/// concurrent changes of it never both commit on what they read. Holds
/// [`TREE_DELETED`] once the account's mail is deleted.
pub fn mailbox_tree(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"mbt")
}

/// The tree key's value once [`crate::Mail::delete_account_mail`] has begun: the tree can
/// no longer change (an IMAP session still logged in cannot CREATE a mailbox no one owns).
pub const TREE_DELETED: &[u8] = b"deleted";

pub fn mailbox_ids(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"seq/mailbox")
}

pub fn email_ids(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"seq/email")
}

/// The last UID given out in a mailbox (a counter).
pub fn uid_next(account: AccountId, mailbox: MailboxId) -> Vec<u8> {
    [account_prefix(account, b"uidn/").as_slice(), &mailbox.to_be_bytes()].concat()
}

pub fn modseq(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"modseq")
}

/// Bytes of mail held (a counter).
pub fn used(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"used")
}

/// How many mailboxes the account has (a counter, bounded by `mailboxes_max`).
pub fn mailbox_count(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"nmb")
}

/// Bytes of mail held by all the accounts of a tenant (a counter). Outside any account's
/// prefix: a tenant spans accounts.
pub fn tenant_used(tenant: &str) -> Vec<u8> {
    [b"mt/".as_slice(), tenant.as_bytes(), b"/used"].concat()
}

/// The account's vacation response.
pub fn vacation(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"vac")
}

/// A sender the vacation response answered, by address (lower case).
pub fn vacation_sender(account: AccountId, sender: &str) -> Vec<u8> {
    [account_prefix(account, b"vas/").as_slice(), sender.as_bytes()].concat()
}

/// How many senders the vacation response remembers (a counter).
pub fn vacation_senders(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"nvas")
}

/// The objects of one kind of [`crate::Mail::create_object`] (`kind` holds no `/`).
pub fn objects(account: AccountId, kind: &str) -> Vec<u8> {
    [account_prefix(account, b"o/").as_slice(), kind.as_bytes(), b"/"].concat()
}

pub fn object(account: AccountId, kind: &str, id: u64) -> Vec<u8> {
    [objects(account, kind).as_slice(), &id.to_be_bytes()].concat()
}

/// The ids given to objects of a kind (a counter).
pub fn object_ids(account: AccountId, kind: &str) -> Vec<u8> {
    [account_prefix(account, b"seq/o/").as_slice(), kind.as_bytes()].concat()
}

/// How many objects of a kind the account has (a counter, bounded by `objects_max`).
pub fn object_count(account: AccountId, kind: &str) -> Vec<u8> {
    [account_prefix(account, b"no/").as_slice(), kind.as_bytes()].concat()
}

pub fn email(account: AccountId, id: EmailId) -> Vec<u8> {
    [account_prefix(account, b"e/").as_slice(), &id.to_be_bytes()].concat()
}

pub fn summary(account: AccountId, id: EmailId) -> Vec<u8> {
    [account_prefix(account, b"s/").as_slice(), &id.to_be_bytes()].concat()
}

/// The recent mark of a mailbox (IMAP `\Recent`): the highest UID a session has claimed.
pub fn recent(account: AccountId, mailbox: MailboxId) -> Vec<u8> {
    [account_prefix(account, b"rc/").as_slice(), &mailbox.to_be_bytes()].concat()
}

/// The searchable text of an email's body (see [`crate::search_text`]).
pub fn text(account: AccountId, id: EmailId) -> Vec<u8> {
    [account_prefix(account, b"x/").as_slice(), &id.to_be_bytes()].concat()
}

/// The text index's progress in the account (see `query/index.rs`).
pub fn text_index_state(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"tis")
}

/// Every posting chunk of the account's text index: `text_index_terms(account) ++ space
/// (1) ++ term (4) ++ chunk (8)`, so that one term's chunks are one prefix scan.
pub fn text_index_terms(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"ti/")
}

/// One chunk of one term's posting list in the text index.
pub fn text_index_term(account: AccountId, space: u8, term: u32, chunk: u64) -> Vec<u8> {
    [text_index_terms(account).as_slice(), &[space], &term.to_be_bytes(), &chunk.to_be_bytes()].concat()
}

/// The emails of an account, in id order: `emails(account) ++ id (8 bytes)`.
pub fn emails(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"e/")
}

/// The UIDs of a mailbox: `uids(account, mailbox) ++ uid (8 bytes)`.
pub fn uids(account: AccountId, mailbox: MailboxId) -> Vec<u8> {
    [account_prefix(account, b"u/").as_slice(), &mailbox.to_be_bytes(), b"/"].concat()
}

pub fn uid(account: AccountId, mailbox: MailboxId, uid: u32) -> Vec<u8> {
    [uids(account, mailbox).as_slice(), &u64::from(uid).to_be_bytes()].concat()
}

/// The end (excluded) of a range of UIDs ending at `last`.
pub fn uid_after(account: AccountId, mailbox: MailboxId, last: u32) -> Vec<u8> {
    [uids(account, mailbox).as_slice(), &(u64::from(last) + 1).to_be_bytes()].concat()
}

/// Where the modseq sits in a mailbox index value (patched by the commit).
pub const UID_VALUE_MODSEQ_OFFSET: usize = 8;

/// A mailbox index entry: email id (8), modseq (8), size (4), received-at (8), then the
/// keywords (their stored spelling) separated by spaces.
pub fn uid_value(email: EmailId, modseq: u64, size: u32, received_at: u64, keywords: &[Keyword]) -> Vec<u8> {
    let mut value =
        [email.to_be_bytes().as_slice(), &modseq.to_be_bytes(), &size.to_be_bytes(), &received_at.to_be_bytes()]
            .concat();
    for (index, keyword) in keywords.iter().enumerate() {
        if index > 0 {
            value.push(b' ');
        }
        value.extend_from_slice(keyword.stored().as_bytes());
    }
    value
}

pub fn decode_uid_entry(key: &[u8], value: &[u8]) -> Result<UidEntry, Error> {
    let corrupt = || Error::Corrupt { key: key.escape_ascii().to_string(), problem: "mailbox index entry".into() };
    if value.len() < 28 {
        return Err(corrupt());
    }
    let uid = tail_u64(key)?;
    let keywords = std::str::from_utf8(&value[28..]).map_err(|_| corrupt())?;
    Ok(UidEntry {
        uid: u32::try_from(uid).map_err(|_| corrupt())?,
        email: u64::from_be_bytes(value[..8].try_into().expect("8 bytes")),
        modseq: u64::from_be_bytes(value[8..16].try_into().expect("8 bytes")),
        size: u32::from_be_bytes(value[16..20].try_into().expect("4 bytes")),
        received_at: u64::from_be_bytes(value[20..28].try_into().expect("8 bytes")),
        keywords: keywords.split(' ').filter(|k| !k.is_empty()).map(Keyword::from_stored).collect(),
    })
}

/// The UID an email has in a mailbox (8 bytes).
pub fn email_uid(account: AccountId, email: EmailId, mailbox: MailboxId) -> Vec<u8> {
    [account_prefix(account, b"eu/").as_slice(), &email.to_be_bytes(), &mailbox.to_be_bytes()].concat()
}

/// The thread of a Message-ID (hashed: ids are long and arbitrary).
pub fn thread_ref(account: AccountId, message_id: &str) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(message_id.trim_matches(['<', '>']).as_bytes());
    [account_prefix(account, b"t/").as_slice(), &digest[..16]].concat()
}

/// The emails of a thread: `thread_members(account, thread) ++ email`, empty values. JMAP
/// `Thread/get` lists a thread with one prefix scan. Written since issue 15: an email
/// stored before has no entry (`Mail::thread_emails` then gives the thread's first email).
pub fn thread_members(account: AccountId, thread: EmailId) -> Vec<u8> {
    [account_prefix(account, b"th/").as_slice(), &thread.to_be_bytes()].concat()
}

pub fn thread_member(account: AccountId, thread: EmailId, email: EmailId) -> Vec<u8> {
    [thread_members(account, thread).as_slice(), &email.to_be_bytes()].concat()
}

pub fn changes(account: AccountId) -> Vec<u8> {
    account_prefix(account, b"ch/")
}

pub fn change(account: AccountId, modseq: u64) -> Vec<u8> {
    [changes(account).as_slice(), &modseq.to_be_bytes()].concat()
}

/// The UIDs a commit removed from a mailbox: `expunges(account, mailbox) ++ modseq`,
/// valued by the UIDs (4 bytes each, big-endian). It answers "what was expunged from this
/// mailbox since modseq M" with one range scan (QRESYNC), however old M is.
pub fn expunges(account: AccountId, mailbox: MailboxId) -> Vec<u8> {
    [account_prefix(account, b"x/").as_slice(), &mailbox.to_be_bytes(), b"/"].concat()
}

pub fn expunge(account: AccountId, mailbox: MailboxId, modseq: u64) -> Vec<u8> {
    [expunges(account, mailbox).as_slice(), &modseq.to_be_bytes()].concat()
}

/// The number in a key's last 8 bytes.
pub fn tail_u64(key: &[u8]) -> Result<u64, Error> {
    let tail = key.len().checked_sub(8).map(|at| &key[at..]);
    let bytes: [u8; 8] = tail
        .and_then(|tail| tail.try_into().ok())
        .ok_or_else(|| Error::Corrupt { key: key.escape_ascii().to_string(), problem: "short key".into() })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Whose a mail record is, for a one-tenant restore (docs/backup.md).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// An account's mail (`m/<account>/…`): its tenant is the account's.
    Account(AccountId),
    /// A tenant's usage counter (`mt/<tenant>/used`).
    Tenant(String),
    /// The store's own counter of settings changes ([`DELIVERY_SETTINGS_CHANGES`]).
    Installation,
}

/// Whose the record `key` is; `None` when the key is not the mail model's.
pub fn owner(key: &[u8]) -> Option<Owner> {
    if let Some(account) = account_of(key).or_else(|| crate::client_records::account_of(key)) {
        return Some(Owner::Account(account));
    }
    if key == DELIVERY_SETTINGS_CHANGES {
        return Some(Owner::Installation);
    }
    let tenant = key.strip_prefix(b"mt/")?.strip_suffix(b"/used")?;
    Some(Owner::Tenant(std::str::from_utf8(tenant).ok()?.to_string()))
}

/// The prefixes under which the mail model keeps the records of `tenant` and of its
/// `accounts` (each account's `m/<id>`, its push subscriptions, the uploads' expiry index,
/// the tenant's usage): what moves with a tenant to another cluster. The expiry index is
/// shared by every account: [`owner`] tells which of its keys are theirs.
pub fn tenant_prefixes(tenant: &str, accounts: &[AccountId]) -> Vec<Vec<u8>> {
    let mut prefixes: Vec<Vec<u8>> = accounts.iter().map(|account| account_start(*account)).collect();
    prefixes.extend(accounts.iter().map(|account| crate::client_records::push_prefix(*account)));
    prefixes.push(crate::client_records::EXPIRY_PREFIX.to_vec());
    prefixes.push([b"mt/".as_slice(), tenant.as_bytes(), b"/"].concat());
    prefixes
}

/// Whether `key` is an email's record (`m/<account>/e/<id>`).
pub fn is_email(key: &[u8]) -> bool {
    account_of(key).is_some()
        && key.len() == MAIL_PREFIX.len() + 8 + 3 + 8
        && key.get(MAIL_PREFIX.len() + 8..MAIL_PREFIX.len() + 11) == Some(b"/e/".as_slice())
}

/// The blobs an email's record (`m/<account>/e/<id>`) holds one reference each to: the
/// message and its shared large records, as ingest acquires them and expunge releases
/// them. Nothing for the other keys, or a value that does not read as an email.
pub fn blob_refs(key: &[u8], value: &[u8]) -> Vec<hameau_store::BlobHash> {
    if !is_email(key) {
        // An upload holds a reference on its blob too (client_records.rs).
        return crate::client_records::upload_blob(key).into_iter().collect();
    }
    let Ok(email) = serde_json::from_slice::<crate::Email>(value) else { return Vec::new() };
    std::iter::once(&email.blob).chain(&email.records).filter_map(|hex| hameau_store::BlobHash::from_hex(hex)).collect()
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn mail_records_are_their_accounts_and_emails_hold_their_blobs() {
        assert_eq!(owner(&mailbox(7, 1)), Some(Owner::Account(7)));
        assert_eq!(owner(&tenant_used("a")), Some(Owner::Tenant("a".into())));
        assert_eq!(owner(b"d/acc/x"), None);
        let (blob, record) = ("ab".repeat(32), "cd".repeat(32));
        let email = format!(
            r#"{{"id":1,"blob":"{blob}","size":1,"received_at":0,"keywords":[],"thread":1,"mailboxes":[1],"records":["{record}"]}}"#
        );
        let hashes: Vec<_> =
            [&blob, &record].iter().map(|hex| hameau_store::BlobHash::from_hex(hex).unwrap()).collect();
        assert_eq!(blob_refs(&self::email(7, 1), email.as_bytes()), hashes);
        assert!(blob_refs(&summary(7, 1), email.as_bytes()).is_empty());
    }
}

//! Blobs (RFC 8620 §6): what a [`BlobId`] names in the user's account, for download, and
//! the uploads as the HTTP layer records them.
//!
//! - `b17` is email 17's raw message, stored as a blob: the HTTP layer streams it.
//! - `b17.3` is the decoded content of part 3 of that message in mail-parser's list of
//!   parts (transfer encoding undone): parsed here, off the async workers, a panic of the
//!   parser on a hostile message answered as "no such blob".
//! - `u<sha256>` is an upload of this account not yet expired.
//! - `b17.3.1`, `u<sha256>.2`: a part of a part or of an upload (the parts `Email/parse`
//!   shows of an attached message or an uploaded one), at most [`super::BLOB_PARTS_MAX`]
//!   indexes: each is a parse of the level above.
//!
//! Every lookup is in the user's own account: a blob of another account, a guessed id or an
//! expired upload are all "not found" alike.

use hameau_mailbox::{AccountId, Error as MailError};
use hameau_store::BlobHash;

use super::{BlobId, Services};

/// What a blob id names, ready to be sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Blob {
    /// A stored blob, to stream from the store: `size` bytes.
    Stored { hash: BlobHash, size: u64 },
    /// Bytes computed for this download (a decoded MIME part).
    Decoded(Vec<u8>),
}

/// The blob `wire` names in `account` at `now`; `None` when it names nothing there.
pub async fn resolve(services: &Services, account: AccountId, wire: &str, now: u64) -> Result<Option<Blob>, MailError> {
    let Some(blob) = BlobId::parse(wire) else { return Ok(None) };
    match blob {
        BlobId::Upload { hash } => {
            let Some(hash) = BlobHash::from_hex(&hash) else { return Ok(None) };
            let upload = services.mail.upload(account, &hash, now).await?;
            Ok(upload.map(|upload| Blob::Stored { hash, size: upload.size }))
        }
        BlobId::Email { email, part: None } => {
            let email = match services.mail.email(account, email).await {
                Ok(email) => email,
                Err(MailError::NoEmail(_)) => return Ok(None),
                Err(e) => return Err(e),
            };
            Ok(BlobHash::from_hex(&email.blob).map(|hash| Blob::Stored { hash, size: email.size }))
        }
        BlobId::Email { .. } | BlobId::Part { .. } => {
            Ok(read(services, account, wire, now, uncounted).await?.map(Blob::Decoded))
        }
    }
}

/// The whole content of the blob `wire` names in `account` (for a method that reads a blob:
/// an import, a parse); `None` when it names nothing there. A part is the whole blob it
/// starts from, parsed and cut part after part ([`BlobId::chain`]), off the async workers;
/// `charge` is told the bytes of each parse before it runs, and its error stops the read.
pub async fn read<E: From<MailError>>(
    services: &Services,
    account: AccountId,
    wire: &str,
    now: u64,
    charge: impl Fn(u64) -> Result<(), E>,
) -> Result<Option<Vec<u8>>, E> {
    let Some((base, parts)) = BlobId::chain(wire) else { return Ok(None) };
    let whole = match base {
        BlobId::Upload { hash } => {
            let Some(hash) = BlobHash::from_hex(&hash) else { return Ok(None) };
            services.mail.read_upload(account, &hash, now).await?
        }
        BlobId::Email { email, .. } => match services.mail.raw(account, email).await {
            Ok(raw) => Some(raw),
            Err(MailError::NoEmail(_)) => None,
            Err(e) => return Err(e.into()),
        },
        BlobId::Part { .. } => None,
    };
    let Some(mut bytes) = whole else { return Ok(None) };
    for part in parts {
        charge(bytes.len() as u64)?;
        match tokio::task::spawn_blocking(move || part_contents(&bytes, part)).await.ok().flatten() {
            Some(contents) => bytes = contents,
            None => return Ok(None),
        }
    }
    Ok(Some(bytes))
}

/// The `charge` of a [`read`] whose parses are not counted: a download, one part, at most
/// [`super::BLOB_PARTS_MAX`] parses.
pub(crate) fn uncounted(_bytes: u64) -> Result<(), MailError> {
    Ok(())
}

/// The decoded content of part `index` of `raw` (mail-parser's numbering: 0 is the
/// message itself); `None` if there is no such part, it is a multipart container, or the
/// parser failed on the message.
pub fn part_contents(raw: &[u8], index: u32) -> Option<Vec<u8>> {
    // A panic of the parser on a message is that message's failure, not the server's.
    std::panic::catch_unwind(|| {
        let message = mail_parser::MessageParser::default().parse(raw)?;
        let part = message.part(index)?;
        if matches!(part.body, mail_parser::PartType::Multipart(_)) {
            return None;
        }
        Some(part.contents().to_vec())
    })
    .ok()
    .flatten()
}

/// The upload's answer (RFC 8620 §6.1): `{accountId, blobId, type, size}`.
pub fn upload_response(account: AccountId, hash: &BlobHash, content_type: &str, size: u64) -> serde_json::Value {
    serde_json::json!({
        "accountId": crate::api::account_id(account),
        "blobId": BlobId::Upload { hash: hash.to_hex() }.to_wire(),
        "type": content_type,
        "size": size,
    })
}

#[cfg(test)]
#[path = "blob_tests.rs"]
mod tests;

//! Upload (RFC 8620 §6.1) and download (§6.2).
//!
//! - An upload is read as it streams in, one store chunk at a time, and refused past
//!   `jmap.upload_bytes_max` with the RFC's `limit` problem naming `maxSizeUpload` (at
//!   once when `Content-Length` says so). It is kept for the account alone
//!   (`hameau_mailbox::Mail::add_upload`): charged to its quota and its tenant's, and to
//!   `jmap.upload_pending_bytes_max`; past either, 413 with a problem that says which.
//!   The answer is `201` with `{accountId, blobId, type, size}`.
//! - A download names the user's own account; any other account, or a blob it does not
//!   have, is 404 alike. It streams a stored blob chunk by chunk.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use hameau_jmap::RequestError;
use hameau_jmap::mail::Blob;
use hameau_mailbox::{Error as MailError, Quota, UploadTerms};
use tokio::io::{AsyncRead, ReadBuf};

use super::{Authenticated, Kind, request_error};
use crate::AppState;
use crate::api::Problem;

/// The longest media type an upload may declare: far above any real one (RFC 6838 caps
/// type and subtype at 127 characters each); a longer one is refused.
const CONTENT_TYPE_BYTES_MAX: usize = 255;

/// How much of a refused upload's body is read and dropped so that the client reads the
/// refusal: 1 MiB, a second at 8 Mbit/s; a larger body has its connection closed.
const REFUSED_DRAIN_BYTES_MAX: usize = 1 << 20;

/// `POST /jmap/upload/{accountId}`.
pub(super) async fn upload(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if account_id != hameau_jmap::api::account_id(user.account) {
        return Problem::new(StatusCode::NOT_FOUND, "no such account").into_response();
    }
    let limits = &state.jmap.limits;
    let too_large = || {
        request_error(&RequestError::Limit {
            limit: "maxSizeUpload",
            detail: format!("the upload is over {} bytes", limits.upload_bytes_max),
        })
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.upload_bytes_max) {
        drain(body.into_data_stream()).await;
        return too_large();
    }
    // No type, or an empty one (jmapc sends one for a file it cannot name): bytes.
    let content_type = match headers.get(header::CONTENT_TYPE).map(|value| value.to_str()) {
        None => "application/octet-stream".to_string(),
        Some(Ok(value)) if value.trim().is_empty() => "application/octet-stream".to_string(),
        Some(Ok(value)) if value.len() <= CONTENT_TYPE_BYTES_MAX => value.trim().to_string(),
        Some(_) => {
            return Problem::new(StatusCode::BAD_REQUEST, "the Content-Type is not a media type").into_response();
        }
    };
    let Some(_uploading) = state.jmap_in_flight.enter(Kind::Upload, user.account, limits.concurrent_requests_max)
    else {
        return request_error(&RequestError::Limit {
            limit: "maxConcurrentUpload",
            detail: format!("this account has {} uploads under way already", limits.concurrent_requests_max),
        });
    };
    let mut reader = BodyReader::new(body, limits.upload_bytes_max);
    let staged = match state.jmap.mail.stage_upload(user.account, &mut reader).await {
        Ok(staged) => staged,
        Err(_) if reader.over => {
            drain(reader.stream).await;
            return too_large();
        }
        Err(MailError::Store(hameau_store::Error::Limit { .. })) => {
            return Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "the upload is over the store's largest blob")
                .into_response();
        }
        Err(MailError::Store(hameau_store::Error::Read(e))) => {
            return Problem::new(StatusCode::BAD_REQUEST, format!("the upload could not be read: {e}")).into_response();
        }
        Err(e) => return failed(&e),
    };
    let quota = match state.directory.resolve_recipient(&user.address).await {
        Ok(Some(recipient)) => Quota {
            account_bytes_max: recipient
                .accounts
                .iter()
                .find(|account| account.id == user.account)
                .and_then(|a| a.quota_bytes),
            tenant: Some(recipient.tenant),
            tenant_bytes_max: recipient.tenant_quota_bytes,
        },
        Ok(None) => Quota::default(),
        Err(e) => {
            tracing::error!(error = %e, "jmap upload: the account's quota could not be read");
            return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the server cannot store uploads now")
                .into_response();
        }
    };
    let terms = UploadTerms {
        now: state.clock.now_s(),
        ttl_s: limits.upload_ttl_s,
        pending_bytes_max: limits.upload_pending_bytes_max,
        quota,
    };
    match state.jmap.mail.add_upload(user.account, staged, &terms).await {
        Ok(upload) => {
            let answer = hameau_jmap::mail::upload_response(user.account, &upload.hash, &content_type, upload.size);
            (StatusCode::CREATED, axum::Json(answer)).into_response()
        }
        // RFC 8620 §6.1 names no error for a full account: 413, with the SetError's word.
        Err(MailError::OverQuota { used, quota, size }) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("overQuota: {size} bytes more would pass the quota ({used} of {quota} bytes used)"),
        )
        .into_response(),
        Err(MailError::UploadsFull { max }) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "overQuota: the account holds {max} bytes of unused uploads, the most it may; use or wait for them"
            ),
        )
        .into_response(),
        Err(MailError::Busy) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the same upload is being stored: try again").into_response()
        }
        Err(e) => failed(&e),
    }
}

/// Reads and drops what is left of a refused upload, up to [`REFUSED_DRAIN_BYTES_MAX`]:
/// a client that sends its whole body before it reads the answer (most do) then gets the
/// refusal instead of a reset connection; past it, the connection is closed unread.
async fn drain(mut stream: axum::body::BodyDataStream) {
    use futures_util::StreamExt as _;
    let mut drained = 0usize;
    while drained <= REFUSED_DRAIN_BYTES_MAX {
        match stream.next().await {
            Some(Ok(chunk)) => drained += chunk.len(),
            _ => return,
        }
    }
}

fn failed(error: &MailError) -> Response {
    tracing::error!(error = %error, "jmap: a blob operation failed");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "the server failed; try again later").into_response()
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct DownloadQuery {
    #[serde(default)]
    accept: Option<String>,
}

/// `GET /jmap/download/{accountId}/{blobId}/{name}?accept={type}`.
pub(super) async fn download(
    State(state): State<AppState>,
    Authenticated(user): Authenticated,
    Path((account_id, blob_id, name)): Path<(String, String, String)>,
    Query(query): Query<DownloadQuery>,
) -> Response {
    let not_found = || Problem::new(StatusCode::NOT_FOUND, "no such blob").into_response();
    if account_id != hameau_jmap::api::account_id(user.account) {
        return not_found();
    }
    let blob = match hameau_jmap::mail::resolve_blob(&state.jmap, user.account, &blob_id, state.clock.now_s()).await {
        Ok(Some(blob)) => blob,
        Ok(None) => return not_found(),
        Err(e) => return failed(&e),
    };
    let (body, length) = match blob {
        Blob::Decoded(bytes) => {
            let length = bytes.len() as u64;
            (Body::from(bytes), length)
        }
        Blob::Stored { hash, size } => match state.store.open_blob(&hash).await {
            Ok(Some(reader)) => (Body::from_stream(chunks(reader)), size),
            Ok(None) => return not_found(),
            Err(e) => return failed(&MailError::Store(e)),
        },
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    let media_type =
        query.accept.as_deref().filter(|accept| is_media_type(accept)).unwrap_or("application/octet-stream");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(media_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(disposition) = HeaderValue::from_str(&content_disposition(&name)) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    // RFC 8620 §6.2: a blob id always names the same bytes.
    let cache = format!("private, immutable, max-age={}", state.jmap.limits.download_max_age_s);
    if let Ok(cache) = HeaderValue::from_str(&cache) {
        headers.insert(header::CACHE_CONTROL, cache);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A stored blob's chunks, read one at a time as the client takes them.
fn chunks(reader: hameau_store::BlobReader) -> impl Stream<Item = Result<Bytes, hameau_store::Error>> + Send {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(Bytes::from(chunk)), Some(reader))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// `type/subtype` with optional parameters, in the characters of RFC 9110 tokens and
/// quoted parameter values: what may be echoed as `Content-Type`.
fn is_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let token =
        |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b));
    value.len() <= CONTENT_TYPE_BYTES_MAX
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && essence.split_once('/').is_some_and(|(kind, subtype)| token(kind) && token(subtype))
}

/// `attachment; filename*=UTF-8''…` (RFC 6266 §4.3, RFC 8187 §3.2: the name's UTF-8 bytes,
/// those outside `attr-char` percent-encoded).
pub(super) fn content_disposition(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename*=UTF-8''{encoded}")
}

/// A request body as an `AsyncRead` that fails once more than `max` bytes came in
/// (`over` then says why), so that an upload is never read past its limit.
struct BodyReader {
    stream: axum::body::BodyDataStream,
    pending: Bytes,
    received: u64,
    max: u64,
    over: bool,
}

impl BodyReader {
    fn new(body: Body, max: u64) -> BodyReader {
        BodyReader { stream: body.into_data_stream(), pending: Bytes::new(), received: 0, max, over: false }
    }
}

impl AsyncRead for BodyReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(Pin::new(&mut self.stream).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Some(Ok(bytes)) => {
                    self.received = self.received.saturating_add(bytes.len() as u64);
                    if self.received > self.max {
                        self.over = true;
                        return Poll::Ready(Err(std::io::Error::other("the upload is over maxSizeUpload")));
                    }
                    self.pending = bytes;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{content_disposition, is_media_type};

    #[test]
    fn names_are_encoded_and_media_types_checked() {
        assert_eq!(content_disposition("compte rendu.pdf"), "attachment; filename*=UTF-8''compte%20rendu.pdf");
        assert_eq!(
            content_disposition("délibération\";\r\n.txt"),
            "attachment; filename*=UTF-8''d%C3%A9lib%C3%A9ration%22%3B%0D%0A.txt"
        );
        assert!(is_media_type("application/pdf"));
        assert!(is_media_type("text/plain; charset=utf-8"));
        for wrong in ["", "pdf", "text/", "text/html\r\nX-Evil: 1", "a b/c"] {
            assert!(!is_media_type(wrong), "{wrong}");
        }
    }
}

//! Hameau's reading of a message before it is stored: everything the mail model computes
//! from the raw bytes of an RFC 5322 message (with its MIME parts, RFC 2045–2049), once,
//! at delivery: the [`Summary`] (envelope, body structure with byte offsets, preview,
//! RFC 8621 §4.1.4), the searchable text of its body, and the Message-IDs its thread is
//! found by (RFC 5322 §3.6.4 `References` and `In-Reply-To`).
//!
//! [`parse`] is the parse boundary: mail-parser runs inside it on bytes any sender
//! controls, and a panic inside mail-parser becomes [`Error::Unreadable`], a permanent
//! refusal for SMTP and IMAP, never a dropped connection. Every output is bounded by a
//! field of [`Limits`].
//!
//! This crate knows nothing of the store (no RocksDB under the fuzzer's sanitizers): the
//! `ingest` fuzz target drives it through [`fuzzing::fuzz_ingest`].

mod summary;
#[cfg(test)]
mod tests;

pub use summary::{EmailAddress, Part, Summary, fold_accents, fold_char, search_text};

/// Every limit on what is kept of a message, named: keys of `[mail]`, declared here, read
/// by `config` into `hameau_mailbox::Limits::message`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest summary, as stored (JSON). A summary is a few KiB; one of a message with
    /// several hundred attachments about 100 KiB, with 40,000 `References` about 500 KiB.
    /// 1 MiB keeps every real message and refuses (permanently) a summary made huge on
    /// purpose, such as a 1.2 MB `Subject`, that every FETCH ENVELOPE would then carry.
    pub summary_bytes_max: usize,
    /// Most bytes of searchable text kept per message: 1 MiB holds any real letter; longer
    /// texts (logs pasted into a mail) are searchable in their first megabyte.
    pub text_bytes_max: usize,
    /// Most Message-IDs of `References` and `In-Reply-To` looked up to find a message's
    /// thread: each is a store read at delivery. 32 covers the threads people write (the
    /// first ones, the thread's root, and the last ones, its parent, are kept); a message
    /// with 40,000 references costs 32 reads, not 40,000.
    pub thread_lookups_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { summary_bytes_max: 1024 * 1024, text_bytes_max: 1024 * 1024, thread_lookups_max: 32 }
    }
}

impl Limits {
    /// Checks each limit's range; the keys are those of `[mail]`.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::range;
        range("mail", "summary_bytes_max", self.summary_bytes_max as u64, 4096, 64 << 20)?;
        range("mail", "text_bytes_max", self.text_bytes_max as u64, 0, 64 << 20)?;
        range("mail", "thread_lookups_max", self.thread_lookups_max as u64, 0, 10_000)
    }
}

/// A message as read by [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub summary: Summary,
    /// The summary as stored (JSON), at most [`Limits::summary_bytes_max`] bytes.
    pub summary_json: Vec<u8>,
    /// The searchable text of the body (see [`search_text`]), at most
    /// [`Limits::text_bytes_max`] bytes; empty for a message without text.
    pub text: String,
    /// The Message-IDs to find the thread by, in the order to try them, at most
    /// [`Limits::thread_lookups_max`].
    pub thread_lookups: Vec<String>,
}

/// Why a message cannot be stored. Both are permanent: the same bytes fail again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The MIME parser failed (panicked) on this message.
    #[error("the message cannot be read (the MIME parser failed: {0})")]
    Unreadable(String),
    /// The summary would be larger than [`Limits::summary_bytes_max`].
    #[error("the message's summary has {bytes} bytes, over summary_bytes_max = {max}")]
    SummaryTooLarge { bytes: usize, max: usize },
}

/// Reads a message: its summary, searchable text and thread lookups, from one parse.
/// A message mail-parser cannot make sense of is stored as is, with an empty summary;
/// one that makes it panic is [`Error::Unreadable`].
pub fn parse(raw: &[u8], limits: &Limits) -> Result<Parsed, Error> {
    // The parse boundary: mail-parser documents that it never panics, and has been found
    // to (issue 10). Its state is dropped with the panic; nothing it touched outlives it.
    let parsed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Summary::parse_with_text(raw, limits.text_bytes_max)));
    let (summary, text) = parsed.map_err(|panic| Error::Unreadable(panic_text(panic.as_ref())))?;
    let summary_json = serde_json::to_vec(&summary).expect("a summary serialises");
    if summary_json.len() > limits.summary_bytes_max {
        return Err(Error::SummaryTooLarge { bytes: summary_json.len(), max: limits.summary_bytes_max });
    }
    let thread_lookups = thread_lookups(&summary, limits.thread_lookups_max);
    Ok(Parsed { summary, summary_json, text, thread_lookups })
}

/// The ids a thread is looked up by: `References` in order (the thread's root first),
/// then `In-Reply-To`. Over `max`, the first half and the last half are kept: the root
/// and the parent are what other messages of the thread most likely share.
fn thread_lookups(summary: &Summary, max: usize) -> Vec<String> {
    let all: Vec<&String> = summary.references.iter().chain(summary.in_reply_to.iter()).collect();
    if all.len() <= max {
        return all.into_iter().cloned().collect();
    }
    let head = max.div_ceil(2);
    let tail = max - head;
    all[..head].iter().chain(&all[all.len() - tail..]).map(|id| (*id).clone()).collect()
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    // A panic message is the parser's, but may quote input: keep it short for the logs.
    text.chars().take(200).collect()
}

/// What the `ingest` fuzz target runs (STYLE.md 17).
pub mod fuzzing {
    use crate::{Limits, Summary, parse};

    /// Reads `bytes` as a message with the default limits and with small ones, and checks
    /// what the mail model relies on: the stored summary decodes to the same summary, the
    /// limits hold, every part's offsets lie within the message.
    pub fn fuzz_ingest(bytes: &[u8]) {
        let small = Limits { summary_bytes_max: 4096, text_bytes_max: 64, thread_lookups_max: 3 };
        for limits in [Limits::default(), small] {
            let Ok(parsed) = parse(bytes, &limits) else { continue };
            assert!(parsed.summary_json.len() <= limits.summary_bytes_max);
            assert!(parsed.text.len() <= limits.text_bytes_max);
            assert!(parsed.thread_lookups.len() <= limits.thread_lookups_max);
            let decoded: Summary = serde_json::from_slice(&parsed.summary_json).expect("summary decodes");
            assert_eq!(decoded, parsed.summary);
            check_offsets(&parsed.summary, bytes.len());
        }
    }

    fn check_offsets(summary: &Summary, len: usize) {
        let mut stack = vec![summary];
        while let Some(summary) = stack.pop() {
            for part in &summary.parts {
                assert!(part.offset_end as usize <= len, "part ends at {} of {len}", part.offset_end);
                assert!(part.offset_header <= part.offset_end && part.offset_body <= part.offset_end);
                for child in &part.children {
                    assert!((*child as usize) < summary.parts.len(), "child {child} of {}", summary.parts.len());
                }
                stack.extend(part.message.as_deref());
            }
        }
    }
}

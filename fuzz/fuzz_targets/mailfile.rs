//! The mbox reader and the Maildir file-name parser of `hameau-mailfile` (what an import
//! reads from files a user or an old provider gives). The first byte picks the target:
//! - mbox (mboxrd or mboxo): every message within the limits, flags and keywords well
//!   formed; then read → write → read gives the same message where the format can
//!   carry it (CRLF lines, a final line end);
//! - a Maildir file name: flags known, keyword letters within a–z.
#![no_main]

use hameau_mailfile::mbox::{MboxReader, Quoting};
use hameau_mailfile::{Limits, SYSTEM_FLAGS, is_keyword, maildir, write::mbox_entry};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((selector, input)) = bytes.split_first() else { return };
    match selector % 3 {
        0 => mbox(input, Quoting::Mboxrd),
        1 => mbox(input, Quoting::Mboxo),
        _ => file_name(input),
    }
});

fn limits() -> Limits {
    Limits { message_bytes_max: 4096, line_bytes_max: 1024, messages_max: 64, ..Limits::default() }
}

fn mbox(input: &[u8], quoting: Quoting) {
    let limits = limits();
    for message in MboxReader::new(input, quoting, limits.clone(), "fuzz".into()) {
        let Ok(message) = message else { continue };
        assert!(message.raw.len() as u64 <= limits.message_bytes_max + limits.line_bytes_max + 2);
        assert!(message.flags.iter().all(|flag| SYSTEM_FLAGS.contains(&flag.as_str())));
        assert!(message.keywords.iter().all(|keyword| is_keyword(keyword)));
        // LF-only mbox lines cannot carry a CR before a line end or a last line without one.
        let raw = &message.raw;
        let carried = raw.is_empty()
            || (raw.ends_with(b"\n")
                && raw.iter().enumerate().all(|(at, b)| *b != b'\r' || raw.get(at + 1) == Some(&b'\n')));
        if !carried {
            continue;
        }
        let written = mbox_entry(&message);
        let read: Vec<_> = MboxReader::new(written.as_slice(), Quoting::Mboxrd, Limits::default(), "again".into()).collect();
        assert_eq!(read.len(), 1);
        let again = read[0].as_ref().expect("a written message reads back");
        assert_eq!(again.raw, message.raw);
        let sorted = |list: &[String]| {
            let mut list = list.to_vec();
            list.sort();
            list
        };
        // A message starting with white space gets no flag headers (see `mbox_entry`).
        if message.raw.starts_with(b" ") || message.raw.starts_with(b"\t") {
            assert!(again.flags.is_empty() && again.keywords.is_empty());
        } else {
            assert_eq!(sorted(&again.flags), sorted(&message.flags));
            assert_eq!(sorted(&again.keywords), sorted(&message.keywords));
        }
        if let Some(date) = message.internal_date {
            // The written date is the asctime form of the read one, to the second.
            assert_eq!(again.internal_date, Some(date));
        }
    }
}

fn file_name(input: &[u8]) {
    let Ok(name) = std::str::from_utf8(input) else { return };
    let parsed = maildir::parse_file_name(name);
    assert!(parsed.flags.iter().all(|flag| SYSTEM_FLAGS.contains(flag)));
    assert!(parsed.keyword_indexes.iter().all(|index| *index < 26));
    assert!(name.starts_with(parsed.unique));
}

//! The warning of `hameau-filter` (`hameau_filter::warn`) over the input as a message: it
//! never panics, and what mail-parser could read before it can still read after, with the
//! same number of parts. The first byte picks the style (banner on or off, English, an
//! ASCII or an accented subject tag) and the symbols shown.
//!
//! A panic inside mail-parser is caught (by `warn`'s own parse boundary and here), as in
//! the `ingest` target: the panic hook only reports it.
#![no_main]

use hameau_filter::{Limits, Symbol, WarningStyle, warn};
use mail_parser::MessageParser;

static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    QUIET_CAUGHT_PANICS.call_once(|| {
        let _ = std::panic::take_hook();
        std::panic::set_hook(Box::new(|info| eprintln!("caught: {info}")));
    });
    let Some((selector, raw)) = bytes.split_first() else { return };
    let style = WarningStyle {
        banner: selector & 1 == 0,
        english: selector & 2 != 0,
        subject_tag: if selector & 4 == 0 { "[SUSPECT]".into() } else { "[DOUTEUX É]".into() },
    };
    let names: &[&'static str] =
        if selector & 8 == 0 { &["IMPERSONATION_NAME", "FIRST_CONTACT"] } else { &["LINK_TEXT_MISMATCH", "BAYES_HAM"] };
    let symbols: Vec<Symbol> = names.iter().map(|name| Symbol { name, score: 1.0, detail: String::new() }).collect();
    let limits = Limits { text_bytes_max: 64 << 10, parts_max: 64, ..Limits::default() };
    let warned = std::panic::catch_unwind(|| warn(raw, &symbols, &style, &limits)).expect("warn never panics");
    let parts = |message: &[u8]| {
        std::panic::catch_unwind(|| MessageParser::default().parse(message).map(|parsed| parsed.parts.len()))
    };
    if let Ok(Some(before)) = parts(raw) {
        match parts(&warned) {
            Ok(Some(after)) => assert_eq!(before, after, "the same number of parts"),
            Ok(None) => panic!("the warned message no longer parses"),
            // mail-parser panicking on the output is mail-parser's bug, reported by ingest.
            Err(_) => {}
        }
    }
});

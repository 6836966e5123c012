//! Everything done to a message before it is stored (summary, searchable text, thread
//! lookups: `hameau_message::parse`, the parse boundary), over the input as a message
//! (see `hameau_message::fuzzing::fuzz_ingest`).
//!
//! A panic inside mail-parser is caught by the boundary and is the expected outcome
//! (`Error::Unreadable`), so the panic hook here only reports it; a panic anywhere else
//! still reaches libFuzzer and is a crash. To hunt for mail-parser's own panics, run with
//! `INGEST_FUZZ_CAUGHT_PANICS_ABORT=1`: caught panics then abort too.
#![no_main]

static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    QUIET_CAUGHT_PANICS.call_once(|| {
        if std::env::var_os("INGEST_FUZZ_CAUGHT_PANICS_ABORT").is_none() {
            let _ = std::panic::take_hook();
            std::panic::set_hook(Box::new(|info| eprintln!("caught at the parse boundary: {info}")));
        }
    });
    hameau_message::fuzzing::fuzz_ingest(bytes);
});

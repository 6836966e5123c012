//! The filter's rules (`hameau_filter::analyse`: impersonation, lookalike domains, links,
//! attachments and the zip reader) over the input as a message, with small limits (see
//! `hameau_filter::fuzzing::fuzz_rules` for the invariants checked).
//!
//! A panic inside mail-parser is caught at the rules' parse boundary (the message gets no
//! symbol), so the panic hook here only reports it; a panic anywhere else still reaches
//! libFuzzer and is a crash.
#![no_main]

static QUIET_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    QUIET_CAUGHT_PANICS.call_once(|| {
        if std::env::var_os("FILTER_FUZZ_CAUGHT_PANICS_ABORT").is_none() {
            let _ = std::panic::take_hook();
            std::panic::set_hook(Box::new(|info| eprintln!("caught at the parse boundary: {info}")));
        }
    });
    hameau_filter::fuzzing::fuzz_rules(bytes);
});

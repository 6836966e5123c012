//! A whole IMAP session driven from raw bytes: feeds, timeouts and the driver's answers all
//! come from the input (see `hameau_imap_session::fuzzing::fuzz_session`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    hameau_imap_session::fuzzing::fuzz_session(bytes);
});

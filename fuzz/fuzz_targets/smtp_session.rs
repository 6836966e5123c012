//! A whole SMTP session driven from raw bytes: feeds, timeouts and decisions all come from
//! the input (see `hameau_smtp_session::fuzzing::fuzz_session`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    hameau_smtp_session::fuzzing::fuzz_session(bytes);
});

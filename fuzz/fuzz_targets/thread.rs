//! THREAD=REFERENCES and ORDEREDSUBJECT (RFC 5256) over messages decoded from the input
//! (see `hameau_imap_session::fuzzing::fuzz_thread`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    hameau_imap_session::fuzzing::fuzz_thread(bytes);
});

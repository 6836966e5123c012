//! LIST/LSUB pattern matching (RFC 9051 §6.3.9): a pattern, NUL, a mailbox name; checked
//! against the backtracking definition on small inputs (see
//! `hameau_imap_session::fuzzing::fuzz_list_match`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    hameau_imap_session::fuzzing::fuzz_list_match(bytes);
});

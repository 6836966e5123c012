//! The `Authentication-Results` stripper of the MX on a whole message: no field claiming
//! our authserv-id survives (see `hameau_smtp_session::fuzzing::fuzz_auth_results`).
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    hameau_smtp_session::fuzzing::fuzz_auth_results(bytes);
});

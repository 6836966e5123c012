//! Attack tests (issue 10): see `attack.rs` for the shared set-up.

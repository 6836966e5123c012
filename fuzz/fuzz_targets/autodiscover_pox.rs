//! An Outlook Autodiscover (POX) request body as the HTTPS listener reads it from the
//! network (`pox_request_address`): it never panics, and an address it accepts is one the
//! answer may echo (bounded, plain text: no markup, no entity, no whitespace).
//!
//! crates/http depends on the store (RocksDB), so its std-only `autoconfig/pox.rs` is
//! included here by path.
#![no_main]

#[path = "../../crates/http/src/autoconfig/pox.rs"]
mod pox;

use pox::{EMAIL_BYTES_MAX, address_domain, pox_request_address};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(address) = pox_request_address(bytes) {
        assert!(address.len() <= EMAIL_BYTES_MAX, "{address:?}");
        assert!(!address.contains(['<', '>', '&', '"']), "{address:?}");
        assert!(!address.chars().any(|c| c.is_whitespace() || c.is_control()), "{address:?}");
        assert!(address_domain(&address).is_some(), "{address:?}");
    }
});

//! A JMAP request body (`hameau_jmap::Request::parse`), then each call's result references
//! resolved against the calls before it (each call's arguments standing for its response,
//! so that references chain), then each object argument applied as a `PatchObject` to the
//! one before it: never a panic, and the bounds of `Limits` hold.
#![no_main]

use hameau_jmap::{Invocation, Limits, Request, apply_patch, resolve_references};
use serde_json::{Map, Value};

const CAPABILITIES: [&str; 3] =
    ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"];

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let limits = Limits { request_bytes_max: 1 << 20, reference_values_max: 1000, ..Limits::default() };
    let Ok(request) = Request::parse(bytes, &limits, &CAPABILITIES) else { return };
    assert!(request.method_calls.len() as u64 <= limits.calls_in_request_max);
    let mut responses: Vec<Invocation> = Vec::new();
    for call in request.method_calls {
        let mut arguments = call.arguments;
        if resolve_references(&mut arguments, &responses, &limits).is_ok() {
            assert!(!arguments.keys().any(|key| key.starts_with('#')), "every reference replaced");
        }
        responses.push(Invocation { name: call.name, arguments, call_id: call.call_id });
    }
    let mut object = Map::new();
    for response in &responses {
        for value in response.arguments.values() {
            if let Value::Object(patch) = value {
                let _ = apply_patch(&mut object, patch, &limits);
            }
        }
    }
});

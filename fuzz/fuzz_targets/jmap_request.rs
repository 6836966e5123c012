//! A JMAP request body (`hameau_jmap::Request::parse`), then each call's result references
//! resolved against the calls before it (each call's arguments standing for its response,
//! so that references chain), then each object argument applied as a `PatchObject` to the
//! one before it; each call's `filter` flattened and evaluated (`hameau_jmap::filter`), and
//! each string argument read as a JMAP `UTCDate` (`hameau_calendar`): never a panic, and
//! the bounds of `Limits` hold.
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
        if let Ok(nodes) = hameau_jmap::filter::flatten(arguments.get("filter").cloned(), limits.filter_nodes_max) {
            assert!(nodes.len() as u64 <= limits.filter_nodes_max);
            let _ = hameau_jmap::filter::matches::<()>(&nodes, |condition| Ok(condition.len() % 2 == 0));
        }
        for value in arguments.values() {
            if let Some(text) = value.as_str()
                && let Some(seconds) = hameau_calendar::parse_rfc3339_utc(text)
            {
                assert_eq!(hameau_calendar::parse_rfc3339_utc(&hameau_calendar::rfc3339(seconds)), Some(seconds));
            }
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

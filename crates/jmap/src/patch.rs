//! A `PatchObject` of `/set` (RFC 8620 §5.3): each key a JSON Pointer (without its
//! leading `/`) into the object, each value what to put there, `null` to remove it.
//!
//! The RFC's rules, each an `invalidPatch`: every part of a path before its last must
//! already exist (and be an object); a path must not point inside an array (arrays are
//! replaced whole); no path may be a prefix of another (their order would matter). The
//! walk down a path is a loop, and the entries are bounded by [`Limits::patch_entries_max`].

use serde_json::{Map, Value};

use crate::reference::unescape;
use crate::{Limits, SetError};

/// Applies `patch` to `object`. On an error `object` is left as it was.
pub fn apply_patch(
    object: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    limits: &Limits,
) -> Result<(), SetError> {
    if patch.len() as u64 > limits.patch_entries_max {
        return Err(SetError::invalid_patch(format!(
            "{} entries in one patch, at most {}",
            patch.len(),
            limits.patch_entries_max
        )));
    }
    let mut paths: Vec<(Vec<String>, &Value)> = Vec::with_capacity(patch.len());
    for (path, value) in patch {
        let tokens: Vec<String> = path.split('/').map(|token| unescape(token).into_owned()).collect();
        if tokens.iter().any(String::is_empty) {
            return Err(SetError::invalid_patch(format!("{path:?} has an empty part")));
        }
        paths.push((tokens, value));
    }
    // No path a prefix of another: sorted, a prefix comes right before what it prefixes.
    let mut sorted: Vec<&Vec<String>> = paths.iter().map(|(tokens, _)| tokens).collect();
    sorted.sort();
    for pair in sorted.windows(2) {
        if pair[1].starts_with(pair[0]) {
            return Err(SetError::invalid_patch(format!(
                "{:?} is inside {:?}: one patch may not change both",
                pair[1].join("/"),
                pair[0].join("/")
            )));
        }
    }
    let mut patched = object.clone();
    for (tokens, value) in paths {
        let (last, parents) = tokens.split_last().expect("split never gives an empty list");
        let mut target = &mut patched;
        for (depth, token) in parents.iter().enumerate() {
            target = match target.get_mut(token) {
                Some(Value::Object(inner)) => inner,
                Some(Value::Array(_)) => {
                    return Err(SetError::invalid_patch(format!(
                        "{:?} points inside an array: arrays are replaced whole",
                        tokens.join("/")
                    )));
                }
                _ => {
                    return Err(SetError::invalid_patch(format!("{:?} does not exist", tokens[..=depth].join("/"))));
                }
            };
        }
        match value {
            Value::Null => {
                target.remove(last);
            }
            value => {
                target.insert(last.clone(), value.clone());
            }
        }
    }
    *object = patched;
    Ok(())
}

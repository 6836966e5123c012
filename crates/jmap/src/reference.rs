//! Result references (RFC 8620 §3.7): an argument named `#name` whose value is
//! `{"resultOf": call id, "name": method name, "path": JSON Pointer}` takes the value the
//! path points at in the arguments of an earlier response of the same request.
//!
//! The path is a JSON Pointer (RFC 6901) with JMAP's extension: on an array, the token `*`
//! applies the rest of the path to every item, and an item's result that is itself an
//! array is flattened into the output (`/list/*/emailIds` of `Thread/get` is every email
//! id of every thread, in one array). The evaluation walks the path once, keeping the set
//! of values reached so far: no recursion, however many `*` the client writes, and the
//! tokens and values are bounded by [`Limits`].

use serde_json::{Map, Value};

use crate::{Invocation, Limits, MethodError};

/// Replaces each `#name` argument of `arguments` by the value its reference points at in
/// `responses` (the responses so far of the same request, in order). An argument given
/// both plainly and by reference is `invalidArguments`; a reference to no response, to a
/// response of another method, or by a path that points at nothing is
/// `invalidResultReference` (RFC 8620 §3.7).
pub fn resolve_references(
    arguments: &mut Map<String, Value>,
    responses: &[Invocation],
    limits: &Limits,
) -> Result<(), MethodError> {
    let referenced: Vec<String> = arguments.keys().filter(|key| key.starts_with('#')).cloned().collect();
    for key in referenced {
        let name = &key[1..];
        if name.is_empty() || name.starts_with('#') {
            // No argument's name starts with "#": "##ids" would leave a reference key behind.
            return Err(MethodError::invalid_arguments(format!("{key:?} names no argument")));
        }
        if arguments.contains_key(name) {
            return Err(MethodError::invalid_arguments(format!("{name:?} is given both plainly and as {key:?}")));
        }
        let reference = arguments.remove(&key).expect("listed above");
        let (Some(result_of), Some(method), Some(path)) =
            (text(&reference, "resultOf"), text(&reference, "name"), text(&reference, "path"))
        else {
            return Err(MethodError::invalid_arguments(format!(
                "{key:?} is not a result reference (resultOf, name and path, each a string)"
            )));
        };
        let Some(response) = responses.iter().find(|response| response.call_id == result_of) else {
            return Err(MethodError::invalid_result_reference(format!(
                "no earlier method call has the id {result_of:?}"
            )));
        };
        if response.name != method {
            return Err(MethodError::invalid_result_reference(format!(
                "the call {result_of:?} answered with {:?}, not {method:?}",
                response.name
            )));
        }
        let value = evaluate_pointer(&response.arguments, path, limits).map_err(|why| {
            MethodError::invalid_result_reference(format!("the path {path:?} of {key:?} points at nothing: {why}"))
        })?;
        arguments.insert(name.to_string(), value);
    }
    Ok(())
}

/// The string property `name` of `object`.
fn text<'a>(object: &'a Value, name: &str) -> Option<&'a str> {
    object.get(name).and_then(Value::as_str)
}

/// What `path` points at in `root` (a JSON Pointer with JMAP's `*`), or why it points at
/// nothing. The empty path is `root` itself.
pub fn evaluate_pointer(root: &Map<String, Value>, path: &str, limits: &Limits) -> Result<Value, String> {
    if path.is_empty() {
        return Ok(Value::Object(root.clone()));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err("a path starts with \"/\"".into());
    };
    let tokens: Vec<&str> = rest.split('/').collect();
    if tokens.len() as u64 > limits.reference_path_tokens_max {
        return Err(format!("more than {} tokens", limits.reference_path_tokens_max));
    }
    let values_max = usize::try_from(limits.reference_values_max).unwrap_or(usize::MAX);
    // The values reached so far; `expanded` once a `*` was applied (the result is then an
    // array of them).
    let mut reached: Vec<&Value> = Vec::new();
    let mut expanded = false;
    let mut first = true;
    for token in tokens {
        let token = unescape(token);
        let mut next: Vec<&Value> = Vec::new();
        if first {
            first = false;
            if token == "*" {
                return Err("the arguments are an object, not an array: \"*\" does not apply".into());
            }
            next.push(root.get(token.as_ref()).ok_or_else(|| format!("no property {token:?}"))?);
        } else if token == "*" {
            expanded = true;
            for value in &reached {
                let Value::Array(items) = value else {
                    return Err("\"*\" applies to an array only".into());
                };
                if next.len() + items.len() > values_max {
                    return Err(format!("more than {values_max} values"));
                }
                next.extend(items.iter());
            }
        } else {
            for value in &reached {
                next.push(step(value, &token)?);
            }
        }
        reached = next;
    }
    if !expanded {
        return Ok(reached.pop().cloned().unwrap_or(Value::Null));
    }
    // Each item's result that is an array is flattened into the output.
    let mut out = Vec::with_capacity(reached.len());
    for value in reached {
        match value {
            Value::Array(items) => {
                if out.len() + items.len() > values_max {
                    return Err(format!("more than {values_max} values"));
                }
                out.extend(items.iter().cloned());
            }
            other => out.push(other.clone()),
        }
    }
    Ok(Value::Array(out))
}

/// One token applied to one value: an object's property, or an array's index (digits,
/// without leading zeros: RFC 6901 §4).
fn step<'a>(value: &'a Value, token: &str) -> Result<&'a Value, String> {
    match value {
        Value::Object(object) => object.get(token).ok_or_else(|| format!("no property {token:?}")),
        Value::Array(items) => {
            let index = (!token.is_empty()
                && token.bytes().all(|b| b.is_ascii_digit())
                && (token == "0" || !token.starts_with('0')))
            .then(|| token.parse::<usize>().ok())
            .flatten()
            .ok_or_else(|| format!("{token:?} is not an index of an array"))?;
            items.get(index).ok_or_else(|| format!("no item {index} in an array of {}", items.len()))
        }
        _ => Err(format!("{token:?} applies to an object or an array only")),
    }
}

/// `~1` is `/` and `~0` is `~` (RFC 6901 §4), in that order.
pub(crate) fn unescape(token: &str) -> std::borrow::Cow<'_, str> {
    if token.contains('~') {
        std::borrow::Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        std::borrow::Cow::Borrowed(token)
    }
}

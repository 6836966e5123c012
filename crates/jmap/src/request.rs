//! A JMAP request and its response (RFC 8620 §3.3, §3.4).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::{CORE_CAPABILITY, Limits, RequestError};

/// One method call or response: `[name, arguments, method call id]` (RFC 8620 §3.2).
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub name: String,
    pub arguments: Map<String, Value>,
    pub call_id: String,
}

/// `[name, arguments, callId]`, written straight from the invocation (no copy into a
/// `Value` first: a response of 50 emails is written once).
impl serde::Serialize for Invocation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.name, &self.arguments, &self.call_id).serialize(serializer)
    }
}

/// A request, read and checked (RFC 8620 §3.3).
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The capabilities the client uses, each one the server has.
    pub using: Vec<String>,
    pub method_calls: Vec<Invocation>,
    /// Creation ids the client already knows (`createdIds`), when it sent them.
    pub created_ids: Option<HashMap<String, String>>,
}

/// A response (RFC 8620 §3.4).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub method_responses: Vec<Invocation>,
    /// Given back when the request gave `createdIds`, with the ids created since.
    pub created_ids: Option<HashMap<String, String>>,
    /// The session object's state: a client that sees it change fetches the session again.
    pub session_state: String,
}

impl Response {
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).expect("a response is JSON: its maps have string keys")
    }
}

/// The response object as the wire writes it: `methodResponses`, `createdIds` when the
/// request sent some, `sessionState`.
impl serde::Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if let Some(created) = &self.created_ids {
            map.serialize_entry("createdIds", created)?;
        }
        map.serialize_entry("methodResponses", &self.method_responses)?;
        map.serialize_entry("sessionState", &self.session_state)?;
        map.end()
    }
}

impl Request {
    /// Reads `body` as a request: JSON (serde_json stops at a nesting of 128, so reading
    /// is bounded in depth as well as by `request_bytes_max`), a `Request` object, every
    /// capability of `using` among `capabilities` (the server's), at most
    /// `calls_in_request_max` calls, each `[String, Object, String]`.
    ///
    /// The core capability is implied: a client that leaves it out of `using` is served
    /// all the same (RFC 8620 §3.3 lists it among the ones a client uses, and the methods
    /// of the core need it; refusing a request for it alone helps no one).
    pub fn parse(body: &[u8], limits: &Limits, capabilities: &[&str]) -> Result<Request, RequestError> {
        if body.len() as u64 > limits.request_bytes_max {
            return Err(RequestError::Limit {
                limit: "maxSizeRequest",
                detail: format!("the request has {} bytes, at most {} are read", body.len(), limits.request_bytes_max),
            });
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(RequestError::NotRequest("the request is not a JSON object".into()));
        };
        let using = match object.remove("using") {
            Some(Value::Array(using)) => using,
            Some(_) => return Err(RequestError::NotRequest("\"using\" is not an array of strings".into())),
            None => return Err(RequestError::NotRequest("\"using\" is missing".into())),
        };
        if using.len() as u64 > limits.capabilities_in_request_max {
            return Err(RequestError::NotRequest(format!(
                "\"using\" names {} capabilities, more than this server has",
                using.len()
            )));
        }
        let mut capabilities_used = Vec::with_capacity(using.len());
        for capability in using {
            let Value::String(capability) = capability else {
                return Err(RequestError::NotRequest("\"using\" is not an array of strings".into()));
            };
            if !capabilities.contains(&capability.as_str()) {
                return Err(RequestError::UnknownCapability(capability));
            }
            if !capabilities_used.contains(&capability) {
                capabilities_used.push(capability);
            }
        }
        if !capabilities_used.iter().any(|capability| capability == CORE_CAPABILITY) {
            capabilities_used.insert(0, CORE_CAPABILITY.to_string());
        }
        let calls = match object.remove("methodCalls") {
            Some(Value::Array(calls)) => calls,
            Some(_) => return Err(RequestError::NotRequest("\"methodCalls\" is not an array".into())),
            None => return Err(RequestError::NotRequest("\"methodCalls\" is missing".into())),
        };
        if calls.len() as u64 > limits.calls_in_request_max {
            return Err(RequestError::Limit {
                limit: "maxCallsInRequest",
                detail: format!("{} method calls, at most {}", calls.len(), limits.calls_in_request_max),
            });
        }
        let mut method_calls = Vec::with_capacity(calls.len());
        for (index, call) in calls.into_iter().enumerate() {
            method_calls.push(invocation(call).ok_or_else(|| {
                RequestError::NotRequest(format!(
                    "method call {index} is not an array of a name, an arguments object and a call id"
                ))
            })?);
        }
        let created_ids = match object.remove("createdIds") {
            None | Some(Value::Null) => None,
            Some(Value::Object(created)) => {
                let mut ids = HashMap::with_capacity(created.len());
                for (creation, id) in created {
                    let Value::String(id) = id else {
                        return Err(RequestError::NotRequest("\"createdIds\" maps creation ids to ids".into()));
                    };
                    ids.insert(creation, id);
                }
                Some(ids)
            }
            Some(_) => return Err(RequestError::NotRequest("\"createdIds\" is not an object".into())),
        };
        Ok(Request { using: capabilities_used, method_calls, created_ids })
    }
}

/// `[String, Object, String]` as an [`Invocation`].
fn invocation(call: Value) -> Option<Invocation> {
    let Value::Array(parts) = call else { return None };
    let [Value::String(name), Value::Object(arguments), Value::String(call_id)]: [Value; 3] = parts.try_into().ok()?
    else {
        return None;
    };
    Some(Invocation { name, arguments, call_id })
}

//! The errors of JMAP, as the RFC names them and as the responses write them.

use serde_json::{Map, Value, json};

/// A request refused as a whole (RFC 8620 §3.6.1): the HTTP response is a problem details
/// document (RFC 7807) with status 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is not JSON, or not I-JSON (RFC 7493).
    #[error("the request is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not a `Request` object.
    #[error("the request is not a JMAP request: {0}")]
    NotRequest(String),
    /// `using` names a capability this server does not have.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// Past a limit of the session object: `limit` names it as the session object does.
    #[error("the request is over the server's limit {limit} ({detail})")]
    Limit { limit: &'static str, detail: String },
}

impl RequestError {
    /// The problem's type URI.
    pub fn type_uri(&self) -> &'static str {
        match self {
            RequestError::NotJson(_) => "urn:ietf:params:jmap:error:notJSON",
            RequestError::NotRequest(_) => "urn:ietf:params:jmap:error:notRequest",
            RequestError::UnknownCapability(_) => "urn:ietf:params:jmap:error:unknownCapability",
            RequestError::Limit { .. } => "urn:ietf:params:jmap:error:limit",
        }
    }

    /// The HTTP status: 400 for each (RFC 8620 §3.6.1).
    pub fn status(&self) -> u16 {
        400
    }

    /// The problem details document (`application/problem+json`).
    pub fn to_json(&self) -> Value {
        let mut problem = json!({ "type": self.type_uri(), "status": self.status(), "detail": self.to_string() });
        if let RequestError::Limit { limit, .. } = self {
            problem["limit"] = Value::from(*limit);
        }
        problem
    }
}

/// A method call that failed (RFC 8620 §3.6.2): its response is `["error", {"type": …}, id]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {description}")]
pub struct MethodError {
    /// The error's type as the RFC spells it (`unknownMethod`, `invalidArguments`, …).
    pub kind: &'static str,
    /// Said to the client; never a secret, never another account's data.
    pub description: String,
}

impl MethodError {
    pub fn new(kind: &'static str, description: impl Into<String>) -> MethodError {
        MethodError { kind, description: description.into() }
    }

    pub fn unknown_method(name: &str) -> MethodError {
        MethodError::new("unknownMethod", format!("this server has no method {name:?}"))
    }

    pub fn invalid_arguments(description: impl Into<String>) -> MethodError {
        MethodError::new("invalidArguments", description)
    }

    pub fn invalid_result_reference(description: impl Into<String>) -> MethodError {
        MethodError::new("invalidResultReference", description)
    }

    /// A problem of the server's own: said without its details (they are logged).
    pub fn server_fail() -> MethodError {
        MethodError::new("serverFail", "the server failed; try again later")
    }

    /// The error's arguments, as the response carries them.
    pub fn to_json(&self) -> Value {
        json!({ "type": self.kind, "description": self.description })
    }
}

/// Why one object of a `/set` was not created, updated or destroyed (RFC 8620 §5.3):
/// the others of the same call go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {description}")]
pub struct SetError {
    /// `forbidden`, `overQuota`, `tooLarge`, `rateLimit`, `notFound`, `invalidPatch`,
    /// `willDestroy`, `invalidProperties`, `singleton`, or a type's own.
    pub kind: &'static str,
    pub description: String,
    /// For `invalidProperties`: the properties at fault.
    pub properties: Vec<String>,
}

impl SetError {
    pub fn new(kind: &'static str, description: impl Into<String>) -> SetError {
        SetError { kind, description: description.into(), properties: Vec::new() }
    }

    pub fn invalid_patch(description: impl Into<String>) -> SetError {
        SetError::new("invalidPatch", description)
    }

    pub fn invalid_properties(description: impl Into<String>, properties: Vec<String>) -> SetError {
        SetError { kind: "invalidProperties", description: description.into(), properties }
    }

    pub fn to_json(&self) -> Value {
        let mut error = Map::new();
        error.insert("type".into(), Value::from(self.kind));
        error.insert("description".into(), Value::from(self.description.clone()));
        if !self.properties.is_empty() {
            error.insert("properties".into(), Value::from(self.properties.clone()));
        }
        Value::Object(error)
    }
}

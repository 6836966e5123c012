//! The session object (RFC 8620 §2) and the running of a request's method calls in order
//! (§3.3, §3.4): each call's result references resolved against the responses before it,
//! then the method, or the method-level error in its place.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::mail::quota::QUOTA_CAPABILITY;
use crate::mail::submission::SUBMISSION_CAPABILITY;
use crate::mail::vacation::VACATION_CAPABILITY;
use crate::mail::{self, Context, MAIL_CAPABILITY, Services};
use crate::{CORE_CAPABILITY, Invocation, Limits, MethodError, Request, Response, resolve_references};

/// The authenticated user as the session object shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The account's id in the directory.
    pub account: u64,
    /// Its address: the session's `username` and the account's name.
    pub address: String,
    /// What the mail it stores is counted against (the account's and its tenant's
    /// limits), as for IMAP APPEND.
    pub quota: hameau_mailbox::Quota,
    /// The account's name as its identity shows it.
    pub display_name: String,
    /// Addresses (aliases, shared addresses) it may send as, besides its own.
    pub may_send_as: Vec<String>,
}

/// A JMAP account id for the directory's account `id`: `a` and its number (JMAP ids are
/// 1 to 255 characters of `A-Za-z0-9_-`, RFC 8620 §1.2).
pub fn account_id(id: u64) -> String {
    format!("a{id}")
}

/// The capabilities this server has.
pub const CAPABILITIES: [&str; 5] =
    [CORE_CAPABILITY, MAIL_CAPABILITY, SUBMISSION_CAPABILITY, QUOTA_CAPABILITY, VACATION_CAPABILITY];

/// The session object for `user`, its URLs under `base` (`https://host:port`, no final
/// slash), with `limits` as the core capability's.
pub fn session(user: &User, base: &str, limits: &Limits) -> Value {
    let account = account_id(user.account);
    let core = json!({
        "maxSizeUpload": limits.upload_bytes_max,
        "maxConcurrentUpload": limits.concurrent_requests_max,
        "maxSizeRequest": limits.request_bytes_max,
        "maxConcurrentRequests": limits.concurrent_requests_max,
        "maxCallsInRequest": limits.calls_in_request_max,
        "maxObjectsInGet": limits.objects_in_get_max,
        "maxObjectsInSet": limits.objects_in_set_max,
        // Comparisons by the server's own rules (RFC 4790 collations are not offered).
        "collationAlgorithms": [],
    });
    let mut session = json!({
        "capabilities": { CORE_CAPABILITY: core, MAIL_CAPABILITY: {}, SUBMISSION_CAPABILITY: {}, QUOTA_CAPABILITY: {}, VACATION_CAPABILITY: {} },
        "accounts": {
            account.clone(): {
                "name": user.address,
                "isPersonal": true,
                "isReadOnly": false,
                "accountCapabilities": {
                    MAIL_CAPABILITY: mail::account_capability(),
                    // Sent at once: no delayed sending, no SMTP extensions to pass on.
                    SUBMISSION_CAPABILITY: { "maxDelayedSend": 0, "submissionExtensions": {} },
                    QUOTA_CAPABILITY: {},
                    VACATION_CAPABILITY: {},
                },
            }
        },
        "primaryAccounts": {
            CORE_CAPABILITY: account,
            MAIL_CAPABILITY: account,
            SUBMISSION_CAPABILITY: account,
            QUOTA_CAPABILITY: account,
            VACATION_CAPABILITY: account,
        },
        "username": user.address,
        "apiUrl": format!("{base}/jmap/api"),
        "downloadUrl": format!("{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}"),
        "uploadUrl": format!("{base}/jmap/upload/{{accountId}}"),
        "eventSourceUrl": format!("{base}/jmap/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"),
    });
    session["state"] = Value::from(session_state(user, limits));
    session
}

/// The session's state (RFC 8620 §2: it changes when the session does): a hash of what
/// the session object is made of but its URLs, which follow the host the client reached
/// and are no change of the session. Cheap: every API response carries it. FNV-1a, whose
/// value is fixed across versions.
pub fn session_state(user: &User, limits: &Limits) -> String {
    let made_of = format!("{}\n{}\n{limits:?}\n{CAPABILITIES:?}", user.account, user.address);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in made_of.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Runs `request`'s calls in order for `user`: result references first, then the method.
/// Every call gets a response (its own or `["error", …]`); the request as a whole never
/// fails past [`Request::parse`]. `now` is seconds since the Unix epoch.
pub async fn run(request: Request, user: &User, services: &Services, now: u64, session_state: &str) -> Response {
    let mut context = Context {
        services,
        user,
        now,
        created_ids: HashMap::new(),
        implicit: Vec::new(),
        parsed_bytes: Default::default(),
    };
    if let Some(created) = &request.created_ids {
        context.created_ids.extend(created.iter().map(|(creation, id)| (creation.clone(), id.clone())));
    }
    let limits = &services.limits;
    let mut responses: Vec<Invocation> = Vec::with_capacity(request.method_calls.len());
    for call in request.method_calls {
        let mut arguments = call.arguments;
        let outcome = match resolve_references(&mut arguments, &responses, limits) {
            Ok(()) => call_method(&mut context, &call.name, arguments, &request.using).await,
            Err(error) => Err(error),
        };
        let call_id = call.call_id;
        responses.push(match outcome {
            Ok(arguments) => Invocation { name: call.name, arguments, call_id: call_id.clone() },
            Err(error) => {
                Invocation { name: "error".into(), arguments: as_object(error.to_json()), call_id: call_id.clone() }
            }
        });
        for (name, arguments) in std::mem::take(&mut context.implicit) {
            responses.push(Invocation { name, arguments, call_id: call_id.clone() });
        }
    }
    // The client's createdIds come back with this request's added (RFC 8620 §3.4).
    let created_ids = request.created_ids.map(|_| context.created_ids);
    Response { method_responses: responses, created_ids, session_state: session_state.to_string() }
}

/// One method, if `using` names its capability (else `unknownMethod`, RFC 8620 §3.6.2).
async fn call_method(
    ctx: &mut Context<'_>,
    name: &str,
    arguments: Map<String, Value>,
    using: &[String],
) -> Result<Map<String, Value>, MethodError> {
    // Each method needs its data type's capability in `using` (RFC 8620 §3.3).
    let needed = match name.split_once('/').map_or(name, |(data_type, _)| data_type) {
        "Core" | "PushSubscription" => CORE_CAPABILITY,
        "Identity" | "EmailSubmission" => SUBMISSION_CAPABILITY,
        "VacationResponse" => VACATION_CAPABILITY,
        "Quota" => QUOTA_CAPABILITY,
        _ => MAIL_CAPABILITY,
    };
    if !using.iter().any(|used| used == needed) {
        return Err(MethodError::unknown_method(name));
    }
    match name {
        "Core/echo" => Ok(arguments),
        "PushSubscription/get" => mail::push::get(ctx, arguments).await,
        "PushSubscription/set" => mail::push::set(ctx, arguments).await,
        "Mailbox/get" => mail::mailbox::get(ctx, arguments).await,
        "Mailbox/changes" => mail::mailbox::changes(ctx, arguments).await,
        "Mailbox/query" => mail::mailbox::query(ctx, arguments).await,
        "Mailbox/queryChanges" => mail::mailbox::query_changes(ctx, arguments).await,
        "Mailbox/set" => mail::mailbox::set(ctx, arguments).await,
        "Email/get" => mail::email::get(ctx, arguments).await,
        "Email/changes" => mail::email::changes(ctx, arguments).await,
        "Email/query" => mail::email_query::query(ctx, arguments).await,
        "Email/queryChanges" => mail::email_query::query_changes(ctx, arguments).await,
        "SearchSnippet/get" => mail::snippet::get(ctx, arguments).await,
        "Thread/get" => mail::thread::get(ctx, arguments).await,
        "Thread/changes" => mail::thread::changes(ctx, arguments).await,
        "Email/set" => mail::email_set::set(ctx, arguments).await,
        "Email/import" => mail::email_set::import(ctx, arguments).await,
        "Email/copy" => mail::email_set::copy(ctx, arguments).await,
        "Email/parse" => mail::email::parse(ctx, arguments).await,
        "Identity/get" => mail::identity::get(ctx, arguments).await,
        "Identity/changes" => mail::identity::changes(ctx, arguments).await,
        "Identity/set" => mail::identity::set(ctx, arguments).await,
        "EmailSubmission/get" => mail::submission::get(ctx, arguments).await,
        "EmailSubmission/changes" => mail::submission::changes(ctx, arguments).await,
        "EmailSubmission/query" => mail::submission::query(ctx, arguments).await,
        "EmailSubmission/queryChanges" => mail::submission::query_changes(ctx, arguments).await,
        "EmailSubmission/set" => mail::submission::set(ctx, arguments).await,
        "VacationResponse/get" => mail::vacation::get(ctx, arguments).await,
        "VacationResponse/set" => mail::vacation::set(ctx, arguments).await,
        "Quota/get" => mail::quota::get(ctx, arguments).await,
        "Quota/changes" => mail::quota::changes(ctx, arguments).await,
        "Quota/query" => mail::quota::query(ctx, arguments).await,
        "Quota/queryChanges" => mail::mailbox::query_changes(ctx, arguments).await,
        _ => Err(MethodError::unknown_method(name)),
    }
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

//! `EmailSubmission/get`, `/changes`, `/query`, `/queryChanges` and `/set` (RFC 8621 §7):
//! sending an email of the account, through the same checks, signing and durable queue as
//! SMTP submission ([`Submitter`], which the server wires to it; this crate knows neither
//! SMTP nor the queue).
//!
//! - A creation names an identity and an email (either may be a creation of the same
//!   request). The envelope is the client's, or the identity's address and the `To`, `Cc`
//!   and `Bcc` addresses of the message. The `Bcc` field is removed before the message
//!   leaves (RFC 8621 §7.5).
//! - The message leaves at once: `sendAt` is the submission's time and `undoStatus` is
//!   `final` (delayed sending is not offered, so there is nothing to cancel:
//!   `cannotUnsend`).
//! - `onSuccessUpdateEmail` and `onSuccessDestroyEmail` are applied after the
//!   submissions, as an implicit `Email/set` whose response follows this call's.
//! - Each submission is kept (kind `submission` of the mail model) for `/get`, `/query`
//!   and `/changes`, until the client destroys it.

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::changes::{self, ChangesArguments};
use super::email_set::parse_email_id;
use super::{Comparator, Context, SetResponse, arguments, id, letter, parse_id, server_fail};
use crate::api::User;
use crate::{MethodError, SetError};

/// The capability of submission (RFC 8621 §1.3.2).
pub const SUBMISSION_CAPABILITY: &str = "urn:ietf:params:jmap:submission";
/// The mail model's kind of the stored submissions.
pub const KIND: &str = "submission";
/// The letter of submission ids.
pub const LETTER: char = 's';

/// Who sends what `EmailSubmission/set` creates: SMTP submission's checks, signing and
/// queue, wired by the server.
pub trait Submitter: Send + Sync {
    /// Sends `raw` from `user` to the envelope's recipients: the queue's id, or why not.
    fn submit<'a>(
        &'a self,
        user: &'a User,
        envelope: &'a Envelope,
        raw: &'a [u8],
        now: u64,
    ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + 'a>>;
}

/// An SMTP envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
}

/// Why a [`Submitter`] refused: a JMAP `SetError` type and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `forbiddenMailFrom`, `forbiddenFrom`, `forbiddenToSend`, `invalidEmail`,
    /// `tooManyRecipients`, `serverFail`.
    pub kind: &'static str,
    pub description: String,
}

const PROPERTIES: [&str; 10] = [
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
];

/// The stored submissions, with their numbers.
async fn submissions(ctx: &Context<'_>) -> Result<Vec<(u64, Map<String, Value>)>, MethodError> {
    let stored = ctx.mail().objects(ctx.account(), KIND).await.map_err(server_fail)?;
    Ok(stored
        .into_iter()
        .filter_map(|(number, bytes)| match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(mut object)) => {
                object.insert("id".into(), Value::from(id(LETTER, number)));
                object.insert("undoStatus".into(), Value::from("final"));
                object.insert("deliveryStatus".into(), Value::Null);
                object.insert("dsnBlobIds".into(), json!([]));
                object.insert("mdnBlobIds".into(), json!([]));
                Some((number, object))
            }
            _ => None,
        })
        .collect())
}

/// `EmailSubmission/get`.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (ids, properties, state) = super::open_get(ctx, arguments_, &PROPERTIES).await?;
    let all = submissions(ctx).await?.into_iter().map(|(_, object)| object).collect();
    let (list, not_found) = super::pick(ctx, all, ids, &properties);
    Ok(super::get_response(ctx, state, list, not_found))
}

/// `EmailSubmission/changes`.
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let folded = changes::read(ctx, &arguments, &changes::objects_of(KIND)).await?;
    Ok(changes::response(ctx, &arguments, &folded, |number| id(LETTER, number)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QueryArguments {
    account_id: String,
    #[serde(default)]
    filter: Option<Value>,
    #[serde(default)]
    sort: Option<Vec<Comparator>>,
    #[serde(default)]
    calculate_total: bool,
    #[serde(flatten)]
    window: super::Window,
}

/// `EmailSubmission/query`: filter on `identityIds`, `emailIds`, `threadIds`,
/// `undoStatus`, `before`, `after`; sort by `emailId`, `threadId` or `sentAt`.
pub async fn query(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: QueryArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let nodes = crate::filter::flatten(arguments.filter, ctx.limits().filter_nodes_max)?;
    let sort = arguments.sort.unwrap_or_default();
    for comparator in &sort {
        if !["emailId", "threadId", "sentAt"].contains(&comparator.property.as_str()) || comparator.collation.is_some()
        {
            return Err(MethodError::new("unsupportedSort", format!("no sort by {:?}", comparator.property)));
        }
    }
    let state = ctx.state().await?;
    let mut matching = Vec::new();
    for (number, object) in submissions(ctx).await? {
        if crate::filter::matches(&nodes, |condition| submission_matches(&object, condition))? {
            matching.push((number, object));
        }
    }
    let number_of = |object: &Map<String, Value>, property: &str, letter: char| {
        object.get(property).and_then(Value::as_str).and_then(|wire| parse_id(letter, wire)).unwrap_or(0)
    };
    matching.sort_by(|(a_number, a), (b_number, b)| {
        for comparator in &sort {
            let ordering = match comparator.property.as_str() {
                "emailId" => number_of(a, "emailId", letter::EMAIL).cmp(&number_of(b, "emailId", letter::EMAIL)),
                "threadId" => number_of(a, "threadId", letter::THREAD).cmp(&number_of(b, "threadId", letter::THREAD)),
                _ => a.get("sendAt").and_then(Value::as_str).cmp(&b.get("sendAt").and_then(Value::as_str)),
            };
            let ordering = if comparator.is_ascending { ordering } else { ordering.reverse() };
            if ordering.is_ne() {
                return ordering;
            }
        }
        a_number.cmp(b_number)
    });
    let ids: Vec<String> = matching.iter().map(|(number, _)| id(LETTER, *number)).collect();
    let window = super::window(&ids, &arguments.window, ctx.limits())?;
    let total = arguments.calculate_total.then_some(ids.len());
    Ok(super::query_response(ctx, state, window, total))
}

fn submission_matches(object: &Map<String, Value>, condition: &Map<String, Value>) -> Result<bool, MethodError> {
    let wrong = |name: &str| MethodError::invalid_arguments(format!("the filter's {name:?} has the wrong type"));
    for (name, value) in condition {
        let holds = match name.as_str() {
            "identityIds" | "emailIds" | "threadIds" => {
                let property = &name[..name.len() - 1];
                let list = value.as_array().ok_or_else(|| wrong(name))?;
                list.iter().any(|wanted| object.get(property) == Some(wanted))
            }
            "undoStatus" => value.as_str().ok_or_else(|| wrong(name))? == "final",
            "before" | "after" => {
                let when = value.as_str().and_then(hameau_calendar::parse_rfc3339_utc).ok_or_else(|| wrong(name))?;
                let sent = object.get("sendAt").and_then(Value::as_str).and_then(hameau_calendar::parse_rfc3339_utc);
                match (name.as_str(), sent) {
                    ("before", Some(sent)) => sent < when,
                    (_, Some(sent)) => sent >= when,
                    _ => false,
                }
            }
            _ => {
                return Err(MethodError::new("unsupportedFilter", format!("submissions are not filtered by {name:?}")));
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `EmailSubmission/queryChanges`: query results are not kept (`cannotCalculateChanges`).
pub async fn query_changes(
    ctx: &mut Context<'_>,
    arguments: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    super::mailbox::query_changes(ctx, arguments).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SetArguments {
    account_id: String,
    #[serde(default)]
    if_in_state: Option<String>,
    #[serde(default)]
    create: Option<Map<String, Value>>,
    #[serde(default)]
    update: Option<Map<String, Value>>,
    #[serde(default)]
    destroy: Option<Vec<String>>,
    #[serde(default)]
    on_success_update_email: Option<Map<String, Value>>,
    #[serde(default)]
    on_success_destroy_email: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Creation {
    identity_id: String,
    email_id: String,
    #[serde(default)]
    envelope: Option<WireEnvelope>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEnvelope {
    mail_from: WireAddress,
    rcpt_to: Vec<WireAddress>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAddress {
    email: String,
    #[serde(default)]
    parameters: Option<Value>,
}

/// Most recipients of one submission's envelope taken from the message: the queue's own
/// bound refuses past its limit anyway; this bounds the parsing before.
const RECIPIENTS_MAX: usize = 1_000;

/// `EmailSubmission/set`.
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let changes = (arguments.create, arguments.update, arguments.destroy);
    let (create, update, destroy, old_state) =
        super::open_set(ctx, &arguments.account_id, arguments.if_in_state.as_deref(), changes).await?;
    let mut response = SetResponse::default();
    // The submissions that succeeded, by creation id and id, with their email.
    let mut sent: Vec<(String, String, String)> = Vec::new();
    for (creation, wanted) in create {
        match create_one(ctx, wanted).await {
            Ok((number, email, object)) => {
                let wire = id(LETTER, number);
                ctx.created_ids.insert(creation.clone(), wire.clone());
                sent.push((creation.clone(), wire.clone(), email));
                let mut created = Map::new();
                created.insert("id".into(), Value::from(wire));
                for key in ["threadId", "envelope", "sendAt"] {
                    created.insert(key.into(), object.get(key).cloned().unwrap_or(Value::Null));
                }
                created.insert("undoStatus".into(), Value::from("final"));
                response.created.insert(creation, Value::Object(created));
            }
            Err(error) => {
                response.not_created.insert(creation, error.to_json());
            }
        }
    }
    for (wire, _) in update {
        let error = SetError::new("cannotUnsend", "a submission leaves at once: it cannot be changed or cancelled");
        response.not_updated.insert(wire, error.to_json());
    }
    for wire in destroy {
        let number = ctx.resolve_id(&wire).and_then(|wire| parse_id(LETTER, wire));
        match number {
            Some(number) if ctx.mail().destroy_object(ctx.account(), KIND, number).await.is_ok() => {
                response.destroyed.push(wire)
            }
            _ => {
                response.not_destroyed.insert(wire, SetError::new("notFound", "no such submission").to_json());
            }
        }
    }
    let new_state = ctx.state().await?;
    let answer = response.into_arguments(ctx, old_state, new_state);
    // The implicit Email/set of the successful submissions' emails (RFC 8621 §7.5).
    let email_of = |reference: &str| -> Option<String> {
        let key = reference.strip_prefix('#')?;
        sent.iter().find(|(creation, _, _)| creation == key).map(|(_, _, email)| email.clone())
    };
    let email_of_wire = |wire: &str| -> Option<String> {
        email_of(wire).or_else(|| sent.iter().find(|(_, id, _)| id == wire).map(|(_, _, email)| email.clone()))
    };
    let mut update = Map::new();
    for (reference, patch) in arguments.on_success_update_email.unwrap_or_default() {
        if let Some(email) = email_of_wire(&reference) {
            update.insert(email, patch);
        }
    }
    let destroy: Vec<Value> = arguments
        .on_success_destroy_email
        .unwrap_or_default()
        .iter()
        .filter_map(|reference| email_of_wire(reference))
        .map(Value::from)
        .collect();
    if !update.is_empty() || !destroy.is_empty() {
        let mut email_set = Map::new();
        email_set.insert("accountId".into(), Value::from(crate::api::account_id(ctx.account())));
        email_set.insert("update".into(), Value::Object(update));
        email_set.insert("destroy".into(), Value::Array(destroy));
        let result = super::email_set::set(ctx, email_set).await?;
        ctx.implicit.push(("Email/set".into(), result));
    }
    Ok(answer)
}

/// Sends one creation: its number, its email's id and what is stored.
async fn create_one(ctx: &Context<'_>, wanted: Value) -> Result<(u64, String, Map<String, Value>), SetError> {
    let wanted: Creation =
        serde_json::from_value(wanted).map_err(|e| SetError::invalid_properties(e.to_string(), vec![]))?;
    let Some(submitter) = ctx.services.submitter.clone() else {
        return Err(SetError::new("forbiddenToSend", "sending is not set up on this server"));
    };
    let identity = super::identity::identity(ctx, &wanted.identity_id)
        .await
        .map_err(|e| SetError::new("serverFail", e.description))?
        .ok_or_else(|| SetError::invalid_properties("no such identity", vec!["identityId".into()]))?;
    let identity_email = identity.get("email").and_then(Value::as_str).unwrap_or_default().to_string();
    let email_number = parse_email_id(ctx, &wanted.email_id)
        .ok_or_else(|| SetError::invalid_properties("no such email", vec!["emailId".into()]))?;
    let email = match ctx.mail().email(ctx.account(), email_number).await {
        Ok(email) => email,
        Err(hameau_mailbox::Error::NoEmail(_)) => {
            return Err(SetError::invalid_properties("no such email", vec!["emailId".into()]));
        }
        Err(e) => return Err(super::email_set::set_fail(e)),
    };
    let raw = ctx.mail().raw(ctx.account(), email_number).await.map_err(super::email_set::set_fail)?;
    let envelope = match wanted.envelope {
        Some(envelope) => {
            let has_parameters = envelope.mail_from.parameters.as_ref().is_some_and(|p| !p.is_null())
                || envelope.rcpt_to.iter().any(|rcpt| rcpt.parameters.as_ref().is_some_and(|p| !p.is_null()));
            if has_parameters {
                return Err(SetError::invalid_properties(
                    "SMTP parameters in the envelope are not supported",
                    vec!["envelope".into()],
                ));
            }
            Envelope {
                mail_from: envelope.mail_from.email,
                rcpt_to: envelope.rcpt_to.into_iter().map(|rcpt| rcpt.email).collect(),
            }
        }
        None => Envelope { mail_from: identity_email.clone(), rcpt_to: recipients(&raw)? },
    };
    if envelope.rcpt_to.is_empty() {
        return Err(SetError::new("noRecipients", "the envelope has no recipient"));
    }
    if !envelope.mail_from.eq_ignore_ascii_case(&identity_email) {
        return Err(SetError::new(
            "forbiddenMailFrom",
            format!("the envelope's sender is not the identity's address {identity_email}"),
        ));
    }
    let without_bcc = without_bcc(&raw);
    submitter
        .submit(ctx.user, &envelope, &without_bcc, ctx.now)
        .await
        .map_err(|refusal| SetError::new(refusal.kind, refusal.description))?;
    let mut object = Map::new();
    object.insert("identityId".into(), identity.get("id").cloned().unwrap_or(Value::Null));
    object.insert("emailId".into(), Value::from(id(letter::EMAIL, email_number)));
    object.insert("threadId".into(), Value::from(id(letter::THREAD, email.thread)));
    object.insert(
        "envelope".into(),
        json!({
            "mailFrom": {"email": envelope.mail_from, "parameters": null},
            "rcptTo": envelope.rcpt_to.iter().map(|rcpt| json!({"email": rcpt, "parameters": null})).collect::<Vec<_>>(),
        }),
    );
    object.insert("sendAt".into(), Value::from(hameau_calendar::rfc3339(ctx.now)));
    let bytes = serde_json::to_vec(&object).unwrap_or_default();
    // The message is queued: a failure to keep its record loses the record, not the mail.
    let number = match ctx.mail().create_object(ctx.account(), KIND, &bytes).await {
        Ok((number, _)) => number,
        Err(e) => {
            tracing::error!(error = %e, "jmap: a sent message's submission record could not be kept");
            0
        }
    };
    Ok((number, id(letter::EMAIL, email_number), object))
}

/// The addresses of the `To`, `Cc` and `Bcc` fields, at most [`RECIPIENTS_MAX`].
fn recipients(raw: &[u8]) -> Result<Vec<String>, SetError> {
    let Some(message) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return Err(SetError::new("invalidEmail", "the message's header cannot be read"));
    };
    let mut out: Vec<String> = Vec::new();
    for field in [message.to(), message.cc(), message.bcc()].into_iter().flatten() {
        for address in field.iter().filter_map(|entry| entry.address()) {
            if out.len() >= RECIPIENTS_MAX {
                return Err(SetError::new("tooManyRecipients", format!("more than {RECIPIENTS_MAX} recipients")));
            }
            if !out.iter().any(|known| known.eq_ignore_ascii_case(address)) {
                out.push(address.to_string());
            }
        }
    }
    Ok(out)
}

/// The message without its `Bcc` fields (each with its folded lines).
fn without_bcc(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n').map_or(rest.len(), |at| at + 1);
        let line = &rest[..end];
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest);
            return out;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = &rest[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};

    use hameau_mailbox::Role;
    use serde_json::{Value, json};

    use super::{Envelope, Refusal, Submitter, without_bcc};
    use crate::api::User;
    use crate::mail::tests::{ACCOUNT, Fixture};

    /// Records what it is given; refuses a `From` it is told to.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(Envelope, Vec<u8>)>>,
        refuse: Option<&'static str>,
    }

    impl Submitter for Recorder {
        fn submit<'a>(
            &'a self,
            _user: &'a User,
            envelope: &'a Envelope,
            raw: &'a [u8],
            _now: u64,
        ) -> Pin<Box<dyn Future<Output = Result<String, Refusal>> + Send + 'a>> {
            Box::pin(async move {
                if let Some(kind) = self.refuse {
                    return Err(Refusal { kind, description: "refused".into() });
                }
                self.sent.lock().unwrap().push((envelope.clone(), raw.to_vec()));
                Ok("q1".into())
            })
        }
    }

    const USING: [&str; 3] =
        ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:submission"];

    const DRAFT: &str = "From: Agent <agent@mairie.test>\r\nTo: maire@mairie.test\r\nBcc: secret@ailleurs.test\r\nSubject: Compte rendu\r\n\r\nVoici.\r\n";

    #[tokio::test]
    async fn an_email_is_submitted_then_moved_by_the_implicit_email_set() {
        let mut fixture = Fixture::new().await;
        let recorder = Arc::new(Recorder::default());
        fixture.services.submitter = Some(recorder.clone());
        let draft = fixture.deliver(DRAFT, Role::Drafts).await;
        let sent = fixture.services.mail.mailbox_by_role(ACCOUNT, Role::Sent).await.unwrap().unwrap().id;
        let responses = fixture
            .call_using(
                &USING,
                json!([
                    ["Identity/get", {"accountId": "a7"}, "i"],
                    ["EmailSubmission/set", {
                        "accountId": "a7",
                        "create": {"s": {"identityId": "i0", "emailId": format!("e{draft}")}},
                        "onSuccessUpdateEmail": {"#s": {"mailboxIds": {format!("m{sent}"): true}, "keywords/$draft": null}},
                    }, "s"],
                    ["EmailSubmission/get", {"accountId": "a7", "ids": ["#s"]}, "g"],
                ]),
            )
            .await;
        assert_eq!(responses[0][1]["list"][0]["email"], "agent@mairie.test", "{responses:?}");
        assert_eq!(responses[1][0], "EmailSubmission/set", "{responses:?}");
        let created = &responses[1][1]["created"]["s"];
        assert_eq!(created["undoStatus"], "final");
        assert_eq!(
            created["envelope"]["rcptTo"],
            json!([{"email": "maire@mairie.test", "parameters": null}, {"email": "secret@ailleurs.test", "parameters": null}])
        );
        assert_eq!(responses[2][0], "Email/set", "the implicit Email/set follows: {responses:?}");
        assert!(responses[2][1]["updated"].get(format!("e{draft}")).is_some());
        assert_eq!(responses[3][1]["list"][0]["emailId"], format!("e{draft}"));
        let (envelope, raw) = recorder.sent.lock().unwrap()[0].clone();
        assert_eq!(envelope.mail_from, "agent@mairie.test");
        assert!(!String::from_utf8(raw).unwrap().contains("secret@"), "Bcc removed");
        assert_eq!(fixture.services.mail.email(ACCOUNT, draft).await.unwrap().mailboxes, vec![sent]);
    }

    #[tokio::test]
    async fn submissions_and_identities_refuse_what_the_account_may_not_do() {
        let mut fixture = Fixture::new().await;
        let draft = fixture.deliver(DRAFT, Role::Drafts).await;
        let call = |name: &str, arguments: Value| json!([[name, arguments, "c"]]);
        // No submitter wired: said so.
        let set = |create: Value| call("EmailSubmission/set", json!({"accountId": "a7", "create": {"s": create}}));
        let answer = fixture.call_using(&USING, set(json!({"identityId": "i0", "emailId": format!("e{draft}")}))).await;
        assert_eq!(answer[0][1]["notCreated"]["s"]["type"], "forbiddenToSend");
        fixture.services.submitter = Some(Arc::new(Recorder { refuse: Some("forbiddenFrom"), ..Recorder::default() }));
        let answer = fixture.call_using(&USING, set(json!({"identityId": "i0", "emailId": format!("e{draft}")}))).await;
        assert_eq!(answer[0][1]["notCreated"]["s"]["type"], "forbiddenFrom");
        fixture.services.submitter = Some(Arc::new(Recorder::default()));
        for (create, kind) in [
            (json!({"identityId": "i9", "emailId": format!("e{draft}")}), "invalidProperties"),
            (json!({"identityId": "i0", "emailId": "e999"}), "invalidProperties"),
            (
                json!({"identityId": "i0", "emailId": format!("e{draft}"), "envelope": {"mailFrom": {"email": "x@ailleurs.test"}, "rcptTo": [{"email": "a@b.test"}]}}),
                "forbiddenMailFrom",
            ),
            (
                json!({"identityId": "i0", "emailId": format!("e{draft}"), "envelope": {"mailFrom": {"email": "agent@mairie.test"}, "rcptTo": []}}),
                "noRecipients",
            ),
        ] {
            let answer = fixture.call_using(&USING, set(create.clone())).await;
            assert_eq!(answer[0][1]["notCreated"]["s"]["type"], kind, "{create}");
        }
        // Identities: the shared address it may send as, not another.
        let answer = fixture
            .call_using(
                &USING,
                call(
                    "Identity/set",
                    json!({"accountId": "a7", "create": {
                    "ok": {"email": "mairie@mairie.test", "name": "Mairie", "textSignature": "-- Mairie"},
                    "no": {"email": "maire@mairie.test"},
                }, "destroy": ["i0"]}),
                ),
            )
            .await;
        let created = answer[0][1]["created"]["ok"]["id"].as_str().unwrap().to_string();
        assert_eq!(answer[0][1]["notCreated"]["no"]["type"], "forbiddenFrom");
        assert_eq!(answer[0][1]["notDestroyed"]["i0"]["type"], "forbidden");
        let answer =
            fixture.call_using(&USING, call("Identity/get", json!({"accountId": "a7", "ids": [&created]}))).await;
        assert_eq!(answer[0][1]["list"][0]["textSignature"], "-- Mairie");
        // Without the submission capability, these methods are unknown.
        let answer = fixture.call(call("Identity/get", json!({"accountId": "a7"}))).await;
        assert_eq!(answer[0][1]["type"], "unknownMethod");
    }

    #[test]
    fn bcc_fields_are_removed_with_their_folded_lines() {
        let raw =
            b"From: a@x.test\r\nBcc: b@x.test,\r\n c@x.test\r\nTo: d@x.test\r\nBCC: e@x.test\r\n\r\nBcc: body\r\n";
        assert_eq!(without_bcc(raw), b"From: a@x.test\r\nTo: d@x.test\r\n\r\nBcc: body\r\n".to_vec());
    }
}

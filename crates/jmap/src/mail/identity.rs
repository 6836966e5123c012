//! `Identity/get`, `/changes` and `/set` (RFC 8621 §6): who the user sends as.
//!
//! - `i0` is the account's own address with its name from the directory: always there,
//!   neither changed nor destroyed.
//! - Other identities are the user's: created for the account's own address or one it may
//!   send as (an alias or shared address the directory lists), with a name, reply-to,
//!   bcc and signatures; kept as objects of the mail model (kind `identity`), so their
//!   changes are in the account's change log.
//! - Whether a message may leave with an identity's address is checked again when it is
//!   sent (EmailSubmission, as SMTP submission does): a right withdrawn in the directory
//!   applies at once.

use serde_json::{Map, Value, json};

use super::changes::{self, ChangesArguments};
use super::{Context, SetArguments, SetResponse, arguments, id, parse_id, server_fail};
use crate::{MethodError, SetError, apply_patch};

/// The mail model's kind of the stored identities.
pub const KIND: &str = "identity";
/// The letter of identity ids.
pub const LETTER: char = 'i';

const PROPERTIES: [&str; 8] = ["id", "name", "email", "replyTo", "bcc", "textSignature", "htmlSignature", "mayDelete"];

/// The identities of the user: `i0` first, then the stored ones by id.
pub async fn identities(ctx: &Context<'_>) -> Result<Vec<Map<String, Value>>, MethodError> {
    let mut list = vec![own(ctx)];
    for (number, value) in ctx.mail().objects(ctx.account(), KIND).await.map_err(server_fail)? {
        let Ok(Value::Object(mut identity)) = serde_json::from_slice::<Value>(&value) else { continue };
        identity.insert("id".into(), Value::from(id(LETTER, number)));
        identity.insert("mayDelete".into(), Value::from(true));
        list.push(identity);
    }
    Ok(list)
}

/// The identity of a wire id, if the user has it.
pub async fn identity(ctx: &Context<'_>, wire: &str) -> Result<Option<Map<String, Value>>, MethodError> {
    let Some(wire) = ctx.resolve_id(wire) else { return Ok(None) };
    Ok(identities(ctx).await?.into_iter().find(|identity| identity.get("id").and_then(Value::as_str) == Some(wire)))
}

fn own(ctx: &Context<'_>) -> Map<String, Value> {
    let identity = json!({
        "id": id(LETTER, 0),
        "name": ctx.user.display_name,
        "email": ctx.user.address,
        "replyTo": null,
        "bcc": null,
        "textSignature": "",
        "htmlSignature": "",
        "mayDelete": false,
    });
    super::object(identity)
}

/// `Identity/get`.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (ids, properties, state) = super::open_get(ctx, arguments_, &PROPERTIES).await?;
    let (list, not_found) = super::pick(ctx, identities(ctx).await?, ids, &properties);
    Ok(super::get_response(ctx, state, list, not_found))
}

/// `Identity/changes`: the stored identities' changes in the log.
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let folded = changes::read(ctx, &arguments, &changes::objects_of(KIND)).await?;
    Ok(changes::response(ctx, &arguments, &folded, |number| id(LETTER, number)))
}

/// `Identity/set`.
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let changes = (arguments.create, arguments.update, arguments.destroy);
    let (create, update, destroy, old_state) =
        super::open_set(ctx, &arguments.account_id, arguments.if_in_state.as_deref(), changes).await?;
    let mut response = SetResponse::default();
    for (creation, wanted) in create {
        let outcome = create_one(ctx, wanted).await.map(|number| json!({"id": id(LETTER, number), "mayDelete": true}));
        response.create_outcome(&mut ctx.created_ids, creation, outcome);
    }
    for (wire, patch) in update {
        let outcome = update_one(ctx, &wire, patch).await;
        response.update_outcome(wire, outcome);
    }
    for wire in destroy {
        let not_found = || SetError::new("notFound", "no such identity");
        let outcome = match stored_number(ctx, &wire) {
            Some(number) => {
                ctx.mail().destroy_object(ctx.account(), KIND, number).await.map(|_| ()).map_err(|_| not_found())
            }
            None if ctx.resolve_id(&wire) == Some("i0") => {
                Err(SetError::new("forbidden", "the account's own identity cannot be destroyed"))
            }
            None => Err(not_found()),
        };
        response.destroy_outcome(wire, outcome);
    }
    let new_state = ctx.state().await?;
    Ok(response.into_arguments(ctx, old_state, new_state))
}

/// The number of a stored identity's wire id (not `i0`).
fn stored_number(ctx: &Context<'_>, wire: &str) -> Option<u64> {
    parse_id(LETTER, ctx.resolve_id(wire)?).filter(|number| *number > 0)
}

/// An identity's settable properties checked: what is stored.
fn checked(ctx: &Context<'_>, object: &Map<String, Value>) -> Result<Value, SetError> {
    let bad = |property: &str, why: &str| SetError::invalid_properties(why.to_string(), vec![property.to_string()]);
    for key in object.keys() {
        if !PROPERTIES.contains(&key.as_str()) {
            return Err(bad(key, "an identity has no such property"));
        }
    }
    let email = object.get("email").and_then(Value::as_str).ok_or_else(|| bad("email", "an identity has an email"))?;
    let allowed = email.eq_ignore_ascii_case(&ctx.user.address)
        || ctx.user.may_send_as.iter().any(|address| address.eq_ignore_ascii_case(email));
    if !allowed {
        return Err(SetError::new("forbiddenFrom", format!("this account may not send as {email}")));
    }
    let text = |name: &str| -> Result<String, SetError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(text)) if text.len() <= SIGNATURE_BYTES_MAX => Ok(text.clone()),
            Some(_) => Err(bad(name, "a string of at most 64 KiB")),
        }
    };
    let addresses = |name: &str| -> Result<Value, SetError> {
        match object.get(name) {
            None | Some(Value::Null) => Ok(Value::Null),
            Some(Value::Array(list))
                if list.len() <= 16
                    && list
                        .iter()
                        .all(|entry| entry.get("email").and_then(Value::as_str).is_some_and(|e| e.contains('@'))) =>
            {
                Ok(Value::Array(list.clone()))
            }
            Some(_) => Err(bad(name, "a list of at most 16 EmailAddress objects")),
        }
    };
    Ok(json!({
        "name": text("name")?,
        "email": email,
        "replyTo": addresses("replyTo")?,
        "bcc": addresses("bcc")?,
        "textSignature": text("textSignature")?,
        "htmlSignature": text("htmlSignature")?,
    }))
}

/// Longest name or signature: 64 KiB, far above a signature with a logo's HTML.
const SIGNATURE_BYTES_MAX: usize = 64 * 1024;

async fn create_one(ctx: &Context<'_>, wanted: Value) -> Result<u64, SetError> {
    let Value::Object(mut object) = wanted else {
        return Err(SetError::invalid_properties("an identity is an object", vec![]));
    };
    object.remove("id");
    object.remove("mayDelete");
    let stored = checked(ctx, &object)?;
    let bytes = serde_json::to_vec(&stored).unwrap_or_default();
    match ctx.mail().create_object(ctx.account(), KIND, &bytes).await {
        Ok((number, _)) => Ok(number),
        Err(hameau_mailbox::Error::TooManyObjects { max }) => {
            Err(SetError::new("overQuota", format!("an account keeps at most {max} identities")))
        }
        Err(e) => Err(super::email_set::set_fail(e)),
    }
}

async fn update_one(ctx: &Context<'_>, wire: &str, patch: Value) -> Result<(), SetError> {
    let Some(number) = stored_number(ctx, wire) else {
        return Err(match ctx.resolve_id(wire) {
            Some("i0") => SetError::new("forbidden", "the account's own identity is the directory's: create another"),
            _ => SetError::new("notFound", "no such identity"),
        });
    };
    let current = ctx.mail().object(ctx.account(), KIND, number).await.map_err(super::email_set::set_fail)?;
    let Some(Ok(Value::Object(mut object))) = current.map(|bytes| serde_json::from_slice::<Value>(&bytes)) else {
        return Err(SetError::new("notFound", "no such identity"));
    };
    let Value::Object(patch) = patch else {
        return Err(SetError::invalid_patch("a patch is an object"));
    };
    if patch.contains_key("email") {
        return Err(SetError::invalid_properties(
            "an identity's email is set when it is created",
            vec!["email".into()],
        ));
    }
    apply_patch(&mut object, &patch, ctx.limits())?;
    object.remove("id");
    object.remove("mayDelete");
    let stored = checked(ctx, &object)?;
    let bytes = serde_json::to_vec(&stored).unwrap_or_default();
    ctx.mail().update_object(ctx.account(), KIND, number, &bytes).await.map(|_| ()).map_err(super::email_set::set_fail)
}

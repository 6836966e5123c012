//! `VacationResponse/get` and `/set` (RFC 8621 §8): the account's one vacation response
//! (id `singleton`), kept by the mail model ([`hameau_mailbox::Vacation`]). The MX sends
//! it (once per sender per period, never to lists, bounces or automatic mail: RFC 3834).

use hameau_mailbox::Vacation;
use serde_json::{Map, Value, json};

use super::{Context, SetArguments, SetResponse, arguments, server_fail};
use crate::{MethodError, SetError, apply_patch};

/// The capability of vacation responses (RFC 8621 §1.3.3).
pub const VACATION_CAPABILITY: &str = "urn:ietf:params:jmap:vacationresponse";
const SINGLETON: &str = "singleton";
const PROPERTIES: [&str; 7] = ["id", "isEnabled", "fromDate", "toDate", "subject", "textBody", "htmlBody"];
/// Longest subject or body: 64 KiB, far above an absence notice.
const TEXT_BYTES_MAX: usize = 64 * 1024;

fn to_json(vacation: &Vacation) -> Map<String, Value> {
    super::object(json!({
        "id": SINGLETON,
        "isEnabled": vacation.enabled,
        "fromDate": vacation.from.map(hameau_calendar::rfc3339),
        "toDate": vacation.until.map(hameau_calendar::rfc3339),
        "subject": vacation.subject,
        "textBody": vacation.text_body,
        "htmlBody": vacation.html_body,
    }))
}

/// `VacationResponse/get`.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (ids, properties, state) = super::open_get(ctx, arguments_, &PROPERTIES).await?;
    let vacation = ctx.mail().vacation(ctx.account()).await.map_err(server_fail)?;
    let (list, not_found): (Vec<Value>, Vec<String>) = match ids {
        None => (vec![super::only(to_json(&vacation), &properties)], Vec::new()),
        Some(ids) => {
            let (found, not_found): (Vec<String>, Vec<String>) = ids.into_iter().partition(|id| id == SINGLETON);
            (found.iter().take(1).map(|_| super::only(to_json(&vacation), &properties)).collect(), not_found)
        }
    };
    Ok(super::get_response(ctx, state, list, not_found))
}

/// `VacationResponse/set`: only an update of `singleton` (it cannot be created or
/// destroyed: `singleton` errors, RFC 8620 §5.3).
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let changes = (arguments.create, arguments.update, arguments.destroy);
    let (create, update, destroy, old_state) =
        super::open_set(ctx, &arguments.account_id, arguments.if_in_state.as_deref(), changes).await?;
    let mut response = SetResponse::default();
    let singleton = || SetError::new("singleton", "the vacation response is one object, updated only");
    for (creation, _) in create {
        response.not_created.insert(creation, singleton().to_json());
    }
    for wire in destroy {
        response.not_destroyed.insert(wire, singleton().to_json());
    }
    for (wire, patch) in update {
        let outcome = match wire.as_str() {
            SINGLETON => update_one(ctx, patch).await,
            _ => Err(SetError::new("notFound", "the vacation response's id is \"singleton\"")),
        };
        response.update_outcome(wire, outcome);
    }
    let new_state = ctx.state().await?;
    Ok(response.into_arguments(ctx, old_state, new_state))
}

async fn update_one(ctx: &Context<'_>, patch: Value) -> Result<(), SetError> {
    let Value::Object(patch) = patch else {
        return Err(SetError::invalid_patch("a patch is an object"));
    };
    let current = ctx.mail().vacation(ctx.account()).await.map_err(super::email_set::set_fail)?;
    let mut object = to_json(&current);
    apply_patch(&mut object, &patch, ctx.limits())?;
    let bad = |property: &str, why: &str| SetError::invalid_properties(why.to_string(), vec![property.to_string()]);
    if object.get("id").and_then(Value::as_str) != Some(SINGLETON) {
        return Err(bad("id", "the id is the server's"));
    }
    if let Some(unknown) = object.keys().find(|key| !PROPERTIES.contains(&key.as_str())) {
        return Err(bad(unknown, "a vacation response has no such property"));
    }
    let date = |property: &str| -> Result<Option<u64>, SetError> {
        match object.get(property) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(date)) => {
                hameau_calendar::parse_rfc3339_utc(date).map(Some).ok_or_else(|| bad(property, "a UTCDate"))
            }
            Some(_) => Err(bad(property, "a UTCDate or null")),
        }
    };
    let text = |property: &str| -> Result<Option<String>, SetError> {
        match object.get(property) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) if text.len() <= TEXT_BYTES_MAX => Ok(Some(text.clone())),
            Some(_) => Err(bad(property, "a string of at most 64 KiB, or null")),
        }
    };
    let enabled = object.get("isEnabled").and_then(Value::as_bool).ok_or_else(|| bad("isEnabled", "a boolean"))?;
    let vacation = Vacation {
        enabled,
        from: date("fromDate")?,
        until: date("toDate")?,
        subject: text("subject")?,
        text_body: text("textBody")?,
        html_body: text("htmlBody")?,
        set_at: ctx.now,
    };
    ctx.mail().set_vacation(ctx.account(), &vacation).await.map(|_| ()).map_err(super::email_set::set_fail)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::mail::tests::{ACCOUNT, Fixture, NOW};

    const USING: [&str; 3] =
        ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", "urn:ietf:params:jmap:vacationresponse"];

    #[tokio::test]
    async fn the_vacation_response_is_one_object_updated() {
        let fixture = Fixture::new().await;
        let got = fixture.call_using(&USING, json!([["VacationResponse/get", {"accountId": "a7"}, "g"]])).await;
        assert_eq!(got[0][1]["list"][0]["isEnabled"], false, "{got:?}");
        let set = fixture
            .call_using(
                &USING,
                json!([["VacationResponse/set", {"accountId": "a7",
                    "update": {"singleton": {"isEnabled": true, "toDate": "2030-01-01T00:00:00Z", "subject": "Absente", "textBody": "De retour le 4."}},
                    "create": {"x": {}}, "destroy": ["singleton"]}, "s"]]),
            )
            .await;
        assert!(set[0][1]["updated"].get("singleton").is_some(), "{set:?}");
        assert_eq!(set[0][1]["notCreated"]["x"]["type"], "singleton");
        assert_eq!(set[0][1]["notDestroyed"]["singleton"]["type"], "singleton");
        let stored = fixture.services.mail.vacation(ACCOUNT).await.unwrap();
        assert!(stored.active(NOW) && stored.until == Some(1_893_456_000) && stored.set_at == NOW);
        let bad = fixture
            .call_using(&USING, json!([["VacationResponse/set", {"accountId": "a7", "update": {"singleton": {"toDate": "demain"}}}, "s"]]))
            .await;
        assert_eq!(bad[0][1]["notUpdated"]["singleton"]["type"], "invalidProperties");
        let without = fixture.call(json!([["VacationResponse/get", {"accountId": "a7"}, "g"]])).await;
        assert_eq!(without[0][1]["type"], "unknownMethod", "the capability is needed");
    }
}

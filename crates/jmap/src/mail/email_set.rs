//! `Email/set` (RFC 8621 §4.6) for keywords, mailboxes and destruction, `Email/import`
//! (§4.8) through the mail model's one ingest path, and `Email/copy` (§4.7).
//!
//! - An update is a `PatchObject` over `keywords` and `mailboxIds` (whole, or one entry
//!   as `keywords/$seen`); it is applied in one commit of the mail model
//!   ([`hameau_mailbox::Mail::change_email`]), so an IMAP session sees it as one FETCH or
//!   EXPUNGE, and the junk learner hears a move into Junk as from IMAP. Keywords JMAP does
//!   not show (`\Deleted`) are kept. Every other property of an email is immutable.
//! - A destruction removes the email from every mailbox at once.
//! - A creation writes the message from its properties ([`super::email_create`]) and
//!   stores it through the ingest path, as `Email/import` stores an uploaded one.
//! - `Email/copy` copies between accounts; a user has one account, so every copy is
//!   `fromAccountNotFound`.

use hameau_mailbox::{Error as MailError, Ingest, Keyword, MailboxId};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::mailbox::{mailbox_id, parse_mailbox_id};
use super::{BlobId, Context, SetArguments, SetResponse, arguments, id, letter, parse_id};
use crate::{MethodError, SetError, apply_patch};

/// The email of a wire id (a `#creation` reference resolved); `None` for no email's.
pub fn parse_email_id(ctx: &Context<'_>, wire: &str) -> Option<u64> {
    parse_id(letter::EMAIL, ctx.resolve_id(wire)?)
}

/// `Email/set`: updates of keywords and mailboxes, destructions (creations: see the
/// module's documentation).
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let changes = (arguments.create, arguments.update, arguments.destroy);
    let (create, update, destroy, old_state) =
        super::open_set(ctx, &arguments.account_id, arguments.if_in_state.as_deref(), changes).await?;
    let mut response = SetResponse::default();
    for (creation, properties) in create {
        let outcome = match &properties {
            Value::Object(properties) => super::email_create::create(ctx, properties).await,
            _ => Err(SetError::invalid_properties("a creation is an object", vec![])),
        };
        response.create_outcome(&mut ctx.created_ids, creation, outcome);
    }
    for (wire, patch) in update {
        let outcome = update_one(ctx, &wire, patch).await;
        response.update_outcome(wire, outcome);
    }
    for wire in destroy {
        let outcome = match parse_email_id(ctx, &wire) {
            Some(email) => ctx.mail().destroy_email(ctx.account(), email).await.map(|_| ()).map_err(set_fail),
            None => Err(SetError::new("notFound", format!("no email {wire:?}"))),
        };
        response.destroy_outcome(wire, outcome);
    }
    let new_state = ctx.state().await?;
    Ok(response.into_arguments(ctx, old_state, new_state))
}

async fn update_one(ctx: &Context<'_>, wire: &str, patch: Value) -> Result<(), SetError> {
    let email_id = parse_email_id(ctx, wire).ok_or_else(|| SetError::new("notFound", format!("no email {wire:?}")))?;
    let email = ctx.mail().email(ctx.account(), email_id).await.map_err(set_fail)?;
    let Value::Object(patch) = patch else {
        return Err(SetError::invalid_patch("a patch is an object"));
    };
    if let Some(path) = patch.keys().find(|path| !path.starts_with("keywords") && !path.starts_with("mailboxIds")) {
        return Err(SetError::invalid_properties(
            format!("only keywords and mailboxIds of an email change ({path:?} does not)"),
            vec![path.split('/').next().unwrap_or(path).to_string()],
        ));
    }
    let mut object = Map::new();
    let keywords: Map<String, Value> = email
        .keywords
        .iter()
        .filter_map(|keyword| keyword.jmap())
        .map(|word| (word.to_string(), Value::Bool(true)))
        .collect();
    let mailboxes: Map<String, Value> =
        email.mailboxes.iter().map(|mailbox| (mailbox_id(*mailbox), Value::Bool(true))).collect();
    object.insert("keywords".into(), Value::Object(keywords));
    object.insert("mailboxIds".into(), Value::Object(mailboxes));
    apply_patch(&mut object, &patch, ctx.limits())?;
    let new_keywords = if patch.keys().any(|path| path.starts_with("keywords")) {
        let mut keywords = read_keywords(object.get("keywords"))?;
        // What JMAP does not show stays as it was.
        keywords.extend(email.keywords.iter().filter(|keyword| keyword.jmap().is_none()).cloned());
        Some(keywords)
    } else {
        None
    };
    let new_mailboxes = if patch.keys().any(|path| path.starts_with("mailboxIds")) {
        Some(read_mailboxes(ctx, object.get("mailboxIds"))?)
    } else {
        None
    };
    ctx.mail()
        .change_email(ctx.account(), email_id, new_keywords.as_deref(), new_mailboxes.as_deref())
        .await
        .map(|_| ())
        .map_err(set_fail)
}

/// A `keywords` object: each key a keyword, each value `true`.
pub(crate) fn read_keywords(value: Option<&Value>) -> Result<Vec<Keyword>, SetError> {
    let bad = |why: String| SetError::invalid_properties(why, vec!["keywords".into()]);
    let Some(Value::Object(keywords)) = value else {
        return Err(bad("keywords is an object of keyword to true".into()));
    };
    keywords
        .iter()
        .map(|(word, value)| match (Keyword::parse_jmap(word), value) {
            (Some(keyword), Value::Bool(true)) => Ok(keyword),
            (None, _) => Err(bad(format!("{word:?} is not a keyword"))),
            (_, _) => Err(bad(format!("the value of keyword {word:?} is not true"))),
        })
        .collect()
}

/// A `mailboxIds` object: each key a mailbox id (or `#creation`), each value `true`.
pub(crate) fn read_mailboxes(ctx: &Context<'_>, value: Option<&Value>) -> Result<Vec<MailboxId>, SetError> {
    let bad = |why: String| SetError::invalid_properties(why, vec!["mailboxIds".into()]);
    let Some(Value::Object(mailboxes)) = value else {
        return Err(bad("mailboxIds is an object of mailbox id to true".into()));
    };
    if mailboxes.is_empty() {
        return Err(bad("an email is in at least one mailbox".into()));
    }
    mailboxes
        .iter()
        .map(|(wire, value)| match (parse_mailbox_id(ctx, wire), value) {
            (Some(mailbox), Value::Bool(true)) => Ok(mailbox),
            (None, _) => Err(bad(format!("no mailbox {wire:?}"))),
            (_, _) => Err(bad(format!("the value of mailbox {wire:?} is not true"))),
        })
        .collect()
}

impl From<MailError> for SetError {
    fn from(error: MailError) -> SetError {
        set_fail(error)
    }
}

/// A mail model error of one email, as its `SetError`.
pub(crate) fn set_fail(error: MailError) -> SetError {
    match error {
        MailError::NoEmail(_) => SetError::new("notFound", "no such email"),
        MailError::NoMailbox(_) => SetError::invalid_properties("no such mailbox", vec!["mailboxIds".into()]),
        MailError::NoTargetMailbox => {
            SetError::invalid_properties("an email is in at least one mailbox", vec!["mailboxIds".into()])
        }
        MailError::TooManyKeywords { max } => {
            SetError::invalid_properties(format!("an email has at most {max} keywords"), vec!["keywords".into()])
        }
        MailError::OverQuota { used, quota, .. } => {
            SetError::new("overQuota", format!("{used} of {quota} bytes are used: the message does not fit"))
        }
        MailError::Unstorable(e) => SetError::new("invalidEmail", format!("the message cannot be stored: {e}")),
        other => {
            tracing::error!(error = %other, "jmap: Email/set failed");
            SetError::new("serverFail", "the server failed; try again later")
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportArguments {
    account_id: String,
    #[serde(default)]
    if_in_state: Option<String>,
    emails: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EmailImport {
    blob_id: String,
    mailbox_ids: Value,
    #[serde(default)]
    keywords: Option<Value>,
    #[serde(default)]
    received_at: Option<String>,
}

/// `Email/import` (RFC 8621 §4.8): each message read from its blob and stored through
/// the one ingest path (quota, summary, text, threads), into its mailboxes with its
/// keywords.
pub async fn import(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ImportArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    super::check_set_size(arguments.emails.len(), ctx.limits())?;
    let old_state = super::check_state(ctx, arguments.if_in_state.as_deref()).await?;
    let mut response = SetResponse::default();
    for (creation, wanted) in arguments.emails {
        let outcome = import_one(ctx, wanted).await;
        response.create_outcome(&mut ctx.created_ids, creation, outcome);
    }
    let new_state = ctx.state().await?;
    let mut answer = response.into_arguments(ctx, old_state, new_state);
    // Email/import answers created and notCreated only (RFC 8621 §4.8).
    for key in ["updated", "destroyed", "notUpdated", "notDestroyed"] {
        answer.remove(key);
    }
    Ok(answer)
}

async fn import_one(ctx: &Context<'_>, wanted: Value) -> Result<Value, SetError> {
    let wanted: EmailImport =
        serde_json::from_value(wanted).map_err(|e| SetError::invalid_properties(e.to_string(), vec![]))?;
    let mailboxes = read_mailboxes(ctx, Some(&wanted.mailbox_ids))?;
    let keywords = match &wanted.keywords {
        Some(keywords) => read_keywords(Some(keywords))?,
        None => Vec::new(),
    };
    let received_at = match &wanted.received_at {
        Some(date) => hameau_calendar::parse_rfc3339_utc(date)
            .ok_or_else(|| SetError::invalid_properties("receivedAt is a UTCDate", vec!["receivedAt".into()]))?,
        None => ctx.now,
    };
    let raw = super::blob_bytes(ctx, &wanted.blob_id)
        .await?
        .ok_or_else(|| SetError::new("blobNotFound", format!("no blob {:?} in this account", wanted.blob_id)))?;
    let size = raw.len();
    let ingest = Ingest { raw: raw.into(), mailboxes, keywords, received_at, quota: ctx.user.quota.clone() };
    let stored = ctx.mail().ingest(ctx.account(), ingest).await.map_err(set_fail)?;
    // An upload, once imported, is the email's: it no longer counts as pending (nor twice
    // against the quota until it expires).
    if let Some(BlobId::Upload { hash }) = ctx.resolve_id(&wanted.blob_id).and_then(BlobId::parse)
        && let Some(hash) = hameau_store::BlobHash::from_hex(&hash)
        && let Err(e) = ctx.mail().remove_upload(ctx.account(), &hash).await
    {
        tracing::warn!(error = %e, "jmap: an imported upload could not be released; it expires later");
    }
    let mut created = Map::new();
    created.insert("id".into(), Value::from(id(letter::EMAIL, stored.email)));
    created.insert("blobId".into(), Value::from(BlobId::Email { email: stored.email, part: None }.to_wire()));
    created.insert("threadId".into(), Value::from(id(letter::THREAD, stored.thread)));
    created.insert("size".into(), Value::from(size));
    Ok(Value::Object(created))
}

/// `Email/copy` (RFC 8621 §4.7): from another account to this one. A user reaches only
/// its own account, so the source is never found; copying within one account is not a
/// copy (RFC 8620 §5.4: the accounts differ) — `Email/set` adds a mailbox instead.
pub async fn copy(ctx: &mut Context<'_>, arguments: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let text = |name: &str| arguments.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    ctx.check_account(&text("accountId"))?;
    if text("fromAccountId") == text("accountId") {
        return Err(MethodError::invalid_arguments(
            "fromAccountId and accountId are the same: add a mailbox with Email/set instead",
        ));
    }
    Err(MethodError::new("fromAccountNotFound", "no other account is open to this user"))
}

#[cfg(test)]
mod tests {
    use hameau_mailbox::{Keyword, Quota, Role};
    use serde_json::json;

    use crate::mail::tests::{ACCOUNT, Fixture, MESSAGE};

    async fn mailbox(fixture: &Fixture, role: Role) -> (u32, String) {
        let mailbox = fixture.services.mail.mailbox_by_role(ACCOUNT, role).await.unwrap().unwrap();
        (mailbox.id, format!("m{}", mailbox.id))
    }

    #[tokio::test]
    async fn keywords_and_mailboxes_change_and_emails_are_destroyed() {
        let fixture = Fixture::new().await;
        let email = fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let id = format!("e{email}");
        let (archive, archive_id) = mailbox(&fixture, Role::Archive).await;
        let (_, inbox_id) = mailbox(&fixture, Role::Inbox).await;
        let set = fixture
            .one(
                "Email/set",
                json!({"accountId": "a7", "update": {
                    &id: {"keywords/$seen": true, "keywords/$flagged": true, &format!("mailboxIds/{inbox_id}"): null, &format!("mailboxIds/{archive_id}"): true},
                    "e999": {"keywords/$seen": true},
                }}),
            )
            .await;
        assert!(set["updated"].get(&id).is_some(), "{set}");
        assert_eq!(set["notUpdated"]["e999"]["type"], "notFound");
        assert_ne!(set["oldState"], set["newState"]);
        let stored = fixture.services.mail.email(ACCOUNT, email).await.unwrap();
        assert_eq!(stored.keywords, vec![Keyword::Flagged, Keyword::Seen]);
        assert_eq!(stored.mailboxes, vec![archive]);
        // A whole keywords object replaces them; \Deleted, which JMAP does not show, stays.
        fixture
            .services
            .mail
            .change_email(ACCOUNT, email, Some(&[Keyword::Deleted, Keyword::Seen]), None)
            .await
            .unwrap();
        fixture.one("Email/set", json!({"accountId": "a7", "update": {&id: {"keywords": {"$Answered": true}}}})).await;
        let stored = fixture.services.mail.email(ACCOUNT, email).await.unwrap();
        assert_eq!(stored.keywords, vec![Keyword::Answered, Keyword::Deleted]);
        // What may not change, or is not a keyword or a mailbox, fails that email alone.
        let set = fixture
            .one(
                "Email/set",
                json!({"accountId": "a7", "update": {
                    &id: {"subject": "autre"},
                }, "create": {"n": {"subject": "x"}}}),
            )
            .await;
        assert_eq!(set["notUpdated"][&id]["type"], "invalidProperties");
        assert_eq!(set["notCreated"]["n"]["type"], "invalidProperties", "no mailboxIds");
        for patch in [
            json!({"keywords/a b": true}),
            json!({"mailboxIds": {}}),
            json!({"mailboxIds/m999": true}),
            json!({"keywords/$seen": 1}),
        ] {
            let set = fixture.one("Email/set", json!({"accountId": "a7", "update": {&id: patch}})).await;
            assert_eq!(set["notUpdated"][&id]["type"], "invalidProperties", "{patch}: {set}");
        }
        let set = fixture.one("Email/set", json!({"accountId": "a7", "destroy": [&id, "e999", "x"]})).await;
        assert_eq!(set["destroyed"], json!([&id]));
        assert_eq!(set["notDestroyed"]["e999"]["type"], "notFound");
        assert!(fixture.services.mail.email(ACCOUNT, email).await.is_err());
        assert_eq!(fixture.error("Email/set", json!({"accountId": "a9", "destroy": []})).await, "accountNotFound");
    }

    #[tokio::test]
    async fn a_draft_is_written_from_its_properties_with_an_attachment() {
        let fixture = Fixture::new().await;
        let email = fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let (drafts, drafts_id) = mailbox(&fixture, Role::Drafts).await;
        let set = fixture
            .one(
                "Email/set",
                json!({"accountId": "a7", "create": {"d": {
                    "mailboxIds": {&drafts_id: true},
                    "keywords": {"$draft": true, "$seen": true},
                    "from": [{"name": "Agent d'accueil", "email": "agent@mairie.test"}],
                    "to": [{"email": "maire@mairie.test"}, {"name": "Élu", "email": "elu@mairie.test"}],
                    "subject": "Compte rendu du conseil",
                    "inReplyTo": ["1@mairie.test"],
                    "textBody": [{"partId": "t", "type": "text/plain"}],
                    "bodyValues": {"t": {"value": "Bonjour,\nvoici le compte rendu."}},
                    "attachments": [{"blobId": format!("b{email}"), "type": "message/rfc822", "name": "original.eml"}],
                }, "bad": {"mailboxIds": {&drafts_id: true}, "bodyStructure": {}},
                   "lost": {"mailboxIds": {&drafts_id: true}, "attachments": [{"blobId": "b999"}]}}}),
            )
            .await;
        let created = &set["created"]["d"];
        let id: u64 = created["id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(set["notCreated"]["bad"]["type"], "invalidProperties");
        assert_eq!(set["notCreated"]["lost"]["type"], "blobNotFound");
        let stored = fixture.services.mail.email(ACCOUNT, id).await.unwrap();
        assert_eq!((stored.mailboxes, stored.keywords), (vec![drafts], vec![Keyword::Draft, Keyword::Seen]));
        let raw = String::from_utf8(fixture.services.mail.raw(ACCOUNT, id).await.unwrap()).unwrap();
        for wanted in [
            "Subject: Compte rendu du conseil",
            "agent@mairie.test",
            "elu@mairie.test",
            "In-Reply-To: <1@mairie.test>",
            "original.eml",
            "message/rfc822",
        ] {
            assert!(raw.contains(wanted), "{wanted} in {raw}");
        }
        assert_eq!(created["size"].as_u64(), Some(raw.len() as u64));
        assert!(raw.contains("@mairie.test>\r\nMIME-Version"), "a Message-ID of the user's domain: {raw}");
    }

    #[tokio::test]
    async fn messages_are_imported_through_the_ingest_path_within_the_quota() {
        let mut fixture = Fixture::new().await;
        let email = fixture.deliver(&MESSAGE.replace("\\r\\n", "\r\n"), Role::Inbox).await;
        let (archive, archive_id) = mailbox(&fixture, Role::Archive).await;
        let import = fixture
            .one(
                "Email/import",
                json!({"accountId": "a7", "emails": {
                    "i": {"blobId": format!("b{email}"), "mailboxIds": {&archive_id: true}, "keywords": {"$seen": true}, "receivedAt": "2026-01-02T03:04:05Z"},
                    "lost": {"blobId": "b999", "mailboxIds": {&archive_id: true}},
                    "nowhere": {"blobId": format!("b{email}"), "mailboxIds": {}},
                }}),
            )
            .await;
        let created = &import["created"]["i"];
        let new: u64 = created["id"].as_str().unwrap()[1..].parse().unwrap();
        assert_eq!(created["blobId"], format!("b{new}"));
        assert_eq!(import["notCreated"]["lost"]["type"], "blobNotFound");
        assert_eq!(import["notCreated"]["nowhere"]["type"], "invalidProperties");
        let stored = fixture.services.mail.email(ACCOUNT, new).await.unwrap();
        assert_eq!(
            (stored.mailboxes, stored.keywords, stored.received_at),
            (vec![archive], vec![Keyword::Seen], 1_767_323_045)
        );
        // Over the account's quota: refused, nothing stored.
        fixture.user.quota = Quota::account(Some(stored.size));
        let import = fixture
            .one("Email/import", json!({"accountId": "a7", "emails": {"big": {"blobId": format!("b{email}"), "mailboxIds": {&archive_id: true}}}}))
            .await;
        assert_eq!(import["notCreated"]["big"]["type"], "overQuota", "{import}");
        // An upload imported is released: no longer pending, counted once.
        let staged = fixture
            .services
            .mail
            .stage_upload(ACCOUNT, &mut MESSAGE.replace("\\r\\n", "\r\n").as_bytes())
            .await
            .unwrap();
        let terms = hameau_mailbox::UploadTerms {
            now: crate::mail::tests::NOW,
            ttl_s: 3600,
            pending_bytes_max: 1 << 20,
            quota: Quota::default(),
        };
        let upload = fixture.services.mail.add_upload(ACCOUNT, staged, &terms).await.unwrap();
        assert!(fixture.services.mail.uploads_pending(ACCOUNT).await.unwrap() > 0);
        fixture.user.quota = Quota::default();
        let import = fixture
            .one("Email/import", json!({"accountId": "a7", "emails": {"u": {"blobId": format!("u{}", upload.hash.to_hex()), "mailboxIds": {&archive_id: true}}}}))
            .await;
        assert!(import["created"]["u"]["id"].is_string(), "{import}");
        assert_eq!(fixture.services.mail.uploads_pending(ACCOUNT).await.unwrap(), 0);
        let copy = fixture.error("Email/copy", json!({"accountId": "a7", "fromAccountId": "a1", "create": {}})).await;
        assert_eq!(copy, "fromAccountNotFound");
    }
}

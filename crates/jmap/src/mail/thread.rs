//! `Thread/get` and `Thread/changes` (RFC 8621 §3).
//!
//! A thread's id is that of its first email (`t17`: threads by reference, the mail model's);
//! its emails come from the model's thread index (one prefix scan), sorted by `receivedAt`,
//! oldest first, ties by id. A thread's only property besides its id is `emailIds`, so it
//! changes when an email joins or leaves it, never when an email's keywords or mailboxes
//! do: `Thread/changes` reads the emails' changes and keeps creations and destructions.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use hameau_mailbox::ChangeKind;
use serde_json::{Map, Value, json};

use super::changes::{self, ChangesArguments, Fold, Folded};
use super::email::email_id;
use super::{Context, GetArguments, arguments, letter, parse_id, server_fail};
use crate::MethodError;

const PROPERTIES: [&str; 2] = ["id", "emailIds"];

/// The wire id of a thread.
pub fn thread_id(thread: u64) -> String {
    super::id(letter::THREAD, thread)
}

/// The emails of `thread`, oldest first (ties by id); empty when there is no such thread.
/// At most `jmap.query_results_max` of them: a thread's emails are a query's results.
pub async fn emails_of(ctx: &Context<'_>, thread: u64) -> Result<Vec<u64>, MethodError> {
    let limit = usize::try_from(ctx.limits().query_results_max).unwrap_or(usize::MAX);
    let members = ctx.mail().thread_emails(ctx.account(), thread, limit).await.map_err(server_fail)?;
    let records = ctx.mail().emails(ctx.account(), &members).await.map_err(server_fail)?;
    let mut dated: Vec<(u64, u64)> = records.into_iter().flatten().map(|email| (email.received_at, email.id)).collect();
    dated.sort_unstable();
    Ok(dated.into_iter().map(|(_, id)| id).collect())
}

/// `Thread/get` (RFC 8621 §3.1). `ids: null` is refused (`requestTooLarge`): threads are
/// reached through emails.
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: GetArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let properties = super::properties(arguments.properties, &PROPERTIES, &PROPERTIES)?;
    let Some(ids) = super::ids_to_get(arguments.ids, ctx.limits())? else {
        return Err(MethodError::new("requestTooLarge", "ask for threads by id (from Email/get's threadId)"));
    };
    let state = ctx.state().await?;
    let mut list = Vec::with_capacity(ids.len());
    let mut not_found = Vec::new();
    let mut seen = HashSet::new();
    for wire in ids {
        let Some(thread) = ctx.resolve_id(&wire).and_then(|id| parse_id(letter::THREAD, id)) else {
            not_found.push(wire);
            continue;
        };
        if !seen.insert(thread) {
            continue;
        }
        let emails = emails_of(ctx, thread).await?;
        if emails.is_empty() {
            not_found.push(wire);
            continue;
        }
        let object = json!({"id": thread_id(thread), "emailIds": emails.into_iter().map(email_id).collect::<Vec<_>>()});
        list.push(match object {
            Value::Object(object) => super::only(object, &properties),
            other => other,
        });
    }
    Ok(super::get_response(ctx, state, list, not_found))
}

/// `Thread/changes` (RFC 8621 §3.2): the emails created or destroyed since the state, by
/// their threads. A thread is created when its first email was (a thread's id is its
/// first email's), destroyed when it has no email left, updated otherwise; `maxChanges`
/// bounds the emails read, and so the threads.
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let destroyed_threads: Mutex<HashMap<u64, u64>> = Mutex::new(HashMap::new());
    let select = |change: &hameau_mailbox::Change, out: &mut Vec<(u64, ChangeKind)>| {
        out.extend(change.email_changes().filter(|(_, kind)| *kind != ChangeKind::Updated));
        if !change.destroyed_threads.is_empty() {
            destroyed_threads.lock().expect("threads lock").extend(change.destroyed_threads.iter().copied());
        }
    };
    let emails = changes::read(ctx, &arguments, &select).await?;
    let destroyed_threads = destroyed_threads.into_inner().expect("threads lock");
    // The thread of each email: its record's, or the change's that destroyed it.
    let ids: Vec<u64> = emails.objects.iter().map(|(email, _)| *email).collect();
    let records = ctx.mail().emails(ctx.account(), &ids).await.map_err(server_fail)?;
    let mut threads: Vec<u64> = Vec::new();
    let mut created: HashSet<u64> = HashSet::new();
    for ((email, fold), record) in emails.objects.iter().zip(records) {
        let Some(thread) = record.map(|record| record.thread).or_else(|| destroyed_threads.get(email).copied()) else {
            continue;
        };
        if !threads.contains(&thread) {
            threads.push(thread);
        }
        if matches!(fold, Fold::Created | Fold::Gone) && *email == thread {
            created.insert(thread);
        }
    }
    let mut objects = Vec::with_capacity(threads.len());
    for thread in threads {
        let exists = !ctx.mail().thread_emails(ctx.account(), thread, 1).await.map_err(server_fail)?.is_empty();
        let fold = match (exists, created.contains(&thread)) {
            (true, true) => Fold::Created,
            (true, false) => Fold::Updated,
            (false, true) => Fold::Gone,
            (false, false) => Fold::Destroyed,
        };
        objects.push((thread, fold));
    }
    let folded = Folded { objects, new_state: emails.new_state, has_more: emails.has_more };
    Ok(changes::response(ctx, &arguments, &folded, thread_id))
}

#[cfg(test)]
#[path = "thread_tests.rs"]
mod tests;

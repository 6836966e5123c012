//! `Mailbox/get`, `/changes`, `/query`, `/queryChanges` and `/set` (RFC 8621 §2) over the
//! mail model's mailbox tree.
//!
//! - A JMAP mailbox's `name` is the last segment of its full name in the tree (segments
//!   joined by `/`), its `parentId` the mailbox above: so a name holding `/` is refused.
//! - `sortOrder` is the server's: the roles first in the order clients show them (inbox,
//!   drafts, sent, archive, junk, trash), others after. It is not stored: a client's
//!   value in `/set` is accepted and not kept (docs/jmap.md).
//! - The counts (`totalEmails`, `unreadEmails`) read the mailbox's index; the thread
//!   counts read its emails' records too, and only when asked.
//! - Every right is granted on the user's own mailboxes, but renaming and destroying the
//!   inbox.

use std::collections::{HashMap, HashSet};

use hameau_mailbox::{ChangeKind, DELIMITER, Error as MailError, Keyword, Mailbox, MailboxId, Role};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::changes::{self, ChangesArguments, Fold};
use super::{Comparator, Context, SetResponse, Window, arguments, letter, parse_id, server_fail};
use crate::filter::{self, Node};
use crate::{MethodError, SetError, apply_patch};

const PROPERTIES: [&str; 11] = [
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// The properties `Mailbox/changes` says changed when only the counts did.
const COUNTS: [&str; 4] = ["totalEmails", "unreadEmails", "totalThreads", "unreadThreads"];

/// The wire id of a mailbox.
pub fn mailbox_id(id: MailboxId) -> String {
    super::id(letter::MAILBOX, u64::from(id))
}

/// The mailbox of a wire id (a `#creation` reference resolved); `None` for no mailbox's.
pub fn parse_mailbox_id(ctx: &Context<'_>, wire: &str) -> Option<MailboxId> {
    let wire = ctx.resolve_id(wire)?;
    parse_id(letter::MAILBOX, wire).and_then(|number| MailboxId::try_from(number).ok())
}

fn sort_order(role: Option<Role>) -> u32 {
    match role {
        Some(Role::Inbox) => 1,
        Some(Role::Drafts) => 2,
        Some(Role::Sent) => 3,
        Some(Role::Archive) => 4,
        Some(Role::Junk) => 5,
        Some(Role::Trash) => 6,
        None => 10,
    }
}

/// The last segment of a full name.
fn leaf(name: &str) -> &str {
    name.rsplit(DELIMITER).next().unwrap_or(name)
}

fn is_inbox(mailbox: &Mailbox) -> bool {
    mailbox.role == Some(Role::Inbox) || mailbox.name == "INBOX"
}

/// `Mailbox/get` (RFC 8621 §2.1).
pub async fn get(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let (ids, properties, state) = super::open_get(ctx, arguments_, &PROPERTIES).await?;
    let mailboxes = ctx.mail().mailboxes(ctx.account()).await.map_err(server_fail)?;
    let (wanted, not_found): (Vec<&Mailbox>, Vec<String>) = match &ids {
        None => (mailboxes.iter().collect(), Vec::new()),
        Some(ids) => {
            let mut wanted = Vec::new();
            let mut not_found = Vec::new();
            for wire in ids {
                match parse_mailbox_id(ctx, wire).and_then(|id| mailboxes.iter().find(|mailbox| mailbox.id == id)) {
                    Some(mailbox) => wanted.push(mailbox),
                    None => not_found.push(wire.clone()),
                }
            }
            (wanted, not_found)
        }
    };
    let threads = properties.iter().any(|property| property == "totalThreads" || property == "unreadThreads");
    let counts = threads || properties.iter().any(|property| property == "totalEmails" || property == "unreadEmails");
    let mut list = Vec::with_capacity(wanted.len());
    for mailbox in wanted {
        let counts = if counts { Some(count(ctx, mailbox.id, threads).await?) } else { None };
        list.push(super::only(to_json(mailbox, counts.unwrap_or_default()), &properties));
    }
    Ok(super::get_response(ctx, state, list, not_found))
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    emails: u64,
    unread_emails: u64,
    threads: u64,
    unread_threads: u64,
}

/// A mailbox's counts; the thread counts only if `threads` (they read each email).
async fn count(ctx: &Context<'_>, mailbox: MailboxId, threads: bool) -> Result<Counts, MethodError> {
    let entries = match ctx.mail().uids(ctx.account(), mailbox).await {
        Ok(entries) => entries,
        Err(MailError::NoMailbox(_)) => Vec::new(),
        Err(e) => return Err(server_fail(e)),
    };
    // RFC 8621 §2: unread is neither `$seen` nor `$draft`.
    let unread = |keywords: &[Keyword]| !keywords.contains(&Keyword::Seen) && !keywords.contains(&Keyword::Draft);
    let mut counts = Counts {
        emails: entries.len() as u64,
        unread_emails: entries.iter().filter(|entry| unread(&entry.keywords)).count() as u64,
        ..Counts::default()
    };
    if threads {
        let mut all = HashSet::new();
        let mut unread_threads = HashSet::new();
        let mut pacer = hameau_mailbox::query::Pacer::default();
        for chunk in entries.chunks(hameau_mailbox::query::MESSAGES_PER_CHUNK) {
            let ids: Vec<u64> = chunk.iter().map(|entry| entry.email).collect();
            let emails = ctx.mail().emails(ctx.account(), &ids).await.map_err(server_fail)?;
            for (entry, email) in chunk.iter().zip(emails) {
                let Some(email) = email else { continue };
                all.insert(email.thread);
                if unread(&entry.keywords) {
                    unread_threads.insert(email.thread);
                }
            }
            pacer.pace().await;
        }
        counts.threads = all.len() as u64;
        counts.unread_threads = unread_threads.len() as u64;
    }
    Ok(counts)
}

fn to_json(mailbox: &Mailbox, counts: Counts) -> Map<String, Value> {
    let inbox = is_inbox(mailbox);
    let object = json!({
        "id": mailbox_id(mailbox.id),
        "name": leaf(&mailbox.name),
        "parentId": mailbox.parent.map(mailbox_id),
        "role": mailbox.role.map(Role::name),
        "sortOrder": sort_order(mailbox.role),
        "totalEmails": counts.emails,
        "unreadEmails": counts.unread_emails,
        "totalThreads": counts.threads,
        "unreadThreads": counts.unread_threads,
        "myRights": {
            "mayReadItems": true,
            "mayAddItems": true,
            "mayRemoveItems": true,
            "maySetSeen": true,
            "maySetKeywords": true,
            "mayCreateChild": true,
            "mayRename": !inbox,
            "mayDelete": !inbox,
            "maySubmit": true,
        },
        "isSubscribed": mailbox.subscribed,
    });
    match object {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// `Mailbox/changes` (RFC 8621 §2.2): mailboxes created, renamed, subscribed or
/// destroyed, and those whose emails changed (`updatedProperties` then names the counts
/// alone, when nothing else of any mailbox changed).
pub async fn changes(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: ChangesArguments = arguments(arguments_)?;
    let tree_changed = std::sync::atomic::AtomicBool::new(false);
    let select = |change: &hameau_mailbox::Change, out: &mut Vec<(u64, ChangeKind)>| {
        for (mailbox, kind) in &change.mailbox_changes {
            tree_changed.store(true, std::sync::atomic::Ordering::Relaxed);
            out.push((u64::from(*mailbox), *kind));
        }
        for mailbox in &change.mailboxes {
            out.push((u64::from(*mailbox), ChangeKind::Updated));
        }
    };
    let folded = changes::read(ctx, &arguments, &select).await?;
    let mut response = changes::response(ctx, &arguments, &folded, |number| super::id(letter::MAILBOX, number));
    let counts_only = !tree_changed.load(std::sync::atomic::Ordering::Relaxed)
        && folded.objects.iter().any(|(_, fold)| *fold == Fold::Updated);
    response.insert("updatedProperties".into(), if counts_only { json!(COUNTS) } else { Value::Null });
    Ok(response)
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
    sort_as_tree: bool,
    #[serde(default)]
    filter_as_tree: bool,
    #[serde(default)]
    calculate_total: bool,
    #[serde(flatten)]
    window: Window,
}

/// `Mailbox/query` (RFC 8621 §2.3): filter on `parentId`, `name` (contains, any case),
/// `role`, `hasAnyRole`, `isSubscribed`; sort by `sortOrder` or `name`, as a tree if asked.
pub async fn query(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: QueryArguments = arguments(arguments_)?;
    ctx.check_account(&arguments.account_id)?;
    let nodes = filter::flatten(arguments.filter, ctx.limits().filter_nodes_max)?;
    check_conditions(&nodes)?;
    let sort = arguments.sort.unwrap_or_default();
    for comparator in &sort {
        if comparator.property != "sortOrder" && comparator.property != "name" {
            return Err(MethodError::new(
                "unsupportedSort",
                format!("mailboxes sort by sortOrder or name, not {:?}", comparator.property),
            ));
        }
        if comparator.collation.is_some() {
            return Err(MethodError::new("unsupportedSort", "no collation is offered (collationAlgorithms is empty)"));
        }
    }
    let state = ctx.state().await?;
    let mailboxes = ctx.mail().mailboxes(ctx.account()).await.map_err(server_fail)?;
    let by_id: HashMap<MailboxId, &Mailbox> = mailboxes.iter().map(|mailbox| (mailbox.id, mailbox)).collect();
    let mut matching: HashSet<MailboxId> = HashSet::new();
    for mailbox in &mailboxes {
        if filter::matches(&nodes, |condition| condition_holds(ctx, mailbox, condition))? {
            matching.insert(mailbox.id);
        }
    }
    if arguments.filter_as_tree {
        // A mailbox whose parent does not match does not either (ancestors checked up the
        // chain; a tree's depth is bounded by the name length).
        let kept: HashSet<MailboxId> = matching
            .iter()
            .copied()
            .filter(|id| ancestors(&by_id, *id).iter().all(|ancestor| matching.contains(ancestor)))
            .collect();
        matching = kept;
    }
    let key = |mailbox: &Mailbox| -> Vec<(u32, String)> {
        let mut chain: Vec<MailboxId> = if arguments.sort_as_tree { ancestors(&by_id, mailbox.id) } else { Vec::new() };
        chain.reverse();
        chain.push(mailbox.id);
        chain
            .iter()
            .filter_map(|id| by_id.get(id))
            .map(|m| (sort_order(m.role), leaf(&m.name).to_lowercase()))
            .collect()
    };
    let mut sorted: Vec<&Mailbox> = mailboxes.iter().filter(|mailbox| matching.contains(&mailbox.id)).collect();
    sorted.sort_by(|a, b| {
        let (ka, kb) = (key(a), key(b));
        // Tree order: by each level's comparators, a parent before its children.
        for ((order_a, name_a), (order_b, name_b)) in ka.iter().zip(&kb) {
            for comparator in &sort {
                let ordering = match comparator.property.as_str() {
                    "sortOrder" => order_a.cmp(order_b),
                    _ => name_a.cmp(name_b),
                };
                let ordering = if comparator.is_ascending { ordering } else { ordering.reverse() };
                if ordering.is_ne() {
                    return ordering;
                }
            }
            if (order_a, name_a) != (order_b, name_b) {
                return (order_a, name_a).cmp(&(order_b, name_b));
            }
        }
        ka.len().cmp(&kb.len()).then(a.id.cmp(&b.id))
    });
    let ids: Vec<String> = sorted.iter().map(|mailbox| mailbox_id(mailbox.id)).collect();
    let window = super::window(&ids, &arguments.window, ctx.limits())?;
    let total = arguments.calculate_total.then_some(ids.len());
    Ok(super::query_response(ctx, state, window, total))
}

/// The ancestors of a mailbox, nearest first.
fn ancestors(by_id: &HashMap<MailboxId, &Mailbox>, id: MailboxId) -> Vec<MailboxId> {
    let mut chain = Vec::new();
    let mut parent = by_id.get(&id).and_then(|mailbox| mailbox.parent);
    while let Some(id) = parent {
        if chain.contains(&id) || chain.len() > by_id.len() {
            break;
        }
        chain.push(id);
        parent = by_id.get(&id).and_then(|mailbox| mailbox.parent);
    }
    chain
}

const CONDITIONS: [&str; 5] = ["parentId", "name", "role", "hasAnyRole", "isSubscribed"];

fn check_conditions(nodes: &[Node]) -> Result<(), MethodError> {
    for node in nodes {
        if let Node::Condition(condition) = node
            && let Some(unknown) = condition.keys().find(|key| !CONDITIONS.contains(&key.as_str()))
        {
            return Err(MethodError::new("unsupportedFilter", format!("mailboxes are not filtered by {unknown:?}")));
        }
    }
    Ok(())
}

/// Whether `mailbox` meets every property of one `FilterCondition`.
fn condition_holds(ctx: &Context<'_>, mailbox: &Mailbox, condition: &Map<String, Value>) -> Result<bool, MethodError> {
    let wrong =
        |property: &str| MethodError::invalid_arguments(format!("the filter's {property:?} has the wrong type"));
    for (property, value) in condition {
        let holds = match property.as_str() {
            "parentId" => match value {
                Value::Null => mailbox.parent.is_none(),
                Value::String(wire) => parse_mailbox_id(ctx, wire).is_some_and(|id| mailbox.parent == Some(id)),
                _ => return Err(wrong(property)),
            },
            "name" => {
                let needle = value.as_str().ok_or_else(|| wrong(property))?.to_lowercase();
                leaf(&mailbox.name).to_lowercase().contains(&needle)
            }
            "role" => match value {
                Value::Null => mailbox.role.is_none(),
                Value::String(role) => mailbox.role.is_some_and(|own| own.name() == role),
                _ => return Err(wrong(property)),
            },
            "hasAnyRole" => value.as_bool().ok_or_else(|| wrong(property))? == mailbox.role.is_some(),
            "isSubscribed" => value.as_bool().ok_or_else(|| wrong(property))? == mailbox.subscribed,
            _ => false,
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `Mailbox/queryChanges`: this server does not keep query results, so it cannot say
/// what changed in them; the RFC's answer is `cannotCalculateChanges`, and the client
/// queries again.
pub async fn query_changes(
    ctx: &mut Context<'_>,
    arguments: Map<String, Value>,
) -> Result<Map<String, Value>, MethodError> {
    let account = arguments.get("accountId").and_then(Value::as_str).unwrap_or_default();
    ctx.check_account(account)?;
    Err(MethodError::new("cannotCalculateChanges", "query results are not kept: query again"))
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
    on_destroy_remove_emails: bool,
}

/// `Mailbox/set` (RFC 8621 §2.5): creations first (in order, so that a child may name a
/// parent created before it by `#`), then updates, then destructions; each object
/// succeeds or fails alone.
pub async fn set(ctx: &mut Context<'_>, arguments_: Map<String, Value>) -> Result<Map<String, Value>, MethodError> {
    let arguments: SetArguments = arguments(arguments_)?;
    let changes = (arguments.create, arguments.update, arguments.destroy);
    let (create, update, destroy, old_state) =
        super::open_set(ctx, &arguments.account_id, arguments.if_in_state.as_deref(), changes).await?;
    let mut response = SetResponse::default();
    // A creation whose parent is another creation (`"parentId": "#p"`) comes after it,
    // whatever the order of the map: passes until one creates nothing (a cycle fails).
    let mut pending: Vec<(String, Value)> = create.into_iter().collect();
    while !pending.is_empty() {
        let waiting: HashSet<String> = pending.iter().map(|(creation, _)| creation.clone()).collect();
        let waits = |properties: &Value| {
            properties
                .get("parentId")
                .and_then(Value::as_str)
                .and_then(|parent| parent.strip_prefix('#'))
                .is_some_and(|parent| waiting.contains(parent))
        };
        let (ready, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(_, properties)| !waits(properties));
        let stuck = ready.is_empty();
        for (creation, properties) in if stuck { later.clone() } else { ready } {
            let outcome = match &properties {
                Value::Object(properties) if stuck => {
                    let _ = properties;
                    Err(SetError::invalid_properties(
                        "the parents of these creations wait on each other",
                        vec!["parentId".into()],
                    ))
                }
                Value::Object(properties) => create_one(ctx, properties).await,
                _ => Err(SetError::invalid_properties("a creation is an object", vec![])),
            };
            response.create_outcome(&mut ctx.created_ids, creation, outcome.map(|created| created_json(&created)));
        }
        pending = if stuck { Vec::new() } else { later };
    }
    for (wire, patch) in update {
        let outcome = update_one(ctx, &wire, patch).await;
        response.update_outcome(wire, outcome);
    }
    for wire in destroy {
        let outcome = destroy_one(ctx, &wire, arguments.on_destroy_remove_emails).await;
        response.destroy_outcome(wire, outcome);
    }
    let new_state = ctx.state().await?;
    Ok(response.into_arguments(ctx, old_state, new_state))
}

/// What the server set on a created mailbox, which the client did not give.
fn created_json(mailbox: &Mailbox) -> Value {
    json!({
        "id": mailbox_id(mailbox.id),
        "sortOrder": sort_order(mailbox.role),
        "totalEmails": 0, "unreadEmails": 0, "totalThreads": 0, "unreadThreads": 0,
        "myRights": to_json(mailbox, Counts::default())["myRights"],
        "isSubscribed": mailbox.subscribed,
    })
}

/// The settable properties of a mailbox, as a create or a patched object gives them.
struct Settable {
    name: String,
    parent: Option<MailboxId>,
    role: Option<Role>,
    subscribed: Option<bool>,
}

fn settable(ctx: &Context<'_>, object: &Map<String, Value>) -> Result<Settable, SetError> {
    let bad = |property: &str, why: &str| SetError::invalid_properties(why.to_string(), vec![property.to_string()]);
    for (property, value) in object {
        match property.as_str() {
            "name" | "parentId" | "role" | "isSubscribed" | "sortOrder" => {}
            // Server-set properties may be sent back unchanged (RFC 8620 §5.3); their values
            // are the server's either way.
            "id" | "totalEmails" | "unreadEmails" | "totalThreads" | "unreadThreads" | "myRights" => {}
            _ => return Err(bad(property, &format!("a mailbox has no property {property:?}"))),
        }
        if property == "sortOrder" && !value.is_u64() {
            return Err(bad(property, "sortOrder is a non-negative integer"));
        }
    }
    let name = match object.get("name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(bad("name", "a mailbox needs a name (a string)")),
    };
    if name.is_empty() || name.contains(DELIMITER) || name.chars().any(char::is_control) {
        return Err(bad("name", "a name is not empty, without \"/\" nor control characters"));
    }
    let parent = match object.get("parentId") {
        None | Some(Value::Null) => None,
        Some(Value::String(wire)) => {
            Some(parse_mailbox_id(ctx, wire).ok_or_else(|| bad("parentId", "no such mailbox"))?)
        }
        Some(_) => return Err(bad("parentId", "parentId is a mailbox id or null")),
    };
    let role = match object.get("role") {
        None | Some(Value::Null) => None,
        Some(Value::String(role)) => {
            Some(Role::from_name(role).ok_or_else(|| bad("role", "no such role on this server"))?)
        }
        Some(_) => return Err(bad("role", "role is a string or null")),
    };
    let subscribed = match object.get("isSubscribed") {
        None => None,
        Some(Value::Bool(subscribed)) => Some(*subscribed),
        Some(_) => return Err(bad("isSubscribed", "isSubscribed is a boolean")),
    };
    Ok(Settable { name, parent, role, subscribed })
}

/// The full name in the tree of `leaf` under `parent`.
async fn full_name(ctx: &Context<'_>, parent: Option<MailboxId>, leaf: &str) -> Result<String, SetError> {
    match parent {
        None => Ok(leaf.to_string()),
        Some(parent) => match ctx.mail().mailbox(ctx.account(), parent).await {
            Ok(parent) => Ok(format!("{}{DELIMITER}{leaf}", parent.name)),
            Err(MailError::NoMailbox(_)) => {
                Err(SetError::invalid_properties("no such parent mailbox", vec!["parentId".into()]))
            }
            Err(e) => Err(set_fail(e)),
        },
    }
}

async fn create_one(ctx: &Context<'_>, object: &Map<String, Value>) -> Result<Mailbox, SetError> {
    let wanted = settable(ctx, object)?;
    let name = full_name(ctx, wanted.parent, &wanted.name).await?;
    let mut mailbox = ctx.mail().create_mailbox(ctx.account(), &name, wanted.role, ctx.now).await.map_err(set_fail)?;
    if let Some(subscribed) = wanted.subscribed
        && subscribed != mailbox.subscribed
    {
        ctx.mail().set_subscribed(ctx.account(), mailbox.id, subscribed).await.map_err(set_fail)?;
        mailbox.subscribed = subscribed;
    }
    Ok(mailbox)
}

async fn update_one(ctx: &Context<'_>, wire: &str, patch: Value) -> Result<(), SetError> {
    let not_found = || SetError::new("notFound", format!("no mailbox {wire:?}"));
    let id = parse_mailbox_id(ctx, wire).ok_or_else(not_found)?;
    let mailbox = match ctx.mail().mailbox(ctx.account(), id).await {
        Ok(mailbox) => mailbox,
        Err(MailError::NoMailbox(_)) => return Err(not_found()),
        Err(e) => return Err(set_fail(e)),
    };
    let Value::Object(patch) = patch else {
        return Err(SetError::invalid_patch("a patch is an object"));
    };
    let mut object = to_json(&mailbox, Counts::default());
    apply_patch(&mut object, &patch, ctx.limits())?;
    let wanted = settable(ctx, &object)?;
    if wanted.role != mailbox.role {
        return Err(SetError::invalid_properties("a mailbox's role is set when it is created", vec!["role".into()]));
    }
    let name = full_name(ctx, wanted.parent, &wanted.name).await?;
    if name != mailbox.name {
        if is_inbox(&mailbox) {
            return Err(SetError::new("forbidden", "the inbox cannot be renamed or moved"));
        }
        ctx.mail().rename_mailbox(ctx.account(), id, &name).await.map_err(set_fail)?;
    }
    if let Some(subscribed) = wanted.subscribed
        && subscribed != mailbox.subscribed
    {
        ctx.mail().set_subscribed(ctx.account(), id, subscribed).await.map_err(set_fail)?;
    }
    Ok(())
}

async fn destroy_one(ctx: &Context<'_>, wire: &str, remove_emails: bool) -> Result<(), SetError> {
    let not_found = || SetError::new("notFound", format!("no mailbox {wire:?}"));
    let id = parse_mailbox_id(ctx, wire).ok_or_else(not_found)?;
    let mailbox = match ctx.mail().mailbox(ctx.account(), id).await {
        Ok(mailbox) => mailbox,
        Err(MailError::NoMailbox(_)) => return Err(not_found()),
        Err(e) => return Err(set_fail(e)),
    };
    if is_inbox(&mailbox) {
        return Err(SetError::new("forbidden", "the inbox cannot be destroyed"));
    }
    if !remove_emails {
        let entries = ctx.mail().uids(ctx.account(), id).await.map_err(set_fail)?;
        if !entries.is_empty() {
            return Err(SetError::new(
                "mailboxHasEmail",
                format!("the mailbox holds {} emails (onDestroyRemoveEmails is false)", entries.len()),
            ));
        }
    }
    ctx.mail().delete_mailbox(ctx.account(), id).await.map_err(set_fail)
}

/// A mail model error of one object, as its `SetError`.
fn set_fail(error: MailError) -> SetError {
    match error {
        MailError::InvalidName(name) => {
            SetError::invalid_properties(format!("invalid mailbox name {name:?}"), vec!["name".into()])
        }
        MailError::MailboxExists(name) => {
            SetError::invalid_properties(format!("a mailbox named {name:?} exists already"), vec!["name".into()])
        }
        MailError::HasChildren(_) => SetError::new("mailboxHasChild", "the mailbox has child mailboxes"),
        MailError::TooManyMailboxes { max } => {
            SetError::new("overQuota", format!("the account has {max} mailboxes, the most it may have"))
        }
        MailError::Cannot(why) => SetError::new("forbidden", why),
        MailError::NoMailbox(_) => SetError::new("notFound", "no such mailbox"),
        other => {
            tracing::error!(error = %other, "jmap: Mailbox/set failed");
            SetError::new("serverFail", "the server failed; try again later")
        }
    }
}

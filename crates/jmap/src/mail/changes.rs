//! `/changes` (RFC 8620 §5.2) over the account's change log: the log entries after the
//! client's state, in order, each object's changes folded into one (created then
//! destroyed is nothing, created then updated is created, updated then destroyed is
//! destroyed), at most `maxChanges` objects.
//!
//! A log entry is one commit and one state: entries are taken whole, so that the new
//! state is always one a client can start from. When the first entry alone holds more
//! objects than `maxChanges` (an IMAP EXPUNGE of thousands), no state between fits and the
//! answer is `cannotCalculateChanges`: the client reloads, as the RFC says.

use std::collections::HashMap;

use hameau_mailbox::{Change, ChangeKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Context, server_fail};
use crate::MethodError;

/// Log entries read at a time.
const ENTRIES_PER_READ: usize = 256;

/// The arguments of every `/changes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangesArguments {
    pub account_id: String,
    pub since_state: String,
    #[serde(default)]
    pub max_changes: Option<u64>,
}

/// What one object went through since the state, folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    Created,
    Updated,
    Destroyed,
    /// Created and destroyed since the state: the client never saw it.
    Gone,
}

fn fold(before: Option<Fold>, kind: ChangeKind) -> Fold {
    match (before, kind) {
        (None, ChangeKind::Created) => Fold::Created,
        (None, ChangeKind::Updated) => Fold::Updated,
        (None, ChangeKind::Destroyed) => Fold::Destroyed,
        (Some(Fold::Created), ChangeKind::Destroyed) => Fold::Gone,
        (Some(Fold::Created), _) => Fold::Created,
        (Some(Fold::Updated), ChangeKind::Destroyed) => Fold::Destroyed,
        (Some(Fold::Updated), _) => Fold::Updated,
        (Some(Fold::Destroyed), _) => Fold::Destroyed,
        (Some(Fold::Gone), _) => Fold::Gone,
    }
}

/// The changes of one data type since a state.
#[derive(Debug, Default)]
pub struct Folded {
    /// Each object's folded change, in the order it first changed.
    pub objects: Vec<(u64, Fold)>,
    /// The state the answer brings the client to.
    pub new_state: u64,
    pub has_more: bool,
}

/// What a data type takes from a log entry: `(object, kind)` pairs.
pub type Select<'a> = dyn Fn(&Change, &mut Vec<(u64, ChangeKind)>) + Send + Sync + 'a;

/// The selection of the objects of one kind of the mail model (`Mail::create_object`).
pub fn objects_of(kind: &'static str) -> impl Fn(&Change, &mut Vec<(u64, ChangeKind)>) + Send + Sync {
    move |change: &Change, out: &mut Vec<(u64, ChangeKind)>| {
        out.extend(change.objects.iter().filter(|(of, _, _)| of == kind).map(|(_, id, change)| (*id, *change)));
    }
}

/// Reads the log after `since_state` for the objects `select` takes from each entry.
pub async fn read(ctx: &Context<'_>, arguments: &ChangesArguments, select: &Select<'_>) -> Result<Folded, MethodError> {
    ctx.check_account(&arguments.account_id)?;
    let cannot = || MethodError::new("cannotCalculateChanges", "this state is unknown here: reload the objects");
    let since: u64 = match arguments.since_state.parse::<u64>() {
        Ok(since) if arguments.since_state == since.to_string() => since,
        _ => return Err(cannot()),
    };
    let now = ctx.mail().modseq(ctx.account()).await.map_err(server_fail)?;
    if since > now {
        return Err(cannot());
    }
    let max = match arguments.max_changes {
        Some(0) => return Err(MethodError::invalid_arguments("maxChanges must be positive")),
        Some(max) => max.min(ctx.limits().changes_max),
        None => ctx.limits().changes_max,
    } as usize;
    let mut folded = Folded { new_state: since, ..Folded::default() };
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut taken = Vec::new();
    let mut after = since;
    'log: while after < now {
        let entries = ctx.mail().changes_since(ctx.account(), after, ENTRIES_PER_READ).await.map_err(server_fail)?;
        if entries.is_empty() {
            break;
        }
        for change in &entries {
            if change.modseq > now {
                break 'log;
            }
            taken.clear();
            select(change, &mut taken);
            let new = taken.iter().filter(|(object, _)| !index.contains_key(object)).count();
            if index.len() + new > max {
                if folded.objects.is_empty() {
                    return Err(MethodError::new(
                        "cannotCalculateChanges",
                        format!("one change holds more than maxChanges ({max}) objects: reload the objects"),
                    ));
                }
                folded.has_more = true;
                break 'log;
            }
            for &(object, kind) in &taken {
                match index.get(&object) {
                    Some(&at) => folded.objects[at].1 = fold(Some(folded.objects[at].1), kind),
                    None => {
                        index.insert(object, folded.objects.len());
                        folded.objects.push((object, fold(None, kind)));
                    }
                }
            }
            folded.new_state = change.modseq;
            after = change.modseq;
        }
    }
    if !folded.has_more {
        // Entries of other types only, or none: the client is as new as the account.
        folded.new_state = now;
    }
    Ok(folded)
}

/// The response of a `/changes`: the ids by fold, `wire` spelling each.
pub fn response(
    ctx: &Context<'_>,
    arguments: &ChangesArguments,
    folded: &Folded,
    wire: impl Fn(u64) -> String,
) -> Map<String, Value> {
    let ids = |wanted: Fold| -> Vec<String> {
        folded.objects.iter().filter(|(_, fold)| *fold == wanted).map(|(object, _)| wire(*object)).collect()
    };
    let mut response = Map::new();
    response.insert("accountId".into(), json!(crate::api::account_id(ctx.account())));
    response.insert("oldState".into(), json!(arguments.since_state));
    response.insert("newState".into(), json!(folded.new_state.to_string()));
    response.insert("hasMoreChanges".into(), json!(folded.has_more));
    response.insert("created".into(), json!(ids(Fold::Created)));
    response.insert("updated".into(), json!(ids(Fold::Updated)));
    response.insert("destroyed".into(), json!(ids(Fold::Destroyed)));
    response
}

#[cfg(test)]
mod tests {
    use super::{Fold, fold};
    use hameau_mailbox::ChangeKind;

    #[test]
    fn changes_fold_as_the_rfc_says() {
        let run = |kinds: &[ChangeKind]| kinds.iter().fold(None, |before, kind| Some(fold(before, *kind)));
        assert_eq!(run(&[ChangeKind::Created, ChangeKind::Updated]), Some(Fold::Created));
        assert_eq!(run(&[ChangeKind::Created, ChangeKind::Destroyed]), Some(Fold::Gone));
        assert_eq!(run(&[ChangeKind::Updated, ChangeKind::Destroyed]), Some(Fold::Destroyed));
        assert_eq!(run(&[ChangeKind::Updated, ChangeKind::Updated]), Some(Fold::Updated));
    }
}

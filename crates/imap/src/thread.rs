//! THREAD (RFC 5256 §2.1–2.2): ORDEREDSUBJECT and REFERENCES, as pure functions over the
//! messages' headers from their stored summaries.

use std::collections::HashMap;

use hameau_imap_session::Thread;

/// One message to thread.
pub struct Message {
    /// What the answer names it by: its sequence number or UID.
    pub number: u32,
    /// Message-ID without brackets; `None` when it has none.
    pub message_id: Option<String>,
    /// References, else In-Reply-To, oldest first, without brackets.
    pub references: Vec<String>,
    /// The sent date (else the arrival), seconds since the epoch.
    pub date: i64,
    pub subject: String,
}

/// The base subject of RFC 5256 §2.1: without `Re:`, `Fwd:` (and `Fw:`, `Tr:`, French
/// clients' `Réf:`), `[list]` tags and a trailing `(fwd)`, whitespace folded, lowercased;
/// and whether it was a reply or a forward.
pub fn base_subject(subject: &str) -> (String, bool) {
    let mut s = subject.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let mut reply = false;
    loop {
        let before = s.len();
        while let Some(rest) = s.strip_suffix("(fwd)") {
            s = rest.trim_end().to_string();
            reply = true;
        }
        for prefix in ["re:", "fwd:", "fw:", "tr:", "réf:", "ref:"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest.trim_start().to_string();
                reply = true;
            }
        }
        if s.starts_with('[')
            && let Some(end) = s.find(']')
            && end + 1 < s.len()
        {
            s = s[end + 1..].trim_start().to_string();
        }
        if let Some(inner) = s.strip_prefix("[fwd:").and_then(|rest| rest.strip_suffix(']')) {
            s = inner.trim().to_string();
            reply = true;
        }
        if s.len() == before {
            return (s, reply);
        }
    }
}

/// ORDEREDSUBJECT: messages grouped by base subject, each group sorted by date; its
/// first message is the parent of all the others (RFC 5256 §2.1).
pub fn ordered_subject(messages: &[Message]) -> Vec<Thread> {
    let mut groups: Vec<(String, Vec<&Message>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for message in messages {
        let (subject, _) = base_subject(&message.subject);
        let slot = *index.entry(subject.clone()).or_insert_with(|| {
            groups.push((subject, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(message);
    }
    let mut threads: Vec<(i64, u32, Thread)> = groups
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_by_key(|m| (m.date, m.number));
            let first = members[0];
            let children =
                members[1..].iter().map(|m| Thread { messages: vec![m.number], children: Vec::new() }).collect();
            (first.date, first.number, Thread { messages: vec![first.number], children })
        })
        .collect();
    threads.sort_by_key(|(date, number, _)| (*date, *number));
    threads.into_iter().map(|(_, _, thread)| thread).collect()
}

#[derive(Default)]
struct Container {
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
}

/// REFERENCES (RFC 5256 §2.2): parent/child links from References (or In-Reply-To), empty
/// containers for referenced messages that are not here, pruned as the RFC says, roots of
/// the same base subject gathered, siblings and roots by date.
pub fn references(messages: &[Message]) -> Vec<Thread> {
    let mut containers: Vec<Container> = Vec::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut container_of = |id: &str, containers: &mut Vec<Container>| -> usize {
        *by_id.entry(id.to_string()).or_insert_with(|| {
            containers.push(Container::default());
            containers.len() - 1
        })
    };
    // Step 1: a container per message and per referenced id, linked.
    for (index, message) in messages.iter().enumerate() {
        let own = match &message.message_id {
            Some(id) => {
                let c = container_of(id, &mut containers);
                if containers[c].message.is_some() {
                    // A duplicate Message-ID: treated as having none.
                    containers.push(Container::default());
                    containers.len() - 1
                } else {
                    c
                }
            }
            None => {
                containers.push(Container::default());
                containers.len() - 1
            }
        };
        containers[own].message = Some(index);
        let chain: Vec<usize> = message.references.iter().map(|id| container_of(id, &mut containers)).collect();
        for pair in chain.windows(2) {
            let (parent, child) = (pair[0], pair[1]);
            if parent != child && containers[child].parent.is_none() && !is_ancestor(&containers, child, parent) {
                link(&mut containers, parent, child);
            }
        }
        // The message's parent is its last reference, whatever it had.
        if let Some(parent) = containers[own].parent {
            containers[parent].children.retain(|c| *c != own);
            containers[own].parent = None;
        }
        if let Some(&last) = chain.last()
            && last != own
            && !is_ancestor(&containers, own, last)
        {
            link(&mut containers, last, own);
        }
    }
    // Step 2: the roots.
    let roots: Vec<usize> = (0..containers.len()).filter(|c| containers[*c].parent.is_none()).collect();
    // Step 4: prune empty containers.
    let mut pruned: Vec<usize> = Vec::new();
    for root in roots {
        pruned.extend(prune(&mut containers, root, true));
    }
    // Step 5: gather roots of the same base subject.
    let date_of = |containers: &Vec<Container>, c: usize| -> (i64, u32) { first_date(containers, messages, c) };
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    let mut roots: Vec<usize> = Vec::new();
    for root in pruned {
        let Some(subject_message) = subject_message(&containers, root) else {
            roots.push(root);
            continue;
        };
        let (subject, reply) = base_subject(&messages[subject_message].subject);
        if subject.is_empty() {
            roots.push(root);
            continue;
        }
        match by_subject.get(&subject).copied() {
            None => {
                by_subject.insert(subject, root);
                roots.push(root);
            }
            Some(existing) => {
                let existing_reply = subject_message_of(&containers, messages, existing).is_some_and(|(_, r)| r);
                if containers[existing].message.is_none() {
                    link(&mut containers, existing, root);
                } else if containers[root].message.is_none() {
                    link(&mut containers, root, existing);
                    roots.retain(|r| *r != existing);
                    roots.push(root);
                    by_subject.insert(subject, root);
                } else if !existing_reply && reply {
                    link(&mut containers, existing, root);
                } else if existing_reply && !reply {
                    link(&mut containers, root, existing);
                    roots.retain(|r| *r != existing);
                    roots.push(root);
                    by_subject.insert(subject, root);
                } else {
                    // Both replies or neither: a new empty parent holds both.
                    containers.push(Container::default());
                    let parent = containers.len() - 1;
                    link(&mut containers, parent, existing);
                    link(&mut containers, parent, root);
                    roots.retain(|r| *r != existing);
                    roots.push(parent);
                    by_subject.insert(subject, parent);
                }
            }
        }
    }
    // Step 6: sort siblings and roots by date.
    sort_children(&mut containers, messages);
    roots.sort_by_key(|r| date_of(&containers, *r));
    roots.iter().map(|root| to_thread(&containers, messages, *root)).collect()
}

fn link(containers: &mut [Container], parent: usize, child: usize) {
    containers[child].parent = Some(parent);
    containers[parent].children.push(child);
}

/// Whether `ancestor` is `node` or above it.
fn is_ancestor(containers: &[Container], ancestor: usize, node: usize) -> bool {
    let mut current = Some(node);
    let mut steps = 0;
    while let Some(c) = current {
        if c == ancestor {
            return true;
        }
        steps += 1;
        if steps > containers.len() {
            return true;
        }
        current = containers[c].parent;
    }
    false
}

/// Prunes below `c` (RFC 5256 §2.2 step 4); returns what stands in `c`'s place.
fn prune(containers: &mut Vec<Container>, c: usize, at_root: bool) -> Vec<usize> {
    let children = std::mem::take(&mut containers[c].children);
    let mut kept = Vec::new();
    for child in children {
        kept.extend(prune(containers, child, false));
    }
    for child in &kept {
        containers[*child].parent = Some(c);
    }
    if containers[c].message.is_some() {
        containers[c].children = kept;
        return vec![c];
    }
    match kept.len() {
        0 => Vec::new(),
        // Promote, unless that would put several children at the root.
        1 => {
            containers[kept[0]].parent = containers[c].parent;
            kept
        }
        _ if !at_root => {
            for child in &kept {
                containers[*child].parent = containers[c].parent;
            }
            kept
        }
        _ => {
            containers[c].children = kept;
            vec![c]
        }
    }
}

fn subject_message(containers: &[Container], c: usize) -> Option<usize> {
    containers[c].message.or_else(|| containers[c].children.first().and_then(|child| containers[*child].message))
}

fn subject_message_of(containers: &[Container], messages: &[Message], c: usize) -> Option<(usize, bool)> {
    let m = subject_message(containers, c)?;
    Some((m, base_subject(&messages[m].subject).1))
}

/// The date a container sorts by: its message's, else its first child's.
fn first_date(containers: &[Container], messages: &[Message], c: usize) -> (i64, u32) {
    match containers[c].message {
        Some(m) => (messages[m].date, messages[m].number),
        None => containers[c]
            .children
            .iter()
            .map(|child| first_date(containers, messages, *child))
            .min()
            .unwrap_or((i64::MAX, u32::MAX)),
    }
}

fn sort_children(containers: &mut [Container], messages: &[Message]) {
    for c in 0..containers.len() {
        let mut children = std::mem::take(&mut containers[c].children);
        children.sort_by_key(|child| first_date(containers, messages, *child));
        containers[c].children = children;
    }
}

/// The answer's form: a chain while each node has one child, then sub-threads.
fn to_thread(containers: &[Container], messages: &[Message], c: usize) -> Thread {
    let mut thread = Thread::default();
    let mut current = c;
    loop {
        if let Some(m) = containers[current].message {
            thread.messages.push(messages[m].number);
        }
        match containers[current].children.as_slice() {
            [only] if containers[current].message.is_some() => current = *only,
            children => {
                thread.children = children.iter().map(|child| to_thread(containers, messages, *child)).collect();
                return thread;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(number: u32, id: &str, references: &[&str], date: i64, subject: &str) -> Message {
        Message {
            number,
            message_id: Some(id.into()),
            references: references.iter().map(|r| r.to_string()).collect(),
            date,
            subject: subject.into(),
        }
    }

    /// The wire form (RFC 5256 §4), as the session's writer makes it.
    fn render(threads: &[Thread]) -> String {
        fn one(thread: &Thread, out: &mut String) {
            out.push('(');
            let mut current = thread;
            let mut first = true;
            loop {
                for message in &current.messages {
                    if !first {
                        out.push(' ');
                    }
                    first = false;
                    out.push_str(&message.to_string());
                }
                match current.children.as_slice() {
                    [] => break,
                    [only] => current = only,
                    children => {
                        if !first {
                            out.push(' ');
                        }
                        children.iter().for_each(|child| one(child, out));
                        break;
                    }
                }
            }
            out.push(')');
        }
        let mut out = String::new();
        threads.iter().for_each(|thread| one(thread, &mut out));
        out
    }

    #[test]
    fn references_build_the_tree() {
        let messages = [
            message(1, "a", &[], 10, "Budget"),
            message(2, "b", &["a"], 20, "Re: Budget"),
            message(3, "c", &["a", "b"], 30, "Re: Budget"),
            message(4, "d", &["a"], 25, "Re: Budget"),
            message(5, "e", &[], 5, "Fête du village"),
            // Its parent is missing: an empty container, pruned.
            message(6, "f", &["zzz"], 40, "Re: Travaux"),
        ];
        assert_eq!(render(&references(&messages)), "(5)(1 (2 3)(4))(6)");
    }

    #[test]
    fn ordered_subject_groups_by_base_subject() {
        let messages = [
            message(1, "a", &[], 10, "Budget"),
            message(2, "b", &[], 20, "RE: [conseil] Budget"),
            message(3, "c", &[], 5, "Fwd: Travaux"),
        ];
        assert_eq!(render(&ordered_subject(&messages)), "(3)(1 2)");
        assert_eq!(base_subject("Re: Fwd: [liste] Budget  2027 (fwd)"), ("budget 2027".to_string(), true));
    }
}

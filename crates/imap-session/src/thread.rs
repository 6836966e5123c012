//! THREAD (RFC 5256 §2.1–2.2): ORDEREDSUBJECT and REFERENCES as pure functions over the
//! messages' Message-ID, References, date and subject. No store, no IO: the server
//! gives the inputs, the fuzz target `thread` drives the same code.
//!
//! Hostile mailboxes are expected (anyone can send a message with 40,000 references):
//! nothing here recurses, every step is linear or `n log n` in the input except the
//! loop check of a link (a walk up the tree), which is counted against
//! [`Options::work_max`]; past it the builder stops with [`Error::TooMuchWork`]. Only the
//! last [`Options::references_max`] references of a message are considered (the nearest
//! ancestors: the last one is its parent).

use std::collections::HashMap;

use crate::write::{Thread, Threads};

/// One message to thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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

/// Bounds of one THREAD computation; `config` fills them from `imap.thread_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// References considered per message, the last ones.
    pub references_max: usize,
    /// Steps of loop checking allowed in one computation.
    pub work_max: u64,
}

/// Why a THREAD answer was not computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("threading these messages needs more work than allowed")]
    TooMuchWork,
}

/// The base subject of RFC 5256 §2.1: without `Re:`, `Fwd:` (and `Fw:`, `Tr:`, French
/// clients' `Réf:`), `[list]` tags and a trailing `(fwd)`, whitespace folded, lowercased;
/// and whether it was a reply or a forward. Linear in the subject's length: each step
/// shortens a borrowed slice, nothing is copied until the end.
pub fn base_subject(subject: &str) -> (String, bool) {
    let folded = subject.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let mut s = folded.as_str();
    let mut reply = false;
    loop {
        let before = s.len();
        while let Some(rest) = s.strip_suffix("(fwd)") {
            s = rest.trim_end();
            reply = true;
        }
        for prefix in ["re:", "fwd:", "fw:", "tr:", "réf:", "ref:"] {
            if let Some(rest) = s.strip_prefix(prefix) {
                s = rest.trim_start();
                reply = true;
            }
        }
        // A `[tag]` at the start, unless it is the whole subject.
        if s.starts_with('[')
            && let Some(end) = s.find(']')
            && end + 1 < s.len()
        {
            s = s[end + 1..].trim_start();
        }
        if let Some(inner) = s.strip_prefix("[fwd:").and_then(|rest| rest.strip_suffix(']')) {
            s = inner.trim();
            reply = true;
        }
        if s.len() == before {
            return (s.to_string(), reply);
        }
    }
}

/// ORDEREDSUBJECT: messages grouped by base subject, each group sorted by date; its
/// first message is the parent of all the others (RFC 5256 §2.1).
pub fn ordered_subject(messages: &[Message]) -> Threads {
    let mut groups: Vec<Vec<&Message>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for message in messages {
        let (subject, _) = base_subject(&message.subject);
        let slot = *index.entry(subject).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(message);
    }
    let mut firsts: Vec<(i64, u32, Vec<&Message>)> = groups
        .into_iter()
        .map(|mut members| {
            members.sort_by_key(|m| (m.date, m.number));
            (members[0].date, members[0].number, members)
        })
        .collect();
    firsts.sort_by_key(|(date, number, _)| (*date, *number));
    let mut threads = Threads::default();
    for (_, _, members) in firsts {
        let root = threads.push(Thread { message: Some(members[0].number), children: Vec::new() });
        for member in &members[1..] {
            let child = threads.push(Thread { message: Some(member.number), children: Vec::new() });
            threads.nodes[root].children.push(child as u32);
        }
        threads.roots.push(root as u32);
    }
    threads
}

const NONE: u32 = u32::MAX;

/// A container of RFC 5256 §2.2, its children as a doubly linked list so that a child
/// leaves its parent, and a pruned container's children join their grandparent, in O(1).
#[derive(Clone, Copy)]
struct Container {
    message: u32,
    parent: u32,
    first_child: u32,
    last_child: u32,
    previous: u32,
    next: u32,
}

impl Default for Container {
    fn default() -> Container {
        Container { message: NONE, parent: NONE, first_child: NONE, last_child: NONE, previous: NONE, next: NONE }
    }
}

struct Tree {
    containers: Vec<Container>,
    work: u64,
    work_max: u64,
}

impl Tree {
    fn add(&mut self) -> u32 {
        self.containers.push(Container::default());
        (self.containers.len() - 1) as u32
    }

    fn get(&self, c: u32) -> &Container {
        &self.containers[c as usize]
    }

    fn get_mut(&mut self, c: u32) -> &mut Container {
        &mut self.containers[c as usize]
    }

    /// Appends `child` (without a parent) to `parent`'s children.
    fn link(&mut self, parent: u32, child: u32) {
        debug_assert_eq!(self.get(child).parent, NONE);
        let last = self.get(parent).last_child;
        *self.get_mut(child) = Container { parent, previous: last, next: NONE, ..*self.get(child) };
        if last == NONE {
            self.get_mut(parent).first_child = child;
        } else {
            self.get_mut(last).next = child;
        }
        self.get_mut(parent).last_child = child;
    }

    /// Takes `child` out of its parent's children.
    fn unlink(&mut self, child: u32) {
        let Container { parent, previous, next, .. } = *self.get(child);
        if parent == NONE {
            return;
        }
        if previous == NONE {
            self.get_mut(parent).first_child = next;
        } else {
            self.get_mut(previous).next = next;
        }
        if next == NONE {
            self.get_mut(parent).last_child = previous;
        } else {
            self.get_mut(next).previous = previous;
        }
        let container = self.get_mut(child);
        container.parent = NONE;
        container.previous = NONE;
        container.next = NONE;
    }

    /// Whether `ancestor` is `node` or above it. A container without children is above
    /// nothing (the usual case, O(1)); otherwise the walk up is counted as work.
    fn is_ancestor(&mut self, ancestor: u32, node: u32) -> Result<bool, Error> {
        if ancestor == node {
            return Ok(true);
        }
        if self.get(ancestor).first_child == NONE {
            return Ok(false);
        }
        let mut current = self.get(node).parent;
        while current != NONE {
            self.work += 1;
            if self.work > self.work_max {
                return Err(Error::TooMuchWork);
            }
            if current == ancestor {
                return Ok(true);
            }
            current = self.get(current).parent;
        }
        Ok(false)
    }

    fn children(&self, c: u32) -> Vec<u32> {
        let mut children = Vec::new();
        let mut child = self.get(c).first_child;
        while child != NONE {
            children.push(child);
            child = self.get(child).next;
        }
        children
    }

    /// Every container under `roots`, children before their parent (post-order), without
    /// recursion.
    fn post_order(&self, roots: &[u32]) -> Vec<u32> {
        let mut order = Vec::with_capacity(self.containers.len());
        let mut stack: Vec<(u32, bool)> = roots.iter().rev().map(|root| (*root, false)).collect();
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                order.push(c);
                continue;
            }
            stack.push((c, true));
            let mut child = self.get(c).last_child;
            while child != NONE {
                stack.push((child, false));
                child = self.get(child).previous;
            }
        }
        order
    }
}

/// REFERENCES (RFC 5256 §2.2): parent/child links from References (or In-Reply-To), empty
/// containers for referenced messages that are not here, pruned as the RFC says, roots of
/// the same base subject gathered, siblings and roots by date.
pub fn references(messages: &[Message], options: Options) -> Result<Threads, Error> {
    let mut tree = Tree { containers: Vec::with_capacity(messages.len() * 2), work: 0, work_max: options.work_max };
    let mut by_id: HashMap<&str, u32> = HashMap::with_capacity(messages.len() * 2);
    // Step 1: a container per message and per referenced id, linked.
    for (index, message) in messages.iter().enumerate() {
        let own = match message.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                // A duplicate Message-ID: treated as having none.
                Some(&c) if tree.get(c).message != NONE => tree.add(),
                Some(&c) => c,
                None => {
                    let c = tree.add();
                    by_id.insert(id, c);
                    c
                }
            },
            None => tree.add(),
        };
        tree.get_mut(own).message = index as u32;
        let skip = message.references.len().saturating_sub(options.references_max);
        let mut previous: Option<u32> = None;
        for id in &message.references[skip..] {
            let c = *by_id.entry(id.as_str()).or_insert_with(|| tree.add());
            // RFC 5256 §2.2 1.A: link each reference to the one before it, unless it has a
            // parent already or the link would make a loop.
            if let Some(parent) = previous
                && parent != c
                && tree.get(c).parent == NONE
                && !tree.is_ancestor(c, parent)?
            {
                tree.link(parent, c);
            }
            previous = Some(c);
        }
        // 1.B: the message's parent is its last reference, whatever it had.
        tree.unlink(own);
        if let Some(last) = previous
            && !tree.is_ancestor(own, last)?
        {
            tree.link(last, own);
        }
    }
    // Step 2: the roots.
    let roots: Vec<u32> = (0..tree.containers.len() as u32).filter(|c| tree.get(*c).parent == NONE).collect();
    // Step 4: prune empty containers, children first.
    let mut root_level: Vec<u32> = Vec::with_capacity(roots.len());
    for c in tree.post_order(&roots) {
        let container = *tree.get(c);
        let at_root = container.parent == NONE;
        if container.message != NONE {
            if at_root {
                root_level.push(c);
            }
            continue;
        }
        let first = container.first_child;
        let only_child = first != NONE && first == container.last_child;
        match (at_root, first == NONE) {
            // 4.A: an empty container without children goes.
            (_, true) => tree.unlink(c),
            // 4.B: an empty root keeps several children under it; one is promoted.
            (true, false) if only_child => {
                tree.unlink(first);
                root_level.push(first);
            }
            (true, false) => root_level.push(c),
            // 4.B: below the root, its children take its place.
            (false, false) => splice_children(&mut tree, c),
        }
    }
    // Step 5: gather roots of the same base subject.
    let subjects: Vec<(String, bool)> = messages.iter().map(|m| base_subject(&m.subject)).collect();
    let subject_message = |tree: &Tree, c: u32| -> u32 {
        let container = tree.get(c);
        if container.message != NONE {
            container.message
        } else if container.first_child != NONE {
            tree.get(container.first_child).message
        } else {
            NONE
        }
    };
    let mut by_subject: HashMap<&str, u32> = HashMap::new();
    let mut gathered: Vec<u32> = Vec::with_capacity(root_level.len());
    let mut removed = vec![false; tree.containers.len()];
    for root in root_level {
        let m = subject_message(&tree, root);
        if m == NONE || subjects[m as usize].0.is_empty() {
            gathered.push(root);
            continue;
        }
        let (subject, reply) = (subjects[m as usize].0.as_str(), subjects[m as usize].1);
        let Some(&existing) = by_subject.get(subject) else {
            by_subject.insert(subject, root);
            gathered.push(root);
            continue;
        };
        let existing_message = subject_message(&tree, existing);
        let existing_reply = existing_message != NONE && subjects[existing_message as usize].1;
        let (parent, child) = if tree.get(existing).message == NONE {
            (existing, root)
        } else if tree.get(root).message == NONE || (existing_reply && !reply) {
            (root, existing)
        } else if !existing_reply && reply {
            (existing, root)
        } else {
            // Both replies or neither: a new empty parent holds both.
            let parent = tree.add();
            removed.push(false);
            tree.link(parent, existing);
            removed[existing as usize] = true;
            (parent, root)
        };
        if parent != existing {
            removed[existing as usize] = true;
            gathered.push(parent);
            by_subject.insert(subject, parent);
        }
        tree.link(parent, child);
    }
    let roots: Vec<u32> = gathered.into_iter().filter(|root| !removed[*root as usize]).collect();
    // Step 6: siblings and roots by date; an empty container by its earliest child.
    let order = tree.post_order(&roots);
    let mut keys: Vec<(i64, u32)> = vec![(i64::MAX, u32::MAX); tree.containers.len()];
    for &c in &order {
        let mut children = tree.children(c);
        children.sort_by_key(|child| keys[*child as usize]);
        relink(&mut tree, c, &children);
        let container = tree.get(c);
        keys[c as usize] = if container.message != NONE {
            let message = &messages[container.message as usize];
            (message.date, message.number)
        } else {
            children.first().map_or((i64::MAX, u32::MAX), |first| keys[*first as usize])
        };
    }
    let mut roots = roots;
    roots.sort_by_key(|root| keys[*root as usize]);
    Ok(answer(&tree, messages, &roots))
}

/// Puts `c`'s children in its place among its parent's children, and takes `c` out.
fn splice_children(tree: &mut Tree, c: u32) {
    let container = *tree.get(c);
    let parent = container.parent;
    let mut child = container.first_child;
    while child != NONE {
        let next = tree.get(child).next;
        tree.get_mut(child).parent = parent;
        child = next;
    }
    // The children's own links stay; only the ends are joined to c's neighbours.
    let (first, last) = (container.first_child, container.last_child);
    tree.get_mut(first).previous = container.previous;
    tree.get_mut(last).next = container.next;
    if container.previous == NONE {
        tree.get_mut(parent).first_child = first;
    } else {
        tree.get_mut(container.previous).next = first;
    }
    if container.next == NONE {
        tree.get_mut(parent).last_child = last;
    } else {
        tree.get_mut(container.next).previous = last;
    }
    *tree.get_mut(c) = Container::default();
}

/// Gives `c` exactly `children`, in this order.
fn relink(tree: &mut Tree, c: u32, children: &[u32]) {
    let mut previous = NONE;
    for &child in children {
        let container = tree.get_mut(child);
        container.parent = c;
        container.previous = previous;
        container.next = NONE;
        if previous != NONE {
            tree.get_mut(previous).next = child;
        }
        previous = child;
    }
    let container = tree.get_mut(c);
    container.first_child = children.first().copied().unwrap_or(NONE);
    container.last_child = children.last().copied().unwrap_or(NONE);
}

/// The answer's nodes, from the tree under `roots`: parents numbered before their
/// children (pre-order, without recursion), children in order.
fn answer(tree: &Tree, messages: &[Message], roots: &[u32]) -> Threads {
    let mut threads = Threads::default();
    let mut parent_node: Vec<u32> = vec![NONE; tree.containers.len()];
    let mut stack: Vec<u32> = roots.iter().rev().copied().collect();
    while let Some(c) = stack.pop() {
        let container = tree.get(c);
        let message = (container.message != NONE).then(|| messages[container.message as usize].number);
        let node = threads.push(Thread { message, children: Vec::new() }) as u32;
        match parent_node[c as usize] {
            NONE => threads.roots.push(node),
            parent => threads.nodes[parent as usize].children.push(node),
        }
        for child in tree.children(c).into_iter().rev() {
            parent_node[child as usize] = node;
            stack.push(child);
        }
    }
    threads
}

#[cfg(test)]
mod tests;

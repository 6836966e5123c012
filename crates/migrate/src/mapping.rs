//! Which Hameau mailbox a source folder goes to: its role (RFC 6154 SPECIAL-USE first,
//! then the usual names of French and English providers), Gmail's virtual folders, and
//! the name itself (decoded, the source's delimiter mapped to ours).

use hameau_mailbox::{DELIMITER, Role};

/// What a source folder is, for the copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FolderKind {
    /// A folder of its own (or of the hierarchy), copied under its name.
    Plain,
    /// A special-use folder, copied into the account's mailbox of that role.
    Role(Role),
    /// Every message of the account (Gmail's "All Mail", SPECIAL-USE `\All`): not copied
    /// as a folder; a message found there and in no other folder goes to the Archive
    /// role's mailbox.
    All,
    /// A view of messages that are in other folders (Gmail's "Important" and "Starred",
    /// SPECIAL-USE `\Important` and `\Flagged`): not copied. Starred messages keep their
    /// `\Flagged` flag in the folders they are in.
    View,
}

/// Names (lowercased, full path with `/`) of special folders at the usual providers.
/// SPECIAL-USE attributes win over this table; it is for servers that send none (old
/// Courier, Orange, Free) and for names in a `INBOX.` hierarchy (compared without it).
const NAMES: &[(&str, FolderKind)] = &[
    ("inbox", FolderKind::Role(Role::Inbox)),
    ("boîte de réception", FolderKind::Role(Role::Inbox)),
    ("sent", FolderKind::Role(Role::Sent)),
    ("sent items", FolderKind::Role(Role::Sent)),
    ("sent messages", FolderKind::Role(Role::Sent)),
    ("sent mail", FolderKind::Role(Role::Sent)),
    ("[gmail]/sent mail", FolderKind::Role(Role::Sent)),
    ("[google mail]/sent mail", FolderKind::Role(Role::Sent)),
    ("[gmail]/messages envoyés", FolderKind::Role(Role::Sent)),
    ("éléments envoyés", FolderKind::Role(Role::Sent)),
    ("elements envoyes", FolderKind::Role(Role::Sent)),
    ("messages envoyés", FolderKind::Role(Role::Sent)),
    ("messages envoyes", FolderKind::Role(Role::Sent)),
    ("envoyés", FolderKind::Role(Role::Sent)),
    ("envoyes", FolderKind::Role(Role::Sent)),
    ("outbox", FolderKind::Plain),
    ("trash", FolderKind::Role(Role::Trash)),
    ("deleted items", FolderKind::Role(Role::Trash)),
    ("deleted messages", FolderKind::Role(Role::Trash)),
    ("bin", FolderKind::Role(Role::Trash)),
    ("corbeille", FolderKind::Role(Role::Trash)),
    ("éléments supprimés", FolderKind::Role(Role::Trash)),
    ("elements supprimes", FolderKind::Role(Role::Trash)),
    ("[gmail]/trash", FolderKind::Role(Role::Trash)),
    ("[gmail]/bin", FolderKind::Role(Role::Trash)),
    ("[gmail]/corbeille", FolderKind::Role(Role::Trash)),
    ("[google mail]/bin", FolderKind::Role(Role::Trash)),
    ("[google mail]/trash", FolderKind::Role(Role::Trash)),
    ("drafts", FolderKind::Role(Role::Drafts)),
    ("draft", FolderKind::Role(Role::Drafts)),
    ("brouillons", FolderKind::Role(Role::Drafts)),
    ("[gmail]/drafts", FolderKind::Role(Role::Drafts)),
    ("[gmail]/brouillons", FolderKind::Role(Role::Drafts)),
    ("[google mail]/drafts", FolderKind::Role(Role::Drafts)),
    ("junk", FolderKind::Role(Role::Junk)),
    ("junk e-mail", FolderKind::Role(Role::Junk)),
    ("junk email", FolderKind::Role(Role::Junk)),
    ("spam", FolderKind::Role(Role::Junk)),
    ("bulk mail", FolderKind::Role(Role::Junk)),
    ("courrier indésirable", FolderKind::Role(Role::Junk)),
    ("courrier indesirable", FolderKind::Role(Role::Junk)),
    ("indésirables", FolderKind::Role(Role::Junk)),
    ("indesirables", FolderKind::Role(Role::Junk)),
    ("pourriels", FolderKind::Role(Role::Junk)),
    ("[gmail]/spam", FolderKind::Role(Role::Junk)),
    ("[google mail]/spam", FolderKind::Role(Role::Junk)),
    ("archive", FolderKind::Role(Role::Archive)),
    ("archives", FolderKind::Role(Role::Archive)),
    ("[gmail]/all mail", FolderKind::All),
    ("[google mail]/all mail", FolderKind::All),
    ("[gmail]/tous les messages", FolderKind::All),
    ("[gmail]/important", FolderKind::View),
    ("[google mail]/important", FolderKind::View),
    ("[gmail]/starred", FolderKind::View),
    ("[google mail]/starred", FolderKind::View),
    ("[gmail]/suivis", FolderKind::View),
];

/// The kind of a source folder from its SPECIAL-USE attributes (as sent, e.g. `\Sent`,
/// case-insensitive) and its decoded full name with `/` as the delimiter.
pub fn folder_kind(name: &str, attributes: &[String]) -> FolderKind {
    for attribute in attributes {
        let kind = match attribute.to_ascii_lowercase().as_str() {
            "\\sent" => FolderKind::Role(Role::Sent),
            "\\trash" => FolderKind::Role(Role::Trash),
            "\\drafts" => FolderKind::Role(Role::Drafts),
            "\\junk" => FolderKind::Role(Role::Junk),
            "\\archive" => FolderKind::Role(Role::Archive),
            "\\all" => FolderKind::All,
            "\\flagged" | "\\important" => FolderKind::View,
            _ => continue,
        };
        return kind;
    }
    let lower = name.to_lowercase();
    if let Some(kind) = by_name(&lower) {
        return kind;
    }
    // `INBOX.Sent` (Courier, Cyrus, Orange): the name under INBOX, not INBOX/Sent itself.
    match lower.strip_prefix("inbox/") {
        Some(rest) => by_name(rest).filter(|kind| *kind != FolderKind::Role(Role::Inbox)).unwrap_or(FolderKind::Plain),
        None => FolderKind::Plain,
    }
}

fn by_name(lower: &str) -> Option<FolderKind> {
    NAMES.iter().find(|(name, _)| *name == lower).map(|(_, kind)| *kind)
}

/// A source folder's full name decoded: modified UTF-7 (RFC 3501 §5.1.3) when it is valid,
/// else the name as sent (a server speaking UTF-8); its segments joined with `/`. A
/// segment holding our delimiter gets `-` instead; a character Hameau refuses in names
/// (controls, `*`, `%`) becomes `_`; an empty or dots-only segment becomes `_`.
pub fn decode_name(raw: &str, delimiter: Option<&str>) -> String {
    let decoded = hameau_imap_session::mutf7_decode(raw.as_bytes()).unwrap_or_else(|| raw.to_string());
    let segments: Vec<&str> = match delimiter {
        Some(delimiter) if !delimiter.is_empty() => decoded.split(delimiter).collect(),
        _ => vec![decoded.as_str()],
    };
    let mut out = String::with_capacity(decoded.len());
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            out.push(DELIMITER);
        }
        let clean: String = segment
            .chars()
            .map(|c| match c {
                DELIMITER => '-',
                c if c.is_control() || c == '*' || c == '%' => '_',
                c => c,
            })
            .collect();
        if clean.is_empty() || clean.chars().all(|c| c == '.') {
            out.push('_');
        } else {
            out.push_str(&clean);
        }
    }
    // RFC 9051 §5.1: INBOX is case-insensitive; Hameau spells it INBOX.
    match out.split_once(DELIMITER) {
        Some((first, rest)) if first.eq_ignore_ascii_case("inbox") => format!("INBOX{DELIMITER}{rest}"),
        None if out.eq_ignore_ascii_case("inbox") => "INBOX".into(),
        _ => out,
    }
}

/// The target name of a folder, given the folders that went to a role mailbox (their
/// source name and the role mailbox's name): a folder under one of them goes under the
/// role mailbox (`Sent Items/2019` under `Envoyés/2019`), the deepest such parent first.
pub fn target_name(name: &str, role_folders: &[(String, String)]) -> String {
    let mut best: Option<&(String, String)> = None;
    for pair in role_folders {
        let (source, _) = pair;
        let under = name.len() > source.len()
            && name.starts_with(source.as_str())
            && name[source.len()..].starts_with(DELIMITER);
        if under && best.is_none_or(|(best_source, _)| best_source.len() < source.len()) {
            best = Some(pair);
        }
    }
    match best {
        Some((source, target)) => format!("{target}{}", &name[source.len()..]),
        None => name.to_string(),
    }
}

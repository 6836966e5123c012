//! The Maildir reader: one file per message in `cur/` and `new/`, the flags in the file
//! name after `:2,` (<https://cr.yp.to/proto/maildir.html>), folders as Maildir++
//! directories `.Folder.Sub` beside the inbox's `cur/`, with names in modified UTF-7
//! (Dovecot), and Dovecot's `dovecot-keywords` file giving a keyword to each of the
//! letters `a` to `z` of a file name.
//!
//! The INTERNALDATE is the file's modification time, as Dovecot and Courier take it, or
//! failing that the delivery time at the start of the file name. (Dovecot's `,S=` and
//! `,W=` fields are the message's size and its size with CRLF line ends, not dates:
//! they are parsed into [`FileName`], not checked.) Messages come in the folder's order:
//! Dovecot's UIDs from `dovecot-uidlist` where it has them (given as
//! [`crate::SourceMessage::uid`] under the list's UIDVALIDITY), then by delivery time.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::tree::{entries_max, sorted_entries};
use crate::{Error, Folder, Limits, PendingFolder, Skip, SkipReason, SourceMessage, names, push_unique};

/// What a Maildir file name says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileName<'a> {
    /// The unique part, before any `,` field and the info.
    pub unique: &'a str,
    /// The delivery time at the start of the unique part (`1700000000.M…`).
    pub time: Option<u64>,
    /// Dovecot's `,S=`: the file's size.
    pub size: Option<u64>,
    /// Dovecot's `,W=`: the size with CRLF line ends.
    pub virtual_size: Option<u64>,
    /// The IMAP system flags of the info (`:2,DFRST`), in [`crate::SYSTEM_FLAGS`] order.
    pub flags: Vec<&'static str>,
    /// `P` (passed: forwarded, IMAP `$Forwarded`).
    pub passed: bool,
    /// Dovecot's keyword letters `a`–`z`, as indexes 0–25 into `dovecot-keywords`.
    pub keyword_indexes: Vec<u8>,
}

/// Parses a Maildir file name; anything not understood is ignored.
pub fn parse_file_name(name: &str) -> FileName<'_> {
    // The info starts at the last ":2," (";2," where ':' cannot be in a file name).
    let (base, info) = match name.rfind(":2,").or_else(|| name.rfind(";2,")) {
        Some(at) => (&name[..at], Some(&name[at + 3..])),
        None => (name, None),
    };
    let mut fields = base.split(',');
    let unique = fields.next().unwrap_or_default();
    let mut parsed = FileName { unique, ..FileName::default() };
    let digits = unique.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 12 {
        parsed.time = unique[..digits].parse().ok();
    }
    for field in fields {
        if let Some(value) = field.strip_prefix("S=") {
            parsed.size = value.parse().ok();
        } else if let Some(value) = field.strip_prefix("W=") {
            parsed.virtual_size = value.parse().ok();
        }
    }
    let mut flags = BTreeSet::new();
    for letter in info.unwrap_or_default().bytes() {
        match letter {
            b'S' => flags.insert(0),
            b'R' => flags.insert(1),
            b'F' => flags.insert(2),
            b'T' => flags.insert(3),
            b'D' => flags.insert(4),
            b'P' => {
                parsed.passed = true;
                false
            }
            b'a'..=b'z' => {
                let index = letter - b'a';
                if !parsed.keyword_indexes.contains(&index) {
                    parsed.keyword_indexes.push(index);
                }
                false
            }
            _ => false,
        };
    }
    parsed.flags = flags.into_iter().map(|index| crate::SYSTEM_FLAGS[index]).collect();
    parsed
}

/// Dovecot's `dovecot-keywords`: lines `INDEX NAME`; index 0 is the letter `a`.
pub fn parse_keywords_file(text: &str) -> [Option<String>; 26] {
    let mut table: [Option<String>; 26] = Default::default();
    for line in text.lines() {
        let Some((index, name)) = line.split_once(' ') else { continue };
        if let Ok(index) = index.parse::<usize>()
            && index < 26
            && crate::is_keyword(name)
        {
            table[index] = Some(name.to_string());
        }
    }
    table
}

/// `dovecot-keywords` is a few hundred bytes; a larger one is not read past 64 KiB.
const KEYWORDS_FILE_BYTES_MAX: u64 = 64 * 1024;

/// The folders of a Maildir: the inbox (the root's `cur/` and `new/`), and each Maildir++
/// folder `.A.B` (a directory with `cur/` or `new/`). Maildir++ is flat: one listing.
pub(crate) fn folders(root: &Path, limits: &Limits) -> Result<Vec<Result<PendingFolder, Skip>>, Error> {
    let (entries, complete) = sorted_entries(root, entries_max(limits)).map_err(|e| Error::io(root, e))?;
    let mut found: Vec<PendingFolder> = Vec::new();
    let mut skips: Vec<Skip> = Vec::new();
    if !complete {
        let reason = SkipReason::TooManyFolders { max: limits.folders_max };
        skips.push(Skip { location: root.display().to_string(), reason });
    }
    let mut seen: BTreeSet<Vec<String>> = BTreeSet::new();
    if is_maildir(root) {
        seen.insert(vec!["INBOX".into()]);
        found.push(PendingFolder::Maildir {
            path: vec!["INBOX".into()],
            dir: root.to_path_buf(),
            limits: limits.clone(),
        });
    }
    for (name, is_dir, os_name) in &entries {
        let Some(folder) = name.strip_prefix('.') else { continue };
        let dir = root.join(os_name);
        if !is_dir || folder.is_empty() || folder == "." || !is_maildir(&dir) {
            continue;
        }
        let location = || dir.display().to_string();
        let path: Vec<String> = folder.split('.').map(names::maildir_decode).collect();
        if path.iter().any(String::is_empty) {
            skips.push(Skip { location: location(), reason: SkipReason::BadName(folder.to_string()) });
            continue;
        }
        if path.len() as u64 > limits.depth_max {
            skips.push(Skip { location: location(), reason: SkipReason::TooDeep { max: limits.depth_max } });
            continue;
        }
        if found.len() as u64 >= limits.folders_max {
            skips.push(Skip { location: location(), reason: SkipReason::TooManyFolders { max: limits.folders_max } });
            break;
        }
        seen.insert(path.clone());
        found.push(PendingFolder::Maildir { path, dir, limits: limits.clone() });
    }
    if found.is_empty() && skips.is_empty() {
        return Err(Error::NotMaildir(root.to_path_buf()));
    }
    // `.A.B` without `.A`: A exists as a parent that holds nothing (Dovecot's \Noselect).
    let mut parents = Vec::new();
    for path in &seen {
        for len in 1..path.len() {
            let parent = path[..len].to_vec();
            if !seen.contains(&parent) && !parents.contains(&parent) {
                parents.push(parent);
            }
        }
    }
    for path in parents {
        found.push(PendingFolder::Empty { path, dir: root.to_path_buf() });
    }
    found.sort_by(|a, b| crate::tree::pending_path(a).cmp(crate::tree::pending_path(b)));
    Ok(found.into_iter().map(Ok).chain(skips.into_iter().map(Err)).collect())
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

/// Opens one folder: lists its files (at most `messages_max`) and reads its keywords.
pub(crate) fn open_folder(path: Vec<String>, dir: PathBuf, limits: Limits) -> Result<Folder, Skip> {
    let (uid_validity, uids) = read_uid_list(&dir, &limits);
    let mut files: Vec<((u64, u64), String, PathBuf)> = Vec::new();
    let mut over = false;
    for sub in ["cur", "new"] {
        let sub_dir = dir.join(sub);
        let listing = match std::fs::read_dir(&sub_dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Skip { location: sub_dir.display().to_string(), reason: SkipReason::Io(e.to_string()) });
            }
        };
        for entry in listing {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if files.len() as u64 >= limits.messages_max {
                over = true;
                break;
            }
            let parsed = parse_file_name(&name);
            let uid = uids.get(parsed.unique).map_or(u64::MAX, |uid| *uid as u64);
            files.push(((uid, parsed.time.unwrap_or(u64::MAX)), name, entry.path()));
        }
    }
    // The mailbox's order: Dovecot's UIDs, then (files it had not seen) the time at the
    // start of the names, then the names.
    files.sort();
    let unlisted = match uid_validity {
        Some(_) => files.iter().filter(|((uid, _), _, _)| *uid == u64::MAX).count() as u64,
        None => 0,
    };
    let keywords = read_keywords(&dir);
    let messages = MaildirMessages { files: files.into_iter(), keywords, limits, over, dir: dir.clone() };
    let special_use = names::special_use(&path);
    Ok(Folder { special_use, path, source: dir, uid_validity, unlisted, messages: Box::new(messages) })
}

/// Dovecot's `dovecot-uidlist`: a header line, then `UID [fields] :NAME` per message. Read
/// up to a bound of 256 bytes a message (names are about 60).
fn read_uid_list(dir: &Path, limits: &Limits) -> (Option<u32>, std::collections::HashMap<String, u32>) {
    let mut text = String::new();
    if let Ok(file) = File::open(dir.join("dovecot-uidlist")) {
        let _ = file.take(limits.messages_max.saturating_mul(256)).read_to_string(&mut text);
    }
    parse_uid_list(&text)
}

/// The UIDVALIDITY of `dovecot-uidlist` (its header's `V` field), and the UIDs of its
/// lines by the unique part of the file names.
pub fn parse_uid_list(text: &str) -> (Option<u32>, std::collections::HashMap<String, u32>) {
    let validity = text
        .lines()
        .next()
        .and_then(|header| header.split(' ').find_map(|field| field.strip_prefix('V')))
        .and_then(|value| value.parse().ok());
    let mut uids = std::collections::HashMap::new();
    for line in text.lines().skip(1) {
        let Some((fields, name)) = line.split_once(" :") else { continue };
        let Some(Ok(uid)) = fields.split(' ').next().map(str::parse::<u32>) else { continue };
        uids.insert(parse_file_name(name).unique.to_string(), uid);
    }
    (validity, uids)
}

fn read_keywords(dir: &Path) -> [Option<String>; 26] {
    let mut text = String::new();
    match File::open(dir.join("dovecot-keywords")) {
        Ok(file) => {
            // A file that is not UTF-8 gives no keywords rather than failing the folder.
            let _ = file.take(KEYWORDS_FILE_BYTES_MAX).read_to_string(&mut text);
        }
        Err(_) => return Default::default(),
    }
    parse_keywords_file(&text)
}

/// The messages of one Maildir folder, read one file at a time.
struct MaildirMessages {
    files: std::vec::IntoIter<((u64, u64), String, PathBuf)>,
    keywords: [Option<String>; 26],
    limits: Limits,
    /// More files than `messages_max`: one skip is given after the last.
    over: bool,
    dir: PathBuf,
}

impl Iterator for MaildirMessages {
    type Item = Result<SourceMessage, Skip>;

    fn next(&mut self) -> Option<Self::Item> {
        let Some(((uid, _), name, file)) = self.files.next() else {
            if std::mem::take(&mut self.over) {
                let reason = SkipReason::TooManyMessages { max: self.limits.messages_max };
                return Some(Err(Skip { location: self.dir.display().to_string(), reason }));
            }
            return None;
        };
        let skip = |reason| Skip { location: file.display().to_string(), reason };
        let mut message = read_message(&file, &name, &self.keywords, &self.limits).map_err(skip);
        if let Ok(message) = &mut message {
            message.uid = u32::try_from(uid).ok();
        }
        Some(message)
    }
}

fn read_message(
    file: &Path,
    name: &str,
    keywords: &[Option<String>; 26],
    limits: &Limits,
) -> Result<SourceMessage, SkipReason> {
    let io = |e: std::io::Error| SkipReason::Io(e.to_string());
    let handle = File::open(file).map_err(io)?;
    let metadata = handle.metadata().map_err(io)?;
    if metadata.len() > limits.message_bytes_max {
        return Err(SkipReason::TooLarge { bytes: metadata.len(), max: limits.message_bytes_max });
    }
    let mut raw = Vec::with_capacity(metadata.len() as usize);
    handle.take(limits.message_bytes_max + 1).read_to_end(&mut raw).map_err(io)?;
    if raw.len() as u64 > limits.message_bytes_max {
        return Err(SkipReason::TooLarge { bytes: raw.len() as u64, max: limits.message_bytes_max });
    }
    let parsed = parse_file_name(name);
    let mut message = SourceMessage { raw: crlf(raw), ..SourceMessage::default() };
    message.flags = parsed.flags.iter().map(|flag| flag.to_string()).collect();
    for index in parsed.keyword_indexes {
        if let Some(keyword) = &keywords[index as usize] {
            push_unique(&mut message.keywords, keyword);
        }
    }
    // Courier's and mutt's "passed"; Dovecot keeps `$Forwarded` as a keyword letter.
    if parsed.passed {
        push_unique(&mut message.keywords, "$Forwarded");
    }
    let modified = metadata.modified().ok().and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok());
    message.internal_date = modified.map(|since| since.as_secs()).or(parsed.time);
    Ok(message)
}

/// The bytes with every lone LF made CRLF (Dovecot and Courier write LF).
pub(crate) fn crlf(raw: Vec<u8>) -> Vec<u8> {
    let n_lone = raw.iter().enumerate().filter(|(at, b)| **b == b'\n' && (*at == 0 || raw[at - 1] != b'\r')).count();
    if n_lone == 0 {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + n_lone);
    for (at, b) in raw.iter().enumerate() {
        if *b == b'\n' && (at == 0 || raw[at - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(*b);
    }
    out
}

//! Thunderbird's local folders: each folder an mbox file `Name`, its subfolders in the
//! directory `Name.sbd/`, with an index `Name.msf` beside it (ignored: Thunderbird
//! rebuilds it). Other files (`msgFilterRules.dat`, `popstate.dat`, `filterlog.html`…)
//! are not mboxes and are left alone: a file is a folder if it is empty or starts with
//! `From `. The walk keeps its own stack: no recursion follows the directory depth.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::mbox::{MboxReader, Quoting};
use crate::{Error, Folder, Limits, PendingFolder, Skip, SkipReason, names};

/// The folders of an mbox file or of a directory of them.
pub(crate) fn mbox_folders(
    root: &Path,
    quoting: Quoting,
    limits: &Limits,
) -> Result<Vec<Result<PendingFolder, Skip>>, Error> {
    let metadata = std::fs::metadata(root).map_err(|e| Error::io(root, e))?;
    if !metadata.is_dir() {
        let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "INBOX".into());
        let path = vec![top_level_name(names::mbox_decode(&name))];
        return Ok(vec![Ok(PendingFolder::Mbox { path, file: root.to_path_buf(), quoting, limits: limits.clone() })]);
    }
    let mut found: Vec<PendingFolder> = Vec::new();
    let mut skips: Vec<Skip> = Vec::new();
    let mut stack: Vec<(PathBuf, Vec<String>)> = vec![(root.to_path_buf(), Vec::new())];
    'walk: while let Some((dir, prefix)) = stack.pop() {
        let entries = match sorted_entries(&dir, entries_max(limits)) {
            Ok((entries, complete)) => {
                if !complete {
                    let reason = SkipReason::TooManyFolders { max: limits.folders_max };
                    skips.push(Skip { location: dir.display().to_string(), reason });
                }
                entries
            }
            Err(e) => {
                skips.push(Skip { location: dir.display().to_string(), reason: SkipReason::Io(e.to_string()) });
                continue;
            }
        };
        // The mbox files of this directory, to find a subfolder directory's own file at once.
        let files: std::collections::HashSet<&str> =
            entries.iter().filter(|(_, is_dir, _)| !is_dir).map(|(name, _, _)| name.as_str()).collect();
        for (name, is_dir, os_name) in &entries {
            if name.starts_with('.') || name.ends_with(".msf") {
                continue;
            }
            let child_path = |stem: &str| {
                let mut path = prefix.clone();
                let decoded = names::mbox_decode(stem);
                path.push(if prefix.is_empty() { top_level_name(decoded) } else { decoded });
                path
            };
            let pending = if *is_dir {
                let Some(stem) = name.strip_suffix(".sbd") else { continue };
                let path = child_path(stem);
                if path.len() as u64 > limits.depth_max {
                    let location = dir.join(os_name).display().to_string();
                    skips.push(Skip { location, reason: SkipReason::TooDeep { max: limits.depth_max } });
                    continue;
                }
                stack.push((dir.join(os_name), path.clone()));
                // A subfolder directory without its mbox file: the parent holds nothing.
                if files.contains(stem) {
                    continue;
                }
                PendingFolder::Empty { path, dir: dir.join(os_name) }
            } else {
                let file = dir.join(os_name);
                if !looks_like_mbox(&file) {
                    continue;
                }
                PendingFolder::Mbox { path: child_path(name), file, quoting, limits: limits.clone() }
            };
            if found.len() as u64 >= limits.folders_max {
                let reason = SkipReason::TooManyFolders { max: limits.folders_max };
                skips.push(Skip { location: dir.display().to_string(), reason });
                break 'walk;
            }
            found.push(pending);
        }
    }
    found.sort_by(|a, b| pending_path(a).cmp(pending_path(b)));
    Ok(found.into_iter().map(Ok).chain(skips.into_iter().map(Err)).collect())
}

pub(crate) fn pending_path(pending: &PendingFolder) -> &[String] {
    match pending {
        PendingFolder::Mbox { path, .. } | PendingFolder::Empty { path, .. } | PendingFolder::Maildir { path, .. } => {
            path
        }
    }
}

/// Thunderbird's `Inbox` is the inbox.
fn top_level_name(name: String) -> String {
    if name.eq_ignore_ascii_case("inbox") { "INBOX".to_string() } else { name }
}

/// Most names read from one directory: a folder is a few names (`Name`, `Name.msf`,
/// `Name.sbd`), with room for the other files of a profile.
pub(crate) fn entries_max(limits: &Limits) -> usize {
    (limits.folders_max as usize).saturating_mul(4).saturating_add(64)
}

/// A directory's entry: its name (made UTF-8: a profile from Windows may hold names in
/// another encoding, read all the same), whether it is a directory, its name as it is.
pub(crate) type Entry = (String, bool, std::ffi::OsString);

/// The names in a directory (at most `max`), sorted, with whether each is a directory;
/// and whether that is all of them.
pub(crate) fn sorted_entries(dir: &Path, max: usize) -> std::io::Result<(Vec<Entry>, bool)> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if entries.len() >= max {
            entries.sort();
            return Ok((entries, false));
        }
        let entry = entry?;
        let os_name = entry.file_name();
        // Follows symbolic links: a profile may link folders from elsewhere.
        let is_dir = std::fs::metadata(entry.path()).map(|m| m.is_dir()).unwrap_or(false);
        entries.push((os_name.to_string_lossy().into_owned(), is_dir, os_name));
    }
    entries.sort();
    Ok((entries, true))
}

/// An mbox is empty or starts with `From `.
fn looks_like_mbox(file: &Path) -> bool {
    let mut start = [0u8; 5];
    let Ok(mut handle) = File::open(file) else { return false };
    let mut n_read = 0;
    while n_read < start.len() {
        match handle.read(&mut start[n_read..]) {
            Ok(0) => break,
            Ok(n) => n_read += n,
            Err(_) => return false,
        }
    }
    n_read == 0 || (n_read == 5 && &start == b"From ")
}

/// Opens one mbox folder.
pub(crate) fn open_mbox(path: Vec<String>, file: PathBuf, quoting: Quoting, limits: Limits) -> Result<Folder, Skip> {
    let handle = File::open(&file)
        .map_err(|e| Skip { location: file.display().to_string(), reason: SkipReason::Io(e.to_string()) })?;
    let reader = MboxReader::new(handle, quoting, limits, file.display().to_string());
    let special_use = names::special_use(&path);
    Ok(Folder { special_use, path, source: file, uid_validity: None, unlisted: 0, messages: Box::new(reader) })
}

//! The writers of an export: Maildir++ (the bytes exactly as given, flags in the file
//! name, keywords in `dovecot-keywords`, the INTERNALDATE as the file's modification
//! time, the UIDs in `dovecot-uidlist` when given), and mbox in Thunderbird's layout (`Name` files, `Name.sbd/` directories) with
//! mboxrd quoting and the flags in `Status:`, `X-Status:` and `X-Keywords:` headers —
//! headers that the mbox format needs and that change the bytes, which the readers of
//! this crate (and Dovecot) take out again.
//!
//! Directories are made mode 0700 and files 0600: an export is people's mail, readable by
//! whoever ran it (`chown -R` it to the person who receives it).
//!
//! Neither writer reads the clock: a message without a date gets the epoch in its name
//! and the time of writing as its file time.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::{Error, SourceMessage, date, mbox::header_fields, names};

/// What a folder's writer wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub messages: u64,
    pub bytes: u64,
    /// Keywords that did not fit: a Maildir folder has 26 keyword letters (`a`–`z`).
    pub keywords_dropped: u64,
}

/// Creates a directory and its parents, readable by their owner only (mode 0700): an
/// export is people's mail.
fn private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path)
}

/// Creates (or empties) a file readable by its owner only (mode 0600).
fn private_file(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Writes a Maildir++ tree.
#[derive(Debug)]
pub struct MaildirWriter {
    root: PathBuf,
    sequence: u64,
    pid: u32,
}

impl MaildirWriter {
    /// Creates the root (the inbox's `cur/`, `new/`, `tmp/`).
    pub fn create(root: &Path) -> Result<MaildirWriter, Error> {
        make_maildir(root)?;
        Ok(MaildirWriter { root: root.to_path_buf(), sequence: 0, pid: std::process::id() })
    }

    /// The directory of a folder: the root for `["INBOX"]`, `.A.B` for `["A", "B"]`.
    pub fn folder_dir(&self, path: &[String]) -> PathBuf {
        if path.len() == 1 && path[0] == "INBOX" {
            return self.root.clone();
        }
        let encoded: Vec<String> = path.iter().map(|name| names::maildir_encode(name)).collect();
        self.root.join(format!(".{}", encoded.join(".")))
    }

    /// Starts a folder (created empty if it has no message).
    pub fn folder(&mut self, path: &[String]) -> Result<MaildirFolder<'_>, Error> {
        let dir = self.folder_dir(path);
        make_maildir(&dir)?;
        if dir != self.root {
            // Maildir++: a folder holds this empty marker file.
            let marker = dir.join("maildirfolder");
            private_file(&marker).map_err(|e| Error::io(&marker, e))?;
        }
        Ok(MaildirFolder { writer: self, dir, keywords: Vec::new(), written: Written::default(), uids: None })
    }
}

fn make_maildir(dir: &Path) -> Result<(), Error> {
    for sub in ["cur", "new", "tmp"] {
        let path = dir.join(sub);
        private_dir(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// One Maildir folder being written.
#[derive(Debug)]
pub struct MaildirFolder<'a> {
    writer: &'a mut MaildirWriter,
    dir: PathBuf,
    /// The keywords by letter: index 0 is `a`.
    keywords: Vec<String>,
    written: Written,
    /// Dovecot's `dovecot-uidlist`, when the messages come with UIDs: the UIDVALIDITY,
    /// the next UID, and each UID with its file's base name.
    uids: Option<UidList>,
}

#[derive(Debug)]
struct UidList {
    validity: u32,
    next: u32,
    entries: Vec<(u32, String)>,
}

/// Letters of a Maildir info: a–z, 26 keywords.
const KEYWORD_LETTERS_MAX: usize = 26;

impl MaildirFolder<'_> {
    /// Keeps the folder's UIDs (RFC 9051 §2.3.1.1): with this, and every message appended
    /// with its [`SourceMessage::uid`], [`MaildirFolder::finish`] writes Dovecot's
    /// `dovecot-uidlist`, so that Dovecot serves the same UIDVALIDITY and UIDs, in the
    /// same order (without it, Dovecot numbers the files in the order of their dates).
    pub fn keep_uids(&mut self, uid_validity: u32, uid_next: u32) {
        self.uids = Some(UidList { validity: uid_validity, next: uid_next, entries: Vec::new() });
    }

    /// Writes one message: `tmp/` first, then renamed into `cur/` (the Maildir rule: a
    /// reader never sees half a file).
    pub fn append(&mut self, message: &SourceMessage) -> Result<(), Error> {
        let base = self.append_file(message)?;
        match (message.uid, &mut self.uids) {
            (Some(uid), Some(list)) => {
                list.next = list.next.max(uid.saturating_add(1));
                list.entries.push((uid, base));
            }
            // A message without a UID: the list would be wrong, so none is written.
            (None, _) => self.uids = None,
            (Some(_), None) => {}
        }
        Ok(())
    }

    /// Writes one message; its base name (the name without the info).
    fn append_file(&mut self, message: &SourceMessage) -> Result<String, Error> {
        let info = self.info(message);
        self.writer.sequence += 1;
        let time = message.internal_date.unwrap_or(0);
        let base = format!("{time}.M{}P{}.hameau,S={}", self.writer.sequence, self.writer.pid, message.raw.len());
        let name = format!("{base}:2,{info}");
        let tmp = self.dir.join("tmp").join(&name);
        let mut file = private_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(&message.raw).map_err(|e| Error::io(&tmp, e))?;
        if let Some(seconds) = message.internal_date {
            let modified = UNIX_EPOCH + Duration::from_secs(seconds);
            file.set_times(fs::FileTimes::new().set_modified(modified).set_accessed(modified))
                .map_err(|e| Error::io(&tmp, e))?;
        }
        drop(file);
        let cur = self.dir.join("cur").join(&name);
        fs::rename(&tmp, &cur).map_err(|e| Error::io(&cur, e))?;
        self.written.messages += 1;
        self.written.bytes += message.raw.len() as u64;
        Ok(base)
    }

    /// The info letters: flags in ASCII order (the Maildir rule), then keyword letters.
    fn info(&mut self, message: &SourceMessage) -> String {
        let mut letters: Vec<char> = Vec::new();
        for (flag, letter) in
            [("\\Draft", 'D'), ("\\Flagged", 'F'), ("\\Answered", 'R'), ("\\Seen", 'S'), ("\\Deleted", 'T')]
        {
            if message.flags.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
                letters.push(letter);
            }
        }
        // `$Forwarded` too is a keyword letter, not `P`: Dovecot reads `P` as nothing.
        for keyword in &message.keywords {
            let index = match self.keywords.iter().position(|known| known == keyword) {
                Some(index) => index,
                None if self.keywords.len() < KEYWORD_LETTERS_MAX => {
                    self.keywords.push(keyword.clone());
                    self.keywords.len() - 1
                }
                None => {
                    self.written.keywords_dropped += 1;
                    continue;
                }
            };
            letters.push((b'a' + index as u8) as char);
        }
        letters.sort_unstable();
        letters.dedup();
        letters.into_iter().collect()
    }

    /// Writes the folder's `dovecot-keywords`; what was written.
    pub fn finish(self) -> Result<Written, Error> {
        if !self.keywords.is_empty() {
            let text: String =
                self.keywords.iter().enumerate().map(|(index, keyword)| format!("{index} {keyword}\n")).collect();
            let tmp = self.dir.join("tmp").join("dovecot-keywords");
            private_file(&tmp).and_then(|mut file| file.write_all(text.as_bytes())).map_err(|e| Error::io(&tmp, e))?;
            let path = self.dir.join("dovecot-keywords");
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        if let Some(list) = &self.uids {
            // Version 3 of the format: `3 V<uidvalidity> N<next uid>`, then `<uid> :<name>`.
            let mut text = format!("3 V{} N{}\n", list.validity, list.next);
            for (uid, base) in &list.entries {
                text.push_str(&format!("{uid} :{base}\n"));
            }
            let tmp = self.dir.join("tmp").join("dovecot-uidlist");
            private_file(&tmp).and_then(|mut file| file.write_all(text.as_bytes())).map_err(|e| Error::io(&tmp, e))?;
            let path = self.dir.join("dovecot-uidlist");
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(self.written)
    }
}

/// Writes mbox files in Thunderbird's layout.
#[derive(Debug)]
pub struct MboxWriter {
    root: PathBuf,
}

impl MboxWriter {
    pub fn create(root: &Path) -> Result<MboxWriter, Error> {
        private_dir(root).map_err(|e| Error::io(root, e))?;
        Ok(MboxWriter { root: root.to_path_buf() })
    }

    /// The file of a folder: `A.sbd/B` for `["A", "B"]`.
    pub fn folder_file(&self, path: &[String]) -> PathBuf {
        let mut file = self.root.clone();
        for (index, name) in path.iter().enumerate() {
            let encoded = names::mbox_encode(name);
            file.push(if index + 1 == path.len() { encoded } else { format!("{encoded}.sbd") });
        }
        file
    }

    /// Starts a folder: its file is created (empty if it gets no message).
    pub fn folder(&mut self, path: &[String]) -> Result<MboxFolder, Error> {
        let file_path = self.folder_file(path);
        if let Some(parent) = file_path.parent() {
            private_dir(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = private_file(&file_path).map_err(|e| Error::io(&file_path, e))?;
        Ok(MboxFolder { file: BufWriter::new(file), path: file_path, written: Written::default() })
    }
}

/// One mbox file being written.
#[derive(Debug)]
pub struct MboxFolder {
    file: BufWriter<File>,
    path: PathBuf,
    written: Written,
}

impl MboxFolder {
    /// Appends one message (see [`mbox_entry`]).
    pub fn append(&mut self, message: &SourceMessage) -> Result<(), Error> {
        self.file.write_all(&mbox_entry(message)).map_err(|e| Error::io(&self.path, e))?;
        self.written.messages += 1;
        self.written.bytes += message.raw.len() as u64;
        Ok(())
    }

    /// Flushes and syncs the file; what was written.
    pub fn finish(self) -> Result<Written, Error> {
        let file = self.file.into_inner().map_err(|e| Error::io(&self.path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.written)
    }
}

/// One message as an mbox holds it: its `From ` line, its header with the flag headers
/// added after the last field, its lines with LF ends and mboxrd quoting, a final line end
/// if it had none, and the blank line after it.
pub fn mbox_entry(message: &SourceMessage) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.raw.len() + 128);
    out.extend_from_slice(b"From MAILER-DAEMON ");
    out.extend_from_slice(date::asctime(message.internal_date.unwrap_or(0)).as_bytes());
    out.push(b'\n');
    let raw = &message.raw;
    let insert_at = header_fields(raw).last().map_or(0, |(_, _, end)| *end);
    write_lines(&mut out, &raw[..insert_at]);
    // A message that starts with white space (malformed: a continuation of nothing) would
    // make its first line a continuation of the flag headers, and lose it with them: its
    // bytes are kept, its flags are not written.
    if insert_at > 0 || !raw.starts_with(b" ") && !raw.starts_with(b"\t") {
        out.extend_from_slice(&flag_headers(message));
    }
    write_lines(&mut out, &raw[insert_at..]);
    out.push(b'\n');
    out
}

/// `Status:`, `X-Status:`, `X-Keywords:`, as mutt and Dovecot write them.
fn flag_headers(message: &SourceMessage) -> Vec<u8> {
    let has = |flag: &str| message.flags.iter().any(|f| f.eq_ignore_ascii_case(flag));
    let mut out = format!("Status: {}\n", if has("\\Seen") { "RO" } else { "O" });
    let x_status: String = [("\\Answered", 'A'), ("\\Flagged", 'F'), ("\\Draft", 'T'), ("\\Deleted", 'D')]
        .iter()
        .filter(|(flag, _)| has(flag))
        .map(|(_, letter)| *letter)
        .collect();
    if !x_status.is_empty() {
        out.push_str(&format!("X-Status: {x_status}\n"));
    }
    if !message.keywords.is_empty() {
        out.push_str(&format!("X-Keywords: {}\n", message.keywords.join(" ")));
    }
    out.into_bytes()
}

/// Lines with LF ends, `>*From ` lines given one more `>` (mboxrd); a last line without
/// a line end gets one.
fn write_lines(out: &mut Vec<u8>, bytes: &[u8]) {
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let content = match line.strip_suffix(b"\n") {
            Some(content) => content.strip_suffix(b"\r").unwrap_or(content),
            None => line,
        };
        let n_quotes = content.iter().take_while(|b| **b == b'>').count();
        if content[n_quotes..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(content);
        out.push(b'\n');
    }
}

//! The backup format: the manifest, record and index lines, and the chain of backups in a
//! set. docs/backup.md is the same description for a person.

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hameau_store::{BlobHash, Entry, Version};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::Error;

/// The `format` field of every manifest.
pub const FORMAT: &str = "hameau-backup";
/// The version of the format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";
pub(crate) const RECORDS: &str = "records.jsonl";
pub(crate) const INDEX: &str = "index.jsonl";
/// The passphrase-encrypted data key of a passphrase backup.
pub(crate) const KEY_FILE: &str = "key.age";
pub(crate) const AGE_SUFFIX: &str = ".age";
/// A backup being written; never read as a backup.
pub(crate) const PARTIAL_SUFFIX: &str = ".partial";

/// A backup's `manifest.json`: never encrypted, it holds nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: u32,
    /// When the backup was made, RFC 3339 in UTC.
    pub created: String,
    pub created_unix_s: u64,
    pub kind: Kind,
    /// The version of the last commit the backup holds (the store's sequence).
    pub store_version: Version,
    /// The backup this one adds to (incremental only).
    pub base: Option<BaseRef>,
    pub encryption: Option<EncryptionInfo>,
    pub counts: Counts,
    /// Every file of the backup but the manifest, with its SHA-256 and size as stored
    /// (encrypted, if the backup is).
    pub files: Vec<FileEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Full,
    Incremental,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        }
    }
}

/// The base of an incremental backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    /// The base's directory name in the same set.
    pub name: String,
    pub store_version: Version,
    /// The SHA-256 of the base's `manifest.json`, so a replaced base is noticed.
    pub manifest_sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Always `age` (age-encryption.org/v1).
    pub scheme: String,
    /// `x25519` (a recipient's public key) or `passphrase` (then `key.age` holds the key).
    pub to: String,
    /// How message files are named: `hmac-sha256` of their SHA-256, under a key kept in
    /// the (encrypted) records.
    pub blob_names: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Lines of `records.jsonl`: keys written since the base (all keys for a full backup).
    pub records: u64,
    /// Keys the store held.
    pub keys: u64,
    /// Message files in this backup.
    pub blobs_written: u64,
    /// Blobs the store held (in this backup or its chain).
    pub blobs: u64,
    /// Keys gone since the base (incremental).
    #[serde(default)]
    pub deleted_keys: u64,
    /// Lines of `index.jsonl`.
    #[serde(default)]
    pub index_lines: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One line of `records.jsonl`: a key, its version and its value. The key is `key` when it
/// is UTF-8, else `key_b64`; the value is `value_json` (written as is) when it is a JSON
/// object or array on one line, else `value_text` when it is UTF-8 without control
/// characters (tab and line breaks allowed), else `value_b64`.
#[derive(Serialize)]
pub(crate) struct RecordOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_b64: Option<String>,
    version: Version,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_json: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_b64: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    key: Option<String>,
    key_b64: Option<String>,
    version: Version,
    value_json: Option<Box<RawValue>>,
    value_text: Option<String>,
    value_b64: Option<String>,
}

/// One line of `index.jsonl`. A full backup's index lists the whole state: each key the
/// store held (by digest) and each blob with its reference count and the file that holds
/// it, relative to the set. An incremental backup's index lists what changed since its
/// base: keys that are gone (`"deleted": true`; new keys are in the records), blobs that are
/// new or whose count changed, and blobs that are gone (`"refs": 0`).
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexLine {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// The digest of a key in the index: the first 16 bytes of its SHA-256.
pub(crate) fn key_digest(key: &[u8]) -> [u8; 16] {
    let full: [u8; 32] = Sha256::digest(key).into();
    full[..16].try_into().expect("16 bytes")
}

/// Writes one record line (with its newline).
pub(crate) fn write_record(out: &mut dyn Write, entry: &Entry) -> std::io::Result<()> {
    let key = std::str::from_utf8(&entry.key).ok();
    let key_b64 = key.is_none().then(|| BASE64.encode(&entry.key));
    let text = std::str::from_utf8(&entry.value).ok().filter(|text| is_readable(text));
    let json = text.filter(|text| is_verbatim_json(text)).and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    let value_text = if json.is_some() { None } else { text };
    let value_b64 = (json.is_none() && text.is_none()).then(|| BASE64.encode(&entry.value));
    let line = RecordOut { key, key_b64, version: entry.version, value_json: json, value_text, value_b64 };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// Text with control characters (a counter's bytes are valid UTF-8) reads better as base64.
fn is_readable(text: &str) -> bool {
    !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// A value is written as JSON only if reading the line back gives the same bytes: an
/// object or array, without line breaks, without whitespace around it.
fn is_verbatim_json(text: &str) -> bool {
    let bytes = text.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')))
        && !bytes.contains(&b'\n')
        && !bytes.contains(&b'\r')
}

/// Reads one record line back.
pub(crate) fn parse_record(line: &[u8]) -> Result<Entry, String> {
    let record: RecordIn = serde_json::from_slice(line).map_err(|e| format!("a record line: {e}"))?;
    let key = match (record.key, record.key_b64) {
        (Some(key), None) => key.into_bytes(),
        (None, Some(b64)) => BASE64.decode(b64).map_err(|e| format!("key_b64: {e}"))?,
        _ => return Err("a record has one of key and key_b64".into()),
    };
    let value = match (record.value_json, record.value_text, record.value_b64) {
        (Some(json), None, None) => json.get().as_bytes().to_vec(),
        (None, Some(text), None) => text.into_bytes(),
        (None, None, Some(b64)) => BASE64.decode(b64).map_err(|e| format!("value_b64: {e}"))?,
        _ => return Err("a record has one of value_json, value_text and value_b64".into()),
    };
    Ok(Entry { key, version: record.version, value })
}

/// Reads the next line (without its newline) into `line`; false at the end. A line longer
/// than `max` is an error, never a growing buffer.
pub(crate) fn read_line(reader: &mut dyn BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<bool> {
    line.clear();
    let n = reader.take(max as u64 + 1).read_until(b'\n', line)?;
    if n == 0 {
        return Ok(false);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("a line longer than {max} bytes")));
    }
    Ok(true)
}

/// A writer that hashes and counts what goes through it.
pub(crate) struct Hashing<W> {
    pub inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Hashing<W> {
    pub fn new(inner: W) -> Hashing<W> {
        Hashing { inner, hasher: Sha256::new(), bytes: 0 }
    }

    /// The SHA-256 (hex) and size of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    pub bytes: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader { inner, hasher: Sha256::new(), bytes: 0 }
    }

    pub fn digest(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The SHA-256 (hex) and size of a whole file, read in pieces.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut reader = HashingReader::new(std::fs::File::open(path)?);
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok((reader.digest(), reader.bytes))
}

/// One backup of a set: its directory name and manifest.
#[derive(Clone, Debug)]
pub(crate) struct Backup {
    pub name: String,
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub manifest_sha256: String,
}

/// Reads and checks a backup's manifest.
pub(crate) fn read_manifest(dir: &Path, bytes_max: u64) -> Result<Backup, Error> {
    let path = dir.join(MANIFEST);
    let file = std::fs::File::open(&path).map_err(Error::io(&path))?;
    let mut bytes = Vec::new();
    file.take(bytes_max + 1).read_to_end(&mut bytes).map_err(Error::io(&path))?;
    if bytes.len() as u64 > bytes_max {
        return Err(Error::format(&path, format!("larger than backup.manifest_bytes_max ({bytes_max})")));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::format(&path, e.to_string()))?;
    if manifest.format != FORMAT || manifest.format_version != FORMAT_VERSION {
        let problem = format!(
            "format {:?} version {}: this Hameau reads {FORMAT:?} version {FORMAT_VERSION}",
            manifest.format, manifest.format_version
        );
        return Err(Error::format(&path, problem));
    }
    for file in &manifest.files {
        if !is_safe_relative(&file.path) {
            return Err(Error::format(&path, format!("file path {:?} leaves the backup directory", file.path)));
        }
    }
    let name = dir.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(Backup { name, dir: dir.to_path_buf(), manifest, manifest_sha256 })
}

/// A path inside the backup (or set): relative, no `..`, no empty or `.` component.
pub(crate) fn is_safe_relative(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

/// The backups of a set, in order (their names begin with a sequence number). A directory
/// being written (`.partial`) or without a manifest is not a backup.
pub(crate) fn list_backups(set: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(set) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(Error::Io { path: set.to_path_buf(), source: e }),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io(set))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(PARTIAL_SUFFIX) || sequence_of(&name).is_none() {
            continue;
        }
        if entry.path().join(MANIFEST).is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The sequence number a backup's name begins with (`000012-incremental`: 12).
pub(crate) fn sequence_of(name: &str) -> Option<u64> {
    let (digits, _) = name.split_once('-')?;
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// `path` names a backup (it holds a manifest) or a set; the set and the backup to start
/// from (the given one, or the set's last).
pub(crate) fn locate(path: &Path) -> Result<(PathBuf, String), Error> {
    if path.join(MANIFEST).is_file() {
        let set = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        return Ok((set, name));
    }
    let last = list_backups(path)?.pop().ok_or_else(|| Error::NoBackup(path.to_path_buf()))?;
    Ok((path.to_path_buf(), last))
}

/// The chain that ends at `last`, from its full backup on. Each link's manifest hash is
/// checked against what the next one recorded. Bounded by the number of backups in the set
/// (a loop of bases is refused).
pub(crate) fn chain(set: &Path, last: &str, manifest_bytes_max: u64) -> Result<Vec<Backup>, Error> {
    let n_backups_max = list_backups(set)?.len().max(1);
    let mut chain = vec![read_manifest(&set.join(last), manifest_bytes_max)?];
    loop {
        let current = chain.last().expect("one at least");
        let Some(base) = current.manifest.base.clone() else { break };
        if current.manifest.kind == Kind::Full {
            break;
        }
        if chain.len() >= n_backups_max || !is_safe_relative(&base.name) || base.name.contains('/') {
            return Err(Error::format(current.dir.join(MANIFEST), format!("base {:?} cannot be followed", base.name)));
        }
        let base_dir = set.join(&base.name);
        if !base_dir.join(MANIFEST).is_file() {
            let problem = format!("its base {} is missing from {}", base.name, set.display());
            return Err(Error::Damaged(format!("{}: {problem}", current.name)));
        }
        let read = read_manifest(&base_dir, manifest_bytes_max)?;
        if read.manifest_sha256 != base.manifest_sha256 {
            let problem = format!("the manifest of its base {} is not the one it was made on", base.name);
            return Err(Error::Damaged(format!("{}: {problem}", current.name)));
        }
        chain.push(read);
    }
    if chain.last().expect("one at least").manifest.kind != Kind::Full {
        return Err(Error::Damaged(format!("the chain of {last} does not begin with a full backup")));
    }
    chain.reverse();
    Ok(chain)
}

/// Every blob file of a chain, by file name: where it is, relative to the set, and its
/// manifest entry.
pub(crate) fn chain_blob_files(chain: &[Backup]) -> HashMap<String, (String, FileEntry)> {
    let mut files = HashMap::new();
    for backup in chain {
        for file in &backup.manifest.files {
            if let Some(rest) = file.path.strip_prefix("blobs/") {
                let name = rest.rsplit('/').next().unwrap_or(rest).to_string();
                files.insert(name, (format!("{}/{}", backup.name, file.path), file.clone()));
            }
        }
    }
    files
}

/// A blob's file path inside its backup: `blobs/` + the first two characters + the name.
pub(crate) fn blob_path(file_name: &str) -> String {
    format!("blobs/{}/{file_name}", &file_name[..2])
}

/// A blob's file name in a plain backup: its hash in hex.
pub(crate) fn plain_blob_name(hash: &BlobHash) -> String {
    hash.to_hex()
}

/// RFC 3339 UTC of a Unix time.
pub(crate) fn rfc3339(unix_s: u64) -> String {
    hameau_calendar::rfc3339(unix_s)
}

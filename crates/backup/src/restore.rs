//! Restoring a chain of backups into an empty store.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::path::Path;

use hameau_store::{BlobHash, Entry, Load, LoadBlob, Store};
use tokio::runtime::Handle;

use crate::crypt::Opener;
use crate::format::{self, Backup, HashingReader, INDEX, IndexLine, KEY_FILE, RECORDS};
use crate::{Error, RestoreOptions};

/// What a restore put back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The backups replayed, full first.
    pub chain: Vec<String>,
    pub store_version: u64,
    pub keys: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
}

/// Restores the backup at `from` (a backup directory, or a set: its last backup) with its
/// chain into `store`, which must be empty and used by nothing else meanwhile. Every file
/// read is checked against its manifest's SHA-256; a damaged backup fails the restore
/// (the caller throws the half-restored store away).
pub async fn restore(store: &Store, from: &Path, options: &RestoreOptions) -> Result<RestoreReport, Error> {
    options.limits.check().map_err(|problem| Error::InvalidOptions(problem.to_string()))?;
    if options.tenant.is_some() {
        return Err(Error::TenantRestore);
    }
    let (store, from, options) = (store.clone(), from.to_path_buf(), options.clone());
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || restore_blocking(&handle, &store, &from, &options))
        .await
        .map_err(|e| Error::Damaged(format!("the restore task failed: {e}")))?
}

/// The final state, from the last backup's index.
struct Index {
    keys: HashSet<[u8; 16]>,
    blobs: Vec<IndexBlob>,
}

struct IndexBlob {
    hash: BlobHash,
    bytes: u64,
    refs: u64,
    /// Relative to the set.
    file: String,
}

fn restore_blocking(
    handle: &Handle,
    store: &Store,
    from: &Path,
    options: &RestoreOptions,
) -> Result<RestoreReport, Error> {
    let (set, last) = format::locate(from)?;
    let chain = format::chain(&set, &last, options.limits.manifest_bytes_max)?;
    let newest = chain.last().expect("a chain is never empty");
    let opener = match &newest.manifest.encryption {
        None => None,
        Some(info) => {
            let decryption = options.decryption.as_ref().ok_or_else(|| Error::KeyNeeded(info.to.clone()))?;
            let key_file = newest.dir.join(KEY_FILE);
            Some(Opener::new(decryption, key_file.is_file().then_some(key_file.as_path()))?)
        }
    };
    let index = read_index(newest, opener.as_ref(), options)?;
    let mut report = RestoreReport {
        chain: chain.iter().map(|backup| backup.name.clone()).collect(),
        store_version: newest.manifest.store_version,
        keys: 0,
        blobs: 0,
        blob_bytes: 0,
    };
    // Newest first: a key's newest record wins, older ones of the same key are skipped.
    let mut seen = HashSet::with_capacity(index.keys.len());
    for backup in chain.iter().rev() {
        report.keys += load_records(handle, store, backup, opener.as_ref(), &index, &mut seen, options)?;
    }
    if seen.len() != index.keys.len() {
        let missing = index.keys.len() - seen.len();
        return Err(Error::Damaged(format!("{missing} keys of the index have no record in the chain of {last}")));
    }
    let chain_files = format::chain_blob_files(&chain);
    let mut load = Load::default();
    let mut load_bytes = 0usize;
    for blob in &index.blobs {
        let content = read_blob(&set, blob, &chain_files, opener.as_ref())?;
        report.blobs += 1;
        report.blob_bytes += content.len() as u64;
        load_bytes += content.len();
        load.blobs.push(LoadBlob { refcount: blob.refs, content });
        if load_bytes >= options.limits.load_bytes_max || load.blobs.len() >= options.limits.load_entries_max {
            handle.block_on(store.load(std::mem::take(&mut load)))?;
            load_bytes = 0;
        }
    }
    load.version_at_least = newest.manifest.store_version;
    handle.block_on(store.load(load))?;
    Ok(report)
}

/// Opens a file of a backup, checked against its manifest entry once read to the end.
fn open_checked<'a>(backup: &Backup, path: &str, opener: Option<&'a Opener>) -> Result<Checked<'a>, Error> {
    let entry = backup.manifest.files.iter().find(|file| file.path == path);
    let entry = entry.ok_or_else(|| Error::Damaged(format!("{}: {path} is not in its manifest", backup.name)))?;
    let full = backup.dir.join(path);
    let file = std::fs::File::open(&full).map_err(Error::io(&full))?;
    let hashing = std::sync::Arc::new(std::sync::Mutex::new(HashingReader::new(file)));
    let shared = SharedReader(hashing.clone());
    let reader: Box<dyn Read + 'a> = match opener {
        Some(opener) => opener.open(shared)?,
        None => Box::new(shared),
    };
    Ok(Checked {
        reader: BufReader::with_capacity(256 * 1024, reader),
        hashing,
        sha256: entry.sha256.clone(),
        bytes: entry.bytes,
        path: full,
    })
}

/// A file being read, and what its manifest says it is.
struct Checked<'a> {
    reader: BufReader<Box<dyn Read + 'a>>,
    hashing: std::sync::Arc<std::sync::Mutex<HashingReader<std::fs::File>>>,
    sha256: String,
    bytes: u64,
    path: std::path::PathBuf,
}

impl Checked<'_> {
    /// Reads what is left (age stops at its last chunk) and compares with the manifest.
    fn check(mut self) -> Result<(), Error> {
        std::io::copy(&mut self.reader, &mut std::io::sink()).map_err(Error::io(&self.path))?;
        let mut hashing = self.hashing.lock().expect("one reader");
        std::io::copy(&mut *hashing, &mut std::io::sink()).map_err(Error::io(&self.path))?;
        if hashing.digest() != self.sha256 || hashing.bytes != self.bytes {
            return Err(Error::Damaged(format!("{}: does not match its manifest (corrupt)", self.path.display())));
        }
        Ok(())
    }
}

/// Lets the checker reach the hashing reader under the decryptor.
struct SharedReader(std::sync::Arc<std::sync::Mutex<HashingReader<std::fs::File>>>);

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().expect("one reader").read(buf)
    }
}

fn file_name(backup: &Backup, base: &str) -> String {
    match backup.manifest.encryption {
        Some(_) => format!("{base}{}", format::AGE_SUFFIX),
        None => base.to_string(),
    }
}

fn read_index(backup: &Backup, opener: Option<&Opener>, options: &RestoreOptions) -> Result<Index, Error> {
    let path = file_name(backup, INDEX);
    let mut file = open_checked(backup, &path, opener)?;
    let mut index = Index { keys: HashSet::new(), blobs: Vec::new() };
    let mut line = Vec::new();
    let bad = |problem: String| Error::format(backup.dir.join(&path), problem);
    while format::read_line(&mut file.reader, &mut line, options.limits.line_bytes_max)
        .map_err(|e| bad(e.to_string()))?
    {
        let parsed: IndexLine = serde_json::from_slice(&line).map_err(|e| bad(format!("an index line: {e}")))?;
        match parsed {
            IndexLine { key_digest: Some(digest), blob: None, .. } => {
                let mut bytes = [0u8; 16];
                hex::decode_to_slice(&digest, &mut bytes).map_err(|_| bad(format!("key digest {digest:?}")))?;
                index.keys.insert(bytes);
            }
            IndexLine {
                key_digest: None,
                blob: Some(blob),
                bytes: Some(bytes),
                refs: Some(refs),
                file: Some(location),
            } => {
                let hash = BlobHash::from_hex(&blob).ok_or_else(|| bad(format!("blob hash {blob:?}")))?;
                if !format::is_safe_relative(&location) {
                    return Err(bad(format!("blob file {location:?} leaves the set")));
                }
                index.blobs.push(IndexBlob { hash, bytes, refs, file: location });
            }
            _ => return Err(bad("an index line is neither a key nor a blob".into())),
        }
    }
    file.check()?;
    Ok(index)
}

/// Loads the records of one backup that the index keeps and no newer backup had; the
/// number loaded.
fn load_records(
    handle: &Handle,
    store: &Store,
    backup: &Backup,
    opener: Option<&Opener>,
    index: &Index,
    seen: &mut HashSet<[u8; 16]>,
    options: &RestoreOptions,
) -> Result<u64, Error> {
    let path = file_name(backup, RECORDS);
    let mut file = open_checked(backup, &path, opener)?;
    let bad = |problem: String| Error::format(backup.dir.join(&path), problem);
    let mut line = Vec::new();
    let mut batch: Vec<Entry> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut n_loaded = 0;
    while format::read_line(&mut file.reader, &mut line, options.limits.line_bytes_max)
        .map_err(|e| bad(e.to_string()))?
    {
        let entry = format::parse_record(&line).map_err(bad)?;
        let digest = format::key_digest(&entry.key);
        if !index.keys.contains(&digest) || !seen.insert(digest) {
            continue;
        }
        batch_bytes += entry.key.len() + entry.value.len();
        batch.push(entry);
        n_loaded += 1;
        if batch.len() >= options.limits.load_entries_max || batch_bytes >= options.limits.load_bytes_max {
            handle.block_on(store.load(Load { entries: std::mem::take(&mut batch), ..Load::default() }))?;
            batch_bytes = 0;
        }
    }
    file.check()?;
    handle.block_on(store.load(Load { entries: batch, ..Load::default() }))?;
    Ok(n_loaded)
}

/// A blob's content from its file, checked against the manifest and against its hash.
fn read_blob(
    set: &Path,
    blob: &IndexBlob,
    chain_files: &std::collections::HashMap<String, (String, format::FileEntry)>,
    opener: Option<&Opener>,
) -> Result<Vec<u8>, Error> {
    let name = blob.file.rsplit('/').next().unwrap_or(&blob.file);
    let Some((location, entry)) = chain_files.get(name) else {
        return Err(Error::Damaged(format!("{}: not in the manifests of the chain", blob.file)));
    };
    if *location != blob.file {
        return Err(Error::Damaged(format!("{}: the manifests put it at {location}", blob.file)));
    }
    let path = set.join(location);
    let stored = std::fs::read(&path).map_err(Error::io(&path))?;
    if stored.len() as u64 != entry.bytes
        || hex::encode(sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&stored))) != entry.sha256
    {
        return Err(Error::Damaged(format!("{}: does not match its manifest (corrupt)", path.display())));
    }
    let content = match opener {
        None => stored,
        Some(opener) => {
            let mut content = Vec::with_capacity(usize::try_from(blob.bytes).unwrap_or(0));
            opener.open(stored.as_slice())?.read_to_end(&mut content).map_err(Error::io(&path))?;
            content
        }
    };
    if BlobHash::of(&content) != blob.hash || content.len() as u64 != blob.bytes {
        return Err(Error::Damaged(format!("{}: its content is not blob {}", path.display(), blob.hash)));
    }
    Ok(content)
}

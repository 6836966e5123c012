//! Restoring a chain of backups into an empty store.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use hameau_store::{BlobHash, Entry, Load, LoadBlob, Store};
use tokio::runtime::Handle;

use crate::crypt::Opener;
use crate::format::{self, Backup, KEY_FILE, RECORDS};
use crate::read::{State, StateBlob, name_in, open_checked};
use crate::{Error, Owner, Owners, RestoreOptions};

/// What a restore put back.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RestoreReport {
    /// The backups replayed, full first.
    pub chain: Vec<String>,
    pub store_version: u64,
    pub keys: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// For a one-tenant restore: the tenant, and the records of the backup left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_left_out: Option<u64>,
}

/// Restores the backup at `from` (a backup directory, or a set: its last backup) with its
/// chain into `store`, which must be empty and used by nothing else meanwhile. Every file
/// read is checked against its manifest's SHA-256; a damaged backup fails the restore
/// (the caller throws the half-restored store away).
pub async fn restore(store: &Store, from: &Path, options: &RestoreOptions) -> Result<RestoreReport, Error> {
    options.limits.check().map_err(|problem| Error::InvalidOptions(problem.to_string()))?;
    if options.tenant.is_some() && options.owners.is_none() {
        return Err(Error::TenantRestore);
    }
    let (store, from, options) = (store.clone(), from.to_path_buf(), options.clone());
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || restore_blocking(&handle, &store, &from, &options))
        .await
        .map_err(|e| Error::Damaged(format!("the restore task failed: {e}")))?
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
    let index = crate::read::state(&chain, opener.as_ref(), &options.limits)?;
    let mut report = RestoreReport {
        chain: chain.iter().map(|backup| backup.name.clone()).collect(),
        store_version: newest.manifest.store_version,
        keys: 0,
        blobs: 0,
        blob_bytes: 0,
        tenant: options.tenant.clone(),
        keys_left_out: None,
    };
    let mut filter = match (&options.tenant, &options.owners) {
        (Some(tenant), Some(owners)) => {
            // First pass: which records are the tenant's own (its accounts' and domains'
            // records among them), so that the second knows what records owned through
            // them follow.
            let mut first = TenantFilter::new(tenant, owners.as_ref());
            let mut seen = HashSet::with_capacity(index.keys.len());
            for backup in chain.iter().rev() {
                read_records(handle, store, backup, opener.as_ref(), &index, &mut seen, options, Some(&mut first))?;
            }
            if first.own.is_empty() {
                return Err(Error::Owner(format!("tenant {tenant:?} is not in the backup")));
            }
            first.pass = Pass::Keep;
            Some(first)
        }
        _ => None,
    };
    // Newest first: a key's newest record wins, older ones of the same key are skipped.
    let mut seen = HashSet::with_capacity(index.keys.len());
    for backup in chain.iter().rev() {
        report.keys +=
            read_records(handle, store, backup, opener.as_ref(), &index, &mut seen, options, filter.as_mut())?;
    }
    if seen.len() != index.keys.len() {
        let missing = index.keys.len() - seen.len();
        return Err(Error::Damaged(format!("{missing} keys of the index have no record in the chain of {last}")));
    }
    // The blobs with the reference counts the records kept hold, for one tenant; all of
    // them as they were otherwise.
    let refs: HashMap<BlobHash, u64> = match &mut filter {
        None => index.blobs.iter().map(|(hash, blob)| (*hash, blob.refs)).collect(),
        Some(filter) => {
            let counters = filter.counters();
            report.keys += counters.len() as u64;
            report.keys_left_out = Some(index.keys.len() as u64 - report.keys);
            handle.block_on(store.load(Load { entries: counters, ..Load::default() }))?;
            if let Some(hash) = filter.refs.keys().find(|hash| !index.blobs.contains_key(*hash)) {
                return Err(Error::Damaged(format!("blob {hash} is referenced by a record but not in the backup")));
            }
            std::mem::take(&mut filter.refs)
        }
    };
    let chain_files = format::chain_blob_files(&chain);
    let mut load = Load::default();
    let mut load_bytes = 0usize;
    let mut blobs: Vec<_> =
        index.blobs.iter().filter_map(|(hash, blob)| Some((hash, blob, *refs.get(hash)?))).collect();
    blobs.sort_by_key(|(hash, _, _)| **hash);
    for (hash, blob, refcount) in blobs {
        let content = read_blob(&set, store.limits().blob_bytes_max, hash, blob, &chain_files, opener.as_ref())?;
        report.blobs += 1;
        report.blob_bytes += content.len() as u64;
        load_bytes += content.len();
        load.blobs.push(LoadBlob { refcount, content });
        if load_bytes >= options.limits.load_bytes_max || load.blobs.len() >= options.limits.load_entries_max {
            handle.block_on(store.load(std::mem::take(&mut load)))?;
            load_bytes = 0;
        }
    }
    load.version_at_least = newest.manifest.store_version;
    handle.block_on(store.load(load))?;
    Ok(report)
}

/// Which pass of a one-tenant restore a [`TenantFilter`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Learning which records are the tenant's own; nothing is loaded.
    Owners,
    /// Loading the records kept.
    Keep,
}

/// Decides, record by record, what a one-tenant restore keeps, and counts what the kept
/// records hold (blob references, counted records).
struct TenantFilter<'a> {
    tenant: &'a str,
    owners: &'a dyn Owners,
    pass: Pass,
    /// The key digests of the records whose owner is the tenant itself (first pass).
    own: HashSet<[u8; 16]>,
    /// The counters recomputed (the second pass fills the counts; the first the records).
    counted: Vec<(Entry, Vec<u8>, i64)>,
    refs: HashMap<BlobHash, u64>,
}

impl<'a> TenantFilter<'a> {
    fn new(tenant: &'a str, owners: &'a dyn Owners) -> TenantFilter<'a> {
        TenantFilter {
            tenant,
            owners,
            pass: Pass::Owners,
            own: HashSet::new(),
            counted: Vec::new(),
            refs: HashMap::new(),
        }
    }

    /// Whether the record is loaded now (never in the first pass).
    fn keep(&mut self, entry: &Entry) -> Result<bool, Error> {
        let owner = self.owners.owner(&entry.key, &entry.value);
        if self.pass == Pass::Owners {
            match owner {
                Owner::Tenant(tenant) if tenant == self.tenant => {
                    self.own.insert(format::key_digest(&entry.key));
                }
                Owner::CountOf(prefix) => self.counted.push((entry.clone(), prefix, 0)),
                Owner::Unknown => {
                    return Err(Error::Owner(format!(
                        "no crate says whose record {} is",
                        String::from_utf8_lossy(&entry.key).escape_debug()
                    )));
                }
                _ => {}
            }
            return Ok(false);
        }
        let kept = match owner {
            Owner::Tenant(tenant) => tenant == self.tenant,
            Owner::Via(key) => self.own.contains(&format::key_digest(&key)),
            Owner::Installation => true,
            Owner::CountOf(_) | Owner::Nobody | Owner::Unknown => false,
        };
        if kept {
            for hash in self.owners.blob_refs(&entry.key, &entry.value) {
                *self.refs.entry(hash).or_default() += 1;
            }
            for (_, prefix, count) in &mut self.counted {
                if entry.key.starts_with(prefix) {
                    *count += 1;
                }
            }
        }
        Ok(kept)
    }

    /// The recomputed counters, as records.
    fn counters(&mut self) -> Vec<Entry> {
        std::mem::take(&mut self.counted)
            .into_iter()
            .map(|(entry, _, count)| Entry { value: count.to_be_bytes().to_vec(), ..entry })
            .collect()
    }
}

/// Loads the records of one backup that the index keeps, no newer backup had and the
/// filter (if any) keeps; the number loaded.
#[allow(clippy::too_many_arguments)]
fn read_records(
    handle: &Handle,
    store: &Store,
    backup: &Backup,
    opener: Option<&Opener>,
    index: &State,
    seen: &mut HashSet<[u8; 16]>,
    options: &RestoreOptions,
    mut filter: Option<&mut TenantFilter<'_>>,
) -> Result<u64, Error> {
    let path = name_in(backup, RECORDS);
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
        if let Some(filter) = filter.as_mut()
            && !filter.keep(&entry)?
        {
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
    if !batch.is_empty() {
        handle.block_on(store.load(Load { entries: batch, ..Load::default() }))?;
    }
    Ok(n_loaded)
}

/// What age adds to a file: a header of one or two recipient stanzas (under 1 KiB) and 16
/// bytes per 64 KiB chunk; 1 MiB covers a 256 MiB message with room.
const AGE_OVERHEAD_BYTES_MAX: u64 = 1 << 20;

/// A blob's content from its file, checked against the manifest and against its hash.
fn read_blob(
    set: &Path,
    blob_bytes_max: u64,
    hash: &BlobHash,
    blob: &StateBlob,
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
    let corrupt = || Error::Damaged(format!("{}: does not match its manifest (corrupt)", path.display()));
    // The sizes are checked before anything is read: a file or a message larger than the
    // store takes is refused, never read into memory.
    if blob.bytes > blob_bytes_max || entry.bytes > blob_bytes_max.saturating_add(AGE_OVERHEAD_BYTES_MAX) {
        let problem = format!("{} bytes, over store.blob_bytes_max", blob.bytes.max(entry.bytes));
        return Err(Error::format(&path, problem));
    }
    let on_disk = std::fs::metadata(&path).map_err(Error::io(&path))?.len();
    if on_disk != entry.bytes {
        return Err(corrupt());
    }
    let stored = std::fs::read(&path).map_err(Error::io(&path))?;
    let digest = BlobHash::of(&stored);
    if stored.len() as u64 != entry.bytes || digest.to_hex() != entry.sha256 {
        return Err(corrupt());
    }
    let content = match opener {
        None => stored,
        Some(opener) => {
            let mut content = Vec::with_capacity(usize::try_from(blob.bytes).unwrap_or(0));
            let reader = opener.open(stored.as_slice())?;
            reader.take(blob.bytes + 1).read_to_end(&mut content).map_err(Error::io(&path))?;
            content
        }
    };
    // Unencrypted, the file is the content: its hash is the one just computed.
    let content_hash = if opener.is_none() { digest } else { BlobHash::of(&content) };
    if content_hash != *hash || content.len() as u64 != blob.bytes {
        return Err(Error::Damaged(format!("{}: its content is not blob {hash}", path.display())));
    }
    Ok(content)
}

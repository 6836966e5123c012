//! Making a backup: one snapshot, written into a new directory of the set, which becomes a
//! backup only when its manifest is written and the directory renamed.

use std::collections::{HashMap, HashSet};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hameau_store::{Batch, BlobHash, Scan, Snapshot, Store};
use tokio::runtime::Handle;

use crate::crypt::{Opener, Sealer};
use crate::format::{
    self, Backup, BaseRef, Counts, FileEntry, Hashing, INDEX, IndexLine, KEY_FILE, Kind, MANIFEST, Manifest,
    PARTIAL_SUFFIX, RECORDS,
};
use crate::read::{self, State, StateBlob};
use crate::{BackupOptions, Error};

/// The store key holding the HMAC key of encrypted backups' message file names.
const NAMES_KEY: &[u8] = b"backup/names-key";
/// The store key holding the writer's own age identity: an encrypted backup is encrypted to
/// it too, so that the server reads its last index back to write only what changed (it holds
/// every message anyway; the backup disk does not hold this key in clear).
const WRITER_KEY: &[u8] = b"backup/writer-key";

/// The secrets an encrypted backup needs from the store.
#[derive(Clone)]
pub(crate) struct Keys {
    pub names: [u8; 32],
    pub writer: String,
}

/// What one backup wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The backup's directory name in the set.
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
    pub store_version: u64,
    pub base: Option<String>,
    pub counts: Counts,
    /// Bytes written (all files, manifest included).
    pub bytes: u64,
    /// Why a full backup was made where an incremental one was asked for, if so.
    pub note: Option<String>,
}

/// Backs `store` up into the set `set` (created if missing): a full backup, or an
/// incremental one on the set's last backup unless `options.full`. The server may go on
/// committing meanwhile: the backup holds one snapshot. `now_unix_s` is its creation time.
pub async fn backup(store: &Store, set: &Path, options: &BackupOptions, now_unix_s: u64) -> Result<Report, Error> {
    options.limits.check().map_err(|problem| Error::InvalidOptions(problem.to_string()))?;
    let keys = match options.encryption {
        Some(_) => {
            let names: [u8; 32] = stored_secret(store, NAMES_KEY, || rand::random::<[u8; 32]>().to_vec())
                .await?
                .try_into()
                .map_err(|_| Error::Damaged("the store's backup/names-key is not 32 bytes".into()))?;
            let writer = stored_secret(store, WRITER_KEY, || {
                use age::secrecy::ExposeSecret;
                age::x25519::Identity::generate().to_string().expose_secret().as_bytes().to_vec()
            })
            .await?;
            let writer =
                String::from_utf8(writer).map_err(|_| Error::Damaged("backup/writer-key is not text".into()))?;
            Some(Keys { names, writer })
        }
        None => None,
    };
    let snapshot = store.snapshot().await?;
    let handle = Handle::current();
    let (set, options) = (set.to_path_buf(), options.clone());
    tokio::task::spawn_blocking(move || write_backup(&handle, &snapshot, &set, &options, keys, now_unix_s))
        .await
        .map_err(|e| Error::Damaged(format!("the backup task failed: {e}")))?
}

/// A secret made once and kept in the store under `key`.
async fn stored_secret(store: &Store, key: &[u8], make: impl Fn() -> Vec<u8>) -> Result<Vec<u8>, Error> {
    for _ in 0..3 {
        if let Some(entry) = store.get(key).await? {
            return Ok(entry.value);
        }
        let value = make();
        let mut batch = Batch::new();
        batch.expect_absent(key).set(key, &value);
        match store.commit(batch).await {
            Ok(_) => return Ok(value),
            Err(hameau_store::Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Damaged(format!("{} keeps changing", String::from_utf8_lossy(key))))
}

/// One output file of the backup, plain or encrypted, hashed as stored.
enum Output {
    Plain(Hashing<BufWriter<std::fs::File>>),
    Sealed(age::stream::StreamWriter<Hashing<BufWriter<std::fs::File>>>),
}

impl Output {
    fn create(dir: &Path, path: &str, sealer: Option<&Sealer>) -> Result<Output, Error> {
        let full = dir.join(path);
        let file = std::fs::File::create(&full).map_err(Error::io(&full))?;
        let hashing = Hashing::new(BufWriter::with_capacity(64 * 1024, file));
        Ok(match sealer {
            Some(sealer) => Output::Sealed(sealer.wrap(hashing)?),
            None => Output::Plain(hashing),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Output::Plain(writer) => writer,
            Output::Sealed(writer) => writer,
        }
    }

    fn finish(self, path: &str) -> std::io::Result<FileEntry> {
        let hashing = match self {
            Output::Plain(hashing) => hashing,
            Output::Sealed(writer) => writer.finish()?,
        };
        let (mut file, sha256, bytes) = hashing.finish();
        file.flush()?;
        Ok(FileEntry { path: path.to_string(), sha256, bytes })
    }
}

/// Everything the chain holds that the new backup needs to know.
struct Base {
    backup: Backup,
    /// Blob file name to its place in the set and manifest entry.
    blob_files: HashMap<String, (String, FileEntry)>,
    /// What the chain's indexes say the store held.
    state: State,
}

fn write_backup(
    handle: &Handle,
    snapshot: &Snapshot,
    set: &Path,
    options: &BackupOptions,
    keys: Option<Keys>,
    now_unix_s: u64,
) -> Result<Report, Error> {
    std::fs::create_dir_all(set).map_err(Error::io(set))?;
    let existing = format::list_backups(set)?;
    let (mut base, note) = choose_base(set, &existing, options, keys.as_ref())?;
    let kind = if base.is_some() { Kind::Incremental } else { Kind::Full };
    let sequence = existing.iter().filter_map(|name| format::sequence_of(name)).max().unwrap_or(0) + 1;
    let name = format!("{sequence:06}-{}", kind.as_str());
    let partial = set.join(format!("{name}{PARTIAL_SUFFIX}"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(Error::io(&partial))?;
    }
    std::fs::create_dir_all(partial.join("blobs")).map_err(Error::io(&partial))?;

    let sealer = match (&options.encryption, &keys) {
        (Some(encryption), Some(keys)) => {
            let base_key = base.as_ref().map(|base| base.backup.dir.join(KEY_FILE)).filter(|path| path.is_file());
            Some(Sealer::new(encryption, keys, base_key.as_deref())?)
        }
        _ => None,
    };
    let suffix = if sealer.is_some() { format::AGE_SUFFIX } else { "" };
    let (records_path, index_path) = (format!("{RECORDS}{suffix}"), format!("{INDEX}{suffix}"));
    let mut records = Output::create(&partial, &records_path, sealer.as_ref())?;
    let mut index = Output::create(&partial, &index_path, sealer.as_ref())?;
    let mut counts = Counts::default();
    let since = base.as_ref().map(|base| base.backup.manifest.store_version);

    let mut base_keys = base.as_mut().map(|base| std::mem::take(&mut base.state.keys));
    write_keys(handle, snapshot, options, since, base_keys.as_mut(), &mut records, &mut index, &mut counts)
        .map_err(|e| in_file(e, &partial))?;
    let mut files = Vec::new();
    write_blobs(
        handle,
        snapshot,
        options,
        &name,
        &partial,
        base.as_mut(),
        sealer.as_ref(),
        &mut index,
        &mut counts,
        &mut files,
    )?;
    files.push(records.finish(&records_path).map_err(Error::io(partial.join(&records_path)))?);
    files.push(index.finish(&index_path).map_err(Error::io(partial.join(&index_path)))?);
    if let Some(key_file) = sealer.as_ref().and_then(|sealer| sealer.key_file.as_ref()) {
        let path = partial.join(KEY_FILE);
        std::fs::write(&path, key_file).map_err(Error::io(&path))?;
        let (sha256, bytes) = format::hash_file(&path).map_err(Error::io(&path))?;
        files.push(FileEntry { path: KEY_FILE.into(), sha256, bytes });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = Manifest {
        format: format::FORMAT.into(),
        format_version: format::FORMAT_VERSION,
        created: format::rfc3339(now_unix_s),
        created_unix_s: now_unix_s,
        kind,
        store_version: snapshot.version(),
        base: base.as_ref().map(|base| BaseRef {
            name: base.backup.name.clone(),
            store_version: base.backup.manifest.store_version,
            manifest_sha256: base.backup.manifest_sha256.clone(),
        }),
        encryption: sealer.as_ref().map(|sealer| sealer.info.clone()),
        counts: counts.clone(),
        files,
    };
    let bytes = finish_backup(set, &partial, &name, &manifest)?;
    Ok(Report {
        path: set.join(&name),
        name,
        kind,
        store_version: manifest.store_version,
        base: manifest.base.map(|base| base.name),
        counts,
        bytes,
        note,
    })
}

/// The base of the new backup: the set's last one, unless a full backup is asked for or
/// the last one cannot be a base (its encryption differs, its chain is damaged).
fn choose_base(
    set: &Path,
    existing: &[String],
    options: &BackupOptions,
    keys: Option<&Keys>,
) -> Result<(Option<Base>, Option<String>), Error> {
    let Some(last) = existing.last() else { return Ok((None, None)) };
    if options.full {
        return Ok((None, None));
    }
    let chain = match format::chain(set, last, options.limits.manifest_bytes_max) {
        Ok(chain) => chain,
        Err(e) => return Ok((None, Some(format!("a full backup: the chain of {last} cannot be a base ({e})")))),
    };
    if chain.len() >= options.limits.chain_backups_max {
        let note =
            format!("a full backup: the chain of {last} holds {} backups (backup.chain_backups_max)", chain.len());
        return Ok((None, Some(note)));
    }
    let backup = chain.last().expect("a chain is never empty").clone();
    let wanted = match &options.encryption {
        None => None,
        Some(crate::Encryption::Recipient(_)) => Some("x25519"),
        Some(crate::Encryption::Passphrase(_)) => Some("passphrase"),
    };
    let has = backup.manifest.encryption.as_ref().map(|info| info.to.as_str());
    if wanted != has {
        let note = format!("a full backup: {last} is encrypted otherwise ({has:?}, now {wanted:?})");
        return Ok((None, Some(note)));
    }
    let opener = match (&options.encryption, keys) {
        (Some(crate::Encryption::Passphrase(passphrase)), _) => {
            let key_file = backup.dir.join(KEY_FILE);
            Some(Opener::new(&crate::Decryption::Passphrase(passphrase.clone()), Some(&key_file)))
        }
        (Some(_), Some(keys)) => Some(Opener::new(&crate::Decryption::Identity(keys.writer.clone()), None)),
        _ => None,
    };
    let state = match opener.transpose().and_then(|opener| read::state(&chain, opener.as_ref(), &options.limits)) {
        Ok(state) => state,
        Err(e) => return Ok((None, Some(format!("a full backup: the index of {last} cannot be read ({e})")))),
    };
    let blob_files = format::chain_blob_files(&chain);
    Ok((Some(Base { backup, blob_files, state }), None))
}

/// The keys written since `since` (all without a base) into the records; into the index,
/// every key (a full backup) or the base's keys that are gone (`base_keys`, drained).
#[allow(clippy::too_many_arguments)]
fn write_keys(
    handle: &Handle,
    snapshot: &Snapshot,
    options: &BackupOptions,
    since: Option<u64>,
    mut base_keys: Option<&mut HashSet<[u8; 16]>>,
    records: &mut Output,
    index: &mut Output,
    counts: &mut Counts,
) -> Result<(), Error> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let scan = match &after {
            None => Scan::all().limit(options.limits.scan_page_max),
            Some(key) => Scan::all().after(key).limit(options.limits.scan_page_max),
        };
        let page = handle.block_on(snapshot.scan(&scan))?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for entry in &page {
            // A full backup lists every key; an incremental one, the keys gone (below).
            let digest = format::key_digest(&entry.key);
            match base_keys.as_deref_mut() {
                Some(base_keys) => {
                    base_keys.remove(&digest);
                }
                None => {
                    let line = IndexLine { key_digest: Some(hex::encode(digest)), ..IndexLine::default() };
                    write_line(index.writer(), &line)?;
                    counts.index_lines += 1;
                }
            }
            counts.keys += 1;
            if let Some(progress) = &options.progress {
                progress.keys.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if since.is_none_or(|since| entry.version > since) {
                format::write_record(records.writer(), entry).map_err(Error::io(RECORDS))?;
                counts.records += 1;
            }
        }
    }
    let mut gone: Vec<[u8; 16]> = base_keys.map(|keys| keys.drain().collect()).unwrap_or_default();
    gone.sort_unstable();
    for digest in gone {
        let line = IndexLine { key_digest: Some(hex::encode(digest)), deleted: Some(true), ..IndexLine::default() };
        write_line(index.writer(), &line)?;
        counts.index_lines += 1;
        counts.deleted_keys += 1;
    }
    Ok(())
}

/// Every blob into the index; the blobs the chain does not hold into files of this backup.
#[allow(clippy::too_many_arguments)]
fn write_blobs(
    handle: &Handle,
    snapshot: &Snapshot,
    options: &BackupOptions,
    name: &str,
    partial: &Path,
    mut base: Option<&mut Base>,
    sealer: Option<&Sealer>,
    index: &mut Output,
    counts: &mut Counts,
    files: &mut Vec<FileEntry>,
) -> Result<(), Error> {
    let mut after: Option<BlobHash> = None;
    loop {
        let page = handle.block_on(snapshot.blobs(after.as_ref(), options.limits.blobs_page_max))?;
        let Some(last) = page.last() else { break };
        after = Some(last.hash);
        for blob in &page {
            let file_name = match sealer {
                Some(sealer) => sealer.blob_name(&blob.hash),
                None => format::plain_blob_name(&blob.hash),
            };
            let held =
                base.as_ref().and_then(|base| base.blob_files.get(&file_name)).map(|(location, _)| location.clone());
            let location = match held {
                Some(location) => location,
                None => {
                    let content = handle.block_on(snapshot.read_blob(&blob.hash))?;
                    let content = content
                        .ok_or_else(|| Error::Damaged(format!("blob {} vanished from the snapshot", blob.hash)))?;
                    let path = format::blob_path(&file_name);
                    let dir = partial.join(&path[..path.len() - file_name.len() - 1]);
                    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
                    let mut output = Output::create(partial, &path, sealer)?;
                    output.writer().write_all(&content).map_err(Error::io(partial.join(&path)))?;
                    files.push(output.finish(&path).map_err(Error::io(partial.join(&path)))?);
                    counts.blobs_written += 1;
                    format!("{name}/{path}")
                }
            };
            counts.blobs += 1;
            if let Some(progress) = &options.progress {
                progress.blobs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let now = StateBlob { bytes: blob.size, refs: blob.refcount, file: location };
            let before = base.as_mut().and_then(|base| base.state.blobs.remove(&blob.hash));
            if before.as_ref() == Some(&now) {
                continue;
            }
            let line = IndexLine {
                blob: Some(blob.hash.to_hex()),
                bytes: Some(now.bytes),
                refs: Some(now.refs),
                file: Some(now.file),
                ..IndexLine::default()
            };
            write_line(index.writer(), &line)?;
            counts.index_lines += 1;
        }
    }
    // Blobs the base held and the store no longer does.
    let mut gone: Vec<BlobHash> =
        base.map(|base| base.state.blobs.drain().map(|(hash, _)| hash).collect()).unwrap_or_default();
    gone.sort_unstable();
    for hash in gone {
        let line = IndexLine { blob: Some(hash.to_hex()), refs: Some(0), ..IndexLine::default() };
        write_line(index.writer(), &line)?;
        counts.index_lines += 1;
    }
    Ok(())
}

fn write_line(out: &mut dyn Write, line: &IndexLine) -> Result<(), Error> {
    serde_json::to_writer(&mut *out, line).map_err(|e| Error::Io { path: INDEX.into(), source: e.into() })?;
    out.write_all(b"\n").map_err(Error::io(INDEX))
}

/// Relative file names in errors become paths inside the backup being written.
fn in_file(error: Error, dir: &Path) -> Error {
    match error {
        Error::Io { path, source } if path.is_relative() => Error::Io { path: dir.join(path), source },
        other => other,
    }
}

/// Makes the files durable, writes the manifest and renames the directory: until then the
/// set holds no new backup. Returns the bytes of the backup.
fn finish_backup(set: &Path, partial: &Path, name: &str, manifest: &Manifest) -> Result<u64, Error> {
    // One syncfs for the thousands of files rather than an fsync each.
    sync_filesystem(partial)?;
    let manifest_path = partial.join(MANIFEST);
    let mut text =
        serde_json::to_vec_pretty(manifest).map_err(|e| Error::Io { path: manifest_path.clone(), source: e.into() })?;
    text.push(b'\n');
    let file = std::fs::File::create(&manifest_path).map_err(Error::io(&manifest_path))?;
    (&file).write_all(&text).map_err(Error::io(&manifest_path))?;
    file.sync_all().map_err(Error::io(&manifest_path))?;
    let done = set.join(name);
    std::fs::rename(partial, &done).map_err(Error::io(&done))?;
    std::fs::File::open(set).and_then(|dir| dir.sync_all()).map_err(Error::io(set))?;
    Ok(manifest.files.iter().map(|file| file.bytes).sum::<u64>() + text.len() as u64)
}

fn sync_filesystem(dir: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let handle = std::fs::File::open(dir).map_err(Error::io(dir))?;
    // SAFETY: syncfs takes a file descriptor we own for the duration of the call.
    let res = unsafe { libc::syncfs(handle.as_raw_fd()) };
    if res != 0 {
        return Err(Error::Io { path: dir.to_path_buf(), source: std::io::Error::last_os_error() });
    }
    Ok(())
}

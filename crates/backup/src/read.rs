//! Reading a backup's files back: each checked against its manifest entry, decrypted if
//! need be; and the state a chain of indexes describes.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read};
use std::sync::{Arc, Mutex};

use hameau_store::BlobHash;

use crate::crypt::Opener;
use crate::format::{self, Backup, HashingReader, INDEX, IndexLine, Kind, RECORDS};
use crate::{Error, Limits};

/// What a chain of indexes says the store held: key digests, and blobs with their counts
/// and files.
#[derive(Default)]
pub(crate) struct State {
    pub keys: HashSet<[u8; 16]>,
    pub blobs: HashMap<BlobHash, StateBlob>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StateBlob {
    pub bytes: u64,
    pub refs: u64,
    /// Relative to the set.
    pub file: String,
}

/// Replays a chain, full backup first: the full backup's index; then for each incremental
/// backup, the keys of its records (written or new since its base) and its index (keys and
/// blobs gone, blobs new or changed).
pub(crate) fn state(chain: &[Backup], opener: Option<&Opener>, limits: &Limits) -> Result<State, Error> {
    let mut state = State::default();
    for backup in chain {
        if backup.manifest.kind == Kind::Incremental {
            record_keys(backup, opener, limits, &mut state)?;
        }
        let path = name_in(backup, INDEX);
        let mut file = open_checked(backup, &path, opener)?;
        let mut line = Vec::new();
        let bad = |problem: String| Error::format(backup.dir.join(&path), problem);
        while format::read_line(&mut file.reader, &mut line, limits.line_bytes_max).map_err(|e| bad(e.to_string()))? {
            let parsed: IndexLine = serde_json::from_slice(&line).map_err(|e| bad(format!("an index line: {e}")))?;
            apply(&mut state, parsed).map_err(bad)?;
        }
        file.check()?;
    }
    Ok(state)
}

/// Adds the keys of a backup's records to the state.
fn record_keys(backup: &Backup, opener: Option<&Opener>, limits: &Limits, state: &mut State) -> Result<(), Error> {
    let path = name_in(backup, RECORDS);
    let mut file = open_checked(backup, &path, opener)?;
    let mut line = Vec::new();
    let bad = |problem: String| Error::format(backup.dir.join(&path), problem);
    while format::read_line(&mut file.reader, &mut line, limits.line_bytes_max).map_err(|e| bad(e.to_string()))? {
        let entry = format::parse_record(&line).map_err(bad)?;
        state.keys.insert(format::key_digest(&entry.key));
    }
    file.check()
}

fn apply(state: &mut State, line: IndexLine) -> Result<(), String> {
    match line {
        IndexLine { key_digest: Some(digest), deleted, blob: None, bytes: None, refs: None, file: None } => {
            let mut bytes = [0u8; 16];
            hex::decode_to_slice(&digest, &mut bytes).map_err(|_| format!("key digest {digest:?}"))?;
            if deleted == Some(true) {
                state.keys.remove(&bytes);
            } else {
                state.keys.insert(bytes);
            }
        }
        IndexLine { key_digest: None, deleted: None, blob: Some(blob), bytes, refs: Some(refs), file } => {
            let hash = BlobHash::from_hex(&blob).ok_or_else(|| format!("blob hash {blob:?}"))?;
            match (refs, bytes, file) {
                (0, _, _) => {
                    state.blobs.remove(&hash);
                }
                (refs, Some(bytes), Some(file)) if format::is_safe_relative(&file) => {
                    state.blobs.insert(hash, StateBlob { bytes, refs, file });
                }
                _ => return Err(format!("blob {blob}: a file inside the set and a size are needed")),
            }
        }
        _ => return Err("an index line is neither a key nor a blob".into()),
    }
    Ok(())
}

/// A file name as a backup holds it: `.age` when encrypted.
pub(crate) fn name_in(backup: &Backup, base: &str) -> String {
    match backup.manifest.encryption {
        Some(_) => format!("{base}{}", format::AGE_SUFFIX),
        None => base.to_string(),
    }
}

/// Opens a file of a backup, to be checked against its manifest entry once read
/// ([`Checked::check`]).
pub(crate) fn open_checked<'a>(backup: &Backup, path: &str, opener: Option<&'a Opener>) -> Result<Checked<'a>, Error> {
    let entry = backup.manifest.files.iter().find(|file| file.path == path);
    let entry = entry.ok_or_else(|| Error::Damaged(format!("{}: {path} is not in its manifest", backup.name)))?;
    let full = backup.dir.join(path);
    let file = std::fs::File::open(&full).map_err(Error::io(&full))?;
    let hashing = Arc::new(Mutex::new(HashingReader::new(file)));
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
pub(crate) struct Checked<'a> {
    pub reader: BufReader<Box<dyn Read + 'a>>,
    hashing: Arc<Mutex<HashingReader<std::fs::File>>>,
    sha256: String,
    bytes: u64,
    path: std::path::PathBuf,
}

impl Checked<'_> {
    /// Reads what is left (age stops at its last chunk) and compares with the manifest.
    pub fn check(mut self) -> Result<(), Error> {
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
struct SharedReader(Arc<Mutex<HashingReader<std::fs::File>>>);

impl Read for SharedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.lock().expect("one reader").read(buf)
    }
}

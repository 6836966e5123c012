//! Checking a backup set (or one backup's chain) against its manifests, without any key.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::format::{self, MANIFEST};

/// What is wrong with one file or backup.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Finding {
    /// A file the manifest lists is not there.
    Missing { path: PathBuf },
    /// A file's size or SHA-256 is not what the manifest says.
    Corrupt { path: PathBuf, expected_sha256: String, found_sha256: String, expected_bytes: u64, found_bytes: u64 },
    /// A manifest cannot be read, or a chain cannot be followed to its full backup.
    Unreadable { path: PathBuf, reason: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { path } => write!(f, "missing: {}", path.display()),
            Finding::Corrupt { path, expected_bytes, found_bytes, .. } if expected_bytes != found_bytes => {
                write!(f, "corrupt: {} ({found_bytes} bytes, the manifest says {expected_bytes})", path.display())
            }
            Finding::Corrupt { path, .. } => {
                write!(f, "corrupt: {} (SHA-256 differs from the manifest)", path.display())
            }
            Finding::Unreadable { path, reason } => write!(f, "unreadable: {}: {reason}", path.display()),
        }
    }
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub backups: Vec<String>,
    pub files: u64,
    pub bytes: u64,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks every file of every backup in `path` (a set), or of the chain of one backup
/// (`path` holds a manifest): present, of the size and SHA-256 its manifest lists, and each
/// incremental backup's base present and unchanged. Needs no key: an encrypted backup's
/// manifest lists the encrypted files' hashes.
pub fn verify(path: &Path, manifest_bytes_max: u64) -> Result<VerifyReport, Error> {
    let mut report = VerifyReport::default();
    let (set, names) = if path.join(MANIFEST).is_file() {
        let (set, last) = format::locate(path)?;
        match format::chain(&set, &last, manifest_bytes_max) {
            Ok(chain) => (set, chain.into_iter().map(|backup| backup.name).collect()),
            Err(e) => {
                report.findings.push(Finding::Unreadable { path: path.to_path_buf(), reason: e.to_string() });
                (set, vec![last])
            }
        }
    } else {
        let names = format::list_backups(path)?;
        if names.is_empty() {
            return Err(Error::NoBackup(path.to_path_buf()));
        }
        for name in &names {
            if let Err(e) = format::chain(path, name, manifest_bytes_max) {
                report.findings.push(Finding::Unreadable { path: path.join(name), reason: e.to_string() });
            }
        }
        (path.to_path_buf(), names)
    };
    for name in &names {
        let dir = set.join(name);
        let backup = match format::read_manifest(&dir, manifest_bytes_max) {
            Ok(backup) => backup,
            Err(e) => {
                report.findings.push(Finding::Unreadable { path: dir.join(MANIFEST), reason: e.to_string() });
                continue;
            }
        };
        report.backups.push(name.clone());
        for file in &backup.manifest.files {
            let path = dir.join(&file.path);
            report.files += 1;
            match format::hash_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => report.findings.push(Finding::Missing { path }),
                Err(e) => report.findings.push(Finding::Unreadable { path, reason: e.to_string() }),
                Ok((sha256, bytes)) => {
                    report.bytes += bytes;
                    if sha256 != file.sha256 || bytes != file.bytes {
                        report.findings.push(Finding::Corrupt {
                            path,
                            expected_sha256: file.sha256.clone(),
                            found_sha256: sha256,
                            expected_bytes: file.bytes,
                            found_bytes: bytes,
                        });
                    }
                }
            }
        }
    }
    Ok(report)
}

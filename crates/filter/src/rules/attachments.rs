//! Dangerous attachments (ATTACHMENT_DANGEROUS, ATTACHMENT_MACRO) and what zip archives
//! hold (ARCHIVE_DANGEROUS, ARCHIVE_ENCRYPTED).
//!
//! A name is dangerous by its last extension ([`DANGEROUS_EXTENSIONS`]), by a right-to-left
//! override character (`facture\u{202e}exe.pdf` shows as `facturefdp.exe`), and is
//! macro-enabled by its extension ([`MACRO_EXTENSIONS`]). The content is sniffed where it
//! is cheap: a Windows executable (`MZ`) under any name; a zip (`PK\x03\x04`: `.zip`, and
//! OOXML Office files under any extension) whose entries are listed; an OLE2 Office file
//! (`.doc`, `.xls` of before 2007) holding a VBA project (its `_VBA_PROJECT` stream name).
//! 7z and RAR archives are not opened (no well-kept lean reader; their names inside cannot
//! be checked): only their own names are.
//!
//! The zip reader is a small one written here over `flate2` (already the workspace's)
//! rather than the `zip` crate: it needs only the central directory (names, flags, sizes)
//! and, for nested archives and Office files, one bounded inflate, and it keeps every
//! bound in our hands: at most `zip_entries_max` entries a archive, `zip_depth_max`
//! archives deep (a work list, no recursion), `zip_inflated_bytes_max` bytes inflated per
//! message (a zip bomb stops there). Zip64 archives are listed from their classic
//! directory only (their members over 4 GiB are not opened).

use std::borrow::Cow;
use std::io::Read;

use super::{Findings, symbol};
use crate::search::find;
use crate::{Action, Limits};

/// Executables, scripts, shortcuts, installers and disk images: what runs or mounts when
/// opened on Windows, macOS or Android. `.url` (an Internet shortcut) is in: it is how
/// phishing hides a link from filters.
pub const DANGEROUS_EXTENSIONS: &[&str] = &[
    "exe",
    "scr",
    "com",
    "pif",
    "bat",
    "cmd",
    "vbs",
    "vbe",
    "js",
    "jse",
    "wsf",
    "wsh",
    "hta",
    "ps1",
    "psm1",
    "msi",
    "msp",
    "mst",
    "lnk",
    "url",
    "iso",
    "img",
    "vhd",
    "vhdx",
    "jar",
    "cpl",
    "reg",
    "apk",
    "app",
    "dmg",
    "pkg",
    "inf",
    "scf",
    "chm",
    "gadget",
    "msc",
    "xll",
    "appx",
    "msix",
    "appref-ms",
    "application",
    "library-ms",
    "settingcontent-ms",
    "sys",
    "dll",
    "ocx",
];

/// Office formats that carry macros by design.
pub const MACRO_EXTENSIONS: &[&str] =
    &["docm", "dotm", "xlsm", "xltm", "xlam", "xlsb", "pptm", "potm", "ppsm", "ppam", "sldm"];

/// Names inside an archive worth inflating to look into: archives and Office files.
const OPENED_EXTENSIONS: &[&str] = &[
    "zip", "docx", "docm", "dotx", "dotm", "xlsx", "xlsm", "xltx", "xltm", "xlam", "pptx", "pptm", "ppsx", "ppsm",
    "potx", "potm", "doc", "xls", "ppt", "dot", "xlt",
];

const OLE_MAGIC: &[u8] = &[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// "_VBA_PROJECT" as an OLE2 directory entry name (UTF-16LE).
const VBA_STREAM: &[u8] = b"_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";

/// What the archives of one message may still cost.
pub struct Budget {
    entries_max: usize,
    depth_max: usize,
    inflated_left: usize,
}

impl Budget {
    pub fn new(limits: &Limits) -> Budget {
        Budget {
            entries_max: limits.zip_entries_max,
            depth_max: limits.zip_depth_max,
            inflated_left: limits.zip_inflated_bytes_max,
        }
    }
}

/// The checks of one attachment named `name` (maybe empty) with decoded `content`.
pub(crate) fn check(name: &str, content: &[u8], budget: &mut Budget, findings: &mut Findings) {
    let lower = check_name(name, findings);
    let extension = extension(&lower);
    if content.starts_with(b"MZ") && !DANGEROUS_EXTENSIONS.contains(&extension) {
        findings.add(symbol::ATTACHMENT_DANGEROUS, || format!("{name:?} is a Windows executable"));
        findings.require(Action::Quarantine);
    }
    if content.starts_with(OLE_MAGIC) && find(content, VBA_STREAM).is_some() {
        findings.add(symbol::ATTACHMENT_MACRO, || format!("{name:?} holds a VBA macro project"));
        findings.require(Action::Quarantine);
    }
    if content.starts_with(ZIP_MAGIC) || extension == "zip" {
        archive(name, content, budget, findings);
    }
}

/// The checks on a name alone; gives it lower case.
pub(crate) fn check_name(name: &str, findings: &mut Findings) -> String {
    let lower = clean(name);
    if name.contains(['\u{202e}', '\u{202d}']) {
        findings.add(symbol::ATTACHMENT_DANGEROUS, || format!("{name:?} hides its extension (right-to-left override)"));
        findings.require(Action::Quarantine);
    }
    let extension = extension(&lower);
    if DANGEROUS_EXTENSIONS.contains(&extension) {
        let double = lower.rsplit('.').nth(1).is_some_and(|inner| inner.len() <= 4 && lower.matches('.').count() >= 2);
        findings.add(symbol::ATTACHMENT_DANGEROUS, || {
            if double {
                format!("{name:?} hides .{extension} behind another extension")
            } else {
                format!("{name:?} is a .{extension}")
            }
        });
        findings.require(Action::Quarantine);
    } else if MACRO_EXTENSIONS.contains(&extension) {
        findings.add(symbol::ATTACHMENT_MACRO, || format!("{name:?} is a macro-enabled Office file"));
        findings.require(Action::Quarantine);
    }
    lower
}

/// Lower case, without the dots and spaces Windows drops at the end of a name
/// (`virus.exe.` runs as `virus.exe`).
fn clean(name: &str) -> String {
    name.trim().trim_end_matches(['.', ' ', '\0']).to_lowercase()
}

fn extension(lower: &str) -> &str {
    lower.rsplit_once('.').map_or("", |(_, extension)| extension)
}

/// One archive to list: its bytes, its depth (0: the attachment) and the name shown.
struct Pending<'c> {
    bytes: Cow<'c, [u8]>,
    depth: usize,
    name: String,
}

/// The entries of the zip `content` and of the archives and Office files inside it.
fn archive(name: &str, content: &[u8], budget: &mut Budget, findings: &mut Findings) {
    let mut pending = vec![Pending { bytes: Cow::Borrowed(content), depth: 0, name: name.to_owned() }];
    while let Some(current) = pending.pop() {
        let Some(entries) = central_directory(&current.bytes) else { continue };
        for (index, entry) in entries.enumerate() {
            if index >= budget.entries_max {
                findings.limit("zip_entries_max");
                break;
            }
            let Some(entry) = entry else { break };
            let entry_name = String::from_utf8_lossy(entry.name).into_owned();
            let lower = clean(&entry_name);
            let extension = extension(&lower);
            let shown = format!("{}/{}", current.name, entry_name);
            if entry.flags & 1 == 1 {
                findings.add(symbol::ARCHIVE_ENCRYPTED, || format!("{shown:?} is encrypted"));
            }
            if DANGEROUS_EXTENSIONS.contains(&extension)
                || MACRO_EXTENSIONS.contains(&extension)
                || entry_name.contains('\u{202e}')
            {
                findings.add(symbol::ARCHIVE_DANGEROUS, || format!("{shown:?} in an archive"));
                findings.require(Action::Quarantine);
            }
            // An OOXML file keeps its macros in `…/vbaProject.bin`.
            if lower.ends_with("vbaproject.bin") {
                if current.depth == 0 {
                    findings.add(symbol::ATTACHMENT_MACRO, || format!("{name:?} holds a VBA macro project"));
                } else {
                    findings
                        .add(symbol::ARCHIVE_DANGEROUS, || format!("{:?} in an archive holds macros", current.name));
                }
                findings.require(Action::Quarantine);
            }
            if entry.flags & 1 == 1 || !OPENED_EXTENSIONS.contains(&extension) {
                continue;
            }
            if current.depth >= budget.depth_max {
                findings.limit("zip_depth_max");
                continue;
            }
            let Some(inner) = inflate(&current.bytes, &entry, budget, findings) else { continue };
            if inner.starts_with(OLE_MAGIC) && find(&inner, VBA_STREAM).is_some() {
                findings.add(symbol::ARCHIVE_DANGEROUS, || format!("{shown:?} in an archive holds macros"));
                findings.require(Action::Quarantine);
            } else if inner.starts_with(ZIP_MAGIC) {
                pending.push(Pending { bytes: Cow::Owned(inner), depth: current.depth + 1, name: shown });
            }
        }
    }
}

/// One central-directory entry.
struct Entry<'z> {
    name: &'z [u8],
    flags: u16,
    method: u16,
    compressed_bytes: usize,
    local_offset: usize,
}

/// The entries of a zip's central directory (APPNOTE.TXT §4.3.12, §4.3.16); `None`
/// without an end record; an item `None` where the directory is broken (the listing
/// stops there).
fn central_directory(zip: &[u8]) -> Option<impl Iterator<Item = Option<Entry<'_>>>> {
    // The end record is the last 22 bytes but for a comment of at most 65,535 bytes.
    let search_from = zip.len().saturating_sub(22 + 65_535);
    let end = zip[search_from..].windows(4).rposition(|w| w == b"PK\x05\x06").map(|at| search_from + at)?;
    let record = zip.get(end..end + 22)?;
    let n_entries = u16_at(record, 10)? as usize;
    let directory_offset = u32_at(record, 16)? as usize;
    let mut at = directory_offset;
    let mut broken = false;
    Some((0..n_entries).map_while(move |_| {
        if broken {
            return None;
        }
        let entry = entry_at(zip, at);
        match &entry {
            Some((_, next)) => at = *next,
            None => broken = true,
        }
        Some(entry.map(|(entry, _)| entry))
    }))
}

fn entry_at(zip: &[u8], at: usize) -> Option<(Entry<'_>, usize)> {
    let header = zip.get(at..at.checked_add(46)?)?;
    if &header[..4] != b"PK\x01\x02" {
        return None;
    }
    let name_length = u16_at(header, 28)? as usize;
    let extra_length = u16_at(header, 30)? as usize;
    let comment_length = u16_at(header, 32)? as usize;
    let name = zip.get(at + 46..at + 46 + name_length)?;
    let entry = Entry {
        name,
        flags: u16_at(header, 8)?,
        method: u16_at(header, 10)?,
        compressed_bytes: u32_at(header, 20)? as usize,
        local_offset: u32_at(header, 42)? as usize,
    };
    Some((entry, at + 46 + name_length + extra_length + comment_length))
}

/// The entry's bytes, stored or deflated, within the message's inflate budget;
/// `None` (and FILTER_LIMIT when the budget ran out) otherwise.
fn inflate(zip: &[u8], entry: &Entry<'_>, budget: &mut Budget, findings: &mut Findings) -> Option<Vec<u8>> {
    let local = zip.get(entry.local_offset..entry.local_offset.checked_add(30)?)?;
    if &local[..4] != b"PK\x03\x04" {
        return None;
    }
    let data_at = entry.local_offset + 30 + u16_at(local, 26)? as usize + u16_at(local, 28)? as usize;
    let data = zip.get(data_at..data_at.checked_add(entry.compressed_bytes)?)?;
    let allowed = budget.inflated_left;
    let mut out = Vec::new();
    let read = match entry.method {
        0 => {
            out.extend_from_slice(&data[..data.len().min(allowed.saturating_add(1))]);
            out.len()
        }
        8 => {
            let decoder = flate2::read::DeflateDecoder::new(data);
            decoder.take(allowed as u64 + 1).read_to_end(&mut out).ok()?
        }
        _ => return None,
    };
    if read > allowed {
        budget.inflated_left = 0;
        findings.limit("zip_inflated_bytes_max");
        return None;
    }
    budget.inflated_left -= read;
    Some(out)
}

/// An attachment's name read from its raw part header when mail-parser gave none (a
/// broken RFC 2231 or 2047 encoding): the last `name=` or `filename*=` value, unquoted,
/// percent-decoded where it can be.
pub fn raw_name(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let lower = text.to_ascii_lowercase();
    let at = lower.rfind("name")?;
    let after = &text[at + 4..];
    let value_at = after.find('=')?;
    if !after[..value_at].chars().all(|c| c == '*' || c.is_ascii_digit() || c.is_whitespace()) {
        return None;
    }
    let value = after[value_at + 1..].trim_start();
    let value = value.split([';', '\r', '\n']).next().unwrap_or("").trim().trim_matches('"');
    // RFC 2231: charset'language'percent-encoded.
    let value = value.splitn(3, '\'').last().unwrap_or(value);
    let mut bytes = Vec::with_capacity(value.len());
    let raw = value.as_bytes();
    let mut index = 0;
    while index < raw.len() {
        let decoded = (raw[index] == b'%')
            .then(|| raw.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                bytes.push(byte);
                index += 3;
            }
            None => {
                bytes.push(raw[index]);
                index += 1;
            }
        }
    }
    let name = String::from_utf8_lossy(&bytes).into_owned();
    (!name.is_empty()).then_some(name)
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

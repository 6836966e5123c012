//! The verification report: per folder, what the source holds, what was copied, what was
//! there already, what was skipped and why, and the comparison of the source's contents
//! with Hameau's. Serialised as JSON (`--report`, the API's jobs) and rendered for people
//! in French then English ([`Report::render`]).

use hameau_mailbox::Role;
use serde::Serialize;

use crate::mapping::FolderKind;

/// The exit status of `hameau import` when the import ran but is not complete (a folder
/// refused, a message skipped, a difference found); 0 when complete, 1 when it could not
/// run at all (a bad argument, the store locked) or read nothing (a refused login: the
/// report has an error and no folder).
pub const EXIT_INCOMPLETE: u8 = 3;

/// The report of one account's import.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The Hameau account (its address).
    pub account: String,
    /// The source, without its password (`imaps://host:993 as user`, a file path).
    pub source: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    pub finished_at: u64,
    pub folders: Vec<FolderReport>,
    /// Why the account stopped before the end, if it did (a refused login, the connection
    /// lost too often, a cancellation).
    pub error: Option<String>,
    /// Everything on the source is in Hameau, byte for byte where contents were compared.
    pub complete: bool,
}

/// One source folder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FolderReport {
    /// Its name on the source, decoded, with `/` between levels.
    pub source: String,
    /// The Hameau mailbox its messages went to; `None` for a folder not copied as such
    /// (Gmail's "All Mail", whose messages found nowhere else go to the archive, and views).
    pub target: Option<String>,
    pub kind: Option<FolderKind>,
    pub role: Option<Role>,
    pub uid_validity: u32,
    /// Messages listed on the source at the import.
    pub on_source: u64,
    /// Copied by this run.
    pub copied: u64,
    /// Copied by an earlier run (by UIDVALIDITY and UID, or by content hash when the
    /// UIDVALIDITY changed).
    pub already_there: u64,
    /// Found in another folder (Gmail "All Mail": the message has a label): not copied again.
    pub elsewhere: u64,
    /// Bytes copied by this run.
    pub copied_bytes: u64,
    /// Messages not copied, each with why.
    pub skipped: Vec<Skipped>,
    /// Why the folder as a whole was not read (the server answered NO to EXAMINE, a limit).
    pub error: Option<String>,
    /// Why the folder is not copied, when by design (a view of other folders' messages).
    pub note: Option<String>,
    pub verification: Option<Verification>,
    pub complete: bool,
}

/// A message left out, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    /// Its UID on the source (its position in a file for mbox).
    pub uid: u32,
    pub size: u64,
    pub reason: String,
}

/// What the source serves now compared with what Hameau holds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    /// Messages listed on the source at the verification.
    pub on_source: u64,
    /// Of those, recorded as copied (or found elsewhere).
    pub recorded: u64,
    /// Fetched again and hashed (0 with `migrate.verify_contents = false`).
    pub compared: u64,
    /// Whose SHA-256 equals the one recorded, and which Hameau's mailbox holds.
    pub matching: u64,
    /// UIDs whose content differs from the record, or that Hameau no longer holds.
    pub mismatched: Vec<u32>,
    /// UIDs on the source with no record (not copied).
    pub missing: Vec<u32>,
    /// Why contents were not (all) compared, if they were not.
    pub note: Option<String>,
}

impl FolderReport {
    /// Complete when nothing was skipped, the folder was read, and the verification
    /// found nothing missing or different.
    pub fn settle(&mut self) {
        let verified = match &self.verification {
            Some(v) => v.mismatched.is_empty() && v.missing.is_empty() && v.note.is_none(),
            None => self.note.is_some(),
        };
        self.complete = self.error.is_none() && self.skipped.is_empty() && verified;
    }
}

impl Report {
    /// Ends an import's report, whichever source it read: the run's error if it failed
    /// (a cancellation included), the progress at `Done`, the finish time and the verdicts.
    pub(crate) fn close(&mut self, outcome: Result<(), crate::Error>, progress: &crate::Progress, now: u64) {
        if let Err(e) = outcome {
            self.error = Some(e.to_string());
        }
        progress.set_phase(crate::Phase::Done);
        self.finished_at = now;
        self.settle();
    }

    pub fn settle(&mut self) {
        for folder in &mut self.folders {
            folder.settle();
        }
        self.complete = self.error.is_none() && self.folders.iter().all(|folder| folder.complete);
    }

    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for folder in &self.folders {
            totals.on_source += folder.on_source;
            totals.copied += folder.copied;
            totals.already_there += folder.already_there;
            totals.elsewhere += folder.elsewhere;
            totals.skipped += folder.skipped.len() as u64;
            totals.copied_bytes += folder.copied_bytes;
        }
        totals
    }

    /// The report for people: French, then English, one line per folder and one per
    /// problem.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let totals = self.totals();
        // French first, then English: the same lines, in each language's words.
        for french in [true, false] {
            let (verdict, header, counts, stopped) = if french {
                let verdict = if self.complete { "COMPLET" } else { "INCOMPLET" };
                (
                    verdict,
                    "Import de {a} depuis {s} : ",
                    "messages sur la source, {c} copiés, {t} déjà là, {e} ailleurs (libellés), {k} ignorés",
                    "arrêté : ",
                )
            } else {
                let verdict = if self.complete { "COMPLETE" } else { "INCOMPLETE" };
                (
                    verdict,
                    "Import of {a} from {s}: ",
                    "messages on the source, {c} copied, {t} already there, {e} elsewhere (labels), {k} skipped",
                    "stopped: ",
                )
            };
            let header = header.replace("{a}", &self.account).replace("{s}", &self.source);
            out.push_str(&format!("{header}{verdict}\n"));
            let counts = counts
                .replace("{c}", &totals.copied.to_string())
                .replace("{t}", &totals.already_there.to_string())
                .replace("{e}", &totals.elsewhere.to_string())
                .replace("{k}", &totals.skipped.to_string());
            out.push_str(&format!("  {} {counts}\n", totals.on_source));
            if let Some(error) = &self.error {
                out.push_str(&format!("  {stopped}{error}\n"));
            }
            for folder in &self.folders {
                let mark = if folder.complete { "ok " } else { "!! " };
                out.push_str(&format!("  {mark} {}\n", folder_line(folder, french)));
                problems(&mut out, folder, french);
            }
        }
        out
    }
}

/// Sums over the folders.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub on_source: u64,
    pub copied: u64,
    pub already_there: u64,
    pub elsewhere: u64,
    pub skipped: u64,
    pub copied_bytes: u64,
}

fn folder_line(folder: &FolderReport, french: bool) -> String {
    let target = folder.target.as_deref().unwrap_or("-");
    let compared = folder.verification.as_ref().map(|v| (v.compared, v.matching));
    match (french, compared) {
        (true, Some((compared, matching))) => format!(
            "{} -> {target} : {} sur la source, {} copiés, {} déjà là, {} ailleurs, {} ignorés, {matching}/{compared} contenus identiques",
            folder.source,
            folder.on_source,
            folder.copied,
            folder.already_there,
            folder.elsewhere,
            folder.skipped.len()
        ),
        (true, None) => format!(
            "{} -> {target} : {} sur la source, {} copiés, {} déjà là, {} ailleurs, {} ignorés",
            folder.source,
            folder.on_source,
            folder.copied,
            folder.already_there,
            folder.elsewhere,
            folder.skipped.len()
        ),
        (false, Some((compared, matching))) => format!(
            "{} -> {target}: {} on the source, {} copied, {} already there, {} elsewhere, {} skipped, {matching}/{compared} contents identical",
            folder.source,
            folder.on_source,
            folder.copied,
            folder.already_there,
            folder.elsewhere,
            folder.skipped.len()
        ),
        (false, None) => format!(
            "{} -> {target}: {} on the source, {} copied, {} already there, {} elsewhere, {} skipped",
            folder.source,
            folder.on_source,
            folder.copied,
            folder.already_there,
            folder.elsewhere,
            folder.skipped.len()
        ),
    }
}

fn problems(out: &mut String, folder: &FolderReport, french: bool) {
    if let Some(note) = &folder.note {
        out.push_str(&format!("       {}{note}\n", if french { "note : " } else { "note: " }));
    }
    if let Some(error) = &folder.error {
        out.push_str(&format!("       {}{error}\n", if french { "dossier non lu : " } else { "folder not read: " }));
    }
    for skipped in &folder.skipped {
        let (label, unit) = if french { ("ignoré", "o") } else { ("skipped", "B") };
        out.push_str(&format!("       {label} UID {} ({} {unit}): {}\n", skipped.uid, skipped.size, skipped.reason));
    }
    if let Some(verification) = &folder.verification {
        if !verification.missing.is_empty() {
            let label = if french { "absents de Hameau, UID" } else { "missing from Hameau, UIDs" };
            out.push_str(&format!("       {label} {:?}\n", verification.missing));
        }
        if !verification.mismatched.is_empty() {
            let label = if french { "contenus différents, UID" } else { "different contents, UIDs" };
            out.push_str(&format!("       {label} {:?}\n", verification.mismatched));
        }
        if let Some(note) = &verification.note {
            out.push_str(&format!("       {}{note}\n", if french { "vérification : " } else { "verification: " }));
        }
    }
}

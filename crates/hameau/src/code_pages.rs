//! The server's own code in memory (issue 12: an idle server's resident memory).
//!
//! Linux keeps a file's page cache in large folios where the filesystem allows it (ext4
//! and XFS on recent kernels), as large as the readahead window allows (up to 2 MiB), and
//! a page fault in a mapping of the file maps a whole 2 MiB folio at once (one page-table
//! entry for it, `do_set_pmd`), smaller ones by the 64 KiB the kernel maps around a fault.
//! An instruction run once at start then makes hundreds of KiB of the executable resident.
//! Measured on Linux 6.18 (ext4, 8 MiB readahead): touching one page per MiB of a 115 MiB
//! file mapped 87 MiB; an idle `hameau serve` had most of its binary's text resident,
//! where the code it runs once started, idle, is under 0.5 MiB (docs/operations.md).
//!
//! So, with `server.release_start_code` (on by default), `hameau serve`:
//! - at start ([`at_start`]), advises the kernel that its executable's read-only
//!   mappings are read at random (`MADV_RANDOM`): the constants are then read from disk
//!   without readahead and a fault maps its page alone. (Linux 6.18 reads ahead into an
//!   executable mapping all the same, and maps 64 KiB around a fault there: touching one
//!   page per MiB of a 128 MiB file, from a cold page cache, made 0.7 MiB resident mapped
//!   read-only, 8.3 MiB mapped executable, the whole file cached.)
//! - a few seconds after every listener is up ([`release_start_code`]), unmaps the
//!   executable's read-only mappings that hold nothing of the process's own
//!   (`MADV_DONTNEED`, see [`unmap_clean`]), then asks the kernel to drop the file's pages
//!   from its page cache (`POSIX_FADV_DONTNEED`, see [`drop_cached`]): the large folios of
//!   the start go, and the code serving needs comes back as it first runs, 64 KiB or less
//!   at a time.
//!
//! Neither step needs to write the file: the server runs as the `hameau` user from a
//! root-owned `/usr/bin/hameau`. (`MADV_PAGEOUT`, which would do both at once, does
//! nothing for a process that may not open the file for writing: `can_do_file_pageout` in
//! mm/madvise.c. The first version used it, and the installed server kept its code.)
//!
//! The cost is the first run of each piece of code after that: a page read from disk (or
//! from the page cache, where another process keeps it), and no readahead for
//! constants. A failure (an older kernel, no `/proc`) is logged at debug level and
//! changes nothing else.

use std::path::Path;

/// Advises the kernel that the executable's code and constants are read at random.
pub fn at_start() {
    advise(executable_mappings(), Advice::Random);
}

/// How long after the server said "ready" its start-up code is released: the tasks it
/// started (the store's background threads, the listeners' first accepts, the ACME and
/// DNS tasks) run their own start meanwhile. Released at "ready" itself, an idle debug
/// build kept 5 to 8 MiB of code those tasks brought back, in large folios; 3 s later,
/// 0.3 MiB.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(3);

/// Once the server has settled ([`SETTLE`] after "ready"), unmaps the executable's clean
/// mappings and drops the file's pages from the page cache.
pub async fn release_start_code() {
    tokio::time::sleep(SETTLE).await;
    // Unmapping and dropping pages is synchronous work in the kernel: off the runtime's
    // workers.
    let released = tokio::task::spawn_blocking(|| (unmap_clean(), drop_cached())).await;
    let (unmapped, dropped) = released.unwrap_or((0, false));
    tracing::debug!(unmapped, dropped, "start-up code released");
}

/// Asks the kernel to drop the executable's pages from the page cache
/// (`POSIX_FADV_DONTNEED` on the whole file); whether it was asked. The kernel drops only
/// what no process maps (this one no longer does, after [`unmap_clean`]) and nothing dirty:
/// pages are read again from the file as they are needed.
fn drop_cached() -> bool {
    use std::os::fd::AsRawFd as _;
    let file = match std::fs::File::open("/proc/self/exe") {
        Ok(file) => file,
        Err(e) => {
            tracing::debug!(error = %e, "the executable was not opened");
            return false;
        }
    };
    // SAFETY: posix_fadvise reads no memory of ours; the descriptor is open for the call.
    let res = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if res != 0 {
        // posix_fadvise returns the error number rather than setting errno.
        let error = std::io::Error::from_raw_os_error(res);
        tracing::debug!(error = %error, "POSIX_FADV_DONTNEED refused");
    }
    res == 0
}

/// Drops this process's mappings of its executable's pages (`MADV_DONTNEED`), in each
/// read-only mapping of the executable that holds no page of its own; the bytes unmapped.
///
/// For a private mapping of a file, `MADV_DONTNEED` discards the process's own copies of
/// pages (those it wrote: the relocated constants of RELRO are such pages, read-only
/// after the dynamic loader wrote them) and maps the file's pages again when next
/// touched. So a mapping is unmapped only when `/proc/self/smaps` shows it holds no
/// anonymous page, and only a read-only one: nothing can write into it between that
/// reading and the advice, so what comes back is the file's bytes, which are the
/// mapping's whole content. The executable itself cannot change meanwhile: Linux refuses
/// to write to a running program (`ETXTBSY`), and an upgrade replaces the file by a new
/// one.
fn unmap_clean() -> usize {
    advise(clean_executable_mappings(), Advice::Unmap)
}

/// The read-only mappings of this process's executable that hold no anonymous page, as
/// (start, length), from `/proc/self/smaps`.
fn clean_executable_mappings() -> std::io::Result<Vec<(usize, usize)>> {
    of_executable_in_proc_self("smaps", clean_mappings_in)
}

/// Reads `/proc/self/<file>` and picks, with `pick`, the mappings of this process's
/// executable in it.
fn of_executable_in_proc_self(
    file: &str,
    pick: fn(&str, &Path) -> Vec<(usize, usize)>,
) -> std::io::Result<Vec<(usize, usize)>> {
    let executable = std::fs::read_link("/proc/self/exe")?;
    let text = std::fs::read_to_string(Path::new("/proc/self").join(file))?;
    Ok(pick(&text, &executable))
}

/// The read-only mappings of `executable` in the text of a `/proc/PID/smaps` whose
/// `Anonymous:` field is 0. A mapping whose block lacks that field is left alone.
fn clean_mappings_in(smaps: &str, executable: &Path) -> Vec<(usize, usize)> {
    let mut clean = Vec::new();
    // The current block's mapping, if it is one of the executable's read-only ones.
    let mut current = None;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if !first.ends_with(':') {
            // A block's header, in /proc/PID/maps's format.
            current = read_only_mapping_of(line, executable);
        } else if first == "Anonymous:" {
            let kib = line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok());
            if let (Some(mapping), Some(0)) = (current.take(), kib) {
                clean.push(mapping);
            }
        }
    }
    clean
}

/// What [`advise`] tells the kernel of a mapping.
#[derive(Clone, Copy, Debug)]
enum Advice {
    /// `MADV_RANDOM`: read at random; changes no memory contents, only how the kernel
    /// reads the pages in.
    Random,
    /// `MADV_DONTNEED`: for the clean read-only mappings of [`unmap_clean`] only, whose
    /// pages read back from the unchanged file are the same bytes.
    Unmap,
}

/// Applies `advice` to each of `mappings` (found in /proc/self); the bytes advised.
fn advise(mappings: std::io::Result<Vec<(usize, usize)>>, advice: Advice) -> usize {
    let mappings = match mappings {
        Ok(mappings) => mappings,
        Err(e) => {
            tracing::debug!(error = %e, ?advice, "the executable's mappings were not read");
            return 0;
        }
    };
    let flag = match advice {
        Advice::Random => libc::MADV_RANDOM,
        Advice::Unmap => libc::MADV_DONTNEED,
    };
    let mut advised = 0;
    for (start, length) in mappings {
        // SAFETY: each range is one whole mapping of this process's executable, as
        // /proc/self lists it, and the executable's mappings are never unmapped or made
        // writable while the process runs; `Advice` says why each advice keeps the
        // mapping's contents.
        let res = unsafe { libc::madvise(start as *mut libc::c_void, length, flag) };
        if res == 0 {
            advised += length;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::debug!(error = %error, ?advice, start, length, "madvise refused");
        }
    }
    advised
}

/// The read-only mappings of this process's executable, as (start, length).
fn executable_mappings() -> std::io::Result<Vec<(usize, usize)>> {
    of_executable_in_proc_self("maps", |maps, executable| {
        maps.lines().filter_map(|line| read_only_mapping_of(line, executable)).collect()
    })
}

/// A line of /proc/PID/maps ("start-end perms offset dev inode path"): its range if it
/// maps `executable` and is not writable (a writable mapping is the process's own data).
fn read_only_mapping_of(line: &str, executable: &Path) -> Option<(usize, usize)> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    // The path is padded with spaces after the inode, and may hold spaces itself.
    let path = fields.nth(3)?.trim_start();
    if perms.as_bytes().get(1) != Some(&b'-') || Path::new(path) != executable {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then(|| (start, end - start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        let exe = Path::new("/usr/bin/hameau");
        let check = |line: &str| read_only_mapping_of(line, exe);
        assert_eq!(
            check("5592f5234000-5592f5d44000 r--p 00000000 fe:00 1234                       /usr/bin/hameau"),
            Some((0x5592f5234000, 0xb10000))
        );
        assert_eq!(check("7f00-8f00 r-xp 00b0f000 fe:00 1234 /usr/bin/hameau"), Some((0x7f00, 0x1000)));
        assert_eq!(check("7f00-8f00 rw-p 00b0f000 fe:00 1234 /usr/bin/hameau"), None, "its data");
        assert_eq!(check("7f00-8f00 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6"), None, "another file");
        assert_eq!(check("7f00-8f00 rw-p 00000000 00:00 0 "), None, "anonymous");
        assert_eq!(check("7f00-8f00 r-xp 00000000 fe:00 1234 /usr/bin/hameau (deleted)"), None);
        assert_eq!(check("8f00-7f00 r-xp 00000000 fe:00 1234 /usr/bin/hameau"), None, "no range");
        assert_eq!(check("garbage"), None);
        let spaced = Path::new("/opt/mon dossier/hameau");
        assert_eq!(
            read_only_mapping_of("1000-3000 r-xp 0 fe:00 1 /opt/mon dossier/hameau", spaced),
            Some((0x1000, 0x2000))
        );
    }

    #[test]
    fn only_read_only_mappings_without_anonymous_pages_are_unmapped() {
        let exe = Path::new("/usr/bin/hameau");
        let smaps = "\
5592f5234000-5592f5d44000 r--p 00000000 fe:00 1234                       /usr/bin/hameau
Size:              11328 kB
Rss:                 120 kB
Anonymous:             0 kB
VmFlags: rd mr mw me rr
5592f5d44000-5592f7000000 r-xp 00b10000 fe:00 1234                       /usr/bin/hameau
Size:              19184 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me rr
5592f7000000-5592f7100000 r--p 01dcc000 fe:00 1234                       /usr/bin/hameau
Size:               1024 kB
Anonymous:           884 kB
VmFlags: rd mr mw me ac
5592f7100000-5592f7101000 rw-p 01ecc000 fe:00 1234                       /usr/bin/hameau
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 99                         /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000200000-7f0000201000 r--p 00000000 fe:00 1234                       /usr/bin/hameau
Size:                  4 kB
Anonymous:         lots kB
7f0000300000-7f0000301000 r--p 00000000 fe:00 1234                       /usr/bin/hameau
Size:                  4 kB
VmFlags: rd mr
";
        assert_eq!(
            clean_mappings_in(smaps, exe),
            vec![(0x5592f5234000, 0xb10000), (0x5592f5d44000, 0x5592f7000000 - 0x5592f5d44000)],
            "not RELRO's written pages, not the data, not another file, not an unreadable or missing count"
        );
        assert_eq!(clean_mappings_in("", exe), vec![]);
        assert_eq!(clean_mappings_in("Anonymous: 0 kB\nAnonymous: 0 kB\n", exe), vec![], "no header");
    }

    #[test]
    fn this_process_finds_its_own_code_and_advising_it_keeps_it_running() {
        let mappings = executable_mappings().unwrap();
        let here = executable_mappings as fn() -> _ as usize;
        assert!(mappings.iter().any(|(start, length)| (*start..start + length).contains(&here)), "{mappings:?}");
        assert!(advise(executable_mappings(), Advice::Random) > 0);
        // Unmapped and dropped from the page cache, the code and its constants read back
        // the same as they are needed.
        let text = b"le code relu";
        let before = std::hint::black_box(text).to_vec();
        let clean = clean_executable_mappings().unwrap();
        assert!(!clean.is_empty() && clean.iter().all(|m| mappings.contains(m)), "{clean:?} {mappings:?}");
        assert!(unmap_clean() > 0);
        assert!(drop_cached());
        assert_eq!(std::hint::black_box(text).to_vec(), before);
        assert_eq!(executable_mappings().unwrap(), mappings);
    }
}

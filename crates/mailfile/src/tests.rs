use std::path::Path;

use proptest::prelude::*;

use crate::maildir::{crlf, parse_file_name};
use crate::mbox::{MboxReader, Quoting};
use crate::{Format, Limits, MaildirWriter, MboxWriter, SkipReason, SourceMessage, date, mutf7, names, open};

fn read_mbox_with(bytes: &[u8], quoting: Quoting, limits: Limits) -> Vec<Result<SourceMessage, SkipReason>> {
    MboxReader::new(bytes, quoting, limits, "test".into()).map(|res| res.map_err(|skip| skip.reason)).collect()
}

fn read_mbox(bytes: &[u8]) -> Vec<Result<SourceMessage, SkipReason>> {
    read_mbox_with(bytes, Quoting::Mboxrd, Limits::default())
}

fn raws(messages: &[Result<SourceMessage, SkipReason>]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match m {
            Ok(m) => String::from_utf8_lossy(&m.raw).into_owned(),
            Err(reason) => format!("SKIP {reason}"),
        })
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const SEP: &str = "From jean@example.org Thu Jan  1 00:00:00 2015\n";

#[test]
fn mbox_splits_on_dated_from_lines_and_unquotes() {
    let check = |file: &str, quoting: Quoting, expect: &[&str]| {
        assert_eq!(raws(&read_mbox_with(file.as_bytes(), quoting, Limits::default())), expect, "{file:?}");
    };
    let rd = Quoting::Mboxrd;
    // Two messages, the blank line after each removed, line ends made CRLF.
    check(&format!("{SEP}A: 1\n\nun\n\n{SEP}A: 2\n\ndeux\n\n"), rd, &["A: 1\r\n\r\nun\r\n", "A: 2\r\n\r\ndeux\r\n"]);
    // A CRLF file gives the same.
    check(
        &format!("{SEP}A: 1\r\n\r\nun\r\n\r\n").replace(SEP, &SEP.replace('\n', "\r\n")),
        rd,
        &["A: 1\r\n\r\nun\r\n"],
    );
    // mboxrd: one '>' less on every >*From line; other '>' lines untouched.
    check(
        &format!("{SEP}A: 1\n\n>From moi\n>>From toi\n> From x\n\n"),
        rd,
        &["A: 1\r\n\r\nFrom moi\r\n>From toi\r\n> From x\r\n"],
    );
    // mboxo: only >From loses its '>'.
    check(
        &format!("{SEP}A: 1\n\n>From moi\n>>From toi\n\n"),
        Quoting::Mboxo,
        &["A: 1\r\n\r\nFrom moi\r\n>>From toi\r\n"],
    );
    // An unquoted From line without a date is body text (a careless writer).
    check(&format!("{SEP}A: 1\n\nFrom me to you\nbye\n\n"), rd, &["A: 1\r\n\r\nFrom me to you\r\nbye\r\n"]);
    // The last message cut short: skipped with the reason, not stored half.
    check(
        &format!("{SEP}A: 1\n\nun\n\n{SEP}A: 2\n\ndeu"),
        rd,
        &["A: 1\r\n\r\nun\r\n", "SKIP message cut short: the file ends in the middle of a line, after 9 bytes of it"],
    );
    // No blank line before the separator (broken writer): nothing taken from the message.
    check(&format!("{SEP}A: 1\n\nun\n{SEP}A: 2\n\ndeux\n"), rd, &["A: 1\r\n\r\nun\r\n", "A: 2\r\n\r\ndeux\r\n"]);
    // mboxcl2 with Content-Length: split on the separators all the same, header kept.
    check(
        &format!("{SEP}Content-Length: 999\n\nun\n\n{SEP}A: 2\n\ndeux\n\n"),
        rd,
        &["Content-Length: 999\r\n\r\nun\r\n", "A: 2\r\n\r\ndeux\r\n"],
    );
    // Empty files and empty messages.
    check("", rd, &[]);
    check(SEP, rd, &[""]);
    check(&format!("{SEP}\n{SEP}A: 2\n"), rd, &["", "A: 2\r\n"]);
    // Not an mbox.
    check("Subject: hello\n\nbody\n", rd, &["SKIP not an mbox file (no `From ` line at its start)"]);
}

#[test]
fn mbox_dates_come_from_the_from_line() {
    let check = |line: &str, expect: Option<u64>| {
        assert_eq!(date::parse_from_line(line.as_bytes()), expect, "{line:?}");
    };
    check("MAILER-DAEMON Thu Jan  1 00:00:00 1970", Some(0));
    check("- Mon Nov 30 14:45:00 2026", Some(1_796_049_900));
    check("jean@example.org Sat Jan  3 01:05:34 1996", Some(820_631_134));
    check("jean@example.org Sat Jan  3 01:05:34 1996 +0100", Some(820_631_134 - 3600));
    check("jean@example.org Sat Jan  3 01:05 1996", Some(820_631_100));
    check("jean@example.org Sat Jan 3 01:05:34 MET DST 1996", Some(820_631_134));
    check("jean@example.org Sat, 3 Jan 1996 01:05:34 +0000", Some(820_631_134));
    check("me to you", None);
    check("a Feb 31 25:00:00 2000", None);
    check("a Jan 1 00:00:00", None);
    check("", None);
    for seconds in [0, 59, 86_399, 951_782_400, 1_796_049_900, 4_102_444_800] {
        let line = format!("x {}", date::asctime(seconds));
        assert_eq!(date::parse_from_line(line.as_bytes()), Some(seconds), "{line}");
    }
    assert_eq!(date::asctime(0), "Thu Jan  1 00:00:00 1970");
    assert_eq!(date::asctime(951_782_400), "Tue Feb 29 00:00:00 2000");
}

#[test]
fn mbox_flags_from_status_headers_are_read_and_removed() {
    let check = |headers: &str, flags: &[&str], keywords: &[&str]| {
        let file = format!("{SEP}Subject: x\n{headers}To: y\n\nbody\nStatus: RO\n\n");
        let messages = read_mbox(file.as_bytes());
        let message = messages[0].as_ref().unwrap();
        assert_eq!(String::from_utf8_lossy(&message.raw), "Subject: x\r\nTo: y\r\n\r\nbody\r\nStatus: RO\r\n");
        assert_eq!(message.flags, strings(flags), "{headers}");
        assert_eq!(message.keywords, strings(keywords), "{headers}");
        assert_eq!(message.internal_date, Some(1_420_070_400));
    };
    check("", &[], &[]);
    // mutt, Pine, Dovecot.
    check("Status: RO\n", &["\\Seen"], &[]);
    check("Status: O\nX-Status: AFTD\n", &["\\Answered", "\\Flagged", "\\Deleted", "\\Draft"], &[]);
    check("X-Keywords: urgent $Forwarded\n", &[], &["urgent", "$Forwarded"]);
    check("X-Keywords: a,b\n\tc\n", &[], &["a", "b", "c"]);
    check("X-UID: 12\nX-IMAPbase: 1 2 urgent\n", &[], &[]);
    // Thunderbird: read, replied, marked; forwarded; the keys; MDN sent and label 2.
    check("X-Mozilla-Status: 0007\n", &["\\Seen", "\\Answered", "\\Flagged"], &[]);
    check("X-Mozilla-Status: 1001\nX-Mozilla-Status2: 00000000\n", &["\\Seen"], &["$Forwarded"]);
    check(
        "X-Mozilla-Status2: 04800000\nX-Mozilla-Keys: $label1 projet                \n",
        &[],
        &["$MDNSent", "$label2", "$label1", "projet"],
    );
    check("X-Mozilla-Status: zz\n", &[], &[]);
    // A keyword that is no IMAP atom is dropped.
    check("X-Keywords: ok (bad) a\\b\n", &[], &["ok"]);
    // Keywords are case-insensitive: one of each.
    check("X-Keywords: Urgent urgent URGENT\n", &[], &["Urgent"]);
}

#[test]
fn mbox_skips_what_is_over_a_limit_and_goes_on() {
    let limits = Limits { message_bytes_max: 1024, line_bytes_max: 1000, messages_max: 3, ..Limits::default() };
    let big = "x".repeat(100);
    let mut file = format!("{SEP}A: 1\n\nun\n\n{SEP}A: 2\n\n");
    for _ in 0..20 {
        file.push_str(&big);
        file.push('\n');
    }
    file.push_str(&format!("\n{SEP}A: 3\n\n{}\n\n", "y".repeat(5000)));
    file.push_str(&format!("{SEP}A: 4\n\nquatre\n\n{SEP}A: 5\n\n"));
    let messages = read_mbox_with(file.as_bytes(), Quoting::Mboxrd, limits);
    assert_eq!(messages.len(), 4);
    assert!(messages[0].is_ok());
    assert!(matches!(messages[1], Err(SkipReason::TooLarge { bytes, max: 1024 }) if bytes > 2000), "{:?}", messages[1]);
    assert_eq!(messages[2], Err(SkipReason::LineTooLong { max: 1000 }));
    assert_eq!(messages[3], Err(SkipReason::TooManyMessages { max: 3 }));
    // Thunderbird's deleted-not-compacted message is skipped; the next one is read.
    let file = format!("{SEP}X-Mozilla-Status: 0009\nA: 1\n\nun\n\n{SEP}A: 2\n\n");
    let messages = read_mbox(file.as_bytes());
    assert_eq!(messages[0], Err(SkipReason::DeletedByThunderbird));
    assert_eq!(raws(&messages[1..]), ["A: 2\r\n"]);
    // A header of a hundred thousand keywords is read up to the limit, the message skipped.
    let words: Vec<String> = (0..100_000).map(|n| format!("k{n}")).collect();
    let file = format!("{SEP}X-Keywords: {}\nA: 1\n\n{SEP}X-Keywords: a b\nA: 2\n\n", words.join(" "));
    let messages = read_mbox(file.as_bytes());
    assert_eq!(messages[0], Err(SkipReason::TooManyKeywords { max: 100 }));
    assert_eq!(messages[1].as_ref().unwrap().keywords, strings(&["a", "b"]));
}

/// An mbox made on the fly, never held whole: `n_big` messages of `big_bytes` each
/// followed by a small one.
struct Generated {
    pending: std::collections::VecDeque<u8>,
    n_left: usize,
    big_bytes: usize,
    big_left: usize,
}

impl std::io::Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            if self.big_left > 0 {
                let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";
                let n_lines = (self.big_left / line.len()).clamp(1, 1024);
                for _ in 0..n_lines {
                    self.pending.extend(line);
                }
                self.big_left = self.big_left.saturating_sub(n_lines * line.len());
            } else if self.n_left > 0 {
                self.n_left -= 1;
                self.big_left = self.big_bytes;
                self.pending.extend(format!("{SEP}Subject: petit\n\nok\n\n{SEP}Subject: gros\n\n").bytes());
            } else {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len());
        for (slot, byte) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

#[test]
fn mbox_streams_messages_larger_than_memory_allows() {
    // 4 messages of 64 MiB with a 1 MiB limit: each is skipped with its size, held never
    // more than the limit; the small ones between them are read.
    let input = Generated { pending: Default::default(), n_left: 4, big_bytes: 64 << 20, big_left: 0 };
    let limits = Limits { message_bytes_max: 1 << 20, line_bytes_max: 1000, ..Limits::default() };
    let read: Vec<_> =
        MboxReader::new(input, Quoting::Mboxrd, limits, "generated".into()).map(|m| m.map_err(|s| s.reason)).collect();
    assert_eq!(read.len(), 8);
    for pair in read.chunks(2) {
        assert_eq!(pair[0].as_ref().unwrap().raw, b"Subject: petit\r\n\r\nok\r\n");
        assert!(
            matches!(pair[1], Err(SkipReason::TooLarge { bytes, max }) if bytes >= 64 << 20 && max == 1 << 20),
            "{:?}",
            pair[1]
        );
    }
}

#[test]
fn modified_utf7_both_ways() {
    let check = |text: &str, encoded: &str| {
        assert_eq!(mutf7::encode(text), encoded);
        assert_eq!(mutf7::decode(encoded).as_deref(), Some(text));
    };
    check("INBOX", "INBOX");
    check("Procès-verbaux", "Proc&AOg-s-verbaux");
    check("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s");
    check("Été 2026 & après", "&AMk-t&AOk- 2026 &- apr&AOg-s");
    check("日本語", "&ZeVnLIqe-");
    check("😀", "&2D3eAA-");
    assert_eq!(mutf7::decode("bad&AOg"), None);
    assert_eq!(mutf7::decode("&Jjo!"), None);
    assert_eq!(mutf7::decode("é"), None);
}

#[test]
fn folder_names_are_encoded_reversibly() {
    for name in ["Projets", "v1.2", "a/b", "50%", "Été", "..", ".cache", "x.sbd", "y.msf", "fin.", "a:b*c?", "\u{1}"]
    {
        let maildir = names::maildir_encode(name);
        assert!(!maildir.contains(['.', '/']), "{maildir}");
        assert_eq!(names::maildir_decode(&maildir), name);
        let mbox = names::mbox_encode(name);
        assert!(!mbox.contains('/') && !mbox.starts_with('.') && !mbox.ends_with(".sbd") && !mbox.ends_with(".msf"));
        assert_eq!(names::mbox_decode(&mbox), name, "{mbox}");
    }
    assert_eq!(names::maildir_encode("Procès.verbaux"), "Proc&AOg-s%2Everbaux");
    assert_eq!(names::mbox_encode("Procès.verbaux"), "Procès.verbaux");
    assert_eq!(names::special_use(&strings(&["Éléments envoyés"])), Some("\\Sent"));
    assert_eq!(names::special_use(&strings(&["Corbeille"])), Some("\\Trash"));
    assert_eq!(names::special_use(&strings(&["Projets", "Sent"])), None);
}

#[test]
fn maildir_file_names() {
    let check = |name: &str, flags: &[&str], passed: bool, keywords: &[u8], time: Option<u64>, size: Option<u64>| {
        let parsed = parse_file_name(name);
        assert_eq!(parsed.flags, flags, "{name}");
        assert_eq!(
            (parsed.passed, parsed.keyword_indexes.as_slice(), parsed.time, parsed.size),
            (passed, keywords, time, size),
            "{name}"
        );
    };
    check("1700000000.M1P2.host:2,S", &["\\Seen"], false, &[], Some(1_700_000_000), None);
    check(
        "1700000000.M1P2.host,S=1234,W=1260:2,DFPRSTab",
        &["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"],
        true,
        &[0, 1],
        Some(1_700_000_000),
        Some(1234),
    );
    check("1700000000.M1P2.host", &[], false, &[], Some(1_700_000_000), None);
    check("1700000000.M1P2.host;2,Rz", &["\\Answered"], false, &[25], Some(1_700_000_000), None);
    check("x:2,S:2,F", &["\\Flagged"], false, &[], None, None);
    check("", &[], false, &[], None, None);
    check(":2,", &[], false, &[], None, None);
    check("99999999999999999999.x,S=abc:2,Q", &[], false, &[], None, None);
    assert_eq!(parse_file_name("1.x,S=5:2,S").unique, "1.x");
}

/// Writes `files` (relative path, content) under `root`.
fn make_files(root: &Path, files: &[(&str, &[u8])]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// Every folder of a tree: its path and its messages (raw as text, flags, keywords, date).
type Read = Vec<(Vec<String>, Vec<Result<(String, Vec<String>, Vec<String>, Option<u64>), String>>)>;

fn read_tree(root: &Path, format: Format) -> Read {
    open(root, format, &Limits::default())
        .unwrap()
        .map(|folder| {
            let folder = folder.unwrap();
            let messages = folder
                .messages
                .map(|m| {
                    m.map(|m| (String::from_utf8(m.raw).unwrap(), m.flags, m.keywords, m.internal_date))
                        .map_err(|skip| skip.reason.to_string())
                })
                .collect();
            (folder.path, messages)
        })
        .collect()
}

#[test]
fn thunderbird_local_folders() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = String::from(
        "From - Thu Jan  1 00:00:00 2015\nX-Mozilla-Status: 0001\nX-Mozilla-Status2: 00000000\nSubject: un\n\nun\n\n\
         From - Fri Jan  2 00:00:00 2015\nX-Mozilla-Status: 0000\nX-Mozilla-Keys: projet\nSubject: deux\n\n>From here\n\n",
    );
    make_files(
        dir.path(),
        &[
            ("Inbox", inbox.as_bytes()),
            ("Inbox.msf", b"// <!-- <mdb:mork:z v=\"1.4\"/> -->"),
            ("Trash", b""),
            ("msgFilterRules.dat", b"version=\"9\"\n"),
            ("popstate.dat", b"# POP3 State File\n"),
            ("Archives", b""),
            ("Archives.sbd/2020", format!("{SEP}Subject: vieux\n\nvieux\n").as_bytes()),
            ("Archives.sbd/2020.msf", b""),
            ("Projets.sbd/Été 2026.sbd/Réunions", b"".as_slice()),
            ("Projets.sbd/Été 2026", b""),
        ],
    );
    let tree = read_tree(dir.path(), Format::Mbox(Quoting::Mboxo));
    let paths: Vec<Vec<String>> = tree.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(
        paths,
        [
            strings(&["Archives"]),
            strings(&["Archives", "2020"]),
            strings(&["INBOX"]),
            strings(&["Projets"]),
            strings(&["Projets", "Été 2026"]),
            strings(&["Projets", "Été 2026", "Réunions"]),
            strings(&["Trash"]),
        ]
    );
    let inbox = &tree[2].1;
    assert_eq!(inbox[0], Ok(("Subject: un\r\n\r\nun\r\n".into(), strings(&["\\Seen"]), vec![], Some(1_420_070_400))));
    assert_eq!(
        inbox[1],
        Ok(("Subject: deux\r\n\r\nFrom here\r\n".into(), vec![], strings(&["projet"]), Some(1_420_156_800)))
    );
    assert_eq!(tree[1].1.len(), 1);
    let special: Vec<_> = open(dir.path(), Format::Mbox(Quoting::Mboxo), &Limits::default())
        .unwrap()
        .map(|f| f.unwrap().special_use)
        .collect();
    assert_eq!(special, [Some("\\Archive"), None, None, None, None, None, Some("\\Trash")]);
    // One file alone is one folder.
    let tree = read_tree(&dir.path().join("Archives.sbd/2020"), Format::Mbox(Quoting::Mboxrd));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].0, strings(&["2020"]));
}

#[test]
fn names_in_another_encoding_are_read() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    // "Réunions" in Latin-1, as a profile copied from an old Windows machine may have it.
    let latin1 = std::ffi::OsStr::from_bytes(b"R\xe9unions");
    std::fs::write(dir.path().join(latin1), format!("{SEP}Subject: x\n\nx\n")).unwrap();
    let tree = read_tree(dir.path(), Format::Mbox(Quoting::Mboxrd));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree[0].0, strings(&["R\u{fffd}unions"]));
    assert_eq!(tree[0].1.len(), 1);
    let maildir = tempfile::tempdir().unwrap();
    make_files(maildir.path(), &[("cur/x", b"")]);
    std::fs::write(maildir.path().join("cur").join(std::ffi::OsStr::from_bytes(b"1.\xff:2,S")), b"y\n").unwrap();
    let tree = read_tree(maildir.path(), Format::Maildir);
    assert_eq!(tree[0].1.len(), 2);
}

#[test]
fn mbox_tree_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut deep = String::new();
    for level in 0..5 {
        deep.push_str(&format!("L{level}.sbd/"));
    }
    deep.push_str("leaf");
    make_files(dir.path(), &[(&deep, b""), ("a", b""), ("b", b""), ("c", b"")]);
    let limits = Limits { depth_max: 3, folders_max: 10, ..Limits::default() };
    let folders: Vec<_> = open(dir.path(), Format::Mbox(Quoting::Mboxrd), &limits).unwrap().collect();
    let skips: Vec<_> = folders.iter().filter_map(|f| f.as_ref().err()).map(|s| s.reason.clone()).collect();
    assert_eq!(skips, [SkipReason::TooDeep { max: 3 }]);
    assert_eq!(folders.len(), 3 + 3 + 1);
    let limits = Limits { folders_max: 2, ..Limits::default() };
    let folders: Vec<_> = open(dir.path(), Format::Mbox(Quoting::Mboxrd), &limits).unwrap().collect();
    assert_eq!(folders.len(), 3);
    assert_eq!(folders[2].as_ref().unwrap_err().reason, SkipReason::TooManyFolders { max: 2 });
}

#[test]
fn dovecot_maildir_plus_plus() {
    let dir = tempfile::tempdir().unwrap();
    make_files(
        dir.path(),
        &[
            ("cur/1420070400.M1P1.h,S=21,W=23:2,Sa", b"Subject: un\n\nbody\n"),
            ("new/1420156800.M2P1.h", b"Subject: deux\r\n\r\nbody\r\n"),
            ("tmp/1420156801.M3P1.h", b"half written"),
            ("dovecot-keywords", b"0 urgent\n1 $Junk\n"),
            ("dovecot-uidlist", b"3 V1 N3\n"),
            (".Sent/cur/1420070500.M4P1.h:2,RS", b"Subject: trois\n\n"),
            (".Sent/maildirfolder", b""),
            (".Proc&AOg-s-verbaux.2026/cur/1420070600.M5P1.h:2,Fbz", b"Subject: quatre\n\n"),
            (".Proc&AOg-s-verbaux.2026/dovecot-keywords", "1 réunion\n25 conseil\n".as_bytes()),
            (".Vide/new/.keep", b""),
            (".notafolder/x", b""),
        ],
    );
    let file_time = |name: &str, seconds: u64| {
        let file = std::fs::File::options().write(true).open(dir.path().join(name)).unwrap();
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        file.set_modified(time).unwrap();
    };
    file_time("cur/1420070400.M1P1.h,S=21,W=23:2,Sa", 1_000_000_000);
    file_time("new/1420156800.M2P1.h", 1_000_000_100);
    let tree = read_tree(dir.path(), Format::Maildir);
    let paths: Vec<Vec<String>> = tree.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(
        paths,
        [
            strings(&["INBOX"]),
            strings(&["Procès-verbaux"]),
            strings(&["Procès-verbaux", "2026"]),
            strings(&["Sent"]),
            strings(&["Vide"])
        ]
    );
    assert_eq!(
        tree[0].1,
        [
            Ok(("Subject: un\r\n\r\nbody\r\n".into(), strings(&["\\Seen"]), strings(&["urgent"]), Some(1_000_000_000))),
            Ok(("Subject: deux\r\n\r\nbody\r\n".into(), vec![], vec![], Some(1_000_000_100))),
        ]
    );
    // `réunion` is no IMAP atom? It is (8-bit is outside the atom grammar): dropped.
    assert_eq!(tree[2].1[0].as_ref().unwrap().1, strings(&["\\Flagged"]));
    assert_eq!(tree[2].1[0].as_ref().unwrap().2, strings(&["conseil"]));
    assert_eq!(tree[3].1[0].as_ref().unwrap().1, strings(&["\\Seen", "\\Answered"]));
    assert!(tree[1].1.is_empty() && tree[4].1.is_empty());
    assert!(matches!(
        open(&dir.path().join("tmp"), Format::Maildir, &Limits::default()),
        Err(crate::Error::NotMaildir(_))
    ));
}

#[test]
fn maildir_order_follows_dovecot_uids() {
    let dir = tempfile::tempdir().unwrap();
    make_files(
        dir.path(),
        &[
            ("cur/1000.M1P1.h,S=2:2,S", b"a\n"),
            ("cur/2000.M2P1.h,S=2:2,S", b"b\n"),
            ("new/3000.M3P1.h", b"c\n"),
            ("cur/500.M4P1.h:2,", b"d\n"),
            ("dovecot-uidlist", b"3 V1234 N9\n7 :2000.M2P1.h,S=2\n8 W3 :1000.M1P1.h,S=2:2,S\n"),
        ],
    );
    let bodies: Vec<String> =
        read_tree(dir.path(), Format::Maildir)[0].1.iter().map(|m| m.as_ref().unwrap().0.clone()).collect();
    assert_eq!(bodies, ["b\r\n", "a\r\n", "d\r\n", "c\r\n"]);
    let folder = open(dir.path(), Format::Maildir, &Limits::default()).unwrap().next().unwrap().unwrap();
    assert_eq!((folder.uid_validity, folder.unlisted), (Some(1234), 2));
    let uids: Vec<Option<u32>> = folder.messages.map(|m| m.unwrap().uid).collect();
    assert_eq!(uids, [Some(7), Some(8), None, None]);
    // The writer keeps the UIDs it is given, for Dovecot.
    let mut writer = MaildirWriter::create(&dir.path().join("out")).unwrap();
    let mut folder = writer.folder(&strings(&["INBOX"])).unwrap();
    folder.keep_uids(77, 5);
    for (uid, date) in [(3, 2000), (9, 1000)] {
        let message = SourceMessage {
            raw: b"x\r\n".to_vec(),
            internal_date: Some(date),
            uid: Some(uid),
            ..SourceMessage::default()
        };
        folder.append(&message).unwrap();
    }
    folder.finish().unwrap();
    let list = std::fs::read_to_string(dir.path().join("out/dovecot-uidlist")).unwrap();
    // An export is private: only its owner reads it.
    use std::os::unix::fs::PermissionsExt;
    for path in ["out", "out/cur", "out/dovecot-uidlist"] {
        let mode = std::fs::metadata(dir.path().join(path)).unwrap().permissions().mode() & 0o777;
        assert!(mode == 0o700 || mode == 0o600, "{path}: {mode:o}");
    }
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "3 V77 N10");
    assert!(lines[1].starts_with("3 :2000.") && lines[2].starts_with("9 :1000."), "{list}");
    let (validity, uids) = crate::maildir::parse_uid_list(&list);
    assert_eq!(validity, Some(77));
    assert_eq!(uids.values().copied().collect::<std::collections::BTreeSet<u32>>(), [3, 9].into());
}

#[test]
fn maildir_limits() {
    let dir = tempfile::tempdir().unwrap();
    make_files(
        dir.path(),
        &[
            ("cur/1:2,S", b"small\n"),
            ("cur/2:2,S", &[b'x'; 2000]),
            ("cur/3:2,S", b"small\n"),
            ("cur/4:2,S", b"small\n"),
        ],
    );
    let limits = Limits { message_bytes_max: 1024, line_bytes_max: 1000, messages_max: 3, ..Limits::default() };
    let mut folders = open(dir.path(), Format::Maildir, &limits).unwrap();
    let reasons: Vec<_> = folders.next().unwrap().unwrap().messages.map(|m| m.err().map(|s| s.reason)).collect();
    assert_eq!(
        reasons,
        [
            None,
            Some(SkipReason::TooLarge { bytes: 2000, max: 1024 }),
            None,
            Some(SkipReason::TooManyMessages { max: 3 })
        ]
    );
}

#[test]
fn crlf_is_added_to_lone_lf_only() {
    for (input, expect) in [("a\nb\r\nc", "a\r\nb\r\nc"), ("\n", "\r\n"), ("\r\n", "\r\n"), ("a\r\rb\n", "a\r\rb\r\n")]
    {
        assert_eq!(crlf(input.as_bytes().to_vec()), expect.as_bytes());
    }
}

#[test]
fn limits_check() {
    assert_eq!(Limits::default().check("migrate.files"), Ok(()));
    let bad = Limits { line_bytes_max: 2 << 20, message_bytes_max: 1 << 20, ..Limits::default() };
    assert_eq!(bad.check("migrate.files").unwrap_err().key, "migrate.files.line_bytes_max");
}

/// What a round trip must keep: the bytes, the flags and keywords as sets, the date.
fn normalised(message: &SourceMessage) -> (Vec<u8>, Vec<String>, Vec<String>, Option<u64>) {
    let mut flags = message.flags.clone();
    flags.sort();
    let mut keywords = message.keywords.clone();
    keywords.sort();
    (message.raw.clone(), flags, keywords, message.internal_date)
}

/// Writes folders of messages in both formats and reads them back.
fn round_trip(folders: &[(Vec<String>, Vec<SourceMessage>)]) {
    let dir = tempfile::tempdir().unwrap();
    let maildir_root = dir.path().join("maildir");
    let mut maildir = MaildirWriter::create(&maildir_root).unwrap();
    let mbox_root = dir.path().join("mbox");
    let mut mbox = MboxWriter::create(&mbox_root).unwrap();
    for (path, messages) in folders {
        let mut maildir_folder = maildir.folder(path).unwrap();
        let mut mbox_folder = mbox.folder(path).unwrap();
        for message in messages {
            maildir_folder.append(message).unwrap();
            mbox_folder.append(message).unwrap();
        }
        maildir_folder.finish().unwrap();
        mbox_folder.finish().unwrap();
    }
    let expect: Vec<_> = folders
        .iter()
        .map(|(path, messages)| {
            let mut messages: Vec<_> = messages.iter().map(normalised).collect();
            messages.sort();
            (path.clone(), messages)
        })
        .collect();
    for (root, format) in [(maildir_root, Format::Maildir), (mbox_root, Format::Mbox(Quoting::Mboxrd))] {
        let mut read: Vec<_> = open(&root, format, &Limits::default())
            .unwrap()
            .map(|folder| {
                let folder = folder.unwrap();
                let mut messages: Vec<_> = folder.messages.map(|m| normalised(&m.unwrap())).collect();
                // Maildir has no order: its files are read in the order of their dates.
                messages.sort();
                (folder.path, messages)
            })
            .collect();
        // The formats add the inbox and the parents of subfolders, empty.
        read.retain(|(path, messages)| !messages.is_empty() || expect.iter().any(|(expected, _)| expected == path));
        read.sort();
        let mut expect = expect.clone();
        expect.sort();
        assert_eq!(read, expect, "{format:?}");
    }
}

fn message_strategy() -> impl Strategy<Value = SourceMessage> {
    let header = prop::collection::vec(("[A-Z][a-z]{0,8}", "[ -~]{0,30}"), 0..4);
    let body = prop::collection::vec(
        prop_oneof![
            Just("From here".to_string()),
            Just(">From there".to_string()),
            Just(String::new()),
            "[ -~]{0,40}",
            "é[ -~]{0,5}"
        ],
        0..6,
    );
    let flags = prop::sample::subsequence(crate::SYSTEM_FLAGS.to_vec(), 0..=5);
    let keywords = prop::collection::btree_set(prop_oneof![Just("$Forwarded".to_string()), "[a-z$]{1,8}"], 0..4);
    (header, body, flags, keywords, 0u64..4_102_444_800).prop_map(|(header, body, flags, keywords, date)| {
        let mut raw = String::new();
        for (name, value) in header {
            // The local-state names are the format's, not the message's.
            if !crate::mbox::LOCAL_STATE_HEADERS.contains(&format!("x-{}", name.to_ascii_lowercase()).as_str()) {
                raw.push_str(&format!("X-{name}: {value}\r\n"));
            }
        }
        raw.push_str("\r\n");
        for line in body {
            raw.push_str(&line);
            raw.push_str("\r\n");
        }
        SourceMessage {
            raw: raw.into_bytes(),
            flags: flags.into_iter().map(str::to_string).collect(),
            keywords: keywords.into_iter().collect(),
            internal_date: Some(date),
            uid: None,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_written_read_back_the_same(
        folders in prop::collection::btree_map(
            prop::collection::vec(prop_oneof![Just("INBOX".to_string()), "[A-Za-zé. %/]{1,8}"], 1..3),
            prop::collection::vec(message_strategy(), 0..4),
            1..4,
        )
    ) {
        // A path below INBOX must name INBOX exactly (as Hameau stores it).
        let folders: Vec<_> = folders.into_iter().filter(|(path, _)| path.iter().skip(1).all(|n| n != "INBOX")).collect();
        round_trip(&folders);
    }
}

#[test]
fn round_trip_of_known_shapes() {
    let message = |raw: &str, flags: &[&str], keywords: &[&str]| SourceMessage {
        raw: raw.as_bytes().to_vec(),
        flags: strings(flags),
        keywords: strings(keywords),
        internal_date: Some(1_420_070_400),
        uid: None,
    };
    round_trip(&[
        (
            strings(&["INBOX"]),
            vec![message(
                "Subject: un\r\n\r\nFrom here\r\n>From there\r\n\r\n",
                &["\\Seen"],
                &["$Forwarded", "urgent"],
            )],
        ),
        (strings(&["Procès-verbaux", "v1.2"]), vec![message("Subject: deux\r\n\r\n", &["\\Draft", "\\Deleted"], &[])]),
        (strings(&["Vide"]), vec![]),
        (strings(&["INBOX", "Sous-dossier"]), vec![message("No-Body: true\r\n", &[], &[])]),
    ]);
}

//! Real IMAP clients against the real binary, each over TLS with the server's self-signed
//! certificate given as the CA: IMAPClient's live test suite, mbsync (both ways), offlineimap,
//! getmail, fetchmail and neomutt. Every test checks what the client left behind (files in
//! its maildir, messages in its MDA's output) and what it changed on the server, read back
//! over Python's imaplib.
//!
//! The tools come from Debian (isync, fetchmail, neomutt, offlineimap3, getmail6) and PyPI
//! (imapclient, in the venv of scripts/test.sh); `scripts/test.sh` installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::imap::imap_account;
use crate::support::{Server, config_path, init_with_token, start_server};

const USER: &str = "user@a.test";
const PASSWORD: &str = "correct horse battery staple";

/// A server with the account user@a.test, and a scratch directory for the client.
struct Setup {
    server: Server,
    work: tempfile::TempDir,
    _data: tempfile::TempDir,
}

fn setup() -> Setup {
    let (data, _) = init_with_token();
    let config = config_path(data.path());
    imap_account(&config);
    let server = start_server(&config);
    Setup { server, work: tempfile::tempdir().unwrap(), _data: data }
}

impl Setup {
    fn port(&self) -> u16 {
        self.server.imaps[0].port()
    }

    fn cert(&self) -> &str {
        self.server.cert.to_str().unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Writes a client's configuration file (mode 0600: fetchmail insists).
    fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// Runs a Python script logged in over imaplib (993, the certificate as CA) as `M`,
    /// with `messages(box)`: the (subject, flags) of a mailbox's messages in UID order.
    /// Returns its stdout; fails on a Python error.
    fn imaplib(&self, body: &str) -> String {
        let script = format!(
            r#"
import imaplib, ssl, re
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
M.login({USER:?}, {PASSWORD:?})
def messages(box):
    typ, data = M.select(box, readonly=True)
    assert typ == "OK", (box, data)
    if data == [b"0"]:
        return []
    typ, data = M.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    out = []
    for item in data:
        if isinstance(item, tuple):
            # \\Recent is per session (RFC 3501 §2.3.2), not a stored flag.
            flags = sorted(f.decode() for f in imaplib.ParseFlags(item[0]) if f != b"\\Recent")
            subject = item[1].decode().strip().removeprefix("Subject: ")
            out.append((subject, flags))
    return out
def mailboxes():
    typ, data = M.list()
    return sorted(re.search(rb'"/" "?([^"]*)"?$', line).group(1).decode() for line in data)
{body}
M.logout()
"#,
            cert = self.cert(),
            port = self.port(),
        );
        let output = client("python3", |command| command.args(["-c", &script]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Appends messages over imaplib: (mailbox, flags, subject, body).
    fn seed(&self, messages: &[(&str, &str, &str, &str)]) {
        let mut body = String::new();
        for (mailbox, flags, subject, text) in messages {
            body.push_str(&format!(
                "M.create({mailbox:?})\ntyp, data = M.append({mailbox:?}, {flags:?} or None, None, \
                 b'From: Jean <jean@sender.test>\\r\\nTo: user@a.test\\r\\nSubject: {subject}\\r\\n\
                 Message-ID: <{id}@sender.test>\\r\\n\\r\\n{text}\\r\\n')\nassert typ == 'OK', data\n",
                id = subject.replace(' ', "."),
            ));
        }
        self.imaplib(&body);
    }
}

/// Runs a client to its end, killed after 45 s (`timeout`); fails unless it exits 0.
fn client(program: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Output {
    let mut command = Command::new("timeout");
    command.args(["-k", "5", "45", program]);
    args(&mut command);
    let output = command.output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The files of a maildir folder (new and cur), with their contents.
fn maildir(folder: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // Clients store messages with LF line ends.
            files.push((name, std::fs::read_to_string(&path).unwrap().replace('\r', "")));
        }
    }
    files.sort();
    files
}

/// The maildir file whose message has `subject`.
fn file_with(files: &[(String, String)], subject: &str) -> (String, String) {
    let needle = format!("Subject: {subject}\n");
    files
        .iter()
        .find(|(_, text)| text.contains(&needle))
        .cloned()
        .unwrap_or_else(|| panic!("no message {subject:?} in {files:?}"))
}

/// The maildir flags of a file name (`...:2,FS` gives "FS").
fn maildir_flags(name: &str) -> &str {
    name.rsplit_once(":2,").map_or("", |(_, flags)| flags)
}

#[test]
fn mbsync_syncs_both_ways() {
    let setup = setup();
    setup.seed(&[
        ("INBOX", "(\\Seen)", "lu", "deja lu"),
        ("INBOX", "", "a marquer", "a marquer"),
        ("INBOX", "", "a supprimer", "a supprimer"),
        ("Dossiers/Projets", "(\\Flagged)", "projet", "plan du projet"),
    ]);
    let local = setup.path("local");
    std::fs::create_dir(&local).unwrap();
    let config = setup.write(
        "mbsyncrc",
        &format!(
            "IMAPAccount hameau\nHost 127.0.0.1\nPort {port}\nUser {USER}\nPass \"{PASSWORD}\"\n\
             SSLType IMAPS\nCertificateFile {cert}\n\n\
             IMAPStore remote\nAccount hameau\n\n\
             MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
             Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\n\
             Remove None\nSyncState *\n",
            port = setup.port(),
            cert = setup.cert(),
            local = local.display(),
        ),
    );
    let mbsync = || client("mbsync", |command| command.args(["-c", config.to_str().unwrap(), "sync"]));

    // Server to local: messages, folders (hierarchy included), flags.
    mbsync();
    let inbox = maildir(&local.join("INBOX"));
    assert_eq!(inbox.len(), 3, "{inbox:?}");
    let (seen, text) = file_with(&inbox, "lu");
    assert_eq!(maildir_flags(&seen), "S", "{seen}");
    assert!(text.contains("deja lu") && text.starts_with("From: Jean"), "{text}");
    let projets = maildir(&local.join("Dossiers/Projets"));
    assert_eq!(projets.len(), 1, "{projets:?}");
    assert_eq!(maildir_flags(&projets[0].0), "F");
    assert!(projets[0].1.contains("plan du projet"));
    for special in ["Archives", "Corbeille", "Brouillons"] {
        assert!(local.join(special).join("cur").is_dir(), "{special} not synced");
    }

    // Local to server: a flag, a deletion, a new message in a folder, a new folder.
    let (name, _) = file_with(&inbox, "a marquer");
    let folder = if local.join("INBOX/new").join(&name).exists() { "new" } else { "cur" };
    let base = name.split(":2,").next().unwrap();
    std::fs::rename(local.join("INBOX").join(folder).join(&name), local.join(format!("INBOX/cur/{base}:2,FS")))
        .unwrap();
    let (name, _) = file_with(&inbox, "a supprimer");
    let folder = if local.join("INBOX/new").join(&name).exists() { "new" } else { "cur" };
    std::fs::remove_file(local.join("INBOX").join(folder).join(&name)).unwrap();
    let message = "From: moi@a.test\r\nSubject: {subject}\r\n\r\nEcrit hors ligne\r\n";
    std::fs::write(local.join("Dossiers/Projets/new/1.local"), message.replace("{subject}", "ajout local")).unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(local.join("Nouveau").join(sub)).unwrap();
    }
    std::fs::write(local.join("Nouveau/new/2.local"), message.replace("{subject}", "dossier local")).unwrap();
    mbsync();
    let out = setup.imaplib(
        r#"
assert "Nouveau" in mailboxes(), mailboxes()
inbox = messages("INBOX")
assert inbox == [("lu", ["\\Seen"]), ("a marquer", ["\\Flagged", "\\Seen"])], inbox
projets = messages("Dossiers/Projets")
assert projets == [("projet", ["\\Flagged"]), ("ajout local", [])], projets
assert messages("Nouveau") == [("dossier local", [])], messages("Nouveau")
M.select("Dossiers/Projets")
typ, data = M.uid("FETCH", "2", "(BODY.PEEK[TEXT])")
assert data[0][1] == b"Ecrit hors ligne\r\n", data
print("server OK")
"#,
    );
    assert!(out.contains("server OK"), "{out}");

    // A third run has nothing to do and changes nothing.
    mbsync();
    assert_eq!(maildir(&local.join("INBOX")).len(), 2);
}

#[test]
fn offlineimap_syncs_both_ways() {
    let setup = setup();
    setup.seed(&[
        ("INBOX", "(\\Seen)", "lu", "deja lu"),
        ("INBOX", "", "nouveau", "pas encore lu"),
        ("Dossiers/Projets", "(\\Flagged)", "projet", "plan du projet"),
    ]);
    let mail = setup.path("mail");
    let config = setup.write(
        "offlineimaprc",
        &format!(
            "[general]\naccounts = hameau\nmetadata = {meta}\n\
             [Account hameau]\nlocalrepository = local\nremoterepository = remote\n\
             [Repository local]\ntype = Maildir\nlocalfolders = {mail}\n\
             [Repository remote]\ntype = IMAP\nremotehost = localhost\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepass = {PASSWORD}\nssl = yes\nsslcacertfile = {cert}\n",
            meta = setup.path("meta").display(),
            mail = mail.display(),
            port = setup.port(),
            cert = setup.cert(),
        ),
    );
    let offlineimap = || {
        let output =
            client("offlineimap", |command| command.args(["-c", config.to_str().unwrap(), "-o", "-u", "basic"]));
        let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!log.contains("ERROR"), "{log}");
    };
    offlineimap();
    let inbox = maildir(&mail.join("INBOX"));
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(maildir_flags(&file_with(&inbox, "lu").0), "S");
    let (unread, text) = file_with(&inbox, "nouveau");
    assert_eq!(maildir_flags(&unread), "");
    assert!(text.contains("pas encore lu"), "{text}");
    // offlineimap's Maildir names a hierarchy with dots.
    let projets = maildir(&mail.join("Dossiers.Projets"));
    assert_eq!(projets.len(), 1, "{projets:?}");
    assert_eq!(maildir_flags(&projets[0].0), "F");

    // Local changes: read and replied to, a new message.
    let from = if mail.join("INBOX/new").join(&unread).exists() { "new" } else { "cur" };
    std::fs::rename(mail.join("INBOX").join(from).join(&unread), mail.join(format!("INBOX/cur/{unread}RS"))).unwrap();
    std::fs::write(
        mail.join("Dossiers.Projets/new/1.local"),
        "From: moi@a.test\r\nSubject: ajout\r\n\r\nhors ligne\r\n",
    )
    .unwrap();
    offlineimap();
    let out = setup.imaplib(
        r#"
inbox = messages("INBOX")
assert inbox == [("lu", ["\\Seen"]), ("nouveau", ["\\Answered", "\\Seen"])], inbox
projets = messages("Dossiers/Projets")
assert projets == [("projet", ["\\Flagged"]), ("ajout", [])], projets
print("server OK")
"#,
    );
    assert!(out.contains("server OK"), "{out}");
    // The uploaded message got its UID from APPENDUID: the local file carries it.
    let projets = maildir(&mail.join("Dossiers.Projets"));
    assert!(file_with(&projets, "ajout").0.contains(",U=2,"), "{projets:?}");
}

#[test]
fn getmail_retrieves_and_deletes() {
    let setup = setup();
    setup.seed(&[
        ("INBOX", "", "premier", "un"),
        ("INBOX", "(\\Seen)", "deuxieme", "deux"),
        ("Dossiers/Projets", "", "projet", "trois"),
    ]);
    let out = setup.path("out");
    std::fs::create_dir(&out).unwrap();
    // getmail refuses to write a maildir as root: an external MDA writes one file a message.
    let config = |delete: bool| {
        setup.write(
            "getmailrc",
            &format!(
                "[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = localhost\nport = {port}\n\
                 username = {USER}\npassword = {PASSWORD}\nca_certs = {cert}\n\
                 mailboxes = (\"INBOX\", \"Dossiers/Projets\")\n\
                 [destination]\ntype = MDA_external\npath = /bin/sh\n\
                 arguments = (\"-c\", \"cat > {out}/msg.$$\")\nallow_root_commands = true\n\
                 [options]\nread_all = false\ndelete = {delete}\n",
                port = setup.port(),
                cert = setup.cert(),
                out = out.display(),
            ),
        )
    };
    let getmail = |config: &Path| {
        client("getmail", |command| {
            command.args(["--getmaildir", setup.work.path().to_str().unwrap(), "-r", config.to_str().unwrap()])
        })
    };
    getmail(&config(false));
    let kept = setup.imaplib("assert len(messages(\"INBOX\")) == 2\nprint(\"kept\")");
    assert!(kept.contains("kept"), "{kept}");
    let fetched = || {
        let mut texts: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
            .collect();
        texts.sort();
        texts
    };
    let texts = fetched();
    assert_eq!(texts.len(), 3, "{texts:?}");
    for (subject, body) in [("premier", "un"), ("deuxieme", "deux"), ("projet", "trois")] {
        let needle = format!("Subject: {subject}\n");
        let text = texts.iter().find(|text| text.replace('\r', "").contains(&needle));
        assert!(text.is_some_and(|text| text.contains(&format!("\n{body}"))), "{subject}: {texts:?}");
    }
    // Seen by UID: a second run retrieves nothing more.
    getmail(&config(false));
    assert_eq!(fetched().len(), 3);
    // New mail, then a run that deletes what it retrieves and what it had retrieved before.
    setup.seed(&[("INBOX", "", "troisieme", "quatre")]);
    getmail(&config(true));
    assert_eq!(fetched().len(), 4);
    let out = setup.imaplib(
        r#"
assert messages("INBOX") == [], messages("INBOX")
assert messages("Dossiers/Projets") == [], messages("Dossiers/Projets")
print("server OK")
"#,
    );
    assert!(out.contains("server OK"), "{out}");
}

#[test]
fn fetchmail_fetches_unseen_then_flushes() {
    let setup = setup();
    setup.seed(&[
        ("INBOX", "", "premier", "un"),
        ("INBOX", "(\\Seen)", "lu", "deux"),
        ("INBOX", "", "second", "trois"),
    ]);
    let mbox = setup.path("mbox");
    let config = |extra: &str| {
        setup.write(
            "fetchmailrc",
            &format!(
                "poll localhost protocol IMAP port {port}\n  user \"{USER}\" password \"{PASSWORD}\"\n  \
                 ssl sslcertfile {cert} sslcertck {extra}\n  mda \"/bin/sh -c 'cat >> {mbox}'\"\n",
                port = setup.port(),
                cert = setup.cert(),
                mbox = mbox.display(),
            ),
        )
    };
    let fetchmail = |config: &Path| {
        let output = Command::new("timeout")
            .args(["-k", "5", "45", "fetchmail", "-f", config.to_str().unwrap(), "--nodetach", "-v"])
            .env("HOME", setup.work.path())
            .output()
            .unwrap();
        // Exit 1 is "no mail", a success.
        let code = output.status.code();
        assert!(matches!(code, Some(0 | 1)), "fetchmail: {code:?}\n{}", String::from_utf8_lossy(&output.stderr));
        code
    };
    // Kept on the server and marked seen: the unseen two only.
    assert_eq!(fetchmail(&config("keep")), Some(0));
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert!(text.contains("Subject: premier") && text.contains("Subject: second"), "{text}");
    assert!(!text.contains("Subject: lu") && text.contains("\ntrois"), "{text}");
    assert_eq!(fetchmail(&config("keep")), Some(1), "nothing new the second time");
    // All, then deleted from the server.
    assert_eq!(fetchmail(&config("fetchall")), Some(0));
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert_eq!(text.matches("Subject: ").count(), 5, "{text}");
    let out = setup.imaplib("assert messages(\"INBOX\") == [], messages(\"INBOX\")\nprint(\"server OK\")");
    assert!(out.contains("server OK"), "{out}");
}

#[test]
fn neomutt_reads_flags_files_and_deletes() {
    let setup = setup();
    setup.seed(&[
        ("INBOX", "", "alpha", "Texte alpha 42"),
        ("INBOX", "", "beta", "Texte beta"),
        ("INBOX", "", "gamma", "g"),
    ]);
    // neomutt needs a terminal: `script` gives it one.
    let rc = setup.write(
        "neomuttrc",
        &format!(
            "set folder = \"imaps://user%40a.test@localhost:{port}/\"\nset imap_pass = \"{PASSWORD}\"\n\
             set spoolfile = \"+INBOX\"\nset certificate_file = \"{certs}\"\n\
             set ssl_ca_certificates_file = \"{cert}\"\nset header_cache = \"\"\nset message_cachedir = \"\"\n\
             set mail_check = 0\nset timeout = 0\nset confirmappend = no\nset delete = yes\nset move = no\n\
             set mark_old = no\nset sort = date-received\nset wait_key = no\nset beep = no\nset pager_stop = yes\n",
            port = setup.port(),
            certs = setup.path("certs").display(),
            cert = setup.cert(),
        ),
    );
    std::fs::write(setup.path("certs"), "").unwrap();
    let piped = setup.path("piped");
    let keys = format!(
        "<search>alpha<enter><display-message><exit><pipe-message>cat > {piped}<enter>\
                <tag-pattern>~s beta<enter><tag-prefix><flag-message><tag-prefix><save-message>=Archives<enter>\
                <untag-pattern>.<enter><tag-pattern>~s gamma<enter><tag-prefix><delete-message>\
                <sync-mailbox><quit>",
        piped = piped.display()
    );
    let command = format!("neomutt -n -F {} -e 'push \"{keys}\"'", rc.display());
    let output = client("script", |script| script.args(["-qec", &command, "/dev/null"]).env("TERM", "xterm"));
    let text = std::fs::read_to_string(&piped)
        .unwrap_or_else(|e| panic!("nothing piped ({e}):\n{}", String::from_utf8_lossy(&output.stdout)));
    assert!(text.contains("Subject: alpha") && text.contains("Texte alpha 42"), "{text}");
    let out = setup.imaplib(
        r#"
inbox = messages("INBOX")
assert inbox == [("alpha", ["\\Seen"])], inbox
archives = messages("Archives")
assert archives == [("beta", ["\\Flagged"])], archives
print("server OK")
"#,
    );
    assert!(out.contains("server OK"), "{out}");
}

/// IMAPClient's live test suite, on an account of its own. A test that fails for a reason
/// of the client's or of this machine is named here with the reason; any other is a bug.
#[test]
fn imapclient_livetest() {
    let setup = setup();
    let ini = setup.write(
        "livetest.ini",
        &format!(
            "[DEFAULT]\nhost = 127.0.0.1\nport = {port}\nssl = true\nssl_check_hostname = false\n\
             ssl_ca_file = {cert}\nusername = {USER}\npassword = {PASSWORD}\n",
            port = setup.port(),
            cert = setup.cert(),
        ),
    );
    let venv = std::env::var("HOME").unwrap() + "/.cache/hameau-venv/bin/python";
    let python = if Path::new(&venv).exists() { venv } else { "python3".to_string() };
    let output = Command::new("timeout")
        .args(["-k", "5", "50", &python, "-m", "imapclient.livetest", ini.to_str().unwrap()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(log.contains("\nRan "), "the suite did not run:\n{log}");
    // Failures the client or this machine cause, each with the text that shows it.
    // (the test's header, the texts its report must all hold, why it is the client's)
    let client_side: &[(&str, &[&str], &str)] = &[
        // imapclient 3+ made Envelope a dataclass; the live test still compares it with
        // assertSequenceEqual, which needs len(). The envelope itself is right.
        ("FAIL: test_fetch ", &["First sequence has no length"], "Envelope is no sequence"),
        // Without UIDs IMAPClient calls imaplib's `move`, which Python before 3.14 lacks.
        ("ERROR: test_move ", &["Unknown IMAP4 command: 'move'"], "imaplib has no MOVE"),
        // They expect a 1 ms connect and a 10 µs NOOP to time out: on loopback both succeed.
        ("FAIL: test_small_connection_timeout_fail ", &["TimeoutError not raised"], "loopback is fast"),
        ("FAIL: test_small_read_timeout_fail ", &["TimeoutError not raised"], "loopback is fast"),
        // When the machine is busy the 10 µs NOOP does time out, as the test wants; then its
        // tearDown logs out on the same socket, and quiet_logout only swallows
        // IMAPClientError, not the socket's errors (imapclient 4.1.0). Seen: the LOGOUT's
        // own `TimeoutError: The read operation timed out`, and `OSError: cannot read from
        // timed out object` (Python's socket file refuses any read once one timed out).
        // Any error there is the test's own timeout: every other test logs out through
        // quiet_logout too, so a LOGOUT the server broke would fail them all.
        (
            "ERROR: test_small_read_timeout_fail ",
            &["in tearDown", "in quiet_logout", "timed out"],
            "the client's own timeout in tearDown",
        ),
    ];
    let mut unexplained = Vec::new();
    for block in log.split("======================================================================\n").skip(1) {
        let header = block.lines().next().unwrap_or_default();
        if !(header.starts_with("FAIL:") || header.starts_with("ERROR:")) {
            continue;
        }
        let explained = client_side
            .iter()
            .any(|(name, texts, _)| header.starts_with(name) && texts.iter().all(|text| block.contains(text)));
        if !explained {
            unexplained.push(block.to_string());
        }
    }
    assert!(unexplained.is_empty(), "IMAPClient live tests failed:\n{}", unexplained.join("\n"));
    let ran: usize =
        log.lines().find_map(|line| line.strip_prefix("Ran ")?.split(' ').next()?.parse().ok()).expect("a Ran line");
    assert!(ran >= 50, "only {ran} tests ran:\n{log}");
}

/// What clients without MOVE do to file a message (neomutt's save, above): COPY, then
/// `\Deleted` and EXPUNGE in the source. The copy keeps its own flags and survives an
/// EXPUNGE in its mailbox; the copy once shared the original's flags, `\Deleted` included.
#[test]
fn a_copy_has_flags_of_its_own() {
    let setup = setup();
    setup.seed(&[("INBOX", "(\\Flagged)", "classer", "a classer")]);
    let out = setup.imaplib(
        r#"
M.create("Classement")
M.select("INBOX")
typ, data = M.uid("COPY", "1", "Classement")
assert typ == "OK", data
M.uid("STORE", "1", "+FLAGS", "(\\Deleted \\Seen)")
typ, data = M.expunge()
assert data == [b"1"], data
assert messages("Classement") == [("classer", ["\\Flagged"])], messages("Classement")
M.select("Classement")
M.expunge()
typ, data = M.uid("FETCH", "1", "(BODY.PEEK[TEXT])")
assert data[0][1] == b"a classer\r\n", data
assert messages("INBOX") == [], messages("INBOX")
print("copy OK")
"#,
    );
    assert!(out.contains("copy OK"), "{out}");
}

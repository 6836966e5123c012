//! `hameau export` (issue 13, item 5): an account filled over IMAP (APPEND with flags,
//! keywords and dates, into nested folders with French names), the server stopped, the
//! account exported as Maildir and as mbox, and each export read back by Dovecot (its
//! `imap` binary in pre-authenticated mode, driven by Python's imaplib) and by Hameau's
//! own readers (what an import takes): the folders, flags, keywords, INTERNALDATEs and
//! bytes are Hameau's. A tenant export has every
//! account; an export while the server runs is refused.

use std::path::Path;
use std::process::Command;

use crate::imap::{create_account, imap_account, python};
use crate::support::{config_path, init_with_token, run, start_server};

/// Python helpers: modified UTF-7 both ways and a dump of every folder of an IMAP
/// session as JSON: `{folder: [[flags and keywords sorted], internaldate (epoch), body
/// (base64)]}`, folder names decoded and joined with `/`; `.sbd` suffixes taken off for
/// Dovecot reading Thunderbird's mbox layout; `\Noselect` folders left out.
pub(crate) const HELPERS: &str = r#"
import base64, imaplib, json, re, ssl, sys, time

def mutf7_encode(s):
    out, run = [], []
    def flush():
        if run:
            b = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(b).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()
    for c in s:
        if 0x20 <= ord(c) <= 0x7e:
            flush()
            out.append("&-" if c == "&" else c)
        else:
            run.append(c)
    flush()
    return "".join(out)

def mutf7_decode(s):
    def run(m):
        if m.group(1) == "":
            return "&"
        text = m.group(1).replace(",", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4)).decode("utf-16-be")
    return re.sub(r"&([^-]*)-", run, s)

def quoted(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'

def dump(M, strip_sbd):
    out = {}
    typ, data = M.list()
    assert typ == "OK", data
    for line in data:
        m = re.match(rb'\((.*?)\) (NIL|"(.*?)") (.*)$', line)
        attributes, delimiter, name = m.group(1), m.group(3), m.group(4).decode()
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        if b"\\Noselect" in attributes or b"\\NonExistent" in attributes:
            continue
        parts = name.split(delimiter.decode()) if delimiter else [name]
        parts = [mutf7_decode(p) for p in parts]
        if strip_sbd:
            parts = [p[:-4] if p.endswith(".sbd") else p for p in parts]
        typ, data = M.select(quoted(name), readonly=True)
        assert typ == "OK", (name, data)
        messages = []
        if int(data[0]) > 0:
            typ, data = M.fetch("1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                head = item[0]
                flags = re.search(rb"FLAGS \((.*?)\)", head).group(1).decode().split()
                # Flags and keywords are case-insensitive (RFC 9051 §2.3.2); Hameau shows
                # custom keywords in lower case, Dovecot as they were set.
                flags = sorted(f.lower() for f in flags if f != "\\Recent")
                date = re.search(rb'INTERNALDATE "(.*?)"', head).group(0)
                epoch = int(time.mktime(imaplib.Internaldate2tuple(date)))
                messages.append([flags, epoch, base64.b64encode(item[1]).decode()])
        out["/".join(parts)] = messages
    return out

def uids(M):
    out = {}
    typ, data = M.list()
    for line in data:
        m = re.match(rb'\((.*?)\) (NIL|"(.*?)") (.*)$', line)
        name = m.group(4).decode()
        if name.startswith('"'):
            name = name[1:-1]
        if b"\\Noselect" in m.group(1):
            continue
        typ, data = M.status(quoted(name), "(UIDVALIDITY)")
        validity = int(re.search(rb"UIDVALIDITY (\d+)", data[0]).group(1))
        M.select(quoted(name), readonly=True)
        typ, data = M.uid("SEARCH", "ALL")
        parts = name.split(m.group(3).decode()) if m.group(3) else [name]
        out["/".join(mutf7_decode(p) for p in parts)] = [validity, [int(u) for u in data[0].split()]]
    return out
"#;

/// What the test appends: (account, folder, flags, date, message).
pub(crate) fn corpus() -> Vec<(&'static str, &'static str, &'static str, &'static str, String)> {
    let message = |subject: &str, body: &str| {
        format!("From: Mairie <mairie@a.test>\r\nTo: agent@a.test\r\nSubject: {subject}\r\n\r\n{body}\r\n")
    };
    let user = "user@a.test";
    let agent = "agent2@a.test";
    vec![
        (user, "INBOX", "(\\Seen)", "14-Jul-2019 10:00:00 +0200", message("Fête nationale", "Bonjour,\r\nà demain.")),
        (user, "INBOX", "(\\Seen \\Answered $Projet)", "01-Jan-2010 08:30:00 +0100", message("Voeux", "Bonne année")),
        (
            user,
            "INBOX",
            "(\\Flagged)",
            "29-Feb-2024 23:59:59 +0000",
            message("Citation", "From the mayor's desk:\r\n>From before\r\n\r\nfin"),
        ),
        (user, "Projets", "(\\Draft Urgent)", "03-Mar-2021 12:00:00 +0000", message("Brouillon", "à finir")),
        (
            user,
            "Projets/Été 2026",
            "(\\Seen \\Flagged Urgent $Forwarded)",
            "15-Jun-2026 09:00:00 +0200",
            message("Fête de l'été", "Programme"),
        ),
        (user, "Procès-verbaux", "(\\Deleted \\Seen)", "10-Oct-2015 18:00:00 +0200", message("Conseil", "PV")),
        (user, "Corbeille", "(\\Seen)", "02-Feb-2012 02:02:02 +0000", message("Vieux", "à jeter")),
        (agent, "INBOX", "()", "05-May-2025 05:05:05 +0000", message("Arrivée", "Bienvenue")),
        (agent, "Réunions", "(\\Seen $Important)", "06-Jun-2025 06:06:06 +0000", message("Réunion", "Ordre du jour")),
    ]
}

pub(crate) const USER_PASSWORD: &str = "correct horse battery staple";
pub(crate) const AGENT_PASSWORD: &str = "une autre phrase de passe";

/// Appends the corpus over IMAPS, then dumps each account as Hameau serves it.
pub(crate) fn fill(server: &crate::support::Server) -> serde_json::Value {
    let mut script = String::from(HELPERS);
    script.push_str(&format!(
        "ctx = ssl.create_default_context(cafile={cert:?})\nctx.check_hostname = False\nresult = {{}}\n",
        cert = server.cert.to_str().unwrap()
    ));
    for (account, password) in [("user@a.test", USER_PASSWORD), ("agent2@a.test", AGENT_PASSWORD)] {
        script.push_str(&format!(
            "M = imaplib.IMAP4_SSL('127.0.0.1', {port}, ssl_context=ctx)\nM.login({account:?}, {password:?})\n",
            port = server.imaps[0].port()
        ));
        for folder in ["Projets", "Projets/Été 2026", "Projets/Vide", "Procès-verbaux", "Réunions"] {
            if (folder == "Réunions") == (account == "agent2@a.test") {
                script.push_str(&format!("assert M.create(quoted(mutf7_encode({folder:?})))[0] == 'OK'\n"));
            }
        }
        for (owner, folder, flags, date, raw) in corpus() {
            if owner != account {
                continue;
            }
            script.push_str(&format!(
                "typ, data = M.append(quoted(mutf7_encode({folder:?})), {flags:?}, '\"{date}\"', {raw:?}.encode())\n\
                 assert typ == 'OK', data\n"
            ));
        }
        script.push_str(&format!(
            "result[{account:?}] = dump(M, False)\nresult[{account:?} + ' uids'] = uids(M)\nM.logout()\n"
        ));
    }
    script.push_str("print(json.dumps(result))\n");
    serde_json::from_str(python(&script).trim()).unwrap()
}

/// Dovecot's `imap` reading `location` (a `mail_location`), pre-authenticated as
/// `nobody` (Dovecot refuses to give root's mail), driven by imaplib over its stdin.
fn dovecot_dump(location: &str, export: &Path, strip_sbd: bool) -> serde_json::Value {
    dovecot_run(location, export, &format!("dump(M, {})", if strip_sbd { "True" } else { "False" }))
}

/// Runs `expression` (a Python call on the session `M`) against Dovecot reading `location`.
fn dovecot_run(location: &str, export: &Path, expression: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    // Dovecot runs as nobody: it reads the export and writes its lock and list files.
    for path in [dir.path(), export] {
        let status = Command::new("chmod").args(["-R", "a+rwX", path.to_str().unwrap()]).status().unwrap();
        assert!(status.success());
    }
    let conf = dir.path().join("dovecot.conf");
    let base = dir.path().display();
    std::fs::write(
        &conf,
        format!(
            "base_dir = {base}/run\nstate_dir = {base}/state\nlog_path = {base}/dovecot.log\n\
             mail_location = {location}\nmail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\n\
             first_valid_gid = 0\nstats_writer_socket_path =\n"
        ),
    )
    .unwrap();
    let command = format!("env USER=nobody HOME={base} /usr/lib/dovecot/imap -c {}", conf.display());
    let script = format!(
        "{HELPERS}\nM = imaplib.IMAP4_stream({command:?})\nassert M.state == 'AUTH', M.state\n\
         print(json.dumps({expression}))\nM.logout()\n"
    );
    let output = python(&script);
    serde_json::from_str(output.trim()).unwrap_or_else(|e| {
        panic!("{e}: {output}\n{}", std::fs::read_to_string(dir.path().join("dovecot.log")).unwrap_or_default())
    })
}

/// What Dovecot serves from an mbox: it does not unquote `>From ` lines (mboxrd quoting
/// is undone by mboxrd readers: Hameau's own, mutt's with `mbox_type`), so a body line
/// `From …` is served as `>From …` and `>From …` as `>>From …`.
fn as_dovecot_mbox_serves(account: &serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut account = account.clone();
    for messages in account.as_object_mut().unwrap().values_mut() {
        for message in messages.as_array_mut().unwrap() {
            let raw = engine.decode(message[2].as_str().unwrap()).unwrap();
            let mut quoted = Vec::new();
            for line in raw.split_inclusive(|b| *b == b'\n') {
                let n_quotes = line.iter().take_while(|b| **b == b'>').count();
                if line[n_quotes..].starts_with(b"From ") {
                    quoted.push(b'>');
                }
                quoted.extend_from_slice(line);
            }
            message[2] = engine.encode(quoted).into();
        }
    }
    account
}

/// The same dump made by Hameau's own readers (what `hameau import maildir|mbox` takes):
/// the export read back gives Hameau's folders, flags, keywords, dates and bytes exactly.
fn mailfile_dump(root: &Path, format: hameau_mailfile::Format) -> serde_json::Value {
    use base64::Engine;
    let mut out = serde_json::Map::new();
    for folder in hameau_mailfile::open(root, format, &hameau_mailfile::Limits::default()).unwrap() {
        let folder = folder.unwrap();
        let mut messages = Vec::new();
        for message in folder.messages {
            let message = message.unwrap();
            let mut flags: Vec<String> =
                message.flags.iter().chain(&message.keywords).map(|f| f.to_lowercase()).collect();
            flags.sort();
            let raw = base64::engine::general_purpose::STANDARD.encode(&message.raw);
            messages.push(serde_json::json!([flags, message.internal_date.unwrap(), raw]));
        }
        out.insert(folder.path.join("/"), messages.into());
    }
    out.into()
}

pub(crate) fn export(config: &Path, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["export"];
    full.extend_from_slice(args);
    full.extend(["--config", config.to_str().unwrap()]);
    let (status, stdout, stderr) = run(&full);
    (status.success(), stdout, stderr)
}

#[test]
fn export_reads_back_in_dovecot_with_folders_flags_dates_and_bytes() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    create_account(&config, "agent2@a.test", AGENT_PASSWORD);
    let mut server = start_server(&config);
    let expected = fill(&server);
    let user = &expected["user@a.test"];
    assert_eq!(user["INBOX"].as_array().unwrap().len(), 3, "{user}");
    assert_eq!(user["Projets/Été 2026"].as_array().unwrap().len(), 1, "{user}");
    assert_eq!(user["Projets/Vide"].as_array().unwrap().len(), 0, "{user}");

    // While the server runs, the store is its own (RocksDB): the export says so and writes
    // nothing. On PostgreSQL it runs beside the server.
    let out = dir.path().join("out");
    let beside = dir.path().join("beside");
    let to = if crate::support::on_postgresql() { &beside } else { &out };
    let (ok, _, stderr) =
        export(&config, &["--account", "user@a.test", "--to", to.to_str().unwrap(), "--format", "maildir"]);
    if crate::support::on_postgresql() {
        assert!(ok && beside.join("cur").exists(), "{stderr}");
    } else {
        assert!(!ok && (stderr.contains("stop it first") || stderr.contains("arrêtez-le")), "{stderr}");
        assert!(!out.join("cur").exists());
    }
    server.signal(libc::SIGTERM);
    assert!(server.wait(std::time::Duration::from_secs(30)).is_some_and(|status| status.success()));

    let maildir = dir.path().join("maildir");
    let (ok, stdout, stderr) =
        export(&config, &["--account", "user@a.test", "--to", maildir.to_str().unwrap(), "--format", "maildir"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("7 message(s)"), "{stdout}");
    assert_eq!(&mailfile_dump(&maildir, hameau_mailfile::Format::Maildir), user);
    let location = format!("maildir:{}:INDEX=MEMORY", maildir.display());
    assert_eq!(&dovecot_dump(&location, &maildir, false), user);
    // dovecot-uidlist: Dovecot serves Hameau's UIDVALIDITY and UIDs.
    assert_eq!(dovecot_run(&location, &maildir, "uids(M)"), expected["user@a.test uids"]);

    let mbox = dir.path().join("mbox");
    let (ok, _, stderr) =
        export(&config, &["--account", "user@a.test", "--to", mbox.to_str().unwrap(), "--format", "mbox"]);
    assert!(ok, "{stderr}");
    assert!(mbox.join("Projets.sbd/Été 2026").is_file() && mbox.join("Projets").is_file());
    let mboxrd = hameau_mailfile::Format::Mbox(hameau_mailfile::mbox::Quoting::Mboxrd);
    assert_eq!(&mailfile_dump(&mbox, mboxrd), user);
    // Dovecot reads mbox keywords only when an X-IMAPbase header declares them: the
    // flags it shows are the system flags; the keywords are checked in the file.
    let inbox = std::fs::read_to_string(mbox.join("INBOX")).unwrap();
    assert!(inbox.contains("X-Keywords: $projet\n") && inbox.contains("\n>From the mayor's desk:\n"), "{inbox}");
    assert!(inbox.contains("\n>>From before\n"), "{inbox}");
    let mut without_keywords = as_dovecot_mbox_serves(user);
    for messages in without_keywords.as_object_mut().unwrap().values_mut() {
        for message in messages.as_array_mut().unwrap() {
            let flags: Vec<serde_json::Value> = message[0]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f.as_str().unwrap().starts_with('\\'))
                .cloned()
                .collect();
            message[0] = flags.into();
        }
    }
    let location = format!("mbox:{}:INBOX={}/INBOX:INDEX=MEMORY:UTF-8", mbox.display(), mbox.display());
    assert_eq!(dovecot_dump(&location, &mbox, true), without_keywords);

    // A tenant: one directory per account, each read back whole.
    let tenant = dir.path().join("tenant");
    let (ok, stdout, stderr) =
        export(&config, &["--tenant", "a", "--to", tenant.to_str().unwrap(), "--format", "maildir"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 compte(s)") || stdout.contains("2 account(s)"), "{stdout}");
    // The export is private (0700): Dovecot, as nobody, is let in.
    assert!(Command::new("chmod").args(["a+rx", tenant.to_str().unwrap()]).status().unwrap().success());
    for account in ["user@a.test", "agent2@a.test"] {
        let root = tenant.join(account);
        let location = format!("maildir:{}:INDEX=MEMORY", root.display());
        assert_eq!(&dovecot_dump(&location, &root, false), &expected[account], "{account}");
    }
    // An export never mixes with other files.
    let (ok, _, stderr) = export(&config, &["--tenant", "a", "--to", tenant.to_str().unwrap(), "--format", "mbox"]);
    assert!(!ok && (stderr.contains("not empty") || stderr.contains("pas vide")), "{stderr}");
}

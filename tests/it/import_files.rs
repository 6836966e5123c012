//! `hameau import mbox|maildir` (issue 13, item 3, and the acceptance item "Export of an
//! account then import into a fresh account gives identical folders, flags and message
//! bytes"): an account filled over IMAP APPEND (nested French folders, flags, keywords,
//! dates going back years), the server stopped, the account exported as Maildir and as
//! mbox, each export imported into a fresh account, and the three accounts compared over
//! IMAP: the folders, the flags and keywords, the INTERNALDATEs and the message bytes.
//!
//! What is compared: for Maildir everything exactly (bytes, INTERNALDATE from the files'
//! times); for mbox the bytes after the reader removed the local-state headers the export
//! wrote (`Status`, `X-Status`, `X-Keywords`, which carry the flags), which are the bytes
//! Hameau stored, and the INTERNALDATE from each `From ` line (whole seconds, as IMAP).
//! Then a rerun copies nothing, an import while the server runs is refused, and a
//! Thunderbird-style "Local Folders" tree with a truncated mbox and an oversized message
//! has them skipped with the reason in the report, the rest copied, and exit status 3.

use std::path::Path;

use crate::export::{AGENT_PASSWORD, HELPERS, USER_PASSWORD, export, fill};
use crate::imap::{create_account, imap_account, python};
use crate::support::{config_path, init_with_token, run, start_server};

const COPY_PASSWORD: &str = "copie conforme de la mairie";

/// `hameau import FORMAT --account ACCOUNT PATH --report R`: the exit code, stdout,
/// stderr and the JSON report.
fn import(config: &Path, format: &str, account: &str, path: &Path) -> (i32, String, String, serde_json::Value) {
    let report = path.parent().unwrap().join(format!("report-{format}-{account}.json"));
    let _ = std::fs::remove_file(&report);
    let (status, stdout, stderr) = run(&[
        "import",
        format,
        "--account",
        account,
        path.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let json = std::fs::read(&report).map(|bytes| serde_json::from_slice(&bytes).unwrap()).unwrap_or_default();
    (status.code().unwrap_or(-1), stdout, stderr, json)
}

/// The report's totals: (on the source, copied, already there, skipped).
fn totals(report: &serde_json::Value) -> (u64, u64, u64, u64) {
    let mut sums = (0, 0, 0, 0);
    for folder in report["folders"].as_array().unwrap() {
        sums.0 += folder["on_source"].as_u64().unwrap();
        sums.1 += folder["copied"].as_u64().unwrap();
        sums.2 += folder["already_there"].as_u64().unwrap();
        sums.3 += folder["skipped"].as_array().unwrap().len() as u64;
    }
    sums
}

/// Every folder of each account as Hameau serves it over IMAPS (the helpers' `dump`).
fn dump_accounts(server: &crate::support::Server, accounts: &[(&str, &str)]) -> serde_json::Value {
    let mut script = String::from(HELPERS);
    script.push_str(&format!(
        "ctx = ssl.create_default_context(cafile={cert:?})\nctx.check_hostname = False\nresult = {{}}\n",
        cert = server.cert.to_str().unwrap()
    ));
    for (account, password) in accounts {
        script.push_str(&format!(
            "M = imaplib.IMAP4_SSL('127.0.0.1', {port}, ssl_context=ctx)\nM.login({account:?}, {password:?})\n\
             result[{account:?}] = dump(M, False)\nM.logout()\n",
            port = server.imaps[0].port()
        ));
    }
    script.push_str("print(json.dumps(result))\n");
    serde_json::from_str(python(&script).trim()).unwrap()
}

fn stop(mut server: crate::support::Server) {
    server.signal(libc::SIGTERM);
    assert!(server.wait(std::time::Duration::from_secs(30)).is_some_and(|status| status.success()));
}

#[test]
fn export_then_import_gives_identical_folders_flags_dates_and_bytes() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    create_account(&config, "agent2@a.test", AGENT_PASSWORD);
    create_account(&config, "copie-maildir@a.test", COPY_PASSWORD);
    create_account(&config, "copie-mbox@a.test", COPY_PASSWORD);
    let server = start_server(&config);
    let expected = fill(&server);
    let user = expected["user@a.test"].clone();
    assert_eq!(user["Projets/Été 2026"].as_array().unwrap().len(), 1, "{user}");
    stop(server);

    let maildir = dir.path().join("maildir");
    let (ok, _, stderr) =
        export(&config, &["--account", "user@a.test", "--to", maildir.to_str().unwrap(), "--format", "maildir"]);
    assert!(ok, "{stderr}");
    let mbox = dir.path().join("mbox");
    let (ok, _, stderr) =
        export(&config, &["--account", "user@a.test", "--to", mbox.to_str().unwrap(), "--format", "mbox"]);
    assert!(ok, "{stderr}");

    let (code, stdout, stderr, report) = import(&config, "maildir", "copie-maildir@a.test", &maildir);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("COMPLET") && stdout.contains("COMPLETE"), "{stdout}");
    assert_eq!(totals(&report), (7, 7, 0, 0), "{report}");
    let corbeille = report["folders"].as_array().unwrap().iter().find(|f| f["source"] == "Corbeille").unwrap();
    assert_eq!((corbeille["role"].as_str(), corbeille["target"].as_str()), (Some("trash"), Some("Corbeille")));
    for folder in report["folders"].as_array().unwrap() {
        let verification = &folder["verification"];
        assert_eq!(verification["matching"], folder["on_source"], "{folder}");
    }
    // A rerun copies nothing: every message is known by its dovecot-uidlist UID.
    let (code, stdout, _, report) = import(&config, "maildir", "copie-maildir@a.test", &maildir);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(totals(&report), (7, 0, 7, 0), "{report}");

    let (code, stdout, stderr, report) = import(&config, "mbox", "copie-mbox@a.test", &mbox);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(totals(&report), (7, 7, 0, 0), "{report}");
    // A rerun of an mbox: each message known by its position under the file's fingerprint.
    let (code, stdout, _, report) = import(&config, "mbox", "copie-mbox@a.test", &mbox);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(totals(&report), (7, 0, 7, 0), "{report}");

    let server = start_server(&config);
    // While a server runs, the store is its own (RocksDB): the import says so. On
    // PostgreSQL it runs beside the server: every message is already there.
    let (code, stdout, stderr, report) = import(&config, "maildir", "copie-maildir@a.test", &maildir);
    if crate::support::on_postgresql() {
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert_eq!(totals(&report), (7, 0, 7, 0), "{report}");
    } else {
        assert!(code == 1 && (stderr.contains("stop it first") && stderr.contains("arrêtez-le")), "{stderr}");
    }
    let copies = dump_accounts(
        &server,
        &[
            ("user@a.test", USER_PASSWORD),
            ("copie-maildir@a.test", COPY_PASSWORD),
            ("copie-mbox@a.test", COPY_PASSWORD),
        ],
    );
    stop(server);
    // The source account did not change, and each copy is identical to it: the same
    // folders (the special ones by role), flags and keywords, INTERNALDATEs and bytes.
    assert_eq!(copies["user@a.test"], user);
    assert_eq!(copies["copie-maildir@a.test"], user);
    assert_eq!(copies["copie-mbox@a.test"], user);

    // Mail delivered into the Maildir after Dovecot last looked (a file in new/ that
    // dovecot-uidlist does not name): the folder's UIDs are no longer keys, its messages
    // are known by their hashes, and exactly the new one is copied.
    std::fs::write(
        maildir.join("new/1780000000.M1P1.old-server"),
        "From: Mairie <mairie@a.test>\r\nSubject: Tard\r\n\r\narrivé après l'export\r\n",
    )
    .unwrap();
    let (code, stdout, _, report) = import(&config, "maildir", "copie-maildir@a.test", &maildir);
    assert_eq!(code, 0, "{stdout}");
    assert_eq!(totals(&report), (8, 1, 7, 0), "{report}");
    let (_, _, _, report) = import(&config, "maildir", "copie-maildir@a.test", &maildir);
    assert_eq!(totals(&report), (8, 0, 8, 0), "{report}");
}

/// One message as Thunderbird keeps it in a local folder: `From - date`, its
/// `X-Mozilla-Status` (0x0001 read, 0x0004 flagged), its keywords, the message, a blank line.
fn thunderbird_message(date: &str, status: &str, keys: &str, subject: &str, body: &str) -> String {
    format!(
        "From - {date}\nX-Mozilla-Status: {status}\nX-Mozilla-Status2: 00000000\nX-Mozilla-Keys: {keys:<80}\n\
         From: Mairie <mairie@a.test>\nTo: agent@a.test\nSubject: {subject}\n\n{body}\n\n"
    )
}

#[test]
fn thunderbird_local_folders_with_a_truncated_mbox_and_an_oversized_message() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    // Small enough that the test's large message is over it.
    let text = std::fs::read_to_string(&config).unwrap();
    let (head, files) = text.split_once("[migrate.files]\n").expect("the generated file shows [migrate.files]");
    let files = files.replacen("message_bytes_max = 268435456", "message_bytes_max = 65536", 1).replacen(
        "line_bytes_max = 4194304",
        "line_bytes_max = 16384",
        1,
    );
    std::fs::write(&config, format!("{head}[migrate.files]\n{files}")).unwrap();

    let local = dir.path().join("profile/Mail/Local Folders");
    std::fs::create_dir_all(local.join("Archives.sbd")).unwrap();
    let big = "x".repeat(76) + "\n";
    let inbox = thunderbird_message("Mon Jan 06 10:00:00 2020", "0001", "$label1", "Lu", "Bonjour")
        + &thunderbird_message("Tue Jan 07 11:00:00 2020", "0004", "", "Important", "à traiter")
        + &thunderbird_message("Wed Jan 08 12:00:00 2020", "0000", "", "Énorme", &big.repeat(2000));
    std::fs::write(local.join("Inbox"), inbox).unwrap();
    std::fs::write(local.join("Inbox.msf"), "// <!-- <mdb:mork:z v=\"1.4\"/> -->\n").unwrap();
    std::fs::write(
        local.join("Sent"),
        thunderbird_message("Thu Feb 06 09:00:00 2020", "0001", "", "Envoi", "ci-joint"),
    )
    .unwrap();
    std::fs::write(local.join("Archives"), "").unwrap();
    std::fs::write(
        local.join("Archives.sbd/2019"),
        thunderbird_message("Fri Mar 01 08:00:00 2019", "0001", "", "Ancien", "2019"),
    )
    .unwrap();
    // A copy that stopped in the middle of the second message.
    let cut = thunderbird_message("Sun Apr 05 05:05:05 2020", "0001", "", "Coupé", "ce message est coupé");
    let trash = thunderbird_message("Sat Apr 04 04:04:04 2020", "0001", "", "Jeté", "adieu") + &cut[..cut.len() - 8];
    std::fs::write(local.join("Trash"), trash).unwrap();
    std::fs::write(local.join("msgFilterRules.dat"), "version=\"9\"\n").unwrap();

    // The wrong format: nothing can be read, exit status 1 and the reason.
    let (code, stdout, _, report) = import(&config, "maildir", "user@a.test", &local);
    assert!(code == 1 && stdout.contains("not a Maildir"), "{code} {stdout}");
    assert_eq!(report["folders"].as_array().map(Vec::len), Some(0), "{report}");

    let (code, stdout, stderr, report) = import(&config, "mbox", "user@a.test", &local);
    assert_eq!(code, 3, "{stdout}\n{stderr}");
    assert!(stdout.contains("INCOMPLET") && stdout.contains("INCOMPLETE"), "{stdout}");
    assert_eq!(totals(&report), (7, 5, 0, 2), "{report}");
    let folders = report["folders"].as_array().unwrap();
    let folder = |source: &str| folders.iter().find(|f| f["source"] == source).unwrap_or_else(|| panic!("{report}"));
    let skipped = |source: &str| folder(source)["skipped"][0]["reason"].as_str().unwrap().to_string();
    assert!(skipped("INBOX").contains("over the 65536-byte limit"), "{report}");
    assert!(skipped("Trash").contains("cut short"), "{report}");
    assert!(stdout.contains("cut short"), "{stdout}");
    assert_eq!(folder("Sent")["target"], "Envoyés");
    assert_eq!(folder("Trash")["target"], "Corbeille");
    assert_eq!(folder("Archives/2019")["target"], "Archives/2019");
    assert_eq!(folder("INBOX")["verification"]["matching"], 2);

    // A rerun copies nothing more; the skipped messages are still reported.
    let (code, stdout, _, report) = import(&config, "mbox", "user@a.test", &local);
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(totals(&report), (7, 0, 5, 2), "{report}");

    let server = start_server(&config);
    let account = dump_accounts(&server, &[("user@a.test", USER_PASSWORD)]);
    stop(server);
    let account = &account["user@a.test"];
    let flags = |folder: &str| -> Vec<serde_json::Value> {
        account[folder].as_array().unwrap_or_else(|| panic!("{account}")).iter().map(|m| m[0].clone()).collect()
    };
    assert_eq!(flags("INBOX"), [serde_json::json!(["$label1", "\\seen"]), serde_json::json!(["\\flagged"])]);
    assert_eq!(flags("Envoyés"), [serde_json::json!(["\\seen"])]);
    assert_eq!(flags("Archives/2019").len(), 1);
    assert_eq!(flags("Corbeille").len(), 1);
    // The INTERNALDATE is the `From ` line's (Thunderbird writes local time; read as UTC).
    assert_eq!(account["INBOX"][0][1], 1_578_304_800);

    // New mail in Thunderbird: the file changed, so its messages are known by their
    // hashes, and exactly the new one is copied.
    let mut inbox = std::fs::OpenOptions::new().append(true).open(local.join("Inbox")).unwrap();
    std::io::Write::write_all(
        &mut inbox,
        thunderbird_message("Mon Mar 02 10:00:00 2020", "0000", "", "Nouveau", "arrivé hier").as_bytes(),
    )
    .unwrap();
    drop(inbox);
    let (code, stdout, _, report) = import(&config, "mbox", "user@a.test", &local);
    assert_eq!(code, 3, "{stdout}");
    assert_eq!(totals(&report), (8, 1, 5, 2), "{report}");
    let (_, _, _, report) = import(&config, "mbox", "user@a.test", &local);
    assert_eq!(totals(&report), (8, 0, 6, 2), "{report}");
}

use std::path::Path;

use hameau_mailbox::Role;

use crate::imap::uid_set;
use crate::mapping::{FolderKind, decode_name, folder_kind, target_name};
use crate::report::{FolderReport, Report, Skipped, Verification};
use crate::{Options, Security, SourceUrl, parse_accounts};

fn kind(name: &str, attributes: &[&str], expect: FolderKind) {
    let attributes: Vec<String> = attributes.iter().map(|a| a.to_string()).collect();
    assert_eq!(folder_kind(name, &attributes), expect, "{name} {attributes:?}");
}

#[test]
fn special_folders_by_special_use_then_by_name() {
    use FolderKind::{All, Plain, View};
    let role = FolderKind::Role;
    // SPECIAL-USE wins over the name.
    kind("Mes envois", &["\\Sent"], role(Role::Sent));
    kind("Trash", &["\\HasNoChildren", "\\Junk"], role(Role::Junk));
    kind("[Gmail]/Tous les messages", &["\\All"], All);
    kind("[Gmail]/Suivis", &["\\Flagged"], View);
    kind("[Gmail]/Important", &["\\Important"], View);
    // The usual names, French and English, any case.
    kind("INBOX", &[], role(Role::Inbox));
    kind("inbox", &[], role(Role::Inbox));
    kind("Éléments envoyés", &[], role(Role::Sent));
    kind("Messages envoyés", &[], role(Role::Sent));
    kind("Sent", &[], role(Role::Sent));
    kind("Sent Items", &[], role(Role::Sent));
    kind("[Gmail]/Sent Mail", &[], role(Role::Sent));
    kind("Corbeille", &[], role(Role::Trash));
    kind("Trash", &[], role(Role::Trash));
    kind("Deleted Items", &[], role(Role::Trash));
    kind("Brouillons", &[], role(Role::Drafts));
    kind("Drafts", &[], role(Role::Drafts));
    kind("Indésirables", &[], role(Role::Junk));
    kind("Spam", &[], role(Role::Junk));
    kind("Junk", &[], role(Role::Junk));
    kind("Courrier indésirable", &[], role(Role::Junk));
    kind("Archives", &[], role(Role::Archive));
    kind("[Gmail]/All Mail", &[], All);
    kind("[Gmail]/Starred", &[], View);
    kind("[Gmail]/Important", &[], View);
    // Under INBOX (Courier, Orange): the name below it.
    kind("INBOX/Sent", &[], role(Role::Sent));
    kind("INBOX/Brouillons", &[], role(Role::Drafts));
    kind("INBOX/Inbox", &[], Plain);
    // Anything else is a folder of its own.
    kind("Projets/Sent", &[], Plain);
    kind("Conseil municipal", &["\\HasChildren"], Plain);
    kind("Outbox", &[], Plain);
}

fn name(raw: &str, delimiter: Option<&str>, expect: &str) {
    assert_eq!(decode_name(raw, delimiter), expect, "{raw:?} {delimiter:?}");
}

#[test]
fn names_are_decoded_and_take_our_delimiter() {
    name("&AMk-l&AOk-ments envoy&AOk-s", Some("/"), "Éléments envoyés");
    name("Projets.&AMk-t&AOk-", Some("."), "Projets/Été");
    name("Projets/2026", Some("/"), "Projets/2026");
    name("inbox.Factures", Some("."), "INBOX/Factures");
    name("Inbox", Some("/"), "INBOX");
    // Our delimiter inside a segment of a '.' server; characters we refuse; empty levels.
    name("a/b.c", Some("."), "a-b/c");
    name("x*y%z", Some("/"), "x_y_z");
    name("a..b", Some("."), "a/_/b");
    name("..", None, "_");
    // Not valid modified UTF-7: taken as sent (a UTF-8 server).
    name("Réunions", Some("/"), "Réunions");
    name("&-Co", Some("/"), "&Co");
}

#[test]
fn folders_under_a_role_folder_go_under_its_mailbox() {
    let roles =
        vec![("Sent Items".to_string(), "Envoyés".to_string()), ("Sent Items/Old".to_string(), "X".to_string())];
    assert_eq!(target_name("Sent Items/2019", &roles), "Envoyés/2019");
    assert_eq!(target_name("Sent Items/Old/a", &roles), "X/a");
    assert_eq!(target_name("Sent Itemsx/2019", &roles), "Sent Itemsx/2019");
    assert_eq!(target_name("Projets", &roles), "Projets");
}

#[test]
fn uid_sets() {
    assert_eq!(uid_set(&[1]), "1");
    assert_eq!(uid_set(&[3, 1, 2, 5, 7, 8]), "1:3,5,7:8");
    assert_eq!(uid_set(&[4, 4, 9]), "4,9");
}

fn url(text: &str, plain: bool, expect: Option<(Security, &str, u16)>) {
    let got = SourceUrl::parse(text, plain).ok().map(|u| (u.security, u.host, u.port));
    assert_eq!(got, expect.map(|(s, h, p)| (s, h.to_string(), p)), "{text}");
}

#[test]
fn source_urls() {
    url("imaps://imap.orange.fr", false, Some((Security::Tls, "imap.orange.fr", 993)));
    url("imaps://imap.gmail.com:993/", false, Some((Security::Tls, "imap.gmail.com", 993)));
    url("imap://mail.free.fr", false, Some((Security::StartTls, "mail.free.fr", 143)));
    url("imap://127.0.0.1:1143", true, Some((Security::Plain, "127.0.0.1", 1143)));
    url("imaps://[::1]:9993", false, Some((Security::Tls, "::1", 9993)));
    url("imaps://h", true, None);
    url("https://h", false, None);
    url("imaps://user@h", false, None);
    url("imaps://h:0", false, None);
    url("imaps://h/INBOX", false, None);
    url("imaps://", false, None);
}

#[test]
fn accounts_file() {
    let text = "account,from,user,password_file\n# agents\nalice@commune.fr, imaps://imap.orange.fr, alice.m, alice.pw\n\n\
                bob@commune.fr,imap://h:143,bob,/secrets/bob\n";
    let accounts = parse_accounts(text, Path::new("/etc/import")).unwrap();
    assert_eq!(accounts.len(), 2);
    assert_eq!(accounts[0].account, "alice@commune.fr");
    assert_eq!(accounts[0].password_file, Path::new("/etc/import/alice.pw"));
    assert_eq!(accounts[1].password_file, Path::new("/secrets/bob"));
    let bad = parse_accounts("alice@commune.fr,imaps://h,alice\n", Path::new("/")).unwrap_err().to_string();
    assert_eq!(bad, "line 1: expected 4 fields (account,from,user,password_file), found 3");
    assert!(parse_accounts("alice,imaps://h,a,b\n", Path::new("/")).is_err());
}

#[test]
fn a_report_is_complete_only_without_any_problem() {
    let verified = Verification { on_source: 2, recorded: 2, compared: 2, matching: 2, ..Verification::default() };
    let good = FolderReport {
        source: "INBOX".into(),
        on_source: 2,
        copied: 2,
        verification: Some(verified.clone()),
        ..FolderReport::default()
    };
    let mut report = Report { folders: vec![good.clone()], ..Report::default() };
    report.settle();
    assert!(report.complete);
    let skipped =
        FolderReport { skipped: vec![Skipped { uid: 3, size: 10, reason: "refused".into() }], ..good.clone() };
    let mut report = Report { folders: vec![good.clone(), skipped], ..Report::default() };
    report.settle();
    assert!(!report.complete);
    assert!(report.render().contains("INCOMPLET"));
    assert!(report.render().contains("ignoré UID 3"));
    let missing =
        FolderReport { verification: Some(Verification { missing: vec![9], ..verified.clone() }), ..good.clone() };
    let mut report = Report { folders: vec![missing], ..Report::default() };
    report.settle();
    assert!(!report.complete);
    // A folder that could not be read, or one never verified, is not complete.
    let unread = FolderReport { error: Some("NO no such folder".into()), ..FolderReport::default() };
    let mut report = Report { folders: vec![unread], ..Report::default() };
    report.settle();
    assert!(!report.complete);
    // A view (Gmail Important) is complete by design.
    let view = FolderReport { note: Some("a view".into()), ..FolderReport::default() };
    let mut report = Report { folders: vec![view], ..Report::default() };
    report.settle();
    assert!(report.complete);
}

#[test]
fn defaults_pass_their_checks() {
    Options::default().check().unwrap();
    let zero = Options { batch_messages_max: 0, ..Options::default() };
    assert_eq!(zero.check().unwrap_err().key, "migrate.batch_messages_max");
}

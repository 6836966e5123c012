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
    // French first, then the same in English, each header with its verdict and counts.
    let text = report.render();
    let (french, english) = text.split_once("Import of ").expect("an English part");
    assert!(french.starts_with("Import de  depuis  : INCOMPLET\n"), "{french}");
    assert!(
        french.contains("4 messages sur la source, 4 copiés, 0 déjà là, 0 ailleurs (libellés), 1 ignorés"),
        "{french}"
    );
    assert!(english.starts_with(" from : INCOMPLETE\n"), "{english}");
    assert!(english.contains("4 messages on the source, 4 copied, 0 already there, 0 elsewhere (labels), 1 skipped"));
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

#[test]
fn the_servers_words_are_kept_from_a_refusal() {
    let text = r#"outcome: Outcome { code: None, information: Some("[NOPERM] Permission \"denied\"") }"#;
    assert_eq!(crate::imap::server_text(text), "[NOPERM] Permission \"denied\"");
    assert_eq!(crate::imap::server_text("plain"), "plain");
}

mod destination {
    use hameau_mailbox::{Mail, Quota, Role};
    use hameau_store::{Options as StoreOptions, Store};

    use super::channel_of;
    use crate::mapping::FolderKind;
    use crate::progress::Progress;
    use crate::report::FolderReport;
    use crate::{Destination, SourceFolder, SourceMessage, Target};

    fn folder(name: &str, kind: FolderKind, validity: u32) -> SourceFolder {
        SourceFolder { name: name.into(), kind, validity }
    }

    fn message(id: u32, subject: &str) -> SourceMessage {
        let raw =
            format!("From: a@b.fr\r\nSubject: {subject}\r\nMessage-ID: <{id}.{subject}@b.fr>\r\n\r\nBonjour.\r\n");
        SourceMessage {
            id,
            raw: raw.into_bytes().into(),
            keywords: vec!["\\Seen".into(), "$Label1".into()],
            internal_date: 1_100_000_000 + u64::from(id),
        }
    }

    /// Mapping, batches with a refused message, records for the rerun and for a changed
    /// UIDVALIDITY: the side every source (IMAP, mbox, Maildir) shares.
    #[tokio::test]
    async fn copies_records_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
        let mail = Mail::new(store.clone());
        let target = Target { account: 9, address: "alice@commune.fr".into(), quota: Quota::default() };
        let mut destination =
            Destination::open(mail.clone(), target, "imap\nh\n993\nalice", 100, 1_800_000_000).await.unwrap();
        let folders = [
            folder("INBOX", FolderKind::Role(Role::Inbox), 7),
            folder("Sent Items", FolderKind::Role(Role::Sent), 7),
            folder("Sent Items/2019", FolderKind::Plain, 7),
            folder("Sent", FolderKind::Role(Role::Sent), 7),
            folder("[Gmail]/All Mail", FolderKind::All, 7),
        ];
        let plan = destination.plan(&folders);
        let names: Vec<Option<&str>> = plan.iter().map(|(name, _)| name.as_deref()).collect();
        assert_eq!(names, vec![Some("INBOX"), Some("Envoyés"), Some("Envoyés/2019"), Some("Sent"), None]);
        assert_eq!(plan[1].1, Some(Role::Sent));
        assert_eq!(plan[3].1, None);

        let inbox = destination.mailbox("INBOX", Some(Role::Inbox)).await.unwrap();
        let nested = destination.mailbox("Envoyés/2019", None).await.unwrap();
        assert_eq!(mail.mailbox(9, nested).await.unwrap().name, "Envoyés/2019");
        let huge = SourceMessage {
            raw: format!("Subject: {}\r\n\r\nx\r\n", "x".repeat(1_200_000)).into_bytes().into(),
            ..message(2, "huge")
        };
        let mut report = FolderReport::default();
        let progress = Progress::default();
        let batch = vec![message(1, "one"), huge, message(3, "three")];
        destination.copy(&folders[0], inbox, batch, &mut report, &progress).await.unwrap();
        assert_eq!(report.copied, 2);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].uid, 2);
        assert!(report.skipped[0].reason.contains("summary"), "{}", report.skipped[0].reason);
        let entries = mail.uids(9, inbox).await.unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].keywords, vec!["$label1".to_string(), "\\Seen".to_string()]);
        assert_eq!(entries[0].received_at, 1_100_000_001);

        // A rerun knows what was copied; the refused message is not recorded (tried again).
        let records = destination.records(&folders[0]).await.unwrap();
        let mut ids: Vec<u32> = records.current.keys().copied().collect();
        ids.sort();
        assert_eq!(ids, vec![1, 3]);
        assert!(records.earlier.is_empty());
        // The UIDVALIDITY changed: the same messages are known by their hashes.
        let renumbered = folder("INBOX", FolderKind::Role(Role::Inbox), 8);
        let records = destination.records(&renumbered).await.unwrap();
        assert!(records.current.is_empty());
        assert_eq!(records.earlier.values().sum::<u32>(), 2);
        // Gmail's All Mail sees the hashes of the other folders, not its own.
        assert_eq!(destination.hashes_elsewhere("[Gmail]/All Mail").await.unwrap().len(), 2);
        assert!(destination.hashes_elsewhere("INBOX").await.unwrap().is_empty());
        // What the mailbox holds, for the verification.
        assert_eq!(destination.stored_hashes(inbox).await.unwrap().len(), 2);
        // A source read message by message: a rerun copies nothing twice, a changed
        // validity is matched by content.
        let projects = destination.mailbox("Projets", None).await.unwrap();
        let files = folder("Projets", FolderKind::Plain, 1);
        let lazily = || (10..25).map(|id| message(id, "projet"));
        let mut report = FolderReport::default();
        destination
            .import_folder(&files, projects, &mut channel_of(lazily()), 1_000, &mut report, &progress)
            .await
            .unwrap();
        assert_eq!((report.on_source, report.copied, report.already_there), (15, 15, 0));
        let mut report = FolderReport::default();
        destination
            .import_folder(&files, projects, &mut channel_of(lazily()), 1_000, &mut report, &progress)
            .await
            .unwrap();
        assert_eq!((report.on_source, report.copied, report.already_there), (15, 0, 15));
        let rewritten = folder("Projets", FolderKind::Plain, 2);
        let renumbered = || {
            (10..26).map(|id| message(id + 100, "projet")).map(|mut m| {
                // Same contents as before for ids 110..125, one new message (125).
                m.raw = message(m.id - 100, "projet").raw;
                m
            })
        };
        let mut report = FolderReport::default();
        destination
            .import_folder(&rewritten, projects, &mut channel_of(renumbered()), 1_000, &mut report, &progress)
            .await
            .unwrap();
        assert_eq!((report.on_source, report.copied, report.already_there), (16, 1, 15));
        assert_eq!(mail.uids(9, projects).await.unwrap().len(), 16);
        // Another source's records never mix with these.
        let target = Target { account: 9, address: "alice@commune.fr".into(), quota: Quota::default() };
        let other = Destination::open(mail, target, "imap\nother\n993\nalice", 100, 1_800_000_000).await.unwrap();
        assert!(other.records(&folders[0]).await.unwrap().current.is_empty());
    }
}

mod guard {
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use crate::guard::{Budget, Guarded, Transport};

    /// A client over loopback reading what a server task sends (`bytes`, then holds the
    /// connection open for a while).
    async fn pair(bytes: usize, rate: u64, stall: Duration, budget: u64) -> Guarded {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(&vec![b'x'; bytes]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let guard_budget = Budget::default();
        guard_budget.set(budget);
        Guarded::new(Transport::Plain(stream), guard_budget, rate, stall)
    }

    #[tokio::test]
    async fn an_answer_over_its_budget_fails_the_read() {
        let mut guarded = pair(100_000, 0, Duration::from_secs(5), 10_000).await;
        let mut buf = vec![0; 200_000];
        let mut read = 0;
        let error = loop {
            match guarded.read(&mut buf[read..]).await {
                Ok(n) => read += n,
                Err(e) => break e,
            }
        };
        assert!(error.to_string().contains("over its limit"), "{error}");
        assert!(read <= 10_000);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let mut guarded = pair(10, 0, Duration::from_millis(200), 1_000_000).await;
        let mut buf = [0; 64];
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 10);
        let started = Instant::now();
        let error = guarded.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn reads_keep_to_the_rate() {
        // One second of credit, then 100,000 bytes per second: 300,000 bytes take about
        // two seconds (the last read's own cost is paid by the next one).
        let mut guarded = pair(300_000, 100_000, Duration::from_secs(5), 1_000_000).await;
        let started = Instant::now();
        let mut buf = vec![0; 400_000];
        let mut read = 0;
        while read < 300_000 {
            read += guarded.read(&mut buf[read..]).await.unwrap();
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(1_200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    }
}

#[test]
fn progress_line() {
    let progress = crate::Progress::default();
    progress.add_total(10, 0);
    progress.add_total(0, 3 * 1024 * 1024);
    progress.add_done(5, 1024 * 1024);
    progress.set_folder("Conseil municipal");
    let snapshot = progress.snapshot();
    assert_eq!((snapshot.messages_done, snapshot.messages_total), (5, 10));
    assert!(snapshot.eta_s.is_some());
    let line = snapshot.line("alice@commune.fr");
    assert!(line.starts_with("alice@commune.fr  5/10 msg  1.0/3.0 MiB  "), "{line}");
    assert!(line.ends_with("Conseil municipal"), "{line}");
}

#[test]
fn a_message_may_be_a_little_larger_than_announced() {
    use crate::imap::allowance;
    assert_eq!(allowance(100, 50 << 20), 200 + 65_536);
    assert_eq!(allowance(1 << 20, 50 << 20), (2 << 20) + 65_536);
    assert_eq!(allowance(40 << 20, 50 << 20), (50 << 20) + 65_536);
    assert_eq!(allowance(u64::MAX, 50 << 20), (50 << 20) + 65_536);
}

/// A job runner's cancel ends the import at once, even while it waits for a server.
#[tokio::test]
async fn a_job_is_cancelled_at_once() {
    use std::sync::Arc;

    use hameau_mailbox::{Mail, Quota};
    use hameau_store::{Options as StoreOptions, Store};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
    let importer = Arc::new(crate::Importer::new(Mail::new(store), Options::default(), Arc::new(|| 1_800_000_000)));
    // A server that accepts and never greets: the import waits (connect_timeout_s is 30 s).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _held = listener.accept().await;
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    });
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    );
    let source = crate::ImapSource {
        url: SourceUrl::parse(&format!("imap://127.0.0.1:{port}"), true).unwrap(),
        user: "alice".into(),
        password: "secret".into(),
        tls,
    };
    let target = crate::Target { account: 1, address: "alice@commune.fr".into(), quota: Quota::default() };
    let job = importer.start_imap(target, source);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!job.is_finished());
    let started = std::time::Instant::now();
    job.cancel.cancel();
    let report = job.report().await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(report.error.as_deref().unwrap().starts_with("cancelled"), "{:?}", report.error);
    assert!(!report.complete);
    assert!(format!("{:?}", report).contains("alice@commune.fr"));
}

/// The messages as a file source hands them over: a channel, filled and closed.
pub(crate) fn channel_of(
    messages: impl Iterator<Item = crate::SourceMessage>,
) -> tokio::sync::mpsc::Receiver<Result<crate::SourceMessage, Skipped>> {
    let messages: Vec<crate::SourceMessage> = messages.collect();
    let (sender, receiver) = tokio::sync::mpsc::channel(messages.len().max(1));
    for message in messages {
        sender.try_send(Ok(message)).expect("the channel holds them all");
    }
    receiver
}

/// A job table over a fresh store, and an IMAP source that accepts and never greets: a
/// job against it runs until cancelled.
struct JobTable {
    jobs: crate::Jobs,
    port: u16,
    _listener: tokio::net::TcpListener,
    _dir: tempfile::TempDir,
}

impl JobTable {
    async fn new(options: Options) -> JobTable {
        use std::sync::Arc;

        use hameau_mailbox::Mail;
        use hameau_store::{Options as StoreOptions, Store};

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
        let importer = crate::Importer::new(Mail::new(store), options, Arc::new(|| 1_800_000_000));
        let jobs = crate::Jobs::new(Arc::new(importer), Arc::new(rustls::RootCertStore::empty()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        JobTable { jobs, port, _listener: listener, _dir: dir }
    }

    /// Starts a job of `tenant` (alice's mail from the silent source).
    fn start(&self, tenant: &str) -> Result<crate::JobView, crate::StartError> {
        let source = crate::ImapSource {
            url: SourceUrl::parse(&format!("imaps://127.0.0.1:{}", self.port), false).unwrap(),
            user: "alice".into(),
            password: "secret".into(),
            tls: self.jobs.client_tls(None).unwrap(),
        };
        let target =
            crate::Target { account: 1, address: "alice@commune.fr".into(), quota: hameau_mailbox::Quota::default() };
        self.jobs.start(tenant, target, source)
    }

    fn state(&self, id: &str) -> crate::JobState {
        self.jobs.get(id).unwrap().state
    }

    /// Waits until the job `id` has ended cancelled.
    async fn cancelled(&self, id: &str) {
        for _ in 0..100 {
            if self.state(id) == crate::JobState::Cancelled {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{id} did not end");
    }
}

/// The server's job table: at most `jobs_kept_max` remembered (the oldest ended one makes
/// room, none ended refuses), queued behind `jobs_concurrent_max`, all stopped by the
/// shutdown, nothing started after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_table_keeps_its_bounds_and_stops_at_shutdown() {
    use crate::{JobState, Removal, StartError};

    let table = JobTable::new(Options { jobs_concurrent_max: 1, jobs_kept_max: 2, ..Options::default() }).await;
    let jobs = &table.jobs;
    let first = table.start("a").unwrap();
    let second = table.start("b").unwrap();
    assert_ne!(first.id, second.id);
    assert!(matches!(table.start("a"), Err(StartError::Full(2))));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(table.state(&first.id), JobState::Running);
    assert_eq!(table.state(&second.id), JobState::Queued);
    assert_eq!(jobs.list(|tenant| tenant == "b").len(), 1);
    assert!(!format!("{:?}", jobs.list(|_| true)).contains("secret"));
    // Cancelled, it ends; the next start evicts it, the oldest ended job.
    assert!(matches!(jobs.cancel_or_forget(&first.id), Some(Removal::Cancelling(_))));
    table.cancelled(&first.id).await;
    let third = table.start("a").unwrap();
    assert!(jobs.get(&first.id).is_none());
    // The queued one took the slot, the new one waits behind it.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(table.state(&second.id), JobState::Running);
    assert_eq!(table.state(&third.id), JobState::Queued);
    let stopping = std::time::Instant::now();
    jobs.shutdown().await;
    assert!(stopping.elapsed() < std::time::Duration::from_secs(2));
    for id in [&second.id, &third.id] {
        let job = jobs.get(id).unwrap();
        assert_eq!(job.state, JobState::Cancelled);
        assert!(!job.report.unwrap().complete);
    }
    assert!(matches!(table.start("a"), Err(StartError::ShuttingDown)));
}

/// A tenant with `jobs_per_tenant_max` jobs queued or running is refused its next one,
/// another tenant is not; one of its jobs ending makes room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenant_cannot_fill_the_job_table() {
    use crate::StartError;

    let options = Options { jobs_concurrent_max: 1, jobs_kept_max: 10, jobs_per_tenant_max: 2, ..Options::default() };
    options.check().unwrap();
    let table = JobTable::new(options).await;
    let first = table.start("a").unwrap();
    table.start("a").unwrap();
    let err = table.start("a").unwrap_err();
    assert!(matches!(err, StartError::TenantFull(2)), "{err}");
    assert!(err.to_string().contains("migrate.jobs_per_tenant_max"), "{err}");
    table.start("b").unwrap();
    table.jobs.cancel_or_forget(&first.id).unwrap();
    table.cancelled(&first.id).await;
    table.start("a").unwrap();
    table.jobs.shutdown().await;
    // The bound is at most the table's.
    let wider = Options { jobs_per_tenant_max: 300, ..Options::default() };
    assert!(wider.check().unwrap_err().to_string().contains("jobs_per_tenant_max"));
}

/// Queued jobs start tenants in turn: a commune that queued many does not hold back the
/// next commune's first one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_start_tenants_in_turn() {
    use crate::JobState;

    let table = JobTable::new(Options { jobs_concurrent_max: 1, ..Options::default() }).await;
    let start = |tenant: &str| table.start(tenant).unwrap().id;
    let (a1, a2, a3, b1) = (start("a"), start("a"), start("a"), start("b"));
    let state = |id: &str| table.state(id);
    assert_eq!(state(&a1), JobState::Running);
    table.jobs.cancel_or_forget(&a1);
    table.cancelled(&a1).await;
    // b has had no turn: its job goes before a's older ones.
    assert_eq!((state(&b1), state(&a2), state(&a3)), (JobState::Running, JobState::Queued, JobState::Queued));
    table.jobs.cancel_or_forget(&b1);
    table.cancelled(&b1).await;
    assert_eq!((state(&a2), state(&a3)), (JobState::Running, JobState::Queued));
    table.jobs.shutdown().await;
}

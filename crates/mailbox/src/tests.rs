use hameau_store::{Options, Store};

use crate::{ChangeKind, Error, Ingest, Mail, MailboxNames, Role};

const NOW: u64 = 1_795_000_000;
const ACCOUNT: u64 = 7;

struct Fixture {
    _dir: tempfile::TempDir,
    mail: Mail,
    inbox: u32,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::new(store);
    let mailboxes = mail.ensure_account(ACCOUNT, &MailboxNames::default(), NOW).await.unwrap();
    let inbox = mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap().id;
    Fixture { _dir: dir, mail, inbox }
}

fn message(subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: Jeanne Martin <jeanne@mairie-a.fr>\r\nTo: accueil@mairie-b.fr, Paul <paul@mairie-b.fr>\r\n\
         Subject: {subject}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{subject}@mairie-a.fr>\r\n\
         {extra_headers}MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBonjour, voici le compte rendu du conseil.\r\n\
         --b\r\nContent-Type: application/pdf; name=cr.pdf\r\nContent-Disposition: attachment; filename=cr.pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )
    .into_bytes()
}

fn ingest(raw: Vec<u8>, mailboxes: Vec<u32>) -> Ingest {
    Ingest { raw, mailboxes, keywords: vec![], received_at: NOW, quota_bytes: None }
}

#[tokio::test]
async fn accounts_get_their_special_use_mailboxes_once() {
    let f = fixture().await;
    let mailboxes = f.mail.ensure_account(ACCOUNT, &MailboxNames::default(), NOW + 5).await.unwrap();
    let names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["INBOX", "Brouillons", "Envoyés", "Corbeille", "Indésirables", "Archives"]);
    assert!(mailboxes.iter().all(|m| m.uid_validity == NOW as u32 && m.subscribed));
    assert_eq!(f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap().name, "Indésirables");
    assert_eq!(Role::Sent.special_use(), Some("\\Sent"));
    // Another account has its own.
    assert!(f.mail.mailboxes(ACCOUNT + 1).await.unwrap().is_empty());
}

#[tokio::test]
async fn ingest_stores_everything_in_one_go() {
    let f = fixture().await;
    let raw = message("cr-conseil", "");
    let stored = f.mail.ingest(ACCOUNT, ingest(raw.clone(), vec![f.inbox])).await.unwrap();
    assert_eq!(stored.uids, vec![(f.inbox, 1)]);
    assert_eq!(stored.modseq, 1);
    assert_eq!(f.mail.raw(ACCOUNT, stored.email).await.unwrap(), raw);
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), raw.len() as u64);
    assert_eq!(f.mail.uid_next(ACCOUNT, f.inbox).await.unwrap(), 2);
    let summary = f.mail.summary(ACCOUNT, stored.email).await.unwrap();
    assert_eq!(summary.subject.as_deref(), Some("cr-conseil"));
    assert_eq!(summary.from[0].address.as_deref(), Some("jeanne@mairie-a.fr"));
    assert_eq!(summary.from[0].name.as_deref(), Some("Jeanne Martin"));
    assert_eq!(summary.to.len(), 2);
    assert_eq!(summary.message_id, vec!["cr-conseil@mairie-a.fr"]);
    assert_eq!(summary.preview, "Bonjour, voici le compte rendu du conseil.");
    assert!(summary.has_attachment);
    let types: Vec<&str> = summary.parts.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(types, vec!["multipart/mixed", "text/plain", "application/pdf"]);
    assert_eq!(summary.parts[0].children, vec![1, 2]);
    assert_eq!(summary.parts[2].name.as_deref(), Some("cr.pdf"));
    // Offsets point into the raw message.
    let pdf = &summary.parts[2];
    assert_eq!(&raw[pdf.offset_body as usize..pdf.offset_body as usize + 12], b"JVBERi0xLjQK");
    // The same message in two mailboxes: one email, a UID in each.
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let twice = f.mail.ingest(ACCOUNT, ingest(message("two", ""), vec![f.inbox, archive])).await.unwrap();
    assert_eq!(twice.uids, vec![(f.inbox, 2), (archive, 1)]);
    let email = f.mail.email(ACCOUNT, twice.email).await.unwrap();
    assert_eq!(email.mailboxes, vec![f.inbox, archive]);
    // A message mail-parser cannot read is stored all the same.
    let garbage = f.mail.ingest(ACCOUNT, ingest(b"\xff\xfe not mail".to_vec(), vec![f.inbox])).await.unwrap();
    assert_eq!(f.mail.raw(ACCOUNT, garbage.email).await.unwrap(), b"\xff\xfe not mail");
}

#[tokio::test]
async fn refusals() {
    let f = fixture().await;
    let err = f.mail.ingest(ACCOUNT, ingest(message("x", ""), vec![99])).await.unwrap_err();
    assert!(matches!(err, Error::NoMailbox(99)), "{err}");
    let err = f.mail.ingest(ACCOUNT, ingest(message("x", ""), vec![])).await.unwrap_err();
    assert!(matches!(err, Error::NoTargetMailbox), "{err}");
    let mut over = ingest(message("x", ""), vec![f.inbox]);
    over.quota_bytes = Some(100);
    let err = f.mail.ingest(ACCOUNT, over).await.unwrap_err();
    assert!(matches!(err, Error::OverQuota { quota: 100, .. }), "{err}");
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 0);
    assert!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().is_empty());
}

#[tokio::test]
async fn replies_join_the_thread() {
    let f = fixture().await;
    let first = f.mail.ingest(ACCOUNT, ingest(message("ordre-du-jour", ""), vec![f.inbox])).await.unwrap();
    assert_eq!(first.thread, first.email);
    let reply =
        message("re-ordre", "In-Reply-To: <ordre-du-jour@mairie-a.fr>\r\nReferences: <ordre-du-jour@mairie-a.fr>\r\n");
    let second = f.mail.ingest(ACCOUNT, ingest(reply, vec![f.inbox])).await.unwrap();
    assert_eq!(second.thread, first.email);
    let other = f.mail.ingest(ACCOUNT, ingest(message("autre", ""), vec![f.inbox])).await.unwrap();
    assert_eq!(other.thread, other.email);
}

#[tokio::test]
async fn keywords_and_modseqs() {
    let f = fixture().await;
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let mut new = ingest(message("a", ""), vec![f.inbox, archive]);
    new.keywords = vec!["\\seen".into(), "$Forwarded".into(), "\\Seen".into()];
    let stored = f.mail.ingest(ACCOUNT, new).await.unwrap();
    let entries = f.mail.uids(ACCOUNT, f.inbox).await.unwrap();
    assert_eq!(entries[0].keywords, vec!["$forwarded", "\\Seen"]);
    assert_eq!(entries[0].modseq, stored.modseq);
    let modseq = f.mail.set_keywords(ACCOUNT, stored.email, &["\\Flagged".into()]).await.unwrap();
    assert!(modseq > stored.modseq);
    for mailbox in [f.inbox, archive] {
        let entries = f.mail.uids(ACCOUNT, mailbox).await.unwrap();
        assert_eq!(entries[0].keywords, vec!["\\Flagged"]);
        assert_eq!(entries[0].modseq, modseq);
        assert_eq!(entries[0].email, stored.email);
    }
    assert_eq!(f.mail.modseq(ACCOUNT).await.unwrap(), modseq);
}

#[tokio::test]
async fn removing_and_the_change_log() {
    let f = fixture().await;
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let raw = message("a", "");
    let stored = f.mail.ingest(ACCOUNT, ingest(raw.clone(), vec![f.inbox, archive])).await.unwrap();
    let kept = f.mail.ingest(ACCOUNT, ingest(message("b", ""), vec![f.inbox])).await.unwrap();
    let after_ingest = f.mail.modseq(ACCOUNT).await.unwrap();
    f.mail.remove(ACCOUNT, stored.email, f.inbox).await.unwrap();
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().iter().map(|e| e.uid).collect::<Vec<_>>(), vec![2]);
    assert_eq!(f.mail.email(ACCOUNT, stored.email).await.unwrap().mailboxes, vec![archive]);
    assert_eq!(f.mail.raw(ACCOUNT, stored.email).await.unwrap(), raw);
    // Out of its last mailbox, the email is destroyed and its bytes given back.
    f.mail.remove(ACCOUNT, stored.email, archive).await.unwrap();
    assert!(matches!(f.mail.email(ACCOUNT, stored.email).await, Err(Error::NoEmail(_))));
    assert!(matches!(f.mail.raw(ACCOUNT, stored.email).await, Err(Error::NoEmail(_))));
    let kept_size = f.mail.email(ACCOUNT, kept.email).await.unwrap().size;
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), kept_size);
    assert!(matches!(f.mail.remove(ACCOUNT, stored.email, archive).await, Err(Error::NoEmail(_))));
    // UIDs are never given again.
    let next = f.mail.ingest(ACCOUNT, ingest(message("c", ""), vec![f.inbox])).await.unwrap();
    assert_eq!(next.uids, vec![(f.inbox, 3)]);
    let changes = f.mail.changes_since(ACCOUNT, after_ingest, 100).await.unwrap();
    let kinds: Vec<(ChangeKind, u64)> = changes.iter().map(|c| (c.kind, c.email.unwrap())).collect();
    assert_eq!(
        kinds,
        vec![
            (ChangeKind::Updated, stored.email),
            (ChangeKind::Destroyed, stored.email),
            (ChangeKind::Created, next.email)
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].modseq < w[1].modseq));
    assert_eq!(f.mail.changes_since(ACCOUNT, 0, 2).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_get_distinct_increasing_uids() {
    let f = fixture().await;
    let mut tasks = Vec::new();
    for task in 0..10 {
        let mail = f.mail.clone();
        let inbox = f.inbox;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..5 {
                let stored =
                    mail.ingest(ACCOUNT, ingest(message(&format!("m{task}-{i}"), ""), vec![inbox])).await.unwrap();
                got.push((stored.modseq, stored.uids[0].1));
            }
            got
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    // In commit (modseq) order, UIDs only grow: no client ever sees a lower UID appear.
    let uids: Vec<u32> = all.iter().map(|(_, uid)| *uid).collect();
    assert_eq!(uids, (1..=50).collect::<Vec<u32>>());
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().len(), 50);
}

#[tokio::test]
async fn one_commit_for_all_recipients() {
    let f = fixture().await;
    let other = ACCOUNT + 1;
    let other_inbox = f.mail.ensure_account(other, &MailboxNames::default(), NOW).await.unwrap()[0].id;
    let raw = message("pour-tous", "");
    let stored = f
        .mail
        .ingest_many(vec![
            (ACCOUNT, ingest(raw.clone(), vec![f.inbox])),
            (other, ingest(raw.clone(), vec![other_inbox])),
        ])
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(f.mail.raw(ACCOUNT, stored[0].email).await.unwrap(), raw);
    assert_eq!(f.mail.raw(other, stored[1].email).await.unwrap(), raw);
    // All or nothing: one recipient over quota, nobody gets it.
    let mut over = ingest(message("trop", ""), vec![other_inbox]);
    over.quota_bytes = Some(10);
    let err = f.mail.ingest_many(vec![(ACCOUNT, ingest(message("trop", ""), vec![f.inbox])), (other, over)]).await;
    assert!(matches!(err, Err(Error::OverQuota { .. })));
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().len(), 1);
    // The blob is stored once and released with its last email.
    f.mail.remove(ACCOUNT, stored[0].email, f.inbox).await.unwrap();
    assert_eq!(f.mail.raw(other, stored[1].email).await.unwrap(), raw);
}

use hameau_store::{Options, Store};

use crate::{ChangeKind, Error, Ingest, Keyword, KeywordOp, Mail, MailboxNames, Quota, Role};

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
    let mailboxes = mail.ensure_account(ACCOUNT, NOW).await.unwrap();
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
    Ingest { raw: raw.into(), mailboxes, keywords: vec![], received_at: NOW, quota: Quota::default() }
}

#[tokio::test]
async fn accounts_get_their_special_use_mailboxes_once() {
    let f = fixture().await;
    let mailboxes = f.mail.ensure_account(ACCOUNT, NOW + 5).await.unwrap();
    let names: Vec<&str> = mailboxes.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["INBOX", "Brouillons", "Envoyés", "Corbeille", "Indésirables", "Archives"]);
    assert!(mailboxes.iter().all(|m| m.uid_validity == NOW as u32 && m.subscribed));
    assert_eq!(f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap().name, "Indésirables");
    assert_eq!(Role::Sent.special_use(), Some("\\Sent"));
    // Another account has its own.
    assert!(f.mail.mailboxes(ACCOUNT + 1).await.unwrap().is_empty());
    // The names are the mail model's, by role; a renamed set names new accounts only.
    let english = MailboxNames { junk: "Junk".into(), ..MailboxNames::default() };
    let mail = f.mail.clone().with_names(english);
    assert_eq!(mail.names().name(Role::Junk), "Junk");
    assert_eq!(mail.names().iter().next(), Some((Role::Inbox, "INBOX")));
    let other = mail.ensure_account(ACCOUNT + 1, NOW).await.unwrap();
    assert_eq!(other.iter().find(|m| m.role == Some(Role::Junk)).unwrap().name, "Junk");
    assert_eq!(mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap().name, "Indésirables");
    // JMAP's role names (RFC 8621 §2) are the records' spelling.
    for role in Role::ALL {
        assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.name()));
        assert_eq!(Role::from_name(&role.name().to_uppercase()), Some(role));
    }
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
    over.quota.account_bytes_max = Some(100);
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
    new.keywords = kw(&["\\seen", "$Forwarded", "\\Seen"]);
    let stored = f.mail.ingest(ACCOUNT, new).await.unwrap();
    let entries = f.mail.uids(ACCOUNT, f.inbox).await.unwrap();
    assert_eq!(entries[0].keywords, vec!["$forwarded", "\\Seen"]);
    assert_eq!(entries[0].modseq, stored.modseq);
    let modseq = f.mail.set_keywords(ACCOUNT, stored.email, &[Keyword::Flagged]).await.unwrap();
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
    let other_inbox = f.mail.ensure_account(other, NOW).await.unwrap()[0].id;
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
    over.quota.account_bytes_max = Some(10);
    let err = f.mail.ingest_many(vec![(ACCOUNT, ingest(message("trop", ""), vec![f.inbox])), (other, over)]).await;
    assert!(matches!(err, Err(Error::OverQuota { .. })));
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().len(), 1);
    // The blob is stored once and released with its last email.
    f.mail.remove(ACCOUNT, stored[0].email, f.inbox).await.unwrap();
    assert_eq!(f.mail.raw(other, stored[1].email).await.unwrap(), raw);
}

/// What deliveries read of an account (its mailboxes, its vacation response) is kept
/// between changes: a write behind the mail model's back is not seen, a change made
/// through any `Mail` over the store is seen by the next delivery.
#[tokio::test]
async fn deliveries_keep_their_reads_of_an_account_until_it_changes() {
    use crate::{Filing, LocalDelivery};
    let f = fixture().await;
    let other = Mail::new(f.mail.store.clone());
    let raw = bytes::Bytes::from(message("cache", ""));
    let junk_delivery = || LocalDelivery {
        raw: raw.clone(),
        recipients: vec![(ACCOUNT, Quota::default())],
        filing: Filing::Junk,
        received_at: NOW,
    };
    let junk = f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap();
    let stored = f.mail.deliver(junk_delivery()).await.unwrap();
    assert_eq!(stored[0].1.uids[0].0, junk.id);
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW, 100, 10).await.unwrap(), None, "no response set");
    // Behind the model's back (no change counted): the delivery files by what it kept, and
    // the commit, expecting the mailbox, refuses rather than orphan the message.
    let mut batch = hameau_store::Batch::new();
    batch.delete(&crate::keys::mailbox(ACCOUNT, junk.id));
    f.mail.store.commit(batch).await.unwrap();
    let err = f.mail.deliver(junk_delivery()).await.unwrap_err();
    assert!(matches!(err, Error::NoMailbox(id) if id == junk.id), "{err}");
    // A change through another `Mail` (IMAP's, JMAP's) is seen by the next delivery.
    let spam = other.create_mailbox(ACCOUNT, "Spam", Some(Role::Junk), NOW).await.unwrap();
    let stored = f.mail.deliver(junk_delivery()).await.unwrap();
    assert_eq!(stored[0].1.uids, vec![(spam.id, 1)]);
    let vacation = crate::Vacation { enabled: true, ..Default::default() };
    other.set_vacation(ACCOUNT, &vacation).await.unwrap();
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW, 100, 10).await.unwrap(), Some(vacation));
    // Without the cache, every delivery reads the store.
    let uncached =
        Mail::with_limits(f.mail.store.clone(), crate::Limits { delivery_cache_entries_max: 0, ..Default::default() });
    let mut batch = hameau_store::Batch::new();
    batch.delete(&crate::keys::vacation(ACCOUNT));
    f.mail.store.commit(batch).await.unwrap();
    assert_eq!(uncached.vacation_reply(ACCOUNT, "b@x.test", NOW, 100, 10).await.unwrap(), None);
    assert!(f.mail.vacation_reply(ACCOUNT, "b@x.test", NOW, 100, 10).await.unwrap().is_some(), "kept");
}

/// Local delivery: each account once, its mailboxes made on first delivery, filed by
/// role, all in one commit.
#[tokio::test]
async fn local_delivery_files_each_account_once() {
    use crate::{Filing, LocalDelivery};
    let f = fixture().await;
    let new = ACCOUNT + 2;
    let raw = bytes::Bytes::from(message("livraison", ""));
    let quota = Quota::account(None);
    let delivery = |filing, recipients: Vec<(u64, Quota)>| LocalDelivery {
        raw: raw.clone(),
        recipients,
        filing,
        received_at: NOW,
    };
    // The same account twice (a person and their alias) gets one copy; an account
    // without mailboxes gets them.
    let recipients = vec![(ACCOUNT, quota.clone()), (new, quota.clone()), (ACCOUNT, Quota::account(Some(1)))];
    let stored = f.mail.deliver(delivery(Filing::Inbox, recipients)).await.unwrap();
    assert_eq!(stored.iter().map(|(account, _)| *account).collect::<Vec<_>>(), vec![ACCOUNT, new]);
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().len(), 1);
    let new_inbox = f.mail.mailbox_by_role(new, Role::Inbox).await.unwrap().unwrap();
    assert_eq!(stored[1].1.uids, vec![(new_inbox.id, 1)]);
    assert_eq!(f.mail.raw(new, stored[1].1.email).await.unwrap(), raw.to_vec());
    // Junk: the Junk mailbox, with the keyword.
    let stored = f.mail.deliver(delivery(Filing::Junk, vec![(ACCOUNT, quota.clone())])).await.unwrap();
    let junk = f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap();
    assert_eq!(stored[0].1.uids, vec![(junk.id, 1)]);
    assert_eq!(f.mail.email(ACCOUNT, stored[0].1.email).await.unwrap().keywords, vec![Keyword::Junk]);
    // All or nothing: one account over its quota, nobody gets it.
    let over = vec![(ACCOUNT, quota.clone()), (new, Quota::account(Some(10)))];
    let err = f.mail.deliver(delivery(Filing::Inbox, over)).await;
    assert!(matches!(err, Err(Error::OverQuota { .. })), "{err:?}");
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().len(), 1);
    // More accounts than one ingest holds: refused before any work.
    let many = (0..=crate::Limits::default().ingest_batch_max as u64).map(|a| (1000 + a, quota.clone())).collect();
    let err = f.mail.deliver(delivery(Filing::Inbox, many)).await;
    assert!(matches!(err, Err(Error::TooManyDeliveries { .. })), "{err:?}");
    assert!(f.mail.mailboxes(1000).await.unwrap().is_empty());
}

// The mailbox tree.

fn check_name(name: &str, valid: bool) {
    let res = super::tree::check_name(name);
    assert_eq!(res.is_ok(), valid, "{name:?}: {res:?}");
}

#[test]
fn mailbox_names() {
    check_name("Projets", true);
    check_name("Projets/2026/Q1", true);
    check_name("INBOX/Factures", true);
    check_name("Élus & conseil", true);
    check_name(".hidden", true);
    check_name("", false);
    check_name("/Projets", false);
    check_name("Projets/", false);
    check_name("Projets//2026", false);
    check_name(".", false);
    check_name("a/../b", false);
    check_name("a\tb", false);
    check_name("a\u{7f}b", false);
    check_name("a*", false);
    check_name("a%b", false);
    check_name("inbox", false);
    check_name("Inbox/x", false);
    check_name("INBOXES", true);
    check_name(&"x".repeat(255), true);
    check_name(&"x".repeat(256), false);
    check_name(&vec!["y".repeat(249); 4].join("/"), true);
    check_name(&vec!["y".repeat(200); 5].join("/"), false);
}

#[tokio::test]
async fn mailbox_hierarchy() {
    let f = fixture().await;
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    let q1 = f.mail.create_mailbox(ACCOUNT, "Projets/2026/Q1", None, NOW).await.unwrap();
    let projets = f.mail.mailbox_by_name(ACCOUNT, "Projets").await.unwrap().unwrap();
    let year = f.mail.mailbox_by_name(ACCOUNT, "Projets/2026").await.unwrap().unwrap();
    assert_eq!((projets.parent, year.parent, q1.parent), (None, Some(projets.id), Some(year.id)));
    assert!(q1.subscribed && q1.uid_validity != year.uid_validity);
    // One commit, one change listing the three.
    let changes = f.mail.changes_since(ACCOUNT, before, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].email, None);
    assert_eq!(
        changes[0].mailbox_changes,
        vec![(projets.id, ChangeKind::Created), (year.id, ChangeKind::Created), (q1.id, ChangeKind::Created)]
    );
    assert!(matches!(
        f.mail.create_mailbox(ACCOUNT, "Projets/2026", None, NOW).await,
        Err(Error::MailboxExists(name)) if name == "Projets/2026"
    ));
    assert!(matches!(f.mail.create_mailbox(ACCOUNT, "a//b", None, NOW).await, Err(Error::InvalidName(_))));
    assert!(matches!(f.mail.create_mailbox(ACCOUNT, "Autre", Some(Role::Sent), NOW).await, Err(Error::Cannot(_))));
    // INBOX is case-insensitive.
    assert_eq!(f.mail.mailbox_by_name(ACCOUNT, "iNbOx").await.unwrap().unwrap().id, f.inbox);
    assert!(matches!(f.mail.create_mailbox(ACCOUNT, "inbox", None, NOW).await, Err(Error::InvalidName(_))));
    let factures = f.mail.create_mailbox(ACCOUNT, "INBOX/Factures", None, NOW).await.unwrap();
    assert_eq!(factures.parent, Some(f.inbox));
    assert_eq!(f.mail.mailbox_by_name(ACCOUNT, "inbox/Factures").await.unwrap().unwrap().id, factures.id);
    assert_eq!(f.mail.mailbox_by_name(ACCOUNT, "projets").await.unwrap(), None);

    // Renaming: children follow, missing parents are created, ids stay.
    f.mail.rename_mailbox(ACCOUNT, projets.id, "Anciens/Projets").await.unwrap();
    let anciens = f.mail.mailbox_by_name(ACCOUNT, "Anciens").await.unwrap().unwrap();
    let moved = f.mail.mailbox(ACCOUNT, projets.id).await.unwrap();
    assert_eq!((moved.name.as_str(), moved.parent), ("Anciens/Projets", Some(anciens.id)));
    let q1_now = f.mail.mailbox_by_name(ACCOUNT, "Anciens/Projets/2026/Q1").await.unwrap().unwrap();
    assert_eq!((q1_now.id, q1_now.parent, q1_now.uid_validity), (q1.id, Some(year.id), q1.uid_validity));
    assert_eq!(f.mail.mailbox_by_name(ACCOUNT, "Projets/2026").await.unwrap(), None);
    let err = f.mail.rename_mailbox(ACCOUNT, projets.id, "Anciens/Projets/2026/x").await.unwrap_err();
    assert!(matches!(err, Error::Cannot(_)), "{err}");
    let err = f.mail.rename_mailbox(ACCOUNT, projets.id, "Archives").await.unwrap_err();
    assert!(matches!(err, Error::MailboxExists(_)), "{err}");
    let err = f.mail.rename_mailbox(ACCOUNT, f.inbox, "Reçus").await.unwrap_err();
    assert!(matches!(err, Error::Cannot(_)), "{err}");
    assert!(matches!(f.mail.rename_mailbox(ACCOUNT, 999, "x").await, Err(Error::NoMailbox(999))));
    // Back to the top level: a child can become a sibling of its old parent.
    f.mail.rename_mailbox(ACCOUNT, q1.id, "Q1").await.unwrap();
    assert_eq!(f.mail.mailbox(ACCOUNT, q1.id).await.unwrap().parent, None);

    // Deleting.
    let err = f.mail.delete_mailbox(ACCOUNT, projets.id).await.unwrap_err();
    assert!(matches!(err, Error::HasChildren(ref name) if name == "Anciens/Projets"), "{err}");
    assert!(matches!(f.mail.delete_mailbox(ACCOUNT, f.inbox).await, Err(Error::Cannot(_))));
    f.mail.delete_mailbox(ACCOUNT, year.id).await.unwrap();
    f.mail.delete_mailbox(ACCOUNT, projets.id).await.unwrap();
    assert!(matches!(f.mail.mailbox(ACCOUNT, projets.id).await, Err(Error::NoMailbox(_))));
    assert_eq!(f.mail.mailbox_by_name(ACCOUNT, "Anciens/Projets").await.unwrap(), None);
    // A special-use mailbox may go; its role is then free.
    let junk = f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap();
    f.mail.delete_mailbox(ACCOUNT, junk.id).await.unwrap();
    let spam = f.mail.create_mailbox(ACCOUNT, "Spam", Some(Role::Junk), NOW).await.unwrap();
    assert_eq!(f.mail.mailbox_by_role(ACCOUNT, Role::Junk).await.unwrap().unwrap().id, spam.id);
    let last = f.mail.changes_since(ACCOUNT, 0, 100).await.unwrap();
    assert_eq!(last.last().unwrap().mailbox_changes, vec![(spam.id, ChangeKind::Created)]);
    assert!(last.iter().any(|c| c.mailbox_changes == vec![(junk.id, ChangeKind::Destroyed)]));

    // Subscriptions.
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    f.mail.set_subscribed(ACCOUNT, spam.id, false).await.unwrap();
    assert!(!f.mail.mailbox(ACCOUNT, spam.id).await.unwrap().subscribed);
    f.mail.set_subscribed(ACCOUNT, spam.id, false).await.unwrap();
    assert_eq!(f.mail.modseq(ACCOUNT).await.unwrap(), before + 1);
}

#[tokio::test]
async fn uid_validity_changes_when_a_name_comes_back() {
    let f = fixture().await;
    let first = f.mail.create_mailbox(ACCOUNT, "Tmp", None, NOW).await.unwrap();
    f.mail.ingest(ACCOUNT, ingest(message("t", ""), vec![first.id])).await.unwrap();
    f.mail.delete_mailbox(ACCOUNT, first.id).await.unwrap();
    // Same second, same name: still another UIDVALIDITY, and UIDs start again.
    let again = f.mail.create_mailbox(ACCOUNT, "Tmp", None, NOW).await.unwrap();
    assert_ne!(again.id, first.id);
    assert_ne!(again.uid_validity, first.uid_validity);
    assert_eq!(f.mail.uid_next(ACCOUNT, again.id).await.unwrap(), 1);
    assert_ne!(super::tree::uid_validity(u64::from(u32::MAX), 1), 0);
}

// Messages by UID.

struct Three {
    f: Fixture,
    archive: u32,
    emails: Vec<u64>,
}

/// Three messages in the inbox (UIDs 1..=3), the second also in the archive.
async fn three() -> Three {
    let f = fixture().await;
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let mut emails = Vec::new();
    for (i, mailboxes) in [vec![f.inbox], vec![f.inbox, archive], vec![f.inbox]].into_iter().enumerate() {
        let mut new = ingest(message(&format!("m{i}"), ""), mailboxes);
        new.received_at = NOW + i as u64;
        emails.push(f.mail.ingest(ACCOUNT, new).await.unwrap().email);
    }
    Three { f, archive, emails }
}

async fn store(
    f: &Fixture,
    uids: &[u32],
    op: KeywordOp,
    keywords: &[&str],
    unchanged_since: Option<u64>,
) -> crate::StoreOutcome {
    f.mail.store_keywords(ACCOUNT, f.inbox, uids, op, &kw(keywords), unchanged_since).await.unwrap()
}

fn kw(keywords: &[&str]) -> Vec<Keyword> {
    keywords.iter().map(|k| Keyword::parse_imap(k).expect("a keyword")).collect()
}

#[tokio::test]
async fn index_entries_and_status() {
    let Three { f, emails, .. } = three().await;
    let entries = f.mail.uids(ACCOUNT, f.inbox).await.unwrap();
    let size = f.mail.email(ACCOUNT, emails[1]).await.unwrap().size;
    assert_eq!((entries[1].size as u64, entries[1].received_at), (size, NOW + 1));
    let some = f.mail.uid_entries(ACCOUNT, f.inbox, &[3, 9, 1, 3]).await.unwrap();
    assert_eq!(some.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(some[1], entries[2]);
    f.mail.store_keywords(ACCOUNT, f.inbox, &[1], KeywordOp::Add, &kw(&["\\Seen"]), None).await.unwrap();
    f.mail.store_keywords(ACCOUNT, f.inbox, &[2], KeywordOp::Add, &kw(&["\\Deleted"]), None).await.unwrap();
    let status = f.mail.status(ACCOUNT, f.inbox).await.unwrap();
    let total: u64 = entries.iter().map(|e| u64::from(e.size)).sum();
    assert_eq!((status.messages, status.unseen, status.deleted, status.size), (3, 2, 1, total));
    assert_eq!((status.uid_next, status.uid_validity), (4, NOW as u32));
    assert_eq!(status.highest_modseq, f.mail.modseq(ACCOUNT).await.unwrap());
    assert!(matches!(f.mail.status(ACCOUNT, 999).await, Err(Error::NoMailbox(999))));
}

#[tokio::test]
async fn store_keywords() {
    let Three { f, archive, emails } = three().await;
    let start = f.mail.modseq(ACCOUNT).await.unwrap();
    let res = store(&f, &[1, 2, 3, 7], KeywordOp::Add, &["\\seen", "Urgent"], None).await;
    assert_eq!(res.modseq, start + 1);
    assert_eq!(res.updated.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(res.updated.iter().all(|e| e.modseq == res.modseq && e.keywords == kw(&["\\Seen", "urgent"])));
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().iter().map(|e| e.modseq).max(), Some(start + 1));
    // Keywords are the email's: the archive's entry and the email record follow.
    let in_archive = &f.mail.uids(ACCOUNT, archive).await.unwrap()[0];
    assert_eq!((in_archive.keywords.clone(), in_archive.modseq), (kw(&["\\Seen", "urgent"]), start + 1));
    assert_eq!(f.mail.email(ACCOUNT, emails[1]).await.unwrap().keywords, kw(&["\\Seen", "urgent"]));

    // Only the entries that change are rewritten.
    let res = store(&f, &[1, 2], KeywordOp::Remove, &["urgent", "absent"], None).await;
    assert_eq!(
        res.updated.iter().map(|e| (e.uid, e.keywords.clone())).collect::<Vec<_>>(),
        vec![(1, kw(&["\\Seen"])), (2, kw(&["\\Seen"]))]
    );
    let res = store(&f, &[1, 3], KeywordOp::Replace, &["\\Seen"], None).await;
    assert_eq!(res.updated.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![3]);
    let entries = f.mail.uids(ACCOUNT, f.inbox).await.unwrap();
    assert_eq!(entries.iter().map(|e| e.modseq).collect::<Vec<_>>(), vec![start + 2, start + 2, start + 3]);
    // Nothing to do: no commit, the account's modseq.
    let res = store(&f, &[1, 2, 3], KeywordOp::Add, &["\\Seen"], None).await;
    assert!(res.updated.is_empty() && res.modified.is_empty());
    assert_eq!((res.modseq, f.mail.modseq(ACCOUNT).await.unwrap()), (start + 3, start + 3));

    // CONDSTORE: entries changed after UNCHANGEDSINCE are left alone and reported.
    let res = store(&f, &[1, 2, 3], KeywordOp::Add, &["$label1"], Some(start + 2)).await;
    assert_eq!(res.modified, vec![3]);
    assert_eq!(res.updated.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap()[2].keywords, kw(&["\\Seen"]));
    let err = f.mail.store_keywords(ACCOUNT, 999, &[1], KeywordOp::Add, &kw(&["x"]), None).await.unwrap_err();
    assert!(matches!(err, Error::NoMailbox(999)), "{err}");
    // The change log has one entry per STORE, listing every email.
    let changes = f.mail.changes_since(ACCOUNT, start, 1).await.unwrap();
    let listed: Vec<(u64, ChangeKind)> = changes[0].email_changes().collect();
    assert_eq!(listed, emails.iter().map(|e| (*e, ChangeKind::Updated)).collect::<Vec<_>>());
    assert_eq!(changes[0].mailboxes, vec![f.inbox, archive]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_lose_nothing() {
    let Three { f, archive, .. } = three().await;
    let mut tasks = Vec::new();
    for task in 0..4 {
        let mail = f.mail.clone();
        let inbox = f.inbox;
        tasks.push(tokio::spawn(async move {
            for i in 0..8 {
                let keyword = vec![Keyword::from_stored(format!("k{task}-{i}"))];
                mail.store_keywords(ACCOUNT, inbox, &[1, 2, 3], KeywordOp::Add, &keyword, None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for entry in f.mail.uids(ACCOUNT, f.inbox).await.unwrap() {
        assert_eq!(entry.keywords.len(), 32, "{entry:?}");
        assert_eq!(f.mail.email(ACCOUNT, entry.email).await.unwrap().keywords, entry.keywords);
    }
    assert_eq!(f.mail.uids(ACCOUNT, archive).await.unwrap()[0].keywords.len(), 32);
}

#[tokio::test]
async fn copy_move_and_expunge() {
    let Three { f, archive, emails } = three().await;
    let projets = f.mail.create_mailbox(ACCOUNT, "Projets", None, NOW).await.unwrap();
    let used = f.mail.quota_used(ACCOUNT).await.unwrap();
    f.mail.store_keywords(ACCOUNT, f.inbox, &[3], KeywordOp::Add, &kw(&["\\Flagged"]), None).await.unwrap();
    // Copy: new UIDs in source order; the emails are shared.
    let copied = f.mail.copy(ACCOUNT, f.inbox, &[3, 1, 42], projets.id).await.unwrap();
    assert_eq!(copied.pairs, vec![(1, 1), (3, 2)]);
    assert_eq!(copied.uid_validity, projets.uid_validity);
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), used);
    let there = f.mail.uids(ACCOUNT, projets.id).await.unwrap();
    assert_eq!(there.iter().map(|e| e.email).collect::<Vec<_>>(), vec![emails[0], emails[2]]);
    assert!(there.iter().all(|e| e.modseq == copied.modseq));
    assert_eq!(there[1].keywords, kw(&["\\Flagged"]));
    assert_eq!(f.mail.email(ACCOUNT, emails[0]).await.unwrap().mailboxes, vec![f.inbox, projets.id]);
    assert_eq!(f.mail.uid_next(ACCOUNT, projets.id).await.unwrap(), 3);
    // Copying an email the target already has gives its UID there.
    let again = f.mail.copy(ACCOUNT, f.inbox, &[1, 2], projets.id).await.unwrap();
    assert_eq!(again.pairs, vec![(1, 1), (2, 3)]);
    assert!(matches!(f.mail.copy(ACCOUNT, f.inbox, &[1], f.inbox).await, Err(Error::Cannot(_))));
    assert!(matches!(f.mail.copy(ACCOUNT, f.inbox, &[1], 999).await, Err(Error::NoMailbox(999))));

    // Move: the source UIDs are expunged in the same commit.
    let before_move = f.mail.modseq(ACCOUNT).await.unwrap();
    let moved = f.mail.move_messages(ACCOUNT, f.inbox, &[2, 3], archive).await.unwrap();
    assert_eq!(moved.pairs, vec![(2, 1), (3, 2)]); // emails[1] was in the archive already.
    assert_eq!(moved.modseq, before_move + 1);
    assert_eq!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1]);
    assert_eq!(f.mail.email(ACCOUNT, emails[2]).await.unwrap().mailboxes, vec![projets.id, archive]);
    let change = &f.mail.changes_since(ACCOUNT, before_move, 10).await.unwrap()[0];
    assert_eq!(change.expunged, vec![(f.inbox, 2), (f.inbox, 3)]);
    assert_eq!(change.mailboxes, vec![f.inbox, archive]);

    // Expunge: an email is destroyed, its blob released and its bytes given back, only
    // when it leaves its last mailbox.
    let doomed = f.mail.email(ACCOUNT, emails[2]).await.unwrap();
    let blob = hameau_store::BlobHash::from_hex(&doomed.blob).unwrap();
    let (removed, _) = f.mail.expunge(ACCOUNT, archive, &[2, 5]).await.unwrap();
    assert_eq!(removed, vec![2]);
    assert!(f.mail.store.blob_size(&blob).await.unwrap().is_some());
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), used);
    let (removed, modseq) = f.mail.expunge(ACCOUNT, projets.id, &[3, 2, 1]).await.unwrap();
    assert_eq!(removed, vec![1, 2, 3]);
    assert_eq!(modseq, f.mail.modseq(ACCOUNT).await.unwrap());
    assert!(f.mail.store.blob_size(&blob).await.unwrap().is_none());
    assert!(matches!(f.mail.email(ACCOUNT, emails[2]).await, Err(Error::NoEmail(_))));
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), used - doomed.size);
    let change = f.mail.changes_since(ACCOUNT, modseq - 1, 10).await.unwrap().remove(0);
    assert_eq!(change.expunged, vec![(projets.id, 1), (projets.id, 2), (projets.id, 3)]);
    let kinds: Vec<(u64, ChangeKind)> = change.email_changes().collect();
    assert_eq!(
        kinds,
        vec![(emails[0], ChangeKind::Updated), (emails[2], ChangeKind::Destroyed), (emails[1], ChangeKind::Updated)]
    );
    // Nothing to remove: no commit.
    assert_eq!(f.mail.expunge(ACCOUNT, projets.id, &[1]).await.unwrap(), (vec![], modseq));
}

#[tokio::test]
async fn mailbox_changes_since() {
    let Three { f, archive, emails } = three().await;
    let seen = f.mail.modseq(ACCOUNT).await.unwrap();
    let quiet = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, seen).await.unwrap();
    assert_eq!((quiet.changed.len(), quiet.expunged.len(), quiet.highest_modseq), (0, 0, seen));
    // A mix: a flag, a delivery, an expunge, a move out, a flag elsewhere.
    store(&f, &[1], KeywordOp::Add, &["\\Seen"], None).await;
    let fourth = f.mail.ingest(ACCOUNT, ingest(message("m4", ""), vec![f.inbox])).await.unwrap();
    f.mail.expunge(ACCOUNT, f.inbox, &[3]).await.unwrap();
    f.mail.move_messages(ACCOUNT, f.inbox, &[2], archive).await.unwrap();
    let in_archive = f.mail.uids(ACCOUNT, archive).await.unwrap();
    f.mail.store_keywords(ACCOUNT, archive, &[in_archive[0].uid], KeywordOp::Add, &kw(&["x"]), None).await.unwrap();
    let expect_inbox = |delta: &crate::MailboxDelta| {
        assert_eq!(
            delta.changed.iter().map(|e| (e.uid, e.email)).collect::<Vec<_>>(),
            vec![(1, emails[0]), (4, fourth.email)]
        );
        assert_eq!(delta.expunged, vec![2, 3]);
    };
    // Five changes: from the change log.
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, seen).await.unwrap();
    expect_inbox(&delta);
    assert_eq!(delta.highest_modseq, f.mail.modseq(ACCOUNT).await.unwrap());
    assert_eq!(delta.changed[0], f.mail.uid_entries(ACCOUNT, f.inbox, &[1]).await.unwrap()[0]);
    let archive_delta = f.mail.mailbox_changes_since(ACCOUNT, archive, seen).await.unwrap();
    assert_eq!(archive_delta.changed.iter().map(|e| e.email).collect::<Vec<_>>(), vec![emails[1]]);
    assert!(archive_delta.expunged.is_empty());
    // More changes than the log path reads: from a scan of the index, the same answer.
    for i in 0..4 {
        let mut new = ingest(message(&format!("other{i}"), ""), vec![archive]);
        new.keywords = vec![Keyword::Seen];
        f.mail.ingest(ACCOUNT, new).await.unwrap();
    }
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, seen).await.unwrap();
    expect_inbox(&delta);
    // From the start: everything present, every UID expunged.
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, 0).await.unwrap();
    assert_eq!(delta.changed.iter().map(|e| e.uid).collect::<Vec<_>>(), vec![1, 4]);
    assert_eq!(delta.expunged, vec![2, 3]);
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, delta.highest_modseq).await.unwrap();
    assert!(delta.changed.is_empty() && delta.expunged.is_empty());
}

#[tokio::test]
async fn deleting_a_mailbox_with_messages() {
    let Three { f, archive, emails } = three().await;
    let used = f.mail.quota_used(ACCOUNT).await.unwrap();
    let only_there = f.mail.ingest(ACCOUNT, ingest(message("seul", ""), vec![archive])).await.unwrap();
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    f.mail.delete_mailbox(ACCOUNT, archive).await.unwrap();
    // The shared email stays in the inbox; the other is destroyed and its bytes given back.
    assert_eq!(f.mail.email(ACCOUNT, emails[1]).await.unwrap().mailboxes, vec![f.inbox]);
    assert!(matches!(f.mail.email(ACCOUNT, only_there.email).await, Err(Error::NoEmail(_))));
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), used);
    assert!(f.mail.uids(ACCOUNT, archive).await.unwrap().is_empty());
    let changes = f.mail.changes_since(ACCOUNT, before, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].mailbox_changes, vec![(archive, ChangeKind::Destroyed)]);
    assert_eq!(changes[0].expunged, vec![(archive, 1), (archive, 2)]);
    let kinds: Vec<(u64, ChangeKind)> = changes[0].email_changes().collect();
    assert_eq!(kinds, vec![(emails[1], ChangeKind::Updated), (only_there.email, ChangeKind::Destroyed)]);
    assert!(matches!(f.mail.ingest(ACCOUNT, ingest(message("x", ""), vec![archive])).await, Err(Error::NoMailbox(_))));
    assert!(matches!(f.mail.delete_mailbox(ACCOUNT, archive).await, Err(Error::NoMailbox(_))));
}

#[tokio::test]
async fn subscribers_wake_on_every_change() {
    let f = fixture().await;
    let mut rx = f.mail.subscribe(ACCOUNT).await.unwrap();
    let other = f.mail.subscribe(ACCOUNT + 1).await.unwrap();
    assert_eq!(rx.modseq(), f.mail.modseq(ACCOUNT).await.unwrap(), "starts at the stored modseq");
    assert!(!rx.has_changed().unwrap());
    let stored = f.mail.ingest(ACCOUNT, ingest(message("a", ""), vec![f.inbox])).await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.mark_seen(), stored.modseq);
    let res = store(&f, &[1], KeywordOp::Add, &["\\Seen"], None).await;
    assert_eq!(rx.mark_seen(), res.modseq);
    // No change, no wake-up.
    store(&f, &[1], KeywordOp::Add, &["\\Seen"], None).await;
    assert!(!rx.has_changed().unwrap());
    let projets = f.mail.create_mailbox(ACCOUNT, "Projets", None, NOW).await.unwrap();
    let mut woke = async |what: &str| {
        assert!(rx.has_changed().unwrap(), "{what} wakes");
        assert_eq!(rx.mark_seen(), f.mail.modseq(ACCOUNT).await.unwrap(), "{what}");
    };
    woke("create").await;
    let copied = f.mail.copy(ACCOUNT, f.inbox, &[1], projets.id).await.unwrap();
    assert_eq!(copied.modseq, f.mail.modseq(ACCOUNT).await.unwrap());
    woke("copy").await;
    f.mail.move_messages(ACCOUNT, projets.id, &[1], f.inbox).await.unwrap();
    woke("move").await;
    f.mail.expunge(ACCOUNT, f.inbox, &[1]).await.unwrap();
    woke("expunge").await;
    f.mail.set_subscribed(ACCOUNT, projets.id, false).await.unwrap();
    woke("unsubscribe").await;
    let email = f.mail.ingest(ACCOUNT, ingest(message("b", ""), vec![f.inbox])).await.unwrap().email;
    woke("ingest").await;
    f.mail.set_keywords(ACCOUNT, email, &[Keyword::Flagged]).await.unwrap();
    woke("keywords").await;
    f.mail.change_email(ACCOUNT, email, None, Some(&[projets.id])).await.unwrap();
    woke("change_email").await;
    f.mail.destroy_email(ACCOUNT, email).await.unwrap();
    woke("destroy_email").await;
    let vacation = crate::Vacation { enabled: true, ..Default::default() };
    f.mail.set_vacation(ACCOUNT, &vacation).await.unwrap();
    woke("vacation").await;
    let (id, _) = f.mail.create_object(ACCOUNT, "identity", b"{}").await.unwrap();
    woke("create_object").await;
    f.mail.update_object(ACCOUNT, "identity", id, b"{\"name\":\"x\"}").await.unwrap();
    woke("update_object").await;
    f.mail.destroy_object(ACCOUNT, "identity", id).await.unwrap();
    woke("destroy_object").await;
    // A clone shares the subscribers; a waiting task wakes.
    let mail = f.mail.clone();
    let waiter = tokio::spawn(async move {
        rx.changed().await.unwrap();
        rx.modseq()
    });
    tokio::task::yield_now().await;
    mail.rename_mailbox(ACCOUNT, projets.id, "Dossiers").await.unwrap();
    assert_eq!(waiter.await.unwrap(), f.mail.modseq(ACCOUNT).await.unwrap());
    let mut rx = f.mail.subscribe(ACCOUNT).await.unwrap();
    f.mail.delete_mailbox(ACCOUNT, projets.id).await.unwrap();
    assert_eq!(rx.mark_seen(), f.mail.modseq(ACCOUNT).await.unwrap(), "delete wakes");
    assert!(!other.has_changed().unwrap(), "another account's changes do not wake");
}

/// The seam of issue 16: notifications come from the store, so a commit made through
/// another `Mail` over the same store (another node, in this process) wakes a subscriber
/// of the first.
#[tokio::test]
async fn a_change_through_another_mail_wakes_the_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let (here, there) = (Mail::new(store.clone()), Mail::new(store.clone()));
    let inbox = here.ensure_account(ACCOUNT, NOW).await.unwrap()[0].id;
    let mut rx = here.subscribe(ACCOUNT).await.unwrap();
    let waiter = tokio::spawn(async move {
        rx.changed().await.unwrap();
        rx.mark_seen()
    });
    tokio::task::yield_now().await;
    let stored = there.ingest(ACCOUNT, ingest(message("ailleurs", ""), vec![inbox])).await.unwrap();
    let woken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await;
    assert_eq!(woken.expect("woken").unwrap(), stored.modseq);
    // The other way, and for a change that is not a delivery.
    let mut rx = there.subscribe(ACCOUNT).await.unwrap();
    let flagged = here.set_keywords(ACCOUNT, stored.email, &[Keyword::Flagged]).await.unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.mark_seen(), flagged);
    store.close().await.unwrap();
}

#[tokio::test]
async fn large_sets_span_several_commits() {
    let f = fixture().await;
    let projets = f.mail.create_mailbox(ACCOUNT, "Projets", None, NOW).await.unwrap();
    // In ingests of at most `ingest_batch_max` (200) deliveries.
    for part in 0..6 {
        let deliveries = (0..200).map(|i| (ACCOUNT, ingest(message(&format!("l{part}-{i}"), ""), vec![projets.id])));
        f.mail.ingest_many(deliveries.collect()).await.unwrap();
    }
    let all: Vec<u32> = (1..=1200).collect();
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    let res = f.mail.store_keywords(ACCOUNT, projets.id, &all, KeywordOp::Add, &kw(&["\\Seen"]), None).await.unwrap();
    assert_eq!((res.updated.len(), res.modseq), (1200, before + 2));
    let copied = f.mail.copy(ACCOUNT, projets.id, &all, f.inbox).await.unwrap();
    assert_eq!(copied.pairs, all.iter().map(|uid| (*uid, *uid)).collect::<Vec<_>>());
    let (removed, _) = f.mail.expunge(ACCOUNT, f.inbox, &all).await.unwrap();
    assert_eq!(removed, all);
    // Deleting a mailbox of more than 800 messages expunges them in parts first.
    let used = f.mail.quota_used(ACCOUNT).await.unwrap();
    assert!(used > 0);
    f.mail.delete_mailbox(ACCOUNT, projets.id).await.unwrap();
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 0);
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, before).await.unwrap();
    assert_eq!(delta.expunged, all);
}

#[tokio::test]
async fn body_text_is_kept_for_searches_and_goes_with_the_email() {
    let f = fixture().await;
    let html = b"From: a@b.fr\r\nSubject: avis\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 <p>Avis de <b>R=C9UNION</b>\r\n   du conseil</p>\r\n";
    let stored = f.mail.ingest(ACCOUNT, ingest(html.to_vec(), vec![f.inbox])).await.unwrap();
    // Decoded (quoted-printable, Latin-1), HTML as text, lowercased, whitespace folded.
    let text = f.mail.body_text(ACCOUNT, stored.email).await.unwrap();
    assert!(text.contains("avis de réunion du conseil"), "{text:?}");
    assert_eq!(crate::search_text("  Réunion\r\n DU  Conseil "), "réunion du conseil");
    f.mail.expunge(ACCOUNT, f.inbox, &[stored.uids[0].1]).await.unwrap();
    assert_eq!(f.mail.body_text(ACCOUNT, stored.email).await.unwrap(), "");
}

async fn fixture_with(limits: crate::Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::with_limits(store, limits);
    let mailboxes = mail.ensure_account(ACCOUNT, NOW).await.unwrap();
    let inbox = mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap().id;
    Fixture { _dir: dir, mail, inbox }
}

/// The inbox of a further account (created on first use).
async fn inbox_of(mail: &Mail, account: u64) -> u32 {
    let mailboxes = mail.ensure_account(account, NOW).await.unwrap();
    mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap().id
}

fn tenant_quota(account_bytes_max: Option<u64>, tenant_bytes_max: Option<u64>) -> Quota {
    Quota { account_bytes_max, tenant: Some("commune".into()), tenant_bytes_max }
}

/// Every staged upload is committed or removed (removal runs in the background).
async fn no_upload_left(mail: &Mail) {
    for _ in 0..500 {
        if mail.store.staged_uploads().await.unwrap() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("a staged upload was left behind");
}

#[tokio::test]
async fn one_message_to_many_accounts_is_read_and_stored_once() {
    let f = fixture().await;
    // Over one blob chunk and with a long text: the message, its summary and its text
    // are each one blob, referenced by every account.
    let text = "Délibération du conseil municipal. ".repeat(4_000);
    let raw = format!("From: a@b.fr\r\nSubject: cr\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n");
    let raw = bytes::Bytes::from(raw.repeat(4));
    let accounts: Vec<u64> = (100..110).collect();
    let mut deliveries = Vec::new();
    for account in &accounts {
        let inbox = inbox_of(&f.mail, *account).await;
        let mut ingest = ingest(Vec::new(), vec![inbox]);
        ingest.raw = raw.clone();
        deliveries.push((*account, ingest));
    }
    let stored = f.mail.ingest_many(deliveries).await.unwrap();
    assert_eq!(stored.len(), 10);
    for (account, ingested) in accounts.iter().zip(&stored) {
        assert_eq!(f.mail.raw(*account, ingested.email).await.unwrap(), raw.as_ref());
        let email = f.mail.email(*account, ingested.email).await.unwrap();
        assert_eq!(email.records.len(), 1, "the text is shared");
        assert!(f.mail.body_text(*account, ingested.email).await.unwrap().starts_with("délibération du conseil"));
        assert_eq!(f.mail.summary(*account, ingested.email).await.unwrap().subject.as_deref(), Some("cr"));
    }
    no_upload_left(&f.mail).await;
    // Removed from all but one account, the message and its text are still there.
    let email = f.mail.email(100, stored[0].email).await.unwrap();
    let hash = hameau_store::BlobHash::from_hex(&email.blob).unwrap();
    let text_hash = hameau_store::BlobHash::from_hex(&email.records[0]).unwrap();
    for (account, ingested) in accounts.iter().zip(&stored).skip(1) {
        f.mail.remove(*account, ingested.email, ingested.uids[0].0).await.unwrap();
    }
    assert!(f.mail.body_text(100, stored[0].email).await.unwrap().starts_with("délibération"));
    f.mail.remove(100, stored[0].email, stored[0].uids[0].0).await.unwrap();
    assert_eq!(f.mail.store.read_blob(&hash).await.unwrap(), None);
    assert_eq!(f.mail.store.read_blob(&text_hash).await.unwrap(), None);
}

#[tokio::test]
async fn messages_that_can_never_be_stored_are_permanent_failures_and_leave_nothing() {
    let f = fixture().await;
    let subject = "x".repeat(1_200_000);
    let raw = format!("From: a@b.fr\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes();
    let err = f.mail.ingest(ACCOUNT, ingest(raw, vec![f.inbox])).await.unwrap_err();
    assert!(matches!(err, Error::Unstorable(hameau_message::Error::SummaryTooLarge { .. })), "{err}");
    assert!(err.is_permanent());
    let too_many = (0..201).map(|i| (ACCOUNT, ingest(message(&format!("m{i}"), ""), vec![f.inbox]))).collect();
    let err = f.mail.ingest_many(too_many).await.unwrap_err();
    assert!(matches!(err, Error::TooManyDeliveries { n: 201, max: 200 }) && err.is_permanent(), "{err}");
    assert!(!Error::OverQuota { used: 1, quota: 1, size: 1 }.is_permanent());
    assert_eq!(f.mail.status(ACCOUNT, f.inbox).await.unwrap().messages, 0);
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 0);
    no_upload_left(&f.mail).await;
}

#[tokio::test]
async fn a_failed_ingest_removes_its_staged_upload() {
    let f = fixture().await;
    // Large enough to be staged as an upload; the second account is over its quota.
    let big = bytes::Bytes::from(format!("From: a@b.fr\r\nSubject: big\r\n\r\n{}\r\n", "x".repeat(1_500_000)));
    let other = inbox_of(&f.mail, 200).await;
    let mut first = ingest(Vec::new(), vec![f.inbox]);
    first.raw = big.clone();
    let mut second = ingest(Vec::new(), vec![other]);
    second.raw = big.clone();
    second.quota = Quota::account(Some(1_000));
    let err = f.mail.ingest_many(vec![(ACCOUNT, first), (200, second)]).await.unwrap_err();
    assert!(matches!(err, Error::OverQuota { quota: 1_000, .. }), "{err}");
    no_upload_left(&f.mail).await;
    assert_eq!(f.mail.status(ACCOUNT, f.inbox).await.unwrap().messages, 0);
}

#[tokio::test]
async fn tenant_quota_counts_all_its_accounts_inside_the_commit() {
    let f = fixture().await;
    let raw = message("t", "");
    let size = raw.len() as u64;
    let tenant_max = 3 * size;
    let second = inbox_of(&f.mail, 300).await;
    for (account, inbox) in [(ACCOUNT, f.inbox), (300, second), (ACCOUNT, f.inbox)] {
        let mut delivery = ingest(raw.clone(), vec![inbox]);
        delivery.quota = tenant_quota(None, Some(tenant_max));
        f.mail.ingest(account, delivery).await.unwrap();
    }
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), tenant_max);
    let mut delivery = ingest(raw.clone(), vec![second]);
    delivery.quota = tenant_quota(None, Some(tenant_max));
    let err = f.mail.ingest(300, delivery).await.unwrap_err();
    assert!(matches!(err, Error::OverQuota { quota, .. } if quota == tenant_max), "{err}");
    // Removing mail gives it back to the tenant.
    let uids: Vec<u32> = f.mail.uids(ACCOUNT, f.inbox).await.unwrap().iter().map(|e| e.uid).collect();
    f.mail.expunge(ACCOUNT, f.inbox, &uids).await.unwrap();
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), size);
    let mut delivery = ingest(raw.clone(), vec![second]);
    delivery.quota = tenant_quota(None, Some(tenant_max));
    f.mail.ingest(300, delivery).await.unwrap();
}

#[tokio::test]
async fn concurrent_deliveries_never_overshoot_the_quota() {
    let f = fixture().await;
    let raw = bytes::Bytes::from(message("q", ""));
    let size = raw.len() as u64;
    // Room for 4 messages; 20 deliveries race, each its own commit, MULTIAPPEND-like
    // batches too.
    let quota = Quota::account(Some(4 * size + size / 2));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mail = f.mail.clone();
        let mut delivery = ingest(Vec::new(), vec![f.inbox]);
        delivery.raw = raw.clone();
        delivery.quota = quota.clone();
        tasks.push(tokio::spawn(async move {
            if i % 5 == 0 {
                mail.ingest_many(vec![(ACCOUNT, delivery.clone()), (ACCOUNT, delivery)]).await.map(|s| s.len())
            } else {
                mail.ingest(ACCOUNT, delivery).await.map(|_| 1)
            }
        }));
    }
    let mut n_stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(n) => n_stored += n,
            Err(Error::OverQuota { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n_stored, 4);
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 4 * size);
    assert_eq!(f.mail.status(ACCOUNT, f.inbox).await.unwrap().messages, 4);
}

#[tokio::test]
async fn mailboxes_per_account_are_capped_inside_the_commit() {
    let f = fixture_with(crate::Limits { mailboxes_max: 10, ..crate::Limits::default() }).await;
    // 6 special-use mailboxes; `a/b` makes 2.
    f.mail.create_mailbox(ACCOUNT, "a/b", None, NOW).await.unwrap();
    f.mail.create_mailbox(ACCOUNT, "c", None, NOW).await.unwrap();
    let err = f.mail.create_mailbox(ACCOUNT, "d/e", None, NOW).await.unwrap_err();
    assert!(matches!(err, Error::TooManyMailboxes { max: 10 }) && err.is_permanent(), "{err}");
    f.mail.create_mailbox(ACCOUNT, "d", None, NOW).await.unwrap();
    let err = f.mail.create_mailbox(ACCOUNT, "e", None, NOW).await.unwrap_err();
    assert!(matches!(err, Error::TooManyMailboxes { .. }), "{err}");
    assert_eq!(f.mail.mailboxes(ACCOUNT).await.unwrap().len(), 10);
    let d = f.mail.mailbox_by_name(ACCOUNT, "d").await.unwrap().unwrap();
    f.mail.delete_mailbox(ACCOUNT, d.id).await.unwrap();
    f.mail.create_mailbox(ACCOUNT, "e", None, NOW).await.unwrap();
    // Concurrent creations: never more than the cap.
    let c = f.mail.mailbox_by_name(ACCOUNT, "c").await.unwrap().unwrap();
    f.mail.delete_mailbox(ACCOUNT, c.id).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mail = f.mail.clone();
        tasks.push(tokio::spawn(async move { mail.create_mailbox(ACCOUNT, &format!("x{i}"), None, NOW).await }));
    }
    for task in tasks {
        let _ = task.await.unwrap();
    }
    assert_eq!(f.mail.mailboxes(ACCOUNT).await.unwrap().len(), 10);
}

/// The caller's records commit with the messages, or not at all (the migration's resume
/// records, issue 13).
#[tokio::test]
async fn ingest_many_with_writes_the_callers_records_in_the_same_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::new(store.clone());
    let mailboxes = mail.ensure_account(ACCOUNT, NOW).await.unwrap();
    let inbox = mailboxes.iter().find(|m| m.role == Some(Role::Inbox)).unwrap().id;
    let records = vec![(b"mi/test/1".to_vec(), b"one".to_vec()), (b"mi/test/2".to_vec(), b"two".to_vec())];
    let batch =
        vec![(ACCOUNT, ingest(message("a", ""), vec![inbox])), (ACCOUNT, ingest(message("b", ""), vec![inbox]))];
    let stored = mail.ingest_many_with(batch, records).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(store.get(b"mi/test/1").await.unwrap().unwrap().value, b"one");
    assert_eq!(store.get(b"mi/test/2").await.unwrap().unwrap().value, b"two");
    // A failed ingest (no such mailbox) writes no record either.
    let failed = mail.ingest_many_with(
        vec![(ACCOUNT, ingest(message("c", ""), vec![999]))],
        vec![(b"mi/test/3".to_vec(), b"three".to_vec())],
    );
    assert!(matches!(failed.await, Err(Error::NoMailbox(999))));
    assert!(store.get(b"mi/test/3").await.unwrap().is_none());
    // The mail model's own keys are not the caller's to write.
    let refused = mail.ingest_many_with(
        vec![(ACCOUNT, ingest(message("d", ""), vec![inbox]))],
        vec![(b"m/anything".to_vec(), b"x".to_vec())],
    );
    assert!(matches!(refused.await, Err(Error::Cannot(_))));
    assert_eq!(mail.uids(ACCOUNT, inbox).await.unwrap().len(), 2);
}

/// A learner that keeps what it is told.
#[derive(Debug, Default)]
struct Recorder(std::sync::Mutex<Vec<(u64, bool)>>);

impl crate::JunkLearner for Recorder {
    fn learn(&self, judgement: crate::Judgement) {
        self.0.lock().unwrap().push((judgement.email, judgement.spam));
    }
}

#[tokio::test]
async fn judgements_into_and_out_of_junk_reach_the_learner() {
    let f = fixture().await;
    let recorder = std::sync::Arc::new(Recorder::default());
    let mail = f.mail.clone().with_junk_learner(recorder.clone());
    let role = |role| {
        let mail = mail.clone();
        async move { mail.mailbox_by_role(ACCOUNT, role).await.unwrap().unwrap().id }
    };
    let (junk, trash, archive) = (role(Role::Junk).await, role(Role::Trash).await, role(Role::Archive).await);
    let mut emails = Vec::new();
    for subject in ["one", "two", "three"] {
        emails.push(mail.ingest(ACCOUNT, ingest(message(subject, ""), vec![f.inbox])).await.unwrap().email);
    }
    let told = || std::mem::take(&mut *recorder.0.lock().unwrap());
    // Inbox to Archive says nothing; MOVE into Junk says spam, once per message moved.
    mail.copy(ACCOUNT, f.inbox, &[1], archive).await.unwrap();
    assert_eq!(told(), vec![]);
    mail.move_messages(ACCOUNT, f.inbox, &[1, 2], junk).await.unwrap();
    assert_eq!(told(), vec![(emails[0], true), (emails[1], true)]);
    // Out of Junk into Trash says nothing; into the inbox (a COPY too), ham.
    mail.move_messages(ACCOUNT, junk, &[2], trash).await.unwrap();
    assert_eq!(told(), vec![]);
    mail.copy(ACCOUNT, junk, &[1], f.inbox).await.unwrap();
    assert_eq!(told(), vec![(emails[0], false)]);
    // Thunderbird's keywords: `$Junk` added says spam, `$NotJunk` ham; added again,
    // removed, or both at once, nothing.
    let store = |op, keywords: &[&str]| {
        let mail = mail.clone();
        let keywords = kw(keywords);
        async move { mail.store_keywords(ACCOUNT, f.inbox, &[3], op, &keywords, None).await.unwrap() }
    };
    store(KeywordOp::Add, &["$Junk", "\\Seen"]).await;
    assert_eq!(told(), vec![(emails[2], true)]);
    store(KeywordOp::Add, &["$Junk"]).await;
    store(KeywordOp::Remove, &["$Junk"]).await;
    assert_eq!(told(), vec![]);
    store(KeywordOp::Replace, &["$NotJunk"]).await;
    assert_eq!(told(), vec![(emails[2], false)]);
    store(KeywordOp::Replace, &["$Junk", "$NotJunk2"]).await;
    assert_eq!(told(), vec![(emails[2], true)]);
    // Without a learner, nothing is looked up or told.
    f.mail.move_messages(ACCOUNT, f.inbox, &[3], junk).await.unwrap();
    assert_eq!(told(), vec![]);
}

#[tokio::test]
async fn an_email_changes_keywords_and_mailboxes_in_one_commit_and_is_destroyed_whole() {
    let f = fixture().await;
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let trash = f.mail.mailbox_by_role(ACCOUNT, Role::Trash).await.unwrap().unwrap().id;
    let stored = f.mail.ingest(ACCOUNT, ingest(message("a", ""), vec![f.inbox])).await.unwrap();
    let size = f.mail.quota_used(ACCOUNT).await.unwrap();
    // Seen, and moved from the inbox to the archive and the trash: one commit.
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    let modseq = f
        .mail
        .change_email(ACCOUNT, stored.email, Some(&[Keyword::Seen, Keyword::Deleted]), Some(&[archive, trash]))
        .await
        .unwrap();
    assert_eq!(modseq, before + 1);
    let email = f.mail.email(ACCOUNT, stored.email).await.unwrap();
    assert_eq!(email.keywords, vec![Keyword::Deleted, Keyword::Seen]);
    assert_eq!((email.mailboxes.len(), email.mailboxes.contains(&archive)), (2, true));
    assert!(f.mail.uids(ACCOUNT, f.inbox).await.unwrap().is_empty());
    let entry = &f.mail.uids(ACCOUNT, archive).await.unwrap()[0];
    assert_eq!((entry.email, entry.modseq, entry.has(&Keyword::Seen)), (stored.email, modseq, true));
    // IMAP's catching up sees the inbox's UID expunged, and the log one update.
    let delta = f.mail.mailbox_changes_since(ACCOUNT, f.inbox, before).await.unwrap();
    assert_eq!(delta.expunged, vec![stored.uids[0].1]);
    let changes = f.mail.changes_since(ACCOUNT, before, 10).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].email_changes().collect::<Vec<_>>(), vec![(stored.email, ChangeKind::Updated)]);
    // Nothing to change: no commit. No mailbox, or one that does not exist: refused.
    let same = f.mail.change_email(ACCOUNT, stored.email, None, Some(&[trash, archive])).await.unwrap();
    assert_eq!(same, modseq);
    assert!(matches!(f.mail.change_email(ACCOUNT, stored.email, None, Some(&[])).await, Err(Error::NoTargetMailbox)));
    assert!(matches!(f.mail.change_email(ACCOUNT, stored.email, None, Some(&[999])).await, Err(Error::NoMailbox(999))));
    // Destroyed: gone from both mailboxes, its size given back.
    f.mail.destroy_email(ACCOUNT, stored.email).await.unwrap();
    assert!(matches!(f.mail.email(ACCOUNT, stored.email).await, Err(Error::NoEmail(_))));
    assert!(f.mail.uids(ACCOUNT, archive).await.unwrap().is_empty());
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 0, "{size} bytes given back");
    let last = f.mail.changes_since(ACCOUNT, modseq, 10).await.unwrap();
    assert_eq!(last[0].email_changes().collect::<Vec<_>>(), vec![(stored.email, ChangeKind::Destroyed)]);
    assert_eq!(last[0].expunged.len(), 2);
    assert!(matches!(f.mail.destroy_email(ACCOUNT, stored.email).await, Err(Error::NoEmail(_))));
}

#[tokio::test]
async fn objects_of_a_kind_are_kept_bounded_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::with_limits(store, crate::Limits { objects_max: 2, ..crate::Limits::default() });
    let before = mail.modseq(ACCOUNT).await.unwrap();
    let (first, modseq) = mail.create_object(ACCOUNT, "submission", b"{\"a\":1}").await.unwrap();
    let (second, _) = mail.create_object(ACCOUNT, "submission", b"{\"a\":2}").await.unwrap();
    assert_eq!((first + 1, modseq), (second, before + 1));
    assert!(matches!(mail.create_object(ACCOUNT, "submission", b"{}").await, Err(Error::TooManyObjects { max: 2 })));
    // Another kind and another account count apart.
    mail.create_object(ACCOUNT, "push", b"{}").await.unwrap();
    mail.create_object(ACCOUNT + 1, "submission", b"{}").await.unwrap();
    mail.update_object(ACCOUNT, "submission", first, b"{\"a\":3}").await.unwrap();
    mail.destroy_object(ACCOUNT, "submission", second).await.unwrap();
    assert_eq!(mail.objects(ACCOUNT, "submission").await.unwrap(), vec![(first, b"{\"a\":3}".to_vec())]);
    assert_eq!(mail.object(ACCOUNT, "submission", second).await.unwrap(), None);
    assert!(matches!(mail.destroy_object(ACCOUNT, "submission", second).await, Err(Error::Cannot(_))));
    // Room again after the destruction; each change is in the log with its kind.
    mail.create_object(ACCOUNT, "submission", b"{}").await.unwrap();
    let log = mail.changes_since(ACCOUNT, before, 100).await.unwrap();
    let kinds: Vec<(String, u64, ChangeKind)> = log.iter().flat_map(|change| change.objects.clone()).collect();
    assert_eq!(kinds[0], ("submission".to_string(), first, ChangeKind::Created));
    assert_eq!(
        kinds.iter().filter(|(kind, _, change)| kind == "submission" && *change == ChangeKind::Destroyed).count(),
        1
    );
    assert!(matches!(mail.create_object(ACCOUNT, "a/b", b"{}").await, Err(Error::Cannot(_))));
}

#[tokio::test]
async fn a_vacation_response_answers_each_sender_once_per_period() {
    let f = fixture().await;
    assert!(!f.mail.vacation(ACCOUNT).await.unwrap().enabled);
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW, 100, 10).await.unwrap(), None, "off");
    let vacation = crate::Vacation {
        enabled: true,
        from: Some(NOW),
        until: Some(NOW + 1_000),
        subject: Some("Absent".into()),
        set_at: NOW,
        ..crate::Vacation::default()
    };
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    f.mail.set_vacation(ACCOUNT, &vacation).await.unwrap();
    assert_eq!(f.mail.changes_since(ACCOUNT, before, 10).await.unwrap()[0].objects[0].0, crate::VACATION_KIND);
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW - 1, 100, 10).await.unwrap(), None, "not yet");
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "A@x.test", NOW, 100, 10).await.unwrap(), Some(vacation.clone()));
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW + 50, 100, 10).await.unwrap(), None, "answered");
    assert!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW + 100, 100, 10).await.unwrap().is_some(), "a new period");
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "a@x.test", NOW + 1_000, 100, 10).await.unwrap(), None, "over");
    // Bounded memory: past it, new senders are not answered.
    assert!(f.mail.vacation_reply(ACCOUNT, "b@x.test", NOW, 100, 2).await.unwrap().is_some());
    assert_eq!(f.mail.vacation_reply(ACCOUNT, "c@x.test", NOW, 100, 2).await.unwrap(), None);
    // Set again: everyone is answered once more.
    f.mail.set_vacation(ACCOUNT, &crate::Vacation { set_at: NOW + 10, ..vacation }).await.unwrap();
    assert!(f.mail.vacation_reply(ACCOUNT, "b@x.test", NOW + 20, 100, 10).await.unwrap().is_some());
}

#[tokio::test]
async fn a_thread_lists_its_emails_and_a_destruction_names_its_thread() {
    let f = fixture().await;
    let first = f.mail.ingest(ACCOUNT, ingest(message("fil", ""), vec![f.inbox])).await.unwrap();
    let reply = f
        .mail
        .ingest(ACCOUNT, ingest(message("reponse", "In-Reply-To: <fil@mairie-a.fr>\r\n"), vec![f.inbox]))
        .await
        .unwrap();
    let alone = f.mail.ingest(ACCOUNT, ingest(message("seul", ""), vec![f.inbox])).await.unwrap();
    assert_eq!(reply.thread, first.email);
    assert_eq!(f.mail.thread_emails(ACCOUNT, first.thread, 100).await.unwrap(), vec![first.email, reply.email]);
    assert_eq!(f.mail.thread_emails(ACCOUNT, alone.thread, 100).await.unwrap(), vec![alone.email]);
    assert_eq!(f.mail.thread_emails(ACCOUNT, first.thread, 1).await.unwrap(), vec![first.email], "bounded");
    assert!(f.mail.thread_emails(ACCOUNT, 999, 100).await.unwrap().is_empty());
    let before = f.mail.modseq(ACCOUNT).await.unwrap();
    f.mail.remove(ACCOUNT, reply.email, f.inbox).await.unwrap();
    assert_eq!(f.mail.thread_emails(ACCOUNT, first.thread, 100).await.unwrap(), vec![first.email]);
    let changes = f.mail.changes_since(ACCOUNT, before, 10).await.unwrap();
    assert_eq!(changes[0].destroyed_threads, vec![(reply.email, first.thread)]);
}

/// An index entry whose email record is gone (no commit leaves one; a damaged store could)
/// is expunged like any other, and a mailbox holding more of them than one commit takes is
/// still deleted: each turn of `delete_mailbox` removes a part (it looped for ever when
/// the expunge skipped them).
#[tokio::test]
async fn index_entries_without_their_email_are_expunged_and_the_mailbox_deleted() {
    let f = fixture().await;
    let archive = f.mail.mailbox_by_role(ACCOUNT, Role::Archive).await.unwrap().unwrap().id;
    let count = super::UIDS_PER_COMMIT_MAX + 100;
    let mut emails = Vec::new();
    for first in (0..count).step_by(100) {
        let deliveries =
            (first..first + 100).map(|i| (ACCOUNT, ingest(message(&format!("d{i}"), ""), vec![archive]))).collect();
        emails.extend(f.mail.ingest_many(deliveries).await.unwrap().into_iter().map(|stored| stored.email));
    }
    let mut batch = hameau_store::Batch::new();
    for email in &emails {
        batch.delete(&crate::keys::email(ACCOUNT, *email));
    }
    f.mail.store.commit(batch).await.unwrap();
    assert_eq!(f.mail.uids(ACCOUNT, archive).await.unwrap().len(), count, "the index still lists them");
    let (removed, _) = f.mail.expunge(ACCOUNT, archive, &[1, 2]).await.unwrap();
    assert_eq!(removed, vec![1, 2]);
    assert_eq!(f.mail.uids(ACCOUNT, archive).await.unwrap().len(), count - 2);
    let deleted = tokio::time::timeout(std::time::Duration::from_secs(60), f.mail.delete_mailbox(ACCOUNT, archive));
    deleted.await.expect("delete_mailbox ends").unwrap();
    assert!(f.mail.uids(ACCOUNT, archive).await.unwrap().is_empty());
    assert!(matches!(f.mail.delete_mailbox(ACCOUNT, archive).await, Err(Error::NoMailbox(_))));
}

#[tokio::test]
async fn deleting_an_account_s_mail_removes_all_of_it_and_gives_its_bytes_back() {
    let f = fixture().await;
    let other = ACCOUNT + 1;
    let other_inbox = inbox_of(&f.mail, other).await;
    let projets = f.mail.create_mailbox(ACCOUNT, "Projets", None, NOW).await.unwrap();
    // 1,200 messages (over two pages of the deletion), one shared with the other account
    // (its blob and its large text stay for it), the others the account's alone.
    let quota = tenant_quota(None, None);
    let shared_text = "Délibération du conseil municipal. ".repeat(4_000);
    let shared = bytes::Bytes::from(format!("From: a@b.fr\r\nSubject: cr\r\n\r\n{shared_text}\r\n"));
    let mut both = Vec::new();
    for account in [ACCOUNT, other] {
        let inbox = if account == ACCOUNT { f.inbox } else { other_inbox };
        let mut delivery = ingest(Vec::new(), vec![inbox]);
        delivery.raw = shared.clone();
        delivery.quota = quota.clone();
        both.push((account, delivery));
    }
    let stored = f.mail.ingest_many(both).await.unwrap();
    let mut own_blobs = Vec::new();
    for i in 0..1_200 {
        let mailbox = if i % 2 == 0 { f.inbox } else { projets.id };
        let mut delivery = ingest(message(&format!("m{i}"), ""), vec![mailbox]);
        delivery.quota = quota.clone();
        let ingested = f.mail.ingest(ACCOUNT, delivery).await.unwrap();
        if i < 3 {
            own_blobs.push(
                hameau_store::BlobHash::from_hex(&f.mail.email(ACCOUNT, ingested.email).await.unwrap().blob).unwrap(),
            );
        }
    }
    f.mail.put_push_subscription(ACCOUNT, "p1", b"{}").await.unwrap();
    let staged = f.mail.stage_upload(ACCOUNT, &mut &b"piece jointe"[..]).await.unwrap();
    let upload = staged.hash();
    let terms = crate::UploadTerms { now: NOW, ttl_s: 3600, pending_bytes_max: 1000, quota: quota.clone() };
    f.mail.add_upload(ACCOUNT, staged, &terms).await.unwrap();
    let used = f.mail.quota_used(ACCOUNT).await.unwrap();
    let other_used = f.mail.quota_used(other).await.unwrap();
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), used + other_used);
    let beside_prefix = |account: u64| format!("x/{account}/").into_bytes();
    let beside = crate::Beside { prefix_of: &beside_prefix, account_of: &|_| None };
    let mut batch = hameau_store::Batch::new();
    batch.set(&beside_prefix(ACCOUNT), b"import state").set(&beside_prefix(other), b"theirs");
    f.mail.store.commit(batch).await.unwrap();

    let deleted = f.mail.delete_account_mail(ACCOUNT, "commune", &beside).await.unwrap();
    assert_eq!(deleted.emails, 1_201);
    assert_eq!(deleted.bytes, used);
    assert!(deleted.records > 1_201 * 3, "{deleted:?}");

    // Nothing of the account is left but its markers; its bytes went back to the tenant.
    let left = f.mail.store.scan(&hameau_store::Scan::prefix(&crate::keys::account_start(ACCOUNT))).await.unwrap();
    let left: Vec<&[u8]> = left.iter().map(|entry| entry.key.as_slice()).collect();
    let markers = [crate::keys::initialised(ACCOUNT), crate::keys::mailbox_tree(ACCOUNT)];
    assert_eq!(left, markers.iter().map(Vec::as_slice).collect::<Vec<_>>());
    assert!(f.mail.push_subscriptions(ACCOUNT).await.unwrap().is_empty());
    assert_eq!(f.mail.store.get(&beside_prefix(ACCOUNT)).await.unwrap(), None);
    assert_eq!(f.mail.quota_used(ACCOUNT).await.unwrap(), 0);
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), other_used);
    assert!(f.mail.store.blob_size(&upload).await.unwrap().is_none(), "the upload is gone");
    // Its expiry entry, left for the sweep, finds no upload and goes without a release.
    assert_eq!(f.mail.expire_uploads(NOW + 3600, 100).await.unwrap(), 0);
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), other_used);
    for blob in &own_blobs {
        assert!(f.mail.store.blob_size(blob).await.unwrap().is_none(), "the account's own messages are gone");
    }
    // The other account keeps its copy of the shared message, whole.
    assert!(f.mail.body_text(other, stored[1].email).await.unwrap().starts_with("délibération du conseil"));
    assert_eq!(f.mail.raw(other, stored[1].email).await.unwrap(), shared.as_ref());
    assert!(f.mail.store.get(&beside_prefix(other)).await.unwrap().is_some());

    // A delivery still under way finds no mailbox (temporary: the sender tries again and the
    // directory then refuses the address) and leaves nothing; the mailboxes are not made again.
    let late = f.mail.ingest(ACCOUNT, ingest(message("late", ""), vec![f.inbox])).await.unwrap_err();
    assert!(matches!(late, Error::NoMailbox(_)), "{late}");
    assert!(f.mail.ensure_account(ACCOUNT, NOW).await.unwrap().is_empty());
    // A session still logged in can no longer change the tree: nothing is made for no one.
    let create = f.mail.create_mailbox(ACCOUNT, "Orphelin", None, NOW).await.unwrap_err();
    assert!(matches!(&create, Error::Cannot(why) if why.contains("deleted")), "{create}");
    let left = f.mail.store.scan(&hameau_store::Scan::prefix(&crate::keys::account_start(ACCOUNT))).await.unwrap();
    assert_eq!(left.len(), 2);
    // Again: nothing more to do.
    assert_eq!(f.mail.delete_account_mail(ACCOUNT, "commune", &beside).await.unwrap(), crate::MailDeleted::default());

    // The tenant's counter goes with the tenant.
    f.mail.forget_tenant("commune").await.unwrap();
    assert_eq!(f.mail.tenant_used("commune").await.unwrap(), 0);
}

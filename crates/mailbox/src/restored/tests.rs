use hameau_store::{Options, Store};

use crate::{Ingest, Mail, Quota};

const BACKED_UP: u64 = 1_795_000_000;
const RESTORED: u64 = BACKED_UP + 86_400;

/// Every mailbox of every account gets a UIDVALIDITY it never had; UIDs, messages, names
/// and the tenant's counter stay.
#[tokio::test]
async fn every_mailbox_of_every_account_gets_a_new_uid_validity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let mail = Mail::new(store);
    // Accounts far apart, and one whose id ends in 0xff bytes: the skip to the next account
    // must not miss or repeat one.
    let accounts = [1u64, 2, 255, 256, 1 << 40, u64::MAX];
    for account in accounts {
        mail.ensure_account(account, BACKED_UP).await.unwrap();
    }
    let inbox = mail.mailboxes(1).await.unwrap()[0].clone();
    let raw = b"Subject: x\r\n\r\nBonjour\r\n".to_vec();
    let ingest = Ingest {
        raw: raw.into(),
        mailboxes: vec![inbox.id],
        keywords: vec![],
        received_at: BACKED_UP,
        quota: Quota::default(),
    };
    mail.ingest(1, ingest).await.unwrap();
    let before: Vec<_> = {
        let mut all = Vec::new();
        for account in accounts {
            all.push(mail.mailboxes(account).await.unwrap());
        }
        all
    };
    let (n_accounts, n_mailboxes) = mail.renew_uid_validity_all(RESTORED).await.unwrap();
    assert_eq!((n_accounts, n_mailboxes), (6, 36));
    for (account, old) in accounts.iter().zip(&before) {
        let new = mail.mailboxes(*account).await.unwrap();
        assert_eq!(new.len(), old.len());
        for (new, old) in new.iter().zip(old) {
            assert_ne!(new.uid_validity, old.uid_validity, "account {account} {}", old.name);
            assert_eq!((&new.name, new.id, new.parent), (&old.name, old.id, old.parent));
        }
    }
    assert_eq!(mail.uids(1, inbox.id).await.unwrap().len(), 1);
    assert_eq!(mail.uid_next(1, inbox.id).await.unwrap(), 2);
    // One account alone.
    assert_eq!(mail.renew_uid_validity(2, RESTORED + 1).await.unwrap(), 6);
}

#[test]
fn renewed_never_gives_the_old_value() {
    for (old, now, id) in [(10, 9, 1), (1, 0, 1), (u32::MAX, u64::from(u32::MAX) - 1, 1), (5, 5, 0)] {
        let renewed = super::renewed(old, now, id);
        assert_ne!(renewed, old, "{old} {now} {id}");
        assert_ne!(renewed, 0);
    }
}

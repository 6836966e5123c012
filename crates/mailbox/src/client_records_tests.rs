use hameau_store::{BlobHash, Options, Store};

use crate::{Error, Mail, Quota, UploadTerms, record_blob_refs, record_owner};

const NOW: u64 = 1_795_000_000;

async fn mail() -> (tempfile::TempDir, Mail) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    (dir, Mail::new(store))
}

fn terms(now: u64, quota: Option<u64>) -> UploadTerms {
    UploadTerms {
        now,
        ttl_s: 3600,
        pending_bytes_max: 1000,
        quota: Quota { account_bytes_max: quota, tenant: Some("t".into()), tenant_bytes_max: None },
    }
}

#[tokio::test]
async fn an_upload_is_kept_counted_and_swept() {
    let (_dir, mail) = mail().await;
    let staged = mail.stage_upload(7, &mut &b"piece jointe"[..]).await.unwrap();
    let hash = staged.hash();
    let upload = mail.add_upload(7, staged, &terms(NOW, None)).await.unwrap();
    assert_eq!((upload.size, upload.expires_at), (12, NOW + 3600));
    assert_eq!(mail.store.read_blob(&hash).await.unwrap().unwrap(), b"piece jointe");
    assert_eq!((mail.quota_used(7).await.unwrap(), mail.tenant_used("t").await.unwrap()), (12, 12));
    assert_eq!(mail.uploads_pending(7).await.unwrap(), 12);
    // Its account's alone.
    assert!(mail.upload(8, &hash, NOW).await.unwrap().is_none());
    assert!(mail.upload(7, &hash, NOW).await.unwrap().is_some());
    assert_eq!(mail.read_upload(7, &hash, NOW).await.unwrap().unwrap(), b"piece jointe");
    assert!(mail.read_upload(8, &hash, NOW).await.unwrap().is_none());
    // Sent again later: one upload, its expiry moved, charged once.
    let staged = mail.store.stage_blob_bytes(b"piece jointe").await.unwrap();
    let again = mail.add_upload(7, staged, &terms(NOW + 100, None)).await.unwrap();
    assert_eq!((again.created_at, again.expires_at), (NOW, NOW + 3700));
    assert_eq!(mail.quota_used(7).await.unwrap(), 12);
    // Not swept before its time; swept after, and everything it counted given back.
    assert_eq!(mail.expire_uploads(NOW + 3600, 100).await.unwrap(), 0);
    assert!(mail.upload(7, &hash, NOW + 3700).await.unwrap().is_none(), "expired uploads are not offered");
    assert_eq!(mail.expire_uploads(NOW + 3700, 100).await.unwrap(), 1);
    assert!(mail.store.read_blob(&hash).await.unwrap().is_none());
    assert_eq!((mail.quota_used(7).await.unwrap(), mail.tenant_used("t").await.unwrap()), (0, 0));
    assert_eq!(mail.uploads_pending(7).await.unwrap(), 0);
    assert_eq!(mail.expire_uploads(NOW + 10_000, 100).await.unwrap(), 0);
}

#[tokio::test]
async fn uploads_are_refused_over_quota_and_over_the_pending_bytes() {
    let (_dir, mail) = mail().await;
    let staged = mail.store.stage_blob_bytes(vec![b'a'; 600]).await.unwrap();
    let err = mail.add_upload(7, staged, &terms(NOW, Some(500))).await.unwrap_err();
    assert!(matches!(err, Error::OverQuota { quota: 500, .. }), "{err}");
    let staged = mail.store.stage_blob_bytes(vec![b'a'; 600]).await.unwrap();
    mail.add_upload(7, staged, &terms(NOW, None)).await.unwrap();
    let staged = mail.store.stage_blob_bytes(vec![b'b'; 600]).await.unwrap();
    let err = mail.add_upload(7, staged, &terms(NOW, None)).await.unwrap_err();
    assert!(matches!(err, Error::UploadsFull { max: 1000 }), "{err}");
    // Removed once used: room again.
    assert!(mail.remove_upload(7, &BlobHash::of(&[b'a'; 600])).await.unwrap());
    let staged = mail.store.stage_blob_bytes(vec![b'b'; 600]).await.unwrap();
    mail.add_upload(7, staged, &terms(NOW, None)).await.unwrap();
    assert_eq!(mail.store.staged_uploads().await.unwrap(), 0, "refusals leave nothing staged");
}

#[tokio::test]
async fn push_subscriptions_are_their_accounts_records() {
    let (_dir, mail) = mail().await;
    mail.put_push_subscription(7, "p1", b"{}").await.unwrap();
    mail.put_push_subscription(8, "p2", b"{\"x\":1}").await.unwrap();
    assert_eq!(mail.push_subscriptions(7).await.unwrap(), vec![("p1".to_string(), b"{}".to_vec())]);
    let all = mail.all_push_subscriptions(10).await.unwrap();
    assert_eq!(all.iter().map(|(account, id, _)| (*account, id.as_str())).collect::<Vec<_>>(), [(7, "p1"), (8, "p2")]);
    mail.delete_push_subscription(7, "p1").await.unwrap();
    assert!(mail.push_subscriptions(7).await.unwrap().is_empty());
}

#[tokio::test]
async fn every_record_is_its_accounts_and_an_upload_holds_its_blob() {
    let (_dir, mail) = mail().await;
    let staged = mail.store.stage_blob_bytes(b"x").await.unwrap();
    let hash = staged.hash();
    mail.add_upload(7, staged, &terms(NOW, None)).await.unwrap();
    mail.put_push_subscription(7, "p1", b"{}").await.unwrap();
    let entries = mail.store.scan(&hameau_store::Scan::prefix(b"")).await.unwrap();
    let mut held = Vec::new();
    for entry in &entries {
        let owner = record_owner(&entry.key);
        let expected = if entry.key.starts_with(b"mt/") {
            crate::RecordOwner::Tenant("t".into())
        } else {
            crate::RecordOwner::Account(7)
        };
        assert_eq!(owner, Some(expected), "{}", entry.key.escape_ascii());
        held.extend(record_blob_refs(&entry.key, &entry.value));
    }
    assert_eq!(held, vec![hash]);
}

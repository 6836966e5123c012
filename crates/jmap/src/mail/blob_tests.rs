use hameau_mailbox::{Quota, Role, UploadTerms};

use super::{Blob, part_contents, read, resolve, uncounted};
use crate::mail::tests::{ACCOUNT, Fixture, NOW};

const MULTIPART: &str = "From: a@mairie.test\r\nTo: agent@mairie.test\r\nSubject: PJ\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nBonjour\r\n\
    --b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC/w==\r\n--b--\r\n";

#[tokio::test]
async fn blob_ids_name_the_accounts_own_blobs() {
    let fixture = Fixture::new().await;
    let services = &fixture.services;
    let email = fixture.deliver(MULTIPART, Role::Inbox).await;
    // The raw message, streamed from the store.
    let Some(Blob::Stored { size, .. }) = resolve(services, ACCOUNT, &format!("b{email}"), NOW).await.unwrap() else {
        panic!("the raw message is a stored blob")
    };
    assert_eq!(size, MULTIPART.len() as u64);
    // Part 2 (0 the message, 1 the text) decoded: base64 undone.
    let part = resolve(services, ACCOUNT, &format!("b{email}.2"), NOW).await.unwrap();
    assert_eq!(part, Some(Blob::Decoded(vec![0, 1, 2, 255])));
    assert_eq!(read(services, ACCOUNT, &format!("b{email}.1"), NOW, uncounted).await.unwrap().unwrap(), b"Bonjour");
    // The multipart container, a missing part, another account, a wrong id: nothing.
    for wire in [format!("b{email}.0"), format!("b{email}.9"), format!("b{}", email + 1), "x".into(), "b".into()] {
        assert_eq!(resolve(services, ACCOUNT, &wire, NOW).await.unwrap(), None, "{wire}");
    }
    assert_eq!(resolve(services, ACCOUNT + 1, &format!("b{email}"), NOW).await.unwrap(), None);
    // An upload: its account's only, until it expires.
    let staged = services.mail.stage_upload(ACCOUNT, &mut &b"brouillon"[..]).await.unwrap();
    let terms = UploadTerms { now: NOW, ttl_s: 3600, pending_bytes_max: 1 << 20, quota: Quota::default() };
    let upload = services.mail.add_upload(ACCOUNT, staged, &terms).await.unwrap();
    let wire = format!("u{}", upload.hash.to_hex());
    assert!(matches!(resolve(services, ACCOUNT, &wire, NOW).await.unwrap(), Some(Blob::Stored { size: 9, .. })));
    assert_eq!(read(services, ACCOUNT, &wire, NOW, uncounted).await.unwrap().unwrap(), b"brouillon");
    assert_eq!(resolve(services, ACCOUNT + 1, &wire, NOW).await.unwrap(), None);
    assert_eq!(resolve(services, ACCOUNT, &wire, NOW + 3600).await.unwrap(), None);
}

#[test]
fn parts_of_hostile_messages_are_nothing() {
    assert_eq!(part_contents(b"", 1), None);
    assert_eq!(part_contents(b"\xff\xfe\x00garbage", 5), None);
    assert_eq!(part_contents(MULTIPART.as_bytes(), u32::MAX), None);
}

use hameau_store::{Options, Store};

use crate::{Brake, Error, Hold, Limits, NewMessage, Outcome, Queue, State};

const NOW: u64 = 1_795_000_000;

async fn queue(dir: &tempfile::TempDir) -> Queue {
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    Queue::new(store, Limits::default())
}

fn new(recipients: &[&str]) -> NewMessage {
    NewMessage {
        raw: bytes::Bytes::from_static(b"From: agent@mairie.fr\r\nSubject: test\r\n\r\nBonjour\r\n"),
        mail_from: "agent@mairie.fr".into(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        tenant: Some("mairie".into()),
        account: Some(7),
        envelope_id: "e1".into(),
        held: None,
    }
}

fn delivered() -> Outcome {
    Outcome::Delivered { reply: "250 2.0.0 ok".into() }
}

fn deferred() -> Outcome {
    Outcome::Deferred { reply: "451 4.3.0 try later".into() }
}

#[tokio::test]
async fn a_message_is_claimed_once_and_leaves_when_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    assert_eq!(q.size().await.unwrap(), 0);
    let id = q.enqueue(new(&["a@x.fr", "b@y.fr"]), NOW).await.unwrap();
    assert_eq!(q.size().await.unwrap(), 1);
    assert_eq!(q.next_due().await.unwrap(), Some(NOW));
    let claims = q.claim_due(NOW, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].id, id);
    assert_eq!(q.next_due().await.unwrap(), Some(NOW + Limits::default().lease_s));
    assert_eq!(claims[0].leased_until, NOW + Limits::default().lease_s);
    assert_eq!(q.raw(&claims[0].message).await.unwrap(), new(&[]).raw.to_vec());
    // Leased: not due again, even later, until the lease ends.
    assert!(q.claim_due(NOW + 60, 10, u64::MAX).await.unwrap().is_empty());
    let recorded = q.record(id, &[("a@x.fr".into(), delivered())], NOW + 1).await.unwrap();
    assert!(!recorded.done);
    let message = recorded.message.unwrap();
    assert!(matches!(message.recipients[0].state, State::Delivered { .. }));
    // b@y.fr was not tried in that attempt: it stays due at its time (now).
    assert_eq!(message.due_at, Some(NOW));
    let claims = q.claim_due(NOW + 1, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.len(), 1);
    // A repeated outcome for a delivered recipient changes nothing.
    let recorded =
        q.record(id, &[("a@x.fr".into(), deferred()), ("b@y.fr".into(), delivered())], NOW + 2).await.unwrap();
    assert!(recorded.done);
    assert!(q.get(id).await.unwrap().is_none());
    assert_eq!(q.size().await.unwrap(), 0, "the size follows the messages leaving");
    assert!(q.claim_due(NOW + 10_000, 10, u64::MAX).await.unwrap().is_empty());
    assert!(q.list(None, None, 10).await.unwrap().is_empty());
    assert!(q.list(Some("mairie"), None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn deferrals_follow_the_schedule_then_fail_at_the_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let limits = Limits::default();
    let id = q.enqueue(new(&["a@x.fr"]), NOW).await.unwrap();
    let mut now = NOW;
    let mut waits = Vec::new();
    let mut delayed_at = Vec::new();
    loop {
        let claims = q.claim_due(now, 10, u64::MAX).await.unwrap();
        assert_eq!(claims.len(), 1, "due at {now}");
        let recorded = q.record(id, &[("a@x.fr".into(), deferred())], now).await.unwrap();
        if !recorded.delayed.is_empty() {
            delayed_at.push(now);
        }
        if recorded.done {
            assert_eq!(recorded.failed.len(), 1);
            assert!(now >= NOW + limits.lifetime_s);
            break;
        }
        let next = recorded.message.unwrap().due_at.unwrap();
        assert!(q.claim_due(next - 1, 10, u64::MAX).await.unwrap().is_empty(), "not due before its time");
        waits.push(next - now);
        now = next;
    }
    assert_eq!(&waits[..6], &[300, 600, 1200, 2400, 3600, 3600]);
    // One delay notice, once 4 hours have passed.
    assert_eq!(delayed_at.len(), 1);
    assert!(delayed_at[0] >= NOW + limits.delay_notice_s && delayed_at[0] < NOW + limits.delay_notice_s + 3600);
    assert!(q.get(id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failure_is_final_and_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let id = q.enqueue(new(&["a@x.fr", "b@x.fr"]), NOW).await.unwrap();
    q.claim_due(NOW, 10, u64::MAX).await.unwrap();
    let failed = Outcome::Failed { reply: "550 5.1.1 no such user".into() };
    let recorded =
        q.record(id, &[("a@x.fr".into(), failed.clone()), ("b@x.fr".into(), delivered())], NOW).await.unwrap();
    assert!(recorded.done);
    assert_eq!(recorded.failed.len(), 1);
    assert_eq!(recorded.failed[0].address, "a@x.fr");
    assert_eq!(recorded.failed[0].last_reply.as_deref(), Some("550 5.1.1 no such user"));
    // Recording again for a message gone does nothing.
    assert_eq!(q.record(id, &[("a@x.fr".into(), failed)], NOW).await.unwrap(), Default::default());
}

#[tokio::test]
async fn a_dead_workers_lease_ends_and_the_message_is_due_again() {
    let dir = tempfile::tempdir().unwrap();
    let lease = Limits::default().lease_s;
    let (id, held) = {
        let q = queue(&dir).await;
        let id = q.enqueue(new(&["a@x.fr"]), NOW).await.unwrap();
        let held = q.enqueue(new(&["h@x.fr"]), NOW).await.unwrap();
        assert_eq!(q.claim_due(NOW, 10, u64::MAX).await.unwrap().len(), 2);
        // Its own session is live: nothing to take back.
        assert_eq!(q.release_ended_leases(NOW).await.unwrap(), 0);
        q.hold(held, "the operator's", NOW).await.unwrap();
        (id, held)
        // The worker "dies" here: the store is dropped with the messages claimed.
    };
    let q = queue(&dir).await;
    let leases = || async { q.store.scan(&hameau_store::Scan::prefix(crate::keys::LEASES)).await.unwrap().len() };
    assert_eq!(leases().await, 2);
    assert!(q.claim_due(NOW + lease - 1, 10, u64::MAX).await.unwrap().is_empty());
    // A server starting again takes back its previous run's leases at once (the held
    // message stays held, out of the schedule).
    assert_eq!(q.release_ended_leases(NOW + 1).await.unwrap(), 2);
    assert_eq!(leases().await, 0);
    let message = q.get(held).await.unwrap().unwrap();
    assert_eq!((message.due_at, message.leased_by), (None, None));
    let claims = q.claim_due(NOW + 1, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(claims[0].message.leased_by, Some(q.store.session()));
    assert_eq!(q.release_ended_leases(NOW + 2).await.unwrap(), 0, "this run's lease is live");
    // Past its end, a lease gives way: claimed again, its old entry replaced.
    let claims = q.claim_due(NOW + 1 + lease, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(leases().await, 1);
    // A message merely scheduled later is left alone; recording the attempt ends the lease.
    let later = q.enqueue(new(&["b@x.fr"]), NOW + 10_000).await.unwrap();
    assert!(q.record(id, &[("a@x.fr".into(), deferred())], NOW + 2 + lease).await.unwrap().message.is_some());
    assert_eq!(leases().await, 0);
    assert_eq!(q.get(later).await.unwrap().unwrap().due_at, Some(NOW + 10_000));
    // A deleted message takes its lease entry with it.
    assert_eq!(q.claim_due(NOW + 20_000, 10, u64::MAX).await.unwrap().len(), 2);
    q.delete(later).await.unwrap();
    assert_eq!(leases().await, 1);
}

#[tokio::test]
async fn held_messages_wait_for_release() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let mut held = new(&["a@x.fr"]);
    held.held = Some(Hold { reason: "sending limit".into(), since: NOW, by_brake: false });
    let a = q.enqueue(held, NOW).await.unwrap();
    let b = q.enqueue(new(&["b@x.fr"]), NOW).await.unwrap();
    let claims = q.claim_due(NOW, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.iter().map(|c| c.id).collect::<Vec<_>>(), vec![b]);
    // Held while claimed: the attempt's record stands, and it is not due again.
    q.hold(b, "operator", NOW).await.unwrap();
    let recorded = q.record(b, &[("b@x.fr".into(), deferred())], NOW + 1).await.unwrap();
    assert_eq!(recorded.message.unwrap().due_at, None);
    assert!(q.claim_due(NOW + 100_000, 10, u64::MAX).await.unwrap().is_empty());
    let released = q.release(a, NOW + 5).await.unwrap();
    assert_eq!(released.held, None);
    assert_eq!(q.claim_due(NOW + 5, 10, u64::MAX).await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), vec![a]);
    // retry_now on a held message leaves it held; delete takes it away.
    q.retry_now(b, NOW + 6).await.unwrap();
    assert!(q.claim_due(NOW + 6, 10, u64::MAX).await.unwrap().is_empty());
    assert_eq!(q.size().await.unwrap(), 2, "held messages count in the size");
    q.delete(b).await.unwrap();
    assert_eq!(q.size().await.unwrap(), 1);
    // A byte budget: one message at least, then as many as fit.
    let ids: Vec<u64> = [
        q.enqueue(new(&["c@x.fr"]), NOW).await.unwrap(),
        q.enqueue(new(&["d@x.fr"]), NOW).await.unwrap(),
        q.enqueue(new(&["e@x.fr"]), NOW).await.unwrap(),
        q.enqueue(new(&["f@x.fr"]), NOW).await.unwrap(),
    ]
    .to_vec();
    let one = new(&[]).raw.len() as u64;
    let claimed = |claims: Vec<crate::Claim>| claims.iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(claimed(q.claim_due(NOW + 7, 10, 1).await.unwrap()), ids[..1], "one at least");
    assert_eq!(claimed(q.claim_due(NOW + 7, 10, one + one / 2).await.unwrap()), ids[1..2]);
    assert_eq!(claimed(q.claim_due(NOW + 7, 10, 2 * one).await.unwrap()), ids[2..4]);
    assert!(matches!(q.delete(b).await, Err(Error::NotFound(_))));
    assert!(matches!(q.hold(b, "x", NOW).await, Err(Error::NotFound(_))));
}

/// The worker's watch wakes for what makes a message due sooner, made through any queue
/// over the store (another node's, in this process): an enqueue, a release, a retry, a
/// brake lifted; not for a hold, a claim or a record.
#[tokio::test]
async fn a_worker_wakes_when_a_message_is_queued_or_made_due_on_any_queue() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let other = q.clone();
    let mut due = q.watch_due().await.unwrap();
    let woken = async |due: &mut crate::DueWatch| {
        tokio::time::timeout(std::time::Duration::from_millis(50), due.changed()).await.map(Result::unwrap).is_ok()
    };
    assert!(!woken(&mut due).await, "nothing yet");
    let waiter = tokio::spawn(async move {
        due.changed().await.unwrap();
        due
    });
    tokio::task::yield_now().await;
    let id = other.enqueue(new(&["a@x.fr"]), NOW).await.unwrap();
    let mut due = tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
    // Claimed, recorded (deferred), held: nothing due sooner.
    let claims = other.claim_due(NOW, 10, u64::MAX).await.unwrap();
    other.record(claims[0].id, &[("a@x.fr".into(), deferred())], NOW + 1).await.unwrap();
    other.hold(id, "check", NOW + 2).await.unwrap();
    assert!(!woken(&mut due).await, "a claim, a record and a hold do not wake");
    other.release(id, NOW + 3).await.unwrap();
    assert!(woken(&mut due).await, "a release wakes");
    let claims = other.claim_due(NOW + 3, 10, u64::MAX).await.unwrap();
    other.record(claims[0].id, &[("a@x.fr".into(), deferred())], NOW + 4).await.unwrap();
    assert!(!woken(&mut due).await);
    other.retry_now(id, NOW + 5).await.unwrap();
    assert!(woken(&mut due).await, "a retry wakes");
    // Several changes before the worker looks: one wake-up, none lost.
    other.enqueue(new(&["b@x.fr"]), NOW + 6).await.unwrap();
    other.enqueue(new(&["c@x.fr"]), NOW + 6).await.unwrap();
    assert!(woken(&mut due).await);
    assert!(!woken(&mut due).await);
}

#[tokio::test]
async fn listing_by_tenant_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut message = new(&["a@x.fr"]);
        message.tenant = Some(if i % 2 == 0 { "mairie" } else { "autre" }.into());
        ids.push(q.enqueue(message, NOW).await.unwrap());
    }
    let all: Vec<_> = q.list(None, None, 100).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(all, ids);
    let mairie: Vec<_> = q.list(Some("mairie"), None, 100).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(mairie, vec![ids[0], ids[2], ids[4]]);
    let page: Vec<_> = q.list(Some("mairie"), Some(ids[0]), 1).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(page, vec![ids[2]]);
    assert!(q.list(Some("mair"), None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    assert!(matches!(q.enqueue(new(&[]), NOW).await, Err(Error::NoRecipients)));
    let many: Vec<String> = (0..1001).map(|i| format!("r{i}@x.fr")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert!(matches!(q.enqueue(new(&many), NOW).await, Err(Error::TooManyRecipients { n: 1001, max: 1000 })));
    assert_eq!(q.store.staged_uploads().await.unwrap(), 0);
}

#[test]
fn retry_waits() {
    let limits = Limits::default();
    let waits: Vec<u64> = (1..=7).map(|n| limits.retry_wait_s(n)).collect();
    assert_eq!(waits, vec![300, 600, 1200, 2400, 3600, 3600, 3600]);
    let empty = Limits { retry_schedule_s: vec![], ..Limits::default() };
    assert_eq!(empty.retry_wait_s(1), 3600);
}

#[test]
fn limits_are_checked() {
    assert_eq!(Limits::default().check(), Ok(()));
    let check = |limits: Limits| limits.check().unwrap_err().to_string();
    assert_eq!(
        check(Limits { retry_schedule_s: vec![], ..Limits::default() }),
        "queue.retry_schedule_s: 0 is out of range: it must be between 1 and 100"
    );
    assert_eq!(
        check(Limits { retry_schedule_s: vec![1, 0], ..Limits::default() }),
        "queue.retry_schedule_s: a wait of 0 s is out of range: each must be between 1 and 86400"
    );
    assert!(check(Limits { retry_schedule_s: vec![86_401], ..Limits::default() }).contains("a wait of 86401 s"));
    // The short schedule of the end-to-end tests passes.
    let short = Limits { retry_schedule_s: vec![1, 2], lifetime_s: 30, delay_notice_s: 1, ..Limits::default() };
    assert_eq!(short.check(), Ok(()));
    assert_eq!(
        check(Limits { lifetime_s: 0, ..short.clone() }),
        "queue.lifetime_s: 0 is out of range: it must be between 1 and 2592000"
    );
    assert!(check(Limits { delay_notice_s: 30, ..short }).starts_with("queue.delay_notice_s: 30 is not below"));
    assert!(
        check(Limits { delay_notice_s: 5 * 86_400, ..Limits::default() })
            .starts_with("queue.delay_notice_s: 432000 is not below")
    );
}

#[tokio::test]
async fn a_brake_holds_the_accounts_mail_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let mine = q.enqueue(new(&["a@x.fr"]), NOW).await.unwrap();
    let mut other = new(&["b@x.fr"]);
    other.account = Some(8);
    let theirs = q.enqueue(other, NOW).await.unwrap();
    // Held by the operator before: the brake leaves that hold alone.
    let operator = q.enqueue(new(&["c@x.fr"]), NOW).await.unwrap();
    q.hold(operator, "operator", NOW).await.unwrap();
    assert_eq!(q.brake_of("mairie", 7).await.unwrap(), None);
    let brake = Brake {
        tenant: "mairie".into(),
        account: Some(7),
        address: Some("agent@mairie.fr".into()),
        reason: "200 messages per hour".into(),
        since: NOW,
    };
    assert_eq!(q.brake(&brake, NOW).await.unwrap(), 1);
    assert_eq!(q.brake_of("mairie", 7).await.unwrap(), Some(brake.clone()));
    assert_eq!(q.brake_of("mairie", 8).await.unwrap(), None);
    assert_eq!(q.brakes(Some("mairie")).await.unwrap(), vec![brake.clone()]);
    assert!(q.brakes(Some("autre")).await.unwrap().is_empty());
    let held = q.get(mine).await.unwrap().unwrap().held.unwrap();
    assert!(held.by_brake && held.reason == "200 messages per hour");
    let claimed: Vec<u64> = q.claim_due(NOW, 10, u64::MAX).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(claimed, vec![theirs]);
    assert_eq!(q.lift_brake("mairie", Some(7), NOW + 5).await.unwrap(), 1);
    assert!(matches!(q.lift_brake("mairie", Some(7), NOW + 5).await, Err(Error::NoBrake)));
    assert_eq!(q.brake_of("mairie", 7).await.unwrap(), None);
    let claimed: Vec<u64> = q.claim_due(NOW + 5, 10, u64::MAX).await.unwrap().iter().map(|c| c.id).collect();
    assert_eq!(claimed, vec![mine]);
    assert!(q.get(operator).await.unwrap().unwrap().held.is_some(), "the operator's hold stays");
    // A tenant-wide brake stops every account of the tenant.
    let tenant =
        Brake { tenant: "mairie".into(), account: None, address: None, reason: "tenant limit".into(), since: NOW };
    q.brake(&tenant, NOW).await.unwrap();
    assert_eq!(q.brake_of("mairie", 8).await.unwrap(), Some(tenant));
}

/// A worker that read a schedule entry just before another worker (another node) claimed
/// its message reads the claimed message, whose version its claim would expect: the
/// schedule tells it that the entry it read is gone, and it does not claim the message.
#[tokio::test]
async fn a_claim_from_an_entry_read_before_another_claim_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue(&dir).await;
    let id = q.enqueue(new(&["a@x.fr"]), NOW).await.unwrap();
    let entry = crate::keys::due(NOW, id);
    let claims = q.claim_due(NOW, 10, u64::MAX).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(q.claim(&entry, NOW + 1 + Limits::default().lease_s).await.unwrap(), None);
    let message = q.get(id).await.unwrap().unwrap();
    assert_eq!(message.leased_until, Some(claims[0].leased_until), "the first lease stands");
}

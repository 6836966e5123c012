use std::sync::Arc;

use hameau_mailbox::{Mail, Quota, Role};
use hameau_store::{Options, Store};

use super::{Classifier, Learnt, RecordOwner, record_owner};
use crate::Limits;
use crate::bayes::Totals;
use crate::trainer::{Tenants, Trainer};

const NOW: u64 = 1_795_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    classifier: Classifier,
}

async fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Options::rocksdb(dir.path())).await.unwrap();
    let classifier = Classifier::new(store.clone(), limits);
    Fixture { _dir: dir, store, classifier }
}

fn limits() -> Limits {
    Limits { bayes_min_messages: 3, ..Limits::default() }
}

/// A spam about `topic`, number `n`: the same vocabulary with a few words of its own.
fn spam(n: usize) -> Vec<u8> {
    format!(
        "From: Gagnant <promo{n}@loterie.example>\r\nSubject: Vous avez gagné {n}\r\n\r\n\
         Félicitations gagnant, cliquez vite pour recevoir votre virement gratuit, \
         offre exceptionnelle casino bonus {n} urgent argent facile numéro{n}\r\n"
    )
    .into_bytes()
}

/// A message of the commune's work, number `n`.
fn ham(n: usize) -> Vec<u8> {
    format!(
        "From: Secrétariat <secretariat@mairie.example>\r\nSubject: Conseil municipal {n}\r\n\r\n\
         Bonjour, voici le compte rendu du conseil municipal, la délibération sur la voirie \
         et le budget de la cantine scolaire {n}, dossier numéro{n}\r\n"
    )
    .into_bytes()
}

async fn seed(classifier: &Classifier, tenant: Option<&str>, n: usize) {
    for i in 0..n {
        classifier.train(tenant, &spam(i), true).await.unwrap();
        classifier.train(tenant, &ham(i), false).await.unwrap();
    }
}

#[tokio::test]
async fn learnt_spam_scores_above_learnt_ham() {
    let f = fixture(limits()).await;
    // Under bayes_min_messages of either class, no score.
    seed(&f.classifier, None, 2).await;
    assert_eq!(f.classifier.score(None, &spam(100)).await.unwrap(), None);
    seed(&f.classifier, None, 3).await;
    let totals = f.classifier.totals(None).await.unwrap();
    // The first two of each were learnt twice: the second time changed nothing.
    assert_eq!(totals, Totals { spam: 3, ham: 3 });
    let spam_score = f.classifier.score(None, &spam(100)).await.unwrap().unwrap();
    let ham_score = f.classifier.score(None, &ham(100)).await.unwrap().unwrap();
    assert!(spam_score > 0.5 && ham_score < 0.5, "spam {spam_score}, ham {ham_score}");
    let symbol = f.classifier.symbol(Some("a"), &spam(100)).await.unwrap().unwrap();
    assert!(symbol.name == "BAYES_SPAM" && symbol.score > 0.0, "{symbol:?}");
}

#[tokio::test]
async fn learning_again_is_a_no_op_and_the_other_way_takes_back_the_first() {
    let f = fixture(limits()).await;
    let message = spam(1);
    let first = f.classifier.train(Some("a"), &message, true).await.unwrap();
    assert_eq!(first.learnt, Learnt::New);
    assert!(first.tokens > 10, "{first:?}");
    let tokens_held = f.classifier.token_count(Some("a")).await.unwrap();
    assert_eq!(tokens_held, first.tokens as u64);
    let again = f.classifier.train(Some("a"), &message, true).await.unwrap();
    assert_eq!((again.learnt, again.tokens), (Learnt::AlreadyKnown, 0));
    assert_eq!(f.classifier.totals(Some("a")).await.unwrap(), Totals { spam: 1, ham: 0 });
    // An agent moves it out of Junk: the spam learning is taken back, the ham one added.
    let back = f.classifier.train(Some("a"), &message, false).await.unwrap();
    assert_eq!((back.learnt, back.tokens), (Learnt::Retrained, first.tokens));
    assert_eq!(f.classifier.totals(Some("a")).await.unwrap(), Totals { spam: 0, ham: 1 });
    assert_eq!(f.classifier.token_count(Some("a")).await.unwrap(), tokens_held);
    let keys = super::Keys::of(Some("a")).unwrap();
    for token in crate::bayes::tokens(&message, f.classifier.limits()) {
        let key = keys.token(token);
        let counter = super::counter_in(&key, f.store.get(&key).await.unwrap().as_ref()).unwrap();
        assert_eq!(super::unpack(counter), (0, 1));
    }
}

#[tokio::test]
async fn a_full_classifier_learns_no_new_tokens_but_still_counts_messages() {
    let f = fixture(Limits { bayes_tokens_per_tenant_max: 10, ..limits() }).await;
    let first = f.classifier.train(Some("a"), &spam(1), true).await.unwrap();
    assert_eq!(first.tokens, 10);
    assert!(first.tokens_dropped > 5, "{first:?}");
    assert_eq!(f.classifier.token_count(Some("a")).await.unwrap(), 10);
    // A message of other words: its known tokens learn, no new one is kept.
    let second = f.classifier.train(Some("a"), &ham(1), false).await.unwrap();
    assert_eq!(f.classifier.token_count(Some("a")).await.unwrap(), 10);
    assert!(second.tokens < 10 && second.tokens_dropped > 10, "{second:?}");
    assert_eq!(f.classifier.totals(Some("a")).await.unwrap(), Totals { spam: 1, ham: 1 });
    // Taking back a learning whose tokens were not all kept leaves no count below zero.
    f.classifier.train(Some("a"), &ham(1), true).await.unwrap();
    f.classifier.train(Some("a"), &spam(1), false).await.unwrap();
    assert_eq!(f.classifier.totals(Some("a")).await.unwrap(), Totals { spam: 1, ham: 1 });
    // Another classifier has its own room.
    assert_eq!(f.classifier.train(Some("b"), &ham(1), false).await.unwrap().tokens, 10);
}

#[tokio::test]
async fn tenants_are_isolated_and_the_shared_classifier_counts_for_all() {
    let f = fixture(limits()).await;
    assert_eq!(f.classifier.score(Some("a"), &spam(100)).await.unwrap(), None);
    seed(&f.classifier, None, 3).await;
    let probe = format!("{}\r\nmairie voirie gagnant", String::from_utf8(ham(100)).unwrap()).into_bytes();
    let before_a = f.classifier.score(Some("a"), &probe).await.unwrap().unwrap();
    let before_b = f.classifier.score(Some("b"), &probe).await.unwrap().unwrap();
    // The shared seeding alone: both tenants score alike.
    assert_eq!(before_a, before_b);
    // Tenant a calls the council's minutes spam: its score rises, b's does not move.
    for i in 0..5 {
        f.classifier.train(Some("a"), &ham(200 + i), true).await.unwrap();
    }
    let after_a = f.classifier.score(Some("a"), &probe).await.unwrap().unwrap();
    let after_b = f.classifier.score(Some("b"), &probe).await.unwrap().unwrap();
    assert!(after_a > before_a, "{before_a} -> {after_a}");
    assert_eq!(after_b, before_b);
    assert_eq!(f.classifier.score(None, &probe).await.unwrap().unwrap(), before_b);
    assert!(f.classifier.train(Some("a/b"), &probe, true).await.is_err());
    assert!(f.classifier.train(Some(""), &probe, true).await.is_err());
}

#[tokio::test]
async fn each_record_names_its_owner() {
    let f = fixture(limits()).await;
    seed(&f.classifier, None, 1).await;
    seed(&f.classifier, Some("mairie-a"), 1).await;
    let mut owners = std::collections::HashMap::new();
    for entry in f.store.scan(&hameau_store::Scan::prefix(super::PREFIX)).await.unwrap() {
        *owners.entry(record_owner(&entry.key).unwrap()).or_insert(0) += 1;
    }
    let installation = owners[&RecordOwner::Installation];
    assert!(installation > 20);
    assert_eq!(owners[&RecordOwner::Tenant("mairie-a".into())], installation);
    assert_eq!(owners.len(), 2);
    assert_eq!(record_owner(b"m/12345678/e/"), None);
    assert_eq!(record_owner(b"fb/t/no-slash"), None);
}

/// Scoring reads a key per token: the cost of a 1,000-token message, printed (run with
/// `--nocapture`), and held under a generous bound so that a regression to something
/// much slower shows.
#[tokio::test]
async fn a_thousand_token_score_is_cheap() {
    let f = fixture(limits()).await;
    let words = |prefix: &str, n: usize| (0..n).map(|i| format!("{prefix}{i}")).collect::<Vec<_>>().join(" ");
    for i in 0..3 {
        let started = std::time::Instant::now();
        f.classifier.train(Some("a"), words(&format!("s{i}w"), 1000).as_bytes(), true).await.unwrap();
        f.classifier.train(None, words(&format!("h{i}w"), 1000).as_bytes(), false).await.unwrap();
        eprintln!("two learnings of 1,000 tokens: {:?}", started.elapsed());
    }
    let probe = words("s1w", 500) + " " + &words("h1w", 500);
    let started = std::time::Instant::now();
    let n = 20;
    for _ in 0..n {
        f.classifier.score(Some("a"), probe.as_bytes()).await.unwrap().unwrap();
    }
    let each = started.elapsed() / n;
    eprintln!("one score of 1,000 tokens (2,000 point reads): {each:?}");
    assert!(each < std::time::Duration::from_millis(200), "{each:?}");
}

/// A score reads the counts from memory for `bayes_cache_s`: another process's learning
/// reaches it within that time, this classifier's own learning at once.
#[tokio::test]
async fn counts_read_lately_are_kept_for_their_time() {
    let f = fixture(Limits { bayes_cache_s: 1, ..limits() }).await;
    seed(&f.classifier, None, 3).await;
    let probe = b"Subject: tombola\r\n\r\ntombola tombola kermesse\r\n";
    let reader = Classifier::new(f.store.clone(), Limits { bayes_cache_s: 1, ..limits() });
    let uncached = Classifier::new(f.store.clone(), Limits { bayes_cache_entries: 0, ..limits() });
    let before = reader.score(None, probe).await.unwrap().unwrap();
    assert_eq!(uncached.score(None, probe).await.unwrap().unwrap(), before);
    // Another classifier (the trainer's, another node's) learns the probe's words as spam.
    for n in 0..5 {
        let spam = format!("Subject: tombola {n}\r\n\r\ntombola kermesse gagnant {n}\r\n");
        f.classifier.train(None, spam.as_bytes(), true).await.unwrap();
    }
    let learnt = uncached.score(None, probe).await.unwrap().unwrap();
    assert!(learnt > before, "{learnt} after learning, {before} before");
    // The reader still has the counts it read, for bayes_cache_s.
    assert_eq!(reader.score(None, probe).await.unwrap().unwrap(), before);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(reader.score(None, probe).await.unwrap().unwrap(), learnt);
    // Its own learning is seen at once.
    reader.train(None, b"Subject: x\r\n\r\ntombola kermesse loterie\r\n", true).await.unwrap();
    let own = reader.score(None, probe).await.unwrap().unwrap();
    assert_eq!(own, uncached.score(None, probe).await.unwrap().unwrap());
    assert!(own > learnt, "{own} after its own learning, {learnt} before");
}

/// The counts kept in memory never pass their bound: full, they are emptied and filled
/// again; none are kept when the bound is 0.
#[test]
fn the_counts_kept_are_bounded() {
    let counters = super::Counters::new(2, std::time::Duration::from_secs(60));
    counters.put((0..5u8).map(|i| (vec![i], i64::from(i))));
    assert_eq!(counters.held.lock().unwrap().0.len(), 1);
    assert_eq!(counters.get(&[vec![3], vec![4]]), [None, Some(4)]);
    let none = super::Counters::new(0, std::time::Duration::from_secs(60));
    none.put([(vec![1], 1)]);
    assert_eq!(none.get(&[vec![1]]), [None]);
}

#[derive(Debug)]
struct OneTenant;

#[async_trait::async_trait]
impl Tenants for OneTenant {
    async fn tenant_of(&self, _account: u64) -> Option<String> {
        Some("mairie-b".into())
    }
}

#[tokio::test]
async fn moving_into_junk_trains_the_tenant() {
    let f = fixture(limits()).await;
    let trainer = Trainer::start(f.classifier.clone(), Arc::new(OneTenant));
    let mail = Mail::new(f.store.clone()).with_junk_learner(trainer);
    let account = 9;
    let mailboxes = mail.ensure_account(account, NOW).await.unwrap();
    let role = |role| mailboxes.iter().find(|m| m.role == Some(role)).unwrap().id;
    let (inbox, junk) = (role(Role::Inbox), role(Role::Junk));
    // One message whose record names its tenant (as the MX stores it), one without.
    let quota = Quota { tenant: Some("mairie-a".into()), ..Quota::default() };
    let ingest = |raw: Vec<u8>, quota: Quota| hameau_mailbox::Ingest {
        raw: raw.into(),
        mailboxes: vec![inbox],
        keywords: vec![],
        received_at: NOW,
        quota,
    };
    mail.ingest(account, ingest(spam(1), quota)).await.unwrap();
    mail.ingest(account, ingest(spam(2), Quota::default())).await.unwrap();
    mail.move_messages(account, inbox, &[1, 2], junk).await.unwrap();
    let learnt = |tenant: &'static str| {
        let classifier = f.classifier.clone();
        async move {
            for _ in 0..200 {
                let totals = classifier.totals(Some(tenant)).await.unwrap();
                if totals.spam > 0 || totals.ham > 0 {
                    return totals;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("tenant {tenant} learnt nothing");
        }
    };
    assert_eq!(learnt("mairie-a").await, Totals { spam: 1, ham: 0 });
    assert_eq!(learnt("mairie-b").await, Totals { spam: 1, ham: 0 });
    // Out of Junk again: ham.
    mail.move_messages(account, junk, &[1], inbox).await.unwrap();
    for _ in 0..200 {
        if f.classifier.totals(Some("mairie-a")).await.unwrap() == (Totals { spam: 0, ham: 1 }) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the move out of Junk was not learnt");
}

/// Holds the training task on its first look-up until let go.
#[derive(Debug)]
struct Gate(tokio::sync::Semaphore);

#[async_trait::async_trait]
impl Tenants for Gate {
    async fn tenant_of(&self, _account: u64) -> Option<String> {
        self.0.acquire().await.unwrap().forget();
        Some("mairie-c".into())
    }
}

#[tokio::test]
async fn judgements_past_a_full_queue_are_dropped_not_awaited() {
    let f = fixture(Limits { bayes_learn_queue_max: 1, ..limits() }).await;
    let gate = Arc::new(Gate(tokio::sync::Semaphore::new(0)));
    let trainer = Trainer::start(f.classifier.clone(), gate.clone());
    let mut judgements = Vec::new();
    for n in 0..3 {
        let raw = spam(n);
        let blob = f.store.stage_blob_bytes(&raw).await.unwrap();
        let hash = blob.hash();
        let mut batch = hameau_store::Batch::new();
        batch.blob_acquire(blob);
        f.store.commit(batch).await.unwrap();
        judgements.push(hameau_mailbox::Judgement {
            account: 1,
            email: n as u64,
            blob: hash,
            tenant: None,
            spam: true,
        });
    }
    // The first is taken by the task (held at the gate), the second waits in the queue,
    // the third finds it full: `learn` returns at once all the same.
    use hameau_mailbox::JunkLearner;
    trainer.learn(judgements[0].clone());
    tokio::task::yield_now().await;
    let started = std::time::Instant::now();
    trainer.learn(judgements[1].clone());
    trainer.learn(judgements[2].clone());
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
    gate.0.add_permits(3);
    for _ in 0..200 {
        if f.classifier.totals(Some("mairie-c")).await.unwrap().spam == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(f.classifier.totals(Some("mairie-c")).await.unwrap(), Totals { spam: 2, ham: 0 });
}

use crate::{Action, Symbol, Thresholds, Verdict};

fn symbol(name: &'static str, score: f64) -> Symbol {
    Symbol { name, score, detail: format!("{name} found") }
}

#[test]
fn the_total_decides_the_action() {
    let thresholds = Thresholds::default();
    let check = |scores: &[f64], at_least: Action, expect: Action| {
        let symbols = scores.iter().map(|score| symbol("S", *score)).collect();
        assert_eq!(Verdict::decide(symbols, &thresholds, at_least).action, expect, "{scores:?}");
    };
    check(&[], Action::Deliver, Action::Deliver);
    check(&[3.9], Action::Deliver, Action::Deliver);
    check(&[2.0, 2.0], Action::Deliver, Action::Warn);
    check(&[8.0], Action::Deliver, Action::Junk);
    check(&[15.0], Action::Deliver, Action::Quarantine);
    check(&[20.0, 10.0], Action::Deliver, Action::Reject);
    check(&[-5.0, 4.0], Action::Deliver, Action::Deliver);
    check(&[0.0], Action::Quarantine, Action::Quarantine);
    check(&[40.0], Action::Quarantine, Action::Reject);
}

#[test]
fn the_header_lists_each_symbol() {
    let verdict = Verdict::decide(
        vec![symbol("IMPERSONATION_NAME", 6.0), symbol("FIRST_CONTACT", 0.5)],
        &Thresholds::default(),
        Action::Deliver,
    );
    assert_eq!(verdict.header_value(), "action=warn; score=6.50; IMPERSONATION_NAME(6.00), FIRST_CONTACT(0.50)");
    let empty = Verdict::decide(Vec::new(), &Thresholds::default(), Action::Deliver);
    assert_eq!(empty.header_value(), "action=deliver; score=0.00");
}

#[test]
fn thresholds_must_rise() {
    assert!(Thresholds::default().check("filter").is_ok());
    let bad = Thresholds { junk_score: 3.0, ..Thresholds::default() };
    let problem = bad.check("filter").unwrap_err();
    assert_eq!(problem.key, "filter.junk_score");
    let nan = Thresholds { warn_score: f64::NAN, ..Thresholds::default() };
    assert_eq!(nan.check("filter").unwrap_err().key, "filter.warn_score");
}

async fn store() -> (tempfile::TempDir, hameau_store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(dir.path().join("store"))).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn correspondents_are_per_tenant_and_bounded() {
    let (_dir, store) = store().await;
    let options = crate::Options { contacts_max: 2, ..crate::Options::default() };
    let contacts = crate::Contacts::new(store, &options);
    assert!(!contacts.is_known("a", "jean@fournisseur.fr").await.unwrap());
    let dropped = contacts.record("a", &["Jean@Fournisseur.fr".into(), "not an address".into()], 1000).await.unwrap();
    assert_eq!(dropped, 0);
    assert!(contacts.is_known("a", "jean@fournisseur.fr").await.unwrap());
    assert!(contacts.is_known("a", "JEAN@fournisseur.fr").await.unwrap());
    // Another tenant learns nothing of it.
    assert!(!contacts.is_known("b", "jean@fournisseur.fr").await.unwrap());
    assert_eq!(*contacts.known_domains("a").await.unwrap(), vec!["fournisseur.fr".to_string()]);
    assert!(contacts.known_domains("b").await.unwrap().is_empty());
    // Recording again costs nothing and counts once; past the bound, new ones are dropped.
    let more = ["jean@fournisseur.fr".to_string(), "paul@cdg35.fr".into(), "x@y.fr".into()];
    assert_eq!(contacts.record("a", &more, 2000).await.unwrap(), 1);
    assert!(contacts.is_known("a", "paul@cdg35.fr").await.unwrap());
    assert!(!contacts.is_known("a", "x@y.fr").await.unwrap());
    assert_eq!(crate::contacts::record_owner(b"fc/a/d/cdg35.fr").as_deref(), Some("a"));
    assert_eq!(crate::contacts::record_owner(b"fc/a/n").as_deref(), Some("a"));
    assert_eq!(crate::contacts::record_owner(b"q/x"), None);
}

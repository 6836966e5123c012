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
fn the_sender_reads_names_only() {
    let mut impersonation = symbol("IMPERSONATION_NAME", 6.0);
    impersonation.detail = "display name \"Le Maire\"\r\n is maire@saint-martin.fr's".into();
    let verdict = Verdict::decide(
        vec![impersonation, symbol("BAYES_HAM", -3.0), symbol("LINK_IP_LITERAL", 3.0)],
        &Thresholds::default(),
        Action::Deliver,
    );
    assert_eq!(verdict.names(), "IMPERSONATION_NAME, LINK_IP_LITERAL");
    assert!(verdict.reason().contains("maire@saint-martin.fr"), "the log keeps the details");
}

#[test]
fn only_what_counts_against_a_message_is_a_finding() {
    let decide = |symbols: Vec<Symbol>, at_least: Action| Verdict::decide(symbols, &Thresholds::default(), at_least);
    assert!(!decide(Vec::new(), Action::Deliver).has_findings());
    assert!(!decide(vec![symbol("BAYES_HAM", -3.0)], Action::Deliver).has_findings(), "the ham's mark is no finding");
    assert!(decide(vec![symbol("FIRST_CONTACT", 0.5)], Action::Deliver).has_findings());
    assert!(decide(vec![symbol("BAYES_HAM", -3.0), symbol("LINK_IP_LITERAL", 3.0)], Action::Deliver).has_findings());
    // DMARC's p=quarantine decides Junk with nothing scored: still a finding.
    assert!(decide(Vec::new(), Action::Junk).has_findings());
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

#[tokio::test]
async fn known_senders_are_kept_in_memory_for_a_while_and_bounded() {
    let (_dir, store) = store().await;
    let options = crate::Options { contacts_cache_entries: 2, ..crate::Options::default() };
    let contacts = crate::Contacts::new(store.clone(), &options);
    let uncached =
        crate::Contacts::new(store.clone(), &crate::Options { contacts_cache_entries: 0, ..options.clone() });
    let senders = ["a@x.fr".to_string(), "b@x.fr".into(), "c@x.fr".into()];
    contacts.record("t", &senders, 1000).await.unwrap();
    assert!(!contacts.is_known("t", "new@x.fr").await.unwrap());
    assert_eq!(contacts.cached_senders(), 0, "an unknown sender is not kept: it may become known");
    assert!(contacts.is_known("t", "A@x.fr").await.unwrap());
    // The record gone from the store (another node's forget), the sender stays known from
    // memory for cache_s; a contacts without the cache reads the store.
    let mut batch = hameau_store::Batch::new();
    batch.delete(b"fc/t/a/a@x.fr");
    store.commit(batch).await.unwrap();
    assert!(contacts.is_known("t", "a@x.fr").await.unwrap());
    assert!(!uncached.is_known("t", "a@x.fr").await.unwrap());
    assert_eq!(uncached.cached_senders(), 0);
    // Bounded: the third sender empties the memory before it is kept.
    assert!(contacts.is_known("t", "b@x.fr").await.unwrap());
    assert!(contacts.is_known("t", "c@x.fr").await.unwrap());
    assert_eq!(contacts.cached_senders(), 1);
    assert!(!contacts.is_known("t", "a@x.fr").await.unwrap(), "read again from the store");
    // Past cache_s, read again.
    let expired = crate::Contacts::new(store.clone(), &crate::Options { cache_s: 0, ..options });
    assert!(expired.is_known("t", "b@x.fr").await.unwrap());
    let mut batch = hameau_store::Batch::new();
    batch.delete(b"fc/t/a/b@x.fr");
    store.commit(batch).await.unwrap();
    assert!(!expired.is_known("t", "b@x.fr").await.unwrap());
}

mod quarantine {
    use hameau_directory::{AccountRole, Directory, NewAccount, NewDomain, NewTenant, Principal};
    use hameau_mailbox::{Mail, Role};
    use hameau_store::{BlobHash, Store};

    use crate::quarantine::{Delivery, Hold, ListQuery, RecordOwner, record_blob_refs, record_owner};
    use crate::{Error, Options, Quarantine, Settings, TenantSettings, Thresholds, WarningStyle};

    const NOW: u64 = 1_795_000_000;
    const EXE: &[u8] = b"From: Fournisseur <compta@fournisseur.test>\r\nSubject: Votre facture\r\nX-Hameau-Filter: action=quarantine; score=10.00; ATTACHMENT_DANGEROUS(10.00)\r\n\r\nVeuillez  ouvrir\r\nla facture.\r\n";

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        directory: Directory,
        mail: Mail,
        quarantine: Quarantine,
        ids: std::collections::HashMap<&'static str, u64>,
    }

    fn admin(tenant: &str) -> Principal {
        Principal::TenantAdmin { tenant: tenant.into() }
    }

    /// Tenants `a` (user@a.fr, other@a.fr) and `b` (user@b.fr).
    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&hameau_store::Options::rocksdb(dir.path())).await.unwrap();
        let directory = Directory::new(store.clone(), hameau_directory::Options::default());
        let mut ids = std::collections::HashMap::new();
        for tenant in ["a", "b"] {
            let new = NewTenant {
                id: tenant.into(),
                name: tenant.into(),
                siren: None,
                insee: None,
                quota_bytes: None,
                accounts_max: None,
            };
            directory.create_tenant(&Principal::Operator, new, NOW).await.unwrap();
            let domain = NewDomain { name: format!("{tenant}.fr"), tenant: tenant.into() };
            directory.create_domain(&Principal::Operator, domain, NOW).await.unwrap();
        }
        for address in ["user@a.fr", "other@a.fr", "user@b.fr"] {
            let account = NewAccount {
                address: address.into(),
                display_name: String::new(),
                password: None,
                quota_bytes: None,
                enabled: true,
                role: AccountRole::User,
            };
            let account = directory.create_account(&Principal::Operator, account, NOW).await.unwrap();
            ids.insert(address, account.id);
        }
        let mail = Mail::new(store.clone());
        let quarantine = Quarantine::new(store.clone(), &Options::default());
        Fixture { _dir: dir, store, directory, mail, quarantine, ids }
    }

    impl Fixture {
        async fn hold(&self, tenant: &str, to: &[&'static str], at: u64) -> String {
            let recipients: Vec<(String, u64)> =
                to.iter().map(|address| (address.to_string(), self.ids[address])).collect();
            let hold = Hold {
                tenant,
                mail_from: "compta@fournisseur.test",
                recipients: &recipients,
                received_at: at,
                verdict: "action=quarantine; score=10.00; ATTACHMENT_DANGEROUS(10.00)",
                reason: "facture.exe is an executable",
            };
            self.quarantine.hold(hold, bytes::Bytes::from_static(EXE)).await.unwrap()
        }

        async fn listed(&self, principal: &Principal, query: ListQuery<'_>) -> Vec<String> {
            let query = ListQuery { limit: query.limit.max(10), ..query };
            self.quarantine.list(principal, query).await.unwrap().items.into_iter().map(|(id, _)| id).collect()
        }

        async fn inbox(&self, address: &str) -> usize {
            let account = self.ids[address];
            let Some(inbox) = self.mail.mailbox_by_role(account, Role::Inbox).await.unwrap() else { return 0 };
            self.mail.uids(account, inbox.id).await.unwrap().len()
        }

        fn delivery(&self) -> Delivery<'_> {
            Delivery { mail: &self.mail, directory: &self.directory }
        }
    }

    #[tokio::test]
    async fn each_admin_sees_its_own_tenants_held_mail_only() {
        let f = fixture().await;
        let a1 = f.hold("a", &["user@a.fr"], NOW).await;
        let b1 = f.hold("b", &["user@b.fr"], NOW).await;
        let a2 = f.hold("a", &["other@a.fr"], NOW + 1).await;
        let all = ListQuery::default();
        assert_eq!(f.listed(&Principal::Operator, all).await, [a2.as_str(), &b1, &a1]);
        assert_eq!(f.listed(&admin("a"), all).await, [a2.as_str(), &a1]);
        assert_eq!(f.listed(&admin("b"), all).await, [b1.as_str()]);
        assert!(f.listed(&admin("b"), ListQuery { tenant: Some("a"), ..all }).await.is_empty());
        assert_eq!(f.listed(&Principal::Operator, ListQuery { tenant: Some("b"), ..all }).await, [b1.as_str()]);
        let to_user = ListQuery { recipient: Some("USER@a.fr"), ..all };
        assert_eq!(f.listed(&admin("a"), to_user).await, [a1.as_str()]);
        // Paged: one per page, newest first, then the cursor.
        let page = f.quarantine.list(&admin("a"), ListQuery { limit: 1, ..all }).await.unwrap();
        assert_eq!((page.items.len(), page.next.as_deref()), (1, Some(a2.as_str())));
        let rest = ListQuery { limit: 1, before: page.next.as_deref(), ..all };
        let page = f.quarantine.list(&admin("a"), rest).await.unwrap();
        assert_eq!((page.items[0].0.as_str(), page.next), (a1.as_str(), None));
        // A user has no access; another tenant's message reads as an absent one.
        let user = Principal::User { account: f.ids["user@a.fr"], tenant: "a".into() };
        assert!(matches!(f.quarantine.list(&user, all).await, Err(Error::Directory(_))));
        assert!(matches!(f.quarantine.show(&user, &a1).await, Err(Error::Directory(_))));
        assert!(matches!(f.quarantine.show(&admin("b"), &a1).await, Err(Error::NotFound(id)) if id == a1));
        assert!(matches!(f.quarantine.show(&admin("b"), "999").await, Err(Error::NotFound(_))));
        assert!(matches!(f.quarantine.raw(&admin("b"), &a1).await, Err(Error::NotFound(_))));
        assert!(matches!(f.quarantine.delete(&admin("b"), &a1, NOW).await, Err(Error::NotFound(_))));
        let refused = f.quarantine.release(&admin("b"), &a1, f.delivery(), NOW).await;
        assert!(matches!(refused, Err(Error::NotFound(_))));
        assert_eq!(f.inbox("user@a.fr").await, 0);
        // What the admin reads.
        let shown = f.quarantine.show(&admin("a"), &a1).await.unwrap();
        assert_eq!(shown.held.from, "Fournisseur <compta@fournisseur.test>");
        assert_eq!(shown.held.subject, "Votre facture");
        assert_eq!(shown.held.expires_at, NOW + 30 * 86_400);
        assert!(shown.headers.starts_with("From: Fournisseur") && shown.headers.ends_with("(10.00)\r\n"));
        assert_eq!(shown.preview, "Veuillez ouvrir la facture.");
        assert_eq!(f.quarantine.raw(&admin("a"), &a1).await.unwrap().1, EXE);
    }

    #[tokio::test]
    async fn a_release_delivers_once_with_the_original_headers() {
        let f = fixture().await;
        let id = f.hold("a", &["user@a.fr", "other@a.fr"], NOW).await;
        let (first, second) = tokio::join!(
            f.quarantine.release(&Principal::Operator, &id, f.delivery(), NOW + 5),
            f.quarantine.release(&Principal::Operator, &id, f.delivery(), NOW + 5),
        );
        let (released, refused) = match (first, second) {
            (Ok(released), Err(e)) | (Err(e), Ok(released)) => (released, e),
            other => panic!("one release must win: {other:?}"),
        };
        assert!(matches!(refused, Error::Releasing(_) | Error::NotFound(_)), "{refused:?}");
        assert_eq!(released.delivered, ["user@a.fr", "other@a.fr"]);
        assert!(released.skipped.is_empty());
        assert_eq!((f.inbox("user@a.fr").await, f.inbox("other@a.fr").await), (1, 1));
        let again = f.quarantine.release(&Principal::Operator, &id, f.delivery(), NOW + 6).await;
        assert!(matches!(again, Err(Error::NotFound(_))));
        assert_eq!(f.inbox("user@a.fr").await, 1);
        assert!(f.listed(&Principal::Operator, ListQuery::default()).await.is_empty());
        // The copies in the mailboxes hold the blob now; it is the message as held.
        let account = f.ids["user@a.fr"];
        let inbox = f.mail.mailbox_by_role(account, Role::Inbox).await.unwrap().unwrap();
        let email = f.mail.uids(account, inbox.id).await.unwrap()[0].email;
        assert_eq!(f.mail.raw(account, email).await.unwrap(), EXE);
    }

    #[tokio::test]
    async fn a_release_skips_an_account_deleted_since() {
        let f = fixture().await;
        let id = f.hold("a", &["user@a.fr", "other@a.fr"], NOW).await;
        f.directory.delete_account(&Principal::Operator, "other@a.fr").await.unwrap();
        let released = f.quarantine.release(&admin("a"), &id, f.delivery(), NOW).await.unwrap();
        assert_eq!((released.delivered, released.skipped), (vec!["user@a.fr".into()], vec!["other@a.fr".into()]));
        assert_eq!(f.inbox("user@a.fr").await, 1);
    }

    #[tokio::test]
    async fn a_release_refused_by_a_full_mailbox_can_be_tried_again() {
        let f = fixture().await;
        let id = f.hold("a", &["user@a.fr"], NOW).await;
        // The quota is read at release time: set after the message was held.
        let update = |quota_bytes| hameau_directory::AccountUpdate {
            display_name: None,
            password: None,
            quota_bytes: Some(quota_bytes),
            enabled: None,
            role: None,
            may_send_as: None,
        };
        f.directory.update_account(&Principal::Operator, "user@a.fr", update(Some(10))).await.unwrap();
        let full = f.quarantine.release(&admin("a"), &id, f.delivery(), NOW).await;
        assert!(matches!(full, Err(Error::Mail(hameau_mailbox::Error::OverQuota { .. }))), "{full:?}");
        assert_eq!(f.inbox("user@a.fr").await, 0);
        assert_eq!(f.quarantine.show(&admin("a"), &id).await.unwrap().held.releasing_since, None);
        f.directory.update_account(&Principal::Operator, "user@a.fr", update(None)).await.unwrap();
        f.quarantine.release(&admin("a"), &id, f.delivery(), NOW + 1).await.unwrap();
        assert_eq!(f.inbox("user@a.fr").await, 1);
    }

    #[tokio::test]
    async fn held_mail_expires_and_its_blob_goes() {
        let f = fixture().await;
        let id = f.hold("a", &["user@a.fr"], NOW).await;
        let kept = f.hold("a", &["user@a.fr"], NOW + 100).await;
        let expires_at = NOW + Options::default().quarantine_expiry_s;
        assert_eq!(f.quarantine.expire(expires_at - 1).await.unwrap(), 0);
        assert_eq!(f.quarantine.expire(expires_at).await.unwrap(), 1);
        assert!(matches!(f.quarantine.show(&Principal::Operator, &id).await, Err(Error::NotFound(_))));
        assert_eq!(f.listed(&Principal::Operator, ListQuery::default()).await, [kept.as_str()]);
        let blob = BlobHash::of(EXE);
        assert!(f.store.blob_size(&blob).await.unwrap().is_some(), "the other held copy keeps it");
        f.quarantine.delete(&admin("a"), &kept, NOW).await.unwrap();
        assert_eq!(f.store.blob_size(&blob).await.unwrap(), None);
        assert_eq!(f.quarantine.expire(u64::MAX).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_tenants_quarantine_holds_at_most_its_bytes() {
        let mut f = fixture().await;
        // Room for two held messages of tenant a, not three.
        let max = 2 * EXE.len() as u64 + EXE.len() as u64 / 2;
        f.quarantine =
            Quarantine::new(f.store.clone(), &Options { quarantine_tenant_bytes_max: max, ..Options::default() });
        let first = f.hold("a", &["user@a.fr"], NOW).await;
        f.hold("a", &["other@a.fr"], NOW).await;
        let recipients = [("user@a.fr".to_string(), f.ids["user@a.fr"])];
        let hold = Hold {
            tenant: "a",
            mail_from: "compta@fournisseur.test",
            recipients: &recipients,
            received_at: NOW,
            verdict: "action=quarantine",
            reason: "test",
        };
        let full = f.quarantine.hold(hold, bytes::Bytes::from_static(EXE)).await;
        assert!(
            matches!(&full, Err(Error::QuarantineFull { tenant, max: m }) if tenant == "a" && *m == max),
            "{full:?}"
        );
        assert_eq!(
            f.listed(&Principal::Operator, ListQuery::default()).await.len(),
            2,
            "nothing of the refused hold is kept"
        );
        // Another tenant's quarantine is its own.
        f.hold("b", &["user@b.fr"], NOW).await;
        // Room again once one is deleted (or released, or expired: the same removal).
        f.quarantine.delete(&admin("a"), &first, NOW).await.unwrap();
        f.quarantine.hold(hold, bytes::Bytes::from_static(EXE)).await.unwrap();
        let held = f.store.counter(b"fq/b/a").await.unwrap();
        assert_eq!(held, 2 * EXE.len() as i64);
    }

    #[tokio::test]
    async fn a_deleted_tenant_is_forgotten_and_no_other() {
        let f = fixture().await;
        let settings = Settings::new(f.store.clone(), &Options::default());
        let strict = Thresholds { warn_score: 2.0, junk_score: 5.0, quarantine_score: 10.0, reject_score: 20.0 };
        for tenant in ["a", "b"] {
            f.hold(tenant, &[if tenant == "a" { "user@a.fr" } else { "user@b.fr" }], NOW).await;
            let own = TenantSettings { thresholds: Some(strict), warning: None };
            settings.set(&admin(tenant), &f.directory, tenant, own).await.unwrap();
            let classifier = crate::learning::Classifier::new(f.store.clone(), crate::Limits::default());
            classifier.train(Some(tenant), b"Subject: gagnez\r\n\r\nprix gratuit cliquez\r\n", true).await.unwrap();
            let contacts = crate::Contacts::new(f.store.clone(), &Options::default());
            contacts.record(tenant, &["maire@voisin.fr".to_string()], NOW).await.unwrap();
        }
        let count = |prefix: String| {
            let store = f.store.clone();
            async move { store.scan(&hameau_store::Scan::prefix(prefix.as_bytes())).await.unwrap().len() }
        };
        let kept = |tenant: &str| {
            [
                format!("fs/{tenant}"),
                format!("fq/t/{tenant}/"),
                format!("fq/b/{tenant}"),
                format!("fb/t/{tenant}/"),
                format!("fc/{tenant}/"),
            ]
        };
        let forgotten = crate::forget_tenant(&f.store, &f.quarantine, &settings, "a").await.unwrap();
        assert_eq!(forgotten.held, 1);
        assert!(forgotten.records > 3, "{forgotten:?}");
        for prefix in kept("a") {
            assert_eq!(count(prefix.clone()).await, 0, "{prefix}");
        }
        assert_eq!(f.listed(&Principal::Operator, ListQuery::default()).await.len(), 1, "b's held mail stays");
        assert_eq!(settings.effective("a").await.unwrap().0, Thresholds::default(), "no cached settings either");
        for prefix in kept("b") {
            assert!(count(prefix.clone()).await > 0, "{prefix}");
        }
        // Again: nothing left, nothing done; an id that is no tenant's is refused quietly.
        let again = crate::forget_tenant(&f.store, &f.quarantine, &settings, "a").await.unwrap();
        assert_eq!(again, crate::Forgotten::default());
        let slash = crate::forget_tenant(&f.store, &f.quarantine, &settings, "").await.unwrap();
        assert_eq!(slash, crate::Forgotten::default());
        assert!(count("fq/t/b/".into()).await > 0);
    }

    #[tokio::test]
    async fn every_record_has_an_owner() {
        let f = fixture().await;
        f.hold("a", &["user@a.fr"], NOW).await;
        let snapshot = f.store.scan(&hameau_store::Scan::prefix(b"fq/")).await.unwrap();
        let owners: Vec<RecordOwner> =
            snapshot.iter().map(|entry| record_owner(&entry.key, &entry.value).unwrap()).collect();
        assert_eq!(owners.len(), 5, "{owners:?}");
        assert_eq!(owners.iter().filter(|owner| **owner == RecordOwner::Tenant("a".into())).count(), 3);
        assert!(owners.contains(&RecordOwner::Installation));
        assert!(owners.iter().any(|owner| matches!(owner, RecordOwner::Via(key) if key.starts_with(b"fq/m/"))));
        let refs: Vec<BlobHash> =
            snapshot.iter().flat_map(|entry| record_blob_refs(&entry.key, &entry.value)).collect();
        assert_eq!(refs, [BlobHash::of(EXE)]);
        assert_eq!(record_owner(b"q/m/1", b""), None);
        assert_eq!(crate::settings::record_owner(b"fs/a").as_deref(), Some("a"));
        assert_eq!(crate::settings::record_owner(b"fq/seq"), None);
    }

    #[tokio::test]
    async fn a_tenants_settings_override_the_defaults_until_reset() {
        let f = fixture().await;
        let settings = Settings::new(f.store.clone(), &Options::default());
        let defaults = (Thresholds::default(), WarningStyle::default());
        assert_eq!(settings.effective("a").await.unwrap(), defaults);
        let strict = Thresholds { warn_score: 2.0, junk_score: 5.0, quarantine_score: 10.0, reject_score: 20.0 };
        let own = TenantSettings { thresholds: Some(strict), warning: None };
        settings.set(&admin("a"), &f.directory, "a", own.clone()).await.unwrap();
        assert_eq!(settings.effective("a").await.unwrap(), (strict, WarningStyle::default()));
        assert_eq!(settings.effective("b").await.unwrap(), defaults);
        assert_eq!(settings.get(&Principal::Operator, &f.directory, "a").await.unwrap(), own);
        // Another tenant's settings read as an absent tenant's; a user has no access.
        let other = settings.get(&admin("b"), &f.directory, "a").await;
        assert!(matches!(other, Err(Error::Directory(hameau_directory::Error::NotFound { .. }))), "{other:?}");
        let user = Principal::User { account: f.ids["user@a.fr"], tenant: "a".into() };
        let refused = settings.get(&user, &f.directory, "a").await;
        assert!(matches!(refused, Err(Error::Directory(hameau_directory::Error::Forbidden(_)))), "{refused:?}");
        let absent = settings.get(&Principal::Operator, &f.directory, "zz").await;
        assert!(matches!(absent, Err(Error::Directory(hameau_directory::Error::NotFound { .. }))));
        // Checked on set.
        let falling = Thresholds { junk_score: 1.0, ..strict };
        let bad = TenantSettings { thresholds: Some(falling), warning: None };
        let Err(Error::Invalid(problem)) = settings.set(&admin("a"), &f.directory, "a", bad).await else { panic!() };
        assert_eq!(problem.key, "thresholds.junk_score");
        let tag = WarningStyle { subject_tag: "[SUSPECT]\r\nBcc: x".into(), ..WarningStyle::default() };
        let bad = TenantSettings { thresholds: None, warning: Some(tag) };
        let Err(Error::Invalid(problem)) = settings.set(&admin("a"), &f.directory, "a", bad).await else { panic!() };
        assert_eq!(problem.key, "warning.subject_tag");
        assert_eq!(settings.effective("a").await.unwrap().0, strict);
        // Reset: the defaults again, and no record left.
        settings.reset(&admin("a"), &f.directory, "a").await.unwrap();
        assert_eq!(settings.effective("a").await.unwrap(), defaults);
        assert!(f.store.scan(&hameau_store::Scan::prefix(b"fs/")).await.unwrap().is_empty());
    }
}

/// Schemathesis found `{"thresholds": []}` accepted as every default (ST201): a part must be
/// an object, `null` or absent.
#[test]
fn tenant_settings_parts_are_objects() {
    let parse = |json: &str| serde_json::from_str::<crate::TenantSettings>(json);
    assert!(parse(r#"{"warning": {}, "thresholds": []}"#).is_err());
    assert!(parse(r#"{"thresholds": [4.0, 8.0, 15.0, 30.0]}"#).is_err());
    assert!(parse(r#"{"warning": "yes"}"#).is_err());
    assert_eq!(parse(r#"{"thresholds": null}"#).unwrap(), crate::TenantSettings::default());
    assert_eq!(parse("{}").unwrap(), crate::TenantSettings::default());
    let set = parse(r#"{"thresholds": {"warn_score": 5.0}, "warning": {"english": true}}"#).unwrap();
    assert_eq!(set.thresholds.unwrap().warn_score, 5.0);
    assert!(set.warning.unwrap().english);
    assert!(parse(r#"{"thresholds": {"warn": 5.0}}"#).is_err(), "unknown keys are refused");
}

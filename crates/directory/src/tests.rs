use hameau_store::{Options as StoreOptions, Store};

use crate::model::{check_insee, check_siren, check_tenant_id, normalize_address, normalize_domain};
use crate::{
    AccountRole, AccountUpdate, AliasUpdate, Directory, Error, KeyScope, NewAccount, NewAlias, NewApiKey,
    NewAppPassword, NewDomain, NewTenant, Options, Principal, TenantUpdate,
};

const NOW: u64 = 1_795_000_000; // 2026-11-18

fn check_domain(input: &str, expect: &str) {
    let got = match normalize_domain("name", input) {
        Ok(ascii) => ascii,
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expect, "{input:?}");
}

#[test]
fn domains_normalise() {
    check_domain("Mairie-Exemple.FR", "mairie-exemple.fr");
    check_domain("saint-étienne.fr", "xn--saint-tienne-geb.fr");
    check_domain("commune.fr.", "commune.fr");
    check_domain(
        "fr",
        "error: name: \"fr\" is not a valid domain name: it needs at least two labels, as in commune.fr",
    );
    check_domain("", "error: name: \"\" is not a valid domain name: it is empty");
    check_domain("a..fr", "error: name: \"a..fr\" is not a valid domain name: not a valid internationalised name");
    check_domain("-a.fr", "error: name: \"-a.fr\" is not a valid domain name: not a valid internationalised name");
    check_domain("a_b.fr", "error: name: \"a_b.fr\" is not a valid domain name: not a valid internationalised name");
    check_domain(
        "192.168.1.1",
        "error: name: \"192.168.1.1\" is not a valid domain name: an IP address is not a domain",
    );
    check_domain(
        &format!("{}.fr", "a".repeat(64)),
        &format!(
            "error: name: \"{}.fr\" is not a valid domain name: not a valid internationalised name",
            "a".repeat(64)
        ),
    );
}

fn check_address(input: &str, expect: &str) {
    let got = match normalize_address("address", input) {
        Ok((address, _)) => address,
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(got, expect, "{input:?}");
}

#[test]
fn addresses_normalise() {
    check_address("Jean.Dupont@Mairie.FR", "jean.dupont@mairie.fr");
    check_address("accueil@saint-étienne.fr", "accueil@xn--saint-tienne-geb.fr");
    check_address("élise@mairie.fr", "élise@mairie.fr");
    check_address("a+tag@mairie.fr", "a+tag@mairie.fr");
    check_address("nobody", "error: address: \"nobody\" is not a valid address: it has no '@'");
    check_address(
        "@mairie.fr",
        "error: address: \"@mairie.fr\" is not a valid address: the part before '@' must be 1 to 64 bytes",
    );
    check_address(
        ".a@mairie.fr",
        "error: address: \".a@mairie.fr\" is not a valid address: the part before '@' may hold letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots",
    );
    check_address(
        "a b@mairie.fr",
        "error: address: \"a b@mairie.fr\" is not a valid address: the part before '@' may hold letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots",
    );
    check_address(
        "a\"b@mairie.fr",
        "error: address: \"a\\\"b@mairie.fr\" is not a valid address: the part before '@' may hold letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots",
    );
    check_address(
        "a@b@mairie.fr",
        "error: address: \"a@b@mairie.fr\" is not a valid address: the part before '@' may hold letters, digits, !#$%&'*+-/=?^_`{|}~ and single inner dots",
    );
    check_address(
        &format!("{}@mairie.fr", "a".repeat(65)),
        &format!(
            "error: address: \"{}@mairie.fr\" is not a valid address: the part before '@' must be 1 to 64 bytes",
            "a".repeat(65)
        ),
    );
}

#[test]
fn identifiers() {
    assert!(check_tenant_id("saint-martin-38").is_ok());
    assert!(check_tenant_id("Saint").is_err());
    assert!(check_tenant_id("-a").is_err());
    assert!(check_tenant_id("").is_err());
    assert!(check_tenant_id(&"a".repeat(64)).is_err());
    assert!(check_siren("213801855").is_ok(), "a valid SIREN");
    assert!(check_siren("213801856").is_err(), "a wrong check digit");
    assert!(check_siren("12345").is_err());
    assert!(check_insee("38185").is_ok());
    assert!(check_insee("2A004").is_ok());
    assert!(check_insee("2C004").is_err());
    assert!(check_insee("3818").is_err());
}

/// Records kept outside the directory (the outbound queue): what each role administers.
#[test]
fn administered_tenants() {
    let check = |principal: Principal, tenant: Option<&str>, expect: &str| {
        let got = match principal.administers(tenant) {
            Ok(yes) => yes.to_string(),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "{principal:?} {tenant:?}");
    };
    check(Principal::Operator, Some("a"), "true");
    check(Principal::Operator, None, "true");
    check(admin("a"), Some("a"), "true");
    check(admin("a"), Some("b"), "false");
    check(admin("a"), None, "false");
    let user = Principal::User { account: 1, tenant: "a".into() };
    check(user.clone(), Some("a"), "error: only an administrator may do this");
    assert!(matches!(user.administered_tenant(), Err(Error::Forbidden(_))));
    assert_eq!(admin("a").administered_tenant().unwrap(), Some("a"));
    assert_eq!(Principal::Operator.administered_tenant().unwrap(), None);
}

#[test]
fn selectors_carry_the_month() {
    assert_eq!(crate::dkim::year_month_for_tests(0), "197001");
    assert_eq!(crate::dkim::year_month_for_tests(NOW), "202611");
    assert_eq!(crate::dkim::year_month_for_tests(951_782_400), "200002"); // 2000-02-29
    assert_eq!(crate::dkim::year_month_for_tests(951_868_800), "200003");
}

struct Fixture {
    _dir: tempfile::TempDir,
    directory: Directory,
}

/// A directory with two tenants, `a` (domain a.fr) and `b` (domain b.fr), each with one
/// admin-less user account `user@a.fr` / `user@b.fr` (password "correct horse battery").
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
    let directory = Directory::new(store, Options::default());
    for tenant in ["a", "b"] {
        let new = NewTenant {
            id: tenant.into(),
            name: format!("Commune {tenant}"),
            siren: None,
            insee: None,
            quota_bytes: None,
            accounts_max: None,
        };
        directory.create_tenant(&Principal::Operator, new, NOW).await.unwrap();
        let domain = NewDomain { name: format!("{tenant}.fr"), tenant: tenant.into() };
        directory.create_domain(&Principal::Operator, domain, NOW).await.unwrap();
        directory.create_account(&Principal::Operator, new_account(&format!("user@{tenant}.fr")), NOW).await.unwrap();
    }
    Fixture { _dir: dir, directory }
}

fn new_account(address: &str) -> NewAccount {
    NewAccount {
        address: address.into(),
        display_name: "Agent".into(),
        password: Some("correct horse battery".into()),
        quota_bytes: None,
        enabled: true,
        role: AccountRole::User,
    }
}

fn admin(tenant: &str) -> Principal {
    Principal::TenantAdmin { tenant: tenant.into() }
}

#[tokio::test]
async fn domains_get_dkim_keys() {
    let f = fixture().await;
    let domain = f.directory.get_domain(&Principal::Operator, "A.FR").await.unwrap();
    assert_eq!(domain.name, "a.fr");
    let selectors: Vec<_> = domain.dkim.iter().map(|key| (key.selector.as_str(), key.algorithm.as_str())).collect();
    assert_eq!(selectors, vec![("h202611e", "ed25519"), ("h202611r", "rsa")]);
    // Ed25519 public keys are 32 bytes; RSA-2048 SPKI is 294.
    use base64::Engine;
    let decode = |key: &str| base64::engine::general_purpose::STANDARD.decode(key).unwrap().len();
    assert_eq!(decode(&domain.dkim[0].public_key), 32);
    assert_eq!(decode(&domain.dkim[1].public_key), 294);
    let private = f.directory.dkim_private_keys("a.fr").await.unwrap();
    assert_eq!(private.len(), 2);
    // The private keys load as mail-auth signing keys.
    let der = base64::engine::general_purpose::STANDARD.decode(&private[0].private_der).unwrap();
    mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(&der).unwrap();
    // A domain is unique across tenants.
    let again = NewDomain { name: "a.fr".into(), tenant: "b".into() };
    let err = f.directory.create_domain(&Principal::Operator, again, NOW).await.unwrap_err();
    assert!(matches!(err, Error::Exists { what: "domain", .. }), "{err}");
}

#[tokio::test]
async fn tenant_admins_see_only_their_tenant() {
    let f = fixture().await;
    let d = &f.directory;
    // Reading: own tenant yes, the other one is "not found" (never "forbidden").
    assert!(d.get_tenant(&admin("a"), "a").await.is_ok());
    assert!(matches!(d.get_tenant(&admin("a"), "b").await, Err(Error::NotFound { .. })));
    assert!(matches!(d.get_tenant(&admin("a"), "zzz").await, Err(Error::NotFound { .. })));
    assert!(matches!(d.get_domain(&admin("a"), "b.fr").await, Err(Error::NotFound { .. })));
    assert!(matches!(d.get_account(&admin("a"), "user@b.fr").await, Err(Error::NotFound { .. })));
    let tenants = d.list_tenants(&admin("a"), None, None).await.unwrap();
    assert_eq!(tenants.items.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), vec!["a"]);
    let domains = d.list_domains(&admin("a"), None, None, None).await.unwrap();
    assert_eq!(domains.items.len(), 1);
    assert!(matches!(d.list_accounts(&admin("a"), Some("b"), None, None).await, Err(Error::NotFound { .. })));
    // Writing in another tenant: the domain "is not a domain of this tenant", like a
    // domain that does not exist at all.
    let err = d.create_account(&admin("a"), new_account("x@b.fr"), NOW).await.unwrap_err();
    let missing = d.create_account(&admin("a"), new_account("x@nowhere.fr"), NOW).await.unwrap_err();
    assert_eq!(err.to_string().replace("b.fr", "D"), missing.to_string().replace("nowhere.fr", "D"));
    assert!(matches!(d.delete_account(&admin("a"), "user@b.fr").await, Err(Error::NotFound { .. })));
    let update = AccountUpdate { enabled: Some(false), ..AccountUpdate::default() };
    assert!(matches!(d.update_account(&admin("a"), "user@b.fr", update).await, Err(Error::NotFound { .. })));
    // Operator-only actions are forbidden in one's own tenant.
    let new = NewDomain { name: "c.fr".into(), tenant: "a".into() };
    assert!(matches!(d.create_domain(&admin("a"), new, NOW).await, Err(Error::Forbidden(_))));
    assert!(matches!(d.update_tenant(&admin("a"), "a", TenantUpdate::default()).await, Err(Error::Forbidden(_))));
    assert!(matches!(d.update_tenant(&admin("a"), "b", TenantUpdate::default()).await, Err(Error::NotFound { .. })));
    // In its own tenant, an admin manages accounts.
    d.create_account(&admin("a"), new_account("agent@a.fr"), NOW).await.unwrap();
    let page = d.list_accounts(&admin("a"), None, None, None).await.unwrap();
    assert_eq!(page.items.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(), vec!["agent@a.fr", "user@a.fr"]);
}

#[tokio::test]
async fn users_see_only_themselves() {
    let f = fixture().await;
    let d = &f.directory;
    let user = d.authenticate_password("user@a.fr", "correct horse battery", NOW).await.unwrap();
    let me = Principal::User { account: user.id, tenant: "a".into() };
    d.create_account(&Principal::Operator, new_account("other@a.fr"), NOW).await.unwrap();
    assert!(d.get_account(&me, "user@a.fr").await.is_ok());
    assert!(matches!(d.get_account(&me, "other@a.fr").await, Err(Error::NotFound { .. })));
    let page = d.list_accounts(&me, None, None, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let rename = AccountUpdate { display_name: Some("Jeanne".into()), ..AccountUpdate::default() };
    assert_eq!(d.update_account(&me, "user@a.fr", rename).await.unwrap().display_name, "Jeanne");
    let promote = AccountUpdate { role: Some(AccountRole::TenantAdmin), ..AccountUpdate::default() };
    assert!(matches!(d.update_account(&me, "user@a.fr", promote).await, Err(Error::Forbidden(_))));
    assert!(matches!(d.delete_account(&me, "user@a.fr").await, Err(Error::Forbidden(_))));
    assert!(matches!(d.create_account(&me, new_account("new@a.fr"), NOW).await, Err(Error::Forbidden(_))));
}

#[tokio::test]
async fn passwords_and_the_cache() {
    let f = fixture().await;
    let d = &f.directory;
    let account = d.authenticate_password("USER@a.fr", "correct horse battery", NOW).await.unwrap();
    assert_eq!(account.address, "user@a.fr");
    assert_eq!(d.credential_cache().len(), 1);
    // A cached login still checks the password.
    assert!(matches!(d.authenticate_password("user@a.fr", "wrong", NOW).await, Err(Error::Unauthenticated)));
    assert!(d.authenticate_password("user@a.fr", "correct horse battery", NOW + 10).await.is_ok());
    // Unknown addresses and aliases fail the same way.
    assert!(matches!(d.authenticate_password("nobody@a.fr", "x", NOW).await, Err(Error::Unauthenticated)));
    assert!(matches!(d.authenticate_password("not an address", "x", NOW).await, Err(Error::Unauthenticated)));
    // A new password invalidates the old one at once, cache or not.
    let change = AccountUpdate { password: Some("a much better passphrase".into()), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", change).await.unwrap();
    assert!(matches!(
        d.authenticate_password("user@a.fr", "correct horse battery", NOW).await,
        Err(Error::Unauthenticated)
    ));
    assert!(d.authenticate_password("user@a.fr", "a much better passphrase", NOW).await.is_ok());
    // Too short a password is refused when set.
    let weak = AccountUpdate { password: Some("short".into()), ..AccountUpdate::default() };
    let err = d.update_account(&Principal::Operator, "user@a.fr", weak).await.unwrap_err();
    assert_eq!(err.to_string(), "password: must be at least 12 characters");
    // A disabled account cannot log in.
    let disable = AccountUpdate { enabled: Some(false), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", disable).await.unwrap();
    assert!(matches!(
        d.authenticate_password("user@a.fr", "a much better passphrase", NOW).await,
        Err(Error::Unauthenticated)
    ));
}

#[tokio::test]
async fn app_passwords() {
    let f = fixture().await;
    let d = &f.directory;
    let (view, secret) = d
        .create_app_password(&Principal::Operator, "user@a.fr", NewAppPassword { name: "Thunderbird".into() }, NOW)
        .await
        .unwrap();
    assert_eq!(secret.len(), 29, "24 characters in groups of 4: {secret}");
    assert!(d.authenticate_password("user@a.fr", &secret, NOW).await.is_ok());
    assert!(d.authenticate_password("user@a.fr", &secret.replace('-', "").to_uppercase(), NOW).await.is_ok());
    assert!(d.authenticate_password("user@b.fr", &secret, NOW).await.is_err());
    let listed = d.list_app_passwords(&admin("a"), "user@a.fr").await.unwrap();
    assert_eq!(listed, vec![view.clone()]);
    assert!(matches!(d.list_app_passwords(&admin("b"), "user@a.fr").await, Err(Error::NotFound { .. })));
    d.delete_app_password(&Principal::Operator, "user@a.fr", &view.id).await.unwrap();
    assert!(d.authenticate_password("user@a.fr", &secret, NOW).await.is_err());
}

#[tokio::test]
async fn api_keys() {
    let f = fixture().await;
    let d = &f.directory;
    let new = |scope| NewApiKey { name: "script".into(), scope, expires_at: None };
    let (_, operator) = d.create_api_key(&Principal::Operator, new(KeyScope::Operator), NOW).await.unwrap();
    assert_eq!(d.authenticate_api_key(&operator, NOW).await.unwrap(), Principal::Operator);
    let (key_a, token_a) =
        d.create_api_key(&Principal::Operator, new(KeyScope::TenantAdmin { tenant: "a".into() }), NOW).await.unwrap();
    assert_eq!(d.authenticate_api_key(&token_a, NOW).await.unwrap(), admin("a"));
    // A tenant admin cannot make keys for another tenant, nor operator keys.
    let other = new(KeyScope::TenantAdmin { tenant: "b".into() });
    assert!(matches!(d.create_api_key(&admin("a"), other, NOW).await, Err(Error::NotFound { .. })));
    assert!(matches!(d.create_api_key(&admin("a"), new(KeyScope::Operator), NOW).await, Err(Error::Forbidden(_))));
    let (_, user_token) =
        d.create_api_key(&admin("a"), new(KeyScope::User { account: "user@a.fr".into() }), NOW).await.unwrap();
    assert!(matches!(d.authenticate_api_key(&user_token, NOW).await.unwrap(), Principal::User { .. }));
    // Wrong secrets, revoked and expired keys are refused.
    let last = if token_a.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &token_a[..token_a.len() - 1]);
    assert!(matches!(d.authenticate_api_key(&forged, NOW).await, Err(Error::Unauthenticated)));
    assert!(matches!(d.authenticate_api_key("hmk_nonsense", NOW).await, Err(Error::Unauthenticated)));
    assert!(matches!(d.authenticate_api_key(&operator[..20], NOW).await, Err(Error::Unauthenticated)));
    assert!(matches!(d.revoke_api_key(&admin("b"), &key_a.id).await, Err(Error::NotFound { .. })));
    d.revoke_api_key(&admin("a"), &key_a.id).await.unwrap();
    assert!(matches!(d.authenticate_api_key(&token_a, NOW).await, Err(Error::Unauthenticated)));
    let expiring = NewApiKey { name: "temp".into(), scope: KeyScope::Operator, expires_at: Some(NOW + 60) };
    let (_, temp) = d.create_api_key(&Principal::Operator, expiring, NOW).await.unwrap();
    assert!(d.authenticate_api_key(&temp, NOW + 59).await.is_ok());
    assert!(matches!(d.authenticate_api_key(&temp, NOW + 60).await, Err(Error::Unauthenticated)));
    // Listing: each sees its own.
    assert_eq!(d.list_api_keys(&admin("a"), None, None).await.unwrap().items.len(), 2);
    assert_eq!(d.list_api_keys(&admin("b"), None, None).await.unwrap().items.len(), 0);
    assert_eq!(d.list_api_keys(&Principal::Operator, None, None).await.unwrap().items.len(), 4);
}

#[tokio::test]
async fn aliases_and_deletion_rules() {
    let f = fixture().await;
    let d = &f.directory;
    let alias = NewAlias { address: "mairie@a.fr".into(), targets: vec!["user@a.fr".into()] };
    let created = d.create_alias(&admin("a"), alias, NOW).await.unwrap();
    assert_eq!(created.targets, vec!["user@a.fr"]);
    // Targets must be accounts of the same tenant.
    let foreign = NewAlias { address: "x@a.fr".into(), targets: vec!["user@b.fr".into()] };
    assert!(matches!(d.create_alias(&admin("a"), foreign, NOW).await, Err(Error::Invalid { field: "targets", .. })));
    // An address is either an account or an alias.
    let clash = NewAlias { address: "user@a.fr".into(), targets: vec!["user@a.fr".into()] };
    assert!(matches!(d.create_alias(&admin("a"), clash, NOW).await, Err(Error::Exists { .. })));
    assert!(matches!(d.create_account(&admin("a"), new_account("mairie@a.fr"), NOW).await, Err(Error::Exists { .. })));
    // May send as its alias.
    let send_as = AccountUpdate { may_send_as: Some(vec!["Mairie@a.fr".into()]), ..AccountUpdate::default() };
    let account = d.update_account(&admin("a"), "user@a.fr", send_as).await.unwrap();
    assert_eq!(account.may_send_as, vec!["mairie@a.fr"]);
    // An account an alias delivers to cannot be deleted; a domain with addresses neither;
    // a tenant with domains neither.
    assert!(matches!(d.delete_account(&admin("a"), "user@a.fr").await, Err(Error::Conflict(_))));
    assert!(matches!(d.delete_domain(&Principal::Operator, "a.fr").await, Err(Error::Conflict(_))));
    assert!(matches!(d.delete_tenant(&Principal::Operator, "a").await, Err(Error::Conflict(_))));
    d.update_alias(&admin("a"), "mairie@a.fr", AliasUpdate { targets: vec!["user@a.fr".into()] }).await.unwrap();
    d.delete_alias(&admin("a"), "mairie@a.fr").await.unwrap();
    d.delete_account(&admin("a"), "user@a.fr").await.unwrap();
    d.delete_domain(&Principal::Operator, "a.fr").await.unwrap();
    d.delete_tenant(&Principal::Operator, "a").await.unwrap();
    assert!(matches!(d.get_tenant(&Principal::Operator, "a").await, Err(Error::NotFound { .. })));
    assert!(d.dkim_private_keys("a.fr").await.unwrap().is_empty());
}

#[tokio::test]
async fn accounts_max_is_enforced() {
    let f = fixture().await;
    let d = &f.directory;
    let limit = TenantUpdate { accounts_max: Some(Some(2)), ..TenantUpdate::default() };
    d.update_tenant(&Principal::Operator, "a", limit).await.unwrap();
    d.create_account(&admin("a"), new_account("second@a.fr"), NOW).await.unwrap();
    let err = d.create_account(&admin("a"), new_account("third@a.fr"), NOW).await.unwrap_err();
    assert_eq!(err.to_string(), "tenant \"a\" has reached its accounts_max of 2");
    d.delete_account(&admin("a"), "second@a.fr").await.unwrap();
    d.create_account(&admin("a"), new_account("third@a.fr"), NOW).await.unwrap();
    let absurd = TenantUpdate { accounts_max: Some(Some(2_147_483_648)), ..TenantUpdate::default() };
    let err = d.update_tenant(&Principal::Operator, "a", absurd).await.unwrap_err();
    assert_eq!(err.to_string(), "accounts_max: must be at most 1000000");
}

#[tokio::test]
async fn paging() {
    let f = fixture().await;
    let d = &f.directory;
    for i in 0..7 {
        d.create_account(&admin("b"), new_account(&format!("agent{i}@b.fr")), NOW).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = d.list_accounts(&admin("b"), None, after.as_deref(), Some(3)).await.unwrap();
        assert!(page.items.len() <= 3);
        seen.extend(page.items.into_iter().map(|a| a.address));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

#[test]
fn limiter_slows_down_then_refuses() {
    use crate::{AuthLimiter, LimiterOptions, Verdict};
    use std::time::Duration;
    let options = LimiterOptions {
        failures_before_delay: 2,
        delay_ms: 100,
        delay_ms_max: 350,
        failures_max: 5,
        lockout_s: 60,
        window_s: 30,
        entries_max: 3,
    };
    let limiter = AuthLimiter::new(options);
    let allow = |ms| Verdict::Allow { delay: Duration::from_millis(ms) };
    let mut delays = Vec::new();
    for _ in 0..4 {
        delays.push(limiter.check("1.2.3.4", NOW));
        limiter.failed("1.2.3.4", NOW);
    }
    assert_eq!(delays, vec![allow(0), allow(0), allow(100), allow(200)]);
    assert_eq!(limiter.check("1.2.3.4", NOW), allow(350));
    limiter.failed("1.2.3.4", NOW);
    assert_eq!(limiter.check("1.2.3.4", NOW), Verdict::Refuse { retry_after_s: 60 });
    assert_eq!(limiter.check("1.2.3.4", NOW + 59), Verdict::Refuse { retry_after_s: 1 });
    assert_eq!(limiter.check("1.2.3.4", NOW + 60), allow(0));
    // Others are not affected; old failures are forgotten; a success known by one key
    // alone clears nothing (it may be the attacker's own account).
    assert_eq!(limiter.check("5.6.7.8", NOW), allow(0));
    for _ in 0..3 {
        limiter.failed("5.6.7.8", NOW);
    }
    assert_eq!(limiter.check("5.6.7.8", NOW), allow(200));
    assert_eq!(limiter.check("5.6.7.8", NOW + 31), allow(0));
    // No success known by one key alone clears it (issue 10): only `login_succeeded`,
    // which knows the pair, takes failures back.
    assert_eq!(limiter.check("5.6.7.8", NOW), allow(200));
    // IPv6 clients are counted per /64.
    let a: std::net::IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: std::net::IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    assert_eq!(AuthLimiter::ip_key(a), AuthLimiter::ip_key(b));
    let mapped: std::net::IpAddr = "::ffff:1.2.3.4".parse().unwrap();
    assert_eq!(AuthLimiter::ip_key(mapped), "1.2.3.4");
    // Bounded: past entries_max, the stalest entries go.
    for i in 0..10 {
        limiter.failed(&format!("10.0.0.{i}"), NOW + i);
    }
    assert!(limiter.len() <= 3);
}

/// A success takes back the failures of its own pair (address, account) only.
#[test]
fn limiter_success_takes_back_its_own_pair_only() {
    use crate::{AuthLimiter, LimiterOptions, Verdict};
    let options = LimiterOptions { failures_before_delay: 100, failures_max: 4, ..LimiterOptions::default() };
    let limiter = AuthLimiter::new(options);
    let refused = |key: &str| matches!(limiter.check(key, NOW), Verdict::Refuse { .. });
    // An agent mistypes twice, then logs in: the town hall's address is clean again.
    limiter.login_failed("1.2.3.4", "account:1", NOW);
    limiter.login_failed("1.2.3.4", "account:1", NOW);
    limiter.login_succeeded("1.2.3.4", "account:1");
    assert!(limiter.is_empty());
    // An attacker guesses at others and logs into its own account in between: its own
    // successes take nothing back, and the address is refused at the 4th failure.
    for (i, guess) in ["account:2", "account:3", "address:x@a.fr"].iter().enumerate() {
        limiter.login_failed("6.6.6.6", guess, NOW + i as u64);
        limiter.login_succeeded("6.6.6.6", "account:9");
    }
    assert!(!refused("6.6.6.6"));
    limiter.login_failed("6.6.6.6", "account:4", NOW);
    assert!(refused("6.6.6.6"));
    // Failures of one account from many addresses stay when its owner logs in elsewhere.
    for i in 0..3 {
        limiter.login_failed(&format!("10.0.0.{i}"), "account:5", NOW);
    }
    limiter.login_succeeded("192.0.2.1", "account:5");
    limiter.login_failed("10.0.0.9", "account:5", NOW);
    assert!(refused("account:5"));
    // The stricter of the two keys decides.
    assert!(matches!(limiter.check_login("192.0.2.1", "account:5", NOW), Verdict::Refuse { .. }));
    assert!(matches!(limiter.check_login("6.6.6.6", "account:1", NOW), Verdict::Refuse { .. }));
    assert_eq!(limiter.check_login("192.0.2.1", "account:1", NOW), Verdict::Allow { delay: std::time::Duration::ZERO });
}

fn check_login_key(input: &str, expect: &str) {
    assert_eq!(crate::model::login_key_form(input), expect, "{input:?}");
}

#[test]
fn login_names_fold_for_the_limiter() {
    check_login_key("user@a.fr", "user@a.fr");
    check_login_key("USER@A.FR.", "user@a.fr");
    check_login_key("\u{ff35}ser@\u{ff41}.fr", "user@a.fr");
    check_login_key("us\u{ad}er@a\u{ad}.fr", "user@a.fr");
    check_login_key("Élise@Mairie.FR", "élise@mairie.fr");
    check_login_key("no at sign", "no at sign");
    check_login_key("a@b@c", "a@b@c");
    // Past 1,024 bytes a name is no account: its key is a fixed-size digest.
    let long = format!("{}@a.fr", "x".repeat(60_000));
    let key = crate::model::login_key_form(&long);
    assert!(key.starts_with("sha256:") && key.len() == 7 + 64, "{key}");
    assert_ne!(key, crate::model::login_key_form(&format!("y{long}")));
}

/// Logins over `Directory::login`: limited per address and per account (variants of a
/// name count as one), a panic-free refusal of any typed application password, failures
/// counted whatever the account.
#[tokio::test]
async fn logins_are_limited_per_address_and_per_account() {
    let f = fixture().await;
    let options = crate::LimiterOptions { failures_before_delay: 100, failures_max: 4, ..Default::default() };
    let d = f.directory.clone().with_limiter(std::sync::Arc::new(crate::AuthLimiter::new(options)));
    let peer = |i: u8| std::net::IpAddr::from([10, 0, 0, i]);
    // A 24-byte password with a multibyte character over byte 4: an ordinary failure.
    let typed = "abc\u{e9}defghijklmnopqrstuv";
    assert_eq!(typed.len(), 24);
    for (i, user) in ["user@a.fr", "nobody@a.fr"].iter().enumerate() {
        let err = d.login(peer(100 + i as u8), user, typed, NOW).await.unwrap_err();
        assert!(matches!(err, Error::Unauthenticated), "{err}");
    }
    // Variants of one account's name count under one key: refused at the 4th failure.
    for (i, variant) in ["USER@A.FR", "user@a.fr.", "user@\u{ff41}.fr"].iter().enumerate() {
        assert!(matches!(d.login(peer(i as u8), variant, "wrong", NOW).await, Err(Error::Unauthenticated)));
    }
    let refused = d.login(peer(50), "user@a.fr", "correct horse battery", NOW).await.unwrap_err();
    assert!(matches!(refused, Error::Refused { .. }), "{refused}");
    // Another account from another address is not affected.
    d.login(peer(51), "user@b.fr", "correct horse battery", NOW).await.unwrap();
}

/// Concurrent creations in one domain commit without conflicting with each other.
#[tokio::test]
async fn concurrent_account_creations_do_not_conflict() {
    let f = fixture().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..16 {
        let d = f.directory.clone();
        tasks.spawn(async move {
            let mut new = new_account(&format!("agent{i}@a.fr"));
            new.password = None;
            d.create_account(&admin("a"), new, NOW).await
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().unwrap();
    }
    let page = f.directory.list_accounts(&admin("a"), None, None, Some(100)).await.unwrap();
    assert_eq!(page.items.len(), 17);
    // A capped tenant checks its count in each commit, and still creates them all.
    let limit = TenantUpdate { accounts_max: Some(Some(30)), ..TenantUpdate::default() };
    f.directory.update_tenant(&Principal::Operator, "b", limit).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let d = f.directory.clone();
        tasks.spawn(async move {
            let mut new = new_account(&format!("agent{i}@b.fr"));
            new.password = None;
            d.create_account(&admin("b"), new, NOW).await
        });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().unwrap();
    }
}

/// Out of scope reads as absent, with the name as typed both ways.
#[tokio::test]
async fn another_tenants_domain_reads_as_an_absent_one() {
    let f = fixture().await;
    let other = f.directory.get_domain(&admin("a"), "B.FR").await.unwrap_err();
    let absent = f.directory.get_domain(&admin("a"), "Z.FR").await.unwrap_err();
    assert_eq!(other.to_string(), "domain \"B.FR\" does not exist");
    assert_eq!(absent.to_string(), "domain \"Z.FR\" does not exist");
}

/// A domain with addresses is not deleted, and the mark its deletion left is taken back.
#[tokio::test]
async fn deleting_a_domain_in_use_leaves_it_usable() {
    let f = fixture().await;
    let err = f.directory.delete_domain(&Principal::Operator, "a.fr").await.unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    f.directory.create_account(&admin("a"), new_account("later@a.fr"), NOW).await.unwrap();
    let domain = NewDomain { name: "empty.fr".into(), tenant: "a".into() };
    f.directory.create_domain(&Principal::Operator, domain, NOW).await.unwrap();
    f.directory.delete_domain(&Principal::Operator, "empty.fr").await.unwrap();
    let err = f.directory.create_account(&admin("a"), new_account("x@empty.fr"), NOW).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

#[tokio::test]
async fn recipients_resolve_to_accounts() {
    let f = fixture().await;
    let d = &f.directory;
    assert!(d.is_local_domain("A.FR").await.unwrap());
    assert!(d.is_local_domain("a.fr.").await.unwrap());
    assert!(!d.is_local_domain("elsewhere.fr").await.unwrap());
    assert!(!d.is_local_domain("not a domain").await.unwrap());
    let user = d.resolve_recipient("User@A.fr").await.unwrap().unwrap();
    assert_eq!((user.address.as_str(), user.tenant.as_str()), ("user@a.fr", "a"));
    assert_eq!(user.accounts.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(), vec!["user@a.fr"]);
    d.create_account(&Principal::Operator, new_account("other@a.fr"), NOW).await.unwrap();
    let alias = NewAlias { address: "mairie@a.fr".into(), targets: vec!["user@a.fr".into(), "other@a.fr".into()] };
    d.create_alias(&Principal::Operator, alias, NOW).await.unwrap();
    let shared = d.resolve_recipient("mairie@a.fr").await.unwrap().unwrap();
    assert_eq!(shared.accounts.len(), 2);
    assert_eq!(d.resolve_recipient("nobody@a.fr").await.unwrap(), None);
    assert_eq!(d.resolve_recipient("user@elsewhere.fr").await.unwrap(), None);
    assert_eq!(d.resolve_recipient("<>").await.unwrap(), None);
}

/// The routing reads are cached between changes: a change made through any `Directory` on
/// the store (another component of the server) is seen by the next read, an address made
/// after it was looked up and found missing, a domain deleted, an account disabled.
#[tokio::test]
async fn routing_reads_see_every_change_at_once() {
    let f = fixture().await;
    let reader = Directory::new(f.directory.store().clone(), Options::default());
    let writer = &f.directory;
    assert_eq!(reader.resolve_recipient("late@a.fr").await.unwrap(), None);
    assert!(!reader.is_local_domain("new.fr").await.unwrap());
    writer.create_account(&Principal::Operator, new_account("late@a.fr"), NOW).await.unwrap();
    let late = reader.resolve_recipient("late@a.fr").await.unwrap().expect("seen after its creation");
    assert!(late.accounts[0].enabled);
    let update = AccountUpdate { enabled: Some(false), ..AccountUpdate::default() };
    writer.update_account(&Principal::Operator, "late@a.fr", update).await.unwrap();
    assert!(!reader.resolve_recipient("late@a.fr").await.unwrap().unwrap().accounts[0].enabled);
    let domain = NewDomain { name: "new.fr".into(), tenant: "a".into() };
    writer.create_domain(&Principal::Operator, domain, NOW).await.unwrap();
    assert!(reader.is_local_domain("new.fr").await.unwrap());
    writer.delete_domain(&Principal::Operator, "new.fr").await.unwrap();
    assert!(!reader.is_local_domain("new.fr").await.unwrap());
    // Disabled, it reads the store each time, with the same answers.
    let uncached =
        Directory::new(writer.store().clone(), Options { record_cache_entries_max: 0, ..Options::default() });
    assert_eq!(
        uncached.resolve_recipient("late@a.fr").await.unwrap(),
        reader.resolve_recipient("late@a.fr").await.unwrap()
    );
}

#[tokio::test]
async fn a_login_stops_holding_when_its_account_or_credential_changes() {
    let f = fixture().await;
    let d = &f.directory;
    let at = "192.0.2.7".parse().unwrap();
    let (account, stamp) = d.login_stamped(at, "user@a.fr", "correct horse battery", NOW).await.unwrap();
    assert_eq!(account.address, "user@a.fr");
    assert!(d.login_still_valid(&stamp).await.unwrap());
    // Another field changed: the login holds.
    let renamed = AccountUpdate { display_name: Some("Secrétariat".into()), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", renamed).await.unwrap();
    assert!(d.login_still_valid(&stamp).await.unwrap());
    // An application password's login holds while that one is not revoked, whatever the
    // password does.
    let (view, secret) = d
        .create_app_password(&Principal::Operator, "user@a.fr", NewAppPassword { name: "Thunderbird".into() }, NOW)
        .await
        .unwrap();
    let (_, app_stamp) = d.login_stamped(at, "user@a.fr", &secret, NOW).await.unwrap();
    // The password changed: the password's login ends, the application password's holds.
    let change = AccountUpdate { password: Some("a much better passphrase".into()), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", change).await.unwrap();
    assert!(!d.login_still_valid(&stamp).await.unwrap());
    assert!(d.login_still_valid(&app_stamp).await.unwrap());
    d.delete_app_password(&Principal::Operator, "user@a.fr", &view.id).await.unwrap();
    assert!(!d.login_still_valid(&app_stamp).await.unwrap());
    // Disabled: no login holds, not even once enabled again (the operator disabled it
    // between two checks of a session); a login made after holds.
    let (_, stamp) = d.login_stamped(at, "user@a.fr", "a much better passphrase", NOW).await.unwrap();
    let disable = AccountUpdate { enabled: Some(false), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", disable).await.unwrap();
    assert!(!d.login_still_valid(&stamp).await.unwrap());
    let enable = AccountUpdate { enabled: Some(true), ..AccountUpdate::default() };
    d.update_account(&Principal::Operator, "user@a.fr", enable).await.unwrap();
    assert!(!d.login_still_valid(&stamp).await.unwrap());
    let (_, stamp) = d.login_stamped(at, "user@a.fr", "a much better passphrase", NOW).await.unwrap();
    assert!(d.login_still_valid(&stamp).await.unwrap());
    // Deleted: its records go, the disabling's too.
    d.delete_account(&Principal::Operator, "user@a.fr").await.unwrap();
    assert!(!d.login_still_valid(&stamp).await.unwrap());
    assert_eq!(d.store().get(&crate::keys::disabled(account.id)).await.unwrap(), None);
}

/// Deleting an account marks its mail as to be deleted, in the same commit; the marks are
/// listed a page at a time, and one goes once the mail is known deleted.
#[tokio::test]
async fn a_deleted_account_s_mail_stays_marked_until_it_is_forgotten() {
    let f = fixture().await;
    let d = &f.directory;
    assert!(d.accounts_to_forget(None, 10).await.unwrap().is_empty());
    let a = d.delete_account(&Principal::Operator, "user@a.fr").await.unwrap();
    let b = d.delete_account(&Principal::Operator, "user@b.fr").await.unwrap();
    let both = d.accounts_to_forget(None, 10).await.unwrap();
    assert_eq!(both, vec![(a.id, "a".to_string()), (b.id, "b".to_string())]);
    assert_eq!(d.accounts_to_forget(None, 1).await.unwrap(), both[..1]);
    assert_eq!(d.accounts_to_forget(Some(a.id), 10).await.unwrap(), both[1..]);
    d.account_forgotten(a.id).await.unwrap();
    assert_eq!(d.accounts_to_forget(None, 10).await.unwrap(), both[1..]);
    // Whose each mark is, for a one-tenant restore.
    let mark = d.store().get(&crate::keys::mail_to_forget(b.id)).await.unwrap().unwrap();
    let owner = crate::keys::owner(&crate::keys::mail_to_forget(b.id), &mark.value);
    assert_eq!(owner, Some(crate::keys::Owner::Tenant("b".into())));
}

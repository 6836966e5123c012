//! Unit tests, then the client against Pebble (Debian `pebble`) through the real
//! certificate table, HTTPS listener and plain HTTP listener of `hameau-http`.

use std::sync::Mutex;
use std::time::Duration;

use hameau_net::certs::{ACME_TLS_ALPN, server_config};
use hameau_testkit::Pebble;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpListener;

use super::*;

#[test]
fn retries_double_from_the_minimum_to_the_maximum() {
    let options = Options { retry_min_s: 300, retry_max_s: 3000, ..Options::default() };
    let waits: Vec<u64> = (1..=6).map(|failures| options.retry_after(failures).as_secs()).collect();
    assert_eq!(waits, [300, 600, 1200, 2400, 3000, 3000]);
    assert_eq!(options.retry_after(u32::MAX).as_secs(), 3000);
}

#[test]
fn names_are_the_host_then_three_per_domain_each_once() {
    let domains = vec!["Commune.fr.".to_string(), "ville.fr".to_string(), "commune.fr".to_string()];
    let groups = groups("Mail.Commune.fr", &domains);
    assert_eq!(
        groups,
        [
            vec!["mail.commune.fr"],
            vec!["autoconfig.commune.fr", "autodiscover.commune.fr", "mta-sts.commune.fr"],
            vec!["autoconfig.ville.fr", "autodiscover.ville.fr", "mta-sts.ville.fr"],
        ]
    );
    // A host name no ACME server can check is left out.
    assert_eq!(groups_of("localhost"), 1);
    assert_eq!(groups_of("192.0.2.1"), 1);
}

fn groups_of(host_name: &str) -> usize {
    groups(host_name, &["commune.fr".to_string()]).len()
}

#[test]
fn options_check_names_the_key() {
    let check = |options: Options| options.check().err().map(|problem| problem.key);
    assert_eq!(check(Options::default()), None);
    let http = Options { directory_url: "http://acme.example/dir".into(), ..Options::default() };
    assert_eq!(check(http).as_deref(), Some("acme.directory_url"));
    let contact = Options { contact: vec!["not an address".into()], ..Options::default() };
    assert_eq!(check(contact).as_deref(), Some("acme.contact"));
    let backwards = Options { retry_min_s: 600, retry_max_s: 60, ..Options::default() };
    assert_eq!(check(backwards).as_deref(), Some("acme.retry_max_s"));
    let relative = Options { ca_file: "ca.pem".into(), ..Options::default() };
    assert_eq!(check(relative).as_deref(), Some("acme.ca_file"));
    let mailto =
        Options { contact: vec!["mairie@commune.fr".into(), "mailto:dsi@commune.fr".into()], ..Options::default() };
    assert_eq!(mailto.contact_urls(), ["mailto:mairie@commune.fr", "mailto:dsi@commune.fr"]);
}

#[test]
fn the_alpn_certificate_carries_the_acme_identifier() {
    let digest = [7u8; 32];
    let key = issue::alpn_certificate("mail.commune.fr", &digest).expect("certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(&key.cert[0]).expect("parses");
    // id-pe-acmeIdentifier, 1.3.6.1.5.5.7.1.31 (RFC 8737 §6.1), critical, an OCTET STRING
    // of the digest.
    let extension = parsed
        .extensions()
        .iter()
        .find(|extension| extension.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
        .expect("acmeIdentifier");
    assert!(extension.critical);
    assert_eq!(extension.value[..2], [0x04, 32]);
    assert_eq!(extension.value[2..], digest);
}

struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
    }
}

/// Pebble, the listeners Pebble's validator reaches (HTTPS with the shared table on its
/// `tlsPort`, plain HTTP on its `httpPort`), and a store.
struct Fixture {
    /// Pebble's files and the store; removed last.
    _dir: tempfile::TempDir,
    pebble: Pebble,
    store: Store,
    tokens: Arc<Http01Tokens>,
    certificates: Arc<Certificates>,
    _listeners: watch::Sender<bool>,
}

const HOST: &str = "mail.commune.test";

impl Fixture {
    async fn start(validity_s: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let pebble = Pebble::start(dir.path(), validity_s);
        let store = Store::open(&hameau_store::Options::rocksdb(dir.path().join("store"))).await.expect("store");
        let certificates = Certificates::new(self_signed(HOST));
        let tokens = Http01Tokens::new();
        // The listeners run until the fixture is dropped.
        let (listeners, watching) = watch::channel(false);
        let registry = Registry::new();
        let tls = server_config(certificates.clone(), vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()]);
        let https = TcpListener::bind(("127.0.0.1", pebble.tls_port)).await.expect("bind tlsPort");
        let metrics = hameau_telemetry::ServiceMetrics::new(&registry, "https");
        let options = hameau_http::Options::default();
        tokio::spawn(hameau_http::run(https, tls, axum::Router::new(), options.clone(), metrics, watching.clone()));
        let plain = TcpListener::bind(("127.0.0.1", pebble.http_port)).await.expect("bind httpPort");
        let metrics = hameau_telemetry::ServiceMetrics::new(&registry, "http");
        let router = hameau_http::plain::router(tokens.clone());
        tokio::spawn(hameau_http::run_plain(plain, router, options, metrics, watching));
        Fixture { _dir: dir, pebble, store, tokens, certificates, _listeners: listeners }
    }

    fn options(&self, challenge: Challenge) -> Options {
        Options {
            directory_url: self.pebble.directory_url.clone(),
            challenge,
            ca_file: self.pebble.ca_file.clone(),
            check_interval_s: 1,
            retry_min_s: 1,
            retry_max_s: 2,
            order_timeout_s: 20,
            ..Options::default()
        }
    }

    /// Starts the client on `domains`: its registry counts its orders; sending `true`
    /// stops it.
    fn start_acme(&self, options: Options, domains: &[&str]) -> (Arc<Registry>, watch::Sender<bool>) {
        let domains = Arc::new(domains.iter().map(|domain| domain.to_string()).collect::<Vec<_>>());
        self.start_acme_on(options, domains)
    }

    /// [`Self::start_acme`] on a list of domains the test may change.
    fn start_acme_on(&self, options: Options, domains: Arc<dyn Domains>) -> (Arc<Registry>, watch::Sender<bool>) {
        let registry = Arc::new(Registry::new());
        let context = Context {
            host_name: HOST.to_string(),
            certificates: self.certificates.clone(),
            http01: self.tokens.clone(),
            store: self.store.clone(),
            domains,
            clock: Arc::new(SystemClock),
            registry: registry.clone(),
            roots: Arc::new(self.roots()),
        };
        let acme = Acme::new(options, context);
        let (shutdown, watching) = watch::channel(false);
        tokio::spawn(acme.run(watching));
        (registry, shutdown)
    }

    /// The anchors Pebble's API is served under (`acme.ca_file` in the binary).
    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(&self.pebble.ca_file).expect("Pebble's CA file") {
            roots.add(certificate.expect("a certificate")).expect("usable");
        }
        roots
    }

    /// The leaf certificate served to a client asking for `name`, checked against Pebble's
    /// root.
    async fn served(&self, name: &str) -> Result<Vec<u8>, String> {
        let mut roots = rustls::RootCertStore::empty();
        for root in CertificateDer::pem_slice_iter(self.pebble.roots_pem().as_bytes()) {
            roots.add(root.expect("root PEM")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(hameau_net::certs::provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.pebble.tls_port)).await.expect("connect");
        let server_name = ServerName::try_from(name.to_string()).expect("name");
        let tls = connector.connect(server_name, tcp).await.map_err(|e| e.to_string())?;
        let leaf = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).expect("a certificate");
        Ok(leaf.to_vec())
    }
}

fn self_signed(name: &str) -> Arc<rustls::sign::CertifiedKey> {
    let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("self-signed");
    hameau_net::certs::certified_key(made.cert.pem().as_bytes(), made.signing_key.serialize_pem().as_bytes())
        .expect("usable")
}

fn count(registry: &Registry, series: &str) -> u64 {
    let rendered = registry.render();
    rendered.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// Waits until `registry`'s `series` reaches `at_least`.
async fn wait_for(registry: &Registry, series: &str, at_least: u64, pebble: &Pebble) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while count(registry, series) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{series} stays below {at_least}; pebble:\n{}", pebble.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const ISSUED: &str = "hameau_acme_orders_total{result=\"issued\"}";
const FAILED: &str = "hameau_acme_orders_total{result=\"failed\"}";
const LOADED: &str = "hameau_acme_certificates_loaded_total";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_issues_every_name_and_renews_before_expiry_without_restart() {
    // Certificates valid for an hour and renewed a day before expiry: every check renews.
    let fixture = Fixture::start(3600).await;
    let options = Options { renew_before_days: 1, ..fixture.options(Challenge::TlsAlpn01) };
    let (registry, _shutdown) = fixture.start_acme(options, &["commune.test"]);
    wait_for(&registry, ISSUED, 2, &fixture.pebble).await;
    let first = fixture.served(HOST).await.expect("the host name's certificate verifies against Pebble's root");
    for name in ["autoconfig.commune.test", "autodiscover.commune.test", "mta-sts.commune.test"] {
        fixture.served(name).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    wait_for(&registry, ISSUED, 4, &fixture.pebble).await;
    let renewed = fixture.served(HOST).await.expect("the renewed certificate verifies");
    assert_ne!(first, renewed, "a new certificate is served after renewal, without a restart");
    assert_eq!(count(&registry, FAILED), 0, "pebble:\n{}", fixture.pebble.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_issues_and_a_restart_serves_the_kept_certificates_without_ordering() {
    let fixture = Fixture::start(90 * 86_400).await;
    let options = fixture.options(Challenge::Http01);
    let (registry, shutdown) = fixture.start_acme(options.clone(), &["commune.test"]);
    wait_for(&registry, ISSUED, 2, &fixture.pebble).await;
    let served = fixture.served("mta-sts.commune.test").await.expect("verifies against Pebble's root");
    // Nothing left behind: the challenges are over.
    assert!(fixture.tokens.is_empty());
    // A restart: a new client, a table back to its fallback, the same store.
    let _ = shutdown.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    fixture.certificates.replace(Vec::new(), self_signed(HOST));
    let (restarted, _shutdown) = fixture.start_acme(options, &["commune.test"]);
    wait_for(&restarted, LOADED, 2, &fixture.pebble).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&restarted, ISSUED), 0, "no new order after a restart");
    assert_eq!(fixture.served("mta-sts.commune.test").await.expect("verifies"), served);
    assert!(fixture.store.get(ACCOUNT_KEY).await.expect("read").is_some());
}

/// Domains the test changes while the client runs (a commune leaves).
struct Changing(Mutex<Vec<String>>);

impl Domains for Changing {
    fn domains(&self, max: usize) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
        let domains: Vec<String> = self.0.lock().expect("domains").iter().take(max).cloned().collect();
        Box::pin(async move { Ok(domains) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_that_leaves_has_its_names_fall_back() {
    let fixture = Fixture::start(90 * 86_400).await;
    let domains = Arc::new(Changing(Mutex::new(vec!["commune.test".to_string()])));
    let (registry, _shutdown) = fixture.start_acme_on(fixture.options(Challenge::TlsAlpn01), domains.clone());
    wait_for(&registry, ISSUED, 2, &fixture.pebble).await;
    fixture.served("autoconfig.commune.test").await.expect("the domain's certificate verifies");
    domains.0.lock().expect("domains").clear();
    // The next check (every second here) no longer lists the domain: its names get the
    // fallback (self-signed, so Pebble's root no longer verifies it); the host keeps its own.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fixture.served("autoconfig.commune.test").await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the domain's certificate is still served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fixture.served(HOST).await.expect("the host name keeps its certificate");
    assert_eq!(fixture.certificates.names(), vec![HOST.to_string()]);
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_challenge_is_retried_with_backoff_logged_and_does_not_stop_the_others() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let fixture = Fixture::start(90 * 86_400).await;
    // Pebble's validator finds this name on 127.0.0.2, where nothing listens.
    fixture.pebble.set_address("autoconfig.panne.test", "127.0.0.2");
    let (registry, _shutdown) = fixture.start_acme(fixture.options(Challenge::Http01), &["commune.test", "panne.test"]);
    wait_for(&registry, ISSUED, 2, &fixture.pebble).await;
    wait_for(&registry, FAILED, 3, &fixture.pebble).await;
    fixture.served("autoconfig.commune.test").await.expect("the other domain is certified");
    let log = captured.text();
    let failures: Vec<&str> = log.lines().filter(|line| line.contains("ACME: certificate order failed")).collect();
    assert!(failures.len() >= 3, "{log}");
    for (line, (count, wait)) in failures.iter().zip([(1, 1), (2, 2), (3, 2)]) {
        assert!(line.contains("name=\"autoconfig.panne.test\""), "{line}");
        assert!(line.contains("challenge=\"http-01\""), "{line}");
        assert!(line.contains("urn:ietf:params:acme:error:connection"), "the problem document: {line}");
        assert!(line.contains(&format!("failures={count} retry_in_s={wait}")), "backoff: {line}");
    }
}

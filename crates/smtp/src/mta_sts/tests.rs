//! MTA-STS: the parsers on RFC 8461's examples and their edges, then `MtaSts::lookup` over
//! real sockets: DNS from a knotd serving `remote.test`, the policy from a small HTTPS
//! server of the test's own, with a certificate signed by a CA only the test trusts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_testkit::{Knot, TestCa, start_knot};
use hickory_resolver::TokioResolver;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{Lookup, MtaSts, Options, RESULT_FETCH_ERROR, RESULT_INVALID};
use super::{Mode, Policy, is_sts_record, parse_txt};
use crate::dns::{Cache, resolver};

// ---------------------------------------------------------------------------------------
// The policy body (RFC 8461 §3.2).

#[track_caller]
fn parses(body: &str, mode: Mode, mx: &[&str], max_age_s: u64) {
    let policy = Policy::parse(body.as_bytes()).unwrap_or_else(|why| panic!("{body:?}: {why}"));
    assert_eq!(policy, Policy { mode, mx: mx.iter().map(|name| name.to_string()).collect(), max_age_s }, "{body:?}");
}

#[track_caller]
fn refused(body: &str, needle: &str) {
    match Policy::parse(body.as_bytes()) {
        Ok(policy) => panic!("{body:?} parsed as {policy:?}"),
        Err(why) => assert!(why.contains(needle), "{body:?}: {why:?} does not say {needle:?}"),
    }
}

/// RFC 8461 §3.2's example.
const RFC_EXAMPLE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n\
                           mx: backupmx.example.com\r\nmax_age: 604800\r\n";

#[test]
fn policies_that_parse() {
    let rfc_mx = ["mail.example.com", "*.example.net", "backupmx.example.com"];
    parses(RFC_EXAMPLE, Mode::Enforce, &rfc_mx, 604_800);
    parses(&RFC_EXAMPLE.replace("\r\n", "\n"), Mode::Enforce, &rfc_mx, 604_800);
    // No final line break, spaces and tabs around values, no space after the colon.
    parses(
        "version: STSv1\nmode:testing\t\nmx:\t mx1.example.org  \nmax_age: 86400",
        Mode::Testing,
        &["mx1.example.org"],
        86_400,
    );
    // Mode none needs no mx (RFC 8461 §8.3: how a policy is withdrawn).
    parses("version: STSv1\nmode: none\nmax_age: 0\n", Mode::None, &[], 0);
    // Any order after the version; unknown keys ignored; empty lines skipped.
    parses(
        "version: STSv1\r\nmax_age: 31557600\r\n\r\nfuture_key.v2: some-value\r\nmx: MX.Example.COM.\r\nmode: enforce\r\n\r\n",
        Mode::Enforce,
        &["mx.example.com"],
        31_557_600,
    );
    parses(
        "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmax_age: 1\n",
        Mode::Enforce,
        &["xn--bcher-kva.example"],
        1,
    );
}

#[test]
fn policies_refused_with_a_reason() {
    refused("", "empty");
    refused("\r\n\n", "empty");
    refused("mode: enforce\nmx: mx.example.com\nmax_age: 86400\n", "must start with 'version: STSv1'");
    refused("mode: enforce\nversion: STSv1\nmx: mx.example.com\nmax_age: 86400\n", "must start with");
    refused("Version: STSv1\nmode: enforce\n", "must start with");
    refused("version: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n", "version 'STSv2' is not STSv1");
    refused("version: STSv1\nmode: Enforce\nmx: mx.example.com\nmax_age: 86400\n", "mode 'Enforce' is not enforce");
    refused("version: STSv1\nmode: strict\nmx: mx.example.com\nmax_age: 86400\n", "line 2: mode 'strict'");
    refused("version: STSv1\nmode: enforce\nmax_age: 86400\n", "no mx line");
    refused("version: STSv1\nmode: testing\nmax_age: 86400\n", "no mx line");
    refused("version: STSv1\nmx: mx.example.com\nmax_age: 86400\n", "no mode");
    refused("version: STSv1\nmode: enforce\nmx: mx.example.com\n", "no max_age");
    // max_age: 1*10DIGIT, at most 31557600.
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n", "over 31557600");
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 99999999999\n", "not a number");
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "not a number");
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1e3\n", "not a number");
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age:\n", "not a number");
    // Duplicate keys: the RFC gives no precedence, so the policy has no one reading.
    refused("version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\n", "line 3: mode given twice");
    refused("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nmax_age: 2\n", "max_age given twice");
    refused("version: STSv1\nversion: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version given twice");
    // Lines and keys.
    refused("version: STSv1\nmode enforce\n", "line 2 has no ':'");
    refused("version: STSv1\nbad key: x\n", "'bad key' is not a key");
    refused("\u{feff}version: STSv1\n", "must start with");
    refused("version: STSv1\r\r\nmode: enforce\n", "version 'STSv1\\r' is not STSv1");
    // mx patterns: a host name, or `*.` and a host name.
    for bad in
        ["*", "*.", "a.*.example", "**.example", "-a.example", "a-.example", "a..example", "exa mple.com", "é.fr", ".a"]
    {
        refused(&format!("version: STSv1\nmode: enforce\nmx: {bad}\nmax_age: 1\n"), "is not a host name");
    }
    refused(&format!("version: STSv1\nmode: enforce\nmx: {}.example\nmax_age: 1\n", "a".repeat(64)), "not a host name");
}

#[test]
fn errors_quote_at_most_a_little_of_the_input() {
    let body = format!("version: STSv1\nmode: {}\n", "x".repeat(1 << 20));
    let why = Policy::parse(body.as_bytes()).unwrap_err();
    assert!(why.len() < 200, "{} bytes of error", why.len());
    let why = Policy::parse(b"version: STSv1\nmode: \x00\xff\x1b[31m\n").unwrap_err();
    assert!(why.contains("'\\x00\\xff\\x1b[31m'"), "{why}");
    // A large policy is the caller's to bound; the parser takes it in one pass.
    let many = "mx: mx.example.com\n".repeat(100_000);
    let policy = Policy::parse(format!("version: STSv1\nmode: enforce\nmax_age: 1\n{many}").as_bytes()).unwrap();
    assert_eq!(policy.mx.len(), 100_000);
}

// ---------------------------------------------------------------------------------------
// MX patterns (RFC 8461 §4.1).

#[test]
fn mx_hosts_match_patterns() {
    let policy = Policy::parse(RFC_EXAMPLE.as_bytes()).unwrap();
    let check = |host: &str, expect: bool| assert_eq!(policy.matches(host), expect, "{host}");
    check("mail.example.com", true);
    check("MAIL.Example.Com", true);
    check("mail.example.com.", true);
    check("backupmx.example.com", true);
    check("mail.example.com..", false);
    check("xmail.example.com", false);
    check("example.com", false);
    check("mail.example.com.evil", false);
    // The wildcard is one leftmost label, never none and never two.
    check("mx1.example.net", true);
    check("MX1.EXAMPLE.NET.", true);
    check("example.net", false);
    check(".example.net", false);
    check("a.b.example.net", false);
    check("*.example.net", true);
    check("", false);
    check(".", false);
}

// ---------------------------------------------------------------------------------------
// The `_mta-sts` TXT record (RFC 8461 §3.1).

#[test]
fn txt_records() {
    let id = |txt: &str| parse_txt(txt).unwrap_or_else(|why| panic!("{txt:?}: {why}"));
    assert_eq!(id("v=STSv1; id=20160831085700Z;"), "20160831085700Z");
    assert_eq!(id("v=STSv1;id=abc"), "abc");
    assert_eq!(id("v=STSv1 ;\tid=abc ; ext_1=x=y;"), "abc");
    assert_eq!(id("v=STSv1; ; id=1;;"), "1");
    assert_eq!(id(&format!("v=STSv1; id={}", "A".repeat(32))), "A".repeat(32));
    let refused = |txt: &str, needle: &str| match parse_txt(txt) {
        Ok(id) => panic!("{txt:?} gave id {id}"),
        Err(why) => assert!(why.contains(needle), "{txt:?}: {why:?} does not say {needle:?}"),
    };
    refused("v=STSv2; id=1", "does not start with 'v=STSv1;'");
    refused("id=1; v=STSv1", "does not start with");
    refused(" v=STSv1; id=1", "does not start with");
    refused("v=STSv1", "no id");
    refused("v=STSv1;", "no id");
    refused("v=STSv1; id=", "is not 1 to 32 letters and digits");
    refused(&format!("v=STSv1; id={}", "A".repeat(33)), "is not 1 to 32");
    refused("v=STSv1; id=a-b", "is not 1 to 32");
    refused("v=STSv1; id=1; id=2", "id given twice");
    refused("v=STSv1; id = 1", "is not a field name");
    refused("v=STSv1; junk; id=1", "has no '='");
    assert!(is_sts_record("v=STSv1; id=1"));
    assert!(is_sts_record("v=STSv1"));
    assert!(is_sts_record("v=STSv1 junk"));
    assert!(!is_sts_record("v=STSv10; id=1"));
    assert!(!is_sts_record("v=spf1 -all"));
    assert!(!is_sts_record(" v=STSv1; id=1"));
}

// ---------------------------------------------------------------------------------------
// Lookups over sockets: knotd for DNS, an HTTPS server of the test's own.

/// The domains of the zone `remote.test`, each with its policy host on 127.0.0.1:
/// `remote.test` (TXT id `id`), `two.remote.test` (two STS records), `other.remote.test`
/// (an unrelated TXT record besides its own), `bad.remote.test` (a malformed one),
/// `notxt.remote.test` (none), `noaddr.remote.test` (a record but no policy host), and `a`, `b`, `c` for the cache bound.
fn zone(id: &str) -> String {
    let mut zone =
        format!("_mta-sts.remote.test. 60 IN TXT \"v=STSv1; id={id};\"\nmta-sts.remote.test. 60 IN A 127.0.0.1\n");
    zone.push_str(
        "_mta-sts.two.remote.test. 60 IN TXT \"v=STSv1; id=1;\"\n\
         _mta-sts.two.remote.test. 60 IN TXT \"v=STSv1; id=2;\"\n\
         _mta-sts.other.remote.test. 60 IN TXT \"some other\" \" text\"\n\
         _mta-sts.other.remote.test. 60 IN TXT \"v=STSv1; \" \"id=7;\"\n\
         _mta-sts.bad.remote.test. 60 IN TXT \"v=STSv1; id=not valid;\"\n\
         _mta-sts.noaddr.remote.test. 60 IN TXT \"v=STSv1; id=1;\"\n",
    );
    for name in ["two", "other", "bad", "notxt", "a", "b", "c"] {
        zone.push_str(&format!("mta-sts.{name}.remote.test. 60 IN A 127.0.0.1\n"));
    }
    for name in ["a", "b", "c"] {
        zone.push_str(&format!("_mta-sts.{name}.remote.test. 60 IN TXT \"v=STSv1; id=1;\"\n"));
    }
    zone
}

/// The policy hosts the test server's certificate names.
const POLICY_HOSTS: [&str; 7] = [
    "mta-sts.remote.test",
    "mta-sts.two.remote.test",
    "mta-sts.other.remote.test",
    "mta-sts.notxt.remote.test",
    "mta-sts.a.remote.test",
    "mta-sts.b.remote.test",
    "mta-sts.c.remote.test",
];

struct Dns {
    resolver: TokioResolver,
    _knot: Knot,
    _dir: tempfile::TempDir,
}

fn dns(id: &str) -> Dns {
    let dir = tempfile::tempdir().unwrap();
    let knot = start_knot(dir.path(), &[("remote.test", zone(id))]);
    let server = SocketAddr::from(([127, 0, 0, 1], knot.port));
    let resolver = resolver(&[server], Duration::from_secs(2), Cache::NONE).unwrap();
    Dns { resolver, _knot: knot, _dir: dir }
}

/// The test CA: the policy hosts' certificates, the client's only root.
fn pki() -> TestCa {
    TestCa::new()
}

/// What the test server answers to every request.
#[derive(Clone)]
enum Reply {
    Bytes(Vec<u8>),
    /// Reads the request and says nothing.
    Stall,
}

/// The HTTPS server: counts the requests it read, remembers the last one's head.
struct Https {
    port: u16,
    requests: Arc<AtomicUsize>,
    reply: Arc<Mutex<Reply>>,
    last_head: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Https {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Https {
    async fn start(config: Arc<rustls::ServerConfig>, reply: Reply) -> Https {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let reply = Arc::new(Mutex::new(reply));
        let last_head = Arc::new(Mutex::new(String::new()));
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let state = (requests.clone(), reply.clone(), last_head.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, (requests, reply, last_head)) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    requests.fetch_add(1, Ordering::SeqCst);
                    *last_head.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
                    let reply = reply.lock().unwrap().clone();
                    match reply {
                        Reply::Bytes(bytes) => {
                            let _ = tls.write_all(&bytes).await;
                            let _ = tls.shutdown().await;
                        }
                        Reply::Stall => tokio::time::sleep(Duration::from_secs(60)).await,
                    }
                });
            }
        });
        Https { port, requests, reply, last_head, task }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn answer(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

fn ok(body: &str) -> Reply {
    Reply::Bytes(
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes(),
    )
}

fn enforce(mx: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

fn options(port: u16) -> Options {
    Options { port, fetch_timeout: Duration::from_secs(5), policy_bytes_max: 64 * 1024, cache_entries_max: 100 }
}

#[track_caller]
fn policy_of(lookup: &Lookup) -> &Policy {
    match lookup {
        Lookup::Policy(policy) => policy,
        other => panic!("expected a policy, got {other:?}"),
    }
}

#[track_caller]
fn failed(lookup: &Lookup, result: &str, needle: &str) {
    match lookup {
        Lookup::FetchFailed { result_type, why } if *result_type == result && why.contains(needle) => {}
        other => panic!("expected FetchFailed {result} saying {needle:?}, got {other:?}"),
    }
}

const NOW_S: u64 = 1_800_000_000;

#[tokio::test]
async fn a_policy_is_fetched_once_then_cached_until_it_expires() {
    let dns = dns("1");
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("*.mx.remote.test"))).await;
    let mta_sts = MtaSts::new(options(https.port), pki.client_config());

    let lookup = mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await;
    let policy = policy_of(&lookup);
    assert_eq!((policy.mode, policy.max_age_s), (Mode::Enforce, 86_400));
    assert!(policy.matches("mx1.mx.remote.test"));
    assert_eq!(https.requests(), 1);
    let head = https.last_head.lock().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /.well-known/mta-sts.txt http/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: mta-sts.remote.test\r\n"), "{head}");
    assert!(head.contains("\r\nuser-agent: hameau"), "{head}");

    // The same id: from the cache, in any spelling of the domain.
    policy_of(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S + 3600).await);
    policy_of(&mta_sts.lookup(&dns.resolver, "Remote.Test.", NOW_S + 86_399).await);
    assert_eq!(https.requests(), 1);
    // Expired: fetched again.
    policy_of(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S + 86_400).await);
    assert_eq!(https.requests(), 2);

    // A clone shares the cache.
    policy_of(&mta_sts.clone().lookup(&dns.resolver, "remote.test", NOW_S + 86_401).await);
    assert_eq!(https.requests(), 2);
}

/// RFC 8461 §5: a policy is trusted on first use, so it must outlive a restart: kept in the
/// store, it is applied by a new `MtaSts` (a restarted server) even when the policy host
/// cannot be reached, until it expires; an expired one is removed from the store.
#[tokio::test]
async fn policies_kept_in_the_store_outlive_a_restart() {
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("mx1.remote.test"))).await;
    let data = tempfile::tempdir().unwrap();
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(data.path())).await.unwrap();
    let dns = dns("1");
    let before = MtaSts::with_store(options(https.port), pki.client_config(), Some(store.clone()));
    assert_eq!(policy_of(&before.lookup(&dns.resolver, "remote.test", NOW_S).await).mx, ["mx1.remote.test"]);

    // The server restarts while someone blocks the policy host.
    https.answer(Reply::Bytes(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()));
    let after = MtaSts::with_store(options(https.port), pki.client_config(), Some(store.clone()));
    let lookup = after.lookup(&dns.resolver, "remote.test", NOW_S + 60).await;
    assert_eq!(policy_of(&lookup).mx, ["mx1.remote.test"], "the kept policy applies");
    assert_eq!(https.requests(), 1, "same id: no fetch");
    // Without the store, the restarted server would have had no policy.
    let forgetful = MtaSts::new(options(https.port), pki.client_config());
    failed(&forgetful.lookup(&dns.resolver, "remote.test", NOW_S + 60).await, RESULT_FETCH_ERROR, "503");

    // Expired: removed, and the failure shows.
    let later = MtaSts::with_store(options(https.port), pki.client_config(), Some(store.clone()));
    failed(&later.lookup(&dns.resolver, "remote.test", NOW_S + 86_401).await, RESULT_FETCH_ERROR, "503");
    assert!(store.get(b"mta-sts/remote.test").await.unwrap().is_none());
}

#[tokio::test]
async fn a_new_id_fetches_again_and_a_failed_fetch_keeps_the_cached_policy() {
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("mx1.remote.test"))).await;
    let mta_sts = MtaSts::new(options(https.port), pki.client_config());
    let first = dns("1");
    let lookup = mta_sts.lookup(&first.resolver, "remote.test", NOW_S).await;
    assert_eq!(policy_of(&lookup).mx, ["mx1.remote.test"]);

    // The domain publishes a new policy under a new id.
    https.answer(ok(&enforce("mx2.remote.test")));
    let second = dns("2");
    let lookup = mta_sts.lookup(&second.resolver, "remote.test", NOW_S + 10).await;
    assert_eq!(policy_of(&lookup).mx, ["mx2.remote.test"]);
    assert_eq!(https.requests(), 2);
    policy_of(&mta_sts.lookup(&second.resolver, "remote.test", NOW_S + 20).await);
    assert_eq!(https.requests(), 2);

    // A third id whose policy cannot be fetched: the cached policy holds (RFC 8461 §5.1).
    https.answer(Reply::Bytes(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec()));
    let third = dns("3");
    let lookup = mta_sts.lookup(&third.resolver, "remote.test", NOW_S + 30).await;
    assert_eq!(policy_of(&lookup).mx, ["mx2.remote.test"]);
    assert_eq!(https.requests(), 3);
    // An invalid one too.
    https.answer(ok("version: STSv1\nmode: enforce\n"));
    let lookup = mta_sts.lookup(&third.resolver, "remote.test", NOW_S + 40).await;
    assert_eq!(policy_of(&lookup).mx, ["mx2.remote.test"]);
    // Past the cached policy's max_age, the failure shows.
    let lookup = mta_sts.lookup(&third.resolver, "remote.test", NOW_S + 10 + 86_400).await;
    failed(&lookup, RESULT_INVALID, "has no max_age");
}

#[tokio::test]
async fn no_record_keeps_a_cached_policy_until_it_expires() {
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("mx1.remote.test"))).await;
    let mta_sts = MtaSts::new(options(https.port), pki.client_config());
    let dns = dns("1");
    policy_of(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await);
    // A domain without a TXT record at all: knotd answers NXDOMAIN.
    let empty = {
        let dir = tempfile::tempdir().unwrap();
        let knot = start_knot(dir.path(), &[("remote.test", "mta-sts.remote.test. 60 IN A 127.0.0.1\n".to_string())]);
        let server = SocketAddr::from(([127, 0, 0, 1], knot.port));
        Dns { resolver: resolver(&[server], Duration::from_secs(2), Cache::NONE).unwrap(), _knot: knot, _dir: dir }
    };
    policy_of(&mta_sts.lookup(&empty.resolver, "remote.test", NOW_S + 100).await);
    assert!(matches!(mta_sts.lookup(&empty.resolver, "remote.test", NOW_S + 86_400).await, Lookup::None));
    assert_eq!(https.requests(), 1);
}

#[tokio::test]
async fn records_that_mean_no_policy() {
    let dns = dns("1");
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("mx.remote.test"))).await;
    let mta_sts = MtaSts::new(options(https.port), pki.client_config());
    for domain in ["notxt.remote.test", "two.remote.test", "bad.remote.test", "nowhere.remote.test", "1.2.3.4", "a b"] {
        let lookup = mta_sts.lookup(&dns.resolver, domain, NOW_S).await;
        assert!(matches!(lookup, Lookup::None), "{domain}: {lookup:?}");
    }
    assert_eq!(https.requests(), 0);
    // The other TXT record is no MTA-STS record; the split one is read whole.
    policy_of(&mta_sts.lookup(&dns.resolver, "other.remote.test", NOW_S).await);
    assert_eq!(https.requests(), 1);

    // Mode none: no policy, and cached as such.
    https.answer(ok("version: STSv1\nmode: none\nmax_age: 86400\n"));
    assert!(matches!(mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await, Lookup::None));
    assert!(matches!(mta_sts.lookup(&dns.resolver, "remote.test", NOW_S + 1).await, Lookup::None));
    assert_eq!(https.requests(), 2);
}

#[tokio::test]
async fn failed_fetches_without_a_cached_policy_are_reported() {
    let dns = dns("1");
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), Reply::Stall).await;
    let mut options = options(https.port);
    options.policy_bytes_max = 1024;
    options.fetch_timeout = Duration::from_secs(1);
    let mta_sts = MtaSts::new(options, pki.client_config());
    let lookup = || mta_sts.lookup(&dns.resolver, "remote.test", NOW_S);

    // Nothing said within the deadline.
    let start = Instant::now();
    failed(&lookup().await, RESULT_FETCH_ERROR, "no whole answer within 1 s");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());

    // A redirect is not followed: one request, to the policy host.
    let requests = https.requests();
    https.answer(Reply::Bytes(
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://mta-sts.remote.test/elsewhere\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    failed(&lookup().await, RESULT_FETCH_ERROR, "HTTP status 301 Moved Permanently (redirects are not followed");
    assert_eq!(https.requests(), requests + 1);
    https.answer(Reply::Bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()));
    failed(&lookup().await, RESULT_FETCH_ERROR, "HTTP status 404 Not Found");
    https.answer(Reply::Bytes(b"SMTP/1.0 220 hello\r\n\r\n".to_vec()));
    failed(&lookup().await, RESULT_FETCH_ERROR, "HTTP: ");

    // Over policy_bytes_max: said by Content-Length, or found reading a body that ends with
    // the connection (reading stops at the bound).
    let policy = format!("{}{}", enforce("mx.remote.test"), "pad: x\r\n".repeat(200));
    https.answer(ok(&policy));
    failed(&lookup().await, RESULT_INVALID, "the policy is over 1024 bytes");
    let mut unbounded = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n".to_vec();
    unbounded.extend_from_slice(policy.repeat(100).as_bytes());
    https.answer(Reply::Bytes(unbounded));
    failed(&lookup().await, RESULT_INVALID, "the policy is over 1024 bytes");

    // Not text/plain (RFC 8461 §3.2), or not a policy.
    let body = enforce("mx.remote.test");
    https.answer(Reply::Bytes(
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len())
            .into_bytes(),
    ));
    failed(&lookup().await, RESULT_INVALID, "media type 'text/html' is not text/plain");
    https.answer(ok("<html>hello</html>"));
    failed(&lookup().await, RESULT_INVALID, "is invalid: line 1 has no ':'");

    // A valid answer, with a charset parameter and a body that ends with the connection.
    let mut answer =
        b"HTTP/1.1 200 OK\r\nContent-Type: Text/Plain; charset=utf-8\r\nConnection: close\r\n\r\n".to_vec();
    answer.extend_from_slice(body.as_bytes());
    https.answer(Reply::Bytes(answer));
    policy_of(&lookup().await);

    // The policy host has no address: a fetch error too.
    let lookup = mta_sts.lookup(&dns.resolver, "noaddr.remote.test", NOW_S).await;
    failed(&lookup, RESULT_FETCH_ERROR, "mta-sts.noaddr.remote.test has no address");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_fetch_error() {
    let dns = dns("1");
    let pki = pki();
    let https = Https::start(pki.server_config(&["www.remote.test"]), ok(&enforce("mx.remote.test"))).await;
    let mta_sts = MtaSts::new(options(https.port), pki.client_config());
    failed(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await, RESULT_FETCH_ERROR, "TLS: ");
    // A certificate for the right name from a CA we do not trust.
    let other_ca = self::pki();
    let untrusted = Https::start(other_ca.server_config(&POLICY_HOSTS), ok(&enforce("mx.remote.test"))).await;
    let mta_sts = MtaSts::new(options(untrusted.port), pki.client_config());
    failed(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await, RESULT_FETCH_ERROR, "TLS: ");
    assert_eq!(https.requests() + untrusted.requests(), 0);
    // A certificate of many names: the error quoting them stays short.
    let names: Vec<String> = (0..50).map(|n| format!("{}{n}.remote.test", "x".repeat(50))).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let wordy = Https::start(pki.server_config(&names), ok(&enforce("mx.remote.test"))).await;
    let mta_sts = MtaSts::new(options(wordy.port), pki.client_config());
    match mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await {
        Lookup::FetchFailed { why, .. } => assert!(why.chars().count() < 500 && why.ends_with('…'), "{why}"),
        other => panic!("{other:?}"),
    }
    // Nothing listening.
    drop(https);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mta_sts = MtaSts::new(options(port), pki.client_config());
    failed(&mta_sts.lookup(&dns.resolver, "remote.test", NOW_S).await, RESULT_FETCH_ERROR, "connecting to 127.0.0.1");
}

#[tokio::test]
async fn the_cache_stays_within_its_bound() {
    let dns = dns("1");
    let pki = pki();
    let https = Https::start(pki.server_config(&POLICY_HOSTS), ok(&enforce("mx.remote.test"))).await;
    let mut options = options(https.port);
    options.cache_entries_max = 2;
    let mta_sts = MtaSts::new(options, pki.client_config());
    for domain in ["a.remote.test", "b.remote.test", "a.remote.test", "c.remote.test"] {
        policy_of(&mta_sts.lookup(&dns.resolver, domain, NOW_S).await);
    }
    // a was cached first: c's arrival dropped it; b and c are still cached.
    assert_eq!(https.requests(), 3);
    policy_of(&mta_sts.lookup(&dns.resolver, "c.remote.test", NOW_S).await);
    policy_of(&mta_sts.lookup(&dns.resolver, "b.remote.test", NOW_S).await);
    assert_eq!(https.requests(), 3);
    policy_of(&mta_sts.lookup(&dns.resolver, "a.remote.test", NOW_S).await);
    assert_eq!(https.requests(), 4);
    assert_eq!(mta_sts.inner.cache.lock().unwrap().by_domain.len(), 2);
    assert_eq!(mta_sts.inner.cache.lock().unwrap().by_age.len(), 2);
}

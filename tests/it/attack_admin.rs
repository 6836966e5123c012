//! Attack tests (issue 10): see `attack.rs` for the shared set-up. The directory (logins,
//! the limiter, password hashing) and the HTTPS admin API.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::attack::{LineClient, Target, USER, USER_PASSWORD};
use crate::support::{Api, block_on, set_config};

const PROBE: Duration = Duration::from_secs(10);

/// The address count and the account count of the limiter, made small for the tests.
pub(crate) fn small_limiter(config: &Path) {
    set_config(config, "failures_before_delay = 5", "failures_before_delay = 2");
    set_config(config, "delay_ms = 250", "delay_ms = 10");
    set_config(config, "delay_ms_max = 4000", "delay_ms_max = 20");
    set_config(config, "failures_max = 20", "failures_max = 6");
}

/// An operator API key made on the data directory before the server starts.
fn operator_key(config: &Path) -> String {
    api_key(config, &["--operator"])
}

/// An API key of the `scope` given (`--operator`, `--tenant T`, `--user ADDRESS`), made on
/// the data directory before the server starts: its token.
pub(crate) fn api_key(config: &Path, scope: &[&str]) -> String {
    let mut args = vec!["apikey", "create", "--name", "attack tests"];
    args.extend_from_slice(scope);
    args.extend(["--config", config.to_str().unwrap()]);
    let (status, stdout, stderr) = crate::support::run(&args);
    assert!(status.success(), "{stderr}");
    let start = stdout.find("hmk_").expect("a token");
    stdout[start..].split(|c: char| c.is_whitespace() || c == '"').next().unwrap().to_string()
}

/// A plain TCP connection from a chosen loopback address (another client machine).
fn connect_from(local: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let local: IpAddr = local.parse().unwrap();
    let stream = block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(local, 0))?;
        socket.connect(addr).await
    })?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(PROBE))?;
    stream.set_write_timeout(Some(PROBE))?;
    Ok(stream)
}

/// One IMAP LOGIN from `local`: the tagged answer, or why there was none.
fn imap_login(imap: SocketAddr, local: &str, user: &str, password: &str) -> String {
    let stream = match connect_from(local, imap) {
        Ok(stream) => stream,
        Err(e) => return format!("no connection: {e}"),
    };
    let mut client = LineClient::from_stream(stream).unwrap();
    if let Err(e) = client.until("* OK") {
        return format!("no greeting: {e}");
    }
    let _ = client.send(format!("a LOGIN \"{user}\" \"{password}\"\r\n").as_bytes());
    let answer = client.until("a ").unwrap_or_else(|e| format!("no answer: {e}"));
    let _ = client.send(b"b LOGOUT\r\n");
    answer
}

fn rss_mib(target: &Target) -> f64 {
    target.rss_kib() as f64 / 1024.0
}

/// Finding: `&compact[..4]` in the application-password check panicked on a 24-byte
/// password with a multibyte character across byte 4. Only existing accounts reached it
/// (an existence oracle), the connection dropped without an answer, the failure was not
/// counted by the limiter, and the panic message logged the typed password.
#[test]
fn a_multibyte_application_password_is_a_counted_failure_without_panic() {
    let target = Target::start_with(small_limiter);
    let rss_before = target.rss_kib();
    // 24 bytes: "abc", 'é' over bytes 3 and 4, then 19 letters.
    let password = "abcéSECRETWORDSECRETWORD";
    let password = &password[..24];
    assert_eq!(password.len(), 24);
    let mut answers = Vec::new();
    for (i, user) in [USER, "nobody@a.test"].iter().cycle().take(12).enumerate() {
        // A fresh address each time: only the account count may stop these.
        let local = format!("127.0.1.{}", i + 1);
        answers.push((user.to_string(), imap_login(target.imap(), &local, user, password)));
    }
    let log = target.server.log().join("\n");
    assert!(!log.contains("panicked"), "a panic: {log}");
    assert!(!log.contains("SECRETWORD") && !log.contains("secretword"), "the password is in the log: {log}");
    // An existing account and an absent one get the same answer.
    for (user, answer) in &answers {
        assert!(answer.starts_with("a NO [AUTHENTICATIONFAILED]"), "{user}: {answer}");
    }
    // Counted: past auth.failures_max the right password is refused too.
    let answer = imap_login(target.imap(), "127.0.2.1", USER, USER_PASSWORD);
    assert!(answer.starts_with("a NO"), "the failures were not counted: {answer}");
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < rss_before + 64 * 1024, "RSS {} MiB", rss_mib(&target));
}

/// Finding: the per-account key was the raw user name, so a trailing dot, another case,
/// fullwidth letters or a soft hyphen in the domain made new keys for the same account.
#[test]
fn user_name_variants_count_against_one_account() {
    let target = Target::start_with(small_limiter);
    let variants = [
        "user@a.test.",
        "USER@A.TEST",
        "user@\u{ff41}.test",
        "user@a\u{ad}.test",
        "User@A.Test.",
        "user@\u{ff41}.\u{ff54}est",
        "user@a.test",
        "uSer@a.tesT",
    ];
    for (i, variant) in variants.iter().enumerate() {
        let local = format!("127.0.3.{}", i + 1);
        let answer = imap_login(target.imap(), &local, variant, "not the password");
        assert!(answer.starts_with("a NO"), "{variant}: {answer}");
    }
    // 8 failures against one account, past failures_max (6): locked, from a fresh address
    // and with the right password.
    let answer = imap_login(target.imap(), "127.0.4.1", USER, USER_PASSWORD);
    assert!(answer.starts_with("a NO"), "variants made new keys: {answer}");
    // Another account is not affected.
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
}

/// Finding: any successful login of the attacker's own account cleared the count of the
/// attacker's address, so guesses against other accounts interleaved with own logins were
/// never slowed or refused. IMAP LOGIN.
#[test]
fn own_successful_logins_do_not_clear_other_accounts_failures_imap() {
    let target = Target::start_with(small_limiter);
    let local = "127.0.5.1";
    let mut refused_own = false;
    for i in 0..10 {
        // A different (absent) account each time: only the address count may stop this.
        let answer = imap_login(target.imap(), local, &format!("guess{i}@a.test"), "a guess");
        assert!(answer.starts_with("a NO"), "{answer}");
        let own = imap_login(target.imap(), local, USER, USER_PASSWORD);
        if own.starts_with("a NO") {
            refused_own = true;
            break;
        }
    }
    assert!(refused_own, "10 failures from one address interleaved with own logins were never refused");
    // Another address still logs in.
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
}

/// The same over HTTPS: bad API keys interleaved with the attacker's own valid key.
#[test]
fn own_successful_api_calls_do_not_clear_other_keys_failures_https() {
    let mut token = String::new();
    let target = Target::start_with(|config| {
        small_limiter(config);
        token = operator_key(config);
    });
    let api = Api { source: "127.0.6.1".parse().unwrap(), ..Api::new(&target.server) };
    let mut statuses = Vec::new();
    for i in 0..10 {
        let bad = format!("hmk_{i:012}_not-the-secret");
        statuses.push(api.call("GET", "/api/v1/tenants", Some(&bad), None).status);
        let own = api.call("GET", "/api/v1/tenants", Some(&token), None).status;
        statuses.push(own);
        if own == 429 {
            break;
        }
    }
    assert_eq!(statuses.last(), Some(&429), "never refused: {statuses:?}");
    let other = Api { source: "127.0.6.2".parse().unwrap(), ..api.clone() };
    assert_eq!(other.call("GET", "/api/v1/tenants", Some(&token), None).status, 200);
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
}

/// How many accounts the provisioning test makes and logs into: the 1,000 of the issue's
/// acceptance (about 30 s of creations and 26 s of logins on a 2-core machine; set
/// `HAMEAU_PROVISION_N` to try another count).
fn provision_n() -> usize {
    std::env::var("HAMEAU_PROVISION_N").ok().and_then(|n| n.parse().ok()).unwrap_or(1000)
}

/// Finding: creating accounts through the API with 4 concurrent clients in one tenant
/// failed with 503 for most of them, and memory used for password hashing was never given
/// back (RSS from 27 MB to ~1 GB after 1,000 accounts). Here: N accounts with 8 concurrent
/// clients, no 503, then N cold IMAP logins; the idle server's RSS stays bounded.
#[test]
fn provisioning_with_8_concurrent_clients_and_cold_logins_keeps_memory_bounded() {
    let n = provision_n();
    let mut token = String::new();
    let target = Target::start_with(|config| token = operator_key(config));
    let api = Api::new(&target.server);
    let (rss_start, anon_start) = (target.rss_kib(), target.anon_rss_kib());
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let statuses = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let body =
                        json!({"address": format!("agent{i}@a.test"), "password": format!("password of agent {i}")});
                    let status = api.call("POST", "/api/v1/accounts", Some(&token), Some(body)).status;
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                }
            });
        }
    });
    let provisioned = start.elapsed();
    let statuses = statuses.into_inner().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let rss_provisioned = target.rss_kib();
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let (next, failed, imap) = (&next, &failed, target.imap());
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let local = format!("127.0.7.{}", thread + 1);
                    let answer =
                        imap_login(imap, &local, &format!("agent{i}@a.test"), &format!("password of agent {i}"));
                    if !answer.starts_with("a OK") {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let logged_in = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (rss_idle, anon_idle) = (target.rss_kib(), target.anon_rss_kib());
    eprintln!(
        "{n} accounts in {provisioned:?} ({statuses:?}), {n} cold logins in {logged_in:?}; RSS KiB: start {rss_start}, \
         after provisioning {rss_provisioned}, after logins (idle) {rss_idle}, peak {}; anonymous KiB: start \
         {anon_start}, idle {anon_idle}",
        target.peak_rss_kib()
    );
    assert_eq!(statuses.get(&201), Some(&n), "every creation succeeds at once: {statuses:?}");
    assert_eq!(failed.into_inner(), 0, "every cold login succeeds");
    // The idle server after all that hashing: its start plus 24 MiB (allocator slack and
    // the directory's caches, which are bounded by configuration), not ~1 GB.
    assert!(rss_idle < rss_start + 24 * 1024, "RSS grew from {rss_start} KiB to {rss_idle} KiB");
    // The goal for an idle server, ≤ 20 MiB, on the memory the server itself holds
    // (heap, stacks, caches as filled): the rest of VmRSS is the binary's code mapped from
    // disk (~22 MiB of this debug build), shared and reclaimable. Measured: 4 MiB at start,
    // 8 MiB here.
    assert!(anon_idle <= 20 * 1024, "the idle server holds {anon_idle} KiB of its own memory");
    target.assert_serving(PROBE);
}

/// Finding: `GET /domains/{name}` answered another tenant's domain with the name as typed
/// and an absent one normalised: out of scope and absent must be byte for byte the same.
#[test]
fn another_tenants_domain_reads_exactly_as_an_absent_one() {
    let mut token = String::new();
    let target = Target::start_with(|config| token = operator_key(config));
    let api = Api::new(&target.server);
    let ok = |method: &str, path: &str, body: serde_json::Value| {
        let response = api.call(method, path, Some(&token), Some(body));
        assert!(response.status < 300, "{path}: {} {}", response.status, response.body);
        response.json()
    };
    ok("POST", "/api/v1/tenants", json!({"id": "b", "name": "B"}));
    ok("POST", "/api/v1/domains", json!({"name": "b.test", "tenant": "b"}));
    let created =
        ok("POST", "/api/v1/api-keys", json!({"name": "a", "scope": {"role": "tenant_admin", "tenant": "a"}}));
    let admin_a = created["token"].as_str().unwrap().to_string();
    // Same length, so that the answers can be compared byte for byte.
    // (as sent in the path, as typed): fullwidth letters are percent-encoded UTF-8.
    let pairs = [
        (("B.TEST", "B.TEST"), ("Z.TEST", "Z.TEST")),
        (("b.test.", "b.test."), ("z.test.", "z.test.")),
        (("%EF%BD%82.test", "\u{ff42}.test"), ("%EF%BD%9A.test", "\u{ff5a}.test")),
    ];
    for ((other_path, other), (absent_path, absent)) in pairs {
        for suffix in ["", "/dns"] {
            let get = |name: &str| {
                let response = api.call("GET", &format!("/api/v1/domains/{name}{suffix}"), Some(&admin_a), None);
                let headers: Vec<_> = response.headers.iter().filter(|(name, _)| name != "date").cloned().collect();
                (response.status, headers, response.body)
            };
            let (status_other, headers_other, body_other) = get(other_path);
            let (status_absent, headers_absent, body_absent) = get(absent_path);
            assert_eq!(status_other, 404);
            assert_eq!((status_other, &headers_other), (status_absent, &headers_absent), "{other} vs {absent}");
            assert_eq!(body_other.replace(other, absent), body_absent, "{other}{suffix} vs {absent}{suffix}");
        }
    }
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
}

/// Finding: HTTPS had no per-address connection cap: one address holding connections
/// (here idle, before their TLS handshake) took every slot of `http.connections_max`.
#[test]
fn one_address_cannot_take_every_https_connection() {
    let mut token = String::new();
    let target = Target::start_with(|config| {
        // 64 in all, 16 per address; a handshake may take 30 s, so that the attacker's
        // idle connections are not closed by the timeout while the honest client waits.
        set_config(
            config,
            "connections_max = 1024\n# Most connections from one client",
            "connections_max = 64\n# Most connections from one client",
        );
        set_config(config, "connections_per_ip_max = 128", "connections_per_ip_max = 16");
        set_config(config, "header_timeout_s = 10", "header_timeout_s = 30");
        token = operator_key(config);
    });
    let https = target.server.https[0];
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(stream) = connect_from("127.0.8.1", https) {
            held.push(stream);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    // The attacker's connections past the cap are closed at once.
    let mut closed = 0;
    for stream in &mut held {
        use std::io::Read;
        stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if matches!(stream.read(&mut [0u8; 1]), Ok(0)) {
            closed += 1;
        }
    }
    // Another address is served while they are held.
    let other = Api { source: "127.0.8.2".parse().unwrap(), ..Api::new(&target.server) };
    let (tx, rx) = std::sync::mpsc::channel();
    let token_clone = token.clone();
    std::thread::spawn(move || {
        let _ = tx.send(other.call("GET", "/api/v1/tenants", Some(&token_clone), None).status);
    });
    let status = rx.recv_timeout(PROBE);
    assert_eq!(status, Ok(200), "another address was not served while one held {} connections", held.len());
    assert!(closed >= 80, "only {closed} of the 100 connections from one address were refused");
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
    drop(held);
}

/// `http.header_bytes_max` under a flood: 16 clients from 4 addresses send request heads of
/// 1 MiB (16 times the bound) over TLS, one after the other as fast as the server answers,
/// for 6 seconds, while another address calls the API. The earlier test of the bound
/// (`serve::headers_past_their_bound_get_431`) sends one request at a time.
#[test]
fn a_flood_of_oversized_headers_leaves_the_api_serving() {
    let mut token = String::new();
    let target = Target::start_with(|config| token = operator_key(config));
    let https = target.server.https[0];
    let cert = target.server.cert.clone();
    let flood = Duration::from_secs(6);
    let started = Instant::now();
    let head = format!("GET /api/v1/tenants HTTP/1.1\r\nHost: localhost\r\nX-Padding: {}\r\n\r\n", "a".repeat(1 << 20));
    let head = std::sync::Arc::new(head.into_bytes());
    let attackers: Vec<_> = (0..16)
        .map(|i| {
            let (cert, head) = (cert.clone(), head.clone());
            let source: IpAddr = format!("127.0.10.{}", i % 4 + 1).parse().unwrap();
            std::thread::spawn(move || {
                // What each oversized request got: its status line, or "closed" when the
                // server closed the connection without one.
                let mut answers = Vec::new();
                while started.elapsed() < flood {
                    let answer = block_on(async {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let socket = tokio::net::TcpSocket::new_v4().unwrap();
                        socket.bind(SocketAddr::new(source, 0)).unwrap();
                        let Ok(tcp) = socket.connect(https).await else { return "no connection".to_string() };
                        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                        let Ok(mut tls) = crate::support::tls_connector(&cert).connect(name, tcp).await else {
                            return "no handshake".to_string();
                        };
                        // The server answers and closes before it has read the whole head.
                        let _ = tls.write_all(&head).await;
                        let mut response = Vec::new();
                        let _ = tokio::time::timeout(PROBE, tls.read_to_end(&mut response)).await;
                        let text = String::from_utf8_lossy(&response);
                        text.lines().next().filter(|line| !line.is_empty()).unwrap_or("closed").to_string()
                    });
                    answers.push(answer);
                }
                answers
            })
        })
        .collect();
    // The honest operator, from another address, all along.
    let api = Api { source: "127.0.10.9".parse().unwrap(), ..Api::new(&target.server) };
    let mut calls = Vec::new();
    while started.elapsed() < flood {
        let sent = Instant::now();
        let status = api.call("GET", "/api/v1/tenants", Some(&token), None).status;
        calls.push((status, sent.elapsed()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let answers: Vec<String> = attackers.into_iter().flat_map(|attacker| attacker.join().unwrap()).collect();
    let refused = answers.iter().filter(|answer| answer.starts_with("HTTP/1.1 431")).count();
    let slowest = calls.iter().map(|(_, took)| *took).max().unwrap_or_default();
    eprintln!(
        "{} oversized requests ({refused} answered 431), {} API calls, the slowest in {:.0} ms, peak RSS {} MiB",
        answers.len(),
        calls.len(),
        slowest.as_secs_f64() * 1000.0,
        target.peak_rss_kib() / 1024
    );
    assert!(answers.len() >= 64, "the flood did not flow: {} requests", answers.len());
    let other: Vec<&String> =
        answers.iter().filter(|answer| !answer.starts_with("HTTP/1.1 431") && *answer != "closed").collect();
    assert!(other.is_empty(), "oversized requests answered otherwise: {other:?}");
    assert!(refused * 2 >= answers.len(), "most oversized requests are told why: {refused} of {}", answers.len());
    assert!(calls.len() >= 10 && calls.iter().all(|(status, _)| *status == 200), "{calls:?}");
    assert!(slowest < PROBE, "an API call took {slowest:?}");
    target.assert_serving(PROBE);
    assert!(target.rss_kib() < 256 * 1024, "RSS {} MiB", rss_mib(&target));
}

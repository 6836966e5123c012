use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A certificate and its key.
struct Issued {
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl Issued {
    fn spki(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }
}

/// A CA, and a server certificate for `names` that it issued.
fn new_ca() -> (Issued, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).unwrap().der().clone();
    let issuer = Issuer::new(params, KeyPair::from_pem(&key.serialize_pem()).unwrap());
    (Issued { der, key }, issuer)
}

fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>) -> Issued {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).unwrap();
    let der = params.signed_by(&key, issuer).unwrap().der().clone();
    Issued { der, key }
}

fn self_signed(names: &[&str], expired: bool) -> Issued {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).unwrap();
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let der = params.self_signed(&key).unwrap().der().clone();
    Issued { der, key }
}

fn record(usage: u8, selector: u8, matching: u8, selected: &[u8]) -> Tlsa {
    let data = match matching {
        1 => Sha256::digest(selected).to_vec(),
        2 => Sha512::digest(selected).to_vec(),
        _ => selected.to_vec(),
    };
    Tlsa { usage, selector, matching, data }
}

/// What the verifier says of `chain` (leaf first) for the host `mx.remote.test`.
fn check(records: Vec<Tlsa>, chain: &[&Issued], expect: &str) {
    check_names(records, &["mx.remote.test"], chain, expect)
}

fn check_names(records: Vec<Tlsa>, names: &[&str], chain: &[&Issued], expect: &str) {
    let verifier = DaneVerifier::new(records, names.iter().map(|name| name.to_string()).collect());
    let intermediates: Vec<CertificateDer<'_>> = chain[1..].iter().map(|issued| issued.der.clone()).collect();
    let server_name = ServerName::try_from("sni.invalid").unwrap();
    let got = match verifier.verify_server_cert(&chain[0].der, &intermediates, &server_name, &[], UnixTime::now()) {
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    };
    assert!(got.contains(expect), "got {got:?}, expected {expect:?}");
}

#[test]
fn dane_ee() {
    let (ca, issuer) = new_ca();
    let server = leaf(&["mx.remote.test"], &issuer);
    let other = self_signed(&["mx.remote.test"], false);
    check(vec![record(3, 1, 1, &server.spki())], &[&server], "ok");
    check(vec![record(3, 1, 1, &server.spki())], &[&server, &ca], "ok");
    check(vec![record(3, 0, 1, &server.der)], &[&server], "ok");
    check(vec![record(3, 0, 0, &server.der)], &[&server], "ok");
    check(vec![record(3, 1, 2, &server.spki())], &[&server], "ok");
    check(vec![record(3, 1, 0, &server.spki())], &[&server], "ok");
    // One matching record among others is enough (RFC 7671 §5.4).
    check(vec![record(3, 1, 1, &other.spki()), record(3, 1, 1, &server.spki())], &[&server], "ok");
    check(
        vec![record(3, 1, 1, &other.spki())],
        &[&server],
        "other error: DANE: no TLSA record matches the certificate (3 1 1)",
    );
    check(vec![record(3, 0, 1, &other.der)], &[&server], "no TLSA record matches the certificate (3 0 1)");
    // The CA's key is not the server's: DANE-EE matches the leaf only.
    check(vec![record(3, 1, 1, &ca.spki())], &[&server, &ca], "no TLSA record matches the certificate (3 1 1)");
    // RFC 7672 §3.1.1: neither the name nor the dates matter.
    let expired = self_signed(&["somewhere.else"], true);
    check(vec![record(3, 1, 1, &expired.spki())], &[&expired], "ok");
}

#[test]
fn dane_ta() {
    let (ca, issuer) = new_ca();
    let server = leaf(&["mx.remote.test"], &issuer);
    check(vec![record(2, 1, 1, &ca.spki())], &[&server, &ca], "ok");
    check(vec![record(2, 0, 1, &ca.der)], &[&server, &ca], "ok");
    check(vec![record(2, 0, 2, &ca.der)], &[&server, &ca], "ok");
    // RFC 7672 §3.2.3: the name may be the TLSA base domain reached through a CNAME.
    check_names(vec![record(2, 1, 1, &ca.spki())], &["mx.cname.test", "mx.remote.test."], &[&server, &ca], "ok");
    check_names(
        vec![record(2, 1, 1, &ca.spki())],
        &["mx.other.test"],
        &[&server, &ca],
        "DANE: the certificate matches TLSA record 2 1 1, but the certificate names none of mx.other.test",
    );
    // The presented CA matches, but it did not issue the leaf.
    let (_, other_issuer) = new_ca();
    let forged = leaf(&["mx.remote.test"], &other_issuer);
    check(
        vec![record(2, 1, 1, &ca.spki())],
        &[&forged, &ca],
        "DANE: the certificate matches TLSA record 2 1 1, but the chain to it does not verify",
    );
    // The trust anchor must be presented (not the leaf alone), and a leaf is no anchor.
    check(vec![record(2, 1, 1, &ca.spki())], &[&server], "no TLSA record matches the certificate (2 1 1)");
    check(vec![record(2, 1, 1, &server.spki())], &[&server], "no TLSA record matches the certificate (2 1 1)");
}

#[test]
fn unusable_records_are_ignored() {
    let server = self_signed(&["mx.remote.test"], false);
    let spki = server.spki();
    // PKIX-TA(0) and PKIX-EE(1) are not for SMTP (RFC 7672 §3.1.3); unknown selectors and
    // matching types, and digests of the wrong length, can never match.
    let unusable = [
        record(1, 1, 1, &spki),
        record(0, 1, 1, &spki),
        record(4, 1, 1, &spki),
        record(3, 2, 1, &spki),
        record(3, 1, 3, &spki),
        Tlsa { usage: 3, selector: 1, matching: 1, data: Sha256::digest(&spki)[..31].to_vec() },
        Tlsa { usage: 3, selector: 1, matching: 2, data: Sha256::digest(&spki).to_vec() },
        Tlsa { usage: 3, selector: 1, matching: 0, data: Vec::new() },
    ];
    for record in &unusable {
        assert!(!record.is_usable(), "{record:?}");
        check(vec![record.clone()], &[&server], "other error: DANE: no usable TLSA record (DANE-TA or DANE-EE)");
    }
    let mut records = unusable.to_vec();
    records.push(record(3, 1, 1, &spki));
    check(records, &[&server], "ok");
}

#[test]
fn all_secure_needs_every_record_secure() {
    use hickory_resolver::proto::rr::Name;
    use hickory_resolver::proto::rr::rdata::A;
    let record = |proof: Proof| {
        let mut record =
            Record::from_rdata(Name::from_ascii("mx.remote.test.").unwrap(), 60, RData::A(A::new(127, 0, 0, 1)));
        record.proof = proof;
        record
    };
    assert!(all_secure(&[record(Proof::Secure), record(Proof::Secure)]));
    assert!(!all_secure(&[record(Proof::Secure), record(Proof::Insecure)]));
    assert!(!all_secure(&[record(Proof::Indeterminate)]));
    assert!(!all_secure(&[]));
}

/// A TLS server on a loopback port presenting `chain`, answering "ok" to each client.
async fn tls_server(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> SocketAddr {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let acceptor = tokio_rustls::TlsAcceptor::from(hameau_testkit::server_config(chain, key));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    address
}

/// A TLS handshake with `config`; what the server said, or the client's error.
async fn handshake(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> String {
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let server_name = ServerName::try_from("mx.remote.test").unwrap();
    match connector.connect(server_name, stream).await {
        Ok(mut tls) => {
            let mut said = String::new();
            tls.read_to_string(&mut said).await.unwrap();
            said
        }
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn handshakes() {
    let (ca, issuer) = new_ca();
    let server = leaf(&["mx.remote.test"], &issuer);
    let other = self_signed(&["mx.remote.test"], false);
    let address = tls_server(vec![server.der.clone(), ca.der.clone()], &server.key).await;
    let names = vec!["mx.remote.test".to_string()];
    let said = handshake(address, client_config(vec![record(3, 1, 1, &server.spki())], names.clone())).await;
    assert_eq!(said, "ok");
    let said = handshake(address, client_config(vec![record(2, 1, 1, &ca.spki())], names.clone())).await;
    assert_eq!(said, "ok");
    let said = handshake(address, client_config(vec![record(3, 1, 1, &other.spki())], names.clone())).await;
    assert!(said.contains("DANE: no TLSA record matches the certificate (3 1 1)"), "{said}");
    let said = handshake(address, client_config(vec![record(2, 1, 1, &ca.spki())], vec!["mx.other.test".into()])).await;
    assert!(said.contains("names none of mx.other.test"), "{said}");
    // The refusal can be told from other TLS errors (for TLS-RPT's `validation-failure`).
    let connector = tokio_rustls::TlsConnector::from(client_config(vec![record(3, 1, 1, &other.spki())], names));
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let error = connector.connect(ServerName::try_from("x.test").unwrap(), stream).await.err().unwrap();
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).unwrap();
    let rustls::Error::Other(OtherError(other)) = inner else { panic!("{inner:?}") };
    assert!(other.downcast_ref::<Mismatch>().is_some());
}

/// The zones of the DNS tests: `test` signed, delegating to the signed `remote.test` and
/// `broken.test` and to the unsigned `plain.test`.
fn zones(tlsa_hex: &str) -> Vec<(&'static str, String)> {
    vec![
        ("test", String::new()),
        (
            "remote.test",
            format!(
                "remote.test. 3600 IN MX 10 mx.remote.test.\nmx.remote.test. 3600 IN A 127.0.0.1\n\
                 _25._tcp.mx.remote.test. 3600 IN TLSA 3 1 1 {tlsa_hex}\n\
                 _25._tcp.mx2.remote.test. 3600 IN TLSA 1 1 1 {tlsa_hex}\n"
            ),
        ),
        (
            "plain.test",
            format!(
                "plain.test. 3600 IN MX 10 mx.plain.test.\nmx.plain.test. 3600 IN A 127.0.0.1\n\
                 _25._tcp.mx.plain.test. 3600 IN TLSA 3 1 1 {tlsa_hex}\n"
            ),
        ),
    ]
}

fn validating(port: u16, anchors: &std::path::Path) -> TokioResolver {
    let options = crate::dns::Options {
        resolvers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))],
        timeout_s: 2,
        trust_anchor_file: Some(anchors.to_path_buf()),
        ..Default::default()
    };
    options.check().unwrap();
    options.validating_resolver().unwrap()
}

#[tokio::test]
async fn lookups_against_a_signed_zone() {
    let dir = tempfile::tempdir().unwrap();
    let server = self_signed(&["mx.remote.test"], false);
    let digest = Sha256::digest(server.spki());
    let hex = hex::encode(digest);
    let (knot, anchors) = hameau_testkit::start_knot_signed(dir.path(), &zones(&hex), &["test", "remote.test"]);
    let resolver = validating(knot.port, &anchors);

    let found = tlsa(&resolver, "mx.remote.test", 25).await;
    assert_eq!(found, TlsaLookup::Secure(vec![Tlsa { usage: 3, selector: 1, matching: 1, data: digest.to_vec() }]));
    // A secure RRset with no usable record (PKIX-EE): TLS without authentication; no TLSA
    // at all: no DANE.
    assert_eq!(tlsa(&resolver, "mx2.remote.test.", 25).await, TlsaLookup::Unusable);
    assert_eq!(tlsa(&resolver, "mx3.remote.test", 25).await, TlsaLookup::None);
    // An unsigned zone (an insecure delegation): DANE does not apply.
    assert_eq!(tlsa(&resolver, "mx.plain.test", 25).await, TlsaLookup::None);
    assert_eq!(tlsa(&resolver, "mx.nowhere.plain.test", 25).await, TlsaLookup::None);

    let mx = resolver.mx_lookup("remote.test.").await.unwrap();
    assert!(all_secure(mx.answers()), "{:?}", mx.answers());
    let mx = resolver.mx_lookup("plain.test.").await.unwrap();
    assert!(!mx.answers().is_empty() && !all_secure(mx.answers()), "{:?}", mx.answers());

    // The handshake with the records found.
    let TlsaLookup::Secure(records) = found else { unreachable!() };
    let address = tls_server(vec![server.der.clone()], &server.key).await;
    let said = handshake(address, client_config(records, vec!["mx.remote.test".into()])).await;
    assert_eq!(said, "ok");

    // A trust anchor for another key: every signed answer is bogus.
    let text = std::fs::read_to_string(&anchors).unwrap();
    let wrong = dir.path().join("wrong-anchors");
    std::fs::write(&wrong, other_key(&text)).unwrap();
    let resolver = validating(knot.port, &wrong);
    let failed = tlsa(&resolver, "mx.remote.test", 25).await;
    assert_eq!(
        failed,
        TlsaLookup::Failed("the TLSA records of _25._tcp.mx.remote.test. do not validate (DNSSEC bogus)".into())
    );
    let mx = resolver.mx_lookup("remote.test.").await;
    assert!(!mx.is_ok_and(|mx| all_secure(mx.answers())));
    drop(knot);

    // No server answering: the lookup failed.
    let resolver = {
        let options = crate::dns::Options {
            resolvers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, hameau_testkit::free_port()))],
            timeout_s: 1,
            trust_anchor_file: Some(anchors.clone()),
            ..Default::default()
        };
        options.validating_resolver().unwrap()
    };
    let failed = tokio::time::timeout(Duration::from_secs(20), tlsa(&resolver, "mx.remote.test", 25)).await.unwrap();
    assert!(matches!(failed, TlsaLookup::Failed(_)), "{failed:?}");
}

/// The anchors of `text` with one base64 character of each key changed: a key of the right
/// length that signed nothing.
fn other_key(text: &str) -> String {
    text.lines()
        .map(|line| {
            let (head, key) = line.rsplit_once(' ').unwrap();
            let changed = if key.as_bytes()[10] == b'A' { "B" } else { "A" };
            format!("{head} {}{changed}{}\n", &key[..10], &key[11..])
        })
        .collect()
}

#[test]
fn trust_anchor_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: Option<&str>, expect: &str| {
        let path = dir.path().join("anchors");
        match text {
            Some(text) => std::fs::write(&path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        let options = crate::dns::Options { trust_anchor_file: Some(path), ..Default::default() };
        let got = match options.check() {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        assert!(got.contains(expect), "got {got:?}, expected {expect:?}");
    };
    let key = "test. 3600 IN DNSKEY 257 3 13 o18gUXwjK2ubLVJ0eOMRkDdHLGGgB0lRPmIVbhpbfyVdTvos/nMltfAeMuln6BQGSJmVet5KTVk3CMHg3hnEMg==\n";
    check(Some(key), "ok");
    check(None, "dns.trust_anchor_file: reading");
    check(Some(""), "dns.trust_anchor_file: ");
    check(Some("test. 3600 IN DS 45809 13 2 8bee3b3a\n"), "dns.trust_anchor_file: ");
    check(Some("this is not a zone file"), "dns.trust_anchor_file: ");
    let relative = crate::dns::Options { trust_anchor_file: Some("anchors".into()), ..Default::default() };
    assert!(relative.check().unwrap_err().to_string().contains("not an absolute path"));
}

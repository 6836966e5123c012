//! Client autoconfiguration against the real server (issue 12): two tenants, two domains;
//! the autoconfig XML validated with jing against the RELAX NG schema of
//! draft-ietf-mailmaint-autoconfig (tests/it/data/autoconfig.rnc), the JSON v2 answer field
//! by field, the Apple profile read by Python's plistlib, the MTA-STS policy, and a real
//! Thunderbird (Debian's ESR, headless, driven over marionette by
//! tests/it/thunderbird_autoconfig.py) running its own account-setup code on our autoconfig
//! and Autodiscover (POX) answers. An address that does not exist gets the answer one that
//! does gets. `scripts/test.sh` installs thunderbird, libnss3-tools and jing (Debian) and
//! marionette-driver (PyPI).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use hameau_testkit::TestCa;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{admin, block_on, config_path, init, set_config, start_server, tls_connector};

/// The server's host name in this test: what every answer must point clients to.
const HOST: &str = "mail.hameau.test";

/// One HTTPS request to `addr` for the virtual host `host`, TLS with the name `sni`; the
/// status, the headers (lower case names) and the body.
fn request(
    addr: SocketAddr,
    ca: &Path,
    sni: &str,
    host: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut bytes = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: text/xml; charset=utf-8\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes();
    let sni = sni.to_string();
    block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from(sni).unwrap();
        let mut tls = tls_connector(ca).connect(name, tcp).await.expect("TLS handshake");
        tls.write_all(&bytes).await.unwrap();
        bytes.clear();
        let _ = tls.read_to_end(&mut bytes).await;
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        let mut lines = head.lines();
        let status = lines.next().and_then(|line| line.split(' ').nth(1)).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        (status, headers, body.to_string())
    })
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers.iter().find(|(key, _)| key == name).map_or("", |(_, value)| value.as_str())
}

fn python() -> String {
    let venv = std::env::var("HOME").unwrap() + "/.cache/hameau-venv/bin/python";
    if Path::new(&venv).exists() { venv } else { "python3".to_string() }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/it/thunderbird_autoconfig.py")
}

/// Two tenants (a.test with user@a.test; b.test with no account), the server named
/// [`HOST`] with a certificate of `ca` for its names and each domain's client names.
fn setup(dir: &Path, ca: &TestCa) -> hameau_testkit::Server {
    let config = config_path(dir);
    set_config(&config, "hostname = \"localhost\"", &format!("hostname = \"{HOST}\""));
    let tls = dir.join("data/tls");
    let mut names = vec![HOST.to_string(), "localhost".to_string()];
    for domain in ["a.test", "b.test"] {
        for prefix in ["", "autoconfig.", "autodiscover.", "mta-sts."] {
            names.push(format!("{prefix}{domain}"));
        }
    }
    ca.issue(&tls, &names.iter().map(String::as_str).collect::<Vec<_>>());
    admin(
        &config,
        &[
            &["tenant", "create", "a", "--name", "Mairie de Saint-Martin"],
            &["tenant", "create", "b", "--name", "Commune d'Été"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["domain", "create", "b.test", "--tenant", "b"],
            &["account", "create", "user@a.test"],
        ],
    );
    start_server(&config)
}

#[test]
fn autoconfig_answers_validate_and_thunderbird_sets_up_both_tenants() {
    let dir = init();
    let ca = TestCa::new();
    let ca_path = ca.write_pem(dir.path());
    let server = setup(dir.path(), &ca);
    let https = server.https[0];
    let get = |host: &str, path: &str| request(https, &ca_path, host, host, "GET", path, "");

    // Thunderbird's autoconfig, for each tenant's domain, validated against the draft's schema.
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/it/data/autoconfig.rnc");
    for (domain, commune) in [("a.test", "Mairie de Saint-Martin"), ("b.test", "Commune d&apos;Été")] {
        let (status, headers, xml) = get(&format!("autoconfig.{domain}"), "/mail/config-v1.1.xml");
        assert_eq!(status, 200, "{xml}");
        assert_eq!(header(&headers, "content-type"), "application/xml; charset=utf-8");
        assert!(xml.contains(&format!("<displayName>{commune}</displayName>")), "{xml}");
        assert!(xml.contains(&format!("<hostname>{HOST}</hostname>")), "{xml}");
        let file = dir.path().join(format!("config-{domain}.xml"));
        std::fs::write(&file, &xml).unwrap();
        let jing = Command::new("jing").arg("-c").arg(&schema).arg(&file).output().expect("jing (Debian jing)");
        assert!(jing.status.success(), "{domain}: {}{}", String::from_utf8_lossy(&jing.stdout), xml);
        // Whether the address exists does not change a byte.
        let well_known = "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=";
        let exists = get(domain, &format!("{well_known}user%40a.test")).2;
        let absent = get(domain, &format!("{well_known}nobody%40{domain}")).2;
        if domain == "a.test" {
            assert_eq!(exists, xml);
        }
        assert_eq!(absent, xml);
    }
    // No certificate names an unknown domain: the client would stop at TLS; past it, 404.
    let (status, _, _) = request(https, &ca_path, HOST, "autoconfig.unknown.test", "GET", "/mail/config-v1.1.xml", "");
    assert_eq!(status, 404);

    // The JSON v2 lookup, field by field, for both tenants and for an absent address.
    for address in ["user@a.test", "nobody@a.test", "agent@b.test"] {
        let path = format!("/autodiscover/autodiscover.json/v1.0/{address}?Protocol=AutodiscoverV1");
        let (status, headers, body) = get("autodiscover.a.test", &path);
        assert_eq!(status, 200, "{body}");
        assert_eq!(header(&headers, "content-type"), "application/json; charset=utf-8");
        let json: Value = serde_json::from_str(&body).unwrap();
        let fields = json.as_object().unwrap();
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["Protocol", "Url"]);
        assert_eq!(fields["Protocol"], "AutodiscoverV1");
        assert_eq!(fields["Url"], format!("https://{HOST}/autodiscover/autodiscover.xml"));
    }
    let (status, _, body) =
        get("autodiscover.a.test", "/autodiscover/autodiscover.json?Email=user@a.test&Protocol=Ews");
    assert_eq!(status, 400);
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ErrorCode"], "InvalidProtocol");

    // The Apple profile, as plistlib reads it.
    let (status, headers, plist) = get(HOST, "/apple/mobileconfig?emailaddress=agent%40b.test");
    assert_eq!(status, 200, "{plist}");
    assert_eq!(header(&headers, "content-type"), "application/x-apple-aspen-config");
    let file = dir.path().join("b.mobileconfig");
    std::fs::write(&file, &plist).unwrap();
    let output = Command::new(python()).arg(script()).arg("plist").arg(&file).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let profile: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(profile["PayloadType"], "Configuration");
    assert_eq!(profile["PayloadDisplayName"], "Commune d'Été");
    let mail = &profile["PayloadContent"][0];
    assert_eq!(mail["PayloadType"], "com.apple.mail.managed");
    assert_eq!(mail["EmailAccountType"], "EmailTypeIMAP");
    assert_eq!(mail["EmailAddress"], "agent@b.test");
    assert_eq!(mail["IncomingMailServerHostName"], HOST);
    assert_eq!(mail["IncomingMailServerPortNumber"], 993);
    assert_eq!(mail["IncomingMailServerUseSSL"], true);
    assert_eq!(mail["IncomingMailServerUsername"], "agent@b.test");
    assert_eq!(mail["OutgoingMailServerHostName"], HOST);
    assert_eq!(mail["OutgoingMailServerPortNumber"], 465);
    assert_eq!(mail["OutgoingMailServerUseSSL"], true);
    assert_eq!(mail["OutgoingPasswordSameAsIncomingPassword"], true);
    assert!(mail.get("IncomingPassword").is_none(), "{mail}");

    // The MTA-STS policy of each domain, on its mta-sts. name only.
    let (status, headers, policy) = get("mta-sts.b.test", "/.well-known/mta-sts.txt");
    assert_eq!((status, header(&headers, "content-type")), (200, "text/plain; charset=utf-8"));
    assert_eq!(policy, format!("version: STSv1\nmode: enforce\nmx: {HOST}\nmax_age: 604800\n"));
    assert_eq!(get("b.test", "/.well-known/mta-sts.txt").0, 404);

    // A real Thunderbird: autoconfig and Exchange Autodiscover (POX), an existing address
    // of the first tenant and an absent one of the second.
    let output = Command::new(python())
        .arg(script())
        .args(["--https-port", &https.port().to_string(), "--ca", ca_path.to_str().unwrap()])
        .args(["--address", "user@a.test", "--address", "nobody@b.test"])
        .output()
        .expect("run the Thunderbird script");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "thunderbird_autoconfig.py failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 4, "{report:#}");
    for result in results {
        check_thunderbird(result, &report);
    }
}

/// What Thunderbird made of our answer: IMAP on 993 over TLS with the whole address as
/// login, then submission on 465 over TLS (autoconfig also lists 143 and 587 STARTTLS).
fn check_thunderbird(result: &Value, report: &Value) {
    let address = result["address"].as_str().unwrap();
    let method = result["method"].as_str().unwrap();
    assert!(result.get("error").is_none(), "{address} {method}: {report:#}");
    assert_eq!(result["complete"], true, "{result:#}");
    let server = |value: &Value, kind: &str, port: u16, socket: &str| {
        assert_eq!(value["type"], kind, "{address} {method}: {result:#}");
        assert_eq!(value["hostname"], HOST, "{result:#}");
        assert_eq!(value["port"], port, "{address} {method}: {result:#}");
        assert_eq!(value["socketType"], socket, "{address} {method}: {result:#}");
        // Thunderbird fills the variables of the outgoing alternatives only once chosen.
        let username = value["username"].as_str().unwrap();
        assert!(username == address || username == "%EMAILADDRESS%", "{result:#}");
        assert_eq!(value["auth"], "password-cleartext", "{result:#}");
    };
    server(&result["incoming"], "imap", 993, "SSL");
    server(&result["outgoing"], "smtp", 465, "SSL");
    assert_eq!(result["incoming"]["username"], address, "{result:#}");
    assert_eq!(result["outgoing"]["username"], address, "{result:#}");
    match method {
        "autoconfig" => {
            assert_eq!(result["source"], "xml", "{result:#}");
            assert_eq!(result["subSource"], "xml-from-isp-https", "{result:#}");
            server(&result["incomingAlternatives"][0], "imap", 143, "STARTTLS");
            server(&result["outgoingAlternatives"][0], "smtp", 587, "STARTTLS");
        }
        _ => {
            assert_eq!(result["source"], "exchange", "{result:#}");
            assert_eq!(result["subSource"], "exchange-from-url1", "autodiscover.DOMAIN over HTTPS: {result:#}");
            server(&result["outgoingAlternatives"][0], "smtp", 587, "STARTTLS");
        }
    }
}

//! The autoconfiguration answers in process (no sockets): two tenants, one account.

use axum::Router;
use axum::body::Body;
use hameau_directory::{
    AccountRole, Directory, NewAccount, NewDomain, NewTenant, Options as DirectoryOptions, Principal,
};
use hameau_queue::Queue;
use hameau_store::{Options as StoreOptions, Store};
use tower::ServiceExt;

use super::{PoxRequestError, pox_request_address};

const NOW: u64 = 1_795_000_000;

/// Tenant `a` ("Mairie de Saint-Martin", a.fr, with user@a.fr) and tenant `b` (a name
/// to escape, b.fr, no account); the server is mail.hameau.test.
async fn fixture() -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::rocksdb(dir.path())).await.unwrap();
    let directory = Directory::new(store.clone(), DirectoryOptions::default());
    let operator = Principal::Operator;
    for (id, name) in [("a", "Mairie de Saint-Martin"), ("b", "Commune d'Été & <Val>")] {
        let new = NewTenant {
            id: id.into(),
            name: name.into(),
            siren: None,
            insee: None,
            quota_bytes: None,
            accounts_max: None,
        };
        directory.create_tenant(&operator, new, NOW).await.unwrap();
    }
    for (domain, tenant) in [("a.fr", "a"), ("b.fr", "b")] {
        directory
            .create_domain(&operator, NewDomain { name: domain.into(), tenant: tenant.into() }, NOW)
            .await
            .unwrap();
    }
    let account = NewAccount {
        address: "user@a.fr".into(),
        display_name: "Agent".into(),
        password: None,
        quota_bytes: None,
        enabled: true,
        role: AccountRole::User,
    };
    directory.create_account(&operator, account, NOW).await.unwrap();
    let queue = Queue::new(store.clone(), hameau_queue::Limits::default());
    (dir, crate::router(crate::tests::state(store, directory, queue, "mail.hameau.test")))
}

/// One request: status, content type and body.
async fn call(router: &Router, method: &str, host: &str, path: &str, body: &str) -> (u16, String, String) {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .header("content-type", "text/xml; charset=utf-8")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|value| value.to_str().unwrap().to_string()).unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

fn pox_request(address: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Autodiscover \
         xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006\"><Request>\
         <EMailAddress>{address}</EMailAddress><AcceptableResponseSchema>\
         http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\
         </AcceptableResponseSchema></Request></Autodiscover>"
    )
}

const WELL_KNOWN: &str = "/.well-known/autoconfig/mail/config-v1.1.xml";

#[tokio::test]
async fn autoconfig_answers_imap_and_submission_for_each_tenant() {
    let (_dir, router) = fixture().await;
    let (status, content_type, xml) =
        call(&router, "GET", "a.fr", &format!("{WELL_KNOWN}?emailaddress=user%40a.fr"), "").await;
    assert_eq!((status, content_type.as_str()), (200, "application/xml; charset=utf-8"));
    for expected in [
        "<clientConfig version=\"1.1\">",
        "<emailProvider id=\"a.fr\">",
        "<domain>a.fr</domain>",
        "<displayName>Mairie de Saint-Martin</displayName>",
        "<incomingServer type=\"imap\">\n      <hostname>mail.hameau.test</hostname>\n      <port>993</port>\n      \
         <socketType>SSL</socketType>",
        "<port>143</port>\n      <socketType>STARTTLS</socketType>",
        "<outgoingServer type=\"smtp\">\n      <hostname>mail.hameau.test</hostname>\n      <port>465</port>\n      \
         <socketType>SSL</socketType>",
        "<port>587</port>\n      <socketType>STARTTLS</socketType>",
        "<username>%EMAILADDRESS%</username>",
        "<authentication>password-cleartext</authentication>",
    ] {
        assert!(xml.contains(expected), "{expected:?} missing from {xml}");
    }
    assert!(xml.find("<port>993</port>") < xml.find("<port>143</port>"), "993 first: {xml}");
    assert!(xml.find("<port>465</port>") < xml.find("<port>587</port>"), "465 first: {xml}");
    assert!(!xml.contains("user@a.fr"), "the answer names no address: {xml}");

    // The second tenant's domain, on autoconfig.DOMAIN without an address, its name escaped.
    let (status, _, xml) = call(&router, "GET", "autoconfig.b.fr", "/mail/config-v1.1.xml", "").await;
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<domain>b.fr</domain>"), "{xml}");
    assert!(xml.contains("<displayName>Commune d&apos;Été &amp; &lt;Val&gt;</displayName>"), "{xml}");
    // The same through the well-known path with the host's name only.
    let (status, _, xml_well_known) = call(&router, "GET", "autoconfig.b.fr:443", WELL_KNOWN, "").await;
    assert_eq!((status, xml_well_known), (200, xml));
}

#[tokio::test]
async fn autoconfig_answer_is_the_same_whether_the_address_exists() {
    let (_dir, router) = fixture().await;
    for path in [WELL_KNOWN, "/mail/config-v1.1.xml"] {
        let (_, _, exists) =
            call(&router, "GET", "autoconfig.a.fr", &format!("{path}?emailaddress=user@a.fr"), "").await;
        let (_, _, absent) =
            call(&router, "GET", "autoconfig.a.fr", &format!("{path}?emailaddress=nobody@a.fr"), "").await;
        assert_eq!(exists, absent, "{path}");
    }
    let (_, _, exists) =
        call(&router, "POST", "a.fr", "/autodiscover/autodiscover.xml", &pox_request("user@a.fr")).await;
    let (_, _, absent) =
        call(&router, "POST", "a.fr", "/autodiscover/autodiscover.xml", &pox_request("nobody@a.fr")).await;
    assert_eq!(exists, absent.replace("nobody@a.fr", "user@a.fr"));
    let json = "/autodiscover/autodiscover.json/v1.0/{}?Protocol=AutodiscoverV1";
    let (_, _, exists) = call(&router, "GET", "a.fr", &json.replace("{}", "user@a.fr"), "").await;
    let (_, _, absent) = call(&router, "GET", "a.fr", &json.replace("{}", "nobody@a.fr"), "").await;
    assert_eq!(exists, absent);
    let profile = "/apple/mobileconfig?emailaddress=";
    let (_, _, exists) = call(&router, "GET", "a.fr", &format!("{profile}user@a.fr"), "").await;
    let (_, _, absent) = call(&router, "GET", "a.fr", &format!("{profile}nobody@a.fr"), "").await;
    // Identical but for the address and the identifiers derived from it.
    let mask = |plist: &str| {
        let lines: Vec<&str> = plist.lines().collect();
        let mut masked = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let derived =
                i > 0 && matches!(lines[i - 1].trim(), "<key>PayloadUUID</key>" | "<key>PayloadIdentifier</key>");
            masked.push(if derived { "(derived)" } else { line });
        }
        masked.join("\n")
    };
    assert_eq!(mask(&exists), mask(&absent.replace("nobody@a.fr", "user@a.fr")));
}

#[tokio::test]
async fn unknown_domains_and_bad_requests_are_refused() {
    let (_dir, router) = fixture().await;
    for (method, host, path) in [
        ("GET", "a.fr", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=user@unknown.fr"),
        ("GET", "autoconfig.unknown.fr", "/mail/config-v1.1.xml"),
        ("GET", "autoconfig.unknown.fr", "/.well-known/autoconfig/mail/config-v1.1.xml"),
        // /mail/config-v1.1.xml is only autoconfig.DOMAIN's.
        ("GET", "a.fr", "/mail/config-v1.1.xml"),
        ("GET", "a.fr", "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=no-at-sign"),
        ("GET", "a.fr", "/apple/mobileconfig?emailaddress=user@unknown.fr"),
        ("GET", "a.fr", "/apple/mobileconfig"),
        ("GET", "mta-sts.unknown.fr", "/.well-known/mta-sts.txt"),
        ("GET", "a.fr", "/.well-known/mta-sts.txt"),
        ("GET", "a.fr", "/autodiscover/autodiscover.json/v1.0/user@unknown.fr?Protocol=AutodiscoverV1"),
    ] {
        let (status, _, body) = call(&router, method, host, path, "").await;
        assert_eq!(status, 404, "{method} {host}{path}: {body}");
    }
    let (status, _, _) =
        call(&router, "POST", "a.fr", "/autodiscover/autodiscover.xml", &pox_request("user@unknown.fr")).await;
    assert_eq!(status, 404);
    let long = format!("{}@a.fr", "x".repeat(super::EMAIL_BYTES_MAX));
    let (status, _, _) = call(&router, "GET", "a.fr", &format!("{WELL_KNOWN}?emailaddress={long}"), "").await;
    assert_eq!(status, 404);
    let big = pox_request(&format!("{}@a.fr", "x".repeat(crate::Options::default().autodiscover_request_bytes_max)));
    let (status, _, _) = call(&router, "POST", "a.fr", "/autodiscover/autodiscover.xml", &big).await;
    assert_eq!(status, 413);
    let (status, _, body) = call(&router, "POST", "a.fr", "/autodiscover/autodiscover.xml", "<nothing/>").await;
    assert_eq!(status, 400);
    assert!(body.contains("<ErrorCode>600</ErrorCode>"), "{body}");
}

#[tokio::test]
async fn pox_answer_carries_imap_and_smtp() {
    let (_dir, router) = fixture().await;
    for path in ["/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"] {
        let (status, content_type, xml) =
            call(&router, "POST", "autodiscover.b.fr", path, &pox_request("agent@b.fr")).await;
        assert_eq!((status, content_type.as_str()), (200, "text/xml; charset=utf-8"), "{xml}");
        for expected in [
            "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">",
            "<Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">",
            "<AccountType>email</AccountType>",
            "<Action>settings</Action>",
            "<Type>IMAP</Type>\n        <Server>mail.hameau.test</Server>\n        <Port>993</Port>",
            "<Type>SMTP</Type>\n        <Server>mail.hameau.test</Server>\n        <Port>465</Port>",
            "<Port>587</Port>",
            "<LoginName>agent@b.fr</LoginName>",
            "<Encryption>TLS</Encryption>",
        ] {
            assert!(xml.contains(expected), "{expected:?} missing from {xml}");
        }
    }
}

#[tokio::test]
async fn json_v2_points_to_the_pox_service() {
    let (_dir, router) = fixture().await;
    for path in [
        "/autodiscover/autodiscover.json/v1.0/agent@b.fr?Protocol=AutodiscoverV1",
        "/autodiscover/autodiscover.json?Email=agent%40b.fr&Protocol=autodiscoverv1",
        "/Autodiscover/Autodiscover.json/v1.0/user@a.fr?Protocol=AutodiscoverV1",
    ] {
        let (status, content_type, body) = call(&router, "GET", "autodiscover.b.fr", path, "").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json; charset=utf-8"), "{path}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 2, "{body}");
        assert_eq!(object["Protocol"], "AutodiscoverV1");
        assert_eq!(object["Url"], "https://mail.hameau.test/autodiscover/autodiscover.xml");
    }
    let (status, _, body) =
        call(&router, "GET", "a.fr", "/autodiscover/autodiscover.json/v1.0/user@a.fr?Protocol=Ews", "").await;
    assert_eq!(status, 400);
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["ErrorCode"], "InvalidProtocol");
    assert!(value["ErrorMessage"].as_str().unwrap().contains("'Ews'"), "{body}");
}

#[tokio::test]
async fn mobileconfig_and_mta_sts() {
    let (_dir, router) = fixture().await;
    let (status, content_type, plist) =
        call(&router, "GET", "a.fr", "/apple/mobileconfig?emailaddress=agent%40b.fr", "").await;
    assert_eq!((status, content_type.as_str()), (200, "application/x-apple-aspen-config"), "{plist}");
    for expected in [
        "<string>com.apple.mail.managed</string>",
        "<key>IncomingMailServerPortNumber</key>\n      <integer>993</integer>",
        "<key>OutgoingMailServerPortNumber</key>\n      <integer>465</integer>",
        "<key>EmailAddress</key>\n      <string>agent@b.fr</string>",
        "<string>Commune d&apos;Été &amp; &lt;Val&gt;</string>",
    ] {
        assert!(plist.contains(expected), "{expected:?} missing from {plist}");
    }
    assert!(!plist.contains("Password</key>\n      <string>"), "no password: {plist}");
    let (status, content_type, policy) = call(&router, "GET", "mta-sts.b.fr", "/.well-known/mta-sts.txt", "").await;
    assert_eq!((status, content_type.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(policy, "version: STSv1\nmode: enforce\nmx: mail.hameau.test\nmax_age: 604800\n");
}

#[test]
fn pox_request_parsing() {
    let check = |body: &str, expected: Result<&str, PoxRequestError>| {
        assert_eq!(pox_request_address(body.as_bytes()), expected.map(str::to_string), "{body}");
    };
    check(&pox_request("user@a.fr"), Ok("user@a.fr"));
    check(
        "<a:Autodiscover xmlns:a=\"x\"><a:Request><a:EMailAddress> user@a.fr </a:EMailAddress></a:Request></a:Autodiscover>",
        Ok("user@a.fr"),
    );
    check("<Autodiscover><Request><EMailAddress/></Request></Autodiscover>", Err(PoxRequestError::Invalid));
    check("<Autodiscover><Request></Request></Autodiscover>", Err(PoxRequestError::Invalid));
    check("<EMailAddress>user@a.fr", Err(PoxRequestError::Invalid));
    check("<EMailAddress>a@b.fr>x</EMailAddress>", Err(PoxRequestError::Invalid));
    check("<EMailAddress>jeanne.d'arc@a.fr</EMailAddress>", Ok("jeanne.d'arc@a.fr"));
    check("<EMailAddress>us&amp;er@a.fr</EMailAddress>", Err(PoxRequestError::Invalid));
    check("<EMailAddress>no-at</EMailAddress>", Err(PoxRequestError::Invalid));
    check(
        "<!DOCTYPE a [<!ENTITY e \"user@a.fr\">]><Autodiscover><EMailAddress>&e;</EMailAddress></Autodiscover>",
        Err(PoxRequestError::Invalid),
    );
    check(
        "<Autodiscover><Request><EMailAddress>user@a.fr</EMailAddress><AcceptableResponseSchema>\
         http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006\
         </AcceptableResponseSchema></Request></Autodiscover>",
        Err(PoxRequestError::WrongSchema),
    );
    assert_eq!(pox_request_address(b"\xff<EMailAddress>a@b</EMailAddress>"), Err(PoxRequestError::Invalid));
}

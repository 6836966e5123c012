//! Client autoconfiguration: what a mail client needs to set up an account from an
//! address and a password alone, for every domain of every tenant.
//!
//! - Thunderbird's autoconfig (draft-ietf-mailmaint-autoconfig, "clientConfig" 1.1) at
//!   `/.well-known/autoconfig/mail/config-v1.1.xml` and, on `autoconfig.DOMAIN`, at
//!   `/mail/config-v1.1.xml`.
//! - Outlook's Autodiscover: the POX answer of MS-OXDSCLI ("outlook" response schema
//!   2006a) at `/autodiscover/autodiscover.xml`, and the JSON v2 lookup
//!   (`/autodiscover/autodiscover.json`) that points to it.
//! - An Apple configuration profile (`.mobileconfig`, a `com.apple.mail.managed`
//!   payload) for iPhones and Macs. It is not signed: signing needs the certificate's
//!   private key and CMS, so the device shows it as "unsigned" (docs/clients.md says so).
//! - The MTA-STS policy (RFC 8461 §3.2) on `mta-sts.DOMAIN`.
//!
//! Domains are public (they are in DNS): an unknown domain is a 404. Addresses are not:
//! no answer looks an address up, so an address that does not exist gets the same answer
//! as one that does, and a request costs at most one read of the domain and one of its
//! tenant, whatever the local part.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hameau_directory::{Domain, Principal};
use serde::Deserialize;
use sha2::Digest;

use crate::AppState;

mod pox;

pub use pox::{EMAIL_BYTES_MAX, PoxRequestError, address_domain, pox_request_address};

/// The host name and the public ports clients connect to, as autoconfiguration
/// announces them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSettings {
    /// The server's host name (`[server] hostname`): the name its certificate carries.
    pub host: String,
    /// IMAP over TLS (RFC 8314), 993.
    pub imaps_port: u16,
    /// IMAP with STARTTLS, 143: the second choice.
    pub imap_port: u16,
    /// Submission over TLS (RFC 8314), 465.
    pub submissions_port: u16,
    /// Submission with STARTTLS (RFC 6409), 587.
    pub submission_port: u16,
}

impl ClientSettings {
    /// The standard ports of RFC 8314 and RFC 6409 on `host`.
    pub fn standard(host: &str) -> ClientSettings {
        ClientSettings {
            host: host.to_string(),
            imaps_port: 993,
            imap_port: 143,
            submissions_port: 465,
            submission_port: 587,
        }
    }
}

/// The routes of this module, merged into [`crate::router`].
/// `autodiscover_bytes_max`: `[http] autodiscover_request_bytes_max`, the largest POX body.
pub fn routes(autodiscover_bytes_max: usize) -> Router<AppState> {
    Router::new()
        .route("/.well-known/autoconfig/mail/config-v1.1.xml", get(autoconfig))
        .route("/mail/config-v1.1.xml", get(autoconfig_on_host))
        .route("/autodiscover/autodiscover.xml", post(autodiscover_pox))
        .route("/Autodiscover/Autodiscover.xml", post(autodiscover_pox))
        .route("/autodiscover/autodiscover.json", get(autodiscover_json_query))
        .route("/autodiscover/autodiscover.json/v1.0/{email}", get(autodiscover_json_path))
        .route("/Autodiscover/Autodiscover.json", get(autodiscover_json_query))
        .route("/Autodiscover/Autodiscover.json/v1.0/{email}", get(autodiscover_json_path))
        .route("/apple/mobileconfig", get(mobileconfig))
        .route("/.well-known/mta-sts.txt", get(mta_sts))
        .layer(DefaultBodyLimit::max(autodiscover_bytes_max))
}

/// The query of the autoconfig and profile URLs.
#[derive(Debug, Default, Deserialize)]
struct AddressQuery {
    emailaddress: Option<String>,
}

/// The query of the JSON v2 Autodiscover URLs (Exchange capitalises them).
#[derive(Debug, Default, Deserialize)]
struct JsonQuery {
    #[serde(rename = "Email", alias = "email")]
    email: Option<String>,
    #[serde(rename = "Protocol", alias = "protocol")]
    protocol: Option<String>,
}

/// `/.well-known/autoconfig/mail/config-v1.1.xml`: the domain is the address's, or else
/// the host's (`DOMAIN` or `autoconfig.DOMAIN`).
async fn autoconfig(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<AddressQuery>) -> Response {
    let domain_name = match &query.emailaddress {
        Some(address) => match address_domain(address) {
            Some(domain) => domain.to_string(),
            None => return not_found(),
        },
        None => match request_host(&headers) {
            Some(host) => host.strip_prefix("autoconfig.").unwrap_or(&host).to_string(),
            None => return not_found(),
        },
    };
    autoconfig_answer(&state, &domain_name).await
}

/// `/mail/config-v1.1.xml`, only on `autoconfig.*`. The address, when given, names the
/// domain: Thunderbird also asks the MX's parent domain's `autoconfig.` host with the
/// user's address.
async fn autoconfig_on_host(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<AddressQuery>,
) -> Response {
    let Some(host) = request_host(&headers) else { return not_found() };
    let Some(host_domain) = host.strip_prefix("autoconfig.") else { return not_found() };
    let domain_name = match &query.emailaddress {
        Some(address) => match address_domain(address) {
            Some(domain) => domain.to_string(),
            None => return not_found(),
        },
        None => host_domain.to_string(),
    };
    autoconfig_answer(&state, &domain_name).await
}

async fn autoconfig_answer(state: &AppState, domain_name: &str) -> Response {
    let Some(served) = served_domain(state, domain_name).await else { return not_found() };
    let xml = autoconfig_xml(&served.domain, &served.tenant_name, &state.client);
    ([(header::CONTENT_TYPE, "application/xml; charset=utf-8")], xml).into_response()
}

/// `POST /autodiscover/autodiscover.xml` (MS-OXDSCLI §2.2.3, §2.2.4): the IMAP and SMTP
/// settings. A request Outlook or Thunderbird sends carries Basic credentials; they are
/// not checked, so that this answer is no password oracle and reveals no account.
async fn autodiscover_pox(State(state): State<AppState>, body: Bytes) -> Response {
    if body.len() > state.options.autodiscover_request_bytes_max {
        return pox_error(StatusCode::PAYLOAD_TOO_LARGE, "600", "Invalid Request");
    }
    let address = match pox_request_address(&body) {
        Ok(address) => address,
        Err(PoxRequestError::WrongSchema) => {
            return pox_error(StatusCode::OK, "601", "Requested schema version not supported");
        }
        Err(PoxRequestError::Invalid) => return pox_error(StatusCode::BAD_REQUEST, "600", "Invalid Request"),
    };
    let Some(domain_name) = address_domain(&address) else {
        return pox_error(StatusCode::BAD_REQUEST, "600", "Invalid Request");
    };
    let Some(served) = served_domain(&state, domain_name).await else { return not_found() };
    let xml = pox_xml(&address, &served.tenant_name, &state.client);
    ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// `GET /autodiscover/autodiscover.json/v1.0/{email}?Protocol=…`.
async fn autodiscover_json_path(
    State(state): State<AppState>,
    Path(email): Path<String>,
    Query(query): Query<JsonQuery>,
) -> Response {
    autodiscover_json(&state, Some(email), query.protocol).await
}

/// `GET /autodiscover/autodiscover.json?Email=…&Protocol=…`.
async fn autodiscover_json_query(State(state): State<AppState>, Query(query): Query<JsonQuery>) -> Response {
    autodiscover_json(&state, query.email, query.protocol).await
}

/// The JSON v2 Autodiscover lookup: it answers only where the POX service is, for the
/// protocol `AutodiscoverV1`; Exchange answers other protocols (EWS, ActiveSync, REST)
/// this server does not speak with 400 and an `InvalidProtocol` error.
async fn autodiscover_json(state: &AppState, email: Option<String>, protocol: Option<String>) -> Response {
    let Some(email) = email else {
        return json_error(StatusCode::BAD_REQUEST, "InvalidUser", "An email address is required");
    };
    let protocol = protocol.unwrap_or_default();
    if !protocol.eq_ignore_ascii_case("AutodiscoverV1") {
        let mut shown: String = protocol.chars().take(64).collect();
        shown.retain(|c| !c.is_control());
        let message = format!("The given protocol value '{shown}' is invalid. Supported values are 'AutodiscoverV1'");
        return json_error(StatusCode::BAD_REQUEST, "InvalidProtocol", &message);
    }
    let Some(domain_name) = address_domain(&email) else {
        return json_error(StatusCode::BAD_REQUEST, "InvalidUser", "The email address is not valid");
    };
    if served_domain(state, domain_name).await.is_none() {
        return json_error(StatusCode::NOT_FOUND, "NotFound", "This server does not serve this domain");
    }
    let body = serde_json::json!({
        "Protocol": "AutodiscoverV1",
        "Url": format!("https://{}/autodiscover/autodiscover.xml", state.client.host),
    });
    ([(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

/// `GET /apple/mobileconfig?emailaddress=…`: an unsigned configuration profile.
async fn mobileconfig(State(state): State<AppState>, Query(query): Query<AddressQuery>) -> Response {
    let Some(address) = query.emailaddress else { return not_found() };
    let Some(domain_name) = address_domain(&address) else { return not_found() };
    let Some(served) = served_domain(&state, domain_name).await else { return not_found() };
    let address = format!("{}@{}", address.rsplit_once('@').map_or("", |(local, _)| local), served.domain.name);
    let plist = mobileconfig_plist(&address, &served.tenant_name, &state.client);
    let disposition = format!("attachment; filename=\"{}.mobileconfig\"", served.domain.name);
    (
        [
            (header::CONTENT_TYPE, "application/x-apple-aspen-config".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        plist,
    )
        .into_response()
}

/// `GET /.well-known/mta-sts.txt` on `mta-sts.DOMAIN` (RFC 8461 §3.2).
async fn mta_sts(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(host) = request_host(&headers) else { return not_found() };
    let Some(domain_name) = host.strip_prefix("mta-sts.") else { return not_found() };
    let Some(served) = served_domain(&state, domain_name).await else { return not_found() };
    let zone = hameau_directory::dns::zone(&served.domain, &state.dns);
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], zone.mta_sts_policy).into_response()
}

/// A domain this server serves, and its tenant's (commune's) name.
struct Served {
    domain: Domain,
    tenant_name: String,
}

/// The served domain named `name`, read as the operator (every tenant's); `None` when it
/// is unknown, or when the store fails (logged: the client then sets up by hand).
async fn served_domain(state: &AppState, name: &str) -> Option<Served> {
    if name.is_empty() || name.len() > EMAIL_BYTES_MAX {
        return None;
    }
    let domain = match state.directory.get_domain(&Principal::Operator, name).await {
        Ok(domain) => domain,
        Err(hameau_directory::Error::NotFound { .. }) => return None,
        Err(e) => {
            tracing::warn!(error = %e, "autoconfiguration: reading the domain failed");
            return None;
        }
    };
    let tenant_name = match state.directory.get_tenant(&Principal::Operator, &domain.tenant).await {
        Ok(tenant) => tenant.name,
        Err(e) => {
            tracing::warn!(error = %e, tenant = %domain.tenant, "autoconfiguration: reading the tenant failed");
            return None;
        }
    };
    Some(Served { domain, tenant_name })
}

/// The request's host name, lowercase, without its port (RFC 9110 §7.2).
fn request_host(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty() && name.len() <= EMAIL_BYTES_MAX).then(|| name.to_ascii_lowercase())
}

fn not_found() -> Response {
    crate::api::Problem::new(StatusCode::NOT_FOUND, "no such resource").into_response()
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "ErrorCode": code, "ErrorMessage": message });
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

/// XML character data and attribute values: the five predefined entities (XML 1.0 §4.6).
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The clientConfig 1.1 document (draft-ietf-mailmaint-autoconfig §"Data format"): IMAP
/// over TLS first, IMAP with STARTTLS second; submission over TLS first, STARTTLS second;
/// the login is the whole address (`%EMAILADDRESS%`, which the client fills in), so the
/// document names no address.
pub fn autoconfig_xml(domain: &Domain, tenant_name: &str, client: &ClientSettings) -> String {
    let host = xml_escape(&client.host);
    let name = xml_escape(tenant_name);
    let id = xml_escape(&domain.name);
    let server = |element: &str, kind: &str, port: u16, socket: &str| {
        format!(
            "    <{element} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      \
             <socketType>{socket}</socketType>\n      <authentication>password-cleartext</authentication>\n      \
             <username>%EMAILADDRESS%</username>\n    </{element}>\n"
        )
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n");
    xml.push_str(&format!("  <emailProvider id=\"{id}\">\n    <domain>{id}</domain>\n"));
    xml.push_str(&format!("    <displayName>{name}</displayName>\n    <displayShortName>{name}</displayShortName>\n"));
    xml.push_str(&server("incomingServer", "imap", client.imaps_port, "SSL"));
    xml.push_str(&server("incomingServer", "imap", client.imap_port, "STARTTLS"));
    xml.push_str(&server("outgoingServer", "smtp", client.submissions_port, "SSL"));
    xml.push_str(&server("outgoingServer", "smtp", client.submission_port, "STARTTLS"));
    xml.push_str("  </emailProvider>\n</clientConfig>\n");
    xml
}

/// The POX answer (MS-OXDSCLI §2.2.4, "outlook" response schema 2006a): an `email`
/// account whose IMAP and SMTP protocols each carry the server, the port, the login (the
/// address as asked) and the encryption (`SSL` implicit TLS, `TLS` STARTTLS).
pub fn pox_xml(address: &str, tenant_name: &str, client: &ClientSettings) -> String {
    let host = xml_escape(&client.host);
    let login = xml_escape(address);
    let protocol = |kind: &str, port: u16, encryption: &str| {
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        \
             <Port>{port}</Port>\n        <DomainRequired>off</DomainRequired>\n        \
             <LoginName>{login}</LoginName>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n        \
             <Encryption>{encryption}</Encryption>\n        <AuthRequired>on</AuthRequired>\n      </Protocol>\n"
        )
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    xml.push_str("<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n");
    xml.push_str(
        "  <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n",
    );
    xml.push_str(&format!("    <User>\n      <DisplayName>{}</DisplayName>\n    </User>\n", xml_escape(tenant_name)));
    xml.push_str("    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n");
    xml.push_str(&protocol("IMAP", client.imaps_port, "SSL"));
    xml.push_str(&protocol("SMTP", client.submissions_port, "SSL"));
    xml.push_str(&protocol("SMTP", client.submission_port, "TLS"));
    xml.push_str("    </Account>\n  </Response>\n</Autodiscover>\n");
    xml
}

/// A POX error answer (MS-OXDSCLI §2.2.4.1.1.1.3: 600 invalid request, 601 schema not
/// supported), without the time and id Exchange adds.
fn pox_error(status: StatusCode, code: &str, message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover \
         xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n  <Response>\n    \
         <Error>\n      <ErrorCode>{code}</ErrorCode>\n      <Message>{message}</Message>\n      \
         <DebugData />\n    </Error>\n  </Response>\n</Autodiscover>\n"
    );
    (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], xml).into_response()
}

/// A UUID-shaped identifier derived from `seed` (SHA-256, version 8 "custom", RFC 9562
/// §5.8): the same address gets the same profile identifiers, so installing a profile
/// again replaces it instead of adding a second account.
fn stable_uuid(seed: &str) -> String {
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode_upper(bytes);
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The configuration profile: a `Configuration` payload holding one
/// `com.apple.mail.managed` account, IMAP over TLS and submission over TLS, the login
/// the address, no password (the device asks for it).
pub fn mobileconfig_plist(address: &str, tenant_name: &str, client: &ClientSettings) -> String {
    let address_xml = xml_escape(address);
    let name = xml_escape(tenant_name);
    let host = xml_escape(&client.host);
    let reversed_host: Vec<&str> = client.host.rsplit('.').collect();
    let identifier = xml_escape(&format!("{}.mail", reversed_host.join(".")));
    let account_uuid = stable_uuid(&format!("hameau mail account {address}"));
    let profile_uuid = stable_uuid(&format!("hameau profile {address}"));
    let (imaps, submissions) = (client.imaps_port, client.submissions_port);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>EmailAccountDescription</key>
      <string>{name}</string>
      <key>EmailAccountType</key>
      <string>EmailTypeIMAP</string>
      <key>EmailAddress</key>
      <string>{address_xml}</string>
      <key>IncomingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>IncomingMailServerHostName</key>
      <string>{host}</string>
      <key>IncomingMailServerPortNumber</key>
      <integer>{imaps}</integer>
      <key>IncomingMailServerUseSSL</key>
      <true/>
      <key>IncomingMailServerUsername</key>
      <string>{address_xml}</string>
      <key>OutgoingMailServerAuthentication</key>
      <string>EmailAuthPassword</string>
      <key>OutgoingMailServerHostName</key>
      <string>{host}</string>
      <key>OutgoingMailServerPortNumber</key>
      <integer>{submissions}</integer>
      <key>OutgoingMailServerUseSSL</key>
      <true/>
      <key>OutgoingMailServerUsername</key>
      <string>{address_xml}</string>
      <key>OutgoingPasswordSameAsIncomingPassword</key>
      <true/>
      <key>PayloadDescription</key>
      <string>{address_xml}</string>
      <key>PayloadDisplayName</key>
      <string>{address_xml}</string>
      <key>PayloadIdentifier</key>
      <string>{identifier}.account.{account_uuid}</string>
      <key>PayloadType</key>
      <string>com.apple.mail.managed</string>
      <key>PayloadUUID</key>
      <string>{account_uuid}</string>
      <key>PayloadVersion</key>
      <integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key>
  <string>{name}: {address_xml}</string>
  <key>PayloadDisplayName</key>
  <string>{name}</string>
  <key>PayloadIdentifier</key>
  <string>{identifier}.{profile_uuid}</string>
  <key>PayloadOrganization</key>
  <string>{name}</string>
  <key>PayloadRemovalDisallowed</key>
  <false/>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>{profile_uuid}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
"#
    )
}

#[cfg(test)]
mod tests;

//! The server's one pushing task (RFC 8620 §7.2), and the sweep of expired uploads.
//!
//! - It loads every PushSubscription at start (`PushRegistry::load`), then follows the
//!   registry that `PushSubscription/set` keeps in step: one small task per account that
//!   has subscriptions, woken by the mail model's notifications (`Mail::subscribe`),
//!   POSTs a `StateChange` to each verified, unexpired subscription of the account, one
//!   after the other, each within `jmap.push_timeout_s`; a new subscription's
//!   `PushVerification` is POSTed at once.
//! - **No pushes into the server's own network (SSRF).** A push URL is `https`; its host is
//!   resolved at each push and the POST goes to an address that was checked: if any
//!   address of the host is loopback, private (RFC 1918, unique local), link-local,
//!   shared (100.64/10), multicast, unspecified or reserved, nothing is sent. Only
//!   `jmap.push_loopback_allowed` (tests) lets loopback addresses through, and plain `http`
//!   to them. Redirects are not followed; the answer's body is not read.
//! - A subscription with keys has each push encrypted to them (RFC 8291, `aes128gcm`).
//! - The answer to a push is only logged: a push service that refuses (404, 410) keeps
//!   its subscription until the client destroys it or it expires.
//!
//! Uploads expire here too: every [`UPLOAD_SWEEP_S`] the task removes those past
//! `jmap.upload_ttl_s` (`Mail::expire_uploads`) and gives back their quota.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, Uri, header};
use hameau_jmap::Limits;
use hameau_jmap::mail::{PushKeys, PushRegistry, Services};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{AppState, Clock};

/// How often expired uploads are looked for: 10 minutes; an upload lives
/// `jmap.upload_ttl_s` (an hour at least), so it is removed at most this late.
pub const UPLOAD_SWEEP_S: u64 = 600;

/// Expired uploads removed per store scan: the sweep scans again until fewer come back.
const UPLOAD_SWEEP_BATCH: usize = 1_000;

/// The `TTL` header of a push (RFC 8030 §5.2, which Web Push services require): a day; a
/// device that comes back later asks for the state anyway.
const PUSH_TTL_S: u64 = 86_400;

/// Runs the pushing task and the upload sweep until `shutdown`; then ends the EventSource
/// streams.
pub async fn run(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let services = state.jmap.clone();
    let registry = services.push.clone();
    match registry.load(&services.mail, services.limits.push_subscriptions_max).await {
        Ok(0) => {}
        Ok(loaded) => tracing::info!(loaded, "jmap push: subscriptions loaded"),
        Err(e) => tracing::error!(error = %e, "jmap push: the subscriptions could not be loaded; none is pushed to"),
    }
    let sender = Arc::new(Sender::new(&services.limits));
    let mut accounts: HashMap<u64, JoinHandle<()>> = HashMap::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(UPLOAD_SWEEP_S));
    loop {
        for verification in registry.take_verifications() {
            let sender = sender.clone();
            tokio::spawn(async move {
                if let Err(why) = sender.post(&verification.url, &verification.body, verification.keys.as_ref()).await {
                    tracing::info!(account = verification.account, why, "jmap push: a verification was not delivered");
                }
            });
        }
        follow(&mut accounts, &registry, &services, &sender, &state.clock);
        tokio::select! {
            () = registry.changed() => {}
            _ = sweep.tick() => sweep_uploads(&services, state.clock.now_s()).await,
            () = hameau_net::stopped(&mut shutdown) => break,
        }
    }
    state.jmap_in_flight.stop();
    for (_, task) in accounts {
        task.abort();
    }
}

/// One task per account with subscriptions: started for new ones, ended for those left
/// without.
fn follow(
    accounts: &mut HashMap<u64, JoinHandle<()>>,
    registry: &Arc<PushRegistry>,
    services: &Arc<Services>,
    sender: &Arc<Sender>,
    clock: &Arc<dyn Clock>,
) {
    let wanted = registry.accounts();
    accounts.retain(|account, task| {
        let keep = wanted.contains(account) && !task.is_finished();
        if !keep {
            task.abort();
        }
        keep
    });
    for account in wanted {
        if accounts.contains_key(&account) {
            continue;
        }
        let (services, sender, clock) = (services.clone(), sender.clone(), clock.clone());
        accounts.insert(account, tokio::spawn(push_account(account, services, sender, clock)));
    }
}

/// Pushes the account's state changes to its verified subscriptions.
async fn push_account(account: u64, services: Arc<Services>, sender: Arc<Sender>, clock: Arc<dyn Clock>) {
    let mut changes = match services.mail.subscribe(account).await {
        Ok(changes) => changes,
        Err(e) => {
            // The task ends; the next look at the registry starts it again.
            tracing::warn!(account, error = %e, "jmap push: cannot watch the account's changes");
            return;
        }
    };
    let debounce = Duration::from_millis(services.limits.push_debounce_ms);
    while changes.changed().await.is_ok() {
        if !debounce.is_zero() {
            tokio::time::sleep(debounce).await;
        }
        let state = changes.mark_seen();
        for target in services.push.targets(account, clock.now_s()) {
            let Some(change) = hameau_jmap::mail::state_change(account, state, target.types.as_deref()) else {
                continue;
            };
            if let Err(why) = sender.post(&target.url, &change, target.keys.as_ref()).await {
                tracing::info!(account, subscription = target.id, why, "jmap push: a state change was not delivered");
            }
        }
    }
}

async fn sweep_uploads(services: &Services, now: u64) {
    loop {
        match services.mail.expire_uploads(now, UPLOAD_SWEEP_BATCH).await {
            Ok(removed) if removed > 0 => {
                tracing::info!(removed, "jmap: expired uploads removed");
                if removed < UPLOAD_SWEEP_BATCH as u64 {
                    return;
                }
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "jmap: the upload sweep failed; it runs again later");
                return;
            }
        }
    }
}

/// POSTs JSON to push URLs.
struct Sender {
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    loopback_allowed: bool,
}

impl Sender {
    fn new(limits: &Limits) -> Sender {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(certificate);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
            .unwrap_or_else(|_| {
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        Sender {
            tls: Arc::new(tls),
            timeout: Duration::from_secs(limits.push_timeout_s),
            loopback_allowed: limits.push_loopback_allowed,
        }
    }

    /// One POST of `body` to `url`, within the timeout, encrypted to `keys` when the
    /// subscription has them (RFC 8291); the status if it was 2xx.
    async fn post(&self, url: &str, body: &Value, keys: Option<&PushKeys>) -> Result<(), String> {
        let json = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let payload = match keys {
            Some(keys) => Payload { bytes: Bytes::from(keys.encrypt(&json)?), encrypted: true },
            None => Payload { bytes: Bytes::from(json), encrypted: false },
        };
        match tokio::time::timeout(self.timeout, self.exchange(url, payload)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }

    async fn exchange(&self, url: &str, payload: Payload) -> Result<(), String> {
        let uri: Uri = url.parse().map_err(|e| format!("the URL does not read: {e}"))?;
        let host = uri.host().ok_or("the URL has no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.loopback_allowed => false,
            _ => return Err("a push URL must be https".into()),
        };
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = self.address(&host, port, https).await?;
        let tcp = TcpStream::connect(address).await.map_err(|e| format!("connecting to {address}: {e}"))?;
        let path = uri.path_and_query().map_or("/", |path| path.as_str()).to_string();
        let authority = uri.authority().map_or(host.clone(), |authority| authority.to_string());
        if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("host name: {e}"))?;
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}: {e}"))?;
            send(tls, &authority, &path, payload).await
        } else {
            send(tcp, &authority, &path, payload).await
        }
    }

    /// The address to connect to: every address of `host` must be one a push may reach.
    async fn address(&self, host: &str, port: u16, https: bool) -> Result<SocketAddr, String> {
        let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                tokio::net::lookup_host((host, port)).await.map_err(|e| format!("resolving {host}: {e}"))?.collect()
            }
        };
        if addresses.is_empty() {
            return Err(format!("{host} has no address"));
        }
        for address in &addresses {
            let ip = address.ip();
            let loopback = self.loopback_allowed && ip.is_loopback();
            if !(loopback || (https && is_public(ip))) {
                return Err(format!("{host} resolves to {ip}, which a push may not reach"));
            }
        }
        Ok(addresses[0])
    }
}

/// What a push POSTs: the JSON, or its RFC 8291 encryption (`Content-Encoding: aes128gcm`).
struct Payload {
    bytes: Bytes,
    encrypted: bool,
}

/// One HTTP/1.1 POST on `io`: success on a 2xx status; the body is not read.
async fn send<IO>(io: IO, authority: &str, path: &str, payload: Payload) -> Result<(), String>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let connection = tokio::spawn(connection);
    let mut request = Request::post(path)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "Hameau")
        .header(header::CONNECTION, "close")
        .header("ttl", PUSH_TTL_S);
    request = if payload.encrypted {
        request.header(header::CONTENT_TYPE, "application/octet-stream").header(header::CONTENT_ENCODING, "aes128gcm")
    } else {
        request.header(header::CONTENT_TYPE, "application/json; charset=utf-8")
    };
    let request = request.body(Full::new(payload.bytes)).map_err(|e| format!("making the request: {e}"))?;
    let answer = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"));
    connection.abort();
    let status = answer?.status();
    if status.is_success() { Ok(()) } else { Err(format!("HTTP status {status}")) }
}

/// Whether `ip` is an address of the public internet (not loopback, private, link-local,
/// shared, multicast, documentation or reserved).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || a >= 240
        // Shared address space (RFC 6598), IETF protocol assignments, benchmarking.
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10), documentation (2001:db8::/32),
        // NAT64 and IPv4-compatible forms that could hide an internal IPv4 address.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b)
        || first == 0)
}

#[cfg(test)]
mod tests {
    use super::is_public;

    #[test]
    fn pushes_reach_public_addresses_only() {
        for public in ["93.184.216.34", "2a00:1450:4007:80e::200e", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
    }
}

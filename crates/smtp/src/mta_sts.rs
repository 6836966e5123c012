//! MTA-STS (RFC 8461), the sender's side: whether a destination domain requires TLS with a
//! valid certificate, and to which MX hosts.
//!
//! [`MtaSts::lookup`] does the discovery of §5.1: the `_mta-sts.<domain>` TXT record gives a
//! policy id; a cached policy with that id is used as it is; otherwise the policy is fetched
//! from `https://mta-sts.<domain>/.well-known/mta-sts.txt` (§3.3) with our own small HTTPS
//! client (hyper over tokio-rustls: no redirects, status 200 only, `text/plain` only, a
//! bounded body, one deadline for the whole fetch, the certificate verified for
//! `mta-sts.<domain>`), parsed ([`Policy::parse`], in `mta_sts/policy.rs`, which the fuzz
//! target `mta_sts_policy` includes) and cached for its `max_age`.
//!
//! What the answer means for delivery ([`Lookup`]) is the caller's: with [`Mode::Enforce`]
//! only matching MX hosts ([`Policy::matches`]) over verified TLS; with [`Mode::Testing`]
//! as without policy, reporting failures (TLS-RPT, RFC 8460).
//!
//! Decisions:
//! - A policy body over [`Options::policy_bytes_max`] is `sts-policy-invalid` (the host
//!   answered, and what it serves is not a policy we take), as is a body that is not
//!   `text/plain` (§3.2: "senders SHOULD validate that the media type is text/plain") or
//!   does not parse; everything that keeps us from reading a body (DNS, TCP, TLS and the
//!   certificate, HTTP status other than 200, the deadline) is `sts-policy-fetch-error`.
//! - A `mode: none` policy is cached like any other (it is how a domain withdraws an
//!   enforced one, §8.3) and gives [`Lookup::None`].
//! - A TXT lookup that fails (SERVFAIL, timeout) is treated as no record: the cached
//!   policy if any, else no policy. A malformed TXT record, or more than one that starts
//!   with `v=STSv1`, means no policy (§3.1).
//! - The cache is refreshed only when a delivery asks after the policy expired or the id
//!   changed; there is no background refresh (§10.2 suggests one; the one-year `max_age`
//!   of most policies makes the difference small).

mod policy;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use policy::{MAX_AGE_S_MAX, Mode, Policy, is_sts_record, parse_txt};

/// TLS-RPT result type (RFC 8460 §4.3.2.2) of a policy that could not be fetched.
pub const RESULT_FETCH_ERROR: &str = "sts-policy-fetch-error";
/// TLS-RPT result type (RFC 8460 §4.3.2.2) of a fetched policy that is not valid.
pub const RESULT_INVALID: &str = "sts-policy-invalid";

/// The MTA-STS settings of outbound delivery (part of the `[outbound]` section).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The policy host's HTTPS port: 443, as RFC 8461 §3.3's `https://` URL implies; tests
    /// set the port of their own server.
    pub port: u16,
    /// The whole fetch: resolving `mta-sts.<domain>`, connecting, the TLS handshake and
    /// the whole response. 10 s: a delivery waits on it, a policy host slower than that is
    /// failing anyway, and a failed fetch without a cached policy only means opportunistic
    /// TLS this time (RFC 8461 §5), the same as a policy host that is down.
    pub fetch_timeout: Duration,
    /// The largest policy body read. 64 KiB: RFC 8461 §3.3 suggests senders bound it
    /// ("a maximum of 64 kilobytes"); real policies are a few hundred bytes.
    pub policy_bytes_max: usize,
    /// Domains whose policy is kept; past it, the policy cached longest ago is dropped.
    /// 10,000: a commune's mail goes to a few hundred domains, and an entry is a few
    /// hundred bytes, so the cache stays within a few MiB.
    pub cache_entries_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 443,
            fetch_timeout: Duration::from_secs(10),
            policy_bytes_max: 64 * 1024,
            cache_entries_max: 10_000,
        }
    }
}

/// What delivery to a domain must do, as the policy lookup decided.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// No policy (no TXT record, or mode `none`): opportunistic TLS.
    None,
    /// A valid policy of mode `enforce` or `testing`, fresh or from the cache.
    Policy(Arc<Policy>),
    /// A TXT record says a policy exists but none could be fetched and none is cached:
    /// deliver as without policy (RFC 8461 §5), and report the failure. `result_type` is
    /// [`RESULT_FETCH_ERROR`] or [`RESULT_INVALID`]; `why` is one line for the log and the
    /// report.
    FetchFailed { result_type: &'static str, why: String },
}

/// The policy cache and fetcher, cheap to clone (shared by the delivery worker's tasks).
/// Concurrent lookups of one domain may both fetch; the cache stays within
/// `Options::cache_entries_max`.
#[derive(Clone)]
pub struct MtaSts {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    tls: TlsConnector,
    cache: Mutex<Cache>,
    /// Where fetched policies are kept across restarts (RFC 8461 §5: a policy is trusted
    /// on first use; one forgotten at each restart would let whoever blocks its fetch at
    /// that moment strip TLS). `None` in memory only.
    store: Option<hameau_store::Store>,
}

/// A policy as kept in the store under [`STORE_PREFIX`] + domain: its body is parsed again
/// when read.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    id: String,
    expires_s: u64,
    body: String,
}

/// The store's keys for MTA-STS policies: `mta-sts/` + domain (lowercase, no final dot).
pub const STORE_PREFIX: &[u8] = b"mta-sts/";

/// Policies by domain, and the order they were stored in (for eviction).
#[derive(Default)]
struct Cache {
    by_domain: HashMap<String, Cached>,
    by_age: BTreeMap<u64, String>,
    next_seq: u64,
}

struct Cached {
    id: String,
    policy: Arc<Policy>,
    expires_s: u64,
    seq: u64,
}

/// Why a policy could not be had.
struct Failure {
    result_type: &'static str,
    why: String,
}

/// What the `_mta-sts` TXT lookup found.
enum Txt {
    /// One MTA-STS record, with this id.
    Id(String),
    /// None usable, and why (for the log).
    None(String),
}

/// RFC 8461 §3.3: "the path of the policy is `/.well-known/mta-sts.txt`".
const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
const USER_AGENT_VALUE: &str = "Hameau (MTA-STS, RFC 8461)";
/// Enough for every error of ours and a certificate error naming a few host names.
const WHY_CHARS_MAX: usize = 400;

impl std::fmt::Debug for MtaSts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtaSts").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

impl MtaSts {
    /// `tls` verifies the policy hosts' certificates (WebPKI roots in service; tests give
    /// one that trusts their own CA).
    pub fn new(options: Options, tls: Arc<rustls::ClientConfig>) -> MtaSts {
        MtaSts::with_store(options, tls, None)
    }

    /// As [`MtaSts::new`], the policies also kept in `store` (read back after a restart).
    pub fn with_store(options: Options, tls: Arc<rustls::ClientConfig>, store: Option<hameau_store::Store>) -> MtaSts {
        let inner = Inner { options, tls: TlsConnector::from(tls), cache: Mutex::new(Cache::default()), store };
        MtaSts { inner: Arc::new(inner) }
    }

    /// The unexpired policy of `domain` kept in the store, put back in the memory cache;
    /// an expired or unreadable one is removed.
    async fn load(&self, domain: &str, now_s: u64) -> Option<(String, Arc<Policy>)> {
        let store = self.inner.store.as_ref()?;
        let key = [STORE_PREFIX, domain.as_bytes()].concat();
        let entry = match store.get(&key).await {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!(domain, error = %e, "MTA-STS: the kept policy cannot be read");
                return None;
            }
        };
        let policy = serde_json::from_slice::<Stored>(&entry.value)
            .ok()
            .filter(|stored| stored.expires_s > now_s)
            .and_then(|stored| Some((Policy::parse(stored.body.as_bytes()).ok()?, stored)));
        let Some((policy, stored)) = policy else {
            let mut batch = hameau_store::Batch::new();
            batch.expect_version(&key, entry.version).delete(&key);
            let _ = store.commit(batch).await;
            return None;
        };
        let policy = Arc::new(policy);
        self.remember(domain, stored.id.clone(), policy.clone(), stored.expires_s);
        Some((stored.id, policy))
    }

    /// Keeps a fetched policy in the store until `expires_s`.
    async fn keep(&self, domain: &str, id: &str, body: &[u8], expires_s: u64) {
        let Some(store) = &self.inner.store else { return };
        let key = [STORE_PREFIX, domain.as_bytes()].concat();
        let stored = Stored { id: id.to_string(), expires_s, body: String::from_utf8_lossy(body).into_owned() };
        let mut batch = hameau_store::Batch::new();
        batch.set(&key, &serde_json::to_vec(&stored).expect("a policy always serialises"));
        if let Err(e) = store.commit(batch).await {
            tracing::warn!(domain, error = %e, "MTA-STS: the policy cannot be kept in the store");
        }
    }

    /// RFC 8461 §5.1: the policy of `domain` at `now_s` (Unix seconds), from the cache
    /// when its id is still the published one, else fetched and cached. A fetch failure
    /// keeps an unexpired cached policy, and so does a TXT record that went away (§5.1:
    /// "if no 'live' policy can be discovered via DNS or fetched via HTTPS, but a valid
    /// (non-expired) policy exists in the sender's cache, the sender MUST apply that
    /// cached policy").
    pub async fn lookup(&self, resolver: &TokioResolver, domain: &str, now_s: u64) -> Lookup {
        let domain = domain.strip_suffix('.').unwrap_or(domain).to_ascii_lowercase();
        let policy_host = format!("mta-sts.{domain}");
        // A name we could not even ask for (an address literal, junk) has no policy.
        let Ok(server_name) = ServerName::try_from(policy_host.clone()) else { return Lookup::None };
        if !matches!(server_name, ServerName::DnsName(_)) {
            return Lookup::None;
        }
        let cached = match self.cached(&domain, now_s) {
            Some(cached) => Some(cached),
            None => self.load(&domain, now_s).await,
        };
        let id = match txt_id(resolver, &domain).await {
            Txt::Id(id) => id,
            Txt::None(why) => {
                tracing::debug!(domain, why, "no MTA-STS record");
                return cached.map_or(Lookup::None, |(_, policy)| applied(policy));
            }
        };
        if let Some((cached_id, policy)) = &cached
            && *cached_id == id
        {
            return applied(policy.clone());
        }
        let fetched = self.fetch(resolver, &policy_host, server_name).await.and_then(|body| {
            let policy = Policy::parse(&body).map_err(|why| Failure {
                result_type: RESULT_INVALID,
                why: format!("the policy at https://{policy_host}{POLICY_PATH} is invalid: {why}"),
            })?;
            Ok((policy, body))
        });
        match (fetched, cached) {
            (Ok((policy, body)), _) => {
                tracing::debug!(domain, id, mode = ?policy.mode, max_age_s = policy.max_age_s, "MTA-STS policy fetched");
                let policy = Arc::new(policy);
                let expires_s = now_s.saturating_add(policy.max_age_s);
                self.remember(&domain, id.clone(), policy.clone(), expires_s);
                if policy.max_age_s > 0 {
                    self.keep(&domain, &id, &body, expires_s).await;
                }
                applied(policy)
            }
            (Err(failure), Some((_, policy))) => {
                tracing::warn!(domain, id, why = failure.why, "MTA-STS policy not renewed; the cached one still holds");
                applied(policy)
            }
            (Err(Failure { result_type, why }), None) => Lookup::FetchFailed { result_type, why },
        }
    }

    /// The unexpired cached policy of `domain` and its id; an expired one is dropped.
    fn cached(&self, domain: &str, now_s: u64) -> Option<(String, Arc<Policy>)> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = cache.by_domain.get(domain)?;
        if entry.expires_s > now_s {
            return Some((entry.id.clone(), entry.policy.clone()));
        }
        let seq = entry.seq;
        cache.by_domain.remove(domain);
        cache.by_age.remove(&seq);
        None
    }

    /// Caches a policy in memory until `expires_s`, in place of the domain's previous one; a
    /// policy already expired (`max_age` 0) only removes the previous one.
    fn remember(&self, domain: &str, id: String, policy: Arc<Policy>, expires_s: u64) {
        let entries_max = self.inner.options.cache_entries_max;
        let mut cache = self.inner.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = cache.by_domain.remove(domain) {
            cache.by_age.remove(&previous.seq);
        }
        if policy.max_age_s == 0 || entries_max == 0 {
            return;
        }
        let seq = cache.next_seq;
        cache.next_seq += 1;
        cache.by_age.insert(seq, domain.to_string());
        cache.by_domain.insert(domain.to_string(), Cached { id, policy, expires_s, seq });
        while cache.by_domain.len() > entries_max {
            let Some((_, oldest)) = cache.by_age.pop_first() else { break };
            cache.by_domain.remove(&oldest);
        }
    }

    /// Fetches the policy body from `policy_host` within `Options::fetch_timeout`.
    async fn fetch(
        &self,
        resolver: &TokioResolver,
        policy_host: &str,
        server_name: ServerName<'static>,
    ) -> Result<Vec<u8>, Failure> {
        let options = &self.inner.options;
        let fetching = async {
            let tcp = connect(resolver, policy_host, options.port).await?;
            let tls = self.inner.tls.connect(server_name, tcp).await.map_err(|e| fetch_error(format!("TLS: {e}")))?;
            get(tls, policy_host, options.policy_bytes_max).await
        };
        let result = match tokio::time::timeout(options.fetch_timeout, fetching).await {
            Ok(result) => result,
            Err(_) => Err(fetch_error(format!("no whole answer within {} s", options.fetch_timeout.as_secs_f32()))),
        };
        result.map_err(|Failure { result_type, why }| Failure {
            result_type,
            why: format!("fetching https://{policy_host}{POLICY_PATH}: {}", bounded(&why)),
        })
    }
}

/// The id of the domain's one MTA-STS TXT record (RFC 8461 §3.1).
async fn txt_id(resolver: &TokioResolver, domain: &str) -> Txt {
    let name = format!("_mta-sts.{domain}.");
    let lookup = match resolver.txt_lookup(name.as_str()).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => return Txt::None(format!("no TXT record at {name}")),
        Err(e) => return Txt::None(format!("looking up TXT {name}: {e}")),
    };
    // A TXT record is a list of strings, read as their concatenation (RFC 7208 §3.3 does
    // the same for SPF; RFC 8461 is silent).
    let records: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|answer| match &answer.data {
            RData::TXT(txt) => Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect()),
            _ => None,
        })
        .filter(|text: &String| is_sts_record(text))
        .collect();
    // RFC 8461 §3.1: "If the number of resulting records is not one, or if the resulting
    // record is syntactically invalid, senders MUST assume the recipient domain does not
    // have an available MTA-STS policy."
    match records.as_slice() {
        [] => Txt::None(format!("no v=STSv1 TXT record at {name}")),
        [record] => match parse_txt(record) {
            Ok(id) => Txt::Id(id),
            Err(why) => Txt::None(format!("TXT {name}: {why}")),
        },
        _ => Txt::None(format!("{} v=STSv1 TXT records at {name}", records.len())),
    }
}

/// A TCP connection to the first of `host`'s addresses that answers, in the resolver's
/// order. There is no deadline per address: an address that never answers uses up the
/// whole fetch's, and the fetch fails (a policy host is rarely more than one address).
async fn connect(resolver: &TokioResolver, host: &str, port: u16) -> Result<TcpStream, Failure> {
    let addresses: Vec<IpAddr> = match resolver.lookup_ip(format!("{host}.")).await {
        Ok(lookup) => lookup.iter().collect(),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
        Err(e) => return Err(fetch_error(format!("looking up {host}: {e}"))),
    };
    let mut last_error = format!("{host} has no address");
    for address in addresses {
        match TcpStream::connect((address, port)).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = format!("connecting to {address} port {port}: {e}"),
        }
    }
    Err(fetch_error(last_error))
}

/// One HTTP/1.1 GET of the policy over `tls`: status 200 (RFC 8461 §3.3: "the HTTP GET
/// request MUST NOT follow redirects"), `text/plain`, at most `bytes_max` of body (reading
/// stops past it). The response head is bounded by hyper (its read buffer, 400 KiB, and
/// 100 header lines).
async fn get(tls: TlsStream<TcpStream>, host: &str, bytes_max: usize) -> Result<Vec<u8>, Failure> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
        .await
        .map_err(|e| fetch_error(format!("HTTP: {e}")))?;
    let request = Request::get(POLICY_PATH)
        .header(HOST, host)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| fetch_error(format!("making the request: {e}")))?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| fetch_error(format!("HTTP: {e}")))?;
        let status = response.status();
        if status != StatusCode::OK {
            let why = if status.is_redirection() {
                format!("HTTP status {status} (redirects are not followed, RFC 8461 §3.3)")
            } else {
                format!("HTTP status {status}")
            };
            return Err(fetch_error(why));
        }
        let headers = response.headers();
        let media_type = headers.get(CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
        let essence = media_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("text/plain") {
            let why = format!("media type '{}' is not text/plain (RFC 8461 §3.2)", media_type.escape_default());
            return Err(Failure { result_type: RESULT_INVALID, why });
        }
        let too_large =
            || Failure { result_type: RESULT_INVALID, why: format!("the policy is over {bytes_max} bytes") };
        let length = headers.get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|length| length > bytes_max as u64) {
            return Err(too_large());
        }
        match Limited::new(response.into_body(), bytes_max).collect().await {
            Ok(collected) => Ok(collected.to_bytes().to_vec()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Err(e) => Err(fetch_error(format!("reading the body: {e}"))),
        }
    };
    // The connection is driven here, not spawned: when the deadline drops this future,
    // the socket goes with it.
    let mut connection = std::pin::pin!(connection);
    let mut exchange = std::pin::pin!(exchange);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut connection => match ended {
            Err(e) => Err(fetch_error(format!("HTTP: {e}"))),
            // Closed after the response was handed over: the body is read to its end.
            Ok(()) => exchange.await,
        },
    }
}

/// An error text for the log and the TLS-RPT report, at most [`WHY_CHARS_MAX`] characters:
/// some texts quote the server (a certificate's names), which could be long.
fn bounded(why: &str) -> String {
    match why.char_indices().nth(WHY_CHARS_MAX) {
        Some((end, _)) => format!("{}…", &why[..end]),
        None => why.to_string(),
    }
}

fn fetch_error(why: String) -> Failure {
    Failure { result_type: RESULT_FETCH_ERROR, why }
}

/// What a policy means for delivery: `none` is as if there were none.
fn applied(policy: Arc<Policy>) -> Lookup {
    match policy.mode {
        Mode::None => Lookup::None,
        Mode::Enforce | Mode::Testing => Lookup::Policy(policy),
    }
}

#[cfg(test)]
mod tests;

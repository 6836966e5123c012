//! The DNS resolver SMTP authenticates with (and `hameau dns check` uses): the configured
//! resolvers, or those of /etc/resolv.conf. Outbound delivery also has a DNSSEC-validating
//! one ([`Options::validating_resolver`]): DANE (RFC 7672) trusts only TLSA and MX answers
//! that validate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::dnssec::TrustAnchors;
use hickory_resolver::{Resolver, ResolverBuilder, TokioResolver};

use hameau_limits::{Problem, range};

/// How Hameau resolves DNS (SPF, DKIM, DMARC, MX lookups; `hameau dns check`): the `[dns]`
/// section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Resolvers to ask, as `address:port`; empty means those of /etc/resolv.conf.
    pub resolvers: Vec<SocketAddr>,
    /// How long one query may take. 5 s, as the resolv.conf default `timeout:5`.
    pub timeout_s: u64,
    /// Names the MX keeps answers for (SPF, DKIM, DMARC of its senders); 0 caches nothing.
    pub cache_entries: u64,
    /// Longest an answer is kept, whatever its TTL: a sender's changed record is seen
    /// within this time. 300 s.
    pub cache_ttl_max_s: u64,
    /// DNSSEC trust anchors of the validating resolver (DANE), as an absolute path; absent
    /// or empty (`""`, the shipped value) means hickory's built-in IANA root keys, which is
    /// right for the Internet. A file is for a private DNS tree (the tests' knotd): DNSKEY
    /// records in zone-file presentation format, one a line, with the class, e.g.
    /// `test. 3600 IN DNSKEY 257 3 13 <base64>` (what hickory's `TrustAnchors` reads; DS
    /// records are not accepted). A key must be the only key of its zone's DNSKEY set (a
    /// combined signing key), or the zone's DS must be provable from another anchor.
    #[serde(deserialize_with = "empty_is_none")]
    pub trust_anchor_file: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            resolvers: Vec::new(),
            timeout_s: 5,
            cache_entries: 10_000,
            cache_ttl_max_s: 300,
            trust_anchor_file: None,
        }
    }
}

impl Options {
    /// How long one query may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_s)
    }

    /// The MX's resolver, with its cache.
    pub fn resolver(&self) -> Result<TokioResolver, String> {
        let cache = Cache { entries: self.cache_entries, ttl_max: Duration::from_secs(self.cache_ttl_max_s) };
        resolver(&self.resolvers, self.timeout(), cache)
    }

    /// The resolver of outbound delivery: the same servers, cache and timeouts as
    /// [`Options::resolver`], and every answer validated with DNSSEC from the trust anchors
    /// of `trust_anchor_file`. Each record of an answer then carries its proof (secure,
    /// insecure, ...); a bogus answer is an error. It asks with the DO bit, so the servers
    /// must pass DNSSEC records through (a validating local resolver, e.g. unbound, does).
    pub fn validating_resolver(&self) -> Result<TokioResolver, String> {
        let anchors = match &self.trust_anchor_file {
            Some(path) => read_trust_anchors(path)?,
            None => TrustAnchors::default(),
        };
        let cache = Cache { entries: self.cache_entries, ttl_max: Duration::from_secs(self.cache_ttl_max_s) };
        let mut builder = builder(&self.resolvers, self.timeout(), cache)?;
        builder = builder.with_trust_anchor(Arc::new(anchors));
        builder.options_mut().validate = true;
        builder.build().map_err(|e| format!("building the validating DNS resolver: {e}"))
    }

    /// Checks every key of `[dns]`.
    pub fn check(&self) -> Result<(), Problem> {
        range("dns", "resolvers", self.resolvers.len() as u64, 0, 16)?;
        range("dns", "timeout_s", self.timeout_s, 1, 60)?;
        range("dns", "cache_entries", self.cache_entries, 0, 10_000_000)?;
        range("dns", "cache_ttl_max_s", self.cache_ttl_max_s, 1, 86_400)?;
        if let Some(path) = &self.trust_anchor_file {
            if !path.is_absolute() {
                return Err(Problem::new(
                    "dns",
                    "trust_anchor_file",
                    format!("{} is not an absolute path", path.display()),
                ));
            }
            read_trust_anchors(path).map_err(|why| Problem::new("dns", "trust_anchor_file", why))?;
        }
        Ok(())
    }
}

/// Most bytes of a trust-anchor file: a few keys take a few hundred bytes; 1 MiB is far
/// above any real file and keeps a wrong path (a log, a device) from being read whole.
const TRUST_ANCHOR_FILE_BYTES_MAX: u64 = 1 << 20;

/// Reads a file of DNSKEY records (see [`Options::trust_anchor_file`]).
fn read_trust_anchors(path: &Path) -> Result<TrustAnchors, String> {
    let size = std::fs::metadata(path).map_err(|e| format!("reading {}: {e}", path.display()))?.len();
    if size > TRUST_ANCHOR_FILE_BYTES_MAX {
        return Err(format!("{} is {size} bytes, over {TRUST_ANCHOR_FILE_BYTES_MAX}", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let anchors: TrustAnchors = text.parse().map_err(|e| {
        format!(
            "{}: not DNSKEY records in zone-file format (`name TTL IN DNSKEY flags 3 algorithm key`): {e}",
            path.display()
        )
    })?;
    if text.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with(';')) {
        return Err(format!("{} has no DNSKEY record", path.display()));
    }
    Ok(anchors)
}

/// `""` is "not set": TOML has no null, and the shipped file shows every key.
fn empty_is_none<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let path: PathBuf = serde::Deserialize::deserialize(deserializer)?;
    Ok(if path.as_os_str().is_empty() { None } else { Some(path) })
}

/// How a resolver caches answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cache {
    /// Most names kept; 0 caches nothing.
    pub entries: u64,
    /// Longest time an answer is kept, whatever its TTL (a negative one: at most 60 s).
    pub ttl_max: Duration,
}

impl Cache {
    /// No cache: `hameau dns check` must see a record as soon as it is published.
    pub const NONE: Cache = Cache { entries: 0, ttl_max: Duration::ZERO };
}

/// A resolver asking `resolvers` (UDP, then TCP), or the system's if empty. The MX caches
/// answers within their TTL, capped by `cache.ttl_max`, so that a sender's SPF and DMARC
/// records are not asked again for each of its messages.
pub fn resolver(resolvers: &[SocketAddr], timeout: Duration, cache: Cache) -> Result<TokioResolver, String> {
    builder(resolvers, timeout, cache)?.build().map_err(|e| format!("building the DNS resolver: {e}"))
}

/// What [`resolver`] builds, for [`Options::validating_resolver`] to add DNSSEC to.
fn builder(
    resolvers: &[SocketAddr],
    timeout: Duration,
    cache: Cache,
) -> Result<ResolverBuilder<TokioRuntimeProvider>, String> {
    let mut builder = if resolvers.is_empty() {
        Resolver::builder_tokio().map_err(|e| format!("reading /etc/resolv.conf: {e}"))?
    } else {
        let servers = resolvers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
    };
    let options = builder.options_mut();
    options.timeout = timeout;
    options.attempts = 2;
    options.cache_size = cache.entries;
    options.positive_max_ttl = Some(cache.ttl_max);
    options.negative_max_ttl = Some(cache.ttl_max.min(Duration::from_secs(60)));
    Ok(builder)
}

//! The DNS resolver SMTP authenticates with (and `hameau dns check` uses): the configured
//! resolvers, or those of /etc/resolv.conf.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

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
}

impl Default for Options {
    fn default() -> Self {
        Options { resolvers: Vec::new(), timeout_s: 5, cache_entries: 10_000, cache_ttl_max_s: 300 }
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

    /// Checks every key of `[dns]`.
    pub fn check(&self) -> Result<(), Problem> {
        range("dns", "resolvers", self.resolvers.len() as u64, 0, 16)?;
        range("dns", "timeout_s", self.timeout_s, 1, 60)?;
        range("dns", "cache_entries", self.cache_entries, 0, 10_000_000)?;
        range("dns", "cache_ttl_max_s", self.cache_ttl_max_s, 1, 86_400)
    }
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
    builder.build().map_err(|e| format!("building the DNS resolver: {e}"))
}

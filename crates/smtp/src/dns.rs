//! The DNS resolver SMTP authenticates with (and `hameau dns check` uses): the configured
//! resolvers, or those of /etc/resolv.conf.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

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

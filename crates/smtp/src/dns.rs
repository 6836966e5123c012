//! The DNS resolver SMTP authenticates with (and `hameau dns check` uses): the configured
//! resolvers, or those of /etc/resolv.conf.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// A resolver asking `resolvers` (UDP, then TCP), or the system's if empty. Answers are
/// not cached: SPF/DKIM/DMARC records change while communes publish them, and the OS or a
/// local resolver caches already.
pub fn resolver(resolvers: &[SocketAddr], timeout: Duration) -> Result<TokioResolver, String> {
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
    options.cache_size = 0;
    builder.build().map_err(|e| format!("building the DNS resolver: {e}"))
}

//! DNS blocklists (DNSBL, RFC 5782) for the filter: the client's address under each zone
//! of `filter.dnsbl_client_zones`, and the hosts of a message's links under each zone of
//! `filter.dnsbl_domain_zones`. Listed is an `A` answer in 127.0.0.0/8 (RFC 5782 §2.1);
//! answers in 127.255.255.0/24 are a list's error codes (Spamhaus answers them to a
//! query through a public or unregistered resolver), never a listing.
//!
//! Work is bounded: at most `filter.dnsbl_hosts_max` hosts per message, every lookup of
//! one message together within `filter.dnsbl_timeout_s`; a list that does not answer in
//! time, or fails, counts as not listing (logged): a blocklist outage must not hold mail.

use std::net::IpAddr;
use std::time::Duration;

use futures_util::future::join_all;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// One listing: where, and for what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// The zone that lists it.
    pub zone: String,
    /// The address or host listed.
    pub listed: String,
    /// The list's answer (its code, e.g. `127.0.0.2`).
    pub answer: String,
}

/// The blocklists and their resolver.
#[derive(Clone)]
pub struct Dnsbl {
    resolver: TokioResolver,
    client_zones: Vec<String>,
    domain_zones: Vec<String>,
    hosts_max: usize,
    timeout: Duration,
}

impl std::fmt::Debug for Dnsbl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dnsbl")
            .field("client_zones", &self.client_zones)
            .field("domain_zones", &self.domain_zones)
            .finish()
    }
}

impl Dnsbl {
    /// The blocklists of `options`, asked through `resolver`; `None` when no zone is set.
    pub fn new(resolver: TokioResolver, options: &hameau_filter::Options) -> Option<Dnsbl> {
        if options.dnsbl_client_zones.is_empty() && options.dnsbl_domain_zones.is_empty() {
            return None;
        }
        let zone = |zone: &String| zone.trim_end_matches('.').to_ascii_lowercase();
        Some(Dnsbl {
            resolver,
            client_zones: options.dnsbl_client_zones.iter().map(zone).collect(),
            domain_zones: options.dnsbl_domain_zones.iter().map(zone).collect(),
            hosts_max: options.dnsbl_hosts_max,
            timeout: Duration::from_secs(options.dnsbl_timeout_s),
        })
    }

    /// The listings of `client` and of `hosts` (the first `dnsbl_hosts_max` of them),
    /// asked all at once, within the timeout.
    pub async fn check(&self, client: IpAddr, hosts: &[String]) -> (Vec<Listing>, Vec<Listing>) {
        let client_name = reversed(client);
        let client_lookups = self.client_zones.iter().map(|zone| self.lookup(client.to_string(), &client_name, zone));
        let hosts: Vec<&String> =
            hosts.iter().filter(|host| host.parse::<IpAddr>().is_err() && is_host(host)).take(self.hosts_max).collect();
        let host_lookups: Vec<_> = hosts
            .iter()
            .flat_map(|host| self.domain_zones.iter().map(move |zone| self.lookup(host.to_string(), host, zone)))
            .collect();
        let both = async { (join_all(client_lookups).await, join_all(host_lookups).await) };
        match tokio::time::timeout(self.timeout, both).await {
            Ok((clients, hosts)) => (clients.into_iter().flatten().collect(), hosts.into_iter().flatten().collect()),
            Err(_) => {
                tracing::warn!(
                    timeout_s = self.timeout.as_secs(),
                    "DNS blocklists did not answer in time: not counted"
                );
                (Vec::new(), Vec::new())
            }
        }
    }

    async fn lookup(&self, listed: String, name: &str, zone: &str) -> Option<Listing> {
        let query = format!("{name}.{zone}.");
        match self.resolver.ipv4_lookup(query.as_str()).await {
            Ok(answers) => {
                let codes: Vec<std::net::Ipv4Addr> = answers
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::A(a) => Some(a.0),
                        _ => None,
                    })
                    .collect();
                // RFC 5782 §2.1: listed is 127.0.0.0/8; 127.255.255.0/24 is an error code.
                let code = codes.iter().find(|ip| ip.octets()[0] == 127 && ip.octets()[..3] != [127, 255, 255])?;
                if let Some(error) = codes.iter().find(|ip| ip.octets()[..3] == [127, 255, 255]) {
                    tracing::warn!(zone, code = %error, "a DNS blocklist answered an error code (refused resolver?)");
                }
                Some(Listing { zone: zone.to_owned(), listed, answer: code.to_string() })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => None,
            Err(e) => {
                tracing::debug!(zone, error = %e, "DNS blocklist lookup failed: not counted");
                None
            }
        }
    }
}

/// The DNSBL name of an address: IPv4's octets reversed (`2.0.0.127`), IPv6's 32 nibbles
/// reversed (RFC 5782 §2.4).
pub fn reversed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}")
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reversed(IpAddr::V4(v4));
            }
            let mut nibbles = Vec::with_capacity(32);
            for byte in v6.octets().iter().rev() {
                nibbles.push(format!("{:x}", byte & 0xf));
                nibbles.push(format!("{:x}", byte >> 4));
            }
            nibbles.join(".")
        }
    }
}

/// A host name that can be asked under a zone: ASCII labels, not too long.
fn is_host(host: &str) -> bool {
    host.len() <= 190
        && host.contains('.')
        && host.split('.').all(|label| {
            !label.is_empty() && label.len() <= 63 && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

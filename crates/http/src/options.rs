//! The `[http]` section: the HTTPS listener's keys, their defaults and their checks.

use std::net::SocketAddr;
use std::time::Duration;

use hameau_limits::{Problem, range};

/// The section of the configuration file.
const SECTION: &str = "http";

/// The HTTPS listener's options: the `[http]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Addresses of the HTTPS listener (health now; admin API, JMAP, autoconfig later).
    pub listen: Vec<SocketAddr>,
    /// Addresses of the plain HTTP listener (port 80): ACME's HTTP-01 challenges, and a
    /// redirect to HTTPS for everything else; `[]` turns it off (then ACME needs
    /// `acme.challenge = "tls-alpn-01"`).
    pub listen_plain: Vec<SocketAddr>,
    /// Most HTTPS connections at once; past it, new connections wait to be accepted.
    /// 1,024 is far above what one commune's clients open, well below the default file
    /// descriptor limit of a systemd service (524,288 on Debian 12).
    pub connections_max: usize,
    /// Most HTTPS connections from one client address (IPv6 per /64, as `hameau_net`
    /// counts); past it a new one is closed at once. 128: a town hall behind one NAT with
    /// 20 browsers at their usual 6 connections per host fits, and one address holds at
    /// most an eighth of `connections_max`.
    pub connections_per_ip_max: usize,
    /// A client has this long to finish its TLS handshake, and then each request's
    /// headers (counted from the end of the previous request, so it also closes idle
    /// keep-alive connections). 10 s, as Apache's `RequestReadTimeout header=10`, stops
    /// slowloris-style clients.
    pub header_timeout_s: u64,
    /// Largest request line and headers together, in bytes (hyper's read buffer); past
    /// it the answer is `431 Request Header Fields Too Large` and the connection ends.
    /// 64 KiB holds any browser's or client's headers (cookies included) many times; the
    /// count of header fields is bounded apart, by hyper's fixed 100 (431 too).
    pub header_bytes_max: usize,
    /// Largest request body. 1 MiB is far above any admin request.
    pub request_bytes_max: usize,
    /// Largest Outlook Autodiscover (POX) request body. Outlook's and Thunderbird's are
    /// under 1 KiB (an address and a schema name); 16 KiB keeps the scan for the address
    /// small whatever `request_bytes_max` allows the admin API.
    pub autodiscover_request_bytes_max: usize,
    /// Time for a request's whole body, from the end of its headers: 60 s carries 1 MiB
    /// at 17 KiB/s, and stops a client that trickles its body to hold a connection.
    pub body_timeout_s: u64,
    /// Longest a write to a client may make no progress before the connection is closed:
    /// 30 s, so that a client that stops reading cannot hold its connection and answer.
    pub write_timeout_s: u64,
    /// The bearer token `/metrics` requires; empty disables `/metrics`.
    pub metrics_token: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: vec!["[::]:443".parse().expect("valid address")],
            listen_plain: vec!["[::]:80".parse().expect("valid address")],
            connections_max: 1024,
            connections_per_ip_max: 128,
            header_timeout_s: 10,
            header_bytes_max: 64 * 1024,
            request_bytes_max: 1024 * 1024,
            autodiscover_request_bytes_max: 16 * 1024,
            body_timeout_s: 60,
            write_timeout_s: 30,
            metrics_token: String::new(),
        }
    }
}

impl Options {
    /// Time for the TLS handshake, then for each request's headers.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_s)
    }

    /// Time for a request's whole body, from the end of its headers.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_s)
    }

    /// Longest a write may make no progress.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_s)
    }

    /// The token `/metrics` requires; `None` when it is disabled.
    pub fn metrics_token(&self) -> Option<&str> {
        Some(self.metrics_token.as_str()).filter(|token| !token.is_empty())
    }

    /// Checks every key of `[http]`.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "listen", self.listen.len() as u64, 0, 64)?;
        range(SECTION, "listen_plain", self.listen_plain.len() as u64, 0, 64)?;
        range(SECTION, "connections_max", self.connections_max as u64, 1, 1_000_000)?;
        range(SECTION, "connections_per_ip_max", self.connections_per_ip_max as u64, 1, 100_000)?;
        range(SECTION, "header_timeout_s", self.header_timeout_s, 1, 3600)?;
        // hyper's smallest read buffer is 8 KiB (it panics below).
        range(SECTION, "header_bytes_max", self.header_bytes_max as u64, 8 * 1024, 1 << 20)?;
        range(SECTION, "request_bytes_max", self.request_bytes_max as u64, 1024, 64 << 20)?;
        range(SECTION, "autodiscover_request_bytes_max", self.autodiscover_request_bytes_max as u64, 1024, 1 << 20)?;
        range(SECTION, "body_timeout_s", self.body_timeout_s, 1, 3600)?;
        range(SECTION, "write_timeout_s", self.write_timeout_s, 1, 3600)?;
        let token = &self.metrics_token;
        if !token.is_empty() && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic())) {
            let problem = "must be empty (disabled) or at least 16 visible ASCII characters";
            return Err(Problem::new(SECTION, "metrics_token", problem));
        }
        Ok(())
    }
}

//! The `[imap]` section: the IMAP listeners, the shared caches and, read from the same
//! table, each session's limits (declared by `hameau_imap_session::Limits`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hameau_limits::{Problem, range};

use crate::{ConnectionOptions, SummaryCache, TextCache};

/// The section of the configuration file.
const SECTION: &str = "imap";

/// The IMAP server (RFC 9051): the `[imap]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Addresses of IMAP with STARTTLS (port 143); `[]` disables it.
    pub listen: Vec<SocketAddr>,
    /// Addresses of IMAP over TLS (port 993, RFC 8314); `[]` disables it.
    pub listen_tls: Vec<SocketAddr>,
    /// Most IMAP connections at once; past it, accepting waits. Clients keep one or more
    /// connections open all day (IDLE): 10,000 holds a few hundred agents' devices.
    pub connections_max: usize,
    /// Most connections from one client address; past it, `* BYE`. A town hall's agents
    /// often share one public address, each client opening several connections: 200.
    pub connections_per_ip_max: usize,
    /// Whether LOGIN and AUTHENTICATE work without TLS. Off by default: passwords never
    /// cross the network in clear.
    pub plaintext_auth: bool,
    /// Time for a TLS handshake (993 or STARTTLS). 10 s, as for HTTPS.
    pub tls_handshake_timeout_s: u64,
    /// How often, in seconds, a logged-in session checks that its login still holds: once
    /// the account is deleted or disabled, its password changed or the application
    /// password it used revoked, the session ends within this time (`* BYE`), IDLE
    /// included. 60 s; the check is answered from the directory's cache of records while
    /// the directory does not change.
    pub login_check_s: u64,
    /// Email summaries kept decoded in memory for all sessions (ENVELOPE, BODYSTRUCTURE,
    /// header searches, SORT, THREAD): about 2 KiB each, 20,000 of them about 40 MiB;
    /// 0 keeps none.
    pub summary_cache_entries: usize,
    /// Bytes of searchable body text kept in memory for all sessions (SEARCH BODY/TEXT);
    /// 64 MiB; 0 keeps none.
    pub text_cache_bytes: usize,
    /// Bytes of decoded summaries kept for all sessions, each counted by its size (a few
    /// huge headers cannot fill memory); `summary_cache_entries` bounds them too. 64 MiB.
    pub summary_cache_bytes: usize,
    /// The limits of each session: keys of the same `[imap]` table, declared by
    /// `hameau_imap_session::Limits`; `config` reads them here.
    #[serde(skip)]
    pub limits: hameau_imap_session::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: vec!["[::]:143".parse().expect("valid address")],
            listen_tls: vec!["[::]:993".parse().expect("valid address")],
            connections_max: 10_000,
            connections_per_ip_max: 200,
            plaintext_auth: false,
            tls_handshake_timeout_s: 10,
            login_check_s: 60,
            summary_cache_entries: 20_000,
            text_cache_bytes: 64 << 20,
            summary_cache_bytes: 64 << 20,
            limits: hameau_imap_session::Limits::default(),
        }
    }
}

impl Options {
    /// One budget of connections and one count per address for both ports.
    pub fn gate(&self) -> Arc<hameau_net::Gate> {
        hameau_net::Gate::new(self.connections_max, self.connections_per_ip_max)
    }

    /// What each connection runs with; `starttls_available` and `tls_active` are set per
    /// listener by the driver.
    pub fn connection(&self) -> ConnectionOptions {
        ConnectionOptions {
            session: hameau_imap_session::Options {
                limits: self.limits.clone(),
                extensions: hameau_imap_session::Extensions::default(),
                starttls_available: true,
                tls_active: false,
                plaintext_auth_allowed: self.plaintext_auth,
                preauthenticated: false,
                greeting: "Hameau ready".into(),
            },
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_s),
            login_check: Duration::from_secs(self.login_check_s),
        }
    }

    /// The summaries shared by all sessions (IMAP's and JMAP's).
    pub fn summary_cache(&self) -> std::sync::Arc<SummaryCache> {
        std::sync::Arc::new(SummaryCache::new(self.summary_cache_entries, self.summary_cache_bytes))
    }

    /// The searchable texts shared by all sessions (IMAP's and JMAP's).
    pub fn text_cache(&self) -> std::sync::Arc<TextCache> {
        std::sync::Arc::new(TextCache::new(self.text_cache_bytes))
    }

    /// Checks every key of `[imap]`, the sessions' limits included.
    pub fn check(&self) -> Result<(), Problem> {
        let ranges = [
            ("listen", self.listen.len() as u64, 0, 64),
            ("listen_tls", self.listen_tls.len() as u64, 0, 64),
            ("connections_max", self.connections_max as u64, 1, 1_000_000),
            ("connections_per_ip_max", self.connections_per_ip_max as u64, 1, 1_000_000),
            ("tls_handshake_timeout_s", self.tls_handshake_timeout_s, 1, 600),
            ("login_check_s", self.login_check_s, 1, 3600),
            ("summary_cache_entries", self.summary_cache_entries as u64, 0, 10_000_000),
            ("text_cache_bytes", self.text_cache_bytes as u64, 0, 64 << 30),
            ("summary_cache_bytes", self.summary_cache_bytes as u64, 0, 64 << 30),
        ];
        for (key, value, min, max) in ranges {
            range(SECTION, key, value, min, max)?;
        }
        self.limits.check()
    }
}

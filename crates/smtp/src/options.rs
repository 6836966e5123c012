//! The `[smtp]` section: the MX's listeners, its pipeline's bounds and, read from the same
//! table, its sessions' limits (declared by `hameau_smtp_session::Limits`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hameau_limits::{Problem, range};

use crate::InboundOptions;

/// The section of the configuration file.
const SECTION: &str = "smtp";

/// The MX (inbound SMTP): the `[smtp]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Addresses of the MX (port 25); `[]` disables it.
    pub listen: Vec<SocketAddr>,
    /// Most SMTP connections at once; past it, accepting waits.
    pub connections_max: usize,
    /// Most connections from one client address; past it, `421`. 20 lets a big sender
    /// parallelise and stops one host from taking every slot.
    pub connections_per_ip_max: usize,
    /// Time for a STARTTLS handshake. 10 s, as for HTTPS.
    pub tls_handshake_timeout_s: u64,
    /// Time for one write to the client (replies). Replies are small: a client whose
    /// receive window stays shut this long has gone or is holding the connection on
    /// purpose (it would outlive every session timeout otherwise). 60 s is well above a
    /// slow but live link, and below RFC 5321 §4.5.3.2's 5-minute command timeouts.
    pub write_timeout_s: u64,
    /// Forwarders (mailing lists, a commune's old provider) whose ARC seal (RFC 8617
    /// §7.2.1) is trusted to override a DMARC failure: a message they forwarded and sealed
    /// with a valid chain is delivered though forwarding broke its DKIM and SPF alignment.
    /// Lower-case domain names; empty by default: anyone can seal, so only named ones are
    /// trusted.
    pub arc_trusted_sealers: Vec<String>,
    /// DKIM signatures verified per message, from the top; the others are reported
    /// `dkim=permerror`, not verified. Each signature hashes the headers it names, so
    /// thousands of them over one huge header cost thousands of hashes of it. 5: OpenDKIM
    /// verifies 3 by default (`MaximumSignaturesToVerify`); author, sending service and
    /// list make 3 in practice.
    pub dkim_signatures_max: usize,
    /// ARC sets (RFC 8617) of a message beyond which its chain fails without being checked.
    /// Each seal covers every set before it, so work grows with the square of the count;
    /// RFC 8617 §4.2.1 caps instances at 50, real chains have one to three hops.
    pub arc_sets_max: usize,
    /// DKIM/ARC verifications of large messages (1 MiB and more) running at once, each on
    /// a thread of its own outside the async workers; others wait their turn. 2, one per
    /// core of the reference 2-core VM: sessions are still served while they hash.
    pub verifications_max: usize,
    /// Where `RCPT TO:<Postmaster>` (RFC 5321 §4.5.1), and `postmaster@` a served domain
    /// without an address of that name, are delivered: an address we serve. Empty: the
    /// postmaster of the server's own host name or of a domain above it (e.g.
    /// `postmaster@commune.fr` for `mx.commune.fr`), when one exists.
    pub postmaster: String,
    /// How long a vacation response stays quiet towards a sender it answered: 7 days, the
    /// period RFC 3834 §2 suggests. 1 hour to 1 year.
    pub vacation_period_s: u64,
    /// Senders one account's vacation response remembers: 10,000, far above a town hall's
    /// correspondents in an absence; past it, new senders are not answered, so a flood of
    /// forged senders cannot turn the server into a source of backscatter. 1 to 1,000,000.
    pub vacation_senders_max: u64,
    /// The limits of each session: keys of the same `[smtp]` table, declared by
    /// `hameau_smtp_session::Limits`; `config` reads them here.
    #[serde(skip)]
    pub limits: hameau_smtp_session::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: vec!["[::]:25".parse().expect("valid address")],
            connections_max: 1024,
            connections_per_ip_max: 20,
            tls_handshake_timeout_s: 10,
            write_timeout_s: 60,
            arc_trusted_sealers: Vec::new(),
            dkim_signatures_max: 5,
            arc_sets_max: 10,
            verifications_max: 2,
            postmaster: String::new(),
            vacation_period_s: 7 * 86_400,
            vacation_senders_max: 10_000,
            limits: hameau_smtp_session::Limits::default(),
        }
    }
}

impl Options {
    /// One budget of connections and one count per address for all the MX's listeners.
    pub fn gate(&self) -> Arc<hameau_net::Gate> {
        hameau_net::Gate::new(self.connections_max, self.connections_per_ip_max)
    }

    /// The socket driver's options; `starttls_available` when the driver has a certificate.
    pub fn server(&self, hostname: &str, starttls_available: bool) -> crate::server::Options {
        crate::server::Options {
            session: hameau_smtp_session::Options {
                limits: self.limits.clone(),
                starttls_available,
                tls_active: false,
                // The driver offers the pipeline's mechanisms.
                auth_mechanisms: Vec::new(),
            },
            hostname: hostname.to_string(),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_s),
            write_timeout: Duration::from_secs(self.write_timeout_s),
        }
    }

    /// The pipeline's options.
    pub fn inbound(&self, hostname: &str) -> InboundOptions {
        InboundOptions {
            hostname: hostname.to_string(),
            arc_trusted_sealers: self.arc_trusted_sealers.clone(),
            dkim_signatures_max: self.dkim_signatures_max,
            arc_sets_max: self.arc_sets_max,
            verifications_max: self.verifications_max,
            postmaster: Some(self.postmaster.clone()).filter(|address| !address.is_empty()),
        }
    }

    /// Checks every key of `[smtp]`, the sessions' limits included.
    pub fn check(&self) -> Result<(), Problem> {
        let ranges = [
            ("listen", self.listen.len() as u64, 0, 64),
            ("connections_max", self.connections_max as u64, 1, 1_000_000),
            ("connections_per_ip_max", self.connections_per_ip_max as u64, 1, 100_000),
            ("tls_handshake_timeout_s", self.tls_handshake_timeout_s, 1, 600),
            ("write_timeout_s", self.write_timeout_s, 1, 3600),
            ("arc_trusted_sealers", self.arc_trusted_sealers.len() as u64, 0, 1000),
            ("dkim_signatures_max", self.dkim_signatures_max as u64, 1, 100),
            // RFC 8617 §4.2.1: instance numbers go up to 50.
            ("arc_sets_max", self.arc_sets_max as u64, 1, 50),
            ("verifications_max", self.verifications_max as u64, 1, 1024),
            ("vacation_period_s", self.vacation_period_s, 3600, 366 * 86_400),
            ("vacation_senders_max", self.vacation_senders_max, 1, 1_000_000),
        ];
        for (key, value, min, max) in ranges {
            range(SECTION, key, value, min, max)?;
        }
        self.limits.check()?;
        let postmaster = &self.postmaster;
        if !postmaster.is_empty()
            && !postmaster.rsplit_once('@').is_some_and(|(local, domain)| !local.is_empty() && is_domain_name(domain))
        {
            let problem =
                format!("{postmaster:?} is not an address with a lower-case domain such as \"postmaster@commune.fr\"");
            return Err(Problem::new(SECTION, "postmaster", problem));
        }
        if let Some(bad) = self.arc_trusted_sealers.iter().find(|name| !is_domain_name(name)) {
            let problem = format!("{bad:?} is not a lower-case domain name such as \"listes.example.fr\"");
            return Err(Problem::new(SECTION, "arc_trusted_sealers", problem));
        }
        Ok(())
    }
}

/// A lower-case ASCII domain name (IDNs in their `xn--` form) of at least two labels.
fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

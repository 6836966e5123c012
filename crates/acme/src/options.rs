//! The `[acme]` section: the ACME client's keys, their defaults and their checks.

use std::path::PathBuf;
use std::time::Duration;

use hameau_limits::{Problem, range};

/// The section of the configuration file.
const SECTION: &str = "acme";

/// How the ACME server checks that this server answers for a name (RFC 8555 §8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub enum Challenge {
    /// RFC 8737: a TLS handshake on port 443 offering `acme-tls/1`. The default: it needs
    /// only the HTTPS port, which Hameau has anyway.
    #[default]
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// RFC 8555 §8.3: a plain HTTP GET on port 80 (`[http] listen_plain`).
    #[serde(rename = "http-01")]
    Http01,
}

impl Challenge {
    /// Its name in RFC 8555's registry, for the logs and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Http01 => "http-01",
        }
    }
}

/// The ACME client's options: the `[acme]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// The ACME server's directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    /// Empty (the default) turns ACME off: the certificate files of `[tls]` serve.
    pub directory_url: String,
    /// Contact addresses given to the ACME server for expiry and incident notices
    /// (`mailto:` is added when missing); empty gives none.
    pub contact: Vec<String>,
    /// `tls-alpn-01` (port 443) or `http-01` (port 80).
    pub challenge: Challenge,
    /// A certificate is renewed when fewer days than this remain. 30, as Let's Encrypt
    /// advises for its 90-day certificates: a month of retries before anything expires.
    pub renew_before_days: u64,
    /// How often the names are listed again (a new commune's names get certificates
    /// without a restart) and expiry dates looked at. 10 minutes: a check that finds
    /// nothing to do reads the directory and nothing else.
    pub check_interval_s: u64,
    /// The first wait after a failed order; each failure doubles it up to `retry_max_s`.
    /// 5 minutes: Let's Encrypt allows 5 failed validations per name per hour, so five
    /// retries (5, 10, 20, 40 min) stay under it.
    pub retry_min_s: u64,
    /// The longest wait between two attempts for a name that keeps failing: 6 hours, so
    /// a DNS record fixed in the morning is picked up the same day.
    pub retry_max_s: u64,
    /// Longest wait for the ACME server to validate an order's challenges, and then to
    /// issue its certificate. 2 minutes: Let's Encrypt validates in seconds.
    pub order_timeout_s: u64,
    /// Longest one HTTP request to the ACME server may take, connection included.
    pub request_timeout_s: u64,
    /// Largest answer read from the ACME server: 1 MiB is far above a certificate chain
    /// (a few KiB) or any ACME object.
    pub response_bytes_max: usize,
    /// A PEM file of extra trust anchors for the ACME server's HTTPS (a private or test
    /// CA); empty: the system's roots only. An absolute path.
    pub ca_file: PathBuf,
    /// Most names given certificates: the host name plus three per domain. 3,000 covers
    /// 999 domains; past it the rest are left out, and the log says which.
    pub names_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            directory_url: String::new(),
            contact: Vec::new(),
            challenge: Challenge::TlsAlpn01,
            renew_before_days: 30,
            check_interval_s: 600,
            retry_min_s: 300,
            retry_max_s: 6 * 3600,
            order_timeout_s: 120,
            request_timeout_s: 30,
            response_bytes_max: 1024 * 1024,
            ca_file: PathBuf::new(),
            names_max: 3000,
        }
    }
}

impl Options {
    /// Whether ACME runs (a directory URL is set).
    pub fn enabled(&self) -> bool {
        !self.directory_url.is_empty()
    }

    pub fn renew_before(&self) -> Duration {
        Duration::from_secs(self.renew_before_days * 86_400)
    }

    pub fn check_interval(&self) -> Duration {
        Duration::from_secs(self.check_interval_s)
    }

    pub fn order_timeout(&self) -> Duration {
        Duration::from_secs(self.order_timeout_s)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_s)
    }

    /// The wait after `failures` failures in a row (at least one): `retry_min_s` doubled
    /// each time, at most `retry_max_s`.
    pub fn retry_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(40);
        let seconds = self.retry_min_s.saturating_mul(1u64 << doublings).min(self.retry_max_s);
        Duration::from_secs(seconds)
    }

    /// The contacts as ACME wants them (`mailto:` URLs).
    pub fn contact_urls(&self) -> Vec<String> {
        self.contact
            .iter()
            .map(|address| match address.strip_prefix("mailto:") {
                Some(_) => address.clone(),
                None => format!("mailto:{address}"),
            })
            .collect()
    }

    /// Checks every key of `[acme]`.
    /// `ca_file`, when set.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        Some(self.ca_file.as_path()).filter(|path| !path.as_os_str().is_empty())
    }

    pub fn check(&self) -> Result<(), Problem> {
        let url = &self.directory_url;
        if !url.is_empty() && (!url.starts_with("https://") || url.bytes().any(|b| !b.is_ascii_graphic())) {
            return Err(Problem::new(SECTION, "directory_url", "must be empty (ACME off) or an https:// URL"));
        }
        range(SECTION, "contact", self.contact.len() as u64, 0, 8)?;
        for address in &self.contact {
            let address = address.strip_prefix("mailto:").unwrap_or(address);
            let valid = address.len() <= 254
                && address.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
                && address.bytes().all(|b| b.is_ascii_graphic() && b != b',');
            if !valid {
                return Err(Problem::new(
                    SECTION,
                    "contact",
                    format!("'{}' is not a mail address", address.escape_default()),
                ));
            }
        }
        range(SECTION, "renew_before_days", self.renew_before_days, 1, 365)?;
        range(SECTION, "check_interval_s", self.check_interval_s, 1, 7 * 86_400)?;
        range(SECTION, "retry_min_s", self.retry_min_s, 1, 86_400)?;
        range(SECTION, "retry_max_s", self.retry_max_s, 1, 7 * 86_400)?;
        if self.retry_max_s < self.retry_min_s {
            let problem = format!("{} is below acme.retry_min_s ({})", self.retry_max_s, self.retry_min_s);
            return Err(Problem::new(SECTION, "retry_max_s", problem));
        }
        range(SECTION, "order_timeout_s", self.order_timeout_s, 1, 3600)?;
        range(SECTION, "request_timeout_s", self.request_timeout_s, 1, 600)?;
        range(SECTION, "response_bytes_max", self.response_bytes_max as u64, 16 * 1024, 64 << 20)?;
        if !self.ca_file.as_os_str().is_empty() && !self.ca_file.is_absolute() {
            return Err(Problem::new(SECTION, "ca_file", "must be empty or an absolute path"));
        }
        range(SECTION, "names_max", self.names_max as u64, 1, 100_000)?;
        Ok(())
    }
}

//! Hameau's configuration: one TOML file (`config/hameau.toml` is the shipped default),
//! typed with serde, with a default for every key.
//!
//! Loading rejects unknown keys, values of the wrong type and limits out of range, and
//! checks the relationships between limits. Every error is one line naming the file, the
//! line, the key and the problem ([`Error`]). This crate reads the file it is given and
//! nothing else of the environment.

mod read;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration: each section is the type of the crate that uses it, which
/// declares its keys, their defaults and their checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub server: Server,
    pub log: Log,
    pub tls: Tls,
    /// `[store]`: the store's options, its limits included.
    pub store: hameau_store::Options,
    /// `[mail]`: the mail model's limits, the message's included.
    pub mail: hameau_mailbox::Limits,
    /// `[directory]`: the directory's options, the passwords' included.
    pub directory: hameau_directory::Options,
    /// `[auth]`: the authentication limiter's options.
    pub auth: hameau_directory::LimiterOptions,
    pub http: Http,
    pub smtp: Smtp,
    pub imap: Imap,
    pub dns: Dns,
    /// Where the configuration came from, to point errors at lines.
    pub source: Option<Source>,
}

/// The sections of the file, in the order `config/hameau.toml` has them.
pub const SECTIONS: [&str; 11] =
    ["server", "log", "tls", "store", "mail", "directory", "auth", "http", "smtp", "imap", "dns"];

/// The file a configuration was read from and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// The name this server gives itself (SMTP greeting, `Received` headers, certificate).
    pub hostname: String,
    /// Where the store, the TLS certificate and keys live. A relative path is taken from
    /// the directory of the configuration file.
    pub data_dir: PathBuf,
    /// On SIGTERM or SIGINT, in-flight work gets this long to finish before the store is
    /// closed. 30 s matches systemd's default `TimeoutStopSec` of 90 s with room to spare.
    pub shutdown_grace_s: u64,
}

impl Default for Server {
    fn default() -> Self {
        Server { hostname: "localhost".into(), data_dir: "/var/lib/hameau".into(), shutdown_grace_s: 30 }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable on a terminal, JSON lines under systemd (journald) or when piped.
    #[default]
    Auto,
    Text,
    Json,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain; relative to `server.data_dir`.
    pub certificate: PathBuf,
    /// PEM private key; relative to `server.data_dir`.
    pub private_key: PathBuf,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { certificate: "tls/cert.pem".into(), private_key: "tls/key.pem".into() }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Addresses of the HTTPS listener (health now; admin API, JMAP, autoconfig later).
    pub listen: Vec<SocketAddr>,
    /// Most HTTPS connections at once; past it, new connections wait to be accepted.
    /// 1,024 is far above what one commune's clients open, well below the default file
    /// descriptor limit of a systemd service (524,288 on Debian 12).
    pub connections_max: usize,
    /// Most HTTPS connections from one client address (IPv6 per /64); past it a new one is
    /// closed at once. 128: a town hall behind one NAT with 20 browsers at their usual 6
    /// connections per host fits, and one address holds at most an eighth of
    /// `connections_max`.
    pub connections_per_ip_max: usize,
    /// A client has this long to finish its TLS handshake, and then each request's
    /// headers (counted from the end of the previous request, so it also closes idle
    /// keep-alive connections). 10 s, as Apache's `RequestReadTimeout header=10`, stops
    /// slowloris-style clients.
    pub header_timeout_s: u64,
    /// Largest request body. 1 MiB is far above any admin request.
    pub request_bytes_max: usize,
    /// Time for a request's whole body, from the end of its headers: 60 s carries 1 MiB
    /// at 17 KiB/s, and stops a client that trickles its body to hold a connection.
    pub body_timeout_s: u64,
    /// Longest a write to a client may make no progress before the connection is closed:
    /// 30 s, so that a client that stops reading cannot hold its connection and answer.
    pub write_timeout_s: u64,
    /// The bearer token `/metrics` requires; empty disables `/metrics`.
    pub metrics_token: String,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: vec!["[::]:443".parse().expect("valid address")],
            connections_max: 1024,
            connections_per_ip_max: 128,
            header_timeout_s: 10,
            request_bytes_max: 1024 * 1024,
            body_timeout_s: 60,
            write_timeout_s: 30,
            metrics_token: String::new(),
        }
    }
}

/// The MX (inbound SMTP); the limits' defaults and reasons are those of
/// `hameau_smtp_session::Limits`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Smtp {
    /// Addresses of the MX (port 25); `[]` disables it.
    pub listen: Vec<SocketAddr>,
    /// Most SMTP connections at once; past it, accepting waits.
    pub connections_max: usize,
    /// Most connections from one client address; past it, `421`. 20 lets a big sender
    /// parallelise and stops one host from taking every slot.
    pub connections_per_ip_max: usize,
    pub line_bytes_max: usize,
    pub message_bytes_max: usize,
    pub bdat_chunk_bytes_max: usize,
    pub recipients_max: usize,
    pub commands_max: usize,
    pub errors_max: usize,
    pub reply_bytes_max: usize,
    pub command_timeout_s: u64,
    pub data_timeout_s: u64,
    pub session_timeout_s: u64,
    /// Time for a STARTTLS handshake. 10 s, as for HTTPS.
    pub tls_handshake_timeout_s: u64,
    /// Time for one write to the client (replies). Replies are small: a client whose
    /// receive window stays shut this long has gone or is holding the connection on
    /// purpose (it would outlive every session timeout otherwise). 60 s is well above a
    /// slow but live link, and below RFC 5321 §4.5.3.2's 5-minute command timeouts.
    pub write_timeout_s: u64,
    /// Forwarders whose valid ARC seal overrides a DMARC failure (RFC 8617 §7.2.1), as
    /// domain names; empty by default: anyone can seal, so only named ones are trusted.
    pub arc_trusted_sealers: Vec<String>,
    /// DKIM signatures verified per message; the others are reported `permerror`, not
    /// verified. Each signature hashes the headers it names, so thousands of them over one
    /// huge header cost thousands of hashes of it. 5: OpenDKIM verifies 3 by default
    /// (`MaximumSignaturesToVerify`); author, sending service and list make 3 in practice.
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
}

impl Default for Smtp {
    fn default() -> Self {
        let limits = hameau_smtp_session::Limits::default();
        Smtp {
            listen: vec!["[::]:25".parse().expect("valid address")],
            connections_max: 1024,
            connections_per_ip_max: 20,
            line_bytes_max: limits.line_bytes_max,
            message_bytes_max: limits.message_bytes_max,
            bdat_chunk_bytes_max: limits.bdat_chunk_bytes_max,
            recipients_max: limits.recipients_max,
            commands_max: limits.commands_max,
            errors_max: limits.errors_max,
            reply_bytes_max: limits.reply_bytes_max,
            command_timeout_s: limits.command_timeout.as_secs(),
            data_timeout_s: limits.data_timeout.as_secs(),
            session_timeout_s: limits.session_timeout.as_secs(),
            tls_handshake_timeout_s: 10,
            write_timeout_s: 60,
            arc_trusted_sealers: Vec::new(),
            dkim_signatures_max: 5,
            arc_sets_max: 10,
            verifications_max: 2,
            postmaster: String::new(),
        }
    }
}

/// The IMAP server (RFC 9051). Limits of one session map to `hameau_imap_session::Limits`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Imap {
    /// Addresses of IMAP with STARTTLS (port 143); `[]` disables it.
    pub listen: Vec<SocketAddr>,
    /// Addresses of IMAP over TLS (port 993, RFC 8314); `[]` disables it.
    pub listen_tls: Vec<SocketAddr>,
    /// Most IMAP connections at once; past it, accepting waits. Clients keep one or more
    /// connections open all day (IDLE): 10,000 holds a few hundred agents' devices.
    pub connections_max: usize,
    /// Most connections from one client address; past it, `* BYE`. A town hall's agents
    /// often share one public address, each client opening several connections.
    pub connections_per_ip_max: usize,
    /// Whether LOGIN and AUTHENTICATE work without TLS. Off by default: passwords never
    /// cross the network in clear.
    pub plaintext_auth: bool,
    pub command_line_bytes_max: usize,
    pub literal_bytes_max: usize,
    pub append_bytes_max: usize,
    pub literal_discard_bytes_max: u64,
    pub nesting_depth_max: usize,
    pub pipelined_bytes_max: usize,
    pub errors_max: usize,
    pub auth_failures_max: usize,
    pub idle_timeout_s: u64,
    pub not_authenticated_timeout_s: u64,
    pub command_timeout_s: u64,
    /// Time for a TLS handshake (993 or STARTTLS), in seconds.
    pub tls_handshake_timeout_s: u64,
    /// Email summaries kept decoded in memory for all sessions (ENVELOPE, BODYSTRUCTURE,
    /// header searches, SORT, THREAD): about 2 KiB each; 0 keeps none.
    pub summary_cache_entries: usize,
    /// Bytes of searchable body text kept in memory for all sessions (SEARCH BODY/TEXT);
    /// 0 keeps none.
    pub text_cache_bytes: usize,
    /// Bytes of decoded summaries kept for all sessions, each counted by its size (a few
    /// huge headers cannot fill memory); `summary_cache_entries` bounds them too.
    pub summary_cache_bytes: usize,
    pub write_timeout_s: u64,
    pub fetch_items_max: usize,
    pub search_keys_max: usize,
    pub list_pattern_bytes_max: usize,
    pub output_bytes_max: usize,
    pub inflate_bytes_max: usize,
    pub thread_references_max: usize,
    pub thread_work_max: u64,
}

impl Default for Imap {
    fn default() -> Self {
        let limits = hameau_imap_session::Limits::default();
        Imap {
            listen: vec!["[::]:143".parse().expect("valid address")],
            listen_tls: vec!["[::]:993".parse().expect("valid address")],
            connections_max: 10_000,
            connections_per_ip_max: 200,
            plaintext_auth: false,
            command_line_bytes_max: limits.command_line_bytes_max,
            literal_bytes_max: limits.literal_bytes_max,
            append_bytes_max: limits.append_bytes_max,
            literal_discard_bytes_max: limits.literal_discard_bytes_max,
            nesting_depth_max: limits.nesting_depth_max,
            pipelined_bytes_max: limits.pipelined_bytes_max,
            errors_max: limits.errors_max,
            auth_failures_max: limits.auth_failures_max,
            idle_timeout_s: limits.idle_timeout.as_secs(),
            not_authenticated_timeout_s: limits.not_authenticated_timeout.as_secs(),
            command_timeout_s: limits.command_timeout.as_secs(),
            tls_handshake_timeout_s: 10,
            summary_cache_entries: 20_000,
            text_cache_bytes: 64 << 20,
            summary_cache_bytes: 64 << 20,
            write_timeout_s: limits.write_timeout.as_secs(),
            fetch_items_max: limits.fetch_items_max,
            search_keys_max: limits.search_keys_max,
            list_pattern_bytes_max: limits.list_pattern_bytes_max,
            output_bytes_max: limits.output_bytes_max,
            inflate_bytes_max: limits.inflate_bytes_max,
            thread_references_max: limits.thread_references_max,
            thread_work_max: limits.thread_work_max,
        }
    }
}

/// How Hameau resolves DNS (SPF, DKIM, DMARC, MX lookups; `hameau dns check`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
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

impl Default for Dns {
    fn default() -> Self {
        Dns { resolvers: Vec::new(), timeout_s: 5, cache_entries: 10_000, cache_ttl_max_s: 300 }
    }
}

/// A configuration error: one line naming the file, the line, the key and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub problem: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, _) => f.write_str("built-in configuration: ")?,
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        // One line, whatever the problem's text.
        let problem: String = self.problem.split_whitespace().collect::<Vec<_>>().join(" ");
        f.write_str(&problem)
    }
}

impl std::error::Error for Error {}

impl Config {
    /// Reads and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error {
            file: Some(path.to_path_buf()),
            line: None,
            key: None,
            problem: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(path, &text)
    }

    /// Parses and checks configuration text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        let source = Source { path: path.to_path_buf(), text: text.to_string() };
        let document = toml::de::DeTable::parse(text).map_err(|e| validate::from_toml(&source, e))?;
        let mut config = Config::default();
        for (name, value) in document.into_inner() {
            let mut section = read::Section::new(&source, name.get_ref().to_string(), value);
            if !config.read_section(name.get_ref(), &mut section)? {
                return Err(read::unknown(&source, &name, name.get_ref(), &SECTIONS));
            }
            section.finish()?;
        }
        config.source = Some(source);
        if config.server.data_dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            // `base/./data` reads better as `base/data` in logs and errors.
            let joined = base.join(&config.server.data_dir);
            config.server.data_dir = joined.components().filter(|c| *c != std::path::Component::CurDir).collect();
        }
        config.store.path = config.store_path();
        validate::check(&config)?;
        Ok(config)
    }

    /// The built-in configuration, used when no file is given.
    pub fn builtin() -> Config {
        let mut config = Config::default();
        config.store.path = config.store_path();
        config
    }

    /// Reads the section `name` into its owners' types, each taking the keys it declares;
    /// `false` if there is no such section. This is the one list of what each section holds.
    fn read_section(&mut self, name: &str, section: &mut read::Section<'_, '_>) -> Result<bool, Error> {
        match name {
            "server" => self.server = section.part()?,
            "log" => self.log = section.part()?,
            "tls" => self.tls = section.part()?,
            "store" => {
                self.store = section.part()?;
                self.store.limits = section.part()?;
            }
            "mail" => {
                self.mail = section.part()?;
                self.mail.message = section.part()?;
            }
            "directory" => {
                self.directory = section.part()?;
                self.directory.passwords = section.part()?;
            }
            "auth" => self.auth = section.part()?,
            "http" => self.http = section.part()?,
            "smtp" => self.smtp = section.part()?,
            "imap" => self.imap = section.part()?,
            "dns" => self.dns = section.part()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The keys of each section, in declaration order (for the shipped file's test).
    #[cfg(test)]
    pub(crate) fn keys() -> Vec<(&'static str, Vec<&'static str>)> {
        let source = Source { path: PathBuf::new(), text: String::new() };
        let mut config = Config::default();
        SECTIONS
            .iter()
            .map(|name| {
                let mut section = read::Section::empty(&source, name);
                config.read_section(name, &mut section).expect("an empty section reads");
                (*name, section.finish().expect("an empty section has no unknown key"))
            })
            .collect()
    }

    /// An error about `key`, pointing at its line if the file sets it.
    pub fn error(&self, key: &str, problem: impl Into<String>) -> Error {
        validate::error_at(self.source.as_ref(), key, problem.into())
    }

    /// Where the store lives.
    pub fn store_path(&self) -> PathBuf {
        self.server.data_dir.join("store")
    }

    /// The TLS certificate chain's path.
    pub fn certificate_path(&self) -> PathBuf {
        self.server.data_dir.join(&self.tls.certificate)
    }

    /// The TLS private key's path.
    pub fn private_key_path(&self) -> PathBuf {
        self.server.data_dir.join(&self.tls.private_key)
    }

    /// The SMTP session's limits.
    pub fn imap_limits(&self) -> hameau_imap_session::Limits {
        let imap = &self.imap;
        hameau_imap_session::Limits {
            command_line_bytes_max: imap.command_line_bytes_max,
            literal_bytes_max: imap.literal_bytes_max,
            append_bytes_max: imap.append_bytes_max,
            literal_discard_bytes_max: imap.literal_discard_bytes_max,
            nesting_depth_max: imap.nesting_depth_max,
            pipelined_bytes_max: imap.pipelined_bytes_max,
            errors_max: imap.errors_max,
            auth_failures_max: imap.auth_failures_max,
            idle_timeout: std::time::Duration::from_secs(imap.idle_timeout_s),
            not_authenticated_timeout: std::time::Duration::from_secs(imap.not_authenticated_timeout_s),
            command_timeout: std::time::Duration::from_secs(imap.command_timeout_s),
            write_timeout: std::time::Duration::from_secs(imap.write_timeout_s),
            fetch_items_max: imap.fetch_items_max,
            search_keys_max: imap.search_keys_max,
            list_pattern_bytes_max: imap.list_pattern_bytes_max,
            output_bytes_max: imap.output_bytes_max,
            inflate_bytes_max: imap.inflate_bytes_max,
            thread_references_max: imap.thread_references_max,
            thread_work_max: imap.thread_work_max,
        }
    }

    pub fn smtp_limits(&self) -> hameau_smtp_session::Limits {
        let smtp = &self.smtp;
        hameau_smtp_session::Limits {
            line_bytes_max: smtp.line_bytes_max,
            message_bytes_max: smtp.message_bytes_max,
            bdat_chunk_bytes_max: smtp.bdat_chunk_bytes_max,
            recipients_max: smtp.recipients_max,
            commands_max: smtp.commands_max,
            errors_max: smtp.errors_max,
            reply_bytes_max: smtp.reply_bytes_max,
            command_timeout: std::time::Duration::from_secs(smtp.command_timeout_s),
            data_timeout: std::time::Duration::from_secs(smtp.data_timeout_s),
            session_timeout: std::time::Duration::from_secs(smtp.session_timeout_s),
        }
    }
}

#[cfg(test)]
mod tests;

//! Hameau's configuration: one TOML file (`config/hameau.toml` is the shipped default),
//! typed with serde, with a default for every key.
//!
//! Each key is declared once, by the crate that uses it: [`Config`] lists each section as
//! that crate's type (`[store]` is `hameau_store::Options`), whose fields are the keys,
//! whose `Default` gives their defaults and reasons, and whose `check` their ranges and
//! relationships. This crate declares only `[server]`, `[log]` and `[tls]`, reads the file
//! into the owners' types, and checks what spans two crates.
//!
//! Loading rejects unknown keys, values of the wrong type and limits out of range, and
//! checks the relationships between limits. Every error is one line naming the file, the
//! line, the key and the problem ([`Error`]). This crate reads the file it is given and
//! nothing else of the environment.

mod read;
mod validate;

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration: each section is the type of the crate that uses it, which
/// declares its keys, their defaults and their checks.
#[derive(Clone, Debug, Default, PartialEq)]
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
    /// `[http]`: the HTTPS listener's options.
    pub http: hameau_http::Options,
    /// `[smtp]`: the MX's options, its sessions' limits included.
    pub smtp: hameau_smtp::Options,
    /// `[imap]`: the IMAP server's options, its sessions' limits included.
    pub imap: hameau_imap::Options,
    /// `[dns]`: the resolver's options.
    pub dns: hameau_smtp::dns::Options,
    /// `[submission]`: the listeners agents send through (587, 465).
    pub submission: hameau_smtp::submission::Options,
    /// `[queue]`: the outbound queue's schedule and limits.
    pub queue: hameau_queue::Limits,
    /// `[outbound]`: delivery to other servers.
    pub outbound: hameau_smtp::worker::Options,
    /// `[acme]`: certificates from an ACME server.
    pub acme: hameau_acme::Options,
    /// `[migrate]`: imports from old mail servers (`hameau import`).
    pub migrate: hameau_migrate::Options,
    /// `[backup]`: the limits of backup, restore and verification.
    pub backup: hameau_backup::Limits,
    /// `[filter]`: phishing and spam defence, its thresholds and limits.
    pub filter: hameau_filter::Options,
    /// `[jmap]`: what one JMAP request may cost (the session object's limits).
    pub jmap: hameau_jmap::Limits,
    /// Where the configuration came from, to point errors at lines.
    pub source: Option<Source>,
}

/// The sections of the file, in the order `config/hameau.toml` has them.
const SECTIONS: [&str; 19] = [
    "server",
    "log",
    "tls",
    "store",
    "mail",
    "directory",
    "auth",
    "http",
    "smtp",
    "submission",
    "queue",
    "outbound",
    "imap",
    "dns",
    "acme",
    "migrate",
    "backup",
    "filter",
    "jmap",
];

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
    /// Once `hameau serve` is up, unmap the code it ran to start and drop it from the page
    /// cache, and read its constants without readahead, so that what stays resident is
    /// the code it runs. On: on Linux 6.18 with ext4 an idle server otherwise keeps most of
    /// its binary resident, mapped in the page cache's large folios (crates/hameau's
    /// `code_pages`, docs/operations.md). Off: the kernel's usual readahead and mapping.
    pub release_start_code: bool,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            hostname: "localhost".into(),
            data_dir: "/var/lib/hameau".into(),
            shutdown_grace_s: 30,
            release_start_code: true,
        }
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
    /// More certificates, each served to clients that ask for one of its names (SNI): a
    /// commune's own certificate for `autoconfig.` or `mta-sts.` names made elsewhere.
    /// ACME (`[acme]`) makes these itself; this list is for certificates from files.
    pub sni: Vec<SniCertificate>,
}

impl Default for Tls {
    fn default() -> Self {
        Tls { certificate: "tls/cert.pem".into(), private_key: "tls/key.pem".into(), sni: Vec::new() }
    }
}

/// A certificate for the names it lists, from PEM files relative to `server.data_dir`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// The host names this certificate is served for (`*.example.fr` for a wildcard).
    pub names: Vec<String>,
    pub certificate: PathBuf,
    pub private_key: PathBuf,
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
            "smtp" => {
                self.smtp = section.part()?;
                self.smtp.limits = section.part()?;
            }
            "imap" => {
                self.imap = section.part()?;
                self.imap.limits = section.part()?;
            }
            "dns" => self.dns = section.part()?,
            "submission" => self.submission = section.part()?,
            "queue" => self.queue = section.part()?,
            "outbound" => self.outbound = section.part()?,
            "acme" => self.acme = section.part()?,
            "migrate" => self.migrate = section.part()?,
            "backup" => self.backup = section.part()?,
            "filter" => {
                self.filter = section.part()?;
                self.filter.thresholds = section.part()?;
                self.filter.warning = section.part()?;
                self.filter.limits = section.part()?;
            }
            "jmap" => self.jmap = section.part()?,
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

    /// The certificate and key paths of each `[tls] sni` entry, with its names.
    pub fn sni_paths(&self) -> Vec<(Vec<String>, PathBuf, PathBuf)> {
        let dir = &self.server.data_dir;
        self.tls.sni.iter().map(|e| (e.names.clone(), dir.join(&e.certificate), dir.join(&e.private_key))).collect()
    }
}

#[cfg(test)]
mod tests;

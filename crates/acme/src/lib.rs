//! Certificates from an ACME server (RFC 8555: Let's Encrypt, or any other), for the
//! server's host name and each domain's `autoconfig.`, `autodiscover.` and `mta-sts.`
//! names, validated over TLS-ALPN-01 (RFC 8737, port 443) or HTTP-01 (RFC 8555 §8.3,
//! port 80), renewed before they expire and swapped into the running listeners.
//!
//! [`Acme::run`] is the one task: every `acme.check_interval_s` (or when woken) it lists
//! the names again, gives each group of names (the host name alone; each domain's three
//! names together: one certificate per domain, so that a domain added or removed touches
//! no other certificate) a certificate when it has none or when fewer than
//! `acme.renew_before_days` remain, installs it in the shared [`Certificates`] table (the
//! next handshake uses it) and keeps it in the store under `acme/certificate/…`, with the
//! account under `acme/account`: a restart serves the kept certificates at once and orders
//! nothing new. A group whose order fails is retried after `acme.retry_min_s`, doubled at
//! each failure up to `acme.retry_max_s`; the others go on. Each failure is logged with
//! its names, the challenge and the ACME server's problem document, and counted
//! (`hameau_acme_orders_total{result="failed"}`).
//!
//! This crate opens no socket but the ACME client's: the challenges are answered by the
//! HTTPS listener (through the [`Certificates`] table, which shows the challenge
//! certificate to `acme-tls/1` handshakes only) and by the plain HTTP listener (through the
//! [`Http01Tokens`] map), both in `hameau-http`.

mod client;
mod issue;
mod options;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hameau_net::{Certificates, Http01Tokens};
use hameau_store::{Batch, Store};
use hameau_telemetry::{Counter, Registry};
use instant_acme::{Account, AccountCredentials, NewAccount};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use issue::{Issued, Responders};
pub use options::{Challenge, Options};

/// The store key of the ACME account (its key and URL), JSON.
pub const ACCOUNT_KEY: &[u8] = b"acme/account";
/// The prefix of the kept certificates, each under its group's first name, JSON.
pub const CERTIFICATE_PREFIX: &str = "acme/certificate/";

/// The time, as the binary reads it (only the binary reads the clock).
pub trait Clock: Send + Sync + 'static {
    /// Seconds since the Unix epoch.
    fn now_s(&self) -> u64;
}

/// The mail domains, each of which gets its `autoconfig.`, `autodiscover.` and `mta-sts.`
/// names certified; listed again at every check.
pub trait Domains: Send + Sync + 'static {
    /// At most `max` domains, in IDNA ASCII form.
    fn domains(&self, max: usize) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>>;
}

impl Domains for hameau_directory::Directory {
    fn domains(&self, max: usize) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
        Box::pin(async move {
            let operator = hameau_directory::Principal::Operator;
            let mut domains = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page =
                    self.list_domains(&operator, None, after.as_deref(), None).await.map_err(|e| e.to_string())?;
                domains.extend(page.items.into_iter().map(|domain| domain.name));
                match page.next {
                    Some(next) if domains.len() < max => after = Some(next),
                    _ => break,
                }
            }
            domains.truncate(max);
            Ok(domains)
        })
    }
}

/// A fixed list (tests, and a server without a directory).
impl Domains for Vec<String> {
    fn domains(&self, max: usize) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
        Box::pin(async move { Ok(self.iter().take(max).cloned().collect()) })
    }
}

/// What the ACME client works with, all shared with the rest of the server.
pub struct Context {
    /// The server's host name (`server.hostname`): certified alone, and first.
    pub host_name: String,
    /// Where certificates are installed and TLS-ALPN-01 challenges answered.
    pub certificates: Arc<Certificates>,
    /// Where HTTP-01 challenges are answered (served by the plain HTTP listener).
    pub http01: Arc<Http01Tokens>,
    /// Where the account and the certificates are kept.
    pub store: Store,
    pub domains: Arc<dyn Domains>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    /// The trust anchors of the ACME server's HTTPS: the system's and `acme.ca_file`'s,
    /// read by the binary (only it reads the environment).
    pub roots: Arc<rustls::RootCertStore>,
}

/// The ACME client's task; see the crate documentation.
pub struct Acme {
    options: Options,
    context: Context,
    client: client::Client,
    wake: Arc<Notify>,
    metrics: Metrics,
}

struct Metrics {
    issued: Counter,
    failed: Counter,
    reused: Counter,
}

/// A certificate kept in the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    /// The ACME server that issued it: another one (staging to production) orders anew.
    directory_url: String,
    names: Vec<String>,
    #[serde(flatten)]
    issued: Issued,
}

/// The account kept in the store.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory_url: String,
    credentials: AccountCredentials,
}

/// One group of names and how its certificate stands.
struct Group {
    names: Vec<String>,
    /// The notAfter of the certificate installed for it.
    not_after_s: Option<u64>,
    /// The store was looked at for a kept certificate.
    looked_in_store: bool,
    /// Failed orders in a row.
    failures: u32,
    /// No order before this.
    retry_at: Option<Instant>,
}

impl Acme {
    pub fn new(options: Options, context: Context) -> Acme {
        let client = client::Client::new(&options, context.roots.clone());
        let registry = &context.registry;
        let (help, name) = ("ACME certificate orders, by result", "hameau_acme_orders_total");
        let metrics = Metrics {
            issued: registry.counter(name, help, &[("result", "issued")]),
            failed: registry.counter(name, help, &[("result", "failed")]),
            reused: registry.counter(
                "hameau_acme_certificates_loaded_total",
                "ACME certificates read back from the store and served without an order",
                &[],
            ),
        };
        Acme { options, context, client, wake: Arc::new(Notify::new()), metrics }
    }

    /// Wakes the task for a check now (a domain added, `SIGHUP`).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Checks, orders and renews until `shutdown` turns true; an order in flight is dropped
    /// then (the next start orders again).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(
            directory = %self.options.directory_url,
            challenge = self.options.challenge.name(),
            "ACME: certificates will be ordered and renewed"
        );
        let mut account: Option<Account> = None;
        let mut groups: HashMap<String, Group> = HashMap::new();
        loop {
            tokio::select! {
                () = self.check(&mut account, &mut groups) => {}
                () = hameau_net::stopped(&mut shutdown) => return,
            }
            let now = Instant::now();
            let next_retry = groups.values().filter_map(|group| group.retry_at).min();
            let wait = match next_retry {
                Some(at) => at.saturating_duration_since(now).min(self.options.check_interval()),
                None => self.options.check_interval(),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => {}
                () = hameau_net::stopped(&mut shutdown) => return,
            }
        }
    }

    /// One pass over every group: load, order or renew what is due.
    async fn check(&self, account: &mut Option<Account>, groups: &mut HashMap<String, Group>) {
        let (listed, complete) = self.list().await;
        let firsts: HashSet<&String> = listed.iter().filter_map(|names| names.first()).collect();
        groups.retain(|first, group| {
            let kept = firsts.contains(first);
            // A domain that left (a commune gone): its names fall back from the next
            // handshake. Only when the list is known whole: a store that failed to answer
            // removes nothing.
            if !kept && complete {
                self.context.certificates.remove(&group.names);
                tracing::info!(names = %group.names.join(","), "ACME: names no longer served here; certificate removed");
            }
            kept || !complete
        });
        for names in &listed {
            let Some(first) = names.first() else { continue };
            let group = groups.entry(first.clone()).or_insert_with(|| Group {
                names: names.clone(),
                not_after_s: None,
                looked_in_store: false,
                failures: 0,
                retry_at: None,
            });
            if group.names != *names {
                *group = Group {
                    names: names.clone(),
                    not_after_s: None,
                    looked_in_store: false,
                    failures: 0,
                    retry_at: None,
                };
            }
            self.check_group(account, group).await;
        }
    }

    async fn check_group(&self, account: &mut Option<Account>, group: &mut Group) {
        let now_s = self.context.clock.now_s();
        if !group.looked_in_store {
            group.looked_in_store = true;
            if let Some(stored) = self.load(&group.names, now_s).await {
                group.not_after_s = Some(stored.not_after_s);
            }
        }
        let renew_at =
            group.not_after_s.map(|not_after| not_after.saturating_sub(self.options.renew_before().as_secs()));
        if renew_at.is_some_and(|at| now_s < at) {
            return;
        }
        if group.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        let challenge = self.options.challenge;
        let started = Instant::now();
        let result = match self.account(account).await {
            Ok(account) => {
                let responders =
                    Responders { certificates: self.context.certificates.clone(), tokens: self.context.http01.clone() };
                issue::issue(&account, &group.names, challenge, &responders, &self.options).await
            }
            Err(why) => Err(issue::Failure { name: None, why }),
        };
        match result {
            Ok(issued) => {
                self.install(&group.names, &issued);
                self.keep(&group.names, &issued).await;
                self.metrics.issued.inc();
                tracing::info!(
                    names = %group.names.join(","),
                    challenge = challenge.name(),
                    not_after_s = issued.not_after_s,
                    renewal = group.not_after_s.is_some(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "ACME: certificate issued and installed"
                );
                group.not_after_s = Some(issued.not_after_s);
                group.failures = 0;
                group.retry_at = None;
            }
            Err(failure) => {
                self.metrics.failed.inc();
                group.failures = group.failures.saturating_add(1);
                let retry_in = self.options.retry_after(group.failures);
                group.retry_at = Some(Instant::now() + retry_in);
                tracing::warn!(
                    names = %group.names.join(","),
                    name = failure.name.as_deref().unwrap_or("-"),
                    challenge = challenge.name(),
                    failures = group.failures,
                    retry_in_s = retry_in.as_secs(),
                    error = %failure.why,
                    "ACME: certificate order failed; retrying later / échec de la commande de certificat, nouvel essai plus tard"
                );
            }
        }
    }

    /// The groups of names to certify: the host name, then each domain's three names,
    /// at most `acme.names_max` names in all, each name once; and whether the domains
    /// could be listed (when not, only the host name is there).
    async fn list(&self) -> (Vec<Vec<String>>, bool) {
        let domains_max = self.options.names_max.saturating_sub(1) / 3;
        let (domains, complete) = match self.context.domains.domains(domains_max + 1).await {
            Ok(domains) => (domains, true),
            Err(e) => {
                tracing::warn!(error = %e, "ACME: the domains cannot be listed; only the host name is checked");
                (Vec::new(), false)
            }
        };
        if domains.len() > domains_max {
            tracing::warn!(
                names_max = self.options.names_max,
                "ACME: more domains than acme.names_max allows; the domains after the first {domains_max} get no certificate"
            );
        }
        (groups(&self.context.host_name, &domains[..domains.len().min(domains_max)]), complete)
    }

    /// The account: the kept one, or a new one (kept).
    async fn account(&self, cached: &mut Option<Account>) -> Result<Account, String> {
        if let Some(account) = cached {
            return Ok(account.clone());
        }
        let directory_url = &self.options.directory_url;
        let kept = match self.context.store.get(ACCOUNT_KEY).await {
            Ok(entry) => entry.and_then(|entry| serde_json::from_slice::<StoredAccount>(&entry.value).ok()),
            Err(e) => return Err(format!("reading the account from the store: {e}")),
        };
        let builder = || instant_acme::Account::builder_with_http(Box::new(self.client.clone()));
        let account = match kept.filter(|kept| kept.directory_url == *directory_url) {
            Some(kept) => builder()
                .from_credentials(kept.credentials)
                .await
                .map_err(|e| format!("the account kept for {directory_url}: {e}"))?,
            None => {
                let contact = self.options.contact_urls();
                let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount { contact: &contact, terms_of_service_agreed: true, only_return_existing: false };
                let (account, credentials) = builder()
                    .create(&new, directory_url.clone(), None)
                    .await
                    .map_err(|e| format!("creating the account at {directory_url}: {}", describe(&e)))?;
                let stored = StoredAccount { directory_url: directory_url.clone(), credentials };
                let mut batch = Batch::new();
                batch.set(ACCOUNT_KEY, &serde_json::to_vec(&stored).expect("an account always serialises"));
                self.context.store.commit(batch).await.map_err(|e| format!("keeping the account in the store: {e}"))?;
                tracing::info!(directory = %directory_url, account = account.id(), "ACME: account created");
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    /// The kept certificate of `names`, installed, if it is from this ACME server and not
    /// expired.
    async fn load(&self, names: &[String], now_s: u64) -> Option<Issued> {
        let key = certificate_key(names.first()?);
        let entry = match self.context.store.get(&key).await {
            Ok(entry) => entry?,
            Err(e) => {
                tracing::warn!(error = %e, "ACME: a kept certificate cannot be read from the store");
                return None;
            }
        };
        let stored = serde_json::from_slice::<Stored>(&entry.value).ok()?;
        let usable = stored.names == names
            && stored.directory_url == self.options.directory_url
            && stored.issued.not_after_s > now_s;
        if !usable {
            return None;
        }
        if !self.install(names, &stored.issued) {
            return None;
        }
        self.metrics.reused.inc();
        tracing::info!(names = %names.join(","), not_after_s = stored.issued.not_after_s, "ACME: kept certificate installed");
        Some(stored.issued)
    }

    /// Serves `issued` for `names` from the next handshake on; false if it is unusable.
    fn install(&self, names: &[String], issued: &Issued) -> bool {
        match hameau_net::certs::certified_key(issued.chain_pem.as_bytes(), issued.key_pem.as_bytes()) {
            Ok(key) => {
                self.context.certificates.install(names, key);
                true
            }
            Err(e) => {
                tracing::warn!(names = %names.join(","), error = %e, "ACME: a certificate cannot be used");
                false
            }
        }
    }

    /// Keeps `issued` in the store (a restart serves it without a new order).
    async fn keep(&self, names: &[String], issued: &Issued) {
        let Some(first) = names.first() else { return };
        let stored =
            Stored { directory_url: self.options.directory_url.clone(), names: names.to_vec(), issued: issued.clone() };
        let mut batch = Batch::new();
        batch.set(&certificate_key(first), &serde_json::to_vec(&stored).expect("a certificate always serialises"));
        if let Err(e) = self.context.store.commit(batch).await {
            // Served all the same; the next start orders it again.
            tracing::warn!(names = %names.join(","), error = %e, "ACME: a certificate cannot be kept in the store");
        }
    }
}

/// The store key of the certificate whose first name is `first`.
fn certificate_key(first: &str) -> Vec<u8> {
    format!("{CERTIFICATE_PREFIX}{first}").into_bytes()
}

/// An instant-acme error on one line, with the problem document when there is one.
fn describe(error: &instant_acme::Error) -> String {
    match error {
        instant_acme::Error::Api(problem) => issue::describe(problem),
        other => other.to_string(),
    }
}

/// The host name alone (when it is a DNS name an ACME server can check), then each
/// domain's `autoconfig.`, `autodiscover.` and `mta-sts.` names, lowercase, each name once.
fn groups(host_name: &str, domains: &[String]) -> Vec<Vec<String>> {
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    let host_name = host_name.trim_end_matches('.').to_ascii_lowercase();
    if host_name.contains('.') && host_name.parse::<std::net::IpAddr>().is_err() {
        seen.insert(host_name.clone());
        groups.push(vec![host_name]);
    }
    for domain in domains {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let names: Vec<String> = ["autoconfig", "autodiscover", "mta-sts"]
            .iter()
            .map(|label| format!("{label}.{domain}"))
            .filter(|name| seen.insert(name.clone()))
            .collect();
        if !names.is_empty() {
            groups.push(names);
        }
    }
    groups
}

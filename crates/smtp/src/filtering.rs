//! The MX's filter stage (issue 14; docs/filter.md): after authentication, before
//! delivery, each recipient tenant's verdict on the message from `hameau-filter`.
//!
//! - What the filter needs of a tenant (its domains, its people with their display names)
//!   comes from the directory and is kept `filter.cache_s` in memory, for at most
//!   `filter.cache_tenants_max` tenants; the correspondents from [`Contacts`].
//! - The DNS blocklists ([`Dnsbl`]) are asked once per message (client address and link
//!   hosts); the rules, the classifier and first contact once per tenant.
//! - DMARC's `p=quarantine` is the symbol `DMARC_QUARANTINE`, and puts the message in
//!   Junk at least, whatever the tenant's thresholds.
//! - The sender of a message delivered without any finding, whose author domain passed
//!   DMARC, becomes a correspondent of the tenant (see [`hameau_filter::contacts`]).
//! - A failure of the filter's own storage (reading the classifier, the correspondents)
//!   is logged and the message judged without that part: filtering must not stop mail.
//! - Every verdict is counted in `/metrics` (`hameau_filter_messages_total{action}`,
//!   `hameau_filter_symbols_total{symbol}`) and logged with its reason.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hameau_directory::{Directory, Principal};
use hameau_filter::{Action, Contacts, Symbol, Thresholds, Verdict, WarningStyle};
use hameau_telemetry::Registry;

use crate::dnsbl::Dnsbl;

/// Accounts and aliases read per tenant for the impersonation rule: 5,000 (a large town
/// hall has a few hundred); past it the rest is not compared, and logged.
pub const PEOPLE_MAX: usize = 5_000;

/// What the filter is given besides the message.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub client_ip: IpAddr,
    /// The envelope sender, empty for `<>`.
    pub mail_from: &'a str,
    /// The author domain passed DMARC.
    pub dmarc_pass: bool,
    /// DMARC failed under the author domain's `p=quarantine` (and no trusted ARC sealer
    /// overrode it).
    pub dmarc_quarantine: bool,
}

/// One tenant's verdict with what delivery needs of it.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub verdict: Verdict,
    pub warning: WarningStyle,
}

/// A tenant's domains and people, as the rules compare senders with them.
struct Profile {
    domains: Vec<String>,
    people: Vec<hameau_filter::Person>,
}

/// The filter stage of the MX.
pub struct FilterStage {
    options: hameau_filter::Options,
    directory: Directory,
    contacts: Contacts,
    learning: hameau_filter::learning::Classifier,
    settings: hameau_filter::Settings,
    pub(crate) quarantine: hameau_filter::Quarantine,
    dnsbl: Option<Dnsbl>,
    profiles: Mutex<HashMap<String, (Instant, Arc<Profile>)>>,
    registry: Arc<Registry>,
}

impl FilterStage {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        options: hameau_filter::Options,
        directory: Directory,
        contacts: Contacts,
        learning: hameau_filter::learning::Classifier,
        settings: hameau_filter::Settings,
        quarantine: hameau_filter::Quarantine,
        dnsbl: Option<Dnsbl>,
        registry: Arc<Registry>,
    ) -> FilterStage {
        FilterStage {
            options,
            directory,
            contacts,
            learning,
            settings,
            quarantine,
            dnsbl,
            profiles: Mutex::new(HashMap::new()),
            registry,
        }
    }

    /// `tenant`'s verdict on `raw` (the message as it came, before our headers).
    pub async fn judge(&self, tenant: &str, raw: &[u8], facts: &Facts<'_>) -> Judgement {
        let (thresholds, warning) = match self.settings.effective(tenant).await {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "filter settings unreadable: the defaults apply");
                (self.options.thresholds, self.options.warning.clone())
            }
        };
        let profile = self.profile(tenant).await;
        let known = match self.contacts.known_domains(tenant).await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "correspondents unreadable: judged without them");
                Arc::new(Vec::new())
            }
        };
        let context = hameau_filter::Context {
            own_domains: &profile.domains,
            people: &profile.people,
            known_domains: &known,
            mail_from: facts.mail_from,
        };
        // One parse for the rules and the classifier.
        let parsed = hameau_filter::parse(raw);
        let analysis = hameau_filter::analyse_parsed(parsed.as_ref(), &context, &self.options.limits);
        let mut symbols = analysis.symbols;
        let mut at_least = analysis.at_least;
        let mut known_sender = false;
        if let Some(from) = &analysis.from_address {
            match self.contacts.is_known(tenant, from).await {
                Ok(true) => known_sender = true,
                Ok(false) => symbols.push(Symbol {
                    name: "FIRST_CONTACT",
                    score: 0.5,
                    detail: format!("first message from {from}"),
                }),
                Err(e) => tracing::warn!(tenant, error = %e, "correspondents unreadable: first contact not judged"),
            }
        }
        let tokens = || hameau_filter::bayes::tokens_parsed(parsed.as_ref(), raw, &self.options.limits);
        match self.learning.score_tokens(Some(tenant), tokens).await {
            Ok(Some(probability)) => symbols.extend(hameau_filter::bayes::symbol(probability)),
            Ok(None) => {}
            Err(e) => tracing::warn!(tenant, error = %e, "classifier unreadable: judged without it"),
        }
        if facts.dmarc_quarantine {
            let detail = "DMARC failed under the author domain's p=quarantine".to_string();
            symbols.push(Symbol { name: "DMARC_QUARANTINE", score: 8.0, detail });
            at_least = at_least.max(Action::Junk);
        }
        if let Some(dnsbl) = &self.dnsbl {
            // Asked again for each tenant of a message: the resolver's cache answers.
            symbols.extend(listed(dnsbl, facts.client_ip, &analysis.link_hosts).await);
        }
        let verdict = Verdict::decide(symbols, &thresholds, at_least);
        self.count(&verdict);
        // Clean: delivered as it is, with no finding against it (first contact aside; the
        // classifier's BAYES_HAM is for it).
        let clean = verdict.action == Action::Deliver
            && verdict.symbols.iter().all(|s| s.name == "FIRST_CONTACT" || s.score <= 0.0);
        // A sender known already is not recorded again (nothing reads when it was last seen).
        if clean
            && facts.dmarc_pass
            && !known_sender
            && let Some(from) = analysis.from_address
        {
            self.remember(tenant, &[from]).await;
        }
        Judgement { verdict, warning }
    }

    /// Records `addresses` as correspondents of `tenant` (the recipients of what its
    /// agents send, the senders of its clean mail); a failure is logged, never fatal.
    pub async fn remember(&self, tenant: &str, addresses: &[String]) {
        remember(&self.contacts, tenant, addresses).await
    }

    /// The work one message may cost.
    pub fn limits(&self) -> &hameau_filter::Limits {
        &self.options.limits
    }

    /// The thresholds every tenant starts from.
    pub fn default_thresholds(&self) -> Thresholds {
        self.options.thresholds
    }

    /// Counts a message the quarantine of `tenant` was too full to hold
    /// (`hameau_filter_quarantine_full_total`): an operator alerts on it, the tenant's
    /// admin has mail to release or delete.
    pub fn count_quarantine_full(&self) {
        self.registry
            .counter(
                "hameau_filter_quarantine_full_total",
                "Messages the filter would hold, refused with 452 because their tenant's quarantine was full.",
                &[],
            )
            .inc();
    }

    fn count(&self, verdict: &Verdict) {
        let action = verdict.action.as_str();
        self.registry
            .counter("hameau_filter_messages_total", "Messages judged by the filter, by action.", &[("action", action)])
            .inc();
        for symbol in &verdict.symbols {
            self.registry
                .counter(
                    "hameau_filter_symbols_total",
                    "Findings of the filter, by symbol.",
                    &[("symbol", symbol.name)],
                )
                .inc();
        }
    }

    /// The tenant's domains and people, from the cache or the directory.
    async fn profile(&self, tenant: &str) -> Arc<Profile> {
        let ttl = Duration::from_secs(self.options.cache_s);
        if let Some((at, profile)) = self.profiles.lock().expect("not poisoned").get(tenant)
            && at.elapsed() < ttl
        {
            return profile.clone();
        }
        let profile = Arc::new(match read_profile(&self.directory, tenant).await {
            Ok(profile) => profile,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "the tenant's people are unreadable: judged without them");
                Profile { domains: Vec::new(), people: Vec::new() }
            }
        });
        let mut profiles = self.profiles.lock().expect("not poisoned");
        if profiles.len() >= self.options.cache_tenants_max {
            profiles.retain(|_, (at, _)| at.elapsed() < ttl);
            if profiles.len() >= self.options.cache_tenants_max {
                profiles.clear();
            }
        }
        profiles.insert(tenant.to_owned(), (Instant::now(), profile.clone()));
        profile
    }
}

/// The blocklists' findings on the client and the message's link hosts.
async fn listed(dnsbl: &Dnsbl, client_ip: IpAddr, hosts: &[String]) -> Vec<Symbol> {
    let (clients, links) = dnsbl.check(client_ip, hosts).await;
    let mut symbols = Vec::new();
    if let Some(first) = clients.first() {
        let detail = format!("client {} listed by {} ({})", first.listed, first.zone, first.answer);
        symbols.push(Symbol { name: "DNSBL_CLIENT", score: 8.0, detail });
    }
    if let Some(first) = links.first() {
        let detail = format!("link host {} listed by {} ({})", first.listed, first.zone, first.answer);
        symbols.push(Symbol { name: "DNSBL_LINK", score: 6.0, detail });
    }
    symbols
}

/// Records correspondents, logging what could not be.
pub async fn remember(contacts: &Contacts, tenant: &str, addresses: &[String]) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match contacts.record(tenant, addresses, now).await {
        Ok(0) => {}
        Ok(dropped) => tracing::info!(tenant, dropped, "correspondents not recorded: filter.contacts_max reached"),
        Err(e) => tracing::warn!(tenant, error = %e, "correspondents not recorded"),
    }
}

/// Reads a tenant's domains, accounts (display name and address) and aliases (their
/// local part stands for a name: `mairie@`), page by page, at most [`PEOPLE_MAX`].
async fn read_profile(directory: &Directory, tenant: &str) -> Result<Profile, hameau_directory::Error> {
    let operator = Principal::Operator;
    let mut domains = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = directory.list_domains(&operator, Some(tenant), after.as_deref(), None).await?;
        domains.extend(page.items.into_iter().map(|domain| domain.name.to_lowercase()));
        match page.next {
            Some(next) if domains.len() < PEOPLE_MAX => after = Some(next),
            _ => break,
        }
    }
    let mut people = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = directory.list_accounts(&operator, Some(tenant), after.as_deref(), None).await?;
        people.extend(
            page.items
                .into_iter()
                .map(|account| hameau_filter::Person { name: account.display_name, address: account.address }),
        );
        match page.next {
            Some(next) if people.len() < PEOPLE_MAX => after = Some(next),
            _ => break,
        }
    }
    let mut after: Option<String> = None;
    loop {
        let page = directory.list_aliases(&operator, Some(tenant), after.as_deref(), None).await?;
        people.extend(
            page.items.into_iter().map(|alias| hameau_filter::Person { name: String::new(), address: alias.address }),
        );
        match page.next {
            Some(next) if people.len() < PEOPLE_MAX => after = Some(next),
            _ => break,
        }
    }
    if people.len() >= PEOPLE_MAX {
        tracing::info!(tenant, max = PEOPLE_MAX, "the impersonation rule compares only the first people of the tenant");
        people.truncate(PEOPLE_MAX);
    }
    Ok(Profile { domains, people })
}

//! The `[filter]` section: thresholds, the warning's form, the blocklists, and the limits
//! that bound the work on one message.

use hameau_limits::{Problem, range};
use serde::{Deserialize, Serialize};

const SECTION: &str = "filter";

/// The `[filter]` section. Every tenant starts from these; a tenant's own settings
/// (thresholds, the warning's languages and subject tag) override them.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Off: the MX stores every authenticated message as before issue 14 (DMARC's
    /// `p=quarantine` still goes to Junk), with no `X-Hameau-Filter` header.
    pub enabled: bool,
    /// Addresses recorded as correspondents per tenant (`contacts`): 10,000 is years of a
    /// town hall's mail; past it, new senders stay "first contact".
    pub contacts_max: u64,
    /// Domains corresponded with that the lookalike rules compare a sender with, per
    /// tenant: 2,000 (each message is compared with every one of them).
    pub known_domains_max: usize,
    /// Tenants whose settings and known domains are kept in memory: 1,000 (every commune
    /// of a large installation), a few hundred kilobytes each at most.
    pub cache_tenants_max: usize,
    /// How long a tenant's settings, people and known domains are kept in memory before
    /// they are read again: 60 s, so that a change made through another process (the
    /// local CLI) shows within a minute; a change of settings through the running
    /// server's API applies at once.
    pub cache_s: u64,
    /// Senders known as correspondents kept in memory (for `cache_s`), so that the
    /// message of a known sender costs no store read: 50,000 addresses of every tenant,
    /// a few MiB. Only known senders are kept (a sender becomes known, never unknown,
    /// while its tenant lives); emptied whole when full. 0 reads the store every time.
    pub contacts_cache_entries: usize,
    /// DNS blocklists of client addresses, as zones (`zen.example.org`): the client's IPv4
    /// address reversed is looked up under each (IPv6 by its nibbles). None by default:
    /// most lists need a subscription for commercial use (docs/filter.md).
    pub dnsbl_client_zones: Vec<String>,
    /// DNS blocklists of domains (`dbl.example.org`): the hosts of a message's links are
    /// looked up under each.
    pub dnsbl_domain_zones: Vec<String>,
    /// Resolvers the blocklists are asked through, as `address:port`; empty: those of
    /// `[dns]`. Most lists refuse public resolvers: a local one is usual.
    pub dnsbl_resolvers: Vec<std::net::SocketAddr>,
    /// Link hosts looked up per message: 20 (the first ones; a message of 10,000 links
    /// costs no more).
    pub dnsbl_hosts_max: usize,
    /// How long the blocklist lookups of one message may take together: 3 s; a list that
    /// does not answer in time counts as not listing.
    pub dnsbl_timeout_s: u64,
    /// The default thresholds of every tenant: keys of the same `[filter]` table, which
    /// `config` reads into each part.
    #[serde(skip)]
    pub thresholds: Thresholds,
    /// How every tenant's agents are warned unless the tenant chose otherwise.
    #[serde(skip)]
    pub warning: WarningStyle,
    /// The work one message may cost.
    #[serde(skip)]
    pub limits: Limits,
    /// How long a held message waits for an administrator before it is deleted: 30
    /// days, a month of absence (holidays) covered, and what no one released by then was
    /// not missed. At least an hour, at most a year (held mail counts in no quota).
    pub quarantine_expiry_s: u64,
    /// The bytes one tenant's quarantine may hold: 512 MiB, a month of the dangerous
    /// attachments a town hall receives many times over (a few a week, a few MiB each),
    /// small beside a server's disk. The size of what is held is the sender's choice: a
    /// flood of held mail fills only its tenant's quarantine, and the MX then answers
    /// `452 4.3.1` (try later) until an administrator releases or deletes some, or they
    /// expire. At least 1 MiB, at most 1 TiB.
    pub quarantine_tenant_bytes_max: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            enabled: true,
            contacts_max: 10_000,
            known_domains_max: 2_000,
            cache_tenants_max: 1_000,
            cache_s: 60,
            contacts_cache_entries: 50_000,
            dnsbl_client_zones: Vec::new(),
            dnsbl_domain_zones: Vec::new(),
            dnsbl_resolvers: Vec::new(),
            dnsbl_hosts_max: 20,
            dnsbl_timeout_s: 3,
            thresholds: Thresholds::default(),
            warning: WarningStyle::default(),
            limits: Limits::default(),
            quarantine_expiry_s: 30 * 86_400,
            quarantine_tenant_bytes_max: 512 << 20,
        }
    }
}

impl Options {
    /// Ranges and relationships, each naming its `[filter]` key.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "contacts_max", self.contacts_max, 0, 10_000_000)?;
        range(SECTION, "known_domains_max", self.known_domains_max as u64, 0, 100_000)?;
        range(SECTION, "cache_tenants_max", self.cache_tenants_max as u64, 1, 1_000_000)?;
        range(SECTION, "cache_s", self.cache_s, 0, 86_400)?;
        range(SECTION, "contacts_cache_entries", self.contacts_cache_entries as u64, 0, 10_000_000)?;
        range(SECTION, "dnsbl_hosts_max", self.dnsbl_hosts_max as u64, 0, 1000)?;
        range(SECTION, "dnsbl_timeout_s", self.dnsbl_timeout_s, 1, 60)?;
        for (key, zones) in
            [("dnsbl_client_zones", &self.dnsbl_client_zones), ("dnsbl_domain_zones", &self.dnsbl_domain_zones)]
        {
            range(SECTION, key, zones.len() as u64, 0, 16)?;
            if let Some(zone) = zones.iter().find(|zone| !is_zone(zone)) {
                return Err(Problem::new(SECTION, key, format!("{zone:?} is not a DNS zone name")));
            }
        }
        self.thresholds.check(SECTION)?;
        self.warning.check(SECTION)?;
        self.limits.check()?;
        range(SECTION, "quarantine_expiry_s", self.quarantine_expiry_s, 3600, 366 * 86_400)?;
        range(SECTION, "quarantine_tenant_bytes_max", self.quarantine_tenant_bytes_max, 1 << 20, 1 << 40)?;
        Ok(())
    }
}

/// A DNS name of at least two labels, each of letters, digits and inner hyphens.
fn is_zone(zone: &str) -> bool {
    let labels: Vec<&str> = zone.trim_end_matches('.').split('.').collect();
    labels.len() >= 2
        && zone.len() <= 200
        && labels.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The scores from which each action applies; a total below `warn_score` is delivered
/// as it is. Each must be above the one before (an action never milder for a higher
/// score).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// 4: one strong sign (a lookalike of the tenant's domain, an impersonated name) or
    /// several weak ones (first contact and a link whose text and target differ).
    pub warn_score: f64,
    /// 8: as SpamAssassin's 5 to its usual spam, with room for the warning below it.
    pub junk_score: f64,
    /// 15: what no agent should open without an administrator's look.
    pub quarantine_score: f64,
    /// 30: only certain spam is refused at DATA (the sender learns it was refused; a
    /// false positive there is not even in quarantine).
    pub reject_score: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { warn_score: 4.0, junk_score: 8.0, quarantine_score: 15.0, reject_score: 30.0 }
    }
}

impl Thresholds {
    /// The action a total `score` gets.
    pub fn action(&self, score: f64) -> crate::Action {
        use crate::Action;
        if score >= self.reject_score {
            Action::Reject
        } else if score >= self.quarantine_score {
            Action::Quarantine
        } else if score >= self.junk_score {
            Action::Junk
        } else if score >= self.warn_score {
            Action::Warn
        } else {
            Action::Deliver
        }
    }

    /// Each threshold finite, positive and above the one before; `section` names the
    /// keys (`filter` for the defaults).
    pub fn check(&self, section: &str) -> Result<(), Problem> {
        let keys = [
            ("warn_score", self.warn_score),
            ("junk_score", self.junk_score),
            ("quarantine_score", self.quarantine_score),
            ("reject_score", self.reject_score),
        ];
        let mut previous: Option<(&str, f64)> = None;
        for (key, value) in keys {
            if !value.is_finite() || !(0.5..=1000.0).contains(&value) {
                return Err(Problem::new(
                    section,
                    key,
                    format!("{value} is out of range: it must be between 0.5 and 1000"),
                ));
            }
            if let Some((previous_key, previous_value)) = previous
                && value <= previous_value
            {
                let problem = format!("{value} is not above {section}.{previous_key} ({previous_value})");
                return Err(Problem::new(section, key, problem));
            }
            previous = Some((key, value));
        }
        Ok(())
    }
}

/// How a tenant's agents are warned of a message delivered with [`crate::Action::Warn`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct WarningStyle {
    /// A banner at the top of the visible body (text and HTML parts): on, the agent reads
    /// why before reading the message.
    pub banner: bool,
    /// The banner's English version under the French one: off, the agents of a commune
    /// read French.
    pub english: bool,
    /// Put in front of the subject, so that the warning shows in the message list too;
    /// empty: no tag. `[SUSPECT]` reads the same in French and English.
    pub subject_tag: String,
}

impl Default for WarningStyle {
    fn default() -> Self {
        WarningStyle { banner: true, english: false, subject_tag: "[SUSPECT]".into() }
    }
}

impl WarningStyle {
    /// The subject tag is one short line: at most 40 characters, no control character.
    pub fn check(&self, section: &str) -> Result<(), Problem> {
        if self.subject_tag.chars().count() > 40 || self.subject_tag.chars().any(char::is_control) {
            let problem = "it must be at most 40 characters, without line breaks or control characters";
            return Err(Problem::new(section, "subject_tag", problem));
        }
        Ok(())
    }
}

/// What one message may cost the rules: each bound is reached on purpose by a hostile
/// message (a zip bomb, a deeply nested MIME tree, an HTML part of 10,000 links), and
/// what is past it is not looked at and says so (a symbol), never a failure.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// MIME parts looked at per message: 256, as `mail.parts_max`'s order of magnitude
    /// (a real message has under 20).
    pub parts_max: usize,
    /// Links looked at per message: 1,000 (a newsletter has under 200).
    pub links_max: usize,
    /// Bytes of one HTML or text part read for links and text: 2 MiB.
    pub text_bytes_max: usize,
    /// Entries of one zip archive listed: 1,000.
    pub zip_entries_max: usize,
    /// Zip archives opened inside zip archives: 2 (an archive in an archive in the
    /// message), as the mail filters of the large providers.
    pub zip_depth_max: usize,
    /// Bytes inflated from all the archives of one message (to look inside nested ones
    /// and Office files): 16 MiB; a zip bomb stops there.
    pub zip_inflated_bytes_max: usize,
    /// Distinct tokens the classifier takes from one message: 3,000. A long newsletter
    /// gives about 2,000 (words, word pairs, link hosts); each token of a trained message is
    /// one count written to the store, so more would cost writes and add little evidence.
    pub bayes_tokens_max: usize,
    /// Messages of each class (spam and ham) the classifier must have been trained on
    /// before it says anything: 200, as SpamAssassin's `bayes_min_spam_num` and
    /// `bayes_min_ham_num`; below that a few words decide too much.
    pub bayes_min_messages: u64,
    /// Distinct tokens one classifier (a tenant's, or the shared one) keeps in the store:
    /// 500,000, about 20 MB on disk, three times SpamAssassin's `bayes_expiry_max_db_size`
    /// (150,000). When full, new tokens are not learnt (their messages still count, the
    /// tokens already known still learn) and a warning is logged.
    pub bayes_tokens_per_tenant_max: u64,
    /// Messages moved into or out of Junk waiting to be learnt: 10,000 (about 1 MB), one
    /// IMAP MOVE of a whole mailbox. Past it, the learning of the others is dropped and
    /// logged: learning never delays or fails the IMAP command.
    pub bayes_learn_queue_max: usize,
    /// Token counts the MX keeps in memory between two messages: 100,000 (about 8 MiB),
    /// the vocabulary of a busy day. A message's few hundred tokens are then read from
    /// memory, not from the store (the store read was a quarter of the filter's cost per
    /// message). Emptied when full, filled again by the next messages; 0 reads the store
    /// every time.
    pub bayes_cache_entries: usize,
    /// How long a count read from the store is used: 60 s. A learning through the same
    /// classifier (`serve` gives the IMAP trainer the MX's) is seen at once; one by another
    /// process or node within this time.
    pub bayes_cache_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            parts_max: 256,
            links_max: 1000,
            text_bytes_max: 2 << 20,
            zip_entries_max: 1000,
            zip_depth_max: 2,
            zip_inflated_bytes_max: 16 << 20,
            bayes_tokens_max: 3000,
            bayes_min_messages: 200,
            bayes_tokens_per_tenant_max: 500_000,
            bayes_learn_queue_max: 10_000,
            bayes_cache_entries: 100_000,
            bayes_cache_s: 60,
        }
    }
}

impl Limits {
    /// Ranges, each naming its `[filter]` key.
    pub fn check(&self) -> Result<(), Problem> {
        range(SECTION, "parts_max", self.parts_max as u64, 1, 10_000)?;
        range(SECTION, "links_max", self.links_max as u64, 1, 100_000)?;
        range(SECTION, "text_bytes_max", self.text_bytes_max as u64, 1024, 64 << 20)?;
        range(SECTION, "zip_entries_max", self.zip_entries_max as u64, 1, 100_000)?;
        range(SECTION, "zip_depth_max", self.zip_depth_max as u64, 0, 8)?;
        range(SECTION, "zip_inflated_bytes_max", self.zip_inflated_bytes_max as u64, 0, 1 << 30)?;
        range(SECTION, "bayes_tokens_max", self.bayes_tokens_max as u64, 16, 100_000)?;
        range(SECTION, "bayes_min_messages", self.bayes_min_messages, 1, 1_000_000)?;
        range(SECTION, "bayes_tokens_per_tenant_max", self.bayes_tokens_per_tenant_max, 1000, 100_000_000)?;
        range(SECTION, "bayes_learn_queue_max", self.bayes_learn_queue_max as u64, 1, 1_000_000)?;
        range(SECTION, "bayes_cache_entries", self.bayes_cache_entries as u64, 0, 10_000_000)?;
        range(SECTION, "bayes_cache_s", self.bayes_cache_s, 1, 3600)?;
        Ok(())
    }
}

//! Slowing down and then refusing repeated authentication failures, per client address
//! and per account, whatever the protocol.
//!
//! After `failures_before_delay` failures within `window_s`, each further attempt waits
//! `delay_ms` doubled per failure (capped at `delay_ms_max`); after `failures_max`, the
//! key is refused for `lockout_s`. IPv6 clients are counted per /64, the block one
//! subscriber usually holds, so that rotating addresses within it does not reset the count.
//!
//! A login is counted under two keys, its client address and its account (see
//! [`AuthLimiter::check_login`]), and each failure remembers which account (for the
//! address) or which address (for the account) it came with. A success takes back only
//! the failures of its own pair: an agent's own typos before a good login stop counting
//! against the town hall's shared address, but an attacker's successful logins to its own
//! account never clear what its guesses at other accounts added to its address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The limits of [`AuthLimiter`]: the `[auth]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimiterOptions {
    /// Failures allowed before attempts are slowed down. 5 lets a person mistype a few
    /// times without noticing anything.
    pub failures_before_delay: u32,
    /// The first delay, doubled with each further failure. 250 ms.
    pub delay_ms: u64,
    /// The longest delay. 4 s keeps a script to under one guess per 4 s per address.
    pub delay_ms_max: u64,
    /// Failures after which the client is refused outright. 20.
    pub failures_max: u32,
    /// How long a refused client stays refused. 15 minutes, as fail2ban's default bantime
    /// of 10 minutes rounded up.
    pub lockout_s: u64,
    /// Failures older than this are forgotten. 15 minutes.
    pub window_s: u64,
    /// Most clients tracked; the oldest are dropped past it. 100,000 entries is a few MiB.
    pub entries_max: usize,
}

impl Default for LimiterOptions {
    fn default() -> Self {
        LimiterOptions {
            failures_before_delay: 5,
            delay_ms: 250,
            delay_ms_max: 4000,
            failures_max: 20,
            lockout_s: 900,
            window_s: 900,
            entries_max: 100_000,
        }
    }
}

impl LimiterOptions {
    /// Checks each key of `[auth]` and that delays and refusals come in order.
    pub fn check(&self) -> Result<(), hameau_limits::Problem> {
        use hameau_limits::{Problem, range};
        range("auth", "failures_before_delay", u64::from(self.failures_before_delay), 0, 1000)?;
        range("auth", "delay_ms", self.delay_ms, 0, 60_000)?;
        range("auth", "delay_ms_max", self.delay_ms_max, 0, 60_000)?;
        range("auth", "failures_max", u64::from(self.failures_max), 1, 100_000)?;
        range("auth", "lockout_s", self.lockout_s, 0, 7 * 86_400)?;
        range("auth", "window_s", self.window_s, 1, 7 * 86_400)?;
        range("auth", "entries_max", self.entries_max as u64, 1, 100_000_000)?;
        if self.delay_ms > self.delay_ms_max {
            let problem = format!("{} is larger than auth.delay_ms_max ({})", self.delay_ms, self.delay_ms_max);
            return Err(Problem::new("auth", "delay_ms", problem));
        }
        if self.failures_before_delay >= self.failures_max {
            let problem =
                format!("{} must be below auth.failures_max ({})", self.failures_before_delay, self.failures_max);
            return Err(Problem::new("auth", "failures_before_delay", problem));
        }
        Ok(())
    }
}

/// What to do with an authentication attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead, after waiting this long.
    Allow { delay: Duration },
    /// Refuse without checking the credentials; the client may try again after this long.
    Refuse { retry_after_s: u64 },
}

#[derive(Clone, Debug)]
struct Entry {
    failures: u32,
    last_failure_s: u64,
    locked_until_s: u64,
    /// Who the failures came with (a tag of the other key of the pair) and how many, so
    /// that a success takes back its own share only. At most [`SHARES_MAX`]; failures past
    /// it are counted but belong to no pair, and no success takes them back.
    shares: Vec<(u64, u32)>,
}

/// Pairs remembered per key: a limit reached with failures from this many different
/// pairs is an attack, not typos, so that keeping more would not help anyone.
const SHARES_MAX: usize = 32;

/// Counts authentication failures per key (a client address, an account).
pub struct AuthLimiter {
    options: LimiterOptions,
    /// Keys the tags of pairs (a keyed SipHash: a client cannot make two tags collide).
    tags: std::collections::hash_map::RandomState,
    entries: Mutex<HashMap<String, Entry>>,
}

impl AuthLimiter {
    pub fn new(options: LimiterOptions) -> AuthLimiter {
        AuthLimiter { options, tags: Default::default(), entries: Mutex::new(HashMap::new()) }
    }

    /// The key of a client address: the address itself, or its /64 for IPv6.
    pub fn ip_key(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let segments = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", segments[0], segments[1], segments[2], segments[3])
                }
            },
        }
    }

    pub fn check(&self, key: &str, now_s: u64) -> Verdict {
        let entries = self.entries.lock().expect("limiter lock");
        let Some(entry) = entries.get(key) else { return Verdict::Allow { delay: Duration::ZERO } };
        if entry.locked_until_s > now_s {
            return Verdict::Refuse { retry_after_s: entry.locked_until_s - now_s };
        }
        if now_s.saturating_sub(entry.last_failure_s) > self.options.window_s {
            return Verdict::Allow { delay: Duration::ZERO };
        }
        if entry.failures < self.options.failures_before_delay {
            return Verdict::Allow { delay: Duration::ZERO };
        }
        let doublings = (entry.failures - self.options.failures_before_delay).min(20);
        let delay_ms = self.options.delay_ms.saturating_mul(1u64 << doublings).min(self.options.delay_ms_max);
        Verdict::Allow { delay: Duration::from_millis(delay_ms) }
    }

    /// Counts a failure under `key` alone (no pair: no success takes it back).
    pub fn failed(&self, key: &str, now_s: u64) {
        let mut entries = self.entries.lock().expect("limiter lock");
        self.count_failure(&mut entries, key, None, now_s);
    }

    /// Whether a login of `account_key` from `address_key` may go ahead: the stricter of
    /// the two keys' verdicts.
    pub fn check_login(&self, address_key: &str, account_key: &str, now_s: u64) -> Verdict {
        match (self.check(address_key, now_s), self.check(account_key, now_s)) {
            (Verdict::Refuse { retry_after_s: a }, Verdict::Refuse { retry_after_s: b }) => {
                Verdict::Refuse { retry_after_s: a.max(b) }
            }
            (refused @ Verdict::Refuse { .. }, _) | (_, refused @ Verdict::Refuse { .. }) => refused,
            (Verdict::Allow { delay: a }, Verdict::Allow { delay: b }) => Verdict::Allow { delay: a.max(b) },
        }
    }

    /// Counts a failed login under both keys, each remembering the other.
    pub fn login_failed(&self, address_key: &str, account_key: &str, now_s: u64) {
        self.failed_with(address_key, account_key, now_s);
        self.failed_with(account_key, address_key, now_s);
    }

    /// A successful login takes back the failures of its own pair only: those of this
    /// account from this address. Failures of other accounts from the address, and of
    /// this account from other addresses, stay.
    pub fn login_succeeded(&self, address_key: &str, account_key: &str) {
        self.succeeded_with(address_key, account_key);
        self.succeeded_with(account_key, address_key);
    }

    /// Counts a failure under `key`, remembering that it came with `other` (an account
    /// for an address key, an API key's id...).
    pub fn failed_with(&self, key: &str, other: &str, now_s: u64) {
        let tag = self.tag(other);
        let mut entries = self.entries.lock().expect("limiter lock");
        self.count_failure(&mut entries, key, Some(tag), now_s);
    }

    /// Takes back the failures of `key` that came with `other`.
    pub fn succeeded_with(&self, key: &str, other: &str) {
        let tag = self.tag(other);
        let mut entries = self.entries.lock().expect("limiter lock");
        let Some(entry) = entries.get_mut(key) else { return };
        if let Some(at) = entry.shares.iter().position(|(share, _)| *share == tag) {
            let (_, n) = entry.shares.swap_remove(at);
            entry.failures = entry.failures.saturating_sub(n);
        }
        if entry.failures == 0 && entry.locked_until_s == 0 {
            entries.remove(key);
        }
    }

    fn tag(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.tags.hash_one(key)
    }

    fn count_failure(&self, entries: &mut HashMap<String, Entry>, key: &str, pair: Option<u64>, now_s: u64) {
        if entries.len() >= self.options.entries_max && !entries.contains_key(key) {
            self.make_room(entries, now_s);
        }
        let entry = entries.entry(key.to_string()).or_insert(Entry {
            failures: 0,
            last_failure_s: now_s,
            locked_until_s: 0,
            shares: Vec::new(),
        });
        if now_s.saturating_sub(entry.last_failure_s) > self.options.window_s {
            entry.failures = 0;
            entry.shares.clear();
        }
        entry.failures += 1;
        entry.last_failure_s = now_s;
        if let Some(tag) = pair {
            match entry.shares.iter().position(|(share, _)| *share == tag) {
                Some(at) => entry.shares[at].1 += 1,
                None if entry.shares.len() < SHARES_MAX => entry.shares.push((tag, 1)),
                None => {}
            }
        }
        if entry.failures >= self.options.failures_max {
            entry.locked_until_s = now_s + self.options.lockout_s;
            entry.failures = 0;
            entry.shares.clear();
        }
    }

    fn make_room(&self, entries: &mut HashMap<String, Entry>, now_s: u64) {
        let window_s = self.options.window_s;
        entries
            .retain(|_, entry| entry.locked_until_s > now_s || now_s.saturating_sub(entry.last_failure_s) <= window_s);
        if entries.len() >= self.options.entries_max {
            // Still full: forget the stalest tenth rather than grow.
            let mut by_age: Vec<(u64, String)> =
                entries.iter().map(|(key, entry)| (entry.last_failure_s, key.clone())).collect();
            by_age.sort_unstable();
            for (_, key) in by_age.into_iter().take((self.options.entries_max / 10).max(1)) {
                entries.remove(&key);
            }
        }
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("limiter lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

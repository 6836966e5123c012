//! Slowing down and then refusing repeated authentication failures, per client address
//! (and, for password logins, per account), whatever the protocol.
//!
//! After `failures_before_delay` failures within `window_s`, each further attempt waits
//! `delay_ms` doubled per failure (capped at `delay_ms_max`); after `failures_max`, the
//! client is refused for `lockout_s`. A success clears the count. IPv6 clients are counted
//! per /64, the block one subscriber usually holds, so that rotating addresses within it
//! does not reset the count.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The limits of [`AuthLimiter`], filled by `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// What to do with an authentication attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead, after waiting this long.
    Allow { delay: Duration },
    /// Refuse without checking the credentials; the client may try again after this long.
    Refuse { retry_after_s: u64 },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last_failure_s: u64,
    locked_until_s: u64,
}

/// Counts authentication failures per key (a client address, an account).
pub struct AuthLimiter {
    options: LimiterOptions,
    entries: Mutex<HashMap<String, Entry>>,
}

impl AuthLimiter {
    pub fn new(options: LimiterOptions) -> AuthLimiter {
        AuthLimiter { options, entries: Mutex::new(HashMap::new()) }
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

    pub fn failed(&self, key: &str, now_s: u64) {
        let mut entries = self.entries.lock().expect("limiter lock");
        if entries.len() >= self.options.entries_max && !entries.contains_key(key) {
            let window_s = self.options.window_s;
            entries.retain(|_, entry| {
                entry.locked_until_s > now_s || now_s.saturating_sub(entry.last_failure_s) <= window_s
            });
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
        let entry =
            entries.entry(key.to_string()).or_insert(Entry { failures: 0, last_failure_s: now_s, locked_until_s: 0 });
        if now_s.saturating_sub(entry.last_failure_s) > self.options.window_s {
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_failure_s = now_s;
        if entry.failures >= self.options.failures_max {
            entry.locked_until_s = now_s + self.options.lockout_s;
            entry.failures = 0;
        }
    }

    /// How many clients are tracked.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("limiter lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn succeeded(&self, key: &str) {
        self.entries.lock().expect("limiter lock").remove(key);
    }
}

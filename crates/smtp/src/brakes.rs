//! Brakes for a hijacked account: how many messages, and to how many distinct
//! recipients, one account and one tenant may send per hour through submission. A
//! phished town-hall password must not turn the server into a spam cannon that gets the
//! operator's address blocklisted for every commune.
//!
//! The counts are per node and per clock hour, in memory (a restart starts them again;
//! several nodes each count their own, issue 16 revisits this); what a trip does is in the
//! store: a [`hameau_queue::Brake`] that holds the queued mail and refuses new mail until
//! the operator lifts it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The sending limits (keys of `[submission]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendingLimits {
    pub account_messages_per_hour_max: u32,
    pub account_recipients_per_hour_max: u32,
    pub tenant_messages_per_hour_max: u32,
    pub tenant_recipients_per_hour_max: u32,
}

/// A limit gone over: whose, and which, as the log, the API and the client are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tripped {
    /// The whole tenant (`true`) or the account alone.
    pub tenant_wide: bool,
    pub reason: String,
}

/// One hour of one account's or tenant's sending.
#[derive(Debug, Default)]
struct Window {
    hour: u64,
    messages: u32,
    /// Distinct recipients; never more than the limit plus one message's recipients.
    recipients: HashSet<String>,
    /// This window tripped its brake. Counting again means the brake was lifted (braked
    /// senders are refused before they reach the count): the operator's lift starts a new
    /// window, or the sender would trip it again at once.
    tripped: bool,
}

impl Window {
    /// Whether `recipients` more would stay within the limits; counts them if so.
    fn admit(
        &mut self,
        hour: u64,
        recipients: &[String],
        messages_max: u32,
        recipients_max: u32,
    ) -> Result<(), String> {
        if self.hour != hour || self.tripped {
            *self = Window { hour, ..Window::default() };
        }
        if self.messages >= messages_max {
            self.tripped = true;
            return Err(format!("more than {messages_max} messages in an hour"));
        }
        let new: HashSet<&String> = recipients.iter().filter(|r| !self.recipients.contains(*r)).collect();
        if self.recipients.len() + new.len() > recipients_max as usize {
            self.tripped = true;
            return Err(format!("more than {recipients_max} recipients in an hour"));
        }
        Ok(())
    }

    fn count(&mut self, recipients: &[String]) {
        self.messages += 1;
        self.recipients.extend(recipients.iter().cloned());
    }
}

/// Windows kept before old ones are dropped: far above the accounts sending in one hour.
const WINDOWS_MAX: usize = 100_000;

/// The sending counts of every account and tenant.
#[derive(Debug)]
pub struct SendingLimiter {
    limits: SendingLimits,
    windows: Mutex<(HashMap<u64, Window>, HashMap<String, Window>)>,
}

impl SendingLimiter {
    pub fn new(limits: SendingLimits) -> SendingLimiter {
        SendingLimiter { limits, windows: Mutex::default() }
    }

    /// Counts one message of `account` in `tenant` to `recipients` at `now` (seconds), or
    /// says which limit it would go over (and counts nothing).
    pub fn count(&self, tenant: &str, account: u64, recipients: &[String], now: u64) -> Result<(), Tripped> {
        let hour = now / 3600;
        let limits = &self.limits;
        let mut windows = self.windows.lock().expect("sending limiter lock");
        let (accounts, tenants) = &mut *windows;
        if accounts.len() > WINDOWS_MAX {
            accounts.retain(|_, window| window.hour == hour);
        }
        if tenants.len() > WINDOWS_MAX {
            tenants.retain(|_, window| window.hour == hour);
        }
        let mine = accounts.entry(account).or_default();
        mine.admit(hour, recipients, limits.account_messages_per_hour_max, limits.account_recipients_per_hour_max)
            .map_err(|reason| Tripped {
                tenant_wide: false,
                reason: format!("sending limit: {reason} from this account"),
            })?;
        let ours = tenants.entry(tenant.to_string()).or_default();
        ours.admit(hour, recipients, limits.tenant_messages_per_hour_max, limits.tenant_recipients_per_hour_max)
            .map_err(|reason| Tripped {
                tenant_wide: true,
                reason: format!("sending limit: {reason} from tenant {tenant}"),
            })?;
        ours.count(recipients);
        accounts.get_mut(&account).expect("made above").count(recipients);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

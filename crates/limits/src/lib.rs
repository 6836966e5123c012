//! What every crate that declares configuration keys uses to check them: [`Problem`], a
//! problem with one key named by its dotted path (`smtp.write_timeout_s`), and [`range`].
//!
//! Each crate declares its keys once, in its own `Options` or `Limits` struct (the unit
//! last, the default with its reason), and checks them in its `check` method, which
//! returns the first [`Problem`]. `config` points the problem at the key's line.

use std::fmt;

/// A value that cannot be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The dotted configuration key, e.g. `smtp.write_timeout_s`.
    pub key: String,
    /// What is wrong with it, as one sentence without a final period.
    pub problem: String,
}

impl Problem {
    /// A problem with the key `section.key`.
    pub fn new(section: &str, key: &str, problem: impl Into<String>) -> Problem {
        Problem { key: format!("{section}.{key}"), problem: problem.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
    }
}

impl std::error::Error for Problem {}

/// Checks that `section.key`'s `value` lies within `min..=max`.
pub fn range(section: &str, key: &str, value: u64, min: u64, max: u64) -> Result<(), Problem> {
    if value < min || value > max {
        return Err(Problem::new(section, key, format!("{value} is out of range: it must be between {min} and {max}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

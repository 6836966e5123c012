//! STAND-IN, replaced at merge by engineer B's classifier (`crates/filter/src/bayes/`): the
//! same signatures, implemented as simply as can be so that the classifier's state in the
//! store (`learning`) and its training from IMAP can be built and tested meanwhile. The
//! math here is naive on purpose: lower-cased words hashed, a plain ratio of frequencies.

use crate::{Limits, Symbol};

/// How often a token was seen in messages trained as spam and as ham.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
}

/// How many messages were trained as spam and as ham.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub spam: u64,
    pub ham: u64,
}

/// The distinct tokens of a message, hashed: here its lower-cased words of 3 to 40
/// letters or digits, at most `limits.bayes_tokens_max`.
pub fn tokens(raw: &[u8], limits: &Limits) -> Vec<u64> {
    let text = String::from_utf8_lossy(raw).to_lowercase();
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if !(3..=40).contains(&word.chars().count()) {
            continue;
        }
        let hash = fnv1a(word.as_bytes());
        if seen.insert(hash) {
            out.push(hash);
            if out.len() >= limits.bayes_tokens_max {
                break;
            }
        }
    }
    out
}

/// The probability that a message with these tokens' counts is spam; `None` until each
/// class has `limits.bayes_min_messages` messages trained.
pub fn spam_probability(counts: &[Counts], totals: Totals, limits: &Limits) -> Option<f64> {
    let min = limits.bayes_min_messages;
    if totals.spam < min || totals.ham < min {
        return None;
    }
    // The mean of each seen token's spam frequency over both classes' frequencies.
    let (mut sum, mut n) = (0.0, 0u32);
    for count in counts.iter().filter(|count| count.spam + count.ham > 0) {
        let spam = f64::from(count.spam) / totals.spam as f64;
        let ham = f64::from(count.ham) / totals.ham as f64;
        sum += spam / (spam + ham);
        n += 1;
    }
    Some(if n == 0 { 0.5 } else { sum / f64::from(n) })
}

/// `BAYES_SPAM` (0 to +10) above 0.5, `BAYES_HAM` (down to -3) below it.
pub fn symbol(probability: f64) -> Option<Symbol> {
    let detail = format!("classifier's spam probability {probability:.2}");
    if probability > 0.5 {
        Some(Symbol { name: "BAYES_SPAM", score: (probability - 0.5) * 20.0, detail })
    } else if probability < 0.5 {
        Some(Symbol { name: "BAYES_HAM", score: (probability - 0.5) * 6.0, detail })
    } else {
        None
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

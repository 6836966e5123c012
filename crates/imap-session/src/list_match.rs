//! LIST and LSUB patterns (RFC 9051 §6.3.9): `*` matches any characters, `%` any
//! characters but the hierarchy delimiter; the name `INBOX` matches case-insensitively.
//!
//! A pattern is compiled once per command ([`Pattern::new`]) and matched against each
//! mailbox name without backtracking or recursion: the set of pattern positions reached
//! so far is a bit set, advanced once per character of the name (a Shift-And automaton).
//! Matching one name costs O(name length × pattern length / 64), whatever the pattern;
//! patterns are at most [`crate::Limits::list_pattern_bytes_max`] long.

use std::collections::HashMap;

/// One element of a compiled pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`.
    Any,
    /// `%`.
    AnyButDelimiter,
}

/// A compiled LIST pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// Positions run from 0 (nothing matched) to `n_tokens` (all matched).
    n_tokens: usize,
    delimiter: char,
    /// Bits of the positions holding `*`, and `%`.
    any: Vec<u64>,
    any_but_delimiter: Vec<u64>,
    /// For each character of the pattern, the bits of the positions holding it.
    chars: HashMap<char, Vec<u64>>,
}

impl Pattern {
    /// Compiles `pattern` (the reference already prefixed). Runs of wildcards are folded
    /// (`**` is `*`, `%*` and `*%` are `*`, `%%` is `%`): they match the same names.
    pub fn new(pattern: &str, delimiter: char) -> Pattern {
        let mut tokens: Vec<Token> = Vec::with_capacity(pattern.len());
        for c in fold_inbox(pattern, delimiter).chars() {
            let token = match c {
                '*' => Token::Any,
                '%' => Token::AnyButDelimiter,
                c => Token::Char(c),
            };
            match (tokens.last_mut(), token) {
                (Some(last @ (Token::Any | Token::AnyButDelimiter)), Token::Any) => *last = Token::Any,
                (Some(Token::Any | Token::AnyButDelimiter), Token::AnyButDelimiter) => {}
                _ => tokens.push(token),
            }
        }
        let words = (tokens.len() + 1).div_ceil(64);
        let mut any = vec![0u64; words];
        let mut any_but_delimiter = vec![0u64; words];
        let mut chars: HashMap<char, Vec<u64>> = HashMap::new();
        for (position, token) in tokens.iter().enumerate() {
            match token {
                Token::Any => set(&mut any, position),
                Token::AnyButDelimiter => set(&mut any_but_delimiter, position),
                Token::Char(c) => set(chars.entry(*c).or_insert_with(|| vec![0u64; words]), position),
            }
        }
        Pattern { n_tokens: tokens.len(), delimiter, any, any_but_delimiter, chars }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = fold_inbox(name, self.delimiter);
        let words = self.any.len();
        let mut state = vec![0u64; words];
        let mut next = vec![0u64; words];
        set(&mut state, 0);
        self.close(&mut state);
        for c in name.chars() {
            next.iter_mut().for_each(|word| *word = 0);
            // A wildcard stays where it is while it absorbs `c`.
            for word in 0..words {
                let mut stay = state[word] & self.any[word];
                if c != self.delimiter {
                    stay |= state[word] & self.any_but_delimiter[word];
                }
                next[word] |= stay;
            }
            // A character of the pattern moves on when it is `c`.
            if let Some(mask) = self.chars.get(&c) {
                let mut carry = 0u64;
                for word in 0..words {
                    let moved = state[word] & mask[word];
                    next[word] |= (moved << 1) | carry;
                    carry = moved >> 63;
                }
            }
            std::mem::swap(&mut state, &mut next);
            self.close(&mut state);
            if state.iter().all(|word| *word == 0) {
                return false;
            }
        }
        is_set(&state, self.n_tokens)
    }

    /// A wildcard also matches nothing: reaching it reaches the position after it. Runs
    /// are folded, so one step is enough.
    fn close(&self, state: &mut [u64]) {
        let mut carry = 0u64;
        for ((word, any), any_but_delimiter) in state.iter_mut().zip(&self.any).zip(&self.any_but_delimiter) {
            let wild = *word & (any | any_but_delimiter);
            *word |= (wild << 1) | carry;
            carry = wild >> 63;
        }
    }
}

/// `*` and `%` in `pattern` against `name` with `delimiter`; see [`Pattern`].
pub fn matches(pattern: &str, name: &str, delimiter: char) -> bool {
    Pattern::new(pattern, delimiter).matches(name)
}

fn set(bits: &mut [u64], position: usize) {
    bits[position / 64] |= 1 << (position % 64);
}

fn is_set(bits: &[u64], position: usize) -> bool {
    bits[position / 64] & (1 << (position % 64)) != 0
}

/// `INBOX` in any case, alone or before the delimiter, as `INBOX` (RFC 9051 §5.1).
fn fold_inbox(text: &str, delimiter: char) -> std::borrow::Cow<'_, str> {
    match text.get(..5) {
        Some(head) if head.eq_ignore_ascii_case("inbox") && (text.len() == 5 || text[5..].starts_with(delimiter)) => {
            std::borrow::Cow::Owned(format!("INBOX{}", &text[5..]))
        }
        _ => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests;

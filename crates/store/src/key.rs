use std::ops::Bound;

/// The direction of a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// A range scan: keys in `[from, to)` by default, in one direction, at most `limit` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scan {
    pub from: Bound<Vec<u8>>,
    pub to: Bound<Vec<u8>>,
    pub direction: Direction,
    pub limit: usize,
}

impl Scan {
    /// Every key that starts with `prefix`, forward, without limit.
    pub fn prefix(prefix: &[u8]) -> Scan {
        let to = match prefix_successor(prefix) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        Scan { from: Bound::Included(prefix.to_vec()), to, direction: Direction::Forward, limit: usize::MAX }
    }

    /// Keys `from <= key < to`, forward, without limit.
    pub fn range(from: &[u8], to: &[u8]) -> Scan {
        Scan {
            from: Bound::Included(from.to_vec()),
            to: Bound::Excluded(to.to_vec()),
            direction: Direction::Forward,
            limit: usize::MAX,
        }
    }

    /// Every key.
    pub fn all() -> Scan {
        Scan { from: Bound::Unbounded, to: Bound::Unbounded, direction: Direction::Forward, limit: usize::MAX }
    }

    pub fn reverse(mut self) -> Scan {
        self.direction = Direction::Reverse;
        self
    }

    pub fn limit(mut self, limit: usize) -> Scan {
        self.limit = limit;
        self
    }

    /// Narrows the start of the range to keys strictly after `key` (to page on).
    pub fn after(mut self, key: &[u8]) -> Scan {
        self.from = Bound::Excluded(key.to_vec());
        self
    }

    /// Narrows the end of the range to keys strictly before `key` (to page back).
    pub fn before(mut self, key: &[u8]) -> Scan {
        self.to = Bound::Excluded(key.to_vec());
        self
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let after_start = match &self.from {
            Bound::Included(from) => key >= from.as_slice(),
            Bound::Excluded(from) => key > from.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.to {
            Bound::Included(to) => key <= to.as_slice(),
            Bound::Excluded(to) => key < to.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

/// The smallest key greater than every key that starts with `prefix`, if any.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A key as text for error messages: printable ASCII as is, other bytes as `\xNN`.
pub(crate) fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

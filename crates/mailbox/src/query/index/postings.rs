//! Posting lists of the text index: for one term, the emails whose text has it, as a map
//! from chunk (an email id divided by [`CHUNK_EMAILS`]) to a bitmap of the chunk's emails.
//!
//! A stored chunk is the smaller of two forms: the sorted offsets of its emails as
//! delta-varints (a rare term: a few bytes), or the chunk's bitmap (a common term: 512
//! bytes for 4,096 emails, an eighth of a byte per email). In memory every chunk is a
//! bitmap, so that the intersections and unions of a query are word-wise `&` and `|`
//! (the idea of Roaring bitmaps, reduced to the two forms this index needs).

use std::collections::BTreeMap;

use crate::EmailId;

/// Emails per chunk: 4,096, so that a term of a 100,000-message mailbox is 25 stored
/// values, and a chunk rewritten by the indexer is at most 512 bytes.
pub(crate) const CHUNK_EMAILS: u64 = 4096;
const WORDS: usize = (CHUNK_EMAILS / 64) as usize;
/// The stored forms' first byte.
const FORM_LIST: u8 = 0;
const FORM_BITMAP: u8 = 1;

/// One chunk's emails, a bit each.
pub(crate) type Bits = Box<[u64; WORDS]>;

/// The emails of a posting list (or of a candidate set), by chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Postings {
    chunks: BTreeMap<u64, Bits>,
}

/// The chunk of an email and its offset in it.
pub(crate) fn chunk_of(email: EmailId) -> (u64, u16) {
    (email / CHUNK_EMAILS, (email % CHUNK_EMAILS) as u16)
}

impl Postings {
    #[cfg(test)]
    pub(crate) fn insert(&mut self, email: EmailId) {
        let (chunk, offset) = chunk_of(email);
        let bits = self.chunks.entry(chunk).or_insert_with(|| Box::new([0; WORDS]));
        bits[usize::from(offset / 64)] |= 1 << (offset % 64);
    }

    pub(crate) fn contains(&self, email: EmailId) -> bool {
        let (chunk, offset) = chunk_of(email);
        self.chunks.get(&chunk).is_some_and(|bits| bits[usize::from(offset / 64)] & (1 << (offset % 64)) != 0)
    }

    /// Adds a stored chunk; a value that does not decode is an error of the caller's.
    pub(crate) fn add_chunk(&mut self, chunk: u64, value: &[u8]) -> Result<(), &'static str> {
        let decoded = decode(value)?;
        let bits = self.chunks.entry(chunk).or_insert_with(|| Box::new([0; WORDS]));
        for (word, other) in bits.iter_mut().zip(decoded.iter()) {
            *word |= other;
        }
        Ok(())
    }

    /// Keeps only the emails also in `other`.
    pub(crate) fn intersect(&mut self, other: &Postings) {
        self.chunks.retain(|chunk, bits| match other.chunks.get(chunk) {
            Some(other) => {
                let mut any = 0;
                for (word, other) in bits.iter_mut().zip(other.iter()) {
                    *word &= other;
                    any |= *word;
                }
                any != 0
            }
            None => false,
        });
    }

    /// Adds the emails of `other`.
    pub(crate) fn union(&mut self, other: &Postings) {
        for (chunk, other) in &other.chunks {
            let bits = self.chunks.entry(*chunk).or_insert_with(|| Box::new([0; WORDS]));
            for (word, other) in bits.iter_mut().zip(other.iter()) {
                *word |= other;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.chunks.values().map(|bits| bits.iter().map(|w| w.count_ones() as usize).sum::<usize>()).sum()
    }
}

/// The stored form of a chunk holding the (sorted, distinct) `offsets` and those of the
/// stored `old` value, if any: the smaller form.
pub(crate) fn merge(old: Option<&[u8]>, offsets: &[u16]) -> Result<Vec<u8>, &'static str> {
    let mut bits = match old {
        Some(old) => decode(old)?,
        None => Box::new([0; WORDS]),
    };
    for offset in offsets {
        bits[usize::from(offset / 64)] |= 1 << (offset % 64);
    }
    Ok(encode(&bits))
}

fn encode(bits: &Bits) -> Vec<u8> {
    let count: u32 = bits.iter().map(|word| word.count_ones()).sum();
    // A delta is at most two bytes (offsets are below 4,096 < 2^14).
    if count as usize * 2 >= WORDS * 8 {
        let mut out = Vec::with_capacity(1 + WORDS * 8);
        out.push(FORM_BITMAP);
        for word in bits.iter() {
            out.extend_from_slice(&word.to_le_bytes());
        }
        return out;
    }
    let mut out = vec![FORM_LIST];
    let mut previous = 0u32;
    for (index, word) in bits.iter().enumerate() {
        let mut word = *word;
        while word != 0 {
            let offset = index as u32 * 64 + word.trailing_zeros();
            word &= word - 1;
            let mut delta = offset - previous;
            previous = offset;
            while delta >= 0x80 {
                out.push((delta as u8 & 0x7f) | 0x80);
                delta >>= 7;
            }
            out.push(delta as u8);
        }
    }
    out
}

fn decode(value: &[u8]) -> Result<Bits, &'static str> {
    let mut bits: Bits = Box::new([0; WORDS]);
    match value.split_first() {
        Some((&FORM_BITMAP, rest)) if rest.len() == WORDS * 8 => {
            for (word, bytes) in bits.iter_mut().zip(rest.chunks_exact(8)) {
                *word = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
            }
        }
        Some((&FORM_LIST, rest)) => {
            let mut offset = 0u64;
            let (mut delta, mut shift) = (0u64, 0u32);
            for byte in rest {
                if shift > 14 {
                    return Err("posting delta too long");
                }
                delta |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    offset += delta;
                    if offset >= CHUNK_EMAILS {
                        return Err("posting offset past the chunk");
                    }
                    bits[(offset / 64) as usize] |= 1 << (offset % 64);
                    (delta, shift) = (0, 0);
                }
            }
            if shift != 0 {
                return Err("posting list cut short");
            }
        }
        _ => return Err("posting chunk of unknown form"),
    }
    Ok(bits)
}

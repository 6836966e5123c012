//! Modified UTF-7 (RFC 3501 §5.1.3), the form of mailbox names that Dovecot uses for its
//! Maildir++ folder names (`.Proc&AOg-s-verbaux` for "Procès-verbaux"): printable ASCII
//! stands for itself except `&`, written `&-`; other characters are UTF-16 in base64
//! (with `,` for `/`, no padding) between `&` and `-`.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Encodes a name.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending: Vec<u16> = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut units));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Writes the UTF-16 units waiting as one `&…-` run.
fn flush(pending: &mut Vec<u16>, out: &mut String) {
    if pending.is_empty() {
        return;
    }
    out.push('&');
    let bytes: Vec<u8> = pending.iter().flat_map(|unit| unit.to_be_bytes()).collect();
    for chunk in bytes.chunks(3) {
        let value = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        let n_chars = chunk.len() + 1;
        for i in 0..n_chars {
            out.push(ALPHABET[(value >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out.push('-');
    pending.clear();
}

/// Decodes a name; `None` if it is not valid modified UTF-7 (then callers keep the name
/// as it is).
pub fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after.find('-')?;
        let run = &after[..end];
        if run.is_empty() {
            out.push('&');
        } else {
            out.push_str(&decode_run(run)?);
        }
        rest = &after[end + 1..];
    }
    if rest.bytes().any(|b| !(b' '..=b'~').contains(&b)) {
        return None;
    }
    out.push_str(rest);
    Some(out)
}

/// One base64 run, as UTF-16BE.
fn decode_run(run: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut n_bits = 0;
    let mut bytes = Vec::with_capacity(run.len() * 3 / 4);
    for b in run.bytes() {
        let value = ALPHABET.iter().position(|a| *a == b)? as u32;
        bits = (bits << 6) | value;
        n_bits += 6;
        if n_bits >= 8 {
            n_bits -= 8;
            bytes.push((bits >> n_bits) as u8);
            bits &= (1 << n_bits) - 1;
        }
    }
    // Leftover bits must be zero padding (RFC 3501: no more than needed).
    if bits != 0 || bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes.chunks(2).map(|pair| u16::from_be_bytes([pair[0], pair[1]])).collect();
    String::from_utf16(&units).ok()
}

//! Modified UTF-7 for mailbox names (RFC 3501 §5.1.3), used unless UTF-8 is enabled.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/// Decodes a modified UTF-7 name. `None` if it is not strictly valid: 8-bit bytes or
/// controls, an unterminated or empty `&...-` run, bad base64, leftover bits, broken
/// UTF-16, or printable ASCII that should have been sent as itself.
pub(crate) fn decode(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut idx = 0;
    while idx < bytes.len() {
        let byte = bytes[idx];
        if !(0x20..=0x7E).contains(&byte) {
            return None;
        }
        if byte != b'&' {
            out.push(char::from(byte));
            idx += 1;
            continue;
        }
        let run_start = idx + 1;
        let run_len = bytes[run_start..].iter().position(|&b| b == b'-')?;
        let run = &bytes[run_start..run_start + run_len];
        idx = run_start + run_len + 1;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        decode_run(run, &mut out)?;
    }
    Some(out)
}

fn decode_run(run: &[u8], out: &mut String) -> Option<()> {
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16 + 1);
    let mut bits: u32 = 0;
    let mut n_bits = 0;
    for &byte in run {
        let value = ALPHABET.iter().position(|&a| a == byte)? as u32;
        bits = (bits << 6) | value;
        n_bits += 6;
        if n_bits >= 16 {
            n_bits -= 16;
            units.push((bits >> n_bits) as u16);
            bits &= (1 << n_bits) - 1;
        }
    }
    // Leftover bits must be fewer than 6 and zero.
    if n_bits >= 6 || bits != 0 {
        return None;
    }
    for ch in char::decode_utf16(units) {
        let ch = ch.ok()?;
        if (' '..='~').contains(&ch) {
            return None;
        }
        out.push(ch);
    }
    Some(())
}

/// Encodes a UTF-8 name in modified UTF-7.
pub(crate) fn encode(name: &str, out: &mut Vec<u8>) {
    let mut chars = name.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '&' {
            out.extend_from_slice(b"&-");
        } else if (' '..='~').contains(&ch) {
            out.push(ch as u8);
        } else {
            out.push(b'&');
            let mut bits: u32 = 0;
            let mut n_bits = 0;
            let mut push_unit = |unit: u16, out: &mut Vec<u8>| {
                bits = (bits << 16) | u32::from(unit);
                n_bits += 16;
                while n_bits >= 6 {
                    n_bits -= 6;
                    out.push(ALPHABET[((bits >> n_bits) & 0x3F) as usize]);
                }
                bits &= (1 << n_bits) - 1;
            };
            let mut buf = [0u16; 2];
            for unit in ch.encode_utf16(&mut buf) {
                push_unit(*unit, out);
            }
            while let Some(&next) = chars.peek() {
                if (' '..='~').contains(&next) {
                    break;
                }
                chars.next();
                for unit in next.encode_utf16(&mut buf) {
                    push_unit(*unit, out);
                }
            }
            if n_bits > 0 {
                out.push(ALPHABET[((bits << (6 - n_bits)) & 0x3F) as usize]);
            }
            out.push(b'-');
        }
    }
}

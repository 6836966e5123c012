//! Folder names on a file system, both ways, and the special-use guess from a name.
//!
//! A name may hold characters a file system or a format cannot: `/` everywhere, `.` in a
//! Maildir++ folder (its hierarchy separator), `:*?"<>|\` on Windows (an export is
//! copied there), control characters. Those are written `%XX` (the byte in hex), and `%`
//! itself `%25`, so every name comes back exactly: decoding is undoing `%XX`. In Maildir++
//! the name is first put in modified UTF-7, as Dovecot writes it, so that Dovecot reads
//! the export with the right names; mbox files (Thunderbird's layout) keep UTF-8, as
//! Thunderbird writes them on Linux.

use crate::mutf7;

/// A folder name as one component of a Maildir++ directory name (`.A.B`).
pub fn maildir_encode(name: &str) -> String {
    escape(&mutf7::encode(name), |b, _, _| matches!(b, b'.' | b'/' | b'%' | b'\\'))
}

/// The folder name of one component of a Maildir++ directory name: `%XX` undone, then
/// modified UTF-7 decoded (a name that is not valid modified UTF-7 is kept as it is).
pub fn maildir_decode(component: &str) -> String {
    let unescaped = unescape(component);
    mutf7::decode(&unescaped).unwrap_or(unescaped)
}

/// A folder name as the name of an mbox file (or its `.sbd` directory).
pub fn mbox_encode(name: &str) -> String {
    let len = name.len();
    // The dot of a trailing `.sbd` or `.msf` would make Thunderbird take the file for a
    // directory of subfolders or an index.
    let suffix_dot = if name.ends_with(".sbd") || name.ends_with(".msf") { Some(len - 4) } else { None };
    escape(name, |b, at, len| {
        b < b' '
            || b == 0x7f
            || b"%/\\:*?\"<>|".contains(&b)
            || (at == 0 && b == b'.')
            || (at + 1 == len && (b == b'.' || b == b' '))
            || Some(at) == suffix_dot
    })
}

/// The folder name of an mbox file name.
pub fn mbox_decode(file_name: &str) -> String {
    unescape(file_name)
}

fn escape(name: &str, unsafe_byte: impl Fn(u8, usize, usize) -> bool) -> String {
    let mut out = String::with_capacity(name.len());
    let len = name.len();
    for (at, c) in name.char_indices() {
        if c.is_ascii() && unsafe_byte(c as u8, at, len) {
            out.push_str(&format!("%{:02X}", c as u8));
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' && at + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[at + 1..at + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                at += 3;
                continue;
            }
        }
        out.push(bytes[at]);
        at += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The special-use attribute (RFC 6154) of a top-level folder with a usual name, in
/// French or English; the files do not record it.
pub fn special_use(path: &[String]) -> Option<&'static str> {
    let [name] = path else { return None };
    let name = name.to_lowercase();
    const TABLE: [(&str, &[&str]); 5] = [
        (
            "\\Sent",
            &["sent", "sent items", "sent messages", "sent mail", "envoyés", "messages envoyés", "éléments envoyés"],
        ),
        ("\\Drafts", &["drafts", "brouillons"]),
        ("\\Trash", &["trash", "deleted items", "deleted messages", "corbeille"]),
        ("\\Junk", &["junk", "spam", "junk e-mail", "indésirables", "pourriel"]),
        ("\\Archive", &["archive", "archives"]),
    ];
    TABLE.iter().find(|(_, names)| names.contains(&name.as_str())).map(|(attribute, _)| *attribute)
}

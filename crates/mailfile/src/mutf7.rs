//! Modified UTF-7 (RFC 3501 §5.1.3), the encoding of Dovecot's Maildir++ folder names: the
//! IMAP session's own codec (one implementation for the wire and the files), with the
//! string-in, string-out shape the file names want.

/// `name` in modified UTF-7.
pub fn encode(name: &str) -> String {
    hameau_imap_session::mutf7_encode(name)
}

/// The name `encoded` stands for; `None` if it is not valid modified UTF-7.
pub fn decode(encoded: &str) -> Option<String> {
    hameau_imap_session::mutf7_decode(encoded.as_bytes())
}

//! The capability list: which extensions the driver switched on, and what the session's
//! state adds or removes (STARTTLS, LOGINDISABLED, AUTH=).

/// The optional extensions the session advertises and accepts. A command of an extension
/// that is off gets `BAD Unknown command`. All are on by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extensions {
    /// `IMAP4rev2` (RFC 9051), which the client turns on with `ENABLE IMAP4rev2`.
    pub imap4rev2: bool,
    /// `LITERAL+` (RFC 7888); when off, `LITERAL-` is advertised instead.
    pub literal_plus: bool,
    pub sasl_ir: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
    pub id: bool,
    pub enable: bool,
    pub idle: bool,
    pub namespace: bool,
    pub uidplus: bool,
    pub move_messages: bool,
    pub special_use: bool,
    pub create_special_use: bool,
    pub list_extended: bool,
    pub list_status: bool,
    pub children: bool,
    pub unselect: bool,
    pub esearch: bool,
    pub searchres: bool,
    pub sort: bool,
    /// `THREAD=REFERENCES` and `THREAD=ORDEREDSUBJECT` (RFC 5256).
    pub thread: bool,
    pub condstore: bool,
    /// Needs `condstore`.
    pub qresync: bool,
    /// `QUOTA`, `QUOTA=RES-STORAGE`, `QUOTA=RES-MESSAGE` (RFC 9208).
    pub quota: bool,
    pub status_size: bool,
    pub binary: bool,
    pub compress: bool,
    pub utf8_accept: bool,
    pub multiappend: bool,
    /// `APPENDLIMIT=n` (RFC 7889) with [`crate::Limits::literal_bytes_max`].
    pub appendlimit: bool,
}

impl Default for Extensions {
    fn default() -> Extensions {
        Extensions {
            imap4rev2: true,
            literal_plus: true,
            sasl_ir: true,
            auth_plain: true,
            auth_login: true,
            id: true,
            enable: true,
            idle: true,
            namespace: true,
            uidplus: true,
            move_messages: true,
            special_use: true,
            create_special_use: true,
            list_extended: true,
            list_status: true,
            children: true,
            unselect: true,
            esearch: true,
            searchres: true,
            sort: true,
            thread: true,
            condstore: true,
            qresync: true,
            quota: true,
            status_size: true,
            binary: true,
            compress: true,
            utf8_accept: true,
            multiappend: true,
            appendlimit: true,
        }
    }
}

/// What the capability list depends on, copied into each response writer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Capabilities {
    pub extensions: Extensions,
    pub starttls_available: bool,
    pub tls_active: bool,
    pub plaintext_auth_allowed: bool,
    pub authenticated: bool,
    pub compress_active: bool,
    pub append_limit: usize,
}

impl Capabilities {
    /// Whether `LOGIN` and `AUTHENTICATE` may be used now (RFC 9051 §6.2.3).
    pub fn login_allowed(&self) -> bool {
        self.tls_active || self.plaintext_auth_allowed
    }

    /// Writes the list, space-separated, without `* CAPABILITY`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let ext = &self.extensions;
        let mut names: Vec<&str> = Vec::with_capacity(48);
        names.push("IMAP4rev1");
        if ext.imap4rev2 {
            names.push("IMAP4rev2");
        }
        names.push(if ext.literal_plus { "LITERAL+" } else { "LITERAL-" });
        if !self.authenticated {
            if ext.sasl_ir {
                names.push("SASL-IR");
            }
            if self.starttls_available && !self.tls_active {
                names.push("STARTTLS");
            }
            if self.login_allowed() {
                if ext.auth_plain {
                    names.push("AUTH=PLAIN");
                }
                if ext.auth_login {
                    names.push("AUTH=LOGIN");
                }
            } else {
                names.push("LOGINDISABLED");
            }
        }
        let optional = [
            (ext.id, "ID"),
            (ext.enable, "ENABLE"),
            (ext.idle, "IDLE"),
            (ext.namespace, "NAMESPACE"),
            (ext.uidplus, "UIDPLUS"),
            (ext.move_messages, "MOVE"),
            (ext.special_use, "SPECIAL-USE"),
            (ext.create_special_use, "CREATE-SPECIAL-USE"),
            (ext.list_extended, "LIST-EXTENDED"),
            (ext.list_status, "LIST-STATUS"),
            (ext.children, "CHILDREN"),
            (ext.unselect, "UNSELECT"),
            (ext.esearch, "ESEARCH"),
            (ext.searchres, "SEARCHRES"),
            (ext.sort, "SORT"),
            (ext.thread, "THREAD=ORDEREDSUBJECT"),
            (ext.thread, "THREAD=REFERENCES"),
            (ext.condstore, "CONDSTORE"),
            (ext.qresync && ext.condstore, "QRESYNC"),
            (ext.quota, "QUOTA"),
            (ext.quota, "QUOTA=RES-STORAGE"),
            (ext.quota, "QUOTA=RES-MESSAGE"),
            (ext.status_size, "STATUS=SIZE"),
            (ext.binary, "BINARY"),
            (ext.compress && !self.compress_active, "COMPRESS=DEFLATE"),
            (ext.utf8_accept, "UTF8=ACCEPT"),
            (ext.multiappend, "MULTIAPPEND"),
        ];
        names.extend(optional.iter().filter(|(on, _)| *on).map(|(_, name)| *name));
        for (idx, name) in names.iter().enumerate() {
            if idx > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(name.as_bytes());
        }
        if ext.appendlimit {
            use std::io::Write as _;
            let _ = write!(out, " APPENDLIMIT={}", self.append_limit);
        }
    }
}

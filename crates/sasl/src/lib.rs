//! The server side of the SASL mechanisms Hameau offers (RFC 4422): `PLAIN` (RFC 4616)
//! and `LOGIN` (draft-murchison-sasl-login, what Outlook and old clients use), shared by
//! IMAP `AUTHENTICATE` (RFC 9051 §6.2.2, SASL-IR RFC 4959) and SMTP `AUTH` (RFC 4954).
//!
//! Sans-IO and protocol-neutral: an [`Exchange`] takes the client's responses (one
//! base64 line each, or an initial response) and gives either the next challenge (base64,
//! which the protocol frames as `+ …` or `334 …`) or the [`Credentials`]. It checks
//! nothing against the directory. What a response may be is bounded by the protocol's
//! line limit before it reaches here; a response is decoded once and never kept past the
//! exchange.

#[cfg(test)]
mod tests;

use base64::Engine as _;

/// A mechanism this server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The mechanism named `name` (SASL names are case-insensitive, RFC 4422 §3.1).
    pub fn parse(name: &str) -> Option<Mechanism> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Mechanism::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }

    /// Its registered name, as advertised (`AUTH=PLAIN`, `AUTH PLAIN LOGIN`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// What a finished exchange gives: the identity to check and the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The mechanism that gave them (logs).
    pub mechanism: Mechanism,
    /// PLAIN's authorization identity, when the client gave one (it then asks to act as
    /// that identity: the protocol decides whether it may).
    pub authzid: Option<String>,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mechanism", &self.mechanism)
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Why an exchange failed; the protocols answer each in their own words (`BAD`, `501`),
/// with this text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The client sent `*` (RFC 4422 §3.5).
    #[error("Authentication cancelled")]
    Cancelled,
    #[error("Invalid base64 in the SASL response")]
    Base64,
    /// A PLAIN message that is not `[authzid] NUL authcid NUL passwd`, authcid and
    /// passwd not empty (RFC 4616 §2).
    #[error("Malformed PLAIN response")]
    MalformedPlain,
    #[error("Credentials must be UTF-8")]
    NotUtf8,
}

/// The next thing the server says.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Send `challenge` (base64 already; may be empty) and give the next response to
    /// `exchange`.
    Challenge { exchange: Exchange, challenge: &'static str },
    /// The exchange is over: check these.
    Done(Credentials),
}

/// One exchange under way.
#[derive(Debug, PartialEq, Eq)]
pub struct Exchange {
    step: Step,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Plain,
    LoginUsername,
    LoginPassword { username: String },
}

/// "Username:" and "Password:" in base64, the prompts LOGIN clients expect.
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

impl Exchange {
    pub fn new(mechanism: Mechanism) -> Exchange {
        let step = match mechanism {
            Mechanism::Plain => Step::Plain,
            Mechanism::Login => Step::LoginUsername,
        };
        Exchange { step }
    }

    /// The first challenge, for a client that gave no initial response: empty for PLAIN,
    /// "Username:" for LOGIN.
    pub fn first_challenge(&self) -> &'static str {
        match self.step {
            Step::LoginUsername => LOGIN_USERNAME,
            Step::Plain | Step::LoginPassword { .. } => "",
        }
    }

    /// Takes one response line as the client sent it: base64, `=` for an empty response
    /// (RFC 4959, RFC 4954 §4), or `*` to cancel.
    pub fn respond_line(self, line: &[u8]) -> Result<Next, Error> {
        if line == b"*" {
            return Err(Error::Cancelled);
        }
        self.respond(decode(line)?)
    }

    /// Takes one decoded response (an initial response, or a line through
    /// [`Exchange::respond_line`]).
    pub fn respond(self, response: Vec<u8>) -> Result<Next, Error> {
        match self.step {
            Step::Plain => Ok(Next::Done(plain(&response)?)),
            Step::LoginUsername => {
                let username = String::from_utf8(response).map_err(|_| Error::NotUtf8)?;
                let exchange = Exchange { step: Step::LoginPassword { username } };
                Ok(Next::Challenge { exchange, challenge: LOGIN_PASSWORD })
            }
            Step::LoginPassword { username } => {
                let password = String::from_utf8(response).map_err(|_| Error::NotUtf8)?;
                Ok(Next::Done(Credentials { mechanism: Mechanism::Login, authzid: None, username, password }))
            }
        }
    }
}

/// Decodes a response line: base64, or `=` for the empty response.
pub fn decode(line: &[u8]) -> Result<Vec<u8>, Error> {
    if line == b"=" {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(line).map_err(|_| Error::Base64)
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(response: &[u8]) -> Result<Credentials, Error> {
    let mut parts = response.split(|&byte| byte == 0);
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::MalformedPlain);
    };
    let (Ok(authzid), Ok(username), Ok(password)) =
        (std::str::from_utf8(authzid), std::str::from_utf8(username), std::str::from_utf8(password))
    else {
        return Err(Error::NotUtf8);
    };
    if username.is_empty() || password.is_empty() {
        return Err(Error::MalformedPlain);
    }
    let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
    Ok(Credentials {
        mechanism: Mechanism::Plain,
        authzid,
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

//! The IMAP side of the pull: a connection to the old server (TLS, STARTTLS, or in clear
//! for tests), over the `async-imap` client and our [`Guarded`] stream, and the few
//! commands the pull needs (RFC 9051: LOGIN, LIST, EXAMINE, UID FETCH), each bounded.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::Stream;

use crate::guard::{Budget, Guarded, Transport};
use crate::{Error, Options};

/// How the connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (`imaps://`, port 993).
    Tls,
    /// STARTTLS before LOGIN (`imap://`, port 143); a server that does not offer it is
    /// refused.
    StartTls,
    /// No TLS at all: for tests on loopback only, asked for explicitly.
    Plain,
}

/// Where the old mailbox is: `imaps://host[:port]` or `imap://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SourceUrl {
    pub security: Security,
    pub host: String,
    pub port: u16,
}

impl SourceUrl {
    /// Parses `imaps://host[:port]` (TLS) or `imap://host[:port]` (STARTTLS, or in clear
    /// when `plain` is asked for). IPv6 literals are written `[::1]`.
    pub fn parse(url: &str, plain: bool) -> Result<SourceUrl, Error> {
        let bad = |why: &str| Error::Url(format!("{url}: {why}"));
        let (security, rest, default_port) = if let Some(rest) = url.strip_prefix("imaps://") {
            (Security::Tls, rest, 993)
        } else if let Some(rest) = url.strip_prefix("imap://") {
            (if plain { Security::Plain } else { Security::StartTls }, rest, 143)
        } else {
            return Err(bad("must start with imaps:// or imap://"));
        };
        if plain && security == Security::Tls {
            return Err(bad("clear text is for imap:// only"));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || authority.contains('@') {
            return Err(bad("expected a host and an optional port, nothing else"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().map_err(|_| bad("bad port"))?),
                None if after.is_empty() => (host, default_port),
                None => return Err(bad("unexpected text after ]")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(|_| bad("bad port"))?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad("no host or port 0"));
        }
        Ok(SourceUrl { security, host: host.to_string(), port })
    }

    /// The URL as the report shows it.
    pub fn display(&self) -> String {
        let scheme = if self.security == Security::Tls { "imaps" } else { "imap" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}", self.port)
    }
}

/// One old mailbox to pull: the server, the login and the TLS trust anchors.
#[derive(Clone)]
pub struct ImapSource {
    pub url: SourceUrl,
    pub user: String,
    pub password: String,
    /// Trusts the system's roots and any CA the operator gave (`--ca-file`).
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource").field("url", &self.url).field("user", &self.user).finish_non_exhaustive()
    }
}

/// A folder as LIST gives it.
#[derive(Clone, Debug)]
pub(crate) struct ListedFolder {
    /// As sent (modified UTF-7): what EXAMINE needs.
    pub raw: String,
    pub delimiter: Option<String>,
    /// SPECIAL-USE and other attributes, as `\Sent`.
    pub attributes: Vec<String>,
    pub selectable: bool,
}

/// A message as the listing of a folder gives it.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    pub uid: u32,
    pub size: u64,
    pub keywords: Vec<String>,
    pub internal_date: u64,
}

/// Bytes allowed for the greeting, STARTTLS, LOGIN and EXAMINE answers: a few lines, and
/// EXAMINE's FLAGS and PERMANENTFLAGS lists of the folder's keywords. 1 MiB holds
/// thousands of keywords; every server sends a few KiB.
const SESSION_BYTES_MAX: u64 = 1024 * 1024;

/// What the LIST answer may take: `folders_max` lines of a name up to `name_bytes_max`
/// decoded (four bytes of modified UTF-7 per byte at worst), attributes and delimiter.
fn list_budget(options: &Options) -> u64 {
    const LINE_BYTES: u64 = 256;
    let line = (options.name_bytes_max as u64).saturating_mul(4).saturating_add(LINE_BYTES);
    (options.folders_max as u64 + 1).saturating_mul(line).saturating_add(FETCH_OVERHEAD_BYTES)
}

/// Bytes allowed for an answer besides the messages' own: the FETCH framing of a batch.
const FETCH_OVERHEAD_BYTES: u64 = 4096;

/// What one message's answer may take, given the size the listing announced: twice that
/// plus 64 KiB, within `message_bytes_max` plus 64 KiB. RFC822.SIZE is exact at Dovecot
/// and Gmail, an estimate at Exchange: a server may be off by a little, not by megabytes.
pub(crate) fn allowance(announced: u64, message_bytes_max: u64) -> u64 {
    const SLACK_BYTES: u64 = 64 * 1024;
    announced.saturating_mul(2).saturating_add(SLACK_BYTES).min(message_bytes_max.saturating_add(SLACK_BYTES))
}

/// The slowest rate a fetch of messages is allowed on top of the command timeout.
/// How long the old server may take to answer LOGOUT: the copy is over, nothing waits on
/// its answer but the connection's close.
const LOGOUT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

const FETCH_FLOOR_BYTES_PER_S: u64 = 64 * 1024;

/// An open, logged-in connection.
pub(crate) struct Connection {
    session: async_imap::Session<Guarded>,
    budget: Budget,
    options: Options,
    /// Messages in the folder opened last (its EXISTS).
    exists: u32,
}

impl Connection {
    pub async fn open(source: &ImapSource, options: &Options) -> Result<Connection, Error> {
        let budget = Budget::default();
        budget.set(SESSION_BYTES_MAX);
        let url = &source.url;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
                .await
                .map_err(|e| Error::Connection(format!("connecting to {}: {e}", url.display())))?;
            let _ = tcp.set_nodelay(true);
            let guarded = |transport| {
                Guarded::new(transport, budget.clone(), options.bytes_per_second_max, options.literal_timeout())
            };
            let client = match url.security {
                Security::Tls => {
                    let tls = tls_connect(source, tcp).await?;
                    let mut client = async_imap::Client::new(guarded(Transport::Tls(Box::new(tls))));
                    greeting(&mut client).await?;
                    client
                }
                Security::Plain => {
                    let mut client = async_imap::Client::new(guarded(Transport::Plain(tcp)));
                    greeting(&mut client).await?;
                    client
                }
                Security::StartTls => {
                    let mut client = async_imap::Client::new(guarded(Transport::Plain(tcp)));
                    greeting(&mut client).await?;
                    client.run_command_and_check_ok("STARTTLS", None).await.map_err(|e| {
                        Error::Connection(format!("{}: STARTTLS refused or failed: {e}", url.display()))
                    })?;
                    let Transport::Plain(tcp) = client.into_inner().inner else {
                        return Err(Error::Connection("STARTTLS on a TLS connection".into()));
                    };
                    let tls = tls_connect(source, tcp).await?;
                    async_imap::Client::new(guarded(Transport::Tls(Box::new(tls))))
                }
            };
            Ok::<_, Error>(client)
        };
        let client = tokio::time::timeout(options.connect_timeout(), connect).await.map_err(|_| {
            Error::Connection(format!("{}: no connection within {} s", url.display(), options.connect_timeout_s))
        })??;
        let login = client.login(&source.user, &source.password);
        let session = match tokio::time::timeout(options.command_timeout(), login).await {
            Err(_) => return Err(Error::Connection(format!("{}: LOGIN timed out", url.display()))),
            Ok(Err((async_imap::error::Error::No(text), _))) | Ok(Err((async_imap::error::Error::Bad(text), _))) => {
                return Err(Error::Login(format!("{} refused the login of {}: {text}", url.display(), source.user)));
            }
            Ok(Err((e, _))) => return Err(connection(e)),
            Ok(Ok(session)) => session,
        };
        Ok(Connection { session, budget, options: options.clone(), exists: 0 })
    }

    /// Every folder (`LIST "" *`), at most `folders_max`.
    pub async fn list(&mut self) -> Result<Vec<ListedFolder>, Error> {
        self.budget.set(list_budget(&self.options));
        let folders_max = self.options.folders_max;
        let name_max = self.options.name_bytes_max;
        let run = async {
            let stream = self.session.list(Some(""), Some("*")).await.map_err(classify)?;
            let mut folders = Vec::new();
            let mut stream = std::pin::pin!(stream);
            while let Some(name) = stream.next().await {
                let name = name.map_err(classify)?;
                if folders.len() == folders_max {
                    return Err(Error::Limit(format!(
                        "the source has more than {folders_max} folders (migrate.folders_max)"
                    )));
                }
                if name.name().len() > name_max * 4 {
                    return Err(Error::Limit(format!(
                        "a folder name is over {name_max} bytes (migrate.name_bytes_max)"
                    )));
                }
                let mut selectable = true;
                let attributes = name
                    .attributes()
                    .iter()
                    .filter_map(|attribute| {
                        use async_imap::types::NameAttribute as A;
                        Some(match attribute {
                            A::NoSelect => {
                                selectable = false;
                                return None;
                            }
                            A::All => "\\All".to_string(),
                            A::Archive => "\\Archive".to_string(),
                            A::Drafts => "\\Drafts".to_string(),
                            A::Flagged => "\\Flagged".to_string(),
                            A::Junk => "\\Junk".to_string(),
                            A::Sent => "\\Sent".to_string(),
                            A::Trash => "\\Trash".to_string(),
                            A::Extension(text) => {
                                if text.eq_ignore_ascii_case("\\NonExistent") {
                                    selectable = false;
                                }
                                text.to_string()
                            }
                            _ => return None,
                        })
                    })
                    .collect();
                folders.push(ListedFolder {
                    raw: name.name().to_string(),
                    delimiter: name.delimiter().map(str::to_string),
                    attributes,
                    selectable,
                });
            }
            Ok(folders)
        };
        within(self.options.command_timeout(), run).await
    }

    /// Opens a folder read-only; its UIDVALIDITY.
    pub async fn examine(&mut self, raw: &str) -> Result<u32, Error> {
        self.budget.set(SESSION_BYTES_MAX);
        let mailbox =
            within(self.options.command_timeout(), async { self.session.examine(raw).await.map_err(classify) }).await?;
        self.exists = mailbox.exists;
        // RFC 9051 §2.3.1.1: a server without UIDVALIDITY gives no stable UIDs; 0 makes
        // every run fall back to content hashes.
        Ok(mailbox.uid_validity.unwrap_or(0))
    }

    /// How many messages a folder holds (`STATUS (MESSAGES)`), for the progress.
    pub async fn count(&mut self, raw: &str) -> Result<u32, Error> {
        self.budget.set(FETCH_OVERHEAD_BYTES + raw.len() as u64 * 2);
        let status = within(self.options.command_timeout(), async {
            self.session.status(raw, "(MESSAGES)").await.map_err(classify)
        })
        .await?;
        Ok(status.exists)
    }

    /// The messages of the open folder: UID, size, flags and INTERNALDATE, in UID order.
    pub async fn listing(&mut self) -> Result<Vec<Listed>, Error> {
        // Some servers answer `1:*` on an empty folder with BAD (RFC 9051 §6.4.5 has no
        // message 1 to start from).
        if self.exists == 0 {
            return Ok(Vec::new());
        }
        self.budget.set(self.options.listing_bytes_max);
        let messages_max = self.options.messages_per_folder_max;
        let run = async {
            let stream = self.session.uid_fetch("1:*", "(UID RFC822.SIZE FLAGS INTERNALDATE)").await;
            collect_listing(stream.map_err(classify)?, messages_max).await
        };
        let mut listed = within(self.options.command_timeout(), run).await?;
        listed.sort_by_key(|message| message.uid);
        listed.dedup_by_key(|message| message.uid);
        Ok(listed)
    }

    /// The bytes of these messages of the open folder (`BODY.PEEK[]`: the source's
    /// `\Seen` flags are left alone), given the sizes the listing announced. The answer may
    /// take each message's [`allowance`]; past it the read fails. A message the server does
    /// not send is missing from the result.
    pub async fn fetch(&mut self, uids: &[u32], announced: &[u64]) -> Result<Vec<(u32, Bytes)>, Error> {
        let allowed: u64 = announced.iter().map(|size| allowance(*size, self.options.message_bytes_max)).sum::<u64>();
        let budget = allowed + FETCH_OVERHEAD_BYTES * (uids.len() as u64 + 1);
        self.budget.set(budget);
        let set = uid_set(uids);
        // A server trickling bytes just often enough to escape the stall timeout is
        // still bounded: the batch gets the command timeout plus a second per 64 KiB.
        let timeout = self.options.command_timeout() + std::time::Duration::from_secs(budget / FETCH_FLOOR_BYTES_PER_S);
        let run = async {
            let stream = self.session.uid_fetch(&set, "(UID BODY.PEEK[])").await.map_err(classify)?;
            let mut stream = std::pin::pin!(stream);
            let mut out = Vec::with_capacity(uids.len());
            while let Some(fetch) = stream.next().await {
                let fetch = fetch.map_err(classify)?;
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body())
                    && uids.contains(&uid)
                {
                    out.push((uid, Bytes::copy_from_slice(body)));
                }
            }
            Ok(out)
        };
        within(timeout, run).await
    }

    pub async fn logout(mut self) {
        self.budget.set(FETCH_OVERHEAD_BYTES);
        let _ = tokio::time::timeout(LOGOUT_TIMEOUT, self.session.logout()).await;
    }
}

async fn collect_listing(
    stream: impl Stream<Item = async_imap::error::Result<async_imap::types::Fetch>>,
    messages_max: usize,
) -> Result<Vec<Listed>, Error> {
    let mut stream = std::pin::pin!(stream);
    let mut listed = Vec::new();
    while let Some(fetch) = stream.next().await {
        let fetch = fetch.map_err(classify)?;
        let Some(uid) = fetch.uid else { continue };
        if listed.len() == messages_max {
            return Err(Error::Limit(format!(
                "the folder has more than {messages_max} messages (migrate.messages_per_folder_max)"
            )));
        }
        let keywords = fetch.flags().filter_map(|flag| flag_name(&flag)).collect();
        let internal_date = fetch.internal_date().map(|date| date.timestamp().max(0) as u64).unwrap_or(0);
        listed.push(Listed { uid, size: u64::from(fetch.size.unwrap_or(0)), keywords, internal_date });
    }
    Ok(listed)
}

/// A flag as Hameau keeps it: the five system flags and keywords; `\Recent` and unknown
/// system flags are the session's, not the message's (RFC 9051 §2.3.2).
fn flag_name(flag: &async_imap::types::Flag<'_>) -> Option<String> {
    use async_imap::types::Flag;
    use hameau_mailbox::Keyword;
    Some(match flag {
        Flag::Seen => Keyword::Seen.imap().into(),
        Flag::Answered => Keyword::Answered.imap().into(),
        Flag::Flagged => Keyword::Flagged.imap().into(),
        Flag::Deleted => Keyword::Deleted.imap().into(),
        Flag::Draft => Keyword::Draft.imap().into(),
        Flag::Custom(text) if !text.starts_with('\\') && !text.is_empty() => text.to_string(),
        _ => return None,
    })
}

/// `1,3,5:9`: consecutive UIDs as ranges.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let mut sorted: Vec<u32> = uids.iter().copied().filter(|&uid| uid != 0).collect();
    sorted.sort_unstable();
    hameau_imap_session::SequenceSet::from_sorted(sorted).map(|set| set.to_string()).unwrap_or_default()
}

async fn greeting(client: &mut async_imap::Client<Guarded>) -> Result<(), Error> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Connection("the server closed the connection before its greeting".into())),
        Err(e) => Err(Error::Connection(format!("reading the greeting: {e}"))),
    }
}

async fn tls_connect(
    source: &ImapSource,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Error> {
    let name = rustls::pki_types::ServerName::try_from(source.url.host.clone())
        .map_err(|e| Error::Url(format!("{}: {e}", source.url.host)))?;
    tokio_rustls::TlsConnector::from(source.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Connection(format!("TLS with {}: {e}", source.url.display())))
}

async fn within<T>(
    timeout: std::time::Duration,
    run: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| Error::Connection(format!("no answer within {} s", timeout.as_secs())))?
}

/// A `NO` or `BAD` leaves the connection usable; anything else means it is gone.
fn classify(e: async_imap::error::Error) -> Error {
    match e {
        async_imap::error::Error::No(text) => Error::Refused(format!("NO {}", server_text(&text))),
        async_imap::error::Error::Bad(text) => Error::Refused(format!("BAD {}", server_text(&text))),
        e => connection(e),
    }
}

/// The server's own words from the client's description of a `NO` or `BAD` (it gives
/// `outcome: Outcome { code: …, information: Some("…") }`).
pub(crate) fn server_text(text: &str) -> String {
    const START: &str = "information: Some(\"";
    match text.find(START) {
        Some(start) => {
            let rest = &text[start + START.len()..];
            let end = rest.rfind("\")").unwrap_or(rest.len());
            rest[..end].replace("\\\"", "\"")
        }
        None => text.to_string(),
    }
}

fn connection(e: async_imap::error::Error) -> Error {
    Error::Connection(e.to_string())
}

//! What the IMAP load generators share: a small IMAP client (one command at a time, as
//! real clients), the set-up of a data directory with one account, and test messages.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hameau_mailbox::{Ingest, Keyword, Mail, Role};
use hameau_testkit::{Server, set_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The bench account and its password (plain LOGIN over TCP: `plaintext_auth = true`).
pub const USER: &str = "bench@a.test";
pub const PASSWORD: &str = "bench password, not a secret";

/// How a command ended (RFC 9051 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
}

/// A command's answer: its tagged status and text, and the untagged lines before it
/// (literals inline, final CRLF removed).
#[derive(Debug)]
pub struct Response {
    pub status: Status,
    pub text: String,
    pub untagged: Vec<Vec<u8>>,
}

impl Response {
    /// Fails unless the status is OK.
    pub fn ok(self, command: &str) -> anyhow::Result<Response> {
        if self.status != Status::Ok {
            bail!("{command}: {:?} {}", self.status, self.text);
        }
        Ok(self)
    }

    /// The numbers of the untagged `* SEARCH n n n` lines.
    pub fn search_results(&self) -> usize {
        self.untagged
            .iter()
            .filter_map(|line| line.strip_prefix(b"* SEARCH"))
            .map(|rest| rest.split(|b| *b == b' ').filter(|w| !w.is_empty()).count())
            .sum()
    }

    /// How many untagged lines contain `needle`.
    pub fn count(&self, needle: &[u8]) -> usize {
        self.untagged.iter().filter(|line| line.windows(needle.len()).any(|w| w == needle)).count()
    }
}

/// An IMAP client connection. Reading is exact: a response line is complete at CRLF
/// unless it ends with a literal announcement (`{n}`, `{n+}`, `~{n}`), whose n bytes are
/// consumed by count before the line goes on; a command is complete at the line that
/// starts with its tag.
pub struct Client {
    stream: TcpStream,
    /// Bytes read and not consumed are `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes asked of the socket at once; small once the connection is to sit idle.
    read_bytes: usize,
    next_tag: u32,
}

/// Bytes asked of the socket at once by a busy connection.
const READ_BYTES: usize = 16 * 1024;

impl Client {
    /// Connects (from `local`, when given, so that many connections can spread over
    /// several loopback source addresses) and reads the greeting.
    pub async fn connect(addr: SocketAddr, local: Option<IpAddr>) -> anyhow::Result<Client> {
        let stream = match local {
            Some(ip) => {
                let socket = if ip.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                socket.bind(SocketAddr::new(ip, 0))?;
                socket.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        stream.set_nodelay(true)?;
        let mut client = Client { stream, buf: Vec::new(), pos: 0, read_bytes: READ_BYTES, next_tag: 1 };
        let greeting = client.read_line().await?;
        if !greeting.starts_with(b"* OK") {
            bail!("greeting: {}", String::from_utf8_lossy(&greeting));
        }
        Ok(client)
    }

    /// Connects and logs in as the bench account.
    pub async fn login(addr: SocketAddr, local: Option<IpAddr>) -> anyhow::Result<Client> {
        let mut client = Client::connect(addr, local).await?;
        client.command(&format!("LOGIN {USER} \"{PASSWORD}\"")).await?.ok("LOGIN")?;
        Ok(client)
    }

    /// Sends `TAG command` and reads until its tagged response.
    pub async fn command(&mut self, command: &str) -> anyhow::Result<Response> {
        let tag = self.tag();
        self.stream.write_all(format!("{tag} {command}\r\n").as_bytes()).await?;
        self.response(&tag).await
    }

    /// APPEND with a synchronising literal (`{n}`, then `+`), as most clients send it.
    pub async fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> anyhow::Result<Response> {
        let tag = self.tag();
        let head = format!("{tag} APPEND {mailbox} ({flags}) {{{}}}\r\n", message.len());
        self.stream.write_all(head.as_bytes()).await?;
        let line = self.read_line().await?;
        if !line.starts_with(b"+") {
            let mut response = self.response_from(&tag, Some(line)).await?;
            response.text = format!("(literal refused) {}", response.text);
            return Ok(response);
        }
        self.stream.write_all(message).await?;
        self.stream.write_all(b"\r\n").await?;
        self.response(&tag).await
    }

    /// Sends IDLE and waits for the continuation (`+ idling`); returns its tag for DONE.
    pub async fn idle(&mut self) -> anyhow::Result<String> {
        let tag = self.tag();
        self.stream.write_all(format!("{tag} IDLE\r\n").as_bytes()).await?;
        loop {
            let line = self.read_line().await?;
            if line.starts_with(b"+") {
                return Ok(tag);
            }
            if line.starts_with(tag.as_bytes()) {
                bail!("IDLE refused: {}", String::from_utf8_lossy(&line));
            }
        }
    }

    /// Lets go of the read buffer (for connections that will sit idle a long time).
    pub fn shrink(&mut self) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.buf.shrink_to_fit();
        self.read_bytes = 512;
    }

    fn tag(&mut self) -> String {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        tag
    }

    async fn response(&mut self, tag: &str) -> anyhow::Result<Response> {
        self.response_from(tag, None).await
    }

    /// Reads lines (starting with `first` if given) until the one tagged `tag`.
    async fn response_from(&mut self, tag: &str, first: Option<Vec<u8>>) -> anyhow::Result<Response> {
        let mut untagged = Vec::new();
        let mut next = first;
        loop {
            let line = match next.take() {
                Some(line) => line,
                None => self.read_line().await?,
            };
            if let Some(rest) = line.strip_prefix(tag.as_bytes()).and_then(|rest| rest.strip_prefix(b" ")) {
                let rest = String::from_utf8_lossy(rest);
                let (word, text) = rest.split_once(' ').unwrap_or((&rest, ""));
                let status = match word.to_ascii_uppercase().as_str() {
                    "OK" => Status::Ok,
                    "NO" => Status::No,
                    "BAD" => Status::Bad,
                    _ => bail!("tagged line without status: {rest}"),
                };
                return Ok(Response { status, text: text.to_string(), untagged });
            }
            if line.starts_with(b"+") {
                bail!("unexpected continuation request: {}", String::from_utf8_lossy(&line));
            }
            untagged.push(line);
        }
    }

    /// The next response line, its literals inline, without the final CRLF.
    pub async fn read_line(&mut self) -> anyhow::Result<Vec<u8>> {
        // Consumed bytes are dropped only now and then, not at every line of a long response.
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos >= 4 * READ_BYTES {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let begin = self.pos;
        // Where to look for the next CRLF: after the literals already taken in.
        let mut scan = begin;
        loop {
            match self.buf[scan..].windows(2).position(|w| w == b"\r\n") {
                Some(found) => {
                    let eol = scan + found;
                    if let Some(length) = literal_length(&self.buf[scan..eol]) {
                        let end = eol + 2 + length;
                        while self.buf.len() < end {
                            self.fill().await?;
                        }
                        scan = end;
                        continue;
                    }
                    let line = self.buf[begin..eol].to_vec();
                    self.pos = eol + 2;
                    return Ok(line);
                }
                None => {
                    // A CR at the very end may be the first half of the CRLF.
                    scan = self.buf.len().saturating_sub(1).max(scan);
                    self.fill().await?;
                }
            }
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(self.read_bytes);
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            let tail = String::from_utf8_lossy(&self.buf[self.buf.len().saturating_sub(200)..]).into_owned();
            bail!("connection closed by the server (last bytes: {tail:?})");
        }
        Ok(())
    }
}

/// The n of a literal announced at the end of a line segment: `{n}`, `{n+}` (RFC 7888) or
/// `~{n}` (RFC 3516 literal8).
fn literal_length(segment: &[u8]) -> Option<usize> {
    let inner = segment.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A fresh data directory with one account (`USER`, `PASSWORD`) and IMAP on loopback
/// with `plaintext_auth = true`; removed when dropped.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
    pub hameau: PathBuf,
}

impl Setup {
    /// `hameau init` under `base`, the configuration changed by `changes` (`from`, `to`),
    /// then tenant `bench`, domain a.test and the account.
    pub fn new(prefix: &str, base: &Path, changes: &[(&str, &str)]) -> anyhow::Result<Setup> {
        let (dir, hameau, config) = crate::init_data_dir(prefix, base)?;
        let data = dir.path().join("data");
        // Plain LOGIN over TCP: the bench measures IMAP, not TLS.
        set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
        for (from, to) in changes {
            set_config(&config, from, to);
        }
        let setup = Setup { dir, data, config, hameau };
        setup.admin(&["tenant", "create", "bench", "--name", "Bench"])?;
        setup.admin(&["domain", "create", "a.test", "--tenant", "bench"])?;
        let mut child = Command::new(&setup.hameau)
            .args(["account", "create", USER, "--password-stdin", "--config", setup.config.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{PASSWORD}\n").as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("hameau account create: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(setup)
    }

    /// One admin command on the local data directory; its standard output.
    pub fn admin(&self, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output =
            Command::new(&self.hameau).args(args).args(["--config", self.config.to_str().unwrap()]).output()?;
        if !output.status.success() {
            bail!("hameau {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(output.stdout)
    }

    /// The bench account's id.
    pub fn account_id(&self) -> anyhow::Result<u64> {
        let shown: serde_json::Value = serde_json::from_slice(&self.admin(&["account", "show", USER])?)?;
        shown["id"].as_u64().context("account id")
    }

    pub fn start(&self) -> Server {
        Server::start(&self.hameau, &self.config)
    }
}

/// Stops the server with SIGTERM (as an operator would), at most 60 s.
pub fn stop(mut server: Server) -> anyhow::Result<()> {
    server.signal(libc::SIGTERM);
    server.wait(Duration::from_secs(60)).context("the server did not stop within 60 s")?;
    Ok(())
}

/// Raises this process's open-file limit to its hard limit (children inherit it);
/// returns the new limit.
pub fn raise_nofile() -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(limit.rlim_cur)
}

/// The load average over the last minute: the machine is shared, so it goes in the output.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How [`seed_inbox`] dates its messages (their `receivedAt`, INTERNALDATE).
#[derive(Clone, Copy, Debug)]
pub enum Dates {
    /// All at the seeding's start.
    AllNow,
    /// One a second, the last one at the seeding's start: a sort by date has work to do.
    OneASecond,
}

/// Fills the INBOX of `account` in the store at `path` (the server is not running) with
/// `messages` messages of about `bytes` bytes, a third `\Seen`, through
/// `Mail::ingest_many` (batches of 500, 16 at a time), and checks the count.
pub async fn seed_inbox(path: &Path, account: u64, messages: usize, bytes: usize, dates: Dates) -> anyhow::Result<()> {
    const BATCH: usize = 500;
    const SEEDERS: usize = 16;
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(path)).await?;
    // A seeding batch is one ingest: over the server's `mail.ingest_batch_max`, which
    // bounds what a client sends, not what this direct seeding commits.
    let limits = hameau_mailbox::Limits { ingest_batch_max: BATCH, ..hameau_mailbox::Limits::default() };
    let mail = Mail::with_limits(store.clone(), limits);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let first = now.saturating_sub(messages as u64);
    mail.ensure_account(account, now).await?;
    let inbox = mail.mailbox_by_role(account, Role::Inbox).await?.context("no INBOX")?.id;
    let mut tasks = Vec::new();
    for seeder in 0..SEEDERS {
        let mail = mail.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seeder as u64);
            // Batch b goes to seeder b % SEEDERS: UIDs come in commit order anyway.
            for batch_start in (seeder * BATCH..messages).step_by(SEEDERS * BATCH) {
                let batch = (batch_start..(batch_start + BATCH).min(messages))
                    .map(|serial| {
                        let keywords = if serial % 3 == 0 { vec![Keyword::Seen] } else { Vec::new() };
                        let received_at = match dates {
                            Dates::AllNow => now,
                            Dates::OneASecond => first + serial as u64,
                        };
                        let raw = message(&mut rng, serial as u64, bytes);
                        let ingest = Ingest {
                            raw: raw.into(),
                            mailboxes: vec![inbox],
                            keywords,
                            received_at,
                            quota: Default::default(),
                        };
                        (account, ingest)
                    })
                    .collect();
                mail.ingest_many(batch).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let count = mail.uids(account, inbox).await?.len();
    store.close().await?;
    if count != messages {
        bail!("seeded {count} messages, not {messages}");
    }
    Ok(())
}

/// Builds the account's text index in the store at `path` (the server is not running),
/// as the server's indexer would after the deliveries; the emails indexed.
pub async fn build_text_index(path: &Path, account: u64) -> anyhow::Result<u64> {
    let store = hameau_store::Store::open(&hameau_store::Options::rocksdb(path)).await?;
    let mail = Mail::new(store.clone());
    let progress = mail.index_text(account).await?;
    store.close().await?;
    Ok(progress.indexed)
}

/// A small deterministic generator (SplitMix64), so that runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// In `0..n`, small values much more likely (about Zipf-like: a few words are common,
    /// most are rare, as in real text).
    pub fn skewed(&mut self, n: usize) -> usize {
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((x * x * x) * n as f64) as usize
    }
}

/// Words of the bodies: a few hundred French words, then made-up rarer ones.
pub const VOCABULARY_WORDS: usize = 3000;

const COMMON: &[&str] = &[
    "mairie",
    "conseil",
    "municipal",
    "commune",
    "habitants",
    "réunion",
    "budget",
    "travaux",
    "école",
    "cantine",
    "voirie",
    "eau",
    "assainissement",
    "urbanisme",
    "permis",
    "construire",
    "déclaration",
    "préfecture",
    "maire",
    "adjoint",
    "secrétaire",
    "délibération",
    "séance",
    "ordre",
    "jour",
    "compte",
    "rendu",
    "subvention",
    "association",
    "fête",
    "village",
    "salle",
    "polyvalente",
    "location",
    "tarif",
    "facture",
    "devis",
    "entreprise",
    "chantier",
    "route",
    "départementale",
    "cimetière",
    "concession",
    "état",
    "civil",
    "naissance",
    "mariage",
    "décès",
    "recensement",
    "élections",
    "liste",
    "électorale",
    "bureau",
    "vote",
    "panneau",
    "affichage",
    "arrêté",
    "circulation",
    "stationnement",
    "bibliothèque",
    "périscolaire",
    "garderie",
    "transport",
    "scolaire",
    "ramassage",
    "ordures",
    "déchetterie",
    "tri",
    "collecte",
    "intercommunalité",
    "communauté",
    "syndicat",
    "forêt",
    "chemin",
    "rural",
    "entretien",
    "fauchage",
    "déneigement",
    "église",
    "patrimoine",
    "restauration",
    "toiture",
    "chauffage",
    "électricité",
    "éclairage",
    "public",
    "le",
    "la",
    "les",
    "de",
    "du",
    "des",
    "et",
    "à",
    "pour",
    "avec",
    "sur",
    "dans",
    "par",
    "nous",
    "vous",
    "merci",
    "bonjour",
    "cordialement",
    "demande",
    "réponse",
    "dossier",
    "pièce",
    "jointe",
    "rappel",
    "urgent",
    "semaine",
];

/// The `index`th word: a common one, or a made-up word from syllables.
pub fn word(index: usize) -> String {
    if index < COMMON.len() {
        return COMMON[index].to_string();
    }
    const SYLLABLES: &[&str] =
        &["ba", "cor", "di", "fen", "gal", "hou", "jur", "ka", "lem", "mo", "nar", "pé", "quin", "ros", "sul", "tav"];
    let mut n = index;
    let mut word = String::new();
    for _ in 0..3 {
        word.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    word.push_str(SYLLABLES[n % SYLLABLES.len()]);
    word
}

/// Sender names: SEARCH FROM has some to find.
pub const SENDERS: usize = 40;

pub fn sender(index: usize) -> String {
    const FIRST: &[&str] = &["jean", "marie", "pierre", "sophie", "luc", "claire", "paul", "anne"];
    const DOMAINS: &[&str] = &["prefecture.test", "cc-vallee.test", "orange.test", "laposte.test", "gmail.test"];
    format!("{}.{}{}@{}", FIRST[index % FIRST.len()], "dupont", index, DOMAINS[index % DOMAINS.len()])
}

/// A message of about `bytes` bytes: varied sender, subject and words; one in four is
/// multipart/alternative (text and HTML) so that BODYSTRUCTURE has parts to describe.
pub fn message(rng: &mut Rng, serial: u64, bytes: usize) -> Vec<u8> {
    let from = sender(rng.below(SENDERS));
    let subject: Vec<String> = (0..3 + rng.below(5)).map(|_| word(rng.skewed(VOCABULARY_WORDS))).collect();
    let mut text = String::new();
    let mut line_len = 0;
    let body_bytes = bytes.saturating_sub(600);
    while text.len() < body_bytes {
        let w = word(rng.skewed(VOCABULARY_WORDS));
        line_len += w.len() + 1;
        text.push_str(&w);
        if line_len > 70 {
            text.push_str("\r\n");
            line_len = 0;
        } else {
            text.push(' ');
        }
    }
    let day = 1 + serial % 28;
    let mut head = format!(
        "Return-Path: <{from}>\r\nMessage-ID: <{serial}.{}@bench.test>\r\nDate: Mon, {day} Jun 2025 10:{:02}:00 +0200\r\n\
         From: \"{}\" <{from}>\r\nTo: \"Mairie\" <{USER}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n",
        rng.next_u64() % 1_000_000,
        serial % 60,
        from.split('@').next().unwrap_or(""),
        subject.join(" "),
    );
    if serial % 7 == 3 {
        head.push_str(&format!("Cc: {}\r\n", sender(rng.below(SENDERS))));
    }
    if serial % 5 == 2 && serial > 0 {
        head.push_str(&format!("In-Reply-To: <{}.0@bench.test>\r\n", serial - 1));
    }
    let mut out = head;
    if serial % 4 == 1 {
        let half = text.len() / 2;
        let cut = (half..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        let (plain, html) = text.split_at(cut);
        out.push_str("Content-Type: multipart/alternative; boundary=\"b0\"\r\n\r\n--b0\r\n");
        out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        out.push_str(plain);
        out.push_str(
            "\r\n--b0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>",
        );
        out.push_str(html);
        out.push_str("</p>\r\n--b0--\r\n");
    } else {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        out.push_str(&text);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests;

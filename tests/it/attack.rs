//! Shared set-up of the attack tests (issue 10, hardening): a server with two accounts, a
//! way to check that it still serves honest clients while an attack runs, and its memory
//! read from /proc. Each attack test lives in the `attack_*` module of its area.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{Knot, Server, config_path, init_with_token, set_config, start_server};

/// The attacker's account (it may log in) and its password.
pub const USER: &str = "user@a.test";
pub const USER_PASSWORD: &str = "correct horse battery staple";
/// An honest account that must keep being served while the attacker works.
pub const HONEST: &str = "honest@a.test";
pub const HONEST_PASSWORD: &str = "an honest agent's password";

/// A running server with tenant `a`, domain a.test, accounts [`USER`] and [`HONEST`],
/// plaintext LOGIN allowed (raw test clients) and a quick local DNS for the MX.
pub struct Target {
    pub server: Server,
    pub config: PathBuf,
    _dns: (Knot, tempfile::TempDir),
    _dir: tempfile::TempDir,
}

impl Target {
    pub fn start() -> Target {
        Target::start_with(|_| {})
    }

    /// Like [`Target::start`], with `edit` applied to the configuration file first (use
    /// [`set_config`] in it to change a limit).
    pub fn start_with(edit: impl FnOnce(&Path)) -> Target {
        let (dir, _) = init_with_token();
        let config = config_path(dir.path());
        crate::imap::imap_account(&config);
        crate::imap::create_account(&config, HONEST, HONEST_PASSWORD);
        set_config(&config, "plaintext_auth = false", "plaintext_auth = true");
        let dns = crate::imap::quick_dns(&config);
        edit(&config);
        let server = start_server(&config);
        Target { server, config, _dns: dns, _dir: dir }
    }

    pub fn smtp(&self) -> SocketAddr {
        self.server.smtp[0]
    }

    pub fn imap(&self) -> SocketAddr {
        self.server.imap[0]
    }

    /// The server's resident memory in KiB (`VmRSS` of /proc/PID/status).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.server.child.id(), "VmRSS:")
    }

    /// The server's own memory in KiB (`RssAnon`): heap, stacks and caches, without the
    /// pages of the binary mapped from disk (`RssFile`: shared, clean, given back by the
    /// kernel under pressure, and most of an idle server's `VmRSS`).
    pub fn anon_rss_kib(&self) -> u64 {
        proc_status_kib(self.server.child.id(), "RssAnon:")
    }

    /// The server's peak resident memory in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.server.child.id(), "VmHWM:")
    }

    /// Panics unless the process is alive, an honest IMAP login with SELECT INBOX and an
    /// honest SMTP delivery both succeed, each within `deadline`.
    pub fn assert_serving(&self, deadline: Duration) {
        assert!(self.alive(), "the server died");
        let start = Instant::now();
        honest_imap(self.imap(), deadline).unwrap_or_else(|e| panic!("honest IMAP client not served: {e}"));
        honest_smtp(self.smtp(), deadline).unwrap_or_else(|e| panic!("honest SMTP client not served: {e}"));
        assert!(start.elapsed() < deadline * 2, "honest clients took {:?}", start.elapsed());
    }

    /// A plain IMAP connection logged in as `user` (LOGIN tagged `l1`); panics on failure.
    pub fn imap_login(&self, user: &str, password: &str) -> LineClient {
        let mut client = LineClient::connect(self.imap(), Duration::from_secs(60)).unwrap();
        assert!(client.line().unwrap().starts_with("* OK"));
        client.send(format!("l1 LOGIN {user} \"{password}\"\r\n").as_bytes()).unwrap();
        let answer = client.until("l1 ").unwrap();
        assert!(answer.starts_with("l1 OK"), "{answer}");
        client
    }

    pub fn alive(&self) -> bool {
        Path::new(&format!("/proc/{}/status", self.server.child.id())).exists()
            && !proc_status(self.server.child.id()).contains("State:\tZ")
    }
}

fn proc_status(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = proc_status(pid);
    let line = status.lines().find(|line| line.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A line-oriented client over a plain TCP socket with read and write timeouts.
pub struct LineClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl LineClient {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<LineClient> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(LineClient { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// One line, CRLF removed.
    pub fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// Lines until one starts with `prefix` (an IMAP tag, or an SMTP code followed by a
    /// space); returns that last line.
    pub fn until(&mut self, prefix: &str) -> std::io::Result<String> {
        loop {
            let line = self.line()?;
            if line.starts_with(prefix) {
                return Ok(line);
            }
        }
    }

    /// Everything until the peer closes or the read times out.
    pub fn rest(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        rest
    }

    pub fn stream(&self) -> &TcpStream {
        &self.writer
    }
}

fn expect(line: String, prefix: &str) -> Result<String, String> {
    if line.starts_with(prefix) { Ok(line) } else { Err(format!("expected {prefix:?}, got {line:?}")) }
}

/// LOGIN as [`HONEST`], SELECT INBOX, LOGOUT.
pub fn honest_imap(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| format!("IMAP {addr}: {e}");
    let mut client = LineClient::connect(addr, deadline).map_err(io)?;
    expect(client.line().map_err(io)?, "* OK")?;
    client.send(format!("h1 LOGIN {HONEST} \"{HONEST_PASSWORD}\"\r\n").as_bytes()).map_err(io)?;
    expect(client.until("h1 ").map_err(io)?, "h1 OK")?;
    client.send(b"h2 SELECT INBOX\r\n").map_err(io)?;
    expect(client.until("h2 ").map_err(io)?, "h2 OK")?;
    client.send(b"h3 LOGOUT\r\n").map_err(io)?;
    Ok(())
}

/// One message from an outside sender to [`HONEST`] through the MX; Ok once it has `250`.
pub fn honest_smtp(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let io = |e: std::io::Error| format!("SMTP {addr}: {e}");
    let mut client = LineClient::connect(addr, deadline).map_err(io)?;
    expect(client.until("220 ").map_err(io)?, "220 ")?;
    client.send(b"EHLO honest.test\r\n").map_err(io)?;
    expect(client.until("250 ").map_err(io)?, "250 ")?;
    client.send(b"MAIL FROM:<jean@sender.test>\r\n").map_err(io)?;
    expect(client.line().map_err(io)?, "250")?;
    client.send(format!("RCPT TO:<{HONEST}>\r\n").as_bytes()).map_err(io)?;
    expect(client.line().map_err(io)?, "250")?;
    client.send(b"DATA\r\n").map_err(io)?;
    expect(client.line().map_err(io)?, "354")?;
    let message = "From: <jean@sender.test>\r\nTo: <honest@a.test>\r\nSubject: honest\r\n\r\nBonjour.\r\n.\r\n";
    client.send(message.as_bytes()).map_err(io)?;
    expect(client.line().map_err(io)?, "250")?;
    client.send(b"QUIT\r\n").map_err(io)?;
    Ok(())
}

impl LineClient {
    /// A client over a stream already connected (e.g. from a chosen local address); the
    /// stream's timeouts are kept.
    pub fn from_stream(stream: TcpStream) -> std::io::Result<LineClient> {
        Ok(LineClient { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }
}

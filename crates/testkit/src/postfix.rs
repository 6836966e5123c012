//! A real Postfix (Debian package `postfix`, 3.7) as a private instance on a loopback port:
//! the remote MX of the outbound end-to-end tests (`Postfix::mx`, mail for its domains
//! written to a maildir the test reads) and the baseline of the outbound benchmark
//! (`Postfix::relay`, everything from 127.0.0.0/8 relayed to one host and port).
//!
//! Everything of the instance lives in one temporary directory (configuration, queue,
//! data, log, mail): it is started with `postfix -c DIR start` and stopped with `postfix -c
//! DIR stop` (then by the master's PID if that failed) when dropped. Nothing reads or
//! writes `/etc/postfix` or the system's instance: `meta_directory` is a copy of the
//! package's `postfix-files` and `dynamicmaps.cf`, and no daemon runs chrooted (Debian's
//! default would need copies of `/etc` files in the queue directory). The daemons run as
//! root starts them (the package's `postfix` user and `postdrop` group must exist).
//!
//! The log goes to `maillog_file` through `postlogd` (Postfix ≥ 3.4), so a test reads it
//! with `Postfix::log`; `smtpd_tls_loglevel = 1` makes it show each TLS connection
//! ("Anonymous TLS connection established from …" or "TLS connection established from …").

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its private key, both PEM files, for Postfix's STARTTLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Writes a new self-signed certificate for `names` (ECDSA P-256, rcgen) and its key
    /// into `dir` as `cert.pem` and `key.pem`.
    pub fn self_signed(dir: &Path, names: &[&str]) -> TlsFiles {
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let certified = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
        let files = TlsFiles { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
        std::fs::write(&files.cert, certified.cert.pem()).unwrap();
        std::fs::write(&files.key, certified.signing_key.serialize_pem()).unwrap();
        files
    }
}

/// A running private Postfix instance; stopped and removed when dropped.
pub struct Postfix {
    /// The port of its SMTP server (smtpd) on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    stopped: bool,
}

impl Postfix {
    /// A remote MX: smtpd accepts mail for `domains` (and refuses to relay anything else)
    /// and the `virtual` agent writes each message to one maildir (`Postfix::received`),
    /// after prepending `Return-Path`, `Delivered-To` and its `Received` field. With
    /// `tls`, STARTTLS is offered (`smtpd_tls_security_level = may`).
    pub fn mx(domains: &[&str], tls: Option<&TlsFiles>) -> Postfix {
        let (uid, gid) = mail_owner_ids();
        let settings = format!(
            "mydestination =\n\
             smtpd_relay_restrictions = reject_unauth_destination\n\
             virtual_mailbox_domains = {domains}\n\
             virtual_mailbox_base = {{dir}}/mail\n\
             virtual_mailbox_maps = static:inbox/\n\
             virtual_uid_maps = static:{uid}\n\
             virtual_gid_maps = static:{gid}\n",
            domains = domains.join(", "),
        );
        Postfix::start(&std::env::temp_dir(), "mx.remote.test", &settings, tls)
    }

    /// A relay: smtpd accepts any mail from 127.0.0.0/8 (`mynetworks`, no AUTH) and the
    /// `smtp` client hands everything to `127.0.0.1:relay_port` (`relayhost`, no DNS),
    /// with Postfix's default concurrency and connection caching. With `tls`, STARTTLS
    /// is offered to clients; the hop to the relay host is in clear (as smtp-sink speaks
    /// no TLS). Its directory (the queue: one synced file per message) is made under
    /// `base`, so that a benchmark puts it on the same disk as the server it compares.
    pub fn relay(base: &Path, relay_port: u16, tls: Option<&TlsFiles>) -> Postfix {
        let settings = format!(
            "mydestination =\n\
             smtpd_relay_restrictions = permit_mynetworks, reject\n\
             relayhost = [127.0.0.1]:{relay_port}\n"
        );
        Postfix::start(base, "relay.test", &settings, tls)
    }

    /// The instance's directory (`conf/`, `queue/`, `data/`, `mail/`, `maillog`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The master daemon's process ID (every other Postfix process is its descendant).
    pub fn master_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir().join("queue/pid/master.pid")).expect("master.pid");
        text.trim().parse().expect("a PID in master.pid")
    }

    /// The instance's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("maillog")).unwrap_or_default()
    }

    /// The messages delivered so far (`Postfix::mx`), oldest first, as written by Postfix
    /// (LF line ends).
    pub fn received(&self) -> Vec<Vec<u8>> {
        let new = self.dir().join("mail/inbox/new");
        let Ok(entries) = std::fs::read_dir(new) else { return Vec::new() };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
            .collect();
        files.sort();
        files.into_iter().filter_map(|(_, path)| std::fs::read(path).ok()).collect()
    }

    /// Stops the instance: `postfix stop` (which waits for the master to exit), or the
    /// master's process group killed if that fails.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let conf = self.dir().join("conf");
        let stopped = Command::new("/usr/sbin/postfix")
            .args(["-c", conf.to_str().unwrap(), "stop"])
            .output()
            .is_ok_and(|output| output.status.success());
        if !stopped {
            // The master leads its own process group (it calls setsid).
            let pid = self.master_pid() as libc::pid_t;
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }

    fn start(base: &Path, hostname: &str, settings: &str, tls: Option<&TlsFiles>) -> Postfix {
        use std::os::unix::fs::PermissionsExt;
        assert!(Path::new("/usr/sbin/postfix").exists(), "postfix is needed (Debian package postfix)");
        let dir = tempfile::Builder::new().prefix("postfix").tempdir_in(base).unwrap();
        let root = dir.path().to_path_buf();
        // The daemons, running as the mail owner, go through it to their queue directory.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = root.join("conf");
        for sub in ["conf/postfix-files.d", "conf/dynamicmaps.cf.d", "queue", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for file in ["postfix-files", "dynamicmaps.cf"] {
            std::fs::copy(Path::new("/etc/postfix").join(file), conf.join(file)).unwrap();
        }
        let (uid, gid) = mail_owner_ids();
        let mail = std::ffi::CString::new(root.join("mail").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::chown(mail.as_ptr(), uid, gid) }, 0, "chown of the maildir base");

        let port = crate::free_port();
        let mut main = format!(
            "compatibility_level = 3.6\n\
             config_directory = {dir}/conf\n\
             meta_directory = {dir}/conf\n\
             queue_directory = {dir}/queue\n\
             data_directory = {dir}/data\n\
             command_directory = /usr/sbin\n\
             daemon_directory = /usr/lib/postfix/sbin\n\
             shlib_directory = /usr/lib/postfix\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             myhostname = {hostname}\n\
             myorigin = $myhostname\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             mynetworks = 127.0.0.0/8\n\
             smtpd_peername_lookup = no\n\
             alias_maps =\n\
             alias_database =\n\
             maillog_file = {dir}/maillog\n\
             maillog_file_prefixes = {dir}\n",
            dir = root.display(),
        );
        main.push_str(&settings.replace("{dir}", &root.display().to_string()));
        if let Some(tls) = tls {
            main.push_str(&format!(
                "smtpd_tls_cert_file = {}\nsmtpd_tls_key_file = {}\n\
                 smtpd_tls_security_level = may\nsmtpd_tls_loglevel = 1\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        std::fs::write(conf.join("main.cf"), main).unwrap();
        std::fs::write(conf.join("master.cf"), master_cf(port)).unwrap();

        let output = Command::new("/usr/sbin/postfix")
            .args(["-c", conf.to_str().unwrap(), "start"])
            .output()
            .expect("run postfix start");
        let postfix = Postfix { port, dir, stopped: false };
        // `postfix start` returns once the master reports it is initialised (`master -w`),
        // its listening socket bound: no probe connection (it would show in the log).
        assert!(
            output.status.success(),
            "postfix start: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            postfix.log()
        );
        postfix
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// master.cf: smtpd on `port`, and only the services its mail goes through (no pickup:
/// nothing is posted locally), none chrooted.
fn master_cf(port: u16) -> String {
    let services = [
        ("cleanup", "unix", "n", "-", "0", "cleanup"),
        ("qmgr", "unix", "n", "300", "1", "qmgr"),
        ("tlsmgr", "unix", "-", "1000?", "1", "tlsmgr"),
        ("rewrite", "unix", "-", "-", "-", "trivial-rewrite"),
        ("bounce", "unix", "-", "-", "0", "bounce"),
        ("defer", "unix", "-", "-", "0", "bounce"),
        ("trace", "unix", "-", "-", "0", "bounce"),
        ("verify", "unix", "-", "-", "1", "verify"),
        ("flush", "unix", "n", "1000?", "0", "flush"),
        ("proxymap", "unix", "-", "-", "-", "proxymap"),
        ("smtp", "unix", "-", "-", "-", "smtp"),
        ("relay", "unix", "-", "-", "-", "smtp"),
        ("error", "unix", "-", "-", "-", "error"),
        ("retry", "unix", "-", "-", "-", "error"),
        ("discard", "unix", "-", "-", "-", "discard"),
        ("virtual", "unix", "-", "-", "-", "virtual"),
        ("anvil", "unix", "-", "-", "1", "anvil"),
        ("scache", "unix", "-", "-", "1", "scache"),
        ("postlog", "unix-dgram", "n", "-", "1", "postlogd"),
    ];
    // Columns: service type private unpriv chroot wakeup maxproc command. The virtual
    // agent runs privileged (unpriv n) to become the mailbox owner.
    let mut text = format!("127.0.0.1:{port} inet n - n - - smtpd\n");
    for (service, kind, private, wakeup, maxproc, command) in services {
        let unprivileged = if service == "virtual" { "n" } else { "-" };
        text.push_str(&format!("{service} {kind} {private} {unprivileged} n {wakeup} {maxproc} {command}\n"));
    }
    text
}

/// The user and group IDs of Postfix's mail owner (`postfix`), who also owns the maildir.
fn mail_owner_ids() -> (libc::uid_t, libc::gid_t) {
    let name = std::ffi::CString::new("postfix").unwrap();
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(!entry.is_null(), "no user postfix (Debian package postfix)");
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

//! A real Dovecot (Debian package `dovecot-imapd`, 2.3) as a private instance on loopback
//! ports: the old provider of the migration's end-to-end tests (issue 13).
//!
//! Everything of the instance lives in one temporary directory: its configuration, its
//! runtime directory (`base_dir`), its state, its log (`dovecot.log`), the users' passwords
//! (a `passwd-file`) and their maildirs. It runs in the foreground (`dovecot -F -c CONF`)
//! as a child of the test, and is stopped by its PID when dropped. Mail is owned by the
//! package's `dovecot` user (Dovecot refuses root as a mail user), so the temporary
//! directory is opened to it.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{TestCa, free_port};

/// A running private Dovecot; stopped when dropped.
pub struct Dovecot {
    /// IMAP with STARTTLS, and IMAP over TLS, on 127.0.0.1.
    pub imap_port: u16,
    pub imaps_port: u16,
    /// The CA that signed its certificate (for `localhost` and `127.0.0.1`), as a PEM file.
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dovecot {
    /// Starts Dovecot with these users (login, password), the hierarchy separator `.`
    /// (Maildir++'s, as most old servers), special-use attributes on Gmail-like folder
    /// names, and a certificate from `ca`.
    pub fn start(users: &[(&str, &str)], ca: &TestCa) -> Dovecot {
        let dir = tempfile::Builder::new().prefix("hameau-dovecot-").tempdir().expect("a temporary directory");
        let root = dir.path();
        let (uid, gid) = dovecot_ids();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let tls = ca.issue(root, &["localhost", "127.0.0.1"]);
        let ca_file = ca.write_pem(root);
        let passwd: String =
            users.iter().map(|(user, password)| format!("{user}:{{PLAIN}}{password}::::::\n")).collect();
        std::fs::write(root.join("passwd"), passwd).unwrap();
        let (imap_port, imaps_port) = (free_port(), free_port());
        let conf = format!(
            r#"base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
namespace inbox {{
  inbox = yes
  separator = .
  mailbox "[Gmail].Sent Mail" {{
    special_use = \Sent
  }}
  mailbox "[Gmail].Starred" {{
    special_use = \Flagged
  }}
  mailbox "[Gmail].All Mail" {{
    special_use = \All
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
imap_max_line_length = 1M
"#,
            root = root.display(),
            cert = tls.cert.display(),
            key = tls.key.display(),
        );
        std::fs::write(root.join("dovecot.conf"), conf).unwrap();
        // The mail processes run as `dovecot`: they must reach the maildirs.
        let chown = |path: &Path| {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a plain chown(2) of a path we made.
            unsafe { libc::chown(c.as_ptr(), uid, gid) };
        };
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(&root.join("mail"));
        let child = Command::new("/usr/sbin/dovecot")
            .args(["-F", "-c"])
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start /usr/sbin/dovecot (Debian package dovecot-imapd)");
        let mut dovecot = Dovecot { imap_port, imaps_port, ca_file, dir, child: Some(child) };
        dovecot.wait_ready();
        dovecot
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|child| child.try_wait().ok().flatten()) {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.as_mut().and_then(|child| child.stderr.take()) {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!("dovecot exited ({status}): {stderr}\nlog:\n{}", self.log());
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.imap_port)) {
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("* OK") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "dovecot did not answer on port {}: {}", self.imap_port, self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The instance's directory (`dovecot.conf`, `dovecot.log`, `mail/USER/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A user's maildir (folders are `.Name` directories in it, Maildir++).
    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir().join("mail").join(user)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default()
    }

    /// Stops the master by its PID (SIGTERM, then SIGKILL after 10 s); its children follow.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // SAFETY: signalling our own child by its PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The package's `dovecot` user and group.
fn dovecot_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let line =
        passwd.lines().find(|line| line.starts_with("dovecot:")).expect("a dovecot user (Debian package dovecot-core)");
    let fields: Vec<&str> = line.split(':').collect();
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

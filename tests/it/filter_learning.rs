//! The learning classifier (issue 14, scope 9, and its acceptance item "Learning"): the
//! shared classifier seeded with `hameau filter learn` (an mbox of spam, a directory of
//! message files of ham: small synthetic corpora, so that the test is deterministic), a
//! message of a new campaign delivered over SMTP and moved into Junk with Python's
//! imaplib (`MOVE`), and the classifier's score of a similar message, before and after.
//!
//! The score is read with `hameau filter score` on the stopped server. Once the MX adds
//! the `X-Hameau-Filter` header to delivered messages, the same comparison can read
//! `BAYES_SPAM(…)`/`BAYES_HAM(…)` from the headers of two deliveries instead.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::imap::{imap_account, python, quick_dns};
use crate::support::{admin, config_path, init_with_token, run, set_config, start_server};

/// Words of the seeded spam, of the seeded ham, and of the new campaign the agent judges.
const SPAM_WORDS: &str = "félicitations gagnant loterie cliquez vite virement gratuit casino bonus argent facile";
const HAM_WORDS: &str = "conseil municipal délibération voirie budget cantine scolaire compte rendu secrétariat";
const CAMPAIGN_WORDS: &str = "portefeuille crypto récompense validez identifiant bitcoin blocage sécurité";

fn message(from: &str, subject: &str, words: &str, n: usize) -> String {
    format!(
        "From: {from}\r\nTo: user@a.test\r\nSubject: {subject} {n}\r\nMessage-ID: <{n}.{}@example.test>\r\n\r\n\
         Bonjour,\r\n{words} dossier{n}\r\n",
        subject.len()
    )
}

/// `hameau filter ARGS --config CONFIG`: its stdout, after checking it succeeded.
fn filter(config: &Path, args: &[&str]) -> String {
    let mut full = vec!["filter"];
    full.extend_from_slice(args);
    full.extend(["--config", config.to_str().unwrap()]);
    let (status, stdout, stderr) = run(&full);
    assert!(status.success(), "{full:?}: {stderr}");
    stdout
}

/// The probability `hameau filter score` prints for `file`.
fn score(config: &Path, tenant: Option<&str>, file: &Path) -> f64 {
    let mut args = vec!["score", file.to_str().unwrap()];
    if let Some(tenant) = tenant {
        args.extend(["--tenant", tenant]);
    }
    let stdout = filter(config, &args);
    let line = stdout.lines().find(|line| line.contains("spam probability: ")).unwrap_or_else(|| panic!("{stdout}"));
    line.rsplit(": ").next().unwrap().parse().unwrap()
}

#[test]
fn moving_a_message_into_junk_with_imaplib_trains_the_tenant_classifier() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    imap_account(&config);
    admin(&config, &[&["tenant", "create", "b", "--name", "B"]]);
    // A classifier that scores after a few messages of each class (200 by default).
    set_config(&config, "bayes_min_messages = 200", "bayes_min_messages = 3");

    // Seeding: spam in an mbox file, ham as a directory of message files.
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("ham")).unwrap();
    let mut mbox = String::new();
    for n in 0..6 {
        mbox.push_str("From promo@loterie.example Mon Nov 30 10:00:00 2026\n");
        mbox.push_str(
            &message("Gagnant <promo@loterie.example>", "Vous avez gagné", SPAM_WORDS, n).replace("\r\n", "\n"),
        );
        mbox.push('\n');
        let ham = message("Secrétariat <secretariat@mairie.example>", "Conseil", HAM_WORDS, n);
        std::fs::write(corpus.join("ham").join(format!("{n}.eml")), ham).unwrap();
    }
    std::fs::write(corpus.join("spam.mbox"), mbox).unwrap();
    let spam_path = corpus.join("spam.mbox");
    let stdout = filter(&config, &["learn", "--spam", spam_path.to_str().unwrap()]);
    assert!(stdout.contains("learnt: 6 messages as spam"), "{stdout}");
    let ham_path = corpus.join("ham");
    let stdout = filter(&config, &["learn", "--ham", ham_path.to_str().unwrap()]);
    assert!(stdout.contains("learnt: 6 messages as ham") && stdout.contains("shared classifier: 6 spam, 6 ham"));
    // Learnt again: nothing changes.
    let stdout = filter(&config, &["learn", "--spam", spam_path.to_str().unwrap()]);
    assert!(stdout.contains("6 already known") && stdout.contains("6 spam, 6 ham"), "{stdout}");
    // A tenant that does not exist is refused.
    let (status, _, stderr) = run(&[
        "filter",
        "learn",
        "--ham",
        "--tenant",
        "nope",
        ham_path.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    assert!(!status.success() && stderr.contains("nope"), "{stderr}");

    // The probe: a message of the new campaign, with some of the commune's words.
    let campaign = |n| {
        let words = format!("{CAMPAIGN_WORDS} conseil municipal");
        message("Support <support@wallet.example>", "Votre portefeuille", &words, n)
    };
    let probe = corpus.join("probe.eml");
    std::fs::write(&probe, campaign(100)).unwrap();
    let before = score(&config, Some("a"), &probe);
    assert_eq!(score(&config, None, &probe), before, "no tenant has learnt yet");

    // Delivered over SMTP, moved into Junk by the agent with imaplib's MOVE.
    let _dns = quick_dns(&config);
    let mut server = start_server(&config);
    let delivered = corpus.join("delivered.eml");
    // One message of the campaign, sent to the agent with swaks.
    let send = |server: &hameau_testkit::Server, n: usize| {
        std::fs::write(&delivered, campaign(n)).unwrap();
        let output = Command::new("swaks")
            .args(["--server", "127.0.0.1", "--port", &server.smtp[0].port().to_string(), "--helo", "wallet.example"])
            .args(["--to", "user@a.test", "--from", "support@wallet.example", "--data", delivered.to_str().unwrap()])
            .output()
            .expect("swaks");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    };
    send(&server, 1);
    let script = format!(
        r#"
import imaplib, re, ssl
ctx = ssl.create_default_context(cafile={cert:?})
ctx.check_hostname = False
M = imaplib.IMAP4_SSL("127.0.0.1", {port}, ssl_context=ctx)
M.login("user@a.test", "correct horse battery staple")
typ, data = M.list()
junk = [re.search(rb'"?([^" ]*)"?$', line).group(1).decode() for line in data if b"\\Junk" in line][0]
typ, data = M.select("INBOX")
assert typ == "OK" and data == [b"1"], data
typ, data = M.uid("MOVE", "1", '"' + junk + '"')
assert typ == "OK", data
typ, data = M.select('"' + junk + '"', readonly=True)
assert data == [b"1"], data
M.logout()
"#,
        cert = server.cert.to_str().unwrap(),
        port = server.imaps[0].port()
    );
    python(&script);
    // The learning runs after the MOVE's answer, in the server's own time.
    server.log_with("classifier learnt an agent's judgement", 1, Duration::from_secs(20));
    // The MX scores with the trainer's classifier: the next message of the campaign is
    // judged with the learning at once (not with the counts it kept in memory from the
    // first message, for filter.bayes_cache_s), and put in Junk, where the first was not.
    let verdicts = |server: &hameau_testkit::Server| -> Vec<String> {
        server.log().into_iter().filter(|line| line.contains("filter verdict")).collect()
    };
    let spam = |line: &String| line.contains(r#""action":"junk""#) && line.contains("learning classifier");
    assert!(!verdicts(&server).iter().any(spam), "{:?}", verdicts(&server));
    send(&server, 2);
    // The log is read from the server's output by a thread: a moment after the reply.
    server.log_when(Duration::from_secs(5), |log| log.iter().filter(|line| line.contains("filter verdict")).any(spam));
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).is_some_and(|status| status.success()));

    // Tenant a's score of a similar message rose; the shared classifier and tenant b,
    // whose agents judged nothing, score it as before.
    let after = score(&config, Some("a"), &probe);
    assert!(after > before, "before {before}, after {after}");
    assert_eq!(score(&config, None, &probe), before);
    assert_eq!(score(&config, Some("b"), &probe), before);
    let stdout = filter(&config, &["score", "--tenant", "a", probe.to_str().unwrap()]);
    assert!(stdout.contains("a's classifier: 1 spam, 0 ham"), "{stdout}");
    eprintln!("tenant a's spam probability of the campaign: before {before:.4}, after {after:.4}");

    // The classifier follows its tenant: a's alone restored from a backup (made on the
    // stopped server) scores as a did; the shared classifier comes along (the
    // installation's), b's learning would not.
    let set = dir.path().join("set");
    let (status, _, stderr) = run(&["backup", "--to", set.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let restored = dir.path().join("restored");
    let (status, _, stderr) =
        run(&["restore", "--from", set.to_str().unwrap(), "--data-dir", restored.to_str().unwrap(), "--tenant", "a"]);
    assert!(status.success(), "{stderr}");
    std::fs::copy(&config, restored.join("hameau.toml")).unwrap();
    let restored_config = restored.join("hameau.toml");
    assert_eq!(score(&restored_config, Some("a"), &probe), after);
    assert_eq!(score(&restored_config, None, &probe), before);

    // A Maildir seeds a tenant's classifier too.
    let maildir = corpus.join("maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let ham = message("Secrétariat <secretariat@mairie.example>", "Conseil", HAM_WORDS, 50);
    std::fs::write(maildir.join("cur/1764500000.1.host:2,S"), ham).unwrap();
    let stdout = filter(&config, &["learn", "--ham", "--tenant", "b", maildir.to_str().unwrap()]);
    assert!(stdout.contains("learnt: 1 messages as ham") && stdout.contains("b's classifier: 0 spam, 1 ham"));
}

/// `hameau filter seed`: a corpus of two spam campaigns and the commune's ham learnt the
/// way agents teach (only what the classifier gets wrong), a second seeding that learns
/// nothing, the MX's bound on little training said, and a corpus past `--held-mib-max`
/// refused before anything is learnt.
#[test]
fn seeding_learns_only_what_the_classifier_gets_wrong() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("ham")).unwrap();
    let mut mbox = String::new();
    for n in 0..50 {
        let (from, subject, words) = if n % 2 == 0 {
            ("Gagnant <promo@loterie.example>", "Vous avez gagné", SPAM_WORDS)
        } else {
            ("Support <support@wallet.example>", "Votre portefeuille", CAMPAIGN_WORDS)
        };
        mbox.push_str("From promo@loterie.example Mon Nov 30 10:00:00 2026\n");
        mbox.push_str(&message(from, subject, words, n).replace("\r\n", "\n"));
        mbox.push('\n');
    }
    for n in 0..70 {
        let ham = message("Secrétariat <secretariat@mairie.example>", "Conseil", HAM_WORDS, n);
        std::fs::write(corpus.join("ham").join(format!("{n}.eml")), ham).unwrap();
    }
    let spam_path = corpus.join("spam.mbox");
    std::fs::write(&spam_path, mbox).unwrap();
    let ham_path = corpus.join("ham");
    let seed = ["seed", "--spam", spam_path.to_str().unwrap(), "--ham", ham_path.to_str().unwrap()];

    // Past its bound in memory: refused, nothing learnt. 400 messages of 3,000 words of
    // their own are 9.6 MB of tokens.
    let big = corpus.join("big");
    std::fs::create_dir_all(&big).unwrap();
    for n in 0..400 {
        let words: Vec<String> = (0..3000).map(|word| format!("m{n}w{word}")).collect();
        std::fs::write(big.join(format!("{n}.eml")), message("x@y.example", "big", &words.join(" "), n)).unwrap();
    }
    let mut args = vec!["filter", "seed", "--spam", big.to_str().unwrap(), "--ham", ham_path.to_str().unwrap()];
    args.extend(["--held-mib-max", "8", "-c", config.to_str().unwrap()]);
    let (status, _, stderr) = run(&args);
    assert!(
        !status.success() && stderr.contains("over 8 MiB once read (--held-mib-max): nothing is learnt"),
        "{stderr}"
    );
    let probe = corpus.join("probe.eml");
    std::fs::write(&probe, message("Gagnant <promo@loterie.example>", "Vous avez gagné", SPAM_WORDS, 100)).unwrap();
    let stdout = filter(&config, &["score", probe.to_str().unwrap()]);
    assert!(stdout.contains("shared classifier: 0 spam, 0 ham"), "{stdout}");

    let stdout = filter(&config, &seed);
    let learnt = |stdout: &str| -> (u64, u64) {
        let tail = stdout.split("learnt: ").nth(1).unwrap_or_else(|| panic!("{stdout}"));
        let number = |after: &str| tail.split(after).nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        (number("messages ("), number("spam, "))
    };
    let (spam, ham) = learnt(&stdout);
    // The first 20 of each class whatever is said of them, then only the unsure.
    assert!((20..50).contains(&spam) && (20..70).contains(&ham), "{stdout}");
    assert!(stdout.contains(&format!("of 120 messages ({spam} spam, {ham} ham)")), "{stdout}");
    assert!(stdout.contains(&format!("shared classifier: {spam} spam, {ham} ham")), "{stdout}");
    assert!(stdout.contains("the MX scores only from 200 messages learnt of each class"), "{stdout}");

    // Again: the classifier judges the corpus right, nothing changes.
    let stdout = filter(&config, &seed);
    assert!(stdout.contains("learnt: 0 of 120 messages (0 spam, 0 ham)"), "{stdout}");
    assert!(stdout.contains(&format!("shared classifier: {spam} spam, {ham} ham")), "{stdout}");

    // With the MX's bound met, it tells a new message of each kind.
    set_config(&config, "bayes_min_messages = 200", "bayes_min_messages = 20");
    assert!(score(&config, None, &probe) > 0.99);
    let ham_probe = corpus.join("ham-probe.eml");
    std::fs::write(&ham_probe, message("Secrétariat <secretariat@mairie.example>", "Conseil", HAM_WORDS, 100)).unwrap();
    assert!(score(&config, None, &ham_probe) < 0.01);
}

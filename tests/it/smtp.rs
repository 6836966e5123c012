//! The MX against the real binary with a real client (swaks): deliveries land in the
//! mailbox store with their headers; relaying, unknown users and bad input are refused.

use std::process::Command;
use std::time::Duration;

use crate::support::{config_path, init_with_token, run, start_server};

pub(crate) fn swaks(port: u16, args: &[&str]) -> (bool, String) {
    let output = Command::new("swaks")
        .args(["--server", "127.0.0.1", "--port", &port.to_string(), "--helo", "sender.test", "--timeout", "20"])
        .args(args)
        .output()
        .expect("swaks is needed (Debian package swaks; scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// Tenant `a` with domain a.test and the account user@a.test, on the local data directory.
fn mx_domain(config: &std::path::Path) {
    crate::support::admin(
        config,
        &[
            &["tenant", "create", "a", "--name", "A"],
            &["domain", "create", "a.test", "--tenant", "a"],
            &["account", "create", "user@a.test"],
        ],
    );
}

/// The raw messages in `address`'s INBOX, read from the store of a stopped server.
fn inbox(config: &std::path::Path, address: &str) -> Vec<String> {
    mailbox(config, address, hameau_mailbox::Role::Inbox)
}

/// The raw messages of `address`'s mailbox of `role`, read from the store of a stopped
/// server.
pub(crate) fn mailbox(config: &std::path::Path, address: &str, role: hameau_mailbox::Role) -> Vec<String> {
    let (status, stdout, stderr) = run(&["account", "show", address, "--config", config.to_str().unwrap()]);
    assert!(status.success(), "{stderr}");
    let account = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["id"].as_u64().unwrap();
    let options = crate::support::store_options(config);
    crate::support::block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
        let mail = hameau_mailbox::Mail::new(store.clone());
        let mut messages = Vec::new();
        if let Some(found) = mail.mailbox_by_role(account, role).await.unwrap() {
            for entry in mail.uids(account, found.id).await.unwrap() {
                messages.push(String::from_utf8_lossy(&mail.raw(account, entry.email).await.unwrap()).into_owned());
            }
        }
        store.close().await.unwrap();
        messages
    })
}

#[test]
fn swaks_delivers_and_relaying_is_refused() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    crate::support::admin(
        &config,
        &[
            &["account", "create", "other@a.test"],
            &["alias", "create", "mairie@a.test", "--target", "user@a.test", "--target", "other@a.test"],
        ],
    );
    let mut server = start_server(&config);
    let port = server.smtp[0].port();

    // Plain, then STARTTLS with pipelining, an attachment and several recipients.
    let (ok, text) = swaks(
        port,
        &["--to", "user@a.test", "--from", "jean@sender.test", "--header", "Subject: plain", "--body", "Bonjour"],
    );
    assert!(ok, "{text}");
    assert!(text.contains("<-  250 2.0.0 Ok: queued"), "{text}");
    let attachment = dir.path().join("compte-rendu.txt");
    std::fs::write(&attachment, "Compte rendu du conseil municipal\n").unwrap();
    let (ok, text) = swaks(
        port,
        &[
            "--tls",
            "--pipeline",
            "--to",
            "mairie@a.test,user@a.test",
            "--from",
            "jean@sender.test",
            "--header",
            "Subject: tls",
            "--attach",
            attachment.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("STARTTLS"), "{text}");

    // Refusals: a foreign recipient (never a relay), an unknown user, source routes and
    // percent hacks.
    for (to, expect) in [
        ("someone@elsewhere.test", "554 5.7.1"),
        ("nobody@a.test", "550 5.1.1"),
        ("user%elsewhere.test@a.test", "550 5.1.1"),
        ("@a.test:someone@elsewhere.test", "554 5.7.1"),
    ] {
        let (ok, text) = swaks(port, &["--to", to, "--from", "jean@sender.test"]);
        assert!(!ok, "{to} accepted: {text}");
        assert!(text.contains(expect), "{to}: {text}");
    }
    assert!(!server.log().join("\n").contains("panicked"));
    let metric = |series: &str| crate::support::metric(&server, &config, series);
    assert_eq!(metric("hameau_messages_total{protocol=\"smtp\",result=\"accepted\"}"), 2);
    assert_eq!(metric("hameau_recipients_refused_total{protocol=\"smtp\"}"), 4);

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).expect("stops").success());
    let user = inbox(&config, "user@a.test");
    assert_eq!(user.len(), 2, "plain, then tls (once, though addressed twice)");
    assert!(user[0].starts_with("Authentication-Results: localhost;"), "{}", user[0]);
    assert!(
        user[0].contains("\r\nReceived: from sender.test ([127.0.0.1])\r\n\tby localhost (Hameau) with ESMTP id "),
        "{}",
        user[0]
    );
    assert!(user[0].contains("Subject: plain\r\n"), "{}", user[0]);
    assert!(user[1].contains("with ESMTPS id "), "{}", user[1]);
    assert!(user[0].contains("\r\n\tfor <user@a.test>;\r\n"), "one recipient is named: {}", user[0]);
    assert!(!user[1].contains("\tfor <"), "several recipients are not: {}", user[1]);
    assert!(
        user[1].contains("Compte rendu du conseil municipal") || user[1].contains("Q29tcHRlIHJlbmR1"),
        "{}",
        user[1]
    );
    let other = inbox(&config, "other@a.test");
    assert_eq!(other.len(), 1);
    assert!(other[0].contains("Subject: tls\r\n"));
}

/// A minimal SMTP client: one message per connection; true if the server said 250 to the
/// end of data.
fn send_one(addr: std::net::SocketAddr, to: &str, subject: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(stream) = std::net::TcpStream::connect(addr) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut reply = || -> Option<String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.as_bytes().get(3) == Some(&b' ') {
                return Some(line);
            }
        }
    };
    let mut step = |command: &str, expect: &str| -> Option<()> {
        if !command.is_empty() {
            writer.write_all(command.as_bytes()).ok()?;
        }
        reply()?.starts_with(expect).then_some(())
    };
    let body = format!(
        "From: load@sender.test\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n\r\nx\r\n.\r\n"
    );
    let sent = (|| {
        step("", "220")?;
        step("EHLO sender.test\r\n", "250")?;
        step("MAIL FROM:<load@sender.test>\r\n", "250")?;
        step(&format!("RCPT TO:<{to}>\r\n"), "250")?;
        step("DATA\r\n", "354")?;
        step(&body, "250")
    })();
    let _ = writer.write_all(b"QUIT\r\n");
    sent.is_some()
}

/// SIGKILL under load, 20 times: every message that got a 250 is in the mailbox
/// afterwards, exactly once, and nothing is there twice.
#[test]
fn sigkill_under_load_loses_no_acknowledged_message() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    // A real DNS server that knows the sender's (empty) zone: authentication checks answer
    // at once instead of timing out.
    let knot_dir = tempfile::tempdir().unwrap();
    let knot = crate::support::start_knot(knot_dir.path(), &[("sender.test", String::new())]);
    crate::support::set_config(
        &config,
        "resolvers = [\"127.0.0.1:9\"]",
        &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port),
    );
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..20 {
        let server = start_server(&config);
        let addr = server.smtp[0];
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..4)
            .map(|thread| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut ok = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let subject = format!("r{round}-t{thread}-m{i}");
                        if send_one(addr, "user@a.test", &subject) {
                            ok.push(subject);
                        }
                        i += 1;
                    }
                    ok
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + rand_ms()));
        let mut server = server;
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for sender in senders {
            acknowledged.extend(sender.join().unwrap());
        }
    }
    let messages = inbox(&config, "user@a.test");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for message in &messages {
        let subject =
            message.split("\r\nSubject: ").nth(1).and_then(|rest| rest.split("\r\n").next()).unwrap_or("").to_string();
        *counts.entry(subject).or_default() += 1;
    }
    assert!(acknowledged.len() >= 20, "too little load to test anything: {}", acknowledged.len());
    eprintln!("{} messages acknowledged over 20 kills, {} stored", acknowledged.len(), messages.len());
    for subject in &acknowledged {
        assert_eq!(counts.get(subject), Some(&1), "{subject} acknowledged but stored {:?} times", counts.get(subject));
    }
    assert!(counts.values().all(|n| *n == 1), "a message is stored twice");
    drop(knot);
}

fn rand_ms() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.finish() % 500
}

/// An RSA key made by openssl, and its DKIM record's value as DNS strings for a zone file.
pub fn rsa_key(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, String) {
    let key = dir.join(format!("{name}.pem"));
    let status = Command::new("openssl").args(["genrsa", "-out", key.to_str().unwrap(), "2048"]).output().unwrap();
    assert!(status.status.success());
    let public = Command::new("sh")
        .args(["-c", &format!("openssl rsa -in {} -pubout -outform der 2>/dev/null | base64 -w0", key.display())])
        .output()
        .unwrap();
    let record = format!("v=DKIM1; k=rsa; p={}", String::from_utf8(public.stdout).unwrap());
    let strings = record.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c)));
    (key, strings.collect::<Vec<_>>().join(" "))
}

/// Runs a Python script of the test venv (dkimpy) with `input` on its stdin.
pub fn python(script: &str, input: &[u8]) -> Vec<u8> {
    let python = std::env::var("HOME").map(|home| format!("{home}/.cache/hameau-venv/bin/python")).unwrap();
    let mut child = Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("dkimpy is needed (pip install dkimpy; scripts/test.sh installs it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "python failed");
    output.stdout
}

/// Signs `message` with dkimpy (PyPI), as a real sender would.
fn dkimpy_sign(message: &[u8], selector: &str, domain: &str, key: &std::path::Path) -> Vec<u8> {
    let script = format!(
        "import sys, dkim\nmessage = sys.stdin.buffer.read()\nkey = open({key:?}, 'rb').read()\n\
         sig = dkim.sign(message, b'{selector}', b'{domain}', key, include_headers=[b'from', b'to', b'subject'])\n\
         sys.stdout.buffer.write(sig + message)\n",
        key = key.to_str().unwrap()
    );
    python(&script, message)
}

/// What a mailing list does (with dkimpy): records its own authentication results, then
/// seals the message it changed with an ARC set (RFC 8617) as `domain`.
fn dkimpy_arc_seal(message: &[u8], results: &str, selector: &str, domain: &str, key: &std::path::Path) -> Vec<u8> {
    let script = format!(
        "import sys, dkim\nmessage = b'Authentication-Results: {domain}; {results}\\r\\n' + sys.stdin.buffer.read()\n\
         key = open({key:?}, 'rb').read()\n\
         seal = dkim.arc_sign(message, b'{selector}', b'{domain}', key, b'{domain}')\n\
         sys.stdout.buffer.write(b''.join(seal) + message)\n",
        key = key.to_str().unwrap()
    );
    python(&script, message)
}

/// A message from a `p=reject` domain, forwarded by a mailing list that changed it (DKIM
/// and SPF alignment broken) and sealed it with ARC: delivered when the list is a trusted
/// sealer, refused when the sealer is not trusted or the chain is broken. The exact
/// `Authentication-Results` is checked.
#[test]
fn arc_sealed_forwarded_mail() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    let (sender_key, sender_txt) = rsa_key(dir.path(), "sender");
    let (list_key, list_txt) = rsa_key(dir.path(), "list");
    let (rogue_key, rogue_txt) = rsa_key(dir.path(), "rogue");
    let zones = [
        (
            "sender.test",
            format!(
                "sender.test. 300 IN TXT \"v=spf1 ip4:192.0.2.1 -all\"\n\
                 sel._domainkey.sender.test. 300 IN TXT {sender_txt}\n\
                 _dmarc.sender.test. 300 IN TXT \"v=DMARC1; p=reject\"\n"
            ),
        ),
        (
            "lists.test",
            format!(
                "lists.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\narc._domainkey.lists.test. 300 IN TXT {list_txt}\n"
            ),
        ),
        (
            "rogue.test",
            format!(
                "rogue.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\narc._domainkey.rogue.test. 300 IN TXT {rogue_txt}\n"
            ),
        ),
        ("test", String::new()),
    ];
    let knot_dir = tempfile::tempdir().unwrap();
    let knot = crate::support::start_knot(knot_dir.path(), &zones);
    crate::support::set_config(
        &config,
        "resolvers = [\"127.0.0.1:9\"]",
        &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port),
    );
    crate::support::set_config(&config, "arc_trusted_sealers = []", "arc_trusted_sealers = [\"lists.test\"]");
    let mut server = start_server(&config);
    let port = server.smtp[0].port();
    let forward = |list: &str, data: &[u8]| {
        let file = dir.path().join("forwarded.eml");
        std::fs::write(&file, data).unwrap();
        let from = format!("conseil-bounces@{list}");
        swaks(port, &["--helo", list, "--to", "user@a.test", "--from", &from, "--data", file.to_str().unwrap()])
    };

    let original = b"From: jean@sender.test\r\nTo: conseil@lists.test\r\nSubject: ordre du jour\r\n\r\nBonjour\r\n";
    let signed = String::from_utf8(dkimpy_sign(original, "sel", "sender.test", &sender_key)).unwrap();
    // The list adds its footer: the author's DKIM signature breaks.
    let listed = format!("{signed}--\r\nListe conseil@lists.test\r\n");
    let upstream =
        "dkim=pass header.d=sender.test; spf=pass smtp.mailfrom=sender.test; dmarc=pass header.from=sender.test";
    let by_list = dkimpy_arc_seal(listed.as_bytes(), upstream, "arc", "lists.test", &list_key);
    let by_rogue = dkimpy_arc_seal(listed.as_bytes(), upstream, "arc", "rogue.test", &rogue_key);
    let broken = String::from_utf8(by_list.clone()).unwrap().replace("Bonjour", "Bonsoir");

    let (ok, text) = forward("lists.test", &by_list);
    assert!(ok, "a trusted sealer's valid chain overrides the DMARC failure: {text}");
    let (ok, text) = forward("rogue.test", &by_rogue);
    assert!(!ok && text.contains("550 5.7.1"), "an untrusted sealer overrides nothing: {text}");
    let (ok, text) = forward("lists.test", broken.as_bytes());
    assert!(!ok && text.contains("550 5.7.1"), "a broken chain overrides nothing: {text}");

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).unwrap().success());
    let messages = inbox(&config, "user@a.test");
    assert_eq!(messages.len(), 1);
    let head = messages[0].split("\r\nReceived:").next().unwrap();
    let (before, after) = head.split_once("header.b=").unwrap();
    assert_eq!(
        format!("{before}header.b=…{}", &after[after.find(';').unwrap()..]),
        "Authentication-Results: localhost;\r\n\
         \tdkim=fail (body hash did not verify) header.i=@sender.test header.s=sel header.b=…;\r\n\
         \tspf=pass (localhost: domain of postmaster@lists.test designates 127.0.0.1 as permitted sender) smtp.helo=lists.test;\r\n\
         \tspf=pass (localhost: domain of conseil-bounces@lists.test designates 127.0.0.1 as permitted sender) smtp.mailfrom=conseil-bounces@lists.test;\r\n\
         \tarc=pass smtp.remote-ip=127.0.0.1;\r\n\
         \tdmarc=fail (policy not aligned) header.from=sender.test policy.dmarc=reject \
         (overridden: ARC chain sealed by trusted forwarder lists.test)"
    );
    assert!(messages[0].contains("\r\nARC-Seal: i=1; "), "the forwarder's seal is kept");
    drop(knot);
}

/// SPF, DKIM (signed by dkimpy) and DMARC against a real DNS server (knotd): pass, a
/// tampered body, a forged `From:` of a `p=reject` domain, a `p=quarantine` failure.
#[test]
fn authentication_against_a_real_dns() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    let c = config.to_str().unwrap();
    mx_domain(&config);
    let (key, key_txt) = rsa_key(dir.path(), "dkim");
    let zones = [
        (
            "sender.test",
            format!(
                "sender.test. 300 IN TXT \"v=spf1 ip4:127.0.0.1 -all\"\n\
                 sel._domainkey.sender.test. 300 IN TXT {}\n\
                 _dmarc.sender.test. 300 IN TXT \"v=DMARC1; p=reject\"\n",
                key_txt
            ),
        ),
        (
            "bank.test",
            "bank.test. 300 IN TXT \"v=spf1 -all\"\n_dmarc.bank.test. 300 IN TXT \"v=DMARC1; p=reject\"\n".to_string(),
        ),
        (
            "shop.test",
            "shop.test. 300 IN TXT \"v=spf1 -all\"\n_dmarc.shop.test. 300 IN TXT \"v=DMARC1; p=quarantine\"\n"
                .to_string(),
        ),
        // The parent zone, so that names above the senders' (mail-auth also asks for
        // `_dmarc.test`) get an authoritative "no such name" rather than a refusal.
        ("test", String::new()),
    ];
    let knot_dir = tempfile::tempdir().unwrap();
    let zone_refs: Vec<(&str, String)> = zones.iter().map(|(name, records)| (*name, records.clone())).collect();
    let knot = crate::support::start_knot(knot_dir.path(), &zone_refs);
    crate::support::set_config(
        &config,
        "resolvers = [\"127.0.0.1:9\"]",
        &format!("resolvers = [\"127.0.0.1:{}\"]", knot.port),
    );
    let mut server = start_server(&config);
    let port = server.smtp[0].port();
    let send = |from: &str, data: &[u8]| {
        let file = dir.path().join("message.eml");
        std::fs::write(&file, data).unwrap();
        swaks(port, &["--to", "user@a.test", "--from", from, "--data", file.to_str().unwrap()])
    };

    let message = b"From: jean@sender.test\r\nTo: user@a.test\r\nSubject: signed\r\n\r\nBonjour de sender.test\r\n";
    let signed = dkimpy_sign(message, "sel", "sender.test", &key);
    let (ok, text) = send("jean@sender.test", &signed);
    assert!(ok, "{text}");
    // Tampered after signing: DKIM fails, SPF still passes aligned, so DMARC passes.
    let tampered =
        String::from_utf8(signed.clone()).unwrap().replace("Bonjour de sender.test", "Bonjour de sender.test, modifié");
    let (ok, text) = send("jean@sender.test", tampered.as_bytes());
    assert!(ok, "{text}");
    // A forged From: of a p=reject domain, SPF failing: refused.
    let forged = b"From: direction@bank.test\r\nTo: user@a.test\r\nSubject: forged\r\n\r\nVirement urgent\r\n";
    let (ok, text) = send("direction@bank.test", forged);
    assert!(!ok, "{text}");
    assert!(text.contains("550 5.7.1"), "{text}");
    // A p=quarantine failure: delivered to Junk.
    let quarantined = b"From: promo@shop.test\r\nTo: user@a.test\r\nSubject: quarantined\r\n\r\nPromo\r\n";
    let (ok, text) = send("promo@shop.test", quarantined);
    assert!(ok, "{text}");

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).unwrap().success());
    let messages = inbox(&config, "user@a.test");
    assert_eq!(messages.len(), 2, "signed and tampered in the inbox; forged refused; quarantined in Junk");
    // The exact Authentication-Results, but for the signature's own bytes (header.b).
    let results = |message: &str| {
        let head = message.split("\r\nReceived:").next().unwrap().to_string();
        match head.split_once("header.b=") {
            Some((before, after)) => format!("{before}header.b=…{}", &after[after.find(';').unwrap()..]),
            None => head,
        }
    };
    let spf = "\tspf=pass (localhost: domain of postmaster@sender.test designates 127.0.0.1 as permitted sender) smtp.helo=sender.test;\r\n\
               \tspf=pass (localhost: domain of jean@sender.test designates 127.0.0.1 as permitted sender) smtp.mailfrom=jean@sender.test;\r\n\
               \tarc=none smtp.remote-ip=127.0.0.1;\r\n";
    assert_eq!(
        results(&messages[0]),
        format!(
            "Authentication-Results: localhost;\r\n\tdkim=pass header.i=@sender.test header.s=sel header.b=…;\r\n{spf}\
             \tdmarc=pass header.from=sender.test policy.dmarc=reject"
        )
    );
    assert_eq!(
        results(&messages[1]),
        format!(
            "Authentication-Results: localhost;\r\n\tdkim=fail (body hash did not verify) header.i=@sender.test header.s=sel header.b=…;\r\n{spf}\
             \tdmarc=pass header.from=sender.test policy.dmarc=reject"
        )
    );
    // The quarantined message is in Junk, with the DMARC failure recorded.
    let (status, stdout, _) = run(&["account", "show", "user@a.test", "--config", c]);
    assert!(status.success());
    let account = serde_json::from_str::<serde_json::Value>(&stdout).unwrap()["id"].as_u64().unwrap();
    let options = crate::support::store_options(&config);
    let junk = crate::support::block_on(async move {
        let store = hameau_store::Store::open(&options).await.unwrap();
        let mail = hameau_mailbox::Mail::new(store.clone());
        let junk = mail.mailbox_by_role(account, hameau_mailbox::Role::Junk).await.unwrap().unwrap();
        let entries = mail.uids(account, junk.id).await.unwrap();
        let raw = mail.raw(account, entries[0].email).await.unwrap();
        store.close().await.unwrap();
        let keywords: Vec<String> = entries[0].keywords.iter().map(|keyword| keyword.imap().to_string()).collect();
        (entries.len(), keywords, String::from_utf8(raw).unwrap())
    });
    assert_eq!((junk.0, junk.1), (1, vec!["$Junk".to_string()]));
    assert!(
        junk.2.contains("\tdmarc=fail (policy not aligned) header.from=shop.test policy.dmarc=quarantine\r\n"),
        "{}",
        junk.2
    );
    drop(knot);
}

/// Sends `script` in one write after EHLO and returns everything the server answered
/// until it closes or goes quiet.
fn raw_session(addr: std::net::SocketAddr, script: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    stream.write_all(script).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// SMTP smuggling (2023) over a real socket: whatever follows a bare-LF or bare-CR "end of
/// data" stays inside the one message, which is refused; no second message appears. A
/// thousand connections from one address meet the per-address limit, and the server
/// goes on serving.
#[test]
fn smuggling_and_connection_floods_are_refused() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    let mut server = start_server(&config);
    let addr = server.smtp[0];
    let smuggled = "MAIL FROM:<ceo@a.test>\r\nRCPT TO:<user@a.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n";
    for end in ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\r"] {
        let script = format!(
            "EHLO sender.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<user@a.test>\r\nDATA\r\n\
             Subject: carrier\r\n\r\nhello{end}{smuggled}.\r\nQUIT\r\n"
        );
        let answer = raw_session(addr, script.as_bytes());
        // One reply to the one message (refused: bare CR/LF), then QUIT's.
        assert_eq!(answer.matches("\r\n250 2.0.0").count(), 0, "{end:?}: {answer}");
        assert_eq!(answer.matches("550 5.6.0").count(), 1, "{end:?}: {answer}");
        assert!(answer.ends_with("221 2.0.0 Bye\r\n"), "{end:?}: {answer}");
    }
    // STARTTLS with a command behind it in the same packet, without a TLS client: the
    // injected command is not run (its reply never comes).
    let answer = raw_session(addr, b"EHLO sender.test\r\nSTARTTLS\r\nMAIL FROM:<injected@sender.test>\r\n");
    assert!(answer.contains("220 2.0.0"), "{answer}");
    assert!(!answer.contains("2.1.0"), "{answer}");

    // A flood from one address: past smtp.connections_per_ip_max (20), 421.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        use std::io::Read;
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else { continue };
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut greeting = [0u8; 64];
        let n = stream.read(&mut greeting).unwrap_or(0);
        if greeting[..n].starts_with(b"421 4.7.0") {
            refused += 1;
        } else {
            held.push(stream);
        }
    }
    assert_eq!(held.len(), 20, "the per-address limit holds");
    assert_eq!(refused, 980);
    drop(held);
    // The server still serves.
    std::thread::sleep(Duration::from_millis(300));
    let (ok, text) = swaks(addr.port(), &["--to", "user@a.test", "--from", "jean@sender.test"]);
    assert!(ok, "{text}");
    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).unwrap().success());
    let messages = inbox(&config, "user@a.test");
    assert_eq!(messages.len(), 1, "only the last, honest message");
    assert!(!messages[0].contains("smuggled"));
}

/// Bad input over a real socket: binary garbage, an over-long line, a message over the
/// size limit, a client that stalls mid-DATA. Each gets its reply; others are served
/// meanwhile; nothing is stored.
#[test]
fn bad_input_gets_replies_and_the_server_goes_on() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    crate::support::set_config(&config, "message_bytes_max = 41943040", "message_bytes_max = 65536");
    crate::support::set_config(&config, "bdat_chunk_bytes_max = 41943040", "bdat_chunk_bytes_max = 65536");
    crate::support::set_config(&config, "data_timeout_s = 180", "data_timeout_s = 2");
    let mut server = start_server(&config);
    let addr = server.smtp[0];

    let answer = raw_session(addr, b"\x00\xff\xfe garbage \x01\x02\r\nQUIT\r\n");
    assert!(answer.contains("500 5.5.2"), "{answer}");
    assert!(answer.ends_with("221 2.0.0 Bye\r\n"), "{answer}");
    let long = format!("EHLO {}\r\nQUIT\r\n", "a".repeat(10_000));
    let answer = raw_session(addr, long.as_bytes());
    assert!(answer.contains("500 5.5.6"), "{answer}");
    assert!(answer.ends_with("221 2.0.0 Bye\r\n"), "{answer}");
    let big = format!(
        "EHLO sender.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<user@a.test>\r\nDATA\r\nSubject: big\r\n\r\n{}\r\n.\r\nQUIT\r\n",
        "0123456789abcdef\r\n".repeat(5000)
    );
    let answer = raw_session(addr, big.as_bytes());
    assert!(answer.contains("552 5.3.4"), "{answer}");
    assert!(answer.ends_with("221 2.0.0 Bye\r\n"), "{answer}");

    // A client stalls in the middle of DATA; another is served meanwhile; the staller is
    // told 421 when data_timeout_s runs out.
    use std::io::{Read, Write};
    let mut staller = std::net::TcpStream::connect(addr).unwrap();
    staller
        .write_all(b"EHLO sender.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<user@a.test>\r\nDATA\r\nSubject: half")
        .unwrap();
    let (ok, text) = swaks(addr.port(), &["--to", "user@a.test", "--from", "jean@sender.test"]);
    assert!(ok, "{text}");
    staller.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = Vec::new();
    let _ = staller.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("421 4.4.2"), "{answer}");

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).unwrap().success());
    assert!(!server.log().join("\n").contains("panicked"));
    let messages = inbox(&config, "user@a.test");
    assert_eq!(messages.len(), 1, "only the honest message is stored");
}

/// 8-bit mail and internationalised addresses (RFC 6152, RFC 6531). swaks (Debian's
/// 20201014) sends 8-bit data but has no way to ask for `SMTPUTF8`: it is used for the 8-bit
/// body and for the refusal of a UTF-8 address without `SMTPUTF8`; Python's `smtplib` (a
/// real SMTPUTF8 client) delivers to and from UTF-8 addresses.
#[test]
fn eight_bit_and_smtputf8() {
    let (dir, _) = init_with_token();
    let config = config_path(dir.path());
    mx_domain(&config);
    crate::support::admin(&config, &[&["account", "create", "élodie@a.test"]]);
    let mut server = start_server(&config);
    let port = server.smtp[0].port();

    let body = "Délibération n° 12 : l'été, la fête du village — 8 € la crêpe.";
    let eight_bit = format!(
        "From: jean@sender.test\r\nTo: user@a.test\r\nSubject: 8bit\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n"
    );
    let file = dir.path().join("8bit.eml");
    std::fs::write(&file, &eight_bit).unwrap();
    let (ok, text) =
        swaks(port, &["--to", "user@a.test", "--from", "jean@sender.test", "--data", file.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (ok, text) = swaks(port, &["--to", "élodie@a.test", "--from", "jean@sender.test"]);
    assert!(!ok && text.contains("553 5.6.7"), "a UTF-8 address needs SMTPUTF8: {text}");

    let script = format!(
        "import smtplib\n\
         message = 'From: Jérôme <jérôme@expéditeur.test>\\r\\nTo: élodie@a.test\\r\\nSubject: Réunion à la mairie\\r\\n\\
         MIME-Version: 1.0\\r\\nContent-Type: text/plain; charset=utf-8\\r\\nContent-Transfer-Encoding: 8bit\\r\\n\\r\\n' + {body:?} + '\\r\\n'\n\
         with smtplib.SMTP('127.0.0.1', {port}, local_hostname='sender.test') as client:\n\
         \x20   client.ehlo()\n\
         \x20   assert client.has_extn('smtputf8') and client.has_extn('8bitmime')\n\
         \x20   refused = client.sendmail('jérôme@expéditeur.test', ['élodie@a.test'], message.encode(), \
         mail_options=['SMTPUTF8', 'BODY=8BITMIME'])\n\
         \x20   assert refused == {{}}, refused\n"
    );
    let output = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    server.signal(libc::SIGTERM);
    assert!(server.wait(Duration::from_secs(30)).unwrap().success());
    let user = inbox(&config, "user@a.test");
    assert_eq!(user.len(), 1);
    assert!(user[0].contains(&eight_bit), "stored byte for byte: {}", user[0]);
    let elodie = inbox(&config, "élodie@a.test");
    assert_eq!(elodie.len(), 1);
    assert!(elodie[0].contains("\r\nFrom: Jérôme <jérôme@expéditeur.test>\r\nTo: élodie@a.test\r\n"), "{}", elodie[0]);
    assert!(elodie[0].contains("\tfor <élodie@a.test>;\r\n"), "{}", elodie[0]);
    assert!(elodie[0].contains(&format!("\r\n\r\n{body}\r\n")), "{}", elodie[0]);
}

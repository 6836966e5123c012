//! `hameau setup` end to end. Each run happens in a network and mount namespace of its own
//! (`unshare`, as root), where the test host name resolves (through a bind-mounted
//! /etc/hosts) to 192.0.2.10, an address of the namespace's own interface: the host-name
//! and port checks then look at that namespace, never at the machine's real ports or
//! names, and the standard ports (25, 443, 587, 993…) are free to bind there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::run;

const HOST: &str = "mail.mairie-test.fr";
const ADDRESS: &str = "192.0.2.10";
const PASSWORD: &str = "un mot de passe solide";

/// A temporary directory with a hosts file, a password file, and the places setup writes.
struct Place {
    dir: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        let place = Place { dir: tempfile::tempdir().unwrap() };
        place.hosts(&format!("{ADDRESS} {HOST}\n"));
        std::fs::write(place.path("password"), format!("{PASSWORD}\n")).unwrap();
        place
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn hosts(&self, text: &str) {
        std::fs::write(self.path("hosts"), format!("127.0.0.1 localhost\n{text}")).unwrap();
    }

    fn config(&self) -> PathBuf {
        self.path("etc/hameau/hameau.toml")
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// `hameau setup --non-interactive` with the standard answers, each replaced by its
    /// value in `answers` (removed if empty), then `extra`.
    fn setup_command(&self, answers: &[(&str, &str)], extra: &str) -> String {
        let mut command = format!(
            "\"$HAMEAU\" setup --non-interactive --config {} --data-dir {}",
            self.config().display(),
            self.data().display()
        );
        let standard = [
            ("--hostname", HOST),
            ("--commune-name", "\"Saint-Martin-d'Hères\""),
            ("--insee", "38421"),
            ("--domain", "mairie-test.fr"),
            ("--admin", "admin@mairie-test.fr"),
        ];
        for (flag, value) in standard {
            let value = answers.iter().find(|(name, _)| *name == flag).map_or(value, |(_, value)| *value);
            if !value.is_empty() {
                command.push_str(&format!(" {flag} {value}"));
            }
        }
        for (flag, value) in answers {
            if !standard.iter().any(|(name, _)| name == flag) {
                command.push_str(&format!(" {flag} {value}"));
            }
        }
        format!("{command} {extra}")
    }

    /// Runs `script` (sh) in a fresh namespace under locale `lang`, after `before` (sh run
    /// first, e.g. to take a port).
    fn run(&self, lang: &str, before: &str, script: &str) -> Output {
        let namespace = format!(
            "set -e; ip link set lo up; \
             ip link add d0 type dummy 2>/dev/null || ip link add d0 type veth peer name d1; \
             ip addr add {ADDRESS}/24 dev d0; ip link set d0 up; ip link set d1 up 2>/dev/null || true; \
             mount --bind {} /etc/hosts; {before}\nset +e; {script}",
            self.path("hosts").display()
        );
        // Never wait forever for a server the script failed to stop.
        Command::new("timeout")
            .args(["-k", "5", "120", "unshare", "--net", "--mount", "sh", "-c", &namespace])
            .env("HAMEAU", env!("CARGO_BIN_EXE_hameau"))
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .env_remove("HAMEAU_LOG")
            .env("LANG", lang)
            .output()
            .expect("timeout and unshare run (coreutils, util-linux); the tests run as root")
    }

    /// Setup that must succeed; its output.
    fn setup_ok(&self, lang: &str, answers: &[(&str, &str)], extra: &str) -> String {
        let output = self.run(lang, "", &self.setup_command(answers, extra));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(output.status.success(), "setup failed: {stderr}\n{stdout}");
        stdout
    }

    fn setup_json(&self) -> Value {
        let stdout = self.setup_ok("C", &[], "--json");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// Setup that must fail with exit status 1 and one line on stderr, having written
    /// nothing; returns that line.
    fn setup_fails(&self, lang: &str, before: &str, answers: &[(&str, &str)]) -> String {
        let output = self.run(lang, before, &self.setup_command(answers, ""));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
        assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!self.config().exists(), "the configuration was written: {stderr}");
        assert!(!self.data().exists(), "the data directory was made: {stderr}");
        stderr.trim_end().to_string()
    }
}

fn array(value: &Value) -> Vec<&str> {
    value.as_array().unwrap().iter().map(|item| item.as_str().unwrap()).collect()
}

#[test]
fn setup_then_a_rerun_that_changes_nothing() {
    let place = Place::new();
    let first = place.setup_json();
    let token = first["operator_api_key"].as_str().expect("a key");
    assert!(token.starts_with("hmk_"), "{first}");
    assert_eq!(first["admin_address"], "admin@mairie-test.fr");
    assert_eq!(first["tenant"], "saint-martin-d-heres");
    assert_eq!(first["domain"], "mairie-test.fr");
    assert_eq!(first["host_addresses"][0], ADDRESS);
    let password = first["admin_password"].as_str().expect("a generated password");
    assert!(password.len() >= 12);
    let created = array(&first["created"]);
    for item in ["config", "data_dir", "certificate", "store", "tenant", "domain", "admin_account", "operator_api_key"]
    {
        assert!(created.contains(&item), "{item} in {created:?}");
    }
    assert!(array(&first["already_present"]).is_empty(), "{first}");
    let warnings = array(&first["warnings"]);
    assert!(warnings.iter().any(|w| w.contains("self-signed") && w.contains("docs/certificates.md")), "{warnings:?}");
    let records = first["dns_zone"]["records"].as_array().unwrap();
    let has = |kind: &str, name: &str, value: &str| {
        records.iter().any(|r| r["type"] == kind && r["name"] == name && r["value"].as_str().unwrap().contains(value))
    };
    assert!(has("MX", "mairie-test.fr", &format!("10 {HOST}.")), "{records:?}");
    assert!(has("TXT", "_dmarc.mairie-test.fr", "p=reject; pct=100"));
    assert!(has("TXT", "mairie-test.fr", "v=spf1 mx -all"));
    assert_eq!(records.iter().filter(|r| r["value"].as_str().unwrap().starts_with("v=DKIM1")).count(), 2);
    let zone_file = first["dns_zone_file"].as_str().unwrap();
    assert!(zone_file.contains(&format!("mairie-test.fr. 3600 IN MX 10 {HOST}.")), "{zone_file}");

    // What it wrote: the configuration (0640) names the host and the data; the data is 0700.
    let config_bytes = std::fs::read(place.config()).unwrap();
    let text = String::from_utf8(config_bytes.clone()).unwrap();
    assert!(text.contains(&format!("hostname = \"{HOST}\"")), "{text}");
    assert!(text.contains(&format!("data_dir = \"{}\"", place.data().display())), "{text}");
    assert!(!text.contains("metrics_token = \"\""));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&place.config()), 0o640);
    assert_eq!(mode(&place.data()), 0o700);
    let (status, _, stderr) = run(&["config", "check", "--config", place.config().to_str().unwrap()]);
    assert!(status.success(), "{stderr}");

    // Again: nothing created, no second key, same DKIM keys, the configuration untouched.
    let second = place.setup_json();
    assert_eq!(second["operator_api_key"], Value::Null, "{second}");
    assert!(second.get("admin_password").is_none(), "{second}");
    assert!(array(&second["created"]).is_empty(), "{second}");
    assert_eq!(array(&second["already_present"]).len(), created.len());
    assert_eq!(second["dns_zone"], first["dns_zone"]);
    assert_eq!(std::fs::read(place.config()).unwrap(), config_bytes);
    let text = place.setup_ok("C", &[], "");
    assert!(text.contains("already there  operator API key"), "{text}");
    assert!(text.contains("nothing changed"), "{text}");
    assert!(!text.contains("hmk_"), "{text}");

    // The store holds one key, and the commune with its INSEE code.
    let config = place.config();
    let c = config.to_str().unwrap();
    let (status, stdout, stderr) = run(&["apikey", "list", "--config", c]);
    assert!(status.success(), "{stderr}");
    let keys: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(keys["items"].as_array().unwrap().len(), 1, "{keys}");
    let (_, stdout, _) = run(&["tenant", "show", "saint-martin-d-heres", "--config", c]);
    let tenant: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((tenant["name"].as_str(), tenant["insee"].as_str()), (Some("Saint-Martin-d'Hères"), Some("38421")));
    let (_, stdout, _) = run(&["account", "show", "admin@mairie-test.fr", "--config", c]);
    let account: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(account["role"], "tenant_admin");
}

#[test]
fn french_under_a_french_locale_and_a_second_domain_added() {
    let place = Place::new();
    // The package installs the shipped configuration before setup runs: setup fills it.
    std::fs::create_dir_all(place.config().parent().unwrap()).unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/hameau.toml");
    std::fs::copy(shipped, place.config()).unwrap();
    let french = place.setup_ok("fr_FR.UTF-8", &[], "");
    for expected in [
        "créé           configuration",
        "Clé d'API de l'opérateur (affichée cette seule fois",
        "AVERTISSEMENT : le certificat TLS",
        "auto-signé",
        "ACME : voir docs/certificates.md",
        "Zone DNS à publier",
        &format!("mairie-test.fr. 3600 IN MX 10 {HOST}."),
        &format!("{HOST}. 3600 IN A {ADDRESS}"),
        "Liste RCPNT",
        &format!("réception IMAP : {HOST}, port 993, SSL/TLS"),
        "port 587, STARTTLS",
        "systemctl enable --now hameau",
        "hameau dns check mairie-test.fr",
    ] {
        assert!(french.contains(expected), "{expected:?} in:\n{french}");
    }
    assert!(!french.contains("WARNING"), "{french}");

    // The same commune with another domain: the domain and its admin are added.
    let password = format!("--admin-password-file {}", place.path("password").display());
    let answers = [("--domain", "saint-martin.test"), ("--admin", "mairie@saint-martin.test")];
    let english = place.setup_ok("C", &answers, &password);
    for expected in [
        "already there  commune (tenant) saint-martin-d-heres",
        "created        domain saint-martin.test and its DKIM keys",
        "created        admin account mairie@saint-martin.test",
        "already there  operator API key",
        "DNS zone to publish",
        "RCPNT checklist",
    ] {
        assert!(english.contains(expected), "{expected:?} in:\n{english}");
    }
    assert!(!english.contains("hmk_") && !english.contains("créé"), "{english}");
}

#[test]
fn bad_input_says_why_in_the_user_language_and_writes_nothing() {
    let place = Place::new();
    let refuse = |lang: &str, before: &str, answers: &[(&str, &str)], expected: &str| {
        let line = place.setup_fails(lang, before, answers);
        assert!(line.contains(expected), "{expected:?} in {line:?}");
        let prefix = if lang == "C" { "hameau: error: " } else { "hameau : erreur : " };
        assert!(line.starts_with(prefix), "{line}");
    };

    // Invalid answers.
    refuse("fr_FR.UTF-8", "", &[("--domain", "'pas un domaine'")], "n'est pas un nom de domaine valide");
    refuse("C", "", &[("--domain", "x_y.fr")], "is not a valid domain name");
    refuse("C", "", &[("--insee", "3842")], "is not an INSEE commune code");
    refuse("fr_FR.UTF-8", "", &[("--siren", "123456789"), ("--insee", "")], "n'est pas un numéro SIREN");
    refuse("fr_FR.UTF-8", "", &[("--admin", "admin@ailleurs.fr")], "n'est pas dans le domaine mairie-test.fr");

    // A flag missing with --non-interactive.
    let output = place.run("C", "", &place.setup_command(&[("--domain", ""), ("--admin", "")], ""));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--domain is missing"), "{stderr}");

    // An unwritable /etc: the configuration's directory on a read-only mount.
    let etc = place.path("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let read_only = format!("mount --bind {0} {0}; mount -o remount,ro,bind {0}", etc.display());
    refuse("C", &read_only, &[], "cannot write in");
    refuse("fr_FR.UTF-8", &read_only, &[], "impossible d'écrire dans");

    // A port already taken, by a listener in the namespace.
    let listener = "python3 -c 'import socket, time\ns = socket.socket()\ns.bind((\"0.0.0.0\", 587))\n\
                    s.listen()\ntime.sleep(20)' >/dev/null 2>&1 & sleep 0.5";
    refuse("C", listener, &[], "port 587 ([::]:587, submission.listen) is already taken");
    refuse("fr_FR.UTF-8", listener, &[], "le port 587 ([::]:587, submission.listen) est déjà pris");

    // The host name resolving to loopback, or to an address of another machine.
    place.hosts(&format!("127.0.1.1 {HOST}\n"));
    refuse("C", "", &[], "resolves to 127.0.1.1, a loopback address");
    place.hosts(&format!("127.0.0.1 {HOST}\n"));
    refuse("fr_FR.UTF-8", "", &[], "se résout en 127.0.0.1, une adresse de bouclage");
    place.hosts(&format!("198.51.100.7 {HOST}\n"));
    refuse("C", "", &[], "resolves to 198.51.100.7, which is not an address of this machine");

    // Then good input succeeds in the same places.
    place.hosts(&format!("{ADDRESS} {HOST}\n"));
    let json = place.setup_json();
    assert!(json["operator_api_key"].as_str().unwrap().starts_with("hmk_"));
}

#[test]
fn a_rerun_completes_a_setup_cut_short_and_refuses_another_host_name() {
    let place = Place::new();
    place.setup_json();
    // As if the first run had stopped after the certificate's key: no certificate, no key.
    std::fs::remove_file(place.data().join("tls/cert.pem")).unwrap();
    let json = place.setup_json();
    assert_eq!(array(&json["created"]), ["certificate"], "{json}");

    let output = place.run("C", "", &place.setup_command(&[("--hostname", "autre.mairie-test.fr")], ""));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("already names the host {HOST}, not autre.mairie-test.fr")), "{stderr}");

    // A running server holds the store: stop it first.
    let serve = format!("\"$HAMEAU\" serve --config {} 2>/dev/null & pid=$!; sleep 3", place.config().display());
    let setup = place.setup_command(&[], "");
    let output = place.run("fr_FR.UTF-8", &serve, &format!("{setup}; kill $pid; wait $pid"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Hameau est en marche") && stderr.contains("systemctl stop hameau"), "{stderr}");
}

#[test]
fn serve_starts_on_what_setup_wrote_and_the_admin_logs_in() {
    let place = Place::new();
    let cert = place.data().join("tls/cert.pem");
    let login = format!(
        "import imaplib, ssl, time\n\
         context = ssl.create_default_context(cafile={cert:?})\n\
         for attempt in range(100):\n\
         \x20   try:\n\
         \x20       imap = imaplib.IMAP4_SSL({HOST:?}, 993, ssl_context=context)\n\
         \x20       break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.2)\n\
         print(imap.login('admin@mairie-test.fr', {PASSWORD:?})[0])\n\
         print(imap.select('INBOX')[0])\n",
        cert = cert.display().to_string()
    );
    std::fs::write(place.path("login.py"), login).unwrap();
    let script = format!(
        "{} >/dev/null || exit 1\n\"$HAMEAU\" serve --config {} 2>{} & pid=$!\npython3 {}\nstatus=$?\nkill $pid\nwait $pid\nexit $status",
        place.setup_command(&[], &format!("--admin-password-file {}", place.path("password").display())),
        place.config().display(),
        place.path("serve.log").display(),
        place.path("login.py").display(),
    );
    let output = place.run("C", "", &script);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let log = std::fs::read_to_string(place.path("serve.log")).unwrap_or_default();
    assert!(output.status.success(), "{stdout}\n{}\n{log}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["OK", "OK"], "{log}");
}

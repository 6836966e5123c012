//! `hameau setup`: the first run on a new server, from an installed package to a commune
//! ready to receive mail. It asks (or takes as flags) the host name, the commune and its
//! domain, and the admin's address; checks everything it can before writing anything; then
//! writes the configuration, the data directory, a self-signed certificate for first use,
//! the store, the tenant, the domain with its DKIM keys, the admin account and the
//! operator's API key; and prints the DNS zone to publish and what to do next.
//!
//! Run again with the same answers it changes nothing and says so; a run cut short is
//! completed by the next one, because each step is skipped when what it makes is there
//! and every file is written whole or not at all. What it decides (docs/setup.md):
//! - A configuration file exists (and is not the shipped one untouched): it is kept as it
//!   is; a different host name is refused, since the certificate, the MX and the
//!   published records depend on it.
//! - The store is held by a running server: setup stops and asks to stop the service,
//!   rather than guess what is done from outside.
//! - A different domain for the same commune: the domain (and its admin) are added.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use hameau_config::Config;
use hameau_directory::dns::{DnsOptions, DnsZone};
use hameau_directory::{AccountRole, Directory, KeyScope, NewAccount, NewApiKey, NewDomain, NewTenant, Principal};
use serde_json::json;

use crate::lang::{Lang, say};

const DEFAULT_CONFIG: &str = "/etc/hameau/hameau.toml";
const DEFAULT_DATA_DIR: &str = "/var/lib/hameau";
/// Longest answer read from the terminal (or a password file): far above any host name,
/// address or password, and it bounds what a mistaken paste can make us hold.
const ANSWER_BYTES_MAX: u64 = 4096;
/// Longest commune name, as the directory allows for names.
const NAME_BYTES_MAX: usize = 200;

#[derive(clap::Args)]
pub struct SetupArgs {
    /// The configuration file to write (kept if it exists).
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// The data directory (store, certificate) [default: /var/lib/hameau].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Never ask: every answer comes from the flags; a missing one is an error.
    #[arg(long)]
    non_interactive: bool,
    /// The server's host name, which the MX record names [default: the system's FQDN].
    #[arg(long)]
    hostname: Option<String>,
    /// The commune's name, as it should be displayed.
    #[arg(long)]
    commune_name: Option<String>,
    /// The commune's INSEE code (5 characters: digits, or 2A/2B for Corsica).
    #[arg(long, conflicts_with = "siren")]
    insee: Option<String>,
    /// The commune's SIREN number (9 digits).
    #[arg(long)]
    siren: Option<String>,
    /// The tenant's id [default: made from the commune's name].
    #[arg(long)]
    tenant: Option<String>,
    /// The commune's mail domain (Unicode or ASCII form).
    #[arg(long)]
    domain: Option<String>,
    /// The admin's address, in that domain.
    #[arg(long)]
    admin: Option<String>,
    /// A file holding the admin's password [default: a generated one, printed once].
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    /// The system user the service runs as: owner of the data directory, group of the
    /// configuration file (when run as root and the user exists).
    #[arg(long, default_value = "hameau")]
    user: String,
    /// Prints one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs setup; prints one line in the user's language on failure.
pub fn run(args: &SetupArgs) -> ExitCode {
    let lang = Lang::from_env();
    match setup(args, lang) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("{}{text}", say!(lang, "hameau : erreur : ", "hameau: error: "));
            ExitCode::FAILURE
        }
    }
}

/// The answers, checked.
struct Answers {
    hostname: String,
    commune_name: String,
    insee: Option<String>,
    siren: Option<String>,
    tenant: String,
    /// ASCII (IDNA) form.
    domain: String,
    admin: String,
}

/// One thing setup makes, in the order it makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    DataDir,
    Certificate,
    Config,
    Store,
    Tenant,
    Domain,
    Admin,
    ApiKey,
    Owner,
}

impl Item {
    /// Its name in the JSON output.
    fn id(self) -> &'static str {
        match self {
            Item::DataDir => "data_dir",
            Item::Certificate => "certificate",
            Item::Config => "config",
            Item::Store => "store",
            Item::Tenant => "tenant",
            Item::Domain => "domain",
            Item::Admin => "admin_account",
            Item::ApiKey => "operator_api_key",
            Item::Owner => "data_dir_owner",
        }
    }
}

/// What a run did, for the output.
struct Report {
    lang: Lang,
    /// Each item, whether this run made it, and what it is.
    items: Vec<(Item, bool, String)>,
    warnings: Vec<String>,
    operator_api_key: Option<String>,
    /// Only when generated by this run.
    admin_password: Option<String>,
    zone: DnsZone,
    /// The addresses of this machine the host name resolves to.
    host_addresses: Vec<IpAddr>,
}

impl Report {
    fn done(&mut self, item: Item, created: bool, what: String) {
        self.items.push((item, created, what));
    }
}

fn setup(args: &SetupArgs, lang: Lang) -> anyhow::Result<()> {
    let config_path =
        std::path::absolute(&args.config).with_context(|| say!(lang, "chemin {}", "path {}", args.config.display()))?;
    let existing = existing_config(&config_path, lang)?;
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    let prompt = Prompt { lang, interactive };
    let answers = gather(args, &prompt, existing.as_ref())?;

    // The configuration: the one there, or the shipped one with this server's values.
    let (config, config_text) = match existing {
        Some(config) => {
            if config.server.hostname != answers.hostname {
                let (path, old, new) = (config_path.display(), &config.server.hostname, &answers.hostname);
                bail!(say!(
                    lang,
                    "la configuration {path} nomme déjà l'hôte {old}, pas {new} : setup ne change pas le nom d'hôte \
                     d'une installation faite (le certificat, le MX et la zone DNS en dépendent) ; relancez avec \
                     --hostname {old}, ou changez server.hostname dans {path} vous-même",
                    "the configuration {path} already names the host {old}, not {new}: setup does not change the \
                     host name of an installation (the certificate, the MX and the DNS zone depend on it); run it \
                     again with --hostname {old}, or change server.hostname in {path} yourself",
                ));
            }
            if let Some(given) = &args.data_dir {
                let given = std::path::absolute(given).unwrap_or_else(|_| given.clone());
                if given != config.server.data_dir {
                    let (path, old, given) = (config_path.display(), config.server.data_dir.display(), given.display());
                    bail!(say!(
                        lang,
                        "la configuration {path} place déjà les données dans {old}, pas dans {given} : relancez sans \
                         --data-dir",
                        "the configuration {path} already keeps the data in {old}, not in {given}: run it again \
                         without --data-dir",
                    ));
                }
            }
            (config, None)
        }
        None => {
            let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
            let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
            let text = config_text(&answers.hostname, &data_dir)?;
            let config = Config::parse(&config_path, &text)?;
            (config, Some(text))
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let checked =
            check_before_writing(args, &prompt, &answers, &config, &config_path, config_text.is_some()).await?;
        let report = write(args, lang, &answers, &config, &config_path, config_text.as_deref(), checked).await?;
        print(args, &answers, &config, &config_path, &report)
    })
}

/// The configuration file already there, if it is one of this installation: `None` when
/// there is none or it is the shipped file untouched (the package installs it before
/// setup runs), which setup then fills.
fn existing_config(path: &Path, lang: Lang) -> anyhow::Result<Option<Config>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!(say!(lang, "lecture de {} : {e}", "reading {}: {e}", path.display())),
    };
    if text == crate::init::SHIPPED_CONFIG {
        return Ok(None);
    }
    let config = Config::parse(path, &text).map_err(|e| {
        anyhow!(say!(
            lang,
            "la configuration existante ne se lit pas ({e}) : corrigez-la, ou retirez-la pour que setup l'écrive",
            "the existing configuration does not load ({e}): fix it, or remove it for setup to write it",
        ))
    })?;
    Ok(Some(config))
}

/// The shipped configuration with this server's host name, data directory and a random
/// metrics token; the standard ports are the shipped ones.
fn config_text(hostname: &str, data_dir: &Path) -> anyhow::Result<String> {
    let data_dir = data_dir.to_str().context("the data directory's path is not UTF-8")?;
    crate::init::shipped_config_with(&[
        ("hostname = \"localhost\"", format!("hostname = {hostname:?}")),
        ("data_dir = \"/var/lib/hameau\"", format!("data_dir = {data_dir:?}")),
        ("metrics_token = \"\"", format!("metrics_token = {:?}", crate::init::random_token())),
    ])
}

// Questions.

struct Prompt {
    lang: Lang,
    interactive: bool,
}

impl Prompt {
    /// The flag's value, else (interactive) the answer to `question`, `default` when left
    /// empty; each checked by `check`, asked again while wrong. Without a terminal, a
    /// missing flag without a default is an error naming the flag.
    fn ask<T>(
        &self,
        given: Option<&str>,
        flag: &str,
        question: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<T, String>,
    ) -> anyhow::Result<T> {
        let lang = self.lang;
        if let Some(given) = given {
            return check(given.trim()).map_err(anyhow::Error::msg);
        }
        if !self.interactive {
            return match default {
                Some(default) => check(default).map_err(anyhow::Error::msg),
                None => Err(anyhow!(say!(
                    lang,
                    "il manque {flag} (avec --non-interactive, ou sans terminal, chaque réponse se donne en option)",
                    "{flag} is missing (with --non-interactive, or without a terminal, every answer is a flag)",
                ))),
            };
        }
        loop {
            match default {
                Some(default) => eprint!("{question} [{default}] : "),
                None => eprint!("{question} : "),
            }
            let answer = read_answer(lang)?;
            let answer = match (answer.trim(), default) {
                ("", Some(default)) => default.to_string(),
                (answer, _) => answer.to_string(),
            };
            match check(&answer) {
                Ok(value) => return Ok(value),
                Err(problem) => eprintln!("  {problem}"),
            }
        }
    }
}

/// One line from standard input, at most [`ANSWER_BYTES_MAX`]; the end of input is an error.
fn read_answer(lang: Lang) -> anyhow::Result<String> {
    let mut line = String::new();
    let read = std::io::stdin().lock().take(ANSWER_BYTES_MAX).read_line(&mut line);
    match read {
        Ok(0) => bail!(say!(lang, "pas de réponse (fin de l'entrée)", "no answer (end of input)")),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => bail!(say!(lang, "lecture de la réponse : {e}", "reading the answer: {e}")),
    }
}

/// A password typed on the terminal, not echoed (through `stty`, as no dependency of ours
/// turns echo off); echo comes back even if reading fails.
fn read_password(lang: Lang, question: &str) -> anyhow::Result<String> {
    struct Echo;
    impl Drop for Echo {
        fn drop(&mut self) {
            let _ = std::process::Command::new("stty").arg("echo").stdin(std::process::Stdio::inherit()).status();
            eprintln!();
        }
    }
    eprint!("{question} : ");
    let _ = std::process::Command::new("stty").arg("-echo").stdin(std::process::Stdio::inherit()).status();
    let _echo = Echo;
    read_answer(lang)
}

fn gather(args: &SetupArgs, prompt: &Prompt, existing: Option<&Config>) -> anyhow::Result<Answers> {
    let lang = prompt.lang;
    let default_host = existing.map(|config| config.server.hostname.clone()).or_else(system_fqdn);
    let hostname = prompt.ask(
        args.hostname.as_deref(),
        "--hostname",
        &say!(lang, "Nom d'hôte de ce serveur (celui du MX)", "Host name of this server (the MX's)"),
        default_host.as_deref(),
        |name| check_hostname(lang, name),
    )?;
    let commune_name = prompt.ask(
        args.commune_name.as_deref(),
        "--commune-name",
        &say!(lang, "Nom de la commune", "Name of the commune"),
        None,
        |name| check_commune_name(lang, name),
    )?;
    let (insee, siren) = match (&args.insee, &args.siren) {
        (Some(insee), _) => (Some(check_code(lang, insee, Some(true)).map_err(anyhow::Error::msg)?.0), None),
        (None, Some(siren)) => (None, Some(check_code(lang, siren, Some(false)).map_err(anyhow::Error::msg)?.0)),
        (None, None) => {
            let (code, is_insee) = prompt.ask(
                None,
                "--insee ou --siren",
                &say!(
                    lang,
                    "Code INSEE (5 caractères) ou numéro SIREN (9 chiffres) de la commune",
                    "INSEE code (5 characters) or SIREN number (9 digits) of the commune",
                ),
                None,
                |code| check_code(lang, code, None),
            )?;
            if is_insee { (Some(code), None) } else { (None, Some(code)) }
        }
    };
    let domain = prompt.ask(
        args.domain.as_deref(),
        "--domain",
        &say!(lang, "Domaine de messagerie de la commune", "Mail domain of the commune"),
        None,
        |domain| check_domain(lang, domain),
    )?;
    let tenant = match &args.tenant {
        Some(tenant) => check_tenant(lang, tenant).map_err(anyhow::Error::msg)?,
        None => derive_tenant(&commune_name, &domain),
    };
    let default_admin = format!("admin@{}", hameau_directory::model::display_domain(&domain));
    let admin = prompt.ask(
        args.admin.as_deref(),
        "--admin",
        &say!(lang, "Adresse de l'administrateur de la commune", "Address of the commune's admin"),
        prompt.interactive.then_some(default_admin.as_str()),
        |address| check_admin(lang, address, &domain),
    )?;
    Ok(Answers { hostname, commune_name, insee, siren, tenant, domain, admin })
}

/// The system's fully qualified name: `hostname --fqdn`, else the kernel's host name.
fn system_fqdn() -> Option<String> {
    let output = std::process::Command::new("hostname").arg("--fqdn").output().ok();
    let fqdn = output.filter(|output| output.status.success()).map(|output| output.stdout);
    let name = match fqdn {
        Some(bytes) => String::from_utf8(bytes).ok()?,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?,
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

// Checks of the answers: each gives a message in the user's language.

fn check_hostname(lang: Lang, name: &str) -> Result<String, String> {
    hameau_directory::model::normalize_domain("hostname", name).map_err(|_| {
        say!(
            lang,
            "« {name} » n'est pas un nom d'hôte complet valide (au moins deux parties séparées par des points, \
             ex. mail.mairie-exemple.fr)",
            "{name:?} is not a valid fully qualified host name (at least two labels separated by dots, e.g. \
             mail.town-example.fr)",
        )
    })
}

fn check_commune_name(lang: Lang, name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(say!(lang, "le nom de la commune est vide", "the commune's name is empty"));
    }
    if name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(say!(
            lang,
            "le nom de la commune doit tenir en {NAME_BYTES_MAX} octets, sur une ligne",
            "the commune's name must fit in {NAME_BYTES_MAX} bytes, on one line",
        ));
    }
    Ok(name.to_string())
}

/// An INSEE code (`Some(true)`), a SIREN number (`Some(false)`), or either, told apart by
/// length (`None`); returns the code and whether it is an INSEE code.
fn check_code(lang: Lang, code: &str, insee: Option<bool>) -> Result<(String, bool), String> {
    let code = code.trim().to_ascii_uppercase();
    let is_insee = insee.unwrap_or(code.len() == 5);
    let valid = if is_insee {
        hameau_directory::model::check_insee(&code).is_ok()
    } else {
        hameau_directory::model::check_siren(&code).is_ok()
    };
    match (valid, is_insee) {
        (true, _) => Ok((code, is_insee)),
        (false, true) => Err(say!(
            lang,
            "« {code} » n'est pas un code INSEE de commune (5 caractères : des chiffres, ou 2A/2B pour la Corse, \
             ex. 38185 ou 2A004)",
            "{code:?} is not an INSEE commune code (5 characters: digits, or 2A/2B for Corsica, e.g. 38185 or \
             2A004)",
        )),
        (false, false) => Err(say!(
            lang,
            "« {code} » n'est pas un numéro SIREN (9 chiffres dont le dernier est une clé de contrôle)",
            "{code:?} is not a SIREN number (9 digits, the last one a check digit)",
        )),
    }
}

fn check_domain(lang: Lang, domain: &str) -> Result<String, String> {
    hameau_directory::model::normalize_domain("domain", domain).map_err(|_| {
        say!(
            lang,
            "« {domain} » n'est pas un nom de domaine valide (au moins deux parties séparées par des points, \
             chacune de 1 à 63 lettres, chiffres ou tirets intérieurs, ex. mairie-exemple.fr ; les accents sont \
             admis)",
            "{domain:?} is not a valid domain name (at least two labels separated by dots, each of 1 to 63 \
             letters, digits or inner hyphens, e.g. town-example.fr; accented letters are allowed)",
        )
    })
}

fn check_tenant(lang: Lang, tenant: &str) -> Result<String, String> {
    hameau_directory::model::check_tenant_id(tenant).map(|()| tenant.to_string()).map_err(|_| {
        say!(
            lang,
            "« {tenant} » n'est pas un identifiant de commune valide (1 à 63 caractères parmi a-z, 0-9 et des \
             tirets intérieurs)",
            "{tenant:?} is not a valid tenant id (1 to 63 of a-z, 0-9 and inner hyphens)",
        )
    })
}

fn check_admin(lang: Lang, address: &str, domain: &str) -> Result<String, String> {
    let (address_ascii, address_domain) = hameau_directory::model::normalize_address("admin", address)
        .map_err(|_| say!(lang, "« {address} » n'est pas une adresse valide", "{address:?} is not a valid address"))?;
    if address_domain != domain {
        let display = hameau_directory::model::display_domain(domain);
        return Err(say!(
            lang,
            "l'adresse de l'administrateur {address} n'est pas dans le domaine {display}",
            "the admin's address {address} is not in the domain {display}",
        ));
    }
    Ok(address_ascii)
}

/// The tenant id made from the commune's name (accents dropped, other characters made
/// hyphens: "Saint-Martin-d'Hères" gives `saint-martin-d-heres`), so that a second run
/// with another domain for the same commune finds the same tenant; from the domain's first
/// label if the name has no letter or digit.
fn derive_tenant(name: &str, domain: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let folded = match c {
            'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' => "a",
            'ç' => "c",
            'é' | 'è' | 'ê' | 'ë' => "e",
            'î' | 'ï' | 'í' | 'ì' => "i",
            'ô' | 'ö' | 'ó' | 'ò' | 'õ' => "o",
            'ù' | 'û' | 'ü' | 'ú' => "u",
            'ÿ' | 'ý' => "y",
            'ñ' => "n",
            'œ' => "oe",
            'æ' => "ae",
            c if c.is_ascii_alphanumeric() => {
                slug.push(c);
                continue;
            }
            _ => "-",
        };
        if folded != "-" || !slug.ends_with('-') {
            slug.push_str(folded);
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(63).collect();
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() { domain.split('.').next().unwrap_or(domain).to_string() } else { slug }
}

// Checks of the machine, before anything is written.

/// What the checks found and the writes need.
struct Checked {
    /// The store, if it existed (opened to read what is there).
    store: Option<hameau_store::Store>,
    /// The admin account exists already.
    admin_exists: bool,
    /// The admin's password: from the file or typed; `None` to generate one.
    password: Option<String>,
    host_addresses: Vec<IpAddr>,
}

async fn check_before_writing(
    args: &SetupArgs,
    prompt: &Prompt,
    answers: &Answers,
    config: &Config,
    config_path: &Path,
    config_to_write: bool,
) -> anyhow::Result<Checked> {
    let lang = prompt.lang;
    let data_dir = &config.server.data_dir;
    if config_to_write {
        let dir = config_path.parent().unwrap_or(Path::new("/"));
        check_writable(lang, dir)?;
    }
    if data_dir.exists() && !data_dir.is_dir() {
        bail!(say!(lang, "{} n'est pas un répertoire", "{} is not a directory", data_dir.display()));
    }
    check_writable(lang, data_dir)?;

    // A running server holds the store (and the ports): say so first.
    let store_path = config.store_path();
    let store = if store_path.exists() {
        match hameau_store::Store::open(&config.store).await {
            Ok(store) => Some(store),
            Err(hameau_store::Error::Locked(_)) => {
                let path = store_path.display();
                bail!(say!(
                    lang,
                    "Hameau est en marche (son stockage {path} est utilisé par un autre processus) : arrêtez-le \
                     d'abord (systemctl stop hameau), puis relancez hameau setup",
                    "Hameau is running (its store {path} is in use by another process): stop it first (systemctl \
                     stop hameau), then run hameau setup again",
                ));
            }
            Err(e) => bail!(say!(lang, "ouverture du stockage : {e}", "opening the store: {e}")),
        }
    } else {
        None
    };
    let mut admin_exists = false;
    if let Some(store) = &store {
        let directory = Directory::new(store.clone(), config.directory.clone());
        admin_exists = check_records(lang, &directory, answers).await?;
    }

    let password = match &args.admin_password_file {
        Some(path) => Some(password_from_file(lang, path)?),
        None if prompt.interactive && !admin_exists => {
            let typed = read_password(
                lang,
                &say!(
                    lang,
                    "Mot de passe de l'administrateur (Entrée seule : en générer un)",
                    "Admin's password (Enter alone: generate one)",
                ),
            )?;
            if typed.is_empty() {
                None
            } else {
                let again = read_password(lang, &say!(lang, "Le même, encore", "The same, again"))?;
                if again != typed {
                    bail!(say!(lang, "les deux mots de passe diffèrent", "the two passwords differ"));
                }
                Some(typed)
            }
        }
        None => None,
    };
    if let Some(password) = &password {
        check_password(lang, config, password)?;
    }

    let host_addresses = check_host(lang, &answers.hostname)?;
    check_ports(lang, config, config_path)?;
    Ok(Checked { store, admin_exists, password, host_addresses })
}

/// A file can be made in `dir`, or in its nearest existing parent when it does not exist
/// yet (setup would make it there).
fn check_writable(lang: Lang, dir: &Path) -> anyhow::Result<()> {
    let mut existing = dir;
    while !existing.exists() {
        match existing.parent() {
            Some(parent) => existing = parent,
            None => break,
        }
    }
    let probe = existing.join(format!(".hameau-setup-probe-{}", std::process::id()));
    let made = std::fs::OpenOptions::new().write(true).create_new(true).open(&probe);
    match made {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => {
            let (dir, existing) = (dir.display(), existing.display());
            bail!(say!(
                lang,
                "impossible d'écrire dans {existing} ({e}), où setup doit créer {dir} : lancez-le en root sur un \
                 système de fichiers accessible en écriture, ou choisissez --config et --data-dir",
                "cannot write in {existing} ({e}), where setup must make {dir}: run it as root on a writable file \
                 system, or choose --config and --data-dir",
            ))
        }
    }
}

/// The domain and the admin's address are free, or this commune's; whether the admin
/// account exists.
async fn check_records(lang: Lang, directory: &Directory, answers: &Answers) -> anyhow::Result<bool> {
    let operator = Principal::Operator;
    match directory.get_domain(&operator, &answers.domain).await {
        Ok(domain) if domain.tenant != answers.tenant => {
            let (name, owner, tenant) = (&domain.display_name, &domain.tenant, &answers.tenant);
            bail!(say!(
                lang,
                "le domaine {name} appartient déjà à la commune (tenant) {owner}, pas à {tenant} : donnez --tenant \
                 {owner}, ou un autre domaine",
                "the domain {name} already belongs to the tenant {owner}, not to {tenant}: give --tenant {owner}, \
                 or another domain",
            ));
        }
        Ok(_) | Err(hameau_directory::Error::NotFound { .. }) => {}
        Err(e) => bail!(say!(lang, "lecture du stockage : {e}", "reading the store: {e}")),
    }
    let admin = &answers.admin;
    match directory.resolve_recipient(admin).await {
        Ok(None) => Ok(false),
        Ok(Some(recipient)) => {
            let account = directory.get_account(&operator, admin).await.ok();
            match account {
                Some(account) if account.tenant == answers.tenant => Ok(true),
                Some(account) => {
                    let owner = account.tenant;
                    bail!(say!(
                        lang,
                        "l'adresse {admin} est déjà un compte de la commune (tenant) {owner}",
                        "the address {admin} is already an account of the tenant {owner}",
                    ))
                }
                None => {
                    let owner = recipient.tenant;
                    bail!(say!(
                        lang,
                        "l'adresse {admin} est déjà un alias (de la commune {owner}) : choisissez une autre adresse \
                         pour l'administrateur",
                        "the address {admin} is already an alias (of the tenant {owner}): choose another address \
                         for the admin",
                    ))
                }
            }
        }
        Err(e) => bail!(say!(lang, "lecture du stockage : {e}", "reading the store: {e}")),
    }
}

/// The password in `path`: its first line (a final line break is not part of it).
fn password_from_file(lang: Lang, path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|file| file.take(ANSWER_BYTES_MAX).read_to_string(&mut text));
    if let Err(e) = read {
        bail!(say!(lang, "lecture de {} : {e}", "reading {}: {e}", path.display()));
    }
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn check_password(lang: Lang, config: &Config, password: &str) -> anyhow::Result<()> {
    let options = &config.directory.passwords;
    let (min, max) = (options.password_chars_min, options.password_bytes_max);
    if options.check_new("password", password).is_err() {
        bail!(say!(
            lang,
            "le mot de passe de l'administrateur doit avoir au moins {min} caractères (au plus {max} octets), \
             sur une ligne",
            "the admin's password must have at least {min} characters (at most {max} bytes), on one line",
        ));
    }
    Ok(())
}

/// The addresses `hostname` resolves to (through the system's resolver, so /etc/hosts
/// counts) that belong to this machine; an error if one is a loopback address or none is
/// ours. An address is ours when a UDP socket can be bound to it: the kernel allows that
/// only for a local address.
fn check_host(lang: Lang, hostname: &str) -> anyhow::Result<Vec<IpAddr>> {
    let resolved = (hostname, 0u16).to_socket_addrs();
    let mut addresses: Vec<IpAddr> = match resolved {
        Ok(addresses) => addresses.map(|address| address.ip()).collect(),
        Err(e) => bail!(say!(
            lang,
            "le nom d'hôte {hostname} ne se résout pas ({e}) : publiez son enregistrement A (ou AAAA), ou ajoutez-le \
             à /etc/hosts avec l'adresse de cette machine",
            "the host name {hostname} does not resolve ({e}): publish its A (or AAAA) record, or add it to \
             /etc/hosts with this machine's address",
        )),
    };
    addresses.sort();
    addresses.dedup();
    if let Some(loopback) = addresses.iter().find(|address| address.is_loopback()) {
        bail!(say!(
            lang,
            "le nom d'hôte {hostname} se résout en {loopback}, une adresse de bouclage : les autres serveurs ne \
             pourraient pas joindre ce nom ; dans /etc/hosts, associez-le à l'adresse publique de cette machine \
             (Debian y met 127.0.1.1 par défaut)",
            "the host name {hostname} resolves to {loopback}, a loopback address: other servers could not reach \
             that name; in /etc/hosts, map it to this machine's public address (Debian puts 127.0.1.1 there by \
             default)",
        ));
    }
    let ours: Vec<IpAddr> = addresses
        .iter()
        .copied()
        .filter(|address| !address.is_unspecified() && std::net::UdpSocket::bind((*address, 0)).is_ok())
        .collect();
    if ours.is_empty() {
        let list = addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
        bail!(say!(
            lang,
            "le nom d'hôte {hostname} se résout en {list}, qui n'est pas une adresse de cette machine : corrigez \
             son enregistrement DNS ; derrière une traduction d'adresses (NAT), associez-le dans /etc/hosts à \
             l'adresse privée de cette machine",
            "the host name {hostname} resolves to {list}, which is not an address of this machine: fix its DNS \
             record; behind address translation (NAT), map it in /etc/hosts to this machine's private address",
        ));
    }
    Ok(ours)
}

/// Every listener of the configuration can be bound now (bound and released at once).
fn check_ports(lang: Lang, config: &Config, config_path: &Path) -> anyhow::Result<()> {
    let listeners: [(&str, &[SocketAddr]); 6] = [
        ("smtp.listen", &config.smtp.listen),
        ("submission.listen", &config.submission.listen),
        ("submission.listen_tls", &config.submission.listen_tls),
        ("imap.listen", &config.imap.listen),
        ("imap.listen_tls", &config.imap.listen_tls),
        ("http.listen", &config.http.listen),
    ];
    let mut problems = Vec::new();
    for (key, addresses) in listeners {
        for address in addresses {
            let Err(e) = std::net::TcpListener::bind(address) else { continue };
            let port = address.port();
            problems.push(match e.kind() {
                std::io::ErrorKind::AddrInUse => say!(
                    lang,
                    "le port {port} ({address}, {key}) est déjà pris : arrêtez le service qui l'occupe (ss -ltnp \
                     'sport = :{port}' le nomme)",
                    "port {port} ({address}, {key}) is already taken: stop the service that holds it (ss -ltnp \
                     'sport = :{port}' names it)",
                ),
                std::io::ErrorKind::PermissionDenied => say!(
                    lang,
                    "le port {port} ({address}, {key}) demande les droits de root",
                    "port {port} ({address}, {key}) needs root's rights",
                ),
                _ => say!(
                    lang,
                    "écoute impossible sur {address} ({key}) : {e}",
                    "cannot listen on {address} ({key}): {e}"
                ),
            });
        }
    }
    if !problems.is_empty() {
        let path = config_path.display();
        bail!(say!(
            lang,
            "{} (ou changez ces adresses dans {path})",
            "{} (or change these addresses in {path})",
            problems.join(" ; "),
        ));
    }
    Ok(())
}

// Writes: each step skipped when what it makes is there.

#[allow(clippy::too_many_arguments)]
async fn write(
    args: &SetupArgs,
    lang: Lang,
    answers: &Answers,
    config: &Config,
    config_path: &Path,
    config_text: Option<&str>,
    checked: Checked,
) -> anyhow::Result<Report> {
    let owner = service_owner(&args.user);
    let mut report = Report {
        lang,
        items: Vec::new(),
        warnings: Vec::new(),
        operator_api_key: None,
        admin_password: None,
        zone: DnsZone { domain: String::new(), records: Vec::new(), mta_sts_policy: String::new() },
        host_addresses: checked.host_addresses,
    };

    let data_dir = &config.server.data_dir;
    let made_data_dir = !data_dir.exists();
    if made_data_dir {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(data_dir)
            .and_then(|()| std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)))
            .with_context(|| say!(lang, "création de {}", "creating {}", data_dir.display()))?;
    }
    report.done(Item::DataDir, made_data_dir, data_dir.display().to_string());

    let (cert, key) = (config.certificate_path(), config.private_key_path());
    let made_cert = !(cert.exists() && key.exists());
    if made_cert {
        crate::tls::write_self_signed(&config.server.hostname, &cert, &key)
            .with_context(|| say!(lang, "certificat auto-signé", "self-signed certificate"))?;
        let path = cert.display();
        report.warnings.push(say!(
            lang,
            "le certificat TLS {path} est auto-signé, pour la première mise en route seulement : les logiciels de \
             messagerie des agents afficheront une alerte, et les serveurs qui appliquent MTA-STS refuseront de \
             livrer. Obtenez un vrai certificat avant d'annoncer le service (ACME : voir docs/certificates.md)",
            "the TLS certificate {path} is self-signed, for first use only: the agents' mail programs will show a \
             warning, and servers that apply MTA-STS will refuse to deliver. Get a real certificate before \
             announcing the service (ACME: see docs/certificates.md)",
        ));
    }
    report.done(Item::Certificate, made_cert, cert.display().to_string());

    if let Some(text) = config_text {
        // The configuration's directory (/etc/hameau) may not exist yet.
        let dir = config_path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| crate::tls::write_atomic(config_path, text.as_bytes(), 0o640))
            .with_context(|| say!(lang, "écriture de {}", "writing {}", config_path.display()))?;
        if let Some((_, gid)) = owner {
            std::os::unix::fs::chown(config_path, Some(0), Some(gid))
                .with_context(|| say!(lang, "groupe de {}", "group of {}", config_path.display()))?;
        }
    }
    report.done(Item::Config, config_text.is_some(), config_path.display().to_string());

    let store_path = config.store_path();
    let (store, made_store) = match checked.store {
        Some(store) => (store, false),
        None => {
            let store = hameau_store::Store::open(&config.store)
                .await
                .with_context(|| say!(lang, "création du stockage", "creating the store"))?;
            (store, true)
        }
    };
    report.done(Item::Store, made_store, store_path.display().to_string());

    let result = records(lang, &store, config, answers, checked.admin_exists, checked.password, &mut report).await;
    let closed = store.close().await;
    result?;
    closed.with_context(|| say!(lang, "fermeture du stockage", "closing the store"))?;

    match owner {
        Some((uid, gid)) => {
            let changed = chown_tree(data_dir, uid, gid)
                .with_context(|| say!(lang, "propriétaire de {}", "owner of {}", data_dir.display()))?;
            report.done(Item::Owner, changed > 0, args.user.clone());
        }
        None if is_root() => {
            let user = &args.user;
            report.warnings.push(say!(
                lang,
                "l'utilisateur système {user} n'existe pas : les données restent à root ; le service doit tourner \
                 sous un utilisateur qui peut les lire (paquet Debian : il crée {user})",
                "the system user {user} does not exist: the data stays root's; the service must run as a user that \
                 can read it (the Debian package makes {user})",
            ));
        }
        None => {}
    }
    Ok(report)
}

/// The tenant, the domain (its DKIM keys), the admin account and the operator's API key.
async fn records(
    lang: Lang,
    store: &hameau_store::Store,
    config: &Config,
    answers: &Answers,
    admin_exists: bool,
    password: Option<String>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let directory = Directory::new(store.clone(), config.directory.clone());
    let operator = Principal::Operator;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let failed = |what: String| move |e: hameau_directory::Error| anyhow!("{what}: {e}");

    let tenant_id = &answers.tenant;
    let made_tenant = match directory.get_tenant(&operator, tenant_id).await {
        Ok(tenant) => {
            let same = tenant.name == answers.commune_name
                && (answers.insee.is_none() || tenant.insee == answers.insee)
                && (answers.siren.is_none() || tenant.siren == answers.siren);
            if !same {
                report.warnings.push(say!(
                    lang,
                    "la commune (tenant) {tenant_id} existe déjà avec d'autres nom ou code ; elle est laissée telle \
                     quelle (hameau tenant update pour la changer)",
                    "the tenant {tenant_id} exists already with another name or code; it is left as it is (hameau \
                     tenant update changes it)",
                ));
            }
            false
        }
        Err(hameau_directory::Error::NotFound { .. }) => {
            let new = NewTenant {
                id: tenant_id.clone(),
                name: answers.commune_name.clone(),
                siren: answers.siren.clone(),
                insee: answers.insee.clone(),
                quota_bytes: None,
                accounts_max: None,
            };
            directory.create_tenant(&operator, new, now).await.map_err(failed(say!(
                lang,
                "création de la commune",
                "creating the tenant"
            )))?;
            true
        }
        Err(e) => return Err(failed(say!(lang, "lecture du stockage", "reading the store"))(e)),
    };
    report.done(Item::Tenant, made_tenant, format!("{tenant_id} ({})", answers.commune_name));

    let (domain, made_domain) = match directory.get_domain(&operator, &answers.domain).await {
        Ok(domain) => (domain, false),
        Err(hameau_directory::Error::NotFound { .. }) => {
            let new = NewDomain { name: answers.domain.clone(), tenant: tenant_id.clone() };
            let domain = directory.create_domain(&operator, new, now).await.map_err(failed(say!(
                lang,
                "création du domaine",
                "creating the domain"
            )))?;
            (domain, true)
        }
        Err(e) => return Err(failed(say!(lang, "lecture du stockage", "reading the store"))(e)),
    };
    report.done(Item::Domain, made_domain, domain.display_name.clone());
    report.zone = hameau_directory::dns::zone(&domain, &DnsOptions { mx_host: config.server.hostname.clone() });

    let admin = &answers.admin;
    if admin_exists {
        if password.is_some() {
            report.warnings.push(say!(
                lang,
                "le compte {admin} existait : son mot de passe n'a pas été changé (hameau account update \
                 --password-stdin le change)",
                "the account {admin} existed: its password was not changed (hameau account update \
                 --password-stdin changes it)",
            ));
        }
    } else {
        let generated = password.is_none();
        let password = password.unwrap_or_else(generate_password);
        let new = NewAccount {
            address: admin.clone(),
            display_name: say!(lang, "Administrateur", "Administrator"),
            password: Some(password.clone()),
            quota_bytes: None,
            enabled: true,
            role: AccountRole::TenantAdmin,
        };
        directory.create_account(&operator, new, now).await.map_err(failed(say!(
            lang,
            "création du compte administrateur",
            "creating the admin account"
        )))?;
        if generated {
            report.admin_password = Some(password);
        }
    }
    report.done(Item::Admin, !admin_exists, admin.clone());

    // Last, so that a run that failed before made no key nobody saw.
    if has_operator_key(&directory, now).await.map_err(failed(say!(lang, "lecture des clés", "reading the keys")))? {
        report.done(Item::ApiKey, false, String::new());
    } else {
        let key = NewApiKey { name: "operator key (hameau setup)".into(), scope: KeyScope::Operator, expires_at: None };
        let (_, token) = directory.create_api_key(&operator, key, now).await.map_err(failed(say!(
            lang,
            "création de la clé d'API",
            "creating the API key"
        )))?;
        report.operator_api_key = Some(token);
        report.done(Item::ApiKey, true, String::new());
    }
    Ok(())
}

/// A valid (not revoked, not expired) operator key exists.
async fn has_operator_key(directory: &Directory, now: u64) -> Result<bool, hameau_directory::Error> {
    let mut after: Option<String> = None;
    loop {
        let page = directory.list_api_keys(&Principal::Operator, after.as_deref(), None).await?;
        let live = |key: &hameau_directory::ApiKey| {
            key.scope == KeyScope::Operator && !key.revoked && key.expires_at.is_none_or(|at| at > now)
        };
        if page.items.iter().any(live) {
            return Ok(true);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(false),
        }
    }
}

/// 24 characters of a 32-letter alphabet without look-alikes (120 bits), in groups of 4
/// to read and type: `k7mq-…`.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let groups: Vec<String> =
        (0..6).map(|_| (0..4).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()).collect();
    groups.join("-")
}

/// Running as root (the owner of `/proc/self` is the effective user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The uid and gid of the service's user, when running as root and it exists in
/// /etc/passwd (where the package's `adduser --system` puts it).
fn service_owner(user: &str) -> Option<(u32, u32)> {
    if !is_root() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] if *name == user => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// Gives `root` and everything under it to `uid:gid` (symbolic links themselves, never
/// followed); returns how many entries changed. Walks with a stack, not recursion.
fn chown_tree(root: &Path, uid: u32, gid: u32) -> std::io::Result<usize> {
    use std::os::unix::fs::MetadataExt;
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            changed += 1;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

// Output.

fn print(
    args: &SetupArgs,
    answers: &Answers,
    config: &Config,
    config_path: &Path,
    report: &Report,
) -> anyhow::Result<()> {
    let host = &config.server.hostname;
    let default_place = config_path == Path::new(DEFAULT_CONFIG);
    let config_flag = if default_place { String::new() } else { format!(" --config {}", config_path.display()) };
    let display_domain = hameau_directory::model::display_domain(&answers.domain);
    let next = format!("hameau dns check {display_domain}{config_flag}");
    if args.json {
        let ids = |created: bool| -> Vec<&str> {
            report.items.iter().filter(|(_, made, _)| *made == created).map(|(item, _, _)| item.id()).collect()
        };
        let mut out = json!({
            "hostname": host,
            "config": config_path,
            "data_dir": config.server.data_dir,
            "tenant": answers.tenant,
            "domain": answers.domain,
            "admin_address": answers.admin,
            "operator_api_key": report.operator_api_key,
            "dns_zone": report.zone,
            "dns_zone_file": hameau_directory::dns::zone_file(&report.zone),
            "host_addresses": report.host_addresses,
            "created": ids(true),
            "already_present": ids(false),
            "warnings": report.warnings,
            "client_settings": {
                "imap": { "host": host, "port": 993, "security": "tls" },
                "smtp": [
                    { "host": host, "port": 587, "security": "starttls" },
                    { "host": host, "port": 465, "security": "tls" },
                ],
                "username": "full address",
            },
            "next_command": next,
        });
        if let Some(password) = &report.admin_password {
            out["admin_password"] = json!(password);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let text = render(report, answers, host, &config_flag, &next);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The text output, in the report's language.
fn render(report: &Report, answers: &Answers, host: &str, config_flag: &str, next: &str) -> String {
    let lang = report.lang;
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(say!(lang, "Hameau sur {host} :", "Hameau on {host}:"));
    let all_there = report.items.iter().all(|(_, made, _)| !made);
    for (item, made, what) in &report.items {
        let status = match made {
            true => say!(lang, "créé", "created"),
            false => say!(lang, "déjà présent", "already there"),
        };
        let label = match item {
            Item::DataDir => say!(lang, "répertoire de données {what}", "data directory {what}"),
            Item::Certificate => say!(lang, "certificat TLS {what}", "TLS certificate {what}"),
            Item::Config => say!(lang, "configuration {what}", "configuration {what}"),
            Item::Store => say!(lang, "stockage {what}", "store {what}"),
            Item::Tenant => say!(lang, "commune (tenant) {what}", "commune (tenant) {what}"),
            Item::Domain => say!(lang, "domaine {what} et ses clés DKIM", "domain {what} and its DKIM keys"),
            Item::Admin => say!(lang, "compte administrateur {what}", "admin account {what}"),
            Item::ApiKey => say!(lang, "clé d'API de l'opérateur", "operator API key"),
            Item::Owner => say!(lang, "données confiées à l'utilisateur {what}", "data owned by the user {what}"),
        };
        line(format!("  {status:<14} {label}"));
    }
    if all_there {
        line(say!(
            lang,
            "Tout était déjà en place : rien n'a changé.",
            "Everything was already in place: nothing changed."
        ));
    }
    if let Some(token) = &report.operator_api_key {
        line(String::new());
        line(say!(
            lang,
            "Clé d'API de l'opérateur (affichée cette seule fois ; gardez-la en lieu sûr) :",
            "Operator API key (shown this once; keep it safe):",
        ));
        line(format!("  {token}"));
    }
    if let Some(password) = &report.admin_password {
        let admin = &answers.admin;
        line(String::new());
        line(say!(
            lang,
            "Mot de passe du compte {admin} (généré, affiché cette seule fois) :",
            "Password of the account {admin} (generated, shown this once):",
        ));
        line(format!("  {password}"));
    }
    for warning in &report.warnings {
        line(String::new());
        line(say!(lang, "AVERTISSEMENT : {warning}", "WARNING: {warning}"));
    }

    let zone = &report.zone;
    let domain = &zone.domain;
    line(String::new());
    line(say!(
        lang,
        "Zone DNS à publier chez l'hébergeur du domaine {domain} :",
        "DNS zone to publish at the host of the domain {domain}:",
    ));
    for record in hameau_directory::dns::zone_file(zone).lines() {
        line(format!("  {record}"));
    }
    let addresses = &report.host_addresses;
    if !addresses.is_empty() {
        line(say!(
            lang,
            "Et, dans la zone du nom d'hôte, son adresse (l'enregistrement vers lequel pointe le MX) :",
            "And, in the host name's zone, its address (the record the MX points to):",
        ));
        for address in addresses {
            let kind = if address.is_ipv4() { "A" } else { "AAAA" };
            line(format!("  {host}. 3600 IN {kind} {address}"));
        }
        line(say!(
            lang,
            "  (demandez aussi à l'hébergeur de la machine que le DNS inverse (PTR) de cette adresse soit {host})",
            "  (also ask the machine's host to make the reverse DNS (PTR) of that address {host})",
        ));
    }
    line(String::new());
    line(say!(
        lang,
        "Liste RCPNT (référentiel des communes), obligatoire :",
        "RCPNT checklist (the communes' referential), required:",
    ));
    for record in zone.records.iter().filter(|record| record.required) {
        let label = match record.value.split(';').next() {
            Some("v=DMARC1") => "DMARC",
            Some(value) if value.starts_with("v=spf1") => "SPF",
            _ => record.kind.as_str(),
        };
        line(format!("  [ ] {label:<5} {} {} {}", record.name, record.kind, record.value));
    }
    line(say!(
        lang,
        "  [ ] DMARC en p=quarantine ou p=reject, avec pct=100 (la zone ci-dessus met p=reject)",
        "  [ ] DMARC at p=quarantine or p=reject, with pct=100 (the zone above says p=reject)",
    ));
    line(say!(
        lang,
        "Recommandé : DKIM (les clés ci-dessus), MTA-STS et TLS-RPT, et les SRV et autoconfig qui configurent les \
         logiciels de messagerie.",
        "Recommended: DKIM (the keys above), MTA-STS and TLS-RPT, and the SRV and autoconfig records that set up \
         mail programs.",
    ));

    line(String::new());
    line(say!(lang, "Réglages des logiciels de messagerie des agents :", "Settings of the agents' mail programs:"));
    line(say!(lang, "  réception IMAP : {host}, port 993, SSL/TLS", "  incoming IMAP: {host}, port 993, SSL/TLS"));
    line(say!(
        lang,
        "  envoi SMTP     : {host}, port 587, STARTTLS (ou port 465, SSL/TLS)",
        "  outgoing SMTP: {host}, port 587, STARTTLS (or port 465, SSL/TLS)",
    ));
    line(say!(
        lang,
        "  identifiant    : l'adresse complète (ex. {}) et son mot de passe",
        "  user name: the full address (e.g. {}) and its password",
        answers.admin,
    ));

    line(String::new());
    line(say!(lang, "Démarrer le service :", "Start the service:"));
    line("  systemctl enable --now hameau".to_string());
    if !config_flag.is_empty() {
        line(say!(
            lang,
            "  (ou, hors systemd : hameau serve{config_flag})",
            "  (or, without systemd: hameau serve{config_flag})"
        ));
    }
    line(say!(
        lang,
        "Ensuite, une fois la zone publiée, vérifiez-la (le service arrêté ; en marche, ajoutez --url https://{host} \
         --api-key CLÉ) :",
        "Then, once the zone is published, check it (with the service stopped; while it runs, add --url \
         https://{host} --api-key KEY):",
    ));
    line(format!("  {next}"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_come_from_the_commune_name() {
        assert_eq!(derive_tenant("Saint-Martin-d'Hères", "smh.fr"), "saint-martin-d-heres");
        assert_eq!(derive_tenant("  L'Haÿ-les-Roses ", "x.fr"), "l-hay-les-roses");
        assert_eq!(derive_tenant("Œuilly", "x.fr"), "oeuilly");
        assert_eq!(derive_tenant("–––", "mairie-x.fr"), "mairie-x");
        let long = derive_tenant(&"a-".repeat(100), "x.fr");
        assert!(long.len() <= 63 && !long.ends_with('-'), "{long}");
        for name in ["Saint-Martin-d'Hères", "  L'Haÿ-les-Roses ", &"é ".repeat(70)] {
            assert!(hameau_directory::model::check_tenant_id(&derive_tenant(name, "x.fr")).is_ok(), "{name}");
        }
    }

    #[test]
    fn codes_are_told_apart_by_length() {
        assert_eq!(check_code(Lang::En, "2a004", None), Ok(("2A004".into(), true)));
        assert_eq!(check_code(Lang::En, "213801855", None).map(|(_, insee)| insee), Ok(false));
        assert!(check_code(Lang::Fr, "123456789", None).unwrap_err().contains("SIREN"));
        assert!(check_code(Lang::Fr, "3818", Some(true)).unwrap_err().contains("INSEE"));
    }

    #[test]
    fn the_admin_must_be_in_the_domain() {
        assert_eq!(check_admin(Lang::En, "Admin@Mairie.fr", "mairie.fr"), Ok("admin@mairie.fr".into()));
        assert!(check_admin(Lang::Fr, "admin@autre.fr", "mairie.fr").unwrap_err().contains("n'est pas dans"));
        assert_eq!(check_domain(Lang::En, "Saint-Étienne.fr"), Ok("xn--saint-tienne-geb.fr".into()));
        assert!(check_domain(Lang::Fr, "pas_un domaine").unwrap_err().contains("n'est pas un nom de domaine"));
    }

    #[test]
    fn generated_passwords_are_long_enough() {
        let password = generate_password();
        assert_eq!(password.len(), 29);
        assert!(hameau_directory::PasswordOptions::default().check_new("password", &password).is_ok());
    }
}

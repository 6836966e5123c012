//! `hameau init`: a data directory ready to serve, with a configuration file that points
//! to it, a self-signed certificate for first use, and an empty store.

use std::path::PathBuf;

use anyhow::Context;
use hameau_config::Config;

use crate::tls::write_private;

/// The shipped default configuration, every key commented.
pub const SHIPPED_CONFIG: &str = include_str!("../../../config/hameau.toml");

#[derive(clap::Args)]
pub struct InitArgs {
    /// The directory to create (or fill, if it exists without a configuration).
    #[arg(long)]
    data_dir: PathBuf,
    /// The server's host name (greeting, certificate).
    #[arg(long, default_value = "localhost")]
    hostname: String,
    /// Address of the HTTPS listener; repeat for several.
    #[arg(long = "http-listen", default_value = "127.0.0.1:8443")]
    http_listen: Vec<String>,
    /// Address of the plain HTTP listener (ACME's HTTP-01, redirects to HTTPS; port 80 in
    /// production); repeat for several.
    #[arg(long = "http-plain-listen", default_value = "127.0.0.1:8080")]
    http_plain_listen: Vec<String>,
    /// Address of the MX (SMTP); repeat for several.
    #[arg(long = "smtp-listen", default_value = "127.0.0.1:2525")]
    smtp_listen: Vec<String>,
    /// Address of submission with STARTTLS (agents send mail); repeat for several.
    #[arg(long = "submission-listen", default_value = "127.0.0.1:5587")]
    submission_listen: Vec<String>,
    /// Address of submission over TLS; repeat for several.
    #[arg(long = "submissions-listen", default_value = "127.0.0.1:5465")]
    submissions_listen: Vec<String>,
    /// Address of IMAP with STARTTLS; repeat for several.
    #[arg(long = "imap-listen", default_value = "127.0.0.1:1143")]
    imap_listen: Vec<String>,
    /// Address of IMAP over TLS; repeat for several.
    #[arg(long = "imaps-listen", default_value = "127.0.0.1:1993")]
    imaps_listen: Vec<String>,
    /// Also create a demo tenant (`demo`, domain `demo.test`) with an account to log into.
    #[arg(long)]
    demo: bool,
    /// Store everything in PostgreSQL at this URL instead of the embedded RocksDB
    /// (`store.backend = "postgresql"`, docs/postgresql.md). Keep the password out of it:
    /// PGPASSWORD or PGPASSFILE are read.
    #[arg(long, value_name = "URL")]
    store_url: Option<String>,
    /// With --store-url: the schema of Hameau's tables (default "hameau").
    #[arg(long, value_name = "NAME", requires = "store_url")]
    store_schema: Option<String>,
}

pub fn run(args: &InitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize().with_context(|| format!("resolving {}", args.data_dir.display()))?;
    restrict(&data_dir)?;
    let config_path = data_dir.join("hameau.toml");
    if config_path.exists() {
        anyhow::bail!("{} already exists: this data directory is initialised", config_path.display());
    }
    let text = config_text(args)?;
    // The file must load as it will at `serve`.
    let config = Config::parse(&config_path, &text)?;
    super::check_data_dir(&config)?;
    let cert_path = config.certificate_path();
    if !cert_path.exists() {
        super::tls::write_self_signed(&args.hostname, &cert_path, &config.private_key_path())?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (operator_token, demo) = runtime.block_on(first_records(&config, args.demo))?;
    write_private(&config_path, text.as_bytes())?;
    println!("Hameau data directory ready: {}", data_dir.display());
    println!("  configuration: {}", config_path.display());
    println!("  certificate:   {} (self-signed, for first use)", cert_path.display());
    match config.store.backend {
        hameau_store::BackendKind::Postgresql => {
            println!("  store:         PostgreSQL, schema {:?}", config.store.schema)
        }
        _ => println!("  store:         {} (RocksDB)", config.store_path().display()),
    }
    println!("Operator API key (shown this once; keep it safe):");
    println!("  {operator_token}");
    if let Some((address, password)) = demo {
        println!("Demo tenant `demo`, domain demo.test; log in as:");
        println!("  {address}  password: {password}");
        let imaps = args.imaps_listen.first().map_or("", String::as_str);
        println!("  over IMAP with TLS at {imaps} (self-signed certificate), e.g. in Thunderbird");
    }
    println!("Start Hameau with:");
    println!("  hameau serve --config {}", config_path.display());
    Ok(())
}

/// The first operator API key and, with `demo`, a demo tenant; returns the key's token
/// and the demo account's address and password.
async fn first_records(config: &Config, demo: bool) -> anyhow::Result<(String, Option<(String, String)>)> {
    use hameau_directory::{AccountRole, Directory, KeyScope, NewAccount, NewApiKey, NewDomain, NewTenant, Principal};
    let store = hameau_store::Store::open(&config.store).await?;
    let directory = Directory::new(store.clone(), config.directory.clone());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let operator = Principal::Operator;
    let key =
        NewApiKey { name: "first operator key (hameau init)".into(), scope: KeyScope::Operator, expires_at: None };
    let (_, token) = directory.create_api_key(&operator, key, now).await?;
    let mut demo_login = None;
    if demo {
        let tenant = NewTenant {
            id: "demo".into(),
            name: "Commune de démonstration".into(),
            siren: None,
            insee: None,
            quota_bytes: None,
            accounts_max: None,
        };
        directory.create_tenant(&operator, tenant, now).await?;
        directory.create_domain(&operator, NewDomain { name: "demo.test".into(), tenant: "demo".into() }, now).await?;
        let password: String =
            (0..4).map(|_| format!("{:04}", rand::random_range(0..10_000))).collect::<Vec<_>>().join("-");
        let account = NewAccount {
            address: "agent@demo.test".into(),
            display_name: "Agent de démonstration".into(),
            password: Some(password.clone()),
            quota_bytes: None,
            enabled: true,
            role: AccountRole::TenantAdmin,
        };
        directory.create_account(&operator, account, now).await?;
        demo_login = Some(("agent@demo.test".to_string(), password));
    }
    store.close().await?;
    Ok((token, demo_login))
}

/// The shipped configuration with this directory's values; the data directory is the
/// configuration file's own directory, so the whole directory can be moved.
fn config_text(args: &InitArgs) -> anyhow::Result<String> {
    let listen: Vec<String> = args.http_listen.iter().map(|addr| format!("{addr:?}")).collect();
    let quoted = |addrs: &[String]| addrs.iter().map(|addr| format!("{addr:?}")).collect::<Vec<_>>().join(", ");
    let smtp_listen = quoted(&args.smtp_listen);
    let mut store = Vec::new();
    if let Some(url) = &args.store_url {
        store.push(("backend = \"rocksdb\"", "backend = \"postgresql\"".to_string()));
        store.push(("url = \"\"", format!("url = {url:?}")));
    }
    if let Some(schema) = &args.store_schema {
        store.push(("schema = \"hameau\"", format!("schema = {schema:?}")));
    }
    let replacements = [
        ("hostname = \"localhost\"", format!("hostname = {:?}", args.hostname)),
        ("data_dir = \"/var/lib/hameau\"", "data_dir = \".\"".to_string()),
        ("listen = [\"[::]:443\"]", format!("listen = [{}]", listen.join(", "))),
        ("listen_plain = [\"[::]:80\"]", format!("listen_plain = [{}]", quoted(&args.http_plain_listen))),
        ("listen = [\"[::]:25\"]", format!("listen = [{smtp_listen}]")),
        ("listen = [\"[::]:587\"]", format!("listen = [{}]", quoted(&args.submission_listen))),
        ("listen_tls = [\"[::]:465\"]", format!("listen_tls = [{}]", quoted(&args.submissions_listen))),
        ("listen = [\"[::]:143\"]", format!("listen = [{}]", quoted(&args.imap_listen))),
        ("listen_tls = [\"[::]:993\"]", format!("listen_tls = [{}]", quoted(&args.imaps_listen))),
        ("metrics_token = \"\"", format!("metrics_token = {:?}", random_token())),
    ];
    shipped_config_with(&[&replacements[..], &store].concat())
}

/// The shipped configuration with each `(from, to)` replaced once: the one way `init` and
/// `setup` write a configuration, so that both keep every comment of the shipped file.
pub fn shipped_config_with(replacements: &[(&str, String)]) -> anyhow::Result<String> {
    let mut text = SHIPPED_CONFIG.to_string();
    for (from, to) in replacements {
        anyhow::ensure!(text.contains(from), "the shipped configuration lacks {from}");
        text = text.replacen(from, to, 1);
    }
    Ok(text)
}

/// 32 random characters for the metrics token.
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..32).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// The data directory holds keys and mail: only its owner may enter it.
fn restrict(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

//! `hameau init`: a data directory ready to serve, with a configuration file that points
//! to it, a self-signed certificate for first use, and an empty store.

use std::path::PathBuf;

use anyhow::Context;
use hameau_config::Config;

/// The shipped default configuration, every key commented.
const SHIPPED_CONFIG: &str = include_str!("../../../config/hameau.toml");

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
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = hameau_store::Store::open(&config.store_options()).await?;
        store.close().await
    })?;
    std::fs::write(&config_path, text).with_context(|| format!("writing {}", config_path.display()))?;
    println!("Hameau data directory ready: {}", data_dir.display());
    println!("  configuration: {}", config_path.display());
    println!("  certificate:   {} (self-signed, for first use)", cert_path.display());
    println!("  store:         {} (RocksDB)", config.store_path().display());
    println!("Start Hameau with:");
    println!("  hameau serve --config {}", config_path.display());
    Ok(())
}

/// The shipped configuration with this directory's values; the data directory is the
/// configuration file's own directory, so the whole directory can be moved.
fn config_text(args: &InitArgs) -> anyhow::Result<String> {
    let listen: Vec<String> = args.http_listen.iter().map(|addr| format!("{addr:?}")).collect();
    let replacements = [
        ("hostname = \"localhost\"", format!("hostname = {:?}", args.hostname)),
        ("data_dir = \"/var/lib/hameau\"", "data_dir = \".\"".to_string()),
        ("listen = [\"[::]:443\"]", format!("listen = [{}]", listen.join(", "))),
    ];
    let mut text = SHIPPED_CONFIG.to_string();
    for (from, to) in replacements {
        anyhow::ensure!(text.contains(from), "the shipped configuration lacks {from}");
        text = text.replacen(from, &to, 1);
    }
    Ok(text)
}

/// The data directory holds keys and mail: only its owner may enter it.
fn restrict(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

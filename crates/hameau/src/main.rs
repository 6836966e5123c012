//! `hameau`: the command line and the wiring of every service. Argument parsing, the
//! environment, signals and the clock live here; everything else is in the crates.

mod init;
mod logging;
mod serve;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hameau_config::Config;

#[derive(Parser)]
#[command(name = "hameau", version, about = "A whole mail system for small municipalities, in one program")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a data directory: a configuration, a self-signed certificate, the store.
    Init(init::InitArgs),
    /// Starts every service and runs until SIGTERM or SIGINT.
    Serve {
        /// The configuration file. Without it, the built-in defaults apply.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Works with the configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Checks a configuration file and the data directory it names; prints one line.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => init::run(&args),
        Command::Serve { config } => load_config(config.as_deref()).and_then(serve::run),
        Command::Config { command: ConfigCommand::Check { config } } => check_config(config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("hameau: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration file, or takes the built-in defaults, and checks what the
/// configuration alone cannot: that the data directory is usable.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = match path {
        Some(path) => Config::load(path)?,
        None => Config::builtin(),
    };
    check_data_dir(&config)?;
    Ok(config)
}

fn check_config(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let config = load_config(path)?;
    match path {
        Some(path) => println!("{}: configuration OK", path.display()),
        None => println!("built-in configuration OK"),
    }
    drop(config);
    Ok(())
}

/// The data directory must exist (or be creatable) and be writable.
fn check_data_dir(config: &Config) -> Result<(), hameau_config::Error> {
    let dir = &config.server.data_dir;
    let probe = dir.join(format!(".hameau-write-check-{}", std::process::id()));
    let res = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe));
    res.map_err(|e| config.error("server.data_dir", format!("{} is not a writable directory: {e}", dir.display())))
}

//! `hameau`: the command line and the wiring of every service. Argument parsing, the
//! environment, signals and the clock live here; everything else is in the crates.

mod admin;
mod backup;
mod client;
mod cluster;
mod code_pages;
mod dnscheck;
mod export;
mod filter;
mod generate;
mod import;
mod init;
mod lang;
mod logging;
mod migrate_store;
mod sending;
mod serve;
mod setup;
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
    /// First run on a new server: configuration, commune, domain, admin, DNS zone to publish.
    Setup(setup::SetupArgs),
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
    /// Tenants (communes).
    Tenant {
        #[command(subcommand)]
        command: admin::TenantCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Domains of tenants.
    Domain {
        #[command(subcommand)]
        command: admin::DomainCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Accounts (mailboxes).
    Account {
        #[command(subcommand)]
        command: admin::AccountCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Aliases and shared addresses.
    Alias {
        #[command(subcommand)]
        command: admin::AliasCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// API keys.
    Apikey {
        #[command(subcommand)]
        command: admin::ApiKeyCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Application passwords of accounts.
    AppPassword {
        #[command(subcommand)]
        command: admin::AppPasswordCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// The outbound queue: messages waiting for delivery.
    Queue {
        #[command(subcommand)]
        command: admin::QueueCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// The filter's quarantine: messages held, not delivered (docs/quarantine.md).
    Quarantine {
        #[command(subcommand)]
        command: admin::QuarantineCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// The DNS records of a domain.
    Dns {
        #[command(subcommand)]
        command: DnsCommand,
        #[command(flatten)]
        target: admin::Target,
    },
    /// Backs the store up into a backup set (online with --url), or verifies one.
    Backup(backup::BackupArgs),
    /// Restores a backup into a new, empty data directory.
    Restore(backup::RestoreArgs),
    /// Moves the whole store to another backend (RocksDB to PostgreSQL, or back), checked by
    /// counts and hashes; the server stopped (docs/postgresql.md).
    MigrateStore(migrate_store::MigrateStoreArgs),
    /// Tenants over several database clusters: where each is, and moving one while the
    /// nodes serve (docs/storage.md).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Writes the mail of an account or a tenant as Maildir or mbox files (server stopped).
    Export(export::ExportArgs),
    /// Imports mail from an old IMAP server or from mbox/Maildir files into an account (the
    /// server stopped; a running server imports through /api/v1/imports); see docs/migration.md.
    Import {
        #[command(subcommand)]
        command: import::ImportCommand,
    },
    /// Seeds the spam classifier from mail files, or shows its score of a message (the
    /// server stopped; agents train it by moving mail into and out of Junk).
    Filter {
        #[command(subcommand)]
        command: filter::FilterCommand,
    },
    /// Writes the man pages or shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        command: generate::GenerateCommand,
    },
}

#[derive(Subcommand)]
enum DnsCommand {
    /// Prints the zone-file lines to publish for DOMAIN (with --json, the API's answer).
    Records {
        /// The domain (one of a tenant's).
        domain: String,
        /// The API's JSON answer instead of zone-file lines.
        #[arg(long)]
        json: bool,
    },
    /// Resolves DOMAIN's records and says which are right, wrong or missing, with a verdict
    /// against the RCPNT referential; exits 1 unless all required records are right.
    Check {
        /// The domain (one of a tenant's).
        domain: String,
        /// A resolver to ask (address:port), instead of dns.resolvers; repeat for several.
        #[arg(long)]
        resolver: Vec<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Checks a configuration file and the data directory it names; prints one line.
    Check {
        /// The configuration file (default: the built-in one).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => init::run(&args),
        // Setup says its errors itself, in the user's language.
        Command::Setup(args) => return setup::run(&args),
        // Import exits 3 when incomplete (its report says what is missing).
        Command::Import { command } => return import::run(command),
        Command::Serve { config } => load_config(config.as_deref()).and_then(serve::run),
        Command::Config { command: ConfigCommand::Check { config } } => check_config(config.as_deref()),
        Command::Tenant { command, target } => admin::tenant_call(command).and_then(|call| client::run(&target, call)),
        Command::Domain { command, target } => admin::domain_call(command).and_then(|call| client::run(&target, call)),
        Command::Account { command, target } => {
            admin::account_call(command).and_then(|call| client::run(&target, call))
        }
        Command::Alias { command, target } => admin::alias_call(command).and_then(|call| client::run(&target, call)),
        Command::Apikey { command, target } => admin::api_key_call(command).and_then(|call| client::run(&target, call)),
        Command::AppPassword { command, target } => {
            admin::app_password_call(command).and_then(|call| client::run(&target, call))
        }
        Command::Queue { command, target } => admin::queue_call(command).and_then(|call| client::run(&target, call)),
        Command::Quarantine { command, target } => client::run_quarantine(&target, command),
        Command::Dns { command: DnsCommand::Records { domain, json }, target } => {
            client::run_dns_records(&target, &domain, json)
        }
        Command::Dns { command: DnsCommand::Check { domain, resolver }, target } => {
            client::run_dns_check(&target, &domain, resolver)
        }
        Command::Backup(args) => backup::run(args),
        Command::Restore(args) => backup::restore(&args),
        Command::MigrateStore(args) => migrate_store::run(&args),
        Command::Cluster { command } => cluster::run(command),
        Command::Export(args) => export::run(&args),
        Command::Filter { command } => filter::run(command),
        Command::Generate { command } => generate::run(command, <Cli as clap::CommandFactory>::command()),
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

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every command and every argument says what it is in `--help`: a sysadmin reads
    /// `hameau account --help`, not the source.
    #[test]
    fn every_command_and_argument_has_help() {
        let mut missing = Vec::new();
        // A loop over an explicit stack: the tree is ours, but no recursion all the same.
        let mut stack = vec![(String::from("hameau"), super::Cli::command())];
        while let Some((path, command)) = stack.pop() {
            if path != "hameau" && command.get_about().is_none() && command.get_long_about().is_none() {
                missing.push(path.clone());
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} <{id}>"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    stack.push((format!("{path} {}", sub.get_name()), sub.clone()));
                }
            }
        }
        missing.sort();
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }
}

//! Tenants over several database clusters (`[store.clusters]`, docs/storage.md): opening
//! the clusters beside the control store for the mail model, and `hameau cluster list|move`.
//! The move runs in this process while the nodes serve: it opens the control store and the
//! clusters as one more node does, and the nodes hear of each step through the placement
//! map's notifications.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use hameau_config::Config;
use hameau_directory::Directory;
use hameau_http::api::clusters::DirectoryTenants;
use hameau_mailbox::Mail;
use hameau_store::Store;
use hameau_store::placement::Clusters;

/// `hameau cluster`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Lists the clusters and where each tenant's mail is.
    List {
        /// The configuration (with its [store.clusters]).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Moves a tenant's mail to another cluster while the nodes serve; its mail waits
    /// (store.move_wait_ms) during the copy, which is checked by counts and hashes.
    Move(MoveArgs),
}

/// `hameau cluster move`.
#[derive(Args, Debug)]
pub struct MoveArgs {
    /// The tenant.
    pub tenant: String,
    /// The cluster to move it to: a name of [store.clusters], or "main" (the control store).
    pub cluster: String,
    /// How long the copy left behind stays, for the nodes to hear of the move before it is
    /// removed (0 to 3600 s).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=hameau_http::api::clusters::GRACE_S_MAX))]
    pub grace_s: u64,
    /// The configuration (with its [store.clusters]).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// The mail model of a process that serves (or administers) the installation: over the
/// clusters when `[store.clusters]` names some.
pub async fn mail(config: &Config, store: &Store, directory: &Directory) -> anyhow::Result<Mail> {
    let mail = Mail::with_limits(store.clone(), config.mail.clone());
    Ok(match clusters(config, store).await? {
        None => mail,
        Some(clusters) => mail.with_placement(clusters, Arc::new(DirectoryTenants(directory.clone()))),
    })
}

/// The clusters of `[store.clusters]` beside the control store `store`; `None` without any.
pub async fn clusters(config: &Config, store: &Store) -> anyhow::Result<Option<Clusters>> {
    if config.store.clusters.is_empty() {
        return Ok(None);
    }
    let mut others = BTreeMap::new();
    for name in config.store.clusters.keys() {
        let options = config.store.cluster(name).context("a cluster named in the configuration")?;
        let cluster = Store::open(&options).await.with_context(|| format!("opening the store of cluster {name}"))?;
        others.insert(name.clone(), cluster);
    }
    let move_wait = Duration::from_millis(config.store.move_wait_ms);
    Ok(Some(Clusters::new(store.clone(), others, move_wait).await?))
}

/// Refuses a command that reads or writes one store's mail when the mail is spread over
/// several clusters (it would see only part of it).
pub fn refuse_clusters(config: &Config, command: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.store.clusters.is_empty(),
        "« hameau {command} » ne sait pas encore traiter un courrier réparti sur plusieurs grappes \
         ([store.clusters]) / `hameau {command}` does not handle mail spread over several clusters \
         ([store.clusters]) yet: see docs/storage.md"
    );
    Ok(())
}

pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let config = match &command {
        ClusterCommand::List { config } | ClusterCommand::Move(MoveArgs { config, .. }) => {
            crate::load_config(config.as_deref())?
        }
    };
    anyhow::ensure!(
        !config.store.clusters.is_empty(),
        "aucune grappe n'est configurée ([store.clusters]) / no cluster is configured ([store.clusters])"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(&config.store).await.context("opening the control store")?;
        let clusters = clusters(&config, &store).await?.context("clusters")?;
        let directory = Directory::new(store.clone(), config.directory.clone());
        match command {
            ClusterCommand::List { .. } => list(&clusters, &directory).await,
            ClusterCommand::Move(args) => {
                let mail = Mail::with_limits(store.clone(), config.mail.clone())
                    .with_placement(clusters, Arc::new(DirectoryTenants(directory.clone())));
                let report = move_tenant(&mail, &directory, &args.tenant, &args.cluster, args.grace_s).await?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
            }
        }
    })
}

async fn list(clusters: &Clusters, directory: &Directory) -> anyhow::Result<()> {
    let map = hameau_http::api::clusters::placements(clusters, directory).await?;
    println!("{}", serde_json::to_string_pretty(&map)?);
    Ok(())
}

/// Moves `tenant` to the cluster `to`, as `POST /api/v1/tenants/{id}/move` does.
async fn move_tenant(
    mail: &Mail,
    directory: &Directory,
    tenant: &str,
    to: &str,
    grace_s: u64,
) -> anyhow::Result<hameau_mailbox::MoveReport> {
    directory
        .get_tenant(&hameau_directory::Principal::Operator, tenant)
        .await
        .with_context(|| format!("tenant {tenant}"))?;
    Ok(hameau_http::api::clusters::move_tenant(mail, tenant, to, Duration::from_secs(grace_s)).await?)
}

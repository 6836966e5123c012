//! `hameau migrate-store`: moves a whole installation's store to another backend (RocksDB to
//! PostgreSQL, or back), the server stopped, and checks the copy by counts and hashes
//! (`hameau_store::copy`). docs/postgresql.md says when and how.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use hameau_store::{BackendKind, Options, Store};

/// `hameau migrate-store`.
#[derive(Args, Debug)]
pub struct MigrateStoreArgs {
    /// The store to copy: `rocksdb:DIR` (the data directory, or its `store` directory) or
    /// `postgresql:URL`. Without it, the store of --config.
    #[arg(long, value_name = "BACKEND:WHERE", required_unless_present = "config")]
    pub from: Option<String>,
    /// Where to copy it, which must be empty: `postgresql:URL` (the schema is made) or
    /// `rocksdb:DIR` (a new store directory).
    #[arg(long, value_name = "BACKEND:WHERE")]
    pub to: String,
    /// The PostgreSQL schema of --from (default: "hameau", or the configuration's).
    #[arg(long, value_name = "NAME")]
    pub from_schema: Option<String>,
    /// The PostgreSQL schema of --to (default "hameau").
    #[arg(long, value_name = "NAME")]
    pub to_schema: Option<String>,
    /// The server's configuration: its [store] limits apply to both stores, and its store
    /// is the source when --from is not given.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

pub fn run(args: &MigrateStoreArgs) -> anyhow::Result<()> {
    let config = args.config.as_deref().map(hameau_config::Config::load).transpose()?;
    if let Some(config) = &config {
        crate::cluster::refuse_clusters(config, "migrate-store")?;
    }
    let base = config.as_ref().map_or_else(Options::default, |config| config.store.clone());
    let from = match &args.from {
        Some(spec) => parse(spec, &base, args.from_schema.as_deref(), Side::From)?,
        None => {
            let mut options = base.clone();
            if let Some(schema) = &args.from_schema {
                options.schema = schema.clone();
            }
            options
        }
    };
    let to = parse(&args.to, &base, args.to_schema.as_deref(), Side::To)?;
    anyhow::ensure!(
        !(from.backend == to.backend
            && from.path == to.path
            && from.url.as_str() == to.url.as_str()
            && from.schema == to.schema),
        "la source et la destination sont le même magasin / the source and the destination are the same store"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let made_dir = (to.backend == BackendKind::Rocksdb).then(|| to.path.clone());
    let result = runtime.block_on(async {
        let source = Store::open(&from).await.map_err(|e| stopped_first(e, &from))?;
        let destination = match Store::open(&to).await {
            Ok(store) => store,
            Err(e) => {
                source.close().await?;
                return Err(anyhow::Error::from(e).context(format!("opening the destination {}", shown(&to))));
            }
        };
        let copied = hameau_store::copy::copy(&source, &destination, |progress| {
            if progress.verifying {
                eprintln!(
                    "copie faite ; relecture et vérification de la destination / copy done; reading the destination back to check it"
                );
            } else {
                eprintln!(
                    "copié : {} clés, {} objets ({} Mo) / copied: {} keys, {} blobs ({} MB)",
                    progress.keys,
                    progress.blobs,
                    progress.blob_bytes >> 20,
                    progress.keys,
                    progress.blobs,
                    progress.blob_bytes >> 20
                );
            }
        })
        .await;
        source.close().await?;
        destination.close().await?;
        anyhow::Ok(copied)
    });
    let digest = match result {
        Ok(Ok(digest)) => digest,
        Ok(Err(e)) => {
            // A destination directory made here holds half a copy: it goes. A PostgreSQL
            // schema is the DBA's to drop (it may hold other objects).
            if let Some(dir) = &made_dir
                && !matches!(e, hameau_store::Error::NotEmpty)
            {
                let _ = std::fs::remove_dir_all(dir);
            }
            let advice = match (&e, to.backend) {
                (hameau_store::Error::NotEmpty, _) => String::new(),
                (_, BackendKind::Postgresql) => format!(
                    "; la copie partielle est dans le schéma {0:?} : supprimez-le (DROP SCHEMA {0} CASCADE) avant de recommencer / \
                     the partial copy is in schema {0:?}: drop it (DROP SCHEMA {0} CASCADE) before trying again",
                    to.schema
                ),
                _ => String::new(),
            };
            return Err(anyhow::Error::from(e).context(format!("copying into {}{advice}", shown(&to))));
        }
        Err(e) => {
            if let Some(dir) = &made_dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    println!("{}", serde_json::to_string_pretty(&digest)?);
    let settings = match to.backend {
        BackendKind::Postgresql => {
            format!("[store] backend = \"postgresql\", url = \"<URL>\", schema = {:?}", to.schema)
        }
        _ => format!("[store] backend = \"rocksdb\" (server.data_dir: the directory holding {})", to.path.display()),
    };
    eprintln!(
        "vérifié : {keys} clés et {blobs} objets identiques des deux côtés. Mettez {settings} dans la configuration, puis hameau serve / \
         checked: {keys} keys and {blobs} blobs the same on both sides. Set {settings} in the configuration, then hameau serve",
        keys = digest.keys,
        blobs = digest.blobs,
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    From,
    To,
}

/// `rocksdb:DIR` or `postgresql:URL` as store options, with the limits of `base`.
fn parse(spec: &str, base: &Options, schema: Option<&str>, side: Side) -> anyhow::Result<Options> {
    let (backend, place) = spec.split_once(':').with_context(|| {
        format!("{spec:?}: écrivez rocksdb:RÉPERTOIRE ou postgresql:URL / write rocksdb:DIR or postgresql:URL")
    })?;
    let mut options = match backend {
        "rocksdb" => Options::rocksdb(rocksdb_dir(Path::new(place), side)?),
        "postgresql" | "postgres" => Options::postgresql(place),
        _ => anyhow::bail!(
            "{backend:?} : magasin inconnu, rocksdb ou postgresql / {backend:?}: unknown store, rocksdb or postgresql"
        ),
    };
    options.limits = base.limits.clone();
    options.cache_bytes = base.cache_bytes;
    options.pool_connections = base.pool_connections;
    if let Some(schema) = schema {
        options.schema = schema.to_string();
    }
    options.check().map_err(|problem| anyhow::anyhow!("{problem}"))?;
    Ok(options)
}

/// The RocksDB store directory `dir` names: itself, or a data directory's `store`. A source
/// must hold a store (opening would make an empty one); a destination must be new or empty.
fn rocksdb_dir(dir: &Path, side: Side) -> anyhow::Result<PathBuf> {
    let is_store = |dir: &Path| dir.join("CURRENT").is_file();
    match side {
        Side::From if is_store(dir) => Ok(dir.to_path_buf()),
        Side::From if is_store(&dir.join("store")) => Ok(dir.join("store")),
        Side::From => anyhow::bail!(
            "{0} : pas de magasin RocksDB ici (ni dans {0}/store) / {0}: no RocksDB store here (nor in {0}/store)",
            dir.display()
        ),
        Side::To => {
            let not_empty = std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()).unwrap_or(false);
            anyhow::ensure!(
                !not_empty,
                "{0} n'est pas vide : la copie se fait dans un répertoire neuf / {0} is not empty: copy into a new directory",
                dir.display()
            );
            Ok(dir.to_path_buf())
        }
    }
}

/// A store for messages: its directory, or its URL without the password, and schema.
fn shown(options: &Options) -> String {
    match options.backend {
        BackendKind::Postgresql => format!("{:?} (schema {})", options.url, options.schema),
        _ => options.path.display().to_string(),
    }
}

/// A source RocksDB store held by a running server: say to stop it first.
fn stopped_first(e: hameau_store::Error, from: &Options) -> anyhow::Error {
    let locked = matches!(e, hameau_store::Error::Locked(_));
    let e = anyhow::Error::from(e).context(format!("opening the source {}", shown(from)));
    if locked {
        e.context("arrêtez hameau d'abord (systemctl stop hameau) / stop hameau first (systemctl stop hameau)")
    } else {
        e
    }
}

//! `hameau filter learn|seed|score`: seeds the shared classifier (or one tenant's) from mail
//! files, and shows what it says of a message, on the local data directory with the
//! server stopped (the store has one user). The classifier is `hameau_filter::learning`;
//! here are the arguments, the reading of the files and the wiring of the trainer that
//! `serve` registers on the mail model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use hameau_directory::{Directory, Principal};
use hameau_filter::bayes::Totals;
use hameau_filter::bayes::seeding::{self, Seeding};
use hameau_filter::learning::{Classifier, Learnt};
use hameau_mailfile::{Format, mbox::Quoting};
use hameau_store::BlobHash;

#[derive(Subcommand, Debug)]
pub enum FilterCommand {
    /// Teaches the classifier messages known to be spam or ham: mbox files, Maildirs, or
    /// message files (.eml, or a directory of them). Without --tenant, the shared
    /// classifier every tenant starts from. Learning a message again changes nothing.
    Learn(LearnArgs),
    /// Seeds the classifier (the shared one, or --tenant's) from labelled mail the way its
    /// agents teach it: spam and ham mixed in a fixed order, each message learnt only
    /// where the classifier does not already judge it right with near certainty, again
    /// until a pass over the corpus learns nothing (at most 5 passes). It loses fewer
    /// hams than `learn` of every message (docs/filter-learning.md).
    Seed(SeedArgs),
    /// Prints the classifier's spam probability of a message file (for a tenant: its
    /// counts and the shared ones).
    Score(ScoreArgs),
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("class").required(true).args(["spam", "ham"])))]
pub struct LearnArgs {
    /// The messages are spam.
    #[arg(long)]
    spam: bool,
    /// The messages are ham (wanted mail).
    #[arg(long)]
    ham: bool,
    /// The tenant whose classifier learns (default: the shared one).
    #[arg(long)]
    tenant: Option<String>,
    /// The files: mbox files, Maildirs, message files, directories of message files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// Spam: an mbox file, a Maildir, a message file or a directory of them (repeat the
    /// option for several).
    #[arg(long, required = true, value_name = "PATH")]
    spam: Vec<PathBuf>,
    /// Ham (wanted mail), the same kinds (repeat the option for several).
    #[arg(long, required = true, value_name = "PATH")]
    ham: Vec<PathBuf>,
    /// The tenant whose classifier learns (default: the shared one).
    #[arg(long)]
    tenant: Option<String>,
    /// The memory the corpus may take between passes, in MiB: each message is held as
    /// its tokens (about 3 KiB, at most 8 bytes × filter.bayes_tokens_max). Past it,
    /// nothing is learnt.
    #[arg(long, default_value_t = SEED_HELD_MIB_DEFAULT, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    held_mib_max: u64,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// `filter seed --held-mib-max`'s default: 1 GiB, some 300,000 messages.
const SEED_HELD_MIB_DEFAULT: u64 = 1024;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The tenant whose classifier scores (default: the shared one alone).
    #[arg(long)]
    tenant: Option<String>,
    /// A message file (RFC 5322).
    file: PathBuf,
    /// The configuration of the local data directory (default: the built-in one).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(command: FilterCommand) -> anyhow::Result<()> {
    match command {
        FilterCommand::Learn(args) => learn(&args),
        FilterCommand::Seed(args) => seed(&args),
        FilterCommand::Score(args) => score(&args),
    }
}

/// What one `learn` did.
#[derive(Clone, Copy, Default)]
struct Tally {
    new: u64,
    retrained: u64,
    known: u64,
    skipped: u64,
}

impl Tally {
    fn count(&mut self, learning: hameau_filter::learning::Learning) {
        match learning.learnt {
            Learnt::New => self.new += 1,
            Learnt::Retrained => self.retrained += 1,
            Learnt::AlreadyKnown => self.known += 1,
        }
    }
}

/// Learnings in flight at once: each is one synced commit, and concurrent commits share a
/// sync (the store's group commit); 8 keeps two cores busy without holding more than 8
/// messages in memory.
const LEARNINGS_CONCURRENT_MAX: usize = 8;

fn learn(args: &LearnArgs) -> anyhow::Result<()> {
    ensure_found(&args.paths)?;
    crate::import::with_store(args.config.as_deref(), |config, store| async move {
        check_tenant(&config, &store, args.tenant.as_deref()).await?;
        let classifier = Classifier::new(store.clone(), config.filter.limits.clone());
        let limits = &config.migrate.files;
        let (mut tally, mut skipped) = (Tally::default(), 0);
        let mut running = tokio::task::JoinSet::new();
        for path in &args.paths {
            for raw in readable(path, limits, &mut skipped)? {
                while running.len() >= LEARNINGS_CONCURRENT_MAX {
                    let Some(done) = running.join_next().await else { break };
                    tally.count(done.context("a learning stopped")??);
                }
                let (classifier, tenant, spam) = (classifier.clone(), args.tenant.clone(), args.spam);
                running.spawn(async move { classifier.train(tenant.as_deref(), &raw, spam).await });
            }
        }
        while let Some(done) = running.join_next().await {
            tally.count(done.context("a learning stopped")??);
        }
        tally.skipped = skipped;
        let (class_fr, class_en) = if args.spam { ("spam", "spam") } else { ("légitimes", "ham") };
        let Tally { new, retrained, known, skipped } = tally;
        let learnt = new + retrained;
        println!(
            "appris : {learnt} messages comme {class_fr} ({retrained} réappris dans l'autre sens), {known} déjà \
             connus, {skipped} ignorés / learnt: {learnt} messages as {class_en} ({retrained} retrained the other \
             way), {known} already known, {skipped} skipped"
        );
        print_state(&classifier, args.tenant.as_deref()).await?;
        Ok(())
    })
}

fn seed(args: &SeedArgs) -> anyhow::Result<()> {
    ensure_found(&args.spam)?;
    ensure_found(&args.ham)?;
    crate::import::with_store(args.config.as_deref(), |config, store| async move {
        check_tenant(&config, &store, args.tenant.as_deref()).await?;
        let tenant = args.tenant.as_deref();
        // The seeding judges from one message of each class learnt (`judging`); the MX
        // waits for `filter.bayes_min_messages`.
        let classifier = Classifier::new(store.clone(), seeding::judging(&config.filter.limits));
        let held_max = args.held_mib_max.saturating_mul(1 << 20);
        let (mut corpus, mut classes, mut held, mut skipped) = (Vec::new(), Vec::new(), 0u64, 0u64);
        for (paths, spam) in [(&args.spam, true), (&args.ham, false)] {
            for path in paths {
                for raw in readable(path, &config.migrate.files, &mut skipped)? {
                    let tokens = hameau_filter::bayes::tokens(&raw, classifier.limits());
                    held += 8 * tokens.len() as u64 + 64;
                    anyhow::ensure!(
                        held <= held_max,
                        "le corpus dépasse {} Mio une fois lu (--held-mib-max) : rien n'est appris ; coupez-le ou \
                         relevez la borne / the corpus takes over {} MiB once read (--held-mib-max): nothing is \
                         learnt; split it or raise the bound",
                        args.held_mib_max,
                        args.held_mib_max
                    );
                    corpus.push((tokens, BlobHash::of(&raw)));
                    classes.push(spam);
                }
            }
        }
        let mut seeding = Seeding::new(classes);
        let (mut learnt, mut known) = ([0u64; 2], 0u64);
        while let Some(index) = seeding.next() {
            let (tokens, hash) = &corpus[index];
            let probability = classifier.score_tokens(tenant, || tokens.clone()).await?;
            if seeding.learn(index, probability) {
                let spam = seeding.is_spam(index);
                match classifier.train_tokens(tenant, tokens.clone(), *hash, spam).await?.learnt {
                    Learnt::New | Learnt::Retrained => learnt[usize::from(spam)] += 1,
                    Learnt::AlreadyKnown => known += 1,
                }
            }
        }
        let ([ham, spam], n, passes) = (learnt, corpus.len(), seeding.passes());
        let right = n as u64 - ham - spam - known;
        println!(
            "appris : {} messages sur {n} ({spam} spam, {ham} légitimes), {known} déjà connus, {right} déjà bien \
             jugés, en {passes} passages ; {skipped} ignorés / learnt: {} of {n} messages ({spam} spam, {ham} ham), \
             {known} already known, {right} already judged right, in {passes} passes; {skipped} skipped",
            spam + ham,
            spam + ham
        );
        let mut totals = print_state(&classifier, tenant).await?;
        let min = config.filter.limits.bayes_min_messages;
        if tenant.is_some() {
            let shared = classifier.totals(None).await?;
            totals.spam += shared.spam;
            totals.ham += shared.ham;
        }
        if totals.spam < min || totals.ham < min {
            println!(
                "attention : le MX ne note qu'à partir de {min} messages appris de chaque sorte \
                 (filter.bayes_min_messages) ; donnez un corpus plus grand, ou baissez ce réglage / warning: the MX \
                 scores only from {min} messages learnt of each class (filter.bayes_min_messages); give a larger \
                 corpus, or lower that setting"
            );
        }
        Ok(())
    })
}

fn score(args: &ScoreArgs) -> anyhow::Result<()> {
    let raw = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    crate::import::with_store(args.config.as_deref(), |config, store| async move {
        check_tenant(&config, &store, args.tenant.as_deref()).await?;
        let classifier = Classifier::new(store.clone(), config.filter.limits.clone());
        match classifier.score(args.tenant.as_deref(), &raw).await? {
            Some(probability) => {
                println!("probabilité de spam / spam probability: {probability:.4}");
                if let Some(symbol) = hameau_filter::bayes::symbol(probability) {
                    println!("symbole / symbol: {}({:.2})", symbol.name, symbol.score);
                }
            }
            None => println!(
                "pas assez appris pour noter (filter.bayes_min_messages = {} de chaque) / not trained enough to \
                 score (filter.bayes_min_messages = {} of each)",
                classifier.limits().bayes_min_messages,
                classifier.limits().bayes_min_messages
            ),
        }
        print_state(&classifier, args.tenant.as_deref()).await?;
        Ok(())
    })
}

/// Prints the classifier's totals, French then English, and returns them.
async fn print_state(classifier: &Classifier, tenant: Option<&str>) -> anyhow::Result<Totals> {
    let totals = classifier.totals(tenant).await?;
    let tokens = classifier.token_count(tenant).await?;
    let (which_fr, which_en) = match tenant {
        Some(tenant) => (format!("de {tenant}"), format!("{tenant}'s")),
        None => ("partagé".to_string(), "shared".to_string()),
    };
    println!(
        "classifieur {which_fr} : {} spam, {} légitimes, {tokens} mots / {which_en} classifier: {} spam, {} ham, \
         {tokens} tokens",
        totals.spam, totals.ham, totals.spam, totals.ham
    );
    Ok(totals)
}

/// Every path named on the command line exists.
fn ensure_found(paths: &[PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        anyhow::ensure!(path.exists(), "{} : introuvable / not found", path.display());
    }
    Ok(())
}

/// The messages at `path` ([`messages`]) that could be read; each one that could not is
/// said on stderr and counted in `skipped`.
fn readable<'a>(
    path: &Path,
    limits: &hameau_mailfile::Limits,
    skipped: &'a mut u64,
) -> anyhow::Result<impl Iterator<Item = Vec<u8>> + 'a> {
    Ok(messages(path, limits)?.filter_map(move |message| match message {
        Ok(raw) => Some(raw),
        Err(why) => {
            eprintln!("ignoré / skipped: {why}");
            *skipped += 1;
            None
        }
    }))
}

/// A tenant named on the command line must exist: a typo would train a classifier
/// nobody reads.
async fn check_tenant(
    config: &hameau_config::Config,
    store: &hameau_store::Store,
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(tenant) = tenant {
        let directory = Directory::new(store.clone(), config.directory.clone());
        directory
            .get_tenant(&Principal::Operator, tenant)
            .await
            .with_context(|| format!("la collectivité {tenant} / the tenant {tenant}"))?;
    }
    Ok(())
}

/// The messages at `path`, each its bytes or why it was skipped: a Maildir (a directory
/// with `cur/` or `new/`), an mbox file (it starts with `From `), a message file, or a
/// directory of mbox and message files (not its subdirectories).
fn messages(
    path: &Path,
    limits: &hameau_mailfile::Limits,
) -> anyhow::Result<Box<dyn Iterator<Item = Result<Vec<u8>, String>>>> {
    if path.is_dir() {
        if path.join("cur").is_dir() || path.join("new").is_dir() {
            return folders(path, Format::Maildir, limits);
        }
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        let mut all: Box<dyn Iterator<Item = Result<Vec<u8>, String>>> = Box::new(std::iter::empty());
        for file in files {
            all = Box::new(all.chain(file_messages(&file, limits)?));
        }
        return Ok(all);
    }
    file_messages(path, limits)
}

/// An mbox file's messages, or the file as one message.
fn file_messages(
    path: &Path,
    limits: &hameau_mailfile::Limits,
) -> anyhow::Result<Box<dyn Iterator<Item = Result<Vec<u8>, String>>>> {
    let mut start = [0u8; 5];
    let n = {
        use std::io::Read;
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.read(&mut start).unwrap_or(0)
    };
    if &start[..n] == b"From " {
        return folders(path, Format::Mbox(Quoting::Mboxrd), limits);
    }
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    if size > limits.message_bytes_max {
        let max = limits.message_bytes_max;
        return Ok(Box::new(std::iter::once(Err(format!("{}: {size} bytes > {max}", path.display())))));
    }
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Box::new(std::iter::once(Ok(raw))))
}

/// Every message of every folder that `hameau_mailfile` reads at `path`.
fn folders(
    path: &Path,
    format: Format,
    limits: &hameau_mailfile::Limits,
) -> anyhow::Result<Box<dyn Iterator<Item = Result<Vec<u8>, String>>>> {
    let folders = hameau_mailfile::open(path, format, limits).with_context(|| format!("reading {}", path.display()))?;
    Ok(Box::new(folders.flat_map(|folder| -> Box<dyn Iterator<Item = Result<Vec<u8>, String>>> {
        match folder {
            Ok(folder) => Box::new(folder.messages.map(|message| {
                message.map(|message| message.raw).map_err(|skip| format!("{}: {:?}", skip.location, skip.reason))
            })),
            Err(skip) => Box::new(std::iter::once(Err(format!("{}: {:?}", skip.location, skip.reason)))),
        }
    })))
}

/// The trainer `serve` registers on the mail model: the agents' moves into and out of
/// Junk train their tenant's classifier (the MX's own, so that its scores see them at
/// once); `None` when the filter is off.
pub fn trainer(
    config: &hameau_config::Config,
    store: &hameau_store::Store,
    classifier: Classifier,
) -> Option<Arc<hameau_filter::trainer::Trainer>> {
    if !config.filter.enabled {
        return None;
    }
    Some(hameau_filter::trainer::Trainer::start(classifier, Arc::new(AccountTenants(store.clone()))))
}

/// An account's tenant, read from its directory record (whose owner is its tenant).
#[derive(Debug)]
struct AccountTenants(hameau_store::Store);

#[async_trait::async_trait]
impl hameau_filter::trainer::Tenants for AccountTenants {
    async fn tenant_of(&self, account: u64) -> Option<String> {
        let key = hameau_directory::account_record_key(account);
        let entry = self.0.get(&key).await.ok()??;
        match hameau_directory::record_owner(&key, &entry.value)? {
            hameau_directory::RecordOwner::Tenant(tenant) => Some(tenant),
            _ => None,
        }
    }
}

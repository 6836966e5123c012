//! The learner the mail model tells of the agents' judgements ([`hameau_mailbox::JunkLearner`]):
//! a bounded queue and one task that reads each judged message and trains its tenant's
//! classifier. Training never delays or fails the IMAP command: [`Trainer::learn`] only
//! queues, and a judgement that finds the queue full
//! ([`crate::Limits::bayes_learn_queue_max`]) is dropped with a warning. Judgements still
//! queued when the server stops are not learnt: a judgement is no acknowledged write, and
//! the agent's next ones teach the same (docs/filter-learning.md).

use std::sync::Arc;

use hameau_mailbox::{AccountId, Judgement, JunkLearner};
use tokio::sync::mpsc;

use crate::learning::{Classifier, Learnt};

/// The tenant of an account, for a judged email whose record does not say it (mail
/// imported before the tenant was recorded). The binary answers from the directory.
#[async_trait::async_trait]
pub trait Tenants: Send + Sync + std::fmt::Debug + 'static {
    async fn tenant_of(&self, account: AccountId) -> Option<String>;
}

/// The queue's sending end; the task ends when every clone of the mail model (which holds
/// the trainer) is dropped.
#[derive(Debug)]
pub struct Trainer {
    queue: mpsc::Sender<Judgement>,
}

impl Trainer {
    /// Starts the training task on the current tokio runtime.
    pub fn start(classifier: Classifier, tenants: Arc<dyn Tenants>) -> Arc<Trainer> {
        let (queue, judgements) = mpsc::channel(classifier.limits().bayes_learn_queue_max);
        tokio::spawn(run(classifier, tenants, judgements));
        Arc::new(Trainer { queue })
    }
}

impl JunkLearner for Trainer {
    fn learn(&self, judgement: Judgement) {
        if let Err(e) = self.queue.try_send(judgement) {
            let (account, email) = match &e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => (j.account, j.email),
            };
            tracing::warn!(
                account,
                email,
                "a judgement of junk is not learnt: the queue is full (filter.bayes_learn_queue_max) or stopped"
            );
        }
    }
}

async fn run(classifier: Classifier, tenants: Arc<dyn Tenants>, mut judgements: mpsc::Receiver<Judgement>) {
    while let Some(judgement) = judgements.recv().await {
        let (account, email, spam) = (judgement.account, judgement.email, judgement.spam);
        match learn(&classifier, tenants.as_ref(), judgement).await {
            Ok(Some((tenant, learning))) => tracing::info!(
                account,
                email,
                tenant,
                spam,
                retrained = learning.learnt == Learnt::Retrained,
                already_known = learning.learnt == Learnt::AlreadyKnown,
                tokens = learning.tokens,
                "classifier learnt an agent's judgement"
            ),
            Ok(None) => tracing::debug!(account, email, "judged message gone or without tenant: not learnt"),
            Err(e) => tracing::warn!(account, email, error = %e, "classifier could not learn an agent's judgement"),
        }
    }
}

/// Learns one judgement; `None` when there is nothing to learn from (the message was
/// destroyed meanwhile, or its account belongs to no tenant).
async fn learn(
    classifier: &Classifier,
    tenants: &dyn Tenants,
    judgement: Judgement,
) -> Result<Option<(String, crate::learning::Learning)>, crate::learning::Error> {
    let tenant = match judgement.tenant {
        Some(tenant) => tenant,
        None => match tenants.tenant_of(judgement.account).await {
            Some(tenant) => tenant,
            None => return Ok(None),
        },
    };
    // The message's size is bounded where it came in (the MX's and IMAP APPEND's limits).
    let Some(raw) = classifier.store().read_blob(&judgement.blob).await? else { return Ok(None) };
    let learning = classifier.train_hashed(Some(&tenant), &raw, judgement.blob, judgement.spam).await?;
    Ok(Some((tenant, learning)))
}

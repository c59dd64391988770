//! Group commit: proposals from concurrent clients queue here and go to raft as
//! one `ProposalBatch` log entry, so 64 writers cost one fsync, not 64. On a
//! follower the whole batch is forwarded to the leader in one call.
//!
//! A bounded number of batches is in flight at once; while they commit, new
//! proposals pile up and form the next, larger batch.

use std::sync::Arc;

use idreg_core::{Device, Proposal, ProposalBatch, Rejection};
use idreg_store::BatchOutcome;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::WriteError;
use crate::forwarder::Forwarder;

/// Most proposals in one log entry.
pub const MAX_BATCH: usize = 512;
/// Most batches proposed but not yet applied.
pub const MAX_IN_FLIGHT: usize = 4;

pub type Verdict = Result<Option<Device>, Rejection>;

pub(crate) struct Pending {
    pub proposal: Proposal,
    pub reply: oneshot::Sender<Result<Verdict, WriteError>>,
}

/// Runs until every sender is dropped.
pub(crate) async fn run(
    forwarder: Forwarder,
    mut rx: mpsc::Receiver<Pending>,
    metrics: crate::write_metrics::WriteMetrics,
) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Each batch is handed to raft only after the one before it, so batches
    // (and the proposals in them) reach the log in the order they queued.
    let mut previous: Option<oneshot::Receiver<()>> = None;
    while let Some(first) = rx.recv().await {
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore is never closed");
        let mut pending = vec![first];
        while pending.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(_) => break,
            }
        }
        metrics.set_queued(rx.len());
        let size = pending.len();
        let (proposals, replies): (Vec<_>, Vec<_>) =
            pending.into_iter().map(|p| (p.proposal, p.reply)).unzip();
        let forwarder = forwarder.clone();
        let metrics = metrics.clone();
        let started = std::time::Instant::now();
        let (handed_over, turn) = oneshot::channel();
        let wait_turn = previous.replace(turn);
        tokio::spawn(async move {
            if let Some(t) = wait_turn {
                // An error only means the previous batch ended without handing over.
                let _ = t.await;
            }
            let result = forwarder
                .write(ProposalBatch(proposals), Some(handed_over))
                .await;
            drop(permit);
            metrics.batch(size, started.elapsed(), result.is_ok());
            match result {
                Ok(BatchOutcome(verdicts)) => {
                    for (reply, verdict) in replies.into_iter().zip(verdicts) {
                        let _ = reply.send(Ok(verdict));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        });
    }
}

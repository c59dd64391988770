//! Group commit: proposals from concurrent clients queue here and go to raft as
//! one `ProposalBatch` log entry, so 64 writers cost one fsync, not 64. On a
//! follower the whole batch is forwarded to the leader in one call.
//!
//! A bounded number of batches is in flight at once ([`MAX_IN_FLIGHT`]);
//! while they commit, new proposals pile up and form the next, larger batch.

use std::sync::{Arc, Mutex, PoisonError};

use idreg_core::{Device, Proposal, ProposalBatch, Rejection};
use idreg_store::{BatchOutcome, WaitingCallers};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::WriteError;
use crate::forwarder::Forwarder;

/// Most proposals in one log entry.
pub const MAX_BATCH: usize = 512;
/// Most batches proposed but not yet applied. One: while it commits, the
/// next batch gathers every proposal that arrives, so a loaded leader pays
/// raft's per-entry cost (fsyncs, AppendEntries, wake-ups) once per ~50
/// writes at 100 clients instead of once per ~16 with four in flight; that
/// was 5–15 % less CPU per write and as much more throughput (BENCHMARKS.md,
/// "Where a write's time goes"). Raft itself still pipelines entries.
pub const MAX_IN_FLIGHT: usize = 1;

pub type Verdict = Result<Option<Device>, Rejection>;

type Reply = oneshot::Sender<Result<Verdict, WriteError>>;

pub(crate) struct Pending {
    pub proposal: Proposal,
    pub reply: Reply,
}

/// The callers of one batch, answered once: by this node's apply when it
/// writes the batch ([`WaitingCallers`]), else by the batch's task when the
/// write returns.
#[derive(Clone)]
struct BatchCallers(Arc<Mutex<Option<Vec<Reply>>>>);

impl BatchCallers {
    fn new(replies: Vec<Reply>) -> Self {
        Self(Arc::new(Mutex::new(Some(replies))))
    }

    /// Answers the callers unless they have been; false if they had.
    fn answer(&self, result: Result<BatchOutcome, WriteError>) -> bool {
        let replies = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(replies) = replies else {
            return false;
        };
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
        true
    }
}

/// Gets a batch written (the [`Forwarder`]; a fake in tests). It signals
/// `handed_over` once the batch's place in the log is settled, or drops it.
pub(crate) trait BatchWriter: Clone + Send + Sync + 'static {
    fn write(
        &self,
        batch: ProposalBatch,
        handed_over: Option<oneshot::Sender<()>>,
    ) -> impl std::future::Future<Output = Result<BatchOutcome, WriteError>> + Send;
}

impl BatchWriter for Forwarder {
    async fn write(
        &self,
        batch: ProposalBatch,
        handed_over: Option<oneshot::Sender<()>>,
    ) -> Result<BatchOutcome, WriteError> {
        Forwarder::write(self, batch, handed_over).await
    }
}

/// Runs until every sender is dropped, with at most `max_in_flight` batches
/// written at once ([`MAX_IN_FLIGHT`] in a node). Each batch is registered
/// in `waiting` while it is written, for this node's apply to answer.
pub(crate) async fn run<W: BatchWriter>(
    forwarder: W,
    waiting: WaitingCallers,
    mut rx: mpsc::Receiver<Pending>,
    metrics: crate::write_metrics::WriteMetrics,
    max_in_flight: usize,
) {
    let in_flight = Arc::new(Semaphore::new(max_in_flight));
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
        let waiting = waiting.clone();
        let metrics = metrics.clone();
        let started = std::time::Instant::now();
        let (handed_over, turn) = oneshot::channel();
        let wait_turn = previous.replace(turn);
        tokio::spawn(async move {
            if let Some(t) = wait_turn {
                // An error only means the previous batch ended without handing over.
                let _ = t.await;
            }
            let batch = ProposalBatch::from(proposals);
            let callers = BatchCallers::new(replies);
            let for_apply = callers.clone();
            let registered = waiting.register(
                &batch,
                Box::new(move |outcome| {
                    for_apply.answer(Ok(outcome));
                }),
            );
            let result = forwarder.write(batch, Some(handed_over)).await;
            drop(registered);
            drop(permit);
            let ok = result.is_ok();
            let answered_by_apply = !callers.answer(result);
            metrics.batch(size, started.elapsed(), ok, answered_by_apply);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::{Author, Command, DeviceId, Role};
    use std::time::Duration;

    /// Hands each batch over after a delay that varies from batch to batch
    /// (as a busy leader might), logging the proposals in the order they
    /// were handed over.
    #[derive(Clone, Default)]
    struct SlowWriter {
        log: Arc<Mutex<Vec<u64>>>,
        batches: Arc<Mutex<u64>>,
    }

    impl BatchWriter for SlowWriter {
        async fn write(
            &self,
            batch: ProposalBatch,
            handed_over: Option<oneshot::Sender<()>>,
        ) -> Result<BatchOutcome, WriteError> {
            let n = {
                let mut b = self.batches.lock().unwrap();
                *b += 1;
                *b
            };
            // 12, 1, 12, 1, … ms: every other batch would overtake the one
            // before it if nothing kept the order.
            let delay = if n % 2 == 1 { 12 } else { 1 };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            self.log
                .lock()
                .unwrap()
                .extend(batch.0.iter().map(|p| p.at_ms));
            if let Some(h) = handed_over {
                let _ = h.send(());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(BatchOutcome(batch.0.iter().map(|_| Ok(None)).collect()))
        }
    }

    /// Writes as a leader's apply does: answers through the batch's
    /// registration, with a verdict that names each proposal, and returns
    /// the outcome emptied, or then an error (raft stopping after the apply).
    #[derive(Clone)]
    struct ApplyingWriter {
        waiting: WaitingCallers,
        then_fail: bool,
    }

    impl BatchWriter for ApplyingWriter {
        async fn write(
            &self,
            batch: ProposalBatch,
            _handed_over: Option<oneshot::Sender<()>>,
        ) -> Result<BatchOutcome, WriteError> {
            let verdicts = batch
                .0
                .iter()
                .map(|p| Err(Rejection::DeviceNotFound(p.at_ms.to_string())));
            let answer = self.waiting.take(&batch).expect("registered");
            answer(BatchOutcome(verdicts.collect()));
            if self.then_fail {
                return Err(WriteError::ShuttingDown);
            }
            Ok(BatchOutcome::default())
        }
    }

    #[tokio::test]
    async fn callers_answered_by_the_apply_get_their_own_verdict_once() {
        for then_fail in [false, true] {
            let waiting = WaitingCallers::default();
            let writer = ApplyingWriter {
                waiting: waiting.clone(),
                then_fail,
            };
            let (tx, rx) = mpsc::channel(1000);
            tokio::spawn(run(writer, waiting.clone(), rx, Default::default(), 1));
            let mut replies = Vec::new();
            for i in 0..200u64 {
                let (p, r) = pending(i);
                tx.send(p).await.unwrap();
                replies.push(r);
            }
            for (i, r) in replies.into_iter().enumerate() {
                match r.await {
                    Ok(Ok(Err(Rejection::DeviceNotFound(at)))) => assert_eq!(at, i.to_string()),
                    other => panic!("proposal {i} (then_fail {then_fail}): {other:?}"),
                }
            }
            assert!(waiting.is_empty(), "every batch unregistered");
        }
    }

    fn pending(i: u64) -> (Pending, oneshot::Receiver<Result<Verdict, WriteError>>) {
        let (reply, rx) = oneshot::channel();
        let by = Author::new("t", Role::Admin, 1);
        let command = Command::Delete {
            id: DeviceId::parse("id", "d").unwrap(),
        };
        let proposal = Proposal {
            at_ms: i,
            by,
            command,
        };
        (Pending { proposal, reply }, rx)
    }

    #[tokio::test(start_paused = true)]
    async fn batches_reach_the_writer_in_queue_order_while_they_overlap() {
        let writer = SlowWriter::default();
        let (tx, rx) = mpsc::channel(100_000);
        // Four in flight: the order must hold while batches overlap.
        tokio::spawn(run(
            writer.clone(),
            Default::default(),
            rx,
            Default::default(),
            4,
        ));
        let mut replies = Vec::new();
        // Proposals arrive in bursts, so batches of many sizes form while
        // up to four are in the writer at once.
        for i in 0..3000u64 {
            let (p, r) = pending(i);
            tx.send(p).await.unwrap();
            replies.push(r);
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        }
        for r in replies {
            assert!(matches!(r.await, Ok(Ok(Ok(None)))));
        }
        let log = writer.log.lock().unwrap().clone();
        assert_eq!(log, (0..3000).collect::<Vec<_>>());
        assert!(
            *writer.batches.lock().unwrap() > 10,
            "too few batches to tell"
        );
    }
}

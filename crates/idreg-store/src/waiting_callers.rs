//! Batches proposed on this node whose callers wait for their verdicts, so
//! that the apply answers them itself.
//!
//! Without it a caller's verdict goes from the apply back through raft's
//! core to the writer's task and only then to the caller: two task wake-ups
//! on the critical path of every write, each a few µs to tens of µs on a
//! loaded two-core machine. The leader's apply is handed the very batch its
//! proposer made (the log's in-memory tail keeps the decoded entry, and a
//! `ProposalBatch` clone shares its allocation), so the apply finds the
//! batch's waiting callers by that allocation and answers them once the
//! batch is written and its events are out. Whatever is not found that way
//! (an entry read back from RocksDB or decoded from a peer) takes the old
//! path: the writer answers when raft returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use idreg_core::ProposalBatch;

use crate::BatchOutcome;

/// Hands a written batch's verdicts, in order, to the callers that proposed it.
pub type AnswerCallers = Box<dyn FnOnce(BatchOutcome) + Send>;

#[derive(Clone, Default)]
pub struct WaitingCallers(Arc<Mutex<HashMap<usize, Waiting>>>);

struct Waiting {
    /// Keeps the allocation alive, so its address names no other batch
    /// while it is registered.
    _batch: ProposalBatch,
    answer: AnswerCallers,
}

/// Unregisters its batch when dropped (the write returned, however it ended).
#[must_use = "the batch is unregistered when this is dropped"]
pub struct Registration {
    waiting: WaitingCallers,
    key: usize,
}

/// The batch's identity: the address of the proposals it shares with its clones.
fn key(batch: &ProposalBatch) -> usize {
    Arc::as_ptr(&batch.0) as *const () as usize
}

impl WaitingCallers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Waiting>> {
        // A panic elsewhere while holding it leaves the map whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Until the registration is dropped, an apply of `batch` (or of a clone
    /// of it) hands its verdicts to `answer`.
    pub fn register(&self, batch: &ProposalBatch, answer: AnswerCallers) -> Registration {
        let key = key(batch);
        let _batch = batch.clone();
        self.lock().insert(key, Waiting { _batch, answer });
        Registration {
            waiting: self.clone(),
            key,
        }
    }

    /// The answer for `batch` if its callers wait here, taken: a batch's
    /// callers are answered once.
    pub fn take(&self, batch: &ProposalBatch) -> Option<AnswerCallers> {
        self.lock().remove(&key(batch)).map(|w| w.answer)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiting.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::{Author, Command, DeviceId, Proposal, Role};

    fn batch(n: u64) -> ProposalBatch {
        let by = Author::new("t", Role::Admin, 1);
        let proposals = (0..n).map(|at_ms| Proposal {
            at_ms,
            by: by.clone(),
            command: Command::Delete {
                id: DeviceId::parse("id", "d").unwrap(),
            },
        });
        ProposalBatch::from(proposals.collect::<Vec<_>>())
    }

    fn answer_into(seen: &Arc<Mutex<Vec<BatchOutcome>>>) -> AnswerCallers {
        let seen = seen.clone();
        Box::new(move |o| seen.lock().unwrap().push(o))
    }

    #[test]
    fn a_clone_finds_its_callers_once_and_an_equal_batch_does_not() {
        let waiting = WaitingCallers::default();
        let seen = Arc::default();
        let proposed = batch(3);
        let _registered = waiting.register(&proposed, answer_into(&seen));
        // Decoded from the log or a peer: equal, but another allocation.
        let decoded = ProposalBatch::from(proposed.0.to_vec());
        assert_eq!(decoded, proposed);
        assert!(waiting.take(&decoded).is_none());
        let answer = waiting.take(&proposed.clone()).expect("the very batch");
        answer(BatchOutcome(vec![Ok(None)]));
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(waiting.take(&proposed).is_none(), "answered once");
    }

    #[test]
    fn dropping_the_registration_forgets_the_batch() {
        let waiting = WaitingCallers::default();
        let seen = Arc::default();
        let proposed = batch(1);
        let registered = waiting.register(&proposed, answer_into(&seen));
        assert_eq!(waiting.len(), 1);
        drop(registered);
        assert!(waiting.is_empty());
        assert!(waiting.take(&proposed).is_none());
    }
}

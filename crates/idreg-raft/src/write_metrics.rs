//! What group commit does, for `/metrics`: batch sizes, each batch's time
//! from leaving the queue to its verdicts (proposal to apply, forwarding
//! included), batches that failed, batches whose callers the apply
//! answered, and proposals waiting in the queue.
//! Observed once per batch, never per proposal.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug)]
pub struct WriteMetrics {
    batch_size: Histogram,
    batch_seconds: Histogram,
    failed_batches: Counter,
    answered_by_apply: Counter,
    queued: Gauge,
}

impl Default for WriteMetrics {
    fn default() -> Self {
        Self {
            // 1 to 512 proposals.
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
            // 0.1 ms to ~6.5 s.
            batch_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            failed_batches: Counter::default(),
            answered_by_apply: Counter::default(),
            queued: Gauge::default(),
        }
    }
}

impl WriteMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "idreg_raft_batch_proposals",
            "Proposals per raft log entry (group commit)",
            self.batch_size.clone(),
        );
        registry.register(
            "idreg_raft_batch_seconds",
            "From a batch leaving the queue to its verdicts: proposal to apply, forwarding to the leader included",
            self.batch_seconds.clone(),
        );
        registry.register(
            "idreg_raft_failed_batches",
            "Batches whose outcome is an error (no leader, forwarding failed, raft error)",
            self.failed_batches.clone(),
        );
        registry.register(
            "idreg_raft_batches_answered_by_apply",
            "Batches whose callers this node's apply answered itself (a leader's own batches); the others heard when raft returned",
            self.answered_by_apply.clone(),
        );
        registry.register(
            "idreg_raft_proposals_queued",
            "Proposals waiting for the next batch",
            self.queued.clone(),
        );
    }

    pub(crate) fn batch(&self, size: usize, took: Duration, ok: bool, answered_by_apply: bool) {
        self.batch_size.observe(size as f64);
        self.batch_seconds.observe(took.as_secs_f64());
        if !ok {
            self.failed_batches.inc();
        }
        if answered_by_apply {
            self.answered_by_apply.inc();
        }
    }

    pub(crate) fn set_queued(&self, n: usize) {
        self.queued.set(n as i64);
    }
}

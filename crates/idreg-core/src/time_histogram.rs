//! A histogram of durations in fixed buckets, built from atomics so the
//! paths it measures (handshakes, WAL fsyncs, revocation cut-offs) pay one
//! relaxed add per observation and never a lock. `/metrics` reads it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bucket bounds (seconds) for latencies from half a millisecond to ten
/// seconds: handshakes, cut-offs, fsyncs.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Bucket bounds (seconds) for slow work: snapshot builds and installs.
pub const SLOW_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

#[derive(Debug)]
pub struct TimeHistogram {
    bounds: &'static [f64],
    /// One per bound, then one past every bound.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// What a histogram held when it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [f64],
    /// Per bucket (not cumulative), the last one past every bound.
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

impl TimeHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Runs `f` and, if it succeeds, observes how long it took.
    pub fn time_ok<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = f();
        if result.is_ok() {
            self.observe(started.elapsed());
        }
        result
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

impl Default for TimeHistogram {
    fn default() -> Self {
        Self::new(LATENCY_BUCKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_observation_lands_in_the_first_bucket_that_holds_it() {
        let h = TimeHistogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(1000)); // on the bound: first bucket
        h.observe(Duration::from_micros(1001));
        h.observe(Duration::from_millis(50)); // past every bound
        let s = h.snapshot();
        assert_eq!(s.counts, vec![1, 1, 1]);
        assert_eq!(s.count(), 3);
        assert!((s.sum_seconds - 0.052001).abs() < 1e-9);
    }

    #[test]
    fn only_what_succeeds_is_timed() {
        let h = TimeHistogram::new(&[1.0]);
        assert_eq!(h.time_ok(|| Ok::<_, ()>(7)), Ok(7));
        assert_eq!(h.time_ok(|| Err::<(), _>("no")), Err("no"));
        assert_eq!(h.snapshot().count(), 1);
    }
}

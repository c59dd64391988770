//! What the store measures for `/metrics`: WAL fsync times (the raft log's
//! durability, etcd's `wal_fsync_duration`), snapshot builds and installs,
//! and RocksDB's own counters (block cache hits and misses, write stalls).
//! Each timed operation adds to an atomic histogram; RocksDB's counters are
//! read only when asked.

use std::sync::Arc;

use idreg_core::time_histogram::{TimeHistogram, LATENCY_BUCKETS, SLOW_BUCKETS};
use idreg_core::HistogramSnapshot;
use rocksdb::statistics::{StatsLevel, Ticker};
use rocksdb::Options;

#[derive(Debug)]
pub struct StoreMetrics {
    pub(crate) wal_fsync: TimeHistogram,
    pub(crate) snapshot_build: TimeHistogram,
    pub(crate) snapshot_install: TimeHistogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            wal_fsync: TimeHistogram::new(LATENCY_BUCKETS),
            snapshot_build: TimeHistogram::new(SLOW_BUCKETS),
            snapshot_install: TimeHistogram::new(SLOW_BUCKETS),
        }
    }
}

/// RocksDB's counters since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RocksCounters {
    pub block_cache_hits: u64,
    pub block_cache_misses: u64,
    /// Time writers were delayed or stopped by RocksDB (compaction behind).
    pub stall_micros: u64,
}

/// A snapshot of everything the store measures.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreMeasures {
    pub wal_fsync: HistogramSnapshot,
    pub snapshot_build: HistogramSnapshot,
    pub snapshot_install: HistogramSnapshot,
    pub rocks: RocksCounters,
}

/// Turns on RocksDB's statistics at the cheapest level that still keeps
/// tickers (no per-operation histograms or timers).
pub(crate) fn enable_statistics(opts: &mut Options) {
    opts.enable_statistics();
    opts.set_statistics_level(StatsLevel::ExceptHistogramOrTimers);
}

pub(crate) fn rocks_counters(opts: &Options) -> RocksCounters {
    RocksCounters {
        block_cache_hits: opts.get_ticker_count(Ticker::BlockCacheHit),
        block_cache_misses: opts.get_ticker_count(Ticker::BlockCacheMiss),
        stall_micros: opts.get_ticker_count(Ticker::StallMicros),
    }
}

impl StoreMetrics {
    pub(crate) fn measures(&self, opts: &Arc<Options>) -> StoreMeasures {
        StoreMeasures {
            wal_fsync: self.wal_fsync.snapshot(),
            snapshot_build: self.snapshot_build.snapshot(),
            snapshot_install: self.snapshot_install.snapshot(),
            rocks: rocks_counters(opts),
        }
    }
}

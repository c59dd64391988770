//! Counters of the device front, read by the Sessions API, logs and tests.
//! Shards add to them; nothing here is per device, so their size does not
//! grow with the fleet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use idreg_core::{HistogramSnapshot, SessionEnd, TimeHistogram};
use idreg_dtls::cipher_suite::CipherSuite;
use idreg_dtls::server_handshake::FailReason;

/// Distinct source addresses whose failed handshakes are counted one by one;
/// beyond that they are summed under "other" so a spoofed flood cannot grow
/// the map.
const MAX_FAILURE_SOURCES: usize = 4096;

#[derive(Debug, Default)]
pub struct FrontStats {
    pub handshaking: AtomicU64,
    pub sessions_live: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    pub handshakes_over_budget: AtomicU64,
    pub handshakes_refused_stale: AtomicU64,
    pub cookies_sent: AtomicU64,
    /// Datagrams that fit no session: unknown address or CID, replays, bad
    /// MACs, junk.
    pub datagrams_dropped: AtomicU64,
    pub plain_coap_refused: AtomicU64,
    pub peers_evicted: AtomicU64,
    pub address_changes: AtomicU64,
    pub sessions_restored: AtomicU64,
    /// Sessions ended, by [`SessionEnd::index`] (revoked: cut off by a
    /// revocation, disable or delete).
    pub sessions_ended: [AtomicU64; SessionEnd::ALL.len()],
    /// How long completed handshakes took.
    pub handshake_times: TimeHistogram,
    /// Completed handshakes by [`CipherSuite::index`].
    pub handshakes_by_suite: [AtomicU64; CipherSuite::PREFERENCE.len()],
    /// From a revocation (disable, delete) being proposed to a session of
    /// the device closed here: raft commit and apply included.
    pub revocation_cutoffs: TimeHistogram,
    /// Failed handshakes by [`FailReason::index`] (timeouts included).
    failed_by_reason: [AtomicU64; FailReason::LABELS.len()],
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_source: HashMap<IpAddr, u64>,
    other: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    pub handshaking: u64,
    pub sessions_live: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    pub handshakes_over_budget: u64,
    pub handshakes_refused_stale: u64,
    pub cookies_sent: u64,
    pub datagrams_dropped: u64,
    pub plain_coap_refused: u64,
    pub peers_evicted: u64,
    pub address_changes: u64,
    pub sessions_restored: u64,
    /// Sources with the most failed handshakes, most first (at most 20).
    pub top_failing_sources: Vec<(IpAddr, u64)>,
    pub failures_from_other_sources: u64,
    /// Failed handshakes by reason, as [`FailReason::LABELS`] names them.
    pub failed_by_reason: [u64; FailReason::LABELS.len()],
    /// Sessions ended, in [`SessionEnd::ALL`] order.
    pub sessions_ended: [u64; SessionEnd::ALL.len()],
    pub handshake_times: HistogramSnapshot,
    /// Completed handshakes, in [`CipherSuite::PREFERENCE`] order.
    pub handshakes_by_suite: [u64; CipherSuite::PREFERENCE.len()],
    pub revocation_cutoffs: HistogramSnapshot,
}

/// Adds `n` to a counter.
pub fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl FrontStats {
    /// Counts a failed handshake from `source` and its reason; returns how
    /// many that source has had (or all "other" sources together, past the
    /// bound).
    pub fn handshake_failed(&self, source: IpAddr, reason: &FailReason) -> u64 {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
        self.failed_by_reason[reason.index()].fetch_add(1, Ordering::Relaxed);
        let mut f = self.failures.lock().expect("stats lock");
        if f.by_source.len() < MAX_FAILURE_SOURCES || f.by_source.contains_key(&source) {
            let n = f.by_source.entry(source).or_default();
            *n += 1;
            *n
        } else {
            f.other += 1;
            f.other
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let f = self.failures.lock().expect("stats lock");
        let mut top: Vec<(IpAddr, u64)> = f.by_source.iter().map(|(a, n)| (*a, *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(20);
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            handshaking: get(&self.handshaking),
            sessions_live: get(&self.sessions_live),
            handshakes_ok: get(&self.handshakes_ok),
            handshakes_failed: get(&self.handshakes_failed),
            handshakes_timed_out: get(&self.handshakes_timed_out),
            handshakes_over_budget: get(&self.handshakes_over_budget),
            handshakes_refused_stale: get(&self.handshakes_refused_stale),
            cookies_sent: get(&self.cookies_sent),
            datagrams_dropped: get(&self.datagrams_dropped),
            plain_coap_refused: get(&self.plain_coap_refused),
            peers_evicted: get(&self.peers_evicted),
            address_changes: get(&self.address_changes),
            sessions_restored: get(&self.sessions_restored),
            top_failing_sources: top,
            failures_from_other_sources: f.other,
            failed_by_reason: std::array::from_fn(|i| get(&self.failed_by_reason[i])),
            sessions_ended: std::array::from_fn(|i| get(&self.sessions_ended[i])),
            handshake_times: self.handshake_times.snapshot(),
            handshakes_by_suite: std::array::from_fn(|i| get(&self.handshakes_by_suite[i])),
            revocation_cutoffs: self.revocation_cutoffs.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_sources_are_bounded() {
        let s = FrontStats::default();
        for i in 0..(MAX_FAILURE_SOURCES as u32 + 10) {
            s.handshake_failed(IpAddr::from(i.to_be_bytes()), &FailReason::BadFinished);
        }
        let snap = s.snapshot();
        assert_eq!(snap.failures_from_other_sources, 10);
        assert_eq!(snap.top_failing_sources.len(), 20);
        assert_eq!(snap.handshakes_failed, MAX_FAILURE_SOURCES as u64 + 10);
    }
}

//! Counters of the device front, read by the Sessions API, logs and tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Distinct source addresses whose failed handshakes are counted one by one;
/// beyond that they are summed under "other" so a spoofed flood cannot grow
/// the map.
const MAX_FAILURE_SOURCES: usize = 4096;

#[derive(Debug, Default)]
pub struct FrontStats {
    /// Peers in the tables of all sockets (handshaking + established).
    pub peers: AtomicU64,
    pub handshaking: AtomicU64,
    pub sessions_live: AtomicU64,
    pub handshakes_ok: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    /// Datagrams dropped: junk from unknown peers, or a full peer queue.
    pub datagrams_dropped: AtomicU64,
    pub plain_coap_refused: AtomicU64,
    pub peers_evicted: AtomicU64,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    by_source: HashMap<IpAddr, u64>,
    other: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub peers: u64,
    pub handshaking: u64,
    pub sessions_live: u64,
    pub handshakes_ok: u64,
    pub handshakes_failed: u64,
    pub handshakes_timed_out: u64,
    pub datagrams_dropped: u64,
    pub plain_coap_refused: u64,
    pub peers_evicted: u64,
    /// Sources with the most failed handshakes, most first (at most 20).
    pub top_failing_sources: Vec<(IpAddr, u64)>,
    pub failures_from_other_sources: u64,
}

impl FrontStats {
    pub fn handshake_failed(&self, source: IpAddr) -> u64 {
        self.handshakes_failed.fetch_add(1, Ordering::Relaxed);
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
            peers: get(&self.peers),
            handshaking: get(&self.handshaking),
            sessions_live: get(&self.sessions_live),
            handshakes_ok: get(&self.handshakes_ok),
            handshakes_failed: get(&self.handshakes_failed),
            handshakes_timed_out: get(&self.handshakes_timed_out),
            datagrams_dropped: get(&self.datagrams_dropped),
            plain_coap_refused: get(&self.plain_coap_refused),
            peers_evicted: get(&self.peers_evicted),
            top_failing_sources: top,
            failures_from_other_sources: f.other,
        }
    }
}

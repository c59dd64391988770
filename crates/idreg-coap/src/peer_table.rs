//! The bounded table of peers one UDP socket serves, with no I/O and no clock
//! (times are passed in). When full, a new peer evicts the peer idle longest,
//! taking unfinished handshakes before established sessions, so a flood of
//! ClientHellos cannot push out devices that have authenticated.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

/// Activity closer together than this does not reorder a peer; it keeps the
/// per-datagram cost a hash lookup.
const TOUCH_GRANULARITY_MS: u64 = 1000;

struct Slot<V> {
    value: V,
    generation: u64,
    last_ms: u64,
    established: bool,
}

pub struct PeerTable<V> {
    peers: HashMap<SocketAddr, Slot<V>>,
    /// (last activity, generation) -> address, per kind, oldest first.
    handshaking: BTreeMap<(u64, u64), SocketAddr>,
    established: BTreeMap<(u64, u64), SocketAddr>,
    capacity: usize,
    next_generation: u64,
}

/// A peer pushed out of a full table.
pub struct Evicted<V> {
    pub addr: SocketAddr,
    pub value: V,
    pub was_established: bool,
}

impl<V> PeerTable<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            peers: HashMap::new(),
            handshaking: BTreeMap::new(),
            established: BTreeMap::new(),
            capacity: capacity.max(1),
            next_generation: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn handshaking(&self) -> usize {
        self.handshaking.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, addr: &SocketAddr) -> Option<&V> {
        self.peers.get(addr).map(|s| &s.value)
    }

    pub fn generation(&self, addr: &SocketAddr) -> Option<u64> {
        self.peers.get(addr).map(|s| s.generation)
    }

    fn order(&mut self, established: bool) -> &mut BTreeMap<(u64, u64), SocketAddr> {
        if established {
            &mut self.established
        } else {
            &mut self.handshaking
        }
    }

    /// Records activity from `addr`.
    pub fn touch(&mut self, addr: &SocketAddr, now_ms: u64) {
        let Some(slot) = self.peers.get_mut(addr) else {
            return;
        };
        if now_ms < slot.last_ms + TOUCH_GRANULARITY_MS {
            return;
        }
        let (old, generation, established) = (slot.last_ms, slot.generation, slot.established);
        slot.last_ms = now_ms;
        let order = self.order(established);
        order.remove(&(old, generation));
        order.insert((now_ms, generation), *addr);
    }

    /// Adds a peer in the handshaking state, evicting one first if the table is
    /// full. Returns the new peer's generation (needed to remove it later: the
    /// address may by then belong to a newer peer) and what was evicted.
    /// An existing entry for `addr` is replaced and returned as evicted.
    pub fn insert(&mut self, addr: SocketAddr, value: V, now_ms: u64) -> (u64, Option<Evicted<V>>) {
        let mut evicted = self.take(&addr);
        if evicted.is_none() && self.peers.len() >= self.capacity {
            let oldest = self
                .handshaking
                .first_key_value()
                .or_else(|| self.established.first_key_value())
                .map(|(_, a)| *a);
            evicted = oldest.and_then(|a| self.take(&a));
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.peers.insert(
            addr,
            Slot {
                value,
                generation,
                last_ms: now_ms,
                established: false,
            },
        );
        self.handshaking.insert((now_ms, generation), addr);
        (generation, evicted)
    }

    /// Moves a peer whose handshake finished to the established set.
    pub fn mark_established(&mut self, addr: &SocketAddr, generation: u64) {
        let Some(slot) = self.peers.get_mut(addr) else {
            return;
        };
        if slot.generation != generation || slot.established {
            return;
        }
        slot.established = true;
        let key = (slot.last_ms, slot.generation);
        self.handshaking.remove(&key);
        self.established.insert(key, *addr);
    }

    pub fn is_established(&self, addr: &SocketAddr) -> bool {
        self.peers.get(addr).is_some_and(|s| s.established)
    }

    /// Removes the peer at `addr` if it is still the given generation.
    pub fn remove(&mut self, addr: &SocketAddr, generation: u64) -> Option<V> {
        if self.peers.get(addr)?.generation != generation {
            return None;
        }
        self.take(addr).map(|e| e.value)
    }

    fn take(&mut self, addr: &SocketAddr) -> Option<Evicted<V>> {
        let slot = self.peers.remove(addr)?;
        self.order(slot.established)
            .remove(&(slot.last_ms, slot.generation));
        Some(Evicted {
            addr: *addr,
            value: slot.value,
            was_established: slot.established,
        })
    }

    /// Every value, for shutdown.
    pub fn drain(&mut self) -> impl Iterator<Item = (SocketAddr, V)> + '_ {
        self.handshaking.clear();
        self.established.clear();
        self.peers.drain().map(|(a, s)| (a, s.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn full_table_evicts_oldest_handshake_before_any_session() {
        let mut t = PeerTable::new(3);
        let (g1, _) = t.insert(a(1), "s1", 0);
        t.mark_established(&a(1), g1);
        t.insert(a(2), "h2", 10);
        t.insert(a(3), "h3", 20);
        let (_, ev) = t.insert(a(4), "h4", 30);
        let ev = ev.unwrap();
        assert_eq!((ev.addr, ev.value, ev.was_established), (a(2), "h2", false));
        assert_eq!(t.len(), 3);
        // Only sessions left to evict: the one idle longest goes.
        let mut t = PeerTable::new(2);
        let (g1, _) = t.insert(a(1), 1, 0);
        let (g2, _) = t.insert(a(2), 2, 0);
        t.mark_established(&a(1), g1);
        t.mark_established(&a(2), g2);
        t.touch(&a(1), 5000);
        let (_, ev) = t.insert(a(3), 3, 6000);
        assert_eq!(ev.unwrap().addr, a(2));
    }

    #[test]
    fn stale_generation_cannot_remove_a_newer_peer() {
        let mut t = PeerTable::new(8);
        let (old, _) = t.insert(a(1), "old", 0);
        let (new, ev) = t.insert(a(1), "new", 5);
        assert_eq!(ev.unwrap().value, "old");
        assert_eq!(t.remove(&a(1), old), None);
        assert_eq!(t.get(&a(1)), Some(&"new"));
        assert_eq!(t.remove(&a(1), new), Some("new"));
        assert!(t.is_empty());
        assert_eq!(t.handshaking(), 0);
    }

    #[test]
    fn never_exceeds_capacity() {
        let mut t = PeerTable::new(100);
        for i in 0..10_000u16 {
            t.insert(a(i), i, u64::from(i));
            assert!(t.len() <= 100);
        }
        assert_eq!(t.handshaking(), 100);
    }
}

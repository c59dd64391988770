//! A small Wing–Gong linearizability checker for one register per device:
//! writes set a device's label `v`, linearizable reads return it. A write
//! whose outcome the client does not know (an error or timeout) may take
//! effect at any time after it was invoked, or never.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write(u64),
    /// What the read returned (`None`: no value written yet).
    Read(Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub key: String,
    pub op: Op,
    pub invoked: Instant,
    /// `None`: the outcome is unknown (only for writes).
    pub returned: Option<Instant>,
}

/// Checks every key's history; the error names the key and shows its history.
pub fn check(history: &[Event]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in history {
        assert!(
            e.returned.is_some() || matches!(e.op, Op::Write(_)),
            "a read without a result cannot be checked"
        );
        by_key.entry(&e.key).or_default().push(e);
    }
    for (key, events) in by_key {
        if events.len() > 128 {
            return Err(format!(
                "{key}: {} operations, more than the checker takes",
                events.len()
            ));
        }
        let mut search = Search {
            events: &events,
            failed: HashSet::new(),
        };
        if !search.linearizable(0, None) {
            return Err(format!("{key} is not linearizable: {events:#?}"));
        }
    }
    Ok(())
}

struct Search<'a> {
    events: &'a [&'a Event],
    /// (done set, register value) states known to lead nowhere.
    failed: HashSet<(u128, Option<u64>)>,
}

impl Search<'_> {
    fn linearizable(&mut self, done: u128, value: Option<u64>) -> bool {
        let pending = |i: usize| done & (1u128 << i) == 0;
        // Done when every operation with a known result is placed; writes of
        // unknown outcome may never have happened.
        if (0..self.events.len()).all(|i| !pending(i) || self.events[i].returned.is_none()) {
            return true;
        }
        if self.failed.contains(&(done, value)) {
            return false;
        }
        // Any pending operation invoked before the earliest pending return may
        // be the next linearization point.
        let horizon = (0..self.events.len())
            .filter(|&i| pending(i))
            .filter_map(|i| self.events[i].returned)
            .min();
        for i in 0..self.events.len() {
            if !pending(i) {
                continue;
            }
            let e = self.events[i];
            if horizon.is_some_and(|h| e.invoked > h) {
                continue;
            }
            let next = match e.op {
                Op::Write(v) => Some(v),
                Op::Read(seen) if seen == value => value,
                Op::Read(_) => continue,
            };
            if self.linearizable(done | (1u128 << i), next) {
                return true;
            }
        }
        self.failed.insert((done, value));
        false
    }
}

//! The newest raft log entries, kept in memory beside RocksDB.
//!
//! Every entry is read back soon after it is appended: by the leader's
//! replication stream to each follower and by every node's state machine.
//! From RocksDB each such read is a seek and a decode of the whole entry
//! (~0.5 µs per proposal, `cargo bench --bench hot_paths -- "log entry"`),
//! three times on the leader. From here it is a reference count: a
//! [`ProposalBatch`](idreg_core::ProposalBatch) shares its proposals.
//!
//! Invariant: the tail is a suffix of the log. It holds every entry from its
//! first index to the log's last, or nothing. So a read that starts inside
//! it is answered whole from it, and one that starts before it goes to
//! RocksDB.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use crate::types::Entry;

/// Encoded bytes of entries the tail holds at most (their in-memory size is
/// a small multiple). Replication and apply read within a few entries of
/// the end; a follower further behind reads from RocksDB, as before. Small
/// on purpose: a 4 MiB tail kept hundreds of 100-client group commits alive,
/// and the followers spent more CPU per write than with none (27 → 30 µs
/// in three rounds of four), most likely from freeing that memory long
/// after it was last touched.
pub(crate) const LOG_TAIL_BYTES: usize = 256 << 10;

/// Entries the tail holds at most, however small.
pub(crate) const LOG_TAIL_ENTRIES: usize = 64;

/// The shared tail, locked. The guard is held only for the tail's own
/// short methods, which do not panic: a poisoned lock does not mean a torn
/// tail.
pub(crate) fn lock(shared: &Mutex<LogTail>) -> MutexGuard<'_, LogTail> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
pub(crate) struct LogTail {
    /// Consecutive entries with their encoded sizes, oldest first.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    max_bytes: usize,
    max_entries: usize,
}

impl Default for LogTail {
    fn default() -> Self {
        Self::new(LOG_TAIL_BYTES, LOG_TAIL_ENTRIES)
    }
}

impl LogTail {
    pub(crate) fn new(max_bytes: usize, max_entries: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_entries,
        }
    }

    /// Holds about `max_bytes` from now on (the newest entry always).
    pub(crate) fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.shrink();
    }

    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.log_id.index + 1)
    }

    /// Records entries just written to the log, each with its encoded size.
    /// Entries that do not follow the tail (the log was reset under it, by
    /// a snapshot) start a new tail.
    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, size) in entries {
            let index = entry.log_id.index;
            match self.next_index() {
                Some(next) if index == next => {}
                // The log never rewrites an index without truncating it
                // first; if it did, the older copy is dropped here too.
                Some(next) if index < next => self.truncate(index),
                _ => self.clear(),
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        self.shrink();
    }

    /// Drops the oldest entries down to the bounds, keeping the newest.
    fn shrink(&mut self) {
        while self.entries.len() > 1
            && (self.bytes > self.max_bytes || self.entries.len() > self.max_entries)
        {
            self.pop_front();
        }
    }

    /// The log dropped the entries from `index` on.
    pub(crate) fn truncate(&mut self, index: u64) {
        while self.next_index().is_some_and(|next| next > index) {
            let (_, size) = self.entries.pop_back().expect("not empty");
            self.bytes -= size;
        }
    }

    /// The log dropped the entries up to and including `index`.
    pub(crate) fn purge(&mut self, index: u64) {
        while self.first_index().is_some_and(|first| first <= index) {
            self.pop_front();
        }
    }

    /// The entries of `start..end`, if the tail can answer it: `None` when
    /// `start` is before the tail (or the tail is empty), so the caller
    /// reads the log. Nothing is after the tail, so a range past it is empty.
    pub(crate) fn read(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.first_index()?;
        if start < first {
            return None;
        }
        let skip = usize::try_from(start - first).unwrap_or(usize::MAX);
        let take = match end {
            Some(end) => usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        Some(
            self.entries
                .iter()
                .skip(skip)
                .take(take)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(index: u64) -> (Entry, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 10)
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        entries.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn answers_reads_that_start_inside_it_and_sends_the_rest_to_the_log() {
        let mut tail = LogTail::new(1000, 100);
        assert_eq!(indexes(tail.read(1, None)), None, "empty: read the log");
        tail.append((5..=8).map(entry));
        assert_eq!(indexes(tail.read(6, Some(8))), Some(vec![6, 7]));
        assert_eq!(indexes(tail.read(5, None)), Some(vec![5, 6, 7, 8]));
        assert_eq!(
            indexes(tail.read(9, Some(20))),
            Some(vec![]),
            "past the end"
        );
        assert_eq!(indexes(tail.read(4, Some(6))), None, "starts before it");
        assert_eq!(indexes(tail.read(7, Some(7))), Some(vec![]));
    }

    #[test]
    fn follows_truncation_purge_and_a_reset_log() {
        let mut tail = LogTail::new(1000, 100);
        tail.append((1..=6).map(entry));
        tail.truncate(5);
        assert_eq!(indexes(tail.read(1, None)), Some(vec![1, 2, 3, 4]));
        tail.append([entry(5)]);
        tail.purge(2);
        assert_eq!(indexes(tail.read(3, None)), Some(vec![3, 4, 5]));
        assert_eq!(indexes(tail.read(2, None)), None, "purged: the log says");
        // A snapshot moved the log on: the old tail is not a suffix any more.
        tail.append([entry(40)]);
        assert_eq!(indexes(tail.read(3, None)), None);
        assert_eq!(indexes(tail.read(40, None)), Some(vec![40]));
        // An index rewritten without a truncate drops the older copy after it.
        tail.append((41..=43).map(entry));
        tail.append([entry(42)]);
        assert_eq!(indexes(tail.read(40, None)), Some(vec![40, 41, 42]));
        tail.truncate(0);
        assert_eq!(indexes(tail.read(40, None)), None, "everything truncated");
        assert_eq!(tail.bytes, 0);
    }

    #[test]
    fn keeps_within_its_bounds_but_always_the_newest_entry() {
        let mut tail = LogTail::new(35, 100);
        tail.append((1..=5).map(entry));
        assert_eq!(indexes(tail.read(3, None)), Some(vec![3, 4, 5]), "30 bytes");
        assert_eq!(tail.read(2, None).map(|v| v.len()), None);
        let mut tail = LogTail::new(1000, 2);
        tail.append((1..=5).map(entry));
        assert_eq!(indexes(tail.read(4, None)), Some(vec![4, 5]));
        let mut tail = LogTail::new(5, 100);
        tail.append([entry(1), entry(2)]);
        assert_eq!(
            indexes(tail.read(2, None)),
            Some(vec![2]),
            "over budget alone"
        );
        let mut tail = LogTail::new(1000, 100);
        tail.append((1..=5).map(entry));
        tail.set_max_bytes(20);
        assert_eq!(
            indexes(tail.read(4, None)),
            Some(vec![4, 5]),
            "shrunk at once"
        );
    }

    /// Random appends, truncations, purges and snapshot resets, checked
    /// against a model of the log: whatever the tail answers is exactly
    /// what the log holds for that range (same indexes, same terms).
    #[test]
    fn answers_as_the_log_would_under_random_changes() {
        use rand::{Rng, SeedableRng};
        use std::collections::BTreeMap;
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut next = |n: u64| rng.random_range(0..n);
        let mut tail = LogTail::new(60, 8);
        let mut log: BTreeMap<u64, u64> = BTreeMap::new(); // index -> term
        let mut term = 1;
        let mut answered = 0;
        for _ in 0..20_000 {
            let first = log.keys().next().copied().unwrap_or(1);
            let end = log.keys().next_back().map_or(first, |l| l + 1);
            match next(10) {
                0..=3 => {
                    let added: Vec<_> = (end..end + 1 + next(3))
                        .map(|i| {
                            log.insert(i, term);
                            let e = Entry {
                                log_id: LogId::new(CommittedLeaderId::new(term, 1), i),
                                payload: EntryPayload::Blank,
                            };
                            (e, 1 + next(20) as usize)
                        })
                        .collect();
                    tail.append(added);
                }
                4 => {
                    // A new leader overwrites the end of the log.
                    let at = first + next(end - first + 1);
                    log.retain(|i, _| *i < at);
                    tail.truncate(at);
                    term += 1;
                }
                5 => {
                    let upto = first + next(end - first + 1);
                    log.retain(|i, _| *i > upto);
                    tail.purge(upto);
                }
                6 => {
                    // A snapshot past the end: everything up to it purged.
                    let upto = end + next(5);
                    log.clear();
                    tail.purge(upto);
                    let at = upto + 1;
                    log.insert(at, term);
                    let e = Entry {
                        log_id: LogId::new(CommittedLeaderId::new(term, 1), at),
                        payload: EntryPayload::Blank,
                    };
                    tail.append([(e, 5)]);
                }
                _ => {
                    let start = first.saturating_sub(2) + next(end - first + 4);
                    let stop = start + next(6);
                    if let Some(got) = tail.read(start, Some(stop)) {
                        let want: Vec<(u64, u64)> =
                            log.range(start..stop).map(|(i, t)| (*i, *t)).collect();
                        let got: Vec<(u64, u64)> = got
                            .iter()
                            .map(|e| (e.log_id.index, e.log_id.leader_id.term))
                            .collect();
                        assert_eq!(got, want, "read {start}..{stop}");
                        answered += 1;
                    }
                }
            }
            assert!(tail.entries.len() <= 8);
            assert_eq!(
                tail.bytes,
                tail.entries.iter().map(|(_, n)| n).sum::<usize>()
            );
        }
        assert!(answered > 1000, "the tail answered only {answered} reads");
    }
}

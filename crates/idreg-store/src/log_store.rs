//! The raft log on RocksDB (openraft `RaftLogStorage`, storage-v2).
//!
//! Appends are written to the memtable at once (so they are readable when
//! `append` returns) and made durable by a WAL fsync, after which openraft is
//! told through the callback: on a blocking thread for the leader's own
//! entries, on the appending task for a follower's. Concurrent appends share
//! fsyncs. The newest entries are also kept decoded in a [`LogTail`], which
//! answers the reads of replication and apply.

// The helpers return openraft's own `StorageError`, which the trait requires;
// boxing it here would only be unboxed again at the trait boundary.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader, StorageIOError, Vote,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec::{decode, encode};
use crate::keys::{
    log_index, log_key, CF_LOG, CF_RAFT_META, META_COMMITTED, META_LAST_PURGED, META_VOTE,
};
use crate::log_tail::LogTail;
use crate::store_metrics::StoreMetrics;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    metrics: Arc<StoreMetrics>,
    /// Shared with every other `LogStore` of the same store (and the
    /// reader, a clone), and changed in step with the log in RocksDB.
    tail: Arc<Mutex<LogTail>>,
    node_id: Option<NodeId>,
    /// The committed log id openraft last saved, not yet written: it goes
    /// into the next append's batch instead of a write of its own.
    unsaved_committed: Option<Option<LogId>>,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

impl LogStore {
    pub(crate) fn new(
        db: Arc<DB>,
        metrics: Arc<StoreMetrics>,
        tail: Arc<Mutex<LogTail>>,
        node_id: Option<NodeId>,
    ) -> Self {
        Self {
            db,
            metrics,
            tail,
            node_id,
            unsaved_committed: None,
        }
    }

    fn tail(&self) -> MutexGuard<'_, LogTail> {
        crate::log_tail::lock(&self.tail)
    }

    fn cf_log(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_LOG).expect("cf exists")
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let cf = self.db.cf_handle(CF_RAFT_META).expect("cf exists");
        match self
            .db
            .get_cf(&cf, key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?
        {
            Some(bytes) => {
                Ok(Some(decode(&bytes).map_err(|e| {
                    io_err(ErrorSubject::Store, ErrorVerb::Read, e)
                })?))
            }
            None => Ok(None),
        }
    }

    /// Written synced: a vote or a purge point must survive a crash.
    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let cf = self.db.cf_handle(CF_RAFT_META).expect("cf exists");
        self.db
            .put_cf_opt(&cf, key, encode(value), &synced())
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    /// Syncs the WAL, timed for `/metrics`; the caller reports the outcome
    /// to openraft.
    fn sync_wal(&self) -> std::io::Result<()> {
        let started = std::time::Instant::now();
        let res = self.db.flush_wal(true).map_err(std::io::Error::other);
        self.metrics.wal_fsync.observe(started.elapsed());
        res
    }
}

/// Whether node `own` syncs an append of entries led by `leader` on the
/// calling task. A follower's (entries of another leader) is: openraft's
/// core awaits that flush before it answers the leader, so a hop to the
/// blocking pool and back would only add two thread wake-ups to every
/// replicated write. The leader's own appends flush on the blocking pool
/// while its core goes on to replicate them (vendor/openraft/IDREG-PATCH.md);
/// a store that does not know its node (tests, tools) does the same.
fn flushes_inline(own: Option<NodeId>, leader: Option<NodeId>) -> bool {
    matches!((own, leader), (Some(own), Some(leader)) if own != leader)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => *i + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        if let Some(entries) = self.tail().read(start, end) {
            return Ok(entries);
        }
        let key = log_key(start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&self.cf_log(), IteratorMode::From(&key, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = log_index(&k);
            if !range.contains(&index) {
                break;
            }
            let entry: Entry =
                decode(&v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.get_meta(META_LAST_PURGED)?;
        let last = self
            .db
            .iterator_cf(&self.cf_log(), IteratorMode::End)
            .next();
        let last_log_id = match last {
            Some(item) => {
                let (_, v) = item.map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry =
                    decode(&v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(META_VOTE, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(META_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Written with the next append, not on its own: one RocksDB write
        // (and WAL write) fewer per commit on every node, on the leader's
        // path from the quorum's answer to the client's. Losing it (a crash
        // before the next append) only means re-learning it from the leader
        // or, alone, re-committing it with the next term's first entry; the
        // applied state is persisted by the state machine either way.
        self.unsaved_committed = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        if let Some(committed) = &self.unsaved_committed {
            return Ok(*committed);
        }
        Ok(self.get_meta::<Option<LogId>>(META_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        let cf = self.cf_log();
        let mut leader = None;
        let mut written = Vec::new();
        for entry in entries {
            leader = Some(entry.log_id.leader_id.node_id);
            let bytes = encode(&entry);
            let size = bytes.len();
            batch.put_cf(&cf, log_key(entry.log_id.index), bytes);
            written.push((entry, size));
        }
        if let Some(committed) = self.unsaved_committed.take() {
            let meta = self.db.cf_handle(CF_RAFT_META).expect("cf exists");
            batch.put_cf(meta, META_COMMITTED, encode(&committed));
        }
        self.db
            .write(batch)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // After the write, not under the lock with it: openraft reads an
        // entry only once its append has returned, and replication and
        // apply must not wait on the memtable write.
        self.tail().append(written);
        if flushes_inline(self.node_id, leader) {
            callback.log_io_completed(self.sync_wal());
            return Ok(());
        }
        // One WAL holds the whole log, and this syncs all of it: a later
        // append's flush makes every earlier one durable. The patched
        // openraft (vendor/openraft/IDREG-PATCH.md) relies on that when the
        // leader's flushes are reported out of order. The clone goes before
        // the report: whoever awaited the flush may then close the store and
        // reopen it at once (RocksDB's lock).
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let res = this.sync_wal();
            drop(this);
            callback.log_io_completed(res);
        });
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // First: a read in between must not find what the log is dropping.
        self.tail().truncate(log_id.index);
        let cf = self.cf_log();
        let deleted = self
            .db
            .delete_range_cf_opt(&cf, log_key(log_id.index), log_key(u64::MAX), &synced())
            // delete_range excludes its end; the last possible index goes separately.
            .and_then(|()| self.db.delete_cf_opt(&cf, log_key(u64::MAX), &synced()))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e));
        if deleted.is_err() {
            // The log may still hold what the tail dropped: an empty tail
            // is a suffix of any log.
            self.tail().clear();
        }
        deleted
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Record the purge point first: a crash in between leaves extra entries, never a gap.
        self.put_meta(META_LAST_PURGED, &log_id)?;
        let cf = self.cf_log();
        self.db
            .delete_range_cf_opt(&cf, log_key(0), log_key(log_id.index + 1), &synced())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        // After: nobody reads purged entries, and the fsync above is not
        // done under the lock the readers take.
        self.tail().purge(log_id.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::flushes_inline;
    use crate::types::{Entry, LogId};
    use crate::Store;
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, EntryPayload};

    #[tokio::test]
    async fn the_committed_log_id_is_written_with_the_next_append() {
        let kek = idreg_core::Kek::from_bytes(&[9; 32]);
        let dir = tempfile::tempdir().unwrap();
        let log_id = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
        let store = Store::open(dir.path(), &kek).unwrap();
        let mut log = store.log_store_of(1);
        log.save_committed(Some(log_id(5))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(5)));
        // Another store over the same data reads what is written: nothing yet.
        assert_eq!(store.log_store().read_committed().await.unwrap(), None);
        let entry = Entry {
            log_id: log_id(6),
            payload: EntryPayload::Blank,
        };
        log.blocking_append([entry]).await.unwrap();
        drop((log, store));
        let reopened = Store::open(dir.path(), &kek).unwrap();
        let mut log = reopened.log_store_of(1);
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(5)));
    }

    #[test]
    fn a_follower_flushes_inline_and_a_leader_on_the_pool() {
        assert!(
            flushes_inline(Some(2), Some(1)),
            "entries of another leader"
        );
        assert!(!flushes_inline(Some(1), Some(1)), "its own entries");
        assert!(!flushes_inline(None, Some(1)), "a log that knows no node");
        assert!(!flushes_inline(Some(1), None), "an empty append");
    }
}

//! The change history behind `WatchDevices`: every applied change, keyed by
//! revision (raft log index) and its position in the entry, kept for a bounded
//! number of revisions. Written in the same batch as the change itself, so the
//! history and the registry never disagree.
//!
//! Node-local and not in snapshots: a node that installs a snapshot keeps
//! history only from the snapshot's revision on, and says so to watchers that
//! ask for older revisions.

use std::sync::Arc;

use idreg_core::{Change, Device};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};

use crate::codec::encode;
use crate::db::{decode_as, StoreError};
use crate::keys::{CF_HISTORY, CF_SM_META, SM_HISTORY_FROM};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    Created,
    Updated,
    Revoked,
    Deleted,
}

/// One change as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub kind: ChangeKind,
    pub device_id: String,
    /// The device after the change; `None` when deleted.
    pub device: Option<Device>,
}

impl HistoryRecord {
    pub fn of(change: &Change) -> Self {
        let kind = match (&change.before, &change.after) {
            (None, _) => ChangeKind::Created,
            (_, None) => ChangeKind::Deleted,
            _ if change.revocation.is_some() => ChangeKind::Revoked,
            _ => ChangeKind::Updated,
        };
        Self {
            kind,
            device_id: change.id.as_str().to_owned(),
            device: change.after.clone(),
        }
    }
}

/// The changes of one revision, in the order they were applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionChanges {
    pub revision: u64,
    pub records: Vec<HistoryRecord>,
}

pub fn history_key(revision: u64, seq: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&revision.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Adds the trimming of revisions below `keep_from` to `batch`.
pub(crate) fn trim(db: &DB, batch: &mut WriteBatch, keep_from: u64) {
    let cf = db.cf_handle(CF_HISTORY).expect("cf exists");
    batch.delete_range_cf(&cf, history_key(0, 0), history_key(keep_from, 0));
    let meta = db.cf_handle(CF_SM_META).expect("cf exists");
    batch.put_cf(&meta, SM_HISTORY_FROM, encode(&keep_from));
}

/// Reads of the change history.
#[derive(Clone)]
pub struct History {
    db: Arc<DB>,
}

impl History {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    /// The oldest revision still kept (1 when nothing was ever trimmed).
    pub fn first_kept(&self) -> Result<u64, StoreError> {
        let meta = self.db.cf_handle(CF_SM_META).expect("cf exists");
        match self.db.get_cf(&meta, SM_HISTORY_FROM)? {
            Some(b) => decode_as("history start", &b),
            None => Ok(1),
        }
    }

    /// Whole revisions from `from` on, at most `max_revisions` of them.
    pub fn read(
        &self,
        from: u64,
        max_revisions: usize,
    ) -> Result<Vec<RevisionChanges>, StoreError> {
        let cf = self.db.cf_handle(CF_HISTORY).expect("cf exists");
        let start = history_key(from, 0);
        let mut out: Vec<RevisionChanges> = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            let revision =
                u64::from_be_bytes(k[..8].try_into().expect("history keys are 12 bytes"));
            let record: HistoryRecord = decode_as("history record", &v)?;
            match out.last_mut() {
                Some(last) if last.revision == revision => last.records.push(record),
                _ => {
                    if out.len() == max_revisions {
                        break;
                    }
                    out.push(RevisionChanges {
                        revision,
                        records: vec![record],
                    });
                }
            }
        }
        Ok(out)
    }
}

//! The stream behind `WatchDevices`: whole revisions read from the node's
//! change history, oldest first, then each new revision once it is applied.
//!
//! It reads the history (not a broadcast of live events), so a slow watcher
//! cannot miss anything: it only falls behind, until the revisions it still
//! needs are trimmed, and then it is told so (OUT_OF_RANGE) instead of being
//! silently skipped ahead.

use idreg_proto::v1 as pb;
use idreg_store::history::{ChangeKind, History, HistoryRecord, RevisionChanges};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::Status;

use crate::convert;

/// Revisions read from RocksDB per step.
const READ_REVISIONS: usize = 64;
/// Messages buffered per watcher before it waits for the client.
const BUFFER: usize = 16;

fn compacted(from: u64, first: u64) -> Status {
    Status::out_of_range(format!(
        "revision {from} is no longer kept on this node (oldest kept: {first}); \
         list the devices again and watch from the listing's revision + 1"
    ))
}

fn change_to_proto(r: HistoryRecord) -> pb::DeviceChange {
    let kind = match r.kind {
        ChangeKind::Created => pb::ChangeKind::Created,
        ChangeKind::Updated => pb::ChangeKind::Updated,
        ChangeKind::Revoked => pb::ChangeKind::Revoked,
        ChangeKind::Deleted => pb::ChangeKind::Deleted,
    };
    pb::DeviceChange {
        kind: kind as i32,
        device_id: r.device_id,
        device: r.device.as_ref().map(convert::device_to_proto),
    }
}

fn revision_to_proto(c: RevisionChanges) -> pb::WatchDevicesResponse {
    pb::WatchDevicesResponse {
        revision: c.revision,
        changes: c.records.into_iter().map(change_to_proto).collect(),
    }
}

/// Starts a watcher from `from` (0: after the current applied revision),
/// holding `slot` (one of the node's watcher places) until it ends, or
/// until `stopping` turns true: the node is going down, and the watcher
/// gets UNAVAILABLE with the revision to resume from elsewhere.
pub fn start(
    history: History,
    mut applied: watch::Receiver<u64>,
    mut stopping: watch::Receiver<bool>,
    from: u64,
    slot: OwnedSemaphorePermit,
) -> Result<mpsc::Receiver<Result<pb::WatchDevicesResponse, Status>>, Status> {
    let mut next = if from == 0 {
        *applied.borrow() + 1
    } else {
        from
    };
    let first = history.first_kept().map_err(crate::status::storage)?;
    if next < first {
        return Err(compacted(next, first));
    }
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            // Mark the current value seen before reading, so a revision
            // applied during the read wakes the wait below.
            applied.borrow_and_update();
            let h = history.clone();
            let read = tokio::task::spawn_blocking(move || {
                let first = h.first_kept()?;
                Ok::<_, idreg_store::StoreError>((first, h.read(next, READ_REVISIONS)?))
            })
            .await;
            let (first, batch) = match read {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(crate::status::storage(e))).await;
                    return;
                }
                Err(_) => return,
            };
            if next < first {
                let _ = tx.send(Err(compacted(next, first))).await;
                return;
            }
            if batch.is_empty() {
                let stopped = tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return } else { false },
                    _ = tx.closed() => return,
                    _ = stopping.wait_for(|s| *s) => true,
                };
                if stopped {
                    let _ = tx
                        .send(Err(Status::unavailable(format!(
                            "the node is stopping; watch again from revision {next}, on another node"
                        ))))
                        .await;
                    return;
                }
                continue;
            }
            for revision in batch {
                next = revision.revision + 1;
                if tx.send(Ok(revision_to_proto(revision))).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

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

/// Returns once the node is stopping (or can no longer say).
async fn until_stopping(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// What a watcher gets when its node stops: where to pick up elsewhere.
fn stopping_status(next: u64) -> Status {
    Status::unavailable(format!(
        "the node is stopping; watch again from revision {next}, on another node"
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
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                    () = until_stopping(&mut stopping) => {
                        let _ = tx.send(Err(stopping_status(next))).await;
                        return;
                    }
                }
                continue;
            }
            // A watcher working through a backlog hears of the stop at the
            // next revision, not once it has caught up.
            for revision in batch {
                let this = revision.revision;
                tokio::select! {
                    biased;
                    () = until_stopping(&mut stopping) => {
                        let _ = tx.send(Err(stopping_status(this))).await;
                        return;
                    }
                    sent = tx.send(Ok(revision_to_proto(revision))) => {
                        if sent.is_err() {
                            return;
                        }
                        next = this + 1;
                    }
                }
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::{
        Author, Command, DeviceId, Kek, Labels, NewDevice, Proposal, ProposalBatch, Role, TenantId,
    };
    use idreg_store::{Store, TypeConfig};
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    /// A store whose history holds `revisions` revisions, one new device each.
    async fn store_with_history(dir: &std::path::Path, revisions: u64) -> Store {
        let store = Store::open(dir, &Kek::from_bytes(&[7; 32])).unwrap();
        let mut sm = store.state_machine().unwrap();
        let by = Author::new("test", Role::Admin, 1);
        for index in 1..=revisions {
            let create = Proposal {
                at_ms: 1,
                by: by.clone(),
                command: Command::Create(NewDevice {
                    id: DeviceId::parse("id", &format!("dev-{index:04}")).unwrap(),
                    tenant: TenantId::default_tenant(),
                    labels: Labels::default(),
                    gateway: None,
                    credentials: Vec::new(),
                }),
            };
            let entry: Entry<TypeConfig> = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(ProposalBatch::from(vec![create])),
            };
            sm.apply([entry]).await.unwrap();
        }
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_behind_a_backlog_hears_of_the_stop_at_the_next_revision() {
        const REVISIONS: u64 = 300;
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with_history(tmp.path(), REVISIONS).await;
        let (stop, stopping) = watch::channel(false);
        let slot = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
        let mut rx = start(store.history(), store.applied_watch(), stopping, 1, slot).unwrap();
        let first = rx.recv().await.unwrap().unwrap();
        assert_eq!(first.revision, 1);

        stop.send(true).unwrap();
        let mut last = first.revision;
        let status = loop {
            match rx.recv().await.expect("the stream ended without a status") {
                Ok(r) => {
                    assert_eq!(r.revision, last + 1, "a revision skipped");
                    last = r.revision;
                }
                Err(status) => break status,
            }
        };
        // Only what was already queued arrives after the stop, and the
        // status names the first revision the watcher did not get.
        assert!(
            last <= 1 + BUFFER as u64 + 1,
            "{last} of {REVISIONS} revisions sent after the stop"
        );
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
        let resume = format!("from revision {}", last + 1);
        assert!(status.message().contains(&resume), "{status}");
    }
}

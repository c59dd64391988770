//! Receiving a snapshot from the leader, chunk by chunk, in front of openraft.
//!
//! openraft's own receiver seeks to whatever offset a chunk names and hands
//! the finished file to the state machine, whose failure to install it is
//! fatal: one garbage `InstallSnapshot` with `done` would stop raft on this
//! node. Here chunks must arrive in order at the expected offset, the total
//! size is bounded, the snapshot id must be a plain name, and the finished
//! file's MAC (keyed by the KEK) is checked before openraft sees it. A bad
//! snapshot is refused; raft keeps running.

use std::path::PathBuf;

use idreg_store::{is_plain_snapshot_id, Store, TypeConfig};
use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{Raft, Snapshot, SnapshotSegmentId};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tonic::Status;

/// Largest snapshot accepted by default (a registry of ~100M devices).
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 64 << 30;

pub type InstallReply = Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>;

struct Receiving {
    id: String,
    offset: u64,
    file: tokio::fs::File,
}

pub struct SnapshotReceiver {
    store: Store,
    max_bytes: u64,
    current: Mutex<Option<Receiving>>,
}

impl SnapshotReceiver {
    pub fn new(store: Store, max_bytes: u64) -> Self {
        Self {
            store,
            max_bytes,
            current: Mutex::new(None),
        }
    }

    fn path(&self) -> PathBuf {
        self.store.snapshot_dir().join("receiving.tmp")
    }

    // The error type is openraft's reply to InstallSnapshot, sent as it is.
    #[allow(clippy::result_large_err)]
    fn mismatch(
        expect: Option<&Receiving>,
        req: &InstallSnapshotRequest<TypeConfig>,
    ) -> InstallReply {
        let expect = expect
            .map(|r| SnapshotSegmentId {
                id: r.id.clone(),
                offset: r.offset,
            })
            .unwrap_or(SnapshotSegmentId {
                id: req.meta.snapshot_id.clone(),
                offset: 0,
            });
        Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
            SnapshotMismatch {
                expect,
                got: SnapshotSegmentId {
                    id: req.meta.snapshot_id.clone(),
                    offset: req.offset,
                },
            },
        )))
    }

    /// Takes one chunk. `Err(Status)` refuses the snapshot (its data are
    /// dropped); a mismatch reply makes the leader start again at offset 0.
    pub async fn receive(
        &self,
        raft: &Raft<TypeConfig>,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallReply, Status> {
        if !is_plain_snapshot_id(&req.meta.snapshot_id) {
            return Err(Status::invalid_argument(
                "snapshot id must be 1-64 ASCII letters, digits or '-'",
            ));
        }
        let my_vote = raft.metrics().borrow().vote;
        if req.vote < my_vote {
            // A stale leader: say so without taking its data.
            return Ok(Ok(InstallSnapshotResponse { vote: my_vote }));
        }
        let mut current = self.current.lock().await;
        if req.offset == 0 {
            let file = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(self.path())
                .await
                .map_err(|e| Status::internal(format!("cannot create snapshot file: {e}")))?;
            *current = Some(Receiving {
                id: req.meta.snapshot_id.clone(),
                offset: 0,
                file,
            });
        }
        let Some(r) = current.as_mut() else {
            return Ok(Self::mismatch(None, &req));
        };
        if r.id != req.meta.snapshot_id || r.offset != req.offset {
            return Ok(Self::mismatch(Some(r), &req));
        }
        let end = r.offset.saturating_add(req.data.len() as u64);
        if end > self.max_bytes {
            *current = None;
            return Err(Status::resource_exhausted(format!(
                "snapshot larger than this node accepts ({} bytes, --snapshot-max-bytes)",
                self.max_bytes
            )));
        }
        r.file
            .write_all(&req.data)
            .await
            .map_err(|e| Status::internal(format!("cannot write snapshot file: {e}")))?;
        r.offset = end;
        if !req.done {
            return Ok(Ok(InstallSnapshotResponse { vote: my_vote }));
        }
        let done = current.take().expect("checked above");
        done.file
            .sync_all()
            .await
            .map_err(|e| Status::internal(format!("cannot sync snapshot file: {e}")))?;
        let (store, path) = (self.store.clone(), self.path());
        let verified = tokio::task::spawn_blocking(move || store.verify_snapshot_file(&path))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        if let Err(e) = verified {
            tracing::warn!(snapshot = %req.meta.snapshot_id, "refused a snapshot: {e}");
            return Err(Status::invalid_argument(format!("snapshot refused: {e}")));
        }
        let snapshot = Snapshot {
            meta: req.meta.clone(),
            snapshot: Box::new(done.file),
        };
        match raft.install_full_snapshot(req.vote, snapshot).await {
            Ok(resp) => Ok(Ok(InstallSnapshotResponse { vote: resp.vote })),
            Err(fatal) => Ok(Err(RaftError::Fatal(fatal))),
        }
    }
}

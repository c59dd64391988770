//! The openraft type configuration: what a log entry carries and what applying
//! it returns.

use idreg_core::{Device, ProposalBatch, Rejection};
use serde::{Deserialize, Serialize};

pub type NodeId = u64;

/// The result of applying one [`ProposalBatch`]: one verdict per proposal, in
/// order. `Ok(None)` is a deletion.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome(pub Vec<Result<Option<Device>, Rejection>>);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = ProposalBatch,
        R = BatchOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        // Snapshots live in files under the data dir, never whole in memory.
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type StorageError = openraft::StorageError<NodeId>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;

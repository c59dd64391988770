//! A node's view of its cluster, as `idreg cluster status` shows it.

use idreg_store::NodeId;

#[derive(Debug, Clone)]
pub struct MemberView {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// Highest log index the leader knows this member holds.
    pub matched_index: u64,
    /// The leader's last log index minus `matched_index`.
    pub lag: u64,
    /// Whether the leader hears from it (false when this node is no leader).
    pub replicating: bool,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    pub node_id: NodeId,
    pub state: &'static str,
    pub leader_id: Option<NodeId>,
    pub leader_addr: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub members: Vec<MemberView>,
    pub snapshots_installed: u64,
}

/// Entries a node may have left to apply and still count as caught up.
const READY_APPLY_LAG: u64 = 1000;

impl ClusterView {
    /// Whether the node should take traffic (its readiness probe, and
    /// `idreg_node_ready`): it knows a leader, is a member, and has applied
    /// nearly all of its log.
    pub fn ready(&self) -> bool {
        self.leader_id.is_some()
            && self.members.iter().any(|m| m.id == self.node_id)
            && self.applied_index + READY_APPLY_LAG >= self.last_log_index
    }
}

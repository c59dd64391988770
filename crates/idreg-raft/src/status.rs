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

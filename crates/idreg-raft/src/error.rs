//! Why a write did not reach a verdict.

/// A proposal that was not applied (as opposed to one applied and rejected by
/// the registry's rules, which is `idreg_core::Rejection`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader (leader: {leader:?}); retry there")]
    NotLeader { leader: Option<u64> },
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("raft: {0}")]
    Raft(String),
}

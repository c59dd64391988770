//! Why a write (or a membership change) did not reach a verdict.

/// A proposal that was not applied, or whose fate is unknown (as opposed to
/// one applied and rejected by the registry's rules: `idreg_core::Rejection`).
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("this node is not the leader (leader: {leader:?}); retry there")]
    NotLeader { leader: Option<u64> },
    #[error("no leader is known or reachable (election in progress or no quorum); retry")]
    NoLeader,
    #[error(
        "outcome unknown: {0}; the write may or may not have been applied, check before retrying"
    )]
    OutcomeUnknown(String),
    #[error("{0}")]
    Refused(String),
    #[error("node {id} is already a member at {addr}; remove it first to change its address")]
    MemberElsewhere { id: u64, addr: String },
    #[error("node {0} is not a member")]
    NotAMember(u64),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error("raft: {0}")]
    Raft(String),
}

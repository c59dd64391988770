//! What nodes tell each other of device sessions, so a credential cloned
//! onto two devices is seen even when they reach different nodes. Not
//! through raft: a session start is news for a second, not registry state.
//!
//! A node announces each session start to its peers; a peer answers with
//! its own live sessions of that device from another address. One exchange
//! lets both nodes see the clone, record it and apply the policy to the
//! session each holds ([`ClonePolicy::ends`](crate::clone_policy::ClonePolicy::ends)).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::clone_policy::ClonePolicy;

/// One device session as nodes name it to each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStart {
    pub device: String,
    /// Where the session came from (a clone is another address).
    pub ip: IpAddr,
    /// The node that holds it, and its audit id there.
    pub node: u64,
    pub session: u64,
    pub started_ms: u64,
}

impl SessionStart {
    /// Which of two sessions came first: start time, then node, then id.
    pub fn order_key(&self) -> (u64, u64, u64) {
        (self.started_ms, self.node, self.session)
    }
}

/// A live session of the answering node that clones the `start`-th of the
/// starts it was told of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneAnswer {
    pub start: u32,
    pub live: SessionStart,
}

/// Most starts in one announcement.
pub const MAX_STARTS_PER_ANNOUNCEMENT: usize = 4096;

/// A node's side of the exchange, implemented by its device front.
pub trait PeerSessions: Send + Sync {
    /// Peers' session starts: this node's live sessions that clone them
    /// (after recording each sighting and applying the policy here).
    fn heard(&self, starts: &[SessionStart]) -> Vec<CloneAnswer>;
    /// A peer's live sessions that clone starts of ours: `(ours, theirs)`.
    fn answered(&self, pairs: Vec<(SessionStart, SessionStart)>);
}

/// Where a node's own session starts go: to its peers.
pub trait SessionAnnouncer: Send + Sync {
    /// Whether anyone would hear (a node alone in its cluster skips the
    /// work of announcing).
    fn has_peers(&self) -> bool;
    /// Queues one start (never blocks; may drop it).
    fn announce(&self, start: SessionStart);
}

/// An audit entry: one cloned credential seen by this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSighting {
    /// The session that was there first, and the one that started second
    /// (both of the same device).
    pub first: SessionStart,
    pub second: SessionStart,
    pub at_ms: u64,
    /// The policy that applied.
    pub policy: ClonePolicy,
    /// Unique on this node (orders sightings within a millisecond).
    pub id: u64,
}

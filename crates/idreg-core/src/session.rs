//! The audit record of one device session: who connected, from where, with
//! which credential, for how long, and why it ended.

use serde::{Deserialize, Serialize};

/// How a device authenticated its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionCredential {
    Psk,
    Certificate,
}

impl SessionCredential {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionCredential::Psk => "psk",
            SessionCredential::Certificate => "certificate",
        }
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionEnd {
    /// The device sent close_notify or a fatal alert.
    ClosedByPeer,
    /// No traffic within the idle timeout.
    Idle,
    /// The device was revoked, disabled or deleted while connected.
    Revoked,
    /// Evicted to make room in a full peer table.
    Evicted,
    /// The server is shutting down.
    Shutdown,
    /// A transport error.
    Error,
}

impl SessionEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::ClosedByPeer => "closed_by_peer",
            SessionEnd::Idle => "idle",
            SessionEnd::Revoked => "revoked",
            SessionEnd::Evicted => "evicted",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::Error => "error",
        }
    }
}

/// One authenticated session as this node saw it. Written when the handshake
/// completes (with `ended_ms` unset) and again when the session ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Unique on this node.
    pub id: u64,
    pub device: String,
    /// The device's source address, `ip:port`.
    pub peer: String,
    pub credential: SessionCredential,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// UDP payload bytes received from and sent to the peer, handshake included.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub end: Option<SessionEnd>,
}

impl SessionRecord {
    /// How long the session lasted, or has lasted until `now_ms`.
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        self.ended_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.started_ms)
    }
}

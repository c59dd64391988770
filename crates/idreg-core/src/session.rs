//! The audit record of one device session: who connected, from where, with
//! which credential, for how long, and why it ended.

use serde::{Deserialize, Serialize};

/// How a device authenticated its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionCredential {
    Psk,
    Certificate,
    /// A raw public key (RFC 7250).
    RawPublicKey,
    /// A spoke's session with its gateway, reported by the gateway.
    ViaGateway,
}

impl SessionCredential {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionCredential::Psk => "psk",
            SessionCredential::Certificate => "certificate",
            SessionCredential::RawPublicKey => "raw-public-key",
            SessionCredential::ViaGateway => "via-gateway",
        }
    }
}

/// A session moved to another source address (a Connection ID record from
/// a NAT's new mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressChange {
    pub at_ms: u64,
    /// The new address, `ip:port`.
    pub peer: String,
}

/// Address changes kept per session record; later ones replace the oldest.
pub const MAX_ADDRESS_CHANGES: usize = 16;

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
    /// Ended as a clone: the same identity from another address
    /// (`--on-clone refuse-new|end-both`).
    Clone,
}

impl SessionEnd {
    /// Every end, in a fixed order (a bounded label set for counters).
    pub const ALL: [SessionEnd; 7] = [
        SessionEnd::ClosedByPeer,
        SessionEnd::Idle,
        SessionEnd::Revoked,
        SessionEnd::Evicted,
        SessionEnd::Shutdown,
        SessionEnd::Error,
        SessionEnd::Clone,
    ];

    /// This end's place in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::ClosedByPeer => "closed_by_peer",
            SessionEnd::Idle => "idle",
            SessionEnd::Revoked => "revoked",
            SessionEnd::Evicted => "evicted",
            SessionEnd::Shutdown => "shutdown",
            SessionEnd::Error => "error",
            SessionEnd::Clone => "clone",
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
    /// The address the session started from, `ip:port` (moves are in
    /// `address_changes`).
    pub peer: String,
    pub credential: SessionCredential,
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// UDP payload bytes received from and sent to the peer, handshake included.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub end: Option<SessionEnd>,
    /// The cipher suite's IANA name.
    pub suite: String,
    /// The session negotiated a Connection ID (RFC 9146).
    pub connection_id: bool,
    /// Where the session moved, oldest first (at most [`MAX_ADDRESS_CHANGES`]).
    pub address_changes: Vec<AddressChange>,
    /// Taken over from before a restart rather than handshaken.
    pub restored: bool,
}

impl SessionRecord {
    /// Records a move to `peer`, keeping the last [`MAX_ADDRESS_CHANGES`].
    pub fn moved(&mut self, at_ms: u64, peer: String) {
        if self.address_changes.len() == MAX_ADDRESS_CHANGES {
            self.address_changes.remove(0);
        }
        self.address_changes.push(AddressChange { at_ms, peer });
    }

    /// How long the session lasted, or has lasted until `now_ms`.
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        self.ended_ms
            .unwrap_or(now_ms)
            .saturating_sub(self.started_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_sits_at_its_index() {
        for (i, end) in SessionEnd::ALL.iter().enumerate() {
            assert_eq!(end.index(), i, "{}", end.as_str());
        }
    }
}

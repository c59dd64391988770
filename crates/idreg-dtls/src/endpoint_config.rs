//! The engine's settings.

use std::time::Duration;

use crate::server_handshake::HandshakeSettings;

#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// First byte of every Connection ID this endpoint issues.
    pub node_id: u8,
    /// Second byte: which socket shard of the node owns the session.
    pub shard: u8,
    /// Issue Connection IDs to clients that offer the extension.
    pub connection_ids: bool,
    pub handshake: HandshakeSettings,
    /// A session not heard from for this long is closed.
    pub idle_timeout: Duration,
    /// Established sessions kept; past it the least recently heard of a
    /// small random sample is closed.
    pub max_sessions: usize,
    /// Handshakes in flight (after the cookie round trip) in all…
    pub max_handshakes: usize,
    /// …from one IP address…
    pub max_handshakes_per_address: usize,
    /// …and from one network (/24 for IPv4, /56 for IPv6), so one host or
    /// one subnet cannot crowd out the rest.
    pub max_handshakes_per_network: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            shard: 0,
            connection_ids: true,
            handshake: HandshakeSettings {
                mtu: 1200,
                retransmit_initial: Duration::from_secs(1),
                retransmit_max: Duration::from_secs(8),
                timeout: Duration::from_secs(10),
                require_extended_master_secret: true,
            },
            idle_timeout: Duration::from_secs(300),
            max_sessions: 150_000,
            max_handshakes: 10_000,
            max_handshakes_per_address: 8,
            max_handshakes_per_network: 256,
        }
    }
}

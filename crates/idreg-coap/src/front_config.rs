//! Settings of the device front.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// UDP address for DTLS with pre-shared keys.
    pub psk_addr: SocketAddr,
    /// UDP address for DTLS with certificates (ECDHE-ECDSA P-256); `None`
    /// serves PSK only.
    pub cert_addr: Option<SocketAddr>,
    /// The server's certificate chain and key (PEM), for the certificate port.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Peers (handshaking or established) per socket; beyond it the peer idle
    /// longest is evicted, unfinished handshakes first.
    pub max_peers: usize,
    pub handshake_timeout: Duration,
    /// A session with no datagram for this long is closed.
    pub idle_timeout: Duration,
    /// How long session audit records are kept.
    pub audit_retention: Duration,
}

impl FrontConfig {
    pub const DEFAULT_MAX_PEERS: usize = 20_000;
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
}

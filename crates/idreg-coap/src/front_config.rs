//! Settings of the device front.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// The UDP address for CoAP over DTLS: PSK, certificate and raw-public-key
    /// devices alike, told apart by the suites they offer.
    pub addr: SocketAddr,
    /// Sockets (SO_REUSEPORT) serving the address, each with its own loop.
    pub shards: usize,
    /// The server's certificate chain and key (PEM), for ECDHE-ECDSA suites.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Established sessions on this node; past it the least recently heard
    /// of a random sample is closed.
    pub max_sessions: usize,
    pub handshake_timeout: Duration,
    /// A session with no datagram for this long is closed.
    pub idle_timeout: Duration,
    /// How long session audit records are kept.
    pub audit_retention: Duration,
    /// First byte of every Connection ID (the raft node id), so a record can
    /// be told to be this node's.
    pub node_id: u8,
    /// New handshakes are refused while this node has not heard from a raft
    /// leader for longer than this: its copy of the registry may miss
    /// revocations.
    pub max_auth_staleness: Duration,
    /// Where live sessions are saved (sealed) on shutdown and read back at
    /// start; `None`: sessions end at shutdown.
    pub session_file: Option<PathBuf>,
    /// What to do with a device seen from two addresses at once.
    pub on_clone: idreg_core::ClonePolicy,
    /// Validity of the certificates issued at enrollment.
    pub device_cert_days: u32,
    /// How long a re-enrolled device's old key stays valid if the new one
    /// is not used.
    pub rotation_grace: Duration,
}

impl FrontConfig {
    pub const DEFAULT_MAX_SESSIONS: usize = 150_000;
    pub const DEFAULT_DEVICE_CERT_DAYS: u32 = 90;
    pub const DEFAULT_ROTATION_GRACE: Duration = Duration::from_secs(24 * 3600);
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_AUDIT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
    pub const DEFAULT_MAX_AUTH_STALENESS: Duration = Duration::from_secs(30);
}

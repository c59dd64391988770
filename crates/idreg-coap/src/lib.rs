//! The device front: CoAP over DTLS 1.2 on UDP, authenticated against the
//! registry on this node.
//!
//! Layers, from the wire in:
//! - [`udp_listener`]: one task per socket reads datagrams and routes them by
//!   source address ([`peer_table`], bounded; [`datagram`] decides what may
//!   create a peer). The stock webrtc-dtls listener is not used: it runs
//!   handshakes inline without a timeout and never forgets a peer.
//! - [`session`]: per peer, the webrtc-dtls handshake under a timeout (the
//!   [`authenticator`] answers its PSK and certificate callbacks with local
//!   point reads), then the CoAP loop and the audit record.
//! - [`endpoint`], [`dedup`], [`resources`]: CoAP with no sockets and no clock,
//!   tested in memory.
//!
//! Invariant: nothing a client sends can panic a task or grow memory without
//! bound: peers, per-peer queues, dedup caches and failure counters are all
//! capped.

pub mod authenticator;
pub mod datagram;
pub mod dedup;
pub mod device_front;
pub mod endpoint;
pub mod front_config;
pub mod live_sessions;
pub mod peer_conn;
pub mod peer_table;
pub mod resources;
pub mod server_identity;
pub mod session;
pub mod shared;
pub mod stats;
pub mod udp_listener;

pub use device_front::{DeviceFront, FrontError};
pub use front_config::FrontConfig;
pub use stats::StatsSnapshot;

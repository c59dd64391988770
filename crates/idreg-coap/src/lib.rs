//! The device front: CoAP over DTLS 1.2 on UDP, authenticated against the
//! registry on this node.
//!
//! Layers, from the wire in:
//! - [`device_front`]: the socket shards on the one port (SO_REUSEPORT),
//!   registry changes turned into session ends, the audit writer, sessions
//!   saved across a restart ([`session_vault`]).
//! - [`front_shard`]: one loop per socket with batched system calls
//!   ([`udp_batch`]): the sans-IO DTLS engine (`idreg-dtls`), whose
//!   credential store is the registry ([`registry_credentials`],
//!   [`authenticator`]), and CoAP for each session; datagrams the kernel
//!   hands to the wrong shard go to the owner ([`shard_directory`]).
//! - `idreg-coap-endpoint` (re-exported as [`endpoint`], [`dedup`],
//!   [`resources`]): CoAP with no sockets and no clock, tested and fuzzed
//!   in memory.
//!
//! Invariant: nothing a client sends can panic the front or grow its memory
//! without bound: the engine keeps no state before a cookie round trip and
//! budgets handshakes; sessions, dedup caches, queues and failure counters
//! are capped.

pub mod authenticator;
pub mod clone_watch;
pub mod device_front;
pub mod enrollment_desk;
pub mod firmware_desk;
pub mod front_config;
pub mod front_shard;
mod log_budget;
pub mod plain_coap;
pub mod registry_credentials;
pub mod revocation_list_cache;
pub mod server_identity;
pub mod session_vault;
pub mod shard_directory;
pub mod stats;
pub mod udp_batch;

pub use device_front::{DeviceFront, FrontError};
pub use enrollment_desk::{RegistryWriter, WriteFuture};
pub use front_config::FrontConfig;
pub use idreg_coap_endpoint::{dedup, endpoint, resources};
pub use registry_credentials::RegistryFreshness;
pub use stats::StatsSnapshot;

/// Milliseconds since the Unix epoch (audit records, saved sessions).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

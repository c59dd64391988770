//! CoAP (RFC 7252) for one authenticated device session, sans I/O: a
//! decrypted datagram and the time in, the datagram to send back out. The
//! message layer's rules live in [`endpoint`] and [`dedup`]; what each
//! resource answers lives in [`resources`], which reaches the registry only
//! through [`resources::ResourceContext`].
//!
//! Its own crate so it is tested and fuzzed without the store, the engine or
//! any socket.

pub mod block_option;
pub mod block_transfer;
pub mod dedup;
pub mod endpoint;
pub mod est;
pub mod observe;
pub mod pkcs7;
pub mod resources;

pub use endpoint::CoapEndpoint;
pub use resources::ResourceContext;

//! A DTLS 1.2 server engine with no I/O, in the way quinn-proto is: no
//! sockets, no clock, no tasks. Datagrams and the time go in; datagrams to
//! send, timer deadlines and events come out.
//!
//! What it does that the general-purpose stacks do not, for constrained
//! devices: state per peer only after a stateless cookie round trip; a new
//! handshake beside an established session rather than over it (RFC 6347
//! §4.2.8); Connection IDs (RFC 9146) so a session survives NAT rebinding;
//! raw public keys (RFC 7250); PSK suites with no ephemeral keys; and
//! established sessions kept to the record layer's few hundred bytes.
//!
//! Invariant: nothing a peer sends can panic the engine or grow its memory
//! without bound. Every read is bounds-checked ([`reader`]), handshakes in
//! flight are budgeted per source, reassembly buffers are capped.

pub mod alert;
pub mod cipher_suite;
pub mod client;
pub mod cookie_jar;
pub mod credentials;
pub mod endpoint;
pub mod endpoint_config;
pub mod flight_writer;
pub mod handshake_budget;
pub mod handshake_codec;
pub mod hello_extensions;
pub mod message_assembler;
pub mod prf;
pub mod reader;
pub mod record;
pub mod record_cipher;
pub mod replay_window;
pub mod saved_session;
pub mod server_handshake;
pub mod session;

pub use cipher_suite::CipherSuite;
pub use credentials::{CredentialStore, Refusal, ServerIdentity};
pub use endpoint::{CloseReason, ConnId, Endpoint, EndpointStats, Event, Miss, Transmit};
pub use endpoint_config::EndpointConfig;
pub use session::AuthCredential;

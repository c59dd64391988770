//! idreg's raft node: openraft wired to the RocksDB store, with proposals from
//! many concurrent clients batched into few log entries.
//!
//! Architecture invariant: this crate decides *how* commands reach the log
//! (batching, leadership, later forwarding and the network); it does not
//! interpret them. The registry rules live in idreg-core.

pub mod error;
pub mod network;
pub mod node;
pub mod proposer;

pub use error::WriteError;
pub use node::{NodeConfig, RegistryNode};

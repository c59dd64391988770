//! idreg's raft node: openraft wired to the RocksDB store, proposals from many
//! concurrent clients batched into few log entries, forwarded to the leader
//! from any node, and the node-to-node transport over gRPC.
//!
//! Architecture invariant: this crate decides *how* commands reach the log
//! (batching, leadership, forwarding, the network); it does not interpret
//! them. The registry rules live in idreg-core.

pub mod append_budget;
pub mod error;
pub mod forwarded_batch;
pub mod forwarder;
pub mod grpc_network;
pub mod leader_contact;
pub mod node;
pub mod proposer;
pub mod raft_service;
pub mod session_herald;
pub mod snapshot_receiver;
pub mod status;
pub mod wire;
pub mod write_metrics;

pub use error::WriteError;
pub use node::{NodeConfig, RegistryNode};
pub use proposer::Verdict;
pub use status::{ClusterView, MemberView};

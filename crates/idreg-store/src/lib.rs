//! idreg's storage: one RocksDB instance holding the raft log, raft metadata
//! and the registry (devices and their indexes), with openraft 0.9's
//! `RaftLogStorage` and `RaftStateMachine` (storage-v2) implemented on it.
//!
//! Architecture invariant: only this crate knows RocksDB. It applies commands
//! by calling `idreg_core::apply` and writes what that returns; it makes no
//! registry decisions of its own. It never sees a PSK secret in the clear.

pub mod codec;
pub mod db;
pub mod events;
pub mod firmware_reads;
mod firmware_writes;
mod format_migration;
pub mod history;
pub mod keys;
mod legacy_bincode;
pub mod log_store;
mod log_tail;
pub mod reader;
pub mod session_log;
pub mod snapshot;
pub mod state_machine;
pub mod store_metrics;
pub mod types;
pub mod waiting_callers;

pub use db::{OpenOptions, Store, StoreError, DEFAULT_WAL_LIMIT_MB};
pub use events::RegistryEvent;
pub use history::History;
pub use idreg_core::firmware_catalog::{ReportedDevice, VersionCount};
pub use log_store::LogStore;
pub use reader::{RegistryReader, SignedListError};
pub use session_log::SessionLog;
pub use state_machine::{is_plain_snapshot_id, StateMachine};
pub use store_metrics::{RocksCounters, StoreMeasures};
pub use types::{BatchOutcome, NodeId, TypeConfig};
pub use waiting_callers::{AnswerCallers, WaitingCallers};

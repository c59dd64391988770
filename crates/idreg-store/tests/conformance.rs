//! openraft's storage conformance suite, run against the RocksDB store.

use idreg_store::{LogStore, StateMachine, Store, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

/// `node`: the log's own node id, if any. The suite's entries are led by
/// nodes 0–2, so a log of node 99 flushes every append as a follower does
/// (on the calling task), and a log without one as a leader does (on the
/// blocking pool). `tail_bytes`: the in-memory tail of the log; 0 keeps one
/// entry, so nearly every read goes to RocksDB.
struct RocksBuilder {
    node: Option<u64>,
    tail_bytes: Option<usize>,
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store =
            Store::open(dir.path(), &idreg_core::Kek::from_bytes(&[7; 32])).expect("open store");
        if let Some(bytes) = self.tail_bytes {
            store = store.with_log_tail_bytes(bytes);
        }
        let sm = store.state_machine().expect("state machine");
        let log = match self.node {
            Some(id) => store.log_store_of(id),
            None => store.log_store(),
        };
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // the suite's own error type
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(RocksBuilder {
        node: None,
        tail_bytes: None,
    })
}

#[test]
#[allow(clippy::result_large_err)]
fn openraft_storage_suite_as_a_follower() -> Result<(), StorageError<u64>> {
    Suite::test_all(RocksBuilder {
        node: Some(99),
        tail_bytes: None,
    })
}

#[test]
#[allow(clippy::result_large_err)]
fn openraft_storage_suite_reading_from_rocksdb() -> Result<(), StorageError<u64>> {
    Suite::test_all(RocksBuilder {
        node: Some(99),
        tail_bytes: Some(0),
    })
}

//! openraft's storage conformance suite, run against the RocksDB store.

use idreg_store::{LogStore, StateMachine, Store, TypeConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            Store::open(dir.path(), &idreg_core::Kek::from_bytes(&[7; 32])).expect("open store");
        let sm = store.state_machine().expect("state machine");
        Ok((dir, store.log_store(), sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // the suite's own error type
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(RocksBuilder)
}

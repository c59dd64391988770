//! Devices by status are kept counts: exact through creates, status
//! changes, revocations and deletes within one entry, carried by a
//! snapshot, and counted once for a data directory written before they
//! were kept. The store's measures (WAL fsyncs, snapshot builds) count
//! what happened.

mod common;

use common::{create, entry, id, snapshot_into};
use idreg_core::{Command, Kek, StatusChange};
use idreg_store::Store;
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};

fn set_status(name: &str, status: StatusChange) -> Command {
    Command::Update {
        id: id(name),
        labels: None,
        status: Some(status),
        gateway: None,
        add_credentials: vec![],
        remove_credentials: vec![],
    }
}

#[tokio::test]
async fn status_counts_follow_every_change_and_are_rebuilt_when_missing() {
    let kek = Kek::from_bytes(&[3; 32]);
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let store = Store::open(&a, &kek).unwrap();
    let mut sm = store.state_machine().unwrap();
    assert_eq!(store.reader().devices_by_status().unwrap(), [0, 0, 0]);

    let names = ["d1", "d2", "d3", "d4", "d5"];
    sm.apply([entry(1, names.iter().map(|n| create(n)).collect())])
        .await
        .unwrap();
    // In one entry: disable d1, disable and re-enable d2, revoke d3 (after
    // disabling it), delete d4 and a device that does not exist.
    sm.apply([entry(
        2,
        vec![
            set_status("d1", StatusChange::Disabled),
            set_status("d2", StatusChange::Disabled),
            set_status("d2", StatusChange::Active),
            set_status("d3", StatusChange::Disabled),
            Command::Revoke {
                id: id("d3"),
                reason: "lost".into(),
            },
            Command::Delete { id: id("d4") },
            Command::Delete { id: id("nobody") },
        ],
    )])
    .await
    .unwrap();
    let want = [2, 1, 1]; // active d2 d5, disabled d1, revoked d3
    assert_eq!(store.reader().devices_by_status().unwrap(), want);
    assert_eq!(store.reader().device_count().unwrap(), 4);

    // A snapshot carries them; building it is timed.
    let b = snapshot_into(&mut sm, &dir.path().join("b"), &kek).await;
    assert_eq!(store.measures().snapshot_build.count(), 1);
    assert_eq!(b.reader().devices_by_status().unwrap(), want);
    assert_eq!(b.measures().snapshot_install.count(), 1);
    drop(b);

    // A data directory from before the counts: the key is gone, as in one
    // written by the previous version. Opening it counts them once.
    drop(sm);
    drop(store);
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            a.join("db"),
            idreg_store::keys::ALL_CFS,
        )
        .unwrap();
        let cf = db.cf_handle(idreg_store::keys::CF_COUNTERS).unwrap();
        db.delete_cf(&cf, idreg_store::keys::COUNTER_BY_STATUS)
            .unwrap();
    }
    let store = Store::open(&a, &kek).unwrap();
    assert_eq!(store.reader().devices_by_status().unwrap(), want);
    // And apply goes on from them.
    let mut sm = store.state_machine().unwrap();
    sm.apply([entry(3, vec![set_status("d1", StatusChange::Active)])])
        .await
        .unwrap();
    assert_eq!(store.reader().devices_by_status().unwrap(), [3, 0, 1]);
}

#[tokio::test]
async fn every_log_append_is_one_timed_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &Kek::from_bytes(&[4; 32])).unwrap();
    let mut log = store.log_store();
    for index in 1..=3 {
        log.blocking_append([entry(index, vec![create("x")])])
            .await
            .unwrap();
    }
    let fsyncs = store.measures().wal_fsync;
    assert_eq!(fsyncs.count(), 3);
    assert!(fsyncs.sum_seconds > 0.0);
}

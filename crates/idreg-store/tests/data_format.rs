//! The data directory's format marker: a new directory records this build's
//! format, and a directory of a newer format is refused, unchanged, with a
//! message that says what to do — by a normal open and by a read-only one,
//! which also refuses an older format it cannot migrate. (Migrating format 1,
//! and an unmarked directory with data being format 1, are tested on a real
//! format-1 directory in `format_migration` and tests/data_upgrade.rs.)

use idreg_core::Kek;
use idreg_store::db::DATA_FORMAT;
use idreg_store::{Store, StoreError};

// Spelled out rather than `keys::SM_FORMAT`: where the marker lives is part
// of the on-disk format, which every build, old or new, must agree on.
const FORMAT_KEY: &[u8] = b"format";

fn kek() -> Kek {
    Kek::from_bytes(&[7; 32])
}

/// The marker as raw RocksDB holds it (None: absent).
fn marker(dir: &std::path::Path) -> Option<Vec<u8>> {
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        dir.join("db"),
        idreg_store::keys::ALL_CFS,
        false,
    )
    .unwrap();
    let cf = db.cf_handle("sm_meta").unwrap();
    db.get_cf(&cf, FORMAT_KEY).unwrap()
}

/// Sets (Some) or removes (None) the marker behind the store's back.
fn set_marker(dir: &std::path::Path, value: Option<&[u8]>) {
    let db = rocksdb::DB::open_cf(
        &rocksdb::Options::default(),
        dir.join("db"),
        idreg_store::keys::ALL_CFS,
    )
    .unwrap();
    let cf = db.cf_handle("sm_meta").unwrap();
    match value {
        Some(v) => db.put_cf(&cf, FORMAT_KEY, v).unwrap(),
        None => db.delete_cf(&cf, FORMAT_KEY).unwrap(),
    }
}

#[test]
fn a_new_directory_records_the_format() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &kek()).unwrap());
    assert_eq!(marker(dir.path()), Some(DATA_FORMAT.to_be_bytes().to_vec()));
    assert_eq!(DATA_FORMAT, 2);
    drop(Store::open(dir.path(), &kek()).unwrap());
    assert_eq!(marker(dir.path()), Some(DATA_FORMAT.to_be_bytes().to_vec()));
}

#[test]
fn a_read_only_open_refuses_an_older_format() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &kek()).unwrap());
    set_marker(dir.path(), Some(&1u32.to_be_bytes()));
    let err = Store::open_read_only(dir.path()).err().expect("refused");
    assert!(
        matches!(err, StoreError::OlderFormat { found: 1, current } if current == DATA_FORMAT),
        "{err}"
    );
    assert!(err.to_string().contains("idreg serve"), "{err}");
    assert_eq!(
        marker(dir.path()),
        Some(1u32.to_be_bytes().to_vec()),
        "left as found"
    );
}

#[test]
fn a_newer_format_is_refused_unchanged_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &kek()).unwrap());
    let newer = (DATA_FORMAT + 1).to_be_bytes();
    set_marker(dir.path(), Some(&newer));
    let err = Store::open(dir.path(), &kek()).err().expect("refused");
    assert!(
        matches!(err, StoreError::NewerFormat { found, supported } if found == DATA_FORMAT + 1 && supported == DATA_FORMAT),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("newer idreg") && text.contains("--data-dir"),
        "{text}"
    );
    let err = Store::open_read_only(dir.path()).err().expect("refused");
    assert!(matches!(err, StoreError::NewerFormat { .. }), "{err}");
    assert_eq!(marker(dir.path()), Some(newer.to_vec()), "left as found");

    set_marker(dir.path(), Some(b"\x01"));
    let err = Store::open(dir.path(), &kek()).err().expect("refused");
    assert!(
        matches!(err, StoreError::BadFormatMarker { len: 1 }),
        "{err}"
    );
}

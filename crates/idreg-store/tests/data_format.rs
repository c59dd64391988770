//! The data directory's format marker: a new directory records this build's
//! format, one from before the marker is taken as format 1 and marked, and
//! a directory of a newer format is refused, unchanged, with a message that
//! says what to do — by a normal open and by a read-only one.

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
fn a_new_directory_records_the_format_and_an_unmarked_one_is_format_1() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), &kek()).unwrap());
    assert_eq!(marker(dir.path()), Some(DATA_FORMAT.to_be_bytes().to_vec()));
    // A directory written before the marker existed opens and is marked.
    set_marker(dir.path(), None);
    assert_eq!(marker(dir.path()), None);
    drop(Store::open(dir.path(), &kek()).unwrap());
    assert_eq!(marker(dir.path()), Some(1u32.to_be_bytes().to_vec()));
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

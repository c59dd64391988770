//! Bringing a data directory to [`DATA_FORMAT`] on open, and the one
//! migration there is: format 1 (bincode 1 values) to format 2 (postcard).
//!
//! Every stored value is decoded as the type its column family and key say
//! it holds, and written back in the new encoding under the same key. The
//! work is done in batches; each batch also records how far it got
//! (`sm_meta/migrating`), so a migration cut short resumes where it stopped
//! and never decodes a value twice. The format marker moves to 2 last.
//! A key whose kind is not known stops the migration with its name: a
//! value guessed at would be a value lost.

use std::time::Instant;

use idreg_core::{
    AuditRecord, ClonePolicy, CloneSighting, Device, DeviceCa, EnrollmentGroup, FirmwareRelease,
    FirmwareReport, FirmwareSigner, RevocationRecord, Rollout, SealedSecret, SessionRecord,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{encode, CodecError};
use crate::db::{StoreError, DATA_FORMAT};
use crate::keys::*;
use crate::types::{Entry, LogId, NodeId, StoredMembership};

/// In [`CF_SM_META`], while a migration is under way: the position (in
/// [`ALL_CFS`]) of the column family being migrated and the last key done.
/// Raw bytes, like the format marker.
const SM_MIGRATING: &[u8] = b"migrating";

/// Bytes of values per migration batch.
const BATCH_BYTES: usize = 4 << 20;

/// Keys of `sm_meta` that hold raw bytes, not encoded values.
const RAW_META: &[&[u8]] = &[SM_FORMAT, SM_MIGRATING, SM_INSTALLING, SM_RESTORED];

fn to_current<T: Serialize + DeserializeOwned>(
    value: &[u8],
) -> Result<Option<Vec<u8>>, CodecError> {
    Ok(Some(encode(&crate::legacy_bincode::decode::<T>(value)?)))
}

/// Format 1's `value` under `key` in column family `cf`, in the current
/// encoding; `None` for values that are raw bytes in both formats.
pub(crate) fn value_from_format_1(
    cf: &str,
    key: &[u8],
    value: &[u8],
) -> Result<Option<Vec<u8>>, CodecError> {
    let first = key.first().copied();
    match cf {
        CF_LOG => to_current::<Entry>(value),
        CF_RAFT_META => match key {
            META_VOTE => to_current::<openraft::Vote<NodeId>>(value),
            META_COMMITTED => to_current::<Option<LogId>>(value),
            META_LAST_PURGED => to_current::<LogId>(value),
            _ => unknown(cf, key),
        },
        CF_SM_META => match key {
            SM_APPLIED => to_current::<LogId>(value),
            SM_MEMBERSHIP => to_current::<StoredMembership>(value),
            SM_SNAPSHOT => to_current::<crate::state_machine::CurrentSnapshot>(value),
            SM_KEK_CHECK => to_current::<SealedSecret>(value),
            SM_HISTORY_FROM => to_current::<u64>(value),
            k if RAW_META.contains(&k) => Ok(None),
            _ => unknown(cf, key),
        },
        CF_DEVICES => to_current::<Device>(value),
        CF_IDX_PSK | CF_IDX_KEY | CF_IDX_LABEL | CF_IDX_TENANT | CF_IDX_GATEWAY => Ok(None),
        CF_REVOKED => match first {
            Some(b'd' | b'v') => to_current::<RevocationRecord>(value),
            Some(b'p' | b'k') => Ok(None),
            _ => unknown(cf, key),
        },
        CF_COUNTERS => match key {
            COUNTER_RL_VERSION | COUNTER_DEVICES => to_current::<u64>(value),
            COUNTER_BY_STATUS => to_current::<[u64; 3]>(value),
            _ => unknown(cf, key),
        },
        CF_SESSIONS => match first {
            Some(b't') => to_current::<SessionRecord>(value),
            Some(b'c') => to_current::<CloneSighting>(value),
            Some(b'd') => Ok(None),
            _ => unknown(cf, key),
        },
        CF_HISTORY => to_current::<crate::history::HistoryRecord>(value),
        CF_AUDIT => to_current::<AuditRecord>(value),
        CF_CLUSTER => match key {
            CLUSTER_DEVICE_CA => to_current::<DeviceCa>(value),
            CLUSTER_RL_KEY => to_current::<idreg_core::revocation_list::RlSigningKey>(value),
            k if k.starts_with(CLUSTER_GROUP_PREFIX) => to_current::<EnrollmentGroup>(value),
            k if k.starts_with(CLUSTER_GROUP_CA_PREFIX) => Ok(None),
            k if k.starts_with(CLUSTER_FW_SIGNER_PREFIX) => to_current::<FirmwareSigner>(value),
            k if k.starts_with(CLUSTER_TENANT_CLONE_PREFIX) => to_current::<ClonePolicy>(value),
            _ => unknown(cf, key),
        },
        CF_FIRMWARE => match first {
            Some(b'r') => to_current::<FirmwareRelease>(value),
            Some(b'o') => to_current::<Rollout>(value),
            Some(b'd') => to_current::<FirmwareReport>(value),
            Some(b'i' | b'n' | b'a') => to_current::<u64>(value),
            Some(b'c') => Ok(None),
            _ => unknown(cf, key),
        },
        _ => unknown(cf, key),
    }
}

fn unknown(cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    Err(CodecError::custom(format!(
        "no known value kind for key {} in column family {cf}",
        String::from_utf8_lossy(key).escape_debug()
    )))
}

/// The format a directory's marker names; `None` without one.
fn stored_format(db: &DB) -> Result<Option<u32>, StoreError> {
    let cf = db.cf_handle(CF_SM_META).expect("cf exists");
    match db.get_cf(&cf, SM_FORMAT)? {
        Some(bytes) => {
            let raw: [u8; 4] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::BadFormatMarker { len: bytes.len() })?;
            Ok(Some(u32::from_be_bytes(raw)))
        }
        None => Ok(None),
    }
}

fn is_empty(db: &DB) -> Result<bool, StoreError> {
    for name in ALL_CFS {
        let cf = db.cf_handle(name).expect("cf exists");
        if db
            .iterator_cf(&cf, IteratorMode::Start)
            .next()
            .transpose()?
            .is_some()
        {
            return Ok(false);
        }
    }
    Ok(true)
}

fn write_marker(db: &DB, batch: &mut WriteBatch) {
    let cf = db.cf_handle(CF_SM_META).expect("cf exists");
    batch.put_cf(&cf, SM_FORMAT, DATA_FORMAT.to_be_bytes());
    batch.delete_cf(&cf, SM_MIGRATING);
}

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
}

/// Refuses a directory of a newer format before anything in it is decoded,
/// marks a new one, and migrates an older one (a directory with data and
/// no marker predates the marker: format 1).
pub(crate) fn bring_up_to_date(db: &DB) -> Result<(), StoreError> {
    let found = match stored_format(db)? {
        Some(f) => f,
        None if is_empty(db)? => {
            let mut batch = WriteBatch::default();
            write_marker(db, &mut batch);
            db.write_opt(batch, &synced())?;
            return Ok(());
        }
        None => 1,
    };
    if found > DATA_FORMAT {
        return Err(StoreError::NewerFormat {
            found,
            supported: DATA_FORMAT,
        });
    }
    if found < DATA_FORMAT {
        migrate_from_format_1(db, BATCH_BYTES, None)?;
    }
    Ok(())
}

/// Refuses, for a read-only open, any directory not in this build's format
/// (it cannot migrate one).
pub(crate) fn check_current(db: &DB) -> Result<(), StoreError> {
    match stored_format(db)? {
        Some(DATA_FORMAT) => Ok(()),
        Some(found) if found > DATA_FORMAT => Err(StoreError::NewerFormat {
            found,
            supported: DATA_FORMAT,
        }),
        None if is_empty(db)? => Ok(()),
        found => Err(StoreError::OlderFormat {
            found: found.unwrap_or(1),
            current: DATA_FORMAT,
        }),
    }
}

/// Migrates in batches of about `batch_bytes`; stops (as a crash would)
/// after `stop_after` batches if given, for tests.
fn migrate_from_format_1(
    db: &DB,
    batch_bytes: usize,
    stop_after: Option<usize>,
) -> Result<(), StoreError> {
    let started = Instant::now();
    let meta = db.cf_handle(CF_SM_META).expect("cf exists");
    // Where an interrupted run stopped: (column family position, last key).
    let resume: Option<(usize, Vec<u8>)> = db
        .get_cf(&meta, SM_MIGRATING)?
        .filter(|p| !p.is_empty())
        .map(|p| (p[0] as usize, p[1..].to_vec()));
    match &resume {
        Some((cf, _)) => tracing::warn!(
            column_family = ALL_CFS.get(*cf).copied().unwrap_or("?"),
            "resuming an interrupted migration of the data directory from format 1"
        ),
        None => tracing::warn!(
            to = DATA_FORMAT,
            "migrating the data directory from format 1 (bincode) to format {DATA_FORMAT}; \
             older idreg builds cannot open it afterwards"
        ),
    }
    let mut values = 0u64;
    let mut batches = 0usize;
    let mut write = |batch: WriteBatch| -> Result<bool, StoreError> {
        db.write(batch)?;
        batches += 1;
        Ok(stop_after.is_some_and(|n| batches >= n))
    };
    for (position, name) in ALL_CFS.iter().enumerate() {
        let after = match &resume {
            Some((at, _)) if position < *at => continue,
            Some((at, key)) if position == *at => Some(key.clone()),
            _ => None,
        };
        let cf = db.cf_handle(name).expect("cf exists");
        let mode = match &after {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut batch = WriteBatch::default();
        let mut last: Option<Box<[u8]>> = None;
        for item in db.iterator_cf(&cf, mode) {
            let (key, value) = item?;
            if after.as_deref() == Some(&*key) {
                continue;
            }
            let current = value_from_format_1(name, &key, &value).map_err(|source| {
                StoreError::Migration {
                    column_family: name,
                    key: String::from_utf8_lossy(&key).escape_debug().to_string(),
                    source,
                }
            })?;
            if let Some(current) = current {
                batch.put_cf(&cf, &key, current);
                values += 1;
            }
            last = Some(key);
            if batch.size_in_bytes() >= batch_bytes {
                let key = last.as_deref().expect("a key was done");
                batch.put_cf(&meta, SM_MIGRATING, [&[position as u8], key].concat());
                if write(std::mem::take(&mut batch))? {
                    return Ok(());
                }
            }
        }
        if let Some(key) = last {
            batch.put_cf(&meta, SM_MIGRATING, [&[position as u8], &*key].concat());
        }
        if write(batch)? {
            return Ok(());
        }
    }
    let mut batch = WriteBatch::default();
    write_marker(db, &mut batch);
    db.write_opt(batch, &synced())?;
    tracing::warn!(
        values,
        ms = started.elapsed().as_millis() as u64,
        "data directory migrated to format {DATA_FORMAT}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The committed format-1 data directory (tests/fixtures), unpacked
    /// under `into`; its RocksDB opened.
    fn format_1_db(into: &Path) -> DB {
        let archive =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/data-format-1.tar.gz");
        let out = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(into)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let mut opts = rocksdb::Options::default();
        opts.create_missing_column_families(true);
        DB::open_cf(&opts, into.join("data/db"), ALL_CFS).unwrap()
    }

    /// Column family, key, value.
    type Stored = (&'static str, Box<[u8]>, Box<[u8]>);

    fn everything(db: &DB) -> Vec<Stored> {
        let mut all = Vec::new();
        for name in ALL_CFS {
            let cf = db.cf_handle(name).unwrap();
            for item in db.iterator_cf(&cf, IteratorMode::Start) {
                let (k, v) = item.unwrap();
                all.push((*name, k, v));
            }
        }
        all
    }

    #[test]
    fn a_migration_cut_short_resumes_to_the_same_result() {
        let whole = tempfile::tempdir().unwrap();
        let whole = format_1_db(whole.path());
        assert_eq!(stored_format(&whole).unwrap(), Some(1));
        bring_up_to_date(&whole).unwrap();
        let expected = everything(&whole);
        assert_eq!(stored_format(&whole).unwrap(), Some(DATA_FORMAT));
        assert!(expected.len() > 70, "{}", expected.len());

        // Tiny batches, cut after 1, 2, 5, ... of them, then resumed (and
        // once cut again while resuming): the same bytes, every time.
        for cut in [1, 2, 5, 17, 40] {
            let dir = tempfile::tempdir().unwrap();
            let db = format_1_db(dir.path());
            migrate_from_format_1(&db, 1, Some(cut)).unwrap();
            assert_eq!(stored_format(&db).unwrap(), Some(1), "cut at {cut}");
            migrate_from_format_1(&db, 1, Some(3)).unwrap();
            bring_up_to_date(&db).unwrap();
            assert_eq!(everything(&db), expected, "cut at {cut}");
        }
        // A directory from before the marker holds format 1 too.
        let dir = tempfile::tempdir().unwrap();
        let db = format_1_db(dir.path());
        db.delete_cf(&db.cf_handle(CF_SM_META).unwrap(), SM_FORMAT)
            .unwrap();
        bring_up_to_date(&db).unwrap();
        assert_eq!(everything(&db), expected);
        // Opening again does nothing more.
        bring_up_to_date(&whole).unwrap();
        assert_eq!(everything(&whole), expected);
    }

    #[test]
    fn a_value_that_does_not_decode_stops_the_migration_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let db = format_1_db(dir.path());
        let cf = db.cf_handle(CF_DEVICES).unwrap();
        db.put_cf(&cf, b"sensor-1", b"\x01").unwrap();
        let e = bring_up_to_date(&db).unwrap_err().to_string();
        assert!(e.contains("sensor-1") && e.contains("devices"), "{e}");
        assert_eq!(stored_format(&db).unwrap(), Some(1));
    }

    #[test]
    fn every_key_kind_is_known_or_named() {
        // Raw values pass unchanged; keys of no known kind are refused, by name.
        assert_eq!(value_from_format_1(CF_IDX_PSK, b"id", b"dev"), Ok(None));
        assert_eq!(
            value_from_format_1(CF_SM_META, SM_FORMAT, &[0, 0, 0, 1]),
            Ok(None)
        );
        let e = value_from_format_1(CF_CLUSTER, b"mystery", b"").unwrap_err();
        assert!(e.to_string().contains("mystery"), "{e}");
        assert!(value_from_format_1(CF_FIRMWARE, b"zz", b"").is_err());
        assert!(value_from_format_1("no_such_cf", b"k", b"").is_err());
        // A u64 counter: eight little-endian bytes become one varint byte.
        assert_eq!(
            value_from_format_1(CF_COUNTERS, COUNTER_DEVICES, &7u64.to_le_bytes()),
            Ok(Some(vec![7]))
        );
        assert!(value_from_format_1(CF_COUNTERS, COUNTER_DEVICES, &[7]).is_err());
    }
}

//! The snapshot file: every key and value of the registry column families, read
//! from one RocksDB snapshot (a consistent point), with a keyed MAC trailer.
//!
//! Layout: `IDREGSNAP3`, then records `[cf: u8 (1-based into REGISTRY_CFS)]
//! [key len: u32 BE][key][value len: u32 BE][value]`, a `0` byte, and the
//! HMAC-SHA256 of everything before it under [`SnapshotKey`] (derived from the
//! cluster's KEK). Only a holder of the KEK can make a file that a node will
//! install or restore. Secrets in it are sealed, as everywhere.
//!
//! `IDREGSNAP2` files (data format 1: bincode values) are still read — a
//! backup, or a leader not yet upgraded — with each value migrated as it is
//! loaded; they are never written.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use hmac::{KeyInit, Mac};
use rocksdb::{IteratorMode, SnapshotWithThreadMode, WriteBatch, DB};
use sha2::Sha256;

use crate::db::StoreError;
use crate::keys::REGISTRY_CFS;

const MAGIC: &[u8] = b"IDREGSNAP3";
/// Snapshots whose values are in data format 1.
const MAGIC_FORMAT_1: &[u8] = b"IDREGSNAP2";

type Hmac = hmac::Hmac<Sha256>;

/// The key of snapshot MACs: [`idreg_core::Kek::subkey`] for this purpose.
#[derive(Clone)]
pub struct SnapshotKey(std::sync::Arc<zeroize::Zeroizing<[u8; 32]>>);

impl SnapshotKey {
    pub fn from_kek(kek: &idreg_core::Kek) -> Self {
        Self(std::sync::Arc::new(kek.subkey("snapshot-mac-v1")))
    }

    fn mac(&self) -> Hmac {
        <Hmac as KeyInit>::new_from_slice(self.0.as_slice()).expect("HMAC takes any key length")
    }
}
/// Largest key or value a snapshot may hold; anything bigger is corruption.
const MAX_FIELD: usize = 16 << 20;
/// Bytes per write batch while loading.
const LOAD_BATCH_BYTES: usize = 4 << 20;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn corrupt(path: &Path, why: &str) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_owned()),
    }
}

/// A writer that MACs what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Hmac,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the registry as seen by `view` to `path` (via a temporary file).
pub fn write(
    db: &DB,
    view: &SnapshotWithThreadMode<'_, DB>,
    path: &Path,
    key: &SnapshotKey,
) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: key.mac(),
    };
    out.write_all(MAGIC).map_err(io(&tmp))?;
    for (i, name) in REGISTRY_CFS.iter().enumerate() {
        let cf = db.cf_handle(name).expect("cf exists");
        for item in view.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            out.write_all(&[i as u8 + 1]).map_err(io(&tmp))?;
            out.write_all(&(k.len() as u32).to_be_bytes())
                .map_err(io(&tmp))?;
            out.write_all(&k).map_err(io(&tmp))?;
            out.write_all(&(v.len() as u32).to_be_bytes())
                .map_err(io(&tmp))?;
            out.write_all(&v).map_err(io(&tmp))?;
        }
    }
    out.write_all(&[0]).map_err(io(&tmp))?;
    let digest = out.hash.finalize().into_bytes();
    let mut inner = out.inner;
    inner.write_all(&digest).map_err(io(&tmp))?;
    let file = inner.into_inner().map_err(|e| StoreError::Io {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(&tmp))?;
    rename_durably(&tmp, path)
}

/// Renames `from` to `to` and fsyncs the directory, so the new name survives
/// a crash as well as the content does.
pub fn rename_durably(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::rename(from, to).map_err(io(to))?;
    if let Some(dir) = to.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

/// Reads records from a snapshot file, calling `each(cf_index, key, value)`
/// with values in the current encoding (migrated from an older file's).
fn read_records<F>(path: &Path, key: &SnapshotKey, mut each: F) -> Result<(), StoreError>
where
    F: FnMut(usize, Vec<u8>, Vec<u8>) -> Result<(), StoreError>,
{
    let mut r = BufReader::with_capacity(1 << 20, File::open(path).map_err(io(path))?);
    let mut hash = key.mac();
    let mut read = |n: usize, hash: &mut Hmac| -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; n];
        r.read_exact(&mut buf)
            .map_err(|_| corrupt(path, "snapshot file is truncated"))?;
        hash.update(&buf);
        Ok(buf)
    };
    let format_1 = match read(MAGIC.len(), &mut hash)? {
        m if m == MAGIC => false,
        m if m == MAGIC_FORMAT_1 => true,
        _ => {
            return Err(corrupt(
                path,
                "not an idreg snapshot file (or one from a newer version)",
            ))
        }
    };
    loop {
        let cf = read(1, &mut hash)?[0] as usize;
        if cf == 0 {
            break;
        }
        if cf > REGISTRY_CFS.len() {
            return Err(corrupt(path, "snapshot names an unknown column family"));
        }
        let mut field = |hash: &mut Hmac| -> Result<Vec<u8>, StoreError> {
            let len = u32::from_be_bytes(read(4, hash)?.try_into().expect("4 bytes")) as usize;
            if len > MAX_FIELD {
                return Err(corrupt(path, "snapshot record is implausibly large"));
            }
            read(len, hash)
        };
        let k = field(&mut hash)?;
        let mut v = field(&mut hash)?;
        if format_1 {
            let name = REGISTRY_CFS[cf - 1];
            match crate::format_migration::value_from_format_1(name, &k, &v) {
                Ok(Some(current)) => v = current,
                Ok(None) => {}
                Err(e) => {
                    return Err(corrupt(
                        path,
                        &format!("a format-1 value in {name} does not decode: {e}"),
                    ))
                }
            }
        }
        each(cf - 1, k, v)?;
    }
    let mut trailer = [0u8; 32];
    r.read_exact(&mut trailer)
        .map_err(|_| corrupt(path, "snapshot MAC is missing"))?;
    // Constant-time comparison.
    hash.verify_slice(&trailer).map_err(|_| {
        corrupt(
            path,
            "snapshot MAC does not match: damaged, or made under another KEK",
        )
    })?;
    let mut rest = [0u8; 1];
    if r.read(&mut rest).map_err(io(path))? != 0 {
        return Err(corrupt(path, "bytes after the snapshot MAC"));
    }
    Ok(())
}

/// Checks a snapshot file end to end without touching the database.
pub fn verify(path: &Path, key: &SnapshotKey) -> Result<(), StoreError> {
    read_records(path, key, |_, _, _| Ok(()))
}

/// Deletes every key of one column family.
pub fn clear_cf(db: &DB, name: &str) -> Result<(), StoreError> {
    let cf = db.cf_handle(name).expect("cf exists");
    let first = db
        .iterator_cf(&cf, IteratorMode::Start)
        .next()
        .transpose()?;
    let last = db.iterator_cf(&cf, IteratorMode::End).next().transpose()?;
    if let (Some((first, _)), Some((last, _))) = (first, last) {
        db.delete_range_cf(&cf, &first, &last)?;
        db.delete_cf(&cf, &last)?;
    }
    Ok(())
}

/// Replaces the registry column families with a verified snapshot's content.
pub fn load(db: &DB, path: &Path, key: &SnapshotKey) -> Result<(), StoreError> {
    for name in REGISTRY_CFS {
        clear_cf(db, name)?;
    }
    let handles: Vec<_> = REGISTRY_CFS
        .iter()
        .map(|n| db.cf_handle(n).expect("cf exists"))
        .collect();
    let mut batch = WriteBatch::default();
    read_records(path, key, |cf, k, v| {
        batch.put_cf(&handles[cf], k, v);
        if batch.size_in_bytes() >= LOAD_BATCH_BYTES {
            db.write(std::mem::take(&mut batch))?;
        }
        Ok(())
    })?;
    db.write(batch)?;
    Ok(())
}

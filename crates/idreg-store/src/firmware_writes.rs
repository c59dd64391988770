//! Writing firmware effects into an apply's `WriteBatch`: releases and
//! their chunks, rollouts, device reports with their index, and the
//! counts that index keeps (summed over the whole apply call, then written
//! once).

use std::collections::BTreeMap;

use idreg_core::{Effect, FirmwareReport};
use rocksdb::{WriteBatch, DB};

use crate::codec::encode;
use crate::db::{decode_as, StoreError};
use crate::firmware_reads::attempt_key;
use crate::keys::*;

/// Count changes of one apply call, by counter key.
#[derive(Default)]
pub(crate) struct FirmwareCounts(BTreeMap<Vec<u8>, i64>);

impl FirmwareCounts {
    fn add(&mut self, key: Vec<u8>, by: i64) {
        *self.0.entry(key).or_default() += by;
    }

    /// Adds the changed counts to `batch` (a count at zero is deleted).
    pub(crate) fn write(self, db: &DB, batch: &mut WriteBatch) -> Result<(), StoreError> {
        let cf = db.cf_handle(CF_FIRMWARE).expect("cf exists");
        for (key, by) in self.0 {
            if by == 0 {
                continue;
            }
            let now = match db.get_pinned_cf(&cf, &key)? {
                Some(v) => decode_as::<u64>("firmware count", &v)?,
                None => 0,
            };
            let next = (now as i64 + by).max(0) as u64;
            if next == 0 {
                batch.delete_cf(&cf, &key);
            } else {
                batch.put_cf(&cf, &key, encode(&next));
            }
        }
        Ok(())
    }
}

/// Adds one firmware effect to `batch`; other effects are not this
/// function's.
pub(crate) fn write_firmware(
    db: &DB,
    batch: &mut WriteBatch,
    counts: &mut FirmwareCounts,
    effect: &Effect,
) {
    let cf = db.cf_handle(CF_FIRMWARE).expect("cf exists");
    match effect {
        Effect::FirmwareRelease {
            id,
            after,
            chunk,
            drop_upload,
        } => {
            if let Some(upload) = drop_upload {
                let last = firmware_chunk_key(id, *upload, u32::MAX);
                batch.delete_range_cf(&cf, firmware_chunk_key(id, *upload, 0), last.clone());
                batch.delete_cf(&cf, &last);
            }
            match after {
                Some(r) => {
                    if let Some((index, bytes)) = chunk {
                        batch.put_cf(&cf, firmware_chunk_key(id, r.upload, *index), bytes);
                    }
                    batch.put_cf(&cf, firmware_key(b'r', id), encode(r));
                }
                None => batch.delete_cf(&cf, firmware_key(b'r', id)),
            }
        }
        Effect::Rollout { release, after } => match after {
            Some(r) => batch.put_cf(&cf, firmware_key(b'o', release), encode(r)),
            None => batch.delete_cf(&cf, firmware_key(b'o', release)),
        },
        Effect::FirmwareReport {
            device,
            before,
            after,
        } => {
            for (report, sign) in [(before, -1), (after, 1)] {
                let Some(r) = report else { continue };
                let (index, count) = index_keys(r, device.as_str());
                if sign < 0 {
                    batch.delete_cf(&cf, &index);
                } else {
                    batch.put_cf(&cf, &index, encode(&r.at_ms));
                }
                counts.add(count, sign);
                if let Some(a) = &r.attempt {
                    let class = r.class.as_ref().map_or("", |c| c.as_str());
                    counts.add(attempt_key(class, &a.version.to_string(), a.state), sign);
                }
            }
            match after {
                Some(r) => batch.put_cf(&cf, firmware_report_key(device.as_str()), encode(r)),
                None => batch.delete_cf(&cf, firmware_report_key(device.as_str())),
            }
        }
        _ => {}
    }
}

/// A report's index key and the key of its version's count.
fn index_keys(r: &FirmwareReport, device: &str) -> (Vec<u8>, Vec<u8>) {
    let class = r.class.as_ref().map_or("", |c| c.as_str());
    let version = r.running.to_string();
    let mut index = firmware_version_key(b'i', class, &version);
    index.push(0);
    index.extend_from_slice(device.as_bytes());
    (index, firmware_version_key(b'n', class, &version))
}

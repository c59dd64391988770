//! Reads of firmware (`CF_FIRMWARE`): releases and their image chunks,
//! rollouts, and the reports index — all point reads or seeks into a
//! prefix, never a scan of devices.

use idreg_core::firmware_catalog::{ReportedDevice, VersionCount};
use idreg_core::firmware_release::AttemptState;
use idreg_core::{DeviceId, FirmwareRelease, FirmwareReport, ReleaseId, Rollout};
use rocksdb::{Direction, IteratorMode};

use crate::db::{decode_as, StoreError};
use crate::keys::*;
use crate::reader::RegistryReader;

/// The attempt-count key's byte for a state.
pub(crate) fn attempt_byte(state: AttemptState) -> u8 {
    match state {
        AttemptState::Downloading => b'd',
        AttemptState::Failed => b'f',
    }
}

impl RegistryReader {
    fn firmware_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let cf = self.db.cf_handle(CF_FIRMWARE).expect("cf exists");
        match self.db.get_pinned_cf(&cf, key)? {
            Some(v) => Ok(Some(decode_as(what, &v)?)),
            None => Ok(None),
        }
    }

    /// Calls `each` with every key and value under `pfx` after `from` (a
    /// key at or past `pfx`) until it returns false.
    fn firmware_seek(
        &self,
        pfx: &[u8],
        from: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_FIRMWARE).expect("cf exists");
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(from, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(pfx) || !each(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn release_record(
        &self,
        id: &ReleaseId,
    ) -> Result<Option<FirmwareRelease>, StoreError> {
        self.firmware_get(&firmware_key(b'r', id), "firmware release")
    }

    pub(crate) fn rollout_record(&self, id: &ReleaseId) -> Result<Option<Rollout>, StoreError> {
        self.firmware_get(&firmware_key(b'o', id), "rollout")
    }

    pub(crate) fn report_record(
        &self,
        id: &DeviceId,
    ) -> Result<Option<FirmwareReport>, StoreError> {
        self.firmware_get(&firmware_report_key(id.as_str()), "firmware report")
    }
}

/// `a` + class `\0` version `\0` state: how many devices' attempts at a
/// version are in that state.
pub(crate) fn attempt_key(class: &str, version: &str, state: AttemptState) -> Vec<u8> {
    let mut k = firmware_version_key(b'a', class, version);
    k.push(0);
    k.push(attempt_byte(state));
    k
}

impl idreg_core::FirmwareCatalog for RegistryReader {
    /// The rollouts of one class, each with its release.
    fn rollouts_of_class(
        &self,
        class: &idreg_core::DeviceClass,
    ) -> Result<Vec<(Rollout, FirmwareRelease)>, StoreError> {
        let pfx = [b"o".as_slice(), &prefix(class.as_str())].concat();
        let mut rollouts: Vec<Rollout> = Vec::new();
        self.firmware_seek(&pfx, &pfx, |_, v| {
            rollouts.push(decode_as("rollout", v)?);
            Ok(true)
        })?;
        let mut out = Vec::with_capacity(rollouts.len());
        for r in rollouts {
            if let Some(rel) =
                self.firmware_get(&firmware_key(b'r', &r.release), "firmware release")?
            {
                out.push((r, rel));
            }
        }
        Ok(out)
    }

    /// `len` bytes of a release's image from `offset` (fewer at its end),
    /// read from the chunks that hold them.
    fn firmware_image_range(
        &self,
        release: &FirmwareRelease,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, StoreError> {
        let cf = self.db.cf_handle(CF_FIRMWARE).expect("cf exists");
        let id = release.id();
        idreg_core::firmware_catalog::read_image_range(release, offset, len, |index| {
            self.db
                .get_pinned_cf(&cf, firmware_chunk_key(&id, release.upload, index))?
                .ok_or_else(|| StoreError::Decode {
                    what: "firmware chunk",
                    source: crate::codec::CodecError::custom(format!(
                        "chunk {index} of {id} is missing"
                    )),
                })
        })
    }

    fn firmware_signers(&self) -> Result<Vec<idreg_core::FirmwareSigner>, StoreError> {
        self.cluster_scan(CLUSTER_FW_SIGNER_PREFIX, |_, v| {
            decode_as("firmware signer", v).map(Some)
        })
    }

    /// Every release, staged ones too when `staged`, in class and version-text order.
    fn firmware_releases(&self, staged: bool) -> Result<Vec<FirmwareRelease>, StoreError> {
        let mut out = Vec::new();
        self.firmware_seek(b"r", b"r", |_, v| {
            let r: FirmwareRelease = decode_as("firmware release", v)?;
            if staged || r.is_complete() {
                out.push(r);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    fn rollouts(&self) -> Result<Vec<Rollout>, StoreError> {
        let mut out = Vec::new();
        self.firmware_seek(b"o", b"o", |_, v| {
            out.push(decode_as("rollout", v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// How many devices run each version (of `class`, or of every class).
    fn firmware_version_counts(
        &self,
        class: Option<&str>,
    ) -> Result<Vec<VersionCount>, StoreError> {
        let pfx = match class {
            Some(c) => [b"n".as_slice(), &prefix(c)].concat(),
            None => b"n".to_vec(),
        };
        let mut out = Vec::new();
        self.firmware_seek(&pfx, &pfx, |k, v| {
            let text = String::from_utf8_lossy(&k[1..]);
            if let Some((class, version)) = text.split_once('\0') {
                out.push(VersionCount {
                    class: class.to_owned(),
                    version: version.to_owned(),
                    devices: decode_as("firmware count", v)?,
                });
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Up to `limit` devices of `class` running `version`, in id order,
    /// after `after`.
    fn devices_on_version(
        &self,
        class: &str,
        version: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReportedDevice>, StoreError> {
        let mut pfx = firmware_version_key(b'i', class, version);
        pfx.push(0);
        let from = match after {
            Some(a) => [pfx.as_slice(), a.as_bytes(), b"\0"].concat(),
            None => pfx.clone(),
        };
        let mut out = Vec::new();
        self.firmware_seek(&pfx, &from, |k, v| {
            out.push(ReportedDevice {
                id: String::from_utf8_lossy(&k[pfx.len()..]).into_owned(),
                at_ms: decode_as("report time", v)?,
            });
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }

    /// Devices of `class` whose attempt at `version` is in `state`.
    fn firmware_attempts(
        &self,
        class: &str,
        version: &str,
        state: AttemptState,
    ) -> Result<u64, StoreError> {
        Ok(self
            .firmware_get(&attempt_key(class, version, state), "attempt count")?
            .unwrap_or(0))
    }
}

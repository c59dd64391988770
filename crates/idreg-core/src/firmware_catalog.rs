//! What the device front and the `Firmware` service read of firmware,
//! beyond the point lookups of [`RegistryView`]: a class's rollouts with
//! their releases, a window of an image, the listings, and the report
//! index (who runs what, and where updates stand). The RocksDB reader
//! implements it, and so does [`crate::mem::MemRegistry`], so the firmware
//! desk and the service are tested without RocksDB.

use crate::firmware_release::{AttemptState, CHUNK_SIZE};
use crate::{DeviceClass, FirmwareRelease, FirmwareSigner, RegistryView, Rollout};

/// Devices on one version of one class, as the report index has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCount {
    /// Empty: devices that reported with no class label.
    pub class: String,
    pub version: String,
    pub devices: u64,
}

/// One device of the report index: who, and when it reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedDevice {
    pub id: String,
    pub at_ms: u64,
}

pub trait FirmwareCatalog: RegistryView {
    /// Every rollout of `class` with its release (a rollout whose release is
    /// gone is left out), in no particular order.
    fn rollouts_of_class(
        &self,
        class: &DeviceClass,
    ) -> Result<Vec<(Rollout, FirmwareRelease)>, Self::Error>;

    /// Up to `len` bytes of `release`'s current upload from `offset` (fewer
    /// at the image's end, none past it).
    fn firmware_image_range(
        &self,
        release: &FirmwareRelease,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, Self::Error>;

    /// Every signer, in name order.
    fn firmware_signers(&self) -> Result<Vec<FirmwareSigner>, Self::Error>;

    /// Every release, staged ones too when `staged`, in the order of class
    /// then version text.
    fn firmware_releases(&self, staged: bool) -> Result<Vec<FirmwareRelease>, Self::Error>;

    /// Every rollout, in the order of class then version text.
    fn rollouts(&self) -> Result<Vec<Rollout>, Self::Error>;

    /// How many devices run each version (of `class`, or of every class;
    /// `Some("")` is the devices with no class label), in the order of
    /// class then version text; no version at zero.
    fn firmware_version_counts(
        &self,
        class: Option<&str>,
    ) -> Result<Vec<VersionCount>, Self::Error>;

    /// Up to `limit` devices of `class` running `version` with ids after
    /// `after`, in id order.
    fn devices_on_version(
        &self,
        class: &str,
        version: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReportedDevice>, Self::Error>;

    /// Devices of `class` whose attempt at `version` is in `state`.
    fn firmware_attempts(
        &self,
        class: &str,
        version: &str,
        state: AttemptState,
    ) -> Result<u64, Self::Error>;
}

/// Up to `len` bytes of `release`'s image from `offset`, read a chunk at a
/// time with `chunk(index)`, which fails for a chunk that is not stored:
/// the walk across chunk boundaries that every store shares.
pub fn read_image_range<C: AsRef<[u8]>, E>(
    release: &FirmwareRelease,
    offset: u64,
    len: usize,
    mut chunk: impl FnMut(u32) -> Result<C, E>,
) -> Result<Vec<u8>, E> {
    let end = offset
        .saturating_add(len as u64)
        .min(release.manifest.image_size);
    let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
    let mut at = offset;
    while at < end {
        let index = (at / CHUNK_SIZE as u64) as u32;
        let chunk = chunk(index)?;
        let chunk = chunk.as_ref();
        let base = index as u64 * CHUNK_SIZE as u64;
        let from = (at - base) as usize;
        let to = (end - base).min(chunk.len() as u64) as usize;
        if from >= to {
            // A chunk shorter than its place says: the image ends early.
            break;
        }
        out.extend_from_slice(&chunk[from..to]);
        at += (to - from) as u64;
    }
    Ok(out)
}

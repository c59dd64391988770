//! What the device front reads to offer firmware and serve images, beyond
//! the point lookups of [`RegistryView`]: a class's rollouts with their
//! releases, and a window of an image. The RocksDB reader implements it,
//! and so does [`crate::mem::MemRegistry`], so the firmware desk is tested
//! without RocksDB.

use crate::firmware_release::CHUNK_SIZE;
use crate::{DeviceClass, FirmwareRelease, RegistryView, Rollout};

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

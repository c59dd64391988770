//! A firmware release (a vendor's signed manifest and its image, stored in
//! chunks), a rollout that offers it to some devices of its class, and what
//! a device reports about the firmware it runs.
//!
//! An image reaches the registry in raft entries of one chunk each, so a
//! 10 MB upload never makes one large write that would stall the registry's
//! other writes. Until its last chunk is in and the upload finished, a
//! release is staged: no device is offered it and no listing shows it, so a
//! half-uploaded image is never visible.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::Device;
use crate::firmware_manifest::Manifest;
use crate::firmware_version::FirmwareVersion;
use crate::names::{DeviceClass, SignerName};

/// Bytes per stored chunk (the last one of an image may be shorter): one
/// chunk per raft entry.
pub const CHUNK_SIZE: usize = 32 * 1024;

/// A staged upload with no chunk for this long is abandoned: the leader's
/// sweep aborts it, dropping its chunks.
pub const STALE_UPLOAD_MS: u64 = 10 * 60 * 1000;

/// A release: the firmware of one device class at one version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReleaseId {
    pub class: DeviceClass,
    pub version: FirmwareVersion,
}

impl std::fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.class, self.version)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseState {
    /// Chunks are arriving; invisible to devices and listings.
    Staging,
    /// Every chunk is in: offered to devices through rollouts.
    Complete,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareRelease {
    pub manifest: Manifest,
    /// The COSE_Sign1 manifest as the vendor signed it: what devices get.
    pub cose: Vec<u8>,
    /// The registered signer whose key verified it.
    pub signer: SignerName,
    /// Names this upload's chunks; a new upload of a staged release gets a
    /// new one, so chunks of an abandoned upload can never mix in.
    pub upload: u64,
    /// Chunks received, in order.
    pub chunks: u32,
    pub state: ReleaseState,
    pub started_ms: u64,
    pub updated_ms: u64,
}

impl FirmwareRelease {
    pub fn id(&self) -> ReleaseId {
        ReleaseId {
            class: self.manifest.class.clone(),
            version: self.manifest.version.clone(),
        }
    }

    /// How many chunks the image is stored in.
    pub fn chunk_count(&self) -> u32 {
        chunk_count(self.manifest.image_size)
    }

    /// The length chunk `index` must have.
    pub fn chunk_len(&self, index: u32) -> usize {
        let start = index as u64 * CHUNK_SIZE as u64;
        (self.manifest.image_size.saturating_sub(start)).min(CHUNK_SIZE as u64) as usize
    }

    pub fn is_complete(&self) -> bool {
        self.state == ReleaseState::Complete
    }

    /// A staged upload nobody has added to for [`STALE_UPLOAD_MS`].
    pub fn is_stale(&self, now_ms: u64) -> bool {
        self.state == ReleaseState::Staging
            && now_ms.saturating_sub(self.updated_ms) >= STALE_UPLOAD_MS
    }
}

pub fn chunk_count(image_size: u64) -> u32 {
    image_size.div_ceil(CHUNK_SIZE as u64) as u32
}

/// Offers a complete release to the devices of its class that match
/// `labels`, and of those the `percent` whose bucket is below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub release: ReleaseId,
    /// `(key, value)` pairs a device must all have.
    pub labels: Vec<(String, String)>,
    /// 1 to 100.
    pub percent: u8,
    pub paused: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A device's place among 100 buckets: fixed for the device, so raising a
/// rollout's percentage keeps every device it already offered to.
pub fn bucket(device: &str) -> u8 {
    let h = Sha256::digest(device.as_bytes());
    (u16::from_be_bytes([h[0], h[1]]) % 100) as u8
}

impl Rollout {
    /// Whether the rollout is meant for `device` (paused or not): its
    /// class, its labels, its bucket.
    pub fn targets(&self, device: &Device) -> bool {
        device.labels.class().as_ref() == Some(&self.release.class)
            && self
                .labels
                .iter()
                .all(|(k, v)| device.labels.get(k) == Some(v.as_str()))
            && bucket(device.id.as_str()) < self.percent
    }
}

/// The release to offer `device` among its class's rollouts (with their
/// releases): of the running ones that target it, the newest it may
/// install over what it runs — never a downgrade, never below a manifest's
/// minimum.
pub fn offer<'a>(
    device: &Device,
    running: Option<&FirmwareVersion>,
    rollouts: &'a [(Rollout, FirmwareRelease)],
) -> Option<&'a FirmwareRelease> {
    rollouts
        .iter()
        .filter(|(r, rel)| {
            !r.paused
                && rel.is_complete()
                && r.targets(device)
                && rel.manifest.installable_over(running)
        })
        .map(|(_, rel)| rel)
        .max_by(|a, b| a.manifest.version.cmp(&b.manifest.version))
}

/// How an update a device tried is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttemptState {
    Downloading,
    Failed,
}

impl AttemptState {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Downloading => "downloading",
            AttemptState::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub version: FirmwareVersion,
    pub state: AttemptState,
}

/// What a device last reported about its firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareReport {
    /// Its class when it reported (`None`: it had no class label).
    pub class: Option<DeviceClass>,
    pub running: FirmwareVersion,
    /// An update under way or failed; `None` once it runs what it was
    /// offered (or was offered nothing).
    pub attempt: Option<Attempt>,
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{Labels, CLASS_LABEL};
    use crate::names::{DeviceId, TenantId};

    fn v(text: &str) -> FirmwareVersion {
        FirmwareVersion::parse("version", text).unwrap()
    }

    fn device(id: &str, class: &str, site: &str) -> Device {
        Device {
            id: DeviceId::parse("id", id).unwrap(),
            tenant: TenantId::default_tenant(),
            status: crate::DeviceStatus::Active,
            labels: Labels::new("labels", [(CLASS_LABEL, class), ("site", site)]).unwrap(),
            gateway: None,
            credentials: Vec::new(),
            created_ms: 0,
            updated_ms: 0,
            revision: 0,
            revocation: None,
        }
    }

    fn release(version: &str, min: Option<&str>) -> FirmwareRelease {
        FirmwareRelease {
            manifest: Manifest {
                vendor: "acme".into(),
                class: DeviceClass::parse("class", "thermo").unwrap(),
                version: v(version),
                image_size: 100_000,
                image_sha256: [0; 32],
                min_version: min.map(v),
                image_uri: None,
            },
            cose: Vec::new(),
            signer: SignerName::parse("signer", "acme").unwrap(),
            upload: 1,
            chunks: 4,
            state: ReleaseState::Complete,
            started_ms: 0,
            updated_ms: 0,
        }
    }

    fn rollout(r: &FirmwareRelease, percent: u8, labels: &[(&str, &str)]) -> Rollout {
        Rollout {
            release: r.id(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            percent,
            paused: false,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn chunks_cover_the_image_exactly() {
        let r = release("1.0.0", None);
        assert_eq!(r.chunk_count(), 4);
        assert_eq!(r.chunk_len(0), CHUNK_SIZE);
        assert_eq!(r.chunk_len(3), 100_000 - 3 * CHUNK_SIZE);
        assert_eq!(r.chunk_len(4), 0);
        assert_eq!(chunk_count(CHUNK_SIZE as u64), 1);
    }

    #[test]
    fn a_percentage_keeps_its_devices_as_it_grows() {
        let r = release("1.4.2", None);
        let ids: Vec<String> = (0..2000).map(|i| format!("d{i}")).collect();
        let offered = |percent| {
            let ro = rollout(&r, percent, &[]);
            ids.iter()
                .filter(|id| ro.targets(&device(id, "thermo", "x")))
                .cloned()
                .collect::<Vec<_>>()
        };
        let ten = offered(10);
        let fifty = offered(50);
        assert!((150..250).contains(&ten.len()), "{}", ten.len());
        assert!((900..1100).contains(&fifty.len()), "{}", fifty.len());
        assert!(ten.iter().all(|id| fifty.contains(id)));
        assert_eq!(offered(100).len(), 2000);
    }

    #[test]
    fn the_newest_installable_release_of_a_targeting_rollout_is_offered() {
        let d = device("d1", "thermo", "berlin");
        let old = release("1.3.0", None);
        let new = release("1.4.2", Some("1.3.0"));
        let set = vec![
            (rollout(&old, 100, &[]), old.clone()),
            (rollout(&new, 100, &[("site", "berlin")]), new.clone()),
        ];
        // A device on 1.2.0 is below 1.4.2's minimum: it gets 1.3.0 first.
        assert_eq!(offer(&d, Some(&v("1.2.0")), &set), Some(&old));
        assert_eq!(offer(&d, Some(&v("1.3.0")), &set), Some(&new));
        assert_eq!(offer(&d, Some(&v("1.4.2")), &set), None, "nothing newer");
        assert_eq!(
            offer(&d, Some(&v("2.0.0")), &set),
            None,
            "never a downgrade"
        );
        // Another site, another class, a paused rollout: nothing.
        let elsewhere = device("d1", "thermo", "paris");
        assert_eq!(offer(&elsewhere, Some(&v("1.3.0")), &set), None);
        assert_eq!(
            offer(&device("d1", "other", "berlin"), Some(&v("1.3.0")), &set),
            None
        );
        let mut paused = set.clone();
        paused[1].0.paused = true;
        assert_eq!(offer(&d, Some(&v("1.3.0")), &paused), None);
        // A staged release is never offered.
        let mut staged = set;
        staged[1].1.state = ReleaseState::Staging;
        assert_eq!(offer(&d, Some(&v("1.3.0")), &staged), None);
    }
}

//! The commands that change the registry. They are the raft log's payload:
//! validated and with secrets sealed *before* they are proposed, applied by
//! [`crate::apply`] on every node in the same order with the same result.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::Author;
use crate::credential::{Credential, Fingerprint, PublicKeyCredential};
use crate::device_ca::DeviceCa;
use crate::enrollment_group::{EnrollmentGroup, GroupName};
use crate::firmware_release::{Attempt, ReleaseId, Rollout};
use crate::firmware_version::FirmwareVersion;
use crate::labels::Labels;
use crate::names::{DeviceId, TenantId};
use crate::revocation_list::RlSigningKey;
use crate::secret::SealedSecret;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDevice {
    pub id: DeviceId,
    pub tenant: TenantId,
    pub labels: Labels,
    pub gateway: Option<DeviceId>,
    pub credentials: Vec<Credential>,
}

/// The status an operator may set; `Revoked` is reached only through `Revoke`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatusChange {
    Active,
    Disabled,
}

/// Names one credential of a device, for removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialRef {
    PskIdentity(Vec<u8>),
    Fingerprint(Fingerprint),
}

impl std::fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialRef::PskIdentity(id) => {
                write!(f, "PSK identity {:?}", String::from_utf8_lossy(id))
            }
            CredentialRef::Fingerprint(fp) => write!(f, "key {fp}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Create(NewDevice),
    Update {
        id: DeviceId,
        /// Replaces all labels when present.
        labels: Option<Labels>,
        status: Option<StatusChange>,
        /// `Some(None)` clears the gateway.
        gateway: Option<Option<DeviceId>>,
        add_credentials: Vec<Credential>,
        remove_credentials: Vec<CredentialRef>,
    },
    Revoke {
        id: DeviceId,
        reason: String,
    },
    Delete {
        id: DeviceId,
    },
    /// Installs the cluster's device CA. With `replace` false (the CA a
    /// founding leader generates) it is refused when one exists, so two
    /// leaders racing at founding leave exactly one.
    SetDeviceCa {
        ca: DeviceCa,
        replace: bool,
    },
    /// Installs the revocation-list signing key; like `SetDeviceCa`, one
    /// racing founder's is kept when `replace` is false.
    SetRlKey {
        key: RlSigningKey,
        replace: bool,
    },
    /// Creates an enrollment group; its `enrolled` count starts at zero.
    AddEnrollmentGroup(EnrollmentGroup),
    SetEnrollmentGroupEnabled {
        name: GroupName,
        enabled: bool,
    },
    DeleteEnrollmentGroup {
        name: GroupName,
    },
    /// A device enrolled (EST-coaps `sen`/`sren`): registered or given its
    /// new key together with the certificate issued for it.
    Enroll(Enrollment),
    /// The successor of a rotated key or PSK was used: the one it replaces
    /// is retired.
    CompleteRotation {
        id: DeviceId,
        new: CredentialRef,
    },
    /// A new PSK (its own identity: the device names the key it uses by
    /// it) to replace the device's PSK `replaces` (`None`: its only one);
    /// both valid until the new one is used or `grace_ms` passes.
    RotatePsk {
        id: DeviceId,
        identity: Vec<u8>,
        secret: SealedSecret,
        replaces: Option<Vec<u8>>,
        grace_ms: u64,
    },
    /// Sets a tenant's clone policy (`None`: clears it, so the node's
    /// `--on-clone` applies). A device's own label wins over it.
    SetTenantClonePolicy {
        tenant: TenantId,
        policy: Option<crate::ClonePolicy>,
    },
    /// Trusts a vendor's key for firmware manifests; refused if the name
    /// is taken.
    AddFirmwareSigner(crate::FirmwareSigner),
    RemoveFirmwareSigner {
        name: crate::SignerName,
    },
    /// Stages a release: the manifest (verified again here against
    /// `signer`'s key), its chunks to follow under the new `upload`.
    BeginFirmwareUpload {
        signer: crate::SignerName,
        cose: Vec<u8>,
        upload: u64,
    },
    /// Chunk `index` of a staged upload; chunks arrive in order.
    PutFirmwareChunk {
        release: ReleaseId,
        upload: u64,
        index: u32,
        bytes: Vec<u8>,
    },
    /// Every chunk is in: the release becomes visible.
    FinishFirmwareUpload {
        release: ReleaseId,
        upload: u64,
    },
    /// Drops a staged upload and its chunks (the uploader gave up, or the
    /// leader's sweep found it stale).
    AbortFirmwareUpload {
        release: ReleaseId,
        upload: u64,
    },
    /// Deletes a complete release and its image; refused while a rollout
    /// offers it.
    RemoveFirmwareRelease {
        release: ReleaseId,
    },
    /// Creates or replaces the rollout of a complete release.
    SetRollout(Rollout),
    SetRolloutPaused {
        release: ReleaseId,
        paused: bool,
    },
    RemoveRollout {
        release: ReleaseId,
    },
    /// What a device reports about its firmware.
    ReportFirmware {
        id: DeviceId,
        running: FirmwareVersion,
        attempt: Option<Attempt>,
    },
}

/// One enrollment: the device, how it proved it may enroll, and the key
/// with the certificate the device CA issued for it (`KeySource::Issued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub id: DeviceId,
    pub via: EnrollVia,
    pub key: PublicKeyCredential,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrollVia {
    /// A manufacturer certificate of this group's CA: the device is created
    /// with the group's tenant, labels and gateway.
    ManufacturerCertificate { group: GroupName },
    /// The device's bootstrap PSK, retired by this enrollment.
    BootstrapPsk { identity: Vec<u8> },
    /// Re-enrollment with the device's current key `current`: the same key
    /// renews its certificate; a new key replaces it, both valid until the
    /// new one is used or `grace_ms` passes.
    Operational { current: Fingerprint, grace_ms: u64 },
}

impl Command {
    /// The device the command is about; `None` for cluster-wide commands.
    pub fn device_id(&self) -> Option<&DeviceId> {
        match self {
            Command::Create(d) => Some(&d.id),
            Command::Update { id, .. }
            | Command::Revoke { id, .. }
            | Command::Delete { id }
            | Command::CompleteRotation { id, .. }
            | Command::RotatePsk { id, .. }
            | Command::ReportFirmware { id, .. } => Some(id),
            Command::Enroll(e) => Some(&e.id),
            Command::SetDeviceCa { .. }
            | Command::SetRlKey { .. }
            | Command::AddEnrollmentGroup(_)
            | Command::SetEnrollmentGroupEnabled { .. }
            | Command::DeleteEnrollmentGroup { .. }
            | Command::SetTenantClonePolicy { .. }
            | Command::AddFirmwareSigner(_)
            | Command::RemoveFirmwareSigner { .. }
            | Command::BeginFirmwareUpload { .. }
            | Command::PutFirmwareChunk { .. }
            | Command::FinishFirmwareUpload { .. }
            | Command::AbortFirmwareUpload { .. }
            | Command::RemoveFirmwareRelease { .. }
            | Command::SetRollout(_)
            | Command::SetRolloutPaused { .. }
            | Command::RemoveRollout { .. } => None,
        }
    }
}

/// A command with the proposer's wall-clock time, so every node records the
/// same timestamps, and who proposed it (for the device's audit history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub at_ms: u64,
    pub by: Author,
    pub command: Command,
}

/// One raft log entry: the commands of many concurrent clients, proposed and
/// made durable together (one fsync), applied one after another.
///
/// Shared, not copied: the log's in-memory tail, each replication stream and
/// the state machine read the same proposals, so a clone costs a reference
/// count. Encoded exactly as a `Vec<Proposal>` (serde's `rc`), so the log's
/// on-disk format does not change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBatch(pub Arc<[Proposal]>);

impl From<Vec<Proposal>> for ProposalBatch {
    fn from(proposals: Vec<Proposal>) -> Self {
        Self(proposals.into())
    }
}

impl Default for ProposalBatch {
    fn default() -> Self {
        Vec::new().into()
    }
}

//! A registered device and its revocation record.

use serde::{Deserialize, Serialize};

use crate::credential::{Credential, Fingerprint};
use crate::labels::Labels;
use crate::names::{DeviceId, TenantId};

/// Lifecycle of a device. `Revoked` is final: no command leads out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeviceStatus {
    Active,
    Disabled,
    Revoked,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 3] = [
        DeviceStatus::Active,
        DeviceStatus::Disabled,
        DeviceStatus::Revoked,
    ];

    /// Its place in [`Self::ALL`]: an index for per-status counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Disabled => "disabled",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

/// Why and when a device was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub reason: String,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub tenant: TenantId,
    pub status: DeviceStatus,
    pub labels: Labels,
    /// The hub that may act for this device, if any.
    pub gateway: Option<DeviceId>,
    pub credentials: Vec<Credential>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Raft log index of the command that last changed this device.
    pub revision: u64,
    pub revocation: Option<Revocation>,
}

impl Device {
    pub fn psk_identities(&self) -> impl Iterator<Item = &[u8]> {
        self.credentials.iter().filter_map(|c| match c {
            Credential::Psk { identity, .. }
            | Credential::BootstrapPsk { identity, .. }
            | Credential::SuccessorPsk { identity, .. } => Some(identity.as_slice()),
            Credential::PublicKey(_) => None,
        })
    }

    pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
        self.credentials.iter().filter_map(|c| match c {
            Credential::PublicKey(k) => Some(&k.fingerprint),
            Credential::Psk { .. }
            | Credential::BootstrapPsk { .. }
            | Credential::SuccessorPsk { .. } => None,
        })
    }
}

/// What the revocation list keeps of a revoked device, even after the device
/// record is deleted: its id and credentials can never be registered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    pub device: DeviceId,
    pub reason: String,
    pub at_ms: u64,
    pub psk_identities: Vec<Vec<u8>>,
    pub fingerprints: Vec<Fingerprint>,
}

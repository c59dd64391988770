//! The two ways the registry says no: input that is malformed on its own
//! ([`ValidationError`], checked before anything is proposed) and a command that
//! is well formed but conflicts with the registry's state ([`Rejection`],
//! decided deterministically when the command is applied).

use serde::{Deserialize, Serialize};

/// Input that can never be valid, whatever the registry holds. `field` names the
/// offending field as the API spells it, so clients can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error reported under a containing field, e.g. `credentials[2].psk`.
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

/// A well-formed command the registry refuses in its current state. It is part of
/// the replicated result, so every node reaches the same verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("device {0:?} already exists")]
    DeviceExists(String),
    #[error("device {0:?} not found")]
    DeviceNotFound(String),
    #[error("PSK identity {identity:?} already belongs to device {owner:?}")]
    PskIdentityTaken { identity: String, owner: String },
    #[error("public key {fingerprint} already belongs to device {owner:?}")]
    KeyTaken { fingerprint: String, owner: String },
    #[error("device {0:?} is revoked; revocation is final")]
    Revoked(String),
    #[error("{what} was revoked with device {device:?} and cannot be reused")]
    RevokedCredential { what: String, device: String },
    #[error("device {device:?} has no credential {credential}")]
    CredentialNotFound { device: String, credential: String },
    #[error("device {0:?} would have more than {1} credentials")]
    TooManyCredentials(String, usize),
    #[error("gateway {0:?} is not a registered device")]
    GatewayNotFound(String),
    #[error("device {0:?} cannot be its own gateway")]
    GatewayIsSelf(String),
    #[error("device {gateway:?} is the gateway of {spoke:?} (and maybe others); move or delete its spokes first")]
    GatewayHasSpokes { gateway: String, spoke: String },
    #[error("the cluster already has a device CA")]
    DeviceCaExists,
    #[error("the cluster already has a revocation-list key")]
    RlKeyExists,
    #[error("enrollment group {0:?} already exists")]
    GroupExists(String),
    #[error("enrollment group {0:?} not found")]
    GroupNotFound(String),
    /// The group admits no device now (disabled, expired, full), or does
    /// not admit this one (wrong attestation kind).
    #[error("{0}")]
    GroupClosed(String),
    /// The enrollment does not fit the device as registered (e.g. the id is
    /// taken by another device, the bootstrap PSK is gone).
    #[error("{0}")]
    NotEnrollable(String),
    /// A command no API would build (it came from a peer or a damaged
    /// payload), or a registry entry it depends on that cannot be read.
    #[error("malformed command: {0}")]
    Malformed(String),
    // New variants go last: verdicts cross between nodes of mixed versions.
    #[error("firmware signer {0} already exists")]
    SignerExists(String),
    #[error("no firmware signer {0}")]
    SignerNotFound(String),
    /// The manifest or image does not hold up (signature, content, a chunk).
    #[error("{0}")]
    FirmwareRefused(String),
    #[error("firmware release {0} already exists")]
    ReleaseExists(String),
    #[error("no firmware release {0}")]
    ReleaseNotFound(String),
    /// Another upload of the release is under way, or this one was replaced.
    #[error("{0}")]
    UploadConflict(String),
    #[error("no rollout of {0}")]
    RolloutNotFound(String),
    #[error("release {0} is offered by a rollout; remove the rollout first")]
    ReleaseInRollout(String),
}

//! Who did what to a device: one record per applied create, update, revoke
//! and delete, with the time, the principal and role from the caller's
//! certificate, and the node that took the request. Written by every node in
//! the same apply as the change (so replicated and in snapshots), kept after
//! the device is revoked or deleted, bounded per device.

use serde::{Deserialize, Serialize};

use crate::command::{Command, Proposal};
use crate::principal::Principal;

/// Most records kept per device; older ones are dropped first.
pub const MAX_AUDIT_PER_DEVICE: usize = 100;

/// Who proposed a command: the authenticated principal and the node it
/// reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub principal: Principal,
    pub node: u64,
}

impl Author {
    pub fn new(name: &str, role: crate::principal::Role, node: u64) -> Self {
        Self {
            principal: Principal {
                name: name.to_owned(),
                role,
            },
            node,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditAction {
    Create,
    Update,
    Revoke,
    Delete,
    /// The cluster's device CA was installed (no device's history holds it;
    /// kept total so every command has an action).
    SetDeviceCa,
    /// Enrolled over EST-coaps: registered, re-keyed or renewed.
    Enroll,
    /// A rotated-out key or PSK retired once its successor was used.
    CompleteRotation,
    /// A PSK brought in to replace another.
    RotatePsk,
    /// Enrollment groups (no device's history holds these either).
    EnrollmentGroup,
    /// A tenant's policy (nor these).
    TenantPolicy,
    /// Firmware signers (nor these).
    FirmwareSigner,
    /// Firmware releases, rollouts and device reports (a report is kept
    /// as the device's firmware state, not in its history).
    Firmware,
}

impl AuditAction {
    pub fn of(command: &Command) -> Self {
        match command {
            Command::Create(_) => AuditAction::Create,
            Command::Update { .. } => AuditAction::Update,
            Command::Revoke { .. } => AuditAction::Revoke,
            Command::Delete { .. } => AuditAction::Delete,
            Command::SetDeviceCa { .. } | Command::SetRlKey { .. } => AuditAction::SetDeviceCa,
            Command::Enroll(_) => AuditAction::Enroll,
            Command::CompleteRotation { .. } => AuditAction::CompleteRotation,
            Command::RotatePsk { .. } => AuditAction::RotatePsk,
            Command::AddEnrollmentGroup(_)
            | Command::SetEnrollmentGroupEnabled { .. }
            | Command::DeleteEnrollmentGroup { .. } => AuditAction::EnrollmentGroup,
            Command::SetTenantClonePolicy { .. } => AuditAction::TenantPolicy,
            Command::AddFirmwareSigner(_) | Command::RemoveFirmwareSigner { .. } => {
                AuditAction::FirmwareSigner
            }
            Command::BeginFirmwareUpload { .. }
            | Command::PutFirmwareChunk { .. }
            | Command::FinishFirmwareUpload { .. }
            | Command::AbortFirmwareUpload { .. }
            | Command::RemoveFirmwareRelease { .. }
            | Command::SetRollout(_)
            | Command::SetRolloutPaused { .. }
            | Command::RemoveRollout { .. }
            | Command::ReportFirmware { .. } => AuditAction::Firmware,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Revoke => "revoke",
            AuditAction::Delete => "delete",
            AuditAction::SetDeviceCa => "set-device-ca",
            AuditAction::Enroll => "enroll",
            AuditAction::CompleteRotation => "complete-rotation",
            AuditAction::RotatePsk => "rotate-psk",
            AuditAction::EnrollmentGroup => "enrollment-group",
            AuditAction::TenantPolicy => "tenant-policy",
            AuditAction::FirmwareSigner => "firmware-signer",
            AuditAction::Firmware => "firmware",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    /// The raft log index the change was applied at.
    pub revision: u64,
    pub action: AuditAction,
    pub by: Author,
}

impl AuditRecord {
    /// The record of an applied proposal.
    pub fn of(proposal: &Proposal, revision: u64) -> Self {
        Self {
            at_ms: proposal.at_ms,
            revision,
            action: AuditAction::of(&proposal.command),
            by: proposal.by.clone(),
        }
    }
}

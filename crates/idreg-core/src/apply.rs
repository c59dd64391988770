//! The state-machine rules: a pure function from (registry view, proposal) to
//! either a [`Change`] or a [`Rejection`]. Every node runs it on the same log
//! and reaches the same result; the store only writes what it returns.

use crate::command::{Command, CredentialRef, NewDevice, Proposal, StatusChange};
use crate::command_check::check_command;
use crate::credential::Credential;
use crate::device::{Device, DeviceStatus, Revocation, RevocationRecord};
use crate::device_ca::DeviceCa;
use crate::enrollment_group::{Attestation, EnrollmentGroup, GroupName};
use crate::error::Rejection;
use crate::limits::MAX_CREDENTIALS;
use crate::names::DeviceId;
use crate::revocation_list::RlSigningKey;
use crate::view::RegistryView;

/// The effect of one applied command on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub id: DeviceId,
    pub before: Option<Device>,
    /// `None` when the device was deleted.
    pub after: Option<Device>,
    /// Set when this command revoked the device: the new revocation-list entry.
    pub revocation: Option<RevocationRecord>,
}

impl Change {
    /// Whether the device could authenticate before but not after this change;
    /// the device front closes its sessions on such a change.
    pub fn cuts_off_device(&self) -> bool {
        let was = self
            .before
            .as_ref()
            .is_some_and(|d| d.status == DeviceStatus::Active);
        let is = self
            .after
            .as_ref()
            .is_some_and(|d| d.status == DeviceStatus::Active);
        was && !is
    }
}

/// What one applied proposal changed: a device, or a cluster-wide record.
// Not boxed: the device change is the common case, made once per write and
// consumed at once; a box would cost every write an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Device(Change),
    DeviceCa(DeviceCa),
    RlKey(RlSigningKey),
    /// An enrollment group added, changed (`Some`) or deleted (`None`).
    Group {
        name: GroupName,
        after: Option<EnrollmentGroup>,
    },
    /// A device enrolled; the group it came through, with its count moved on.
    Enrolled {
        change: Change,
        group: Option<EnrollmentGroup>,
    },
    /// A firmware signer added (`Some`) or removed.
    FirmwareSigner {
        name: crate::SignerName,
        after: Option<crate::FirmwareSigner>,
    },
    /// A release staged, grown by a chunk, completed (`Some`) or dropped;
    /// `drop_upload`: the chunks of that upload go.
    FirmwareRelease {
        id: crate::ReleaseId,
        after: Option<crate::FirmwareRelease>,
        chunk: Option<(u32, Vec<u8>)>,
        drop_upload: Option<u64>,
    },
    /// A rollout created, changed (`Some`) or removed.
    Rollout {
        release: crate::ReleaseId,
        after: Option<crate::Rollout>,
    },
    /// A device's firmware report replaced (`before`), or with `after`
    /// `None` dropped with its device.
    FirmwareReport {
        device: DeviceId,
        before: Option<crate::FirmwareReport>,
        after: Option<crate::FirmwareReport>,
    },
    /// A tenant's clone policy set (`Some`) or cleared.
    TenantClonePolicy {
        tenant: crate::TenantId,
        policy: Option<crate::ClonePolicy>,
    },
}

/// Applies `proposal` at log index `revision`. The outer error is the view's
/// I/O failure; the inner one the registry's verdict.
pub fn apply<V: RegistryView>(
    view: &V,
    proposal: &Proposal,
    revision: u64,
) -> Result<Result<Effect, Rejection>, V::Error> {
    if let Err(e) = check_command(&proposal.command) {
        return Ok(Err(Rejection::Malformed(e.to_string())));
    }
    if let Command::SetDeviceCa { ca, replace } = &proposal.command {
        if !replace && view.device_ca()?.is_some() {
            return Ok(Err(Rejection::DeviceCaExists));
        }
        return Ok(Ok(Effect::DeviceCa(ca.clone())));
    }
    match &proposal.command {
        Command::AddFirmwareSigner(s) => {
            if view.firmware_signer(&s.name)?.is_some() {
                return Ok(Err(Rejection::SignerExists(s.name.to_string())));
            }
            return Ok(Ok(Effect::FirmwareSigner {
                name: s.name.clone(),
                after: Some(s.clone()),
            }));
        }
        Command::RemoveFirmwareSigner { name } => {
            if view.firmware_signer(name)?.is_none() {
                return Ok(Err(Rejection::SignerNotFound(name.to_string())));
            }
            return Ok(Ok(Effect::FirmwareSigner {
                name: name.clone(),
                after: None,
            }));
        }
        _ => {}
    }
    if let Command::SetTenantClonePolicy { tenant, policy } = &proposal.command {
        return Ok(Ok(Effect::TenantClonePolicy {
            tenant: tenant.clone(),
            policy: *policy,
        }));
    }
    if let Command::SetRlKey { key, replace } = &proposal.command {
        if !replace && view.rl_key()?.is_some() {
            return Ok(Err(Rejection::RlKeyExists));
        }
        return Ok(Ok(Effect::RlKey(key.clone())));
    }
    if let Some(effect) = firmware::apply(view, proposal)? {
        return Ok(effect);
    }
    match &proposal.command {
        Command::AddEnrollmentGroup(_)
        | Command::SetEnrollmentGroupEnabled { .. }
        | Command::DeleteEnrollmentGroup { .. } => enrollment::apply_to_group(view, proposal),
        Command::Enroll(e) => enrollment::enroll(view, e, proposal.at_ms, revision),
        Command::CompleteRotation { id, new } => {
            Ok(
                enrollment::complete_rotation(view, id, new, proposal.at_ms, revision)?
                    .map(Effect::Device),
            )
        }
        Command::RotatePsk {
            id,
            identity,
            secret,
            replaces,
            grace_ms,
        } => {
            let rotation = enrollment::PskRotationRequest {
                identity,
                secret,
                replaces: replaces.as_deref(),
                grace_ms: *grace_ms,
            };
            Ok(
                enrollment::rotate_psk(view, id, rotation, proposal.at_ms, revision)?
                    .map(Effect::Device),
            )
        }
        _ => Ok(apply_to_device(view, proposal, revision)?.map(Effect::Device)),
    }
}

fn apply_to_device<V: RegistryView>(
    view: &V,
    proposal: &Proposal,
    revision: u64,
) -> Result<Result<Change, Rejection>, V::Error> {
    let at = proposal.at_ms;
    match &proposal.command {
        Command::Create(new) => create(view, new, at, revision),
        Command::Update {
            id,
            labels,
            status,
            gateway,
            add_credentials,
            remove_credentials,
        } => {
            let Some(before) = view.device(id)? else {
                return Ok(Err(Rejection::DeviceNotFound(id.to_string())));
            };
            if before.status == DeviceStatus::Revoked {
                return Ok(Err(Rejection::Revoked(id.to_string())));
            }
            let mut after = before.clone();
            if let Some(labels) = labels {
                after.labels = labels.clone();
            }
            if let Some(status) = status {
                after.status = match status {
                    StatusChange::Active => DeviceStatus::Active,
                    StatusChange::Disabled => DeviceStatus::Disabled,
                };
            }
            if let Some(gateway) = gateway {
                if let Some(gw) = gateway {
                    if let Err(r) = check_gateway(view, id, gw)? {
                        return Ok(Err(r));
                    }
                }
                after.gateway = gateway.clone();
            }
            for r in remove_credentials {
                let before_len = after.credentials.len();
                after.credentials.retain(|c| !matches_ref(c, r));
                if after.credentials.len() == before_len {
                    return Ok(Err(Rejection::CredentialNotFound {
                        device: id.to_string(),
                        credential: r.to_string(),
                    }));
                }
            }
            with_new_credentials(view, before, after, add_credentials, at, revision)
        }
        Command::Revoke { id, reason } => {
            let Some(before) = view.device(id)? else {
                return Ok(Err(Rejection::DeviceNotFound(id.to_string())));
            };
            if before.status == DeviceStatus::Revoked {
                // Revoking twice is a retry, not a conflict; the first reason stands.
                return Ok(Ok(Change {
                    id: id.clone(),
                    before: Some(before.clone()),
                    after: Some(before),
                    revocation: None,
                }));
            }
            let mut after = before.clone();
            after.status = DeviceStatus::Revoked;
            after.revocation = Some(Revocation {
                reason: reason.clone(),
                at_ms: at,
            });
            after.updated_ms = at;
            after.revision = revision;
            let record = RevocationRecord {
                device: id.clone(),
                reason: reason.clone(),
                at_ms: at,
                psk_identities: before.psk_identities().map(<[u8]>::to_vec).collect(),
                fingerprints: before.fingerprints().copied().collect(),
            };
            Ok(Ok(Change {
                id: id.clone(),
                before: Some(before),
                after: Some(after),
                revocation: Some(record),
            }))
        }
        Command::Delete { id } => {
            let Some(before) = view.device(id)? else {
                return Ok(Err(Rejection::DeviceNotFound(id.to_string())));
            };
            if let Some(spoke) = view.spokes(id, 1)?.into_iter().next() {
                return Ok(Err(Rejection::GatewayHasSpokes {
                    gateway: id.to_string(),
                    spoke: spoke.to_string(),
                }));
            }
            Ok(Ok(Change {
                id: id.clone(),
                before: Some(before),
                after: None,
                revocation: None,
            }))
        }
        Command::SetDeviceCa { .. }
        | Command::SetRlKey { .. }
        | Command::AddEnrollmentGroup(_)
        | Command::SetEnrollmentGroupEnabled { .. }
        | Command::DeleteEnrollmentGroup { .. }
        | Command::Enroll(_)
        | Command::CompleteRotation { .. }
        | Command::RotatePsk { .. }
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
        | Command::RemoveRollout { .. }
        | Command::ReportFirmware { .. } => unreachable!("handled by apply"),
    }
}

fn create<V: RegistryView>(
    view: &V,
    new: &NewDevice,
    at: u64,
    revision: u64,
) -> Result<Result<Change, Rejection>, V::Error> {
    if view.device(&new.id)?.is_some() {
        return Ok(Err(Rejection::DeviceExists(new.id.to_string())));
    }
    if view.revocation(&new.id)?.is_some() {
        return Ok(Err(Rejection::Revoked(new.id.to_string())));
    }
    if let Some(gw) = &new.gateway {
        if let Err(r) = check_gateway(view, &new.id, gw)? {
            return Ok(Err(r));
        }
    }
    if new.credentials.len() > MAX_CREDENTIALS {
        return Ok(Err(Rejection::TooManyCredentials(
            new.id.to_string(),
            MAX_CREDENTIALS,
        )));
    }
    if let Err(r) = check_new_credentials(view, &new.credentials)? {
        return Ok(Err(r));
    }
    let device = Device {
        id: new.id.clone(),
        tenant: new.tenant.clone(),
        status: DeviceStatus::Active,
        labels: new.labels.clone(),
        gateway: new.gateway.clone(),
        credentials: new.credentials.clone(),
        created_ms: at,
        updated_ms: at,
        revision,
        revocation: None,
    };
    Ok(Ok(Change {
        id: new.id.clone(),
        before: None,
        after: Some(device),
        revocation: None,
    }))
}

/// `before` changed into `after`, stamped with the time and revision.
pub(crate) fn stamped(before: Device, mut after: Device, at: u64, revision: u64) -> Change {
    after.updated_ms = at;
    after.revision = revision;
    Change {
        id: before.id.clone(),
        before: Some(before),
        after: Some(after),
        revocation: None,
    }
}

/// `after` (a changed copy of `before`) with `new` credentials added: each
/// unclaimed and never revoked, the device's count within
/// [`MAX_CREDENTIALS`].
pub(crate) fn with_new_credentials<V: RegistryView>(
    view: &V,
    before: Device,
    mut after: Device,
    new: &[Credential],
    at: u64,
    revision: u64,
) -> Result<Result<Change, Rejection>, V::Error> {
    if let Err(r) = check_new_credentials(view, new)? {
        return Ok(Err(r));
    }
    after.credentials.extend(new.iter().cloned());
    if after.credentials.len() > MAX_CREDENTIALS {
        return Ok(Err(Rejection::TooManyCredentials(
            after.id.to_string(),
            MAX_CREDENTIALS,
        )));
    }
    Ok(Ok(stamped(before, after, at, revision)))
}

fn check_gateway<V: RegistryView>(
    view: &V,
    id: &DeviceId,
    gateway: &DeviceId,
) -> Result<Result<(), Rejection>, V::Error> {
    if gateway == id {
        return Ok(Err(Rejection::GatewayIsSelf(id.to_string())));
    }
    match view.device(gateway)? {
        Some(gw) if gw.status != DeviceStatus::Revoked => Ok(Ok(())),
        _ => Ok(Err(Rejection::GatewayNotFound(gateway.to_string()))),
    }
}

pub(crate) fn matches_ref(c: &Credential, r: &CredentialRef) -> bool {
    match (c, r) {
        (Credential::Psk { identity, .. }, CredentialRef::PskIdentity(want))
        | (Credential::BootstrapPsk { identity, .. }, CredentialRef::PskIdentity(want))
        | (Credential::SuccessorPsk { identity, .. }, CredentialRef::PskIdentity(want)) => {
            identity == want
        }
        (Credential::PublicKey(k), CredentialRef::Fingerprint(want)) => &k.fingerprint == want,
        _ => false,
    }
}

/// Each new credential must be unclaimed, never revoked, and not repeated
/// within the command itself; a bootstrap PSK must name a bootstrap group.
pub(crate) fn check_new_credentials<V: RegistryView>(
    view: &V,
    creds: &[Credential],
) -> Result<Result<(), Rejection>, V::Error> {
    for (i, c) in creds.iter().enumerate() {
        let earlier = &creds[..i];
        if let Credential::BootstrapPsk { group, .. } = c {
            match view.enrollment_group(group)? {
                Some(g) if g.attestation == Attestation::BootstrapPsk => {}
                Some(_) => {
                    return Ok(Err(Rejection::GroupClosed(format!(
                        "enrollment group {:?} takes manufacturer certificates, not bootstrap PSKs",
                        group.as_str()
                    ))))
                }
                None => return Ok(Err(Rejection::GroupNotFound(group.to_string()))),
            }
        }
        match c {
            Credential::Psk { identity, .. }
            | Credential::BootstrapPsk { identity, .. }
            | Credential::SuccessorPsk { identity, .. } => {
                // Built only for a rejection: most creates have none.
                let shown = || String::from_utf8_lossy(identity).into_owned();
                // Revocation is checked first: it is the more useful answer when a
                // revoked device still holds the credential.
                if let Some(device) = view.revoked_psk(identity)? {
                    return Ok(Err(Rejection::RevokedCredential {
                        what: format!("PSK identity {:?}", shown()),
                        device: device.to_string(),
                    }));
                }
                if let Some(owner) = view.psk_owner(identity)? {
                    return Ok(Err(Rejection::PskIdentityTaken {
                        identity: shown(),
                        owner: owner.to_string(),
                    }));
                }
                if earlier
                    .iter()
                    .any(|e| matches_ref(e, &CredentialRef::PskIdentity(identity.clone())))
                {
                    return Ok(Err(Rejection::PskIdentityTaken {
                        identity: shown(),
                        owner: "this request".into(),
                    }));
                }
            }
            Credential::PublicKey(k) => {
                let shown = || k.fingerprint.to_string();
                if let Some(device) = view.revoked_key(&k.fingerprint)? {
                    return Ok(Err(Rejection::RevokedCredential {
                        what: format!("public key {}", shown()),
                        device: device.to_string(),
                    }));
                }
                if let Some(owner) = view.key_owner(&k.fingerprint)? {
                    return Ok(Err(Rejection::KeyTaken {
                        fingerprint: shown(),
                        owner: owner.to_string(),
                    }));
                }
                if earlier
                    .iter()
                    .any(|e| matches_ref(e, &CredentialRef::Fingerprint(k.fingerprint)))
                {
                    return Ok(Err(Rejection::KeyTaken {
                        fingerprint: shown(),
                        owner: "this request".into(),
                    }));
                }
            }
        }
    }
    Ok(Ok(()))
}

mod enrollment;
mod firmware;
#[cfg(test)]
mod tests;

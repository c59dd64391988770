//! What [`crate::apply`] needs to read, and an overlay that lets one apply call
//! see the changes of the commands before it in the same batch.

use std::collections::BTreeMap;

use crate::apply::{Change, Effect};
use crate::credential::Fingerprint;
use crate::device::{Device, RevocationRecord};
use crate::device_ca::DeviceCa;
use crate::enrollment_group::{EnrollmentGroup, GroupName};
use crate::names::DeviceId;
use crate::revocation_list::RlSigningKey;

/// Point reads of the registry. Implementations: RocksDB (idreg-store) and
/// [`crate::mem::MemRegistry`]. Every method is a point lookup, never a scan.
pub trait RegistryView {
    type Error;

    fn device(&self, id: &DeviceId) -> Result<Option<Device>, Self::Error>;
    fn psk_owner(&self, identity: &[u8]) -> Result<Option<DeviceId>, Self::Error>;
    fn key_owner(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, Self::Error>;
    fn revocation(&self, id: &DeviceId) -> Result<Option<RevocationRecord>, Self::Error>;
    /// The revoked device a PSK identity belonged to, if it was revoked.
    fn revoked_psk(&self, identity: &[u8]) -> Result<Option<DeviceId>, Self::Error>;
    /// The revoked device a key belonged to, if it was revoked.
    fn revoked_key(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, Self::Error>;
    /// The cluster's device CA, once one is installed.
    fn device_ca(&self) -> Result<Option<DeviceCa>, Self::Error>;
    fn enrollment_group(&self, name: &GroupName) -> Result<Option<EnrollmentGroup>, Self::Error>;
    /// The revocation-list signing key, once one is installed.
    fn rl_key(&self) -> Result<Option<RlSigningKey>, Self::Error>;
    fn firmware_signer(
        &self,
        name: &crate::SignerName,
    ) -> Result<Option<crate::FirmwareSigner>, Self::Error>;
    /// A firmware release, staged or complete.
    fn firmware_release(
        &self,
        id: &crate::ReleaseId,
    ) -> Result<Option<crate::FirmwareRelease>, Self::Error>;
    fn rollout(&self, release: &crate::ReleaseId) -> Result<Option<crate::Rollout>, Self::Error>;
    /// What the device last reported about its firmware.
    fn firmware_report(&self, id: &DeviceId) -> Result<Option<crate::FirmwareReport>, Self::Error>;
    /// Up to `limit` devices whose gateway is `gateway`, in id order (a seek
    /// into the gateway index, not a scan of devices).
    fn spokes(&self, gateway: &DeviceId, limit: usize) -> Result<Vec<DeviceId>, Self::Error>;
}

/// A base view with the not-yet-written changes of earlier commands on top.
///
/// Index lookups stay exact: an owner found in the base counts only if the
/// overlay has not changed that device away from the credential.
pub struct Overlay<'a, V> {
    base: &'a V,
    devices: BTreeMap<DeviceId, Option<Device>>,
    revocations: BTreeMap<DeviceId, RevocationRecord>,
    device_ca: Option<DeviceCa>,
    groups: BTreeMap<GroupName, Option<EnrollmentGroup>>,
    rl_key: Option<RlSigningKey>,
    signers: BTreeMap<crate::SignerName, Option<crate::FirmwareSigner>>,
    releases: BTreeMap<crate::ReleaseId, Option<crate::FirmwareRelease>>,
    rollouts: BTreeMap<crate::ReleaseId, Option<crate::Rollout>>,
    reports: BTreeMap<DeviceId, Option<crate::FirmwareReport>>,
}

impl<'a, V: RegistryView> Overlay<'a, V> {
    pub fn new(base: &'a V) -> Self {
        Self {
            base,
            devices: BTreeMap::new(),
            revocations: BTreeMap::new(),
            device_ca: None,
            groups: BTreeMap::new(),
            rl_key: None,
            signers: BTreeMap::new(),
            releases: BTreeMap::new(),
            rollouts: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }

    /// Makes an effect visible to later reads through this overlay.
    pub fn record_effect(&mut self, effect: &Effect) {
        match effect {
            Effect::Device(change) => self.record(change),
            Effect::DeviceCa(ca) => self.device_ca = Some(ca.clone()),
            Effect::RlKey(key) => self.rl_key = Some(key.clone()),
            Effect::Group { name, after } => {
                self.groups.insert(name.clone(), after.clone());
            }
            Effect::Enrolled { change, group } => {
                self.record(change);
                if let Some(g) = group {
                    self.groups.insert(g.name.clone(), Some(g.clone()));
                }
            }
            // No registry rule reads a tenant's policy.
            Effect::TenantClonePolicy { .. } => {}
            Effect::FirmwareSigner { name, after } => {
                self.signers.insert(name.clone(), after.clone());
            }
            Effect::FirmwareRelease { id, after, .. } => {
                self.releases.insert(id.clone(), after.clone());
            }
            Effect::Rollout { release, after } => {
                self.rollouts.insert(release.clone(), after.clone());
            }
            Effect::FirmwareReport { device, after, .. } => {
                self.reports.insert(device.clone(), after.clone());
            }
        }
    }

    /// Makes a change visible to later reads through this overlay.
    pub fn record(&mut self, change: &Change) {
        self.devices.insert(change.id.clone(), change.after.clone());
        if let Some(r) = &change.revocation {
            self.revocations.insert(r.device.clone(), r.clone());
        }
    }

    fn owner_by<F>(&self, base_owner: Option<DeviceId>, claims: F) -> Option<DeviceId>
    where
        F: Fn(&Device) -> bool,
    {
        let claimed = |d: &Option<Device>| matches!(d, Some(dev) if claims(dev));
        if let Some((id, _)) = self.devices.iter().find(|(_, d)| claimed(d)) {
            return Some(id.clone());
        }
        let owner = base_owner?;
        match self.devices.get(&owner) {
            Some(changed) if !claimed(changed) => None,
            _ => Some(owner),
        }
    }
}

impl<V: RegistryView> RegistryView for Overlay<'_, V> {
    type Error = V::Error;

    fn device(&self, id: &DeviceId) -> Result<Option<Device>, V::Error> {
        match self.devices.get(id) {
            Some(d) => Ok(d.clone()),
            None => self.base.device(id),
        }
    }

    fn psk_owner(&self, identity: &[u8]) -> Result<Option<DeviceId>, V::Error> {
        let base = self.base.psk_owner(identity)?;
        Ok(self.owner_by(base, |d| d.psk_identities().any(|i| i == identity)))
    }

    fn key_owner(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, V::Error> {
        let base = self.base.key_owner(fingerprint)?;
        Ok(self.owner_by(base, |d| d.fingerprints().any(|f| f == fingerprint)))
    }

    fn revocation(&self, id: &DeviceId) -> Result<Option<RevocationRecord>, V::Error> {
        match self.revocations.get(id) {
            Some(r) => Ok(Some(r.clone())),
            None => self.base.revocation(id),
        }
    }

    fn revoked_psk(&self, identity: &[u8]) -> Result<Option<DeviceId>, V::Error> {
        match self
            .revocations
            .values()
            .find(|r| r.psk_identities.iter().any(|i| i == identity))
        {
            Some(r) => Ok(Some(r.device.clone())),
            None => self.base.revoked_psk(identity),
        }
    }

    fn revoked_key(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, V::Error> {
        match self
            .revocations
            .values()
            .find(|r| r.fingerprints.contains(fingerprint))
        {
            Some(r) => Ok(Some(r.device.clone())),
            None => self.base.revoked_key(fingerprint),
        }
    }

    fn device_ca(&self) -> Result<Option<DeviceCa>, V::Error> {
        match &self.device_ca {
            Some(ca) => Ok(Some(ca.clone())),
            None => self.base.device_ca(),
        }
    }

    fn enrollment_group(&self, name: &GroupName) -> Result<Option<EnrollmentGroup>, V::Error> {
        match self.groups.get(name) {
            Some(g) => Ok(g.clone()),
            None => self.base.enrollment_group(name),
        }
    }

    fn firmware_signer(
        &self,
        name: &crate::SignerName,
    ) -> Result<Option<crate::FirmwareSigner>, V::Error> {
        match self.signers.get(name) {
            Some(s) => Ok(s.clone()),
            None => self.base.firmware_signer(name),
        }
    }

    fn firmware_release(
        &self,
        id: &crate::ReleaseId,
    ) -> Result<Option<crate::FirmwareRelease>, V::Error> {
        match self.releases.get(id) {
            Some(r) => Ok(r.clone()),
            None => self.base.firmware_release(id),
        }
    }

    fn rollout(&self, release: &crate::ReleaseId) -> Result<Option<crate::Rollout>, V::Error> {
        match self.rollouts.get(release) {
            Some(r) => Ok(r.clone()),
            None => self.base.rollout(release),
        }
    }

    fn firmware_report(&self, id: &DeviceId) -> Result<Option<crate::FirmwareReport>, V::Error> {
        match self.reports.get(id) {
            Some(r) => Ok(r.clone()),
            None => self.base.firmware_report(id),
        }
    }

    fn rl_key(&self) -> Result<Option<RlSigningKey>, V::Error> {
        match &self.rl_key {
            Some(k) => Ok(Some(k.clone())),
            None => self.base.rl_key(),
        }
    }

    fn spokes(&self, gateway: &DeviceId, limit: usize) -> Result<Vec<DeviceId>, V::Error> {
        let of_gateway =
            |d: &Option<Device>| matches!(d, Some(dev) if dev.gateway.as_ref() == Some(gateway));
        // The base's spokes that this batch has not moved away, and the
        // ones it has given this gateway.
        let mut out: Vec<DeviceId> = self
            .base
            .spokes(gateway, limit)?
            .into_iter()
            .filter(|id| self.devices.get(id).is_none_or(of_gateway))
            .collect();
        for (id, d) in &self.devices {
            if of_gateway(d) && !out.contains(id) {
                out.push(id.clone());
            }
        }
        out.sort();
        out.truncate(limit);
        Ok(out)
    }
}

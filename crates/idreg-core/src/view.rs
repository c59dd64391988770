//! What [`crate::apply`] needs to read, and an overlay that lets one apply call
//! see the changes of the commands before it in the same batch.

use std::collections::{BTreeMap, BTreeSet};

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
    /// Which of `devices` hold each PSK identity and key, once there are
    /// more than [`SCAN_UP_TO`] of them; until then a lookup scans them.
    claims: Option<Claims>,
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
            claims: None,
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
        if let Some(claims) = &mut self.claims {
            if let Some(Some(earlier)) = self.devices.get(&change.id) {
                claims.drop_device(&change.id, earlier);
            }
            if let Some(after) = &change.after {
                claims.add_device(&change.id, after);
            }
        }
        self.devices.insert(change.id.clone(), change.after.clone());
        if self.claims.is_none() && self.devices.len() > SCAN_UP_TO {
            let mut claims = Claims::default();
            for (id, device) in &self.devices {
                if let Some(device) = device {
                    claims.add_device(id, device);
                }
            }
            self.claims = Some(claims);
        }
        if let Some(r) = &change.revocation {
            self.revocations.insert(r.device.clone(), r.clone());
        }
    }

    /// The owner of a credential: the first device (by id) this batch left
    /// holding it (`indexed`, from the claims once kept, else a scan for
    /// `claims`), else the base's owner unless this batch changed that
    /// device so that it no longer holds it.
    fn owner_by<F>(
        &self,
        base_owner: Option<DeviceId>,
        indexed: impl FnOnce(&Claims) -> Option<DeviceId>,
        claims: F,
    ) -> Option<DeviceId>
    where
        F: Fn(&Device) -> bool,
    {
        let claimed = |d: &Option<Device>| matches!(d, Some(dev) if claims(dev));
        let first = match &self.claims {
            Some(c) => indexed(c),
            None => self
                .devices
                .iter()
                .find(|(_, d)| claimed(d))
                .map(|(id, _)| id.clone()),
        };
        if first.is_some() {
            return first;
        }
        let owner = base_owner?;
        match self.devices.get(&owner) {
            Some(changed) if !claimed(changed) => None,
            _ => Some(owner),
        }
    }
}

/// How many changed devices an owner lookup scans before the overlay keeps
/// [`Claims`] instead. Keeping them costs ~0.4 µs a device (allocations),
/// a scan ~7 ns a device per lookup, so a batch's scans grow with its size
/// squared: 44 creates (100 clients' group commit) took 21 µs scanned and
/// 31 µs always indexed, 512 (a bulk import's entry) 1.05 ms and 0.5 ms;
/// scanning up to 64 then indexing, 23 µs and 0.43 ms
/// (`cargo bench --bench hot_paths -- overlay`).
const SCAN_UP_TO: usize = 64;

/// The changed devices that hold each PSK identity and key.
#[derive(Default)]
struct Claims {
    psk: BTreeMap<Vec<u8>, BTreeSet<DeviceId>>,
    key: BTreeMap<Fingerprint, BTreeSet<DeviceId>>,
}

impl Claims {
    fn add_device(&mut self, id: &DeviceId, device: &Device) {
        for identity in device.psk_identities() {
            self.psk
                .entry(identity.to_vec())
                .or_default()
                .insert(id.clone());
        }
        for fingerprint in device.fingerprints() {
            self.key.entry(*fingerprint).or_default().insert(id.clone());
        }
    }

    fn drop_device(&mut self, id: &DeviceId, device: &Device) {
        for identity in device.psk_identities() {
            unclaim(&mut self.psk, identity, id);
        }
        for fingerprint in device.fingerprints() {
            unclaim(&mut self.key, fingerprint, id);
        }
    }
}

/// The first of `claimants` by id.
fn first(claimants: Option<&BTreeSet<DeviceId>>) -> Option<DeviceId> {
    claimants.and_then(|c| c.first()).cloned()
}

/// Takes `id` off the claimants of `credential`, dropping an empty entry.
fn unclaim<K, Q>(claims: &mut BTreeMap<K, BTreeSet<DeviceId>>, credential: &Q, id: &DeviceId)
where
    K: std::borrow::Borrow<Q> + Ord,
    Q: Ord + ?Sized,
{
    if let Some(ids) = claims.get_mut(credential) {
        ids.remove(id);
        if ids.is_empty() {
            claims.remove(credential);
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
        Ok(self.owner_by(
            base,
            |c| first(c.psk.get(identity)),
            |d| d.psk_identities().any(|i| i == identity),
        ))
    }

    fn key_owner(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, V::Error> {
        let base = self.base.key_owner(fingerprint)?;
        Ok(self.owner_by(
            base,
            |c| first(c.key.get(fingerprint)),
            |d| d.fingerprints().any(|f| f == fingerprint),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Credential, KeySource, PublicKeyCredential};
    use crate::mem::MemRegistry;
    use crate::names::TenantId;
    use crate::{DeviceStatus, Kek, Labels};

    fn device(id: &DeviceId, psks: &[u8], key: Option<u8>) -> Device {
        let kek = Kek::from_bytes(&[7; 32]);
        let mut credentials: Vec<Credential> = psks
            .iter()
            .map(|p| Credential::Psk {
                identity: vec![b'p', *p],
                secret: kek.seal(b"secret", b""),
            })
            .collect();
        if let Some(k) = key {
            credentials.push(Credential::PublicKey(PublicKeyCredential {
                spki_der: Vec::new(),
                fingerprint: Fingerprint([k; 32]),
                source: KeySource::Spki,
            }));
        }
        Device {
            id: id.clone(),
            tenant: TenantId::default_tenant(),
            status: DeviceStatus::Active,
            labels: Labels::default(),
            gateway: None,
            credentials,
            created_ms: 0,
            updated_ms: 0,
            revision: 0,
            revocation: None,
        }
    }

    /// The owner as the overlay found it before it kept claims: a scan of
    /// every device the batch changed, then the base's owner.
    fn scanned_owner(
        overlay: &Overlay<'_, MemRegistry>,
        base: Option<DeviceId>,
        claims: impl Fn(&Device) -> bool,
    ) -> Option<DeviceId> {
        let claimed = |d: &Option<Device>| matches!(d, Some(dev) if claims(dev));
        if let Some((id, _)) = overlay.devices.iter().find(|(_, d)| claimed(d)) {
            return Some(id.clone());
        }
        let owner = base?;
        match overlay.devices.get(&owner) {
            Some(changed) if !claimed(changed) => None,
            _ => Some(owner),
        }
    }

    /// Random changes to devices that hold, drop and take each other's PSK
    /// identities and keys: the kept claims answer every owner lookup as
    /// the scan does.
    #[test]
    fn credential_owners_match_a_scan_of_the_changed_devices() {
        // More devices than SCAN_UP_TO: each overlay scans, then indexes.
        let ids: Vec<DeviceId> = (0..3 * SCAN_UP_TO)
            .map(|i| DeviceId::parse("id", &format!("d{i:02}")).unwrap())
            .collect();
        let mut base = MemRegistry::default();
        for (i, id) in ids.iter().take(6).enumerate() {
            let d = device(id, &[i as u8], Some(i as u8));
            base.commit(&Change {
                id: id.clone(),
                before: None,
                after: Some(d),
                revocation: None,
            });
        }
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut next = |n: u64| rng.random_range(0..n);
        for _ in 0..50 {
            let mut overlay = Overlay::new(&base);
            for _ in 0..4 * SCAN_UP_TO {
                let id = &ids[next(ids.len() as u64) as usize];
                let after = match next(4) {
                    0 => None,
                    _ => {
                        let psks: Vec<u8> = (0..next(3)).map(|_| next(8) as u8).collect();
                        let key = (next(2) == 0).then(|| next(8) as u8);
                        Some(device(id, &psks, key))
                    }
                };
                overlay.record(&Change {
                    id: id.clone(),
                    before: None,
                    after,
                    revocation: None,
                });
                for p in 0..8u8 {
                    let identity = [b'p', p];
                    let base_owner = base.psk_owner(&identity).unwrap();
                    let want = scanned_owner(&overlay, base_owner, |d| {
                        d.psk_identities().any(|i| i == identity)
                    });
                    assert_eq!(overlay.psk_owner(&identity).unwrap(), want);
                    let fingerprint = Fingerprint([p; 32]);
                    let base_owner = base.key_owner(&fingerprint).unwrap();
                    let want = scanned_owner(&overlay, base_owner, |d| {
                        d.fingerprints().any(|f| *f == fingerprint)
                    });
                    assert_eq!(overlay.key_owner(&fingerprint).unwrap(), want);
                }
            }
            assert!(overlay.claims.is_some(), "the claims were never kept");
        }
    }
}

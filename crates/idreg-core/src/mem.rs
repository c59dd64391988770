//! An in-memory registry: the reference implementation of [`RegistryView`],
//! used by unit tests here and by front-end tests that need no RocksDB.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;

use crate::apply::{apply, Change, Effect};
use crate::audit::{AuditRecord, MAX_AUDIT_PER_DEVICE};
use crate::command::Proposal;
use crate::credential::Fingerprint;
use crate::device::{Device, RevocationRecord};
use crate::device_ca::DeviceCa;
use crate::enrollment_group::{EnrollmentGroup, GroupName};
use crate::error::Rejection;
use crate::firmware_catalog::{ReportedDevice, VersionCount};
use crate::names::DeviceId;
use crate::revocation_list::RlSigningKey;
use crate::view::RegistryView;

#[derive(Debug, Default, Clone)]
pub struct MemRegistry {
    devices: BTreeMap<DeviceId, Device>,
    psk: HashMap<Vec<u8>, DeviceId>,
    keys: HashMap<Fingerprint, DeviceId>,
    revoked: BTreeMap<DeviceId, RevocationRecord>,
    device_ca: Option<DeviceCa>,
    groups: BTreeMap<GroupName, EnrollmentGroup>,
    rl_key: Option<RlSigningKey>,
    tenant_clone: BTreeMap<crate::TenantId, crate::ClonePolicy>,
    signers: BTreeMap<crate::SignerName, crate::FirmwareSigner>,
    releases: BTreeMap<crate::ReleaseId, crate::FirmwareRelease>,
    /// (release, upload, index) -> bytes.
    chunks: BTreeMap<(crate::ReleaseId, u64, u32), Vec<u8>>,
    rollouts: BTreeMap<crate::ReleaseId, crate::Rollout>,
    reports: BTreeMap<DeviceId, crate::FirmwareReport>,
    /// Each device's audit trail, oldest first; kept after delete.
    audit: BTreeMap<DeviceId, Vec<AuditRecord>>,
    revision: u64,
}

impl MemRegistry {
    /// Applies one proposal at the next revision and commits its effect.
    pub fn execute_effect(&mut self, proposal: &Proposal) -> Result<Effect, Rejection> {
        self.revision += 1;
        let effect = match apply(self, proposal, self.revision) {
            Ok(result) => result?,
            Err(never) => match never {},
        };
        match &effect {
            Effect::Device(change) => self.commit(change),
            Effect::DeviceCa(ca) => self.device_ca = Some(ca.clone()),
            Effect::RlKey(key) => self.rl_key = Some(key.clone()),
            Effect::Group { name, after } => match after {
                Some(g) => {
                    self.groups.insert(name.clone(), g.clone());
                }
                None => {
                    self.groups.remove(name);
                }
            },
            Effect::Enrolled { change, group } => {
                self.commit(change);
                if let Some(g) = group {
                    self.groups.insert(g.name.clone(), g.clone());
                }
            }
            Effect::FirmwareSigner { name, after } => match after {
                Some(s) => {
                    self.signers.insert(name.clone(), s.clone());
                }
                None => {
                    self.signers.remove(name);
                }
            },
            Effect::FirmwareRelease {
                id,
                after,
                chunk,
                drop_upload,
            } => {
                if let Some(upload) = drop_upload {
                    self.chunks.retain(|(r, u, _), _| !(r == id && u == upload));
                }
                match after {
                    Some(r) => {
                        if let Some((index, bytes)) = chunk {
                            self.chunks
                                .insert((id.clone(), r.upload, *index), bytes.clone());
                        }
                        self.releases.insert(id.clone(), r.clone());
                    }
                    None => {
                        self.releases.remove(id);
                    }
                }
            }
            Effect::Rollout { release, after } => match after {
                Some(r) => {
                    self.rollouts.insert(release.clone(), r.clone());
                }
                None => {
                    self.rollouts.remove(release);
                }
            },
            Effect::FirmwareReport { device, after, .. } => match after {
                Some(r) => {
                    self.reports.insert(device.clone(), r.clone());
                }
                None => {
                    self.reports.remove(device);
                }
            },
            Effect::TenantClonePolicy { tenant, policy } => match policy {
                Some(p) => {
                    self.tenant_clone.insert(tenant.clone(), *p);
                }
                None => {
                    self.tenant_clone.remove(tenant);
                }
            },
        }
        if let Effect::Device(change) | Effect::Enrolled { change, .. } = &effect {
            let trail = self.audit.entry(change.id.clone()).or_default();
            trail.push(AuditRecord::of(proposal, self.revision));
            let excess = trail.len().saturating_sub(MAX_AUDIT_PER_DEVICE);
            trail.drain(..excess);
        }
        Ok(effect)
    }

    /// A tenant's clone policy, if one is set.
    pub fn tenant_clone_policy(&self, tenant: &crate::TenantId) -> Option<crate::ClonePolicy> {
        self.tenant_clone.get(tenant).copied()
    }

    /// [`Self::execute_effect`] answered as the replicated store answers a
    /// proposer: the device after a device command, none after any other.
    pub fn verdict(&mut self, proposal: &Proposal) -> Result<Option<Device>, Rejection> {
        Ok(match self.execute_effect(proposal)? {
            Effect::Device(change) | Effect::Enrolled { change, .. } => change.after,
            _ => None,
        })
    }

    /// [`Self::execute_effect`] for a device command, returning its change.
    pub fn execute(&mut self, proposal: &Proposal) -> Result<Change, Rejection> {
        match self.execute_effect(proposal)? {
            Effect::Device(change) | Effect::Enrolled { change, .. } => Ok(change),
            Effect::DeviceCa(_)
            | Effect::RlKey(_)
            | Effect::Group { .. }
            | Effect::TenantClonePolicy { .. }
            | Effect::FirmwareSigner { .. }
            | Effect::FirmwareRelease { .. }
            | Effect::Rollout { .. }
            | Effect::FirmwareReport { .. } => {
                Err(Rejection::Malformed("not a device command".into()))
            }
        }
    }

    /// Writes a change and keeps the indexes in step with it.
    pub fn commit(&mut self, change: &Change) {
        if let Some(before) = &change.before {
            before.psk_identities().for_each(|i| {
                self.psk.remove(i);
            });
            before.fingerprints().for_each(|f| {
                self.keys.remove(f);
            });
        }
        match &change.after {
            Some(after) => {
                after.psk_identities().for_each(|i| {
                    self.psk.insert(i.to_vec(), after.id.clone());
                });
                after.fingerprints().for_each(|f| {
                    self.keys.insert(*f, after.id.clone());
                });
                self.devices.insert(after.id.clone(), after.clone());
            }
            None => {
                self.devices.remove(&change.id);
                // A device's firmware report goes with it.
                self.reports.remove(&change.id);
            }
        }
        if let Some(r) = &change.revocation {
            self.revoked.insert(r.device.clone(), r.clone());
        }
    }

    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// The stored image of a release's current upload, chunks joined.
    pub fn firmware_image(&self, id: &crate::ReleaseId) -> Option<Vec<u8>> {
        let r = self.releases.get(id)?;
        Some(
            self.chunks
                .range((id.clone(), r.upload, 0)..=(id.clone(), r.upload, u32::MAX))
                .flat_map(|(_, b)| b.iter().copied())
                .collect(),
        )
    }

    /// Chunks stored for any upload.
    pub fn firmware_chunks(&self) -> usize {
        self.chunks.len()
    }

    pub fn revoked_count(&self) -> usize {
        self.revoked.len()
    }
}

impl crate::DeviceDirectory for MemRegistry {
    fn list(
        &self,
        filter: &crate::DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::DevicePage, Infallible> {
        let mut page = crate::DevicePage::default();
        // A String's order is its bytes' order, as RocksDB's keys are.
        let later = self
            .devices
            .values()
            .filter(|d| after.is_none_or(|a| d.id.as_str() > a));
        for d in later {
            if !page.offer(filter, limit, d.clone()) {
                break;
            }
        }
        Ok(page)
    }

    fn audit(&self, id: &DeviceId) -> Result<Vec<AuditRecord>, Infallible> {
        Ok(self.audit.get(id).cloned().unwrap_or_default())
    }

    fn clone_policy(
        &self,
        tenant: &crate::TenantId,
    ) -> Result<Option<crate::ClonePolicy>, Infallible> {
        Ok(self.tenant_clone_policy(tenant))
    }

    fn applied_index(&self) -> Result<u64, Infallible> {
        Ok(self.revision)
    }

    fn enrollment_groups(&self) -> Result<Vec<EnrollmentGroup>, Infallible> {
        Ok(self.groups.values().cloned().collect())
    }
}

impl crate::CredentialLookup for MemRegistry {
    fn groups_for_issuer(
        &self,
        subject_hash: &[u8; 32],
    ) -> Result<Vec<EnrollmentGroup>, Infallible> {
        Ok(self
            .groups
            .values()
            .filter(|g| g.ca_subject_hash().as_ref() == Some(subject_hash))
            .cloned()
            .collect())
    }
}

impl RegistryView for MemRegistry {
    type Error = Infallible;

    fn device(&self, id: &DeviceId) -> Result<Option<Device>, Infallible> {
        Ok(self.devices.get(id).cloned())
    }
    fn psk_owner(&self, identity: &[u8]) -> Result<Option<DeviceId>, Infallible> {
        Ok(self.psk.get(identity).cloned())
    }
    fn key_owner(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, Infallible> {
        Ok(self.keys.get(fingerprint).cloned())
    }
    fn revocation(&self, id: &DeviceId) -> Result<Option<RevocationRecord>, Infallible> {
        Ok(self.revoked.get(id).cloned())
    }
    fn revoked_psk(&self, identity: &[u8]) -> Result<Option<DeviceId>, Infallible> {
        Ok(self
            .revoked
            .values()
            .find(|r| r.psk_identities.iter().any(|i| i == identity))
            .map(|r| r.device.clone()))
    }
    fn revoked_key(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, Infallible> {
        Ok(self
            .revoked
            .values()
            .find(|r| r.fingerprints.contains(fingerprint))
            .map(|r| r.device.clone()))
    }
    fn device_ca(&self) -> Result<Option<DeviceCa>, Infallible> {
        Ok(self.device_ca.clone())
    }
    fn enrollment_group(&self, name: &GroupName) -> Result<Option<EnrollmentGroup>, Infallible> {
        Ok(self.groups.get(name).cloned())
    }
    fn firmware_signer(
        &self,
        name: &crate::SignerName,
    ) -> Result<Option<crate::FirmwareSigner>, Infallible> {
        Ok(self.signers.get(name).cloned())
    }
    fn rl_key(&self) -> Result<Option<RlSigningKey>, Infallible> {
        Ok(self.rl_key.clone())
    }
    fn firmware_release(
        &self,
        id: &crate::ReleaseId,
    ) -> Result<Option<crate::FirmwareRelease>, Infallible> {
        Ok(self.releases.get(id).cloned())
    }
    fn rollout(&self, release: &crate::ReleaseId) -> Result<Option<crate::Rollout>, Infallible> {
        Ok(self.rollouts.get(release).cloned())
    }
    fn firmware_report(&self, id: &DeviceId) -> Result<Option<crate::FirmwareReport>, Infallible> {
        Ok(self.reports.get(id).cloned())
    }
    fn spokes(&self, gateway: &DeviceId, limit: usize) -> Result<Vec<DeviceId>, Infallible> {
        Ok(self
            .devices
            .values()
            .filter(|d| d.gateway.as_ref() == Some(gateway))
            .map(|d| d.id.clone())
            .take(limit)
            .collect())
    }
}

impl crate::FirmwareCatalog for MemRegistry {
    fn rollouts_of_class(
        &self,
        class: &crate::DeviceClass,
    ) -> Result<Vec<(crate::Rollout, crate::FirmwareRelease)>, Infallible> {
        Ok(self
            .rollouts
            .iter()
            .filter(|(id, _)| &id.class == class)
            .filter_map(|(id, r)| Some((r.clone(), self.releases.get(id)?.clone())))
            .collect())
    }

    /// A chunk that is not held ends the window early (the store, which
    /// can be damaged, fails instead).
    fn firmware_image_range(
        &self,
        release: &crate::FirmwareRelease,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, Infallible> {
        let id = release.id();
        crate::firmware_catalog::read_image_range(release, offset, len, |index| {
            Ok(self
                .chunks
                .get(&(id.clone(), release.upload, index))
                .map_or(&[][..], |c| c.as_slice()))
        })
    }

    fn firmware_signers(&self) -> Result<Vec<crate::FirmwareSigner>, Infallible> {
        Ok(self.signers.values().cloned().collect())
    }

    fn firmware_releases(&self, staged: bool) -> Result<Vec<crate::FirmwareRelease>, Infallible> {
        Ok(by_text_order(
            self.releases
                .iter()
                .filter(|(_, r)| staged || r.is_complete()),
        ))
    }

    fn rollouts(&self) -> Result<Vec<crate::Rollout>, Infallible> {
        Ok(by_text_order(self.rollouts.iter()))
    }

    /// Counted from the reports themselves: an oracle for the store's
    /// running counts.
    fn firmware_version_counts(
        &self,
        class: Option<&str>,
    ) -> Result<Vec<VersionCount>, Infallible> {
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for r in self.reports.values() {
            let c = r.class.as_ref().map_or("", |c| c.as_str());
            if class.is_none_or(|want| want == c) {
                *counts
                    .entry((c.to_owned(), r.running.to_string()))
                    .or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|((class, version), devices)| VersionCount {
                class,
                version,
                devices,
            })
            .collect())
    }

    fn devices_on_version(
        &self,
        class: &str,
        version: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ReportedDevice>, Infallible> {
        Ok(self
            .reports
            .iter()
            .filter(|(id, r)| {
                r.class.as_ref().map_or("", |c| c.as_str()) == class
                    && r.running.to_string() == version
                    && after.is_none_or(|a| id.as_str() > a)
            })
            .take(limit)
            .map(|(id, r)| ReportedDevice {
                id: id.to_string(),
                at_ms: r.at_ms,
            })
            .collect())
    }

    fn firmware_attempts(
        &self,
        class: &str,
        version: &str,
        state: crate::firmware_release::AttemptState,
    ) -> Result<u64, Infallible> {
        Ok(self
            .reports
            .values()
            .filter(|r| {
                r.class.as_ref().map_or("", |c| c.as_str()) == class
                    && r.attempt
                        .as_ref()
                        .is_some_and(|a| a.state == state && a.version.to_string() == version)
            })
            .count() as u64)
    }
}

/// Values keyed by release, in the order of class then version text (the
/// store's key order), not the versions' own order (1.10 after 1.9).
fn by_text_order<'a, T: Clone + 'a>(
    items: impl Iterator<Item = (&'a crate::ReleaseId, &'a T)>,
) -> Vec<T> {
    let mut keyed: Vec<((&str, String), &T)> = items
        .map(|(id, v)| ((id.class.as_str(), id.version.to_string()), v))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.into_iter().map(|(_, v)| v.clone()).collect()
}

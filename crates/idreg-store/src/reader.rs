//! Local reads of the registry: point lookups (the handshake path) and paged
//! listings. Reads here see what this node has applied; linearizable reads are
//! arranged by the raft layer before calling in.

use std::sync::Arc;

use idreg_core::revocation_list::{ListedRevocation, RlSigningKey};
use idreg_core::{
    Device, DeviceCa, DeviceFilter, DeviceId, DevicePage, EnrollmentGroup, Fingerprint, GroupName,
    RegistryView, RevocationRecord,
};
use rocksdb::{Direction, IteratorMode, DB};

use crate::db::{decode_as, StoreError};
use crate::keys::*;

/// Why a signed revocation list could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignedListError {
    #[error("the cluster has no revocation-list key yet (its leader makes one)")]
    NoKey,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sign(idreg_core::revocation_list::RlError),
}

#[derive(Clone)]
pub struct RegistryReader {
    pub(crate) db: Arc<DB>,
}

impl RegistryReader {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let handle = self.db.cf_handle(cf).expect("cf exists");
        Ok(self.db.get_pinned_cf(&handle, key)?.map(|v| v.to_vec()))
    }

    /// A cluster-wide record (`CF_CLUSTER`), decoded.
    fn cluster_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        self.get_cf(CF_CLUSTER, key)?
            .map(|b| decode_as(what, &b))
            .transpose()
    }

    fn id_at(&self, cf: &str, key: &[u8]) -> Result<Option<DeviceId>, StoreError> {
        match self.get_cf(cf, key)? {
            Some(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| StoreError::Decode {
                    what: "index entry",
                    source: crate::codec::CodecError::custom("device id is not UTF-8"),
                })?;
                Ok(Some(DeviceId::parse("id", &text).map_err(|e| {
                    StoreError::Decode {
                        what: "index entry",
                        source: crate::codec::CodecError::custom(e),
                    }
                })?))
            }
            None => Ok(None),
        }
    }

    pub fn get(&self, id: &str) -> Result<Option<Device>, StoreError> {
        match self.get_cf(CF_DEVICES, id.as_bytes())? {
            Some(bytes) => Ok(Some(decode_as("device", &bytes)?)),
            None => Ok(None),
        }
    }

    /// The device holding a PSK identity: two point reads.
    pub fn by_psk_identity(&self, identity: &[u8]) -> Result<Option<Device>, StoreError> {
        match self.id_at(CF_IDX_PSK, identity)? {
            Some(id) => self.get(id.as_str()),
            None => Ok(None),
        }
    }

    /// The device holding a public key: two point reads.
    pub fn by_fingerprint(&self, fp: &Fingerprint) -> Result<Option<Device>, StoreError> {
        match self.id_at(CF_IDX_KEY, &fp.0)? {
            Some(id) => self.get(id.as_str()),
            None => Ok(None),
        }
    }

    pub(crate) fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        match self.get_cf(CF_COUNTERS, key)? {
            Some(b) => decode_as("counter", &b),
            None => Ok(0),
        }
    }

    /// The last log index applied to this replica (0 before any).
    pub fn applied_index(&self) -> Result<u64, StoreError> {
        match self.get_cf(CF_SM_META, SM_APPLIED)? {
            Some(b) => Ok(decode_as::<crate::types::LogId>("applied log id", &b)?.index),
            None => Ok(0),
        }
    }

    pub fn device_count(&self) -> Result<u64, StoreError> {
        self.counter(COUNTER_DEVICES)
    }

    /// A device's audit history, oldest first (kept after revoke and delete).
    pub fn audit(&self, id: &str) -> Result<Vec<idreg_core::AuditRecord>, StoreError> {
        let cf = self.db.cf_handle(CF_AUDIT).expect("cf exists");
        let pfx = prefix(id);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(&cf, &pfx) {
            let (k, v) = item?;
            if !k.starts_with(&pfx) {
                break;
            }
            out.push(decode_as("audit record", &v)?);
        }
        Ok(out)
    }

    /// A tenant's clone policy, if one is set.
    pub fn tenant_clone_policy(
        &self,
        tenant: &str,
    ) -> Result<Option<idreg_core::ClonePolicy>, StoreError> {
        self.cluster_record(
            &crate::keys::tenant_clone_key(tenant),
            "tenant clone policy",
        )
    }

    /// Every enrollment group, by name (groups are few: tens, not millions).
    pub fn enrollment_groups(&self) -> Result<Vec<EnrollmentGroup>, StoreError> {
        self.cluster_scan(CLUSTER_GROUP_PREFIX, |_, v| {
            decode_as("enrollment group", v).map(Some)
        })
    }

    /// The enrollment groups whose manufacturer CA's subject hashes to
    /// `subject_hash`: how a presented certificate's issuer finds its group.
    pub fn groups_for_issuer(
        &self,
        subject_hash: &[u8; 32],
    ) -> Result<Vec<EnrollmentGroup>, StoreError> {
        let pfx = [CLUSTER_GROUP_CA_PREFIX, subject_hash].concat();
        self.cluster_scan(&pfx, |k, _| {
            let name = std::str::from_utf8(&k[pfx.len()..]).unwrap_or_default();
            match GroupName::parse("name", name) {
                Ok(n) => self.enrollment_group(&n),
                Err(_) => Ok(None),
            }
        })
    }

    pub(crate) fn cluster_scan<T>(
        &self,
        pfx: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let cf = self.db.cf_handle(CF_CLUSTER).expect("cf exists");
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(pfx, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(pfx) {
                break;
            }
            out.extend(each(&k, &v)?);
        }
        Ok(out)
    }

    /// Every revocation, in device-id order, with the list version that made
    /// it (0 for revocations applied before versions were indexed).
    pub fn revocations(&self) -> Result<Vec<ListedRevocation>, StoreError> {
        let versions: std::collections::HashMap<String, u64> = self
            .revoked_scan(b"v", 0)?
            .into_iter()
            .map(|l| (l.record.device.to_string(), l.version))
            .collect();
        let cf = self.db.cf_handle(CF_REVOKED).expect("cf exists");
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(b"d", Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(b"d") {
                break;
            }
            let record: RevocationRecord = decode_as("revocation record", &v)?;
            let version = versions.get(record.device.as_str()).copied().unwrap_or(0);
            out.push(ListedRevocation { version, record });
        }
        Ok(out)
    }

    /// The signed revocation list (COSE_Sign1) at list version `version`:
    /// whole, or the delta after `since` when that is older than `version`.
    pub fn signed_revocation_list(
        &self,
        kek: &idreg_core::Kek,
        version: u64,
        since: Option<u64>,
        now_ms: u64,
    ) -> Result<Vec<u8>, SignedListError> {
        let key = self.rl_key()?.ok_or(SignedListError::NoKey)?;
        let since = since.filter(|s| *s < version);
        let entries = match since {
            None => self.revocations()?,
            Some(s) => self.revocations_since(s)?,
        };
        idreg_core::revocation_list::signed_list(&key, kek, version, since, entries, now_ms)
            .map_err(SignedListError::Sign)
    }

    /// The revocations after list version `since`, oldest first.
    pub fn revocations_since(&self, since: u64) -> Result<Vec<ListedRevocation>, StoreError> {
        self.revoked_scan(b"v", since.saturating_add(1))
    }

    fn revoked_scan(&self, prefix: &[u8], from: u64) -> Result<Vec<ListedRevocation>, StoreError> {
        let cf = self.db.cf_handle(CF_REVOKED).expect("cf exists");
        let start = [prefix, &from.to_be_bytes()].concat();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            let Some(version) = k.strip_prefix(prefix) else {
                break;
            };
            let Ok(version) = <[u8; 8]>::try_from(version) else {
                break;
            };
            out.push(ListedRevocation {
                version: u64::from_be_bytes(version),
                record: decode_as("revocation record", &v)?,
            });
        }
        Ok(out)
    }

    /// Version of the revocation list: the number of revocations ever applied.
    /// Devices per status, in `DeviceStatus::ALL` order (kept counts, not
    /// a scan).
    pub fn devices_by_status(&self) -> Result<[u64; 3], StoreError> {
        match self.get_cf(CF_COUNTERS, COUNTER_BY_STATUS)? {
            Some(b) => decode_as("devices by status", &b),
            None => Ok([0; 3]),
        }
    }

    /// Counts devices per status by walking them all: only to fill in the
    /// kept counts of a data directory that has none.
    pub(crate) fn count_devices_by_status(&self) -> Result<[u64; 3], StoreError> {
        let cf = self.db.cf_handle(CF_DEVICES).expect("cf exists");
        let mut counts = [0u64; 3];
        for item in self.db.iterator_cf(&cf, rocksdb::IteratorMode::Start) {
            let (_, v) = item?;
            let d: Device = decode_as("device", &v)?;
            counts[d.status.index()] += 1;
        }
        Ok(counts)
    }

    pub fn revocation_list_version(&self) -> Result<u64, StoreError> {
        self.counter(COUNTER_RL_VERSION)
    }

    /// Up to `limit` matching devices with ids greater than `after`, in id order.
    pub fn list(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        let mut page = DevicePage::default();
        // Walk the most selective index available; check the rest per device.
        let index = if let Some((k, v)) = filter.labels.first() {
            Some((CF_IDX_LABEL, label_prefix(k, v)))
        } else if let Some(t) = &filter.tenant {
            Some((CF_IDX_TENANT, prefix(t)))
        } else {
            filter.gateway.as_ref().map(|g| (CF_IDX_GATEWAY, prefix(g)))
        };
        match index {
            Some((cf_name, pfx)) => {
                let cf = self.db.cf_handle(cf_name).expect("cf exists");
                let start = [pfx.as_slice(), after.unwrap_or("").as_bytes()].concat();
                for item in self
                    .db
                    .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward))
                {
                    let (k, _) = item?;
                    let Some(id) = k.strip_prefix(pfx.as_slice()) else {
                        break;
                    };
                    let id = std::str::from_utf8(id).unwrap_or_default();
                    if after == Some(id) {
                        continue;
                    }
                    let Some(d) = self.get(id)? else { continue };
                    if !page.offer(filter, limit, d) {
                        break;
                    }
                }
            }
            None => {
                let cf = self.db.cf_handle(CF_DEVICES).expect("cf exists");
                let start = after.unwrap_or("").as_bytes();
                for item in self
                    .db
                    .iterator_cf(&cf, IteratorMode::From(start, Direction::Forward))
                {
                    let (k, v) = item?;
                    if after.is_some_and(|a| a.as_bytes() == &*k) {
                        continue;
                    }
                    if !page.offer(filter, limit, decode_as("device", &v)?) {
                        break;
                    }
                }
            }
        }
        Ok(page)
    }
}

impl idreg_core::CredentialLookup for RegistryReader {
    fn groups_for_issuer(
        &self,
        subject_hash: &[u8; 32],
    ) -> Result<Vec<EnrollmentGroup>, StoreError> {
        RegistryReader::groups_for_issuer(self, subject_hash)
    }

    fn by_psk_identity(&self, identity: &[u8]) -> Result<Option<Device>, StoreError> {
        RegistryReader::by_psk_identity(self, identity)
    }

    fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Device>, StoreError> {
        RegistryReader::by_fingerprint(self, fingerprint)
    }
}

impl idreg_core::DeviceDirectory for RegistryReader {
    fn list(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, StoreError> {
        RegistryReader::list(self, filter, after, limit)
    }

    fn audit(&self, id: &DeviceId) -> Result<Vec<idreg_core::AuditRecord>, StoreError> {
        RegistryReader::audit(self, id.as_str())
    }

    fn clone_policy(
        &self,
        tenant: &idreg_core::TenantId,
    ) -> Result<Option<idreg_core::ClonePolicy>, StoreError> {
        self.tenant_clone_policy(tenant.as_str())
    }

    fn applied_index(&self) -> Result<u64, StoreError> {
        RegistryReader::applied_index(self)
    }

    fn enrollment_groups(&self) -> Result<Vec<EnrollmentGroup>, StoreError> {
        RegistryReader::enrollment_groups(self)
    }
}

impl RegistryView for RegistryReader {
    type Error = StoreError;

    fn device(&self, id: &DeviceId) -> Result<Option<Device>, StoreError> {
        self.get(id.as_str())
    }
    fn psk_owner(&self, identity: &[u8]) -> Result<Option<DeviceId>, StoreError> {
        self.id_at(CF_IDX_PSK, identity)
    }
    fn key_owner(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, StoreError> {
        self.id_at(CF_IDX_KEY, &fingerprint.0)
    }
    fn revocation(&self, id: &DeviceId) -> Result<Option<RevocationRecord>, StoreError> {
        match self.get_cf(CF_REVOKED, &revoked_device_key(id.as_str()))? {
            Some(b) => Ok(Some(decode_as("revocation record", &b)?)),
            None => Ok(None),
        }
    }
    fn revoked_psk(&self, identity: &[u8]) -> Result<Option<DeviceId>, StoreError> {
        self.id_at(CF_REVOKED, &revoked_psk_key(identity))
    }
    fn revoked_key(&self, fingerprint: &Fingerprint) -> Result<Option<DeviceId>, StoreError> {
        self.id_at(CF_REVOKED, &revoked_fingerprint_key(&fingerprint.0))
    }
    fn device_ca(&self) -> Result<Option<DeviceCa>, StoreError> {
        self.cluster_record(CLUSTER_DEVICE_CA, "device CA")
    }
    fn spokes(&self, gateway: &DeviceId, limit: usize) -> Result<Vec<DeviceId>, StoreError> {
        let cf = self.db.cf_handle(CF_IDX_GATEWAY).expect("cf exists");
        let pfx = prefix(gateway.as_str());
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&pfx, Direction::Forward))
        {
            let (k, _) = item?;
            let Some(id) = k.strip_prefix(pfx.as_slice()) else {
                break;
            };
            if out.len() == limit {
                break;
            }
            if let Ok(id) = DeviceId::parse("spoke", std::str::from_utf8(id).unwrap_or("")) {
                out.push(id);
            }
        }
        Ok(out)
    }
    fn rl_key(&self) -> Result<Option<RlSigningKey>, StoreError> {
        self.cluster_record(CLUSTER_RL_KEY, "revocation-list key")
    }
    fn firmware_signer(
        &self,
        name: &idreg_core::SignerName,
    ) -> Result<Option<idreg_core::FirmwareSigner>, StoreError> {
        self.cluster_record(&fw_signer_key(name.as_str()), "firmware signer")
    }
    fn firmware_release(
        &self,
        id: &idreg_core::ReleaseId,
    ) -> Result<Option<idreg_core::FirmwareRelease>, StoreError> {
        self.release_record(id)
    }
    fn rollout(
        &self,
        release: &idreg_core::ReleaseId,
    ) -> Result<Option<idreg_core::Rollout>, StoreError> {
        self.rollout_record(release)
    }
    fn firmware_report(
        &self,
        id: &DeviceId,
    ) -> Result<Option<idreg_core::FirmwareReport>, StoreError> {
        self.report_record(id)
    }
    fn enrollment_group(&self, name: &GroupName) -> Result<Option<EnrollmentGroup>, StoreError> {
        self.cluster_record(&group_key(name.as_str()), "enrollment group")
    }
}

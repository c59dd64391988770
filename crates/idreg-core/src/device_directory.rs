//! The reads behind the back-office API's device queries: a filtered page of
//! devices, a device's audit trail, a tenant's clone policy and how far the
//! registry has applied. Implemented by the RocksDB reader (idreg-store) and
//! by [`crate::mem::MemRegistry`], so the API's services are tested without
//! RocksDB, and the two are held to the same answers by one suite.

use crate::audit::AuditRecord;
use crate::clone_policy::ClonePolicy;
use crate::device::{Device, DeviceStatus};
use crate::names::{DeviceId, TenantId};
use crate::view::RegistryView;

/// Which devices a listing returns; every part given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceFilter {
    pub status: Option<DeviceStatus>,
    /// `(key, value)` pairs that must all match.
    pub labels: Vec<(String, String)>,
    pub tenant: Option<String>,
    pub gateway: Option<String>,
}

impl DeviceFilter {
    pub fn matches(&self, d: &Device) -> bool {
        self.status.is_none_or(|s| d.status == s)
            && self
                .labels
                .iter()
                .all(|(k, v)| d.labels.get(k) == Some(v.as_str()))
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| d.tenant.as_str() == t)
            && self
                .gateway
                .as_deref()
                .is_none_or(|g| d.gateway.as_ref().is_some_and(|x| x.as_str() == g))
    }
}

/// One page of a listing, in id order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DevicePage {
    pub devices: Vec<Device>,
    /// Whether devices after the last one returned may match.
    pub more: bool,
}

impl DevicePage {
    /// Offers the next device in id order; false once the page is full (and
    /// then `more` is set, because this device matched and did not fit).
    pub fn offer(&mut self, filter: &DeviceFilter, limit: usize, d: Device) -> bool {
        if !filter.matches(&d) {
            return true;
        }
        if self.devices.len() == limit {
            self.more = true;
            return false;
        }
        self.devices.push(d);
        true
    }
}

pub trait DeviceDirectory: RegistryView {
    /// Up to `limit` devices matching `filter` with ids greater than `after`,
    /// in id order.
    fn list(
        &self,
        filter: &DeviceFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DevicePage, Self::Error>;

    /// A device's audit trail, oldest first, at most
    /// [`crate::audit::MAX_AUDIT_PER_DEVICE`] records; kept after revoke
    /// and delete.
    fn audit(&self, id: &DeviceId) -> Result<Vec<AuditRecord>, Self::Error>;

    /// A tenant's clone policy, if one is set.
    fn clone_policy(&self, tenant: &TenantId) -> Result<Option<ClonePolicy>, Self::Error>;

    /// The last revision applied: a listing reflects at least this much.
    fn applied_index(&self) -> Result<u64, Self::Error>;

    /// Every enrollment group, in name order.
    fn enrollment_groups(&self) -> Result<Vec<crate::EnrollmentGroup>, Self::Error>;
}

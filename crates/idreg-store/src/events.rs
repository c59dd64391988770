//! Registry changes as they are applied, for whoever must react at once: the
//! device front closes sessions of revoked devices, watchers stream changes.

use idreg_core::{DeviceId, DeviceStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEvent {
    /// Raft log index of the change.
    pub revision: u64,
    /// When the change was proposed, by the proposer's wall clock (ms since
    /// the Unix epoch): how long a cut-off took is measured from it.
    pub proposed_at_ms: u64,
    pub device: DeviceId,
    /// Status after the change; `None` when the device was deleted.
    pub status: Option<DeviceStatus>,
    /// The device could authenticate before and cannot now (revoked, disabled,
    /// deleted): close its sessions.
    pub cut_off: bool,
    /// The gateways whose spoke lists this change touched: the device's
    /// gateway before and after (a gateway's observers are notified).
    pub gateways: Vec<DeviceId>,
}

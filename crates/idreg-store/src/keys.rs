//! Column families and key layouts.
//!
//! Secondary-index keys join parts with a NUL byte, which valid ids, tenants
//! and labels never contain (idreg-core guarantees it), so a prefix scan over
//! `part\0` is exact.

/// Raft log: big-endian index -> entry.
pub const CF_LOG: &str = "raft_log";
/// Raft metadata: vote, committed, last purged.
pub const CF_RAFT_META: &str = "raft_meta";
/// State-machine metadata: applied log id, membership, current snapshot. Node-local
/// keys (the KEK check) live here too.
pub const CF_SM_META: &str = "sm_meta";
/// Device id -> device.
pub const CF_DEVICES: &str = "devices";
/// PSK identity -> device id.
pub const CF_IDX_PSK: &str = "idx_psk";
/// Key fingerprint (32 bytes) -> device id.
pub const CF_IDX_KEY: &str = "idx_key";
/// `key=value\0id` -> ().
pub const CF_IDX_LABEL: &str = "idx_label";
/// `tenant\0id` -> ().
pub const CF_IDX_TENANT: &str = "idx_tenant";
/// `gateway\0id` -> ().
pub const CF_IDX_GATEWAY: &str = "idx_gateway";
/// The revocation list: `d` + id -> record, `p` + identity -> id, `k` + fingerprint -> id.
pub const CF_REVOKED: &str = "revoked";
/// Registry counters (revocation-list version, device count).
pub const CF_COUNTERS: &str = "counters";
/// Node-local session audit (see `session_log`); not replicated, not in snapshots.
pub const CF_SESSIONS: &str = "sessions";
/// Change history for watchers (see `history`): revision ++ seq -> record.
/// Written with each change; node-local extent, not in snapshots.
pub const CF_HISTORY: &str = "history";

/// Who did what to each device: `id\0` ++ revision (BE u64) ++ seq (BE u32)
/// -> `AuditRecord`. Replicated (written in apply) and in snapshots; kept
/// after a device is revoked or deleted, trimmed per device.
pub const CF_AUDIT: &str = "audit";

/// Cluster-wide records, replicated and in snapshots: the device CA
/// ([`CLUSTER_DEVICE_CA`]) now; enrollment groups and signing keys next.
pub const CF_CLUSTER: &str = "cluster";

/// Firmware, replicated and in snapshots (see [`firmware_key`] and the
/// functions after it): releases `r`, their image chunks `c`, rollouts `o`,
/// device reports `d`, the per-version index `i` and its counts `n`, and
/// update-attempt counts `a`.
pub const CF_FIRMWARE: &str = "firmware";

/// Every column family, in creation order.
pub const ALL_CFS: &[&str] = &[
    CF_LOG,
    CF_RAFT_META,
    CF_SM_META,
    CF_DEVICES,
    CF_IDX_PSK,
    CF_IDX_KEY,
    CF_IDX_LABEL,
    CF_IDX_TENANT,
    CF_IDX_GATEWAY,
    CF_REVOKED,
    CF_COUNTERS,
    CF_SESSIONS,
    CF_HISTORY,
    CF_AUDIT,
    CF_CLUSTER,
    CF_FIRMWARE,
];

/// The column families that make up the registry state: what a snapshot holds.
pub const REGISTRY_CFS: &[&str] = &[
    CF_DEVICES,
    CF_IDX_PSK,
    CF_IDX_KEY,
    CF_IDX_LABEL,
    CF_IDX_TENANT,
    CF_IDX_GATEWAY,
    CF_REVOKED,
    CF_COUNTERS,
    CF_AUDIT,
    // Appended: a snapshot names column families by position here.
    CF_CLUSTER,
    CF_FIRMWARE,
];

pub const META_VOTE: &[u8] = b"vote";
pub const META_COMMITTED: &[u8] = b"committed";
pub const META_LAST_PURGED: &[u8] = b"last_purged";

pub const SM_APPLIED: &[u8] = b"applied";
pub const SM_MEMBERSHIP: &[u8] = b"membership";
pub const SM_SNAPSHOT: &[u8] = b"snapshot";
/// Present while a snapshot install is under way; found at start-up it means
/// the install was cut short and the registry must be rebuilt.
pub const SM_INSTALLING: &[u8] = b"installing";
pub const SM_KEK_CHECK: &[u8] = b"kek_check";
/// Set by `Store::restore`: the registry came from a backup, not from the
/// raft log, so the node must snapshot (and purge the log) before anyone
/// replicates from it.
pub const SM_RESTORED: &[u8] = b"restored";
/// The oldest revision the change history still holds.
pub const SM_HISTORY_FROM: &[u8] = b"history_from";
/// The data directory's on-disk format, a big-endian u32 (raw bytes, not the
/// stored-value codec, so any build can read it); see `db::DATA_FORMAT`.
pub const SM_FORMAT: &[u8] = b"format";

/// In [`CF_CLUSTER`]: the device CA (`idreg_core::DeviceCa`).
pub const CLUSTER_DEVICE_CA: &[u8] = b"device_ca";
/// In [`CF_CLUSTER`]: the revocation-list signing key.
pub const CLUSTER_RL_KEY: &[u8] = b"rl_key";
/// In [`CF_CLUSTER`]: `group/NAME` → an enrollment group.
pub const CLUSTER_GROUP_PREFIX: &[u8] = b"group/";
/// In [`CF_CLUSTER`]: `group_ca/SHA256(CA subject)NAME` → nothing: the
/// groups whose manufacturer CA has that subject.
pub const CLUSTER_GROUP_CA_PREFIX: &[u8] = b"group_ca/";

/// In [`CF_CLUSTER`]: `fw_signer/NAME` → a firmware signer.
pub const CLUSTER_FW_SIGNER_PREFIX: &[u8] = b"fw_signer/";

pub fn fw_signer_key(name: &str) -> Vec<u8> {
    [CLUSTER_FW_SIGNER_PREFIX, name.as_bytes()].concat()
}

/// In [`CF_CLUSTER`]: `tenant_clone/TENANT` → the tenant's clone policy.
pub const CLUSTER_TENANT_CLONE_PREFIX: &[u8] = b"tenant_clone/";

pub fn tenant_clone_key(tenant: &str) -> Vec<u8> {
    [CLUSTER_TENANT_CLONE_PREFIX, tenant.as_bytes()].concat()
}

pub fn group_key(name: &str) -> Vec<u8> {
    [CLUSTER_GROUP_PREFIX, name.as_bytes()].concat()
}

pub fn group_ca_key(subject_hash: &[u8; 32], name: &str) -> Vec<u8> {
    [CLUSTER_GROUP_CA_PREFIX, subject_hash, name.as_bytes()].concat()
}

pub const COUNTER_RL_VERSION: &[u8] = b"rl_version";
pub const COUNTER_DEVICES: &[u8] = b"devices";
/// Devices per status, `[u64; 3]` in `DeviceStatus::ALL` order. Absent in
/// data directories written before it existed; counted once at open.
pub const COUNTER_BY_STATUS: &[u8] = b"devices_by_status";

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn log_index(key: &[u8]) -> u64 {
    u64::from_be_bytes(key.try_into().expect("raft log keys are 8 bytes"))
}

/// `a\0b`.
pub fn joined(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(0);
    k.extend_from_slice(b.as_bytes());
    k
}

/// The prefix under which [`joined`] keys for `a` sort.
pub fn prefix(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(0);
    k
}

pub fn label_prefix(key: &str, value: &str) -> Vec<u8> {
    prefix(&format!("{key}={value}"))
}

pub fn label_key(key: &str, value: &str, id: &str) -> Vec<u8> {
    joined(&format!("{key}={value}"), id)
}

/// A device's audit record at (`revision`, `seq`); see [`CF_AUDIT`].
pub fn audit_key(id: &str, revision: u64, seq: u32) -> Vec<u8> {
    let mut k = prefix(id);
    k.extend_from_slice(&revision.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub fn revoked_device_key(id: &str) -> Vec<u8> {
    [b"d", id.as_bytes()].concat()
}

/// `v` + the list version (big-endian) → the revocation that made it: the
/// order deltas of the signed revocation list are read in.
pub fn revoked_version_key(version: u64) -> Vec<u8> {
    [b"v".as_slice(), &version.to_be_bytes()].concat()
}

pub fn revoked_psk_key(identity: &[u8]) -> Vec<u8> {
    [b"p", identity].concat()
}

pub fn revoked_fingerprint_key(fp: &[u8; 32]) -> Vec<u8> {
    [b"k".as_slice(), fp].concat()
}

/// `kind` + class `\0` version: a release (`r`), its rollout (`o`), the
/// count of devices running it (`n`).
pub fn firmware_key(kind: u8, release: &idreg_core::ReleaseId) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&joined(
        release.class.as_str(),
        &release.version.to_string(),
    ));
    k
}

/// `c` + class `\0` version `\0` upload (BE) index (BE): a chunk of an image.
pub fn firmware_chunk_key(release: &idreg_core::ReleaseId, upload: u64, index: u32) -> Vec<u8> {
    let mut k = firmware_key(b'c', release);
    k.push(0);
    k.extend_from_slice(&upload.to_be_bytes());
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// `d` + device id: what the device last reported.
pub fn firmware_report_key(device: &str) -> Vec<u8> {
    [b"d", device.as_bytes()].concat()
}

/// `kind` + class (empty: none) `\0` version, and for the index (`i`) `\0`
/// device: the report index and its counts (`n`); for attempt counts (`a`)
/// the state's byte after the version's `\0`.
pub fn firmware_version_key(kind: u8, class: &str, version: &str) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&joined(class, version));
    k
}

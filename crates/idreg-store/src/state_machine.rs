//! The registry state machine on RocksDB (openraft `RaftStateMachine`).
//!
//! Each `apply` call runs `idreg_core::apply` for every proposal, through an
//! overlay so later commands see earlier ones, and writes the whole call's
//! changes, index updates, counters and applied log id in one atomic
//! `WriteBatch`. The write is not fsynced: the raft log is, and the WAL fsync
//! of the next append, or of a snapshot, makes it durable; after a crash the
//! lost tail is re-applied from the log.

use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use idreg_core::{apply, AuditRecord, Change, Effect, Overlay, Rejection};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, Snapshot,
    StorageIOError,
};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::{broadcast, watch};

use crate::codec::encode;
use crate::db::{decode_as, StoreError};
use crate::events::RegistryEvent;
use crate::firmware_writes::{write_firmware, FirmwareCounts};
use crate::history::{self, history_key, HistoryRecord};
use crate::keys::*;
use crate::reader::RegistryReader;
use crate::snapshot::{self, SnapshotKey};
use crate::types::{
    BatchOutcome, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    snapshot_key: SnapshotKey,
    snapshot_dir: PathBuf,
    notify: Notify,
}

/// Who hears of applied changes, and how much history to keep.
#[derive(Clone)]
pub(crate) struct Notify {
    pub events: broadcast::Sender<RegistryEvent>,
    pub applied: Arc<watch::Sender<u64>>,
    pub installs: Arc<watch::Sender<u64>>,
    pub history_keep: u64,
    pub metrics: Arc<crate::store_metrics::StoreMetrics>,
    pub waiting: crate::waiting_callers::WaitingCallers,
}

/// History is trimmed when the applied index crosses a multiple of this.
const TRIM_EVERY: u64 = 1024;

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

/// The snapshot this node serves: its meta and the file holding it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct CurrentSnapshot {
    meta: SnapshotMeta,
    file: String,
}

impl StateMachine {
    pub(crate) fn new(
        db: Arc<DB>,
        snapshot_key: SnapshotKey,
        snapshot_dir: PathBuf,
        notify: Notify,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(&snapshot_dir).map_err(|source| StoreError::Io {
            path: snapshot_dir.clone(),
            source,
        })?;
        Ok(Self {
            db,
            snapshot_key,
            snapshot_dir,
            notify,
        })
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        match self.db.get_cf(&cf, key)? {
            Some(bytes) => Ok(Some(decode_as("state-machine metadata", &bytes)?)),
            None => Ok(None),
        }
    }

    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        RegistryReader::new(self.db.clone()).counter(key)
    }

    /// Adds one change's device and index writes to `batch`.
    fn write_change(&self, batch: &mut WriteBatch, change: &Change) {
        let cf = |n: &str| self.db.cf_handle(n).expect("cf exists");
        let id = change.id.as_str();
        if let Some(before) = &change.before {
            for i in before.psk_identities() {
                batch.delete_cf(&cf(CF_IDX_PSK), i);
            }
            for f in before.fingerprints() {
                batch.delete_cf(&cf(CF_IDX_KEY), f.0);
            }
            for (k, v) in before.labels.iter() {
                batch.delete_cf(&cf(CF_IDX_LABEL), label_key(k, v, id));
            }
            batch.delete_cf(&cf(CF_IDX_TENANT), joined(before.tenant.as_str(), id));
            if let Some(gw) = &before.gateway {
                batch.delete_cf(&cf(CF_IDX_GATEWAY), joined(gw.as_str(), id));
            }
        }
        match &change.after {
            Some(after) => {
                for i in after.psk_identities() {
                    batch.put_cf(&cf(CF_IDX_PSK), i, id);
                }
                for f in after.fingerprints() {
                    batch.put_cf(&cf(CF_IDX_KEY), f.0, id);
                }
                for (k, v) in after.labels.iter() {
                    batch.put_cf(&cf(CF_IDX_LABEL), label_key(k, v, id), b"");
                }
                batch.put_cf(&cf(CF_IDX_TENANT), joined(after.tenant.as_str(), id), b"");
                if let Some(gw) = &after.gateway {
                    batch.put_cf(&cf(CF_IDX_GATEWAY), joined(gw.as_str(), id), b"");
                }
                batch.put_cf(&cf(CF_DEVICES), id, encode(after));
            }
            None => batch.delete_cf(&cf(CF_DEVICES), id),
        }
        if let Some(r) = &change.revocation {
            let revoked = cf(CF_REVOKED);
            batch.put_cf(&revoked, revoked_device_key(id), encode(r));
            for i in &r.psk_identities {
                batch.put_cf(&revoked, revoked_psk_key(i), id);
            }
            for f in &r.fingerprints {
                batch.put_cf(&revoked, revoked_fingerprint_key(&f.0), id);
            }
        }
    }

    /// Adds an enrollment group's record and its CA index entry to `batch`
    /// (`after` `None`: deletes them), and makes it visible to later
    /// commands of the same batch.
    /// Puts a cluster-wide record (`CF_CLUSTER`), or deletes it (`None`).
    fn write_cluster<T: serde::Serialize>(
        &self,
        batch: &mut WriteBatch,
        key: &[u8],
        value: Option<&T>,
    ) {
        let cluster = self.db.cf_handle(CF_CLUSTER).expect("cf exists");
        match value {
            Some(v) => batch.put_cf(&cluster, key, encode(v)),
            None => batch.delete_cf(&cluster, key),
        }
    }

    fn write_group(
        &self,
        batch: &mut WriteBatch,
        overlay: &mut Overlay<'_, RegistryReader>,
        name: idreg_core::GroupName,
        after: Option<idreg_core::EnrollmentGroup>,
    ) -> Result<(), StoreError> {
        use idreg_core::RegistryView;
        let cluster = self.db.cf_handle(CF_CLUSTER).expect("cf exists");
        if let Some(hash) = overlay
            .enrollment_group(&name)?
            .and_then(|g| g.ca_subject_hash())
        {
            batch.delete_cf(&cluster, group_ca_key(&hash, name.as_str()));
        }
        self.write_cluster(batch, &group_key(name.as_str()), after.as_ref());
        if let Some(hash) = after.as_ref().and_then(|g| g.ca_subject_hash()) {
            batch.put_cf(&cluster, group_ca_key(&hash, name.as_str()), b"");
        }
        overlay.record_effect(&Effect::Group { name, after });
        Ok(())
    }

    /// Adds a device's audit record to `batch` and drops its oldest ones
    /// beyond the bound (counted over what is already written: one batch may
    /// overshoot by its own records, the next write trims them).
    fn write_audit(
        &self,
        batch: &mut WriteBatch,
        id: &idreg_core::DeviceId,
        record: &AuditRecord,
        seq: u32,
    ) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_AUDIT).expect("cf exists");
        batch.put_cf(
            &cf,
            audit_key(id.as_str(), record.revision, seq),
            encode(record),
        );
        if record.action == idreg_core::AuditAction::Create {
            // The usual first record (bulk imports): nothing to trim yet, no scan.
            return Ok(());
        }
        let pfx = prefix(id.as_str());
        let mut keys = Vec::new();
        for item in self.db.prefix_iterator_cf(&cf, &pfx) {
            let (k, _) = item?;
            if !k.starts_with(&pfx) {
                break;
            }
            keys.push(k);
        }
        // This record is one more than those found.
        let excess = (keys.len() + 1).saturating_sub(idreg_core::audit::MAX_AUDIT_PER_DEVICE);
        for k in keys.iter().take(excess) {
            batch.delete_cf(&cf, k);
        }
        Ok(())
    }

    fn apply_entries(&self, entries: Vec<Entry>) -> Result<Vec<BatchOutcome>, StoreError> {
        let reader = RegistryReader::new(self.db.clone());
        let mut overlay = Overlay::new(&reader);
        let mut batch = WriteBatch::default();
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut events = Vec::new();
        let mut by_status = reader.devices_by_status()?.map(|n| n as i64);
        let mut rl_version = self.counter(COUNTER_RL_VERSION)?;
        let mut last_applied: Option<LogId> = None;
        let mut membership: Option<StoredMembership> = None;
        let history = self.db.cf_handle(CF_HISTORY).expect("cf exists");
        let mut fw_counts = FirmwareCounts::default();
        // Callers waiting here for an entry's verdicts, by the entry's place
        // in `outcomes`.
        let mut answers = Vec::new();

        for entry in entries {
            let revision = entry.log_id.index;
            last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => outcomes.push(BatchOutcome::default()),
                EntryPayload::Membership(m) => {
                    tracing::info!(
                        index = entry.log_id.index,
                        voters = ?m.voter_ids().collect::<Vec<_>>(),
                        learners = ?m.learner_ids().collect::<Vec<_>>(),
                        "cluster membership changed"
                    );
                    membership = Some(StoredMembership::new(Some(entry.log_id), m));
                    outcomes.push(BatchOutcome::default());
                }
                EntryPayload::Normal(proposals) => {
                    if let Some(answer) = self.notify.waiting.take(&proposals) {
                        answers.push((outcomes.len(), answer));
                    }
                    let mut results = Vec::with_capacity(proposals.0.len());
                    let mut seq = 0u32;
                    for proposal in proposals.0.iter() {
                        let verdict = match apply(&overlay, proposal, revision) {
                            Ok(v) => v,
                            // A registry entry that does not decode fails this
                            // proposal on every node alike; it must not stop
                            // the state machine at this index forever.
                            Err(StoreError::Decode { what, source }) => {
                                tracing::error!(
                                    revision,
                                    "unreadable {what} while applying: {source}"
                                );
                                Err(Rejection::Malformed(format!("unreadable stored {what}")))
                            }
                            Err(e) => return Err(e),
                        };
                        let change = match verdict {
                            Ok(Effect::DeviceCa(ca)) => {
                                self.write_cluster(&mut batch, CLUSTER_DEVICE_CA, Some(&ca));
                                tracing::info!(
                                    revision,
                                    origin = ca.origin.as_str(),
                                    sha256 = %hex::encode(ca.certificate_sha256()),
                                    "device CA installed"
                                );
                                overlay.record_effect(&Effect::DeviceCa(ca));
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(Effect::RlKey(key)) => {
                                self.write_cluster(&mut batch, CLUSTER_RL_KEY, Some(&key));
                                tracing::info!(
                                    revision,
                                    fingerprint = %key.fingerprint(),
                                    "revocation-list signing key installed"
                                );
                                overlay.record_effect(&Effect::RlKey(key));
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(Effect::FirmwareSigner { name, after }) => {
                                let key = crate::keys::fw_signer_key(name.as_str());
                                self.write_cluster(&mut batch, &key, after.as_ref());
                                match &after {
                                    Some(s) => {
                                        tracing::info!(revision, signer = %name, fingerprint = %s.fingerprint(), "firmware signer added")
                                    }
                                    None => {
                                        tracing::info!(revision, signer = %name, "firmware signer removed")
                                    }
                                }
                                overlay.record_effect(&Effect::FirmwareSigner { name, after });
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(
                                effect @ (Effect::FirmwareRelease { .. }
                                | Effect::Rollout { .. }
                                | Effect::FirmwareReport { .. }),
                            ) => {
                                write_firmware(&self.db, &mut batch, &mut fw_counts, &effect);
                                overlay.record_effect(&effect);
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(Effect::TenantClonePolicy { tenant, policy }) => {
                                let key = crate::keys::tenant_clone_key(tenant.as_str());
                                self.write_cluster(&mut batch, &key, policy.as_ref());
                                tracing::info!(
                                    revision,
                                    %tenant,
                                    on_clone = policy.map(|p| p.as_str()).unwrap_or("(node default)"),
                                    "tenant clone policy set"
                                );
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(Effect::Group { name, after }) => {
                                self.write_group(&mut batch, &mut overlay, name, after)?;
                                results.push(Ok(None));
                                continue;
                            }
                            Ok(Effect::Enrolled { change, group }) => {
                                if let Some(g) = group {
                                    self.write_group(
                                        &mut batch,
                                        &mut overlay,
                                        g.name.clone(),
                                        Some(g),
                                    )?;
                                }
                                change
                            }
                            Ok(Effect::Device(change)) => change,
                            Err(rejection) => {
                                results.push(Err(rejection));
                                continue;
                            }
                        };
                        overlay.record(&change);
                        self.write_change(&mut batch, &change);
                        if change.after.is_none() {
                            // A deleted device's firmware report goes with it.
                            use idreg_core::RegistryView;
                            if let Some(report) = overlay.firmware_report(&change.id)? {
                                let gone = Effect::FirmwareReport {
                                    device: change.id.clone(),
                                    before: Some(report),
                                    after: None,
                                };
                                write_firmware(&self.db, &mut batch, &mut fw_counts, &gone);
                                overlay.record_effect(&gone);
                            }
                        }
                        batch.put_cf(
                            &history,
                            history_key(revision, seq),
                            encode(&HistoryRecord::of(&change)),
                        );
                        self.write_audit(
                            &mut batch,
                            &change.id,
                            &AuditRecord::of(proposal, revision),
                            seq,
                        )?;
                        seq += 1;
                        if let Some(d) = &change.before {
                            by_status[d.status.index()] -= 1;
                        }
                        if let Some(d) = &change.after {
                            by_status[d.status.index()] += 1;
                        }
                        if let Some(r) = &change.revocation {
                            rl_version += 1;
                            let revoked = self.db.cf_handle(CF_REVOKED).expect("cf exists");
                            batch.put_cf(&revoked, revoked_version_key(rl_version), encode(r));
                        }
                        let mut gateways: Vec<idreg_core::DeviceId> = change
                            .before
                            .iter()
                            .chain(change.after.iter())
                            .filter_map(|d| d.gateway.clone())
                            .collect();
                        gateways.dedup();
                        if change.before == change.after {
                            gateways.clear();
                        }
                        events.push(RegistryEvent {
                            gateways,
                            revision,
                            proposed_at_ms: proposal.at_ms,
                            device: change.id.clone(),
                            status: change.after.as_ref().map(|d| d.status),
                            cut_off: change.cuts_off_device(),
                        });
                        results.push(Ok(change.after));
                    }
                    outcomes.push(BatchOutcome(results));
                }
            }
        }

        fw_counts.write(&self.db, &mut batch)?;
        let counters = self.db.cf_handle(CF_COUNTERS).expect("cf exists");
        let by_status = by_status.map(|n| n.max(0) as u64);
        // The device count is the sum, kept under its own key for readers
        // and data directories that predate the per-status counts.
        let devices: u64 = by_status.iter().sum();
        batch.put_cf(&counters, COUNTER_DEVICES, encode(&devices));
        batch.put_cf(&counters, COUNTER_RL_VERSION, encode(&rl_version));
        batch.put_cf(&counters, COUNTER_BY_STATUS, encode(&by_status));
        let meta = self.db.cf_handle(CF_SM_META).expect("cf exists");
        if let Some(applied) = last_applied {
            batch.put_cf(&meta, SM_APPLIED, encode(&applied));
            let before = *self.notify.applied.borrow();
            let keep = self.notify.history_keep;
            if applied.index / TRIM_EVERY != before / TRIM_EVERY && applied.index > keep {
                history::trim(&self.db, &mut batch, applied.index - keep + 1);
            }
        }
        if let Some(m) = membership {
            batch.put_cf(&meta, SM_MEMBERSHIP, encode(&m));
        }
        self.db.write(batch)?;
        if let Some(applied) = last_applied {
            self.notify.applied.send_replace(applied.index);
        }
        for e in events {
            // No receivers is fine: nobody is listening yet.
            let _ = self.notify.events.send(e);
        }
        // Written, and its events out (a revocation reaches this node's
        // sessions first): the callers may hear.
        for (i, answer) in answers {
            answer(std::mem::take(&mut outcomes[i]));
        }
        Ok(outcomes)
    }

    fn current_snapshot(&self) -> Result<Option<CurrentSnapshot>, StoreError> {
        self.meta(SM_SNAPSHOT)
    }

    /// The file of the snapshot this node serves, if any.
    pub(crate) fn current_snapshot_path(&self) -> Result<Option<PathBuf>, StoreError> {
        Ok(self
            .current_snapshot()?
            .map(|c| self.snapshot_dir.join(c.file)))
    }

    fn build(&self) -> Result<CurrentSnapshot, StoreError> {
        // Make every applied write durable before the log behind it may be purged.
        self.db.flush_wal(true)?;
        let view = self.db.snapshot();
        let meta_cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        let applied: Option<LogId> = match view.get_cf(&meta_cf, SM_APPLIED)? {
            Some(b) => Some(decode_as("applied log id", &b)?),
            None => None,
        };
        let membership: StoredMembership = match view.get_cf(&meta_cf, SM_MEMBERSHIP)? {
            Some(b) => decode_as("membership", &b)?,
            None => StoredMembership::default(),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let (term, index) = applied
            .map(|l| (l.leader_id.term, l.index))
            .unwrap_or((0, 0));
        let snapshot_id = format!("{term}-{index}-{stamp}");
        let file = snapshot_file_name(&snapshot_id);
        let path = self.snapshot_dir.join(&file);
        snapshot::write(&self.db, &view, &path, &self.snapshot_key)?;
        let current = CurrentSnapshot {
            meta: SnapshotMeta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id,
            },
            file,
        };
        self.set_current_snapshot(&current)?;
        Ok(current)
    }

    /// Records `current` as the served snapshot and deletes older files.
    fn set_current_snapshot(&self, current: &CurrentSnapshot) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_SM_META).expect("cf exists");
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(&cf, SM_SNAPSHOT, encode(current), &wo)?;
        if let Ok(dir) = std::fs::read_dir(&self.snapshot_dir) {
            for f in dir.flatten() {
                if f.file_name().to_string_lossy() != current.file {
                    let _ = std::fs::remove_file(f.path());
                }
            }
        }
        Ok(())
    }

    fn install(&self, meta: &SnapshotMeta, mut data: std::fs::File) -> Result<(), StoreError> {
        let io = |path: &PathBuf| {
            let path = path.clone();
            move |source| StoreError::Io { path, source }
        };
        let file = snapshot_file_name(&meta.snapshot_id);
        let path = self.snapshot_dir.join(&file);
        let tmp = self.snapshot_dir.join("incoming.tmp");
        data.seek(SeekFrom::Start(0)).map_err(io(&tmp))?;
        {
            let mut out = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            std::io::copy(&mut data, &mut out).map_err(io(&tmp))?;
            out.sync_all().map_err(io(&tmp))?;
        }
        snapshot::verify(&tmp, &self.snapshot_key)?;

        let sm_meta = self.db.cf_handle(CF_SM_META).expect("cf exists");
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(&sm_meta, SM_INSTALLING, b"1", &wo)?;
        snapshot::load(&self.db, &tmp, &self.snapshot_key)?;
        let mut batch = WriteBatch::default();
        match &meta.last_log_id {
            Some(applied) => batch.put_cf(&sm_meta, SM_APPLIED, encode(applied)),
            None => batch.delete_cf(&sm_meta, SM_APPLIED),
        }
        batch.put_cf(&sm_meta, SM_MEMBERSHIP, encode(&meta.last_membership));
        batch.delete_cf(&sm_meta, SM_INSTALLING);
        // History before the snapshot is not known here: watchers asking for
        // it are told to list again.
        let index = meta.last_log_id.map(|l| l.index).unwrap_or(0);
        history::trim(&self.db, &mut batch, u64::MAX);
        batch.put_cf(&sm_meta, SM_HISTORY_FROM, encode(&(index + 1)));
        self.db.write_opt(batch, &wo)?;
        // A snapshot from a node of an older version has no status counts.
        fill_status_counts(&self.db)?;
        self.notify.applied.send_replace(index);
        self.notify.installs.send_modify(|n| *n += 1);
        snapshot::rename_durably(&tmp, &path)?;
        self.set_current_snapshot(&CurrentSnapshot {
            meta: meta.clone(),
            file,
        })
    }
}

/// Counts devices per status once, for a registry written before the
/// counts were kept (an older data directory, backup or snapshot); from
/// then on apply keeps them.
pub(crate) fn fill_status_counts(db: &Arc<DB>) -> Result<(), StoreError> {
    let counters = db.cf_handle(CF_COUNTERS).expect("cf exists");
    if db.get_cf(&counters, COUNTER_BY_STATUS)?.is_some() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let counts = RegistryReader::new(db.clone()).count_devices_by_status()?;
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.put_cf_opt(&counters, COUNTER_BY_STATUS, encode(&counts), &wo)?;
    if counts.iter().sum::<u64>() > 0 {
        tracing::info!(
            active = counts[0],
            disabled = counts[1],
            revoked = counts[2],
            took_ms = started.elapsed().as_millis() as u64,
            "counted devices by status (once, for data written before these counts were kept)"
        );
    }
    Ok(())
}

/// The file a snapshot is kept in. The id comes from the leader: one that
/// is not a plain name (a path, `..`, odd bytes) is replaced by its hash, so
/// it can never name a file outside the snapshot directory.
fn snapshot_file_name(snapshot_id: &str) -> String {
    if is_plain_snapshot_id(snapshot_id) {
        format!("snap-{snapshot_id}.bin")
    } else {
        use sha2::Digest;
        format!(
            "snap-{}.bin",
            hex::encode(&sha2::Sha256::digest(snapshot_id.as_bytes())[..16])
        )
    }
}

/// Whether a snapshot id is one idreg makes: `term-index-stamp`, short, only
/// ASCII digits, letters and `-`.
pub fn is_plain_snapshot_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// At start-up: if a snapshot install was cut short, the registry holds a mix of
/// old and new state. Clear it and forget what was applied, so openraft fetches
/// the snapshot again (or replays the log) into a clean registry.
pub(crate) fn recover_interrupted_install(db: &DB) -> Result<(), StoreError> {
    let meta = db.cf_handle(CF_SM_META).expect("cf exists");
    if db.get_cf(&meta, SM_INSTALLING)?.is_none() {
        return Ok(());
    }
    tracing::warn!("a snapshot install was interrupted; clearing the registry to rebuild it");
    for name in REGISTRY_CFS {
        snapshot::clear_cf(db, name)?;
    }
    let mut batch = WriteBatch::default();
    batch.delete_cf(&meta, SM_APPLIED);
    batch.delete_cf(&meta, SM_MEMBERSHIP);
    batch.delete_cf(&meta, SM_SNAPSHOT);
    batch.delete_cf(&meta, SM_INSTALLING);
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo)?;
    Ok(())
}

/// At most this many proposals are applied on the calling task: ~1.3 ms
/// of creates (10 µs each, BENCHMARKS.md's micro-benchmarks), about one
/// WAL fsync on the disks measured, which a follower's worker already
/// waits through. 100 clients' group commits (~44 proposals) stay below
/// it; at 16 they went to the pool and cost ~10 % more CPU per write.
const INLINE_APPLY_PROPOSALS: usize = 128;

/// Whether `entries` are few enough to apply on openraft's state-machine
/// task rather than on the blocking pool. The hop to a blocking thread and
/// back costs two thread wake-ups: at low load most of a write's apply
/// (BENCHMARKS.md, "Where one client's replicated write goes"), and under
/// 100 clients ~10 % of the nodes' CPU per write ("Where a write's CPU goes
/// under load"). Bigger batches (bulk imports, a thousand clients, a
/// catching-up follower) still go to the pool, so a long apply does not
/// hold a runtime worker.
fn applies_inline(entries: &[Entry]) -> bool {
    let proposals: usize = entries
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Normal(batch) => batch.0.len().max(1),
            EntryPayload::Blank | EntryPayload::Membership(_) => 1,
        })
        .sum();
    proposals <= INLINE_APPLY_PROPOSALS
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .expect("storage task panicked")
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let sm = self.clone();
        let current = blocking(move || sm.notify.metrics.snapshot_build.time_ok(|| sm.build()))
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let file = tokio::fs::File::open(self.snapshot_dir.join(&current.file))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Snapshot {
            meta: current.meta,
            snapshot: Box::new(file),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let read = |e| sm_err(ErrorVerb::Read, e);
        let applied = self.meta::<LogId>(SM_APPLIED).map_err(read)?;
        let membership = self
            .meta::<StoredMembership>(SM_MEMBERSHIP)
            .map_err(read)?
            .unwrap_or_default();
        Ok((applied, membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchOutcome>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        if applies_inline(&entries) {
            return self
                .apply_entries(entries)
                .map_err(|e| sm_err(ErrorVerb::Write, e));
        }
        let sm = self.clone();
        blocking(move || sm.apply_entries(entries))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let path = self
            .snapshot_dir
            .join(format!("receiving-{}.tmp", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(|e| snap_err(ErrorVerb::Write, e))?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_std().await;
        let sm = self.clone();
        let meta_owned = meta.clone();
        blocking(move || {
            let timer = &sm.notify.metrics.snapshot_install;
            timer.time_ok(|| sm.install(&meta_owned, data))
        })
        .await
        .map_err(|e| snap_err(ErrorVerb::Write, e))
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(current) = self
            .current_snapshot()
            .map_err(|e| snap_err(ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.snapshot_dir.join(&current.file))
            .await
            .map_err(|e| snap_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: current.meta,
            snapshot: Box::new(file),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{applies_inline, INLINE_APPLY_PROPOSALS};
    use crate::types::{Entry, LogId};
    use idreg_core::{Author, Command, Proposal, ProposalBatch, Role};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64, proposals: usize) -> Entry {
        let batch = ProposalBatch::from(
            (0..proposals)
                .map(|i| Proposal {
                    at_ms: 0,
                    by: Author::new("admin", Role::Admin, 1),
                    command: Command::Delete {
                        id: idreg_core::DeviceId::parse("id", &format!("dev-{i}")).expect("id"),
                    },
                })
                .collect::<Vec<_>>(),
        );
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(batch),
        }
    }

    #[test]
    fn few_proposals_apply_inline_and_many_on_the_pool() {
        assert!(applies_inline(&[entry(1, 1)]));
        let half = INLINE_APPLY_PROPOSALS / 2;
        assert!(applies_inline(&[entry(1, half), entry(2, half)]));
        assert!(!applies_inline(&[entry(1, INLINE_APPLY_PROPOSALS + 1)]));
        assert!(
            !applies_inline(&[entry(1, half + 1), entry(2, half)]),
            "counted over the call"
        );
        let blanks: Vec<Entry> = (1..=INLINE_APPLY_PROPOSALS as u64 + 1)
            .map(|i| Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                payload: EntryPayload::Blank,
            })
            .collect();
        assert!(!applies_inline(&blanks), "each entry counts");
    }
}

//! What `/metrics` shows of a node, read when Prometheus scrapes: raft's
//! state, the registry's counters, the store's size per column family, the
//! device front's counters and the process. Nothing here runs on a request
//! path; every label set is bounded (no device ids, no addresses).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use idreg_coap::StatsSnapshot;
use idreg_core::{DeviceStatus, HistogramSnapshot};
use idreg_dtls::cipher_suite::CipherSuite;
use idreg_raft::RegistryNode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

pub type FrontStats = Arc<dyn Fn() -> StatsSnapshot + Send + Sync>;

pub struct NodeMetrics {
    node: RegistryNode,
    front: Option<FrontStats>,
    leader_changes: Arc<AtomicU64>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

/// One metric with a single label, a value per label value.
fn labelled<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    (name, help, label): (&str, &str, &str),
    values: impl IntoIterator<Item = (&'static str, M)>,
) -> std::fmt::Result {
    let values: Vec<(&'static str, M)> = values.into_iter().collect();
    let Some((_, first)) = values.first() else {
        return Ok(());
    };
    let mut family = enc.encode_descriptor(name, help, None, first.metric_type())?;
    for (value, metric) in &values {
        let labels = [(label, *value)];
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram of seconds read from one of the node's atomic histograms.
fn histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> std::fmt::Result {
    let mut buckets: Vec<(f64, u64)> = h.bounds.iter().copied().zip(h.counts.clone()).collect();
    buckets.push((f64::MAX, h.counts[h.counts.len() - 1]));
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    family.encode_histogram::<Vec<(String, String)>>(h.sum_seconds, h.count(), &buckets, None)
}

impl NodeMetrics {
    /// The collector, and a task that counts leader changes as raft
    /// reports them.
    pub fn start(node: RegistryNode, front: Option<FrontStats>) -> Self {
        let leader_changes = Arc::new(AtomicU64::new(0));
        let mut metrics = node.raft().metrics();
        let changes = leader_changes.clone();
        tokio::spawn(async move {
            let mut leader = metrics.borrow().current_leader;
            while metrics.changed().await.is_ok() {
                let now = metrics.borrow().current_leader;
                if now != leader {
                    if now.is_some() {
                        changes.fetch_add(1, Ordering::Relaxed);
                    }
                    leader = now;
                }
            }
        });
        Self {
            node,
            front,
            leader_changes,
        }
    }

    fn raft(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let v = self.node.view();
        let is_leader = v.leader_id == Some(v.node_id);
        gauge(
            enc,
            "idreg_raft_is_leader",
            "1 on the node that leads",
            is_leader as i64,
        )?;
        gauge(
            enc,
            "idreg_raft_has_leader",
            "1 while this node knows a leader",
            v.leader_id.is_some() as i64,
        )?;
        gauge(
            enc,
            "idreg_node_ready",
            "1 while the node passes its readiness check (knows a leader, is a member, has applied its log)",
            v.ready() as i64,
        )?;
        gauge(enc, "idreg_raft_term", "Current raft term", v.term as i64)?;
        counter(
            enc,
            "idreg_raft_leader_changes",
            "Times this node has seen a new leader since it started",
            self.leader_changes.load(Ordering::Relaxed),
        )?;
        gauge(
            enc,
            "idreg_raft_last_log_index",
            "Last raft log index",
            v.last_log_index as i64,
        )?;
        gauge(
            enc,
            "idreg_raft_applied_index",
            "Last applied log index",
            v.applied_index as i64,
        )?;
        gauge(
            enc,
            "idreg_raft_snapshot_index",
            "Log index of the current snapshot",
            v.snapshot_index as i64,
        )?;
        gauge(
            enc,
            "idreg_raft_log_entries_since_snapshot",
            "Applied entries not yet in a snapshot",
            v.applied_index.saturating_sub(v.snapshot_index) as i64,
        )?;
        gauge(
            enc,
            "idreg_raft_members",
            "Members of the cluster",
            v.members.len() as i64,
        )?;
        counter(
            enc,
            "idreg_raft_snapshots_installed",
            "Snapshots installed from a leader since start",
            v.snapshots_installed,
        )?;
        if is_leader {
            // The leader's view of each follower: how far behind it is.
            let lag = v
                .members
                .iter()
                .filter(|m| m.id != v.node_id)
                .map(|m| m.lag)
                .max();
            gauge(
                enc,
                "idreg_raft_max_follower_lag_entries",
                "On the leader: the most log entries a member is behind",
                lag.unwrap_or(0) as i64,
            )?;
        }
        Ok(())
    }

    fn registry(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let reader = self.node.reader();
        if let Ok(n) = reader.device_count() {
            gauge(
                enc,
                "idreg_registry_devices",
                "Registered devices (a counter, not a scan)",
                n as i64,
            )?;
        }
        if let Ok(counts) = reader.devices_by_status() {
            labelled(
                enc,
                (
                    "idreg_registry_devices_by_status",
                    "Registered devices by status (kept counts, not a scan)",
                    "status",
                ),
                DeviceStatus::ALL
                    .iter()
                    .zip(counts)
                    .map(|(st, n)| (st.as_str(), ConstGauge::new(n as i64))),
            )?;
        }
        if let Ok(n) = reader.revocation_list_version() {
            counter(
                enc,
                "idreg_registry_revocations",
                "Devices revoked, ever",
                n,
            )?;
        }
        Ok(())
    }

    fn store(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let store = self.node.store();
        labelled(
            enc,
            (
                "idreg_store_column_family_bytes",
                "RocksDB bytes per column family (SST files and memtables)",
                "cf",
            ),
            store
                .column_family_bytes()
                .into_iter()
                .map(|(cf, b)| (cf, ConstGauge::new(b as i64))),
        )?;
        let m = store.measures();
        histogram(
            enc,
            "idreg_store_wal_fsync_seconds",
            "Raft log appends made durable: one WAL fsync (shared by concurrent appends)",
            &m.wal_fsync,
        )?;
        histogram(
            enc,
            "idreg_raft_snapshot_build_seconds",
            "Snapshots built by this node",
            &m.snapshot_build,
        )?;
        histogram(
            enc,
            "idreg_raft_snapshot_install_seconds",
            "Snapshots received from a leader and installed (checked, loaded)",
            &m.snapshot_install,
        )?;
        labelled(
            enc,
            (
                "idreg_store_block_cache",
                "RocksDB block cache lookups by result",
                "result",
            ),
            [
                ("hit", ConstCounter::new(m.rocks.block_cache_hits)),
                ("miss", ConstCounter::new(m.rocks.block_cache_misses)),
            ],
        )?;
        let stall = ConstCounter::new(m.rocks.stall_micros as f64 / 1e6);
        stall.encode(enc.encode_descriptor(
            "idreg_store_write_stall_seconds",
            "Time RocksDB held writers back (compaction behind)",
            None,
            stall.metric_type(),
        )?)
    }

    fn front(&self, enc: &mut DescriptorEncoder, s: &StatsSnapshot) -> std::fmt::Result {
        labelled(
            enc,
            (
                "idreg_front_handshakes",
                "DTLS handshakes by result",
                "result",
            ),
            [
                ("ok", ConstCounter::new(s.handshakes_ok)),
                ("failed", ConstCounter::new(s.handshakes_failed)),
            ],
        )?;
        labelled(
            enc,
            (
                "idreg_front_handshake_failures",
                "Failed DTLS handshakes by reason (timeouts included)",
                "reason",
            ),
            idreg_dtls::server_handshake::FailReason::LABELS
                .iter()
                .zip(s.failed_by_reason)
                .map(|(label, n)| (*label, ConstCounter::new(n))),
        )?;
        labelled(
            enc,
            ("idreg_front_sessions_ended", "Device sessions ended, by why (revoked: cut off by a revocation, disable or delete)", "end"),
            idreg_core::SessionEnd::ALL
                .iter()
                .zip(s.sessions_ended)
                .map(|(end, n)| (end.as_str(), ConstCounter::new(n))),
        )?;
        histogram(
            enc,
            "idreg_front_handshake_seconds",
            "Completed DTLS handshakes: ClientHello (with cookie) to session",
            &s.handshake_times,
        )?;
        labelled(
            enc,
            (
                "idreg_front_handshakes_by_suite",
                "Completed DTLS handshakes by cipher suite",
                "suite",
            ),
            CipherSuite::PREFERENCE
                .iter()
                .zip(s.handshakes_by_suite)
                .map(|(suite, n)| (suite.name(), ConstCounter::new(n))),
        )?;
        histogram(
            enc,
            "idreg_front_revocation_cutoff_seconds",
            "From a revocation, disable or delete being proposed to a session of the device closed here (raft commit and apply included; across nodes, clock skew too)",
            &s.revocation_cutoffs,
        )?;
        counter(
            enc,
            "idreg_front_handshakes_over_budget",
            "Handshakes not started: the node's handshake budget was spent",
            s.handshakes_over_budget,
        )?;
        gauge(
            enc,
            "idreg_front_sessions_live",
            "Established device sessions",
            s.sessions_live as i64,
        )?;
        gauge(
            enc,
            "idreg_front_handshaking",
            "Handshakes under way",
            s.handshaking as i64,
        )?;
        gauge(
            enc,
            "idreg_front_peers",
            "Entries in the peer table (sessions and handshakes)",
            (s.sessions_live + s.handshaking) as i64,
        )?;
        counter(
            enc,
            "idreg_front_cookies_sent",
            "HelloVerifyRequests sent",
            s.cookies_sent,
        )?;
        labelled(
            enc,
            (
                "idreg_front_datagrams_refused",
                "Datagrams refused, by reason",
                "reason",
            ),
            [
                ("dropped", ConstCounter::new(s.datagrams_dropped)),
                ("plain_coap", ConstCounter::new(s.plain_coap_refused)),
            ],
        )?;
        counter(
            enc,
            "idreg_front_peers_evicted",
            "Peers evicted from a full table",
            s.peers_evicted,
        )?;
        counter(
            enc,
            "idreg_front_address_changes",
            "Sessions that moved address",
            s.address_changes,
        )?;
        counter(
            enc,
            "idreg_front_sessions_restored",
            "Sessions restored at start",
            s.sessions_restored,
        )
    }

    fn process(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        if let Ok(p) = idreg::proc_sample::proc_sample(std::process::id()) {
            let cpu = ConstCounter::new(p.cpu.as_secs_f64());
            cpu.encode(enc.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time",
                None,
                cpu.metric_type(),
            )?)?;
            gauge(
                enc,
                "process_resident_memory_bytes",
                "Resident memory",
                (p.rss_kb * 1024) as i64,
            )?;
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            gauge(
                enc,
                "process_open_fds",
                "Open file descriptors",
                fds.count() as i64,
            )?;
        }
        Ok(())
    }
}

impl Collector for NodeMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        self.raft(&mut enc)?;
        self.registry(&mut enc)?;
        self.store(&mut enc)?;
        if let Some(front) = &self.front {
            self.front(&mut enc, &front())?;
        }
        self.process(&mut enc)
    }
}

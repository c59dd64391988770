//! A cluster of real `idreg serve` processes on 127.0.0.1, 127.0.0.2, …
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use idreg_client::pb;
use idreg_proto::v1::cluster_client::ClusterClient;
use tonic::transport::Channel;

use super::fault_proxy::FaultProxy;
use super::linearizability::{Event, Op};
use super::Server;

/// Where node `id` listens before it has bound: its own 127.0.0.`id`, the
/// port picked by the kernel and read back from the node's log.
fn unbound(id: u64) -> String {
    format!("127.0.0.{id}:0")
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// Node id → running node (None while stopped).
    pub nodes: BTreeMap<u64, Option<Server>>,
    /// Where clients reach each node.
    pub addrs: BTreeMap<u64, String>,
    /// Where the other nodes reach each node: its peer port, or a fault proxy.
    pub peer_addrs: BTreeMap<u64, String>,
    /// Where each node's peer port listens.
    pub peer_listen: BTreeMap<u64, String>,
    pub proxies: BTreeMap<u64, FaultProxy>,
    pub kek: PathBuf,
    /// The cluster's PKI: certificates for nodes 1–7 and an admin.
    pub pki: PathBuf,
    pub extra: Vec<String>,
}

impl TestCluster {
    /// Starts `n` nodes: node 1 founds the cluster, the others are added
    /// with `cluster add-node` (how an operator grows a cluster).
    pub async fn start(n: u64, extra: &[&str]) -> TestCluster {
        Self::start_inner(n, extra, false, &[]).await
    }

    /// Starts `n` nodes founded together with `--initial-cluster`, whose
    /// node-to-node traffic passes fault proxies the test can cut (see
    /// [`TestCluster::isolate`]).
    pub async fn start_with_proxies(n: u64, extra: &[&str]) -> TestCluster {
        Self::start_inner(n, extra, true, &[]).await
    }

    /// As [`TestCluster::start_with_proxies`], with the founding members in
    /// `absent` not started (their proxies refuse): the cluster forms
    /// without them. [`TestCluster::start_founder`] starts one later.
    pub async fn start_founders_without(n: u64, absent: &[u64]) -> TestCluster {
        Self::start_inner(n, &[], true, absent).await
    }

    /// Starts founding member `id`, left out at the start, as it would
    /// have started: empty, with `--initial-cluster`.
    pub async fn start_founder(&mut self, id: u64) {
        assert!(self.nodes[&id].is_none(), "node {id} is running");
        let s = self.spawn(id, "new").await;
        self.learn_bound(id, &s);
        self.nodes.insert(id, Some(s));
    }

    /// Without proxies, node 1 founds the cluster alone and each other node
    /// starts empty and is added with `cluster add-node`. With proxies, the
    /// proxies' addresses are known first, so every node is founded with
    /// `--initial-cluster` naming them. Either way every port is bound as 0
    /// by whoever listens on it (node or proxy) and read back: no port is
    /// probed and released for someone else to take.
    async fn start_inner(n: u64, extra: &[&str], proxied: bool, absent: &[u64]) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let kek = dir.path().join("kek.hex");
        super::write_kek(&kek);
        let pki = dir.path().join("pki");
        super::make_pki(&pki, 7);
        let mut proxies = BTreeMap::new();
        let mut peer_addrs = BTreeMap::new();
        for id in 1..=n {
            peer_addrs.insert(id, unbound(id));
            if proxied {
                // Bound now; pointed at the node once the node has bound.
                let p = FaultProxy::start(&unbound(id), "127.0.0.1:1").await;
                peer_addrs.insert(id, p.addr.clone());
                proxies.insert(id, p);
            }
        }
        let mut c = TestCluster {
            dir,
            nodes: BTreeMap::new(),
            addrs: (1..=n).map(|id| (id, unbound(id))).collect(),
            peer_addrs,
            peer_listen: (1..=n).map(|id| (id, unbound(id))).collect(),
            proxies,
            kek,
            pki,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            if absent.contains(&id) {
                c.nodes.insert(id, None);
                continue;
            }
            if id > 1 && !proxied {
                c.join(id).await;
                continue;
            }
            let s = if proxied {
                c.spawn(id, "new").await
            } else {
                let mut args = c.node_args(id);
                args.extend(c.extra.iter().cloned());
                Server::start_at(&c.data_dir(id), &c.addrs[&id], &args).await
            };
            c.learn_bound(id, &s);
            c.nodes.insert(id, Some(s));
        }
        c.wait_for_leader().await;
        c
    }

    /// Records the addresses node `id` bound (restarts reuse them: the
    /// cluster's membership holds its peer address).
    fn learn_bound(&mut self, id: u64, s: &Server) {
        self.addrs.insert(id, s.grpc_addr.clone());
        self.peer_listen.insert(id, s.peer_addr.clone());
        match self.proxies.get(&id) {
            Some(p) => p.retarget(&s.peer_addr),
            None => {
                self.peer_addrs.insert(id, s.peer_addr.clone());
            }
        }
    }

    pub fn initial_cluster(&self) -> String {
        self.peer_addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// What every start of node `id` passes: its id, the cluster's KEK and
    /// PKI, its peer port and the address the others reach it at.
    fn node_args(&self, id: u64) -> Vec<String> {
        let mut args = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--kek-file".into(),
            self.kek.display().to_string(),
            "--peer-addr".into(),
            self.peer_listen[&id].clone(),
            "--pki-dir".into(),
            self.pki.display().to_string(),
        ];
        // Not yet bound: the node advertises the port it binds.
        if !self.peer_addrs[&id].ends_with(":0") {
            args.extend(["--advertise-addr".into(), self.peer_addrs[&id].clone()]);
        }
        args
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node{id}"))
    }

    async fn spawn(&self, id: u64, state: &str) -> Server {
        let mut args = self.node_args(id);
        args.extend([
            "--initial-cluster".into(),
            self.initial_cluster(),
            "--initial-cluster-state".into(),
            state.into(),
        ]);
        args.extend(self.extra.iter().cloned());
        Server::start_at(&self.data_dir(id), &self.addrs[&id], &args).await
    }

    /// Starts node `id` (not a founder) empty, waiting to be added.
    pub async fn start_joiner(&mut self, id: u64) {
        self.addrs.insert(id, unbound(id));
        self.peer_addrs.insert(id, unbound(id));
        self.peer_listen.insert(id, unbound(id));
        let mut args = self.node_args(id);
        args.extend(["--initial-cluster-state".into(), "existing".into()]);
        args.extend(self.extra.iter().cloned());
        let s = Server::start_at(&self.data_dir(id), &self.addrs[&id], &args).await;
        self.learn_bound(id, &s);
        self.nodes.insert(id, Some(s));
    }

    /// Starts node `id` empty and adds it through node 1 (`cluster
    /// add-node`): a learner that catches up, then a voter.
    pub async fn join(&mut self, id: u64) {
        self.start_joiner(id).await;
        let out = self.node(1).cli(&[
            "cluster",
            "add-node",
            &id.to_string(),
            &self.peer_addrs[&id],
        ]);
        assert!(
            out.status.success(),
            "adding node {id}: {}",
            super::output_text(&out)
        );
    }

    /// Cuts node `id` off from every other node (both directions).
    pub fn isolate(&self, id: u64) {
        assert!(!self.proxies.is_empty(), "start_with_proxies first");
        let ip: std::net::IpAddr = format!("127.0.0.{id}").parse().unwrap();
        for (other, p) in &self.proxies {
            if *other == id {
                p.block_all();
            } else {
                p.block(ip);
            }
        }
    }

    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    pub fn node(&self, id: u64) -> &Server {
        self.nodes[&id].as_ref().expect("node is running")
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn kill9(&mut self, id: u64) {
        let mut s = self.nodes.get_mut(&id).unwrap().take().expect("running");
        s.kill9();
    }

    pub fn terminate(&mut self, id: u64) {
        let mut s = self.nodes.get_mut(&id).unwrap().take().expect("running");
        let status = s.terminate();
        assert!(
            status.success(),
            "node {id} exited with {status}:\n{}",
            s.log_text()
        );
    }

    /// Starts a stopped node again on its data dir (`state`: new|existing).
    pub async fn restart(&mut self, id: u64, state: &str) {
        assert!(self.nodes[&id].is_none(), "stop node {id} first");
        let s = self.spawn(id, state).await;
        self.nodes.insert(id, Some(s));
    }

    /// Starts a stopped node as a cluster of one (a restored backup).
    pub async fn restart_alone(&mut self, id: u64) {
        assert!(self.nodes[&id].is_none(), "stop node {id} first");
        let args = self.node_args(id);
        let s = Server::start_at(&self.data_dir(id), &self.addrs[&id], &args).await;
        self.nodes.insert(id, Some(s));
    }

    /// Runs `idreg <args>` with no node behind it.
    pub fn node_cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(super::BIN)
            .args(args)
            .output()
            .unwrap()
    }

    /// Deletes a stopped node's data.
    pub fn wipe(&self, id: u64) {
        assert!(self.nodes[&id].is_none(), "stop node {id} first");
        std::fs::remove_dir_all(self.data_dir(id)).unwrap();
    }

    pub async fn cluster_client(&self, id: u64) -> ClusterClient<Channel> {
        ClusterClient::new(crate::common::channel(&self.addrs[&id]).await.unwrap())
    }

    pub async fn status(&self, id: u64) -> pb::ClusterStatus {
        self.cluster_client(id)
            .await
            .get_status(pb::GetClusterStatusRequest { local_only: true })
            .await
            .unwrap()
            .into_inner()
    }

    /// Waits (bounded) until every running node names the same leader, which
    /// is itself running; returns it.
    pub async fn wait_for_leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut leaders = BTreeSet::new();
            for id in self.running() {
                let s = match crate::common::channel(&self.addrs[&id]).await {
                    Ok(ch) => ClusterClient::new(ch)
                        .get_status(pb::GetClusterStatusRequest { local_only: true })
                        .await
                        .ok()
                        .map(|r| r.into_inner().leader_id),
                    Err(_) => None,
                };
                leaders.insert(s.unwrap_or(0));
            }
            if leaders.len() == 1 {
                let l = *leaders.iter().next().unwrap();
                if l != 0 && self.running().contains(&l) {
                    return l;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader in 30 s: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: u64, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(id).await;
            if s.applied_index >= index {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} applied only {} of {index} in 60 s",
                s.applied_index
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client write outcome as the load generator recorded it.
#[derive(Debug, Default)]
pub struct LoadRecord {
    /// Ids the cluster acknowledged (OK, or ALREADY_EXISTS on a retry of a
    /// request whose earlier attempt may have succeeded).
    pub acked: BTreeSet<String>,
    /// Every id ever sent.
    pub requested: BTreeSet<String>,
    pub errors: usize,
}

impl LoadRecord {
    /// "N acknowledged of M requested, K failed attempts retried".
    pub fn summary(&self) -> String {
        format!(
            "{} acknowledged of {} requested, {} failed attempts retried",
            self.acked.len(),
            self.requested.len(),
            self.errors
        )
    }
}

/// Shared by a test and the loads it runs: a flag that stops them, and a
/// count of the writes they had acknowledged, so a test waits for progress
/// rather than for a fixed time.
#[derive(Default)]
pub struct LoadControl {
    stop: std::sync::atomic::AtomicBool,
    acked: std::sync::atomic::AtomicUsize,
}

impl LoadControl {
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::default()
    }

    pub fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn acked_one(&self) {
        self.acked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits until the loads have had `more` writes acknowledged since the
    /// call; fails the test if that takes longer than `within`.
    pub async fn wait_for_acks(&self, more: usize, within: Duration) {
        let want = self.acked.load(std::sync::atomic::Ordering::Relaxed) + more;
        let deadline = Instant::now() + within;
        while self.acked.load(std::sync::atomic::Ordering::Relaxed) < want {
            assert!(
                Instant::now() < deadline,
                "the load had fewer than {more} writes acknowledged in {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Creates devices `{prefix}-{i}` from `writers` concurrent clients spread
/// over `endpoints` (read again before each attempt, so nodes may come and go),
/// retrying each on another node until acknowledged. Stops after `per_writer`
/// devices each or when `control` stops them, and always within `max_time`.
pub async fn write_load(
    endpoints: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    prefix: &str,
    writers: usize,
    per_writer: usize,
    max_time: Duration,
    control: std::sync::Arc<LoadControl>,
) -> LoadRecord {
    let deadline = Instant::now() + max_time;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let endpoints = endpoints.clone();
        let control = control.clone();
        let prefix = prefix.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rec = LoadRecord::default();
            let mut turn = w;
            'devices: for i in 0..per_writer {
                if Instant::now() > deadline || control.stopped() {
                    break;
                }
                let id = format!("{prefix}-w{w}-{i:05}");
                rec.requested.insert(id.clone());
                for attempt in 0..40 {
                    if Instant::now() > deadline {
                        break 'devices;
                    }
                    let ep = {
                        let eps = endpoints.lock().unwrap();
                        eps[turn % eps.len()].clone()
                    };
                    let result = match tokio::time::timeout(Duration::from_secs(3), async {
                        let mut c = crate::common::connect(&ep)
                            .await
                            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                        let mut req = tonic::Request::new(super::create_req(
                            &id,
                            vec![super::psk_input(&id, b"load-secret-0123456789")],
                        ));
                        req.set_timeout(Duration::from_secs(3));
                        c.create_device(req).await
                    })
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(tonic::Status::deadline_exceeded("client timeout")),
                    };
                    match result {
                        Ok(_) => {
                            rec.acked.insert(id.clone());
                            control.acked_one();
                            continue 'devices;
                        }
                        Err(s) if s.code() == tonic::Code::AlreadyExists && attempt > 0 => {
                            rec.acked.insert(id.clone());
                            control.acked_one();
                            continue 'devices;
                        }
                        Err(s) => {
                            assert_ne!(
                                s.code(),
                                tonic::Code::AlreadyExists,
                                "first attempt of {id}: {s}"
                            );
                            rec.errors += 1;
                            turn += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            rec
        }));
    }
    let mut all = LoadRecord::default();
    for t in tasks {
        let r = t.await.unwrap();
        all.acked.extend(r.acked);
        all.requested.extend(r.requested);
        all.errors += r.errors;
    }
    all
}

/// Every device id node `addr` holds, read linearizably.
pub async fn all_ids_linearizable(addr: &str) -> BTreeSet<String> {
    let mut c = crate::common::connect(addr).await.unwrap();
    let req = pb::ListDevicesRequest {
        page_size: 1000,
        consistency: pb::ReadConsistency::Linearizable as i32,
        ..Default::default()
    };
    super::list_all_ids(&mut c, req).await.into_iter().collect()
}

/// Every device id node `addr` holds, from its local replica.
pub async fn all_ids_local(addr: &str) -> BTreeSet<String> {
    let mut c = crate::common::connect(addr).await.unwrap();
    let req = pb::ListDevicesRequest {
        page_size: 1000,
        ..Default::default()
    };
    super::list_all_ids(&mut c, req).await.into_iter().collect()
}

/// Linearizable reads and writes of one register per device (its label `v`)
/// from `clients` concurrent clients over `keys`, spread over `endpoints`.
/// Bounded by `max_ops` per client and by `max_time`.
pub async fn register_load(
    endpoints: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    keys: Vec<String>,
    clients: usize,
    max_ops: usize,
    max_time: Duration,
    control: std::sync::Arc<LoadControl>,
) -> Vec<Event> {
    let deadline = Instant::now() + max_time;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let endpoints = endpoints.clone();
        let keys = keys.clone();
        let control = control.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = Vec::new();
            let mut rng = 0x2545_F491_4F6C_DD1Du64.wrapping_mul(client as u64 + 1);
            for seq in 0..max_ops {
                if Instant::now() > deadline || control.stopped() {
                    break;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let key = keys[(rng % keys.len() as u64) as usize].clone();
                let ep = {
                    let eps = endpoints.lock().unwrap();
                    eps[(rng >> 20) as usize % eps.len()].clone()
                };
                let write = rng.is_multiple_of(2);
                let value = (client as u64 + 1) * 1_000_000 + seq as u64;
                let invoked = Instant::now();
                let outcome = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut c = crate::common::connect(&ep)
                        .await
                        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                    if write {
                        let mut req = pb::UpdateDeviceRequest {
                            id: key.clone(),
                            replace_labels: true,
                            ..Default::default()
                        };
                        req.labels.insert("v".into(), value.to_string());
                        c.update_device(req).await.map(|_| None)
                    } else {
                        c.get_device(pb::GetDeviceRequest {
                            id: key.clone(),
                            consistency: pb::ReadConsistency::Linearizable as i32,
                        })
                        .await
                        .map(|d| {
                            Some(
                                d.into_inner()
                                    .labels
                                    .get("v")
                                    .map(|v| v.parse::<u64>().unwrap()),
                            )
                        })
                    }
                })
                .await;
                let returned = Instant::now();
                match (write, outcome) {
                    (true, Ok(Ok(_))) => {
                        control.acked_one();
                        events.push(Event {
                            key,
                            op: Op::Write(value),
                            invoked,
                            returned: Some(returned),
                        })
                    }
                    // Failed or timed out: it may still take effect.
                    (true, _) => events.push(Event {
                        key,
                        op: Op::Write(value),
                        invoked,
                        returned: None,
                    }),
                    (false, Ok(Ok(Some(seen)))) => events.push(Event {
                        key,
                        op: Op::Read(seen),
                        invoked,
                        returned: Some(returned),
                    }),
                    (false, _) => {}
                }
            }
            events
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

impl Drop for TestCluster {
    /// A failed test keeps the nodes' data and logs, and says where: an
    /// intermittent failure is otherwise gone with its evidence.
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "cluster test failed: node logs kept in {}",
                self.dir.path().display()
            );
        }
    }
}

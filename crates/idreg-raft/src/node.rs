//! A running raft node over the idreg store: one of a cluster of 1–7.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idreg_core::{Author, Principal};
use idreg_core::{Command, Proposal};
use idreg_store::{NodeId, RegistryReader, Store, TypeConfig};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use crate::error::WriteError;
use crate::forwarder::{Forwarder, LEADER_WAIT};
use crate::grpc_network::GrpcNetwork;
use crate::grpc_network::PeerDialer;
use crate::proposer::{self, Pending, Verdict};
use crate::raft_service::RaftService;
use crate::status::{ClusterView, MemberView};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// The address peers and clients reach this node's gRPC port at.
    pub advertise_addr: String,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, so a briefly lagging follower
    /// catches up from the log rather than a whole snapshot.
    pub snapshot_keep_logs: u64,
    /// The members of a new cluster (id → address), this node among them.
    /// Empty: a single-node cluster of this node.
    pub initial_members: BTreeMap<NodeId, String>,
    /// Whether an empty node may found the cluster from `initial_members`
    /// (etcd's `--initial-cluster-state new`). A node that is to be added to a
    /// running cluster must not, or it would start a second history.
    pub bootstrap: bool,
    /// How this node reaches its peers (source address, TLS credentials).
    pub dialer: PeerDialer,
    /// Largest snapshot this node accepts from a leader.
    pub snapshot_max_bytes: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_addr: "127.0.0.1:50051".into(),
            snapshot_every: 20_000,
            snapshot_keep_logs: 1000,
            initial_members: BTreeMap::new(),
            bootstrap: true,
            dialer: PeerDialer::default(),
            snapshot_max_bytes: crate::snapshot_receiver::DEFAULT_MAX_SNAPSHOT_BYTES,
        }
    }
}

#[derive(Clone)]
pub struct RegistryNode {
    id: NodeId,
    dialer: PeerDialer,
    raft: Raft<TypeConfig>,
    store: Store,
    forwarder: Forwarder,
    proposals: mpsc::Sender<Pending>,
    snapshots: std::sync::Arc<crate::snapshot_receiver::SnapshotReceiver>,
    contact: crate::leader_contact::LeaderContact,
    herald: crate::session_herald::SessionHerald,
    write_metrics: crate::write_metrics::WriteMetrics,
    /// Set when the node begins to stop: its long-lived streams (a peer's
    /// AppendEntries, a client's watch) end, so the servers can drain.
    stopping: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn raft_err(e: impl std::fmt::Display) -> WriteError {
    WriteError::Raft(e.to_string())
}

/// A membership change's refusal, with "not the leader" kept apart so the
/// caller can pass the request on.
fn change_error(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> WriteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WriteError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            WriteError::Refused(c.to_string())
        }
        other => raft_err(other),
    }
}

/// How long a founding member waits, per member before it in id order,
/// for the cluster to form before it initialises it itself.
const FOUNDING_STAGGER: Duration = Duration::from_secs(1);

impl RegistryNode {
    /// Starts the node on `store`. An empty store founds a cluster from
    /// `config.initial_members` (or of itself alone) when `config.bootstrap`;
    /// otherwise the node waits to be added by the leader. A store with a
    /// history rejoins its cluster as it was.
    pub async fn start(config: NodeConfig, store: Store) -> Result<Self, WriteError> {
        let raft_config = Config {
            cluster_name: "idreg".into(),
            heartbeat_interval: 150,
            election_timeout_min: 750,
            election_timeout_max: 1500,
            // AppendEntries stays far below the wire limit even when every
            // entry is a full batch of proposals.
            max_payload_entries: 64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            snapshot_max_chunk_size: 1 << 20,
            // The last chunk loads the whole snapshot into RocksDB.
            install_snapshot_timeout: 60_000,
            max_in_snapshot_log_to_keep: config.snapshot_keep_logs,
            ..Default::default()
        }
        .validate()
        .map_err(raft_err)?;
        let sm = store.state_machine().map_err(raft_err)?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            GrpcNetwork {
                dialer: config.dialer.clone(),
            },
            store.log_store_of(config.node_id),
            sm,
        )
        .await
        .map_err(raft_err)?;
        let single = config.initial_members.is_empty();
        if !raft.is_initialized().await.map_err(raft_err)? && config.bootstrap {
            let members: BTreeMap<NodeId, BasicNode> = if single {
                BTreeMap::from([(config.node_id, BasicNode::new(&config.advertise_addr))])
            } else {
                config
                    .initial_members
                    .iter()
                    .map(|(id, addr)| (*id, BasicNode::new(addr)))
                    .collect()
            };
            // Founding members initialise with the same membership one after
            // another in id order, FOUNDING_STAGGER apart: the first elects
            // itself and brings the others in with the membership, so they
            // never stand against it (members that all stood at once split
            // the vote, and a second election cost an election timeout). One
            // that already heard from the leader is refused, harmlessly; one
            // whose predecessors are down founds the cluster when its turn
            // comes.
            let rank = config
                .initial_members
                .keys()
                .position(|id| *id == config.node_id)
                .unwrap_or(0) as u32;
            if rank == 0 {
                if let Err(e) = raft.initialize(members).await {
                    tracing::info!("cluster already formed: {e}");
                }
            } else {
                let raft = raft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(FOUNDING_STAGGER * rank).await;
                    if raft.is_initialized().await.unwrap_or(true) {
                        return;
                    }
                    match raft.initialize(members).await {
                        Ok(()) => tracing::info!(
                            "no founding member before this one formed the cluster; this one does"
                        ),
                        Err(e) => tracing::info!("cluster already formed: {e}"),
                    }
                });
            }
        }
        if single && config.bootstrap {
            // Usable as soon as `serve` reports ready.
            let _ = raft
                .wait(Some(Duration::from_secs(30)))
                .metrics(|m| m.current_leader.is_some(), "a leader is known")
                .await;
        }
        if store.restored().map_err(raft_err)? {
            // The registry came from a backup, not from the log: snapshot it
            // and purge the log, so nodes that join get the snapshot.
            let m = raft
                .wait(Some(Duration::from_secs(30)))
                .applied_index_at_least(Some(1), "the restored node leads")
                .await
                .map_err(raft_err)?;
            let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
            raft.trigger().snapshot().await.map_err(raft_err)?;
            let m = raft
                .wait(Some(Duration::from_secs(600)))
                .metrics(
                    |m| m.snapshot.map(|l| l.index).unwrap_or(0) >= applied && applied > 0,
                    "snapshot of the restored registry",
                )
                .await
                .map_err(raft_err)?;
            if let Some(s) = m.snapshot {
                raft.trigger().purge_log(s.index).await.map_err(raft_err)?;
            }
            store.clear_restored().map_err(raft_err)?;
            tracing::info!("restored registry snapshotted; the log behind it is purged");
        }
        let forwarder = Forwarder::new(raft.clone(), config.node_id, config.dialer.clone());
        let (tx, rx) = mpsc::channel(proposer::MAX_BATCH * 8);
        let write_metrics = crate::write_metrics::WriteMetrics::default();
        tokio::spawn(proposer::run(
            forwarder.clone(),
            store.waiting_callers(),
            rx,
            write_metrics.clone(),
            proposer::MAX_IN_FLIGHT,
        ));
        let snapshots = std::sync::Arc::new(crate::snapshot_receiver::SnapshotReceiver::new(
            store.clone(),
            config.snapshot_max_bytes,
        ));
        let herald = crate::session_herald::SessionHerald::start(
            raft.clone(),
            config.node_id,
            config.dialer.clone(),
        );
        Ok(Self {
            id: config.node_id,
            herald,
            write_metrics,
            dialer: config.dialer,
            raft,
            store,
            forwarder,
            proposals: tx,
            snapshots,
            contact: Default::default(),
            stopping: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Lets this node stand for election (or not). A node that may have been
    /// removed from the cluster stays quiet until it knows it is a member
    /// again, so its stale term cannot unseat the leader.
    pub fn allow_elections(&self, allowed: bool) {
        self.raft.runtime_config().elect(allowed);
    }

    /// How this node dials its peers.
    pub fn dialer(&self) -> &PeerDialer {
        &self.dialer
    }

    /// A channel to another node, from this node's address.
    pub fn peer_channel(
        &self,
        addr: &str,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        self.dialer.channel(addr)
    }

    /// Proposes one command and waits for its verdict. The outer error means
    /// the command's fate is unknown or it was not applied; the inner one is the
    /// registry's decision.
    pub async fn propose(&self, command: Command, by: Principal) -> Result<Verdict, WriteError> {
        self.enqueue(command, by).await?.await
    }

    /// Queues one command for the proposer and returns its verdict to come.
    /// Commands queued one after another from one task keep their order in
    /// the raft batch they share (a bulk import relies on it: the first of
    /// two conflicting lines wins).
    pub async fn enqueue(
        &self,
        command: Command,
        by: Principal,
    ) -> Result<impl std::future::Future<Output = Result<Verdict, WriteError>>, WriteError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            proposal: Proposal {
                at_ms: now_ms(),
                by: Author {
                    principal: by,
                    node: self.id,
                },
                command,
            },
            reply,
        };
        self.proposals
            .send(pending)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        Ok(async move { rx.await.map_err(|_| WriteError::ShuttingDown)? })
    }

    /// Returns once this node has applied every write acknowledged before the
    /// call (read index confirmed by the leader's quorum).
    pub async fn linearize(&self) -> Result<(), WriteError> {
        let index = self.forwarder.read_index().await?;
        self.raft
            .wait(Some(LEADER_WAIT))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| raft_err(format!("waiting to apply index {index}: {e}")))?;
        Ok(())
    }

    /// Group commit's metrics, to register for `/metrics`.
    pub fn write_metrics(&self) -> &crate::write_metrics::WriteMetrics {
        &self.write_metrics
    }

    pub fn reader(&self) -> RegistryReader {
        self.store.reader()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn raft(&self) -> &Raft<TypeConfig> {
        &self.raft
    }

    /// The server side of the node-to-node protocol, for the gRPC listener.
    pub fn raft_service(&self) -> RaftService {
        RaftService::new(
            self.raft.clone(),
            self.snapshots.clone(),
            self.contact.clone(),
            self.herald.listener_slot(),
            self.stopping(),
        )
    }

    /// Announces this node's device session starts to its peers and takes
    /// theirs (clones across nodes).
    pub fn session_herald(&self) -> &crate::session_herald::SessionHerald {
        &self.herald
    }

    /// Whether this node's copy of the registry is known fresh within `max`:
    /// it leads and a quorum acknowledged it that recently (a cluster of one
    /// always does), or a leader's entries or heartbeats reached it.
    pub fn registry_fresh_within(&self, max: Duration) -> bool {
        let m = self.raft.metrics().borrow().clone();
        if m.state == ServerState::Leader {
            let voters = m.membership_config.membership().voter_ids().count();
            return voters <= 1
                || m.millis_since_quorum_ack
                    .is_some_and(|ms| ms <= max.as_millis() as u64);
        }
        self.contact.within(max)
    }

    /// This node's view of the cluster; replication lag only on the leader.
    pub fn view(&self) -> ClusterView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .flatten()
                    .map(|l| l.index);
                let (matched_index, replicating) = if *id == m.id && m.state == ServerState::Leader
                {
                    (Some(last), true)
                } else {
                    (matched, matched.is_some())
                };
                MemberView {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                    matched_index: matched_index.unwrap_or(0),
                    lag: matched_index.map(|i| last.saturating_sub(i)).unwrap_or(0),
                    replicating,
                }
            })
            .collect();
        let leader_addr = m
            .current_leader
            .and_then(|l| membership.get_node(&l))
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        ClusterView {
            node_id: m.id,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            },
            leader_id: m.current_leader,
            leader_addr,
            term: m.current_term,
            last_log_index: last,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            members,
            snapshots_installed: self.store.snapshots_installed(),
        }
    }

    /// Adds node `id` at `addr` as a learner, waits for it to catch up, then
    /// (unless `learner_only`) makes it a voter. Only on the leader.
    pub async fn add_node(
        &self,
        id: NodeId,
        addr: &str,
        learner_only: bool,
    ) -> Result<(), WriteError> {
        let view = self.view();
        if let Some(existing) = view.members.iter().find(|m| m.id == id) {
            if existing.addr != addr {
                return Err(WriteError::MemberElsewhere {
                    id,
                    addr: existing.addr.clone(),
                });
            }
        }
        self.when_no_change_in_progress(|| self.raft.add_learner(id, BasicNode::new(addr), true))
            .await?;
        if !learner_only {
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        Ok(())
    }

    /// Removes node `id` from the membership (voter or learner). Only on the leader.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), WriteError> {
        let view = self.view();
        let Some(member) = view.members.iter().find(|m| m.id == id) else {
            return Err(WriteError::NotAMember(id));
        };
        if member.voter {
            if view.members.iter().filter(|m| m.voter).count() == 1 {
                return Err(WriteError::Refused(format!(
                    "node {id} is the last voter; a cluster cannot remove its last voter"
                )));
            }
            self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await?;
        } else {
            self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await?;
        }
        Ok(())
    }

    /// One membership change; while an earlier one is still being committed
    /// (a join just before a leave, as a StatefulSet scales), it waits for
    /// that one rather than refusing, for up to 20 s.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<(), WriteError> {
        self.when_no_change_in_progress(|| self.raft.change_membership(change.clone(), false))
            .await
    }

    async fn when_no_change_in_progress<F, T>(
        &self,
        mut attempt: impl FnMut() -> F,
    ) -> Result<(), WriteError>
    where
        F: std::future::Future<
            Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
        >,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match attempt().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(change_error(e)),
            }
        }
    }

    /// Builds a snapshot of what this node has applied and waits for it.
    pub async fn snapshot_now(&self) -> Result<u64, WriteError> {
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        self.raft.trigger().snapshot().await.map_err(raft_err)?;
        let m = self
            .raft
            .wait(Some(Duration::from_secs(300)))
            .metrics(
                |m| m.snapshot.map(|l| l.index).unwrap_or(0) >= applied,
                "snapshot built",
            )
            .await
            .map_err(raft_err)?;
        Ok(m.snapshot.map(|l| l.index).unwrap_or(0))
    }

    /// The node is going down: its long-lived streams end now. A server
    /// stopping gracefully waits for every open stream, and a peer's
    /// AppendEntries stream or a client's watch would never end by itself.
    pub fn begin_stopping(&self) {
        self.stopping.send_replace(true);
    }

    /// Becomes true when the node begins to stop.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

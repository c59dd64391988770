//! A running raft node over the idreg store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use idreg_core::{Command, Proposal};
use idreg_store::{RegistryReader, Store, TypeConfig};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, oneshot};

use crate::error::WriteError;
use crate::network::NoPeers;
use crate::proposer::{self, Pending, Verdict};

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: u64,
    /// The address peers and clients reach this node's gRPC port at.
    pub advertise_addr: String,
    /// Build a snapshot (and purge the log behind it) after this many entries.
    pub snapshot_every: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            advertise_addr: "127.0.0.1:50051".into(),
            snapshot_every: 20_000,
        }
    }
}

#[derive(Clone)]
pub struct RegistryNode {
    raft: Raft<TypeConfig>,
    store: Store,
    proposals: mpsc::Sender<Pending>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl RegistryNode {
    /// Starts a single-node cluster on `store`, initialising it on first start,
    /// and waits until it leads.
    pub async fn start_single(config: NodeConfig, store: Store) -> Result<Self, WriteError> {
        let raft_config = Config {
            cluster_name: "idreg".into(),
            heartbeat_interval: 250,
            election_timeout_min: 600,
            election_timeout_max: 1200,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            max_in_snapshot_log_to_keep: 1000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| WriteError::Raft(e.to_string()))?;
        let sm = store
            .state_machine()
            .map_err(|e| WriteError::Raft(e.to_string()))?;
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NoPeers,
            store.log_store(),
            sm,
        )
        .await
        .map_err(|e| WriteError::Raft(e.to_string()))?;
        if !raft
            .is_initialized()
            .await
            .map_err(|e| WriteError::Raft(e.to_string()))?
        {
            let members = BTreeMap::from([(
                config.node_id,
                BasicNode {
                    addr: config.advertise_addr.clone(),
                },
            )]);
            raft.initialize(members)
                .await
                .map_err(|e| WriteError::Raft(e.to_string()))?;
        }
        raft.wait(Some(Duration::from_secs(30)))
            .state(ServerState::Leader, "single node becomes leader")
            .await
            .map_err(|e| WriteError::Raft(format!("no leadership: {e}")))?;
        let (tx, rx) = mpsc::channel(proposer::MAX_BATCH * 8);
        tokio::spawn(proposer::run(raft.clone(), rx));
        Ok(Self {
            raft,
            store,
            proposals: tx,
        })
    }

    /// Proposes one command and waits for its verdict. The outer error means
    /// the command's fate is unknown or it was not applied; the inner one is the
    /// registry's decision.
    pub async fn propose(&self, command: Command) -> Result<Verdict, WriteError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            proposal: Proposal {
                at_ms: now_ms(),
                command,
            },
            reply,
        };
        self.proposals
            .send(pending)
            .await
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.map_err(|_| WriteError::ShuttingDown)?
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

    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
    }
}

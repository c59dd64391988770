//! Tells the other members of the cluster of device sessions that start on
//! this node, and hands their answers (live sessions there that clone ours)
//! back to the device front. Best effort by design: a start is news for a
//! second, so a full queue or an unreachable peer loses it (counted and
//! logged), and nothing waits on it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use idreg_core::session_news::MAX_STARTS_PER_ANNOUNCEMENT;
use idreg_core::{CloneAnswer, PeerSessions, SessionAnnouncer, SessionStart};
use idreg_proto::v1::raft_client::RaftClient;
use idreg_store::{NodeId, TypeConfig};
use openraft::Raft;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::{debug, warn};

use crate::grpc_network::{raft_client, PeerDialer};
use crate::wire;

/// Starts waiting to be announced; past it new ones are dropped.
const QUEUE: usize = 16 * 1024;
/// How long the herald gathers starts after the first of a burst.
const GATHER: Duration = Duration::from_millis(20);
/// How long one peer may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a peer's announcement goes on this node: the device front, once
/// it has started (until then, with the front off, and once it has stopped,
/// nowhere). Weak, so the node does not keep a stopped front alive.
pub type PeerSessionsSlot = Arc<OnceLock<Weak<dyn PeerSessions>>>;

/// The device front listening, if it is.
pub(crate) fn listening(slot: &PeerSessionsSlot) -> Option<Arc<dyn PeerSessions>> {
    slot.get().and_then(Weak::upgrade)
}

#[derive(Clone)]
pub struct SessionHerald {
    queue: mpsc::Sender<SessionStart>,
    listener: PeerSessionsSlot,
    dropped: Arc<AtomicU64>,
    /// Whether the membership names another node (checked every
    /// [`PEER_CHECK`]; true until first checked).
    peers: Arc<AtomicBool>,
}

/// How often the herald looks at the membership for peers.
const PEER_CHECK: Duration = Duration::from_millis(200);

/// The other members' ids and addresses, as this node knows them.
fn peers_of(raft: &Raft<TypeConfig>, me: NodeId) -> Vec<(NodeId, String)> {
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| **id != me)
        .map(|(id, n)| (*id, n.addr.clone()))
        .collect()
}

impl SessionHerald {
    pub(crate) fn start(raft: Raft<TypeConfig>, me: NodeId, dialer: PeerDialer) -> Self {
        let (queue, starts) = mpsc::channel(QUEUE);
        let listener = PeerSessionsSlot::default();
        let peers = Arc::new(AtomicBool::new(true));
        tokio::spawn(watch_peers(raft.clone(), me, peers.clone()));
        tokio::spawn(announce(starts, raft, me, dialer, listener.clone()));
        Self {
            queue,
            listener,
            dropped: Default::default(),
            peers,
        }
    }

    /// Where peers' announcements and answers go from now on.
    pub fn listen(&self, listener: &Arc<dyn PeerSessions>) {
        let _ = self.listener.set(Arc::downgrade(listener));
    }

    pub(crate) fn listener_slot(&self) -> PeerSessionsSlot {
        self.listener.clone()
    }
}

/// Keeps [`SessionHerald::has_peers`] current until the node stops.
async fn watch_peers(raft: Raft<TypeConfig>, me: NodeId, peers: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(PEER_CHECK);
    loop {
        tick.tick().await;
        if raft.metrics().borrow().state == openraft::ServerState::Shutdown {
            return;
        }
        peers.store(!peers_of(&raft, me).is_empty(), Ordering::Relaxed);
    }
}

impl SessionAnnouncer for SessionHerald {
    fn has_peers(&self) -> bool {
        self.peers.load(Ordering::Relaxed)
    }

    /// Queues a start of this node's for the peers (never blocks).
    fn announce(&self, start: SessionStart) {
        if self.queue.try_send(start).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n == 1 || n.is_multiple_of(1000) {
                warn!(
                    dropped = n,
                    "session announcements to peers dropped: the queue is full"
                );
            }
        }
    }
}

async fn announce(
    mut starts: mpsc::Receiver<SessionStart>,
    raft: Raft<TypeConfig>,
    me: NodeId,
    dialer: PeerDialer,
    listener: PeerSessionsSlot,
) {
    let mut clients: HashMap<NodeId, (String, RaftClient<Channel>)> = HashMap::new();
    let mut batch = Vec::new();
    while starts
        .recv_many(&mut batch, MAX_STARTS_PER_ANNOUNCEMENT)
        .await
        > 0
    {
        let gathering = tokio::time::sleep(GATHER);
        tokio::pin!(gathering);
        while batch.len() < MAX_STARTS_PER_ANNOUNCEMENT {
            let room = MAX_STARTS_PER_ANNOUNCEMENT - batch.len();
            tokio::select! {
                _ = &mut gathering => break,
                n = starts.recv_many(&mut batch, room) => if n == 0 { break },
            }
        }
        let peers = peers_of(&raft, me);
        let announcement = std::mem::take(&mut batch);
        if peers.is_empty() {
            continue;
        }
        let payload = match wire::encode(&announcement) {
            Ok(data) => data,
            Err(e) => {
                warn!(error = %e, "cannot encode a session announcement");
                continue;
            }
        };
        let announcement = Arc::new(announcement);
        for (id, addr) in peers {
            let client = match clients.get(&id) {
                Some((known, c)) if *known == addr => c.clone(),
                _ => match dialer.channel(&addr) {
                    Ok(ch) => {
                        let c = raft_client(ch);
                        clients.insert(id, (addr.clone(), c.clone()));
                        c
                    }
                    Err(e) => {
                        debug!(peer = id, error = %e, "no channel for a session announcement");
                        continue;
                    }
                },
            };
            // One task per peer: a slow or absent peer delays no one
            // (at most a few in flight each, by the answer timeout).
            tokio::spawn(tell(
                id,
                client,
                payload.clone(),
                announcement.clone(),
                listener.clone(),
            ));
        }
    }
}

/// Announces to one peer and hands its answer to the front.
async fn tell(
    peer: NodeId,
    mut client: RaftClient<Channel>,
    data: Vec<u8>,
    announcement: Arc<Vec<SessionStart>>,
    listener: PeerSessionsSlot,
) {
    let answers: Vec<CloneAnswer> = match tokio::time::timeout(
        ANSWER_TIMEOUT,
        client.session_starts(wire::payload(data)),
    )
    .await
    {
        Ok(Ok(reply)) => match wire::decode_payload(&reply.into_inner()) {
            Ok(a) => a,
            Err(e) => {
                warn!(peer, error = %e, "malformed answer to a session announcement");
                return;
            }
        },
        Ok(Err(status)) => {
            debug!(peer, %status, "a peer refused a session announcement");
            return;
        }
        Err(_) => {
            debug!(peer, "a peer did not answer a session announcement in time");
            return;
        }
    };
    // Until the front starts, peers still hear of our sessions; their
    // answers have no one to go to.
    let Some(front) = listening(&listener) else {
        return;
    };
    // Only the peer's own sessions, each against a start we did announce.
    let pairs: Vec<(SessionStart, SessionStart)> = answers
        .into_iter()
        .filter(|a| a.live.node == peer)
        .filter_map(|a| {
            let ours = announcement.get(a.start as usize)?;
            (ours.device == a.live.device).then(|| (ours.clone(), a.live))
        })
        .collect();
    if !pairs.is_empty() {
        front.answered(pairs);
    }
}

//! The server side of `idreg.v1.Raft`: hands peers' messages to the local raft,
//! writes forwarded batches when this node leads, and answers read-index
//! requests. A payload that does not decode is INVALID_ARGUMENT; a forwarded
//! proposal that does not decode is rejected alone; a snapshot is checked
//! (order, size, MAC) before openraft installs it.

use std::pin::Pin;
use std::sync::Arc;

use idreg_core::Caller;
use idreg_proto::v1 as pb;
use idreg_store::TypeConfig;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::forwarded_batch::ForwardedBatch;
use crate::forwarder::ForwardRefusal;
use crate::leader_contact::LeaderContact;
use crate::session_herald::PeerSessionsSlot;
use crate::snapshot_receiver::SnapshotReceiver;
use crate::wire;

#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
    snapshots: Arc<SnapshotReceiver>,
    contact: LeaderContact,
    sessions: PeerSessionsSlot,
    /// True once the node begins to stop: AppendEntries streams end.
    stopping: tokio::sync::watch::Receiver<bool>,
}

/// Who sent a request: a node certificate's id (the peer listener admits no
/// one else), or `None` under `--insecure`.
fn sender<T>(req: &Request<T>) -> Result<Option<u64>, Status> {
    match req.extensions().get::<Caller>() {
        Some(Caller::Node(id)) => Ok(Some(*id)),
        Some(Caller::Insecure) => Ok(None),
        _ => Err(Status::permission_denied(
            "node-to-node methods need a node certificate",
        )),
    }
}

fn decode<T: DeserializeOwned>(req: Request<pb::RaftPayload>, what: &str) -> Result<T, Status> {
    wire::decode_payload(&req.into_inner()).map_err(|e| match e {
        wire::PayloadError::Format1 => Status::failed_precondition(e.to_string()),
        wire::PayloadError::Malformed(e) => {
            Status::invalid_argument(format!("malformed {what}: {e}"))
        }
    })
}

fn reply<T: Serialize>(value: &T) -> Result<Response<pb::RaftPayload>, Status> {
    let data = wire::encode(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(wire::payload(data)))
}

impl RaftService {
    /// The authenticated sender, which must be a member of the cluster as
    /// this node knows it (a node not yet given a membership knows none, and
    /// takes any node of the peer CA: the leader adding it).
    fn member<T>(&self, req: &Request<T>) -> Result<Option<u64>, Status> {
        self.still_member(sender(req)?)
    }

    /// [`RaftService::member`] for a sender already authenticated: a stream
    /// checks each of its messages, since membership can change under it.
    fn still_member(&self, sender: Option<u64>) -> Result<Option<u64>, Status> {
        let Some(id) = sender else {
            return Ok(None);
        };
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let mut nodes = membership.nodes().peekable();
        if nodes.peek().is_some() && !nodes.any(|(n, _)| *n == id) {
            return Err(Status::permission_denied(format!(
                "node {id} is not a member of this cluster"
            )));
        }
        Ok(Some(id))
    }

    /// Refuses a message whose claimed sender is not the authenticated one.
    fn same_sender(authenticated: Option<u64>, claimed: u64, what: &str) -> Result<(), Status> {
        match authenticated {
            Some(id) if id != claimed => Err(Status::permission_denied(format!(
                "{what} claims to come from node {claimed}, but the caller is node {id}"
            ))),
            _ => Ok(()),
        }
    }

    /// One AppendEntries from `from`, answered as its encoded result.
    async fn append(
        &self,
        from: Option<u64>,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<pb::RaftPayload, Status> {
        Self::same_sender(from, rpc.vote.leader_id().node_id, "AppendEntries")?;
        let result = self.raft.append_entries(rpc).await;
        // Anything but "your vote is stale" means a current leader spoke.
        if matches!(&result, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            self.contact.touch();
        }
        Ok(reply(&result)?.into_inner())
    }

    pub fn new(
        raft: Raft<TypeConfig>,
        snapshots: Arc<SnapshotReceiver>,
        contact: LeaderContact,
        sessions: PeerSessionsSlot,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            raft,
            snapshots,
            contact,
            sessions,
            stopping,
        }
    }

    pub fn into_server(self) -> pb::raft_server::RaftServer<Self> {
        pb::raft_server::RaftServer::new(self)
            .max_decoding_message_size(wire::MAX_PAYLOAD)
            .max_encoding_message_size(wire::MAX_PAYLOAD)
    }
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let from = self.member(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req, "AppendEntries")?;
        Ok(Response::new(self.append(from, rpc).await?))
    }

    type AppendEntriesStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::RaftPayload, Status>> + Send + 'static>>;

    /// Each request answered in turn, on the task that polls the replies: no
    /// task of its own. The first refusal (a stranger, a payload that does
    /// not decode) ends the stream with its status; the node beginning to
    /// stop ends it cleanly (the leader opens another, elsewhere or later).
    async fn append_entries_stream(
        &self,
        req: Request<Streaming<pb::RaftPayload>>,
    ) -> Result<Response<Self::AppendEntriesStreamStream>, Status> {
        let from = sender(&req)?;
        self.still_member(from)?;
        let requests = req.into_inner();
        let replies =
            futures::stream::unfold(Some((self.clone(), requests)), move |state| async move {
                let (this, mut requests) = state?;
                let mut stopping = this.stopping.clone();
                let answer = async {
                    let Some(payload) = requests.message().await? else {
                        return Ok(None);
                    };
                    this.still_member(from)?;
                    let rpc = decode(Request::new(payload), "AppendEntries")?;
                    this.append(from, rpc).await.map(Some)
                };
                let answered = tokio::select! {
                    answered = answer => answered,
                    _ = stopping.wait_for(|s| *s) => Ok(None),
                };
                match answered {
                    Ok(Some(reply)) => Some((Ok(reply), Some((this, requests)))),
                    Ok(None) => None,
                    Err(status) => Some((Err(status), None)),
                }
            });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let from = self.member(&req)?;
        let rpc: VoteRequest<u64> = decode(req, "Vote")?;
        Self::same_sender(from, rpc.vote.leader_id().node_id, "Vote")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let from = self.member(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req, "InstallSnapshot")?;
        Self::same_sender(from, rpc.vote.leader_id().node_id, "InstallSnapshot")?;
        reply(&self.snapshots.receive(&self.raft, rpc).await?)
    }

    async fn forward(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        self.member(&req)?;
        let forwarded: ForwardedBatch = decode(req, "Forward")?;
        let (batch, malformed) = forwarded.decode();
        if batch.0.is_empty() {
            return reply(&Ok::<_, ForwardRefusal>((
                0u64,
                malformed.merge(Default::default()),
            )));
        }
        let result = match self.raft.client_write(batch).await {
            Ok(r) => Ok((r.log_id.index, malformed.merge(r.data))),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardRefusal::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardRefusal::Failed(e.to_string())),
        };
        reply(&result)
    }

    async fn session_starts(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let from = self.member(&req)?;
        let starts: Vec<idreg_core::SessionStart> = decode(req, "SessionStarts")?;
        if starts.len() > idreg_core::session_news::MAX_STARTS_PER_ANNOUNCEMENT {
            return Err(Status::invalid_argument(format!(
                "{} session starts in one announcement; at most {}",
                starts.len(),
                idreg_core::session_news::MAX_STARTS_PER_ANNOUNCEMENT
            )));
        }
        // A node speaks only for its own sessions.
        for claimed in starts.iter().map(|s| s.node) {
            Self::same_sender(from, claimed, "SessionStarts")?;
        }
        let answers = match crate::session_herald::listening(&self.sessions) {
            Some(front) => front.heard(&starts),
            None => Vec::new(),
        };
        reply(&answers)
    }

    async fn read_index(
        &self,
        req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        self.member(&req)?;
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _)) => Ok(Response::new(pb::ReadIndexResponse {
                index: read_log_id.map(|l| l.index).unwrap_or(0),
            })),
            Err(e) => Err(Status::unavailable(format!(
                "cannot confirm leadership for a linearizable read: {e}"
            ))),
        }
    }
}

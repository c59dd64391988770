//! The server side of `idreg.v1.Raft`: hands peers' messages to the local raft,
//! writes forwarded batches when this node leads, and answers read-index
//! requests. A payload that does not decode is INVALID_ARGUMENT.

use idreg_core::ProposalBatch;
use idreg_proto::v1 as pb;
use idreg_store::TypeConfig;
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::forwarder::ForwardRefusal;
use crate::wire;

#[derive(Clone)]
pub struct RaftService {
    raft: Raft<TypeConfig>,
}

fn decode<T: DeserializeOwned>(req: Request<pb::RaftPayload>, what: &str) -> Result<T, Status> {
    wire::decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("malformed {what}: {e}")))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<pb::RaftPayload>, Status> {
    let data = wire::encode(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(pb::RaftPayload { data }))
}

impl RaftService {
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
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
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req, "AppendEntries")?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: VoteRequest<u64> = decode(req, "Vote")?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req, "InstallSnapshot")?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<pb::RaftPayload>,
    ) -> Result<Response<pb::RaftPayload>, Status> {
        let batch: ProposalBatch = decode(req, "Forward")?;
        let result = match self.raft.client_write(batch).await {
            Ok(r) => Ok((r.log_id.index, r.data)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ForwardRefusal::NotLeader {
                    leader: f.leader_id,
                })
            }
            Err(e) => Err(ForwardRefusal::Failed(e.to_string())),
        };
        reply(&result)
    }

    async fn read_index(
        &self,
        _req: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
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

//! `idreg.v1.Cluster`: membership and status. Any node answers; a change sent
//! to a follower is passed on to the leader's own Cluster service.

use std::time::Duration;

use idreg_core::Caller;
use idreg_proto::v1 as pb;
use idreg_raft::{ClusterView, MemberView, RegistryNode, WriteError};
use pb::cluster_client::ClusterClient;
use pb::cluster_server::Cluster;
use tonic::{Request, Response, Status};

use crate::api_limits::{ApiLimits, Slots};
use crate::status::{storage, write};

/// Membership changes wait for a learner to catch up; allow for a snapshot.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct ClusterService {
    node: RegistryNode,
    kek: idreg_core::Kek,
    /// Shared by every clone (both listeners): a build holds one until it
    /// is done, and a backup until its download ends.
    snapshot_builds: Slots,
    max_message_bytes: usize,
}

fn view_to_proto(v: ClusterView) -> pb::ClusterStatus {
    pb::ClusterStatus {
        node_id: v.node_id,
        state: v.state.into(),
        leader_id: v.leader_id.unwrap_or(0),
        leader_addr: v.leader_addr,
        term: v.term,
        last_log_index: v.last_log_index,
        applied_index: v.applied_index,
        snapshot_index: v.snapshot_index,
        purged_index: v.purged_index,
        members: v
            .members
            .into_iter()
            .map(|m| pb::Member {
                id: m.id,
                addr: m.addr,
                role: if m.voter { "voter" } else { "learner" }.into(),
                matched_index: m.matched_index,
                lag: m.lag,
                replicating: m.replicating,
            })
            .collect(),
        snapshots_installed: v.snapshots_installed,
        ..Default::default()
    }
}

impl ClusterService {
    pub fn new(node: RegistryNode, kek: idreg_core::Kek, limits: &ApiLimits) -> Self {
        Self {
            node,
            kek,
            snapshot_builds: Slots::new(
                limits.max_snapshot_builds,
                "--max-snapshot-builds",
                "snapshot builds",
            ),
            max_message_bytes: limits.max_message_bytes,
        }
    }

    pub fn into_server(self) -> pb::cluster_server::ClusterServer<Self> {
        let max = self.max_message_bytes;
        pb::cluster_server::ClusterServer::new(self).max_decoding_message_size(max)
    }

    /// A client of the current leader's Cluster service.
    fn leader(&self) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        let view = self.node.view();
        if view.leader_addr.is_empty() {
            return Err(Status::unavailable(
                "no leader is known (election in progress or no quorum); retry",
            ));
        }
        let channel = self
            .node
            .peer_channel(&view.leader_addr)
            .map_err(|e| Status::internal(format!("leader address {}: {e}", view.leader_addr)))?;
        Ok(ClusterClient::new(channel))
    }

    fn check_node_caller<T>(
        &self,
        req: &Request<T>,
        adds_itself: Option<u64>,
    ) -> Result<(), Status> {
        node_caller_allowed(
            req.extensions().get::<Caller>(),
            &self.node.view().members,
            adds_itself,
        )
    }

    /// The status after a change, from this node's view.
    fn status(&self) -> Response<pb::ClusterStatus> {
        Response::new(view_to_proto(self.node.view()))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn get_status(
        &self,
        req: Request<pb::GetClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        let mut status = view_to_proto(self.node.view());
        {
            use idreg_core::RegistryView;
            let reader = self.node.reader();
            status.revocation_list_version = reader.revocation_list_version().map_err(storage)?;
            if let Some(key) = reader.rl_key().map_err(storage)? {
                status.revocation_list_key_pem = key.public_pem();
                status.revocation_list_key_sha256 = key.fingerprint();
            }
        }
        let is_leader = status.leader_id == status.node_id;
        if !req.get_ref().local_only && !is_leader && status.leader_id != 0 {
            // Replication lag is known only to the leader: borrow its view of
            // the members, keep ours for everything else.
            let mut ask = Request::new(pb::GetClusterStatusRequest { local_only: true });
            ask.set_timeout(Duration::from_secs(3));
            if let Ok(leader) = self.leader() {
                if let Ok(r) = leader.clone().get_status(ask).await {
                    status.members = r.into_inner().members;
                }
            }
        }
        Ok(Response::new(status))
    }

    async fn export_revocation_list(
        &self,
        req: Request<pb::ExportRevocationListRequest>,
    ) -> Result<Response<pb::SignedRevocationList>, Status> {
        use idreg_store::SignedListError;
        let reader = self.node.reader();
        let version = reader.revocation_list_version().map_err(storage)?;
        let since = req.get_ref().since;
        let cose = reader
            .signed_revocation_list(&self.kek, version, since, crate::convert::now_ms())
            .map_err(|e| match e {
                SignedListError::NoKey => Status::unavailable(e.to_string()),
                SignedListError::Store(e) => storage(e),
                SignedListError::Sign(e) => Status::internal(e.to_string()),
            })?;
        Ok(Response::new(pb::SignedRevocationList {
            cose_sign1: cose,
            version,
        }))
    }

    async fn add_node(
        &self,
        req: Request<pb::AddNodeRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        self.check_node_caller(&req, Some(req.get_ref().id))?;
        let r = req.into_inner();
        check_new_member(r.id, &r.addr)?;
        match self.node.add_node(r.id, &r.addr, r.learner_only).await {
            Ok(()) => Ok(self.status()),
            Err(WriteError::NotLeader { .. }) => {
                let mut fwd = Request::new(r);
                fwd.set_timeout(CHANGE_TIMEOUT);
                self.leader()?.add_node(fwd).await
            }
            Err(e) => Err(write(e)),
        }
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        self.check_node_caller(&req, None)?;
        let r = req.into_inner();
        match self.node.remove_node(r.id).await {
            Ok(()) => Ok(self.status()),
            Err(WriteError::NotLeader { .. }) => {
                let mut fwd = Request::new(r);
                fwd.set_timeout(CHANGE_TIMEOUT);
                self.leader()?.remove_node(fwd).await
            }
            Err(e) => Err(write(e)),
        }
    }

    type SaveSnapshotStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::SnapshotChunk, Status>>;

    async fn save_snapshot(
        &self,
        req: Request<pb::SaveSnapshotRequest>,
    ) -> Result<Response<Self::SaveSnapshotStream>, Status> {
        self.check_node_caller(&req, None)?;
        let slot = self.snapshot_builds.take()?;
        let snapshot_index = self.node.snapshot_now().await.map_err(write)?;
        let path = self
            .node
            .store()
            .current_snapshot_file()
            .map_err(crate::status::storage)?
            .ok_or_else(|| Status::failed_precondition("no snapshot was built"))?;
        // Read it open before a newer snapshot could replace the file.
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(crate::status::storage)?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let _slot = slot;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let chunk = pb::SnapshotChunk {
                            data: buf[..n].to_vec(),
                            snapshot_index,
                        };
                        if tx.send(Ok(chunk)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(crate::status::storage(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn trigger_snapshot(
        &self,
        req: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        self.check_node_caller(&req, None)?;
        let _slot = self.snapshot_builds.take()?;
        let snapshot_index = self.node.snapshot_now().await.map_err(write)?;
        Ok(Response::new(pb::TriggerSnapshotResponse {
            snapshot_index,
        }))
    }
}

/// On the peer listener the caller is a node: a member may do anything (it
/// forwards operators' requests to the leader); a node that is not a member
/// yet may only ask to add itself (`adds_itself`). Client callers passed the
/// role check of the client listener already.
fn node_caller_allowed(
    caller: Option<&Caller>,
    members: &[MemberView],
    adds_itself: Option<u64>,
) -> Result<(), Status> {
    let Some(Caller::Node(id)) = caller else {
        return Ok(());
    };
    if members.iter().any(|m| m.id == *id) || adds_itself == Some(*id) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "node {id} is not a member: it may only ask to add itself"
    )))
}

/// A node to add: an id from 1, and a peer address as HOST:PORT.
fn check_new_member(id: u64, addr: &str) -> Result<(), Status> {
    if id == 0 {
        return Err(Status::invalid_argument("id: node ids start at 1"));
    }
    let port_ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains('/')
            && !host.contains('@')
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !port_ok {
        return Err(Status::invalid_argument(
            "addr: give the node's peer address as HOST:PORT (no scheme, no path)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use idreg_core::{Principal, Role};
    use tonic::Code;

    use super::*;

    fn member(id: u64) -> MemberView {
        MemberView {
            id,
            addr: format!("10.0.0.{id}:5416"),
            voter: true,
            matched_index: 0,
            lag: 0,
            replicating: true,
        }
    }

    #[test]
    fn a_node_that_is_not_a_member_may_only_ask_to_add_itself() {
        let members = [member(1), member(2)];
        let node = |id| Caller::Node(id);
        assert!(node_caller_allowed(Some(&node(2)), &members, None).is_ok());
        assert!(node_caller_allowed(Some(&node(3)), &members, Some(3)).is_ok());
        for adds in [None, Some(4)] {
            let e = node_caller_allowed(Some(&node(3)), &members, adds).unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
            assert!(e.message().contains("node 3"), "{e:?}");
        }
        // Operators were checked by role on the client listener.
        let ops = Caller::Client(Principal {
            name: "ops".into(),
            role: Role::Admin,
        });
        assert!(node_caller_allowed(Some(&ops), &members, None).is_ok());
        assert!(node_caller_allowed(None, &[], None).is_ok());
    }

    #[test]
    fn a_new_member_needs_an_id_and_a_host_and_port() {
        for ok in ["10.0.0.4:5416", "idreg-3.idreg-peer:5416", "[::1]:5416"] {
            assert!(check_new_member(4, ok).is_ok(), "{ok}");
        }
        assert!(check_new_member(0, "10.0.0.4:5416")
            .unwrap_err()
            .message()
            .starts_with("id:"));
        for bad in [
            "10.0.0.4",
            ":5416",
            "10.0.0.4:0",
            "10.0.0.4:65536",
            "https://10.0.0.4:5416",
            "user@10.0.0.4:5416",
            "10.0.0.4:port",
        ] {
            let e = check_new_member(4, bad).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}");
            assert!(e.message().starts_with("addr:"), "{bad}: {e:?}");
        }
    }

    #[test]
    fn membership_refusals_keep_their_codes() {
        let cases = [
            (
                WriteError::MemberElsewhere {
                    id: 3,
                    addr: "10.0.0.3:5416".into(),
                },
                Code::AlreadyExists,
            ),
            (WriteError::NotAMember(9), Code::NotFound),
            (
                WriteError::Refused("node 1 is the last voter".into()),
                Code::FailedPrecondition,
            ),
            (WriteError::NoLeader, Code::Unavailable),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let status = write(e);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }
}

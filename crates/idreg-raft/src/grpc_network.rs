//! The raft network over gRPC: one lazily connected `idreg.v1.Raft` client per
//! peer, AppendEntries on a long-lived stream where the peer has one.
//! openraft's messages travel as `wire`-encoded payloads; the reply carries
//! the peer's `Result`, so a refusal by the peer's raft comes back as
//! openraft's `RemoteError`, and a transport failure as `Unreachable`
//! (openraft then backs off) or `Network`.

use std::net::IpAddr;
use std::time::Duration;

use idreg_proto::v1::raft_client::RaftClient;
use idreg_proto::v1::RaftPayload;
use idreg_store::{NodeId, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{append_budget, wire};

/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A node's credentials for its peers: the peer CA it trusts and its own
/// node certificate (presented as the client certificate).
#[derive(Clone)]
pub struct PeerTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls(..)")
    }
}

/// How this node connects to its peers' peer ports.
#[derive(Clone, Debug, Default)]
pub struct PeerDialer {
    /// Source address of connections (the node's own listen IP), so peers
    /// and the network see node-to-node traffic come from the node's address.
    pub local_ip: Option<IpAddr>,
    /// `None` only under `--insecure`.
    pub tls: Option<PeerTls>,
}

impl PeerDialer {
    /// A lazily connected channel to the peer at `addr` (`host:port`).
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let resolved = resolve_override(addr);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut ep = Endpoint::from_shared(format!("{scheme}://{resolved}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .local_address(self.local_ip);
        if let Some(tls) = &self.tls {
            // The certificate is checked against the name the peer is known
            // by, even when a test maps that name to another address.
            ep = ep.tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                    .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                    .domain_name(host),
            )?;
        }
        Ok(ep.connect_lazy())
    }
}

/// Test-only: `IDREG_TEST_RESOLVE=host=ip,host=ip` maps peer host names to
/// addresses, so tests can run nodes under Kubernetes-style DNS names on
/// 127.0.0.x. Unset in production: names go to the system resolver.
fn resolve_override(addr: &str) -> String {
    static MAP: std::sync::OnceLock<std::collections::HashMap<String, String>> =
        std::sync::OnceLock::new();
    let map = MAP.get_or_init(|| {
        std::env::var("IDREG_TEST_RESOLVE")
            .unwrap_or_default()
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(h, ip)| (h.trim().to_owned(), ip.trim().to_owned()))
            .collect()
    });
    match addr.rsplit_once(':') {
        Some((host, port)) => match map.get(host) {
            Some(ip) => format!("{ip}:{port}"),
            None => addr.to_owned(),
        },
        None => addr.to_owned(),
    }
}

pub fn raft_client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_decoding_message_size(wire::MAX_PAYLOAD)
        .max_encoding_message_size(wire::MAX_PAYLOAD)
}

/// Makes a [`PeerClient`] per target; openraft keeps one per replication stream.
#[derive(Debug, Clone, Default)]
pub struct GrpcNetwork {
    pub dialer: PeerDialer,
}

impl RaftNetworkFactory<TypeConfig> for GrpcNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: self.dialer.channel(&node.addr).map(raft_client),
            addr: node.addr.clone(),
            stream: None,
            unary_only: false,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    /// An address that is not a valid URI stays an error for every call.
    client: Result<RaftClient<Channel>, tonic::transport::Error>,
    /// AppendEntries travel on this stream while it lasts; any failure
    /// drops it and the next call opens another.
    stream: Option<AppendStream>,
    /// The peer has no AppendEntriesStream: AppendEntries as unary calls,
    /// until a call fails below raft (the peer went away, and may come back
    /// upgraded): then the next call asks for the stream again.
    unary_only: bool,
}

/// An open `AppendEntriesStream`: a request goes in on `requests`, and its
/// reply comes back on `replies`, one for each, in order.
struct AppendStream {
    requests: tokio::sync::mpsc::Sender<RaftPayload>,
    replies: tonic::Streaming<RaftPayload>,
}

/// A failure below raft: the peer was not reached or did not answer sanely.
#[derive(Debug, thiserror::Error)]
#[error("peer {target} at {addr}: {why}")]
struct TransportError {
    target: NodeId,
    addr: String,
    why: String,
}

impl PeerClient {
    fn fail<E: std::error::Error>(
        &self,
        why: String,
        reached: bool,
    ) -> RPCError<NodeId, BasicNode, E> {
        let e = TransportError {
            target: self.target,
            addr: self.addr.clone(),
            why,
        };
        if reached {
            RPCError::Network(NetworkError::new(&e))
        } else {
            RPCError::Unreachable(Unreachable::new(&e))
        }
    }

    /// Sends `req` with `call` and decodes the peer's `Result<Resp, E>`.
    async fn call<Req, Resp, E, F, Fut>(
        &mut self,
        req: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let data = wire::encode(req).map_err(|e| self.fail(format!("encode: {e}"), false))?;
        self.call_encoded(data, option, call).await
    }

    /// Sends the encoded `data` with `call` and decodes the peer's
    /// `Result<Resp, E>`.
    async fn call_encoded<Resp, E, F, Fut>(
        &mut self,
        data: Vec<u8>,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
        F: FnOnce(RaftClient<Channel>, tonic::Request<RaftPayload>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<RaftPayload>, tonic::Status>>,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(self.fail(format!("bad address: {e}"), false)),
        };
        let mut request = tonic::Request::new(wire::payload(data));
        request.set_timeout(option.hard_ttl());
        match call(client, request).await {
            Ok(r) => self.answer(r.into_inner()),
            Err(status) => Err(self.refused(status)),
        }
    }

    /// A failed call's status as openraft's error.
    fn refused<E: std::error::Error>(
        &self,
        status: tonic::Status,
    ) -> RPCError<NodeId, BasicNode, E> {
        // A refused or timed-out connection means the peer is down:
        // openraft backs off instead of retrying at once.
        let reached = !matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        );
        self.fail(format!("{status}"), reached)
    }

    /// The peer's `Result<Resp, E>`, decoded from its reply. The error type
    /// is openraft's, as `RaftNetwork` returns it.
    #[allow(clippy::result_large_err)]
    fn answer<Resp, E>(&self, reply: RaftPayload) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Resp, E> = wire::decode_payload(&reply)
            .map_err(|e| self.fail(format!("undecodable reply: {e}"), true))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// Opens an AppendEntriesStream; `None` when the peer has none (an
    /// older idreg), which then gets unary calls.
    async fn open_stream<E: std::error::Error>(
        &self,
    ) -> Result<Option<AppendStream>, RPCError<NodeId, BasicNode, E>> {
        let mut client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(self.fail(format!("bad address: {e}"), false)),
        };
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        match client
            .append_entries_stream(ReceiverStream::new(outgoing))
            .await
        {
            Ok(r) => Ok(Some(AppendStream {
                requests,
                replies: r.into_inner(),
            })),
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(None),
            Err(status) => Err(self.refused(status)),
        }
    }

    /// Sends `data` on the open stream and reads its reply. The stream is
    /// taken for the call and put back only once the reply is in: a call
    /// cut short (openraft drops it at its timeout) leaves no stream whose
    /// next reply belongs to an abandoned request.
    async fn streamed<Resp, E>(
        &mut self,
        data: Vec<u8>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let Some(mut stream) = self.stream.take() else {
            return Err(self.fail("no open stream".into(), true));
        };
        if stream.requests.send(wire::payload(data)).await.is_err() {
            return Err(self.fail("the stream closed".into(), true));
        }
        let reply = match stream.replies.message().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(self.fail("the peer ended the stream".into(), true)),
            Err(status) => return Err(self.refused(status)),
        };
        self.stream = Some(stream);
        self.answer(reply)
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let data = wire::encode(&rpc).map_err(|e| self.fail(format!("encode: {e}"), false))?;
        let (rpc, cut) = append_budget::fit(rpc, data.len(), append_budget::APPEND_BYTES);
        let data = match cut {
            None => data,
            Some(_) => wire::encode(&rpc).map_err(|e| self.fail(format!("encode: {e}"), false))?,
        };
        if self.stream.is_none() && !self.unary_only {
            match self.open_stream().await? {
                Some(stream) => self.stream = Some(stream),
                None => self.unary_only = true,
            }
        }
        let reply = if self.unary_only {
            let unary = self
                .call_encoded(data, &option, |mut c, r| async move {
                    c.append_entries(r).await
                })
                .await;
            if matches!(unary, Err(RPCError::Unreachable(_) | RPCError::Network(_))) {
                self.unary_only = false;
            }
            unary?
        } else {
            self.streamed(data).await?
        };
        // The follower took the prefix sent; openraft sends the rest next.
        Ok(match (reply, cut) {
            (AppendEntriesResponse::Success, Some(last)) => {
                AppendEntriesResponse::PartialSuccess(Some(last))
            }
            (reply, _) => reply,
        })
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, |mut c, r| async move {
            c.install_snapshot(r).await
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |mut c, r| async move { c.vote(r).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::time::Duration;

    use idreg_proto::v1 as pb;
    use openraft::{CommittedLeaderId, LogId, Vote};
    use tokio_stream::Stream;
    use tonic::{Request, Response, Status, Streaming};

    /// A peer that answers AppendEntries with `PartialSuccess(prev_log_id)`,
    /// so each reply names its request. It holds the reply to a request
    /// whose `prev_log_id` is `SLOW` for a second; `streams` false plays an
    /// idreg without AppendEntriesStream.
    #[derive(Clone)]
    struct EchoPeer {
        streams: bool,
    }

    const SLOW: u64 = 666;

    async fn echo(payload: pb::RaftPayload) -> Result<pb::RaftPayload, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            wire::decode_payload(&payload).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if rpc.prev_log_id.map(|l| l.index) == Some(SLOW) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> =
            Ok(AppendEntriesResponse::PartialSuccess(rpc.prev_log_id));
        Ok(wire::payload(wire::encode(&answer).unwrap()))
    }

    type Replies = Pin<Box<dyn Stream<Item = Result<pb::RaftPayload, Status>> + Send>>;

    #[tonic::async_trait]
    impl pb::raft_server::Raft for EchoPeer {
        async fn append_entries(
            &self,
            req: Request<pb::RaftPayload>,
        ) -> Result<Response<pb::RaftPayload>, Status> {
            Ok(Response::new(echo(req.into_inner()).await?))
        }

        type AppendEntriesStreamStream = Replies;

        async fn append_entries_stream(
            &self,
            req: Request<Streaming<pb::RaftPayload>>,
        ) -> Result<Response<Replies>, Status> {
            if !self.streams {
                return Err(Status::unimplemented("no AppendEntriesStream here"));
            }
            let replies = futures::stream::unfold(req.into_inner(), |mut requests| async move {
                let payload = requests.message().await.ok()??;
                Some((echo(payload).await, requests))
            });
            Ok(Response::new(Box::pin(replies)))
        }

        async fn vote(
            &self,
            _: Request<pb::RaftPayload>,
        ) -> Result<Response<pb::RaftPayload>, Status> {
            Err(Status::unimplemented("vote"))
        }

        async fn install_snapshot(
            &self,
            _: Request<pb::RaftPayload>,
        ) -> Result<Response<pb::RaftPayload>, Status> {
            Err(Status::unimplemented("install_snapshot"))
        }

        async fn forward(
            &self,
            _: Request<pb::RaftPayload>,
        ) -> Result<Response<pb::RaftPayload>, Status> {
            Err(Status::unimplemented("forward"))
        }

        async fn read_index(
            &self,
            _: Request<pb::ReadIndexRequest>,
        ) -> Result<Response<pb::ReadIndexResponse>, Status> {
            Err(Status::unimplemented("read_index"))
        }

        async fn session_starts(
            &self,
            _: Request<pb::RaftPayload>,
        ) -> Result<Response<pb::RaftPayload>, Status> {
            Err(Status::unimplemented("session_starts"))
        }
    }

    /// A client of an `EchoPeer` served on a loopback port.
    async fn client_of(peer: EchoPeer) -> PeerClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::raft_server::RaftServer::new(peer))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        GrpcNetwork::default()
            .new_client(2, &BasicNode { addr })
            .await
    }

    fn request(prev: u64) -> AppendEntriesRequest<TypeConfig> {
        AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), prev)),
            leader_commit: None,
            entries: Vec::new(),
        }
    }

    /// The `prev_log_id` index a reply echoes.
    async fn send(client: &mut PeerClient, prev: u64) -> u64 {
        let option = RPCOption::new(Duration::from_secs(5));
        match client.append_entries(request(prev), option).await.unwrap() {
            AppendEntriesResponse::PartialSuccess(Some(l)) => l.index,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn replies_on_the_stream_answer_their_own_requests() {
        let mut client = client_of(EchoPeer { streams: true }).await;
        for prev in 1..=20 {
            assert_eq!(send(&mut client, prev).await, prev);
        }
        assert!(client.stream.is_some() && !client.unary_only);

        // A call cut short by openraft's timeout: its late reply must not
        // be taken as the next request's.
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            client.append_entries(request(SLOW), RPCOption::new(Duration::from_secs(5))),
        )
        .await;
        assert!(cut.is_err(), "the slow request was answered in time");
        assert!(client.stream.is_none(), "the cut call's stream was kept");
        for prev in 21..=25 {
            assert_eq!(send(&mut client, prev).await, prev);
        }
    }

    #[tokio::test]
    async fn a_peer_without_the_stream_gets_unary_calls() {
        let mut client = client_of(EchoPeer { streams: false }).await;
        for prev in 1..=5 {
            assert_eq!(send(&mut client, prev).await, prev);
        }
        assert!(client.unary_only && client.stream.is_none());
    }

    /// Serves `peer` on `listener` until `stop` fires.
    fn serve_until(
        peer: EchoPeer,
        listener: tokio::net::TcpListener,
        stop: tokio::sync::oneshot::Receiver<()>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(pb::raft_server::RaftServer::new(peer))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    async {
                        let _ = stop.await;
                    },
                )
                .await
                .unwrap();
        })
    }

    #[tokio::test]
    async fn a_peer_back_with_the_stream_gets_it() {
        // An older peer: unary calls.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let old = serve_until(EchoPeer { streams: false }, listener, stopped);
        let mut client = GrpcNetwork::default()
            .new_client(
                2,
                &BasicNode {
                    addr: addr.to_string(),
                },
            )
            .await;
        assert_eq!(send(&mut client, 1).await, 1);
        assert!(client.unary_only);

        // It goes away: a call fails below raft.
        stop.send(()).unwrap();
        old.await.unwrap();
        let option = RPCOption::new(Duration::from_secs(5));
        let down = client.append_entries(request(2), option).await;
        assert!(
            matches!(down, Err(RPCError::Unreachable(_) | RPCError::Network(_))),
            "{down:?}"
        );

        // It comes back upgraded, on the same address: the stream again.
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (_keep, never) = tokio::sync::oneshot::channel();
        serve_until(EchoPeer { streams: true }, listener, never);
        for prev in 3..=5 {
            assert_eq!(send(&mut client, prev).await, prev);
        }
        assert!(client.stream.is_some() && !client.unary_only);
    }
}

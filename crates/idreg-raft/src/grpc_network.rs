//! The raft network over gRPC: one lazily connected `idreg.v1.Raft` client per
//! peer. openraft's messages travel as `wire`-encoded payloads; the reply
//! carries the peer's `Result`, so a refusal by the peer's raft comes back as
//! openraft's `RemoteError`, and a transport failure as `Unreachable` (openraft
//! then backs off) or `Network`.

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
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    /// An address that is not a valid URI stays an error for every call.
    client: Result<RaftClient<Channel>, tonic::transport::Error>,
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
        let reply = match call(client, request).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                // A refused or timed-out connection means the peer is down:
                // openraft backs off instead of retrying at once.
                let reached = !matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                );
                return Err(self.fail(format!("{status}"), reached));
            }
        };
        let result: Result<Resp, E> = wire::decode_payload(&reply)
            .map_err(|e| self.fail(format!("undecodable reply: {e}"), true))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
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
        let reply = self
            .call_encoded(data, &option, |mut c, r| async move {
                c.append_entries(r).await
            })
            .await?;
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

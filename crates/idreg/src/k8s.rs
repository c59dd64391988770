//! `idreg serve --k8s`: a node's identity and membership from its StatefulSet
//! pod. `HOSTNAME=idreg-3` is ordinal 3, node id 4; peers are
//! `idreg-N.PEER_SERVICE.NAMESPACE.svc`. Ordinal 0 founds the cluster when no
//! data exists and no peer already runs one; every other pod (and a pod that
//! left in its preStop hook) asks the cluster to add it, then is promoted
//! once caught up.

use std::time::Duration;

use anyhow::{bail, Context};
use idreg_proto::v1 as pb;
use idreg_raft::grpc_network::PeerDialer;
use idreg_raft::RegistryNode;
use pb::cluster_client::ClusterClient;
use tracing::{info, warn};

/// Ordinals probed for a running cluster (a cluster has at most 7 members).
const MAX_ORDINALS: u64 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub set_name: String,
    pub ordinal: u64,
    pub service: String,
    pub namespace: String,
    pub port: u16,
}

impl PodIdentity {
    /// From `HOSTNAME` (`NAME-ORDINAL`), the peer Service and the namespace.
    pub fn parse(
        hostname: &str,
        service: &str,
        namespace: &str,
        port: u16,
    ) -> anyhow::Result<Self> {
        let (set_name, ordinal) = hostname.rsplit_once('-').with_context(|| {
            format!("--k8s: HOSTNAME {hostname:?} is not a StatefulSet pod name (NAME-ORDINAL)")
        })?;
        let ordinal: u64 = ordinal.parse().with_context(|| {
            format!("--k8s: HOSTNAME {hostname:?} does not end in a pod ordinal")
        })?;
        if set_name.is_empty() || service.is_empty() || namespace.is_empty() {
            bail!("--k8s: pod name, peer service and namespace must all be set");
        }
        Ok(Self {
            set_name: set_name.to_owned(),
            ordinal,
            service: service.to_owned(),
            namespace: namespace.to_owned(),
            port,
        })
    }

    /// The pod this process runs as, from the environment the StatefulSet
    /// gives it (HOSTNAME, IDREG_K8S_PEER_SERVICE, POD_NAMESPACE).
    pub fn from_env(peer_port: u16) -> anyhow::Result<Self> {
        let env = |k: &str, default: &str| std::env::var(k).unwrap_or_else(|_| default.into());
        Self::parse(
            &env("HOSTNAME", ""),
            &env("IDREG_K8S_PEER_SERVICE", "idreg-peers"),
            &env("POD_NAMESPACE", "default"),
            peer_port,
        )
    }

    pub fn node_id(&self) -> u64 {
        self.ordinal + 1
    }

    /// The stable address of pod `ordinal` of this StatefulSet.
    pub fn peer_addr(&self, ordinal: u64) -> String {
        format!(
            "{}-{ordinal}.{}.{}.svc:{}",
            self.set_name, self.service, self.namespace, self.port
        )
    }

    pub fn addr(&self) -> String {
        self.peer_addr(self.ordinal)
    }
}

/// This pod's own node on its own peer port, as its node certificate: how
/// the preStop hook leaves the cluster with no client certificate of its
/// own (`idreg cluster leave --k8s`).
pub fn own_node_target() -> anyhow::Result<idreg_client::Target> {
    use anyhow::Context;
    let pki = std::env::var("IDREG_PKI_DIR").context("IDREG_PKI_DIR is not set")?;
    let peer: std::net::SocketAddr = std::env::var("IDREG_PEER_ADDR")
        .context("IDREG_PEER_ADDR is not set")?
        .parse()
        .context("IDREG_PEER_ADDR")?;
    let pod = PodIdentity::from_env(peer.port())?;
    let node = crate::pki::PkiDir::node_name(pod.node_id());
    let tls = idreg_client::ClientTls::from_pki_dir(std::path::Path::new(&pki), &node)?;
    let ip = match peer.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    Ok(idreg_client::Target::tls(
        std::net::SocketAddr::new(ip, peer.port()).to_string(),
        tls,
    ))
}

/// A pod's cluster status (`local_only`: its own view; else the leader's
/// view of the members), or `None` if it does not answer.
async fn status_of(dialer: &PeerDialer, addr: &str, local_only: bool) -> Option<pb::ClusterStatus> {
    let channel = dialer.channel(addr).ok()?;
    let mut req = tonic::Request::new(pb::GetClusterStatusRequest { local_only });
    req.set_timeout(Duration::from_secs(2));
    ClusterClient::new(channel)
        .get_status(req)
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Whether a pod that knows the leader says (with the leader's view of the
/// members) that this node is a voter.
async fn member_per_cluster(dialer: &PeerDialer, me: &PodIdentity) -> bool {
    for o in (0..MAX_ORDINALS).filter(|o| *o != me.ordinal) {
        if let Some(s) = status_of(dialer, &me.peer_addr(o), false).await {
            if s.leader_id != 0 {
                return s
                    .members
                    .iter()
                    .any(|m| m.id == me.node_id() && m.role == "voter");
            }
        }
    }
    false
}

/// Whether some other pod already runs a cluster (it knows a leader).
pub async fn cluster_elsewhere(dialer: &PeerDialer, me: &PodIdentity) -> bool {
    for o in (0..MAX_ORDINALS).filter(|o| *o != me.ordinal) {
        if let Some(s) = status_of(dialer, &me.peer_addr(o), true).await {
            if s.leader_id != 0 && !s.members.is_empty() {
                return true;
            }
        }
    }
    false
}

/// Until the cluster (as its leader sees it, asked through the other pods)
/// counts this node as a voter: ask the pods, in turn, to add it. Elections
/// stay off meanwhile and are allowed once it is in.
pub async fn join(node: RegistryNode, me: PodIdentity) {
    node.allow_elections(false);
    let mut delay = Duration::from_millis(200);
    loop {
        if member_per_cluster(node.dialer(), &me).await {
            info!(node_id = me.node_id(), "member of the cluster");
            node.allow_elections(true);
            return;
        }
        for o in (0..MAX_ORDINALS).filter(|o| *o != me.ordinal) {
            let Ok(channel) = node.peer_channel(&me.peer_addr(o)) else {
                continue;
            };
            let mut req = tonic::Request::new(pb::AddNodeRequest {
                id: me.node_id(),
                addr: me.addr(),
                learner_only: false,
            });
            req.set_timeout(Duration::from_secs(300));
            match ClusterClient::new(channel).add_node(req).await {
                Ok(_) => {
                    info!(via = o, node_id = me.node_id(), "added to the cluster");
                    node.allow_elections(true);
                    return;
                }
                Err(s) => warn!(via = o, "joining the cluster: {}", s.message()),
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_give_ids_and_peer_addresses() {
        let p = PodIdentity::parse("idreg-3", "idreg-peers", "iot", 50051).unwrap();
        assert_eq!(p.node_id(), 4);
        assert_eq!(p.addr(), "idreg-3.idreg-peers.iot.svc:50051");
        assert_eq!(p.peer_addr(0), "idreg-0.idreg-peers.iot.svc:50051");
        let p = PodIdentity::parse("my-idreg-0", "s", "n", 1).unwrap();
        assert_eq!((p.set_name.as_str(), p.ordinal), ("my-idreg", 0));
        assert!(PodIdentity::parse("idreg", "s", "n", 1).is_err());
        assert!(PodIdentity::parse("idreg-x", "s", "n", 1).is_err());
    }
}

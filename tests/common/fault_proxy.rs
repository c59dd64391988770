//! A TCP proxy in front of a node's gRPC port that the test can cut: it
//! refuses and drops connections from blocked source addresses (or from
//! everyone), which partitions nodes without root or network namespaces.
//! Nodes bind their outgoing peer connections to their own 127.0.0.x, so the
//! source address says which node is calling.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Default)]
struct Rules {
    all_blocked: bool,
    blocked: HashSet<IpAddr>,
    /// Live connections: (source, the task copying its bytes).
    conns: Vec<(IpAddr, AbortHandle)>,
    /// Where new connections go (host:port).
    target: String,
}

impl Rules {
    fn refuses(&self, ip: IpAddr) -> bool {
        self.all_blocked || self.blocked.contains(&ip)
    }

    fn drop_refused(&mut self) {
        let (cut, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.conns)
            .into_iter()
            .partition(|(ip, _)| self.all_blocked || self.blocked.contains(ip));
        for (_, task) in cut {
            task.abort();
        }
        self.conns = keep;
    }
}

pub struct FaultProxy {
    pub addr: String,
    rules: Arc<Mutex<Rules>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (host:port) and forwards to `target`.
    pub async fn start(listen: &str, target: &str) -> FaultProxy {
        let listener = TcpListener::bind(listen).await.expect("proxy bind");
        let addr = listener.local_addr().unwrap().to_string();
        let rules = Arc::new(Mutex::new(Rules {
            target: target.to_owned(),
            ..Rules::default()
        }));
        let r = rules.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, peer)) = listener.accept().await {
                if r.lock().unwrap().refuses(peer.ip()) {
                    drop(inbound);
                    continue;
                }
                let target = r.lock().unwrap().target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut rules = r.lock().unwrap();
                rules.conns.retain(|(_, t)| !t.is_finished());
                rules.conns.push((peer.ip(), task.abort_handle()));
            }
        });
        FaultProxy {
            addr,
            rules,
            accept,
        }
    }

    /// Sends new connections to `target` from now on: the node behind the
    /// proxy is started after it, on a port the kernel picks.
    pub fn retarget(&self, target: &str) {
        self.rules.lock().unwrap().target = target.to_owned();
    }

    /// Cuts everyone off from the node behind this proxy.
    pub fn block_all(&self) {
        let mut r = self.rules.lock().unwrap();
        r.all_blocked = true;
        r.drop_refused();
    }

    /// Cuts connections coming from `ip`.
    pub fn block(&self, ip: IpAddr) {
        let mut r = self.rules.lock().unwrap();
        r.blocked.insert(ip);
        r.drop_refused();
    }

    pub fn heal(&self) {
        let mut r = self.rules.lock().unwrap();
        r.all_blocked = false;
        r.blocked.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        for (_, t) in self.rules.lock().unwrap().conns.drain(..) {
            t.abort();
        }
    }
}

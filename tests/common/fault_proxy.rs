//! A TCP proxy in front of a node's gRPC port that the test can cut: it
//! refuses and drops connections from blocked source addresses (or from
//! everyone), which partitions nodes without root or network namespaces.
//! Nodes bind their outgoing peer connections to their own 127.0.0.x, so the
//! source address says which node is calling. It can also slow the bytes
//! going to the node, as a congested link or a slow peer would.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    /// Bytes per second toward the node; 0: unlimited.
    rate: Arc<AtomicU64>,
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
            while let Ok((inbound, peer)) = listener.accept().await {
                if r.lock().unwrap().refuses(peer.ip()) {
                    drop(inbound);
                    continue;
                }
                let (target, rate) = {
                    let r = r.lock().unwrap();
                    (r.target.clone(), r.rate.clone())
                };
                let task = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        let (mut from_node, mut to_node) = outbound.into_split();
                        let (mut from_peer, mut to_peer) = inbound.into_split();
                        let back = tokio::io::copy(&mut from_node, &mut to_peer);
                        tokio::select! {
                            _ = back => {}
                            _ = paced_copy(&mut from_peer, &mut to_node, &rate) => {}
                        }
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

    /// Paces the bytes going to the node at `bytes_per_sec` (0: unlimited),
    /// on live connections too.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.rules
            .lock()
            .unwrap()
            .rate
            .store(bytes_per_sec, Ordering::Relaxed);
    }

    pub fn heal(&self) {
        let mut r = self.rules.lock().unwrap();
        r.all_blocked = false;
        r.blocked.clear();
    }
}

/// Copies `from` to `to`, no faster than `rate` bytes per second (when not
/// 0): each write waits until the bytes sent so far are due, so small reads
/// do not each pay the timer's millisecond.
async fn paced_copy(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    rate: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 << 10];
    // (rate, since, bytes sent since): restarted when the rate changes.
    let mut window = (0u64, tokio::time::Instant::now(), 0u64);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now_rate = rate.load(Ordering::Relaxed);
        if now_rate != window.0 {
            window = (now_rate, tokio::time::Instant::now(), 0);
        }
        if now_rate > 0 {
            window.2 += n as u64;
            let due = window.1 + Duration::from_secs_f64(window.2 as f64 / now_rate as f64);
            tokio::time::sleep_until(due).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
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

//! One UDP socket of the device front: a single task reads the socket and
//! routes each datagram by source address to that peer's session task. Only a
//! ClientHello creates a peer; the table of peers is bounded; a session that
//! ends (or a handshake that fails or times out) removes its peer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use idreg_core::SessionEnd;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::datagram::{classify, refuse_plain_coap, FirstDatagram};
use crate::live_sessions::{end_signal, EndSignal};
use crate::peer_conn::{ByteCounters, PeerConn, PEER_QUEUE};
use crate::peer_table::PeerTable;
use crate::session::{run_session, SessionSpawn};
use crate::shared::{CredentialFamily, FrontShared};

/// What a session task tells the demultiplexer about its peer.
#[derive(Debug)]
pub enum PeerEvent {
    Established(SocketAddr, u64),
    Gone(SocketAddr, u64),
}

struct Peer {
    inbound: mpsc::Sender<Bytes>,
    end: EndSignal,
}

pub struct UdpListener {
    socket: Arc<UdpSocket>,
    family: CredentialFamily,
    shared: Arc<FrontShared>,
}

impl UdpListener {
    pub async fn bind(
        addr: SocketAddr,
        family: CredentialFamily,
        shared: Arc<FrontShared>,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(addr).await?;
        Ok(Self {
            socket: Arc::new(socket),
            family,
            shared,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves until `shutdown` turns true, then ends every session.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut table: PeerTable<Peer> = PeerTable::new(self.shared.config.max_peers);
        let (events_tx, mut events) = mpsc::unbounded_channel::<PeerEvent>();
        let started = Instant::now();
        let mut buf = vec![0u8; 2048];
        let mut published = (0usize, 0usize);
        loop {
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        let now = started.elapsed().as_millis() as u64;
                        self.route(&mut table, &events_tx, &buf[..n], from, now).await;
                    }
                    // ICMP port unreachable from a vanished peer surfaces here on
                    // some systems; it concerns that peer only.
                    Err(e) => debug!(error = %e, "recv_from failed"),
                },
                Some(ev) = events.recv() => match ev {
                    PeerEvent::Established(addr, g) => table.mark_established(&addr, g),
                    PeerEvent::Gone(addr, g) => { table.remove(&addr, g); }
                },
                _ = shutdown.changed() => break,
            }
            self.publish(&table, &mut published);
        }
        for (_, peer) in table.drain() {
            peer.end.send_replace(Some(SessionEnd::Shutdown));
        }
        self.publish(&table, &mut published);
    }

    /// Keeps the shared gauges equal to the sum over sockets.
    fn publish(&self, table: &PeerTable<Peer>, last: &mut (usize, usize)) {
        let now = (table.len(), table.handshaking());
        if now != *last {
            let s = &self.shared.stats;
            s.peers.fetch_add(now.0 as u64, Ordering::Relaxed);
            s.peers.fetch_sub(last.0 as u64, Ordering::Relaxed);
            s.handshaking.fetch_add(now.1 as u64, Ordering::Relaxed);
            s.handshaking.fetch_sub(last.1 as u64, Ordering::Relaxed);
            *last = now;
        }
    }

    async fn route(
        &self,
        table: &mut PeerTable<Peer>,
        events: &mpsc::UnboundedSender<PeerEvent>,
        d: &[u8],
        from: SocketAddr,
        now: u64,
    ) {
        let kind = classify(d);
        if let Some(peer) = table.get(&from) {
            // A new ClientHello from an established peer's address: the device
            // restarted and reuses its port. Its old session is gone.
            let restarted = kind == FirstDatagram::ClientHello && table.is_established(&from);
            if !restarted {
                if peer.inbound.try_send(Bytes::copy_from_slice(d)).is_err() {
                    self.shared
                        .stats
                        .datagrams_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                table.touch(&from, now);
                return;
            }
            peer.end.send_replace(Some(SessionEnd::ClosedByPeer));
        }
        match kind {
            FirstDatagram::ClientHello => self.new_peer(table, events, d, from, now),
            FirstDatagram::PlainCoap => {
                self.shared
                    .stats
                    .plain_coap_refused
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(answer) = refuse_plain_coap(d) {
                    let _ = self.socket.send_to(&answer, from).await;
                }
            }
            FirstDatagram::Other => {
                self.shared
                    .stats
                    .datagrams_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn new_peer(
        &self,
        table: &mut PeerTable<Peer>,
        events: &mpsc::UnboundedSender<PeerEvent>,
        hello: &[u8],
        from: SocketAddr,
        now: u64,
    ) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let counters = Arc::new(ByteCounters::default());
        let conn = Arc::new(PeerConn::new(
            self.socket.clone(),
            from,
            rx,
            counters.clone(),
        ));
        let (end, end_rx) = end_signal();
        let _ = tx.try_send(Bytes::copy_from_slice(hello));
        let (generation, evicted) = table.insert(
            from,
            Peer {
                inbound: tx,
                end: end.clone(),
            },
            now,
        );
        if let Some(ev) = evicted {
            if ev.addr != from {
                self.shared
                    .stats
                    .peers_evicted
                    .fetch_add(1, Ordering::Relaxed);
                if ev.was_established {
                    warn!(peer = %ev.addr, "peer table full: evicting an idle session");
                }
            }
            ev.value.end.send_replace(Some(SessionEnd::Evicted));
        }
        tokio::spawn(run_session(SessionSpawn {
            shared: self.shared.clone(),
            family: self.family,
            peer: from,
            generation,
            conn,
            counters,
            end,
            end_rx,
            events: events.clone(),
        }));
    }
}

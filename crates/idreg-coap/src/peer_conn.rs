//! One peer's view of the shared UDP socket, shaped as the `Conn` webrtc-dtls
//! drives: datagrams the demultiplexer routed to this peer come in through a
//! channel; datagrams go out with `send_to` on the shared socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, Mutex};
use webrtc_util::conn::Conn;

/// Datagrams queued for one peer before the demultiplexer drops new ones:
/// UDP semantics, and DTLS retransmits what matters.
pub const PEER_QUEUE: usize = 64;

#[derive(Debug, Default)]
pub struct ByteCounters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

pub struct PeerConn {
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    inbound: Mutex<mpsc::Receiver<Bytes>>,
    counters: Arc<ByteCounters>,
}

impl PeerConn {
    pub fn new(
        socket: Arc<UdpSocket>,
        peer: SocketAddr,
        inbound: mpsc::Receiver<Bytes>,
        counters: Arc<ByteCounters>,
    ) -> Self {
        Self {
            socket,
            peer,
            inbound: Mutex::new(inbound),
            counters,
        }
    }
}

type UtilResult<T> = Result<T, webrtc_util::Error>;

#[async_trait]
impl Conn for PeerConn {
    async fn connect(&self, _addr: SocketAddr) -> UtilResult<()> {
        Err(webrtc_util::Error::Other(
            "a peer conn is connected already".into(),
        ))
    }

    async fn recv(&self, buf: &mut [u8]) -> UtilResult<usize> {
        let next = self.inbound.lock().await.recv().await;
        match next {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                self.counters
                    .bytes_in
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
                Ok(n)
            }
            // The demultiplexer forgot this peer. webrtc-dtls's reader loop
            // retries on errors until the DTLSConn is dropped, so an error here
            // would spin; waiting forever lets that drop end the loop instead.
            None => std::future::pending().await,
        }
    }

    async fn recv_from(&self, buf: &mut [u8]) -> UtilResult<(usize, SocketAddr)> {
        let n = self.recv(buf).await?;
        Ok((n, self.peer))
    }

    async fn send(&self, buf: &[u8]) -> UtilResult<usize> {
        let n = self.socket.send_to(buf, self.peer).await?;
        self.counters
            .bytes_out
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    async fn send_to(&self, buf: &[u8], _target: SocketAddr) -> UtilResult<usize> {
        self.send(buf).await
    }

    fn local_addr(&self) -> UtilResult<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        Some(self.peer)
    }

    async fn close(&self) -> UtilResult<()> {
        // The socket is shared; the demultiplexer owns the peer's lifetime.
        Ok(())
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }
}

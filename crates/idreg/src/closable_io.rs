//! A server connection that the node can close from outside: once the
//! close signal turns true, reads and writes fail with `ConnectionAborted`,
//! so the connection's task (hyper's, spawned inside tonic) ends and drops
//! what it held. A graceful server alone waits for every stream, and a
//! stream whose client stopped reading never finishes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted TCP connection, closed when its signal turns true.
pub struct ClosableIo {
    inner: TcpStream,
    /// Resolves on the close; `None` once it has (a finished future must
    /// not be polled again).
    closed: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl ClosableIo {
    pub fn new(inner: TcpStream, mut close: watch::Receiver<bool>) -> Self {
        let closed = Box::pin(async move {
            // A dropped sender closes too: nobody is left to keep it open.
            let _ = close.wait_for(|c| *c).await;
        });
        Self {
            inner,
            closed: Some(closed),
        }
    }

    /// `Err` once the connection has been closed from outside.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(closed) = self.closed.as_mut() {
            if closed.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            self.closed = None;
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "closed: the node is stopping",
        ))
    }
}

impl AsyncRead for ClosableIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for ClosableIo {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair(close: watch::Receiver<bool>) -> (ClosableIo, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (accepted, client) = tokio::join!(listener.accept(), client);
        (ClosableIo::new(accepted.unwrap().0, close), client.unwrap())
    }

    #[tokio::test]
    async fn a_closed_connection_fails_a_pending_read_and_later_writes() {
        let (close, closing) = watch::channel(false);
        let (mut server, mut client) = pair(closing).await;
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        // A read waiting for data the client never sends ends on the close.
        let read = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let r = server.read(&mut buf).await;
            (r.map_err(|e| e.kind()), server)
        });
        tokio::task::yield_now().await;
        close.send(true).unwrap();
        let (r, mut server) = tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .expect("the read outlived the close")
            .unwrap();
        assert_eq!(r, Err(io::ErrorKind::ConnectionAborted));
        let w = server.write(b"late").await.map_err(|e| e.kind());
        assert_eq!(w, Err(io::ErrorKind::ConnectionAborted));
    }

    #[tokio::test]
    async fn an_open_connection_carries_data_both_ways() {
        let (_close, closing) = watch::channel(false);
        let (mut server, mut client) = pair(closing).await;
        server.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(server.connect_info().local_addr(), client.peer_addr().ok());
    }
}

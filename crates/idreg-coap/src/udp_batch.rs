//! Many datagrams per system call: `recvmmsg` and `sendmmsg` on Linux, a
//! loop of `recv_from`/`send_to` elsewhere. Buffers are allocated once per
//! socket shard and reused.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// Largest datagram read; DTLS records from devices are far smaller.
pub const MAX_DATAGRAM: usize = 2048;

pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
    froms: Vec<SocketAddr>,
    #[cfg(target_os = "linux")]
    names: Vec<libc::sockaddr_storage>,
}

impl RecvBatch {
    pub fn new(count: usize) -> Self {
        Self {
            bufs: (0..count).map(|_| vec![0u8; MAX_DATAGRAM]).collect(),
            lens: vec![0; count],
            froms: vec![SocketAddr::from(([0, 0, 0, 0], 0)); count],
            #[cfg(target_os = "linux")]
            // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
            names: vec![unsafe { std::mem::zeroed() }; count],
        }
    }

    /// The `i`th datagram of the last receive.
    pub fn get(&self, i: usize) -> (SocketAddr, &[u8]) {
        (self.froms[i], &self.bufs[i][..self.lens[i]])
    }

    /// Receives what is queued, up to the batch size, without waiting:
    /// `WouldBlock` when nothing is.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        socket.try_io(tokio::io::Interest::READABLE, || self.recv_now(socket))
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let n = self.bufs.len();
        let mut iovecs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; every pointer set below outlives
        // the call (the vectors are not touched until it returns).
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
        for (i, m) in msgs.iter_mut().enumerate() {
            m.msg_hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            m.msg_hdr.msg_iov = &mut iovecs[i];
            m.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs holds n initialised headers pointing at live buffers.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for (i, m) in msgs.iter().take(got).enumerate() {
            self.lens[i] = m.msg_len as usize;
            self.froms[i] = sockaddr_to_std(&self.names[i]).unwrap_or(self.froms[i]);
        }
        Ok(got)
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut got = 0;
        while got < self.bufs.len() {
            match socket.try_recv_from(&mut self.bufs[got]) {
                Ok((len, from)) => {
                    self.lens[got] = len;
                    self.froms[got] = from;
                    got += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }
}

#[cfg(target_os = "linux")]
fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says it is a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                a.sin_addr.s_addr.to_ne_bytes(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says it is a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                a.sin6_addr.s6_addr,
                u16::from_be(a.sin6_port),
            )))
        }
        _ => None,
    }
}

/// Sends `datagrams` (address, bytes) with as few system calls as it can;
/// returns how many were handed to the kernel. A datagram the kernel
/// refuses (e.g. no route) is skipped, not retried: UDP may lose it anyway.
/// The socket is written directly, not through tokio's readiness: a UDP send
/// only waits when the socket buffer is full, and then the datagram is
/// dropped as the network would drop it.
pub fn send_batch(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> usize {
    let mut sent = 0;
    while sent < datagrams.len() {
        match send_now(socket, &datagrams[sent..]) {
            Ok(n) => sent += n.max(1),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            // One bad destination: skip it and go on.
            Err(_) => sent += 1,
        }
    }
    sent
}

#[cfg(target_os = "linux")]
fn send_now(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = datagrams.len().min(64);
    let names: Vec<socket2::SockAddr> = datagrams[..n].iter().map(|(a, _)| (*a).into()).collect();
    let mut iovecs: Vec<libc::iovec> = datagrams[..n]
        .iter()
        .map(|(_, d)| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    // SAFETY: plain old data; the pointers set below outlive the call.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; n];
    for (i, m) in msgs.iter_mut().enumerate() {
        m.msg_hdr.msg_name = names[i].as_ptr() as *mut libc::c_void;
        m.msg_hdr.msg_namelen = names[i].len();
        m.msg_hdr.msg_iov = &mut iovecs[i];
        m.msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: msgs holds n initialised headers pointing at live buffers.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            n as u32,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(not(target_os = "linux"))]
fn send_now(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    let (to, d) = datagrams[0];
    socket2::SockRef::from(socket)
        .send_to(d, &to.into())
        .map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_with_its_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 10 + i as usize]).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, p.as_slice())).collect();
        assert_eq!(send_batch(&a, &batch), 10);
        let mut r = RecvBatch::new(16);
        let mut got = Vec::new();
        while got.len() < 10 {
            b.readable().await.unwrap();
            if let Ok(n) = r.recv(&b) {
                for i in 0..n {
                    let (from, d) = r.get(i);
                    assert_eq!(from, a.local_addr().unwrap());
                    got.push(d.to_vec());
                }
            }
        }
        assert_eq!(got, payloads);
    }
}

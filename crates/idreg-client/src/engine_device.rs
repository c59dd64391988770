//! A device on idreg's own DTLS engine (`idreg-dtls`'s client) over a tokio
//! UDP socket: what no independent client offers yet — a Connection ID
//! (RFC 9146) that survives a NAT rebinding, and a session kept across a
//! restart of the server. Tests and benchmarks use it; the webrtc-dtls
//! [`crate::device::DeviceClient`] stays the independent Rust client.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idreg_dtls::client::{Client, ClientConfig, ClientSession};
use tokio::net::UdpSocket;

use crate::device::{CoapRequest, CoapResponse, DeviceError};

pub struct EngineDevice {
    socket: UdpSocket,
    server: SocketAddr,
    client: Client,
    next_message_id: u16,
    next_token: u32,
    /// Total time a request may take, retransmissions included.
    pub request_timeout: Duration,
}

async fn bind_for(server: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    UdpSocket::bind(local).await
}

impl EngineDevice {
    /// Handshakes with the device front at `server`.
    pub async fn connect(
        server: SocketAddr,
        config: ClientConfig,
        handshake_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let socket = bind_for(server).await?;
        Self::connect_with(socket, server, config, handshake_timeout).await
    }

    /// As [`EngineDevice::connect`], from a socket bound to `local` (many
    /// sessions need more source ports than one address has).
    pub async fn connect_from(
        local: SocketAddr,
        server: SocketAddr,
        config: ClientConfig,
        handshake_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let socket = UdpSocket::bind(local).await?;
        Self::connect_with(socket, server, config, handshake_timeout).await
    }

    async fn connect_with(
        socket: UdpSocket,
        server: SocketAddr,
        config: ClientConfig,
        handshake_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let mut d = Self {
            socket,
            server,
            client: Client::new(config, Instant::now()),
            next_message_id: rand::random(),
            next_token: rand::random(),
            request_timeout: Duration::from_secs(10),
        };
        let deadline = tokio::time::Instant::now() + handshake_timeout;
        while !d.client.is_established() {
            if let Some(e) = d.client.error() {
                return Err(DeviceError::Handshake(format!("{e:?}")));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeviceError::HandshakeTimeout(handshake_timeout));
            }
            d.pump(deadline).await?;
        }
        Ok(d)
    }

    /// Carries on a session kept from before (no handshake), from a new
    /// socket.
    pub async fn resume(
        server: SocketAddr,
        config: ClientConfig,
        session: ClientSession,
    ) -> Result<Self, DeviceError> {
        Ok(Self {
            socket: bind_for(server).await?,
            server,
            client: Client::resume(config, session),
            next_message_id: rand::random(),
            next_token: rand::random(),
            request_timeout: Duration::from_secs(10),
        })
    }

    /// The session's record state, to resume it later.
    pub fn session(&self) -> Option<ClientSession> {
        self.client.session().cloned()
    }

    /// Moves to a new local port, as a NAT rebinding would.
    pub async fn rebind(&mut self) -> Result<(), DeviceError> {
        self.socket = bind_for(self.server).await?;
        Ok(())
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends what the client queued, then waits for one datagram or a timer
    /// (at most until `deadline`).
    async fn pump(&mut self, deadline: tokio::time::Instant) -> Result<(), DeviceError> {
        while let Some(d) = self.client.poll_transmit() {
            self.socket.send_to(&d, self.server).await?;
        }
        let wake = self
            .client
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or(deadline)
            .min(deadline);
        let mut buf = [0u8; 2048];
        match tokio::time::timeout_at(wake, self.socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if from == self.server => {
                self.client.handle(Instant::now(), &buf[..n])
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => self.client.handle_timeout(Instant::now()),
        }
        while let Some(d) = self.client.poll_transmit() {
            self.socket.send_to(&d, self.server).await?;
        }
        Ok(())
    }

    /// A confirmable GET, retransmitted (1 s, then doubling) until answered
    /// or `request_timeout` passes.
    pub async fn get(
        &mut self,
        path: &str,
        accept: Option<u16>,
    ) -> Result<CoapResponse, DeviceError> {
        let request = CoapRequest::new(
            path,
            accept,
            &mut self.next_message_id,
            &mut self.next_token,
        )?;
        self.exchange(request).await
    }

    /// Block `num` of `path` in blocks of 2^(szx+4) bytes (RFC 7959), one
    /// confirmable GET, retransmitted like [`Self::get`].
    pub async fn get_block(
        &mut self,
        path: &str,
        num: u32,
        szx: u8,
    ) -> Result<CoapResponse, DeviceError> {
        let request = CoapRequest::block(
            path,
            num,
            szx,
            &mut self.next_message_id,
            &mut self.next_token,
        )?;
        self.exchange(request).await
    }

    /// A confirmable POST of `payload` (Content-Format `format`) in one
    /// message, retransmitted like [`Self::get`].
    pub async fn post(
        &mut self,
        path: &str,
        format: u16,
        accept: Option<u16>,
        payload: &[u8],
    ) -> Result<CoapResponse, DeviceError> {
        let request = CoapRequest::with_body(
            path,
            accept,
            Some((format, payload)),
            &mut self.next_message_id,
            &mut self.next_token,
        )?;
        self.exchange(request).await
    }

    /// Registers an observation of `path` (RFC 7641); the first answer.
    /// Later notifications come from [`Self::notification`].
    pub async fn observe(
        &mut self,
        path: &str,
        accept: Option<u16>,
    ) -> Result<CoapResponse, DeviceError> {
        let request = CoapRequest::observe(
            path,
            accept,
            &mut self.next_message_id,
            &mut self.next_token,
        )?;
        self.exchange(request).await
    }

    /// The next notification of an observation, waiting until `deadline`
    /// (`None` when none came). A confirmable one is acknowledged, so the
    /// server keeps the observer.
    pub async fn notification(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Result<Option<CoapResponse>, DeviceError> {
        use coap_lite::{MessageClass, MessageType, Packet};
        loop {
            while let Some(data) = self.client.poll_data() {
                let Ok(p) = Packet::from_bytes(&data) else {
                    continue;
                };
                if !matches!(p.header.code, MessageClass::Response(_)) {
                    continue;
                }
                if p.header.get_type() == MessageType::Confirmable {
                    let mut ack = Packet::new();
                    ack.header.set_type(MessageType::Acknowledgement);
                    ack.header.code = MessageClass::Empty;
                    ack.header.message_id = p.header.message_id;
                    let bytes = ack
                        .to_bytes()
                        .map_err(|e| DeviceError::BadResponse(e.to_string()))?;
                    self.client.send(&bytes);
                    while let Some(d) = self.client.poll_transmit() {
                        self.socket.send_to(&d, self.server).await?;
                    }
                }
                return Ok(Some(CoapResponse::of(p)));
            }
            if self.client.is_closed() {
                return Err(DeviceError::Closed(format!("{:?}", self.client.error())));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            self.pump(deadline).await?;
        }
    }

    async fn exchange(&mut self, request: CoapRequest) -> Result<CoapResponse, DeviceError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut wait = Duration::from_secs(1);
        loop {
            if !self.client.send(&request.bytes) {
                return Err(DeviceError::Closed(format!("{:?}", self.client.error())));
            }
            let attempt_end = (tokio::time::Instant::now() + wait).min(deadline);
            while tokio::time::Instant::now() < attempt_end {
                self.pump(attempt_end).await?;
                while let Some(data) = self.client.poll_data() {
                    if let Some(answer) = request.answer(&data) {
                        return answer;
                    }
                }
                if self.client.is_closed() {
                    return Err(DeviceError::Closed(format!("{:?}", self.client.error())));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeviceError::Timeout(self.request_timeout));
            }
            wait *= 2;
        }
    }

    /// Sends close_notify.
    pub async fn close(mut self) {
        self.client.close();
        while let Some(d) = self.client.poll_transmit() {
            let _ = self.socket.send_to(&d, self.server).await;
        }
    }
}

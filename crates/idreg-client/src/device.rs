//! A device's side of the device front: DTLS 1.2 (PSK or certificate) and CoAP
//! requests with confirmable retransmission. Tests, benchmarks and the CLI use
//! it; it is also a reference for device makers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use tokio::net::UdpSocket;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::Config;
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::Certificate;

/// How the device authenticates.
#[derive(Clone)]
pub enum DeviceCredential {
    Psk {
        identity: Vec<u8>,
        key: Vec<u8>,
    },
    /// The device certificate and its P-256 key, as webrtc-dtls loads them
    /// (see [`certificate_from_pem`]).
    Certificate(Box<Certificate>),
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("UDP: {0}")]
    Io(#[from] std::io::Error),
    #[error("DTLS handshake failed: {0}")]
    Handshake(String),
    #[error("DTLS handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the session is closed: {0}")]
    Closed(String),
    #[error("invalid credential: {0}")]
    Credential(String),
    #[error("unparsable response: {0}")]
    BadResponse(String),
}

/// A CoAP response as the device sees it.
#[derive(Debug, Clone)]
pub struct CoapResponse {
    /// "2.05", "4.04", …
    pub code: String,
    pub content_format: Option<usize>,
    pub payload: Vec<u8>,
}

impl CoapResponse {
    /// A response message's code, content format and payload.
    pub(crate) fn of(p: Packet) -> Self {
        Self {
            code: p.header.get_code(),
            content_format: p.get_content_format().map(usize::from),
            payload: p.payload,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Builds a webrtc-dtls certificate from a PEM certificate and a PKCS#8 PEM
/// P-256 key ("PRIVATE KEY").
pub fn certificate_from_pem(cert_pem: &str, key_pem: &str) -> Result<Certificate, DeviceError> {
    // webrtc-dtls's own PEM dialect: key first, labelled PRIVATE_KEY.
    let key = key_pem
        .replace("BEGIN PRIVATE KEY", "BEGIN PRIVATE_KEY")
        .replace("END PRIVATE KEY", "END PRIVATE_KEY");
    Certificate::from_pem(&format!("{key}\n{cert_pem}"))
        .map_err(|e| DeviceError::Credential(e.to_string()))
}

pub struct DeviceClient {
    dtls: DTLSConn,
    next_message_id: u16,
    next_token: u32,
    /// Total time a request may take, retransmissions included.
    pub request_timeout: Duration,
}

impl DeviceClient {
    /// Handshakes with the device front at `server`.
    pub async fn connect(
        server: SocketAddr,
        credential: DeviceCredential,
        handshake_timeout: Duration,
    ) -> Result<Self, DeviceError> {
        let local: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        let config = match credential {
            DeviceCredential::Psk { identity, key } => Config {
                psk: Some(Arc::new(move |_hint: &[u8]| Ok(key.clone()))),
                psk_identity_hint: Some(identity),
                cipher_suites: vec![CipherSuiteId::Tls_Psk_With_Aes_128_Ccm_8],
                ..Default::default()
            },
            DeviceCredential::Certificate(cert) => Config {
                certificates: vec![*cert],
                cipher_suites: vec![CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Ccm_8],
                // The registry decides who the device is; the device here does
                // not check the server's (often self-signed, dev-mode)
                // certificate. Devices in the field must pin it.
                insecure_skip_verify: true,
                ..Default::default()
            },
        };
        let handshake = DTLSConn::new(Arc::new(socket), config, true, None);
        let dtls = tokio::time::timeout(handshake_timeout, handshake)
            .await
            .map_err(|_| DeviceError::HandshakeTimeout(handshake_timeout))?
            .map_err(|e| DeviceError::Handshake(e.to_string()))?;
        Ok(Self {
            dtls,
            next_message_id: rand::random(),
            next_token: rand::random(),
            request_timeout: Duration::from_secs(10),
        })
    }

    /// A confirmable GET, retransmitted (1 s, then doubling) until answered or
    /// `request_timeout` passes.
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
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut wait = Duration::from_secs(1);
        let mut buf = vec![0u8; 2048];
        loop {
            self.dtls
                .write(&request.bytes, None)
                .await
                .map_err(|e| DeviceError::Closed(e.to_string()))?;
            let attempt_end = (tokio::time::Instant::now() + wait).min(deadline);
            loop {
                let remaining = attempt_end.saturating_duration_since(tokio::time::Instant::now());
                if remaining.is_zero() {
                    break;
                }
                match tokio::time::timeout(remaining, self.dtls.read(&mut buf, None)).await {
                    Err(_) => break,
                    Ok(Err(e)) => return Err(DeviceError::Closed(e.to_string())),
                    Ok(Ok(n)) => {
                        if let Some(answer) = request.answer(&buf[..n]) {
                            return answer;
                        }
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeviceError::Timeout(self.request_timeout));
            }
            wait *= 2;
        }
    }

    /// Sends close_notify.
    pub async fn close(self) {
        let _ = self.dtls.close().await;
    }
}

/// A confirmable CoAP request and how to recognise its answer; shared by both
/// device clients.
pub(crate) struct CoapRequest {
    pub bytes: Vec<u8>,
    message_id: u16,
    token: Vec<u8>,
}

impl CoapRequest {
    pub fn new(
        path: &str,
        accept: Option<u16>,
        next_message_id: &mut u16,
        next_token: &mut u32,
    ) -> Result<Self, DeviceError> {
        Self::with_body(path, accept, None, next_message_id, next_token)
    }

    /// A confirmable request: a GET, or with `body` (content format,
    /// payload) a POST.
    pub fn with_body(
        path: &str,
        accept: Option<u16>,
        body: Option<(u16, &[u8])>,
        next_message_id: &mut u16,
        next_token: &mut u32,
    ) -> Result<Self, DeviceError> {
        Self::build(path, accept, body, false, None, next_message_id, next_token)
    }

    /// A confirmable GET of block `num` (size 2^(szx+4)) of `path`'s
    /// representation (RFC 7959 Block2).
    pub fn block(
        path: &str,
        num: u32,
        szx: u8,
        next_message_id: &mut u16,
        next_token: &mut u32,
    ) -> Result<Self, DeviceError> {
        let block2 = (num << 4) | u32::from(szx & 7);
        Self::build(
            path,
            None,
            None,
            false,
            Some(block2),
            next_message_id,
            next_token,
        )
    }

    /// A confirmable GET that registers an observation (RFC 7641).
    pub fn observe(
        path: &str,
        accept: Option<u16>,
        next_message_id: &mut u16,
        next_token: &mut u32,
    ) -> Result<Self, DeviceError> {
        Self::build(path, accept, None, true, None, next_message_id, next_token)
    }

    fn build(
        path: &str,
        accept: Option<u16>,
        body: Option<(u16, &[u8])>,
        observe: bool,
        block2: Option<u32>,
        next_message_id: &mut u16,
        next_token: &mut u32,
    ) -> Result<Self, DeviceError> {
        let message_id = *next_message_id;
        *next_message_id = next_message_id.wrapping_add(1);
        let token = next_token.to_be_bytes().to_vec();
        *next_token = next_token.wrapping_add(1);
        let mut p = Packet::new();
        p.header.set_type(MessageType::Confirmable);
        p.header.code = MessageClass::Request(match body {
            Some(_) => RequestType::Post,
            None => RequestType::Get,
        });
        p.header.message_id = message_id;
        p.set_token(token.clone());
        if observe {
            // Observe: 0 (register), the empty uint.
            p.add_option(CoapOption::Observe, Vec::new());
        }
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            p.add_option(CoapOption::UriPath, seg.as_bytes().to_vec());
        }
        if let Some(a) = accept {
            let bytes = a.to_be_bytes();
            let v = if a < 256 {
                vec![bytes[1]]
            } else {
                bytes.to_vec()
            };
            p.add_option(CoapOption::Accept, v);
        }
        if let Some(b) = block2 {
            // The shortest big-endian encoding (RFC 7252 §3.2).
            let bytes = b.to_be_bytes();
            let skip = bytes.iter().take_while(|x| **x == 0).count();
            p.add_option(CoapOption::Block2, bytes[skip..].to_vec());
        }
        if let Some((format, payload)) = body {
            let bytes = format.to_be_bytes();
            let v = if format < 256 {
                vec![bytes[1]]
            } else {
                bytes.to_vec()
            };
            p.add_option(CoapOption::ContentFormat, v);
            p.payload = payload.to_vec();
        }
        let bytes = p
            .to_bytes()
            .map_err(|e| DeviceError::BadResponse(e.to_string()))?;
        Ok(Self {
            bytes,
            message_id,
            token,
        })
    }

    /// `Some` when `datagram` answers this request (a response with its
    /// token, or a RST of its message id).
    pub fn answer(&self, datagram: &[u8]) -> Option<Result<CoapResponse, DeviceError>> {
        let r = Packet::from_bytes(datagram).ok()?;
        if r.get_token() == self.token.as_slice()
            && matches!(r.header.code, MessageClass::Response(_))
        {
            return Some(Ok(CoapResponse::of(r)));
        }
        if r.header.get_type() == MessageType::Reset && r.header.message_id == self.message_id {
            return Some(Err(DeviceError::BadResponse("RST".into())));
        }
        None
    }
}

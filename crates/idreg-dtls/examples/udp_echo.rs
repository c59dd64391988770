//! A minimal DTLS server over a real UDP socket, for trying the engine
//! against other implementations by hand: answers every CoAP request with
//! 2.05 "ok <device>".
//!
//!   cargo run -p idreg-dtls --example udp_echo -- 127.0.0.1:5699 ID:KEY [SPKI.der...]
//!   coap-client-openssl -u ID -k KEY coaps://127.0.0.1:5699/x

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use idreg_dtls::{CredentialStore, Endpoint, EndpointConfig, Event, Refusal, ServerIdentity};
use p256::pkcs8::DecodePrivateKey;
use zeroize::Zeroizing;

struct Creds {
    psk: (Vec<u8>, Vec<u8>),
    keys: Vec<Vec<u8>>,
}

impl CredentialStore for Creds {
    type Device = String;
    fn psk(&self, identity: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), Refusal> {
        if identity == self.psk.0 {
            Ok((
                String::from_utf8_lossy(identity).into(),
                Zeroizing::new(self.psk.1.clone()),
            ))
        } else {
            Err(Refusal::Unknown)
        }
    }
    fn public_key(&self, spki: &[u8]) -> Result<String, Refusal> {
        eprintln!("client key offered: {} bytes", spki.len());
        if self.keys.is_empty() || self.keys.iter().any(|k| k == spki) {
            Ok("key-device".into())
        } else {
            Err(Refusal::Unknown)
        }
    }
}

fn coap_reply(request: &[u8], text: &str) -> Option<Vec<u8>> {
    if request.len() < 4 {
        return None;
    }
    let tkl = (request[0] & 0x0f) as usize;
    let kind = (request[0] >> 4) & 3;
    let mut out = vec![
        0x40 | (if kind == 0 { 2 } else { 1 } << 4) | tkl as u8,
        0x45,
        request[2],
        request[3],
    ];
    out.extend_from_slice(request.get(4..4 + tkl)?);
    out.push(0xff);
    out.extend_from_slice(text.as_bytes());
    Some(out)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).map(String::as_str).unwrap_or("127.0.0.1:5699");
    let (id, key) = args
        .get(2)
        .and_then(|s| s.split_once(':'))
        .unwrap_or(("dev", "0123456789abcdef"));
    let keys = args[3.min(args.len())..]
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .collect();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let identity = ServerIdentity::new(
        vec![cert.der().to_vec()],
        p256::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap(),
    );
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let creds = Creds {
        psk: (id.as_bytes().to_vec(), key.as_bytes().to_vec()),
        keys,
    };
    let mut ep = Endpoint::new(
        EndpointConfig::default(),
        Some(identity),
        creds,
        Instant::now(),
    );
    let mut devices = std::collections::HashMap::new();
    let mut buf = [0u8; 2048];
    eprintln!("listening on {addr}");
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            ep.handle(Instant::now(), from, &buf[..n]);
        }
        ep.handle_timeout(Instant::now());
        while let Some(e) = ep.poll_event() {
            eprintln!("{e:?}");
            match e {
                Event::Established { conn, device, .. } => {
                    devices.insert(conn, device);
                }
                Event::Data { conn, data } => {
                    let who = devices.get(&conn).cloned().unwrap_or_default();
                    if let Some(reply) = coap_reply(&data, &format!("ok {who}")) {
                        ep.send(conn, &reply);
                    }
                }
                _ => {}
            }
        }
        while let Some(t) = ep.poll_transmit() {
            let _ = socket.send_to(&t.data, t.to);
        }
    }
}

//! In-memory harness: a server endpoint and clients exchanging datagrams
//! through a simulated network (loss, duplication, reordering chosen per
//! test) on a simulated clock. Every loop is bounded.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use idreg_dtls::client::{Client, ClientConfig, ClientCredential};
use idreg_dtls::{CredentialStore, Endpoint, EndpointConfig, Event, Refusal, ServerIdentity};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

pub const SERVER: &str = "10.0.0.1:5684";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Devices by PSK identity and by public key; a device may be marked
/// refused (as a revoked device would be).
#[derive(Default)]
pub struct MemCreds {
    pub psks: HashMap<Vec<u8>, (String, Vec<u8>)>,
    pub keys: HashMap<Vec<u8>, String>,
    pub refused: Vec<String>,
}

impl CredentialStore for MemCreds {
    type Device = String;

    fn psk(&self, identity: &[u8]) -> Result<(String, Zeroizing<Vec<u8>>), Refusal> {
        let (device, key) = self.psks.get(identity).ok_or(Refusal::Unknown)?;
        if self.refused.contains(device) {
            return Err(Refusal::NotAllowed(format!("{device} is revoked")));
        }
        Ok((device.clone(), Zeroizing::new(key.clone())))
    }

    fn public_key(&self, spki: &[u8]) -> Result<String, Refusal> {
        let device = self.keys.get(spki).ok_or(Refusal::Unknown)?;
        if self.refused.contains(device) {
            return Err(Refusal::NotAllowed(format!("{device} is revoked")));
        }
        Ok(device.clone())
    }
}

/// A P-256 key pair and a self-signed certificate for it (rcgen).
pub struct KeyAndCert {
    pub key: SigningKey,
    pub cert_der: Vec<u8>,
    pub spki: Vec<u8>,
}

pub fn key_and_cert(name: &str) -> KeyAndCert {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    let key = SigningKey::from_pkcs8_der(&kp.serialize_der()).unwrap();
    let spki = key.verifying_key().to_public_key_der().unwrap().into_vec();
    KeyAndCert {
        key,
        cert_der: cert.der().to_vec(),
        spki,
    }
}

pub fn server_identity() -> ServerIdentity {
    let k = key_and_cert("server");
    ServerIdentity::new(vec![k.cert_der], k.key)
}

pub fn psk_client(identity: &str, key: &[u8]) -> ClientConfig {
    ClientConfig::psk(identity.as_bytes(), key)
}

pub fn cert_client(k: &KeyAndCert) -> ClientConfig {
    ClientConfig::with(ClientCredential::Certificate {
        chain: vec![k.cert_der.clone()],
        key: k.key.clone(),
    })
}

pub fn rpk_client(k: &KeyAndCert) -> ClientConfig {
    ClientConfig::with(ClientCredential::RawPublicKey { key: k.key.clone() })
}

/// What the network does to datagrams, decided per datagram in order.
pub type Fault = Box<dyn FnMut(Direction, usize, &[u8]) -> Delivery>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToServer,
    ToClient,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Deliver,
    Drop,
    Duplicate,
    /// Held back and delivered after the next datagram in this direction.
    Delay,
}

pub struct Net {
    pub now: Instant,
    pub server: Endpoint<MemCreds>,
    pub clients: Vec<(SocketAddr, Client)>,
    pub fault: Fault,
    pub events: Vec<Event<String>>,
    sent: usize,
    delayed: VecDeque<(Direction, SocketAddr, Vec<u8>)>,
}

impl Net {
    pub fn new(creds: MemCreds, config: EndpointConfig) -> Self {
        let now = Instant::now();
        Net {
            now,
            server: Endpoint::new(config, Some(server_identity()), creds, now),
            clients: Vec::new(),
            fault: Box::new(|_, _, _| Delivery::Deliver),
            events: Vec::new(),
            sent: 0,
            delayed: VecDeque::new(),
        }
    }

    pub fn add_client(&mut self, from: &str, config: ClientConfig) -> usize {
        self.clients
            .push((addr(from), Client::new(config, self.now)));
        self.clients.len() - 1
    }

    fn deliver(&mut self, dir: Direction, peer: SocketAddr, data: Vec<u8>) {
        match dir {
            Direction::ToServer => {
                self.server.handle(self.now, peer, &data);
            }
            Direction::ToClient => {
                for (a, c) in self.clients.iter_mut() {
                    if *a == peer {
                        c.handle(self.now, &data);
                    }
                }
            }
        }
    }

    fn send(&mut self, dir: Direction, peer: SocketAddr, data: Vec<u8>) {
        let n = self.sent;
        self.sent += 1;
        match (self.fault)(dir, n, &data) {
            Delivery::Deliver => {
                self.deliver(dir, peer, data);
                self.release_delayed(dir);
            }
            Delivery::Drop => {}
            Delivery::Duplicate => {
                self.deliver(dir, peer, data.clone());
                self.deliver(dir, peer, data);
                self.release_delayed(dir);
            }
            Delivery::Delay => self.delayed.push_back((dir, peer, data)),
        }
    }

    fn release_delayed(&mut self, dir: Direction) {
        let (now_due, keep): (Vec<_>, Vec<_>) =
            self.delayed.drain(..).partition(|(d, _, _)| *d == dir);
        self.delayed = keep.into();
        for (d, p, data) in now_due {
            self.deliver(d, p, data);
        }
    }

    /// Moves every queued datagram once; true if any moved.
    pub fn step(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.clients.len() {
            while let Some(d) = self.clients[i].1.poll_transmit() {
                let from = self.clients[i].0;
                self.send(Direction::ToServer, from, d);
                moved = true;
            }
        }
        while let Some(t) = self.server.poll_transmit() {
            self.send(Direction::ToClient, t.to, t.data);
            moved = true;
        }
        while let Some(e) = self.server.poll_event() {
            self.events.push(e);
        }
        moved
    }

    /// Runs until nothing moves, then lets time pass to the next timer, up
    /// to `limit` of simulated time.
    pub fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..10_000 {
            while self.step() {}
            if !self.delayed.is_empty() {
                let d: Vec<_> = self.delayed.drain(..).collect();
                for (dir, p, data) in d {
                    self.deliver(dir, p, data);
                }
                continue;
            }
            let next = [
                self.server.poll_timeout(),
                self.clients
                    .iter()
                    .filter_map(|(_, c)| c.poll_timeout())
                    .min(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.server.handle_timeout(self.now);
                    for (_, c) in self.clients.iter_mut() {
                        c.handle_timeout(self.now);
                    }
                }
                _ => {
                    self.now = end;
                    self.server.handle_timeout(self.now);
                    while self.step() {}
                    return;
                }
            }
        }
        panic!("the simulation did not settle");
    }

    /// Runs until client `i` is established (at most 60 simulated seconds).
    pub fn handshake(&mut self, i: usize) {
        let end = self.now + Duration::from_secs(60);
        while !self.clients[i].1.is_established()
            && self.now < end
            && !self.clients[i].1.is_closed()
        {
            self.run_for(Duration::from_millis(100));
        }
        assert!(
            self.clients[i].1.is_established(),
            "client {i} not established: {:?}; events {:?}",
            self.clients[i].1.error(),
            self.events
        );
    }

    pub fn established(&self) -> Vec<&Event<String>> {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Established { .. }))
            .collect()
    }

    pub fn data_events(&self) -> Vec<Vec<u8>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Data { data, .. } => Some(data.clone()),
                _ => None,
            })
            .collect()
    }
}

pub fn creds_with_psk(device: &str, identity: &str, key: &[u8]) -> MemCreds {
    let mut c = MemCreds::default();
    c.psks.insert(
        identity.as_bytes().to_vec(),
        (device.to_string(), key.to_vec()),
    );
    c
}

//! A DTLS 1.2 client for one connection, sans I/O like the server: the
//! engine's in-memory tests, the device benchmarks and the tests that need
//! what no independent client offers (Connection IDs, sessions that outlive
//! a server restart) drive the server with it. PSK, or ECDHE-ECDSA with an
//! X.509 certificate or a raw public key.

use std::time::{Duration, Instant};

use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::alert::{self, AlertDescription};
use crate::cipher_suite::CipherSuite;
use crate::flight_writer::{write_plain_flight, OutMessage};
use crate::handshake_codec::{self as codec, HandshakeType, ServerHello};
use crate::hello_extensions::{self as ext, CertificateType};
use crate::message_assembler::MessageAssembler;
use crate::prf::{self, Side};
use crate::reader::DecodeError;
use crate::record::{self, ContentType, Record};
use crate::record_cipher::{self, DirectionKey};
use crate::replay_window::ReplayWindow;
use crate::server_handshake::{ephemeral_key, uncompressed_point};

/// How the client authenticates.
#[derive(Clone)]
pub enum ClientCredential {
    Psk {
        identity: Vec<u8>,
        key: Zeroizing<Vec<u8>>,
    },
    Certificate {
        chain: Vec<Vec<u8>>,
        key: SigningKey,
    },
    RawPublicKey {
        key: SigningKey,
    },
}

#[derive(Clone)]
pub struct ClientConfig {
    pub credential: ClientCredential,
    /// Offered in this order.
    pub suites: Vec<CipherSuite>,
    /// Offer RFC 9146 with this CID for the server to use towards us
    /// (empty: we send CIDs but want none).
    pub connection_id: Option<Vec<u8>>,
    pub extended_master_secret: bool,
    pub mtu: usize,
    pub retransmit_initial: Duration,
}

impl ClientConfig {
    pub fn psk(identity: &[u8], key: &[u8]) -> Self {
        Self::with(ClientCredential::Psk {
            identity: identity.to_vec(),
            key: Zeroizing::new(key.to_vec()),
        })
    }

    pub fn with(credential: ClientCredential) -> Self {
        let suites = match credential {
            ClientCredential::Psk { .. } => vec![CipherSuite::PskAes128Ccm8],
            _ => vec![CipherSuite::EcdheEcdsaAes128Ccm8],
        };
        Self {
            credential,
            suites,
            connection_id: None,
            extended_master_secret: true,
            mtu: 1200,
            retransmit_initial: Duration::from_secs(1),
        }
    }
}

/// Why the client's connection failed or ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    Alert(AlertDescription),
    Malformed(DecodeError),
    Protocol(&'static str),
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHelloVerify,
    AwaitServerFlight,
    AwaitFinished,
    Established,
    Closed,
}

/// The record state of an established client, which a test can keep across
/// a server restart.
#[derive(Clone)]
pub struct ClientSession {
    pub suite: CipherSuite,
    read: DirectionKey,
    write: DirectionKey,
    write_sequence: u64,
    replay: ReplayWindow,
    /// The server's CID, carried in every record we send.
    pub server_cid: Vec<u8>,
    /// Ours, carried in every record the server sends.
    pub own_cid: Vec<u8>,
}

pub struct Client {
    config: ClientConfig,
    state: State,
    random: [u8; 32],
    cookie: Vec<u8>,
    transcript: Sha256,
    assembler: MessageAssembler,
    epoch0_sequence: u64,
    next_message_seq: u16,
    suite: Option<CipherSuite>,
    server_random: [u8; 32],
    server_key: Option<p256::ecdsa::VerifyingKey>,
    server_point: Option<Vec<u8>>,
    client_cert_type: CertificateType,
    master: Option<Zeroizing<[u8; 48]>>,
    /// The flight to send again on timeout: plaintext messages, and for
    /// flight 5 the ChangeCipherSpec and Finished after them.
    flight: Vec<OutMessage>,
    finished: Option<[u8; 12]>,
    session: Option<ClientSession>,
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    transmits: Vec<Vec<u8>>,
    received: Vec<Vec<u8>>,
    error: Option<ClientError>,
}

impl Client {
    /// Starts a handshake; the first ClientHello is ready to send.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        let mut random = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
        let mut c = Client {
            retransmit_interval: config.retransmit_initial,
            config,
            state: State::AwaitHelloVerify,
            random,
            cookie: Vec::new(),
            transcript: Sha256::new(),
            assembler: MessageAssembler::new(0),
            epoch0_sequence: 0,
            next_message_seq: 0,
            suite: None,
            server_random: [0; 32],
            server_key: None,
            server_point: None,
            client_cert_type: CertificateType::X509,
            master: None,
            flight: Vec::new(),
            finished: None,
            session: None,
            retransmit_at: None,
            transmits: Vec::new(),
            received: Vec::new(),
            error: None,
        };
        c.send_client_hello(now);
        c
    }

    /// A client that resumes a session kept from before (no handshake).
    pub fn resume(config: ClientConfig, session: ClientSession) -> Self {
        let mut c = Client::new(config, Instant::now());
        c.transmits.clear();
        c.retransmit_at = None;
        c.suite = Some(session.suite);
        c.session = Some(session);
        c.state = State::Established;
        c
    }

    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn error(&self) -> Option<&ClientError> {
        self.error.as_ref()
    }

    pub fn session(&self) -> Option<&ClientSession> {
        self.session.as_ref()
    }

    pub fn suite(&self) -> Option<CipherSuite> {
        self.suite
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmits.is_empty()).then(|| self.transmits.remove(0))
    }

    pub fn poll_data(&mut self) -> Option<Vec<u8>> {
        (!self.received.is_empty()).then(|| self.received.remove(0))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retransmit_at.is_some_and(|t| now >= t) {
            self.retransmit_interval *= 2;
            self.retransmit_at = Some(now + self.retransmit_interval);
            self.write_flight();
        }
    }

    /// Sends application data; false before the handshake is done.
    pub fn send(&mut self, data: &[u8]) -> bool {
        let Some(s) = self.session.as_mut() else {
            return false;
        };
        if self.state != State::Established {
            return false;
        }
        let mut out = Vec::new();
        seal(s, ContentType::ApplicationData, data, &mut out);
        self.transmits.push(out);
        true
    }

    /// Sends close_notify.
    pub fn close(&mut self) {
        if let Some(s) = self.session.as_mut() {
            let mut out = Vec::new();
            seal(
                s,
                ContentType::Alert,
                &alert::body(alert::WARNING, AlertDescription::CloseNotify),
                &mut out,
            );
            self.transmits.push(out);
        }
        self.state = State::Closed;
    }

    fn fail(&mut self, e: ClientError) {
        self.error = Some(e);
        self.state = State::Closed;
        self.retransmit_at = None;
    }

    fn send_client_hello(&mut self, now: Instant) {
        let mut extensions = vec![
            (ext::SUPPORTED_GROUPS, vec![0, 2, 0, 23]),
            (ext::EC_POINT_FORMATS, vec![1, 0]),
        ];
        extensions.push((ext::SIGNATURE_ALGORITHMS, vec![0, 2, 4, 3]));
        if self.config.extended_master_secret {
            extensions.push((ext::EXTENDED_MASTER_SECRET, vec![]));
        }
        if let Some(cid) = &self.config.connection_id {
            let mut d = vec![cid.len() as u8];
            d.extend_from_slice(cid);
            extensions.push((ext::CONNECTION_ID, d));
        }
        if let ClientCredential::RawPublicKey { .. } = self.config.credential {
            extensions.push((
                ext::CLIENT_CERTIFICATE_TYPE,
                vec![1, CertificateType::RawPublicKey.code()],
            ));
            extensions.push((
                ext::SERVER_CERTIFICATE_TYPE,
                vec![1, CertificateType::RawPublicKey.code()],
            ));
        }
        let suites: Vec<u16> = self.config.suites.iter().map(|s| s.id()).collect();
        let body = codec::client_hello_body(&self.random, &self.cookie, &suites, &extensions);
        let msg = OutMessage {
            msg_type: HandshakeType::ClientHello,
            message_seq: self.next_message_seq,
            body,
        };
        self.next_message_seq += 1;
        if !self.cookie.is_empty() {
            // The transcript starts at the hello that carries the cookie.
            self.transcript = Sha256::new();
            self.transcript.update(msg.transcript_bytes());
        }
        self.flight = vec![msg];
        self.retransmit_at = Some(now + self.retransmit_interval);
        self.write_flight();
    }

    fn write_flight(&mut self) {
        let mut out = Vec::new();
        write_plain_flight(
            &self.flight,
            &mut self.epoch0_sequence,
            self.config.mtu,
            &mut out,
        );
        if let (Some(fin), Some(_)) = (self.finished, self.session.as_ref()) {
            // Flight 5 ends with ChangeCipherSpec and Finished.
            let mut tail = Vec::new();
            record::put_header(
                &mut tail,
                ContentType::ChangeCipherSpec,
                0,
                self.epoch0_sequence,
                &[],
                1,
            );
            tail.push(1);
            self.epoch0_sequence += 1;
            let mut f = Vec::new();
            codec::put_header(
                &mut f,
                HandshakeType::Finished,
                self.next_message_seq - 1,
                12,
            );
            f.extend_from_slice(&fin);
            seal(
                self.session.as_mut().expect("checked"),
                ContentType::Handshake,
                &f,
                &mut tail,
            );
            out.push(tail);
        }
        self.transmits.extend(out);
    }

    pub fn handle(&mut self, now: Instant, datagram: &[u8]) {
        let cid_len = self
            .session
            .as_ref()
            .map(|s| s.own_cid.len())
            .or(self.config.connection_id.as_ref().map(Vec::len))
            .unwrap_or(0);
        for record in record::split_records(datagram, cid_len) {
            let Ok(record) = record else { return };
            if let Err(e) = self.handle_record(now, &record) {
                self.fail(e);
                return;
            }
        }
    }

    fn handle_record(&mut self, now: Instant, record: &Record<'_>) -> Result<(), ClientError> {
        if self.state == State::Closed {
            return Ok(());
        }
        if record.epoch == 0 {
            // Once established, plaintext records are someone else's
            // handshake at our address (or forgeries): ignored, as DTLS
            // stacks ignore records of an old epoch.
            if self.state == State::Established {
                return Ok(());
            }
            return match record.content_type {
                ContentType::Handshake
                    if matches!(
                        self.state,
                        State::AwaitHelloVerify | State::AwaitServerFlight
                    ) =>
                {
                    self.plain_handshake(now, record.body)
                }
                ContentType::Alert => match alert::parse(record.body) {
                    Some((alert::FATAL, d)) => Err(ClientError::Alert(d)),
                    _ => Ok(()),
                },
                _ => Ok(()),
            };
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        if !session.replay.is_fresh(record.sequence) {
            return Ok(());
        }
        let mut plain = Vec::new();
        let Ok(t) = record_cipher::open(session.suite.aead(), &session.read, record, &mut plain)
        else {
            return Ok(());
        };
        session.replay.mark(record.sequence);
        match t {
            ContentType::Handshake if self.state == State::AwaitFinished => {
                self.server_finished(&plain)
            }
            ContentType::ApplicationData if self.state == State::Established => {
                self.received.push(plain);
                Ok(())
            }
            ContentType::Alert => match alert::parse(&plain) {
                Some((alert::FATAL, d)) => Err(ClientError::Alert(d)),
                Some((_, AlertDescription::CloseNotify)) => {
                    self.state = State::Closed;
                    self.error = Some(ClientError::Alert(AlertDescription::CloseNotify));
                    Ok(())
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    fn plain_handshake(&mut self, now: Instant, body: &[u8]) -> Result<(), ClientError> {
        for f in codec::fragments(body) {
            let f = f.map_err(ClientError::Malformed)?;
            if f.msg_type == HandshakeType::HelloVerifyRequest
                && self.state == State::AwaitHelloVerify
            {
                self.cookie = codec::parse_hello_verify_request(f.body)
                    .map_err(ClientError::Malformed)?
                    .to_vec();
                self.assembler = MessageAssembler::new(f.message_seq + 1);
                self.state = State::AwaitServerFlight;
                self.retransmit_interval = self.config.retransmit_initial;
                self.send_client_hello(now);
                return Ok(());
            }
            self.assembler.push(&f);
        }
        while let Some((t, seq, body)) = self.assembler.pop() {
            self.server_message(now, t, seq, &body)?;
        }
        Ok(())
    }

    fn hash(&mut self, t: HandshakeType, seq: u16, body: &[u8]) {
        let mut h = Vec::new();
        codec::put_header(&mut h, t, seq, body.len());
        self.transcript.update(&h);
        self.transcript.update(body);
    }

    fn server_message(
        &mut self,
        now: Instant,
        t: HandshakeType,
        seq: u16,
        body: &[u8],
    ) -> Result<(), ClientError> {
        if self.state != State::AwaitServerFlight {
            return Ok(());
        }
        match t {
            HandshakeType::ServerHello => {
                let sh = ServerHello::parse(body).map_err(ClientError::Malformed)?;
                let suite = CipherSuite::from_id(sh.cipher_suite)
                    .filter(|s| self.config.suites.contains(s))
                    .ok_or(ClientError::Protocol(
                        "server chose a suite we did not offer",
                    ))?;
                if self.config.extended_master_secret
                    && sh.extension(ext::EXTENDED_MASTER_SECRET).is_none()
                {
                    return Err(ClientError::Protocol("no extended master secret"));
                }
                if let Some(d) = sh.extension(ext::CLIENT_CERTIFICATE_TYPE) {
                    self.client_cert_type = CertificateType::from_code(*d.first().unwrap_or(&255))
                        .ok_or(ClientError::Protocol("client certificate type"))?;
                }
                let server_cid = match sh.extension(ext::CONNECTION_ID) {
                    Some(d) => {
                        let mut r = crate::reader::Reader::new(d);
                        r.vec8().map_err(ClientError::Malformed)?.to_vec()
                    }
                    None => Vec::new(),
                };
                self.suite = Some(suite);
                self.server_random = sh.random;
                self.session = Some(ClientSession {
                    suite,
                    read: DirectionKey {
                        key: [0; 16],
                        iv: [0; 4],
                    },
                    write: DirectionKey {
                        key: [0; 16],
                        iv: [0; 4],
                    },
                    write_sequence: 0,
                    replay: ReplayWindow::default(),
                    own_cid: if sh.extension(ext::CONNECTION_ID).is_some() {
                        self.config.connection_id.clone().unwrap_or_default()
                    } else {
                        Vec::new()
                    },
                    server_cid,
                });
            }
            HandshakeType::Certificate => {
                let spki = match sh_server_type_raw(self) {
                    true => codec::parse_certificate_raw_public_key(body)
                        .map_err(ClientError::Malformed)?
                        .to_vec(),
                    false => {
                        let chain =
                            codec::parse_certificate_x509(body).map_err(ClientError::Malformed)?;
                        let leaf = chain
                            .first()
                            .ok_or(ClientError::Protocol("empty server certificate"))?;
                        use x509_parser::prelude::FromDer;
                        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf)
                            .map_err(|_| ClientError::Protocol("server certificate"))?;
                        cert.tbs_certificate.subject_pki.raw.to_vec()
                    }
                };
                self.server_key = Some(
                    p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
                        .map_err(|_| ClientError::Protocol("server key"))?,
                );
            }
            // RFC 4279 §2: a PSK server may send a ServerKeyExchange with an
            // identity hint (libcoap does); the device knows its identity.
            HandshakeType::ServerKeyExchange if self.suite.is_some_and(|s| s.is_psk()) => {
                codec::parse_psk_identity_hint(body).map_err(ClientError::Malformed)?;
            }
            HandshakeType::ServerKeyExchange => {
                let ske = codec::ServerKeyExchange::parse(body).map_err(ClientError::Malformed)?;
                let mut signed = Vec::new();
                signed.extend_from_slice(&self.random);
                signed.extend_from_slice(&self.server_random);
                signed.extend_from_slice(ske.params);
                let sig = p256::ecdsa::Signature::from_der(ske.signature)
                    .map_err(|_| ClientError::Protocol("signature"))?;
                self.server_key
                    .as_ref()
                    .ok_or(ClientError::Protocol("key exchange before certificate"))?
                    .verify(&signed, &sig)
                    .map_err(|_| ClientError::Protocol("bad ServerKeyExchange signature"))?;
                self.server_point = Some(ske.point.to_vec());
            }
            HandshakeType::CertificateRequest | HandshakeType::ServerHelloDone => {}
            _ => return Err(ClientError::Protocol("unexpected message")),
        }
        self.hash(t, seq, body);
        if t == HandshakeType::ServerHelloDone {
            self.send_flight5(now)?;
        }
        Ok(())
    }

    fn send_flight5(&mut self, now: Instant) -> Result<(), ClientError> {
        let suite = self.suite.ok_or(ClientError::Protocol("no ServerHello"))?;
        let mut messages = Vec::new();
        let mut seq = self.next_message_seq;
        let mut next = |t, body| {
            let m = OutMessage {
                msg_type: t,
                message_seq: seq,
                body,
            };
            seq += 1;
            m
        };
        let premaster: Zeroizing<Vec<u8>>;
        let mut signing_key = None;
        match (&self.config.credential, suite.is_psk()) {
            (ClientCredential::Psk { identity, key }, true) => {
                let mut b = Vec::new();
                crate::reader::Put::put_vec16(&mut b, identity);
                messages.push(next(HandshakeType::ClientKeyExchange, b));
                premaster = prf::psk_premaster(key);
            }
            (ClientCredential::Certificate { chain, key }, false) => {
                messages.push(next(
                    HandshakeType::Certificate,
                    codec::certificate_x509_body(chain),
                ));
                signing_key = Some(key.clone());
                premaster = self.ecdhe_premaster(&mut messages, &mut next)?;
            }
            (ClientCredential::RawPublicKey { key }, false) => {
                let spki = key
                    .verifying_key()
                    .to_public_key_der()
                    .expect("P-256")
                    .into_vec();
                let body = if self.client_cert_type == CertificateType::RawPublicKey {
                    codec::certificate_raw_public_key_body(&spki)
                } else {
                    return Err(ClientError::Protocol(
                        "server did not accept a raw public key",
                    ));
                };
                messages.push(next(HandshakeType::Certificate, body));
                signing_key = Some(key.clone());
                premaster = self.ecdhe_premaster(&mut messages, &mut next)?;
            }
            _ => return Err(ClientError::Protocol("suite does not fit the credential")),
        }
        // Transcript up to and including the ClientKeyExchange.
        for m in &messages {
            self.transcript.update(m.transcript_bytes());
        }
        let session_hash = self.transcript.clone().finalize();
        let master = if self.config.extended_master_secret {
            prf::extended_master_secret(&premaster, &session_hash)
        } else {
            let mut ms = Zeroizing::new([0u8; 48]);
            prf::prf(
                &premaster,
                b"master secret",
                &[&self.random, &self.server_random],
                ms.as_mut_slice(),
            );
            ms
        };
        if let Some(key) = signing_key {
            let digest = self.transcript.clone().finalize();
            let sig: p256::ecdsa::Signature = key
                .sign_prehash(&digest)
                .map_err(|_| ClientError::Protocol("sign"))?;
            let m = next(
                HandshakeType::CertificateVerify,
                codec::certificate_verify_body(sig.to_der().as_bytes()),
            );
            self.transcript.update(m.transcript_bytes());
            messages.push(m);
        }
        let fin_seq = next(HandshakeType::Finished, Vec::new()).message_seq;
        let verify = prf::verify_data(&master, Side::Client, &self.transcript.clone().finalize());
        let mut fin = Vec::new();
        codec::put_header(&mut fin, HandshakeType::Finished, fin_seq, 12);
        fin.extend_from_slice(&verify);
        self.transcript.update(&fin);
        let keys = prf::key_block(&master, &self.random, &self.server_random);
        let s = self.session.as_mut().expect("ServerHello made it");
        s.read = DirectionKey {
            key: keys.server_key,
            iv: keys.server_iv,
        };
        s.write = DirectionKey {
            key: keys.client_key,
            iv: keys.client_iv,
        };
        self.next_message_seq = fin_seq + 1;
        self.master = Some(master);
        self.finished = Some(verify);
        self.flight = messages;
        self.state = State::AwaitFinished;
        self.retransmit_interval = self.config.retransmit_initial;
        self.retransmit_at = Some(now + self.retransmit_interval);
        self.write_flight();
        Ok(())
    }

    fn ecdhe_premaster(
        &mut self,
        messages: &mut Vec<OutMessage>,
        next: &mut impl FnMut(HandshakeType, Vec<u8>) -> OutMessage,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let point = self
            .server_point
            .as_ref()
            .ok_or(ClientError::Protocol("no ServerKeyExchange"))?;
        let peer = p256::PublicKey::from_sec1_bytes(point)
            .map_err(|_| ClientError::Protocol("server point"))?;
        let ours = ephemeral_key();
        let mut b = Vec::new();
        crate::reader::Put::put_vec8(&mut b, &uncompressed_point(&ours.public_key()));
        messages.push(next(HandshakeType::ClientKeyExchange, b));
        let shared = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), peer.as_affine());
        Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
    }

    fn server_finished(&mut self, plain: &[u8]) -> Result<(), ClientError> {
        for f in codec::fragments(plain) {
            let f = f.map_err(ClientError::Malformed)?;
            if f.msg_type != HandshakeType::Finished || !f.is_whole() {
                continue;
            }
            let master = self
                .master
                .as_ref()
                .ok_or(ClientError::Protocol("Finished too early"))?;
            let expected =
                prf::verify_data(master, Side::Server, &self.transcript.clone().finalize());
            if f.body != expected {
                return Err(ClientError::Protocol("server Finished does not verify"));
            }
            self.state = State::Established;
            self.retransmit_at = None;
            self.master = None;
        }
        Ok(())
    }
}

fn sh_server_type_raw(c: &Client) -> bool {
    matches!(c.config.credential, ClientCredential::RawPublicKey { .. })
}

fn seal(s: &mut ClientSession, t: ContentType, data: &[u8], out: &mut Vec<u8>) {
    record_cipher::seal(
        out,
        s.suite.aead(),
        &s.write,
        t,
        1,
        s.write_sequence,
        &s.server_cid,
        data,
    );
    s.write_sequence += 1;
}

//! One server handshake after the cookie round trip: flight 4 out (ServerHello
//! … ServerHelloDone), flight 5 in (the client's Certificate,
//! ClientKeyExchange, CertificateVerify, ChangeCipherSpec, Finished), flight
//! 6 out (ChangeCipherSpec, Finished). No handshake cache is kept: the
//! transcript is a running SHA-256, since messages are processed strictly in
//! order. PSK suites make no ephemeral keys.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::alert::AlertDescription;
use crate::cipher_suite::CipherSuite;
use crate::credentials::{CredentialStore, Refusal, ServerIdentity};
use crate::flight_writer::{write_plain_flight, OutMessage};
use crate::handshake_codec::{self as codec, ClientHello, Fragment, HandshakeType};
use crate::hello_extensions::{self as ext, CertificateType, ClientHelloExtensions};
use crate::message_assembler::{Accepted, MessageAssembler};
use crate::prf::{self, KeyBlock, Side};
use crate::reader::DecodeError;
use crate::record::{ContentType, Record};
use crate::record_cipher::{self, DirectionKey};
use crate::replay_window::ReplayWindow;
use crate::session::{AuthCredential, Cid, Session};

/// Why a handshake failed: the alert to send (if any) and a reason to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub alert: Option<AlertDescription>,
    pub reason: FailReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    NoCommonSuite,
    NoExtendedMasterSecret,
    UnsupportedParameters(&'static str),
    Malformed(DecodeError),
    UnexpectedMessage,
    Refused(Refusal),
    BadSignature,
    BadFinished,
    /// The client gave up with this alert.
    PeerAlert(AlertDescription),
    TimedOut,
}

impl FailReason {
    /// Every [`Self::label`], in [`Self::index`] order: a bounded label set
    /// for counters.
    pub const LABELS: [&'static str; 12] = [
        "no_common_suite",
        "no_extended_master_secret",
        "unsupported_parameters",
        "malformed",
        "unexpected_message",
        "unknown_credential",
        "refused",
        "unavailable",
        "bad_signature",
        "bad_finished",
        "client_alert",
        "timeout",
    ];

    /// The reason's place in [`Self::LABELS`].
    pub fn index(&self) -> usize {
        match self {
            FailReason::NoCommonSuite => 0,
            FailReason::NoExtendedMasterSecret => 1,
            FailReason::UnsupportedParameters(_) => 2,
            FailReason::Malformed(_) => 3,
            FailReason::UnexpectedMessage => 4,
            FailReason::Refused(Refusal::Unknown) => 5,
            FailReason::Refused(Refusal::NotAllowed(_)) => 6,
            FailReason::Refused(Refusal::Unavailable(_)) => 7,
            FailReason::BadSignature => 8,
            FailReason::BadFinished => 9,
            FailReason::PeerAlert(_) => 10,
            FailReason::TimedOut => 11,
        }
    }

    /// A short label for counters and logs.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

fn fail(alert: AlertDescription, reason: FailReason) -> Failure {
    Failure {
        alert: Some(alert),
        reason,
    }
}

fn malformed(e: DecodeError) -> Failure {
    fail(AlertDescription::DecodeError, FailReason::Malformed(e))
}

/// Settings a handshake needs.
#[derive(Debug, Clone)]
pub struct HandshakeSettings {
    pub mtu: usize,
    pub retransmit_initial: Duration,
    pub retransmit_max: Duration,
    pub timeout: Duration,
    pub require_extended_master_secret: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Certificate,
    ClientKeyExchange,
    CertificateVerify,
    Finished,
}

/// What handling a record did.
pub enum Progress<D> {
    Waiting,
    /// The client repeated something we already answered: send flight 4 again.
    Repeat,
    /// Done: the session and flight 6 to send.
    Established(Box<Session<D>>, Vec<u8>),
}

pub struct ServerHandshake<D> {
    pub(crate) addr: SocketAddr,
    pub(crate) client_random: [u8; 32],
    server_random: [u8; 32],
    pub(crate) suite: CipherSuite,
    client_cert_type: CertificateType,
    transcript: Sha256,
    assembler: MessageAssembler,
    expect: Expect,
    ecdhe: Option<p256::SecretKey>,
    client_key: Option<p256::ecdsa::VerifyingKey>,
    device: Option<D>,
    credential: Option<AuthCredential>,
    master: Option<Zeroizing<[u8; 48]>>,
    keys: Option<KeyBlock>,
    ccs_received: bool,
    /// Sequence number of the last epoch-1 record opened (the client's Finished).
    last_protected_sequence: u64,
    /// Epoch-1 records that arrived before their keys (reordering).
    early: Vec<Vec<u8>>,
    flight4: Vec<OutMessage>,
    epoch0_sequence: u64,
    next_message_seq: u16,
    pub(crate) our_cid: Option<Cid>,
    peer_cid: Option<Box<[u8]>>,
    pub(crate) retransmit_at: Instant,
    retransmit_interval: Duration,
    pub(crate) expires_at: Instant,
    settings: HandshakeSettings,
    /// Datagram bytes so far, handed on to the session.
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

/// Early epoch-1 records kept at most.
const MAX_EARLY: usize = 2;

fn random32() -> [u8; 32] {
    let mut r = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut r);
    r
}

/// A fresh P-256 key from the system RNG (by rejection: a random 32-byte
/// string is a valid scalar with overwhelming probability).
pub(crate) fn ephemeral_key() -> p256::SecretKey {
    loop {
        if let Ok(k) = p256::SecretKey::from_slice(&random32()) {
            return k;
        }
    }
}

pub(crate) fn uncompressed_point(key: &p256::PublicKey) -> Vec<u8> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    key.to_sec1_point(false).as_bytes().to_vec()
}

/// The server's pick of suite for a hello: the first of ours the client
/// offered, ECDHE only with a server identity and P-256 support.
pub fn choose_suite(hello: &ClientHello<'_>, has_identity: bool) -> Option<CipherSuite> {
    let x = &hello.extensions;
    let ecdhe_ok = has_identity
        && x.supports_secp256r1 != Some(false)
        && x.supports_uncompressed_points != Some(false)
        && x.supports_ecdsa_p256_sha256 != Some(false);
    CipherSuite::PREFERENCE
        .into_iter()
        .filter(|s| s.is_psk() || ecdhe_ok)
        .find(|s| hello.offers(s.id()))
}

/// The (verifying key, canonical SubjectPublicKeyInfo) of a P-256 key.
fn p256_key(spki: &[u8]) -> Result<(p256::ecdsa::VerifyingKey, Vec<u8>), Failure> {
    let key = p256::PublicKey::from_public_key_der(spki).map_err(|_| {
        fail(
            AlertDescription::UnsupportedCertificate,
            FailReason::UnsupportedParameters("not a P-256 key"),
        )
    })?;
    let canonical = key
        .to_public_key_der()
        .map_err(|_| {
            fail(
                AlertDescription::BadCertificate,
                FailReason::UnsupportedParameters("key encoding"),
            )
        })?
        .into_vec();
    Ok((p256::ecdsa::VerifyingKey::from(&key), canonical))
}

fn certificate_spki(der: &[u8]) -> Result<Vec<u8>, Failure> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).map_err(|_| {
        fail(
            AlertDescription::BadCertificate,
            FailReason::UnsupportedParameters("certificate does not parse"),
        )
    })?;
    Ok(cert.tbs_certificate.subject_pki.raw.to_vec())
}

fn refused(r: Refusal, psk: bool) -> Failure {
    let alert = match (&r, psk) {
        (Refusal::Unknown, true) => AlertDescription::UnknownPskIdentity,
        (Refusal::Unknown, false) => AlertDescription::CertificateUnknown,
        (Refusal::NotAllowed(_), _) => AlertDescription::AccessDenied,
        (Refusal::Unavailable(_), _) => AlertDescription::InternalError,
    };
    fail(alert, FailReason::Refused(r))
}

impl<D: Clone> ServerHandshake<D> {
    /// Starts from a ClientHello whose cookie was verified. `hello_message`
    /// is the whole ClientHello message (header and body) for the transcript.
    /// Returns the handshake and flight 4's datagrams.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        now: Instant,
        addr: SocketAddr,
        hello: &ClientHello<'_>,
        hello_message_seq: u16,
        hello_record_sequence: u64,
        identity: Option<&ServerIdentity>,
        our_cid: Option<Cid>,
        settings: &HandshakeSettings,
    ) -> Result<(Self, Vec<Vec<u8>>), Failure> {
        if hello.version != crate::record::DTLS_1_2 {
            return Err(fail(
                AlertDescription::ProtocolVersion,
                FailReason::UnsupportedParameters("DTLS 1.2 only"),
            ));
        }
        let x: &ClientHelloExtensions<'_> = &hello.extensions;
        if settings.require_extended_master_secret && !x.extended_master_secret {
            return Err(fail(
                AlertDescription::HandshakeFailure,
                FailReason::NoExtendedMasterSecret,
            ));
        }
        let suite = choose_suite(hello, identity.is_some()).ok_or_else(|| {
            fail(
                AlertDescription::HandshakeFailure,
                FailReason::NoCommonSuite,
            )
        })?;
        let mut client_cert_type = CertificateType::X509;
        let mut server_cert_type = CertificateType::X509;
        if !suite.is_psk() {
            let both = [CertificateType::X509, CertificateType::RawPublicKey];
            client_cert_type = ClientHelloExtensions::pick_type(x.client_certificate_types, &both)
                .ok_or_else(|| {
                    fail(
                        AlertDescription::UnsupportedCertificate,
                        FailReason::UnsupportedParameters("client certificate type"),
                    )
                })?;
            // Our raw public key whenever the client can take one: smaller
            // than a chain, and a client that lists it has pinned our key
            // (libcoap's RPK mode lists X.509 too but cannot verify it).
            let server_offered = x.server_certificate_types;
            server_cert_type = server_offered
                .filter(|l| l.contains(&CertificateType::RawPublicKey.code()))
                .map(|_| CertificateType::RawPublicKey)
                .or_else(|| ClientHelloExtensions::pick_type(server_offered, &both))
                .ok_or_else(|| {
                    fail(
                        AlertDescription::UnsupportedCertificate,
                        FailReason::UnsupportedParameters("server certificate type"),
                    )
                })?;
        }
        let peer_cid = x.connection_id.map(Box::<[u8]>::from);
        let our_cid = our_cid.filter(|_| x.connection_id.is_some());

        let server_random = random32();
        let mut extensions = Vec::new();
        if x.extended_master_secret {
            ext::put_extension(&mut extensions, ext::EXTENDED_MASTER_SECRET, &[]);
        }
        if x.renegotiation_info || hello.offers(codec::EMPTY_RENEGOTIATION_INFO_SCSV) {
            ext::put_extension(&mut extensions, ext::RENEGOTIATION_INFO, &[0]);
        }
        if let Some(cid) = &our_cid {
            let mut d = Vec::with_capacity(1 + cid.len());
            d.push(cid.len() as u8);
            d.extend_from_slice(cid);
            ext::put_extension(&mut extensions, ext::CONNECTION_ID, &d);
        }
        if !suite.is_psk() {
            if x.supports_uncompressed_points.is_some() {
                ext::put_extension(
                    &mut extensions,
                    ext::EC_POINT_FORMATS,
                    &[1, ext::UNCOMPRESSED],
                );
            }
            if x.client_certificate_types.is_some() {
                ext::put_extension(
                    &mut extensions,
                    ext::CLIENT_CERTIFICATE_TYPE,
                    &[client_cert_type.code()],
                );
            }
            if x.server_certificate_types.is_some() {
                ext::put_extension(
                    &mut extensions,
                    ext::SERVER_CERTIFICATE_TYPE,
                    &[server_cert_type.code()],
                );
            }
        }

        let mut seq = hello_message_seq;
        let mut next = |msg_type, body| {
            let m = OutMessage {
                msg_type,
                message_seq: seq,
                body,
            };
            seq += 1;
            m
        };
        let mut flight4 = vec![next(
            HandshakeType::ServerHello,
            codec::server_hello_body(&server_random, suite.id(), &extensions),
        )];
        let mut ecdhe = None;
        if !suite.is_psk() {
            let identity = identity.expect("ECDHE suites are chosen only with an identity");
            let certificate = match server_cert_type {
                CertificateType::X509 => codec::certificate_x509_body(&identity.chain),
                CertificateType::RawPublicKey => {
                    codec::certificate_raw_public_key_body(&identity.spki)
                }
            };
            flight4.push(next(HandshakeType::Certificate, certificate));
            let key = ephemeral_key();
            let params = codec::ecdh_params(&uncompressed_point(&key.public_key()));
            let mut signed = Vec::with_capacity(64 + params.len());
            signed.extend_from_slice(&hello.random);
            signed.extend_from_slice(&server_random);
            signed.extend_from_slice(&params);
            let signature: p256::ecdsa::Signature = identity.key.sign(&signed);
            flight4.push(next(
                HandshakeType::ServerKeyExchange,
                codec::server_key_exchange_body(&params, signature.to_der().as_bytes()),
            ));
            flight4.push(next(
                HandshakeType::CertificateRequest,
                codec::certificate_request_body(),
            ));
            ecdhe = Some(key);
        }
        flight4.push(next(HandshakeType::ServerHelloDone, Vec::new()));
        let next_message_seq = seq;

        let mut transcript = Sha256::new();
        let mut ch = Vec::new();
        let hello_body_len =
            hello.before_cookie.len() + 1 + hello.cookie.len() + hello.after_cookie.len();
        codec::put_header(
            &mut ch,
            HandshakeType::ClientHello,
            hello_message_seq,
            hello_body_len,
        );
        transcript.update(&ch);
        transcript.update(hello.before_cookie);
        transcript.update([hello.cookie.len() as u8]);
        transcript.update(hello.cookie);
        transcript.update(hello.after_cookie);
        for m in &flight4 {
            transcript.update(m.transcript_bytes());
        }

        let mut hs = ServerHandshake {
            addr,
            client_random: hello.random,
            server_random,
            suite,
            client_cert_type,
            transcript,
            assembler: MessageAssembler::new(hello_message_seq.wrapping_add(1)),
            expect: if suite.is_psk() {
                Expect::ClientKeyExchange
            } else {
                Expect::Certificate
            },
            ecdhe,
            client_key: None,
            device: None,
            credential: None,
            master: None,
            keys: None,
            ccs_received: false,
            last_protected_sequence: 0,
            early: Vec::new(),
            flight4,
            epoch0_sequence: hello_record_sequence,
            next_message_seq,
            our_cid,
            peer_cid,
            retransmit_at: now + settings.retransmit_initial,
            retransmit_interval: settings.retransmit_initial,
            expires_at: now + settings.timeout,
            settings: settings.clone(),
            bytes_in: 0,
            bytes_out: 0,
        };
        let datagrams = hs.flight4_datagrams();
        Ok((hs, datagrams))
    }

    /// Flight 4 again, with new record sequence numbers.
    pub fn flight4_datagrams(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        write_plain_flight(
            &self.flight4,
            &mut self.epoch0_sequence,
            self.settings.mtu,
            &mut out,
        );
        self.bytes_out += out.iter().map(|d| d.len() as u64).sum::<u64>();
        out
    }

    /// The retransmission timer fired: flight 4 again, backing off.
    pub fn on_retransmit_timer(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.retransmit_interval = (self.retransmit_interval * 2).min(self.settings.retransmit_max);
        self.retransmit_at = now + self.retransmit_interval;
        self.flight4_datagrams()
    }

    /// When the handshake began (its ClientHello with a valid cookie).
    pub fn started_at(&self) -> Instant {
        self.expires_at - self.settings.timeout
    }

    /// The next time this handshake needs attention.
    pub fn deadline(&self) -> Instant {
        self.retransmit_at.min(self.expires_at)
    }

    /// Handles one record from the client (epoch 0 or 1).
    pub fn handle_record<C: CredentialStore<Device = D>>(
        &mut self,
        now: Instant,
        record: &Record<'_>,
        raw: &[u8],
        creds: &C,
    ) -> Result<Progress<D>, Failure> {
        match (record.epoch, record.content_type) {
            (0, ContentType::Handshake) => self.handle_plain_handshake(now, record.body, creds),
            (0, ContentType::ChangeCipherSpec) => {
                if record.body != [1] {
                    return Err(malformed(DecodeError::Malformed("change_cipher_spec")));
                }
                self.ccs_received = true;
                self.drain_early(now, creds)
            }
            (1, _) => {
                if self.keys.is_none() || !self.ccs_received {
                    if self.early.len() < MAX_EARLY {
                        self.early.push(raw.to_vec());
                    }
                    return Ok(Progress::Waiting);
                }
                self.handle_protected(now, record, creds)
            }
            // A fatal alert in epoch 0 ends the handshake; anything else is noise.
            (0, ContentType::Alert) => match crate::alert::parse(record.body) {
                Some((crate::alert::FATAL, desc)) => Err(Failure {
                    alert: None,
                    reason: FailReason::PeerAlert(desc),
                }),
                _ => Ok(Progress::Waiting),
            },
            _ => Ok(Progress::Waiting),
        }
    }

    fn drain_early<C: CredentialStore<Device = D>>(
        &mut self,
        now: Instant,
        creds: &C,
    ) -> Result<Progress<D>, Failure> {
        if self.keys.is_none() || !self.ccs_received {
            return Ok(Progress::Waiting);
        }
        for raw in std::mem::take(&mut self.early) {
            let cid_len = self.our_cid.map(|c| c.len()).unwrap_or(0);
            let Some(Ok(record)) = crate::record::split_records(&raw, cid_len).next() else {
                continue;
            };
            if let Progress::Established(s, f) = self.handle_protected(now, &record, creds)? {
                return Ok(Progress::Established(s, f));
            }
        }
        Ok(Progress::Waiting)
    }

    fn handle_protected<C: CredentialStore<Device = D>>(
        &mut self,
        now: Instant,
        record: &Record<'_>,
        creds: &C,
    ) -> Result<Progress<D>, Failure> {
        let keys = self.keys.as_ref().expect("checked by the caller");
        let read = DirectionKey {
            key: keys.client_key,
            iv: keys.client_iv,
        };
        let mut plain = Vec::new();
        // After the client's ChangeCipherSpec the only epoch-1 record is its
        // Finished: one that does not open means the keys differ (a wrong
        // PSK), so the handshake ends at once instead of timing out.
        let content_type = record_cipher::open(self.suite.aead(), &read, record, &mut plain)
            .map_err(|_| fail(AlertDescription::BadRecordMac, FailReason::BadFinished))?;
        if content_type != ContentType::Handshake {
            return Err(fail(
                AlertDescription::UnexpectedMessage,
                FailReason::UnexpectedMessage,
            ));
        }
        self.last_protected_sequence = record.sequence;
        self.handle_plain_handshake(now, &plain, creds)
    }

    fn handle_plain_handshake<C: CredentialStore<Device = D>>(
        &mut self,
        now: Instant,
        body: &[u8],
        creds: &C,
    ) -> Result<Progress<D>, Failure> {
        let mut repeat = false;
        for f in codec::fragments(body) {
            let f: Fragment<'_> = f.map_err(malformed)?;
            match self.assembler.push(&f) {
                Accepted::Stale => repeat = true,
                Accepted::Buffered | Accepted::Dropped | Accepted::Inconsistent => {}
            }
        }
        while let Some((msg_type, seq, body)) = self.assembler.pop() {
            if let Some(done) = self.process(now, msg_type, seq, &body, creds)? {
                return Ok(done);
            }
        }
        if self.expect == Expect::Finished && self.ccs_received {
            return self.drain_early(now, creds);
        }
        Ok(if repeat {
            Progress::Repeat
        } else {
            Progress::Waiting
        })
    }

    fn hash_message(&mut self, msg_type: HandshakeType, seq: u16, body: &[u8]) {
        let mut h = Vec::with_capacity(codec::HANDSHAKE_HEADER_LEN);
        codec::put_header(&mut h, msg_type, seq, body.len());
        self.transcript.update(&h);
        self.transcript.update(body);
    }

    fn process<C: CredentialStore<Device = D>>(
        &mut self,
        now: Instant,
        msg_type: HandshakeType,
        seq: u16,
        body: &[u8],
        creds: &C,
    ) -> Result<Option<Progress<D>>, Failure> {
        match (self.expect, msg_type) {
            (Expect::Certificate, HandshakeType::Certificate) => {
                let chain = match self.client_cert_type {
                    CertificateType::RawPublicKey => None,
                    CertificateType::X509 => {
                        Some(codec::parse_certificate_x509(body).map_err(malformed)?)
                    }
                };
                let spki = match &chain {
                    None => codec::parse_certificate_raw_public_key(body)
                        .map_err(malformed)?
                        .to_vec(),
                    Some(chain) => {
                        let leaf = chain.first().ok_or_else(|| {
                            fail(
                                AlertDescription::HandshakeFailure,
                                FailReason::UnsupportedParameters("no client certificate"),
                            )
                        })?;
                        certificate_spki(leaf)?
                    }
                };
                let (key, canonical) = p256_key(&spki)?;
                let device = match &chain {
                    None => creds.public_key(&canonical),
                    Some(chain) => creds.certificate(&canonical, chain),
                }
                .map_err(|r| refused(r, false))?;
                self.credential = Some(AuthCredential::PublicKey {
                    fingerprint: Sha256::digest(&canonical).into(),
                    raw: self.client_cert_type == CertificateType::RawPublicKey,
                });
                self.device = Some(device);
                self.client_key = Some(key);
                self.hash_message(msg_type, seq, body);
                self.expect = Expect::ClientKeyExchange;
            }
            (Expect::ClientKeyExchange, HandshakeType::ClientKeyExchange) => {
                let premaster: Zeroizing<Vec<u8>> = if self.suite.is_psk() {
                    let identity = codec::parse_psk_client_key_exchange(body).map_err(malformed)?;
                    let (device, psk) = creds.psk(identity).map_err(|r| refused(r, true))?;
                    self.device = Some(device);
                    self.credential = Some(AuthCredential::Psk {
                        identity: identity.into(),
                    });
                    prf::psk_premaster(&psk)
                } else {
                    let point = codec::parse_ecdhe_client_key_exchange(body).map_err(malformed)?;
                    let peer = p256::PublicKey::from_sec1_bytes(point).map_err(|_| {
                        fail(
                            AlertDescription::IllegalParameter,
                            FailReason::UnsupportedParameters("client ECDH point"),
                        )
                    })?;
                    let secret = self.ecdhe.take().expect("ECDHE suites keep their key");
                    let shared =
                        p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), peer.as_affine());
                    Zeroizing::new(shared.raw_secret_bytes().to_vec())
                };
                self.hash_message(msg_type, seq, body);
                let session_hash = self.transcript.clone().finalize();
                let master = prf::extended_master_secret(&premaster, &session_hash);
                self.keys = Some(prf::key_block(
                    &master,
                    &self.client_random,
                    &self.server_random,
                ));
                self.master = Some(master);
                self.expect = if self.suite.is_psk() {
                    Expect::Finished
                } else {
                    Expect::CertificateVerify
                };
            }
            (Expect::CertificateVerify, HandshakeType::CertificateVerify) => {
                let (alg, der) = codec::parse_certificate_verify(body).map_err(malformed)?;
                if alg != ext::ECDSA_P256_SHA256 {
                    return Err(fail(
                        AlertDescription::IllegalParameter,
                        FailReason::UnsupportedParameters("signature algorithm"),
                    ));
                }
                let sig = p256::ecdsa::Signature::from_der(der)
                    .map_err(|_| fail(AlertDescription::DecryptError, FailReason::BadSignature))?;
                let digest = self.transcript.clone().finalize();
                self.client_key
                    .as_ref()
                    .expect("Certificate came first")
                    .verify_prehash(&digest, &sig)
                    .map_err(|_| fail(AlertDescription::DecryptError, FailReason::BadSignature))?;
                self.hash_message(msg_type, seq, body);
                self.expect = Expect::Finished;
            }
            (Expect::Finished, HandshakeType::Finished) => {
                let master = self.master.take().expect("keys before Finished");
                let expected =
                    prf::verify_data(&master, Side::Client, &self.transcript.clone().finalize());
                if body.len() != 12 || !constant_time_eq(body, &expected) {
                    return Err(fail(
                        AlertDescription::DecryptError,
                        FailReason::BadFinished,
                    ));
                }
                self.hash_message(msg_type, seq, body);
                let ours =
                    prf::verify_data(&master, Side::Server, &self.transcript.clone().finalize());
                return Ok(Some(self.establish(now, ours)));
            }
            _ => {
                return Err(fail(
                    AlertDescription::UnexpectedMessage,
                    FailReason::UnexpectedMessage,
                ))
            }
        }
        Ok(None)
    }

    fn establish(&mut self, now: Instant, ours: [u8; 12]) -> Progress<D> {
        let keys = self.keys.take().expect("keys before Finished");
        // The client's Finished is the first epoch-1 record of the session.
        let mut replay = ReplayWindow::default();
        replay.mark(self.last_protected_sequence);
        let mut session = Session {
            device: self.device.clone().expect("authenticated before Finished"),
            credential: self
                .credential
                .clone()
                .expect("authenticated before Finished"),
            suite: self.suite,
            read: DirectionKey {
                key: keys.client_key,
                iv: keys.client_iv,
            },
            write: DirectionKey {
                key: keys.server_key,
                iv: keys.server_iv,
            },
            write_sequence: 0,
            replay,
            our_cid: self.our_cid,
            peer_cid: self.peer_cid.take().filter(|c| !c.is_empty()),
            addr: self.addr,
            last_heard: now,
            finished_to_resend: Some(ours),
            epoch0_sequence: self.epoch0_sequence,
            finished_message_seq: self.next_message_seq,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
        };
        let mut flight6 = Vec::with_capacity(96);
        session.write_flight6(&ours, &mut flight6);
        Progress::Established(Box::new(session), flight6)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

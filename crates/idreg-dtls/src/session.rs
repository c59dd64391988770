//! An established session: only what the record layer needs once the
//! handshake is over (keys, IVs, sequence numbers, the replay window, CIDs,
//! the device and when it was last heard from). The handshake's state is
//! gone by then; this is what a node holds for each of its many idle
//! devices, so it is kept small.

use std::net::SocketAddr;
use std::time::Instant;

use crate::cipher_suite::CipherSuite;
use crate::handshake_codec::{put_header, HandshakeType};
use crate::record::{self, ContentType, Record};
use crate::record_cipher::{self, DirectionKey, OpenError};
use crate::replay_window::ReplayWindow;

/// Bytes of the Connection IDs this server issues: the node id, the shard,
/// then four random bytes.
pub const CID_LEN: usize = 6;
pub type Cid = [u8; CID_LEN];

/// What a device authenticated with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthCredential {
    Psk {
        identity: Box<[u8]>,
    },
    /// SHA-256 of the SubjectPublicKeyInfo, from an X.509 certificate or a
    /// raw public key.
    PublicKey {
        fingerprint: [u8; 32],
        raw: bool,
    },
}

impl AuthCredential {
    /// "psk", "certificate" or "raw-public-key".
    pub fn kind(&self) -> &'static str {
        match self {
            AuthCredential::Psk { .. } => "psk",
            AuthCredential::PublicKey { raw: false, .. } => "certificate",
            AuthCredential::PublicKey { raw: true, .. } => "raw-public-key",
        }
    }
}

/// Why a record of an established session was dropped (silently, as DTLS
/// requires; counted by the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDrop {
    WrongEpoch,
    Replayed,
    Open(OpenError),
}

#[derive(Debug)]
pub struct Session<D> {
    pub device: D,
    pub credential: AuthCredential,
    pub suite: CipherSuite,
    pub(crate) read: DirectionKey,
    pub(crate) write: DirectionKey,
    /// Next epoch-1 sequence number to send.
    pub(crate) write_sequence: u64,
    pub(crate) replay: ReplayWindow,
    pub(crate) our_cid: Option<Cid>,
    /// The CID the client asked to receive; empty or `None`: classic records.
    pub(crate) peer_cid: Option<Box<[u8]>>,
    pub(crate) addr: SocketAddr,
    pub(crate) last_heard: Instant,
    /// Our Finished, until the client shows it has it by sending in epoch 1:
    /// a retransmitted flight 5 is answered by sending flight 6 again.
    pub(crate) finished_to_resend: Option<[u8; 12]>,
    /// Next epoch-0 sequence number (for the ChangeCipherSpec of a resent
    /// flight 6).
    pub(crate) epoch0_sequence: u64,
    /// The handshake's final message_seq, for a resent Finished.
    pub(crate) finished_message_seq: u16,
    /// Datagram bytes received from and sent to the client, handshake included.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl<D> Session<D> {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn our_cid(&self) -> Option<&Cid> {
        self.our_cid.as_ref()
    }

    pub fn uses_cid(&self) -> bool {
        self.our_cid.is_some()
    }

    pub fn last_heard(&self) -> Instant {
        self.last_heard
    }

    /// Checks and opens a protected record from the client into `plain`.
    pub fn open(
        &mut self,
        record: &Record<'_>,
        plain: &mut Vec<u8>,
    ) -> Result<ContentType, RecordDrop> {
        if record.epoch != 1 {
            return Err(RecordDrop::WrongEpoch);
        }
        if !self.replay.is_fresh(record.sequence) {
            return Err(RecordDrop::Replayed);
        }
        let t = record_cipher::open(self.suite.aead(), &self.read, record, plain)
            .map_err(RecordDrop::Open)?;
        self.replay.mark(record.sequence);
        Ok(t)
    }

    /// Appends one protected record to `out`.
    pub fn seal(&mut self, content_type: ContentType, data: &[u8], out: &mut Vec<u8>) {
        let before = out.len();
        let cid = self.peer_cid.as_deref().unwrap_or(&[]);
        record_cipher::seal(
            out,
            self.suite.aead(),
            &self.write,
            content_type,
            1,
            self.write_sequence,
            cid,
            data,
        );
        self.write_sequence += 1;
        self.bytes_out += (out.len() - before) as u64;
    }

    /// Flight 6: ChangeCipherSpec, then our Finished under the new keys.
    pub(crate) fn write_flight6(&mut self, verify_data: &[u8; 12], out: &mut Vec<u8>) {
        record::put_header(
            out,
            ContentType::ChangeCipherSpec,
            0,
            self.epoch0_sequence,
            &[],
            1,
        );
        out.push(1);
        self.bytes_out += (record::HEADER_LEN + 1) as u64;
        self.epoch0_sequence += 1;
        let mut finished = Vec::with_capacity(24);
        put_header(
            &mut finished,
            HandshakeType::Finished,
            self.finished_message_seq,
            12,
        );
        finished.extend_from_slice(verify_data);
        self.seal(ContentType::Handshake, &finished, out);
    }
}

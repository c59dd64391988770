//! Writes a flight of plaintext (epoch 0) handshake messages into as few
//! datagrams as fit the path MTU, fragmenting a message that does not fit
//! (RFC 6347 §4.2.3). A retransmission writes the same messages again with
//! new record sequence numbers.

use crate::handshake_codec::{put_fragment_header, HandshakeType, HANDSHAKE_HEADER_LEN};
use crate::record::{put_header, ContentType, HEADER_LEN};

/// A handshake message as sent: kept whole for retransmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    pub msg_type: HandshakeType,
    pub message_seq: u16,
    pub body: Vec<u8>,
}

impl OutMessage {
    /// The message as it enters the transcript: unfragmented header + body.
    pub fn transcript_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HANDSHAKE_HEADER_LEN + self.body.len());
        crate::handshake_codec::put_header(
            &mut b,
            self.msg_type,
            self.message_seq,
            self.body.len(),
        );
        b.extend_from_slice(&self.body);
        b
    }
}

/// Smallest fragment worth starting in what is left of a datagram.
const MIN_FRAGMENT: usize = 32;

/// Appends `messages` as epoch-0 handshake records to `datagrams` (each at
/// most `mtu` bytes), numbering records from `*sequence`.
pub fn write_plain_flight(
    messages: &[OutMessage],
    sequence: &mut u64,
    mtu: usize,
    datagrams: &mut Vec<Vec<u8>>,
) {
    let overhead = HEADER_LEN + HANDSHAKE_HEADER_LEN;
    let mut dgram: Vec<u8> = Vec::with_capacity(mtu);
    for m in messages {
        let total = m.body.len();
        let mut offset = 0;
        loop {
            let room = mtu.saturating_sub(dgram.len() + overhead);
            let left = total - offset;
            if !dgram.is_empty() && (room < left.min(MIN_FRAGMENT) || room == 0) {
                datagrams.push(std::mem::replace(&mut dgram, Vec::with_capacity(mtu)));
                continue;
            }
            // An MTU below the overhead still makes progress, one byte a time.
            let n = left.min(room.max(1));
            put_header(
                &mut dgram,
                ContentType::Handshake,
                0,
                *sequence,
                &[],
                HANDSHAKE_HEADER_LEN + n,
            );
            *sequence += 1;
            put_fragment_header(&mut dgram, m.msg_type, total, m.message_seq, offset, n);
            dgram.extend_from_slice(&m.body[offset..offset + n]);
            offset += n;
            if offset >= total {
                break;
            }
        }
    }
    if !dgram.is_empty() {
        datagrams.push(dgram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake_codec::fragments;
    use crate::message_assembler::MessageAssembler;
    use crate::record::split_records;

    fn msgs() -> Vec<OutMessage> {
        vec![
            OutMessage {
                msg_type: HandshakeType::ServerHello,
                message_seq: 1,
                body: vec![1; 70],
            },
            OutMessage {
                msg_type: HandshakeType::Certificate,
                message_seq: 2,
                body: (0..900).map(|i| i as u8).collect(),
            },
            OutMessage {
                msg_type: HandshakeType::ServerHelloDone,
                message_seq: 3,
                body: vec![],
            },
        ]
    }

    #[test]
    fn small_mtus_fragment_and_the_pieces_reassemble() {
        for mtu in [1200, 300, 100, 40] {
            let mut out = Vec::new();
            let mut seq = 5;
            write_plain_flight(&msgs(), &mut seq, mtu, &mut out);
            let mut a = MessageAssembler::new(1);
            for d in &out {
                assert!(
                    d.len() <= mtu.max(HEADER_LEN + HANDSHAKE_HEADER_LEN + 1),
                    "{mtu}: {}",
                    d.len()
                );
                for r in split_records(d, 0) {
                    for f in fragments(r.unwrap().body) {
                        a.push(&f.unwrap());
                    }
                }
            }
            for m in msgs() {
                let (t, s, body) = a.pop().expect("whole");
                assert_eq!((t, s, body), (m.msg_type, m.message_seq, m.body));
            }
            if mtu == 1200 {
                assert_eq!(out.len(), 1, "one datagram when it fits");
            }
        }
    }
}

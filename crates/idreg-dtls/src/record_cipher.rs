//! Record protection for the AEAD suites: AES-128-CCM, -CCM_8 and -GCM with
//! the DTLS 1.2 nonce (4-byte implicit IV, then epoch and sequence number as
//! the 8-byte explicit nonce) and either the RFC 6347 additional data or,
//! for records carrying a Connection ID, RFC 9146's.
//!
//! Only raw keys are kept (16 + 4 bytes per direction); the AES key schedule
//! is rebuilt per record, which costs tens of nanoseconds and keeps an idle
//! session small.

use aes_gcm_dtls::Aes128Gcm;
use ccm::aead::generic_array::GenericArray;
use ccm::aead::{AeadInPlace, KeyInit};
use ccm::consts::{U12, U16, U8};
use zeroize::Zeroize;

use crate::cipher_suite::{Aead, EXPLICIT_NONCE_LEN};
use crate::reader::Put;
use crate::record::{self, ContentType, Record, DTLS_1_2};

type Ccm8 = ccm::Ccm<aes::Aes128, U8, U12>;
type Ccm16 = ccm::Ccm<aes::Aes128, U16, U12>;

/// Why a record could not be opened. Never answered on the wire: a record
/// that fails is dropped (RFC 6347 §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("record too short for its protection")]
    TooShort,
    #[error("authentication failed")]
    BadMac,
    #[error("inner plaintext has no content type")]
    NoInnerType,
}

/// One direction's key and implicit IV.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectionKey {
    pub key: [u8; 16],
    pub iv: [u8; 4],
}

impl Drop for DirectionKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for DirectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectionKey(..)")
    }
}

fn nonce(iv: &[u8; 4], epoch_sequence: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(iv);
    n[4..].copy_from_slice(&epoch_sequence.to_be_bytes());
    n
}

/// RFC 6347 §4.1.2.1: seq_num (epoch || sequence) + type + version + length.
fn classic_aad(epoch_sequence: u64, content_type: ContentType, len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&epoch_sequence.to_be_bytes());
    aad[8] = content_type.code();
    aad[9..11].copy_from_slice(&DTLS_1_2.to_be_bytes());
    aad[11..13].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

/// RFC 9146 §5: seq_num_placeholder + tls12_cid + cid_length + tls12_cid +
/// version + epoch + sequence_number + cid + length_of_DTLSInnerPlaintext.
fn cid_aad(epoch: u16, sequence: u64, cid: &[u8], inner_len: usize) -> Vec<u8> {
    let mut aad = Vec::with_capacity(23 + cid.len());
    aad.extend_from_slice(&[0xff; 8]);
    aad.put_u8(ContentType::Tls12Cid.code());
    aad.put_u8(cid.len() as u8);
    aad.put_u8(ContentType::Tls12Cid.code());
    aad.put_u16(DTLS_1_2);
    aad.put_u16(epoch);
    aad.put_u48(sequence);
    aad.extend_from_slice(cid);
    aad.put_u16(inner_len as u16);
    aad
}

fn seal_in_place(
    aead: Aead,
    key: &DirectionKey,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &mut [u8],
) {
    let n = GenericArray::from_slice(nonce);
    let k = GenericArray::from_slice(&key.key);
    const LIMIT: &str = "a record's plaintext is far below the AEAD's limit";
    match aead {
        Aead::Ccm8 => tag.copy_from_slice(
            &Ccm8::new(k)
                .encrypt_in_place_detached(n, aad, buf)
                .expect(LIMIT),
        ),
        Aead::Ccm16 => tag.copy_from_slice(
            &Ccm16::new(k)
                .encrypt_in_place_detached(n, aad, buf)
                .expect(LIMIT),
        ),
        Aead::Gcm => tag.copy_from_slice(
            &Aes128Gcm::new(k)
                .encrypt_in_place_detached(n, aad, buf)
                .expect(LIMIT),
        ),
    }
}

fn open_in_place(
    aead: Aead,
    key: &DirectionKey,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), OpenError> {
    let n = GenericArray::from_slice(nonce);
    let k = GenericArray::from_slice(&key.key);
    let ok = match aead {
        Aead::Ccm8 => {
            Ccm8::new(k).decrypt_in_place_detached(n, aad, buf, GenericArray::from_slice(tag))
        }
        Aead::Ccm16 => {
            Ccm16::new(k).decrypt_in_place_detached(n, aad, buf, GenericArray::from_slice(tag))
        }
        Aead::Gcm => {
            Aes128Gcm::new(k).decrypt_in_place_detached(n, aad, buf, GenericArray::from_slice(tag))
        }
    };
    ok.map_err(|_| OpenError::BadMac)
}

/// Appends one protected record to `out`. With a non-empty `cid` (the CID
/// the receiver chose) it is a `tls12_cid` record with `content_type`
/// inside; otherwise a classic record.
#[allow(clippy::too_many_arguments)]
pub fn seal(
    out: &mut Vec<u8>,
    aead: Aead,
    key: &DirectionKey,
    content_type: ContentType,
    epoch: u16,
    sequence: u64,
    cid: &[u8],
    plaintext: &[u8],
) {
    let epoch_sequence = (u64::from(epoch) << 48) | sequence;
    let nonce = nonce(&key.iv, epoch_sequence);
    let (outer_type, aad_vec, classic);
    let inner_len = plaintext.len() + usize::from(!cid.is_empty());
    let aad: &[u8] = if cid.is_empty() {
        classic = classic_aad(epoch_sequence, content_type, plaintext.len());
        outer_type = content_type;
        &classic
    } else {
        aad_vec = cid_aad(epoch, sequence, cid, inner_len);
        outer_type = ContentType::Tls12Cid;
        &aad_vec
    };
    let body_len = EXPLICIT_NONCE_LEN + inner_len + aead.tag_len();
    record::put_header(out, outer_type, epoch, sequence, cid, body_len);
    out.extend_from_slice(&epoch_sequence.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(plaintext);
    if !cid.is_empty() {
        out.push(content_type.code());
    }
    out.resize(out.len() + aead.tag_len(), 0);
    let (text, tag) = out[start..].split_at_mut(inner_len);
    seal_in_place(aead, key, &nonce, aad, text, tag);
}

/// Opens a protected record into `plain` (cleared first); returns the real
/// content type (for a `tls12_cid` record, the one inside).
pub fn open(
    aead: Aead,
    key: &DirectionKey,
    record: &Record<'_>,
    plain: &mut Vec<u8>,
) -> Result<ContentType, OpenError> {
    let tag_len = aead.tag_len();
    if record.body.len() < EXPLICIT_NONCE_LEN + tag_len {
        return Err(OpenError::TooShort);
    }
    let (explicit, rest) = record.body.split_at(EXPLICIT_NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - tag_len);
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&key.iv);
    n[4..].copy_from_slice(explicit);
    plain.clear();
    plain.extend_from_slice(ciphertext);
    let epoch_sequence = record.epoch_sequence();
    if record.content_type != ContentType::Tls12Cid {
        let aad = classic_aad(epoch_sequence, record.content_type, ciphertext.len());
        open_in_place(aead, key, &n, &aad, plain, tag)?;
        return Ok(record.content_type);
    }
    let aad = cid_aad(record.epoch, record.sequence, record.cid, ciphertext.len());
    open_in_place(aead, key, &n, &aad, plain, tag)?;
    // DTLSInnerPlaintext: content, real type, zero padding.
    while plain.last() == Some(&0) {
        plain.pop();
    }
    let inner = plain.pop().ok_or(OpenError::NoInnerType)?;
    match ContentType::from_code(inner) {
        Some(t) if t != ContentType::Tls12Cid => Ok(t),
        _ => Err(OpenError::NoInnerType),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::split_records;

    fn key() -> DirectionKey {
        DirectionKey {
            key: [7; 16],
            iv: [1, 2, 3, 4],
        }
    }

    #[test]
    fn every_aead_round_trips_with_and_without_a_cid() {
        for aead in [Aead::Ccm8, Aead::Ccm16, Aead::Gcm] {
            for cid in [&[][..], &[5, 6, 7, 8, 9, 10][..]] {
                let mut out = Vec::new();
                seal(
                    &mut out,
                    aead,
                    &key(),
                    ContentType::ApplicationData,
                    1,
                    42,
                    cid,
                    b"hello",
                );
                let rec = split_records(&out, cid.len()).next().unwrap().unwrap();
                assert_eq!(rec.cid, cid);
                let mut plain = Vec::new();
                let t = open(aead, &key(), &rec, &mut plain).unwrap();
                assert_eq!(
                    (t, plain.as_slice()),
                    (ContentType::ApplicationData, &b"hello"[..])
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_or_another_sequence_number_fails() {
        let mut out = Vec::new();
        seal(
            &mut out,
            Aead::Ccm8,
            &key(),
            ContentType::ApplicationData,
            1,
            42,
            &[],
            b"hello",
        );
        let mut bad = out.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let rec = split_records(&bad, 0).next().unwrap().unwrap();
        assert_eq!(
            open(Aead::Ccm8, &key(), &rec, &mut Vec::new()),
            Err(OpenError::BadMac)
        );
        // The header's sequence number is authenticated too.
        let mut moved = out.clone();
        moved[10] ^= 1;
        let rec = split_records(&moved, 0).next().unwrap().unwrap();
        assert_eq!(
            open(Aead::Ccm8, &key(), &rec, &mut Vec::new()),
            Err(OpenError::BadMac)
        );
        let short = Record {
            body: &out[13..20],
            ..split_records(&out, 0).next().unwrap().unwrap()
        };
        assert_eq!(
            open(Aead::Ccm8, &key(), &short, &mut Vec::new()),
            Err(OpenError::TooShort)
        );
    }
}

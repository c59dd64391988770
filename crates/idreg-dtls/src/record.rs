//! The DTLS 1.2 record layer's framing (RFC 6347 §4.1, RFC 9146 §4): one
//! datagram holds one or more records; a record says its content type,
//! epoch and sequence number, and with a Connection ID (content type
//! `tls12_cid`) carries the CID its receiver chose.

use crate::reader::{DecodeError, Put, Reader};

/// DTLS 1.2 on the wire (`{254, 253}`).
pub const DTLS_1_2: u16 = 0xfefd;
/// DTLS 1.0, which clients may put on their first ClientHello's record.
pub const DTLS_1_0: u16 = 0xfeff;
/// Bytes of a record header without a CID.
pub const HEADER_LEN: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
    /// RFC 9146: a protected record carrying a Connection ID; the real type
    /// is inside the encrypted inner plaintext.
    Tls12Cid,
}

impl ContentType {
    pub fn code(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Tls12Cid => 25,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            25 => ContentType::Tls12Cid,
            _ => return None,
        })
    }
}

/// A record as it arrived: its header fields and its (maybe protected) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub content_type: ContentType,
    pub version: u16,
    pub epoch: u16,
    /// 48 bits.
    pub sequence: u64,
    /// Present for `Tls12Cid` records.
    pub cid: &'a [u8],
    pub body: &'a [u8],
}

impl Record<'_> {
    /// Epoch and sequence number as one 64-bit value (the AEAD's explicit
    /// nonce and the replay window's key).
    pub fn epoch_sequence(&self) -> u64 {
        (u64::from(self.epoch) << 48) | self.sequence
    }
}

/// Splits a datagram into records. `cid_len` is the length of the CIDs this
/// side issued (0: none), needed to frame `tls12_cid` records, whose CID has
/// no length prefix. Parsing stops at the first malformed record, returning
/// what came before it (RFC 6347 §4.1.2.7: invalid records are dropped).
pub fn split_records(datagram: &[u8], cid_len: usize) -> Records<'_> {
    Records {
        reader: Reader::new(datagram),
        cid_len,
    }
}

pub struct Records<'a> {
    reader: Reader<'a>,
    cid_len: usize,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.reader.is_empty() {
            return None;
        }
        let record = parse_one(&mut self.reader, self.cid_len);
        if record.is_err() {
            // Nothing after a broken record can be framed.
            self.reader.rest();
        }
        Some(record)
    }
}

fn parse_one<'a>(r: &mut Reader<'a>, cid_len: usize) -> Result<Record<'a>, DecodeError> {
    let content_type =
        ContentType::from_code(r.u8()?).ok_or(DecodeError::Malformed("content type"))?;
    let version = r.u16()?;
    if version != DTLS_1_2 && version != DTLS_1_0 {
        return Err(DecodeError::Malformed("record version"));
    }
    let epoch = r.u16()?;
    let sequence = r.u48()?;
    let cid = match content_type {
        ContentType::Tls12Cid if cid_len == 0 => {
            return Err(DecodeError::Malformed("CID record where no CID was issued"))
        }
        ContentType::Tls12Cid => r.take(cid_len)?,
        _ => &[],
    };
    let body = r.vec16()?;
    Ok(Record {
        content_type,
        version,
        epoch,
        sequence,
        cid,
        body,
    })
}

/// Appends a record header (with `cid` when non-empty) for a body of
/// `body_len` bytes.
pub fn put_header(
    out: &mut Vec<u8>,
    content_type: ContentType,
    epoch: u16,
    sequence: u64,
    cid: &[u8],
    body_len: usize,
) {
    out.put_u8(content_type.code());
    out.put_u16(DTLS_1_2);
    out.put_u16(epoch);
    out.put_u48(sequence);
    out.extend_from_slice(cid);
    out.put_u16(body_len as u16);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_records_and_stops_at_junk() {
        let mut d = Vec::new();
        put_header(&mut d, ContentType::Handshake, 0, 7, &[], 2);
        d.extend_from_slice(&[1, 2]);
        put_header(&mut d, ContentType::Tls12Cid, 1, 9, &[9, 9, 9], 1);
        d.push(5);
        d.extend_from_slice(&[0xff, 0xff]);
        let recs: Vec<_> = split_records(&d, 3).collect();
        assert_eq!(recs.len(), 3);
        let a = recs[0].unwrap();
        assert_eq!(
            (a.content_type, a.sequence, a.body),
            (ContentType::Handshake, 7, &[1u8, 2][..])
        );
        let b = recs[1].unwrap();
        assert_eq!(
            (b.cid, b.epoch_sequence()),
            (&[9u8, 9, 9][..], (1 << 48) | 9)
        );
        assert!(recs[2].is_err());
    }

    #[test]
    fn a_cid_record_without_issued_cids_is_malformed() {
        let mut d = Vec::new();
        put_header(&mut d, ContentType::Tls12Cid, 1, 0, &[], 0);
        assert!(split_records(&d, 0).next().unwrap().is_err());
    }
}

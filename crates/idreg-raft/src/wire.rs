//! The encoding of node-to-node payloads: postcard (as stored values, data
//! format 2) with a hard size limit, so a malformed or hostile message is a
//! decode error, never a huge allocation or a panic.

use idreg_proto::v1::RaftPayload;
use idreg_store::codec::CodecError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payload a node sends or accepts. AppendEntries is capped well below
/// it by `max_payload_entries`; snapshot chunks by `snapshot_max_chunk_size`.
pub const MAX_PAYLOAD: usize = 64 << 20;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes = postcard::to_stdvec(value)?;
    if bytes.len() > MAX_PAYLOAD {
        return Err(CodecError::custom(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
            bytes.len()
        )));
    }
    Ok(bytes)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(CodecError::custom(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD}-byte limit",
            bytes.len()
        )));
    }
    idreg_store::codec::decode(bytes)
}

/// A payload message carrying `data` (already encoded).
pub fn payload(data: Vec<u8>) -> RaftPayload {
    RaftPayload {
        data,
        format_1_data: Vec::new(),
    }
}

/// Decodes a received payload; one in data format 1's encoding (from a node
/// not yet upgraded) is refused by name rather than misread.
pub fn decode_payload<T: DeserializeOwned>(payload: &RaftPayload) -> Result<T, PayloadError> {
    if payload.data.is_empty() && !payload.format_1_data.is_empty() {
        return Err(PayloadError::Format1);
    }
    decode(&payload.data).map_err(PayloadError::Malformed)
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(
        "the sender is an idreg of data format 1 (bincode payloads); this node speaks format 2. \
         Upgrade the sender"
    )]
    Format1,
    #[error("{0}")]
    Malformed(CodecError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let v: Vec<(u64, String)> = vec![(1, "a".into()), (u64::MAX, "b".repeat(100))];
        assert_eq!(
            decode::<Vec<(u64, String)>>(&encode(&v).unwrap()).unwrap(),
            v
        );
        // A length prefix claiming a vast vector must fail, not allocate.
        assert!(decode::<Vec<u8>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode::<Vec<(u64, String)>>(&[0xff; 7]).is_err());
        // Trailing bytes are refused too.
        let mut extra = encode(&5u64).unwrap();
        extra.push(0);
        assert!(decode::<u64>(&extra).is_err());
        // Over the limit, either way.
        assert!(encode(&vec![0u8; MAX_PAYLOAD + 1]).is_err());
        assert!(decode::<Vec<u8>>(&vec![0u8; MAX_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn a_format_1_payload_is_refused_by_name() {
        let old = RaftPayload {
            format_1_data: vec![1, 2, 3],
            data: Vec::new(),
        };
        let e = decode_payload::<u64>(&old).unwrap_err();
        assert!(matches!(e, PayloadError::Format1), "{e}");
        assert_eq!(
            decode_payload::<u64>(&payload(encode(&9u64).unwrap())).unwrap(),
            9
        );
        assert!(matches!(
            decode_payload::<u64>(&payload(Vec::new())),
            Err(PayloadError::Malformed(_))
        ));
    }
}

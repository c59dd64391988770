//! The encoding of node-to-node payloads: bincode with a hard size limit, so a
//! malformed or hostile message is a decode error, never a huge allocation or
//! a panic.

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest payload a node sends or accepts. AppendEntries is capped well below
/// it by `max_payload_entries`; snapshot chunks by `snapshot_max_chunk_size`.
pub const MAX_PAYLOAD: usize = 64 << 20;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_PAYLOAD as u64)
        .reject_trailing_bytes()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    options().serialize(value)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    options().deserialize(bytes)
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
        let mut hostile = vec![0xfc];
        hostile.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode::<Vec<u8>>(&hostile).is_err());
        assert!(decode::<Vec<(u64, String)>>(&[0xff; 7]).is_err());
        // Trailing bytes are refused too.
        let mut extra = encode(&5u64).unwrap();
        extra.push(0);
        assert!(decode::<u64>(&extra).is_err());
    }
}

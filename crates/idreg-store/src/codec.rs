//! Value encoding for everything idreg writes to RocksDB (data format 2):
//! postcard — compact (variable-length integers), fast, maintained, schema
//! from the serde types in idreg-core. Format 1's bincode is read only to
//! migrate it (`legacy_bincode`, `format_migration`).

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A stored value (or a node-to-node payload) that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(String);

impl CodecError {
    pub fn custom(why: impl std::fmt::Display) -> Self {
        Self(why.to_string())
    }
}

impl serde::de::Error for CodecError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl From<postcard::Error> for CodecError {
    fn from(e: postcard::Error) -> Self {
        match e {
            // postcard drops the message of a type's own check (an id with
            // a space, a label too long); say at least that it was that.
            postcard::Error::SerdeDeCustom => {
                Self("a value failed its type's validity check".into())
            }
            e => Self(e.to_string()),
        }
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::serialize_with_flavor(value, Presized(Vec::with_capacity(ENCODE_CAPACITY)))
        .expect("in-memory serialisation of registry types cannot fail")
}

/// Room a value is encoded into first: a device record fits, so encoding
/// one reallocates never, where growing from empty did half a dozen times.
const ENCODE_CAPACITY: usize = 256;

/// postcard's output into a vector given its first capacity.
struct Presized(Vec<u8>);

impl postcard::ser_flavors::Flavor for Presized {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Decodes a whole value: bytes left over after it are an error, since they
/// mean the bytes are not what the caller thinks they are.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError(format!(
            "{} bytes left after the value",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let v: Vec<(u64, String, Option<[u8; 2]>)> = vec![
            (1, "a".into(), None),
            (u64::MAX, "b".repeat(300), Some([1, 2])),
        ];
        assert_eq!(
            decode::<Vec<(u64, String, Option<[u8; 2]>)>>(&encode(&v)).unwrap(),
            v
        );
        // Small integers take one byte.
        assert_eq!(encode(&5u64), [5]);
        // A length prefix claiming a vast vector fails, it does not allocate.
        assert!(decode::<Vec<u64>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        let mut extra = encode(&5u64);
        extra.push(0);
        assert!(decode::<u64>(&extra).is_err());
        assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err());
    }

    #[test]
    fn a_shared_proposal_batch_is_encoded_as_the_vector_it_was() {
        use idreg_core::{Author, Command, DeviceId, Proposal, ProposalBatch, Role};
        let proposals: Vec<Proposal> = ["a", "b"]
            .iter()
            .map(|id| Proposal {
                at_ms: 7,
                by: Author::new("tester", Role::Operator, 1),
                command: Command::Delete {
                    id: DeviceId::parse("id", id).unwrap(),
                },
            })
            .collect();
        // The log's format from before the batch was shared: a data
        // directory written by an older idreg reads back the same.
        let bytes = encode(&proposals);
        assert_eq!(encode(&ProposalBatch::from(proposals.clone())), bytes);
        assert_eq!(
            decode::<ProposalBatch>(&bytes).unwrap(),
            ProposalBatch::from(proposals)
        );
    }
}

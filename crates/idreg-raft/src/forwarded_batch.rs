//! The payload of `idreg.v1.Raft/Forward`: each proposal encoded on its own,
//! so the leader decodes them one by one and a malformed proposal (from a
//! buggy or hostile member) is rejected alone while the rest are written.

use idreg_core::{Proposal, ProposalBatch, Rejection};
use idreg_store::BatchOutcome;
use serde::{Deserialize, Serialize};

use crate::wire;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedBatch(Vec<Vec<u8>>);

/// The proposals of a forwarded batch that did not decode: their positions
/// and rejections, to be put back among the written proposals' verdicts.
#[derive(Debug, Default)]
pub struct Malformed {
    /// How many proposals did decode (and were handed to raft).
    decoded: usize,
    slots: Vec<(usize, Rejection)>,
}

impl ForwardedBatch {
    pub fn encode(batch: &ProposalBatch) -> Result<Self, idreg_store::codec::CodecError> {
        batch
            .0
            .iter()
            .map(wire::encode)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// The proposals to write, and those that did not decode.
    pub fn decode(self) -> (ProposalBatch, Malformed) {
        let mut batch = Vec::with_capacity(self.0.len());
        let mut malformed = Vec::new();
        for (i, bytes) in self.0.iter().enumerate() {
            match wire::decode::<Proposal>(bytes) {
                Ok(p) => batch.push(p),
                Err(e) => malformed.push((i, Rejection::Malformed(e.to_string()))),
            }
        }
        let decoded = batch.len();
        (
            ProposalBatch::from(batch),
            Malformed {
                decoded,
                slots: malformed,
            },
        )
    }
}

impl Malformed {
    /// The verdicts in the forwarded order: the written proposals' verdicts
    /// (`written`, one per decoded proposal) with the rejections of the
    /// malformed ones put back in their places.
    pub fn merge(self, written: BatchOutcome) -> BatchOutcome {
        let total = self.decoded + self.slots.len();
        let mut out = Vec::with_capacity(total);
        let mut written = written.0.into_iter();
        let mut malformed = self.slots.into_iter().peekable();
        for i in 0..total {
            match malformed.next_if(|(at, _)| *at == i) {
                Some((_, r)) => out.push(Err(r)),
                None => out.push(written.next().unwrap_or_else(|| {
                    Err(Rejection::Malformed("no verdict from the leader".into()))
                })),
            }
        }
        BatchOutcome(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::{Command, DeviceId};

    fn delete(id: &str) -> Proposal {
        Proposal {
            at_ms: 1,
            by: idreg_core::Author::new("tester", idreg_core::Role::Operator, 1),
            command: Command::Delete {
                id: DeviceId::parse("id", id).unwrap(),
            },
        }
    }

    #[test]
    fn a_malformed_proposal_is_rejected_in_its_place() {
        let good = ProposalBatch::from(vec![delete("a"), delete("b")]);
        let mut fwd = ForwardedBatch::encode(&good).unwrap();
        // A proposal whose id has a space: encoded by hand, as a peer could.
        let mut bad = wire::encode(&delete("x")).unwrap();
        let at = bad.iter().rposition(|b| *b == b'x').unwrap();
        bad[at] = b' ';
        fwd.0.insert(1, bad);
        fwd.0.push(vec![0xff; 3]);
        let (batch, malformed) = fwd.decode();
        assert_eq!(batch, good);
        let written = BatchOutcome(vec![Ok(None), Ok(None)]);
        let merged = malformed.merge(written).0;
        assert_eq!(merged.len(), 4);
        assert!(merged[0].is_ok() && merged[2].is_ok());
        assert!(
            matches!(&merged[1], Err(Rejection::Malformed(m)) if m.contains("validity check")),
            "{merged:?}"
        );
        assert!(matches!(&merged[3], Err(Rejection::Malformed(_))));
    }
}

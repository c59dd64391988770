//! The payload of `idreg.v1.Raft/Forward`: each proposal encoded on its own,
//! so the leader decodes them one by one and a malformed proposal (from a
//! buggy or hostile member) is rejected alone while the rest are written.

use idreg_core::{Proposal, ProposalBatch, Rejection};
use idreg_store::BatchOutcome;
use serde::{Deserialize, Serialize};

use crate::wire;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedBatch(Vec<Vec<u8>>);

/// What the leader made of a forwarded batch: the proposals to write, and the
/// positions (with their rejections) of those that did not decode.
pub struct DecodedBatch {
    pub batch: ProposalBatch,
    malformed: Vec<(usize, Rejection)>,
}

impl ForwardedBatch {
    pub fn encode(batch: &ProposalBatch) -> Result<Self, bincode::Error> {
        batch
            .0
            .iter()
            .map(wire::encode)
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn decode(self) -> DecodedBatch {
        let mut batch = Vec::with_capacity(self.0.len());
        let mut malformed = Vec::new();
        for (i, bytes) in self.0.iter().enumerate() {
            match wire::decode::<Proposal>(bytes) {
                Ok(p) => batch.push(p),
                Err(e) => malformed.push((i, Rejection::Malformed(e.to_string()))),
            }
        }
        DecodedBatch {
            batch: ProposalBatch(batch),
            malformed,
        }
    }
}

impl DecodedBatch {
    pub fn is_empty(&self) -> bool {
        self.batch.0.is_empty()
    }

    /// The verdicts in the forwarded order: the written proposals' verdicts
    /// with the rejections of the malformed ones put back in their places.
    pub fn merge(&self, written: BatchOutcome) -> BatchOutcome {
        let mut out = Vec::with_capacity(written.0.len() + self.malformed.len());
        let mut written = written.0.into_iter();
        let mut malformed = self.malformed.iter().peekable();
        let total = self.batch.0.len() + self.malformed.len();
        for i in 0..total {
            match malformed.peek() {
                Some((at, r)) if *at == i => {
                    out.push(Err(r.clone()));
                    malformed.next();
                }
                _ => out.push(written.next().unwrap_or_else(|| {
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
            command: Command::Delete {
                id: DeviceId::parse("id", id).unwrap(),
            },
        }
    }

    #[test]
    fn a_malformed_proposal_is_rejected_in_its_place() {
        let good = ProposalBatch(vec![delete("a"), delete("b")]);
        let mut fwd = ForwardedBatch::encode(&good).unwrap();
        // A proposal whose id has a space: encoded by hand, as a peer could.
        let mut bad = wire::encode(&delete("x")).unwrap();
        let at = bad.iter().rposition(|b| *b == b'x').unwrap();
        bad[at] = b' ';
        fwd.0.insert(1, bad);
        fwd.0.push(vec![0xff; 3]);
        let decoded = fwd.decode();
        assert_eq!(decoded.batch, good);
        let written = BatchOutcome(vec![Ok(None), Ok(None)]);
        let merged = decoded.merge(written).0;
        assert_eq!(merged.len(), 4);
        assert!(merged[0].is_ok() && merged[2].is_ok());
        assert!(
            matches!(&merged[1], Err(Rejection::Malformed(m)) if m.contains("id")),
            "{merged:?}"
        );
        assert!(matches!(&merged[3], Err(Rejection::Malformed(_))));
    }
}

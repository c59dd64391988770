//! How much one AppendEntries carries. openraft 0.9 bounds a request by entry
//! count only (`max_payload_entries`), and gives the whole call its heartbeat
//! interval to land: sent, decoded, written and fsynced by the follower. An
//! entry can be a 32 KiB firmware chunk, so 64 of them made a 2 MiB request
//! that a follower on a busy disk could not take in time; the same request
//! was then sent again from the start, and never landed. The network sends
//! a prefix that fits a byte budget instead and reports the rest as not yet
//! sent (openraft's `PartialSuccess`), so replication always moves forward.

use idreg_store::{NodeId, TypeConfig};
use openraft::raft::AppendEntriesRequest;
use openraft::{Entry, LogId};
use postcard::ser_flavors::Size;

/// Bytes of entries one AppendEntries carries at most, unless a single entry
/// is larger (it then travels alone). Small writes never come near it: a
/// request over it is a catch-up or a firmware upload.
pub const APPEND_BYTES: usize = 256 << 10;

/// `rpc` cut to the entries that fit `budget` bytes, and the id of the last
/// entry kept when it was cut (`None`: sent whole). `encoded` is the whole
/// request's encoded size, so the common case costs no second encoding.
pub fn fit(
    mut rpc: AppendEntriesRequest<TypeConfig>,
    encoded: usize,
    budget: usize,
) -> (AppendEntriesRequest<TypeConfig>, Option<LogId<NodeId>>) {
    if encoded <= budget || rpc.entries.len() <= 1 {
        return (rpc, None);
    }
    let keep = entries_within(&rpc.entries, budget);
    if keep == rpc.entries.len() {
        return (rpc, None);
    }
    rpc.entries.truncate(keep);
    let last = rpc.entries.last().map(|e| e.log_id);
    (rpc, last)
}

/// How many leading `entries` fit `budget` bytes; at least one.
fn entries_within(entries: &[Entry<TypeConfig>], budget: usize) -> usize {
    let mut used = 0usize;
    for (n, entry) in entries.iter().enumerate() {
        // An entry that cannot be measured cannot be encoded either; let the
        // encoder report it.
        used += postcard::serialize_with_flavor(entry, Size::default()).unwrap_or(budget);
        if used > budget {
            return n.max(1);
        }
    }
    entries.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::{Command, DeviceId, Proposal, ProposalBatch};
    use openraft::{CommittedLeaderId, EntryPayload, Vote};

    /// An entry of `proposals` deletes, about 30 bytes each.
    fn entry(index: u64, proposals: usize) -> Entry<TypeConfig> {
        let by = idreg_core::Author::new("tester", idreg_core::Role::Operator, 1);
        let batch: Vec<_> = (0..proposals)
            .map(|i| Proposal {
                at_ms: 1,
                by: by.clone(),
                command: Command::Delete {
                    id: DeviceId::parse("id", &format!("device-{i}")).unwrap(),
                },
            })
            .collect();
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ProposalBatch::from(batch)),
        }
    }

    fn request(entries: Vec<Entry<TypeConfig>>) -> (AppendEntriesRequest<TypeConfig>, usize) {
        let rpc = AppendEntriesRequest {
            vote: Vote::new_committed(1, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), 9)),
            leader_commit: None,
            entries,
        };
        let size = crate::wire::encode(&rpc).unwrap().len();
        (rpc, size)
    }

    #[test]
    fn a_request_within_budget_travels_whole() {
        let (rpc, size) = request((10..20).map(|i| entry(i, 3)).collect());
        let (sent, cut) = fit(rpc, size, APPEND_BYTES);
        assert_eq!(sent.entries.len(), 10);
        assert_eq!(cut, None);
    }

    #[test]
    fn a_large_request_is_cut_to_a_prefix_under_budget() {
        // 64 entries of ~30 KB: the shape of a firmware upload.
        let (rpc, size) = request((10..74).map(|i| entry(i, 1000)).collect());
        assert!(size > 1 << 20, "{size}");
        let (sent, cut) = fit(rpc, size, APPEND_BYTES);
        let n = sent.entries.len();
        assert!(n > 1 && n < 64, "{n}");
        assert_eq!(cut, Some(sent.entries[n - 1].log_id));
        assert_eq!(cut.unwrap().index, 10 + n as u64 - 1);
        let sent_size = crate::wire::encode(&sent).unwrap().len();
        assert!(sent_size <= APPEND_BYTES, "{sent_size}");
        // One more entry would not have fitted.
        let one_more = sent_size + sent_size / n;
        assert!(one_more > APPEND_BYTES, "{sent_size} for {n}");
    }

    #[test]
    fn an_entry_over_budget_travels_alone() {
        let (rpc, size) = request(vec![entry(10, 200), entry(11, 200)]);
        let (sent, cut) = fit(rpc, size, 1000);
        assert_eq!(sent.entries.len(), 1);
        assert_eq!(cut.unwrap().index, 10);
        let (rpc, size) = request(vec![entry(10, 200)]);
        let (sent, cut) = fit(rpc, size, 1000);
        assert_eq!(sent.entries.len(), 1);
        assert_eq!(cut, None);
    }
}

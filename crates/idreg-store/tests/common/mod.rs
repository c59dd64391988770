//! Helpers shared by the store's integration tests: raft entries of
//! proposals, as the proposer would make them.

use idreg_core::{Author, Command, DeviceId, Proposal, ProposalBatch, Role};
use idreg_store::TypeConfig;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

/// A raft entry at `index` holding `commands`, proposed by an admin at
/// time `index` ms.
pub fn entry(index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch(
            commands
                .into_iter()
                .map(|command| Proposal {
                    at_ms: index,
                    by: Author::new("t", Role::Admin, 1),
                    command,
                })
                .collect(),
        )),
    }
}

pub fn id(s: &str) -> DeviceId {
    DeviceId::parse("id", s).unwrap()
}

//! Helpers shared by the store's integration tests: raft entries of
//! proposals, as the proposer would make them, a plain create, and a
//! snapshot carried to a fresh store.

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::path::Path;

use idreg_core::{
    Author, Command, DeviceId, Kek, Labels, NewDevice, Proposal, ProposalBatch, Role, TenantId,
};
use idreg_store::{StateMachine, Store, TypeConfig};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

/// A raft entry at `index` holding `commands`, proposed by an admin at
/// time `index` ms.
pub fn entry(index: u64, commands: Vec<Command>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch::from(
            commands
                .into_iter()
                .map(|command| Proposal {
                    at_ms: index,
                    by: Author::new("t", Role::Admin, 1),
                    command,
                })
                .collect::<Vec<_>>(),
        )),
    }
}

pub fn id(s: &str) -> DeviceId {
    DeviceId::parse("id", s).unwrap()
}

/// Creates device `name` in the default tenant, with no credentials.
pub fn create(name: &str) -> Command {
    Command::Create(NewDevice {
        id: id(name),
        tenant: TenantId::default_tenant(),
        labels: Labels::default(),
        gateway: None,
        credentials: vec![],
    })
}

/// A snapshot of `sm`, built and installed into a fresh store at `dir`.
pub async fn snapshot_into(sm: &mut StateMachine, dir: &Path, kek: &Kek) -> Store {
    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let other = Store::open(dir, kek).unwrap();
    other
        .state_machine()
        .unwrap()
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .unwrap();
    other
}

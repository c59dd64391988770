//! The change history behind WatchDevices: what apply writes, how it is read
//! back by whole revisions, and how it is trimmed.

use idreg_core::{Command, DeviceId, Labels, NewDevice, Proposal, ProposalBatch, TenantId};
use idreg_store::history::ChangeKind;
use idreg_store::{Store, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn create(id: &str) -> Proposal {
    Proposal {
        at_ms: 1,
        by: idreg_core::Author::new("tester", idreg_core::Role::Operator, 1),
        command: Command::Create(NewDevice {
            id: DeviceId::parse("id", id).unwrap(),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials: vec![],
        }),
    }
}

fn entry(index: u64, proposals: Vec<Proposal>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch::from(proposals)),
    }
}

#[tokio::test]
async fn history_holds_whole_revisions_and_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &idreg_core::Kek::from_bytes(&[7; 32]))
        .unwrap()
        .with_history_keep(1500);
    let mut sm = store.state_machine().unwrap();
    let mut applied = store.applied_watch();
    // Revision 1: two creates and a rejected duplicate (no history for it).
    sm.apply([entry(1, vec![create("a"), create("b"), create("a")])])
        .await
        .unwrap();
    assert_eq!(*applied.borrow_and_update(), 1);
    let delete = Proposal {
        at_ms: 2,
        by: idreg_core::Author::new("tester", idreg_core::Role::Operator, 1),
        command: Command::Delete {
            id: DeviceId::parse("id", "a").unwrap(),
        },
    };
    sm.apply([entry(2, vec![delete])]).await.unwrap();

    let h = store.history();
    assert_eq!(h.first_kept().unwrap(), 1);
    let revs = h.read(1, 10).unwrap();
    assert_eq!(revs.len(), 2);
    assert_eq!(revs[0].revision, 1);
    let ids: Vec<_> = revs[0]
        .records
        .iter()
        .map(|r| r.device_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(revs[0]
        .records
        .iter()
        .all(|r| r.kind == ChangeKind::Created));
    assert_eq!(revs[1].records[0].kind, ChangeKind::Deleted);
    assert!(revs[1].records[0].device.is_none());
    assert_eq!(h.read(2, 10).unwrap().len(), 1);
    assert_eq!(
        h.read(1, 1).unwrap().len(),
        1,
        "max_revisions counts revisions"
    );

    // Far enough on, the oldest revisions are trimmed and say so.
    for i in 3..=3000u64 {
        sm.apply([entry(i, vec![create(&format!("d{i}"))])])
            .await
            .unwrap();
    }
    let first = h.first_kept().unwrap();
    assert!(first > 1 && first <= 3000 - 1500 + 1, "first kept {first}");
    assert!(h.read(1, 1).unwrap()[0].revision >= first);
    assert_eq!(h.read(3000, 5).unwrap()[0].revision, 3000);
}

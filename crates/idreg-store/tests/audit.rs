//! The device audit history: one record per applied command with its
//! author, kept after delete, bounded per device.

use idreg_core::audit::MAX_AUDIT_PER_DEVICE;
use idreg_core::{
    AuditAction, Author, Command, DeviceId, Labels, NewDevice, Proposal, ProposalBatch, Role,
    TenantId,
};
use idreg_store::{Store, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn id(s: &str) -> DeviceId {
    DeviceId::parse("id", s).unwrap()
}

fn by(name: &str, role: Role, node: u64) -> Author {
    Author::new(name, role, node)
}

fn entry(index: u64, proposals: Vec<Proposal>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(ProposalBatch::from(proposals)),
    }
}

fn update(at_ms: u64, author: Author) -> Proposal {
    Proposal {
        at_ms,
        by: author,
        command: Command::Update {
            id: id("d"),
            labels: Some(Labels::new("labels", [("n", at_ms.to_string())]).unwrap()),
            status: None,
            gateway: None,
            add_credentials: vec![],
            remove_credentials: vec![],
        },
    }
}

#[tokio::test]
async fn every_write_is_recorded_with_its_author_kept_after_delete_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &idreg_core::Kek::from_bytes(&[7; 32])).unwrap();
    let mut sm = store.state_machine().unwrap();
    let create = Proposal {
        at_ms: 1,
        by: by("provisioner", Role::Operator, 2),
        command: Command::Create(NewDevice {
            id: id("d"),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials: vec![],
        }),
    };
    // A rejected command (a second create) leaves no record.
    sm.apply([entry(1, vec![create.clone(), create])])
        .await
        .unwrap();
    sm.apply([entry(2, vec![update(2, by("ops", Role::Admin, 3))])])
        .await
        .unwrap();
    let delete = Proposal {
        at_ms: 3,
        by: by("ops", Role::Admin, 1),
        command: Command::Delete { id: id("d") },
    };
    sm.apply([entry(3, vec![delete])]).await.unwrap();
    let h = store.reader().audit("d").unwrap();
    let seen: Vec<_> = h
        .iter()
        .map(|r| {
            (
                r.revision,
                r.action,
                r.by.principal.name.as_str(),
                r.by.node,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, AuditAction::Create, "provisioner", 2),
            (2, AuditAction::Update, "ops", 3),
            (3, AuditAction::Delete, "ops", 1),
        ]
    );
    assert!(
        store.reader().get("d").unwrap().is_none(),
        "deleted, history kept"
    );
    assert!(store.reader().audit("never").unwrap().is_empty());
    assert!(
        store.reader().audit("d-other").unwrap().is_empty(),
        "exact prefix"
    );

    // Re-created and updated many times: only the latest records stay.
    let again = Proposal {
        at_ms: 4,
        by: by("provisioner", Role::Operator, 2),
        command: Command::Create(NewDevice {
            id: id("d"),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials: vec![],
        }),
    };
    sm.apply([entry(4, vec![again])]).await.unwrap();
    for i in 5..=250u64 {
        sm.apply([entry(i, vec![update(i, by("ops", Role::Admin, 1))])])
            .await
            .unwrap();
    }
    let h = store.reader().audit("d").unwrap();
    assert_eq!(h.len(), MAX_AUDIT_PER_DEVICE);
    assert_eq!(h.last().unwrap().revision, 250);
    assert_eq!(
        h.first().unwrap().revision,
        250 - MAX_AUDIT_PER_DEVICE as u64 + 1
    );
}

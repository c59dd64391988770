//! The reads behind the API's device queries (`DeviceDirectory`) give the
//! same answers from RocksDB as from the in-memory registry the services'
//! unit tests run on: the same commands go into both, and every listing,
//! audit trail, clone policy, enrollment group and applied revision is
//! compared.

use idreg_core::mem::MemRegistry;
use idreg_core::{
    Attestation, Author, ClonePolicy, Command, DeviceDirectory, DeviceFilter, DeviceId,
    DeviceStatus, EnrollmentGroup, GroupName, Labels, NewDevice, Proposal, ProposalBatch, Role,
    StatusChange, TenantId,
};
use idreg_store::{RegistryReader, Store, TypeConfig};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

fn id(s: &str) -> DeviceId {
    DeviceId::parse("id", s).unwrap()
}

fn create(name: &str, tenant: &str, labels: &[(&str, &str)], gateway: Option<&str>) -> Command {
    Command::Create(NewDevice {
        id: id(name),
        tenant: TenantId::parse("tenant", tenant).unwrap(),
        labels: Labels::new(
            "labels",
            labels.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap(),
        gateway: gateway.map(id),
        credentials: vec![],
    })
}

/// The commands, in order: devices over two tenants and two sites, a
/// gateway with spokes, updates, a revocation, a delete, a rejected create
/// and a tenant policy.
fn commands() -> Vec<Command> {
    let mut out = vec![create("gw-1", "acme", &[("role", "gateway")], None)];
    for i in 0..24u32 {
        let tenant = if i % 3 == 0 { "zeta" } else { "acme" };
        let site = if i % 2 == 0 { "north" } else { "south" };
        let gateway = (i % 5 == 0).then_some("gw-1");
        out.push(create(
            &format!("d-{i:02}"),
            tenant,
            &[("site", site)],
            gateway,
        ));
    }
    out.push(create("d-03", "acme", &[], None)); // exists: rejected
    out.push(Command::Update {
        id: id("d-04"),
        labels: Some(Labels::new("labels", [("site", "east".to_string())]).unwrap()),
        status: Some(StatusChange::Disabled),
        gateway: None,
        add_credentials: vec![],
        remove_credentials: vec![],
    });
    out.push(Command::Revoke {
        id: id("d-07"),
        reason: "stolen".into(),
    });
    out.push(Command::Delete { id: id("d-08") });
    out.push(Command::SetTenantClonePolicy {
        tenant: TenantId::parse("tenant", "acme").unwrap(),
        policy: Some(ClonePolicy::EndBoth),
    });
    // Enrollment groups: three made, one disabled, one deleted.
    for name in ["line-b", "line-a", "z-line"] {
        out.push(Command::AddEnrollmentGroup(EnrollmentGroup {
            name: GroupName::parse("name", name).unwrap(),
            attestation: Attestation::BootstrapPsk,
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            id_template: None,
            max_devices: Some(10),
            expires_ms: None,
            enabled: true,
            enrolled: 0,
            created_ms: 0,
            updated_ms: 0,
        }));
    }
    out.push(Command::SetEnrollmentGroupEnabled {
        name: GroupName::parse("name", "line-a").unwrap(),
        enabled: false,
    });
    out.push(Command::DeleteEnrollmentGroup {
        name: GroupName::parse("name", "z-line").unwrap(),
    });
    out
}

fn filters() -> Vec<DeviceFilter> {
    let f = |status, labels: &[(&str, &str)], tenant: Option<&str>, gateway: Option<&str>| {
        DeviceFilter {
            status,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            tenant: tenant.map(str::to_owned),
            gateway: gateway.map(str::to_owned),
        }
    };
    vec![
        f(None, &[], None, None),
        f(Some(DeviceStatus::Active), &[], None, None),
        f(Some(DeviceStatus::Revoked), &[], None, None),
        f(Some(DeviceStatus::Disabled), &[], None, None),
        f(None, &[("site", "north")], None, None),
        f(None, &[("site", "north")], Some("acme"), None),
        f(None, &[], Some("zeta"), None),
        f(None, &[], None, Some("gw-1")),
        f(
            Some(DeviceStatus::Active),
            &[("site", "south")],
            Some("acme"),
            Some("gw-1"),
        ),
        f(None, &[("site", "nowhere")], None, None),
    ]
}

/// Every page of a listing, walked with `limit`; (ids per page, more).
fn walk<D: DeviceDirectory>(
    dir: &D,
    filter: &DeviceFilter,
    limit: usize,
) -> Vec<(Vec<String>, bool)>
where
    D::Error: std::fmt::Debug,
{
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..100 {
        let page = dir.list(filter, after.as_deref(), limit).unwrap();
        let ids: Vec<String> = page.devices.iter().map(|d| d.id.to_string()).collect();
        after = ids.last().cloned();
        pages.push((ids, page.more));
        if !page.more {
            return pages;
        }
    }
    panic!("listing did not end in 100 pages");
}

#[tokio::test]
async fn rocksdb_and_memory_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &idreg_core::Kek::from_bytes(&[7; 32])).unwrap();
    let mut sm = store.state_machine().unwrap();
    let mut mem = MemRegistry::default();
    // One command per raft entry, so the store's revisions (entry indexes)
    // and the in-memory registry's (one per command) are the same numbers.
    for (i, command) in commands().into_iter().enumerate() {
        let index = i as u64 + 1;
        let proposal = Proposal {
            at_ms: 1_000 + index,
            by: Author::new("ops", Role::Operator, 2),
            command,
        };
        let _ = mem.execute_effect(&proposal);
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(ProposalBatch::from(vec![proposal])),
        };
        sm.apply([entry]).await.unwrap();
    }
    let rocks: RegistryReader = store.reader();

    assert_eq!(rocks.applied_index().unwrap(), commands().len() as u64);
    assert_eq!(
        DeviceDirectory::applied_index(&rocks).unwrap(),
        DeviceDirectory::applied_index(&mem).unwrap()
    );
    let groups = mem.enrollment_groups().unwrap();
    assert_eq!(DeviceDirectory::enrollment_groups(&rocks).unwrap(), groups);
    let names: Vec<(&str, bool)> = groups
        .iter()
        .map(|g| (g.name.as_str(), g.enabled))
        .collect();
    assert_eq!(names, [("line-a", false), ("line-b", true)]);
    for filter in filters() {
        for limit in [1, 3, 7, 100] {
            assert_eq!(
                walk(&rocks, &filter, limit),
                walk(&mem, &filter, limit),
                "{filter:?}, {limit} a page"
            );
        }
        // Whole devices too, not only their ids.
        assert_eq!(
            rocks.list(&filter, None, 100).unwrap(),
            mem.list(&filter, None, 100).unwrap(),
            "{filter:?}"
        );
    }
    // The walk is not vacuous: the filters select what the commands made.
    let north_acme = &filters()[5];
    let ids: Vec<String> = walk(&mem, north_acme, 100)
        .into_iter()
        .flat_map(|(ids, _)| ids)
        .collect();
    // Even and not a multiple of 3, less d-04 (moved east) and d-08 (deleted).
    assert_eq!(ids, ["d-02", "d-10", "d-14", "d-16", "d-20", "d-22"]);

    for name in ["gw-1", "d-03", "d-04", "d-07", "d-08", "never"] {
        let (a, b) = (
            DeviceDirectory::audit(&rocks, &id(name)).unwrap(),
            DeviceDirectory::audit(&mem, &id(name)).unwrap(),
        );
        assert_eq!(a, b, "audit of {name}");
    }
    assert_eq!(
        DeviceDirectory::audit(&mem, &id("d-08")).unwrap().len(),
        2,
        "kept after delete"
    );
    for tenant in ["acme", "zeta"] {
        let t = TenantId::parse("tenant", tenant).unwrap();
        assert_eq!(
            rocks.clone_policy(&t).unwrap(),
            mem.clone_policy(&t).unwrap()
        );
    }
    assert_eq!(
        mem.clone_policy(&TenantId::parse("tenant", "acme").unwrap())
            .unwrap(),
        Some(ClonePolicy::EndBoth)
    );
}

//! `SessionAudit` (what the device front writes and the Sessions API
//! reads) answers the same from the RocksDB session log and from
//! `MemSessionAudit`: every page of listings by device and time window,
//! clone sightings, overwrites and retention.

use idreg_core::mem_session_audit::{clone_sighting, MemSessionAudit};
use idreg_core::{
    AuditCursor, ClonePolicy, CloneSighting, Kek, SessionAudit, SessionCredential, SessionEnd,
    SessionQuery, SessionRecord,
};
use idreg_store::Store;

fn rec(id: u64, device: &str, started_ms: u64) -> SessionRecord {
    SessionRecord {
        id,
        device: device.into(),
        peer: format!("10.0.0.{}:5683", id % 250),
        credential: SessionCredential::Psk,
        started_ms,
        ended_ms: None,
        bytes_in: id,
        bytes_out: 2 * id,
        end: None,
        suite: "TLS_PSK_WITH_AES_128_CCM_8".into(),
        connection_id: id.is_multiple_of(2),
        address_changes: Vec::new(),
        restored: false,
    }
}

/// The shared fixture's sighting, under the other policy.
fn sighting(id: u64, device: &str, at_ms: u64) -> CloneSighting {
    CloneSighting {
        policy: ClonePolicy::RefuseNew,
        ..clone_sighting(id, device, at_ms)
    }
}

/// Every page `page(after)` returns, from the first until one has no
/// next cursor, with the cursors between them.
fn all_pages<T>(
    mut page: impl FnMut(Option<AuditCursor>) -> (Vec<T>, Option<AuditCursor>),
) -> Vec<(Vec<T>, Option<AuditCursor>)> {
    let mut pages = Vec::new();
    let mut after = None;
    for _ in 0..1000 {
        let (items, next) = page(after);
        after = next;
        pages.push((items, next));
        if after.is_none() {
            return pages;
        }
    }
    panic!("listing did not end in 1000 pages");
}

/// Every page of `query` at `size`.
fn sessions_paged<A: SessionAudit>(
    audit: &A,
    query: &SessionQuery,
    size: usize,
) -> Vec<(Vec<SessionRecord>, Option<AuditCursor>)>
where
    A::Error: std::fmt::Debug,
{
    all_pages(|after| {
        let page = audit.sessions(query, after, size).unwrap();
        (page.sessions, page.next)
    })
}

/// Every page of `device`'s clone sightings (or all) at `size`.
fn clones_paged<A: SessionAudit>(
    audit: &A,
    device: Option<&str>,
    size: usize,
) -> Vec<(Vec<CloneSighting>, Option<AuditCursor>)>
where
    A::Error: std::fmt::Debug,
{
    all_pages(|after| {
        let page = audit.clones(device, after, size).unwrap();
        (page.clones, page.next)
    })
}

fn queries() -> Vec<SessionQuery> {
    let q = |device: Option<&str>, since: Option<u64>, until: Option<u64>| SessionQuery {
        device: device.map(String::from),
        since_ms: since,
        until_ms: until,
    };
    vec![
        q(None, None, None),
        q(Some("a"), None, None),
        // "a" is a prefix of "ab": the store's device index must not mix them.
        q(Some("ab"), None, None),
        q(Some("nobody"), None, None),
        q(None, Some(1_010), None),
        q(None, None, Some(1_010)),
        q(None, Some(1_005), Some(1_012)),
        q(Some("a"), Some(1_004), Some(1_020)),
        q(None, Some(1_012), Some(1_012)),
    ]
}

fn compare(store: &idreg_store::SessionLog, mem: &MemSessionAudit, when: &str) {
    for q in queries() {
        for size in [1, 2, 5, 100] {
            assert_eq!(
                sessions_paged(store, &q, size),
                sessions_paged(mem, &q, size),
                "{when}: {q:?} at {size}"
            );
        }
    }
    for device in [None, Some("a"), Some("ab"), Some("nobody")] {
        for size in [1, 2, 100] {
            assert_eq!(
                clones_paged(store, device, size),
                clones_paged(mem, device, size),
                "{when}: clones of {device:?} at {size}"
            );
        }
    }
}

#[test]
fn the_in_memory_audit_answers_as_the_session_log_does() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &Kek::from_bytes(&[3; 32])).unwrap();
    let log = store.session_log();
    let mem = MemSessionAudit::default();
    let both = |records: &[SessionRecord], sightings: &[CloneSighting]| {
        log.record_sessions(records).unwrap();
        mem.record_sessions(records).unwrap();
        log.record_clones(sightings).unwrap();
        mem.record_clones(sightings).unwrap();
    };
    // 60 sessions, several to a millisecond, ids not in time order.
    let devices = ["a", "ab", "b"];
    let records: Vec<_> = (0..60u64)
        .map(|i| rec((i * 37) % 61, devices[i as usize % 3], 1_000 + i / 3))
        .collect();
    let sightings: Vec<_> = (0..9u64)
        .map(|i| sighting(100 - i, devices[i as usize % 2], 1_000 + i / 2))
        .collect();
    both(&records, &sightings);
    // Pinned, so an empty comparison cannot pass.
    let a = sessions_paged(&mem, &queries()[1], 100);
    assert_eq!(a[0].0.len(), 20);
    assert_eq!(sessions_paged(&log, &queries()[6], 3).len(), 7);
    compare(&log, &mem, "as recorded");

    // Sessions end: their records are written again.
    let ended: Vec<_> = records
        .iter()
        .step_by(4)
        .map(|r| SessionRecord {
            ended_ms: Some(r.started_ms + 50),
            end: Some(SessionEnd::Revoked),
            ..r.clone()
        })
        .collect();
    both(&ended, &[]);
    compare(&log, &mem, "after ends");

    // Retention.
    assert_eq!(log.purge_before(1_007).unwrap(), 21);
    assert_eq!(mem.purge_before(1_007).unwrap(), 21);
    compare(&log, &mem, "after purge");
    assert_eq!(log.purge_before(1_007).unwrap(), 0);
}

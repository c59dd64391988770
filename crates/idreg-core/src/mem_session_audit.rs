//! The session audit in memory: what the RocksDB session log keeps, in two
//! ordered maps, for tests of its users (the device front's audit writer,
//! the Sessions API). `crates/idreg-store/tests/session_audit.rs` holds it
//! to the store's answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use crate::session_audit::{AuditCursor, ClonePage, SessionAudit, SessionPage, SessionQuery};
use crate::{CloneSighting, SessionRecord};

#[derive(Debug, Clone, Default)]
pub struct MemSessionAudit {
    inner: Arc<Mutex<Audit>>,
}

#[derive(Debug, Default)]
struct Audit {
    sessions: BTreeMap<AuditCursor, SessionRecord>,
    clones: BTreeMap<AuditCursor, CloneSighting>,
}

/// Entries after `after`, or all.
fn from<T>(map: &BTreeMap<AuditCursor, T>, after: Option<AuditCursor>) -> impl Iterator<Item = &T> {
    let start = match after {
        Some(a) => Bound::Excluded(a),
        None => Bound::Unbounded,
    };
    map.range((start, Bound::Unbounded)).map(|(_, v)| v)
}

/// The first `limit` of `matching`, and a cursor if more follow.
fn page<'a, T: Clone + 'a>(
    mut matching: impl Iterator<Item = &'a T>,
    limit: usize,
    cursor: fn(&T) -> AuditCursor,
) -> (Vec<T>, Option<AuditCursor>) {
    let found: Vec<T> = matching.by_ref().take(limit).cloned().collect();
    let next = match (found.last(), matching.next()) {
        (Some(last), Some(_)) => Some(cursor(last)),
        _ => None,
    };
    (found, next)
}

impl SessionAudit for MemSessionAudit {
    type Error = Infallible;

    fn record_sessions(&self, records: &[SessionRecord]) -> Result<(), Infallible> {
        let mut audit = self.inner.lock().expect("not poisoned");
        for r in records {
            audit.sessions.insert(AuditCursor::of_session(r), r.clone());
        }
        Ok(())
    }

    fn record_clones(&self, sightings: &[CloneSighting]) -> Result<(), Infallible> {
        let mut audit = self.inner.lock().expect("not poisoned");
        for c in sightings {
            audit.clones.insert(AuditCursor::of_sighting(c), c.clone());
        }
        Ok(())
    }

    fn sessions(
        &self,
        query: &SessionQuery,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<SessionPage, Infallible> {
        let audit = self.inner.lock().expect("not poisoned");
        let since = query.since_ms.unwrap_or(0);
        let until = query.until_ms.unwrap_or(u64::MAX);
        let matching = from(&audit.sessions, after)
            .skip_while(|r| r.started_ms < since)
            .take_while(|r| r.started_ms < until)
            .filter(|r| query.device.as_ref().is_none_or(|d| *d == r.device));
        let (sessions, next) = page(matching, limit, AuditCursor::of_session);
        Ok(SessionPage { sessions, next })
    }

    fn clones(
        &self,
        device: Option<&str>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<ClonePage, Infallible> {
        let audit = self.inner.lock().expect("not poisoned");
        let matching =
            from(&audit.clones, after).filter(|c| device.is_none_or(|d| d == c.first.device));
        let (clones, next) = page(matching, limit, AuditCursor::of_sighting);
        Ok(ClonePage { clones, next })
    }

    fn purge_before(&self, cutoff_ms: u64) -> Result<usize, Infallible> {
        let mut audit = self.inner.lock().expect("not poisoned");
        let before = audit.sessions.len();
        audit.sessions.retain(|k, _| k.at_ms >= cutoff_ms);
        audit.clones.retain(|k, _| k.at_ms >= cutoff_ms);
        Ok(before - audit.sessions.len())
    }
}

/// For tests of the audit's users: session `id` of `device`, a PSK session
/// from 127.0.0.1 that started at `started_ms` and ended idle 5 ms later.
pub fn ended_session(id: u64, device: &str, started_ms: u64) -> SessionRecord {
    SessionRecord {
        id,
        device: device.into(),
        peer: "127.0.0.1:5000".into(),
        credential: crate::SessionCredential::Psk,
        started_ms,
        ended_ms: Some(started_ms + 5),
        bytes_in: 1,
        bytes_out: 2,
        end: Some(crate::SessionEnd::Idle),
        suite: "TLS_PSK_WITH_AES_128_CCM_8".into(),
        connection_id: false,
        address_changes: Vec::new(),
        restored: false,
    }
}

/// For tests of the audit's users: sighting `id` of `device` at `at_ms`,
/// its sessions on nodes 1 and 2 (from 127.0.0.1 and .2), alerted on.
pub fn clone_sighting(id: u64, device: &str, at_ms: u64) -> CloneSighting {
    let start = |node: u64| crate::SessionStart {
        device: device.into(),
        ip: [127, 0, 0, node as u8].into(),
        node,
        session: id,
        started_ms: at_ms,
    };
    CloneSighting {
        first: start(1),
        second: start(2),
        at_ms,
        policy: crate::ClonePolicy::Alert,
        id,
    }
}

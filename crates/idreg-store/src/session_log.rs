//! The node-local session audit: one record per device session, kept for a
//! retention period. It is not replicated and not part of snapshots: each node
//! records the sessions it served ("who connected to this node, from where").
//!
//! Keys in `CF_SESSIONS`:
//! - `t` + started_ms (BE) + id (BE) -> record (time order, for ranges and purge)
//! - `d` + device + `\0` + started_ms (BE) + id (BE) -> () (by device)
//! - `c` + at_ms (BE) + id (BE) -> clone sighting (rare: read by scanning)

use std::sync::Arc;

use idreg_core::{
    AuditCursor, ClonePage, CloneSighting, SessionAudit, SessionPage, SessionQuery, SessionRecord,
};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use crate::codec::encode;
use crate::db::{decode_as, StoreError};
use crate::keys::CF_SESSIONS;

#[derive(Clone)]
pub struct SessionLog {
    db: Arc<DB>,
}

fn time_key(started_ms: u64, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(b't');
    k.extend_from_slice(&started_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn clone_key(at_ms: u64, id: u64) -> Vec<u8> {
    let mut k = time_key(at_ms, id);
    k[0] = b'c';
    k
}

fn device_prefix(device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(device.len() + 2);
    k.push(b'd');
    k.extend_from_slice(device.as_bytes());
    k.push(0);
    k
}

fn device_key(device: &str, started_ms: u64, id: u64) -> Vec<u8> {
    let mut k = device_prefix(device);
    k.extend_from_slice(&started_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

impl SessionLog {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    /// Writes (or overwrites) a record.
    pub fn record(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.record_sessions(std::slice::from_ref(r))
    }

    fn load(&self, started_ms: u64, id: u64) -> Result<Option<SessionRecord>, StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        match self.db.get_pinned_cf(&cf, time_key(started_ms, id))? {
            Some(v) => Ok(Some(decode_as("session record", &v)?)),
            None => Ok(None),
        }
    }
}

/// The key a listing under `prefix` starts at: the first at or after
/// `since_ms`, and strictly after `after`.
fn start_key(prefix: &[u8], since_ms: u64, after: Option<AuditCursor>) -> Vec<u8> {
    let at = |ms: u64, id: u64| {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&ms.to_be_bytes());
        k.extend_from_slice(&id.to_be_bytes());
        k
    };
    let since = at(since_ms, 0);
    match after {
        Some(a) => {
            // Just past the cursor's key.
            let mut past = at(a.at_ms, a.id);
            past.push(0);
            past.max(since)
        }
        None => since,
    }
}

impl SessionAudit for SessionLog {
    type Error = StoreError;

    /// Writes (or overwrites) records in one RocksDB write: one WAL append
    /// for a burst of handshakes rather than one each. Audit writes go
    /// through the WAL but do not wait for fsync: a crash may lose the last
    /// moments of audit, never registry state.
    fn record_sessions(&self, records: &[SessionRecord]) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        let mut batch = WriteBatch::default();
        for r in records {
            batch.put_cf(&cf, time_key(r.started_ms, r.id), encode(r));
            batch.put_cf(&cf, device_key(&r.device, r.started_ms, r.id), []);
        }
        self.db.write(batch)?;
        Ok(())
    }

    fn sessions(
        &self,
        q: &SessionQuery,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<SessionPage, StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        let since = q.since_ms.unwrap_or(0);
        let until = q.until_ms.unwrap_or(u64::MAX);
        let prefix = match &q.device {
            Some(d) => device_prefix(d),
            None => vec![b't'],
        };
        let start = start_key(&prefix, since, after);
        let mut page = SessionPage::default();
        let iter = self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !key.starts_with(&prefix) || key.len() < prefix.len() + 16 {
                break;
            }
            let tail = &key[prefix.len()..];
            let started = u64::from_be_bytes(tail[..8].try_into().expect("8 bytes"));
            let id = u64::from_be_bytes(tail[8..16].try_into().expect("8 bytes"));
            if started >= until {
                break;
            }
            if page.sessions.len() == limit {
                page.next = page.sessions.last().map(AuditCursor::of_session);
                break;
            }
            let record = if q.device.is_some() {
                match self.load(started, id)? {
                    Some(r) => r,
                    None => continue, // purged between the two reads
                }
            } else {
                decode_as("session record", &value)?
            };
            page.sessions.push(record);
        }
        Ok(page)
    }

    /// Records clone sightings (audit entries beside the sessions).
    fn record_clones(&self, sightings: &[CloneSighting]) -> Result<(), StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        let mut batch = WriteBatch::default();
        for c in sightings {
            batch.put_cf(&cf, clone_key(c.at_ms, c.id), encode(c));
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Sightings are rare, so a device's are found by scanning them all.
    fn clones(
        &self,
        device: Option<&str>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<ClonePage, StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        let start = start_key(b"c", 0, after);
        let mut found = Vec::new();
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item?;
            if key.first() != Some(&b'c') {
                break;
            }
            let c: CloneSighting = decode_as("clone sighting", &value)?;
            if device.is_some_and(|d| d != c.first.device) {
                continue;
            }
            if found.len() == limit {
                let next = found.last().map(AuditCursor::of_sighting);
                return Ok(ClonePage {
                    clones: found,
                    next,
                });
            }
            found.push(c);
        }
        Ok(ClonePage {
            clones: found,
            next: None,
        })
    }

    /// Deletes every record of a session that started before `cutoff_ms`,
    /// and every clone sighting from before it. Returns how many sessions
    /// were deleted.
    fn purge_before(&self, cutoff_ms: u64) -> Result<usize, StoreError> {
        let cf = self.db.cf_handle(CF_SESSIONS).expect("cf exists");
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&cf, vec![b'c'], clone_key(cutoff_ms, 0));
        let mut n = 0;
        let start = time_key(0, 0);
        for item in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (key, value) = item?;
            if key.first() != Some(&b't') || key.len() != 17 {
                break;
            }
            let started = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
            if started >= cutoff_ms {
                break;
            }
            let r: SessionRecord = decode_as("session record", &value)?;
            batch.delete_cf(&cf, &key);
            batch.delete_cf(&cf, device_key(&r.device, r.started_ms, r.id));
            n += 1;
            if batch.len() >= 10_000 {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::mem_session_audit::{clone_sighting, ended_session};
    use idreg_core::SessionEnd;

    #[test]
    fn list_by_device_and_time_pages_and_purges() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::Store::open(tmp.path(), &idreg_core::Kek::from_bytes(&[7; 32])).unwrap();
        let log = store.session_log();
        for i in 0..10u64 {
            log.record(&ended_session(
                i,
                if i % 2 == 0 { "a" } else { "ab" },
                1000 + i,
            ))
            .unwrap();
        }
        // "a" must not match "ab": the device prefix ends in NUL.
        let q = SessionQuery {
            device: Some("a".into()),
            ..Default::default()
        };
        let p1 = log.sessions(&q, None, 3).unwrap();
        assert_eq!(
            p1.sessions.iter().map(|r| r.id).collect::<Vec<_>>(),
            [0, 2, 4]
        );
        let p2 = log.sessions(&q, p1.next, 3).unwrap();
        assert_eq!(p2.sessions.iter().map(|r| r.id).collect::<Vec<_>>(), [6, 8]);
        assert!(p2.next.is_none());

        let q = SessionQuery {
            since_ms: Some(1003),
            until_ms: Some(1006),
            ..Default::default()
        };
        let p = log.sessions(&q, None, 100).unwrap();
        assert_eq!(
            p.sessions.iter().map(|r| r.id).collect::<Vec<_>>(),
            [3, 4, 5]
        );

        // Clone sightings: listed by device, paged, purged with the rest.
        log.record_clones(&[clone_sighting(1, "a", 1001), clone_sighting(2, "ab", 1002)])
            .unwrap();
        log.record_clones(&[clone_sighting(3, "a", 1009)]).unwrap();
        let page = log.clones(Some("a"), None, 1).unwrap();
        assert_eq!(page.clones.iter().map(|c| c.id).collect::<Vec<_>>(), [1]);
        let page = log.clones(Some("a"), page.next, 1).unwrap();
        assert_eq!(page.clones.iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
        assert_eq!(page.next, None);
        assert_eq!(log.clones(None, None, 10).unwrap().clones.len(), 3);

        // Overwriting a record (session end) keeps one entry.
        let mut r = ended_session(3, "ab", 1003);
        r.end = Some(SessionEnd::Revoked);
        log.record(&r).unwrap();
        assert_eq!(log.sessions(&q, None, 100).unwrap().sessions.len(), 3);

        assert_eq!(log.purge_before(1005).unwrap(), 5);
        let kept = log.clones(None, None, 10).unwrap().clones;
        assert_eq!(kept.iter().map(|c| c.id).collect::<Vec<_>>(), [3]);
        let all = log.sessions(&SessionQuery::default(), None, 100).unwrap();
        assert_eq!(all.sessions.first().unwrap().id, 5);
        let q = SessionQuery {
            device: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(
            log.sessions(&q, None, 100)
                .unwrap()
                .sessions
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>(),
            [6, 8]
        );
    }
}

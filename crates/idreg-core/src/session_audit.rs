//! A node's session audit as its readers and writers see it: session
//! records and clone sightings in, pages of them out in time order, and
//! retention. The RocksDB session log implements it, and so does
//! [`crate::mem_session_audit::MemSessionAudit`], so the device front's
//! audit writer and the Sessions API are tested without RocksDB.

use crate::{CloneSighting, SessionRecord};

/// Which sessions a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub device: Option<String>,
    /// Sessions that started at or after this time.
    pub since_ms: Option<u64>,
    /// Sessions that started before this time.
    pub until_ms: Option<u64>,
}

/// Where a listing resumes: strictly after the entry of this time (a
/// session's start, a sighting's moment) and id. Entries are ordered by
/// both, so a page boundary inside one millisecond loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AuditCursor {
    pub at_ms: u64,
    pub id: u64,
}

impl AuditCursor {
    /// `at_ms.id`, for page tokens.
    pub fn to_text(self) -> String {
        format!("{}.{}", self.at_ms, self.id)
    }

    pub fn parse(text: &str) -> Option<Self> {
        let (at, id) = text.split_once('.')?;
        Some(Self {
            at_ms: at.parse().ok()?,
            id: id.parse().ok()?,
        })
    }

    pub fn of_session(r: &SessionRecord) -> Self {
        Self {
            at_ms: r.started_ms,
            id: r.id,
        }
    }

    pub fn of_sighting(c: &CloneSighting) -> Self {
        Self {
            at_ms: c.at_ms,
            id: c.id,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionRecord>,
    /// Where the next page resumes, when more match.
    pub next: Option<AuditCursor>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClonePage {
    pub clones: Vec<CloneSighting>,
    /// Where the next page resumes, when more match.
    pub next: Option<AuditCursor>,
}

pub trait SessionAudit {
    type Error: std::fmt::Display;

    /// Writes (or overwrites: a session is written when it starts and again
    /// when it ends) session records, in one write.
    fn record_sessions(&self, records: &[SessionRecord]) -> Result<(), Self::Error>;

    fn record_clones(&self, sightings: &[CloneSighting]) -> Result<(), Self::Error>;

    /// Up to `limit` sessions matching `query`, oldest first, after `after`.
    fn sessions(
        &self,
        query: &SessionQuery,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<SessionPage, Self::Error>;

    /// Up to `limit` clone sightings (of `device`, or all), oldest first,
    /// after `after`.
    fn clones(
        &self,
        device: Option<&str>,
        after: Option<AuditCursor>,
        limit: usize,
    ) -> Result<ClonePage, Self::Error>;

    /// Deletes every session that started, and every sighting made, before
    /// `cutoff_ms`; returns how many sessions went.
    fn purge_before(&self, cutoff_ms: u64) -> Result<usize, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_as_text_and_refuse_junk() {
        let c = AuditCursor {
            at_ms: 1_796_000_000_123,
            id: u64::MAX,
        };
        assert_eq!(AuditCursor::parse(&c.to_text()), Some(c));
        for junk in ["", "1", "1.", ".2", "a.b", "1.2.3", "-1.2"] {
            assert_eq!(AuditCursor::parse(junk), None, "{junk}");
        }
    }
}

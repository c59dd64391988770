//! `idreg.v1.Sessions`: this node's session audit (sessions and clone
//! sightings) and device-front counters.

use std::sync::Arc;

use idreg_core::{AuditCursor, CloneSighting, SessionAudit, SessionQuery, SessionRecord};
use idreg_proto::v1 as pb;
use idreg_store::SessionLog;
use pb::sessions_server::Sessions;
use tonic::{Request, Response, Status};

use crate::convert::{self, timestamp};
use crate::page_token;
use crate::registry_service::page_size;
use crate::status::storage;

/// Produces the device front's counters on demand.
pub type FrontStatsSource = Arc<dyn Fn() -> pb::FrontStats + Send + Sync>;

/// The service over this node's audit: the RocksDB session log on a node,
/// `MemSessionAudit` in its unit tests.
#[derive(Clone)]
pub struct SessionsService<L = SessionLog> {
    log: L,
    stats: Option<FrontStatsSource>,
}

impl<L> SessionsService<L>
where
    L: SessionAudit + Clone + Send + Sync + 'static,
    L::Error: std::fmt::Display + Send,
{
    pub fn new(log: L, stats: Option<FrontStatsSource>) -> Self {
        Self { log, stats }
    }

    pub fn into_server(
        self,
        max_message_bytes: usize,
    ) -> pb::sessions_server::SessionsServer<Self> {
        pb::sessions_server::SessionsServer::new(self).max_decoding_message_size(max_message_bytes)
    }
}

fn millis(field: &str, t: &Option<prost_types::Timestamp>) -> Result<Option<u64>, Status> {
    match t {
        None => Ok(None),
        Some(ts) if ts.seconds >= 0 && (0..1_000_000_000).contains(&ts.nanos) => {
            Ok(Some(ts.seconds as u64 * 1000 + ts.nanos as u64 / 1_000_000))
        }
        Some(_) => Err(Status::invalid_argument(format!(
            "{field}: must be a valid time after 1970"
        ))),
    }
}

pub fn session_to_proto(r: &SessionRecord, now_ms: u64) -> pb::Session {
    pb::Session {
        id: r.id,
        device_id: r.device.clone(),
        peer: r.peer.clone(),
        credential: r.credential.as_str().to_string(),
        started_at: Some(timestamp(r.started_ms)),
        ended_at: r.ended_ms.map(timestamp),
        duration_ms: r.duration_ms(now_ms),
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        end_reason: r.end.map(|e| e.as_str().to_string()).unwrap_or_default(),
        suite: r.suite.clone(),
        connection_id: r.connection_id,
        address_changes: r
            .address_changes
            .iter()
            .map(|c| pb::AddressChange {
                at: Some(timestamp(c.at_ms)),
                peer: c.peer.clone(),
            })
            .collect(),
        restored: r.restored,
    }
}

/// The entry a page token resumes after (`None`: the first page).
fn resume_after(digest: [u8; 8], token: &str) -> Result<Option<AuditCursor>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let text = page_token::decode(digest, token).map_err(Status::invalid_argument)?;
    AuditCursor::parse(&text)
        .map(Some)
        .ok_or_else(|| Status::invalid_argument("page_token: not a token this server issued"))
}

fn sighting_to_proto(c: &CloneSighting) -> pb::CloneSighting {
    pb::CloneSighting {
        device: c.first.device.clone(),
        first_address: c.first.ip.to_string(),
        second_address: c.second.ip.to_string(),
        at: Some(timestamp(c.at_ms)),
        action: c.policy.as_str().into(),
        first_node: c.first.node,
        first_session: c.first.session,
        second_node: c.second.node,
        second_session: c.second.session,
        first_started_at: Some(timestamp(c.first.started_ms)),
        second_started_at: Some(timestamp(c.second.started_ms)),
    }
}

#[tonic::async_trait]
impl<L> Sessions for SessionsService<L>
where
    L: SessionAudit + Clone + Send + Sync + 'static,
    L::Error: std::fmt::Display + Send,
{
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let req = request.into_inner();
        let device = convert::optional_id("device_id", &req.device_id)
            .map_err(crate::status::invalid)?
            .map(|d| d.to_string());
        let query = SessionQuery {
            device,
            since_ms: millis("since", &req.since)?,
            until_ms: millis("until", &req.until)?,
        };
        let page_size = page_size(req.page_size)?;
        let since = query.since_ms.unwrap_or(0).to_string();
        let until = query.until_ms.map(|u| u.to_string()).unwrap_or_default();
        let digest = page_token::filter_digest(&[
            "sessions",
            query.device.as_deref().unwrap_or(""),
            &since,
            &until,
        ]);
        let after = resume_after(digest, &req.page_token)?;
        let log = self.log.clone();
        let page = tokio::task::spawn_blocking(move || log.sessions(&query, after, page_size))
            .await
            .map_err(storage)?
            .map_err(storage)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: page
                .sessions
                .iter()
                .map(|r| session_to_proto(r, now))
                .collect(),
            next_page_token: page
                .next
                .map(|c| page_token::encode(digest, &c.to_text()))
                .unwrap_or_default(),
        }))
    }

    async fn list_clones(
        &self,
        request: Request<pb::ListClonesRequest>,
    ) -> Result<Response<pb::ListClonesResponse>, Status> {
        let req = request.into_inner();
        let device = convert::optional_id("device_id", &req.device_id)
            .map_err(crate::status::invalid)?
            .map(|d| d.to_string());
        let page_size = page_size(req.page_size)?;
        let digest = page_token::filter_digest(&["clones", device.as_deref().unwrap_or("")]);
        let after = resume_after(digest, &req.page_token)?;
        let log = self.log.clone();
        let page =
            tokio::task::spawn_blocking(move || log.clones(device.as_deref(), after, page_size))
                .await
                .map_err(storage)?
                .map_err(storage)?;
        Ok(Response::new(pb::ListClonesResponse {
            clones: page.clones.iter().map(sighting_to_proto).collect(),
            next_page_token: page
                .next
                .map(|c| page_token::encode(digest, &c.to_text()))
                .unwrap_or_default(),
        }))
    }

    async fn get_front_stats(
        &self,
        _request: Request<pb::GetFrontStatsRequest>,
    ) -> Result<Response<pb::FrontStats>, Status> {
        Ok(Response::new(match &self.stats {
            Some(f) => pb::FrontStats {
                enabled: true,
                ..f()
            },
            None => pb::FrontStats::default(),
        }))
    }
}

#[cfg(test)]
mod tests {
    //! The service over an in-memory audit: filters, pages and their
    //! tokens, and refusals, with no RocksDB.

    use idreg_core::mem_session_audit::{clone_sighting, ended_session, MemSessionAudit};
    use prost_types::Timestamp;

    use super::*;

    /// 30 sessions of devices a, b, c, three to a millisecond (so pages
    /// end inside one), and clone sightings of a and b.
    fn service() -> SessionsService<MemSessionAudit> {
        let audit = MemSessionAudit::default();
        let records: Vec<_> = (0..30u64)
            .map(|i| ended_session(i, ["a", "b", "c"][i as usize % 3], 1_000 + i / 3))
            .collect();
        audit.record_sessions(&records).unwrap();
        audit
            .record_clones(&[
                clone_sighting(1, "a", 2_000),
                clone_sighting(2, "b", 2_000),
                clone_sighting(3, "a", 2_001),
            ])
            .unwrap();
        SessionsService::new(audit, None)
    }

    fn ts(ms: u64) -> Option<Timestamp> {
        Some(Timestamp {
            seconds: (ms / 1000) as i64,
            nanos: (ms % 1000) as i32 * 1_000_000,
        })
    }

    /// Every page of a listing: the ids, in order.
    async fn all_sessions(
        s: &SessionsService<MemSessionAudit>,
        req: pb::ListSessionsRequest,
    ) -> Vec<u64> {
        let mut ids = Vec::new();
        let mut req = req;
        for _ in 0..100 {
            let page = s
                .list_sessions(Request::new(req.clone()))
                .await
                .unwrap()
                .into_inner();
            ids.extend(page.sessions.iter().map(|x| x.id));
            if page.next_page_token.is_empty() {
                return ids;
            }
            req.page_token = page.next_page_token;
        }
        panic!("listing did not end in 100 pages");
    }

    #[tokio::test]
    async fn sessions_are_listed_by_device_and_time_a_page_at_a_time() {
        let s = service();
        let every = |size| pb::ListSessionsRequest {
            page_size: size,
            ..Default::default()
        };
        for size in [1, 4, 7, 100] {
            assert_eq!(
                all_sessions(&s, every(size)).await,
                (0..30).collect::<Vec<_>>(),
                "{size}"
            );
        }
        let of_b = pb::ListSessionsRequest {
            device_id: "b".into(),
            page_size: 4,
            ..Default::default()
        };
        assert_eq!(
            all_sessions(&s, of_b).await,
            (1..30).step_by(3).collect::<Vec<_>>()
        );
        // since is inclusive, until exclusive: milliseconds 1003 and 1004.
        let window = pb::ListSessionsRequest {
            since: ts(1_003),
            until: ts(1_005),
            page_size: 2,
            ..Default::default()
        };
        assert_eq!(all_sessions(&s, window).await, (9..15).collect::<Vec<_>>());
        let first = s
            .list_sessions(Request::new(every(0)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(first.sessions[4].device_id, "b");
        assert_eq!(first.sessions[4].end_reason, "idle");
        assert!(first.next_page_token.is_empty(), "30 fit the default page");
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_the_field_named() {
        let s = service();
        let page = s
            .list_sessions(Request::new(pb::ListSessionsRequest {
                device_id: "a".into(),
                page_size: 2,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        // A token of another filter, a forged one, a bad time, a vast page.
        let refused = [
            pb::ListSessionsRequest {
                device_id: "b".into(),
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            pb::ListSessionsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            pb::ListSessionsRequest {
                since: Some(Timestamp {
                    seconds: -5,
                    nanos: 0,
                }),
                ..Default::default()
            },
            pb::ListSessionsRequest {
                page_size: 5_000,
                ..Default::default()
            },
            pb::ListSessionsRequest {
                device_id: "not an id".into(),
                ..Default::default()
            },
        ];
        for req in refused {
            let e = s
                .list_sessions(Request::new(req.clone()))
                .await
                .unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{req:?}: {e}");
        }
        let e = s
            .list_sessions(Request::new(pb::ListSessionsRequest {
                since: Some(Timestamp {
                    seconds: -5,
                    nanos: 0,
                }),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert!(e.message().contains("since"), "{e}");
    }

    #[tokio::test]
    async fn clone_sightings_are_listed_by_device_a_page_at_a_time() {
        let s = service();
        let list = |device: &str, token: String| pb::ListClonesRequest {
            device_id: device.into(),
            page_size: 1,
            page_token: token,
        };
        let p1 = s
            .list_clones(Request::new(list("a", String::new())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p1.clones.len(), 1);
        assert_eq!(p1.clones[0].first_session, 1);
        assert_eq!(p1.clones[0].second_address, "127.0.0.2");
        let p2 = s
            .list_clones(Request::new(list("a", p1.next_page_token.clone())))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(p2.clones[0].first_session, 3);
        assert!(p2.next_page_token.is_empty());
        // The token belongs to a's listing.
        let e = s
            .list_clones(Request::new(list("b", p1.next_page_token)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        let all = s
            .list_clones(Request::new(pb::ListClonesRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.clones.len(), 3);
    }
}

//! `idreg.v1.Sessions`: this node's session audit (sessions and clone
//! sightings) and device-front counters.

use std::sync::Arc;

use idreg_core::{CloneSighting, SessionRecord};
use idreg_proto::v1 as pb;
use idreg_store::{SessionLog, SessionQuery};
use pb::sessions_server::Sessions;
use tonic::{Request, Response, Status};

use crate::convert::{self, timestamp};
use crate::page_token;
use crate::registry_service::page_size;
use crate::status::storage;

/// Produces the device front's counters on demand.
pub type FrontStatsSource = Arc<dyn Fn() -> pb::FrontStats + Send + Sync>;

#[derive(Clone)]
pub struct SessionsService {
    log: SessionLog,
    stats: Option<FrontStatsSource>,
}

impl SessionsService {
    pub fn new(log: SessionLog, stats: Option<FrontStatsSource>) -> Self {
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

/// The audit key a page token resumes after (`None`: the first page).
fn resume_key(digest: [u8; 8], token: &str) -> Result<Option<Vec<u8>>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let text = page_token::decode(digest, token).map_err(Status::invalid_argument)?;
    hex::decode(text)
        .map(Some)
        .map_err(|_| Status::invalid_argument("page_token: not a token this server issued"))
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
impl Sessions for SessionsService {
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
        let after = resume_key(digest, &req.page_token)?;
        let log = self.log.clone();
        let page =
            tokio::task::spawn_blocking(move || log.list(&query, after.as_deref(), page_size))
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
                .map(|k| page_token::encode(digest, &hex::encode(k)))
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
        let after = resume_key(digest, &req.page_token)?;
        let log = self.log.clone();
        let (clones, next) = tokio::task::spawn_blocking(move || {
            log.list_clones(device.as_deref(), after.as_deref(), page_size)
        })
        .await
        .map_err(storage)?
        .map_err(storage)?;
        Ok(Response::new(pb::ListClonesResponse {
            clones: clones.iter().map(sighting_to_proto).collect(),
            next_page_token: next
                .map(|k| page_token::encode(digest, &hex::encode(k)))
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

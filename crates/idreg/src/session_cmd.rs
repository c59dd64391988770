//! `idreg session list|stats`.

use anyhow::Context;
use idreg_api::convert::timestamp;
use idreg_client::pb;
use serde::Serialize;

use crate::cli::{OutputFormat, SessionCommand};
use crate::output::rfc3339;
use crate::time_arg::parse_time;

#[derive(Serialize)]
struct SessionView {
    id: u64,
    device: String,
    peer: String,
    credential: String,
    started_at: String,
    ended_at: Option<String>,
    duration_ms: u64,
    bytes_in: u64,
    bytes_out: u64,
    end_reason: Option<String>,
    suite: String,
    connection_id: bool,
    /// "ADDRESS at TIME", oldest first.
    moved_to: Vec<String>,
    restored: bool,
}

impl From<&pb::Session> for SessionView {
    fn from(s: &pb::Session) -> Self {
        Self {
            id: s.id,
            device: s.device_id.clone(),
            peer: s.peer.clone(),
            credential: s.credential.clone(),
            started_at: rfc3339(s.started_at.as_ref()),
            ended_at: s.ended_at.as_ref().map(|t| rfc3339(Some(t))),
            duration_ms: s.duration_ms,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            end_reason: (!s.end_reason.is_empty()).then(|| s.end_reason.clone()),
            suite: s.suite.clone(),
            connection_id: s.connection_id,
            moved_to: s
                .address_changes
                .iter()
                .map(|c| format!("{} at {}", c.peer, rfc3339(c.at.as_ref())))
                .collect(),
            restored: s.restored,
        }
    }
}

/// The node's device-front counters and clone sightings.
async fn front_stats(target: &idreg_client::Target) -> anyhow::Result<pb::FrontStats> {
    let mut client = target.sessions().await?;
    Ok(client
        .get_front_stats(pb::GetFrontStatsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: SessionCommand,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_millis() as u64;
    match command {
        SessionCommand::List {
            device,
            since,
            until,
            limit,
        } => {
            let since = since.map(|t| parse_time("since", &t, now)).transpose()?;
            let until = until.map(|t| parse_time("until", &t, now)).transpose()?;
            let mut client = target.sessions().await?;
            let mut req = pb::ListSessionsRequest {
                device_id: device.unwrap_or_default(),
                since: since.map(timestamp),
                until: until.map(timestamp),
                page_size: 500,
                page_token: String::new(),
            };
            let limit = limit.unwrap_or(u64::MAX);
            let mut shown = 0u64;
            let mut views = Vec::new();
            if output == OutputFormat::Table {
                println!(
                    "{:<24} {:<21} {:<14} {:<24} {:>10} {:>8} {:>8} {:<14} {:<4} {:<5} END",
                    "DEVICE",
                    "PEER",
                    "CREDENTIAL",
                    "STARTED",
                    "DURATION",
                    "IN",
                    "OUT",
                    "SUITE",
                    "CID",
                    "MOVES"
                );
            }
            'pages: loop {
                let page = client
                    .list_sessions(req.clone())
                    .await
                    .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                for s in &page.sessions {
                    if shown == limit {
                        break 'pages;
                    }
                    shown += 1;
                    let v = SessionView::from(s);
                    match output {
                        OutputFormat::Json => views.push(v),
                        OutputFormat::Table => println!(
                            "{:<24} {:<21} {:<14} {:<24} {:>9.1}s {:>8} {:>8} {:<14} {:<4} {:<5} {}",
                            v.device,
                            v.peer,
                            v.credential,
                            v.started_at,
                            v.duration_ms as f64 / 1000.0,
                            v.bytes_in,
                            v.bytes_out,
                            v.suite.trim_start_matches("TLS_").replace("_WITH_AES_128", ""),
                            if v.connection_id { "yes" } else { "no" },
                            v.moved_to.len(),
                            v.end_reason.as_deref().unwrap_or(if v.restored { "(live, restored)" } else { "(live)" })
                        ),
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                req.page_token = page.next_page_token;
            }
            if output == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            }
        }
        SessionCommand::Clones { device, limit } => {
            let s = front_stats(target).await?;
            let mut client = target.sessions().await?;
            let mut req = pb::ListClonesRequest {
                device_id: device.unwrap_or_default(),
                page_size: 500,
                page_token: String::new(),
            };
            let limit = limit.unwrap_or(u64::MAX) as usize;
            let mut clones = Vec::new();
            while clones.len() < limit {
                let page = client
                    .list_clones(req.clone())
                    .await
                    .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
                    .into_inner();
                clones.extend(page.clones);
                if page.next_page_token.is_empty() {
                    break;
                }
                req.page_token = page.next_page_token;
            }
            clones.truncate(limit);
            let side = |address: &str,
                        node: u64,
                        session: u64,
                        started: Option<&prost_types::Timestamp>| {
                serde_json::json!({
                    "address": address,
                    "node": node,
                    "session": session,
                    "started_at": crate::output::rfc3339(started),
                })
            };
            match output {
                OutputFormat::Json => {
                    let rows: Vec<serde_json::Value> = clones
                        .iter()
                        .map(|c| {
                            serde_json::json!({
                                "device": c.device,
                                "first_address": c.first_address,
                                "second_address": c.second_address,
                                "first": side(&c.first_address, c.first_node, c.first_session, c.first_started_at.as_ref()),
                                "second": side(&c.second_address, c.second_node, c.second_session, c.second_started_at.as_ref()),
                                "at": crate::output::rfc3339(c.at.as_ref()),
                                "action": c.action,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "on_clone": s.on_clone,
                            "detected": s.clones_detected,
                            "clones": rows,
                        }))?
                    )
                }
                OutputFormat::Table => {
                    println!(
                        "{} clone sightings on this node since it started (node policy: {})",
                        s.clones_detected, s.on_clone
                    );
                    println!(
                        "{:<24} {:<24} {:<24} {:<25} ACTION",
                        "DEVICE", "FIRST (NODE)", "SECOND (NODE)", "AT"
                    );
                    for c in &clones {
                        println!(
                            "{:<24} {:<24} {:<24} {:<25} {}",
                            c.device,
                            format!("{} ({})", c.first_address, c.first_node),
                            format!("{} ({})", c.second_address, c.second_node),
                            crate::output::rfc3339(c.at.as_ref()),
                            c.action
                        );
                    }
                }
            }
        }
        SessionCommand::Stats => {
            let s = front_stats(target).await?;
            let top: Vec<serde_json::Value> = s
                .top_failing_sources
                .iter()
                .map(|f| serde_json::json!({"address": f.address, "failed_handshakes": f.failed_handshakes}))
                .collect();
            let v = serde_json::json!({
                "enabled": s.enabled,
                "addr": s.psk_addr,
                "shards": s.shards,
                "peers": s.peers,
                "handshaking": s.handshaking,
                "sessions_live": s.sessions_live,
                "handshakes_ok": s.handshakes_ok,
                "handshakes_failed": s.handshakes_failed,
                "handshakes_timed_out": s.handshakes_timed_out,
                "datagrams_dropped": s.datagrams_dropped,
                "plain_coap_refused": s.plain_coap_refused,
                "peers_evicted": s.peers_evicted,
                "cookies_sent": s.cookies_sent,
                "handshakes_over_budget": s.handshakes_over_budget,
                "handshakes_refused_stale": s.handshakes_refused_stale,
                "address_changes": s.address_changes,
                "sessions_restored": s.sessions_restored,
                "top_failing_sources": top,
                "failures_from_other_sources": s.failures_from_other_sources,
            });
            match output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                OutputFormat::Table => {
                    for (k, val) in v.as_object().expect("object") {
                        println!("{k:<28} {val}");
                    }
                }
            }
        }
    }
    Ok(())
}

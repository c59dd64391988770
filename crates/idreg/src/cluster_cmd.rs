//! `idreg cluster status|add-node|remove-node|snapshot`.

use idreg_client::pb;
use serde::Serialize;

use anyhow::Context;

use crate::cli::{ClusterCommand, OutputFormat, SnapshotAction};
use crate::device_cmd::rpc;

#[derive(Serialize)]
struct MemberRow {
    id: u64,
    addr: String,
    role: String,
    leader: bool,
    matched_index: u64,
    lag: Option<u64>,
}

#[derive(Serialize)]
struct StatusView {
    node_id: u64,
    state: String,
    leader_id: Option<u64>,
    leader_addr: Option<String>,
    term: u64,
    last_log_index: u64,
    applied_index: u64,
    snapshot_index: u64,
    purged_index: u64,
    snapshots_installed: u64,
    revocation_list_version: u64,
    /// SHA-256 of the revocation-list signing key (SPKI DER), hex.
    revocation_list_key_sha256: Option<String>,
    members: Vec<MemberRow>,
}

impl From<pb::ClusterStatus> for StatusView {
    fn from(s: pb::ClusterStatus) -> Self {
        Self {
            node_id: s.node_id,
            state: s.state,
            leader_id: (s.leader_id != 0).then_some(s.leader_id),
            leader_addr: (!s.leader_addr.is_empty()).then_some(s.leader_addr),
            term: s.term,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            snapshots_installed: s.snapshots_installed,
            revocation_list_version: s.revocation_list_version,
            revocation_list_key_sha256: (!s.revocation_list_key_sha256.is_empty())
                .then_some(s.revocation_list_key_sha256),
            members: s
                .members
                .into_iter()
                .map(|m| MemberRow {
                    leader: m.id == s.leader_id,
                    id: m.id,
                    addr: m.addr,
                    role: m.role,
                    matched_index: m.matched_index,
                    lag: m.replicating.then_some(m.lag),
                })
                .collect(),
        }
    }
}

fn print(output: OutputFormat, status: pb::ClusterStatus) -> anyhow::Result<()> {
    let v = StatusView::from(status);
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        OutputFormat::Table => {
            println!(
                "node {} ({}), leader {}, term {}, last log {}, applied {}, snapshot {}, purged {}, snapshots installed {}",
                v.node_id,
                v.state,
                v.leader_id.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into()),
                v.term,
                v.last_log_index,
                v.applied_index,
                v.snapshot_index,
                v.purged_index,
                v.snapshots_installed
            );
            if let Some(key) = &v.revocation_list_key_sha256 {
                println!(
                    "revocation list version {}, signed by key sha256:{key} (idreg rl key)",
                    v.revocation_list_version
                );
            }
            println!(
                "{:<4} {:<32} {:<8} {:<7} {:>10} {:>8}",
                "ID", "ADDRESS", "ROLE", "LEADER", "MATCHED", "LAG"
            );
            for m in &v.members {
                println!(
                    "{:<4} {:<32} {:<8} {:<7} {:>10} {:>8}",
                    m.id,
                    m.addr,
                    m.role,
                    if m.leader { "*" } else { "" },
                    m.matched_index,
                    m.lag.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
                );
            }
        }
    }
    Ok(())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: ClusterCommand,
) -> anyhow::Result<()> {
    // Restore works on a stopped node's files: no server to connect to.
    if let ClusterCommand::Snapshot {
        action:
            Some(SnapshotAction::Restore {
                file,
                data_dir,
                kek_file,
            }),
    } = &command
    {
        let kek = crate::kek_file::read(kek_file)?;
        let store = idreg_store::Store::open(data_dir, &kek)
            .with_context(|| format!("cannot open the store in {}", data_dir.display()))?;
        store
            .restore(file)
            .with_context(|| format!("cannot restore {}", file.display()))?;
        store.flush()?;
        println!(
            "restored {} devices into {}; start this node alone (idreg serve --data-dir {}), then add the others",
            store.reader().device_count()?,
            data_dir.display(),
            data_dir.display()
        );
        return Ok(());
    }
    let pod_target;
    let target = match &command {
        ClusterCommand::Leave { k8s: true } => {
            pod_target = crate::k8s::own_node_target()?;
            &pod_target
        }
        _ => target,
    };
    let mut client = target.cluster().await?;
    match command {
        ClusterCommand::Status { local } => {
            let s = client
                .get_status(pb::GetClusterStatusRequest { local_only: local })
                .await
                .map_err(rpc)?
                .into_inner();
            print(output, s)
        }
        ClusterCommand::AddNode { id, addr, learner } => {
            crate::initial_cluster::host_port(&addr)?;
            let s = client
                .add_node(pb::AddNodeRequest {
                    id,
                    addr,
                    learner_only: learner,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            print(output, s)
        }
        ClusterCommand::RemoveNode { id } => {
            let s = client
                .remove_node(pb::RemoveNodeRequest { id })
                .await
                .map_err(rpc)?
                .into_inner();
            print(output, s)
        }
        ClusterCommand::Leave { .. } => {
            let me = client
                .get_status(pb::GetClusterStatusRequest { local_only: true })
                .await
                .map_err(rpc)?
                .into_inner();
            if !me.members.iter().any(|m| m.id == me.node_id) {
                println!("node {} is not a member; nothing to leave", me.node_id);
                return Ok(());
            }
            let s = client
                .remove_node(pb::RemoveNodeRequest { id: me.node_id })
                .await
                .map_err(rpc)?
                .into_inner();
            print(output, s)
        }
        ClusterCommand::Snapshot {
            action: Some(SnapshotAction::Save { file }),
        } => {
            use std::io::Write;
            let mut stream = client
                .save_snapshot(pb::SaveSnapshotRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            let tmp = file.with_extension("partial");
            // A backup holds every sealed secret: owner-only, like a key.
            let _ = std::fs::remove_file(&tmp);
            let mut out = crate::private_file::open_new(&tmp)?;
            let (mut bytes, mut index) = (0u64, 0);
            while let Some(chunk) = stream.message().await.map_err(rpc)? {
                out.write_all(&chunk.data)?;
                bytes += chunk.data.len() as u64;
                index = chunk.snapshot_index;
            }
            out.sync_all()?;
            std::fs::rename(&tmp, &file)?;
            match output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({"file": file, "bytes": bytes, "snapshot_index": index})
                ),
                OutputFormat::Table => println!(
                    "saved the snapshot at log index {index} to {} ({bytes} bytes)",
                    file.display()
                ),
            }
            Ok(())
        }
        ClusterCommand::Snapshot {
            action: Some(SnapshotAction::Restore { .. }),
        } => unreachable!("handled before connecting"),
        ClusterCommand::Snapshot { action: None } => {
            let r = client
                .trigger_snapshot(pb::TriggerSnapshotRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            match output {
                OutputFormat::Json => println!("{{\"snapshot_index\":{}}}", r.snapshot_index),
                OutputFormat::Table => println!("snapshot built at log index {}", r.snapshot_index),
            }
            Ok(())
        }
    }
}

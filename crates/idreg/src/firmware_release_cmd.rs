//! `idreg firmware upload|release|rollout|report`: releases, the rollouts
//! that offer them, and which devices run what.

use std::path::Path;

use anyhow::Context;
use idreg_client::pb;
use tonic::transport::Channel;

use crate::cli::{FirmwareCommand, OutputFormat, ReleaseCommand, RolloutCommand};
use crate::device_cmd::rpc;
use crate::output::rfc3339;

type Client = pb::firmware_client::FirmwareClient<Channel>;

/// Image bytes per upload message (well under gRPC's 4 MiB default).
const UPLOAD_PART: usize = 256 * 1024;

pub async fn run(
    client: &mut Client,
    output: OutputFormat,
    command: FirmwareCommand,
) -> anyhow::Result<()> {
    match command {
        FirmwareCommand::Upload { manifest, image } => {
            let release = upload(client, &manifest, &image).await?;
            print_releases(output, &[release])
        }
        FirmwareCommand::Release(ReleaseCommand::List { staged }) => {
            let releases = client
                .list_releases(pb::ListReleasesRequest { staged })
                .await
                .map_err(rpc)?
                .into_inner()
                .releases;
            print_releases(output, &releases)
        }
        FirmwareCommand::Release(ReleaseCommand::Remove { version, class }) => {
            client
                .remove_release(pb::ReleaseRef {
                    device_class: class.clone(),
                    version: version.clone(),
                })
                .await
                .map_err(rpc)?;
            if output == OutputFormat::Table {
                println!("release {class}@{version} removed");
            }
            Ok(())
        }
        FirmwareCommand::Rollout(c) => rollout(client, output, c).await,
        FirmwareCommand::Report {
            version,
            class,
            limit,
            counts,
        } => report(client, output, version, class, limit, counts).await,
        FirmwareCommand::Signer(_) | FirmwareCommand::Manifest(_) => {
            unreachable!("handled by firmware_cmd")
        }
    }
}

async fn upload(client: &mut Client, manifest: &Path, image: &Path) -> anyhow::Result<pb::Release> {
    let manifest = std::fs::read(manifest)
        .with_context(|| format!("--manifest: cannot read {}", manifest.display()))?;
    let image = std::fs::read(image)
        .with_context(|| format!("--image: cannot read {}", image.display()))?;
    let mut parts: Vec<pb::UploadRequest> = image
        .chunks(UPLOAD_PART)
        .map(|c| pb::UploadRequest {
            manifest: Vec::new(),
            image: c.to_vec(),
        })
        .collect();
    match parts.first_mut() {
        Some(first) => first.manifest = manifest,
        None => parts.push(pb::UploadRequest {
            manifest,
            image: Vec::new(),
        }),
    }
    Ok(client
        .upload(tokio_stream::iter(parts))
        .await
        .map_err(rpc)?
        .into_inner())
}

fn print_releases(output: OutputFormat, releases: &[pb::Release]) -> anyhow::Result<()> {
    let info = |r: &pb::Release| r.manifest.clone().unwrap_or_default();
    match output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = releases
                .iter()
                .map(|r| {
                    let m = info(r);
                    serde_json::json!({
                        "device_class": m.device_class,
                        "version": m.version,
                        "state": r.state,
                        "signer": m.signer,
                        "vendor": m.vendor,
                        "image_size": m.image_size,
                        "image_sha256": m.image_sha256,
                        "min_version": (!m.min_version.is_empty()).then_some(&m.min_version),
                        "chunks": r.chunks,
                        "started_at": rfc3339(r.started_at.as_ref()),
                        "updated_at": rfc3339(r.updated_at.as_ref()),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            println!(
                "{:<16} {:<12} {:<9} {:>10} {:<12} SHA-256",
                "CLASS", "VERSION", "STATE", "BYTES", "SIGNER"
            );
            for r in releases {
                let m = info(r);
                println!(
                    "{:<16} {:<12} {:<9} {:>10} {:<12} {}",
                    m.device_class, m.version, r.state, m.image_size, m.signer, m.image_sha256
                );
            }
        }
    }
    Ok(())
}

async fn rollout(
    client: &mut Client,
    output: OutputFormat,
    command: RolloutCommand,
) -> anyhow::Result<()> {
    let paused = |client: &mut Client, version: String, class: String, paused: bool| {
        let mut client = client.clone();
        async move {
            client
                .set_rollout_paused(pb::SetRolloutPausedRequest {
                    device_class: class,
                    version,
                    paused,
                })
                .await
                .map_err(rpc)
                .map(|r| vec![r.into_inner()])
        }
    };
    let rollouts = match command {
        RolloutCommand::Create {
            version,
            class,
            labels,
            percent,
            paused,
        } => vec![client
            .set_rollout(pb::SetRolloutRequest {
                device_class: class,
                version,
                labels,
                percent,
                paused,
            })
            .await
            .map_err(rpc)?
            .into_inner()],
        RolloutCommand::Pause { version, class } => paused(client, version, class, true).await?,
        RolloutCommand::Resume { version, class } => paused(client, version, class, false).await?,
        RolloutCommand::Remove { version, class } => {
            client
                .remove_rollout(pb::ReleaseRef {
                    device_class: class.clone(),
                    version: version.clone(),
                })
                .await
                .map_err(rpc)?;
            if output == OutputFormat::Table {
                println!("rollout of {class}@{version} removed");
            }
            return Ok(());
        }
        RolloutCommand::List => {
            client
                .list_rollouts(pb::ListRolloutsRequest {})
                .await
                .map_err(rpc)?
                .into_inner()
                .rollouts
        }
        RolloutCommand::Status { version, class } => {
            let s = client
                .get_rollout_status(pb::ReleaseRef {
                    device_class: class,
                    version,
                })
                .await
                .map_err(rpc)?
                .into_inner();
            let r = s.rollout.clone().unwrap_or_default();
            match output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "device_class": r.device_class,
                        "version": r.version,
                        "paused": r.paused,
                        "percent": r.percent,
                        "labels": r.labels,
                        "targeted": s.targeted,
                        "downloading": s.downloading,
                        "installed": s.installed,
                        "failed": s.failed,
                    })
                ),
                OutputFormat::Table => println!(
                    "{}@{} ({}{}%{}): targeted {}, downloading {}, installed {}, failed {}",
                    r.device_class,
                    r.version,
                    if r.paused { "paused, " } else { "" },
                    r.percent,
                    if r.labels.is_empty() {
                        String::new()
                    } else {
                        format!(" of {}", r.labels.join(","))
                    },
                    s.targeted,
                    s.downloading,
                    s.installed,
                    s.failed
                ),
            }
            return Ok(());
        }
    };
    match output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = rollouts
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "device_class": r.device_class,
                        "version": r.version,
                        "labels": r.labels,
                        "percent": r.percent,
                        "paused": r.paused,
                        "created_at": rfc3339(r.created_at.as_ref()),
                        "updated_at": rfc3339(r.updated_at.as_ref()),
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            println!(
                "{:<16} {:<12} {:>7} {:<7} LABELS",
                "CLASS", "VERSION", "PERCENT", "STATE"
            );
            for r in &rollouts {
                println!(
                    "{:<16} {:<12} {:>7} {:<7} {}",
                    r.device_class,
                    r.version,
                    r.percent,
                    if r.paused { "paused" } else { "running" },
                    r.labels.join(",")
                );
            }
        }
    }
    Ok(())
}

async fn report(
    client: &mut Client,
    output: OutputFormat,
    version: Option<String>,
    class: Option<String>,
    limit: usize,
    counts_only: bool,
) -> anyhow::Result<()> {
    let mut request = pb::FirmwareReportRequest {
        version: version.unwrap_or_default(),
        device_class: class.unwrap_or_default(),
        page_size: limit.clamp(1, 1000) as u32,
        page_token: String::new(),
        counts_only,
    };
    let mut counts = Vec::new();
    let mut devices = Vec::new();
    loop {
        let page = client
            .report(request.clone())
            .await
            .map_err(rpc)?
            .into_inner();
        counts.extend(page.counts);
        devices.extend(page.devices);
        if counts_only || page.next_page_token.is_empty() || devices.len() >= limit {
            break;
        }
        request.page_token = page.next_page_token;
        request.page_size = (limit - devices.len()).clamp(1, 1000) as u32;
    }
    devices.truncate(limit);
    match output {
        OutputFormat::Json => {
            let counts: Vec<serde_json::Value> = counts
                .iter()
                .map(|c| serde_json::json!({"device_class": c.device_class, "version": c.version, "devices": c.devices}))
                .collect();
            let devices: Vec<serde_json::Value> = devices
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": d.id,
                        "device_class": d.device_class,
                        "version": d.version,
                        "reported_at": rfc3339(d.reported_at.as_ref()),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"counts": counts, "devices": devices})
                )?
            );
        }
        OutputFormat::Table => {
            println!("{:<16} {:<12} DEVICES", "CLASS", "VERSION");
            for c in &counts {
                println!("{:<16} {:<12} {}", c.device_class, c.version, c.devices);
            }
            if !counts_only {
                println!();
                println!(
                    "{:<32} {:<16} {:<12} REPORTED",
                    "DEVICE", "CLASS", "VERSION"
                );
                for d in &devices {
                    println!(
                        "{:<32} {:<16} {:<12} {}",
                        d.id,
                        d.device_class,
                        d.version,
                        rfc3339(d.reported_at.as_ref())
                    );
                }
            }
        }
    }
    Ok(())
}

//! `idreg firmware signer add|list|remove`: the vendors trusted to sign
//! firmware manifests; `idreg firmware manifest check`: a manifest against
//! them, and an image against it.

use anyhow::Context;
use idreg_client::pb;

use std::path::Path;

use crate::cli::{FirmwareCommand, ManifestCommand, OutputFormat, SignerCommand};
use crate::device_cmd::rpc;

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: FirmwareCommand,
) -> anyhow::Result<()> {
    let mut client = target.firmware().await?;
    let command = match command {
        FirmwareCommand::Signer(c) => c,
        FirmwareCommand::Manifest(ManifestCommand::Check { manifest, image }) => {
            return check_manifest(&mut client, output, &manifest, image.as_deref()).await;
        }
        other => return crate::firmware_release_cmd::run(&mut client, output, other).await,
    };
    let signers = match command {
        SignerCommand::Add { name, public_key } => {
            let key = std::fs::read(&public_key)
                .with_context(|| format!("--public-key: cannot read {}", public_key.display()))?;
            vec![client
                .add_signer(pb::AddSignerRequest {
                    name,
                    public_key: key,
                })
                .await
                .map_err(rpc)?
                .into_inner()]
        }
        SignerCommand::List => {
            client
                .list_signers(pb::ListSignersRequest {})
                .await
                .map_err(rpc)?
                .into_inner()
                .signers
        }
        SignerCommand::Remove { name } => {
            client
                .remove_signer(pb::RemoveSignerRequest { name: name.clone() })
                .await
                .map_err(rpc)?;
            if output == OutputFormat::Table {
                println!("firmware signer {name} removed");
            }
            return Ok(());
        }
    };
    match output {
        OutputFormat::Json => {
            let rows: Vec<serde_json::Value> = signers
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "name": s.name,
                        "fingerprint": s.fingerprint,
                        "added_at": crate::output::rfc3339(s.added_at.as_ref()),
                        "public_key_pem": s.public_key_pem,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            println!(
                "{:<24} {:<64} ADDED",
                "NAME", "FINGERPRINT (SHA-256 OF THE KEY)"
            );
            for s in &signers {
                println!(
                    "{:<24} {:<64} {}",
                    s.name,
                    s.fingerprint,
                    crate::output::rfc3339(s.added_at.as_ref())
                );
            }
        }
    }
    Ok(())
}

async fn check_manifest(
    client: &mut pb::firmware_client::FirmwareClient<tonic::transport::Channel>,
    output: OutputFormat,
    manifest: &Path,
    image: Option<&Path>,
) -> anyhow::Result<()> {
    let read = |p: &Path, what: &str| {
        std::fs::read(p).with_context(|| format!("{what}: cannot read {}", p.display()))
    };
    let info = client
        .check_manifest(pb::CheckManifestRequest {
            manifest: read(manifest, "manifest")?,
            image: image
                .map(|p| read(p, "--image"))
                .transpose()?
                .unwrap_or_default(),
        })
        .await
        .map_err(rpc)?
        .into_inner();
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "signer": info.signer,
                "vendor": info.vendor,
                "device_class": info.device_class,
                "version": info.version,
                "image_size": info.image_size,
                "image_sha256": info.image_sha256,
                "min_version": (!info.min_version.is_empty()).then_some(&info.min_version),
                "image_uri": (!info.image_uri.is_empty()).then_some(&info.image_uri),
                "image_checked": info.image_checked,
            })
        ),
        OutputFormat::Table => {
            println!(
                "signed by {}: {} {} {} ({} bytes, sha256 {}){}",
                info.signer,
                info.vendor,
                info.device_class,
                info.version,
                info.image_size,
                info.image_sha256,
                if info.min_version.is_empty() {
                    String::new()
                } else {
                    format!(", over {} or later", info.min_version)
                }
            );
            println!(
                "{}",
                if info.image_checked {
                    "the image matches"
                } else {
                    "no image checked (--image FILE)"
                }
            );
        }
    }
    Ok(())
}

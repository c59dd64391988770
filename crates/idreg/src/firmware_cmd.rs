//! `idreg firmware signer add|list|remove`: the vendors trusted to sign
//! firmware manifests.

use anyhow::Context;
use idreg_client::pb;

use crate::cli::{FirmwareCommand, OutputFormat, SignerCommand};
use crate::device_cmd::rpc;

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: FirmwareCommand,
) -> anyhow::Result<()> {
    let mut client = target.firmware().await?;
    let FirmwareCommand::Signer(command) = command;
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

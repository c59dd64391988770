//! `idreg rl export|key|verify`: the signed revocation list outside the
//! device front.

use std::path::Path;

use anyhow::{bail, Context};
use idreg_client::pb;
use idreg_core::revocation_list::{summarize, verify as verify_list};

use crate::cli::{OutputFormat, RlCommand};
use crate::device_cmd::rpc;

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: RlCommand,
) -> anyhow::Result<()> {
    let mut client = target.cluster().await?;
    match command {
        RlCommand::Export { out, since } => {
            let list = client
                .export_revocation_list(pb::ExportRevocationListRequest { since })
                .await
                .map_err(rpc)?
                .into_inner();
            std::fs::write(&out, &list.cose_sign1)
                .with_context(|| format!("--out {}: cannot write", out.display()))?;
            match output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({"version": list.version, "bytes": list.cose_sign1.len(), "out": out})
                ),
                OutputFormat::Table => eprintln!(
                    "revocation list version {} ({} bytes) written to {}",
                    list.version,
                    list.cose_sign1.len(),
                    out.display()
                ),
            }
        }
        RlCommand::Key => {
            let status = client
                .get_status(pb::GetClusterStatusRequest { local_only: true })
                .await
                .map_err(rpc)?
                .into_inner();
            if status.revocation_list_key_pem.is_empty() {
                bail!("the cluster has no revocation-list key yet (its leader makes one)");
            }
            print!("{}", status.revocation_list_key_pem);
        }
        RlCommand::Verify { .. } => unreachable!("needs no node"),
    }
    Ok(())
}

/// Checks `file` against the PEM key `key`; prints the list's version,
/// times and revoked ids. Fails (non-zero exit) on any mismatch.
pub fn verify(file: &Path, key: &Path, output: OutputFormat) -> anyhow::Result<()> {
    use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
    let cose = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let pem = std::fs::read_to_string(key)
        .with_context(|| format!("--key {}: cannot read", key.display()))?;
    let public = p256::PublicKey::from_public_key_pem(pem.trim())
        .context("--key: not a PEM P-256 public key")?;
    let spki = public.to_public_key_der().context("--key")?;
    let payload = verify_list(&cose, spki.as_bytes())
        .with_context(|| format!("{} does not verify", file.display()))?;
    let s = summarize(&payload).context("the signed payload")?;
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({
                "valid": true, "version": s.version, "since": s.since,
                "issued_at": s.issued_at, "next_update": s.next_update,
                "revoked": s.revoked_ids,
            })
        ),
        OutputFormat::Table => {
            println!(
                "valid: version {}{}, issued at {} s, next update {} s, {} revoked",
                s.version,
                s.since
                    .map(|v| format!(" (delta since {v})"))
                    .unwrap_or_default(),
                s.issued_at,
                s.next_update,
                s.revoked_ids.len()
            );
            for id in &s.revoked_ids {
                println!("  {id}");
            }
        }
    }
    Ok(())
}

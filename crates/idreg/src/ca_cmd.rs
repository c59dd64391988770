//! `idreg ca show|import`: the device CA.

use anyhow::Context;
use idreg_client::pb;
use serde::Serialize;

use crate::cli::{CaCommand, OutputFormat};
use crate::device_cmd::rpc;
use crate::output::rfc3339;

#[derive(Serialize)]
struct CaView {
    subject: String,
    sha256: String,
    not_after: String,
    origin: String,
    installed_at: String,
    certificate_pem: String,
}

fn print(output: OutputFormat, info: pb::DeviceCaInfo) -> anyhow::Result<()> {
    match output {
        // The certificate alone, so `idreg ca show > ca.pem` is a CA file.
        OutputFormat::Table => print!("{}", info.certificate_pem),
        OutputFormat::Json => {
            let view = CaView {
                subject: info.subject,
                sha256: info.sha256,
                not_after: rfc3339(info.not_after.as_ref()),
                origin: info.origin,
                installed_at: rfc3339(info.installed_at.as_ref()),
                certificate_pem: info.certificate_pem,
            };
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
    }
    Ok(())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: CaCommand,
) -> anyhow::Result<()> {
    let mut client = target.enrollment().await?;
    let info = match command {
        CaCommand::Show { linearizable } => client
            .get_device_ca(pb::GetDeviceCaRequest { linearizable })
            .await
            .map_err(rpc)?
            .into_inner(),
        CaCommand::Import {
            certificate,
            private_key,
        } => {
            let certificate_pem = std::fs::read_to_string(&certificate).with_context(|| {
                format!("--certificate {}: cannot read file", certificate.display())
            })?;
            let private_key_pem =
                zeroize::Zeroizing::new(std::fs::read_to_string(&private_key).with_context(
                    || format!("--private-key {}: cannot read file", private_key.display()),
                )?);
            let info = client
                .import_device_ca(pb::ImportDeviceCaRequest {
                    certificate_pem,
                    private_key_pem: private_key_pem.to_string(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            eprintln!(
                "device CA replaced: {} (sha256 {})",
                info.subject, info.sha256
            );
            info
        }
    };
    print(output, info)
}

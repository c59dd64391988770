//! `idreg device …`: the back-office API from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context};
use idreg_client::pb;
use tonic::Status;

use crate::cli::{CredentialArgs, DeviceCommand, OutputFormat};
use crate::output::{device_detail, device_row, DeviceView, TABLE_HEADER};

/// A gRPC error as a user reads it: the code's name and the server's message.
pub(crate) fn rpc(e: Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", e.code(), e.message())
}

fn read_pem(flag: &str, path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read file", path.display()))
}

pub(crate) fn parse_labels(
    flag: &str,
    items: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("{flag} {s:?}: expected key=value"),
        })
        .collect()
}

/// The credentials named by the flags, in the API's input form.
/// A secret read from a file or a pipe, without the newline `echo` or an
/// editor leaves at its end.
fn without_final_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

fn credential_inputs(
    device: &str,
    mut args: CredentialArgs,
) -> anyhow::Result<Vec<pb::CredentialInput>> {
    use pb::credential_input::Kind;
    let mut out = Vec::new();
    if let (Some(path), Some(group)) = (&args.bootstrap_psk_file, &args.enrollment_group) {
        let secret = std::fs::read(path)
            .with_context(|| format!("--bootstrap-psk-file: cannot read {}", path.display()))?;
        // Its identity is --psk-identity when no other PSK claims it.
        let other_psk = args.psk.is_some()
            || args.psk_hex.is_some()
            || args.psk_file.is_some()
            || args.psk_stdin;
        let identity = match other_psk {
            true => device.to_owned(),
            false => args
                .psk_identity
                .take()
                .unwrap_or_else(|| device.to_owned()),
        };
        out.push(pb::CredentialInput {
            kind: Some(Kind::BootstrapPsk(pb::BootstrapPskInput {
                identity: identity.into_bytes(),
                secret: without_final_newline(secret),
                group: group.clone(),
            })),
        });
    }
    let given = [
        args.psk.is_some(),
        args.psk_hex.is_some(),
        args.psk_file.is_some(),
        args.psk_stdin,
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        bail!("give one of --psk, --psk-hex, --psk-file and --psk-stdin");
    }
    let secret = if let Some(text) = &args.psk {
        Some(text.as_bytes().to_vec())
    } else if let Some(h) = &args.psk_hex {
        Some(hex::decode(h.trim()).context("--psk-hex: not hex digits")?)
    } else if let Some(path) = &args.psk_file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("--psk-file: cannot read {}", path.display()))?;
        Some(without_final_newline(bytes))
    } else if args.psk_stdin {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
            .context("--psk-stdin: cannot read standard input")?;
        Some(without_final_newline(bytes))
    } else {
        None
    };
    match (args.psk_identity, secret) {
        (Some(identity), Some(secret)) => out.push(pb::CredentialInput {
            kind: Some(Kind::Psk(pb::PskInput {
                identity: identity.into_bytes(),
                secret,
            })),
        }),
        (Some(_), None) => {
            bail!("--psk-identity needs --psk, --psk-hex, --psk-file or --psk-stdin")
        }
        (None, Some(_)) => bail!("a PSK needs --psk-identity"),
        (None, None) => {}
    }
    for p in &args.public_keys {
        out.push(pb::CredentialInput {
            kind: Some(Kind::PublicKeyPem(read_pem("--public-key", p)?)),
        });
    }
    for p in &args.certs {
        out.push(pb::CredentialInput {
            kind: Some(Kind::CertificatePem(read_pem("--cert", p)?)),
        });
    }
    Ok(out)
}

fn status_value(s: &str) -> i32 {
    match s {
        "active" => pb::DeviceStatus::Active as i32,
        "disabled" => pb::DeviceStatus::Disabled as i32,
        "revoked" => pb::DeviceStatus::Revoked as i32,
        _ => pb::DeviceStatus::Unspecified as i32,
    }
}

fn print_device(output: OutputFormat, d: &pb::Device) -> anyhow::Result<()> {
    let view = DeviceView::from(d);
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        OutputFormat::Table => print!("{}", device_detail(&view)),
    }
    Ok(())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: DeviceCommand,
) -> anyhow::Result<()> {
    // Check local input before connecting, so a typo is reported as such.
    if let DeviceCommand::Import { file } = &command {
        return crate::import_cmd::run(target, output, file).await;
    }
    let request = Prepared::from(command)?;
    let mut client = target.registry().await?;
    match request {
        Prepared::Add(req) => print_device(
            output,
            &client.create_device(req).await.map_err(rpc)?.into_inner(),
        ),
        Prepared::Get(req) => print_device(
            output,
            &client.get_device(req).await.map_err(rpc)?.into_inner(),
        ),
        Prepared::History(req) => {
            let h = client
                .get_device_history(req)
                .await
                .map_err(rpc)?
                .into_inner();
            match output {
                OutputFormat::Json => {
                    let rows: Vec<_> = h
                        .entries
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "at": crate::output::rfc3339(e.at.as_ref()),
                                "revision": e.revision,
                                "action": e.action,
                                "principal": e.principal,
                                "role": e.role,
                                "node": e.node,
                            })
                        })
                        .collect();
                    println!("{}", serde_json::Value::Array(rows));
                }
                OutputFormat::Table => {
                    println!(
                        "{:<25} {:>9} {:<8} {:<24} {:<9} NODE",
                        "AT", "REVISION", "ACTION", "PRINCIPAL", "ROLE"
                    );
                    for e in &h.entries {
                        println!(
                            "{:<25} {:>9} {:<8} {:<24} {:<9} {}",
                            crate::output::rfc3339(e.at.as_ref()),
                            e.revision,
                            e.action,
                            e.principal,
                            e.role,
                            e.node
                        );
                    }
                }
            }
            Ok(())
        }
        Prepared::Update(req) => print_device(
            output,
            &client.update_device(req).await.map_err(rpc)?.into_inner(),
        ),
        Prepared::Revoke(req) => print_device(
            output,
            &client.revoke_device(req).await.map_err(rpc)?.into_inner(),
        ),
        Prepared::RotatePsk(req) => print_device(
            output,
            &client.rotate_psk(req).await.map_err(rpc)?.into_inner(),
        ),
        Prepared::Delete(req) => {
            let id = req.id.clone();
            client.delete_device(req).await.map_err(rpc)?;
            match output {
                OutputFormat::Json => println!("{}", serde_json::json!({ "deleted": id })),
                OutputFormat::Table => println!("deleted {id}"),
            }
            Ok(())
        }
        Prepared::Watch {
            from_revision,
            limit,
        } => {
            let mut stream = client
                .watch_devices(pb::WatchDevicesRequest { from_revision })
                .await
                .map_err(rpc)?
                .into_inner();
            let mut seen = 0u64;
            while let Some(msg) = stream.message().await.map_err(rpc)? {
                for ch in &msg.changes {
                    if limit.is_some_and(|l| seen >= l) {
                        return Ok(());
                    }
                    seen += 1;
                    let kind = match ch.kind() {
                        pb::ChangeKind::Created => "created",
                        pb::ChangeKind::Updated => "updated",
                        pb::ChangeKind::Revoked => "revoked",
                        pb::ChangeKind::Deleted => "deleted",
                        pb::ChangeKind::Unspecified => "unknown",
                    };
                    match output {
                        OutputFormat::Json => println!(
                            "{}",
                            serde_json::json!({
                                "revision": msg.revision,
                                "kind": kind,
                                "id": ch.device_id,
                                "device": ch.device.as_ref().map(DeviceView::from),
                            })
                        ),
                        OutputFormat::Table => {
                            println!("{:>10} {:<8} {}", msg.revision, kind, ch.device_id)
                        }
                    }
                }
            }
            Ok(())
        }
        Prepared::List { mut req, limit } => {
            let mut seen: u64 = 0;
            let mut json_items = Vec::new();
            if output == OutputFormat::Table {
                println!("{TABLE_HEADER}");
            }
            'pages: loop {
                let page = client
                    .list_devices(req.clone())
                    .await
                    .map_err(rpc)?
                    .into_inner();
                for d in &page.devices {
                    if limit.is_some_and(|l| seen >= l) {
                        break 'pages;
                    }
                    seen += 1;
                    let view = DeviceView::from(d);
                    match output {
                        OutputFormat::Table => println!("{}", device_row(&view)),
                        OutputFormat::Json => json_items.push(view),
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                req.page_token = page.next_page_token;
            }
            if output == OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&json_items)?);
            }
            Ok(())
        }
    }
}

/// A command turned into its request, with local input checked.
enum Prepared {
    Add(pb::CreateDeviceRequest),
    Get(pb::GetDeviceRequest),
    History(pb::GetDeviceHistoryRequest),
    List {
        req: pb::ListDevicesRequest,
        limit: Option<u64>,
    },
    Update(pb::UpdateDeviceRequest),
    Revoke(pb::RevokeDeviceRequest),
    RotatePsk(pb::RotatePskRequest),
    Delete(pb::DeleteDeviceRequest),
    Watch {
        from_revision: u64,
        limit: Option<u64>,
    },
}

fn consistency(linearizable: bool) -> i32 {
    if linearizable {
        pb::ReadConsistency::Linearizable as i32
    } else {
        pb::ReadConsistency::Unspecified as i32
    }
}

impl Prepared {
    fn from(command: DeviceCommand) -> anyhow::Result<Self> {
        Ok(match command {
            DeviceCommand::Add {
                id,
                tenant,
                labels,
                gateway,
                gateway_role,
                on_clone,
                credentials,
            } => {
                let mut labels = parse_labels("--label", &labels)?;
                if let Some(policy) = on_clone {
                    labels.insert(idreg_core::clone_policy::CLONE_POLICY_LABEL.into(), policy);
                }
                if gateway_role {
                    labels.insert(
                        idreg_core::labels::ROLE_LABEL.into(),
                        idreg_core::labels::GATEWAY_ROLE.into(),
                    );
                }
                Prepared::Add(pb::CreateDeviceRequest {
                    credentials: credential_inputs(&id, credentials)?,
                    id,
                    tenant: tenant.unwrap_or_default(),
                    labels,
                    gateway: gateway.unwrap_or_default(),
                })
            }
            DeviceCommand::Get { id, linearizable } => Prepared::Get(pb::GetDeviceRequest {
                id,
                consistency: consistency(linearizable),
            }),
            DeviceCommand::History { id, linearizable } => {
                Prepared::History(pb::GetDeviceHistoryRequest {
                    id,
                    consistency: consistency(linearizable),
                })
            }
            DeviceCommand::Watch {
                from_revision,
                limit,
            } => Prepared::Watch {
                from_revision,
                limit,
            },
            DeviceCommand::List {
                status,
                labels,
                tenant,
                gateway,
                limit,
                page_size,
                linearizable,
            } => Prepared::List {
                req: pb::ListDevicesRequest {
                    page_size,
                    page_token: String::new(),
                    status: status.as_deref().map(status_value).unwrap_or(0),
                    labels,
                    tenant: tenant.unwrap_or_default(),
                    gateway: gateway.unwrap_or_default(),
                    consistency: consistency(linearizable),
                },
                limit,
            },
            DeviceCommand::Update {
                id,
                set_labels,
                clear_labels,
                status,
                gateway,
                clear_gateway,
                add,
                remove_psk_identity,
                remove_fingerprint,
            } => Prepared::Update(pb::UpdateDeviceRequest {
                add_credentials: credential_inputs(&id, add)?,
                id,
                replace_labels: clear_labels || !set_labels.is_empty(),
                labels: parse_labels("--set-label", &set_labels)?,
                status: status.as_deref().map(status_value).unwrap_or(0),
                set_gateway: clear_gateway || gateway.is_some(),
                gateway: gateway.unwrap_or_default(),
                remove_psk_identities: remove_psk_identity
                    .into_iter()
                    .map(String::into_bytes)
                    .collect(),
                remove_fingerprints: remove_fingerprint,
            }),
            DeviceCommand::Revoke { id, reason } => {
                Prepared::Revoke(pb::RevokeDeviceRequest { id, reason })
            }
            DeviceCommand::Delete { id } => Prepared::Delete(pb::DeleteDeviceRequest { id }),
            DeviceCommand::RotatePsk {
                id,
                psk_identity,
                psk_file,
                psk_stdin,
                replaces,
                grace,
            } => {
                let secret = match (psk_file, psk_stdin) {
                    (Some(path), _) => std::fs::read(&path)
                        .with_context(|| format!("--psk-file: cannot read {}", path.display()))?,
                    (None, _) => {
                        let mut bytes = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                            .context("--psk-stdin: cannot read standard input")?;
                        bytes
                    }
                };
                let grace = crate::time_arg::parse_duration("grace", &grace)?;
                Prepared::RotatePsk(pb::RotatePskRequest {
                    id,
                    psk: Some(pb::PskInput {
                        identity: psk_identity.into_bytes(),
                        secret: without_final_newline(secret),
                    }),
                    replaces: replaces.unwrap_or_default().into_bytes(),
                    grace_seconds: grace.as_secs().max(1),
                })
            }
            DeviceCommand::Import { .. } => unreachable!("handled before preparing"),
        })
    }
}

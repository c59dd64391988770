//! `idreg enrollment-group add|list|show|enable|disable|delete`.

use anyhow::Context;
use idreg_client::pb;
use serde::Serialize;

use crate::cli::{GroupCommand, OutputFormat};
use crate::device_cmd::{parse_labels, rpc};
use crate::output::rfc3339;

#[derive(Serialize)]
struct GroupView {
    name: String,
    attestation: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    manufacturer_ca_subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_template: Option<String>,
    tenant: String,
    labels: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    enabled: bool,
    enrolled: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_devices: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<&pb::EnrollmentGroup> for GroupView {
    fn from(g: &pb::EnrollmentGroup) -> Self {
        let attestation = match g.attestation {
            Some(pb::enrollment_group::Attestation::ManufacturerCaPem(_)) => "manufacturer-ca",
            Some(pb::enrollment_group::Attestation::BootstrapPsk(_)) => "bootstrap-psk",
            None => "unknown",
        };
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        GroupView {
            name: g.name.clone(),
            attestation,
            manufacturer_ca_subject: some(&g.manufacturer_ca_subject),
            id_template: some(&g.id_template),
            tenant: g.tenant.clone(),
            labels: g
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            gateway: some(&g.gateway),
            enabled: g.enabled,
            enrolled: g.enrolled,
            max_devices: (g.max_devices > 0).then_some(g.max_devices),
            expires_at: g.expires_at.as_ref().map(|t| rfc3339(Some(t))),
            created_at: rfc3339(g.created_at.as_ref()),
            updated_at: rfc3339(g.updated_at.as_ref()),
        }
    }
}

fn row(g: &GroupView) -> String {
    format!(
        "{:<24} {:<16} {:<9} {:>9} {:<16} {}",
        g.name,
        g.attestation,
        if g.enabled { "enabled" } else { "disabled" },
        match g.max_devices {
            Some(m) => format!("{}/{m}", g.enrolled),
            None => g.enrolled.to_string(),
        },
        g.tenant,
        g.expires_at.as_deref().unwrap_or("-"),
    )
}

fn print(output: OutputFormat, groups: &[pb::EnrollmentGroup], one: bool) -> anyhow::Result<()> {
    let views: Vec<GroupView> = groups.iter().map(GroupView::from).collect();
    match output {
        OutputFormat::Json if one => println!("{}", serde_json::to_string_pretty(&views[0])?),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&views)?),
        OutputFormat::Table => {
            println!(
                "{:<24} {:<16} {:<9} {:>9} {:<16} EXPIRES",
                "NAME", "ATTESTATION", "STATE", "ENROLLED", "TENANT"
            );
            for v in &views {
                println!("{}", row(v));
                if one {
                    if let Some(s) = &v.manufacturer_ca_subject {
                        println!("  manufacturer CA: {s}");
                    }
                    if let Some(t) = &v.id_template {
                        println!("  id template:     {t}");
                    }
                    for (k, val) in &v.labels {
                        println!("  label:           {k}={val}");
                    }
                    if let Some(gw) = &v.gateway {
                        println!("  gateway:         {gw}");
                    }
                }
            }
        }
    }
    Ok(())
}

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: GroupCommand,
) -> anyhow::Result<()> {
    let mut client = target.enrollment().await?;
    let group = match command {
        GroupCommand::Add {
            name,
            ca,
            bootstrap,
            id_template,
            tenant,
            labels,
            gateway,
            max_devices,
            expires,
        } => {
            use pb::enrollment_group::Attestation;
            let attestation = match (ca, bootstrap) {
                (Some(path), _) => Attestation::ManufacturerCaPem(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("--ca {}: cannot read file", path.display()))?,
                ),
                (None, _) => Attestation::BootstrapPsk(true),
            };
            let bootstrap = matches!(attestation, Attestation::BootstrapPsk(_));
            let now = idreg_api::convert::now_ms();
            let expires_at = expires
                .map(|e| crate::time_arg::parse_future_time("expires", &e, now))
                .transpose()?
                .map(|ms| prost_types::Timestamp {
                    seconds: (ms / 1000) as i64,
                    nanos: ((ms % 1000) * 1_000_000) as i32,
                });
            let group = pb::EnrollmentGroup {
                name,
                attestation: Some(attestation),
                tenant: tenant.unwrap_or_default(),
                labels: parse_labels("--label", &labels)?,
                gateway: gateway.unwrap_or_default(),
                id_template: if bootstrap {
                    String::new()
                } else {
                    id_template
                },
                max_devices: max_devices.unwrap_or(0),
                expires_at,
                ..Default::default()
            };
            client
                .create_enrollment_group(pb::CreateEnrollmentGroupRequest { group: Some(group) })
                .await
                .map_err(rpc)?
                .into_inner()
        }
        GroupCommand::List => {
            let groups = client
                .list_enrollment_groups(pb::ListEnrollmentGroupsRequest {})
                .await
                .map_err(rpc)?
                .into_inner()
                .groups;
            return print(output, &groups, false);
        }
        GroupCommand::Show { name } => client
            .get_enrollment_group(pb::GetEnrollmentGroupRequest { name })
            .await
            .map_err(rpc)?
            .into_inner(),
        GroupCommand::Enable { name } => client
            .set_enrollment_group_enabled(pb::SetEnrollmentGroupEnabledRequest {
                name,
                enabled: true,
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        GroupCommand::Disable { name } => client
            .set_enrollment_group_enabled(pb::SetEnrollmentGroupEnabledRequest {
                name,
                enabled: false,
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        GroupCommand::Delete { name } => {
            client
                .delete_enrollment_group(pb::DeleteEnrollmentGroupRequest { name: name.clone() })
                .await
                .map_err(rpc)?;
            eprintln!("enrollment group {name:?} deleted");
            return Ok(());
        }
    };
    print(output, &[group], true)
}

//! `idreg tenant set|show`: a tenant's policies (today, what the device
//! front does with its cloned credentials).

use idreg_client::pb;

use crate::cli::{OutputFormat, TenantCommand};
use crate::device_cmd::rpc;

pub async fn run(
    target: &idreg_client::Target,
    output: OutputFormat,
    command: TenantCommand,
) -> anyhow::Result<()> {
    let mut client = target.registry().await?;
    let policy = match command {
        TenantCommand::Set { tenant, on_clone } => client
            .set_tenant_policy(pb::TenantPolicy {
                tenant,
                // "default" clears it: the node's --on-clone applies.
                on_clone: if on_clone == "default" {
                    String::new()
                } else {
                    on_clone
                },
            })
            .await
            .map_err(rpc)?
            .into_inner(),
        TenantCommand::Show {
            tenant,
            linearizable,
        } => client
            .get_tenant_policy(pb::GetTenantPolicyRequest {
                tenant,
                consistency: if linearizable {
                    pb::ReadConsistency::Linearizable as i32
                } else {
                    pb::ReadConsistency::Unspecified as i32
                },
            })
            .await
            .map_err(rpc)?
            .into_inner(),
    };
    let on_clone = if policy.on_clone.is_empty() {
        "default"
    } else {
        &policy.on_clone
    };
    match output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"tenant": policy.tenant, "on_clone": on_clone})
        ),
        OutputFormat::Table => println!("tenant {}: on-clone {}", policy.tenant, on_clone),
    }
    Ok(())
}

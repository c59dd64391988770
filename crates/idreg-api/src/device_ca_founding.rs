//! The keys a cluster makes for itself: its leader generates a P-256 device
//! CA and a revocation-list signing key whenever the registry has none (at
//! founding, on the first start of a version that has them, after restoring
//! an older backup) and proposes them, sealed, through raft. Two leaders
//! racing both propose; `apply` keeps the first.

use std::time::Duration;

use idreg_core::{Command, DeviceCa, Kek, Principal, RegistryView, Rejection, Role};
use idreg_raft::RegistryNode;

use crate::convert::now_ms;

/// Runs for the node's life: whenever this node leads and the registry holds
/// no device CA (a new cluster, the first start of a version with
/// enrollment, a backup from before it restored), makes one. Once a CA is
/// there this is a local point read every few seconds.
pub async fn ensure_device_ca(node: RegistryNode, kek: Kek) {
    let mut pause = Duration::from_millis(100);
    loop {
        let reader = node.reader();
        let (no_ca, no_rl_key) = match (reader.device_ca(), reader.rl_key()) {
            (Ok(ca), Ok(key)) => (ca.is_none(), key.is_none()),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("cannot read the cluster's keys: {e}");
                (false, false)
            }
        };
        let missing = no_ca || no_rl_key;
        let leads = node.raft().metrics().borrow().current_leader == Some(node.id());
        if no_ca && leads {
            if let Err(e) = propose_new_ca(&node, &kek).await {
                tracing::warn!("cannot install a device CA yet: {e}");
            }
        }
        if no_rl_key && leads {
            if let Err(e) = propose_new_rl_key(&node, &kek).await {
                tracing::warn!("cannot install a revocation-list key yet: {e}");
            }
        }
        // Quick while founding, then a slow watch.
        let settled = !missing;
        pause = if settled {
            WATCH_PERIOD
        } else {
            (pause * 2).min(WATCH_PERIOD)
        };
        tokio::time::sleep(pause).await;
    }
}

/// How often a node with a device CA checks it is still there.
const WATCH_PERIOD: Duration = Duration::from_secs(5);

async fn propose_new_ca(node: &RegistryNode, kek: &Kek) -> anyhow::Result<()> {
    let ca = DeviceCa::generate(kek, now_ms())?;
    let by = Principal {
        name: format!("node-{}", node.id()),
        role: Role::Admin,
    };
    let command = Command::SetDeviceCa { ca, replace: false };
    match node.propose(command, by).await? {
        Ok(_) => {
            tracing::info!("generated the cluster's device CA");
            Ok(())
        }
        Err(Rejection::DeviceCaExists) => Ok(()),
        Err(r) => Err(r.into()),
    }
}

async fn propose_new_rl_key(node: &RegistryNode, kek: &Kek) -> anyhow::Result<()> {
    let key = idreg_core::revocation_list::RlSigningKey::generate(kek, now_ms());
    let by = Principal {
        name: format!("node-{}", node.id()),
        role: Role::Admin,
    };
    match node
        .propose(
            Command::SetRlKey {
                key,
                replace: false,
            },
            by,
        )
        .await?
    {
        Ok(_) => {
            tracing::info!("generated the cluster's revocation-list signing key");
            Ok(())
        }
        Err(Rejection::RlKeyExists) => Ok(()),
        Err(r) => Err(r.into()),
    }
}

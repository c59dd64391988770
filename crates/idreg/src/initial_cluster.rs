//! `--initial-cluster 1=HOST:PORT,2=HOST:PORT,…`: the founding members of a
//! cluster, as etcd spells it.

use std::collections::BTreeMap;

use anyhow::{bail, Context};

/// Most members a cluster is meant to have (3–7 voters; more only slows quorum).
pub const MAX_MEMBERS: usize = 7;

/// A node id as typed: a number from 1.
pub fn node_id(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|n| *n >= 1)
}

/// Parses the member list; every id ≥ 1 and unique, every address HOST:PORT.
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut members = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("--initial-cluster: {part:?} is not ID=HOST:PORT"))?;
        let id = node_id(id)
            .with_context(|| format!("--initial-cluster: {id:?} is not a node id (1, 2, …)"))?;
        let addr = addr.trim();
        host_port(addr).with_context(|| format!("--initial-cluster: node {id}"))?;
        if members.insert(id, addr.to_owned()).is_some() {
            bail!("--initial-cluster: node {id} is listed twice");
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty; give ID=HOST:PORT for every founding member");
    }
    if members.len() > MAX_MEMBERS {
        bail!(
            "--initial-cluster lists {} members; idreg clusters have at most {MAX_MEMBERS}",
            members.len()
        );
    }
    Ok(members)
}

/// Checks `addr` is HOST:PORT with a port in 1..=65535.
pub fn host_port(addr: &str) -> anyhow::Result<()> {
    let (host, port) = addr
        .rsplit_once(':')
        .with_context(|| format!("{addr:?} is not HOST:PORT"))?;
    if host.is_empty() || host.contains('/') {
        bail!("{addr:?} is not HOST:PORT");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => bail!("{addr:?} has no valid port"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_style_lists() {
        let m =
            parse("1=127.0.0.1:5001, 2=127.0.0.2:5002,3=idreg-2.idreg-peers.ns.svc:50051").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&3], "idreg-2.idreg-peers.ns.svc:50051");
    }

    #[test]
    fn refuses_what_cannot_be_a_cluster() {
        for (bad, says) in [
            ("", "empty"),
            ("1=a:1,1=b:2", "twice"),
            ("0=a:1", "node id"),
            ("x=a:1", "node id"),
            ("1=a", "HOST:PORT"),
            ("1=a:0", "port"),
            ("1a:1", "ID=HOST:PORT"),
            (
                "1=a:1,2=a:2,3=a:3,4=a:4,5=a:5,6=a:6,7=a:7,8=a:8",
                "at most 7",
            ),
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}

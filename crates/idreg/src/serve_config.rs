//! Resolving `idreg serve`'s settings: flag > environment > TOML file > default.
//! (clap already puts the environment into the flags.)

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::ServeArgs;

/// The TOML file: every key optional, unknown keys refused (a typo should not be
/// silently ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    grpc_addr: Option<String>,
    coap_addr: Option<String>,
    kek_file: Option<PathBuf>,
    node_id: Option<u64>,
    snapshot_every: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub grpc_addr: SocketAddr,
    pub coap_addr: SocketAddr,
    pub kek_file: Option<PathBuf>,
    pub node_id: u64,
    pub snapshot_every: u64,
}

fn addr(name: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.parse()
        .with_context(|| format!("--{name} {text:?} is not a HOST:PORT socket address"))
}

impl ServeConfig {
    pub fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("config file {} is not valid", path.display()))?
            }
            None => FileConfig::default(),
        };
        let node_id = args.node_id.or(file.node_id).unwrap_or(1);
        if node_id == 0 {
            bail!("--node-id must be at least 1");
        }
        let snapshot_every = args
            .snapshot_every
            .or(file.snapshot_every)
            .unwrap_or(20_000);
        if snapshot_every == 0 {
            bail!("--snapshot-every must be at least 1");
        }
        Ok(Self {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            grpc_addr: addr(
                "grpc-addr",
                &args
                    .grpc_addr
                    .or(file.grpc_addr)
                    .unwrap_or("127.0.0.1:50051".into()),
            )?,
            coap_addr: addr(
                "coap-addr",
                &args
                    .coap_addr
                    .or(file.coap_addr)
                    .unwrap_or("0.0.0.0:5684".into()),
            )?,
            kek_file: args.kek_file.or(file.kek_file),
            node_id,
            snapshot_every,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idreg.toml");
        std::fs::write(&path, "grpc_addr = \"127.0.0.1:6000\"\nnode_id = 3\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            node_id: Some(5),
            ..Default::default()
        };
        let c = ServeConfig::resolve(args).unwrap();
        assert_eq!(c.grpc_addr.port(), 6000);
        assert_eq!(c.node_id, 5);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.coap_addr.port(), 5684);
    }

    #[test]
    fn typos_and_bad_addresses_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idreg.toml");
        std::fs::write(&path, "grpc_adr = \"x\"\n").unwrap();
        let e = ServeConfig::resolve(ServeArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("grpc_adr"), "{e:#}");
        let e = ServeConfig::resolve(ServeArgs {
            grpc_addr: Some("nowhere".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("grpc-addr"));
    }
}

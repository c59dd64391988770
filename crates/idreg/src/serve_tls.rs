//! The TLS of `idreg serve`'s gRPC listeners, from the resolved
//! [`Security`]: the client listener (node certificate, client CA,
//! certificate optional so that a missing one is answered UNAUTHENTICATED),
//! the peer listener (node certificate, peer CA, certificate required), and
//! the credentials this node dials its peers with. A single node with no
//! certificate flags gets a development PKI in DATA_DIR/pki, loudly.

use std::path::Path;

use anyhow::Context;
use idreg_raft::grpc_network::PeerTls;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::warn;

use crate::pki::PEER_CA;
use crate::serve_config::{Security, ServeConfig, TlsFiles};

/// `None` everywhere under `--insecure`.
pub struct NodeTls {
    pub client: Option<ServerTlsConfig>,
    pub peer: Option<ServerTlsConfig>,
    pub peer_dialer: Option<PeerTls>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Host names and addresses the development node certificate is valid for.
fn dev_hosts(config: &ServeConfig) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    for ip in [config.grpc_addr.ip(), config.peer_addr.ip()] {
        if !ip.is_unspecified() && !hosts.contains(&ip.to_string()) {
            hosts.push(ip.to_string());
        }
    }
    if let Ok(name) = std::fs::read_to_string("/etc/hostname") {
        let name = name.trim();
        if !name.is_empty() && !hosts.iter().any(|h| h == name) {
            hosts.push(name.to_owned());
        }
    }
    hosts
}

pub fn resolve(config: &ServeConfig) -> anyhow::Result<NodeTls> {
    let files = match &config.security {
        Security::Insecure => {
            warn!(
                "!!! INSECURE MODE: --insecure serves gRPC in plaintext and lets every caller do \
                 everything. For development on this machine only. !!!"
            );
            return Ok(NodeTls {
                client: None,
                peer: None,
                peer_dialer: None,
            });
        }
        Security::Tls(files) => files.clone(),
        Security::DevPki => {
            let (pki, made) =
                crate::pki::dev_pki(&config.data_dir, config.node_id, &dev_hosts(config))?;
            warn!(
                "!!! DEVELOPMENT MODE: no --pki-dir or certificate flags; using the development PKI \
                 in {} ({}). Clients: --cacert {} --cert {} --key {} (the CLI finds them in \
                 ./data/pki by itself). In production make a PKI with `idreg pki init`. !!!",
                pki.0.display(),
                if made { "just generated" } else { "generated earlier" },
                pki.cert(PEER_CA).display(),
                pki.cert(crate::pki::ADMIN).display(),
                pki.key(crate::pki::ADMIN).display(),
            );
            TlsFiles::from_pki_dir(&pki, config.node_id)
        }
    };
    let identity = Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let peer_cert = read(&files.peer_cert)?;
    let peer_key = read(&files.peer_key)?;
    let peer_ca = read(&files.peer_ca)?;
    // The server certificate names this node; check it says so, or peers
    // will refuse it with a less helpful error.
    let own = idreg_core::CertIdentity::from_pem(&peer_cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", files.peer_cert.display()))?;
    if own.node_id() != Some(config.node_id) {
        anyhow::bail!(
            "{} does not name node {} (SAN URI urn:idreg:node:{}); it names {:?}",
            files.peer_cert.display(),
            config.node_id,
            config.node_id,
            own.node_ids
        );
    }
    Ok(NodeTls {
        client: Some(
            ServerTlsConfig::new()
                .identity(identity)
                .client_ca_root(Certificate::from_pem(read(&files.client_ca)?))
                .client_auth_optional(true),
        ),
        peer: Some(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(&peer_cert, &peer_key))
                .client_ca_root(Certificate::from_pem(&peer_ca))
                .client_auth_optional(false),
        ),
        peer_dialer: Some(PeerTls {
            ca_pem: peer_ca,
            cert_pem: peer_cert,
            key_pem: peer_key,
        }),
    })
}

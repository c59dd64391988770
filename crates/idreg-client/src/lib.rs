//! A Rust client for idreg: the back-office gRPC API and, in [`device`], the
//! device front (CoAP over DTLS). Used by the CLI, tests and benchmarks.

pub mod device;
pub mod engine_device;

use std::path::Path;

use idreg_proto::v1::cluster_client::ClusterClient;
use idreg_proto::v1::device_registry_client::DeviceRegistryClient;
use idreg_proto::v1::sessions_client::SessionsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use idreg_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid endpoint {0:?}: {1}")]
    Invalid(String, String),
    #[error("cannot reach idreg at {0}: {1}")]
    Unreachable(String, String),
    #[error("cannot read {0}: {1}")]
    Credentials(String, String),
}

/// A client's TLS credentials: the CA that issued the nodes' certificates,
/// and this client's certificate and key (its role is in the certificate).
#[derive(Clone)]
pub struct ClientTls {
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    /// The name to verify the server's certificate against, when it is not
    /// the endpoint's host (a test that maps a DNS name to 127.0.0.x).
    domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls(..)")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path)
        .map_err(|e| ConnectError::Credentials(path.display().to_string(), e.to_string()))
}

impl ClientTls {
    pub fn from_pem(ca_pem: Vec<u8>, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        Self {
            ca_pem,
            cert_pem,
            key_pem,
            domain: None,
        }
    }

    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, ConnectError> {
        Ok(Self::from_pem(read(ca)?, read(cert)?, read(key)?))
    }

    /// `NAME.crt`/`NAME.key` of a PKI directory made by `idreg pki init`,
    /// trusting its `peer-ca.crt`.
    pub fn from_pki_dir(dir: &Path, name: &str) -> Result<Self, ConnectError> {
        Self::from_files(
            &dir.join("peer-ca.crt"),
            &dir.join(format!("{name}.crt")),
            &dir.join(format!("{name}.key")),
        )
    }

    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    fn config(&self, host: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(self.domain.clone().unwrap_or_else(|| host.to_owned()))
    }
}

/// Where a client connects and how: TLS with a client certificate, or
/// plaintext against a node started with `--insecure`.
#[derive(Clone, Debug)]
pub struct Target {
    pub endpoint: String,
    pub tls: Option<ClientTls>,
}

/// The host of `host:port` (IPv6 in brackets), for certificate checks.
fn host_of(endpoint: &str) -> &str {
    let rest = endpoint
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

impl Target {
    pub fn tls(endpoint: impl Into<String>, tls: ClientTls) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: Some(tls),
        }
    }

    pub fn plaintext(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: None,
        }
    }

    /// The same credentials at another endpoint.
    pub fn at(&self, endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tls: self.tls.clone(),
        }
    }

    /// The endpoint as a URI: `host:port` gets https (or http when plaintext).
    pub fn uri(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else if self.tls.is_some() {
            format!("https://{}", self.endpoint)
        } else {
            format!("http://{}", self.endpoint)
        }
    }

    fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let uri = self.uri();
        let mut ep = Endpoint::from_shared(uri.clone())
            .map_err(|e| ConnectError::Invalid(self.endpoint.clone(), e.to_string()))?
            .connect_timeout(std::time::Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.config(host_of(&self.endpoint)))
                .map_err(|e| ConnectError::Invalid(self.endpoint.clone(), e.to_string()))?;
        }
        Ok(ep)
    }

    /// One HTTP/2 channel to a node; the service clients share it cheaply.
    pub async fn channel(&self) -> Result<Channel, ConnectError> {
        self.endpoint()?
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable(self.uri(), error_chain(&e)))
    }

    /// A channel that connects on first use (and reconnects after).
    pub fn lazy_channel(&self) -> Result<Channel, ConnectError> {
        Ok(self.endpoint()?.connect_lazy())
    }

    pub async fn registry(&self) -> Result<DeviceRegistryClient<Channel>, ConnectError> {
        Ok(DeviceRegistryClient::new(self.channel().await?))
    }

    pub async fn sessions(&self) -> Result<SessionsClient<Channel>, ConnectError> {
        Ok(SessionsClient::new(self.channel().await?))
    }

    pub async fn cluster(&self) -> Result<ClusterClient<Channel>, ConnectError> {
        Ok(ClusterClient::new(self.channel().await?))
    }

    pub async fn firmware(
        &self,
    ) -> Result<pb::firmware_client::FirmwareClient<Channel>, ConnectError> {
        Ok(pb::firmware_client::FirmwareClient::new(
            self.channel().await?,
        ))
    }

    pub async fn enrollment(
        &self,
    ) -> Result<pb::enrollment_client::EnrollmentClient<Channel>, ConnectError> {
        Ok(pb::enrollment_client::EnrollmentClient::new(
            self.channel().await?,
        ))
    }
}

/// An error and its causes on one line (TLS failures hide in the causes).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_endpoints() {
        assert_eq!(host_of("127.0.0.1:50051"), "127.0.0.1");
        assert_eq!(host_of("https://idreg-0.peers:50051"), "idreg-0.peers");
        assert_eq!(host_of("[::1]:50051"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}

//! A Rust client for idreg: the back-office gRPC API and, in [`device`], the
//! device front (CoAP over DTLS). Used by the CLI, tests and benchmarks.

pub mod device;

use idreg_proto::v1::device_registry_client::DeviceRegistryClient;
use idreg_proto::v1::sessions_client::SessionsClient;
use tonic::transport::{Channel, Endpoint};

pub use idreg_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid endpoint {0:?}: {1}")]
    Invalid(String, String),
    #[error("cannot reach idreg at {0}: {1}")]
    Unreachable(String, String),
}

/// `host:port` or a full `http://host:port` URI.
pub fn endpoint_uri(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// Connects to the back-office API.
pub async fn connect(endpoint: &str) -> Result<DeviceRegistryClient<Channel>, ConnectError> {
    Ok(DeviceRegistryClient::new(channel(endpoint).await?))
}

/// Connects to a node's session audit.
pub async fn connect_sessions(endpoint: &str) -> Result<SessionsClient<Channel>, ConnectError> {
    Ok(SessionsClient::new(channel(endpoint).await?))
}

/// One HTTP/2 channel to a node; the service clients share it cheaply.
pub async fn channel(endpoint: &str) -> Result<Channel, ConnectError> {
    let uri = endpoint_uri(endpoint);
    let ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| ConnectError::Invalid(endpoint.to_owned(), e.to_string()))?;
    let channel = ep
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable(uri, e.to_string()))?;
    Ok(channel)
}

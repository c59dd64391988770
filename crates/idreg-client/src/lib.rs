//! A Rust client for idreg: the back-office gRPC API today, the device front
//! (CoAP over DTLS) when it lands. Used by the CLI, tests and benchmarks.

use idreg_proto::v1::device_registry_client::DeviceRegistryClient;
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
    let uri = endpoint_uri(endpoint);
    let ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| ConnectError::Invalid(endpoint.to_owned(), e.to_string()))?;
    let channel = ep
        .connect_timeout(std::time::Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| ConnectError::Unreachable(uri, e.to_string()))?;
    Ok(DeviceRegistryClient::new(channel))
}

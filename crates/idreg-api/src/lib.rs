//! idreg's gRPC services, server side: protobuf in, `idreg_core` commands out,
//! and the registry's verdicts back as gRPC status codes.
//!
//! Architecture invariant: protobuf types stop here. Validation happens before
//! anything is proposed (bad input changes nothing), and PSK secrets are sealed
//! with the KEK here, before they reach the raft log.

pub mod access_policy;
pub mod api_limits;
pub mod caller_auth;
pub mod cluster_service;
pub mod convert;
pub mod device_ca_founding;
pub mod enrollment_service;
pub mod firmware_report;
pub mod firmware_service;
pub mod firmware_upload;
pub mod importer;
#[cfg(test)]
mod mem_backend;
pub mod oversize_status;
pub mod page_token;
pub mod registry_backend;
pub mod registry_service;
pub mod request_metrics;
pub mod sessions_service;
pub mod status;
pub mod watch_stream;

pub use api_limits::ApiLimits;
pub use caller_auth::CallerAuth;
pub use cluster_service::ClusterService;
pub use enrollment_service::EnrollmentService;
pub use oversize_status::OversizeStatus;
pub use registry_service::RegistryService;
pub use sessions_service::{FrontStatsSource, SessionsService};

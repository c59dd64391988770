//! Size limits of the registry, in one place so the API can quote them in errors.

/// Longest device id, tenant or gateway id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest tenant name, in bytes.
pub const MAX_TENANT_LEN: usize = 64;
/// Most labels one device may carry.
pub const MAX_LABELS: usize = 32;
/// Longest label key (including an optional `prefix/`), in bytes.
pub const MAX_LABEL_KEY_LEN: usize = 63;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 63;
/// Most credentials one device may hold.
pub const MAX_CREDENTIALS: usize = 8;
/// Shortest PSK secret in bytes (128 bits).
pub const MIN_PSK_LEN: usize = 16;
/// Longest PSK secret in bytes (RFC 4279 allows more, constrained stacks do not).
pub const MAX_PSK_LEN: usize = 64;
/// Longest PSK identity in bytes.
pub const MAX_PSK_IDENTITY_LEN: usize = 128;
/// Largest PEM document accepted for a key or certificate.
pub const MAX_PEM_LEN: usize = 16 * 1024;
/// Longest revocation reason, in bytes.
pub const MAX_REASON_LEN: usize = 256;

//! The registry domain of idreg: devices, credentials, the commands that change
//! the registry and the pure logic that applies them.
//!
//! Architecture invariant: this crate does no I/O. It knows nothing of RocksDB,
//! tokio, protobuf or UDP, and it cannot fail on I/O. Every rule of the registry
//! (what a valid id is, that revocation is final, that a key belongs to one
//! device) lives here and is unit-tested here; the store and the servers only
//! carry out what [`apply`](apply::apply) decides.

pub mod apply;
pub mod audit;
pub mod certificate_issuer;
pub mod clone_policy;
pub mod command;
pub mod command_check;
pub mod cose_sign1;
pub mod credential;
pub mod credential_lookup;
pub mod device;
pub mod device_ca;
pub mod device_directory;
pub mod enrollment_group;
pub mod error;
pub mod firmware_catalog;
pub mod firmware_manifest;
pub mod firmware_release;
pub mod firmware_signer;
pub mod firmware_version;
pub mod labels;
pub mod limits;
pub mod mem;
pub mod mem_session_audit;
pub mod names;
pub mod principal;
pub mod revocation_list;
pub mod secret;
pub mod session;
pub mod session_audit;
pub mod session_news;
pub mod time_histogram;
pub mod view;

pub use apply::{apply, Change, Effect};
pub use audit::{AuditAction, AuditRecord, Author};
pub use clone_policy::ClonePolicy;
pub use command::{
    Command, CredentialRef, EnrollVia, Enrollment, NewDevice, Proposal, ProposalBatch, StatusChange,
};
pub use credential::{
    Credential, Fingerprint, IssuedKey, KeySource, PublicKeyCredential, Rotation,
};
pub use credential_lookup::CredentialLookup;
pub use device::{Device, DeviceStatus, RevocationRecord};
pub use device_ca::{CaOrigin, DeviceCa};
pub use device_directory::{DeviceDirectory, DeviceFilter, DevicePage};
pub use enrollment_group::{Attestation, EnrollmentGroup, GroupName, IdTemplate};
pub use error::{Rejection, ValidationError};
pub use firmware_catalog::FirmwareCatalog;
pub use firmware_release::{FirmwareRelease, FirmwareReport, ReleaseId, Rollout};
pub use firmware_signer::FirmwareSigner;
pub use labels::Labels;
pub use names::{DeviceClass, DeviceId, SignerName, TenantId};
pub use principal::{Caller, CertIdentity, Principal, Role};
pub use secret::{Kek, SealedSecret, SecretError};
pub use session::{AddressChange, SessionCredential, SessionEnd, SessionRecord};
pub use session_audit::{AuditCursor, ClonePage, SessionAudit, SessionPage, SessionQuery};
pub use session_news::{CloneAnswer, CloneSighting, PeerSessions, SessionAnnouncer, SessionStart};
pub use time_histogram::{HistogramSnapshot, TimeHistogram};
pub use view::{Overlay, RegistryView};

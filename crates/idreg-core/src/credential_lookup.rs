//! The reads that decide who may authenticate: what the device front's
//! authenticator asks in the middle of a handshake. Implemented by the
//! RocksDB reader (idreg-store) and by [`crate::mem::MemRegistry`], so the
//! authenticator is tested without RocksDB.

use crate::credential::Fingerprint;
use crate::device::Device;
use crate::enrollment_group::EnrollmentGroup;
use crate::view::RegistryView;

pub trait CredentialLookup: RegistryView {
    /// The enrollment groups whose manufacturer CA has this subject
    /// (SHA-256 of its DER-encoded subject name).
    fn groups_for_issuer(
        &self,
        subject_hash: &[u8; 32],
    ) -> Result<Vec<EnrollmentGroup>, Self::Error>;

    /// The device holding PSK `identity`: two point reads.
    fn by_psk_identity(&self, identity: &[u8]) -> Result<Option<Device>, Self::Error> {
        match self.psk_owner(identity)? {
            Some(id) => self.device(&id),
            None => Ok(None),
        }
    }

    /// The device holding the key with this fingerprint: two point reads.
    fn by_fingerprint(&self, fingerprint: &Fingerprint) -> Result<Option<Device>, Self::Error> {
        match self.key_owner(fingerprint)? {
            Some(id) => self.device(&id),
            None => Ok(None),
        }
    }
}

//! Decides who may finish a handshake. webrtc-dtls calls these synchronously
//! in the middle of the handshake, so each is one local RocksDB point read
//! (plus an AES-GCM open for PSK), never a network round trip.

use idreg_core::credential::public_key_from_certificate_der;
use idreg_core::{Credential, Device, DeviceStatus, Kek};
use idreg_store::RegistryReader;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("unknown credential")]
    Unknown,
    #[error("device {0:?} is {1}")]
    NotActive(String, &'static str),
    #[error("certificate is not a P-256 certificate: {0}")]
    BadCertificate(String),
    #[error("PSK of device {0:?} cannot be opened with this node's KEK")]
    Sealed(String),
    #[error("registry read failed: {0}")]
    Store(String),
}

#[derive(Clone)]
pub struct Authenticator {
    reader: RegistryReader,
    kek: Kek,
}

fn active(device: Device) -> Result<Device, AuthError> {
    match device.status {
        DeviceStatus::Active => Ok(device),
        s => Err(AuthError::NotActive(device.id.to_string(), s.as_str())),
    }
}

impl Authenticator {
    pub fn new(reader: RegistryReader, kek: Kek) -> Self {
        Self { reader, kek }
    }

    pub fn reader(&self) -> &RegistryReader {
        &self.reader
    }

    /// The active device that holds PSK `identity`.
    pub fn psk_device(&self, identity: &[u8]) -> Result<Device, AuthError> {
        self.reader
            .by_psk_identity(identity)
            .map_err(|e| AuthError::Store(e.to_string()))?
            .ok_or(AuthError::Unknown)
            .and_then(active)
    }

    /// The PSK for `identity`, if it belongs to an active device; wiped
    /// from memory when dropped.
    pub fn psk(&self, identity: &[u8]) -> Result<(Device, zeroize::Zeroizing<Vec<u8>>), AuthError> {
        let device = self.psk_device(identity)?;
        let sealed = device
            .credentials
            .iter()
            .find_map(|c| match c {
                Credential::Psk {
                    identity: i,
                    secret,
                } if i.as_slice() == identity => Some(secret),
                _ => None,
            })
            .ok_or(AuthError::Unknown)?;
        let key = self
            .kek
            .open(sealed, device.id.as_str().as_bytes())
            .map_err(|_| AuthError::Sealed(device.id.to_string()))?;
        Ok((device, key))
    }

    /// The active device whose public key the certificate (DER) carries.
    pub fn certificate(&self, der: &[u8]) -> Result<Device, AuthError> {
        let key = public_key_from_certificate_der("certificate", der)
            .map_err(|e| AuthError::BadCertificate(e.message))?;
        self.reader
            .by_fingerprint(&key.fingerprint)
            .map_err(|e| AuthError::Store(e.to_string()))?
            .ok_or(AuthError::Unknown)
            .and_then(active)
    }

    /// Whether `device` may still hold a session: used to close the race where
    /// a revocation is applied between the handshake's lookup and the session
    /// being registered for revocation.
    pub fn still_active(&self, device: &str) -> bool {
        matches!(self.reader.get(device), Ok(Some(d)) if d.status == DeviceStatus::Active)
    }
}

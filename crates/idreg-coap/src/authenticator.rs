//! Decides who may finish a handshake and whether a session may go on. The
//! DTLS engine asks synchronously in the middle of a handshake, so each
//! answer is one local RocksDB point read (plus an AES-GCM open for PSK),
//! never a network round trip.

use idreg_core::credential::canonical_p256_spki;
use idreg_core::{Credential, Device, DeviceStatus, Fingerprint, Kek};
use idreg_dtls::AuthCredential;
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

    /// The active device holding the P-256 key `spki_der` (from an X.509
    /// certificate or a raw public key).
    pub fn public_key(&self, spki_der: &[u8]) -> Result<Device, AuthError> {
        let canonical = canonical_p256_spki("public key", spki_der)
            .map_err(|e| AuthError::BadCertificate(e.message))?;
        self.reader
            .by_fingerprint(&Fingerprint::of_spki_der(&canonical))
            .map_err(|e| AuthError::Store(e.to_string()))?
            .ok_or(AuthError::Unknown)
            .and_then(active)
    }

    /// Whether `device` is active and still holds the credential its session
    /// authenticated with: a removed or replaced key or PSK ends the session.
    pub fn session_still_valid(&self, device: &str, credential: &AuthCredential) -> bool {
        let holder = match credential {
            AuthCredential::Psk { identity } => self.reader.by_psk_identity(identity),
            AuthCredential::PublicKey { fingerprint, .. } => {
                self.reader.by_fingerprint(&Fingerprint(*fingerprint))
            }
        };
        // A store error keeps the session: the next check decides.
        match holder {
            Ok(Some(d)) => d.id.as_str() == device && d.status == DeviceStatus::Active,
            Ok(None) => false,
            Err(_) => true,
        }
    }
}

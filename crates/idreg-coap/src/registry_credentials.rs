//! The registry as the DTLS engine's credential store: who holds a PSK
//! identity or a public key, and whether this node's copy of the registry
//! is fresh enough to admit anyone at all.

use std::sync::Arc;

use idreg_dtls::{CredentialStore, Refusal};
use zeroize::Zeroizing;

use crate::authenticator::{AuthError, Authenticator};

/// Whether this node has heard from a raft leader recently enough for its
/// copy of the registry (and so its revocations) to be trusted.
pub type RegistryFreshness = Arc<dyn Fn() -> bool + Send + Sync>;

/// A device as the engine carries it through a session: its id (shared
/// with the front's own tables) and the session's audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDevice {
    pub id: Arc<str>,
    /// The session's audit record id.
    pub audit_id: u64,
    /// When the handshake authenticated it (ms since the Unix epoch).
    pub started_ms: u64,
}

impl SessionDevice {
    fn new(id: &str) -> Self {
        Self {
            id: Arc::from(id),
            audit_id: rand::random::<u64>() >> 1,
            started_ms: crate::unix_ms(),
        }
    }

    /// The bytes a saved session keeps of it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(16 + self.id.len());
        b.extend_from_slice(&self.audit_id.to_be_bytes());
        b.extend_from_slice(&self.started_ms.to_be_bytes());
        b.extend_from_slice(self.id.as_bytes());
        b
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let (audit, rest) = b.split_first_chunk::<8>()?;
        let (started, id) = rest.split_first_chunk::<8>()?;
        Some(Self {
            id: Arc::from(std::str::from_utf8(id).ok()?),
            audit_id: u64::from_be_bytes(*audit),
            started_ms: u64::from_be_bytes(*started),
        })
    }
}

#[derive(Clone)]
pub struct RegistryCredentials {
    auth: Authenticator,
    fresh: RegistryFreshness,
}

impl RegistryCredentials {
    pub fn new(auth: Authenticator, fresh: RegistryFreshness) -> Self {
        Self { auth, fresh }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    fn check_fresh(&self) -> Result<(), Refusal> {
        match (self.fresh)() {
            true => Ok(()),
            false => Err(Refusal::Unavailable(
                "this node has not heard from a raft leader within --max-auth-staleness".into(),
            )),
        }
    }
}

fn refusal(e: AuthError) -> Refusal {
    match e {
        AuthError::Unknown => Refusal::Unknown,
        AuthError::NotActive(..) | AuthError::BadCertificate(_) => {
            Refusal::NotAllowed(e.to_string())
        }
        AuthError::Sealed(_) | AuthError::Store(_) => Refusal::Unavailable(e.to_string()),
    }
}

impl CredentialStore for RegistryCredentials {
    type Device = SessionDevice;

    fn psk(&self, identity: &[u8]) -> Result<(SessionDevice, Zeroizing<Vec<u8>>), Refusal> {
        self.check_fresh()?;
        let (device, key) = self.auth.psk(identity).map_err(refusal)?;
        Ok((SessionDevice::new(device.id.as_str()), key))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<SessionDevice, Refusal> {
        self.check_fresh()?;
        let device = self.auth.public_key(spki_der).map_err(refusal)?;
        Ok(SessionDevice::new(device.id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_device_round_trips_through_bytes() {
        let d = SessionDevice::new("sensor-1");
        assert_eq!(SessionDevice::from_bytes(&d.to_bytes()), Some(d));
        assert_eq!(SessionDevice::from_bytes(&[1, 2, 3]), None);
    }
}

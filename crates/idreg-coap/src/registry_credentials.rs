//! The registry as the DTLS engine's credential store: who holds a PSK
//! identity or a public key, and whether this node's copy of the registry
//! is fresh enough to admit anyone at all.

use std::sync::Arc;

use idreg_dtls::{CredentialStore, Refusal};
use zeroize::Zeroizing;

use crate::authenticator::{AuthError, Authenticator, PskKind};
use idreg_core::GroupName;

/// Whether this node has heard from a raft leader recently enough for its
/// copy of the registry (and so its revocations) to be trusted.
pub type RegistryFreshness = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a session's credential lets it do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionRole {
    /// A registered device on its own credential; `finishes_rotation` when
    /// the key is the successor of a rotation (its first use retires the
    /// old key).
    Device { finishes_rotation: bool },
    /// A manufacturer certificate of an enrollment group: EST only, to
    /// enroll as the session's id (from the group's template).
    Manufacturer { group: GroupName },
    /// A registered device on its one-time bootstrap PSK: EST only.
    Bootstrap { identity: Arc<[u8]> },
}

impl SessionRole {
    /// Whether the session may reach only the enrollment resources.
    pub fn enrollment_only(&self) -> bool {
        !matches!(self, SessionRole::Device { .. })
    }
}

/// A device as the engine carries it through a session: its id (shared
/// with the front's own tables), the session's audit record and what the
/// credential allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDevice {
    pub id: Arc<str>,
    /// The session's audit record id.
    pub audit_id: u64,
    /// When the handshake authenticated it (ms since the Unix epoch).
    pub started_ms: u64,
    pub role: SessionRole,
}

impl SessionDevice {
    fn new(id: &str, role: SessionRole) -> Self {
        Self {
            id: Arc::from(id),
            audit_id: rand::random::<u64>() >> 1,
            started_ms: crate::unix_ms(),
            role,
        }
    }

    fn device(id: &str) -> Self {
        Self::new(
            id,
            SessionRole::Device {
                finishes_rotation: false,
            },
        )
    }

    /// The bytes a saved session keeps of it. Only device sessions are
    /// saved (enrollment sessions end at shutdown).
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
            audit_id: u64::from_be_bytes(*audit),
            started_ms: u64::from_be_bytes(*started),
            ..Self::device(std::str::from_utf8(id).ok()?)
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
        AuthError::NotActive(..) | AuthError::BadCertificate(_) | AuthError::NotAllowed(_) => {
            Refusal::NotAllowed(e.to_string())
        }
        AuthError::Sealed(_) | AuthError::Store(_) => Refusal::Unavailable(e.to_string()),
    }
}

impl CredentialStore for RegistryCredentials {
    type Device = SessionDevice;

    fn psk(&self, identity: &[u8]) -> Result<(SessionDevice, Zeroizing<Vec<u8>>), Refusal> {
        self.check_fresh()?;
        let (device, key, kind) = self.auth.psk(identity).map_err(refusal)?;
        let role = match kind {
            PskKind::Operational => SessionRole::Device {
                finishes_rotation: false,
            },
            PskKind::Successor => SessionRole::Device {
                finishes_rotation: true,
            },
            PskKind::Bootstrap => SessionRole::Bootstrap {
                identity: Arc::from(identity),
            },
        };
        Ok((SessionDevice::new(device.id.as_str(), role), key))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<SessionDevice, Refusal> {
        self.check_fresh()?;
        let holder = self.auth.public_key(spki_der).map_err(refusal)?;
        let role = SessionRole::Device {
            finishes_rotation: holder.finishes_rotation,
        };
        Ok(SessionDevice::new(holder.device.id.as_str(), role))
    }

    /// A registered key first; failing that, a manufacturer certificate of
    /// an enrollment group (a session for enrollment only).
    fn certificate(&self, spki_der: &[u8], chain: &[&[u8]]) -> Result<SessionDevice, Refusal> {
        match self.public_key(spki_der) {
            Err(Refusal::Unknown) => {}
            known => return known,
        }
        let claim = self.auth.manufacturer(chain).map_err(refusal)?;
        let role = SessionRole::Manufacturer { group: claim.group };
        Ok(SessionDevice::new(claim.id.as_str(), role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_device_round_trips_through_bytes() {
        let d = SessionDevice::device("sensor-1");
        assert_eq!(SessionDevice::from_bytes(&d.to_bytes()), Some(d));
        assert_eq!(SessionDevice::from_bytes(&[1, 2, 3]), None);
    }
}

//! Decides who may finish a handshake and whether a session may go on. The
//! DTLS engine asks synchronously in the middle of a handshake, so each
//! answer is one local RocksDB point read (plus an AES-GCM open for PSK),
//! never a network round trip.

use idreg_core::credential::{canonical_p256_spki, SubjectNames};
use idreg_core::enrollment_group::TemplateFields;
use idreg_core::{
    Attestation, Credential, CredentialLookup, Device, DeviceId, DeviceStatus, Fingerprint,
    GroupName, Kek, KeySource,
};
use idreg_dtls::AuthCredential;
use idreg_store::RegistryReader;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;

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
    /// A known credential that may not authenticate now (an expired
    /// certificate, a key rotated out, a closed enrollment group).
    #[error("{0}")]
    NotAllowed(String),
}

/// How a PSK authenticated: an operational PSK (the successor of a
/// rotation, whose first use retires the PSK it replaces), or a one-time
/// bootstrap PSK (enrollment only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PskKind {
    Operational,
    Successor,
    Bootstrap,
}

/// A registered key that may authenticate, and whether its first use
/// finishes a rotation (the key it replaces is then retired).
#[derive(Debug)]
pub struct KeyHolder {
    pub device: Device,
    pub finishes_rotation: bool,
}

/// A device presenting a manufacturer certificate of an enrollment group:
/// its id from the group's template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerClaim {
    pub group: GroupName,
    pub id: DeviceId,
}

/// Answers over any [`CredentialLookup`]: the node's RocksDB reader, or an
/// in-memory registry in tests.
#[derive(Clone)]
pub struct Authenticator<R = RegistryReader> {
    reader: R,
    kek: Kek,
}

fn active(device: Device) -> Result<Device, AuthError> {
    match device.status {
        DeviceStatus::Active => Ok(device),
        s => Err(AuthError::NotActive(device.id.to_string(), s.as_str())),
    }
}

fn template_fields(cert: &X509Certificate<'_>) -> TemplateFields {
    let names = SubjectNames::of(cert.subject());
    let spki = cert.tbs_certificate.subject_pki.raw;
    let key = canonical_p256_spki("key", spki).unwrap_or_else(|_| spki.to_vec());
    TemplateFields {
        cn: names.common_name,
        subject_serial: names.serial_number,
        serial: hex::encode(cert.raw_serial()),
        fingerprint: Fingerprint::of_spki_der(&key).to_string(),
    }
}

impl<R: CredentialLookup> Authenticator<R>
where
    R::Error: std::fmt::Display,
{
    pub fn new(reader: R, kek: Kek) -> Self {
        Self { reader, kek }
    }

    pub fn reader(&self) -> &R {
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
    pub fn psk(
        &self,
        identity: &[u8],
    ) -> Result<(Device, zeroize::Zeroizing<Vec<u8>>, PskKind), AuthError> {
        let device = self.psk_device(identity)?;
        let (sealed, kind) = device
            .credentials
            .iter()
            .find_map(|c| match c {
                Credential::Psk {
                    identity: i,
                    secret,
                } if i.as_slice() == identity => Some((secret, PskKind::Operational)),
                Credential::BootstrapPsk {
                    identity: i,
                    secret,
                    ..
                } if i.as_slice() == identity => Some((secret, PskKind::Bootstrap)),
                Credential::SuccessorPsk {
                    identity: i,
                    secret,
                    ..
                } if i.as_slice() == identity => Some((secret, PskKind::Successor)),
                _ => None,
            })
            .ok_or(AuthError::Unknown)?;
        let now = crate::unix_ms();
        let rotated_out = device.credentials.iter().any(|c| {
            matches!(c, Credential::SuccessorPsk { replaces, .. }
                if replaces.old_identity == identity && now >= replaces.until_ms)
        });
        if rotated_out {
            return Err(AuthError::NotAllowed(format!(
                "this PSK of device {:?} was rotated out",
                device.id.as_str()
            )));
        }
        let key = self
            .kek
            .open(sealed, device.id.as_str().as_bytes())
            .map_err(|_| AuthError::Sealed(device.id.to_string()))?;
        Ok((device, key, kind))
    }

    /// The active device holding the P-256 key `spki_der` (from an X.509
    /// certificate or a raw public key). A key the device CA certified is
    /// refused once its certificate has expired, and a key rotated out once
    /// its grace has passed.
    pub fn public_key(&self, spki_der: &[u8]) -> Result<KeyHolder, AuthError> {
        let canonical = canonical_p256_spki("public key", spki_der)
            .map_err(|e| AuthError::BadCertificate(e.message))?;
        let fingerprint = Fingerprint::of_spki_der(&canonical);
        let device = self
            .reader
            .by_fingerprint(&fingerprint)
            .map_err(|e| AuthError::Store(e.to_string()))?
            .ok_or(AuthError::Unknown)
            .and_then(active)?;
        let now = crate::unix_ms();
        let mut finishes_rotation = false;
        for c in &device.credentials {
            let Credential::PublicKey(k) = c else {
                continue;
            };
            let KeySource::Issued(issued) = &k.source else {
                continue;
            };
            if k.fingerprint == fingerprint {
                if now >= issued.not_after_ms {
                    return Err(AuthError::NotAllowed(format!(
                        "the certificate issued to device {:?} for this key has expired; re-enroll",
                        device.id.as_str()
                    )));
                }
                finishes_rotation = issued.replaces.is_some();
            } else if let Some(r) = issued.replaces.filter(|r| r.old == fingerprint) {
                if now >= r.until_ms {
                    return Err(AuthError::NotAllowed(format!(
                        "this key of device {:?} was rotated out",
                        device.id.as_str()
                    )));
                }
            }
        }
        Ok(KeyHolder {
            device,
            finishes_rotation,
        })
    }

    /// The enrollment group a certificate chain (leaf first, as presented)
    /// belongs to, and the device id its template gives: the leaf, or an
    /// intermediate it carries, must be signed by the group's manufacturer
    /// CA, every link must verify, and the leaf must be within its validity.
    pub fn manufacturer(&self, chain: &[&[u8]]) -> Result<ManufacturerClaim, AuthError> {
        const MAX_CHAIN: usize = 4;
        let certs: Vec<X509Certificate<'_>> = chain
            .iter()
            .take(MAX_CHAIN)
            .map(|der| x509_parser::parse_x509_certificate(der).map(|(_, c)| c))
            .collect::<Result<_, _>>()
            .map_err(|e| AuthError::BadCertificate(e.to_string()))?;
        let leaf = certs.first().ok_or(AuthError::Unknown)?;
        let now = crate::unix_ms() / 1000;
        let validity = leaf.validity();
        if (now as i64) < validity.not_before.timestamp()
            || (now as i64) > validity.not_after.timestamp()
        {
            return Err(AuthError::NotAllowed(
                "the manufacturer certificate is not valid now".into(),
            ));
        }
        for depth in 0..certs.len() {
            // Each link below `depth` must be signed by the one above it.
            let linked = (0..depth).all(|i| {
                certs[i]
                    .verify_signature(Some(certs[i + 1].public_key()))
                    .is_ok()
            });
            if !linked {
                break;
            }
            let top = &certs[depth];
            let issuer: [u8; 32] = Sha256::digest(top.issuer().as_raw()).into();
            let groups = self
                .reader
                .groups_for_issuer(&issuer)
                .map_err(|e| AuthError::Store(e.to_string()))?;
            for group in groups {
                let Attestation::ManufacturerCa { certificate } = &group.attestation else {
                    continue;
                };
                let Ok((_, ca)) = x509_parser::parse_x509_certificate(certificate) else {
                    continue;
                };
                if top.verify_signature(Some(ca.public_key())).is_err() {
                    continue;
                }
                let template = group.id_template.as_ref().ok_or_else(|| {
                    AuthError::NotAllowed(format!(
                        "enrollment group {:?} has no id template",
                        group.name.as_str()
                    ))
                })?;
                let id = template
                    .render(&template_fields(leaf))
                    .map_err(AuthError::NotAllowed)?;
                return Ok(ManufacturerClaim {
                    group: group.name,
                    id,
                });
            }
        }
        Err(AuthError::Unknown)
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

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::mem::MemRegistry;
    use idreg_core::{
        Author, Command, CredentialRef, Labels, NewDevice, Proposal, Role, StatusChange, TenantId,
    };

    fn kek() -> Kek {
        Kek::from_bytes(&[7; 32])
    }

    fn run(reg: &mut MemRegistry, command: Command) {
        reg.execute(&Proposal {
            at_ms: 1,
            by: Author::new("t", Role::Admin, 1),
            command,
        })
        .unwrap();
    }

    fn id(s: &str) -> DeviceId {
        DeviceId::parse("id", s).unwrap()
    }

    /// A registry with device `d1` holding PSK identity `d1-psk`.
    fn registry() -> MemRegistry {
        let mut reg = MemRegistry::default();
        run(
            &mut reg,
            Command::Create(NewDevice {
                id: id("d1"),
                tenant: TenantId::default_tenant(),
                labels: Labels::default(),
                gateway: None,
                credentials: vec![Credential::Psk {
                    identity: b"d1-psk".to_vec(),
                    secret: kek().seal(b"0123456789abcdef", b"d1"),
                }],
            }),
        );
        reg
    }

    fn update(status: Option<StatusChange>, remove: Vec<CredentialRef>) -> Command {
        Command::Update {
            id: id("d1"),
            labels: None,
            status,
            gateway: None,
            add_credentials: vec![],
            remove_credentials: remove,
        }
    }

    #[test]
    fn a_registered_psk_opens_and_nothing_else_does() {
        let auth = Authenticator::new(registry(), kek());
        let (device, key, kind) = auth.psk(b"d1-psk").unwrap();
        assert_eq!(device.id.as_str(), "d1");
        assert_eq!(key.as_slice(), b"0123456789abcdef");
        assert_eq!(kind, PskKind::Operational);
        assert_eq!(auth.psk(b"nobody").unwrap_err(), AuthError::Unknown);
        // Sealed under another KEK: refused, not opened with garbage.
        let other = Authenticator::new(registry(), Kek::from_bytes(&[8; 32]));
        assert_eq!(
            other.psk(b"d1-psk").unwrap_err(),
            AuthError::Sealed("d1".into())
        );
    }

    #[test]
    fn a_device_that_is_not_active_cannot_authenticate() {
        let mut reg = registry();
        run(&mut reg, update(Some(StatusChange::Disabled), vec![]));
        let auth = Authenticator::new(reg, kek());
        assert_eq!(
            auth.psk(b"d1-psk").unwrap_err(),
            AuthError::NotActive("d1".into(), "disabled")
        );
    }

    #[test]
    fn a_session_ends_when_its_credential_or_its_device_goes() {
        let psk = AuthCredential::Psk {
            identity: b"d1-psk".to_vec().into(),
        };
        assert!(Authenticator::new(registry(), kek()).session_still_valid("d1", &psk));
        // Another device's name with this PSK: not valid.
        assert!(!Authenticator::new(registry(), kek()).session_still_valid("d2", &psk));

        let mut removed = registry();
        run(
            &mut removed,
            update(None, vec![CredentialRef::PskIdentity(b"d1-psk".to_vec())]),
        );
        assert!(!Authenticator::new(removed, kek()).session_still_valid("d1", &psk));

        let mut revoked = registry();
        run(
            &mut revoked,
            Command::Revoke {
                id: id("d1"),
                reason: "lost".into(),
            },
        );
        assert!(!Authenticator::new(revoked, kek()).session_still_valid("d1", &psk));

        let key = AuthCredential::PublicKey {
            fingerprint: [9; 32],
            raw: true,
        };
        assert!(!Authenticator::new(registry(), kek()).session_still_valid("d1", &key));
    }
}

//! The rules of enrollment groups and of enrollment itself (EST-coaps
//! `sen`/`sren`), and of rotating keys and PSKs with a grace.

use super::{
    check_gateway, check_new_credentials, matches_ref, stamped, with_new_credentials, Change,
    Effect,
};
use crate::command::{Command, CredentialRef, EnrollVia, Enrollment, Proposal};
use crate::credential::{
    Credential, Fingerprint, IssuedKey, KeySource, PskRotation, PublicKeyCredential, Rotation,
};
use crate::device::{Device, DeviceStatus};
use crate::enrollment_group::{Attestation, EnrollmentGroup, GroupName};
use crate::error::Rejection;
use crate::names::DeviceId;
use crate::secret::SealedSecret;
use crate::view::RegistryView;

type Verdict<T, E> = Result<Result<T, Rejection>, E>;

pub(super) fn apply_to_group<V: RegistryView>(
    view: &V,
    proposal: &Proposal,
) -> Verdict<Effect, V::Error> {
    let at = proposal.at_ms;
    let (name, after) = match &proposal.command {
        Command::AddEnrollmentGroup(group) => {
            if view.enrollment_group(&group.name)?.is_some() {
                return Ok(Err(Rejection::GroupExists(group.name.to_string())));
            }
            if let Some(gw) = &group.gateway {
                let status = view.device(gw)?.map(|d| d.status);
                if !matches!(status, Some(DeviceStatus::Active | DeviceStatus::Disabled)) {
                    return Ok(Err(Rejection::GatewayNotFound(gw.to_string())));
                }
            }
            let mut group = group.clone();
            group.enrolled = 0;
            group.created_ms = at;
            group.updated_ms = at;
            (group.name.clone(), Some(group))
        }
        Command::SetEnrollmentGroupEnabled { name, enabled } => {
            let Some(mut group) = view.enrollment_group(name)? else {
                return Ok(Err(Rejection::GroupNotFound(name.to_string())));
            };
            group.enabled = *enabled;
            group.updated_ms = at;
            (name.clone(), Some(group))
        }
        Command::DeleteEnrollmentGroup { name } => {
            if view.enrollment_group(name)?.is_none() {
                return Ok(Err(Rejection::GroupNotFound(name.to_string())));
            }
            (name.clone(), None)
        }
        _ => unreachable!("only group commands come here"),
    };
    Ok(Ok(Effect::Group { name, after }))
}

/// The group `name`, if it exists, takes `kind` attestations and is open.
fn open_group<V: RegistryView>(
    view: &V,
    name: &GroupName,
    bootstrap: bool,
    at: u64,
) -> Verdict<EnrollmentGroup, V::Error> {
    let Some(group) = view.enrollment_group(name)? else {
        return Ok(Err(Rejection::GroupNotFound(name.to_string())));
    };
    if (group.attestation == Attestation::BootstrapPsk) != bootstrap {
        return Ok(Err(Rejection::GroupClosed(format!(
            "enrollment group {:?} does not take this kind of attestation ({})",
            name.as_str(),
            group.attestation.kind()
        ))));
    }
    if let Some(reason) = group.closed_reason(at) {
        return Ok(Err(Rejection::GroupClosed(reason)));
    }
    Ok(Ok(group))
}

fn unchanged(device: Device) -> Effect {
    Effect::Enrolled {
        change: Change {
            id: device.id.clone(),
            before: Some(device.clone()),
            after: Some(device),
            revocation: None,
        },
        group: None,
    }
}

fn holds_key(device: &Device, fingerprint: &Fingerprint) -> bool {
    device.fingerprints().any(|f| f == fingerprint)
}

fn not_active(device: &Device) -> Option<Rejection> {
    (device.status != DeviceStatus::Active).then(|| {
        Rejection::NotEnrollable(format!(
            "device {:?} is {}",
            device.id.as_str(),
            device.status.as_str()
        ))
    })
}

pub(super) fn enroll<V: RegistryView>(
    view: &V,
    e: &Enrollment,
    at: u64,
    revision: u64,
) -> Verdict<Effect, V::Error> {
    let KeySource::Issued(issued) = &e.key.source else {
        return Ok(Err(Rejection::Malformed(
            "an enrollment carries the certificate issued for its key".into(),
        )));
    };
    // Only apply decides whether the key replaces another.
    let mut key = e.key.clone();
    key.source = KeySource::Issued(IssuedKey {
        replaces: None,
        ..issued.clone()
    });
    let before = view.device(&e.id)?;
    match &e.via {
        EnrollVia::ManufacturerCertificate { group } => {
            let mut group = match open_group(view, group, false, at)? {
                Ok(g) => g,
                Err(r) => return Ok(Err(r)),
            };
            if let Some(device) = before {
                if holds_key(&device, &e.key.fingerprint) {
                    return Ok(Ok(unchanged(device))); // a retried request
                }
                return Ok(Err(Rejection::NotEnrollable(format!(
                    "device {:?} is already registered; it re-enrolls with its own certificate (sren)",
                    e.id.as_str()
                ))));
            }
            if view.revocation(&e.id)?.is_some() {
                return Ok(Err(Rejection::Revoked(e.id.to_string())));
            }
            if let Some(gw) = &group.gateway {
                if let Err(r) = check_gateway(view, &e.id, gw)? {
                    return Ok(Err(r));
                }
            }
            let credentials = vec![Credential::PublicKey(key)];
            if let Err(r) = check_new_credentials(view, &credentials)? {
                return Ok(Err(r));
            }
            let device = Device {
                id: e.id.clone(),
                tenant: group.tenant.clone(),
                status: DeviceStatus::Active,
                labels: group.labels.clone(),
                gateway: group.gateway.clone(),
                credentials,
                created_ms: at,
                updated_ms: at,
                revision,
                revocation: None,
            };
            group.enrolled += 1;
            group.updated_ms = at;
            Ok(Ok(Effect::Enrolled {
                change: Change {
                    id: e.id.clone(),
                    before: None,
                    after: Some(device),
                    revocation: None,
                },
                group: Some(group),
            }))
        }
        EnrollVia::BootstrapPsk { identity } => {
            let Some(device) = before else {
                return Ok(Err(Rejection::DeviceNotFound(e.id.to_string())));
            };
            if let Some(r) = not_active(&device) {
                return Ok(Err(r));
            }
            let bootstrap = device.credentials.iter().position(
                |c| matches!(c, Credential::BootstrapPsk { identity: i, .. } if i == identity),
            );
            let Some(at_index) = bootstrap else {
                if holds_key(&device, &e.key.fingerprint) {
                    return Ok(Ok(unchanged(device))); // a retried request
                }
                return Ok(Err(Rejection::NotEnrollable(format!(
                    "device {:?} has no bootstrap PSK {:?} (it is used once)",
                    e.id.as_str(),
                    String::from_utf8_lossy(identity)
                ))));
            };
            let Credential::BootstrapPsk { group, .. } = &device.credentials[at_index] else {
                unreachable!("found above");
            };
            let mut group = match open_group(view, group, true, at)? {
                Ok(g) => g,
                Err(r) => return Ok(Err(r)),
            };
            let new = vec![Credential::PublicKey(key)];
            if let Err(r) = check_new_credentials(view, &new)? {
                return Ok(Err(r));
            }
            let mut after = device.clone();
            after.credentials.remove(at_index);
            after.credentials.extend(new);
            group.enrolled += 1;
            group.updated_ms = at;
            Ok(Ok(Effect::Enrolled {
                change: stamped(device, after, at, revision),
                group: Some(group),
            }))
        }
        EnrollVia::Operational { current, grace_ms } => {
            let Some(device) = before else {
                return Ok(Err(Rejection::DeviceNotFound(e.id.to_string())));
            };
            if let Some(r) = not_active(&device) {
                return Ok(Err(r));
            }
            let Some(at_index) = device
                .credentials
                .iter()
                .position(|c| matches!(c, Credential::PublicKey(k) if &k.fingerprint == current))
            else {
                return Ok(Err(Rejection::NotEnrollable(format!(
                    "device {:?} no longer holds the key it authenticated with",
                    e.id.as_str()
                ))));
            };
            let Credential::PublicKey(old) = &device.credentials[at_index] else {
                unreachable!("found above");
            };
            let mut after = device.clone();
            if &e.key.fingerprint == current {
                // Renewal: the same key, a new certificate; a rotation the
                // key is part of carries on.
                key.source = KeySource::Issued(IssuedKey {
                    replaces: rotation_of(old),
                    ..issued.clone()
                });
                after.credentials[at_index] = Credential::PublicKey(key);
            } else {
                if let Some(Credential::PublicKey(k)) = device.credentials.iter().find(
                    |c| matches!(c, Credential::PublicKey(k) if k.fingerprint == e.key.fingerprint),
                ) {
                    if rotation_of(k).is_some_and(|r| &r.old == current) {
                        return Ok(Ok(unchanged(device))); // a retried request
                    }
                }
                key.source = KeySource::Issued(IssuedKey {
                    replaces: Some(Rotation {
                        old: *current,
                        until_ms: at.saturating_add(*grace_ms),
                    }),
                    ..issued.clone()
                });
                let new = [Credential::PublicKey(key)];
                return Ok(
                    with_new_credentials(view, device, after, &new, at, revision)?.map(|change| {
                        Effect::Enrolled {
                            change,
                            group: None,
                        }
                    }),
                );
            }
            Ok(Ok(Effect::Enrolled {
                change: stamped(device, after, at, revision),
                group: None,
            }))
        }
    }
}

fn rotation_of(key: &PublicKeyCredential) -> Option<Rotation> {
    match &key.source {
        KeySource::Issued(i) => i.replaces,
        _ => None,
    }
}

/// The key or PSK `new` was used: the one it replaces is removed and the
/// rotation marker cleared. Done already (or never started) is no change.
pub(super) fn complete_rotation<V: RegistryView>(
    view: &V,
    id: &DeviceId,
    new: &CredentialRef,
    at: u64,
    revision: u64,
) -> Verdict<Change, V::Error> {
    let Some(device) = view.device(id)? else {
        return Ok(Err(Rejection::DeviceNotFound(id.to_string())));
    };
    let mut after = device.clone();
    let mut old: Option<CredentialRef> = None;
    for c in &mut after.credentials {
        match (c, new) {
            (
                Credential::PublicKey(PublicKeyCredential {
                    fingerprint,
                    source: KeySource::Issued(issued),
                    ..
                }),
                CredentialRef::Fingerprint(want),
            ) if fingerprint == want => {
                old = issued
                    .replaces
                    .take()
                    .map(|r| CredentialRef::Fingerprint(r.old));
            }
            (c @ Credential::SuccessorPsk { .. }, CredentialRef::PskIdentity(want)) => {
                // Becomes a plain PSK; the one it replaces goes below.
                let Credential::SuccessorPsk {
                    identity,
                    secret,
                    replaces,
                } = c.clone()
                else {
                    unreachable!("matched above");
                };
                if &identity == want {
                    old = Some(CredentialRef::PskIdentity(replaces.old_identity));
                    *c = Credential::Psk { identity, secret };
                }
            }
            _ => {}
        }
    }
    if let Some(old) = old {
        after.credentials.retain(|c| !matches_ref(c, &old));
        after.updated_ms = at;
        after.revision = revision;
    }
    Ok(Ok(Change {
        id: id.clone(),
        before: Some(device),
        after: Some(after),
        revocation: None,
    }))
}

/// A new PSK for a device, replacing one of its PSKs after a grace.
pub(super) struct PskRotationRequest<'a> {
    pub identity: &'a [u8],
    pub secret: &'a SealedSecret,
    pub replaces: Option<&'a [u8]>,
    pub grace_ms: u64,
}

pub(super) fn rotate_psk<V: RegistryView>(
    view: &V,
    id: &DeviceId,
    rotation: PskRotationRequest<'_>,
    at: u64,
    revision: u64,
) -> Verdict<Change, V::Error> {
    let Some(device) = view.device(id)? else {
        return Ok(Err(Rejection::DeviceNotFound(id.to_string())));
    };
    if device.status == DeviceStatus::Revoked {
        return Ok(Err(Rejection::Revoked(id.to_string())));
    }
    let operational: Vec<&[u8]> = device
        .credentials
        .iter()
        .filter_map(|c| match c {
            Credential::Psk { identity, .. } => Some(identity.as_slice()),
            _ => None,
        })
        .collect();
    let old = match (rotation.replaces, operational.as_slice()) {
        (Some(old), _) if operational.contains(&old) => old.to_vec(),
        (Some(old), _) => {
            return Ok(Err(Rejection::CredentialNotFound {
                device: id.to_string(),
                credential: CredentialRef::PskIdentity(old.to_vec()).to_string(),
            }))
        }
        (None, [only]) => only.to_vec(),
        (None, []) => {
            return Ok(Err(Rejection::NotEnrollable(format!(
                "device {:?} has no PSK to rotate",
                id.as_str()
            ))))
        }
        (None, _) => {
            return Ok(Err(Rejection::NotEnrollable(format!(
                "device {:?} has several PSKs: name the one to replace",
                id.as_str()
            ))))
        }
    };
    let new = vec![Credential::SuccessorPsk {
        identity: rotation.identity.to_vec(),
        secret: rotation.secret.clone(),
        replaces: PskRotation {
            old_identity: old,
            until_ms: at.saturating_add(rotation.grace_ms),
        },
    }];
    with_new_credentials(view, device.clone(), device, &new, at, revision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewDevice;
    use crate::enrollment_group::IdTemplate;
    use crate::labels::Labels;
    use crate::mem::MemRegistry;
    use crate::names::TenantId;
    use crate::secret::Kek;

    fn id(s: &str) -> DeviceId {
        DeviceId::parse("id", s).unwrap()
    }

    fn name(s: &str) -> GroupName {
        GroupName::parse("name", s).unwrap()
    }

    fn run(reg: &mut MemRegistry, at_ms: u64, command: Command) -> Result<Effect, Rejection> {
        reg.execute_effect(&Proposal {
            at_ms,
            by: crate::Author::new("tester", crate::Role::Operator, 1),
            command,
        })
    }

    fn issued_key(n: u8) -> PublicKeyCredential {
        use p256::pkcs8::EncodePublicKey;
        let secret = p256::SecretKey::from_slice(&[n; 32]).unwrap();
        let spki_der = secret.public_key().to_public_key_der().unwrap().to_vec();
        PublicKeyCredential {
            fingerprint: Fingerprint::of_spki_der(&spki_der),
            spki_der,
            source: KeySource::Issued(IssuedKey {
                der: vec![n],
                serial: [n; 16],
                not_after_ms: 10_000_000,
                replaces: None,
            }),
        }
    }

    fn group(n: &str, attestation: Attestation, max: Option<u64>) -> EnrollmentGroup {
        EnrollmentGroup {
            name: name(n),
            attestation,
            tenant: TenantId::parse("tenant", "acme").unwrap(),
            labels: Labels::new("labels", [("site", "berlin")]).unwrap(),
            gateway: None,
            id_template: Some(IdTemplate::parse("t", "acme-{cn}").unwrap()),
            max_devices: max,
            expires_ms: Some(5_000),
            enabled: true,
            enrolled: 7, // ignored: a new group starts at zero
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn by_manufacturer(device: &str, g: &str, key: u8) -> Command {
        Command::Enroll(Enrollment {
            id: id(device),
            via: EnrollVia::ManufacturerCertificate { group: name(g) },
            key: issued_key(key),
        })
    }

    fn enrolled_device(effect: Effect) -> (Device, Option<EnrollmentGroup>) {
        match effect {
            Effect::Enrolled { change, group } => (change.after.unwrap(), group),
            other => panic!("{other:?}"),
        }
    }

    fn manufacturer_ca() -> Attestation {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        Attestation::ManufacturerCa {
            certificate: params.self_signed(&key).unwrap().der().to_vec(),
        }
    }

    #[test]
    fn a_manufacturer_enrollment_creates_the_device_from_its_group_once() {
        let mut reg = MemRegistry::default();
        run(
            &mut reg,
            1,
            Command::AddEnrollmentGroup(group("line-1", manufacturer_ca(), Some(2))),
        )
        .unwrap();
        let (device, g) =
            enrolled_device(run(&mut reg, 10, by_manufacturer("acme-1", "line-1", 1)).unwrap());
        assert_eq!(device.tenant.as_str(), "acme");
        assert_eq!(device.labels.get("site"), Some("berlin"));
        assert_eq!(
            device.credentials,
            vec![Credential::PublicKey(issued_key(1))]
        );
        assert_eq!(g.unwrap().enrolled, 1);

        // The same request again (a lost response): the same device, no count.
        let (again, g) =
            enrolled_device(run(&mut reg, 11, by_manufacturer("acme-1", "line-1", 1)).unwrap());
        assert_eq!(again, device);
        assert!(g.is_none());
        assert_eq!(
            reg.enrollment_group(&name("line-1"))
                .unwrap()
                .unwrap()
                .enrolled,
            1
        );

        // Another key for a registered id is not an enrollment.
        let e = run(&mut reg, 12, by_manufacturer("acme-1", "line-1", 2)).unwrap_err();
        assert!(matches!(e, Rejection::NotEnrollable(_)), "{e}");
        // The same key for another id is taken.
        let e = run(&mut reg, 12, by_manufacturer("acme-9", "line-1", 1)).unwrap_err();
        assert!(matches!(e, Rejection::KeyTaken { .. }), "{e}");

        run(&mut reg, 13, by_manufacturer("acme-2", "line-1", 2)).unwrap();
        let e = run(&mut reg, 14, by_manufacturer("acme-3", "line-1", 3)).unwrap_err();
        assert!(e.to_string().contains("full"), "{e}");
    }

    #[test]
    fn closed_or_missing_groups_enroll_nobody() {
        let mut reg = MemRegistry::default();
        run(
            &mut reg,
            1,
            Command::AddEnrollmentGroup(group("g", manufacturer_ca(), None)),
        )
        .unwrap();
        let e = run(
            &mut reg,
            2,
            Command::AddEnrollmentGroup(group("g", manufacturer_ca(), None)),
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::GroupExists(_)));
        let e = run(&mut reg, 5_000, by_manufacturer("d", "g", 1)).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        run(
            &mut reg,
            2,
            Command::SetEnrollmentGroupEnabled {
                name: name("g"),
                enabled: false,
            },
        )
        .unwrap();
        let e = run(&mut reg, 3, by_manufacturer("d", "g", 1)).unwrap_err();
        assert!(e.to_string().contains("disabled"), "{e}");
        run(
            &mut reg,
            4,
            Command::DeleteEnrollmentGroup { name: name("g") },
        )
        .unwrap();
        let e = run(&mut reg, 5, by_manufacturer("d", "g", 1)).unwrap_err();
        assert!(matches!(e, Rejection::GroupNotFound(_)), "{e}");
        assert_eq!(reg.devices().count(), 0);
        let e = run(
            &mut reg,
            5,
            Command::DeleteEnrollmentGroup { name: name("g") },
        )
        .unwrap_err();
        assert!(matches!(e, Rejection::GroupNotFound(_)));
    }

    #[test]
    fn a_bootstrap_psk_is_used_once_and_replaced_by_the_issued_key() {
        let mut reg = MemRegistry::default();
        let bootstrap = Credential::BootstrapPsk {
            identity: b"boot-1".to_vec(),
            secret: Kek::from_bytes(&[1; 32]).seal(b"0123456789abcdef", b"d"),
            group: name("boot"),
        };
        let create = Command::Create(NewDevice {
            id: id("d"),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials: vec![bootstrap.clone()],
        });
        // The group must exist first, and take bootstrap PSKs.
        assert!(matches!(
            run(&mut reg, 1, create.clone()).unwrap_err(),
            Rejection::GroupNotFound(_)
        ));
        run(
            &mut reg,
            1,
            Command::AddEnrollmentGroup(group("boot", Attestation::BootstrapPsk, Some(1))),
        )
        .unwrap();
        run(&mut reg, 1, create).unwrap();

        let enroll = |key| {
            Command::Enroll(Enrollment {
                id: id("d"),
                via: EnrollVia::BootstrapPsk {
                    identity: b"boot-1".to_vec(),
                },
                key: issued_key(key),
            })
        };
        let (device, g) = enrolled_device(run(&mut reg, 2, enroll(1)).unwrap());
        assert_eq!(
            device.credentials,
            vec![Credential::PublicKey(issued_key(1))]
        );
        assert_eq!(g.unwrap().enrolled, 1);
        assert_eq!(
            reg.psk_owner(b"boot-1").unwrap(),
            None,
            "the bootstrap PSK is retired"
        );
        // A retry gets the same device; another key finds the PSK gone.
        let (again, _) = enrolled_device(run(&mut reg, 3, enroll(1)).unwrap());
        assert_eq!(again, device);
        let e = run(&mut reg, 3, enroll(2)).unwrap_err();
        assert!(e.to_string().contains("used once"), "{e}");
    }

    #[test]
    fn re_enrollment_renews_or_rotates_with_grace_until_the_new_key_is_used() {
        let mut reg = MemRegistry::default();
        run(
            &mut reg,
            1,
            Command::AddEnrollmentGroup(group("g", manufacturer_ca(), None)),
        )
        .unwrap();
        run(&mut reg, 1, by_manufacturer("d", "g", 1)).unwrap();
        let old = issued_key(1).fingerprint;
        let sren = |key, current| {
            Command::Enroll(Enrollment {
                id: id("d"),
                via: EnrollVia::Operational {
                    current,
                    grace_ms: 100,
                },
                key: issued_key(key),
            })
        };

        // Same key: the certificate is replaced in place.
        let (device, _) = enrolled_device(run(&mut reg, 2, sren(1, old)).unwrap());
        assert_eq!(device.credentials.len(), 1);

        // New key: both held, the new one marks the old with the grace.
        let (device, _) = enrolled_device(run(&mut reg, 3, sren(2, old)).unwrap());
        assert_eq!(device.credentials.len(), 2);
        let new = issued_key(2).fingerprint;
        let Credential::PublicKey(k) = &device.credentials[1] else {
            panic!()
        };
        assert_eq!(rotation_of(k), Some(Rotation { old, until_ms: 103 }));
        // A retry changes nothing.
        let (again, _) = enrolled_device(run(&mut reg, 4, sren(2, old)).unwrap());
        assert_eq!(again, device);

        // The new key used: the old one goes, the marker too; twice is a no-op.
        let done = Command::CompleteRotation {
            id: id("d"),
            new: CredentialRef::Fingerprint(new),
        };
        let Effect::Device(change) = run(&mut reg, 5, done.clone()).unwrap() else {
            panic!()
        };
        let after = change.after.unwrap();
        assert_eq!(after.fingerprints().collect::<Vec<_>>(), vec![&new]);
        let Credential::PublicKey(k) = &after.credentials[0] else {
            panic!()
        };
        assert_eq!(rotation_of(k), None);
        assert_eq!(reg.key_owner(&old).unwrap(), None);
        let Effect::Device(change) = run(&mut reg, 6, done).unwrap() else {
            panic!()
        };
        assert_eq!(change.before, change.after);

        // A key the device no longer holds cannot re-enroll it.
        let e = run(&mut reg, 7, sren(3, old)).unwrap_err();
        assert!(e.to_string().contains("no longer holds"), "{e}");
    }

    #[test]
    fn a_psk_rotation_keeps_both_until_the_new_one_is_used() {
        let mut reg = MemRegistry::default();
        let kek = Kek::from_bytes(&[1; 32]);
        let psk = |identity: &str| Credential::Psk {
            identity: identity.as_bytes().to_vec(),
            secret: kek.seal(b"0123456789abcdef", b"d"),
        };
        let create = |creds| {
            Command::Create(NewDevice {
                id: id("d"),
                tenant: TenantId::default_tenant(),
                labels: Labels::default(),
                gateway: None,
                credentials: creds,
            })
        };
        run(&mut reg, 1, create(vec![psk("old")])).unwrap();
        let rotate = |identity: &str, replaces: Option<&str>| Command::RotatePsk {
            id: id("d"),
            identity: identity.as_bytes().to_vec(),
            secret: kek.seal(b"fedcba9876543210", b"d"),
            replaces: replaces.map(|r| r.as_bytes().to_vec()),
            grace_ms: 1_000,
        };
        // A PSK the device does not hold, or its own identity again: refused.
        let e = run(&mut reg, 2, rotate("new", Some("nope"))).unwrap_err();
        assert!(matches!(e, Rejection::CredentialNotFound { .. }), "{e}");
        let e = run(&mut reg, 2, rotate("old", None)).unwrap_err();
        assert!(matches!(e, Rejection::PskIdentityTaken { .. }), "{e}");

        let Effect::Device(change) = run(&mut reg, 2, rotate("new", None)).unwrap() else {
            panic!()
        };
        let after = change.after.unwrap();
        assert_eq!(after.psk_identities().count(), 2);
        assert!(after.credentials.iter().any(|c| matches!(c,
            Credential::SuccessorPsk { replaces, .. }
                if replaces.old_identity == b"old" && replaces.until_ms == 1_002)));
        assert_eq!(reg.psk_owner(b"new").unwrap(), Some(id("d")));

        let done = Command::CompleteRotation {
            id: id("d"),
            new: CredentialRef::PskIdentity(b"new".to_vec()),
        };
        let Effect::Device(change) = run(&mut reg, 3, done.clone()).unwrap() else {
            panic!()
        };
        let after = change.after.unwrap();
        assert!(matches!(after.credentials.as_slice(),
            [Credential::Psk { identity, .. }] if identity == b"new"));
        assert_eq!(reg.psk_owner(b"old").unwrap(), None);
        let Effect::Device(change) = run(&mut reg, 4, done).unwrap() else {
            panic!()
        };
        assert_eq!(change.before, change.after);
    }
}

//! One test per registry rule, driven through the in-memory registry.

use super::*;
use crate::command::ProposalBatch;
use crate::credential::{Fingerprint, KeySource, PublicKeyCredential};
use crate::labels::Labels;
use crate::mem::MemRegistry;
use crate::names::TenantId;
use crate::secret::Kek;
use crate::view::Overlay;

fn id(s: &str) -> DeviceId {
    DeviceId::parse("id", s).unwrap()
}

fn psk(identity: &str) -> Credential {
    Credential::Psk {
        identity: identity.as_bytes().to_vec(),
        secret: Kek::from_bytes(&[1; 32]).seal(b"0123456789abcdef", b"x"),
    }
}

/// A real P-256 key, the same for the same `n`.
fn key(n: u8) -> Credential {
    use p256::pkcs8::EncodePublicKey;
    let secret = p256::SecretKey::from_slice(&[n.max(1); 32]).unwrap();
    let spki_der = secret
        .public_key()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec();
    Credential::PublicKey(PublicKeyCredential {
        fingerprint: Fingerprint::of_spki_der(&spki_der),
        spki_der,
        source: KeySource::Spki,
    })
}

fn fingerprint_of(c: &Credential) -> Fingerprint {
    match c {
        Credential::PublicKey(k) => k.fingerprint,
        _ => panic!("not a key"),
    }
}

fn tester() -> crate::Author {
    crate::Author::new("tester", crate::Role::Operator, 1)
}

fn create(name: &str, creds: Vec<Credential>) -> Proposal {
    create_with_gateway(name, creds, None)
}

fn create_with_gateway(name: &str, creds: Vec<Credential>, gateway: Option<&str>) -> Proposal {
    Proposal {
        at_ms: 1000,
        by: tester(),
        command: Command::Create(NewDevice {
            id: id(name),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: gateway.map(id),
            credentials: creds,
        }),
    }
}

fn update(name: &str) -> Command {
    Command::Update {
        id: id(name),
        labels: None,
        status: None,
        gateway: None,
        add_credentials: vec![],
        remove_credentials: vec![],
    }
}

fn at(ms: u64, command: Command) -> Proposal {
    Proposal {
        at_ms: ms,
        by: tester(),
        command,
    }
}

fn set_status(name: &str, status: StatusChange) -> Proposal {
    let mut cmd = update(name);
    if let Command::Update { status: s, .. } = &mut cmd {
        *s = Some(status);
    }
    at(2000, cmd)
}

fn revoke(name: &str) -> Proposal {
    at(
        3000,
        Command::Revoke {
            id: id(name),
            reason: "lost".into(),
        },
    )
}

#[test]
fn create_then_duplicate_id_is_refused() {
    let mut reg = MemRegistry::default();
    let c = reg.execute(&create("s1", vec![psk("s1")])).unwrap();
    assert_eq!(c.after.as_ref().unwrap().status, DeviceStatus::Active);
    assert_eq!(c.after.as_ref().unwrap().revision, 1);
    assert_eq!(
        reg.execute(&create("s1", vec![])),
        Err(Rejection::DeviceExists("s1".into()))
    );
}

#[test]
fn duplicate_psk_identity_is_refused() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("s1", vec![psk("shared")])).unwrap();
    let e = reg.execute(&create("s2", vec![psk("shared")])).unwrap_err();
    assert_eq!(
        e,
        Rejection::PskIdentityTaken {
            identity: "shared".into(),
            owner: "s1".into()
        }
    );
    assert!(
        reg.execute(&create("s3", vec![psk("x"), psk("x")]))
            .is_err(),
        "repeated within one request"
    );
}

#[test]
fn duplicate_key_is_refused() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("s1", vec![key(7)])).unwrap();
    assert!(matches!(
        reg.execute(&create("s2", vec![key(7)])),
        Err(Rejection::KeyTaken { .. })
    ));
    let mut add = update("s1");
    if let Command::Update {
        add_credentials, ..
    } = &mut add
    {
        add_credentials.push(key(7));
    }
    assert!(
        matches!(reg.execute(&at(5, add)), Err(Rejection::KeyTaken { .. })),
        "even to its owner"
    );
}

#[test]
fn revoke_is_final() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("s1", vec![psk("p1"), key(1)])).unwrap();
    let c = reg.execute(&revoke("s1")).unwrap();
    assert!(c.cuts_off_device());
    assert_eq!(
        c.revocation.as_ref().unwrap().fingerprints,
        vec![fingerprint_of(&key(1))]
    );
    assert_eq!(
        reg.execute(&set_status("s1", StatusChange::Active)),
        Err(Rejection::Revoked("s1".into()))
    );
    // Revoking again is an idempotent retry; the first reason stands.
    let again = reg
        .execute(&at(
            9,
            Command::Revoke {
                id: id("s1"),
                reason: "other".into(),
            },
        ))
        .unwrap();
    assert_eq!(again.after.unwrap().revocation.unwrap().reason, "lost");
    // After deletion, neither the id nor the credentials come back.
    reg.execute(&at(10, Command::Delete { id: id("s1") }))
        .unwrap();
    assert_eq!(
        reg.execute(&create("s1", vec![])),
        Err(Rejection::Revoked("s1".into()))
    );
    assert!(matches!(
        reg.execute(&create("s2", vec![psk("p1")])),
        Err(Rejection::RevokedCredential { .. })
    ));
    assert!(matches!(
        reg.execute(&create("s3", vec![key(1)])),
        Err(Rejection::RevokedCredential { .. })
    ));
    assert_eq!(reg.revoked_count(), 1);
}

#[test]
fn disabled_can_be_re_enabled() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("s1", vec![])).unwrap();
    let c = reg
        .execute(&set_status("s1", StatusChange::Disabled))
        .unwrap();
    assert!(c.cuts_off_device());
    assert_eq!(c.after.as_ref().unwrap().updated_ms, 2000);
    let c = reg
        .execute(&set_status("s1", StatusChange::Active))
        .unwrap();
    assert!(!c.cuts_off_device());
    assert_eq!(c.after.unwrap().status, DeviceStatus::Active);
}

#[test]
fn missing_devices_are_not_found() {
    let mut reg = MemRegistry::default();
    assert_eq!(
        reg.execute(&revoke("nope")),
        Err(Rejection::DeviceNotFound("nope".into()))
    );
    assert_eq!(
        reg.execute(&at(1, update("nope"))),
        Err(Rejection::DeviceNotFound("nope".into()))
    );
    assert_eq!(
        reg.execute(&at(1, Command::Delete { id: id("nope") })),
        Err(Rejection::DeviceNotFound("nope".into()))
    );
}

#[test]
fn credentials_can_be_rotated() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("s1", vec![psk("old")])).unwrap();
    let mut cmd = update("s1");
    if let Command::Update {
        add_credentials,
        remove_credentials,
        ..
    } = &mut cmd
    {
        add_credentials.push(psk("new"));
        remove_credentials.push(CredentialRef::PskIdentity(b"old".to_vec()));
    }
    reg.execute(&at(5, cmd)).unwrap();
    assert_eq!(reg.psk_owner(b"new").unwrap(), Some(id("s1")));
    assert_eq!(reg.psk_owner(b"old").unwrap(), None);
    // The freed identity can go to another device.
    reg.execute(&create("s2", vec![psk("old")])).unwrap();
    let mut cmd = update("s1");
    if let Command::Update {
        remove_credentials, ..
    } = &mut cmd
    {
        remove_credentials.push(CredentialRef::Fingerprint(Fingerprint([9; 32])));
    }
    assert!(matches!(
        reg.execute(&at(6, cmd)),
        Err(Rejection::CredentialNotFound { .. })
    ));
}

#[test]
fn credential_count_is_limited() {
    let mut reg = MemRegistry::default();
    let nine = (0..9).map(key).collect();
    assert!(matches!(
        reg.execute(&create("s1", nine)),
        Err(Rejection::TooManyCredentials(..))
    ));
}

#[test]
fn gateways_must_exist_and_not_be_self() {
    let mut reg = MemRegistry::default();
    assert_eq!(
        reg.execute(&create_with_gateway("spoke", vec![], Some("hub"))),
        Err(Rejection::GatewayNotFound("hub".into()))
    );
    assert_eq!(
        reg.execute(&create_with_gateway("hub", vec![], Some("hub"))),
        Err(Rejection::GatewayIsSelf("hub".into()))
    );
    reg.execute(&create("hub", vec![])).unwrap();
    let c = reg
        .execute(&create_with_gateway("spoke", vec![], Some("hub")))
        .unwrap();
    assert_eq!(c.after.unwrap().gateway, Some(id("hub")));
}

/// Commands in one raft entry see each other through the overlay exactly as if
/// they had been applied one entry at a time.
#[test]
fn a_batch_applies_like_the_same_commands_one_by_one() {
    let batch = ProposalBatch::from(vec![
        create("a", vec![psk("p")]),
        create("b", vec![psk("p")]),
        at(5, {
            let mut c = update("a");
            if let Command::Update {
                remove_credentials, ..
            } = &mut c
            {
                remove_credentials.push(CredentialRef::PskIdentity(b"p".to_vec()));
            }
            c
        }),
        create("c", vec![psk("p")]),
        revoke("c"),
        create("d", vec![psk("p")]),
        create("a", vec![]),
    ]);
    let mut one_by_one = MemRegistry::default();
    let expected: Vec<_> = batch
        .0
        .iter()
        .map(|p| one_by_one.execute(p).map(|c| c.after))
        .collect();

    let base = MemRegistry::default();
    let mut overlay = Overlay::new(&base);
    let mut got = Vec::new();
    for (i, p) in batch.0.iter().enumerate() {
        match apply(&overlay, p, i as u64 + 1).unwrap() {
            Ok(Effect::Device(change)) => {
                overlay.record(&change);
                got.push(Ok(change.after));
            }
            Ok(other) => panic!("a device command had effect {other:?}"),
            Err(r) => got.push(Err(r)),
        }
    }
    assert_eq!(got, expected);
    assert!(got[1].is_err() && got[3].is_ok() && got[5].is_err() && got[6].is_err());
}

#[test]
fn a_command_no_api_would_build_is_rejected_not_applied() {
    let mut reg = MemRegistry::default();
    let mut forged = key(3);
    if let Credential::PublicKey(k) = &mut forged {
        k.fingerprint = Fingerprint([0xee; 32]);
    }
    assert!(matches!(
        reg.execute(&create("s1", vec![forged])),
        Err(Rejection::Malformed(_))
    ));
    // Nothing was written: the id is still free.
    reg.execute(&create("s1", vec![key(3)])).unwrap();
}

fn set_device_ca(replace: bool, is_ca: bool) -> Proposal {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    if is_ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let cert = params.self_signed(&key).unwrap();
    let kek = Kek::from_bytes(&[1; 32]);
    at(
        3000,
        Command::SetDeviceCa {
            ca: crate::DeviceCa {
                certificate: cert.der().to_vec(),
                sealed_key: kek.seal(&key.serialize_der(), crate::device_ca::DEVICE_CA_KEY_AAD),
                origin: crate::CaOrigin::Generated,
                installed_ms: 3000,
            },
            replace,
        },
    )
}

#[test]
fn one_device_ca_at_founding_replaced_only_on_purpose() {
    let mut reg = MemRegistry::default();
    let first = set_device_ca(false, true);
    assert!(matches!(
        reg.execute_effect(&first),
        Ok(Effect::DeviceCa(_))
    ));
    // A second founding leader's CA loses: the first one stays.
    assert_eq!(
        reg.execute_effect(&set_device_ca(false, true)),
        Err(Rejection::DeviceCaExists)
    );
    let Command::SetDeviceCa { ca, .. } = &first.command else {
        unreachable!()
    };
    assert_eq!(reg.device_ca().unwrap().as_ref(), Some(ca));
    // An import replaces it.
    let import = set_device_ca(true, true);
    reg.execute_effect(&import).unwrap();
    let Command::SetDeviceCa { ca, .. } = &import.command else {
        unreachable!()
    };
    assert_eq!(reg.device_ca().unwrap().as_ref(), Some(ca));
    // A leaf certificate from a peer is malformed, not installed.
    assert!(matches!(
        reg.execute_effect(&set_device_ca(true, false)),
        Err(Rejection::Malformed(m)) if m.contains("not a CA")
    ));
    assert_eq!(reg.device_ca().unwrap().as_ref(), Some(ca));
}

#[test]
fn a_gateway_with_spokes_cannot_be_deleted() {
    let mut reg = MemRegistry::default();
    reg.execute(&create("hub", vec![])).unwrap();
    reg.execute(&create_with_gateway("spoke", vec![], Some("hub")))
        .unwrap();
    let delete = |name: &str| at(2000, Command::Delete { id: id(name) });
    let e = reg.execute(&delete("hub")).unwrap_err();
    assert!(
        matches!(&e, Rejection::GatewayHasSpokes { spoke, .. } if spoke == "spoke"),
        "{e}"
    );
    // In one batch: the spoke goes first, then its gateway may.
    let mut overlay = Overlay::new(&reg);
    let first = apply(&overlay, &delete("spoke"), 9).unwrap().unwrap();
    overlay.record_effect(&first);
    apply(&overlay, &delete("hub"), 9).unwrap().unwrap();
    reg.execute(&delete("spoke")).unwrap();
    reg.execute(&delete("hub")).unwrap();
}

#[test]
fn a_tenant_clone_policy_is_set_and_cleared() {
    let mut reg = MemRegistry::default();
    let acme = TenantId::parse("tenant", "acme").unwrap();
    let set = |policy| {
        at(
            1,
            Command::SetTenantClonePolicy {
                tenant: acme.clone(),
                policy,
            },
        )
    };
    reg.execute_effect(&set(Some(crate::ClonePolicy::RefuseNew)))
        .unwrap();
    assert_eq!(
        reg.tenant_clone_policy(&acme),
        Some(crate::ClonePolicy::RefuseNew)
    );
    assert_eq!(reg.tenant_clone_policy(&TenantId::default_tenant()), None);
    reg.execute_effect(&set(None)).unwrap();
    assert_eq!(reg.tenant_clone_policy(&acme), None);
}

#[test]
fn a_firmware_signer_is_added_once_and_removed() {
    use crate::{FirmwareSigner, SignerName};
    use p256::pkcs8::EncodePublicKey;
    let mut reg = MemRegistry::default();
    let key = p256::SecretKey::from_slice(&[7; 32]).unwrap();
    let signer = FirmwareSigner {
        name: SignerName::parse("name", "acme").unwrap(),
        public_spki: key
            .public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
        added_ms: 1,
    };
    reg.execute_effect(&at(1, Command::AddFirmwareSigner(signer.clone())))
        .unwrap();
    assert_eq!(
        reg.execute_effect(&at(2, Command::AddFirmwareSigner(signer.clone()))),
        Err(Rejection::SignerExists("acme".into()))
    );
    // A key that is not P-256 is malformed, whatever the registry holds.
    let mut bad = signer.clone();
    bad.name = SignerName::parse("name", "other").unwrap();
    bad.public_spki = vec![0x30, 0x03, 0x02, 0x01, 0x00];
    assert!(matches!(
        reg.execute_effect(&at(3, Command::AddFirmwareSigner(bad))),
        Err(Rejection::Malformed(_))
    ));
    let remove = Command::RemoveFirmwareSigner {
        name: signer.name.clone(),
    };
    reg.execute_effect(&at(4, remove.clone())).unwrap();
    assert_eq!(
        reg.execute_effect(&at(5, remove)),
        Err(Rejection::SignerNotFound("acme".into()))
    );
}

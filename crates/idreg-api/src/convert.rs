//! Protobuf <-> idreg-core, with validation that names the offending field.

use idreg_core::credential::{
    check_psk_identity, check_psk_secret, public_key_from_certificate_pem, public_key_from_spki_pem,
};
use idreg_core::{
    Attestation, Credential, Device, DeviceId, DeviceStatus, EnrollmentGroup, GroupName,
    IdTemplate, Kek, KeySource, Labels, PublicKeyCredential, TenantId, ValidationError,
};
use idreg_proto::v1 as pb;
use pb::credential_input::Kind as InputKind;

pub fn device_id(field: &str, text: &str) -> Result<DeviceId, ValidationError> {
    DeviceId::parse(field, text)
}

/// An optional id: empty means none.
pub fn optional_id(field: &str, text: &str) -> Result<Option<DeviceId>, ValidationError> {
    if text.is_empty() {
        Ok(None)
    } else {
        DeviceId::parse(field, text).map(Some)
    }
}

pub fn labels(
    field: &str,
    map: &std::collections::HashMap<String, String>,
) -> Result<Labels, ValidationError> {
    Labels::new(field, map.iter().map(|(k, v)| (k.clone(), v.clone())))
}

/// Validates one credential and seals a PSK secret for `device`.
pub fn credential(
    field: &str,
    device: &DeviceId,
    input: &pb::CredentialInput,
    kek: &Kek,
) -> Result<Credential, ValidationError> {
    match &input.kind {
        None => Err(ValidationError::new(
            field,
            "give one of psk, public_key_pem, certificate_pem, bootstrap_psk",
        )),
        Some(InputKind::BootstrapPsk(psk)) => {
            check_psk_identity(&format!("{field}.bootstrap_psk.identity"), &psk.identity)?;
            check_psk_secret(&format!("{field}.bootstrap_psk.secret"), &psk.secret)?;
            let group = GroupName::parse(&format!("{field}.bootstrap_psk.group"), &psk.group)?;
            Ok(Credential::BootstrapPsk {
                identity: psk.identity.clone(),
                secret: kek.seal(&psk.secret, device.as_str().as_bytes()),
                group,
            })
        }
        Some(InputKind::Psk(psk)) => {
            check_psk_identity(&format!("{field}.psk.identity"), &psk.identity)?;
            check_psk_secret(&format!("{field}.psk.secret"), &psk.secret)?;
            Ok(Credential::Psk {
                identity: psk.identity.clone(),
                secret: kek.seal(&psk.secret, device.as_str().as_bytes()),
            })
        }
        Some(InputKind::PublicKeyPem(pem)) => {
            public_key_from_spki_pem(&format!("{field}.public_key_pem"), pem)
                .map(Credential::PublicKey)
        }
        Some(InputKind::CertificatePem(pem)) => {
            public_key_from_certificate_pem(&format!("{field}.certificate_pem"), pem)
                .map(Credential::PublicKey)
        }
    }
}

pub fn credentials(
    field: &str,
    device: &DeviceId,
    inputs: &[pb::CredentialInput],
    kek: &Kek,
) -> Result<Vec<Credential>, ValidationError> {
    if inputs.len() > idreg_core::limits::MAX_CREDENTIALS {
        return Err(ValidationError::new(
            field,
            format!(
                "at most {} credentials per device",
                idreg_core::limits::MAX_CREDENTIALS
            ),
        ));
    }
    inputs
        .iter()
        .enumerate()
        .map(|(i, c)| credential(&format!("{field}[{i}]"), device, c, kek))
        .collect()
}

/// `UNSPECIFIED` is `None`.
pub fn status(field: &str, value: i32) -> Result<Option<DeviceStatus>, ValidationError> {
    match pb::DeviceStatus::try_from(value) {
        Ok(pb::DeviceStatus::Unspecified) => Ok(None),
        Ok(pb::DeviceStatus::Active) => Ok(Some(DeviceStatus::Active)),
        Ok(pb::DeviceStatus::Disabled) => Ok(Some(DeviceStatus::Disabled)),
        Ok(pb::DeviceStatus::Revoked) => Ok(Some(DeviceStatus::Revoked)),
        Err(_) => Err(ValidationError::new(
            field,
            format!("unknown status {value}"),
        )),
    }
}

pub fn status_to_proto(s: DeviceStatus) -> pb::DeviceStatus {
    match s {
        DeviceStatus::Active => pb::DeviceStatus::Active,
        DeviceStatus::Disabled => pb::DeviceStatus::Disabled,
        DeviceStatus::Revoked => pb::DeviceStatus::Revoked,
    }
}

/// The wall clock in ms since the epoch (what commands and records carry).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn timestamp(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn credential_to_proto(c: &Credential) -> pb::Credential {
    let kind = match c {
        Credential::Psk { identity, .. } => pb::credential::Kind::Psk(pb::PskInfo {
            identity: identity.clone(),
            ..Default::default()
        }),
        Credential::SuccessorPsk {
            identity, replaces, ..
        } => pb::credential::Kind::Psk(pb::PskInfo {
            identity: identity.clone(),
            replaces_identity: replaces.old_identity.clone(),
            replaces_until: Some(timestamp(replaces.until_ms)),
        }),
        Credential::BootstrapPsk {
            identity, group, ..
        } => pb::credential::Kind::BootstrapPsk(pb::BootstrapPskInfo {
            identity: identity.clone(),
            group: group.to_string(),
        }),
        Credential::PublicKey(k @ PublicKeyCredential { fingerprint, .. }) => {
            let issued = match &k.source {
                KeySource::Issued(i) => Some(i),
                _ => None,
            };
            let replaces = issued.and_then(|i| i.replaces);
            pb::credential::Kind::PublicKey(pb::PublicKeyInfo {
                fingerprint: fingerprint.to_string(),
                source: c.kind().to_owned(),
                public_key_pem: k.spki_pem(),
                certificate_subject: k.certificate_subject().unwrap_or_default(),
                not_after: issued.map(|i| timestamp(i.not_after_ms)),
                serial: issued.map(|i| hex::encode(i.serial)).unwrap_or_default(),
                replaces_fingerprint: replaces.map(|r| r.old.to_string()).unwrap_or_default(),
                replaces_until: replaces.map(|r| timestamp(r.until_ms)),
            })
        }
    };
    pb::Credential { kind: Some(kind) }
}

/// The device as the API shows it. PSK secrets are never included.
pub fn device_to_proto(d: &Device) -> pb::Device {
    pb::Device {
        id: d.id.to_string(),
        tenant: d.tenant.to_string(),
        status: status_to_proto(d.status) as i32,
        labels: d
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        gateway: d
            .gateway
            .as_ref()
            .map(|g| g.to_string())
            .unwrap_or_default(),
        credentials: d.credentials.iter().map(credential_to_proto).collect(),
        created_at: Some(timestamp(d.created_ms)),
        updated_at: Some(timestamp(d.updated_ms)),
        revision: d.revision,
        revocation_reason: d
            .revocation
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
        revoked_at: d.revocation.as_ref().map(|r| timestamp(r.at_ms)),
        gateway_role: d.labels.is_gateway(),
    }
}

/// A new enrollment group from its protobuf form; every error names its
/// field.
pub fn enrollment_group(
    g: &pb::EnrollmentGroup,
    now_ms: u64,
) -> Result<EnrollmentGroup, ValidationError> {
    use pb::enrollment_group::Attestation as PbAttestation;
    let name = GroupName::parse("group.name", &g.name)?;
    let attestation = match &g.attestation {
        Some(PbAttestation::ManufacturerCaPem(pem)) => {
            let der =
                idreg_core::credential::certificate_der_from_pem("group.manufacturer_ca_pem", pem)?;
            idreg_core::enrollment_group::check_manufacturer_ca("group.manufacturer_ca_pem", &der)?;
            Attestation::ManufacturerCa { certificate: der }
        }
        Some(PbAttestation::BootstrapPsk(true)) => Attestation::BootstrapPsk,
        _ => {
            return Err(ValidationError::new(
                "group.attestation",
                "give manufacturer_ca_pem or bootstrap_psk",
            ))
        }
    };
    let id_template = match (&attestation, g.id_template.as_str()) {
        (Attestation::ManufacturerCa { .. }, "") => {
            return Err(ValidationError::new(
                "group.id_template",
                "a manufacturer-CA group needs an id template, e.g. \"acme-{cn}\"",
            ))
        }
        (Attestation::BootstrapPsk, "") => None,
        (Attestation::BootstrapPsk, _) => {
            return Err(ValidationError::new(
                "group.id_template",
                "bootstrap-PSK devices keep the id they were registered with",
            ))
        }
        (_, t) => Some(IdTemplate::parse("group.id_template", t)?),
    };
    let tenant = if g.tenant.is_empty() {
        TenantId::default_tenant()
    } else {
        TenantId::parse("group.tenant", &g.tenant)?
    };
    let expires_ms = g
        .expires_at
        .as_ref()
        .map(|t| (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000);
    if expires_ms.is_some_and(|t| t <= now_ms) {
        return Err(ValidationError::new("group.expires_at", "is in the past"));
    }
    Ok(EnrollmentGroup {
        name,
        attestation,
        tenant,
        labels: labels("group.labels", &g.labels)?,
        gateway: optional_id("group.gateway", &g.gateway)?,
        id_template,
        max_devices: (g.max_devices > 0).then_some(g.max_devices),
        expires_ms,
        enabled: true,
        enrolled: 0,
        created_ms: now_ms,
        updated_ms: now_ms,
    })
}

pub fn enrollment_group_to_proto(g: &EnrollmentGroup) -> pb::EnrollmentGroup {
    use pb::enrollment_group::Attestation as PbAttestation;
    let (attestation, subject) = match &g.attestation {
        Attestation::ManufacturerCa { certificate } => (
            PbAttestation::ManufacturerCaPem(idreg_core::credential::pem_armour(
                "CERTIFICATE",
                certificate,
            )),
            idreg_core::device_ca::describe_certificate(certificate)
                .map(|(s, _)| s)
                .unwrap_or_default(),
        ),
        Attestation::BootstrapPsk => (PbAttestation::BootstrapPsk(true), String::new()),
    };
    pb::EnrollmentGroup {
        name: g.name.to_string(),
        attestation: Some(attestation),
        tenant: g.tenant.to_string(),
        labels: g
            .labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        gateway: g
            .gateway
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        id_template: g
            .id_template
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        max_devices: g.max_devices.unwrap_or(0),
        expires_at: g.expires_ms.map(timestamp),
        enabled: g.enabled,
        enrolled: g.enrolled,
        created_at: Some(timestamp(g.created_ms)),
        updated_at: Some(timestamp(g.updated_ms)),
        manufacturer_ca_subject: subject,
    }
}

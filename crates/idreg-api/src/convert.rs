//! Protobuf <-> idreg-core, with validation that names the offending field.

use idreg_core::credential::{
    check_psk_identity, check_psk_secret, public_key_from_certificate_pem, public_key_from_spki_pem,
};
use idreg_core::{
    Credential, Device, DeviceId, DeviceStatus, Kek, Labels, PublicKeyCredential, ValidationError,
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
            "give one of psk, public_key_pem, certificate_pem",
        )),
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
        }),
        Credential::PublicKey(k @ PublicKeyCredential { fingerprint, .. }) => {
            pb::credential::Kind::PublicKey(pb::PublicKeyInfo {
                fingerprint: fingerprint.to_string(),
                source: c.kind().to_owned(),
                public_key_pem: k.spki_pem(),
                certificate_subject: k.certificate_subject().unwrap_or_default(),
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
    }
}

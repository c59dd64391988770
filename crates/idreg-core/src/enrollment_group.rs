//! Enrollment groups: who may enroll without an operator, and what a device
//! enrolled through a group becomes. A group admits devices by one
//! attestation — a manufacturer certificate (IDevID) chaining to the group's
//! CA, or a one-time bootstrap PSK registered for the device — and sets the
//! tenant, labels, gateway and (for manufacturer certificates) the id
//! template of the devices it enrolls, bounded by a count and an expiry.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::labels::Labels;
use crate::names::{DeviceId, TenantId};

/// Longest group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 64;
/// Longest id template, in bytes.
pub const MAX_ID_TEMPLATE_LEN: usize = 128;

/// A group name: 1 to 64 bytes of `[A-Za-z0-9-_.]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        if value.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if value.len() > MAX_GROUP_NAME_LEN {
            return Err(ValidationError::new(
                field,
                format!(
                    "is {} bytes; the limit is {MAX_GROUP_NAME_LEN}",
                    value.len()
                ),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(ValidationError::new(
                field,
                format!("contains {bad:?}; allowed are ASCII letters, digits and - _ ."),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupName {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, ValidationError> {
        Self::parse("group", &value)
    }
}

impl From<GroupName> for String {
    fn from(n: GroupName) -> String {
        n.0
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a device proves it may enroll through a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attestation {
    /// A certificate chaining to this CA (DER), presented in the DTLS
    /// handshake.
    ManufacturerCa { certificate: Vec<u8> },
    /// A bootstrap PSK registered for the device with the group named.
    BootstrapPsk,
}

impl Attestation {
    pub fn kind(&self) -> &'static str {
        match self {
            Attestation::ManufacturerCa { .. } => "manufacturer-ca",
            Attestation::BootstrapPsk => "bootstrap-psk",
        }
    }
}

/// What an id template is filled from: the manufacturer certificate the
/// device authenticated with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateFields {
    /// Subject common name.
    pub cn: Option<String>,
    /// Subject serialNumber attribute.
    pub subject_serial: Option<String>,
    /// Certificate serial, lower-case hex.
    pub serial: String,
    /// SHA-256 fingerprint of the certificate's key, lower-case hex.
    pub fingerprint: String,
}

/// A device id template: literal text with `{cn}`, `{subject-serial}`,
/// `{serial}` (the certificate's serial in hex) or `{fingerprint}` (the
/// first 16 hex digits of its key's fingerprint), e.g. `acme-{cn}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct IdTemplate(String);

const PLACEHOLDERS: &[&str] = &["cn", "subject-serial", "serial", "fingerprint"];

impl IdTemplate {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        if value.is_empty() || value.len() > MAX_ID_TEMPLATE_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be 1 to {MAX_ID_TEMPLATE_LEN} bytes"),
            ));
        }
        let mut rest = value;
        let mut placeholders = 0;
        let mut literal = String::new();
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                return Err(ValidationError::new(field, "a '{' without its '}'"));
            };
            let name = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&name) {
                return Err(ValidationError::new(
                    field,
                    format!("unknown placeholder {{{name}}}; known are {{cn}}, {{subject-serial}}, {{serial}}, {{fingerprint}}"),
                ));
            }
            placeholders += 1;
            rest = &rest[open + close + 1..];
        }
        literal.push_str(rest);
        if literal.contains('}') {
            return Err(ValidationError::new(field, "a '}' without its '{'"));
        }
        if placeholders == 0 {
            return Err(ValidationError::new(
                field,
                "needs a placeholder, or every device would get the same id",
            ));
        }
        if !literal.is_empty() {
            // The literal parts must be allowed in an id on their own.
            DeviceId::parse(field, &literal)?;
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The device id for a certificate; an error names what was missing or
    /// not allowed in an id.
    pub fn render(&self, fields: &TemplateFields) -> Result<DeviceId, String> {
        let mut out = String::new();
        let mut rest = self.0.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = open + rest[open..].find('}').expect("checked at parse");
            let value = match &rest[open + 1..close] {
                "cn" => fields.cn.as_deref(),
                "subject-serial" => fields.subject_serial.as_deref(),
                "serial" => Some(fields.serial.as_str()),
                "fingerprint" => Some(&fields.fingerprint[..16.min(fields.fingerprint.len())]),
                _ => None,
            };
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                return Err(format!(
                    "the certificate has no {} for the id template {:?}",
                    &rest[open..=close],
                    self.0
                ));
            };
            out.push_str(value);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        DeviceId::parse("id", &out).map_err(|e| {
            format!(
                "id template {:?} gives {out:?}, which {}",
                self.0, e.message
            )
        })
    }
}

impl TryFrom<String> for IdTemplate {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, ValidationError> {
        Self::parse("id_template", &value)
    }
}

impl From<IdTemplate> for String {
    fn from(t: IdTemplate) -> String {
        t.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollmentGroup {
    pub name: GroupName,
    pub attestation: Attestation,
    pub tenant: TenantId,
    pub labels: Labels,
    pub gateway: Option<DeviceId>,
    /// How a device's id is made from its manufacturer certificate (unused
    /// for bootstrap PSKs: those devices are registered under their id).
    pub id_template: Option<IdTemplate>,
    pub max_devices: Option<u64>,
    pub expires_ms: Option<u64>,
    pub enabled: bool,
    /// Devices enrolled through the group so far.
    pub enrolled: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl EnrollmentGroup {
    /// Why the group admits no more devices at `now_ms`, if it does not.
    pub fn closed_reason(&self, now_ms: u64) -> Option<String> {
        if !self.enabled {
            return Some(format!("enrollment group {:?} is disabled", self.name.0));
        }
        if self.expires_ms.is_some_and(|t| now_ms >= t) {
            return Some(format!("enrollment group {:?} has expired", self.name.0));
        }
        if self.max_devices.is_some_and(|m| self.enrolled >= m) {
            return Some(format!(
                "enrollment group {:?} is full ({} devices)",
                self.name.0, self.enrolled
            ));
        }
        None
    }

    /// The manufacturer CA's subject hash, by which a presented
    /// certificate's issuer finds the group.
    pub fn ca_subject_hash(&self) -> Option<[u8; 32]> {
        match &self.attestation {
            Attestation::ManufacturerCa { certificate } => {
                let (_, cert) = x509_parser::parse_x509_certificate(certificate).ok()?;
                Some(Sha256::digest(cert.subject().as_raw()).into())
            }
            Attestation::BootstrapPsk => None,
        }
    }
}

/// Checks a manufacturer CA certificate (DER): one X.509 certificate that
/// is a CA by its basic constraints. Its key may be any algorithm the
/// signature checks know (manufacturers use P-256 and P-384 alike).
pub fn check_manufacturer_ca(field: &str, der: &[u8]) -> Result<(), ValidationError> {
    crate::device_ca::parse_ca_certificate(field, der).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> TemplateFields {
        TemplateFields {
            cn: Some("SN-0042".into()),
            subject_serial: None,
            serial: "1a2b".into(),
            fingerprint: "00112233445566778899aabbccddeeff".into(),
        }
    }

    #[test]
    fn templates_fill_from_the_certificate() {
        let t = IdTemplate::parse("t", "acme-{cn}").unwrap();
        assert_eq!(t.render(&fields()).unwrap().as_str(), "acme-SN-0042");
        let t = IdTemplate::parse("t", "{serial}.{fingerprint}").unwrap();
        assert_eq!(
            t.render(&fields()).unwrap().as_str(),
            "1a2b.0011223344556677"
        );
        let t = IdTemplate::parse("t", "x-{subject-serial}").unwrap();
        let e = t.render(&fields()).unwrap_err();
        assert!(e.contains("{subject-serial}"), "{e}");
        let mut odd = fields();
        odd.cn = Some("has space".into());
        let e = IdTemplate::parse("t", "{cn}")
            .unwrap()
            .render(&odd)
            .unwrap_err();
        assert!(e.contains("has space"), "{e}");
    }

    #[test]
    fn bad_templates_are_refused_with_the_field_named() {
        for bad in ["", "fixed", "{nope}", "{cn", "a}{cn}", "a b{cn}", "{cn}/x"] {
            let e = IdTemplate::parse("id_template", bad).unwrap_err();
            assert_eq!(e.field, "id_template", "{bad:?}");
        }
    }

    #[test]
    fn group_names_and_closed_reasons() {
        assert!(GroupName::parse("name", "factory-2026.a_b").is_ok());
        for bad in ["", "a b", "a:b", &"x".repeat(65)] {
            assert!(GroupName::parse("name", bad).is_err(), "{bad:?}");
        }
        let mut g = EnrollmentGroup {
            name: GroupName::parse("name", "g").unwrap(),
            attestation: Attestation::BootstrapPsk,
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            id_template: None,
            max_devices: Some(2),
            expires_ms: Some(1_000),
            enabled: true,
            enrolled: 1,
            created_ms: 0,
            updated_ms: 0,
        };
        assert_eq!(g.closed_reason(999), None);
        assert!(g.closed_reason(1_000).unwrap().contains("expired"));
        g.enrolled = 2;
        assert!(g.closed_reason(0).unwrap().contains("full"));
        g.enabled = false;
        assert!(g.closed_reason(0).unwrap().contains("disabled"));
    }
}

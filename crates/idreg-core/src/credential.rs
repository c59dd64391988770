//! Device credentials: a pre-shared key (identity + sealed secret) or a P-256
//! public key, given as a PEM SubjectPublicKeyInfo or inside a PEM certificate.
//!
//! Invariant: a key's [`Fingerprint`] is SHA-256 over its *canonical* SPKI DER
//! (named curve P-256, uncompressed point), so the same key given as a bare SPKI,
//! in a certificate, or presented in a DTLS handshake always maps to one entry.

use std::fmt;

use base64::Engine;
use p256::pkcs8::{DecodePublicKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::enrollment_group::GroupName;
use crate::error::ValidationError;
use crate::limits::{MAX_PEM_LEN, MAX_PSK_IDENTITY_LEN, MAX_PSK_LEN, MIN_PSK_LEN};
use crate::secret::SealedSecret;

/// SHA-256 of a canonical P-256 SubjectPublicKeyInfo.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    pub fn parse_hex(field: &str, text: &str) -> Result<Self, ValidationError> {
        let text = text.trim().trim_start_matches("sha256:");
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| {
            ValidationError::new(field, "a key fingerprint is 64 hex digits (SHA-256)")
        })?;
        Ok(Self(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Where a public key came from; kept so `device get` can show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySource {
    /// A bare SubjectPublicKeyInfo.
    Spki,
    /// A certificate (DER kept: its subject and validity are shown to operators).
    Certificate { der: Vec<u8> },
    /// A certificate the cluster's device CA issued at enrollment: accepted
    /// only until `not_after_ms`.
    Issued(IssuedKey),
}

/// The record of a certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    pub der: Vec<u8>,
    pub serial: [u8; 16],
    pub not_after_ms: u64,
    /// Set on a key that replaced another (re-enrollment with a new key):
    /// the old key stays valid until this one is first used or the grace
    /// ends, whichever comes first.
    pub replaces: Option<Rotation>,
}

/// A credential on its way out: valid until `until_ms` or until its
/// successor is first used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub old: Fingerprint,
    pub until_ms: u64,
}

/// A P-256 public key credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyCredential {
    /// Canonical SPKI DER.
    pub spki_der: Vec<u8>,
    pub fingerprint: Fingerprint,
    pub source: KeySource,
}

impl PublicKeyCredential {
    /// The key as a PEM `PUBLIC KEY` document.
    pub fn spki_pem(&self) -> String {
        pem_armour("PUBLIC KEY", &self.spki_der)
    }

    /// The certificate's subject, when the key came in a certificate.
    pub fn certificate_subject(&self) -> Option<String> {
        match &self.source {
            KeySource::Certificate { der } | KeySource::Issued(IssuedKey { der, .. }) => {
                x509_parser::parse_x509_certificate(der)
                    .ok()
                    .map(|(_, cert)| cert.subject().to_string())
            }
            KeySource::Spki => None,
        }
    }
}

/// One way a device can authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    Psk {
        identity: Vec<u8>,
        secret: SealedSecret,
    },
    PublicKey(PublicKeyCredential),
    /// A one-time PSK for enrollment only (EST-coaps through `group`):
    /// retired when the device enrolls.
    BootstrapPsk {
        identity: Vec<u8>,
        secret: SealedSecret,
        group: GroupName,
    },
    /// A PSK brought in to replace another (`device rotate-psk`): both are
    /// valid until this one is first used or the grace ends; then it is a
    /// plain `Psk` and the old one is gone.
    SuccessorPsk {
        identity: Vec<u8>,
        secret: SealedSecret,
        replaces: PskRotation,
    },
}

/// The PSK a successor replaces, and until when it stays valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PskRotation {
    pub old_identity: Vec<u8>,
    pub until_ms: u64,
}

impl Credential {
    /// The short name of the credential's kind, as the API and CoAP `/id` show it.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Psk { .. } | Credential::SuccessorPsk { .. } => "psk",
            Credential::PublicKey(PublicKeyCredential {
                source: KeySource::Spki,
                ..
            }) => "public-key",
            Credential::PublicKey(PublicKeyCredential {
                source: KeySource::Certificate { .. },
                ..
            }) => "certificate",
            Credential::PublicKey(PublicKeyCredential {
                source: KeySource::Issued(_),
                ..
            }) => "issued-certificate",
            Credential::BootstrapPsk { .. } => "bootstrap-psk",
        }
    }
}

/// Checks a PSK identity.
pub fn check_psk_identity(field: &str, identity: &[u8]) -> Result<(), ValidationError> {
    if identity.is_empty() {
        return Err(ValidationError::new(
            field,
            "PSK identity must not be empty",
        ));
    }
    if identity.len() > MAX_PSK_IDENTITY_LEN {
        return Err(ValidationError::new(
            field,
            format!(
                "PSK identity is {} bytes; the limit is {MAX_PSK_IDENTITY_LEN}",
                identity.len()
            ),
        ));
    }
    Ok(())
}

/// Checks a PSK secret's length (before it is sealed).
pub fn check_psk_secret(field: &str, secret: &[u8]) -> Result<(), ValidationError> {
    if secret.len() < MIN_PSK_LEN || secret.len() > MAX_PSK_LEN {
        return Err(ValidationError::new(
            field,
            format!(
                "PSK is {} bytes; it must be {MIN_PSK_LEN} to {MAX_PSK_LEN} bytes",
                secret.len()
            ),
        ));
    }
    Ok(())
}

fn check_pem_size(field: &str, pem: &str) -> Result<(), ValidationError> {
    if pem.len() > MAX_PEM_LEN {
        return Err(ValidationError::new(
            field,
            format!("PEM is larger than {MAX_PEM_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Canonical SPKI DER of a P-256 key given as SPKI DER, or an error naming `field`.
pub fn canonical_p256_spki(field: &str, spki_der: &[u8]) -> Result<Vec<u8>, ValidationError> {
    let key = p256::PublicKey::from_public_key_der(spki_der)
        .map_err(|e| ValidationError::new(field, format!("not a P-256 public key: {e}")))?;
    let doc = key
        .to_public_key_der()
        .map_err(|e| ValidationError::new(field, format!("cannot encode public key: {e}")))?;
    Ok(doc.as_bytes().to_vec())
}

/// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding a P-256 key.
pub fn public_key_from_spki_pem(
    field: &str,
    pem: &str,
) -> Result<PublicKeyCredential, ValidationError> {
    check_pem_size(field, pem)?;
    let key = p256::PublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
        ValidationError::new(
            field,
            format!("not a PEM P-256 public key (-----BEGIN PUBLIC KEY-----): {e}"),
        )
    })?;
    let der = key
        .to_public_key_der()
        .map_err(|e| ValidationError::new(field, format!("cannot encode public key: {e}")))?;
    let spki_der = der.as_bytes().to_vec();
    Ok(PublicKeyCredential {
        fingerprint: Fingerprint::of_spki_der(&spki_der),
        spki_der,
        source: KeySource::Spki,
    })
}

/// PEM armour (RFC 7468): base64 in 64-character lines between BEGIN and
/// END `label` lines.
pub fn pem_armour(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

/// The subject attributes idreg reads: the common name and the
/// serialNumber attribute (device ids are made from them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectNames {
    pub common_name: Option<String>,
    pub serial_number: Option<String>,
}

impl SubjectNames {
    pub fn of(name: &x509_parser::x509::X509Name<'_>) -> Self {
        let attr = |oid| {
            name.iter_by_oid(oid)
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_owned)
        };
        Self {
            common_name: attr(&x509_parser::oid_registry::OID_X509_COMMON_NAME),
            serial_number: attr(&x509_parser::oid_registry::OID_X509_SERIALNUMBER),
        }
    }
}

/// Parses exactly one DER X.509 certificate; errors name `field`.
pub fn parse_certificate<'a>(
    field: &str,
    der: &'a [u8],
) -> Result<x509_parser::certificate::X509Certificate<'a>, ValidationError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| ValidationError::new(field, format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(ValidationError::new(
            field,
            "trailing bytes after the certificate",
        ));
    }
    Ok(cert)
}

/// Parses a DER X.509 certificate whose subject key is P-256.
pub fn public_key_from_certificate_der(
    field: &str,
    der: &[u8],
) -> Result<PublicKeyCredential, ValidationError> {
    let cert = parse_certificate(field, der)?;
    let spki_der = canonical_p256_spki(field, cert.tbs_certificate.subject_pki.raw)?;
    Ok(PublicKeyCredential {
        fingerprint: Fingerprint::of_spki_der(&spki_der),
        spki_der,
        source: KeySource::Certificate { der: der.to_vec() },
    })
}

/// The DER of a PEM `CERTIFICATE`.
pub fn certificate_der_from_pem(field: &str, pem: &str) -> Result<Vec<u8>, ValidationError> {
    check_pem_size(field, pem)?;
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes()).map_err(|e| {
        ValidationError::new(
            field,
            format!("not a PEM certificate (-----BEGIN CERTIFICATE-----): {e}"),
        )
    })?;
    if parsed.label != "CERTIFICATE" {
        return Err(ValidationError::new(
            field,
            format!("PEM holds a {:?}, not a CERTIFICATE", parsed.label),
        ));
    }
    Ok(parsed.contents)
}

/// Parses a PEM `CERTIFICATE` whose subject key is P-256.
pub fn public_key_from_certificate_pem(
    field: &str,
    pem: &str,
) -> Result<PublicKeyCredential, ValidationError> {
    public_key_from_certificate_der(field, &certificate_der_from_pem(field, pem)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair() -> rcgen::KeyPair {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    }

    #[test]
    fn spki_and_certificate_of_one_key_share_a_fingerprint() {
        let kp = keypair();
        let from_spki = public_key_from_spki_pem("public_key", &kp.public_key_pem()).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["sensor-1".into()])
            .unwrap()
            .self_signed(&kp)
            .unwrap();
        let from_cert = public_key_from_certificate_pem("certificate", &cert.pem()).unwrap();
        assert_eq!(from_spki.fingerprint, from_cert.fingerprint);
        assert_eq!(
            from_cert.source,
            KeySource::Certificate {
                der: cert.der().to_vec()
            }
        );
        assert_eq!(Credential::PublicKey(from_cert).kind(), "certificate");
    }

    #[test]
    fn spki_pem_round_trips() {
        let kp = keypair();
        let k = public_key_from_spki_pem("public_key", &kp.public_key_pem()).unwrap();
        let again = public_key_from_spki_pem("public_key", &k.spki_pem()).unwrap();
        assert_eq!(again.fingerprint, k.fingerprint);
        assert_eq!(k.certificate_subject(), None);
    }

    #[test]
    fn bad_pem_is_refused_with_the_field_named() {
        let e = public_key_from_spki_pem(
            "public_key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
        )
        .unwrap_err();
        assert_eq!(e.field, "public_key");
        assert!(public_key_from_certificate_pem("certificate", "garbage").is_err());
        assert!(public_key_from_spki_pem("public_key", &"A".repeat(MAX_PEM_LEN + 1)).is_err());
    }

    #[test]
    fn other_curves_are_refused() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let e = public_key_from_spki_pem("public_key", &kp.public_key_pem()).unwrap_err();
        assert!(e.message.contains("P-256"), "{e}");
    }

    #[test]
    fn psk_lengths() {
        assert!(check_psk_secret("psk", &[0; 15]).is_err());
        assert!(check_psk_secret("psk", &[0; 16]).is_ok());
        assert!(check_psk_secret("psk", &[0; 64]).is_ok());
        assert!(check_psk_secret("psk", &[0; 65]).is_err());
        assert!(check_psk_identity("psk_identity", b"").is_err());
        assert!(check_psk_identity("psk_identity", &[b'a'; 129]).is_err());
    }

    #[test]
    fn fingerprint_hex_round_trip() {
        let fp = Fingerprint::of_spki_der(b"x");
        assert_eq!(Fingerprint::parse_hex("fp", &fp.to_string()).unwrap(), fp);
        assert!(Fingerprint::parse_hex("fp", "zz").is_err());
    }
}

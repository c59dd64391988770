//! Device certificates under the cluster's device CA: a PKCS#10 request
//! checked (it parses, its signature verifies under its own key — proof the
//! device holds the key — and the key is P-256), then a short-lived client
//! certificate for the device signed with the CA key. Pure: the caller opens
//! the CA key and supplies the time and the serial.

use p256::pkcs8::DecodePrivateKey;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber, SubjectPublicKeyInfo,
};
use x509_parser::prelude::FromDer;

use crate::credential::{canonical_p256_spki, Fingerprint, SubjectNames};
use crate::device_ca::DeviceCa;
use crate::error::ValidationError;
use crate::names::DeviceId;

/// Largest CSR taken (a P-256 request is ~250–450 bytes).
pub const MAX_CSR: usize = 4096;

/// A certification request that passed [`check_csr`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCsr {
    /// Canonical SPKI DER of the requested key.
    pub spki_der: Vec<u8>,
    pub fingerprint: Fingerprint,
    /// The subject's common name, if any (enrollment-group id templates).
    pub common_name: Option<String>,
    pub serial_number: Option<String>,
}

/// Checks a DER PKCS#10 request; every error names `field`.
pub fn check_csr(field: &str, der: &[u8]) -> Result<CheckedCsr, ValidationError> {
    if der.len() > MAX_CSR {
        return Err(ValidationError::new(
            field,
            format!("request over {MAX_CSR} bytes"),
        ));
    }
    let (rest, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(der)
            .map_err(|e| ValidationError::new(field, format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(ValidationError::new(
            field,
            "trailing bytes after the request",
        ));
    }
    let spki_der = canonical_p256_spki(field, csr.certification_request_info.subject_pki.raw)?;
    csr.verify_signature().map_err(|_| {
        ValidationError::new(
            field,
            "no proof of possession: the signature fails under the request's key",
        )
    })?;
    let names = SubjectNames::of(&csr.certification_request_info.subject);
    Ok(CheckedCsr {
        fingerprint: Fingerprint::of_spki_der(&spki_der),
        common_name: names.common_name,
        serial_number: names.serial_number,
        spki_der,
    })
}

/// A certificate issued to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    pub der: Vec<u8>,
    pub serial: [u8; 16],
    pub not_after_ms: u64,
}

/// Why a certificate could not be issued (the CA itself is unusable: a
/// server-side fault, never the device's).
#[derive(Debug, thiserror::Error)]
#[error("cannot issue under the device CA: {0}")]
pub struct IssueError(String);

/// Issues the device `device` a client certificate for `csr`'s key, valid
/// from an hour before `now_ms` (clocks disagree) for `days`.
pub fn issue(
    ca: &DeviceCa,
    ca_key_pkcs8: &[u8],
    csr: &CheckedCsr,
    device: &DeviceId,
    now_ms: u64,
    days: u32,
    serial: [u8; 16],
) -> Result<IssuedCertificate, IssueError> {
    let err = |e: &dyn std::fmt::Display| IssueError(e.to_string());
    // rcgen signs with ring; check the key is P-256 the way the rest of idreg reads keys.
    p256::SecretKey::from_pkcs8_der(ca_key_pkcs8).map_err(|e| err(&e))?;
    let ca_key = KeyPair::try_from(ca_key_pkcs8).map_err(|e| err(&e))?;
    let issuer =
        Issuer::from_ca_cert_der(&ca.certificate.as_slice().into(), ca_key).map_err(|e| err(&e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| err(&e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, device.as_str());
    let mut serial = serial;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let not_before = now_ms.saturating_sub(3_600_000) / 1000;
    let not_after_ms = now_ms + u64::from(days) * 86_400_000;
    params.not_before = offset_date_time(not_before).map_err(|e| err(&e))?;
    params.not_after = offset_date_time(not_after_ms / 1000).map_err(|e| err(&e))?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let key = SubjectPublicKeyInfo::from_der(&csr.spki_der).map_err(|e| err(&e))?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| err(&e))?;
    Ok(IssuedCertificate {
        der: cert.der().to_vec(),
        serial,
        not_after_ms: not_after_ms / 1000 * 1000,
    })
}

fn offset_date_time(unix_seconds: u64) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds as i64).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device_ca::DEVICE_CA_KEY_AAD;
    use crate::secret::Kek;

    fn device_ca(kek: &Kek) -> (DeviceCa, Vec<u8>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test device CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        let cert = params.self_signed(&key).unwrap();
        let pkcs8 = key.serialize_der();
        let ca = DeviceCa {
            certificate: cert.der().to_vec(),
            sealed_key: kek.seal(&pkcs8, DEVICE_CA_KEY_AAD),
            origin: crate::device_ca::CaOrigin::Generated,
            installed_ms: 0,
        };
        (ca, pkcs8)
    }

    fn csr(alg: &'static rcgen::SignatureAlgorithm, cn: &str) -> (Vec<u8>, KeyPair) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let req = params.serialize_request(&key).unwrap();
        (req.der().to_vec(), key)
    }

    #[test]
    fn a_p256_request_gets_a_client_certificate_chaining_to_the_ca() {
        let kek = Kek::from_bytes(&[3; 32]);
        let (ca, ca_key) = device_ca(&kek);
        let (der, key) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "factory-0042");
        let checked = check_csr("csr", &der).unwrap();
        assert_eq!(checked.common_name.as_deref(), Some("factory-0042"));
        assert_eq!(
            checked.fingerprint,
            Fingerprint::of_spki_der(&rcgen::PublicKeyData::subject_public_key_info(&key))
        );
        let device = DeviceId::parse("id", "sensor-42").unwrap();
        let now = 1_800_000_000_000;
        let issued = issue(&ca, &ca_key, &checked, &device, now, 90, [0xff; 16]).unwrap();

        let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.certificate).unwrap();
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(cert.subject().to_string().contains("sensor-42"));
        assert_eq!(
            cert.tbs_certificate.subject_pki.raw,
            checked.spki_der.as_slice()
        );
        assert_eq!(cert.raw_serial()[0] & 0x80, 0, "serial is positive");
        let not_after = cert.validity().not_after.timestamp() as u64 * 1000;
        assert_eq!(not_after, issued.not_after_ms);
        assert_eq!(not_after, now + 90 * 86_400_000);
        assert!(!cert.is_ca());
    }

    #[test]
    fn bad_requests_are_refused_with_the_field_named() {
        let (der, _) = csr(&rcgen::PKCS_ECDSA_P384_SHA384, "x");
        let e = check_csr("csr", &der).unwrap_err();
        assert!(e.message.contains("P-256"), "{e}");

        // One bit of the subject flipped: the signature no longer verifies.
        let (mut der, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "sensorA");
        let at = der.windows(7).position(|w| w == b"sensorA").unwrap();
        der[at] = b't';
        let e = check_csr("csr", &der).unwrap_err();
        assert!(e.message.contains("possession"), "{e}");

        assert!(check_csr("csr", b"\x30\x03\x02\x01\x05").is_err());
        let (der, _) = csr(&rcgen::PKCS_ECDSA_P256_SHA256, "x");
        assert!(check_csr("csr", &der[..der.len() - 1]).is_err());
        assert_eq!(
            check_csr("csr", &[0; MAX_CSR + 1]).unwrap_err().field,
            "csr"
        );
    }
}

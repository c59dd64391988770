//! The cluster's device CA: the certificate every node issues device
//! certificates under (EST enrollment), and its P-256 private key sealed with
//! the KEK, so the raft log, the state machine and snapshots hold only
//! ciphertext, as for PSKs. Replicated, so any node can issue.

use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::credential::{canonical_p256_spki, parse_certificate};
use crate::error::ValidationError;
use crate::secret::{Kek, SealedSecret};

/// Associated data the CA key is sealed under, so a sealed PSK can never be
/// passed off as the CA key or the other way round.
pub const DEVICE_CA_KEY_AAD: &[u8] = b"idreg:device-ca-key";

/// A generated CA's lifetime. Device certificates under it live for days
/// (`--device-cert-days`); the CA outlives many fleets' hardware.
pub const GENERATED_CA_YEARS: i32 = 20;

/// Largest CA certificate taken (a P-256 CA is well under 1 KB).
pub const MAX_CA_CERTIFICATE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaOrigin {
    /// Made by the cluster when it was founded.
    Generated,
    /// Brought in by an operator (`idreg ca import`).
    Imported,
}

impl CaOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            CaOrigin::Generated => "generated",
            CaOrigin::Imported => "imported",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCa {
    /// The CA certificate, DER.
    pub certificate: Vec<u8>,
    /// Its PKCS#8 DER private key, sealed under [`DEVICE_CA_KEY_AAD`].
    pub sealed_key: SealedSecret,
    pub origin: CaOrigin,
    /// When it was installed (the proposer's clock).
    pub installed_ms: u64,
}

impl DeviceCa {
    /// A new P-256 device CA valid from the start of last year (clocks in a
    /// fleet disagree) for [`GENERATED_CA_YEARS`], its key sealed with `kek`.
    pub fn generate(kek: &Kek, now_ms: u64) -> Result<Self, rcgen::Error> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "idreg device CA");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "idreg");
        // Issues device certificates only, never another CA.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let year = 1970 + (now_ms / 1000 / 31_556_952) as i32;
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + GENERATED_CA_YEARS, 1, 1);
        let cert = params.self_signed(&key)?;
        let pkcs8 = zeroize::Zeroizing::new(key.serialize_der());
        Ok(DeviceCa {
            certificate: cert.der().to_vec(),
            sealed_key: kek.seal(&pkcs8, DEVICE_CA_KEY_AAD),
            origin: CaOrigin::Generated,
            installed_ms: now_ms,
        })
    }

    /// SHA-256 of the certificate DER, as `openssl x509 -fingerprint -sha256`
    /// prints it (without the colons).
    pub fn certificate_sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.certificate).into()
    }
}

/// Checks a CA certificate (DER): one X.509 certificate, a CA by its basic
/// constraints, allowed to sign certificates if it says what it may do, with
/// a P-256 key. Returns the canonical SPKI DER of its key.
pub fn check_ca_certificate(field: &str, der: &[u8]) -> Result<Vec<u8>, ValidationError> {
    let cert = parse_ca_certificate(field, der)?;
    if let Ok(Some(usage)) = cert.key_usage() {
        if !usage.value.key_cert_sign() {
            return Err(ValidationError::new(
                field,
                "its keyUsage does not allow keyCertSign",
            ));
        }
    }
    canonical_p256_spki(field, cert.tbs_certificate.subject_pki.raw)
}

/// One X.509 certificate (DER, at most [`MAX_CA_CERTIFICATE`]) that is a
/// CA by its basic constraints; any key algorithm.
pub fn parse_ca_certificate<'a>(
    field: &str,
    der: &'a [u8],
) -> Result<x509_parser::certificate::X509Certificate<'a>, ValidationError> {
    if der.len() > MAX_CA_CERTIFICATE {
        return Err(ValidationError::new(
            field,
            format!("certificate over {MAX_CA_CERTIFICATE} bytes"),
        ));
    }
    let cert = parse_certificate(field, der)?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    if !is_ca {
        return Err(ValidationError::new(
            field,
            "not a CA certificate (basicConstraints CA:TRUE is required)",
        ));
    }
    Ok(cert)
}

/// Checks that `pkcs8_der` is a P-256 private key whose public half is the
/// CA certificate's key (`spki_der`, canonical).
pub fn check_ca_key(field: &str, pkcs8_der: &[u8], spki_der: &[u8]) -> Result<(), ValidationError> {
    let key = p256::SecretKey::from_pkcs8_der(pkcs8_der)
        .map_err(|e| ValidationError::new(field, format!("not a P-256 private key: {e}")))?;
    let public = key
        .public_key()
        .to_public_key_der()
        .map_err(|e| ValidationError::new(field, format!("cannot encode public key: {e}")))?;
    if public.as_bytes() != spki_der {
        return Err(ValidationError::new(
            field,
            "the private key does not belong to the CA certificate",
        ));
    }
    Ok(())
}

/// The PKCS#8 DER of a PEM P-256 private key, given as `PRIVATE KEY`
/// (PKCS#8, as rcgen and `openssl genpkey` write) or `EC PRIVATE KEY` (SEC1,
/// as `openssl ecparam -genkey` writes). Wiped when dropped.
pub fn private_key_pkcs8_from_pem(
    field: &str,
    pem: &str,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ValidationError> {
    use p256::pkcs8::EncodePrivateKey;
    if pem.len() > 16 * 1024 {
        return Err(ValidationError::new(field, "PEM too large"));
    }
    let pem = pem.trim();
    let key = if pem.contains("BEGIN EC PRIVATE KEY") {
        // `openssl ecparam -genkey` puts an EC PARAMETERS block first.
        let start = pem.find("-----BEGIN EC PRIVATE KEY").unwrap_or(0);
        p256::SecretKey::from_sec1_pem(&pem[start..])
            .map_err(|e| ValidationError::new(field, format!("not a P-256 EC PRIVATE KEY: {e}")))?
    } else {
        p256::SecretKey::from_pkcs8_pem(pem).map_err(|e| {
            ValidationError::new(
                field,
                format!("not a PEM P-256 private key (PRIVATE KEY or EC PRIVATE KEY): {e}"),
            )
        })?
    };
    let der = key
        .to_pkcs8_der()
        .map_err(|e| ValidationError::new(field, format!("cannot encode private key: {e}")))?;
    Ok(zeroize::Zeroizing::new(der.as_bytes().to_vec()))
}

/// What `idreg ca show` prints of a certificate: its subject and when it
/// expires (ms since the epoch).
pub fn describe_certificate(der: &[u8]) -> Option<(String, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp().max(0) as u64 * 1000;
    Some((cert.subject().to_string(), not_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_ca_passes_the_checks_apply_makes_and_its_key_opens() {
        let kek = Kek::from_bytes(&[7; 32]);
        let ca = DeviceCa::generate(&kek, 1_780_000_000_000).unwrap();
        let spki = check_ca_certificate("certificate", &ca.certificate).unwrap();
        let key = kek.open(&ca.sealed_key, DEVICE_CA_KEY_AAD).unwrap();
        check_ca_key("key", &key, &spki).unwrap();
        assert!(kek.open(&ca.sealed_key, b"sensor-1").is_err());
    }

    fn ca(is_ca: bool) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        if is_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), key.serialize_der())
    }

    #[test]
    fn a_p256_ca_with_its_key_passes() {
        let (cert, key) = ca(true);
        let spki = check_ca_certificate("certificate", &cert).unwrap();
        check_ca_key("key", &key, &spki).unwrap();
    }

    #[test]
    fn a_leaf_a_foreign_key_and_garbage_are_refused() {
        let (leaf, _) = ca(false);
        let e = check_ca_certificate("certificate", &leaf).unwrap_err();
        assert!(e.message.contains("not a CA"), "{e}");

        let (cert, _) = ca(true);
        let (_, other_key) = ca(true);
        let spki = check_ca_certificate("certificate", &cert).unwrap();
        let e = check_ca_key("key", &other_key, &spki).unwrap_err();
        assert!(e.message.contains("does not belong"), "{e}");
        assert!(check_ca_key("key", b"junk", &spki).is_err());

        let mut trailing = cert.clone();
        trailing.push(0);
        assert!(check_ca_certificate("certificate", &trailing).is_err());
        assert!(check_ca_certificate("certificate", &cert[..cert.len() - 3]).is_err());
    }

    #[test]
    fn pem_forms_of_the_certificate_and_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let der =
            crate::credential::certificate_der_from_pem("certificate_pem", &cert.pem()).unwrap();
        assert_eq!(der, cert.der().to_vec());
        let spki = check_ca_certificate("certificate_pem", &der).unwrap();
        let pkcs8 = private_key_pkcs8_from_pem("private_key_pem", &key.serialize_pem()).unwrap();
        check_ca_key("private_key_pem", &pkcs8, &spki).unwrap();

        // SEC1, as `openssl ecparam -genkey` writes it (parameters first).
        use p256::pkcs8::DecodePrivateKey;
        let secret = p256::SecretKey::from_pkcs8_der(&pkcs8).unwrap();
        let sec1 = secret.to_sec1_pem(Default::default()).unwrap();
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
            sec1.as_str()
        );
        let again = private_key_pkcs8_from_pem("private_key_pem", &with_params).unwrap();
        check_ca_key("private_key_pem", &again, &spki).unwrap();

        let e = private_key_pkcs8_from_pem("private_key_pem", &cert.pem()).unwrap_err();
        assert_eq!(e.field, "private_key_pem");
        let e =
            crate::credential::certificate_der_from_pem("certificate_pem", &key.serialize_pem())
                .unwrap_err();
        assert!(e.message.contains("CERTIFICATE"), "{e}");
        let (subject, not_after) = describe_certificate(&der).unwrap();
        assert!(subject.contains("rcgen"), "{subject}");
        assert!(not_after > 0);
    }

    #[test]
    fn a_ca_on_another_curve_is_refused() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let e = check_ca_certificate("certificate", cert.der()).unwrap_err();
        assert!(e.message.contains("P-256"), "{e}");
    }
}

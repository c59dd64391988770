//! What `apply` re-checks in a command before it reads the registry: the
//! invariants the state machine relies on that serde alone does not enforce
//! (a fingerprint that matches its key, sizes the API bounds). A command built
//! by the API always passes; one crafted by a peer is rejected here, so it can
//! never corrupt an index or stop the state machine.

use crate::command::{Command, CredentialRef, EnrollVia};
use crate::credential::{
    canonical_p256_spki, check_psk_identity, Credential, Fingerprint, IssuedKey, KeySource,
};
use crate::device_ca::check_ca_certificate;
use crate::enrollment_group::{check_manufacturer_ca, Attestation};
use crate::error::ValidationError;
use crate::limits::{MAX_CREDENTIALS, MAX_PEM_LEN, MAX_PSK_LEN, MAX_REASON_LEN};

/// Largest sealed PSK: the longest secret plus the AES-GCM tag.
const MAX_SEALED_LEN: usize = MAX_PSK_LEN + 16;

/// Checks everything in `command` that does not depend on the registry.
pub fn check_command(command: &Command) -> Result<(), ValidationError> {
    match command {
        Command::Create(new) => check_credentials("credentials", &new.credentials),
        Command::Update {
            add_credentials,
            remove_credentials,
            ..
        } => {
            check_credentials("add_credentials", add_credentials)?;
            if remove_credentials.len() > MAX_CREDENTIALS {
                return Err(ValidationError::new(
                    "remove_credentials",
                    format!("more than {MAX_CREDENTIALS} credentials"),
                ));
            }
            for r in remove_credentials {
                if let CredentialRef::PskIdentity(id) = r {
                    check_psk_identity("remove_credentials", id)?;
                }
            }
            Ok(())
        }
        Command::Revoke { reason, .. } => {
            if reason.len() > MAX_REASON_LEN {
                return Err(ValidationError::new(
                    "reason",
                    format!("longer than {MAX_REASON_LEN} bytes"),
                ));
            }
            Ok(())
        }
        Command::Delete { .. } => Ok(()),
        Command::AddEnrollmentGroup(group) => {
            match &group.attestation {
                Attestation::ManufacturerCa { certificate } => {
                    check_manufacturer_ca("ca_certificate", certificate)?;
                    if group.id_template.is_none() {
                        return Err(ValidationError::new(
                            "id_template",
                            "a manufacturer-CA group needs an id template",
                        ));
                    }
                }
                Attestation::BootstrapPsk => {}
            }
            Ok(())
        }
        Command::SetEnrollmentGroupEnabled { .. } | Command::DeleteEnrollmentGroup { .. } => Ok(()),
        Command::Enroll(e) => {
            if let EnrollVia::BootstrapPsk { identity } = &e.via {
                check_psk_identity("identity", identity)?;
            }
            if !matches!(e.key.source, KeySource::Issued(_)) {
                return Err(ValidationError::new(
                    "key",
                    "an enrollment carries the certificate issued for its key",
                ));
            }
            check_credentials("key", &[Credential::PublicKey(e.key.clone())])
        }
        Command::CompleteRotation { new, .. } => match new {
            CredentialRef::PskIdentity(identity) => check_psk_identity("new", identity),
            CredentialRef::Fingerprint(_) => Ok(()),
        },
        Command::RotatePsk {
            identity,
            secret,
            replaces,
            ..
        } => {
            check_psk_identity("identity", identity)?;
            if let Some(old) = replaces {
                check_psk_identity("replaces", old)?;
            }
            if secret.ciphertext.len() > MAX_SEALED_LEN {
                return Err(ValidationError::new("secret", "sealed PSK is too large"));
            }
            Ok(())
        }
        Command::SetRlKey { key, .. } => {
            use p256::pkcs8::DecodePublicKey;
            p256::PublicKey::from_public_key_der(&key.public_spki)
                .map_err(|e| ValidationError::new("key", format!("not a P-256 key: {e}")))?;
            if key.sealed_key.ciphertext.len() > 1024 {
                return Err(ValidationError::new("key", "sealed key over 1024 bytes"));
            }
            Ok(())
        }
        Command::SetDeviceCa { ca, .. } => {
            check_ca_certificate("certificate", &ca.certificate)?;
            // A PKCS#8 P-256 key is ~140 bytes; the bound keeps a peer from
            // replicating anything large under this name.
            if ca.sealed_key.ciphertext.len() > 1024 {
                return Err(ValidationError::new("key", "sealed key over 1024 bytes"));
            }
            Ok(())
        }
        // The tenant is a validated name by its type; the policy an enum.
        Command::SetTenantClonePolicy { .. } | Command::RemoveFirmwareSigner { .. } => Ok(()),
        Command::AddFirmwareSigner(s) => {
            crate::credential::canonical_p256_spki("public_key", &s.public_spki).map(|_| ())
        }
        Command::BeginFirmwareUpload { cose, .. } => {
            if cose.len() > MAX_MANIFEST_LEN {
                return Err(ValidationError::new(
                    "manifest",
                    format!("over {MAX_MANIFEST_LEN} bytes"),
                ));
            }
            Ok(())
        }
        Command::PutFirmwareChunk { bytes, .. } => {
            if bytes.is_empty() || bytes.len() > crate::firmware_release::CHUNK_SIZE {
                return Err(ValidationError::new(
                    "chunk",
                    format!("1 to {} bytes", crate::firmware_release::CHUNK_SIZE),
                ));
            }
            Ok(())
        }
        Command::SetRollout(r) => {
            if !(1..=100).contains(&r.percent) {
                return Err(ValidationError::new("percent", "1 to 100"));
            }
            if r.labels.len() > crate::limits::MAX_LABELS {
                return Err(ValidationError::new(
                    "labels",
                    format!("more than {} labels", crate::limits::MAX_LABELS),
                ));
            }
            for (k, v) in &r.labels {
                crate::labels::check_label("labels", k, v)?;
            }
            Ok(())
        }
        Command::FinishFirmwareUpload { .. }
        | Command::AbortFirmwareUpload { .. }
        | Command::RemoveFirmwareRelease { .. }
        | Command::SetRolloutPaused { .. }
        | Command::RemoveRollout { .. }
        | Command::ReportFirmware { .. } => Ok(()),
    }
}

/// Largest signed manifest accepted: a few hundred bytes in practice.
pub const MAX_MANIFEST_LEN: usize = 4096;

fn check_credentials(field: &str, creds: &[Credential]) -> Result<(), ValidationError> {
    if creds.len() > MAX_CREDENTIALS {
        // `apply` refuses the count itself (TooManyCredentials); nothing
        // beyond it is worth parsing.
        return Ok(());
    }
    for (i, c) in creds.iter().enumerate() {
        let field = format!("{field}[{i}]");
        match c {
            Credential::Psk { identity, secret }
            | Credential::BootstrapPsk {
                identity, secret, ..
            }
            | Credential::SuccessorPsk {
                identity, secret, ..
            } => {
                check_psk_identity(&field, identity)?;
                if secret.ciphertext.len() > MAX_SEALED_LEN {
                    return Err(ValidationError::new(field, "sealed PSK is too large"));
                }
            }
            Credential::PublicKey(k) => {
                if k.spki_der.len() > MAX_PEM_LEN {
                    return Err(ValidationError::new(field, "public key is too large"));
                }
                if let KeySource::Certificate { der } | KeySource::Issued(IssuedKey { der, .. }) =
                    &k.source
                {
                    if der.len() > MAX_PEM_LEN {
                        return Err(ValidationError::new(field, "certificate is too large"));
                    }
                }
                // The key index is keyed by the fingerprint: it must be the key's.
                let canonical = canonical_p256_spki(&field, &k.spki_der)?;
                if canonical != k.spki_der || Fingerprint::of_spki_der(&canonical) != k.fingerprint
                {
                    return Err(ValidationError::new(
                        field,
                        "fingerprint does not match the key (or the key is not canonical)",
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewDevice;
    use crate::credential::public_key_from_spki_pem;
    use crate::secret::Kek;
    use crate::{DeviceId, Labels, TenantId};

    fn create(credentials: Vec<Credential>) -> Command {
        Command::Create(NewDevice {
            id: DeviceId::parse("id", "d1").unwrap(),
            tenant: TenantId::default_tenant(),
            labels: Labels::default(),
            gateway: None,
            credentials,
        })
    }

    fn key() -> crate::PublicKeyCredential {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        public_key_from_spki_pem("public_key", &kp.public_key_pem()).unwrap()
    }

    #[test]
    fn commands_the_api_builds_pass() {
        let kek = Kek::from_bytes(&[3; 32]);
        let psk = Credential::Psk {
            identity: b"d1".to_vec(),
            secret: kek.seal(&[1; 64], b"d1"),
        };
        assert!(check_command(&create(vec![psk, Credential::PublicKey(key())])).is_ok());
    }

    #[test]
    fn a_fingerprint_that_is_not_the_keys_is_refused() {
        let mut k = key();
        k.fingerprint = Fingerprint([0; 32]);
        let e = check_command(&create(vec![Credential::PublicKey(k)])).unwrap_err();
        assert!(e.message.contains("fingerprint"), "{e}");
        let mut k = key();
        k.spki_der = vec![0x30; 100];
        assert!(check_command(&create(vec![Credential::PublicKey(k)])).is_err());
    }

    #[test]
    fn oversized_parts_are_refused() {
        let kek = Kek::from_bytes(&[3; 32]);
        let long_identity = Credential::Psk {
            identity: vec![b'a'; 4096],
            secret: kek.seal(&[1; 16], b"d1"),
        };
        assert!(check_command(&create(vec![long_identity])).is_err());
        let revoke = Command::Revoke {
            id: DeviceId::parse("id", "d1").unwrap(),
            reason: "x".repeat(MAX_REASON_LEN + 1),
        };
        assert!(check_command(&revoke).is_err());
    }
}

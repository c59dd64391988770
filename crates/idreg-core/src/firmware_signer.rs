//! A vendor trusted to sign firmware manifests: a name and a P-256 public
//! key. Only manifests signed by a registered signer are accepted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::names::SignerName;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareSigner {
    pub name: SignerName,
    /// SubjectPublicKeyInfo DER of a P-256 key.
    pub public_spki: Vec<u8>,
    pub added_ms: u64,
}

impl FirmwareSigner {
    /// SHA-256 of the public key's DER, hex (what `openssl pkey -pubin
    /// -outform DER | sha256sum` prints).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.public_spki))
    }

    /// The key as PEM or DER SubjectPublicKeyInfo, checked; its DER.
    pub fn key_from_pem_or_der(field: &str, key: &[u8]) -> Result<Vec<u8>, ValidationError> {
        match std::str::from_utf8(key) {
            Ok(text) if text.trim_start().starts_with("-----") => {
                Ok(crate::credential::public_key_from_spki_pem(field, text)?.spki_der)
            }
            _ => crate::credential::canonical_p256_spki(field, key),
        }
    }
}

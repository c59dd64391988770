//! Secrets at rest: a PSK secret is sealed with the cluster's key-encryption key
//! (KEK, AES-256-GCM, the device id as associated data) before its command is
//! proposed, so the raft log, the state machine and snapshots only ever hold
//! ciphertext. Only the node that needs the clear secret (the DTLS handshake)
//! opens it, in memory.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a KEK or a sealed secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a KEK must be 32 bytes: raw, or as 64 hex digits, or base64; got {0} bytes that are none of these")]
    BadKekLength(usize),
    #[error("secret was sealed with KEK {sealed_with}, but this node has KEK {ours}")]
    WrongKek { sealed_with: String, ours: String },
    #[error("secret failed authentication (tampered, or sealed for another device)")]
    Corrupt,
}

/// The key-encryption key. Cheap to clone; never printed; the key bytes are
/// wiped when the last clone is dropped.
#[derive(Clone)]
pub struct Kek {
    cipher: Aes256Gcm,
    id: [u8; 8],
    key: std::sync::Arc<zeroize::Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id_hex())
    }
}

/// Text that is sealed once with a new KEK and opened at every start, so a
/// wrong KEK is noticed at start-up rather than at the first handshake.
const CHECK_TEXT: &[u8] = b"idreg key-encryption key check v1";
const CHECK_AAD: &[u8] = b"idreg:kek-check";

impl Kek {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
        let digest = Sha256::digest([b"idreg-kek-id:".as_slice(), key].concat());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self {
            cipher,
            id,
            key: std::sync::Arc::new(zeroize::Zeroizing::new(*key)),
        }
    }

    /// A key for one purpose (`label`), derived from the KEK with
    /// HMAC-SHA256, so one secret keys seals, snapshot MACs and more without
    /// any two uses sharing a key.
    pub fn subkey(&self, label: &str) -> zeroize::Zeroizing<[u8; 32]> {
        use hmac::{KeyInit as _, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes any key length");
        mac.update(b"idreg-subkey:");
        mac.update(label.as_bytes());
        zeroize::Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// Reads a KEK file's content: 32 raw bytes, 64 hex digits or 44 base64
    /// characters, surrounding whitespace ignored (Kubernetes Secrets often end
    /// in a newline).
    pub fn parse_file_content(content: &[u8]) -> Result<Self, SecretError> {
        Ok(Self::from_bytes(&*Self::parse_key_bytes(content)?))
    }

    /// The 32 key bytes a KEK file holds (see [`Kek::parse_file_content`]),
    /// wiped when dropped.
    pub fn parse_key_bytes(content: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>, SecretError> {
        let trimmed = content.trim_ascii();
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        if content.len() == 32 {
            key.copy_from_slice(content);
        } else if trimmed.len() == 64 && hex::decode_to_slice(trimmed, key.as_mut_slice()).is_ok() {
        } else if let Some(decoded) = base64_decode_32(trimmed) {
            *key = decoded;
        } else {
            return Err(SecretError::BadKekLength(content.len()));
        }
        Ok(key)
    }

    /// A fresh random KEK, as 64 hex digits ready to write to a file.
    pub fn generate_hex() -> String {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        hex::encode(key)
    }

    /// A short public identifier of this key (not secret: a hash prefix).
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }

    pub fn seal(&self, secret: &[u8], aad: &[u8]) -> SealedSecret {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: secret, aad })
            .expect("AES-GCM encryption of a short secret cannot fail");
        SealedSecret {
            kek_id: self.id,
            nonce,
            ciphertext,
        }
    }

    /// The clear secret, wiped from memory when the caller drops it.
    pub fn open(
        &self,
        sealed: &SealedSecret,
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, SecretError> {
        if sealed.kek_id != self.id {
            return Err(SecretError::WrongKek {
                sealed_with: hex::encode(sealed.kek_id),
                ours: self.id_hex(),
            });
        }
        self.cipher
            .decrypt(
                &Nonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(zeroize::Zeroizing::new)
            .map_err(|_| SecretError::Corrupt)
    }

    /// A value to keep beside the data this KEK protects; see [`Kek::verify_check`].
    pub fn make_check(&self) -> SealedSecret {
        self.seal(CHECK_TEXT, CHECK_AAD)
    }

    /// Whether this KEK is the one that made `check`.
    pub fn verify_check(&self, check: &SealedSecret) -> Result<(), SecretError> {
        match self.open(check, CHECK_AAD)? {
            text if text.as_slice() == CHECK_TEXT => Ok(()),
            _ => Err(SecretError::Corrupt),
        }
    }
}

fn base64_decode_32(text: &[u8]) -> Option<[u8; 32]> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    bytes.try_into().ok()
}

/// A secret sealed with a KEK: safe to replicate and store.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    pub kek_id: [u8; 8],
    pub nonce: [u8; 12],
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedSecret(kek {}, {} bytes)",
            hex::encode(self.kek_id),
            self.ciphertext.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Kek {
        Kek::from_bytes(&[b; 32])
    }

    #[test]
    fn seal_open_round_trip_and_no_clear_text() {
        let k = kek(1);
        let s = k.seal(b"correct horse battery", b"sensor-1");
        assert!(!s.ciphertext.windows(7).any(|w| w == b"correct"));
        assert_eq!(
            k.open(&s, b"sensor-1").unwrap().as_slice(),
            b"correct horse battery"
        );
    }

    #[test]
    fn wrong_device_or_key_fails() {
        let s = kek(1).seal(b"secret-secret-16", b"sensor-1");
        assert_eq!(kek(1).open(&s, b"sensor-2"), Err(SecretError::Corrupt));
        assert!(matches!(
            kek(2).open(&s, b"sensor-1"),
            Err(SecretError::WrongKek { .. })
        ));
    }

    #[test]
    fn check_value_detects_another_kek() {
        let check = kek(1).make_check();
        assert!(kek(1).verify_check(&check).is_ok());
        assert!(kek(2).verify_check(&check).is_err());
    }

    #[test]
    fn subkeys_differ_by_label_and_by_kek() {
        assert_eq!(*kek(1).subkey("a"), *kek(1).subkey("a"));
        assert_ne!(*kek(1).subkey("a"), *kek(1).subkey("b"));
        assert_ne!(*kek(1).subkey("a"), *kek(2).subkey("a"));
    }

    #[test]
    fn kek_file_formats() {
        let raw = [7u8; 32];
        let id = Kek::from_bytes(&raw).id_hex();
        assert_eq!(Kek::parse_file_content(&raw).unwrap().id_hex(), id);
        let hexed = format!("{}\n", hex::encode(raw));
        assert_eq!(
            Kek::parse_file_content(hexed.as_bytes()).unwrap().id_hex(),
            id
        );
        // base64 of 32 bytes of 0x07
        let b64 = b"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n";
        assert_eq!(Kek::parse_file_content(b64).unwrap().id_hex(), id);
        assert!(matches!(
            Kek::parse_file_content(b"short"),
            Err(SecretError::BadKekLength(5))
        ));
        assert_eq!(Kek::generate_hex().len(), 64);
    }
}

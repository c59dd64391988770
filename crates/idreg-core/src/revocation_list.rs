//! The signed revocation list: a CBOR document of the revoked devices —
//! ids, key fingerprints and SHA-256 hashes of PSK identities — inside a
//! COSE_Sign1 (RFC 9052, ES256) under the cluster's revocation-list key, so
//! a gateway or an air-gapped site can check it offline. The key is P-256,
//! sealed with the KEK and replicated like the device CA's.
//!
//! Document (a CBOR map, text keys):
//! `version` (revocations ever applied), `issued_at` and `next_update`
//! (seconds since the epoch), `since` (deltas only: the version the delta
//! starts after), `revoked`: an array of maps `id`, `revoked_at` (ms),
//! `version` (the list version that added it; 0 if older than the index),
//! `fingerprints` (32-byte strings), `psk_identity_sha256` (32-byte strings).

use ciborium::value::{Integer, Value};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cose_sign1::encode;
use crate::credential::pem_armour;
use crate::device::RevocationRecord;
use crate::secret::{Kek, SealedSecret};

/// Associated data the signing key is sealed under.
pub const RL_KEY_AAD: &[u8] = b"idreg:rl-signing-key";

/// How long a list is declared good for: a gateway that has not heard a
/// newer one by then should treat its copy as stale.
pub const NEXT_UPDATE_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlSigningKey {
    /// SubjectPublicKeyInfo DER of the P-256 public key.
    pub public_spki: Vec<u8>,
    /// PKCS#8 DER private key, sealed under [`RL_KEY_AAD`].
    pub sealed_key: SealedSecret,
    pub installed_ms: u64,
}

impl RlSigningKey {
    pub fn generate(kek: &Kek, now_ms: u64) -> Self {
        // A random 32-byte string is a valid scalar but for ~2^-128 of them.
        let secret = loop {
            if let Ok(k) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break k;
            }
        };
        let pkcs8 = secret.to_pkcs8_der().expect("a P-256 key encodes");
        let public = secret
            .public_key()
            .to_public_key_der()
            .expect("a P-256 key encodes");
        Self {
            public_spki: public.as_bytes().to_vec(),
            sealed_key: kek.seal(pkcs8.as_bytes(), RL_KEY_AAD),
            installed_ms: now_ms,
        }
    }

    pub fn public_pem(&self) -> String {
        pem_armour("PUBLIC KEY", &self.public_spki)
    }

    /// SHA-256 of the public key's SPKI DER, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.public_spki))
    }
}

/// One revoked device as the list carries it, with the list version that
/// added it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRevocation {
    pub version: u64,
    pub record: RevocationRecord,
}

/// The CBOR document of a full list (`since` `None`) or a delta.
pub fn document(
    version: u64,
    since: Option<u64>,
    issued_at_ms: u64,
    entries: &[ListedRevocation],
) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let uint = |n: u64| Value::Integer(Integer::from(n));
    let revoked = entries
        .iter()
        .map(|e| {
            Value::Map(vec![
                (text("id"), text(e.record.device.as_str())),
                (text("revoked_at"), uint(e.record.at_ms)),
                (text("version"), uint(e.version)),
                (
                    text("fingerprints"),
                    Value::Array(
                        e.record
                            .fingerprints
                            .iter()
                            .map(|f| Value::Bytes(f.0.to_vec()))
                            .collect(),
                    ),
                ),
                (
                    text("psk_identity_sha256"),
                    Value::Array(
                        e.record
                            .psk_identities
                            .iter()
                            .map(|i| Value::Bytes(Sha256::digest(i).to_vec()))
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    let issued = issued_at_ms / 1000;
    let mut map = vec![
        (text("version"), uint(version)),
        (text("issued_at"), uint(issued)),
        (text("next_update"), uint(issued + NEXT_UPDATE_SECS)),
    ];
    if let Some(since) = since {
        map.push((text("since"), uint(since)));
    }
    map.push((text("revoked"), Value::Array(revoked)));
    encode(&Value::Map(map))
}

/// Why a signed list could not be made or checked.
pub type RlError = crate::cose_sign1::CoseError;

/// The signed list at `version`: whole, or the delta after `since`, from
/// the revocations read (those past `version`, applied since it was read,
/// wait for the next version's list, so a list says exactly its version).
pub fn signed_list(
    key: &RlSigningKey,
    kek: &Kek,
    version: u64,
    since: Option<u64>,
    entries: Vec<ListedRevocation>,
    now_ms: u64,
) -> Result<Vec<u8>, RlError> {
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|e| e.version <= version)
        .collect();
    let doc = document(version, since, now_ms, &entries);
    let pkcs8 = kek
        .open(&key.sealed_key, RL_KEY_AAD)
        .map_err(|_| RlError::Key("it cannot be opened with this node's KEK".into()))?;
    sign(&doc, &pkcs8)
}

pub use crate::cose_sign1::{sign, verify};

/// What a verified document says, for `idreg rl verify`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentSummary {
    pub version: u64,
    pub since: Option<u64>,
    pub issued_at: u64,
    pub next_update: u64,
    pub revoked_ids: Vec<String>,
}

pub fn summarize(payload: &[u8]) -> Result<DocumentSummary, RlError> {
    let value: Value =
        ciborium::from_reader(payload).map_err(|e| RlError::Format(e.to_string()))?;
    let Value::Map(map) = value else {
        return Err(RlError::Format("the payload is not a map".into()));
    };
    let mut out = DocumentSummary::default();
    let uint = |v: &Value| -> u64 {
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .unwrap_or(0)
    };
    for (k, v) in &map {
        match k.as_text() {
            Some("version") => out.version = uint(v),
            Some("since") => out.since = Some(uint(v)),
            Some("issued_at") => out.issued_at = uint(v),
            Some("next_update") => out.next_update = uint(v),
            Some("revoked") => {
                for entry in v.as_array().into_iter().flatten() {
                    let id = entry.as_map().and_then(|m| {
                        m.iter()
                            .find(|(k, _)| k.as_text() == Some("id"))
                            .and_then(|(_, v)| v.as_text())
                    });
                    if let Some(id) = id {
                        out.revoked_ids.push(id.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Fingerprint;
    use crate::names::DeviceId;

    fn record(id: &str) -> ListedRevocation {
        ListedRevocation {
            version: 1,
            record: RevocationRecord {
                device: DeviceId::parse("id", id).unwrap(),
                reason: "stolen".into(),
                at_ms: 1_000,
                psk_identities: vec![b"psk-1".to_vec()],
                fingerprints: vec![Fingerprint([7; 32])],
            },
        }
    }

    #[test]
    fn a_signed_list_verifies_and_a_changed_one_does_not() {
        let kek = Kek::from_bytes(&[9; 32]);
        let key = RlSigningKey::generate(&kek, 5);
        let pkcs8 = kek.open(&key.sealed_key, RL_KEY_AAD).unwrap();
        let doc = document(3, None, 1_700_000_000_000, &[record("a"), record("b")]);
        let cose = sign(&doc, &pkcs8).unwrap();
        let payload = verify(&cose, &key.public_spki).unwrap();
        assert_eq!(payload, doc);
        let s = summarize(&payload).unwrap();
        assert_eq!(s.version, 3);
        assert_eq!(s.revoked_ids, vec!["a", "b"]);
        assert_eq!(s.next_update, s.issued_at + NEXT_UPDATE_SECS);
        assert_eq!(s.since, None);

        // One byte of the payload changed: refused.
        let mut tampered = cose.clone();
        let at = tampered.windows(1).rposition(|w| w == b"b").unwrap();
        tampered[at] = b'c';
        assert!(matches!(
            verify(&tampered, &key.public_spki),
            Err(RlError::BadSignature)
        ));
        // Another key: refused.
        let other = RlSigningKey::generate(&kek, 5);
        assert!(verify(&cose, &other.public_spki).is_err());
        assert!(verify(b"\x01\x02", &key.public_spki).is_err());
        let delta = document(4, Some(3), 0, &[record("c")]);
        assert_eq!(summarize(&delta).unwrap().since, Some(3));
    }
}

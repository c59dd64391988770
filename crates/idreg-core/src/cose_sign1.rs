//! COSE_Sign1 (RFC 9052 §4.2) with ES256 (P-256, SHA-256): what idreg signs
//! (the revocation list) and what it checks (those lists, and vendors'
//! firmware manifests). Tagged (18), an empty unprotected header, the
//! signature as r‖s.

use ciborium::value::Value;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::pkcs8::DecodePrivateKey;

/// COSE header label `alg` and its ES256 value.
const COSE_ALG: i64 = 1;
const ES256: i64 = -7;
const COSE_SIGN1_TAG: u64 = 18;

#[derive(Debug, thiserror::Error)]
pub enum CoseError {
    #[error("the key cannot be used: {0}")]
    Key(String),
    #[error("not a COSE_Sign1: {0}")]
    Format(String),
    #[error("the signature does not verify under this key")]
    BadSignature,
}

pub(crate) fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR into memory");
    out
}

fn protected_header() -> Vec<u8> {
    encode(&Value::Map(vec![(
        Value::Integer(COSE_ALG.into()),
        Value::Integer(ES256.into()),
    )]))
}

/// RFC 9052 §4.4: what is signed.
fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    encode(&Value::Array(vec![
        Value::Text("Signature1".into()),
        Value::Bytes(protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
    ]))
}

/// A COSE_Sign1 (tagged) over `payload`, signed with the PKCS#8 key.
pub fn sign(payload: &[u8], key_pkcs8: &[u8]) -> Result<Vec<u8>, CoseError> {
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(key_pkcs8)
        .map_err(|e| CoseError::Key(e.to_string()))?;
    let protected = protected_header();
    let signature: p256::ecdsa::Signature = key.sign(&sig_structure(&protected, payload));
    Ok(encode(&Value::Tag(
        COSE_SIGN1_TAG,
        Box::new(Value::Array(vec![
            Value::Bytes(protected),
            Value::Map(Vec::new()),
            Value::Bytes(payload.to_vec()),
            Value::Bytes(signature.to_bytes().to_vec()),
        ])),
    )))
}

/// Whether a protected header (a serialized map) says ES256. Read as a
/// map, not compared byte for byte: another encoder may order or size it
/// differently.
fn says_es256(protected: &[u8]) -> bool {
    let Ok(Value::Map(entries)) = ciborium::from_reader::<Value, _>(protected) else {
        return false;
    };
    entries.iter().any(|(k, v)| {
        k.as_integer() == Some(COSE_ALG.into()) && v.as_integer() == Some(ES256.into())
    })
}

/// Checks a COSE_Sign1 against the public key (SPKI DER); its payload.
pub fn verify(cose: &[u8], public_spki: &[u8]) -> Result<Vec<u8>, CoseError> {
    use p256::pkcs8::DecodePublicKey;
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(public_spki)
        .map_err(|e| CoseError::Key(e.to_string()))?;
    let value: Value = ciborium::from_reader(cose).map_err(|e| CoseError::Format(e.to_string()))?;
    let items = match value {
        Value::Tag(COSE_SIGN1_TAG, inner) => match *inner {
            Value::Array(items) if items.len() == 4 => items,
            _ => return Err(CoseError::Format("not a 4-element array".into())),
        },
        _ => return Err(CoseError::Format("no COSE_Sign1 tag (18)".into())),
    };
    let bytes = |v: &Value| match v {
        Value::Bytes(b) => Ok(b.clone()),
        _ => Err(CoseError::Format("a byte string was expected".into())),
    };
    let protected = bytes(&items[0])?;
    if !says_es256(&protected) {
        return Err(CoseError::Format("algorithm is not ES256".into()));
    }
    let payload = bytes(&items[2])?;
    let signature = p256::ecdsa::Signature::from_slice(&bytes(&items[3])?)
        .map_err(|_| CoseError::BadSignature)?;
    key.verify(&sig_structure(&protected, &payload), &signature)
        .map_err(|_| CoseError::BadSignature)?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};

    fn new_key() -> p256::SecretKey {
        p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()).expect("a scalar")
    }

    #[test]
    fn signed_verifies_and_anything_changed_does_not() {
        let key = new_key();
        let pkcs8 = key.to_pkcs8_der().unwrap();
        let spki = key.public_key().to_public_key_der().unwrap();
        let cose = sign(b"hello", pkcs8.as_bytes()).unwrap();
        assert_eq!(verify(&cose, spki.as_bytes()).unwrap(), b"hello");
        let mut bad = cose.clone();
        let n = bad.len();
        bad[n - 40] ^= 1;
        assert!(verify(&bad, spki.as_bytes()).is_err());
        let other = new_key().public_key().to_public_key_der().unwrap();
        assert!(matches!(
            verify(&cose, other.as_bytes()),
            Err(CoseError::BadSignature)
        ));
        assert!(matches!(
            verify(b"\x01", spki.as_bytes()),
            Err(CoseError::Format(_))
        ));
    }
}
